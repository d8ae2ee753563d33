// ClickHouse goes away under write load and comes back: clients get
// 503 storage_unavailable with Retry-After meanwhile, never a 200 for lines
// that were not stored; the same front-end process (no restart) stores again
// once ClickHouse is back; every acknowledged item is present exactly once.
// Uses a private ClickHouse server (scripts/clickhouse-test-server), so the
// shared one other tests use stays up.
#include <httplib.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "clickhouse_support.h"
#include "server_process.h"

using namespace writeapi::testing;
using namespace std::chrono_literals;

namespace {

// kStarting: ClickHouse is being started and may answer before start() returns.
enum Phase { kBefore, kDown, kStarting, kBack };

struct Outcomes {
  std::mutex mu;
  std::map<std::string, int> acknowledged;  // item -> number of 200s for it (1)
  int ok[4] = {0, 0, 0, 0};                 // 200s by the phase they were answered in
  int ok_while_down = 0;                    // 200s sent and answered while down
  int unavailable[4] = {0, 0, 0, 0};        // 503 storage_unavailable by the phase sent in
  int other = 0;                            // anything else
  std::string first_other;
  int missing_retry_after = 0;
};

int count(Outcomes& outcomes, int Outcomes::*field) {
  std::lock_guard<std::mutex> lock(outcomes.mu);
  return outcomes.*field;
}

int count_ok(Outcomes& outcomes, Phase phase) {
  std::lock_guard<std::mutex> lock(outcomes.mu);
  return outcomes.ok[phase];
}

int count_unavailable(Outcomes& outcomes, Phase phase) {
  std::lock_guard<std::mutex> lock(outcomes.mu);
  return outcomes.unavailable[phase];
}

template <typename Predicate>
bool wait_for(Predicate done, std::chrono::seconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

}  // namespace

TEST_CASE("clickhouse outage: 503 while down, stores again when back, no acknowledged item lost",
          "[clickhouse][outage]") {
  WRITEAPI_REQUIRE_CLICKHOUSE_OR_SKIP();
  PrivateClickHouse clickhouse;
  ScratchDatabase database({clickhouse.url()}, "outage");
  ServerProcess front(clickhouse_server_args(clickhouse.url(), database.name()));
  const pid_t pid = front.pid();

  std::atomic<int> phase{kBefore};
  std::atomic<bool> stop{false};
  Outcomes outcomes;
  constexpr int kClients = 4;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      auto client = front.client();
      for (int s = 0; !stop; ++s) {
        const int sent_in = phase;
        std::string id = "\"c\":" + std::to_string(c) + ",\"s\":" + std::to_string(s);
        auto res = client->Post(write_path("homelab", "outage"),
                                make_body("[{" + id + ",\"i\":0},{" + id + ",\"i\":1}]"), "application/json");
        const int answered_in = phase;
        std::lock_guard<std::mutex> lock(outcomes.mu);
        if (res && res->status == 200) {
          outcomes.acknowledged["{" + id + ",\"i\":0}"]++;
          outcomes.acknowledged["{" + id + ",\"i\":1}"]++;
          outcomes.ok[answered_in]++;
          if (sent_in == kDown && answered_in == kDown) outcomes.ok_while_down++;
        } else if (res && res->status == 503 && check_error_body(res->body, "storage_unavailable").empty()) {
          outcomes.unavailable[sent_in]++;
          if (!res->has_header("Retry-After")) outcomes.missing_retry_after++;
        } else {
          if (outcomes.other++ == 0)
            outcomes.first_other =
                res ? std::to_string(res->status) + " " + res->body : httplib::to_string(res.error());
        }
        if (res && res->status == 503) std::this_thread::sleep_for(5ms);  // a polite client would wait Retry-After
      }
    });
  }

  CHECK(wait_for([&] { return count_ok(outcomes, kBefore) >= 50; }, 30s));
  clickhouse.stop();
  phase = kDown;
  CHECK(wait_for([&] { return count_unavailable(outcomes, kDown) >= 20; }, 30s));
  phase = kStarting;
  clickhouse.start();
  phase = kBack;
  CHECK(wait_for([&] { return count_ok(outcomes, kBack) >= 50; }, 30s));
  stop = true;
  for (auto& client : clients) client.join();

  INFO("first unexpected answer: " << outcomes.first_other);
  CHECK(count(outcomes, &Outcomes::other) == 0);
  CHECK(outcomes.missing_retry_after == 0);
  CHECK(outcomes.ok[kBack] >= 50);
  CHECK(outcomes.unavailable[kDown] >= 20);
  CHECK(outcomes.ok_while_down == 0);  // ClickHouse was down from before the send to after the answer
  CHECK(front.running());
  CHECK(front.pid() == pid);

  std::string contents;
  REQUIRE(clickhouse_reader(clickhouse.url(), database.name())->read_object("homelab", "outage", &contents).ok());
  std::map<std::string, int> stored;
  for (const std::string& line : split_lines(contents)) stored[line]++;
  int lost = 0, duplicated = 0;
  for (const auto& [item, acks] : outcomes.acknowledged) {
    REQUIRE(acks == 1);
    auto it = stored.find(item);
    if (it == stored.end())
      lost++;
    else if (it->second != 1)
      duplicated++;
  }
  CHECK(lost == 0);
  CHECK(duplicated == 0);
  // Refused requests may have been stored (ClickHouse can commit an INSERT and
  // die before answering), but never more than once.
  for (const auto& [item, copies] : stored) CHECK(copies == 1);
}
