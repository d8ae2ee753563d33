// Many clients at once against the real server: batches appended to one
// object never interleave, nothing is lost or duplicated, and hundreds of
// keep-alive connections are all served.
#include <httplib.h>
#include <simdjson.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "server_process.h"

using namespace writeapi::testing;
using namespace std::chrono_literals;

namespace {

// Releases all waiting threads at once.
class StartGate {
 public:
  void wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return open_; });
  }
  void open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// Failures seen by worker threads (Catch2 assertions are not thread-safe).
struct Failures {
  std::atomic<int> count{0};
  std::mutex mu;
  std::string first;
  void add(const std::string& what) {
    if (count.fetch_add(1) == 0) {
      std::lock_guard<std::mutex> lock(mu);
      first = what;
    }
  }
};

std::string describe(const httplib::Result& res) {
  if (!res) return "transport error " + httplib::to_string(res.error());
  return "status " + std::to_string(res->status) + " body " + res->body;
}

// `threads` clients, each with its own keep-alive connection, each sending
// `per_thread` requests of the batch [{"t":T,"s":S,"i":0},{"t":T,"s":S,"i":1}]
// to homelab/<key>. Then checks the object line by line.
enum class Sync { always, never };

void run_pair_batches(const ServerProcess& server, int threads, int per_thread, const std::string& key, Sync sync) {
  Failures failures;
  StartGate gate;
  std::vector<std::thread> workers;
  const std::string path = write_path("homelab", key);
  // Connections are opened one by one before the start: this test is about
  // concurrent appends, not about bursts of new connections (see the
  // 256-client test for those).
  std::vector<std::unique_ptr<httplib::Client>> clients;
  for (int t = 0; t < threads; ++t) {
    clients.push_back(server.client());
    auto res = clients.back()->Get("/healthz");
    REQUIRE(res);
    REQUIRE(res->status == 200);
  }
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      auto& client = clients[static_cast<std::size_t>(t)];
      gate.wait();
      for (int s = 0; s < per_thread; ++s) {
        const std::string item = "{\"t\":" + std::to_string(t) + ",\"s\":" + std::to_string(s) + ",\"i\":";
        auto res = client->Post(path, make_body("[" + item + "0}," + item + "1}]"), "application/json");
        if (!res || res->status != 200 || check_ok_body(res->body, 2) != "") {
          failures.add("thread " + std::to_string(t) + " request " + std::to_string(s) + ": " + describe(res));
        }
      }
    });
  }
  auto start = std::chrono::steady_clock::now();
  gate.open();
  for (auto& w : workers) w.join();
  auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  WARN(threads << " x " << per_thread << " requests took " << elapsed << " s");
  INFO("first failure: " << failures.first);
  REQUIRE(failures.count == 0);

  const std::string contents = server.read_object("homelab", key);
  REQUIRE(!contents.empty());
  CHECK(contents.back() == '\n');
  auto lines = split_lines(contents);
  const std::size_t expected_lines = static_cast<std::size_t>(threads) * static_cast<std::size_t>(per_thread) * 2;
  REQUIRE(lines.size() == expected_lines);

  struct Item {
    int64_t t = -1, s = -1, i = -1;
  };
  simdjson::dom::parser parser;
  std::vector<Item> items;
  items.reserve(lines.size());
  int bad_lines = 0;
  std::string first_bad;
  for (const auto& line : lines) {
    Item item;
    simdjson::dom::element element;
    bool ok = !parser.parse(line).get(element) && !element["t"].get_int64().get(item.t) &&
              !element["s"].get_int64().get(item.s) && !element["i"].get_int64().get(item.i);
    if (!ok && bad_lines++ == 0) first_bad = line;
    items.push_back(item);
  }
  INFO("first unparsable line: " << first_bad);
  REQUIRE(bad_lines == 0);

  // Each batch is two adjacent lines; every (t, s) appears exactly once; a
  // client's batches appear in the order it sent them (each was acknowledged
  // before the next was sent).
  std::vector<std::vector<char>> seen(static_cast<std::size_t>(threads),
                                      std::vector<char>(static_cast<std::size_t>(per_thread), 0));
  std::vector<int64_t> last_s(static_cast<std::size_t>(threads), -1);
  int torn = 0, duplicates = 0, out_of_order = 0, out_of_range = 0;
  std::string first_problem;
  for (std::size_t j = 0; j < items.size(); ++j) {
    const Item& a = items[j];
    if (a.i != 0) {
      if (torn++ == 0 && first_problem.empty()) first_problem = "line " + std::to_string(j) + " " + lines[j];
      continue;
    }
    if (j + 1 >= items.size() || items[j + 1].i != 1 || items[j + 1].t != a.t || items[j + 1].s != a.s) {
      if (torn++ == 0 && first_problem.empty()) first_problem = "line " + std::to_string(j) + " " + lines[j];
      continue;
    }
    ++j;  // the pair's second line
    if (a.t < 0 || a.t >= threads || a.s < 0 || a.s >= per_thread) {
      ++out_of_range;
      continue;
    }
    auto& flag = seen[static_cast<std::size_t>(a.t)][static_cast<std::size_t>(a.s)];
    if (flag) ++duplicates;
    flag = 1;
    auto& last = last_s[static_cast<std::size_t>(a.t)];
    if (a.s <= last) ++out_of_order;
    last = a.s;
  }
  INFO("first problem: " << first_problem);
  CHECK(torn == 0);
  CHECK(duplicates == 0);
  CHECK(out_of_range == 0);
  CHECK(out_of_order == 0);
  int missing = 0;
  for (const auto& row : seen)
    for (char b : row) missing += b ? 0 : 1;
  CHECK(missing == 0);

  // The durability policy as the storage counters report it.
  auto metrics = server.client()->Get("/metrics");
  REQUIRE(metrics);
  INFO(metrics->body);
  const double batches = static_cast<double>(threads) * per_thread;
  CHECK(metric_value(metrics->body, "writeapi_storage_appends_total") == batches);
  CHECK(metric_value(metrics->body, "writeapi_storage_write_errors_total") == 0.0);
  auto syncs = metric_value(metrics->body, "writeapi_storage_syncs_total");
  REQUIRE(syncs);
  if (sync == Sync::always) {
    // Every acknowledged append was covered by an fdatasync (shared ones
    // allowed: group commit).
    CHECK(metric_value(metrics->body, "writeapi_storage_synced_appends_total") == batches);
    CHECK(*syncs >= 1);
    CHECK(*syncs <= batches);
  } else {
    CHECK(*syncs == 0);
  }
}

}  // namespace

TEST_CASE("16 clients x 500 batches to one object never interleave (fsync never)", "[integration][concurrency]") {
  ServerProcess server({"--fsync", "never", "--access-log", "off"});
  run_pair_batches(server, 16, 500, "shared", Sync::never);
}

TEST_CASE("4 clients x 100 batches to one object never interleave (fsync always)", "[integration][concurrency]") {
  ServerProcess server;  // default --fsync always
  run_pair_batches(server, 4, 100, "shared", Sync::always);
}

TEST_CASE("256 concurrent keep-alive clients are all served", "[integration][concurrency]") {
  ServerProcess server({"--fsync", "never"});
  constexpr int kClients = 256;
  constexpr int kRequests = 5;
  Failures failures;
  StartGate gate;
  std::atomic<int> connected{0};
  std::vector<std::thread> workers;
  for (int c = 0; c < kClients; ++c) {
    workers.emplace_back([&, c] {
      auto client = server.client();  // 10 s connect/read/write timeouts
      gate.wait();
      for (int r = 0; r < kRequests; ++r) {
        auto res = client->Post(write_path("homelab", "many"),
                                make_body("{\"c\":" + std::to_string(c) + ",\"r\":" + std::to_string(r) + "}"),
                                "application/json");
        if (!res || res->status != 200) {
          failures.add("client " + std::to_string(c) + " request " + std::to_string(r) + ": " + describe(res));
          return;
        }
        if (r == 0) connected.fetch_add(1);
      }
    });
  }
  auto start = std::chrono::steady_clock::now();
  gate.open();
  for (auto& w : workers) w.join();
  auto elapsed = std::chrono::steady_clock::now() - start;
  WARN(kClients << " clients x " << kRequests << " requests took " << std::chrono::duration<double>(elapsed).count()
                << " s");
  INFO("failures: " << failures.count << "; first: " << failures.first);
  CHECK(failures.count == 0);
  CHECK(connected == kClients);
  CHECK(elapsed < 30s);
  auto lines = split_lines(server.read_object("homelab", "many"));
  CHECK(lines.size() == static_cast<std::size_t>(kClients * kRequests));
}

// With --fsync always a write is answered when its group commit is durable,
// and the requests in flight meanwhile hold no thread: with one worker, 64
// connections' requests sent at once are all answered, sharing syncs
// (a thread per waiting request would make one sync per request here).
TEST_CASE("fsync always: requests in flight share group commits and hold no worker", "[integration][concurrency]") {
  ServerProcess server({"--fsync", "always", "--threads", "1"});
  constexpr int kConnections = 64, kRounds = 5;
  std::vector<std::unique_ptr<RawConnection>> connections;
  for (int i = 0; i < kConnections; ++i) {
    connections.push_back(std::make_unique<RawConnection>(server.port()));
    REQUIRE(connections.back()->connected());
  }
  std::string expected;
  for (int round = 0; round < kRounds; ++round) {
    for (int i = 0; i < kConnections; ++i) {
      std::string item = "{\"c\":" + std::to_string(i) + ",\"r\":" + std::to_string(round) + "}";
      REQUIRE(connections[i]->send(make_post(write_path("homelab", "group"), make_body(item))));
    }
    for (int i = 0; i < kConnections; ++i) {
      RawResponse response = connections[i]->read_response();
      INFO("connection " << i << " round " << round << ": " << response.raw);
      REQUIRE(response.status == 200);
      CHECK(check_ok_body(response.body, 1).empty());
    }
  }
  auto appends = server.metric("writeapi_storage_synced_appends_total");
  auto syncs = server.metric("writeapi_storage_syncs_total");
  REQUIRE(appends);
  REQUIRE(syncs);
  CHECK(*appends == kConnections * kRounds);
  INFO("syncs " << *syncs << " for " << *appends << " appends");
  CHECK(*syncs * 4 <= *appends);
  std::vector<std::string> lines = split_lines(server.read_object("homelab", "group"));
  CHECK(lines.size() == static_cast<std::size_t>(kConnections * kRounds));
}
