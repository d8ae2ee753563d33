#include "http_server.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <httplib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>

#include "console.h"
#include "log.h"
#include "writeapi/names.h"
#include "writeapi/response.h"

namespace writeapi::server {
namespace {

using Clock = std::chrono::steady_clock;

// What the handler learned about the request, for the metrics and the
// access log written after the response (same worker thread).
struct RequestContext {
  Clock::time_point start{};
  std::uint64_t items = 0;
  std::uint64_t bytes = 0;
  std::string device_id;
  std::string_view error;
};
thread_local RequestContext t_request;

void respond(httplib::Response& res, const Status& status) {
  res.status = status.http_status();
  for (const auto& header : status_headers(status)) res.set_header(std::string(header.name), header.value);
  res.set_content(error_json(status.name(), status.message()), "application/json");
  t_request.error = status.name();
}

// A complete response refusing a request from its head (the connection
// closes after it: a body may follow unread).
std::string render_refusal(int http_status, std::string_view code, std::string_view message, int retry_after) {
  std::string headers = "Connection: close\r\n";
  if (retry_after > 0) headers += fmt::format("Retry-After: {}\r\n", retry_after);
  std::string response;
  append_error_response(http_status, code, message, headers, &response);
  return response;
}

// UTC time with milliseconds, ISO 8601 ("2026-11-25T21:00:00.123Z").
std::string utc_timestamp() {
  auto now = std::chrono::system_clock::now();
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t seconds = static_cast<std::time_t>(millis / 1000);
  std::tm tm;
  gmtime_r(&seconds, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(millis % 1000));
}

std::string_view target_path(std::string_view target) { return target.substr(0, target.find('?')); }

std::string_view field_value(const http1::RequestHead& head, std::string_view name) {
  const http1::Field* f = head.find(name);
  return f ? f->value : std::string_view();
}

bool on_write_path(std::string_view target) {
  return target_path(target).substr(0, kWritePathPrefix.size()) == kWritePathPrefix;
}

}  // namespace

HttpServer::HttpServer(const ServerConfig& config, Authorizer* authorizer, DeviceLimiter* limiter, Storage* storage)
    : config_(config), storage_(storage), ingestor_(authorizer, limiter, storage, [&] {
        IngestOptions options;
        options.max_body_bytes = config.max_body_bytes;
        options.dedup_window = config.dedup_window;
        options.dedup_max_ids = config.dedup_max_ids;
        // Waiting reads of the object wake once its lines are stored.
        options.on_appended = [this](std::string_view bucket, std::string_view key) {
          if (reads_) reads_->appended(bucket, key);
        };
        return options;
      }()) {
  ReadRouteOptions read_options;
  read_options.max_watchers = config_.max_watchers;
  read_options.keep_alive_timeout_seconds = config_.keep_alive_timeout_seconds;
  reads_ = std::make_unique<ReadRoutes>(read_options, authorizer, limiter, storage,
                                        [this](std::string_view method, std::string_view target,
                                               std::string_view remote_ip, const ReadOutcome& outcome, double seconds) {
                                          // Reads store nothing: the request counters only.
                                          metrics_.record_request(outcome.http_status, 0, 0, seconds);
                                          if (!access_log_) return;
                                          t_request.items = outcome.lines;
                                          t_request.bytes = outcome.bytes;
                                          log_request(remote_ip, method, target, outcome.http_status, outcome.error,
                                                      seconds);
                                          t_request = RequestContext();
                                        });
  ConnectionOptions options;
  options.workers = config_.threads;
  options.max_connections = config_.max_connections;
  options.max_connections_per_ip = config_.max_connections_per_ip;
  options.read_timeout = std::chrono::seconds(config_.read_timeout_seconds);
  options.write_timeout = std::chrono::seconds(config_.read_timeout_seconds);
  options.keep_alive_timeout = std::chrono::seconds(config_.keep_alive_timeout_seconds);
  options.request_timeout = std::chrono::seconds(config_.request_timeout_seconds);
  options.min_body_rate = config_.min_body_rate;
  options.max_buffer_bytes = config_.max_buffer_bytes;
  // A small write is a few microseconds of CPU and, with files, one
  // pwrite: it runs on the loop thread, which saves two thread hand-overs
  // per request. Nothing there waits: with --fsync always the request is
  // answered when its group commit completes (the log thread's), with
  // ClickHouse when its INSERT does (a flush thread's), and the loop serves
  // the others meanwhile, so every request in flight joins the next group.
  options.inline_body_bytes = 64 * 1024;
  // Lingering reads up to a whole refused body, so that a client that sends
  // everything before reading still gets the answer.
  options.linger_bytes = std::max<std::size_t>(options.linger_bytes, config_.max_body_bytes + (1u << 20));
  options.tls_cert_path = config_.tls_cert_path;
  options.tls_key_path = config_.tls_key_path;
  ConnectionHooks hooks;
  hooks.decide_head = [this](const http1::RequestHead& head) { return decide_head(head); };
  hooks.render_error = [this](const ConnectionError& e) { return render_connection_error(e); };
  hooks.run_direct = [this](const http1::RequestHead& head, std::string_view body, std::string_view remote_ip,
                            bool keep_alive, std::string* response, std::unique_ptr<ResponseStream>* stream,
                            std::function<void()> done) {
    if (ReadRoutes::handles(head.target))
      return reads_->run(head, remote_ip, keep_alive, response, stream, std::move(done));
    run_write(head, body, remote_ip, keep_alive, response, std::move(done));
  };
  keep_alive_header_ = fmt::format("Keep-Alive: timeout={}\r\n", config_.keep_alive_timeout_seconds);
  keep_alive_header_10_ = "Connection: keep-alive\r\n" + keep_alive_header_;
  connections_ = ConnectionServer::create(options, hooks, &startup_error_);
  if (!connections_) {  // reported by startup_error(); keep a valid object
    options.tls_cert_path.clear();
    options.tls_key_path.clear();
    connections_ = ConnectionServer::create(options, hooks, &startup_error_);
  }
  if (!config_.metrics_listen_host.empty()) {
    // The metrics listener: few connections, one worker, plain HTTP.
    ConnectionOptions metrics_options = options;
    metrics_options.workers = 1;
    // Counted in the descriptor reserve (fit_file_descriptors): 64
    // connections, and refusals beyond them close at once.
    metrics_options.max_connections = 64;
    metrics_options.max_refused_lingering = 0;
    metrics_options.max_connections_per_ip = 0;
    metrics_options.max_buffer_bytes = 4u << 20;
    metrics_options.tls_cert_path.clear();
    metrics_options.tls_key_path.clear();
    ConnectionHooks metrics_hooks;
    metrics_hooks.decide_head = [](const http1::RequestHead&) { return HeadDecision(); };
    metrics_hooks.render_error = [](const ConnectionError& e) {
      return render_refusal(e.http_status, e.code, e.message, 0);
    };
    std::string ignored;
    metrics_connections_ = ConnectionServer::create(metrics_options, metrics_hooks, &ignored);
    httplib::Server& http = metrics_connections_->http();
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(render_metrics(true), "text/plain; version=0.0.4");
    });
    http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
      res.set_content(error_json("not_found", "the metrics listener serves GET /metrics only"), "application/json");
    });
  }
  metrics_sources_.push_back([this](bool) { return render_connection_metrics(connections_->stats()); });
  metrics_sources_.push_back([this](bool) { return render_request_id_metrics(ingestor_.request_id_stats()); });
  metrics_sources_.push_back([this](bool) {
    return fmt::format(
        "# HELP writeapi_read_watchers Read API requests waiting for new lines (long-polls).\n"
        "# TYPE writeapi_read_watchers gauge\nwriteapi_read_watchers {}\n"
        "# HELP writeapi_read_watchers_refused_total Long-polls refused with 503 at --max-watchers.\n"
        "# TYPE writeapi_read_watchers_refused_total counter\nwriteapi_read_watchers_refused_total {}\n"
        "# HELP writeapi_read_answers_shortened_total Read answers cut to their first part (256 KiB): every "
        "stream slot was taken.\n"
        "# TYPE writeapi_read_answers_shortened_total counter\nwriteapi_read_answers_shortened_total {}\n",
        reads_->waiting(), reads_->watchers_refused(), reads_->streams_shortened());
  });
  if (config_.access_log == "-") {
    access_log_ = std::make_unique<AccessLog>(STDOUT_FILENO);
  } else if (config_.access_log != "off") {
    int fd = ::open(config_.access_log.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
      access_log_ = std::make_unique<AccessLog>(fd);
      ::close(fd);  // the log keeps its own duplicate
    } else {
      log_line("cannot open access log {}; logging to standard output", config_.access_log);
      access_log_ = std::make_unique<AccessLog>(STDOUT_FILENO);
    }
  }
  install_routes();
}

HttpServer::~HttpServer() {
  if (metrics_thread_.joinable()) {
    metrics_connections_->stop();
    metrics_thread_.join();
  }
}

HeadDecision HttpServer::decide_head(const http1::RequestHead& head) const {
  HeadDecision decision;
  if (ReadRoutes::handles(head.target)) {
    // The Read API: no body; reads of the store may block, so never on
    // the loop thread.
    decision.direct = true;
    decision.blocking = true;
    return decision;
  }
  if (!on_write_path(head.target)) return decision;  // cpp-httplib's routes, no body read
  // Every method on the write path is the library's to answer; only POST
  // reads a body (another method's body stays unread, and the connection
  // closes after the 405).
  decision.direct = true;
  if (head.method != "POST") return decision;
  std::string bucket, key;
  if (Status s = ingestor_.check_head(head, &bucket, &key); !s.ok()) {
    append_write_response(s, 0, "Connection: close\r\n", &decision.refusal);
    return decision;
  }
  decision.read_body = true;
  decision.max_body_bytes = ingestor_.max_body_bytes();
  return decision;
}

void HttpServer::run_write(const http1::RequestHead& head, std::string_view body, std::string_view remote_ip,
                           bool keep_alive, std::string* response, std::function<void()> done) {
  const auto start = Clock::now();
  IngestRequest request;
  std::string bucket, key;
  // The connection layer keeps head, remote_ip and *response until done().
  auto answer = [this, &head, remote_ip, keep_alive, response, start, done = std::move(done)](
                    const Status& status, const IngestResult& result) {
    write_answer(head, remote_ip, keep_alive, status, result, start, response);
    done();
  };
  Status status = ingestor_.check_head(head, &bucket, &key);
  if (!status.ok()) return answer(status, IngestResult());
  request.bucket = bucket;
  request.key = key;
  request.content_type = field_value(head, "Content-Type");
  request.content_encoding = field_value(head, "Content-Encoding");
  if (const http1::Field* f = head.find("Idempotency-Key")) request.idempotency_key = f->value;
  request.body = body;
  // Compressed and large bodies (up to three times --max-body of working
  // memory) run at most four at once: the connection layer holds the
  // rest back (connection_server.cpp, kHeavySlots). The store's part
  // completes from its own thread (a group commit), holding no worker.
  ingestor_.ingest_async(request, std::move(answer));
}

void HttpServer::write_answer(const http1::RequestHead& head, std::string_view remote_ip, bool keep_alive,
                              const Status& status, const IngestResult& result, Clock::time_point start,
                              std::string* response) {
  const int http_status = status.http_status();
  // HTTP/1.0 keeps a connection only when the answer says so.
  const std::string_view connection = !keep_alive               ? std::string_view("Connection: close\r\n")
                                      : head.minor_version == 0 ? std::string_view(keep_alive_header_10_)
                                                                : std::string_view(keep_alive_header_);
  append_write_response(status, result.items, connection, response, result.duplicate);
  if (head.method == "HEAD") response->resize(response->find("\r\n\r\n") + 4);  // the head of the answer only
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  // A duplicate retry stored nothing: the counters and the log say 0 items.
  const std::uint64_t items = status.ok() && !result.duplicate ? result.items : 0;
  const std::uint64_t bytes = status.ok() ? result.bytes_stored : 0;
  metrics_.record_request(http_status, items, bytes, seconds);
  if (access_log_) {
    t_request.items = items;
    t_request.bytes = bytes;
    t_request.device_id = result.device_id;
    log_request(remote_ip, head.method, head.target, http_status, status.ok() ? std::string_view() : status.name(),
                seconds);
    t_request = RequestContext();
  }
}

std::string HttpServer::render_connection_error(const ConnectionError& e) {
  int retry_after = (e.http_status == 429 || e.http_status == 503) ? 1 : 0;
  metrics_.record_request(e.http_status, 0, 0, 0);
  log_request(e.remote_ip, e.method.empty() ? std::string_view("-") : e.method,
              e.target.empty() ? std::string_view("-") : e.target, e.http_status, e.code, 0);
  return render_refusal(e.http_status, e.code, e.message, retry_after);
}

std::string HttpServer::render_metrics(bool with_buckets) const {
  std::string text = metrics_.render(storage_->stats());
  text += fmt::format(
      "# HELP writeapi_access_log_dropped_total Access log lines dropped because the log sink was too slow.\n"
      "# TYPE writeapi_access_log_dropped_total counter\nwriteapi_access_log_dropped_total {}\n",
      access_log_ ? access_log_->dropped() : 0);
  for (const auto& source : metrics_sources_) text += source(with_buckets);
  return text;
}

void HttpServer::log_request(std::string_view remote_ip, std::string_view method, std::string_view target, int status,
                             std::string_view error, double seconds) {
  if (!access_log_) return;
  std::string line = utc_timestamp();
  line += ' ';
  append_log_field(&line, remote_ip.empty() ? std::string_view("-") : remote_ip);
  line += ' ';
  append_log_field(&line, method);
  line += ' ';
  append_log_field(&line, target_path(target));
  line += fmt::format(" {} items={} bytes={} us={} device=", status, t_request.items, t_request.bytes,
                      static_cast<std::int64_t>(seconds * 1e6));
  if (t_request.device_id.empty()) {
    line += "-";
  } else {
    append_json_string(&line, t_request.device_id);
  }
  line += " error=";
  line += error.empty() ? std::string_view("-") : error;
  line += '\n';
  access_log_->write(line);
}

void HttpServer::install_routes() {
  httplib::Server& http = connections_->http();
  // Connections, timeouts, framing and bodies are ConnectionServer's
  // (connection_server.h); cpp-httplib routes requests that are complete
  // and unambiguous. Its Keep-Alive header reports the real timeout.
  http.set_keep_alive_max_count(1000000);
  http.set_keep_alive_timeout(config_.keep_alive_timeout_seconds);
  http.set_payload_max_length(config_.max_body_bytes);

  http.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
    t_request.start = Clock::now();
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // HTTP/1.0 keeps a connection only when the answer says so.
  http.set_post_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    if (req.version == "HTTP/1.0" && res.get_header_value("Connection") != "close")
      res.set_header("Connection", "keep-alive");
  });

  // Nothing on the write path reaches cpp-httplib: decide_head and
  // run_write answer every method there with the library's decision.
  http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("{\"ok\":true}\n", "application/json");
  });
  // No bucket names here: the per-bucket series are on --metrics-listen.
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(render_metrics(false), "text/plain; version=0.0.4");
  });

  // The web console's pages and scripts (console.h).
  install_console_routes(http);

  // Errors cpp-httplib produces itself (unknown path or method) get the
  // same JSON shape as ours.
  http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty() || !t_request.error.empty()) return;  // answered by us
    if (res.status == 404) {
      respond(res, Status(ErrorCode::not_found, "unknown path; write to /write/v3/bucket/<bucket>/<key>"));
    } else {
      int status = res.status;
      respond(res, Status(ErrorCode::bad_request, "the request could not be understood"));
      res.status = status;
    }
  });

  http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    double seconds = 0;
    if (t_request.start != Clock::time_point{})
      seconds = std::chrono::duration<double>(Clock::now() - t_request.start).count();
    metrics_.record_request(res.status, t_request.items, t_request.bytes, seconds);
    log_request(req.remote_addr, req.method, req.target, res.status, t_request.error, seconds);
    t_request = RequestContext();
  });
}

bool HttpServer::bind(std::string* error) {
  port_ = connections_->bind(config_.host, config_.port);
  if (port_ < 0) {
    *error = fmt::format("cannot listen on {}:{}: {}", config_.host, config_.port, std::strerror(errno));
    return false;
  }
  if (metrics_connections_) {
    metrics_port_ = metrics_connections_->bind(config_.metrics_listen_host, config_.metrics_listen_port);
    if (metrics_port_ < 0) {
      *error = fmt::format("cannot listen on {}:{} (--metrics-listen): {}", config_.metrics_listen_host,
                           config_.metrics_listen_port, std::strerror(errno));
      return false;
    }
  }
  return true;
}

void HttpServer::serve() {
  if (metrics_connections_) metrics_thread_ = std::thread([this] { metrics_connections_->serve(); });
  connections_->serve();
}

void HttpServer::stop() {
  reads_->stop();  // waiting reads are answered now, not at their deadline
  connections_->stop();
  if (metrics_connections_) metrics_connections_->stop();
}

}  // namespace writeapi::server
