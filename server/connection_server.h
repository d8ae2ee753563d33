// Connections of writeapi-server: an event loop that frames requests
// exactly, and a pool of workers that run cpp-httplib's routes on them.
//
// One loop thread (epoll) owns every connection while it is idle, while its
// TLS handshake, request head or body is still arriving, while a response
// is being written and while a refused connection lingers. A connection
// costs no thread until its request is complete: then a worker runs it
// through httplib::Server::process_request over memory, writes the answer
// (handing what does not fit the socket back to the loop) and returns the
// connection to the loop.
//
// The head decides the body's fate before any of it is read (decide_head):
// only a route that takes a body gets it read, de-chunked, here, and runs
// it through run_direct, rendering its whole answer itself; a refusal is
// answered at once (also instead of "100 Continue"). Requests without a
// body go to cpp-httplib's routes, which are handed an unambiguous head:
// parsed strictly (http1.h) and rebuilt without its framing fields. Every
// response sent while any of a body is unread closes the connection after
// a bounded lingering read, so clients that send first and read after
// still see the answer.
//
// Bounds: at most max_connections connections, max_connections_per_ip per
// client address; request bytes held by the loop (heads and bodies) at most
// max_buffer_bytes in all (reading pauses beyond it); each request has a
// deadline from its first byte, bodies a minimum rate; one address may hold
// at most three quarters of the workers at once, and addresses with ready
// requests take turns.
//
// Thread-safety: stop() and stats() may be called from any thread; the
// hooks are called from the loop and the workers at once.
#ifndef WRITEAPI_SERVER_CONNECTION_SERVER_H_
#define WRITEAPI_SERVER_CONNECTION_SERVER_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "writeapi/http1.h"

namespace httplib {
class Server;
}

namespace writeapi::server {

// What the route decides from a complete request head.
struct HeadDecision {
  // The route reads a body: read it (at most max_body_bytes) before
  // running the request. False: the request runs without its body; a body
  // that was sent is left unread and the connection closes after the
  // answer.
  bool read_body = false;
  std::uint64_t max_body_bytes = 0;
  // Run the request with ConnectionHooks::run_direct instead of
  // cpp-httplib's routes (a route that renders its whole answer itself).
  bool direct = false;
  // The request may block (storage reads, a remote store): run it on a
  // worker, never on the loop thread (ConnectionOptions::inline_body_bytes).
  bool blocking = false;
  // Non-empty: a complete HTTP response that refuses the request from its
  // head alone; sent at once, then the connection closes.
  std::string refusal;
};

// The rest of a direct run's response, produced in parts: a large body
// streamed in bounded memory. The connection layer asks for each part on
// a worker once the previous one has been sent (the connection holds no
// thread while a part goes out), so a slow reader costs one part of
// memory and no worker.
class ResponseStream {
 public:
  virtual ~ResponseStream() = default;
  enum class Part {
    more,   // *out is a part; ask again once it is sent
    last,   // *out ends the response
    abort,  // the response cannot be completed: close after *out (the
            // client sees it cut short of its Content-Length)
  };
  // Appends the next part to *out (empty on entry). Called on a worker;
  // may block.
  virtual Part next(std::string* out) = 0;
};

// A refusal the connection layer makes itself (framing, timeouts, caps).
struct ConnectionError {
  int http_status = 400;
  std::string_view code;     // writeapi error code name, e.g. "bad_request"
  std::string_view message;  // for the client
  std::string_view remote_ip;
  std::string_view method;  // empty when the head was not parsed
  std::string_view target;
};

struct ConnectionHooks {
  // Called on the loop thread for each complete head: must not block.
  std::function<HeadDecision(const http1::RequestHead&)> decide_head;
  // Renders the complete response for a refusal of the connection layer
  // (with "Connection: close"); also the place to count and log it. Called
  // on the loop thread: must not block.
  std::function<std::string(const ConnectionError&)> render_error;
  // Runs a request decided `direct`: appends the complete response to
  // *response ("Connection: close" when !keep_alive), or its beginning
  // with *stream set to a producer of the rest, then calls `done`
  // exactly once, before returning or later from any thread (a store that
  // completes asynchronously). Until `done`, the connection is parked: it
  // holds no thread, and head, remote_ip, *response and *stream stay
  // valid; `body` only until run_direct returns. Called on a worker, or on
  // the loop thread for an inline run: must not block there.
  std::function<void(const http1::RequestHead& head, std::string_view body, std::string_view remote_ip, bool keep_alive,
                     std::string* response, std::unique_ptr<ResponseStream>* stream, std::function<void()> done)>
      run_direct;
};

struct ConnectionOptions {
  // Workers: requests run at once.
  int workers = 32;
  // Connections held at once (idle or not); beyond it a new connection
  // gets 503 and is closed.
  int max_connections = 10000;
  // Connections refused at accept that linger at once (each a descriptor
  // beyond max_connections), so a client sending before reading reads the
  // refusal; more are closed at once.
  int max_refused_lingering = 64;
  // Connections per client address; 0 for no cap.
  int max_connections_per_ip = 4096;
  // First request of a connection, and any stalled read or write.
  std::chrono::seconds read_timeout{10};
  std::chrono::seconds write_timeout{10};
  // How long an idle keep-alive connection is kept.
  std::chrono::seconds keep_alive_timeout{5};
  // Whole request (head and body, or TLS handshake), from its first byte.
  std::chrono::seconds request_timeout{60};
  // A body slower than this (bytes per second, over each 5 s window) is
  // cut with 408; 0 for no minimum.
  std::size_t min_body_rate = 1024;
  // Requests whose body is at most this many bytes run on the loop thread
  // itself instead of a worker (0: never). Only for request handlers that
  // never block (storage that does not wait for a sync or a remote store,
  // or completes through run_direct's `done`): the loop serves every other
  // connection meanwhile.
  std::size_t inline_body_bytes = 0;
  // Largest request head (request line and headers).
  std::size_t max_head_bytes = 64 * 1024;
  // Request bytes (heads and bodies) held by the loop in all.
  std::size_t max_buffer_bytes = 256u << 20;
  // Lingering close: how much of an unread body is read and discarded, and
  // for how long, before the connection is closed.
  std::size_t linger_bytes = 32u << 20;
  std::chrono::seconds linger_timeout{10};
  // PEM files; both set serves HTTPS, both empty plain HTTP.
  std::string tls_cert_path;
  std::string tls_key_path;
};

// Counters since start, for /metrics.
struct ConnectionStats {
  std::uint64_t accepted = 0;          // connections accepted
  std::uint64_t refused_per_ip = 0;    // refused: address over its cap
  std::uint64_t refused_capacity = 0;  // refused: max_connections reached
  std::uint64_t tls_handshake_failures = 0;
  std::uint64_t heads_too_large = 0;   // requests refused with 431
  std::uint64_t framing_errors = 0;    // requests refused for their framing (400, 414, 417, 501, 505)
  std::uint64_t request_timeouts = 0;  // requests cut by a timeout, deadline or the minimum rate
  std::uint64_t lingering_closes = 0;  // connections closed after discarding an unread body
  std::uint64_t buffer_pauses = 0;     // reads paused at max_buffer_bytes
  std::uint64_t open = 0;              // gauge: connections held
  std::uint64_t buffered_bytes = 0;    // gauge: request bytes held by the loop
  std::uint64_t busy_workers = 0;      // gauge: workers running a request
};

// The counters as Prometheus text (writeapi_connections_*).
std::string render_connection_metrics(const ConnectionStats& stats);

class ConnectionServer {
 public:
  // A plain or (with both TLS paths set) HTTPS server. Returns nullptr and
  // sets *error when the certificate or key cannot be loaded.
  static std::unique_ptr<ConnectionServer> create(const ConnectionOptions& options, ConnectionHooks hooks,
                                                  std::string* error);
  virtual ~ConnectionServer() = default;

  // The cpp-httplib server, to install routes and handlers on. Its
  // listen(), bind and socket options are not used: bind() and serve()
  // replace them.
  virtual httplib::Server& http() = 0;
  // Binds host:port (port 0: any free port) with a backlog of SOMAXCONN.
  // Returns the bound port, or -1 with errno set.
  virtual int bind(const std::string& host, int port) = 0;
  // Serves connections until stop(); returns once requests in flight have
  // been answered.
  virtual void serve() = 0;
  // Stops accepting; requests in flight finish. Safe from any thread.
  virtual void stop() = 0;
  virtual bool tls() const = 0;
  virtual ConnectionStats stats() const = 0;
};

}  // namespace writeapi::server

#endif  // WRITEAPI_SERVER_CONNECTION_SERVER_H_
