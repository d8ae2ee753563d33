// Tools for the hostile-client tests: sockets from a chosen loopback source
// address, the server's resident memory, a self-signed certificate, and a
// writeapi-server serving HTTPS.
#ifndef WRITEAPI_TESTS_HOSTILE_HOSTILE_SUPPORT_H_
#define WRITEAPI_TESTS_HOSTILE_HOSTILE_SUPPORT_H_

#include <sys/types.h>

#include <cstdint>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "server_process.h"

namespace writeapi::testing {

// Resident memory of process `pid` in bytes (VmRSS of /proc/<pid>/status);
// 0 when unknown.
std::size_t resident_bytes(pid_t pid);

// Threads of process `pid` (Threads: of /proc/<pid>/status); 0 when unknown.
std::size_t thread_count(pid_t pid);

// The soft RLIMIT_NOFILE of process `pid` (/proc/<pid>/limits); 0 when
// unknown.
std::uint64_t open_files_soft_limit(pid_t pid);

// Raises this process's soft RLIMIT_NOFILE to its hard limit; returns the
// soft limit now in force.
std::uint64_t raise_own_open_files_limit();

// Bound on the server's resident memory growth in the abuse tests. Builds
// with AddressSanitizer keep freed memory in quarantine (256 MiB by
// default) and shadow memory besides, so they get a looser bound.
std::size_t rss_growth_bound();

// Lines starting with "HTTP/1." in a byte stream of responses: how many
// responses (interim 1xx ones included) the server sent.
std::size_t count_status_lines(std::string_view bytes);

// The first response in `bytes` (head, then Content-Length bytes of body).
RawResponse parse_response(std::string_view bytes);

// One request on a fresh connection, read to the end: what the smuggling
// tests need to prove no second response ever comes back.
struct Exchange {
  RawResponse first;    // the first response
  std::string bytes;    // everything received
  bool closed = false;  // the server closed within the timeout
  std::size_t status_lines = 0;
};
// Sends `request` (a send cut short by the server closing is not an
// error) and reads until the server closes or `timeout` passes.
Exchange exchange_to_eof(int port, std::string_view request,
                         std::chrono::milliseconds timeout = std::chrono::seconds(5),
                         const char* source_ip = "127.0.0.1");

// Watches the resident memory of `pid` every 10 ms from construction until
// stop() or destruction, keeping the peak growth over the first reading;
// kills the process (SIGKILL) when growth passes `kill_growth`, so a test of
// an unbounded server cannot exhaust the machine's memory.
class RssWatch {
 public:
  RssWatch(pid_t pid, std::size_t kill_growth);
  ~RssWatch();
  RssWatch(const RssWatch&) = delete;
  RssWatch& operator=(const RssWatch&) = delete;
  void stop();
  std::size_t baseline() const { return baseline_; }
  std::size_t peak_growth() const { return peak_growth_.load(); }
  bool killed() const { return killed_.load(); }

 private:
  pid_t pid_;
  std::size_t baseline_;
  std::atomic<std::size_t> peak_growth_{0};
  std::atomic<bool> killed_{false}, stop_{false};
  std::thread thread_;
};

// A self-signed certificate for "localhost" and IP 127.0.0.1 (EC P-256,
// valid for a day) and its key, written as PEM files.
void write_self_signed_certificate(const std::string& cert_path, const std::string& key_path);

// writeapi-server serving HTTPS on an ephemeral port with a fresh data
// directory and the test keys (write_keys_file); stopped with SIGTERM on
// destruction, which must end it with status 0.
class TlsServerProcess {
 public:
  explicit TlsServerProcess(std::vector<std::string> extra_args = {});
  ~TlsServerProcess();
  TlsServerProcess(const TlsServerProcess&) = delete;
  TlsServerProcess& operator=(const TlsServerProcess&) = delete;

  int port() const { return port_; }
  const std::string& cert_path() const { return cert_path_; }
  const std::string& data_dir() const { return data_dir_; }
  std::string stderr_contents() const { return read_file(stderr_path_); }
  std::string read_object(std::string_view bucket, std::string_view key) const;

 private:
  TempDir root_;
  std::string data_dir_, keys_path_, cert_path_, key_path_, stderr_path_;
  pid_t pid_ = -1;
  int port_ = -1;
};

}  // namespace writeapi::testing

#endif  // WRITEAPI_TESTS_HOSTILE_HOSTILE_SUPPORT_H_
