// device-sim: N simulated sensors posting readings to a Write API server.
//
//   device-sim [--url http://127.0.0.1:8080] [--bucket homelab]
//              [--access-key KEY] [--devices 4] [--rate 2] [--batch 1]
//              [--seconds 5] [--request-ids] [--max-retries 10]
//
// Each device is a thread with its own keep-alive connection that sends
// --rate requests per second of --batch readings each to object
// "<device>" (deviceId "<device>"). At the end it prints, per device and in
// total, what was sent and what the server acknowledged.
//
// --request-ids: each request carries a requestId and, when it is not
// acknowledged (no answer, 429, 5xx), is sent again, the same bytes, after
// the server's Retry-After or an exponential backoff (0.1 s doubling to
// 5 s), up to --max-retries times. The server stores a retried request once
// ("duplicate":true when the first try had been stored), so a device on a
// bad network loses nothing and duplicates nothing.
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
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
  bool request_ids = false;
  int max_retries = 10;
};

struct Tally {
  long requests = 0, acknowledged = 0, items_sent = 0, items_acknowledged = 0, retries = 0, duplicates = 0;
  std::map<int, long> statuses;
};

void usage() {
  std::printf(
      "usage: device-sim [--url URL] [--bucket B] [--access-key K] [--devices N]\n"
      "                  [--rate REQ_PER_S] [--batch ITEMS] [--seconds S]\n"
      "                  [--request-ids] [--max-retries N]\n");
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
    if (flag == "--request-ids") {
      o.request_ids = true;
      continue;
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
    else if (flag == "--max-retries")
      o.max_retries = std::atoi(value.c_str());
    else {
      usage();
      return 2;
    }
  }
  if (o.devices < 1 || o.rate <= 0 || o.batch < 1 || o.seconds <= 0 || o.max_retries < 0) {
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
      long sequence = 0, request = 0;
      // Ids unique across runs: the device, this run's start, a counter.
      const std::string run = std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
      while (next < end) {
        std::this_thread::sleep_until(next);
        next += std::chrono::duration_cast<std::chrono::steady_clock::duration>(period);
        std::string body = "{\"accessKey\":\"" + o.access_key + "\",\"deviceId\":\"" + device + "\",";
        if (o.request_ids) body += "\"requestId\":\"" + device + "/" + run + "/" + std::to_string(request++) + "\",";
        body += "\"data\":[";
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
        const std::string path = "/write/v3/bucket/" + o.bucket + "/" + device;
        auto res = client.Post(path.c_str(), body, "application/json");
        tally.requests++;
        tally.items_sent += o.batch;
        int status = res ? res->status : 0;
        // Retry what may not have been stored, the same bytes again.
        double backoff = 0.1;
        for (int attempt = 0;
             o.request_ids && attempt < o.max_retries && (status == 0 || status == 429 || status >= 500); ++attempt) {
          double wait = backoff;
          if (res && res->has_header("Retry-After")) wait = std::atof(res->get_header_value("Retry-After").c_str());
          backoff = std::min(backoff * 2, 5.0);
          std::this_thread::sleep_for(std::chrono::duration<double>(wait));
          res = client.Post(path.c_str(), body, "application/json");
          status = res ? res->status : 0;
          tally.retries++;
        }
        tally.statuses[status]++;
        if (status == 200) {
          tally.acknowledged++;
          tally.items_acknowledged += o.batch;
          if (res->body.find("\"duplicate\":true") != std::string::npos) tally.duplicates++;
        }
      }
    });
  }
  for (auto& t : threads) t.join();

  Tally total;
  for (int d = 0; d < o.devices; ++d) {
    const Tally& t = tallies[static_cast<std::size_t>(d)];
    std::printf("sim_%d: sent %ld requests (%ld items), acknowledged %ld (%ld items), %ld retries, %ld duplicates\n", d,
                t.requests, t.items_sent, t.acknowledged, t.items_acknowledged, t.retries, t.duplicates);
    total.requests += t.requests;
    total.items_sent += t.items_sent;
    total.acknowledged += t.acknowledged;
    total.items_acknowledged += t.items_acknowledged;
    total.retries += t.retries;
    total.duplicates += t.duplicates;
    for (auto [status, n] : t.statuses) total.statuses[status] += n;
  }
  std::printf(
      "total: sent %ld requests (%ld items), acknowledged %ld (%ld items), %ld retries, %ld duplicates; statuses:",
      total.requests, total.items_sent, total.acknowledged, total.items_acknowledged, total.retries, total.duplicates);
  for (auto [status, n] : total.statuses) std::printf(" %d=%ld", status, n);
  std::printf(" (0 = no response)\n");
  return total.acknowledged == total.requests ? 0 : 1;
}
