#include "connection_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>

namespace writeapi::server {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

int to_poll_ms(Clock::duration d) {
  auto ms = std::chrono::duration_cast<milliseconds>(d).count();
  return static_cast<int>(std::clamp<decltype(ms)>(ms, 0, INT_MAX));
}

std::string address_text(const sockaddr_storage& addr, int* port) {
  char text[INET6_ADDRSTRLEN] = "";
  if (addr.ss_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    ::inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    *port = ntohs(in->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    *port = ntohs(in6->sin6_port);
  }
  return text;
}

struct Counters {
  std::atomic<std::uint64_t> accepted{0}, refused_per_ip{0}, tls_handshake_failures{0}, heads_too_large{0},
      request_timeouts{0}, open{0};
};

// One client connection, as the httplib::Stream that process_request reads
// requests from and writes responses to. The socket is non-blocking: every
// wait is a poll() bounded by the read or write timeout and, while a request
// is being read, by its deadline.
class Connection final : public httplib::Stream {
 public:
  Connection(int fd, std::string ip, int port, const ConnectionOptions& options, Counters* counters)
      : fd_(fd), ip_(std::move(ip)), port_(port), options_(options), counters_(counters) {}
  ~Connection() override { close(); }

  // TLS handshake on the accepted socket, under the request deadline.
  bool handshake(SSL_CTX* context) {
    ssl_ = SSL_new(context);
    if (!ssl_ || SSL_set_fd(ssl_, fd_) != 1) return false;
    deadline_ = Clock::now() + options_.request_timeout;
    for (;;) {
      ERR_clear_error();
      int r = SSL_accept(ssl_);
      if (r == 1) break;
      int error = SSL_get_error(ssl_, r);
      if (error == SSL_ERROR_WANT_READ ? !wait(POLLIN) : error == SSL_ERROR_WANT_WRITE ? !wait(POLLOUT) : true) {
        broken_ = true;
        return false;
      }
    }
    deadline_.reset();
    return true;
  }

  // Waits up to `timeout` for the first byte of the next request. False on
  // timeout, when the server stops, or on a socket error; true also at EOF
  // (process_request then sees the end).
  bool wait_for_request(Clock::duration timeout, const std::atomic<bool>& stopping) {
    if (broken_) return false;
    if (buffered() > 0 || (ssl_ && SSL_pending(ssl_) > 0)) return true;
    const auto until = Clock::now() + timeout;
    for (;;) {
      if (stopping.load()) return false;
      auto left = until - Clock::now();
      if (left <= Clock::duration::zero()) return false;
      pollfd p{fd_, POLLIN, 0};
      int r = ::poll(&p, 1, std::min(to_poll_ms(left), 100));
      if (r < 0 && errno != EINTR) return false;
      if (r > 0) return true;
    }
  }

  // A new request starts: its head is capped and its deadline runs.
  void begin_request() {
    in_head_ = true;
    head_bytes_ = 0;
    head_too_large_ = false;
    timed_out_ = false;
    deadline_ = Clock::now() + options_.request_timeout;
  }
  void end_request() { deadline_.reset(); }
  void head_complete() { in_head_ = false; }
  bool head_too_large() const { return head_too_large_; }
  bool timed_out() const { return timed_out_; }
  // Nothing more can be read (error, timeout, oversized head).
  bool broken() const { return broken_; }

  // Closes the connection. When the client may still be sending (the
  // request was cut short), stop writing first and read what is in flight
  // for a moment: closing with unread data would reset the connection and
  // could destroy the answer just sent.
  void close() {
    if (fd_ < 0) return;
    if (ssl_) {
      if (!broken_) {
        ERR_clear_error();
        SSL_shutdown(ssl_);  // best effort: one close_notify, no waiting
      }
      SSL_free(ssl_);
      ssl_ = nullptr;
    }
    int unread = 0;
    if (broken_ || buffered() > 0 || (::ioctl(fd_, FIONREAD, &unread) == 0 && unread > 0)) {
      ::shutdown(fd_, SHUT_WR);
      const auto until = Clock::now() + std::chrono::seconds(1);
      std::size_t drained = 0;
      char sink[16384];
      while (drained < (256u << 10)) {
        auto left = until - Clock::now();
        if (left <= Clock::duration::zero()) break;
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, to_poll_ms(left)) <= 0) break;
        ssize_t n = ::recv(fd_, sink, sizeof sink, 0);
        if (n <= 0) break;
        drained += static_cast<std::size_t>(n);
      }
    }
    ::close(fd_);
    fd_ = -1;
  }

  // httplib::Stream
  bool is_readable() const override {
    if (buffered() > 0 || (ssl_ && SSL_pending(ssl_) > 0)) return true;
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, to_poll_ms(options_.read_timeout)) > 0;
  }
  bool is_writable() const override {
    pollfd p{fd_, POLLOUT, 0};
    return ::poll(&p, 1, to_poll_ms(options_.write_timeout)) > 0;
  }

  ssize_t read(char* ptr, std::size_t size) override {
    if (broken_ || size == 0) return broken_ ? -1 : 0;
    if (in_head_) {
      if (head_bytes_ >= options_.max_head_bytes) {
        if (!head_too_large_) counters_->heads_too_large++;
        head_too_large_ = true;
        broken_ = true;
        return -1;
      }
      size = std::min(size, options_.max_head_bytes - head_bytes_);
    }
    ssize_t n;
    if (buffered() > 0) {
      n = static_cast<ssize_t>(std::min(size, buffered()));
      std::memcpy(ptr, buffer_ + buffer_begin_, static_cast<std::size_t>(n));
      buffer_begin_ += static_cast<std::size_t>(n);
    } else if (size >= sizeof buffer_) {
      n = raw_read(ptr, size);
    } else {
      // cpp-httplib reads request heads a byte at a time: read ahead.
      n = raw_read(buffer_, sizeof buffer_);
      if (n <= 0) return n;
      buffer_begin_ = 0;
      buffer_end_ = static_cast<std::size_t>(n);
      n = static_cast<ssize_t>(std::min(size, buffer_end_));
      std::memcpy(ptr, buffer_, static_cast<std::size_t>(n));
      buffer_begin_ = static_cast<std::size_t>(n);
    }
    if (n > 0 && in_head_) head_bytes_ += static_cast<std::size_t>(n);
    return n;
  }

  ssize_t write(const char* ptr, std::size_t size) override {
    if (fd_ < 0) return -1;
    for (;;) {
      if (ssl_) {
        ERR_clear_error();
        int n = SSL_write(ssl_, ptr, static_cast<int>(std::min<std::size_t>(size, INT_MAX)));
        if (n > 0) return n;
        int error = SSL_get_error(ssl_, n);
        if (error == SSL_ERROR_WANT_WRITE && wait_writable()) continue;
        if (error == SSL_ERROR_WANT_READ && wait_readable_for_write()) continue;
        return -1;
      }
      ssize_t n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
      if (n >= 0) return n;
      if (errno == EINTR) continue;
      if ((errno == EAGAIN || errno == EWOULDBLOCK) && wait_writable()) continue;
      return -1;
    }
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = ip_;
    port = port_;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage addr{};
    socklen_t length = sizeof addr;
    port = -1;
    ip.clear();
    if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &length) == 0) ip = address_text(addr, &port);
  }
  socket_t socket() const override { return fd_; }

 private:
  std::size_t buffered() const { return buffer_end_ - buffer_begin_; }

  // Waits for `events` within the read timeout and the request deadline.
  bool wait(short events) {
    auto timeout = Clock::now() + options_.read_timeout;
    bool deadline_binds = deadline_ && *deadline_ < timeout;
    auto until = deadline_binds ? *deadline_ : timeout;
    for (;;) {
      auto left = until - Clock::now();
      if (left <= Clock::duration::zero()) break;
      pollfd p{fd_, events, 0};
      int r = ::poll(&p, 1, to_poll_ms(left));
      if (r > 0) return true;
      if (r < 0 && errno != EINTR) {
        broken_ = true;
        return false;
      }
    }
    if (!timed_out_) counters_->request_timeouts++;
    timed_out_ = true;
    broken_ = true;
    return false;
  }
  bool wait_writable() {
    pollfd p{fd_, POLLOUT, 0};
    return ::poll(&p, 1, to_poll_ms(options_.write_timeout)) > 0;
  }
  bool wait_readable_for_write() {  // TLS renegotiation during a write
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, to_poll_ms(options_.write_timeout)) > 0;
  }

  ssize_t raw_read(char* ptr, std::size_t size) {
    for (;;) {
      if (ssl_) {
        ERR_clear_error();
        int n = SSL_read(ssl_, ptr, static_cast<int>(std::min<std::size_t>(size, INT_MAX)));
        if (n > 0) return n;
        int error = SSL_get_error(ssl_, n);
        if (error == SSL_ERROR_ZERO_RETURN) return 0;
        if (error == SSL_ERROR_WANT_READ && wait(POLLIN)) continue;
        if (error == SSL_ERROR_WANT_WRITE && wait(POLLOUT)) continue;
        broken_ = true;
        return -1;
      }
      ssize_t n = ::recv(fd_, ptr, size, 0);
      if (n >= 0) return n;
      if (errno == EINTR) continue;
      if ((errno == EAGAIN || errno == EWOULDBLOCK) && wait(POLLIN)) continue;
      broken_ = true;
      return -1;
    }
  }

  int fd_;
  SSL* ssl_ = nullptr;
  std::string ip_;
  int port_;
  const ConnectionOptions& options_;
  Counters* counters_;
  char buffer_[4096];
  std::size_t buffer_begin_ = 0, buffer_end_ = 0;
  std::optional<Clock::time_point> deadline_;
  bool in_head_ = false;
  std::size_t head_bytes_ = 0;
  bool head_too_large_ = false;
  bool timed_out_ = false;
  bool broken_ = false;
};

thread_local Connection* t_connection = nullptr;

// The answer to a connection over its address's cap, sent without reading
// anything.
const std::string& too_many_connections_response() {
  static const std::string response = [] {
    const std::string body =
        "{\"ok\":false,\"error\":\"rate_limited\",\"message\":\"too many connections from your address; "
        "retry later\"}\n";
    return "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
           "Connection: close\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body;
  }();
  return response;
}

// Base is httplib::Server or httplib::SSLServer: their routing and request
// parsing (process_request is protected), our accept loop and connections.
template <class Base>
class Guarded final : public Base, public ConnectionServer {
 public:
  template <class... Args>
  explicit Guarded(const ConnectionOptions& options, Args&&... args)
      : Base(std::forward<Args>(args)...), options_(options) {}

  httplib::Server& http() override { return *this; }
  bool tls() const override { return std::is_same_v<Base, httplib::SSLServer>; }

  ConnectionStats stats() const override {
    ConnectionStats s;
    s.accepted = counters_.accepted.load();
    s.refused_per_ip = counters_.refused_per_ip.load();
    s.tls_handshake_failures = counters_.tls_handshake_failures.load();
    s.heads_too_large = counters_.heads_too_large.load();
    s.request_timeouts = counters_.request_timeouts.load();
    s.open = counters_.open.load();
    return s;
  }

  void stop() override {
    stopping_ = true;
    // Wakes a blocked accept(); serve() closes the socket itself.
    int listener = this->svr_sock_;
    if (listener != INVALID_SOCKET) ::shutdown(listener, SHUT_RDWR);
  }

  void serve() override {
    const int listener = this->svr_sock_;
    {
      httplib::ThreadPool pool(static_cast<std::size_t>(std::max(1, options_.threads)));
      while (!stopping_.load() && listener != INVALID_SOCKET) {
        pollfd p{listener, POLLIN, 0};
        int r = ::poll(&p, 1, 200);
        if (r <= 0 || stopping_.load()) continue;
        if (p.revents & (POLLERR | POLLNVAL)) {
          std::this_thread::sleep_for(milliseconds(10));
          continue;
        }
        sockaddr_storage addr{};
        socklen_t length = sizeof addr;
        int fd = ::accept4(listener, reinterpret_cast<sockaddr*>(&addr), &length, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
          // Out of descriptors or memory: let connections finish first.
          if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
            std::this_thread::sleep_for(milliseconds(10));
          continue;
        }
        int port = -1;
        std::string ip = address_text(addr, &port);
        if (!admit(ip)) {
          counters_.refused_per_ip++;
          const std::string& answer = too_many_connections_response();
          ::send(fd, answer.data(), answer.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
          ::close(fd);
          continue;
        }
        counters_.accepted++;
        int one = 1;
        ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pool.enqueue([this, fd, ip = std::move(ip), port]() mutable {
          serve_connection(fd, ip, port);
          release(ip);
        });
      }
      int sock = this->svr_sock_.exchange(INVALID_SOCKET);
      if (sock != INVALID_SOCKET) ::close(sock);
      pool.shutdown();  // connections waiting for a worker are closed, in flight finish
    }
  }

 private:
  int cap() const { return options_.max_connections_per_ip; }

  bool admit(const std::string& ip) {
    counters_.open++;
    if (cap() <= 0) return true;
    std::lock_guard<std::mutex> lock(per_ip_mu_);
    int& count = per_ip_[ip];
    if (count >= cap()) {
      if (count == 0) per_ip_.erase(ip);
      counters_.open--;
      return false;
    }
    ++count;
    return true;
  }

  void release(const std::string& ip) {
    counters_.open--;
    if (cap() <= 0) return;
    std::lock_guard<std::mutex> lock(per_ip_mu_);
    auto it = per_ip_.find(ip);
    if (it != per_ip_.end() && --it->second <= 0) per_ip_.erase(it);
  }

  void serve_connection(int fd, const std::string& ip, int port) {
    Connection connection(fd, ip, port, options_, &counters_);
    if (stopping_.load()) return;  // queued when the server stopped
    if constexpr (std::is_same_v<Base, httplib::SSLServer>) {
      if (!connection.handshake(this->ssl_context())) {
        counters_.tls_handshake_failures++;
        return;
      }
    }
    t_connection = &connection;
    std::size_t remaining = this->keep_alive_max_count_;
    bool first = true;
    while (remaining > 0) {
      // The first request may take the read timeout to start; later ones
      // on a kept-alive connection the keep-alive timeout.
      if (!connection.wait_for_request(first ? options_.read_timeout : options_.keep_alive_timeout, stopping_))
        break;
      first = false;
      connection.begin_request();
      bool closed = false;
      bool ok = this->process_request(connection, remaining == 1 || stopping_.load(), closed, nullptr);
      connection.end_request();
      if (!ok || closed || connection.broken()) break;
      --remaining;
    }
    t_connection = nullptr;
  }

  ConnectionOptions options_;
  std::atomic<bool> stopping_{false};
  Counters counters_;
  std::mutex per_ip_mu_;
  std::unordered_map<std::string, int> per_ip_;
};

bool readable_file(const std::string& path, std::string* error, const char* what) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    *error = std::string("cannot read the TLS ") + what + " " + path + ": " + std::strerror(errno);
    return false;
  }
  std::fclose(f);
  return true;
}

}  // namespace

std::unique_ptr<ConnectionServer> ConnectionServer::create(const ConnectionOptions& options, std::string* error) {
  if (options.tls_cert_path.empty() != options.tls_key_path.empty()) {
    *error = "--tls-cert and --tls-key must be given together";
    return nullptr;
  }
  if (options.tls_cert_path.empty()) return std::make_unique<Guarded<httplib::Server>>(options);
  if (!readable_file(options.tls_cert_path, error, "certificate") ||
      !readable_file(options.tls_key_path, error, "key"))
    return nullptr;
  auto server = std::make_unique<Guarded<httplib::SSLServer>>(options, options.tls_cert_path.c_str(),
                                                               options.tls_key_path.c_str());
  if (!server->is_valid()) {
    *error = "cannot load the TLS certificate " + options.tls_cert_path + " and key " + options.tls_key_path +
             " (PEM files of a certificate and its private key expected)";
    return nullptr;
  }
  // TLS 1.2 at least: older versions have known weaknesses.
  SSL_CTX_set_min_proto_version(server->ssl_context(), TLS1_2_VERSION);
  return server;
}

std::string render_connection_metrics(const ConnectionStats& stats) {
  std::string text;
  auto counter = [&](const char* name, const char* help, const char* type, std::uint64_t value) {
    text += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " +
            std::to_string(value) + "\n";
  };
  counter("writeapi_connections_accepted_total", "Connections accepted.", "counter", stats.accepted);
  counter("writeapi_connections_open", "Connections waiting for a worker or being served.", "gauge", stats.open);
  text +=
      "# HELP writeapi_connections_refused_total Connections closed before any request was read, by reason.\n"
      "# TYPE writeapi_connections_refused_total counter\n"
      "writeapi_connections_refused_total{reason=\"per_ip_limit\"} " +
      std::to_string(stats.refused_per_ip) +
      "\n"
      "writeapi_connections_refused_total{reason=\"tls_handshake\"} " +
      std::to_string(stats.tls_handshake_failures) + "\n";
  counter("writeapi_request_heads_too_large_total", "Requests refused with 431: request line and headers too large.",
          "counter", stats.heads_too_large);
  counter("writeapi_request_timeouts_total", "Requests cut short by the read timeout or the request deadline.",
          "counter", stats.request_timeouts);
  return text;
}

void ConnectionServer::head_complete() {
  if (t_connection) t_connection->head_complete();
}
bool ConnectionServer::head_too_large() { return t_connection && t_connection->head_too_large(); }
bool ConnectionServer::timed_out() { return t_connection && t_connection->timed_out(); }

}  // namespace writeapi::server
