// sd_notify from writeapi-server (server/systemd_notify.h): the test plays
// systemd's part, binding the unix datagram socket named in NOTIFY_SOCKET,
// and reads what a Type=notify unit would be told. Built only when the
// server links libsystemd.
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "server_process.h"

using namespace writeapi::testing;
using namespace std::chrono_literals;

namespace {

// The service manager's end: a bound datagram socket.
class FakeNotifySocket {
 public:
  explicit FakeNotifySocket(const std::string& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    REQUIRE(path.size() < sizeof address.sun_path);
    std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  }
  ~FakeNotifySocket() { ::close(fd_); }

  // The next datagram, or "" when none came within `timeout` (a generous
  // bound so that a hung server fails the test instead of blocking it).
  std::string receive(std::chrono::milliseconds timeout = 10s) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) return "";
    char buffer[4096];
    ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
    return n > 0 ? std::string(buffer, static_cast<std::size_t>(n)) : "";
  }

  // Receives until a datagram containing `needle`; the datagrams seen.
  std::vector<std::string> receive_until(const std::string& needle) {
    std::vector<std::string> seen;
    while (true) {
      std::string message = receive();
      if (message.empty()) return seen;
      seen.push_back(message);
      if (message.find(needle) != std::string::npos) return seen;
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
};

// Sets environment variables for the servers started in its scope (the
// fixture's child inherits the environment) and unsets them afterwards.
class ScopedEnvironment {
 public:
  void set(const char* name, const std::string& value) {
    REQUIRE(::setenv(name, value.c_str(), 1) == 0);
    names_.push_back(name);
  }
  ~ScopedEnvironment() {
    for (const char* name : names_) ::unsetenv(name);
  }

 private:
  std::vector<const char*> names_;
};

bool contains_line(const std::string& message, const std::string& line) {
  return ("\n" + message + "\n").find("\n" + line + "\n") != std::string::npos;
}

}  // namespace

TEST_CASE("READY=1 reaches NOTIFY_SOCKET once the listener is bound, STOPPING=1 on SIGTERM", "[integration][systemd]") {
  TempDir dir;
  FakeNotifySocket manager(dir.path() + "/notify");
  ScopedEnvironment environment;
  environment.set("NOTIFY_SOCKET", dir.path() + "/notify");
  ServerProcess server({"--access-log", "off"});
  // The fixture returned once GET /healthz answered, so READY=1 has been
  // sent by now; it must name the bound port.
  const std::string ready = manager.receive();
  INFO("datagram: " << ready);
  CHECK(contains_line(ready, "READY=1"));
  CHECK(contains_line(ready, "STATUS=listening on http://127.0.0.1:" + std::to_string(server.port())));

  server.send_signal(SIGTERM);
  const std::vector<std::string> after = manager.receive_until("STOPPING=1");
  REQUIRE_FALSE(after.empty());
  CHECK(contains_line(after.back(), "STOPPING=1"));
  CHECK(server.wait_exit(15s) == 0);
}

TEST_CASE("WATCHDOG=1 is sent while WATCHDOG_USEC asks for it, never without", "[integration][systemd]") {
  TempDir dir;
  FakeNotifySocket manager(dir.path() + "/notify");
  ScopedEnvironment environment;
  environment.set("NOTIFY_SOCKET", dir.path() + "/notify");
  SECTION("with WATCHDOG_USEC") {
    // 0.2 s: pings every 0.1 s, so a few arrive quickly; only their arrival
    // is checked, not their spacing.
    environment.set("WATCHDOG_USEC", "200000");
    ServerProcess server({"--access-log", "off"});
    int pings = 0;
    for (int i = 0; i < 3; ++i) {
      const std::vector<std::string> seen = manager.receive_until("WATCHDOG=1");
      REQUIRE_FALSE(seen.empty());
      if (contains_line(seen.back(), "WATCHDOG=1")) ++pings;
    }
    CHECK(pings == 3);
  }
  SECTION("with WATCHDOG_USEC for another process") {
    environment.set("WATCHDOG_USEC", "200000");
    environment.set("WATCHDOG_PID", std::to_string(::getpid()));  // not the server's pid
    ServerProcess server({"--access-log", "off"});
    server.send_signal(SIGTERM);
    const std::vector<std::string> seen = manager.receive_until("STOPPING=1");
    REQUIRE_FALSE(seen.empty());
    for (const std::string& message : seen) {
      INFO("datagram: " << message);
      CHECK_FALSE(contains_line(message, "WATCHDOG=1"));
    }
    CHECK(server.wait_exit(15s) == 0);
  }
}
