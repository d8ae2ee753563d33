// The HTTP front of writeapi-server: routes, what each route decides from a
// request head, mapping writeapi::Status to responses, metrics and the
// access log. All ingestion logic lives in libwriteapi (writeapi::Ingestor);
// connections and framing are ConnectionServer's; this file only speaks
// HTTP.
#ifndef WRITEAPI_SERVER_HTTP_SERVER_H_
#define WRITEAPI_SERVER_HTTP_SERVER_H_

#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "access_log.h"
#include "connection_server.h"
#include "flags.h"
#include "metrics.h"
#include "read_routes.h"
#include "writeapi/auth.h"
#include "writeapi/ingest.h"
#include "writeapi/limits.h"
#include "writeapi/storage.h"

namespace writeapi::server {

class HttpServer {
 public:
  // `limiter` may be null (no device limits).
  HttpServer(const ServerConfig& config, Authorizer* authorizer, DeviceLimiter* limiter, Storage* storage);
  ~HttpServer();

  // Adds a producer of more Prometheus text, appended to GET /metrics
  // (main uses it for the keys file and the device limiter). The text of
  // `render(true)` may name buckets and is served only on the metrics
  // listener (--metrics-listen); `render(false)` must not, and is what
  // /metrics on the main listener shows. Call before serve().
  void add_metrics_source(std::function<std::string(bool with_buckets)> render) {
    metrics_sources_.push_back(std::move(render));
  }

  // Empty when the server is ready to bind; else why it cannot run (a TLS
  // certificate or key that cannot be loaded).
  const std::string& startup_error() const { return startup_error_; }
  // Whether it serves HTTPS (--tls-cert and --tls-key).
  bool tls() const { return connections_->tls(); }

  // Binds config.host:config.port (and --metrics-listen). Returns false,
  // with *error saying which address and why, when one cannot be bound.
  bool bind(std::string* error);
  // The bound port (useful with --port 0).
  int port() const { return port_; }
  // The bound port of --metrics-listen (-1 without it).
  int metrics_port() const { return metrics_port_; }
  // Serves until stop() is called; returns after in-flight requests end.
  void serve();
  // Stops accepting and wakes serve(). Safe from any thread.
  void stop();

 private:
  void install_routes();
  HeadDecision decide_head(const http1::RequestHead& head) const;
  // The write route: ingests and renders the whole answer into *response,
  // then calls done (at once, or from the store's thread once the append
  // is durable).
  void run_write(const http1::RequestHead& head, std::string_view body, std::string_view remote_ip, bool keep_alive,
                 std::string* response, std::function<void()> done);
  void write_answer(const http1::RequestHead& head, std::string_view remote_ip, bool keep_alive, const Status& status,
                    const IngestResult& result, std::chrono::steady_clock::time_point start, std::string* response);
  std::string render_connection_error(const ConnectionError& error);
  std::string render_metrics(bool with_buckets) const;
  void log_request(std::string_view remote_ip, std::string_view method, std::string_view target, int status,
                   std::string_view error, double seconds);

  ServerConfig config_;
  Storage* storage_;
  // The Read API; made before the Ingestor, whose stored batches wake its
  // waiting reads.
  std::unique_ptr<ReadRoutes> reads_;
  Ingestor ingestor_;
  Metrics metrics_;
  std::vector<std::function<std::string(bool)>> metrics_sources_;
  // The event loop, workers and framing around cpp-httplib's routes; the
  // metrics listener has one of its own.
  std::unique_ptr<ConnectionServer> connections_;
  std::unique_ptr<ConnectionServer> metrics_connections_;
  std::thread metrics_thread_;
  std::string startup_error_;
  int port_ = -1;
  int metrics_port_ = -1;
  std::unique_ptr<AccessLog> access_log_;
  std::string keep_alive_header_, keep_alive_header_10_;
};

}  // namespace writeapi::server

#endif  // WRITEAPI_SERVER_HTTP_SERVER_H_
