// device-sim: N simulated sensors posting readings to a Write API server.
//
//   device-sim [--url http://127.0.0.1:8080] [--bucket homelab]
//              [--access-key KEY] [--devices 4] [--rate 2] [--batch 1]
//              [--seconds 5]
//
// Each device is a thread with its own keep-alive connection that sends
// --rate requests per second of --batch readings each to object
// "<device>" (deviceId "<device>"). At the end it prints, per device and in
// total, what was sent and what the server acknowledged.
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Options {
  std::string url = "http://127.0.0.1:8080";
  std::string bucket = "homelab";
  std::string access_key = "fbebeb8ae7f94930fd07dd8249287973e786d047e9820a254c4a3aecb36fc238";
  int devices = 4;
  double rate = 2;
  int batch = 1;
  double seconds = 5;
};

struct Tally {
  long requests = 0, acknowledged = 0, items_sent = 0, items_acknowledged = 0;
  std::map<int, long> statuses;
};

void usage() {
  std::printf(
      "usage: device-sim [--url URL] [--bucket B] [--access-key K] [--devices N]\n"
      "                  [--rate REQ_PER_S] [--batch ITEMS] [--seconds S]\n");
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      usage();
      return 0;
    }
    if (i + 1 >= argc) {
      usage();
      return 2;
    }
    std::string value = argv[++i];
    if (flag == "--url")
      o.url = value;
    else if (flag == "--bucket")
      o.bucket = value;
    else if (flag == "--access-key")
      o.access_key = value;
    else if (flag == "--devices")
      o.devices = std::atoi(value.c_str());
    else if (flag == "--rate")
      o.rate = std::atof(value.c_str());
    else if (flag == "--batch")
      o.batch = std::atoi(value.c_str());
    else if (flag == "--seconds")
      o.seconds = std::atof(value.c_str());
    else {
      usage();
      return 2;
    }
  }
  if (o.devices < 1 || o.rate <= 0 || o.batch < 1 || o.seconds <= 0) {
    usage();
    return 2;
  }

  std::vector<Tally> tallies(static_cast<std::size_t>(o.devices));
  std::vector<std::thread> threads;
  const auto start = std::chrono::steady_clock::now();
  const auto end = start + std::chrono::duration<double>(o.seconds);
  for (int d = 0; d < o.devices; ++d) {
    threads.emplace_back([&, d] {
      std::string device = "sim_" + std::to_string(d);
      httplib::Client client(o.url);
      client.set_keep_alive(true);
      client.set_connection_timeout(5);
      client.set_read_timeout(10);
      Tally& tally = tallies[static_cast<std::size_t>(d)];
      const auto period = std::chrono::duration<double>(1.0 / o.rate);
      auto next = std::chrono::steady_clock::now();
      long sequence = 0;
      while (next < end) {
        std::this_thread::sleep_until(next);
        next += std::chrono::duration_cast<std::chrono::steady_clock::duration>(period);
        std::string body = "{\"accessKey\":\"" + o.access_key + "\",\"deviceId\":\"" + device + "\",\"data\":[";
        long now = static_cast<long>(std::time(nullptr));
        for (int b = 0; b < o.batch; ++b) {
          if (b) body += ',';
          double temperature = 20.0 + 5.0 * std::sin(static_cast<double>(sequence) / 10.0 + d);
          char item[128];
          std::snprintf(item, sizeof item, "{\"timestamp\":%ld,\"seq\":%ld,\"temperature\":%.2f}", now, sequence++,
                        temperature);
          body += item;
        }
        body += "]}";
        auto res = client.Post(("/write/v3/bucket/" + o.bucket + "/" + device).c_str(), body, "application/json");
        tally.requests++;
        tally.items_sent += o.batch;
        int status = res ? res->status : 0;
        tally.statuses[status]++;
        if (status == 200) {
          tally.acknowledged++;
          tally.items_acknowledged += o.batch;
        }
      }
    });
  }
  for (auto& t : threads) t.join();

  Tally total;
  for (int d = 0; d < o.devices; ++d) {
    const Tally& t = tallies[static_cast<std::size_t>(d)];
    std::printf("sim_%d: sent %ld requests (%ld items), acknowledged %ld (%ld items)\n", d, t.requests, t.items_sent,
                t.acknowledged, t.items_acknowledged);
    total.requests += t.requests;
    total.items_sent += t.items_sent;
    total.acknowledged += t.acknowledged;
    total.items_acknowledged += t.items_acknowledged;
    for (auto [status, n] : t.statuses) total.statuses[status] += n;
  }
  std::printf("total: sent %ld requests (%ld items), acknowledged %ld (%ld items); statuses:", total.requests,
              total.items_sent, total.acknowledged, total.items_acknowledged);
  for (auto [status, n] : total.statuses) std::printf(" %d=%ld", status, n);
  std::printf(" (0 = no response)\n");
  return total.acknowledged == total.requests ? 0 : 1;
}
