// Abuse of limits: bodies at the size limit built to be expensive, deep
// nesting, a gzip bomb, a flood of wrong keys. Each gets its documented
// answer, the server's resident memory stays bounded, and it keeps serving.
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "../integration/checks.h"
#include "hostile_support.h"
#include "server_process.h"

using namespace std::chrono_literals;
using namespace writeapi::testing;

namespace {

constexpr std::size_t kMaxBody = 10 * 1024 * 1024;

std::unique_ptr<httplib::Client> slow_client(const ServerProcess& server) {
  auto client = server.client();
  client->set_read_timeout(60, 0);
  client->set_write_timeout(60, 0);
  return client;
}

// Records the server's resident memory after a first request, and checks
// at the end that it grew by less than rss_growth_bound() and that the
// server still stores an ordinary write.
class MemoryWatch {
 public:
  explicit MemoryWatch(const ServerProcess& server) : server_(server) {
    prefill(server_, "warmup");
    before_ = resident_bytes(server_.pid());
    REQUIRE(before_ > 0);
  }
  void check_bounded_and_serving() const {
    std::size_t after = resident_bytes(server_.pid());
    INFO("server RSS before " << (before_ >> 20) << " MiB, after " << (after >> 20) << " MiB; bound +"
                              << (rss_growth_bound() >> 20) << " MiB");
    CHECK(after < before_ + rss_growth_bound());
    prefill(server_, "still-serving");
  }

 private:
  const ServerProcess& server_;
  std::size_t before_ = 0;
};

}  // namespace

TEST_CASE("hostile: a 10 MiB body of a million tiny items is stored as a million lines", "[hostile][limits]") {
  ServerProcess server({"--fsync", "never"});
  MemoryWatch memory(server);
  // {"v":NNN} is 9 bytes: a million of them with commas stay under 10 MiB.
  std::string data;
  data.reserve(10'000'000);
  data += '[';
  for (int i = 0; i < 1'000'000; ++i) {
    if (i) data += ',';
    data += "{\"v\":" + std::to_string(100 + i % 900) + "}";
  }
  data += ']';
  const std::string body = make_body(data);
  REQUIRE(body.size() <= kMaxBody);
  REQUIRE(body.size() > 9'000'000);

  auto res = slow_client(server)->Post(write_path("homelab", "million"), body, "application/json");
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(check_ok_body(res->body, 1'000'000) == "");
  const std::string stored = server.read_object("homelab", "million");
  CHECK(std::count(stored.begin(), stored.end(), '\n') == 1'000'000);
  CHECK(stored.compare(0, 18, "{\"v\":100}\n{\"v\":101") == 0);
  memory.check_bounded_and_serving();
}

TEST_CASE("hostile: a 10 MiB single string is stored as one line", "[hostile][limits]") {
  ServerProcess server({"--fsync", "never"});
  MemoryWatch memory(server);
  const std::string overhead = make_body("\"\"");
  const std::string value(kMaxBody - overhead.size(), 's');
  const std::string body = make_body("\"" + value + "\"");
  REQUIRE(body.size() == kMaxBody);

  auto res = slow_client(server)->Post(write_path("homelab", "string"), body, "application/json");
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(check_ok_body(res->body, 1) == "");
  CHECK(server.read_object("homelab", "string") == "\"" + value + "\"\n");

  // One byte more is refused from its Content-Length, before the body is
  // read (the client need not send it).
  RawConnection over(server.port(), "127.0.0.1");
  REQUIRE(over.send("POST " + write_path("homelab", "string") +
                    " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
                    std::to_string(kMaxBody + 1) + "\r\n\r\n" + body.substr(0, 65536)));
  RawResponse refused = over.read_response(5s);
  CHECK(refused.status == 413);
  CHECK(check_error_body(refused.body, "payload_too_large") == "");
  CHECK(over.drain_until_closed(5s));
  CHECK(server.read_object("homelab", "string") == "\"" + value + "\"\n");
  memory.check_bounded_and_serving();
}

TEST_CASE("hostile: 100,000-deep nesting is too_deep", "[hostile][limits]") {
  ServerProcess server;
  MemoryWatch memory(server);
  for (const char* open_close : {"[]", "{}"}) {
    std::string nested;
    for (int i = 0; i < 100'000; ++i) nested += open_close[0] == '[' ? "[" : "{\"a\":";
    nested += "1";
    nested += std::string(100'000, open_close[1]);
    auto res = server.client()->Post(write_path("homelab", "deep"), make_body(nested), "application/json");
    REQUIRE(res);
    INFO("nesting with " << open_close);
    CHECK(res->status == 400);
    CHECK(check_error_body(res->body, "too_deep") == "");
  }
  CHECK(!server.object_exists("homelab", "deep"));
  memory.check_bounded_and_serving();
}

TEST_CASE("hostile: a gzip bomb is 413 and is not inflated beyond the limit", "[hostile][limits]") {
  ServerProcess server;
  MemoryWatch memory(server);
  // 1 GiB of zeros in about 1 MiB: inflation must stop at the 10 MiB limit.
  const std::string bomb = gzip_of_zeros(std::size_t{1} << 30);
  REQUIRE(bomb.size() < kMaxBody);
  for (int round = 0; round < 3; ++round) {
    httplib::Headers headers = {{"Content-Encoding", "gzip"}};
    auto res = slow_client(server)->Post(write_path("homelab", "bomb"), headers, bomb, "application/json");
    REQUIRE(res);
    CHECK(res->status == 413);
    CHECK(check_error_body(res->body, "payload_too_large") == "");
  }
  CHECK(!server.object_exists("homelab", "bomb"));
  memory.check_bounded_and_serving();
}

TEST_CASE("hostile: a flood of 2,000 wrong keys gets 403 each and the server keeps serving", "[hostile][limits]") {
  ServerProcess server({"--fsync", "never"});
  MemoryWatch memory(server);
  constexpr int kThreads = 4;
  constexpr int kPerThread = 500;
  std::atomic<int> forbidden{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto client = server.client();
      for (int i = 0; i < kPerThread; ++i) {
        // A different wrong key every time, and half of them aimed at a
        // bucket that does not exist.
        std::string key = "guess-" + std::to_string(t) + "-" + std::to_string(i);
        std::string bucket = i % 2 ? "homelab" : "nolab" + std::to_string(i);
        auto res = client->Post(write_path(bucket, "k"), make_body("1", key), "application/json");
        if (res && res->status == 403 && check_error_body(res->body, "access_denied").empty()) {
          forbidden.fetch_add(1);
        } else {
          other.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(forbidden == kThreads * kPerThread);
  CHECK(other == 0);
  CHECK(!server.object_exists("homelab", "k"));
  memory.check_bounded_and_serving();
}
