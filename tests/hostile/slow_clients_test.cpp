// Slow clients: connections that trickle their request a byte at a time
// must not deny service to others (per-address connection cap), and cannot
// hold a worker forever (request deadline).
#include <httplib.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../integration/checks.h"
#include "hostile_support.h"
#include "server_process.h"

using namespace std::chrono_literals;
using namespace writeapi::testing;

namespace {

using Clock = std::chrono::steady_clock;

// Keeps sending one byte per connection every `period` until destroyed.
class Trickler {
 public:
  Trickler(std::vector<RawConnection*> sockets, std::chrono::milliseconds period, char byte)
      : thread_([this, sockets = std::move(sockets), period, byte] {
          while (!stop_.load()) {
            for (RawConnection* s : sockets) s->send(std::string_view(&byte, 1), 50ms);
            std::this_thread::sleep_for(period);
          }
        }) {}
  ~Trickler() {
    stop_ = true;
    thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::string head_of(std::string_view key, std::size_t content_length) {
  return "POST " + write_path("homelab", key) +
         " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(content_length) + "\r\n\r\n";
}

}  // namespace

TEST_CASE("hostile: twice the worker count of slow connections from one address do not stop another client",
          "[hostile][slow]") {
  constexpr int kThreads = 8;
  constexpr int kSlow = 2 * kThreads;
  // A cap below the slow connections' count: those over it are refused at
  // once; those under it trickle (costing no worker while they do).
  constexpr int kCap = kThreads * 3 / 4;
  ServerProcess server(
      {"--threads", std::to_string(kThreads), "--fsync", "never", "--max-connections-per-ip", std::to_string(kCap)});

  // Half trickle their headers, half their body; 127.0.0.3 is the attacker.
  std::vector<std::unique_ptr<RawConnection>> slow;
  for (int i = 0; i < kSlow; ++i) {
    slow.push_back(std::make_unique<RawConnection>(server.port(), "127.0.0.3"));
    REQUIRE(slow.back()->connected());
    if (i % 2 == 0) {
      slow.back()->send("POST " + write_path("homelab", "slow") + " HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ");
    } else {
      slow.back()->send(head_of("slow", 100000) + "{\"accessKey\":\"");
    }
  }
  // Connections over the cap are answered 429 at once.
  std::this_thread::sleep_for(300ms);
  int refused = 0;
  std::vector<RawConnection*> admitted;
  for (auto& s : slow) {
    RawResponse res = s->read_response(100ms);
    if (res.status == 429) {
      ++refused;
      CHECK(check_error_body(res.body, "rate_limited") == "");
      CHECK(res.header("retry-after") == "1");
    } else {
      CHECK(res.status == 0);
      admitted.push_back(s.get());
    }
  }
  CHECK(refused == kSlow - kCap);
  CHECK(admitted.size() == static_cast<std::size_t>(kCap));

  Trickler trickle(admitted, 300ms, ' ');
  std::this_thread::sleep_for(500ms);

  // A normal client from another address is answered within 5 s.
  for (int round = 0; round < 3; ++round) {
    RawConnection normal(server.port(), "127.0.0.2");
    REQUIRE(normal.connected());
    const auto start = Clock::now();
    REQUIRE(normal.send(make_post(write_path("homelab", "normal"), make_body("1"))));
    RawResponse res = normal.read_response(5s);
    const auto took = Clock::now() - start;
    INFO("round " << round << " answered after " << std::chrono::duration<double>(took).count() << " s:\n" << res.raw);
    CHECK(res.status == 200);
    CHECK(took < 5s);
  }
  CHECK(server.read_object("homelab", "normal") == "1\n1\n1\n");

  auto metrics = server.client()->Get("/metrics");
  REQUIRE(metrics);
  CHECK(metric_value(metrics->body, "writeapi_connections_refused_total{reason=\"per_ip_limit\"}") ==
        static_cast<double>(kSlow - kCap));
  CHECK(!server.object_exists("homelab", "slow"));
}

TEST_CASE("hostile: --max-connections-per-ip caps one address and frees slots as connections close",
          "[hostile][slow]") {
  ServerProcess server({"--max-connections-per-ip", "2"});
  auto first = std::make_unique<RawConnection>(server.port(), "127.0.0.5");
  RawConnection second(server.port(), "127.0.0.5");
  std::this_thread::sleep_for(100ms);
  {
    RawConnection third(server.port(), "127.0.0.5");
    RawResponse res = third.read_response(2s);
    CHECK(res.status == 429);
    CHECK(third.drain_until_closed(2s));
  }
  // Another address is not affected.
  RawConnection other(server.port(), "127.0.0.6");
  REQUIRE(other.send(make_post(write_path("homelab", "other"), make_body("1"))));
  CHECK(other.read_response(5s).status == 200);
  // Closing one frees its slot.
  first.reset();
  std::this_thread::sleep_for(300ms);
  RawConnection again(server.port(), "127.0.0.5");
  REQUIRE(again.send(make_post(write_path("homelab", "again"), make_body("2"))));
  CHECK(again.read_response(5s).status == 200);
}

TEST_CASE("hostile: a request trickled a byte at a time is cut off by the request deadline", "[hostile][slow]") {
  // Each byte comes well within the read timeout; only the whole-request
  // deadline can end these.
  ServerProcess server({"--request-timeout-s", "2", "--read-timeout-s", "10"});
  prefill(server, "trickle");
  auto before = snapshot_tree(server.data_dir());

  SECTION("headers") {
    RawConnection client(server.port(), "127.0.0.4");
    REQUIRE(client.send("POST " + write_path("homelab", "trickle") + " HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "));
    const auto start = Clock::now();
    RawResponse res;
    {
      std::vector<RawConnection*> one = {&client};
      Trickler trickle(one, 200ms, 'a');
      res = client.read_response(6s);
    }
    const auto took = Clock::now() - start;
    INFO("after " << std::chrono::duration<double>(took).count() << " s:\n" << res.raw);
    CHECK(res.status == 408);
    CHECK(check_error_body(res.body, "bad_request") == "");
    CHECK(took < 5s);
    CHECK(client.drain_until_closed(3s));
  }
  SECTION("body") {
    RawConnection client(server.port(), "127.0.0.4");
    const std::string body = make_body("[1,2,3]");
    REQUIRE(client.send(head_of("trickle", body.size() + 1000) + body));
    const auto start = Clock::now();
    RawResponse res;
    {
      std::vector<RawConnection*> one = {&client};
      Trickler trickle(one, 200ms, ' ');
      res = client.read_response(6s);
    }
    const auto took = Clock::now() - start;
    INFO("after " << std::chrono::duration<double>(took).count() << " s:\n" << res.raw);
    CHECK((res.status == 400 || res.status == 408));
    CHECK(took < 5s);
    CHECK(client.drain_until_closed(3s));
  }
  CHECK(tree_diff(before, snapshot_tree(server.data_dir())) == "");
  prefill(server, "after");
}

TEST_CASE("hostile: --help lists the connection and TLS flags", "[hostile]") {
  ExitResult result = run_server_to_exit({"--help"});
  REQUIRE(result.exited);
  CHECK(result.exit_code == 0);
  for (const char* flag : {"--request-timeout-s", "--max-connections-per-ip", "--tls-cert", "--tls-key"}) {
    INFO("flag " << flag << " in:\n" << result.out);
    CHECK(result.out.find(flag) != std::string::npos);
  }
  ExitResult bad = run_server_to_exit({"--max-connections-per-ip", "many"});
  CHECK(bad.exit_code == 2);
  CHECK(bad.err.find("--max-connections-per-ip") != std::string::npos);
}
