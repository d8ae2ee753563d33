// Test fixture for the integration tests: runs the real writeapi-server
// binary as a child process on an ephemeral port, with a fresh data
// directory, keys file and access log, and tools to talk to it (cpp-httplib
// for ordinary requests, raw sockets for exact bytes on the wire).
#ifndef WRITEAPI_TESTS_INTEGRATION_SERVER_PROCESS_H_
#define WRITEAPI_TESTS_INTEGRATION_SERVER_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api_document.h"
#include "gzip.h"
#include "temp_dir.h"

namespace httplib {
class Client;
}

namespace writeapi::testing {

// A second bucket the test keys file knows, with its own key.
inline constexpr std::string_view kOtherBucket = "otherlab";
inline constexpr std::string_view kOtherAccessKey = "0123456789abcdef0123456789abcdef-other-bucket-key";

// Path of the server binary under test: $WRITEAPI_SERVER_BINARY if set, else
// the one built with the tests (set by CMake).
const char* server_binary();

// The port in a startup line "...<marker>PORT ..." of `text` (e.g. marker
// "listening on http://127.0.0.1:"); -1 until the line is complete.
int announced_port(std::string_view text, std::string_view marker);

// The front end under test: "server" (writeapi-server, the default) or
// "asio" (examples/asio-server), from $WRITEAPI_FRONT_END. The Write API
// cases run against both; cases of what only writeapi-server has (access
// log, metrics, its connection layer's flags) are tagged [server-only].
std::string_view front_end();
bool testing_asio_front_end();

// Writes a keys file granting kAccessKey on "homelab" and kOtherAccessKey on
// kOtherBucket.
void write_keys_file(const std::string& path);

// Every file and directory under `root` (relative path -> contents; for
// directories the value is "<dir>"), to prove a request changed nothing.
std::map<std::string, std::string> snapshot_tree(const std::string& root);
// "" when the two snapshots are equal, else what was added, removed or
// changed (for assertion messages).
std::string tree_diff(const std::map<std::string, std::string>& before,
                      const std::map<std::string, std::string>& after);

// Splits into lines on '\n'; a trailing piece without '\n' is returned too.
std::vector<std::string> split_lines(std::string_view text);

// In a child between fork and exec (async-signal-safe calls only): closes
// every descriptor from `first_fd` up (the test's other sockets must not
// leak into the child) and starts with no signal blocked and SIGPIPE at its
// default, whatever the test process set.
void reset_child_after_fork(int first_fd);

// How the server's child process is set up before exec, for tests of what
// the server does with its environment.
struct ChildSetup {
  // >= 0: the server's standard output is this descriptor (e.g. the write
  // end of a pipe nobody reads) instead of a file. The caller keeps it.
  int stdout_fd = -1;
  // RLIMIT_NOFILE (soft, hard) set in the child; unset: inherited.
  std::optional<std::pair<std::uint64_t, std::uint64_t>> open_files_limit;
};

// Runs the server binary with exactly `args` (for the asio front end
// without "--access-log off"), waits for it to exit (killing
// it after `timeout`), and reports what happened.
struct ExitResult {
  bool exited = false;  // false: still running at the timeout (killed)
  int exit_code = -1;   // when exited normally
  int signal = 0;       // when killed by a signal
  std::string out;      // standard output
  std::string err;      // standard error
  std::chrono::milliseconds elapsed{0};
};
ExitResult run_server_to_exit(const std::vector<std::string>& args,
                              std::chrono::milliseconds timeout = std::chrono::seconds(10),
                              const ChildSetup& child = {});

struct ServerOptions {
  std::vector<std::string> extra_args;  // appended after the fixture's flags
  // When set, the destructor stops the server with SIGTERM and CHECKs that it
  // exits with status 0.
  bool check_clean_exit = true;
  ChildSetup child;
};

class ServerProcess {
 public:
  explicit ServerProcess(ServerOptions options = {});
  explicit ServerProcess(std::vector<std::string> extra_args);
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  int port() const { return port_; }
  // The port of --metrics-listen ADDR:0 (read from the server's startup
  // line); -1 without that flag.
  int metrics_port() const;
  pid_t pid() const { return pid_; }
  const std::string& data_dir() const { return data_dir_; }
  const std::string& keys_path() const { return keys_path_; }
  const std::string& access_log_path() const { return access_log_path_; }
  const std::string& stderr_path() const { return stderr_path_; }
  std::string access_log_contents() const;
  std::string stderr_contents() const;
  std::string stdout_contents() const;

  // <data>/<bucket>/<key>.jsonl
  std::string object_path(std::string_view bucket, std::string_view key) const;
  std::string read_object(std::string_view bucket, std::string_view key) const;
  bool object_exists(std::string_view bucket, std::string_view key) const;

  // A client for this server (keep-alive on, 10 s timeouts).
  std::unique_ptr<httplib::Client> client() const;
  // The value of one sample of GET /metrics (see metric_value); nullopt
  // when absent or when /metrics does not answer 200.
  std::optional<double> metric(std::string_view name_with_labels) const;

  // True while the child has not exited.
  bool running();
  // Sends `sig`.
  void send_signal(int sig);
  // Waits for the child to exit; nullopt on timeout. The value is the exit
  // status (0-255), or 128 + signal when killed by a signal.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  // SIGTERM, wait up to `timeout`, SIGKILL as a fallback. Returns the exit
  // status as wait_exit does (-1 if it had to be killed).
  int terminate(std::chrono::milliseconds timeout = std::chrono::seconds(15));

  // Waits until the access log has at least `lines` lines; returns the
  // number it has (may be fewer on timeout).
  std::size_t wait_for_access_log_lines(std::size_t lines,
                                        std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;

 private:
  void start(ServerOptions options);

  TempDir root_;
  std::string data_dir_, keys_path_, access_log_path_, stderr_path_, stdout_path_;
  ServerOptions options_;
  pid_t pid_ = -1;
  int port_ = -1;
  std::optional<int> exit_status_;
};

// A parsed HTTP response read from a raw socket.
struct RawResponse {
  int status = 0;  // 0 when nothing (or garbage) came back
  std::string status_line;
  std::multimap<std::string, std::string> headers;  // lowercase names
  std::string body;
  std::string raw;
  std::string header(std::string_view lowercase_name) const;  // "" if absent
};

// Fills response->status_line, status and headers (lowercase names, values
// without surrounding blanks) from a response head without its final empty
// line. Shared by every raw client of the tests.
void parse_response_head(std::string_view head, RawResponse* response);

// A plain TCP connection to 127.0.0.1:port for exact bytes on the wire,
// from `source_ip` when given (any 127.x.y.z address works on Linux
// loopback: clients that must appear to come from distinct addresses).
// Non-blocking underneath; every call is bounded by its timeout. The one
// raw HTTP client of the tests.
class RawConnection {
 public:
  explicit RawConnection(int port, const char* source_ip = nullptr);
  ~RawConnection();
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool connected() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  // Writes all of `bytes` within `timeout`; false on error (e.g. the peer
  // reset) or timeout.
  bool send(std::string_view bytes, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Reads one response (headers, then Content-Length bytes or chunked body,
  // or until EOF when neither is given; none for 1xx). status 0 on timeout
  // / EOF.
  RawResponse read_response(std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // True when the server closes the connection (EOF or reset) within
  // `timeout` with no further bytes; false if bytes arrive or time runs out.
  bool wait_closed(std::chrono::milliseconds timeout);
  // True when the server closes within `timeout`, discarding whatever
  // bytes come first.
  bool drain_until_closed(std::chrono::milliseconds timeout);
  // Everything the peer sends (after what read_response left buffered)
  // until it closes or `timeout` passes; *closed says which.
  std::string read_to_eof(std::chrono::milliseconds timeout, bool* closed);
  // Appends to buffered() what has already arrived, without waiting;
  // false once the peer has closed (EOF or reset).
  bool poll_incoming();
  // Bytes received and not yet consumed by read_response.
  const std::string& buffered() const { return buffer_; }
  void shutdown_write();

 private:
  // Reads more bytes into buffer_; false on EOF, error or timeout.
  bool fill(std::chrono::steady_clock::time_point deadline);
  bool closes_within(std::chrono::milliseconds timeout, bool bytes_fail);
  int fd_ = -1;
  std::string buffer_;
};

// True in builds with AddressSanitizer (memory figures are inflated: freed
// memory waits in quarantine, 256 MiB by default, beside shadow memory).
bool address_sanitizer_build();

// Sends `request` on a new connection and reads the response.
RawResponse raw_exchange(int port, std::string_view request,
                         std::chrono::milliseconds timeout = std::chrono::seconds(10));

// "POST <target> HTTP/1.1" with Host, the given extra header lines (each
// "Name: value"), Content-Length of `body` unless `with_length` is false,
// then the body (a keep-alive request).
std::string make_post(std::string_view target, std::string_view body,
                      const std::vector<std::string>& headers = {"Content-Type: application/json"},
                      bool with_length = true);

// A Write API body {"accessKey":..., ["deviceId":...,] "data": <data_json>}.
std::string make_body(std::string_view data_json, std::string_view access_key = kAccessKey,
                      std::optional<std::string_view> device_id = std::nullopt);

// The write path of (bucket, key), not encoded.
std::string write_path(std::string_view bucket, std::string_view key);

// Checks of the error body shape: exactly {"ok":false,"error":<code>,
// "message":<non-empty string>}. Returns "" when fine, else what is wrong.
std::string check_error_body(std::string_view body, std::string_view code);
// Checks a success body is exactly {"ok":true,"items":<items>} (plus
// optional trailing whitespace). "" when fine.
std::string check_ok_body(std::string_view body, std::size_t items);
// The "message" of an error body ("" when absent).
std::string error_message(std::string_view body);

// Extracts the value of the Prometheus sample `name_with_labels` (exact
// text up to the space) from a /metrics body; nullopt when absent.
std::optional<double> metric_value(std::string_view metrics, std::string_view name_with_labels);

}  // namespace writeapi::testing

#endif  // WRITEAPI_TESTS_INTEGRATION_SERVER_PROCESS_H_
