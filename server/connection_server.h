// Connections of writeapi-server: the accept loop and the I/O of each
// connection, around cpp-httplib's request parsing and routing.
//
// cpp-httplib 0.11 serves a connection on one worker from accept to close,
// and reads a request head with no limit of its own: a client trickling a
// byte at a time holds a worker for as long as it likes, and a header line
// without an end grows memory without bound. A ConnectionServer keeps
// cpp-httplib's parser and routes (httplib::Server::process_request) but
// owns everything around them:
//   - accept, with at most max_connections_per_ip connections (waiting or
//     served) per client address: beyond that a connection gets 429 and is
//     closed at once, without taking a worker, so one address can never
//     hold every worker;
//   - a timeout on every read and write, and a deadline for each whole
//     request (head and body), counted from its first byte;
//   - a cap on the request head (request line and headers): beyond it the
//     client gets 431 and the connection is closed;
//   - TLS (OpenSSL, with httplib::SSLServer's context), the handshake under
//     the request deadline.
//
// Thread-safety: stop() and stats() may be called from any thread; the
// static functions refer to the connection served by the calling thread.
#ifndef WRITEAPI_SERVER_CONNECTION_SERVER_H_
#define WRITEAPI_SERVER_CONNECTION_SERVER_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace httplib {
class Server;
}

namespace writeapi::server {

struct ConnectionOptions {
  // Workers: connections served at once (more wait for a free worker).
  int threads = 512;
  // Connections per client address, waiting or served; 0 for no cap.
  int max_connections_per_ip = 384;
  // Longest wait for one read or write to make progress.
  std::chrono::seconds read_timeout{10};
  std::chrono::seconds write_timeout{10};
  // How long an idle keep-alive connection is kept.
  std::chrono::seconds keep_alive_timeout{5};
  // Whole request (head and body, or TLS handshake), from its first byte.
  std::chrono::seconds request_timeout{60};
  // Largest request head (request line and headers).
  std::size_t max_head_bytes = 64 * 1024;
  // PEM files; both set serves HTTPS, both empty plain HTTP.
  std::string tls_cert_path;
  std::string tls_key_path;
};

// Counters since start, for /metrics.
struct ConnectionStats {
  std::uint64_t accepted = 0;             // connections accepted
  std::uint64_t refused_per_ip = 0;       // refused: address over its cap
  std::uint64_t tls_handshake_failures = 0;
  std::uint64_t heads_too_large = 0;      // requests refused with 431
  std::uint64_t request_timeouts = 0;     // reads cut by a timeout or deadline
  std::uint64_t open = 0;                 // gauge: connections waiting or served
};

// The counters as Prometheus text (writeapi_connections_*).
std::string render_connection_metrics(const ConnectionStats& stats);

class ConnectionServer {
 public:
  // A plain or (with both TLS paths set) HTTPS server. Returns nullptr and
  // sets *error when the certificate or key cannot be loaded.
  static std::unique_ptr<ConnectionServer> create(const ConnectionOptions& options, std::string* error);
  virtual ~ConnectionServer() = default;

  // The cpp-httplib server, to install routes and handlers on and to bind.
  // Its listen() must not be used: serve() replaces it.
  virtual httplib::Server& http() = 0;
  // Accepts and serves connections until stop(); returns once the
  // connections in flight have finished.
  virtual void serve() = 0;
  // Stops accepting; requests in flight finish. Safe from any thread.
  virtual void stop() = 0;
  virtual bool tls() const = 0;
  virtual ConnectionStats stats() const = 0;

  // For handlers: the request head of the calling thread's connection is
  // complete (call from the pre-routing handler; the body is not capped
  // by max_head_bytes).
  static void head_complete();
  // Whether the current request failed because its head was too large, or
  // because a read timed out or the request deadline passed (for the error
  // handler, to answer 431 or 408).
  static bool head_too_large();
  static bool timed_out();
};

}  // namespace writeapi::server

#endif  // WRITEAPI_SERVER_CONNECTION_SERVER_H_
