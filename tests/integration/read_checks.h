// The Read API through the real server: helpers and the cases that run on
// every storage backend (read_api_test.cpp on files,
// tests/clickhouse_integration/clickhouse_read_test.cpp on ClickHouse).
#ifndef WRITEAPI_TESTS_INTEGRATION_READ_CHECKS_H_
#define WRITEAPI_TESTS_INTEGRATION_READ_CHECKS_H_

#include <httplib.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <string>
#include <string_view>
#include <thread>

#include "server_process.h"

namespace writeapi::testing {

inline httplib::Headers bearer(std::string_view key = kAccessKey) {
  return {{"Authorization", "Bearer " + std::string(key)}};
}

inline std::string read_path(std::string_view bucket, std::string_view key, std::string_view query = {}) {
  std::string path = "/read/v3/bucket/" + std::string(bucket) + "/" + std::string(key);
  if (!query.empty()) path += "?" + std::string(query);
  return path;
}

// GET of an object's lines; REQUIREs an answer.
inline httplib::Result get_lines(const ServerProcess& server, std::string_view key, std::string_view query = {},
                                 std::string_view access_key = kAccessKey) {
  auto client = server.client();
  client->set_read_timeout(90, 0);
  auto res = client->Get(read_path("homelab", key, query), bearer(access_key));
  REQUIRE(res);
  return res;
}

// Writes `data_json` (an item or an array of items) to homelab/<key>.
inline void write_items(const ServerProcess& server, std::string_view key, std::string_view data_json,
                        std::optional<std::string_view> device = std::nullopt) {
  auto res =
      server.client()->Post(write_path("homelab", key), make_body(data_json, kAccessKey, device), "application/json");
  REQUIRE(res);
  INFO(res->body);
  REQUIRE(res->status == 200);
}

// An answer of lines: 200, NDJSON, Content-Length matching, X-Next-Cursor.
inline void check_lines(const httplib::Result& res, std::string_view lines) {
  INFO("status " << res->status << " body " << res->body);
  REQUIRE(res->status == 200);
  CHECK(res->get_header_value("Content-Type") == "application/x-ndjson");
  CHECK(res->get_header_value("Content-Length") == std::to_string(res->body.size()));
  CHECK_FALSE(res->get_header_value("X-Next-Cursor").empty());
  CHECK(res->body == lines);
}

inline std::string next_cursor(const httplib::Result& res) { return res->get_header_value("X-Next-Cursor"); }

// Cursors chain across appends; an empty answer keeps the cursor; every
// line comes byte for byte as stored.
inline void check_cursors_across_appends(const ServerProcess& server) {
  write_items(server, "chain", R"([{"a":1},{"a": 2.50},"x y"])");
  auto first = get_lines(server, "chain", "limit=2");
  check_lines(first, "{\"a\":1}\n{\"a\":2.50}\n");
  auto second = get_lines(server, "chain", "cursor=" + next_cursor(first));
  check_lines(second, "\"x y\"\n");
  auto empty = get_lines(server, "chain", "cursor=" + next_cursor(second));
  check_lines(empty, "");
  CHECK(next_cursor(empty) == next_cursor(second));
  write_items(server, "chain", R"([4,{"b":[5]}])");
  auto after = get_lines(server, "chain", "cursor=" + next_cursor(second) + "&limit=10");
  check_lines(after, "4\n{\"b\":[5]}\n");
  // From the start: everything, in order.
  check_lines(get_lines(server, "chain"), "{\"a\":1}\n{\"a\":2.50}\n\"x y\"\n4\n{\"b\":[5]}\n");
}

// tail=N: the last N lines, then the cursor goes on from there.
inline void check_tail(const ServerProcess& server) {
  write_items(server, "tailed", "[1,2,3,4,5]");
  auto tail = get_lines(server, "tailed", "tail=2");
  check_lines(tail, "4\n5\n");
  check_lines(get_lines(server, "tailed", "tail=100"), "1\n2\n3\n4\n5\n");
  write_items(server, "tailed", "6");
  check_lines(get_lines(server, "tailed", "cursor=" + next_cursor(tail)), "6\n");
  check_lines(get_lines(server, "tailed", "tail=1"), "6\n");
  auto missing = get_lines(server, "never_written", "tail=3");
  CHECK(missing->status == 404);
  CHECK(check_error_body(missing->body, "not_found") == "");
}

// An object never written is 404 not_found, also with a wait.
inline void check_not_found(const ServerProcess& server) {
  for (std::string_view query : {"", "limit=5", "wait=1", "cursor=8", "cursor=8&wait=1"}) {
    INFO("query " << query);
    auto res = get_lines(server, "never_written", query);
    CHECK(res->status == 404);
    CHECK(check_error_body(res->body, "not_found") == "");
  }
}

// A waiting read is answered soon after a write to its object (the
// contract: within 1 s of the write's acknowledgement), and with nothing,
// the same cursor, at the end of its wait.
inline void check_long_poll_wakes(const ServerProcess& server) {
  using Clock = std::chrono::steady_clock;
  write_items(server, "polled", "1");
  const std::string cursor = next_cursor(get_lines(server, "polled"));
  // No Catch2 assertion off the main thread.
  auto waiting = std::async(std::launch::async, [&] {
    auto client = server.client();
    client->set_read_timeout(60, 0);
    auto res = client->Get(read_path("homelab", "polled", "cursor=" + cursor + "&wait=30"), bearer());
    return std::make_pair(Clock::now(), res ? res->body : std::string("<no answer>"));
  });
  // The read is parked by then (it found nothing); a write to another
  // object does not answer it.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  write_items(server, "not_polled", "0");
  REQUIRE(waiting.wait_for(std::chrono::milliseconds(300)) == std::future_status::timeout);
  write_items(server, "polled", R"({"late":2})");
  const auto written = Clock::now();
  REQUIRE(waiting.wait_for(std::chrono::seconds(5)) == std::future_status::ready);
  auto [answered, body] = waiting.get();
  CHECK(body == "{\"late\":2}\n");
  CHECK(answered - written < std::chrono::seconds(1));

  // Nothing comes: an empty answer after the wait, the same cursor.
  const std::string end = next_cursor(get_lines(server, "polled"));
  const auto start = Clock::now();
  auto idle = get_lines(server, "polled", "cursor=" + end + "&wait=1");
  CHECK(Clock::now() - start >= std::chrono::milliseconds(900));
  check_lines(idle, "");
  CHECK(next_cursor(idle) == end);
}

}  // namespace writeapi::testing

#endif  // WRITEAPI_TESTS_INTEGRATION_READ_CHECKS_H_
