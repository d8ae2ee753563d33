#include "http_server.h"

#include <fmt/format.h>
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "writeapi/names.h"

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

void append_json_string(std::string* out, std::string_view s) {
  out->push_back('"');
  for (char c : s) {
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      case '\r': out->append("\\r"); break;
      case '\t': out->append("\\t"); break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          out->append(fmt::format("\\u{:04x}", static_cast<unsigned char>(c)));
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

void respond(httplib::Response& res, const Status& status) {
  res.status = status.http_status();
  std::string body = "{\"ok\":false,\"error\":";
  append_json_string(&body, status.name());
  body += ",\"message\":";
  append_json_string(&body, status.message());
  body += "}\n";
  if (status.retry_after_seconds() > 0) res.set_header("Retry-After", std::to_string(status.retry_after_seconds()));
  res.set_content(body, "application/json");
  t_request.error = status.name();
}

// Refusals decided before the body is read: the unread body would be taken
// for the next request (request smuggling), so the connection must close
// after the answer. cpp-httplib 0.11 ignores a handler's "Connection:
// close", but it closes the connection when a content provider reports
// failure; this provider writes the whole answer first, then does so.
void refuse_unread(httplib::Response& res, const Status& status) {
  respond(res, status);
  auto body = std::make_shared<std::string>(std::move(res.body));
  res.body.clear();
  res.set_header("Connection", "close");
  res.set_content_provider(body->size(), "application/json",
                           [body](std::size_t offset, std::size_t length, httplib::DataSink& sink) {
                             sink.write(body->data() + offset, length);
                             return false;  // close the connection
                           });
}

bool parse_content_length(const std::string& text, std::uint64_t* value) {
  if (text.empty() || text.size() > 19) return false;
  std::uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  *value = v;
  return true;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

// Checks the framing headers. Ok, or the refusal to send.
Status check_framing(const httplib::Request& req, std::size_t max_body, bool* chunked,
                     std::uint64_t* content_length) {
  const std::size_t lengths = req.get_header_value_count("Content-Length");
  const bool has_te = req.has_header("Transfer-Encoding");
  *chunked = false;
  *content_length = 0;
  if (has_te) {
    if (lengths > 0)
      return Status(ErrorCode::bad_request, "send either Content-Length or Transfer-Encoding, not both");
    if (req.get_header_value_count("Transfer-Encoding") != 1 ||
        !iequals(req.get_header_value("Transfer-Encoding"), "chunked"))
      return Status(ErrorCode::bad_request, "the only Transfer-Encoding accepted is chunked");
    *chunked = true;
    return Status();
  }
  if (lengths == 0)
    return Status(ErrorCode::length_required, "send a Content-Length header (or a chunked body)");
  for (std::size_t i = 0; i < lengths; ++i) {
    std::uint64_t value;
    if (!parse_content_length(req.get_header_value("Content-Length", i), &value))
      return Status(ErrorCode::bad_request, "Content-Length is not a number");
    if (i > 0 && value != *content_length)
      return Status(ErrorCode::bad_request, "conflicting Content-Length headers");
    *content_length = value;
  }
  if (*content_length > max_body)
    return Status(ErrorCode::payload_too_large,
                  "the body exceeds the size limit of " + std::to_string(max_body) + " bytes");
  return Status();
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

std::string_view target_path(const std::string& target) {
  std::string_view path(target);
  return path.substr(0, path.find('?'));
}

}  // namespace

HttpServer::HttpServer(const ServerConfig& config, Authorizer* authorizer, DeviceLimiter* limiter,
                       Storage* storage)
    : config_(config),
      storage_(storage),
      ingestor_(authorizer, limiter, storage, [&] {
        IngestOptions options;
        options.max_body_bytes = config.max_body_bytes;
        return options;
      }()) {
  ConnectionOptions connection_options;
  connection_options.threads = config_.threads;
  // Default: three quarters of the workers, so one address always leaves
  // a quarter of them to everyone else.
  connection_options.max_connections_per_ip =
      config_.max_connections_per_ip >= 0 ? config_.max_connections_per_ip : std::max(1, config_.threads * 3 / 4);
  connection_options.read_timeout = std::chrono::seconds(config_.read_timeout_seconds);
  connection_options.write_timeout = std::chrono::seconds(config_.read_timeout_seconds);
  connection_options.keep_alive_timeout = std::chrono::seconds(config_.keep_alive_timeout_seconds);
  connection_options.request_timeout = std::chrono::seconds(config_.request_timeout_seconds);
  connection_options.tls_cert_path = config_.tls_cert_path;
  connection_options.tls_key_path = config_.tls_key_path;
  connections_ = ConnectionServer::create(connection_options, &startup_error_);
  if (!connections_) {  // reported by startup_error(); keep a valid object
    connection_options.tls_cert_path.clear();
    connection_options.tls_key_path.clear();
    connections_ = ConnectionServer::create(connection_options, &startup_error_);
  }
  http_ = &connections_->http();
  metrics_sources_.push_back([this] { return render_connection_metrics(connections_->stats()); });
  if (config_.access_log == "-") {
    access_log_ = stdout;
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
  } else if (config_.access_log != "off") {
    access_log_ = std::fopen(config_.access_log.c_str(), "a");
    if (access_log_) {
      own_access_log_ = true;
      std::setvbuf(access_log_, nullptr, _IOLBF, 0);
    } else {
      fmt::print(stderr, "writeapi-server: cannot open access log {}; logging to standard output\n",
                 config_.access_log);
      access_log_ = stdout;
    }
  }
  install_routes();
}

HttpServer::~HttpServer() {
  if (own_access_log_) std::fclose(access_log_);
}

void HttpServer::install_routes() {
  httplib::Server& http = *http_;
  // Workers, timeouts, the per-address connection cap and the request head
  // cap are ConnectionServer's (connection_server.h); cpp-httplib's own
  // settings below only matter for what it does inside a request.
  http.set_tcp_nodelay(true);
  // No SO_REUSEPORT (cpp-httplib's default): a second server on a busy
  // port must fail to start, not share it. The listening socket is kept to
  // raise its backlog after bind (cpp-httplib listens with a backlog of 5).
  http.set_socket_options([this](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    listen_socket_ = sock;
  });
  http.set_keep_alive_max_count(1000000);
  http.set_keep_alive_timeout(config_.keep_alive_timeout_seconds);
  http.set_read_timeout(config_.read_timeout_seconds, 0);
  http.set_write_timeout(config_.read_timeout_seconds, 0);
  http.set_payload_max_length(config_.max_body_bytes);

  http.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
    t_request.start = Clock::now();
    ConnectionServer::head_complete();  // the body is not capped as a head
    return httplib::Server::HandlerResponse::Unhandled;
  });

  // The route pattern is deliberately trivial: names are checked by
  // parse_write_target on the raw target, not by the regex.
  const std::string write_route = std::string(kWritePathPrefix) + ".*";
  http.Post(write_route, [this](const httplib::Request& req, httplib::Response& res,
                                const httplib::ContentReader& content_reader) {
    std::string bucket, key;
    if (Status s = parse_write_target(req.target, &bucket, &key); !s.ok()) return refuse_unread(res, s);
    bool chunked;
    std::uint64_t content_length;
    if (Status s = check_framing(req, config_.max_body_bytes, &chunked, &content_length); !s.ok())
      return refuse_unread(res, s);
    const std::string content_type = req.get_header_value("Content-Type");
    if (Status s = check_content_type(content_type); !s.ok())
      return refuse_unread(res, s);

    if (req.get_header_value_count("Content-Encoding") > 1)
      return refuse_unread(res, Status(ErrorCode::unsupported_encoding, "send one Content-Encoding"));
    const std::string encoding = req.get_header_value("Content-Encoding");
    if (Status s = check_content_encoding(encoding); !s.ok()) return refuse_unread(res, s);
    // libwriteapi inflates gzip itself, exactly (a truncated or corrupt
    // stream is refused) and within the size limit; cpp-httplib's own
    // inflation is lenient and case-sensitive, so it must not see the
    // header. The Request is ours to change: cpp-httplib owns a mutable one.
    const_cast<httplib::Request&>(req).headers.erase("Content-Encoding");

    thread_local std::string body;
    body.clear();
    if (!chunked) body.reserve(static_cast<std::size_t>(content_length));
    bool too_large = false;
    const std::size_t limit = config_.max_body_bytes;
    bool read_ok = content_reader([&](const char* data, std::size_t length) {
      if (body.size() + length > limit) {
        too_large = true;
        return false;
      }
      body.append(data, length);
      return true;
    });
    if (too_large) {
      return refuse_unread(res, Status(ErrorCode::payload_too_large,
                                       "the body exceeds the size limit of " + std::to_string(limit) + " bytes"));
    }
    if (!read_ok) {
      return refuse_unread(res, Status(ErrorCode::bad_request,
                                       "the body could not be read (bad chunked framing or gzip data, "
                                       "or the connection ended early)"));
    }

    IngestRequest request;
    request.bucket = bucket;
    request.key = key;
    request.content_type = content_type;
    request.content_encoding = encoding;
    request.body = body;
    IngestResult result;
    Status status = ingestor_.ingest(request, &result);
    t_request.device_id = std::move(result.device_id);
    if (body.capacity() > (1u << 20)) std::string().swap(body);
    if (!status.ok()) return respond(res, status);
    t_request.items = result.items;
    t_request.bytes = result.bytes_stored;
    res.status = 200;
    res.set_content(fmt::format("{{\"ok\":true,\"items\":{}}}\n", result.items), "application/json");
  });

  auto method_not_allowed = [](const httplib::Request&, httplib::Response& res,
                               const httplib::ContentReader&) {
    res.set_header("Allow", "POST");
    refuse_unread(res, Status(ErrorCode::method_not_allowed, "the write path accepts POST only"));
  };
  http.Put(write_route, method_not_allowed);
  http.Patch(write_route, method_not_allowed);
  http.Delete(write_route, method_not_allowed);
  auto method_not_allowed_plain = [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Allow", "POST");
    respond(res, Status(ErrorCode::method_not_allowed, "the write path accepts POST only"));
  };
  http.Get(write_route, method_not_allowed_plain);
  http.Options(write_route, method_not_allowed_plain);

  http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("{\"ok\":true}\n", "application/json");
  });
  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    std::string text = metrics_.render(storage_->stats());
    for (const auto& source : metrics_sources_) text += source();
    res.set_content(text, "text/plain; version=0.0.4");
  });

  // Errors cpp-httplib produces itself (unknown path, malformed request,
  // oversized headers) get the same JSON shape as ours.
  http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty() || !t_request.error.empty()) return;  // answered by us
    switch (res.status) {
      case 404: respond(res, Status(ErrorCode::not_found, "unknown path; write to /write/v3/bucket/<bucket>/<key>")); break;
      case 413: respond(res, Status(ErrorCode::payload_too_large, "the body exceeds the size limit")); break;
      case 415: respond(res, Status(ErrorCode::unsupported_encoding, "Content-Encoding must be gzip or identity")); break;
      default: {
        int status = res.status;
        if (ConnectionServer::head_too_large()) {
          respond(res, Status(ErrorCode::bad_request, "the request line and headers are too large"));
          status = 431;
        } else if (ConnectionServer::timed_out()) {
          respond(res, Status(ErrorCode::bad_request, "the request was not received in time"));
          status = 408;
        } else {
          respond(res, Status(ErrorCode::bad_request, "the request could not be understood"));
        }
        res.status = status;
      }
    }
  });

  http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    double seconds = 0;
    if (t_request.start != Clock::time_point{})
      seconds = std::chrono::duration<double>(Clock::now() - t_request.start).count();
    metrics_.record_request(res.status, t_request.items, t_request.bytes, seconds);
    if (access_log_) {
      std::string line = fmt::format("{} {} {} {} {} items={} bytes={} us={} device=", utc_timestamp(),
                                     req.remote_addr.empty() ? std::string_view("-") : std::string_view(req.remote_addr), req.method, target_path(req.target), res.status,
                                     t_request.items, t_request.bytes, static_cast<std::int64_t>(seconds * 1e6));
      if (t_request.device_id.empty()) {
        line += "-";
      } else {
        append_json_string(&line, t_request.device_id);
      }
      line += " error=";
      line += t_request.error.empty() ? std::string_view("-") : t_request.error;
      line += '\n';
      std::fwrite(line.data(), 1, line.size(), access_log_);
    }
    t_request = RequestContext();
  });
}

bool HttpServer::bind() {
  if (config_.port == 0) {
    port_ = http_->bind_to_any_port(config_.host);
    if (port_ <= 0) return false;
  } else {
    if (!http_->bind_to_port(config_.host, config_.port)) return false;
    port_ = config_.port;
  }
  // Many devices connect at once after an outage: a backlog of 5 would drop
  // their SYNs. listen() again on a listening socket only resizes the queue.
  if (listen_socket_ >= 0) ::listen(listen_socket_, SOMAXCONN);
  return true;
}

void HttpServer::serve() { connections_->serve(); }

void HttpServer::stop() { connections_->stop(); }

}  // namespace writeapi::server
