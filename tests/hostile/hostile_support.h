// Tools for the hostile-client tests: sockets from a chosen loopback source
// address, the server's resident memory, a self-signed certificate, and a
// writeapi-server serving HTTPS.
#ifndef WRITEAPI_TESTS_HOSTILE_HOSTILE_SUPPORT_H_
#define WRITEAPI_TESTS_HOSTILE_HOSTILE_SUPPORT_H_

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "../integration/server_process.h"

namespace writeapi::testing {

// Resident memory of process `pid` in bytes (VmRSS of /proc/<pid>/status);
// 0 when unknown.
std::size_t resident_bytes(pid_t pid);

// Bound on the server's resident memory growth in the abuse tests. Builds
// with AddressSanitizer keep freed memory in quarantine (256 MiB by
// default) and shadow memory besides, so they get a looser bound.
std::size_t rss_growth_bound();

// A TCP connection to 127.0.0.1:port from `source_ip` (any 127.x.y.z
// address works on Linux loopback), for clients that must appear to come
// from distinct addresses. Non-blocking underneath; every call is bounded.
class ClientSocket {
 public:
  ClientSocket(int port, const char* source_ip);
  ~ClientSocket();
  ClientSocket(const ClientSocket&) = delete;
  ClientSocket& operator=(const ClientSocket&) = delete;

  bool connected() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  // Sends all of `bytes` within `timeout`; false on error or timeout.
  bool send(std::string_view bytes, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Reads one response (head, then Content-Length bytes, or until EOF)
  // within `timeout`. status 0 when none came.
  RawResponse read_response(std::chrono::milliseconds timeout);
  // True when the peer closes (EOF or reset) within `timeout`, discarding
  // any bytes that arrive first.
  bool wait_closed(std::chrono::milliseconds timeout);

 private:
  int fd_ = -1;
  std::string buffer_;
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
