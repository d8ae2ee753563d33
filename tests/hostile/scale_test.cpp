// Connections at scale: idle keep-alive connections and half-arrived
// requests cost no worker. 10,000 idle connections are held with bounded
// memory and a thread count that does not grow with them while another
// address is served; slow-body clients from many addresses are cut by the
// minimum body rate long before the request deadline; one address holding
// many slow requests does not take every worker. Labelled "scale": these
// take tens of seconds each.
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../integration/checks.h"
#include "hostile_checks.h"
#include "hostile_support.h"
#include "server_process.h"

using namespace std::chrono_literals;
using namespace writeapi::testing;

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

std::string slow_head(std::string_view key, std::size_t content_length) {
  return "POST " + write_path("homelab", key) +
         " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(content_length) + "\r\n\r\n";
}

// One ordinary write from `source_ip` on a new connection: its latency, or
// a negative value when it was not answered 200 within `bound`.
double timed_write(int port, const char* source_ip, std::string_view key, std::chrono::milliseconds bound) {
  const auto start = Clock::now();
  RawConnection client(port, source_ip);
  if (!client.connected()) return -1;
  if (!client.send(make_post(write_path("homelab", key), make_body("1")), bound)) return -1;
  RawResponse res = client.read_response(bound);
  if (res.status != 200) {
    UNSCOPED_INFO("write from " << source_ip << ": " << (res.raw.empty() ? "no answer" : res.raw.substr(0, 300)));
    return -1;
  }
  return seconds_since(start);
}

// Whether the server closed `socket` or sent it something unasked.
bool disturbed(RawConnection& socket) {
  pollfd p{socket.fd(), POLLIN | POLLRDHUP, 0};
  return ::poll(&p, 1, 0) > 0;
}

}  // namespace

TEST_CASE("scale: 10,000 idle keep-alive connections are held while another address is served", "[hostile][scale]") {
  constexpr std::size_t kIdle = 10000;
  const std::uint64_t own_limit = raise_own_open_files_limit();
  if (own_limit < kIdle + 1000) {
    WARN("RLIMIT_NOFILE of the test is " << own_limit << " (< " << kIdle + 1000 << "): skipped");
    return;
  }
  ServerProcess server({"--max-connections", "12000", "--keep-alive-timeout-s", "300", "--fsync", "never"});
  const char* sources[] = {"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"};

  std::vector<std::unique_ptr<RawConnection>> idle;
  idle.reserve(kIdle);
  std::size_t failures = 0;
  const std::string request = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  // Opens connections in batches of 200 until `target`; each sends one
  // request, gets its answer and stays open.
  auto open_until = [&](std::size_t target) {
    while (idle.size() < target && failures < 50) {
      std::size_t begin = idle.size();
      std::size_t end = std::min(target, begin + 200);
      for (std::size_t i = begin; i < end; ++i) {
        idle.push_back(std::make_unique<RawConnection>(server.port(), sources[i % 4]));
        if (!idle.back()->connected() || !idle.back()->send(request, 2s)) ++failures;
      }
      for (std::size_t i = begin; i < end; ++i) {
        if (!idle[i]->connected()) continue;
        RawResponse res = idle[i]->read_response(5s);
        if (res.status != 200) {
          if (failures < 5)
            UNSCOPED_INFO("connection " << i << ": " << (res.raw.empty() ? "no answer" : res.raw.substr(0, 200)));
          ++failures;
        }
      }
    }
  };

  const auto start = Clock::now();
  open_until(100);
  const std::size_t threads_at_100 = thread_count(server.pid());
  const std::size_t rss_at_100 = resident_bytes(server.pid());
  open_until(kIdle);
  const double open_seconds = seconds_since(start);
  const std::size_t threads_at_10000 = thread_count(server.pid());
  const std::size_t rss_at_10000 = resident_bytes(server.pid());

  // Meanwhile: 100 sequential writes from another address.
  std::vector<double> latencies;
  int unanswered = 0;
  for (int i = 0; i < 100; ++i) {
    double latency = timed_write(server.port(), "127.0.0.9", "responsive", 5s);
    if (latency < 0)
      ++unanswered;
    else
      latencies.push_back(latency);
  }
  std::sort(latencies.begin(), latencies.end());
  const double p99 = latencies.empty() ? -1 : latencies[std::min(latencies.size() - 1, latencies.size() * 99 / 100)];
  const double p50 = latencies.empty() ? -1 : latencies[latencies.size() / 2];
  WARN("10,000 idle connections opened in " << open_seconds << " s; writes from 127.0.0.9: p50 " << p50 * 1000
                                            << " ms, p99 " << p99 * 1000 << " ms (target p99 < 100 ms)");

  std::size_t dropped = 0;
  for (auto& socket : idle)
    if (socket->connected() && disturbed(*socket)) ++dropped;

  const std::size_t rss_bound = (address_sanitizer_build() ? 768u : 128u) << 20;
  INFO("held " << idle.size() << " connections with " << failures << " failures; threads " << threads_at_100
               << " at 100, " << threads_at_10000 << " at 10,000; RSS " << (rss_at_100 >> 20) << " MiB at 100, "
               << (rss_at_10000 >> 20) << " MiB at 10,000 (bound " << (rss_bound >> 20) << " MiB); " << dropped
               << " idle connections closed by the server");
  CHECK(failures == 0);
  CHECK(idle.size() == kIdle);
  CHECK(unanswered == 0);
  CHECK(dropped == 0);
  CHECK(rss_at_10000 < rss_bound);
  CHECK(threads_at_10000 > 0);
  CHECK(threads_at_10000 <= threads_at_100 + 64);
  CHECK(server.read_object("homelab", "responsive").size() == 200);  // 100 lines of "1\n"
  idle.clear();                                                      // close them before the server stops
}

TEST_CASE("scale: 200 slow-body clients from 50 addresses are cut by --min-body-rate, another client is served",
          "[hostile][scale][slow]") {
  ServerProcess server({"--min-body-rate", "1024", "--request-timeout-s", "60", "--fsync", "never"});
  constexpr int kSlow = 200;
  std::vector<std::unique_ptr<RawConnection>> slow;
  std::vector<double> cut_after(kSlow, -1);
  std::vector<int> cut_status(kSlow, 0);
  for (int i = 0; i < kSlow; ++i) {
    std::string source = "127.0.1." + std::to_string(1 + i % 50);
    slow.push_back(std::make_unique<RawConnection>(server.port(), source.c_str()));
    REQUIRE(slow.back()->connected());
    REQUIRE(slow.back()->send(slow_head("slow", 100000) + " "));
  }
  const auto start = Clock::now();

  // A normal client, from another address, after 3 s.
  std::atomic<double> normal_latency{-2};
  std::thread normal([&] {
    std::this_thread::sleep_for(3s);
    normal_latency = timed_write(server.port(), "127.0.1.200", "normal", 5s);
  });

  // One byte a second on each connection until the server cuts it.
  int remaining = kSlow;
  while (remaining > 0 && Clock::now() - start < 25s) {
    for (int i = 0; i < kSlow; ++i) {
      if (cut_after[i] >= 0) continue;
      RawConnection& s = *slow[i];
      bool open = s.poll_incoming();
      if (!open || !s.buffered().empty() || !s.send(" ", 20ms)) {
        cut_after[i] = seconds_since(start);
        cut_status[i] = parse_response(s.buffered()).status;
        --remaining;
      }
    }
    std::this_thread::sleep_for(1s);
  }
  normal.join();

  double latest = 0;
  int wrong_status = 0;
  std::string statuses;
  for (int i = 0; i < kSlow; ++i) {
    latest = std::max(latest, cut_after[i]);
    if (cut_status[i] != 0 && cut_status[i] != 408) {
      if (++wrong_status <= 5) statuses.append(1, ' ').append(std::to_string(cut_status[i]));
    }
  }
  INFO(wrong_status << " connections were answered with a status other than 408:" << statuses);
  INFO(remaining << " of " << kSlow << " slow connections still open after " << seconds_since(start)
                 << " s; the last cut came after " << latest << " s; normal write latency " << normal_latency.load()
                 << " s");
  CHECK(remaining == 0);
  CHECK(latest < 20);
  CHECK(wrong_status == 0);
  CHECK(normal_latency.load() >= 0);
  CHECK(!server.object_exists("homelab", "slow"));
  CHECK(server.read_object("homelab", "normal") == "1\n");
  slow.clear();
}

namespace {

// `count` connections from 127.0.2.1 send a valid head (Content-Length
// 100000) and trickle their body a byte every 100 ms; meanwhile 127.0.2.2
// writes three times. Each write must be answered within 5 s.
void one_address_holds_slow_requests(const ServerProcess& server, int count) {
  std::vector<std::unique_ptr<RawConnection>> slow;
  int refused = 0;
  for (int i = 0; i < count; ++i) {
    slow.push_back(std::make_unique<RawConnection>(server.port(), "127.0.2.1"));
    if (!slow.back()->connected() || !slow.back()->send(slow_head("slow", 100000) + "{", 2s)) ++refused;
  }
  std::atomic<bool> stop{false};
  std::thread trickle([&] {
    while (!stop.load()) {
      for (auto& s : slow)
        if (s->connected()) s->send(" ", 5ms);
      std::this_thread::sleep_for(100ms);
    }
  });
  std::this_thread::sleep_for(1s);
  std::vector<double> latencies;
  for (int round = 0; round < 3; ++round) latencies.push_back(timed_write(server.port(), "127.0.2.2", "fair", 5s));
  stop = true;
  trickle.join();
  INFO(count << " slow connections from 127.0.2.1 (" << refused << " not established); write latencies from "
             << "127.0.2.2: " << latencies[0] << ", " << latencies[1] << ", " << latencies[2] << " s");
  for (double latency : latencies) CHECK(latency >= 0);
  CHECK(server.read_object("homelab", "fair") == "1\n1\n1\n");
  CHECK(!server.object_exists("homelab", "slow"));
  slow.clear();
}

}  // namespace

TEST_CASE("scale: 200 slow requests from one address leave workers to another address", "[hostile][scale][slow]") {
  ServerProcess server({"--fsync", "never"});
  one_address_holds_slow_requests(server, 200);
}

TEST_CASE("scale: 600 slow requests from one uncapped address (behind a proxy) leave workers to another",
          "[hostile][scale][slow]") {
  const std::uint64_t own_limit = raise_own_open_files_limit();
  if (own_limit < 2000) {
    WARN("RLIMIT_NOFILE of the test is " << own_limit << ": skipped");
    return;
  }
  // --max-connections-per-ip 0: no per-address cap; only the per-address
  // share of workers protects the others.
  ServerProcess server({"--max-connections-per-ip", "0", "--fsync", "never"});
  one_address_holds_slow_requests(server, 600);
}

TEST_CASE("scale: bodies from six addresses filling the buffer budget do not keep a small request out",
          "[hostile][scale][budget]") {
  // 8 MiB of buffers; each address may hold a quarter. Six addresses each
  // start a 4 MiB body, send 1.9 MiB of it and stop: together more than the
  // budget, each within its share.
  ServerProcess server(
      {"--max-buffer-memory", "8MiB", "--fsync", "never", "--request-timeout-s", "60", "--keep-alive-timeout-s", "60"});
  std::vector<std::unique_ptr<RawConnection>> attackers;
  const std::string part(1900 * 1024, 'x');
  for (int i = 0; i < 6; ++i) {
    const std::string source = "127.0.4." + std::to_string(10 + i);
    attackers.push_back(std::make_unique<RawConnection>(server.port(), source.c_str()));
    REQUIRE(attackers.back()->connected());
    attackers.back()->send("POST " + write_path("homelab", "big") +
                               " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
                               std::to_string(4u << 20) + "\r\n\r\n" + part,
                           2s);  // the server may stop reading: a short send is the point
  }
  std::this_thread::sleep_for(500ms);
  // A sensor's body of 40 KB from another address is read from the budget's
  // reserve and answered at once.
  const std::string body = make_body("\"" + std::string(40 * 1024, 'y') + "\"");
  RawConnection victim(server.port(), "127.0.4.99");
  REQUIRE(victim.connected());
  const auto start = Clock::now();
  REQUIRE(victim.send(make_post(write_path("homelab", "small"), body)));
  RawResponse res = victim.read_response(10s);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  WARN("small request answered in " << took.count() << " ms while the budget was full");
  CHECK(res.status == 200);
  CHECK(server.object_exists("homelab", "small"));
  CHECK(!server.object_exists("homelab", "big"));
}

TEST_CASE("scale: heavy requests from one address take turns with another address's", "[hostile][scale][heavy]") {
  // Compressed bodies run at most a few at once; the rest wait for a slot.
  // One address queues 200 of them (each inflating to 8 MiB, refused 403
  // after the whole parse); another address's three small compressed
  // writes must be served in turn with them, not after the whole queue.
  ServerProcess server({"--fsync", "never", "--keep-alive-timeout-s", "60", "--request-timeout-s", "120"});
  const std::string heavy =
      gzip_compress("{\"accessKey\":\"not-the-key\",\"data\":\"" + std::string(8u << 20, 'a') + "\"}");
  const std::string heavy_request = "POST " + write_path("homelab", "heavy") +
                                    " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                    "Content-Encoding: gzip\r\nContent-Length: " +
                                    std::to_string(heavy.size()) + "\r\n\r\n" + heavy;
  constexpr int kConnections = 50, kPipelined = 4;
  std::vector<std::unique_ptr<RawConnection>> attackers;
  std::string pipelined;
  for (int i = 0; i < kPipelined; ++i) pipelined += heavy_request;
  for (int i = 0; i < kConnections; ++i) {
    attackers.push_back(std::make_unique<RawConnection>(server.port(), "127.0.5.2"));
    REQUIRE(attackers.back()->connected());
    REQUIRE(attackers.back()->send(pipelined, 10s));
  }
  std::this_thread::sleep_for(200ms);  // the queue is there

  const std::string small = gzip_compress(make_body("[1]"));
  for (int i = 0; i < 3; ++i) {
    RawConnection victim(server.port(), "127.0.5.3");
    REQUIRE(victim.connected());
    REQUIRE(victim.send("POST " + write_path("homelab", "victim") +
                        " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                        "Content-Length: " +
                        std::to_string(small.size()) + "\r\n\r\n" + small));
    RawResponse res = victim.read_response(120s);
    CHECK(res.status == 200);
  }
  // How much of the other address's queue had run by then: with turns,
  // a few slots' worth; first come first served, all of it.
  std::size_t answered = 0;
  for (auto& a : attackers) {
    a->poll_incoming();
    answered += count_status_lines(a->buffered());
  }
  WARN("the other address's heavy requests answered before the third small write: " << answered << " of "
                                                                                    << kConnections * kPipelined);
  CHECK(answered < kConnections * kPipelined / 2);
  CHECK(server.read_object("homelab", "victim") == "1\n1\n1\n");
  attackers.clear();
}

TEST_CASE("scale: a heavy request whose deadline passes while it waits for a slot is refused 503, gone client or not",
          "[hostile][scale][heavy]") {
  ServerProcess server({"--request-timeout-s", "1", "--min-body-rate", "0", "--max-body", "50000000", "--fsync",
                        "never", "--keep-alive-timeout-s", "60"});
  // Long heavy runs keep the slots taken: 40 MB once inflated, refused 403
  // (wrong key) after the whole parse, from eight addresses in a loop.
  const std::string big =
      gzip_compress("{\"accessKey\":\"wrong\",\"data\":\"" + std::string(40u << 20, 'a') + "\"}", 16 + 15, 1);
  const std::string big_request = "POST " + write_path("homelab", "big") +
                                  " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                                  "Connection: close\r\nContent-Length: " +
                                  std::to_string(big.size()) + "\r\n\r\n" + big;
  std::atomic<bool> stop{false};
  std::vector<std::thread> flood;
  for (int i = 0; i < 8; ++i) {
    flood.emplace_back([&, i] {
      const std::string source = "127.0.6." + std::to_string(2 + i);
      while (!stop) {
        RawConnection c(server.port(), source.c_str());
        if (!c.connected() || !c.send(big_request, 10s)) continue;
        bool closed = false;
        c.read_to_eof(10s, &closed);
      }
    });
  }
  std::this_thread::sleep_for(1s);
  const std::string small = gzip_compress(make_body("[1]"));
  const std::string small_head = "POST " + write_path("homelab", "small") +
                                 " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n"
                                 "Content-Length: " +
                                 std::to_string(small.size()) + "\r\n\r\n";
  int served = 0, refused = 0;
  for (int round = 0; round < 4; ++round) {
    // Heads now, bodies just before the deadline: the requests then wait
    // for a slot while their deadline passes.
    std::vector<std::unique_ptr<RawConnection>> victims;
    for (int k = 0; k < 4; ++k) {
      const std::string source = "127.0.6." + std::to_string(50 + k);
      victims.push_back(std::make_unique<RawConnection>(server.port(), source.c_str()));
      REQUIRE(victims.back()->connected());
      REQUIRE(victims.back()->send(small_head));
    }
    std::this_thread::sleep_for(850ms);
    for (auto& v : victims) REQUIRE(v->send(small));
    if (round % 2 == 0) {
      // Gone before the answer: reset (SO_LINGER 0), the refusal's send fails.
      std::this_thread::sleep_for(50ms);
      for (auto& v : victims) {
        linger hard{1, 0};
        ::setsockopt(v->fd(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
      }
      victims.clear();
      std::this_thread::sleep_for(500ms);
      continue;
    }
    for (auto& v : victims) {
      RawResponse res = v->read_response(20s);
      INFO(res.raw);
      CHECK((res.status == 200 || res.status == 503));
      if (res.status == 503) CHECK(check_error_body(res.body, "server_busy") == "");
      (res.status == 200 ? served : refused)++;
    }
  }
  stop = true;
  for (auto& t : flood) t.join();
  WARN("small heavy writes served in time: " << served << ", refused at their deadline: " << refused);
  CHECK(served + refused == 8);
  // Every acknowledged write is stored (the reset rounds' may be too).
  auto lines = split_lines(server.read_object("homelab", "small"));
  CHECK(lines.size() >= static_cast<std::size_t>(served));
  for (const auto& line : lines) CHECK(line == "1");
  prefill(server, "after");
}
