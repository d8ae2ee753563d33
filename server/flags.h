// Command-line flags and config file of writeapi-server.
#ifndef WRITEAPI_SERVER_FLAGS_H_
#define WRITEAPI_SERVER_FLAGS_H_

#include <chrono>
#include <cstddef>
#include <string>

#include "writeapi/clickhouse.h"
#include "writeapi/ingest.h"
#include "writeapi/storage.h"

namespace writeapi::server {

enum class StorageBackend { file, clickhouse };

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string data_dir = "data";
  std::string keys_path = "keys.json";
  std::size_t max_body_bytes = kDefaultMaxBodyBytes;
  // cpp-httplib serves each keep-alive connection on its own worker, so the
  // pool bounds concurrent connections: 512 leaves headroom over 256 clients.
  int threads = 512;
  FsyncPolicy fsync = FsyncPolicy::always;
  std::chrono::milliseconds fsync_interval{1000};
  std::size_t max_open_files = 1024;
  std::string access_log = "-";  // "-" standard output, "off", or a file
  int read_timeout_seconds = 10;
  int keep_alive_timeout_seconds = 5;
  // Whole request (head and body) from its first byte.
  int request_timeout_seconds = 60;
  // Connections per client address; -1: three quarters of threads; 0: no cap.
  int max_connections_per_ip = -1;
  // HTTPS when both are set (PEM files).
  std::string tls_cert_path;
  std::string tls_key_path;
  // Device budgets kept by the limiter (DeviceLimiterOptions).
  std::size_t max_tracked_devices = 100000;
  // Where accepted lines go: files under data_dir (default) or ClickHouse.
  StorageBackend storage = StorageBackend::file;
  ClickHouseStorageOptions clickhouse;  // --clickhouse-* flags
};

// Parses argv into *config: first the settings of --config FILE if given
// (one "name = value" per line, names being the long flags without "--";
// blank lines and lines starting with '#' skipped; each name at most once),
// then the other flags, which override the file's. Returns 0 to go on, -1
// after printing --help or --version (exit 0), or an exit code after
// printing an error (naming the file and line for the config file's).
int parse_flags(int argc, char** argv, ServerConfig* config);

}  // namespace writeapi::server

#endif  // WRITEAPI_SERVER_FLAGS_H_
