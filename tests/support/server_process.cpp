#include "server_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <simdjson.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "writeapi/auth.h"

#ifndef WRITEAPI_SERVER_PATH
#error "WRITEAPI_SERVER_PATH must be defined to the writeapi-server binary"
#endif

namespace writeapi::testing {
namespace fs = std::filesystem;

bool address_sanitizer_build() {
#if defined(__SANITIZE_ADDRESS__)
  return true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  return true;
#else
  return false;
#endif
#else
  return false;
#endif
}

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

const char* server_binary() {
  // WRITEAPI_SERVER_BINARY runs the suite against another build (e.g. an
  // installed or sanitizer-built server).
  const char* override_path = std::getenv("WRITEAPI_SERVER_BINARY");
  return override_path && *override_path ? override_path : WRITEAPI_SERVER_PATH;
}

int announced_port(std::string_view text, std::string_view marker) {
  std::size_t at = text.find(marker);
  if (at == std::string_view::npos) return -1;
  std::size_t begin = at + marker.size();
  std::size_t end = text.find_first_not_of("0123456789", begin);
  if (end == std::string_view::npos || end == begin || end - begin > 5) return -1;
  return std::stoi(std::string(text.substr(begin, end - begin)));
}

std::string_view front_end() {
  const char* name = std::getenv("WRITEAPI_FRONT_END");
  return name && *name ? std::string_view(name) : std::string_view("server");
}

bool testing_asio_front_end() { return front_end() == "asio"; }

// ---------------------------------------------------------------------------
// Files

void write_keys_file(const std::string& path) {
  // The load tests send thousands of requests a second to "homelab", which
  // the default device limits would throttle; limits themselves are tested
  // in tests/keys (with their own keys files).
  std::string contents = R"({"buckets": {
  "homelab": {"keys": [{"id": "demo", "sha256": ")" +
                         sha256_hex(kAccessKey) + R"(", "label": "integration tests"}],
              "limits": {"anonymous": {"rate": 1000000, "burst": 1000000},
                         "device": {"rate": 1000000, "burst": 1000000}}},
  ")" + std::string(kOtherBucket) +
                         R"(": {"keys": [{"id": "other", "sha256": ")" + sha256_hex(kOtherAccessKey) +
                         R"("}]}
}}
)";
  write_file(path, contents);
}

std::map<std::string, std::string> snapshot_tree(const std::string& root) {
  std::map<std::string, std::string> tree;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    std::string relative = fs::relative(it->path(), root).string();
    if (it->is_directory()) {
      tree[relative] = "<dir>";
    } else {
      tree[relative] = read_file(it->path().string());
    }
  }
  return tree;
}

std::string tree_diff(const std::map<std::string, std::string>& before,
                      const std::map<std::string, std::string>& after) {
  auto show = [](const std::string& contents) {
    if (contents == "<dir>") return std::string("directory");
    std::string shown = contents.size() > 200 ? contents.substr(0, 200) + "..." : contents;
    return std::to_string(contents.size()) + " bytes: " + shown;
  };
  std::string diff;
  for (const auto& [path, contents] : after) {
    auto it = before.find(path);
    if (it == before.end()) {
      diff += "added " + path + " (" + show(contents) + ")\n";
    } else if (it->second != contents) {
      diff += "changed " + path + " from (" + show(it->second) + ") to (" + show(contents) + ")\n";
    }
  }
  for (const auto& [path, contents] : before)
    if (!after.count(path)) diff += "removed " + path + "\n";
  return diff;
}

std::vector<std::string> split_lines(std::string_view text) {
  std::vector<std::string> lines;
  while (!text.empty()) {
    std::size_t nl = text.find('\n');
    if (nl == std::string_view::npos) {
      lines.emplace_back(text);
      break;
    }
    lines.emplace_back(text.substr(0, nl));
    text.remove_prefix(nl + 1);
  }
  return lines;
}

// ---------------------------------------------------------------------------
// Child processes

void reset_child_after_fork(int first_fd) {
#ifdef SYS_close_range
  if (::syscall(SYS_close_range, static_cast<unsigned>(first_fd), ~0u, 0u) != 0)
#endif
  {
    for (int fd = first_fd; fd < 4096; ++fd) ::close(fd);
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
}

namespace {

// fork + exec of the server with stdout/stderr redirected to files (or
// stdout to child.stdout_fd), under child.open_files_limit when set.
pid_t spawn(const std::vector<std::string>& args, const std::string& stdout_path, const std::string& stderr_path,
            const ChildSetup& child = {}) {
  std::vector<std::string> argv_storage;
  argv_storage.push_back(server_binary());
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed: " + std::string(std::strerror(errno)));
  if (pid == 0) {
    // Child: only async-signal-safe calls until execv.
    int in = ::open("/dev/null", O_RDONLY);
    int out = ::open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = ::open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0 || err < 0) ::_exit(126);
    ::dup2(in, 0);
    ::dup2(child.stdout_fd >= 0 ? child.stdout_fd : out, 1);
    ::dup2(err, 2);
    if (child.open_files_limit) {
      rlimit limit{static_cast<rlim_t>(child.open_files_limit->first),
                   static_cast<rlim_t>(child.open_files_limit->second)};
      if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) ::_exit(125);
    }
    reset_child_after_fork(3);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// waitpid with a deadline; nullopt on timeout, else the raw wait status.
std::optional<int> wait_raw(pid_t pid, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return std::nullopt;
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(5ms);
  }
}

}  // namespace

ExitResult run_server_to_exit(const std::vector<std::string>& args, std::chrono::milliseconds timeout,
                              const ChildSetup& child) {
  TempDir dir;
  std::string out_path = dir.path() + "/stdout", err_path = dir.path() + "/stderr";
  auto start = Clock::now();
  // The asio front end has no access log: "--access-log off" means nothing there.
  std::vector<std::string> used = args;
  if (testing_asio_front_end()) {
    for (std::size_t i = 0; i + 1 < used.size(); ++i)
      if (used[i] == "--access-log" && used[i + 1] == "off") used.erase(used.begin() + i, used.begin() + i + 2);
  }
  pid_t pid = spawn(used, out_path, err_path, child);
  ExitResult result;
  auto status = wait_raw(pid, timeout);
  result.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  if (!status) {
    ::kill(pid, SIGKILL);
    int ignored;
    ::waitpid(pid, &ignored, 0);
  } else {
    result.exited = WIFEXITED(*status);
    if (WIFEXITED(*status)) result.exit_code = WEXITSTATUS(*status);
    if (WIFSIGNALED(*status)) result.signal = WTERMSIG(*status);
  }
  result.out = read_file(out_path);
  result.err = read_file(err_path);
  return result;
}

// ---------------------------------------------------------------------------
// ServerProcess

ServerProcess::ServerProcess(std::vector<std::string> extra_args) {
  ServerOptions options;
  options.extra_args = std::move(extra_args);
  start(std::move(options));
}

ServerProcess::ServerProcess(ServerOptions options) { start(std::move(options)); }

void ServerProcess::start(ServerOptions options) {
  // A server that closes a connection while a client is still sending (as it
  // may after an early refusal) must not kill the test process: cpp-httplib's
  // client writes without MSG_NOSIGNAL.
  static const bool sigpipe_ignored = [] {
    ::signal(SIGPIPE, SIG_IGN);
    return true;
  }();
  (void)sigpipe_ignored;
  options_ = std::move(options);
  data_dir_ = root_.path() + "/data";
  keys_path_ = root_.path() + "/keys.json";
  access_log_path_ = root_.path() + "/access.log";
  stderr_path_ = root_.path() + "/stderr.log";
  stdout_path_ = root_.path() + "/stdout.log";
  write_keys_file(keys_path_);

  std::vector<std::string> args = {"--port", "0", "--host", "127.0.0.1", "--data-dir", data_dir_, "--keys", keys_path_};
  if (!testing_asio_front_end()) args.insert(args.end(), {"--access-log", access_log_path_});
  args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
  pid_ = spawn(args, stdout_path_, stderr_path_, options_.child);

  // The port is announced on stderr: "writeapi-server: listening on
  // http://127.0.0.1:PORT (...)".
  const auto deadline = Clock::now() + 10s;
  const std::string marker = "listening on http://127.0.0.1:";
  while (port_ < 0) {
    std::string err = stderr_contents();
    port_ = announced_port(err, marker);
    if (port_ >= 0) break;
    if (auto status = wait_raw(pid_, 0ms)) {
      exit_status_ = decode_status(*status);
      throw std::runtime_error("writeapi-server exited during startup with status " + std::to_string(*exit_status_) +
                               "; stderr:\n" + err);
    }
    if (Clock::now() > deadline) {
      terminate(2s);
      throw std::runtime_error("writeapi-server did not announce its port within 10 s; stderr:\n" + err);
    }
    std::this_thread::sleep_for(5ms);
  }

  // Ready when GET /healthz answers 200.
  httplib::Client probe("127.0.0.1", port_);
  probe.set_connection_timeout(1, 0);
  probe.set_read_timeout(1, 0);
  while (true) {
    auto res = probe.Get("/healthz");
    if (res && res->status == 200) break;
    if (Clock::now() > deadline) {
      terminate(2s);
      throw std::runtime_error("writeapi-server on port " + std::to_string(port_) +
                               " did not answer GET /healthz 200 within 10 s; stderr:\n" + stderr_contents());
    }
    std::this_thread::sleep_for(10ms);
  }
}

ServerProcess::~ServerProcess() {
  if (exit_status_) return;
  int status = terminate();
  if (options_.check_clean_exit && std::uncaught_exceptions() == 0) {
    INFO("server stderr:\n" << stderr_contents());
    CHECK(status == 0);
  }
}

std::string ServerProcess::access_log_contents() const { return read_file(access_log_path_); }
std::string ServerProcess::stderr_contents() const { return read_file(stderr_path_); }
std::string ServerProcess::stdout_contents() const { return read_file(stdout_path_); }

int ServerProcess::metrics_port() const {
  const std::string err = stderr_contents();
  const std::string marker = "metrics on http://";
  std::size_t at = err.find(marker);
  if (at == std::string::npos) return -1;
  std::size_t colon = err.find(':', at + marker.size());
  std::size_t slash = err.find('/', colon);
  if (colon == std::string::npos || slash == std::string::npos) return -1;
  return std::atoi(err.substr(colon + 1, slash - colon - 1).c_str());
}

std::string ServerProcess::object_path(std::string_view bucket, std::string_view key) const {
  return data_dir_ + "/" + std::string(bucket) + "/" + std::string(key) + ".jsonl";
}
std::string ServerProcess::read_object(std::string_view bucket, std::string_view key) const {
  return read_file(object_path(bucket, key));
}
bool ServerProcess::object_exists(std::string_view bucket, std::string_view key) const {
  return file_exists(object_path(bucket, key));
}

std::unique_ptr<httplib::Client> ServerProcess::client() const {
  auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
  c->set_keep_alive(true);
  // Without it, Nagle and delayed ACKs add 40 ms to each request (cpp-httplib
  // writes headers and body separately).
  c->set_tcp_nodelay(true);
  c->set_connection_timeout(10, 0);
  c->set_read_timeout(10, 0);
  c->set_write_timeout(10, 0);
  return c;
}

bool ServerProcess::running() {
  if (exit_status_) return false;
  if (auto status = wait_raw(pid_, 0ms)) {
    exit_status_ = decode_status(*status);
    return false;
  }
  return true;
}

void ServerProcess::send_signal(int sig) {
  if (!exit_status_) ::kill(pid_, sig);
}

std::optional<int> ServerProcess::wait_exit(std::chrono::milliseconds timeout) {
  if (exit_status_) return exit_status_;
  if (auto status = wait_raw(pid_, timeout)) exit_status_ = decode_status(*status);
  return exit_status_;
}

int ServerProcess::terminate(std::chrono::milliseconds timeout) {
  if (exit_status_) return *exit_status_;
  ::kill(pid_, SIGTERM);
  if (auto status = wait_exit(timeout)) return *status;
  ::kill(pid_, SIGKILL);
  int raw = 0;
  ::waitpid(pid_, &raw, 0);
  exit_status_ = -1;
  return -1;
}

std::size_t ServerProcess::wait_for_access_log_lines(std::size_t lines, std::chrono::milliseconds timeout) const {
  if (testing_asio_front_end()) return 0;  // it keeps no access log
  auto deadline = Clock::now() + timeout;
  for (;;) {
    std::size_t n = split_lines(access_log_contents()).size();
    if (n >= lines || Clock::now() >= deadline) return n;
    std::this_thread::sleep_for(5ms);
  }
}

// ---------------------------------------------------------------------------
// Raw HTTP

std::string RawResponse::header(std::string_view lowercase_name) const {
  auto it = headers.find(std::string(lowercase_name));
  return it == headers.end() ? "" : it->second;
}

void parse_response_head(std::string_view head, RawResponse* response) {
  std::vector<std::string> lines = split_lines(head);
  for (auto& line : lines)
    if (!line.empty() && line.back() == '\r') line.pop_back();
  if (lines.empty()) return;
  response->status_line = lines[0];
  // "HTTP/1.1 200 OK"
  if (lines[0].rfind("HTTP/1.", 0) == 0 && lines[0].size() >= 12) response->status = std::atoi(lines[0].c_str() + 9);
  for (std::size_t i = 1; i < lines.size(); ++i) {
    auto colon = lines[i].find(':');
    if (colon == std::string::npos) continue;
    std::string name = lines[i].substr(0, colon);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = lines[i].substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.pop_back();
    response->headers.emplace(name, value);
  }
}

namespace {

int poll_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

}  // namespace

RawConnection::RawConnection(int port, const char* source_ip) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return;
  if (source_ip) {
    sockaddr_in source{};
    source.sin_family = AF_INET;
    ::inet_pton(AF_INET, source_ip, &source.sin_addr);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&source), sizeof source) != 0) {
      ::close(fd_);
      fd_ = -1;
      return;
    }
  }
  sockaddr_in target{};
  target.sin_family = AF_INET;
  target.sin_port = htons(static_cast<uint16_t>(port));
  target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&target), sizeof target) != 0) {
    ::close(fd_);
    fd_ = -1;
    return;
  }
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);  // every call below is bounded
}

RawConnection::~RawConnection() {
  if (fd_ >= 0) ::close(fd_);
}

bool RawConnection::send(std::string_view bytes, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      bytes.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd_, POLLOUT, 0};
      if (::poll(&p, 1, poll_ms(deadline)) <= 0) return false;
      continue;
    }
    return false;
  }
  return true;
}

void RawConnection::shutdown_write() { ::shutdown(fd_, SHUT_WR); }

bool RawConnection::fill(Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, poll_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    char chunk[65536];
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (n <= 0) return false;
    buffer_.append(chunk, static_cast<std::size_t>(n));
    return true;
  }
}

RawResponse RawConnection::read_response(std::chrono::milliseconds timeout) {
  RawResponse response;
  auto deadline = Clock::now() + timeout;
  std::size_t header_end;
  while ((header_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
    if (!fill(deadline)) {
      response.raw = buffer_;
      buffer_.clear();
      return response;
    }
  }
  std::string head = buffer_.substr(0, header_end);
  buffer_.erase(0, header_end + 4);
  response.raw = head + "\r\n\r\n";
  parse_response_head(head, &response);
  if (response.status_line.empty()) return response;
  std::string length = response.header("content-length");
  if (response.status >= 100 && response.status < 200) {
    // An interim response (100 Continue) has no body.
  } else if (!length.empty()) {
    std::size_t n = std::stoul(length);
    while (buffer_.size() < n)
      if (!fill(deadline)) break;
    response.body = buffer_.substr(0, n);
    buffer_.erase(0, std::min(n, buffer_.size()));
  } else if (response.header("transfer-encoding") == "chunked") {
    for (;;) {
      std::size_t eol;
      while ((eol = buffer_.find("\r\n")) == std::string::npos)
        if (!fill(deadline)) return response;
      std::size_t size = std::stoul(buffer_.substr(0, eol), nullptr, 16);
      while (buffer_.size() < eol + 2 + size + 2)
        if (!fill(deadline)) return response;
      response.body.append(buffer_, eol + 2, size);
      buffer_.erase(0, eol + 2 + size + 2);
      if (size == 0) break;
    }
  } else {
    while (fill(deadline)) {
    }
    response.body = buffer_;
    buffer_.clear();
  }
  response.raw += response.body;
  return response;
}

bool RawConnection::closes_within(std::chrono::milliseconds timeout, bool bytes_fail) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, poll_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    char chunk[65536];
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n == 0) return true;
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
    if (n < 0) return errno == ECONNRESET || errno == EPIPE;
    if (bytes_fail) {
      buffer_.append(chunk, static_cast<std::size_t>(n));
      return false;
    }
  }
}

bool RawConnection::wait_closed(std::chrono::milliseconds timeout) { return closes_within(timeout, true); }

bool RawConnection::drain_until_closed(std::chrono::milliseconds timeout) { return closes_within(timeout, false); }

std::string RawConnection::read_to_eof(std::chrono::milliseconds timeout, bool* closed) {
  auto deadline = Clock::now() + timeout;
  *closed = false;
  std::string bytes = std::move(buffer_);
  buffer_.clear();
  for (;;) {
    pollfd p{fd_, POLLIN, 0};
    int r = ::poll(&p, 1, poll_ms(deadline));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return bytes;
    char chunk[65536];
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n > 0) {
      bytes.append(chunk, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
    *closed = true;  // EOF, or reset (ECONNRESET) after the server closed
    return bytes;
  }
}

bool RawConnection::poll_incoming() {
  for (;;) {
    char chunk[65536];
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, MSG_DONTWAIT);
    if (n > 0) {
      buffer_.append(chunk, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    return false;
  }
}

RawResponse raw_exchange(int port, std::string_view request, std::chrono::milliseconds timeout) {
  RawConnection connection(port);
  if (!connection.connected()) return {};
  connection.send(request);  // the server may refuse before reading it all
  return connection.read_response(timeout);
}

std::string make_post(std::string_view target, std::string_view body, const std::vector<std::string>& headers,
                      bool with_length) {
  std::string request = "POST " + std::string(target) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (const auto& h : headers) request += h + "\r\n";
  if (with_length) request += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  request += "\r\n";
  request += body;
  return request;
}

namespace {
std::string json_quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out + "\"";
}
}  // namespace

std::string make_body(std::string_view data_json, std::string_view access_key,
                      std::optional<std::string_view> device_id) {
  std::string body = "{\"accessKey\":" + json_quote(access_key);
  if (device_id) body += ",\"deviceId\":" + json_quote(*device_id);
  body += ",\"data\":";
  body += data_json;
  body += "}";
  return body;
}

std::string write_path(std::string_view bucket, std::string_view key) {
  return "/write/v3/bucket/" + std::string(bucket) + "/" + std::string(key);
}

std::string check_error_body(std::string_view body, std::string_view code) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded(body);
  simdjson::dom::element root;
  if (parser.parse(padded).get(root)) return "body is not JSON: " + std::string(body);
  simdjson::dom::object object;
  if (root.get_object().get(object)) return "body is not a JSON object: " + std::string(body);
  if (object.size() != 3) return "body does not have exactly ok, error, message: " + std::string(body);
  bool ok = true;
  std::string_view error, message;
  if (object["ok"].get_bool().get(ok) || ok) return "\"ok\" is not false: " + std::string(body);
  if (object["error"].get_string().get(error)) return "\"error\" is not a string: " + std::string(body);
  if (object["message"].get_string().get(message)) return "\"message\" is not a string: " + std::string(body);
  if (error != code) return "error is \"" + std::string(error) + "\", expected \"" + std::string(code) + "\"";
  if (message.empty()) return "message is empty";
  return "";
}

std::string check_ok_body(std::string_view body, std::size_t items) {
  std::string_view trimmed = body;
  while (!trimmed.empty() && (trimmed.back() == '\n' || trimmed.back() == '\r' || trimmed.back() == ' '))
    trimmed.remove_suffix(1);
  std::string expected = "{\"ok\":true,\"items\":" + std::to_string(items) + "}";
  if (trimmed != expected) return "body is " + std::string(body) + ", expected " + expected;
  return "";
}

std::string error_message(std::string_view body) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded(body);
  std::string_view message;
  if (parser.parse(padded)["message"].get_string().get(message)) return "";
  return std::string(message);
}

std::optional<double> ServerProcess::metric(std::string_view name_with_labels) const {
  auto res = client()->Get("/metrics");
  if (!res || res->status != 200) return std::nullopt;
  return metric_value(res->body, name_with_labels);
}

std::optional<double> metric_value(std::string_view metrics, std::string_view name_with_labels) {
  for (const auto& line : split_lines(metrics)) {
    if (line.size() > name_with_labels.size() && line.compare(0, name_with_labels.size(), name_with_labels) == 0 &&
        line[name_with_labels.size()] == ' ')
      return std::strtod(line.c_str() + name_with_labels.size() + 1, nullptr);
  }
  return std::nullopt;
}

}  // namespace writeapi::testing
