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
  // Workers: requests run at once. Idle and arriving connections cost no
  // worker (ConnectionServer).
  int threads = 32;
  FsyncPolicy fsync = FsyncPolicy::always;
  std::chrono::milliseconds fsync_interval{1000};
  // Object files kept open; 0: sized from RLIMIT_NOFILE (at most 1024).
  std::size_t max_open_files = 0;
  std::string access_log = "-";  // "-" standard output, "off", or a file
  int read_timeout_seconds = 10;
  int keep_alive_timeout_seconds = 5;
  // Whole request (head and body) from its first byte.
  int request_timeout_seconds = 60;
  // Connections held at once; 0: sized from RLIMIT_NOFILE.
  int max_connections = 0;
  // Connections per client address (many devices may share one NAT
  // address); 0: no cap.
  int max_connections_per_ip = 4096;
  // Bodies slower than this many bytes per second are cut (0: no minimum).
  std::size_t min_body_rate = 1024;
  // Request bytes (heads and bodies being received) held in all.
  std::size_t max_buffer_bytes = 256u << 20;
  // --metrics-listen ADDR:PORT: a listener of its own for /metrics with
  // per-bucket series (empty host: none).
  std::string metrics_listen_host;
  int metrics_listen_port = 0;
  // HTTPS when both are set (PEM files).
  std::string tls_cert_path;
  std::string tls_key_path;
  // Device budgets kept by the limiter (DeviceLimiterOptions).
  std::size_t max_tracked_devices = 100000;
  // Read API long-polls (?wait=S) waiting at once; beyond it 503. 0: no
  // waiting (a wait is answered at once).
  std::size_t max_watchers = 1024;
  // Idempotent writes (IngestOptions::dedup_window, dedup_max_ids).
  std::chrono::seconds dedup_window = std::chrono::hours(24);
  std::size_t dedup_max_ids = 1000000;
  // Where accepted lines go: files under data_dir (default) or ClickHouse.
  StorageBackend storage = StorageBackend::file;
  ClickHouseStorageOptions clickhouse;  // --clickhouse-* flags
};

// Raises RLIMIT_NOFILE to its hard limit and sizes max_connections and
// max_open_files from it when they are 0. Returns "" or, when the
// configured connections and open objects cannot fit, why not.
std::string fit_file_descriptors(ServerConfig* config);

// Parses argv into *config: first the settings of --config FILE if given
// (one "name = value" per line, names being the long flags without "--";
// blank lines and lines starting with '#' skipped; each name at most once),
// then the other flags, which override the file's. Returns 0 to go on, -1
// after printing --help or --version (exit 0), or an exit code after
// printing an error (naming the file and line for the config file's).
int parse_flags(int argc, char** argv, ServerConfig* config);

}  // namespace writeapi::server

#endif  // WRITEAPI_SERVER_FLAGS_H_
