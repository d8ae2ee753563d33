#include "flags.h"

static_assert(writeapi::kMaxBodyBytesLimit == 1073741824, "update the --max-body message and help");

#include <fmt/core.h>

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "writeapi/version.h"

namespace writeapi::server {
namespace {

constexpr const char* kUsage = R"(Usage: writeapi-server [flags]

Serves the Write API: POST /write/v3/bucket/<bucket>/<key>.

Flags:
  --host ADDR              address to listen on (default 127.0.0.1; 0.0.0.0 for all)
  --port N                 TCP port (default 8080)
  --data-dir DIR           objects go to DIR/<bucket>/<key>.jsonl (default ./data)
  --keys FILE              keys file with SHA-256 hashes of access keys (default ./keys.json)
  --max-body BYTES         largest request body, after gzip decompression
                           (default 10485760 = 10 MiB, at most 1 GiB; suffixes K, M, KiB, MiB accepted)
  --threads N              workers: requests run at once (default 32); idle connections
                           and requests still arriving cost no worker
  --fsync MODE             always (default): answer after fdatasync, with group commit;
                           interval: sync in the background every --fsync-interval-ms;
                           never: leave write-back to the OS
  --fsync-interval-ms N    period for --fsync interval (default 1000)
  --max-open-files N       object files kept open, LRU (default 1024, less when
                           RLIMIT_NOFILE is small)
  --access-log DEST        - for standard output (default), off, or a file path
  --read-timeout-s N       seconds to wait on a stalled client read (default 10)
  --keep-alive-timeout-s N seconds an idle keep-alive connection is kept (default 5)
  --request-timeout-s N    seconds a whole request (headers and body) may take from its
                           first byte (default 60); request heads over 64 KiB get 431
  --max-connections N      connections held at once, idle or not (default: what
                           RLIMIT_NOFILE leaves after --max-open-files; the limit is
                           raised to its hard maximum at start); more get 503
  --max-connections-per-ip N
                           connections one client address may hold; more are
                           answered 429 and closed at once (default 4096; 0 = no cap)
  --min-body-rate BYTES    a body arriving slower than this per second (over 5 s
                           windows) is cut with 408 (default 1024; 0 = no minimum)
  --max-buffer-memory BYTES
                           request heads and bodies being received, held in all;
                           reading pauses beyond it (default 256MiB)
  --metrics-listen ADDR:PORT
                           serve GET /metrics with per-bucket series on a listener of
                           its own (keep it private); /metrics on --port never names
                           a bucket
  --tls-cert FILE          serve HTTPS with this PEM certificate (chain) ...
  --tls-key FILE           ... and this PEM private key (both or neither)
  --max-tracked-devices N  device rate-limit states kept, least recently seen evicted
                           (default 100000)
  --max-watchers N         reads waiting for new lines at once (long-polls, ?wait=S) across
                           all clients, a quarter of them per client address; more are
                           answered 503 server_busy (default 1024; a waiting read holds its
                           connection and no worker)
  --dedup-window DURATION  how long acknowledged request ids (requestId, Idempotency-Key)
                           are remembered: 3600, 90m, 24h, 7d (default 24h)
  --dedup-max N            request ids remembered per bucket, oldest evicted first;
                           about 200 bytes each (300 for a 36-byte UUID); 0 turns
                           retries detection off
                           (default 1000000)
  --storage KIND           file (default): objects under --data-dir; clickhouse: rows of a
                           ClickHouse table that any number of servers share (docs/SCALING.md)
  --clickhouse-url URL     ClickHouse's HTTP interface (default http://127.0.0.1:8123)
  --clickhouse-database DB database of the table (default writeapi; created when missing)
  --clickhouse-table NAME  table of the rows (default lines; created when missing; may be a
                           Distributed table over a cluster)
  --clickhouse-user USER   ClickHouse user (default: none, ClickHouse's default user); the
                           password comes from the environment, WRITEAPI_CLICKHOUSE_PASSWORD
  --clickhouse-flush-ms N  queued rows go out as one INSERT N ms after the first (default 5)
  --clickhouse-flush-rows N
                           ... or as soon as N rows are queued (default 10000)
  --clickhouse-inserts N   INSERTs in flight at once; rows queue while all are busy (default 2)
  --frontend-id NAME       this server's name in the rows it stores, which orders lines
                           stored in the same microsecond by two servers (default
                           <hostname>-<pid>-<random>; never give two live servers one name)
  --config FILE            read settings from FILE first: one "name = value" per line,
                           names being these flags without --, # starts a comment line;
                           flags on the command line override the file
  --version                print the version
  --help                   print this help

Endpoints: POST /write/v3/bucket/<bucket>/<key>; GET /read/v3/bucket/<bucket>,
GET /read/v3/bucket/<bucket>/<key>?cursor=&limit=&tail=&wait= and
GET /devices/v3/bucket/<bucket> with Authorization: Bearer <accessKey>;
GET / (the web console), GET /healthz, GET /metrics.
Signals: SIGINT/SIGTERM finish requests in flight and exit 0; SIGHUP reloads
the keys file (keys and device limits), as does a change of the file on disk.
)";

bool parse_size(std::string_view text, std::size_t* out) {
  std::size_t multiplier = 1;
  auto ends_with = [&](std::string_view suffix) {
    if (text.size() > suffix.size() && text.substr(text.size() - suffix.size()) == suffix) {
      text.remove_suffix(suffix.size());
      return true;
    }
    return false;
  };
  if (ends_with("KiB") || ends_with("K") || ends_with("k"))
    multiplier = 1024;
  else if (ends_with("MiB") || ends_with("M"))
    multiplier = 1024 * 1024;
  if (text.empty()) return false;
  std::size_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    if (value > (SIZE_MAX - 9) / 10) return false;
    value = value * 10 + static_cast<std::size_t>(c - '0');
  }
  if (value > SIZE_MAX / multiplier) return false;
  *out = value * multiplier;
  return true;
}

bool parse_int(std::string_view text, int min, int max, int* out) {
  std::size_t value;
  if (!parse_size(text, &value) || value < static_cast<std::size_t>(min) || value > static_cast<std::size_t>(max))
    return false;
  *out = static_cast<int>(value);
  return true;
}

// One flag and its value, from the command line (origin "") or from the
// config file (origin "FILE:LINE", for error messages).
struct Setting {
  std::string flag;  // with the leading "--"
  std::string value;
  std::string origin;
};

std::string_view trim(std::string_view text) {
  const char* blank = " \t\r";
  std::size_t begin = text.find_first_not_of(blank);
  if (begin == std::string_view::npos) return {};
  return text.substr(begin, text.find_last_not_of(blank) - begin + 1);
}

// Reads `path`: one "name = value" per line, names being the long flags
// without "--"; blank lines and lines starting with '#' are skipped. A name
// may appear once. Appends the settings in file order; false with *error
// naming the file (and line) otherwise. Values are checked later, by the
// same code as the command line's.
bool read_config_file(const std::string& path, std::vector<Setting>* settings, std::string* error) {
  std::FILE* file = std::fopen(path.c_str(), "re");
  if (!file) {
    *error = fmt::format("cannot read config file {}: {}", path, std::strerror(errno));
    return false;
  }
  // A configuration is a few hundred bytes: a larger "file" (/dev/zero, a
  // wrong path) is refused before it can take the machine's memory.
  constexpr std::size_t kMaxConfigBytes = 1 << 20;
  std::string text;
  char buffer[4096];
  for (std::size_t n; text.size() <= kMaxConfigBytes && (n = std::fread(buffer, 1, sizeof buffer, file)) > 0;)
    text.append(buffer, n);
  const bool read_error = std::ferror(file);
  const int read_errno = errno;
  std::fclose(file);
  if (read_error) {
    *error = fmt::format("cannot read config file {}: {}", path, std::strerror(read_errno));
    return false;
  }
  if (text.size() > kMaxConfigBytes) {
    *error = fmt::format("config file {} is larger than {} bytes: not a configuration file", path, kMaxConfigBytes);
    return false;
  }
  if (text.find('\0') != std::string::npos) {
    *error = fmt::format("config file {} contains a NUL byte: not a text file", path);
    return false;
  }
  if (text.find('\r') != std::string::npos && text.find('\n') == std::string::npos) {
    *error = fmt::format("config file {} has CR line ends only: use LF (or CRLF) line ends", path);
    return false;
  }
  std::map<std::string, int, std::less<>> first_line;
  int line_number = 0;
  for (std::size_t start = 0; start < text.size();) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string_view line = trim(std::string_view(text).substr(start, end - start));
    start = end + 1;
    ++line_number;
    if (line.empty() || line[0] == '#') continue;
    const std::string origin = fmt::format("{}:{}", path, line_number);
    std::size_t eq = line.find('=');
    if (eq == std::string_view::npos) {
      *error = fmt::format("{}: expected \"name = value\", got \"{}\"", origin, line);
      return false;
    }
    std::string_view name = trim(line.substr(0, eq));
    std::string_view value = trim(line.substr(eq + 1));
    if (name.empty()) {
      *error = fmt::format("{}: no name before '='", origin);
      return false;
    }
    if (name[0] == '-') {
      *error =
          fmt::format("{}: write names without the flag's dashes (\"port = 8080\", not \"--port = 8080\")", origin);
      return false;
    }
    if (name == "config" || name == "help" || name == "version") {
      *error = fmt::format("{}: {} is a command-line flag only, not a setting", origin, name);
      return false;
    }
    if (value.empty()) {
      *error = fmt::format("{}: {} has no value (leave the line out for the default)", origin, name);
      return false;
    }
    if (auto seen = first_line.find(name); seen != first_line.end()) {
      *error = fmt::format("{}: {} is set again (first on line {})", origin, name, seen->second);
      return false;
    }
    first_line.emplace(std::string(name), line_number);
    settings->push_back(Setting{"--" + std::string(name), std::string(value), origin});
  }
  return true;
}

}  // namespace

std::string fit_file_descriptors(ServerConfig* config) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  // Descriptors besides connections and objects: listeners, epoll, the
  // log and its segments, the keys file, standard streams, TLS and
  // ClickHouse sockets, and up to 64 connections refused at accept while
  // they linger (ConnectionOptions::max_refused_lingering); with
  // --metrics-listen, that listener's 64 connections too.
  const std::size_t kReserved = 128 + (config->metrics_listen_host.empty() ? 0 : 64);
  const std::size_t total = limit.rlim_cur == RLIM_INFINITY ? (1u << 20) : static_cast<std::size_t>(limit.rlim_cur);
  const std::size_t usable = total > kReserved ? total - kReserved : 0;
  if (config->max_open_files == 0) {
    std::size_t wanted_connections =
        config->max_connections > 0 ? static_cast<std::size_t>(config->max_connections) : 0;
    std::size_t left = usable > wanted_connections ? usable - wanted_connections : 0;
    // Without an explicit connection count, objects take at most a quarter.
    config->max_open_files = std::min<std::size_t>(1024, wanted_connections ? left : usable / 4);
  }
  if (config->max_connections == 0) {
    std::size_t left = usable > config->max_open_files ? usable - config->max_open_files : 0;
    config->max_connections = static_cast<int>(std::min<std::size_t>(left, 1u << 20));
  }
  const std::size_t needed = static_cast<std::size_t>(config->max_connections) + config->max_open_files;
  if (config->max_open_files == 0 || config->max_connections <= 0 || needed > usable) {
    return fmt::format(
        "{} connections (--max-connections) and {} open objects (--max-open-files) need {} file descriptors, "
        "but RLIMIT_NOFILE allows {} ({} kept for the server itself); raise the limit (ulimit -n, LimitNOFILE=) "
        "or lower the flags",
        config->max_connections, config->max_open_files, needed + kReserved, total, kReserved);
  }
  if (config->max_connections_per_ip > config->max_connections)
    config->max_connections_per_ip = config->max_connections;
  return "";
}

int parse_flags(int argc, char** argv, ServerConfig* config) {
  // Every setting as (flag, value, origin): the config file's first, then the
  // command line's, so the command line overrides the file.
  std::vector<Setting> command_line;
  std::string config_path;
  for (int i = 1; i < argc; ++i) {
    std::string_view flag = argv[i];
    std::string_view value;
    // Accept both "--flag value" and "--flag=value".
    if (auto eq = flag.find('='); flag.substr(0, 2) == "--" && eq != std::string_view::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
    } else if (flag == "--help" || flag == "-h") {
      fmt::print("{}", kUsage);
      return -1;
    } else if (flag == "--version") {
      fmt::print("writeapi-server {}\n", kVersion);
      return -1;
    } else {
      if (i + 1 >= argc) {
        fmt::print(stderr, "writeapi-server: {} needs a value (see --help)\n", flag);
        return 2;
      }
      value = argv[++i];
    }
    if (flag == "--config") {
      if (!config_path.empty()) {
        fmt::print(stderr, "writeapi-server: --config given twice\n");
        return 2;
      }
      if (value.empty()) {
        fmt::print(stderr, "writeapi-server: --config needs a file\n");
        return 2;
      }
      config_path = std::string(value);
      continue;
    }
    command_line.push_back(Setting{std::string(flag), std::string(value), ""});
  }
  std::vector<Setting> settings;
  if (!config_path.empty()) {
    std::string error;
    if (!read_config_file(config_path, &settings, &error)) {
      fmt::print(stderr, "writeapi-server: {}\n", error);
      return 2;
    }
  }
  settings.insert(settings.end(), command_line.begin(), command_line.end());

  for (const Setting& setting : settings) {
    std::string_view flag = setting.flag;
    std::string_view value = setting.value;
    auto bad = [&](const char* want) {
      if (setting.origin.empty())
        fmt::print(stderr, "writeapi-server: {} {}: expected {}\n", flag, value, want);
      else
        fmt::print(stderr, "writeapi-server: {}: {} = {}: expected {}\n", setting.origin, flag.substr(2), value, want);
      return 2;
    };
    int number = 0;
    if (flag == "--host") {
      config->host = std::string(value);
    } else if (flag == "--port") {
      if (!parse_int(value, 0, 65535, &config->port)) return bad("a port number 0-65535");
    } else if (flag == "--data-dir") {
      config->data_dir = std::string(value);
    } else if (flag == "--keys") {
      config->keys_path = std::string(value);
    } else if (flag == "--max-body") {
      if (!parse_size(value, &config->max_body_bytes) || config->max_body_bytes == 0)
        return bad("a positive size in bytes");
      if (config->max_body_bytes > writeapi::kMaxBodyBytesLimit)
        return bad("at most 1073741824 bytes (1 GiB): the write-ahead log and zlib cannot represent larger bodies");
    } else if (flag == "--threads") {
      if (!parse_int(value, 1, 65536, &config->threads)) return bad("a thread count 1-65536");
    } else if (flag == "--fsync") {
      if (value == "always")
        config->fsync = FsyncPolicy::always;
      else if (value == "interval")
        config->fsync = FsyncPolicy::interval;
      else if (value == "never")
        config->fsync = FsyncPolicy::never;
      else
        return bad("always, interval or never");
    } else if (flag == "--fsync-interval-ms") {
      if (!parse_int(value, 1, 3600000, &number)) return bad("milliseconds 1-3600000");
      config->fsync_interval = std::chrono::milliseconds(number);
    } else if (flag == "--max-open-files") {
      if (!parse_int(value, 1, 1 << 20, &number)) return bad("a count 1-1048576");
      config->max_open_files = static_cast<std::size_t>(number);
    } else if (flag == "--access-log") {
      config->access_log = std::string(value);
    } else if (flag == "--read-timeout-s") {
      if (!parse_int(value, 1, 3600, &config->read_timeout_seconds)) return bad("seconds 1-3600");
    } else if (flag == "--request-timeout-s") {
      if (!parse_int(value, 1, 3600, &config->request_timeout_seconds)) return bad("seconds 1-3600");
    } else if (flag == "--max-connections") {
      if (!parse_int(value, 1, 1 << 24, &config->max_connections)) return bad("a count 1-16777216");
    } else if (flag == "--min-body-rate") {
      if (!parse_size(value, &config->min_body_rate)) return bad("bytes per second");
    } else if (flag == "--max-buffer-memory") {
      if (!parse_size(value, &config->max_buffer_bytes) || config->max_buffer_bytes < (1u << 20))
        return bad("a size of at least 1MiB");
    } else if (flag == "--metrics-listen") {
      std::size_t colon = value.rfind(':');
      if (colon == std::string_view::npos || colon == 0 ||
          !parse_int(value.substr(colon + 1), 0, 65535, &config->metrics_listen_port))
        return bad("ADDR:PORT, e.g. 127.0.0.1:9100");
      std::string_view host = value.substr(0, colon);
      if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
      config->metrics_listen_host = std::string(host);
    } else if (flag == "--max-connections-per-ip") {
      if (!parse_int(value, 0, 1 << 20, &config->max_connections_per_ip)) return bad("a count 0-1048576");
    } else if (flag == "--tls-cert") {
      if (value.empty()) return bad("a PEM certificate file");
      config->tls_cert_path = std::string(value);
    } else if (flag == "--tls-key") {
      if (value.empty()) return bad("a PEM private key file");
      config->tls_key_path = std::string(value);
    } else if (flag == "--keep-alive-timeout-s") {
      if (!parse_int(value, 1, 3600, &config->keep_alive_timeout_seconds)) return bad("seconds 1-3600");
    } else if (flag == "--dedup-window") {
      std::size_t unit = 1;
      std::string_view digits = value;
      if (!digits.empty()) {
        switch (digits.back()) {
          case 's':
            unit = 1, digits.remove_suffix(1);
            break;
          case 'm':
            unit = 60, digits.remove_suffix(1);
            break;
          case 'h':
            unit = 3600, digits.remove_suffix(1);
            break;
          case 'd':
            unit = 86400, digits.remove_suffix(1);
            break;
          default:
            break;
        }
      }
      if (!parse_int(digits, 1, 400 * 86400, &number) || static_cast<std::size_t>(number) * unit > 400u * 86400u)
        return bad("a duration of 1 s to 400 days: seconds, or a number with s, m, h or d");
      config->dedup_window = std::chrono::seconds(static_cast<std::int64_t>(number) * static_cast<std::int64_t>(unit));
    } else if (flag == "--dedup-max") {
      if (!parse_int(value, 0, 100000000, &number)) return bad("a count 0-100000000");
      config->dedup_max_ids = static_cast<std::size_t>(number);
    } else if (flag == "--max-watchers") {
      if (!parse_int(value, 0, 1000000, &number)) return bad("a count 0-1000000");
      config->max_watchers = static_cast<std::size_t>(number);
    } else if (flag == "--max-tracked-devices") {
      if (!parse_int(value, 1, 100000000, &number)) return bad("a count 1-100000000");
      config->max_tracked_devices = static_cast<std::size_t>(number);
    } else if (flag == "--storage") {
      if (value == "file")
        config->storage = StorageBackend::file;
      else if (value == "clickhouse" && !clickhouse_storage_supported())
        return bad("file: this writeapi-server was built without ClickHouse support (WRITEAPI_WITH_CLICKHOUSE=OFF)");
      else if (value == "clickhouse")
        config->storage = StorageBackend::clickhouse;
      else
        return bad("file or clickhouse");
    } else if (flag == "--clickhouse-url") {
      if (value.substr(0, 7) != "http://" && value.substr(0, 8) != "https://") return bad("an http:// or https:// URL");
      config->clickhouse.url = std::string(value);
    } else if (flag == "--clickhouse-database") {
      config->clickhouse.database = std::string(value);
    } else if (flag == "--clickhouse-table") {
      config->clickhouse.table = std::string(value);
    } else if (flag == "--clickhouse-user") {
      config->clickhouse.user = std::string(value);
    } else if (flag == "--clickhouse-flush-ms") {
      if (!parse_int(value, 0, 60000, &number)) return bad("milliseconds 0-60000");
      config->clickhouse.flush_interval = std::chrono::milliseconds(number);
    } else if (flag == "--clickhouse-flush-rows") {
      if (!parse_int(value, 1, 10000000, &number)) return bad("a row count 1-10000000");
      config->clickhouse.flush_rows = static_cast<std::size_t>(number);
    } else if (flag == "--clickhouse-inserts") {
      if (!parse_int(value, 1, 64, &number)) return bad("a count 1-64");
      config->clickhouse.max_inserts_in_flight = static_cast<std::size_t>(number);
    } else if (flag == "--frontend-id") {
      if (value.empty()) return bad("a non-empty name");
      config->clickhouse.frontend_id = std::string(value);
    } else if (setting.origin.empty()) {
      fmt::print(stderr, "writeapi-server: unknown flag {} (see --help)\n", flag);
      return 2;
    } else {
      fmt::print(stderr,
                 "writeapi-server: {}: unknown setting {} (settings are the long flags of --help without "
                 "their --)\n",
                 setting.origin, flag.substr(2));
      return 2;
    }
  }
  // Kept out of argv, where any local user could read it.
  if (const char* password = std::getenv("WRITEAPI_CLICKHOUSE_PASSWORD")) config->clickhouse.password = password;
  if (config->tls_cert_path.empty() != config->tls_key_path.empty()) {
    fmt::print(stderr, "writeapi-server: {} given without {}: HTTPS needs both (see --help)\n",
               config->tls_cert_path.empty() ? "--tls-key" : "--tls-cert",
               config->tls_cert_path.empty() ? "--tls-cert" : "--tls-key");
    return 2;
  }
  return 0;
}

}  // namespace writeapi::server
