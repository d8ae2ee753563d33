// The Read API of writeapi-server on ClickHouse (--storage clickhouse): the
// cases of tests/integration/read_checks.h that every backend passes
// (cursors are row positions here), plus keys and readers during writes.
#include <httplib.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <map>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "clickhouse_support.h"
#include "read_checks.h"
#include "server_process.h"

using namespace writeapi::testing;
using namespace std::chrono_literals;

namespace {

struct ClickHouseReadServer {
  ScratchDatabase database{{clickhouse_url()}, "read"};
  ServerProcess server{clickhouse_server_args(clickhouse_url(), database.name())};
};

}  // namespace

TEST_CASE("clickhouse read: cursors chain across appends", "[clickhouse][read]") {
  WRITEAPI_REQUIRE_CLICKHOUSE_OR_SKIP();
  ClickHouseReadServer fixture;
  check_cursors_across_appends(fixture.server);
}

TEST_CASE("clickhouse read: tail sends the last lines and its cursor goes on", "[clickhouse][read]") {
  WRITEAPI_REQUIRE_CLICKHOUSE_OR_SKIP();
  ClickHouseReadServer fixture;
  check_tail(fixture.server);
}

TEST_CASE("clickhouse read: an object never written is 404 not_found", "[clickhouse][read]") {
  WRITEAPI_REQUIRE_CLICKHOUSE_OR_SKIP();
  ClickHouseReadServer fixture;
  check_not_found(fixture.server);
}

TEST_CASE("clickhouse read: a waiting read wakes on a write to its object", "[clickhouse][read]") {
  WRITEAPI_REQUIRE_CLICKHOUSE_OR_SKIP();
  ClickHouseReadServer fixture;
  check_long_poll_wakes(fixture.server);
}

TEST_CASE("clickhouse read: the keys of a bucket with bytes and last write", "[clickhouse][read]") {
  WRITEAPI_REQUIRE_CLICKHOUSE_OR_SKIP();
  ClickHouseReadServer fixture;
  write_items(fixture.server, "zeta", "[1,2]");
  write_items(fixture.server, "alpha", R"({"t":1})");
  auto res = fixture.server.client()->Get("/read/v3/bucket/homelab", bearer());
  REQUIRE(res);
  INFO(res->body);
  REQUIRE(res->status == 200);
  const std::regex shape(
      R"(\{"ok":true,"keys":\[\{"key":"alpha","bytes":8,"modified":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"\},)"
      R"(\{"key":"zeta","bytes":4,"modified":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"\}\]\}\n)");
  CHECK(std::regex_match(res->body, shape));
}

TEST_CASE("clickhouse read: readers during concurrent writes see whole lines, each once", "[clickhouse][read]") {
  WRITEAPI_REQUIRE_CLICKHOUSE_OR_SKIP();
  ClickHouseReadServer fixture;
  ServerProcess& server = fixture.server;
  constexpr int kWriters = 3, kRequests = 30;
  std::atomic<int> failures{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w)
    writers.emplace_back([&, w] {
      auto client = server.client();
      for (int i = 0; i < kRequests; ++i) {
        std::string item = "{\"w\":" + std::to_string(w) + ",\"i\":" + std::to_string(i) + "}";
        auto res = client->Post(write_path("homelab", "contended"), make_body("[" + item + "," + item + "]"),
                                "application/json");
        if (!res || res->status != 200) failures++;
      }
    });
  // Row positions chain while the writers go on: every line once, whole.
  std::map<std::string, int> seen;
  std::string cursor;
  auto drain = [&] {
    for (int reads = 0; reads < 200; ++reads) {
      auto res = get_lines(server, "contended", cursor.empty() ? "limit=7" : "limit=7&cursor=" + cursor);
      if (res->status == 404) return;  // nothing stored yet
      REQUIRE(res->status == 200);
      if (res->body.empty()) return;
      for (const std::string& line : split_lines(res->body)) seen[line]++;
      cursor = next_cursor(res);
    }
  };
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (seen.size() < static_cast<std::size_t>(kWriters * kRequests) && std::chrono::steady_clock::now() < until)
    drain();
  for (auto& t : writers) t.join();
  drain();
  REQUIRE(failures == 0);
  CHECK(seen.size() == static_cast<std::size_t>(kWriters * kRequests));
  for (const auto& [line, count] : seen) CHECK(count == 2);
}
