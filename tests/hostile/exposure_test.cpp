// What the server exposes and depends on: an access log sink that stops
// reading must never block a request (lines are dropped and counted), log
// lines cannot be forged with control characters, bucket names never reach
// a listener without a credential, and the open-file limit is raised at
// start (or startup refuses a configuration that cannot fit).
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

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

// A pipe whose read end nobody reads until drain() starts a thread that
// does (so a server blocked on it can finish before it is stopped).
class StalledPipe {
 public:
  StalledPipe() {
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
    read_fd_ = fds[0];
    write_fd_ = fds[1];
    // Fill it: the server's first write already finds it full. The write
    // end goes back to blocking before the server inherits it (O_NONBLOCK
    // belongs to the open file, which the server shares).
    int flags = ::fcntl(write_fd_, F_GETFL);
    ::fcntl(write_fd_, F_SETFL, flags | O_NONBLOCK);
    std::string fill(4096, 'f');
    while (::write(write_fd_, fill.data(), fill.size()) > 0) filled_ += fill.size();
    ::fcntl(write_fd_, F_SETFL, flags);
  }
  ~StalledPipe() {
    close_write_end();
    stop_ = true;
    if (drainer_.joinable()) drainer_.join();
    ::close(read_fd_);
  }
  int write_fd() const { return write_fd_; }
  std::size_t filled() const { return filled_; }
  void close_write_end() {
    if (write_fd_ >= 0) ::close(write_fd_);
    write_fd_ = -1;
  }
  void drain() {
    if (drainer_.joinable()) return;
    ::fcntl(read_fd_, F_SETFL, ::fcntl(read_fd_, F_GETFL) | O_NONBLOCK);
    drainer_ = std::thread([this] {
      char sink[65536];
      while (!stop_.load()) {
        if (::read(read_fd_, sink, sizeof sink) <= 0) std::this_thread::sleep_for(5ms);
      }
    });
  }

 private:
  int read_fd_ = -1, write_fd_ = -1;
  std::size_t filled_ = 0;
  std::atomic<bool> stop_{false};
  std::thread drainer_;
};

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t length = sizeof addr;
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length) == 0)
    port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

std::string get_metrics(int port) {
  RawResponse res = raw_exchange(port, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", 5s);
  INFO(res.raw.substr(0, 300));
  REQUIRE(res.status == 200);
  return res.body;
}

// Writes to homelab (with its key) and failed writes with wrong keys to
// homelab, otherlab and buckets that do not exist.
void traffic_with_failed_auth(const ServerProcess& server) {
  prefill(server, "exposed");
  for (const std::string bucket : {"homelab", "otherlab", "secretlab-xyz", "nolab-4711"}) {
    RawResponse res =
        raw_exchange(server.port(), make_post(write_path(bucket, "k"), make_body("1", "wrong-key-0123456789")), 5s);
    INFO(bucket << ": " << res.raw);
    CHECK(res.status == 403);
  }
}

}  // namespace

TEST_CASE("exposure: an access log pipe nobody reads never blocks a request, drops are counted",
          "[hostile][exposure][access-log]") {
  StalledPipe pipe;
  INFO("pipe filled with " << pipe.filled() << " bytes before the server started");
  ServerOptions options;
  options.extra_args = {"--access-log", "-", "--fsync", "never", "--keep-alive-timeout-s", "60"};
  options.child.stdout_fd = pipe.write_fd();
  ServerProcess server(options);
  pipe.close_write_end();

  // More than the log's 4 MiB queue holds (~100 bytes a line): drops must
  // happen, and no request may wait for the sink.
  constexpr int kConnections = 4;
  constexpr int kPerConnection = 15000;
  std::atomic<int> answered{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kConnections; ++c) {
    clients.emplace_back([&, c] {
      RawConnection client(server.port(), "127.0.0.1");
      if (!client.connected()) return;
      const std::string request = c % 2 ? "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                                        : make_post(write_path("homelab", "log-" + std::to_string(c)), make_body("1"),
                                                    {"Content-Type: application/json", "Connection: keep-alive"});
      for (int i = 0; i < kPerConnection; ++i) {
        if (!client.send(request, 5s)) return;
        RawResponse res = client.read_response(5s);
        if (res.status != 200) return;  // a stuck worker: give up on this connection
        answered.fetch_add(1);
      }
    });
  }
  for (auto& t : clients) t.join();
  CHECK(answered.load() == kConnections * kPerConnection);

  RawResponse metrics =
      raw_exchange(server.port(), "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", 5s);
  INFO("metrics: " << metrics.status_line);
  CHECK(metrics.status == 200);
  auto dropped = metric_value(metrics.body, "writeapi_access_log_dropped_total");
  CHECK(dropped.has_value());
  if (dropped) CHECK(*dropped > 0);
  // Let blocked writers (if any) finish so the server can stop cleanly.
  pipe.drain();
}

TEST_CASE("exposure: control characters in logged fields are escaped", "[hostile][exposure][access-log]") {
  ServerProcess server(long_keep_alive());
  const std::vector<std::string> requests = {
      "GET /healthz%0Ainjected%0D%0A2026-01-01T00:00:00.000Z HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
      "GET /a\x1b[2Jb HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
      "GET /a\x7f"
      "b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
      make_post(write_path("homelab", "logged"), make_body("1", kAccessKey, "dev\\ninjected")),
      make_post(write_path("homelab", "logged"), make_body("1", kAccessKey,
                                                           "dev\x7f"
                                                           "del")),
      make_post(write_path("homelab", "logged"), make_body("1", kAccessKey, "dev\\u001b[2J")),
      "GET /last-marker HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
  };
  for (const auto& r : requests) raw_exchange(server.port(), r, 3s);
  const auto deadline = Clock::now() + 5s;
  while (server.access_log_contents().find("/last-marker") == std::string::npos && Clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  const std::string log = server.access_log_contents();
  INFO("access log:\n" << log);
  REQUIRE(log.find("/last-marker") != std::string::npos);
  for (const auto& line : split_lines(log)) {
    INFO("line: " << line);
    // Each line is one record: it starts with its timestamp and holds no
    // control character.
    CHECK(line.rfind("20", 0) == 0);
    bool clean = true;
    for (unsigned char c : line)
      if (c < 0x20 || c == 0x7f) clean = false;
    CHECK(clean);
  }
}

TEST_CASE("exposure: /metrics on the main listener names no bucket", "[hostile][exposure][metrics]") {
  ServerProcess server(long_keep_alive());
  traffic_with_failed_auth(server);
  const std::string metrics = get_metrics(server.port());
  INFO("metrics:\n" << metrics);
  for (const char* name : {"homelab", "otherlab", "secretlab-xyz", "nolab-4711"}) {
    INFO("bucket " << name);
    CHECK(metrics.find(name) == std::string::npos);
  }
  // The series without a bucket label stay.
  CHECK(metrics.find("writeapi_http_requests_total") != std::string::npos);
}

TEST_CASE("exposure: --metrics-listen serves the per-bucket series on a port of its own",
          "[hostile][exposure][metrics]") {
  const int metrics_port = free_port();
  REQUIRE(metrics_port > 0);
  ServerProcess server(
      {"--metrics-listen", "127.0.0.1:" + std::to_string(metrics_port), "--keep-alive-timeout-s", "60"});
  traffic_with_failed_auth(server);
  const std::string main_metrics = get_metrics(server.port());
  const std::string private_metrics = get_metrics(metrics_port);
  INFO("main listener:\n" << main_metrics << "\nmetrics listener:\n" << private_metrics);
  CHECK(main_metrics.find("homelab") == std::string::npos);
  CHECK(main_metrics.find("otherlab") == std::string::npos);
  // Failed auth on known buckets is counted per bucket there.
  CHECK(private_metrics.find("homelab") != std::string::npos);
  CHECK(private_metrics.find("otherlab") != std::string::npos);
}

TEST_CASE("exposure: under ulimit -n 1024 with a higher hard limit the server raises its limit and opens objects",
          "[hostile][exposure][rlimit]") {
  rlimit own{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &own) == 0);
  if (own.rlim_max < 4096) {
    WARN("hard RLIMIT_NOFILE is " << own.rlim_max << " (< 4096): cannot test raising it; skipped");
    return;
  }
  const std::uint64_t hard = std::min<std::uint64_t>(own.rlim_max, 20000);
  ServerOptions options;
  options.extra_args = {"--fsync", "never", "--keep-alive-timeout-s", "60"};
  options.child.open_files_limit = std::make_pair(std::uint64_t{1024}, hard);
  ServerProcess server(options);
  const std::uint64_t soft = open_files_soft_limit(server.pid());
  INFO("server soft RLIMIT_NOFILE " << soft << ", hard " << hard);
  CHECK(soft == hard);

  // 1,100 distinct new objects: more than a 1,024 limit could hold open
  // beside the server's other descriptors with the default --max-open-files.
  // (300, the figure in the issue, fits under 1,024 when written one at a
  // time, so it would not show the limit.)
  RawConnection client(server.port(), "127.0.0.1");
  REQUIRE(client.connected());
  int ok = 0, unavailable = 0, other = 0;
  for (int i = 0; i < 1100; ++i) {
    if (!client.send(make_post(write_path("homelab", "fd-" + std::to_string(i)), make_body("1"),
                               {"Content-Type: application/json", "Connection: keep-alive"}),
                     5s))
      break;
    RawResponse res = client.read_response(5s);
    if (res.status == 200)
      ++ok;
    else if (res.status == 503)
      ++unavailable;
    else {
      ++other;
      UNSCOPED_INFO("object " << i << ": " << res.raw.substr(0, 300));
      break;
    }
  }
  INFO("200: " << ok << ", 503: " << unavailable << ", other: " << other);
  CHECK(ok == 1100);
  CHECK(unavailable == 0);
  CHECK(server.read_object("homelab", "fd-1099") == "1\n");
}

TEST_CASE("exposure: with hard limit 1024, --max-connections 5000 refuses to start, defaults start",
          "[hostile][exposure][rlimit]") {
  TempDir dir;
  write_keys_file(dir.path() + "/keys.json");
  ChildSetup child;
  child.open_files_limit = std::make_pair(std::uint64_t{1024}, std::uint64_t{1024});
  std::vector<std::string> base = {"--port",       "0",
                                   "--host",       "127.0.0.1",
                                   "--data-dir",   dir.path() + "/data",
                                   "--keys",       dir.path() + "/keys.json",
                                   "--access-log", "off"};
  std::vector<std::string> args = base;
  args.insert(args.end(), {"--max-connections", "5000"});
  ExitResult refused = run_server_to_exit(args, 5s, child);
  INFO("stderr:\n" << refused.err);
  CHECK(refused.exited);
  CHECK(refused.exit_code != 0);
  const bool names_the_limit =
      refused.err.find("open files") != std::string::npos || refused.err.find("RLIMIT_NOFILE") != std::string::npos;
  CHECK(names_the_limit);

  ServerOptions options;
  options.child = child;
  ServerProcess server(options);
  CHECK(open_files_soft_limit(server.pid()) == 1024);
  for (int i = 0; i < 20; ++i) prefill(server, "small-" + std::to_string(i));
}
