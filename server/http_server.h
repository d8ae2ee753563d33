// The HTTP front of writeapi-server: routes, body reading, mapping
// writeapi::Status to responses, access log. All ingestion logic lives in
// libwriteapi (writeapi::Ingestor); this file only speaks HTTP.
#ifndef WRITEAPI_SERVER_HTTP_SERVER_H_
#define WRITEAPI_SERVER_HTTP_SERVER_H_

#include <cstdio>
#include <memory>
#include <mutex>

#include "flags.h"
#include "metrics.h"
#include "writeapi/auth.h"
#include "writeapi/ingest.h"
#include "writeapi/storage.h"

namespace httplib {
class Server;
}

namespace writeapi::server {

class HttpServer {
 public:
  HttpServer(const ServerConfig& config, Authorizer* authorizer, Storage* storage);
  ~HttpServer();

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
  std::unique_ptr<httplib::Server> http_;
  int port_ = -1;
  int listen_socket_ = -1;
  std::FILE* access_log_ = nullptr;
  bool own_access_log_ = false;
};

}  // namespace writeapi::server

#endif  // WRITEAPI_SERVER_HTTP_SERVER_H_
