// The HTTP front of writeapi-server: routes, body reading, mapping
// writeapi::Status to responses, access log. All ingestion logic lives in
// libwriteapi (writeapi::Ingestor); this file only speaks HTTP.
#ifndef WRITEAPI_SERVER_HTTP_SERVER_H_
#define WRITEAPI_SERVER_HTTP_SERVER_H_

#include <cstdio>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "connection_server.h"
#include "flags.h"
#include "metrics.h"
#include "writeapi/auth.h"
#include "writeapi/ingest.h"
#include "writeapi/limits.h"
#include "writeapi/storage.h"

namespace httplib {
class Server;
}

namespace writeapi::server {

class HttpServer {
 public:
  // `limiter` may be null (no device limits).
  HttpServer(const ServerConfig& config, Authorizer* authorizer, DeviceLimiter* limiter, Storage* storage);
  ~HttpServer();

  // Adds a producer of more Prometheus text, appended to GET /metrics
  // (main uses it for the keys file and the device limiter). Call before
  // serve().
  void add_metrics_source(std::function<std::string()> render) { metrics_sources_.push_back(std::move(render)); }

  // Empty when the server is ready to bind; else why it cannot run (a TLS
  // certificate or key that cannot be loaded).
  const std::string& startup_error() const { return startup_error_; }
  // Whether it serves HTTPS (--tls-cert and --tls-key).
  bool tls() const { return connections_->tls(); }

  // Binds config.host:config.port. Returns false (with errno-style message
  // printed) when the address cannot be bound.
  bool bind();
  // The bound port (useful with --port 0).
  int port() const { return port_; }
  // Serves until stop() is called; returns after in-flight requests end.
  void serve();
  // Stops accepting and wakes serve(). Safe from any thread.
  void stop();

 private:
  void install_routes();

  ServerConfig config_;
  Storage* storage_;
  Ingestor ingestor_;
  Metrics metrics_;
  std::vector<std::function<std::string()>> metrics_sources_;
  // Accept loop, connection limits and TLS around cpp-httplib; http_ is
  // its httplib::Server.
  std::unique_ptr<ConnectionServer> connections_;
  httplib::Server* http_ = nullptr;
  std::string startup_error_;
  int port_ = -1;
  int listen_socket_ = -1;
  std::FILE* access_log_ = nullptr;
  bool own_access_log_ = false;
};

}  // namespace writeapi::server

#endif  // WRITEAPI_SERVER_HTTP_SERVER_H_
