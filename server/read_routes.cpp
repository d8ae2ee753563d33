#include "read_routes.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <utility>
#include <vector>

#include "writeapi/names.h"
#include "writeapi/response.h"

namespace writeapi::server {
namespace {

using Clock = std::chrono::steady_clock;

// Lines per read of the store while planning or sending (the byte bound is
// ReadRouteOptions::part_bytes; this one keeps a store that cannot stop at
// a byte count, ClickHouse, to a bounded reply).
constexpr std::size_t kPartLines = 4096;

enum class Route { keys, object, devices };

struct Target {
  Route route = Route::keys;
  std::string bucket, key;
  std::string_view query;
};

Status segment(std::string_view raw, std::string_view what, std::string* out) {
  if (!percent_decode(raw, out))
    return Status(ErrorCode::invalid_name, std::string(what) + " has a malformed %-escape");
  return validate_name(*out, what);
}

// /read/v3/bucket/<bucket>, /read/v3/bucket/<bucket>/<key>,
// /devices/v3/bucket/<bucket>, each maybe with ?query.
Status parse_target(std::string_view target, Target* out) {
  const std::size_t question = target.find('?');
  std::string_view path = target.substr(0, question);
  out->query = question == std::string_view::npos ? std::string_view() : target.substr(question + 1);
  const Status unknown(ErrorCode::not_found,
                       "unknown path; read /read/v3/bucket/<bucket>[/<key>] or /devices/v3/bucket/<bucket>");
  std::string_view rest;
  if (path.substr(0, kReadPathPrefix.size()) == kReadPathPrefix) {
    rest = path.substr(kReadPathPrefix.size());
    const std::size_t slash = rest.find('/');
    if (slash == std::string_view::npos) {
      out->route = Route::keys;
      return segment(rest, "bucket", &out->bucket);
    }
    std::string_view key = rest.substr(slash + 1);
    if (key.find('/') != std::string_view::npos) return unknown;
    out->route = Route::object;
    if (Status s = segment(rest.substr(0, slash), "bucket", &out->bucket); !s.ok()) return s;
    return segment(key, "key", &out->key);
  }
  if (path.substr(0, kDevicesPathPrefix.size()) == kDevicesPathPrefix) {
    rest = path.substr(kDevicesPathPrefix.size());
    if (rest.find('/') != std::string_view::npos) return unknown;
    out->route = Route::devices;
    return segment(rest, "bucket", &out->bucket);
  }
  return unknown;
}

std::string_view field_value(const http1::RequestHead& head, std::string_view name) {
  const http1::Field* f = head.find(name);
  return f ? f->value : std::string_view();
}

// RFC 3339 UTC to the second ("2026-12-02T10:00:00Z").
std::string rfc3339(std::chrono::system_clock::time_point t) {
  const std::time_t seconds = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec);
}

std::string_view state_name(DeviceState::Kind kind) {
  switch (kind) {
    case DeviceState::Kind::ok:
      return "ok";
    case DeviceState::Kind::rate_limited:
      return "rate_limited";
    case DeviceState::Kind::suspended:
      return "suspended";
    case DeviceState::Kind::blocked:
      return "blocked";
  }
  return "ok";
}

bool head_only(const http1::RequestHead& head) { return head.method == "HEAD"; }

// A JSON answer (200).
void append_json_response(bool head_only, std::string_view body, std::string_view connection, std::string* out) {
  out->append(fmt::format(
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{}\r\n",
      body.size(), connection));
  if (!head_only) out->append(body);
}

void append_status_response(bool head_only, const Status& status, std::string_view connection, std::string* out) {
  std::string headers;
  if (status.code() == ErrorCode::method_not_allowed) headers += "Allow: GET, HEAD\r\n";
  if (status.retry_after_seconds() > 0) headers += fmt::format("Retry-After: {}\r\n", status.retry_after_seconds());
  headers += "Cache-Control: no-store\r\n";
  headers.append(connection);
  const std::size_t start = out->size();
  append_error_response(status.http_status(), status.name(), status.message(), headers, out);
  if (head_only) out->resize(out->find("\r\n\r\n", start) + 4);
}

Status server_busy(std::string_view what) {
  return Status(ErrorCode::server_busy, std::string(what)).with_retry_after(1);
}

}  // namespace

// One read of an object's lines: planned (counted) first, then sent in
// parts. Shared by the run that starts it, a waiting read's wake-up and
// the connection layer's stream.
class ReadRoutes::RangeRead {
 public:
  RangeRead(ReadRoutes* routes, const http1::RequestHead& head, std::string_view remote_ip, std::string connection,
            std::string bucket, std::string key, std::string cursor, std::size_t limit, Clock::time_point start)
      : routes_(routes),
        method_(head.method),
        target_(head.target),
        head_only_(head_only(head)),
        remote_ip_(remote_ip),
        connection_(std::move(connection)),
        bucket_(std::move(bucket)),
        key_(std::move(key)),
        cursor_(std::move(cursor)),
        limit_(limit),
        start_(start) {}
  ~RangeRead() {
    if (holds_stream_slot_) routes_->streams_.fetch_sub(1, std::memory_order_relaxed);
  }

  // Counts the lines that follow the cursor, up to the limit, and where
  // they end; keeps the first part's lines (all of them when they fit in
  // one part).
  Status plan() {
    lines_ = bytes_ = 0;
    whole_ = true;
    exists_ = false;
    body_.clear();
    body_lines_ = 0;
    std::string at = cursor_;
    bool first = true;
    while (lines_ < limit_) {
      ReadChunk chunk;
      Status s = routes_->storage_->read_range(bucket_, key_, at, std::min(limit_ - lines_, kPartLines),
                                               routes_->options_.part_bytes, &chunk);
      if (!s.ok()) return s;
      exists_ = exists_ || chunk.exists;
      if (first) at = chunk.next_cursor;  // the start's spelling when the cursor was empty
      first = false;
      if (chunk.line_count == 0) break;
      lines_ += chunk.line_count;
      bytes_ += chunk.lines.size();
      if (whole_ && body_.size() + chunk.lines.size() <= routes_->options_.part_bytes) {
        body_ += chunk.lines;
        body_lines_ += chunk.line_count;
        body_cursor_ = chunk.next_cursor;
      }
      // Not whole: streamed, or its first part alone (never more than one
      // part: a first line longer than a part is not kept here).
      if (body_lines_ < lines_) whole_ = false;
      at = std::move(chunk.next_cursor);
    }
    end_cursor_ = std::move(at);
    return Status();
  }

  bool exists() const { return exists_; }
  std::uint64_t lines() const { return lines_; }

  // Renders the answer to the plan (or to its failure) into *out. Returns
  // true when *out is the whole response, false when the lines follow in
  // parts (next_part).
  bool render(const Status& planned, std::string* out) {
    Status status = planned;
    if (status.ok() && !exists_)
      status = Status(ErrorCode::not_found, "this bucket has no object " + key_ + "; nothing was written to it");
    bool stream = status.ok() && !whole_;
    if (stream) {
      // HEAD sends no body and takes no slot, but answers the head GET
      // would get now.
      const bool slot = head_only_
                            ? routes_->streams_.load(std::memory_order_relaxed) < routes_->options_.max_streams
                            : routes_->streams_.fetch_add(1, std::memory_order_relaxed) < routes_->options_.max_streams;
      if (slot) {
        holds_stream_slot_ = !head_only_;
      } else {
        if (!head_only_) routes_->streams_.fetch_sub(1, std::memory_order_relaxed);
        stream = false;
        if (body_lines_ > 0) {
          // Every stream slot is taken: answer the first part's lines
          // alone (fewer than asked, as a limit allows; the cursor goes on
          // after them) rather than refuse.
          lines_ = body_lines_;
          bytes_ = body_.size();
          end_cursor_ = body_cursor_;
          if (!head_only_) routes_->streams_shortened_.fetch_add(1, std::memory_order_relaxed);
        } else {
          // Its first line alone is longer than a part: it needs a slot.
          status = server_busy("too many large reads are being sent; retry later");
        }
      }
    }
    if (head_only_) stream = false;
    ReadOutcome outcome;
    if (!status.ok()) {
      append_status_response(head_only_, status, connection_, out);
      outcome.http_status = status.http_status();
      outcome.error = status.name();
      record(outcome);
      return true;
    }
    out->append(fmt::format(
        "HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nContent-Length: {}\r\nX-Next-Cursor: {}\r\n"
        "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n{}\r\n",
        bytes_, end_cursor_, connection_));
    outcome.lines = lines_;
    outcome.bytes = bytes_;
    record(outcome);
    if (head_only_) return true;
    if (!stream) {
      out->append(body_);
      std::string().swap(body_);
      return true;
    }
    std::string().swap(body_);
    sent_at_ = cursor_;
    return false;
  }

  // The next part of a streamed answer: the same lines the plan counted.
  ResponseStream::Part next_part(std::string* out) {
    if (replan_) {  // woken after waiting: look again, then answer
      replan_ = false;
      const Status planned = plan();
      return render(planned, out) ? ResponseStream::Part::last : ResponseStream::Part::more;
    }
    ReadChunk chunk;
    Status s = routes_->storage_->read_range(bucket_, key_, sent_at_, std::min(lines_ - sent_lines_, kPartLines),
                                             routes_->options_.part_bytes, &chunk);
    // The lines before the planned end never change; anything else is a
    // failing store: cut the response short rather than send other bytes.
    if (!s.ok() || chunk.line_count == 0 || sent_bytes_ + chunk.lines.size() > bytes_)
      return ResponseStream::Part::abort;
    sent_lines_ += chunk.line_count;
    sent_bytes_ += chunk.lines.size();
    sent_at_ = std::move(chunk.next_cursor);
    if (out->empty()) {
      out->swap(chunk.lines);
    } else {
      out->append(chunk.lines);
    }
    if (sent_lines_ < lines_) return ResponseStream::Part::more;
    return sent_bytes_ == bytes_ ? ResponseStream::Part::last : ResponseStream::Part::abort;
  }

  // A waiting read woke: the next part starts with a new look at the store.
  void replan_on_next_part() { replan_ = true; }

 private:
  void record(const ReadOutcome& outcome) {
    if (routes_->record_)
      routes_->record_(method_, target_, remote_ip_, outcome,
                       std::chrono::duration<double>(Clock::now() - start_).count());
  }

  ReadRoutes* routes_;
  // Copies: the request's own memory is the connection layer's after done().
  std::string method_, target_;
  bool head_only_;
  std::string remote_ip_;
  std::string connection_;
  std::string bucket_, key_, cursor_;
  std::size_t limit_;
  Clock::time_point start_;

  std::uint64_t lines_ = 0, bytes_ = 0;
  bool whole_ = true, exists_ = false, replan_ = false, holds_stream_slot_ = false;
  std::string body_;  // the first part's lines (all, when whole_)
  std::uint64_t body_lines_ = 0;
  std::string body_cursor_;  // after them
  std::string end_cursor_;
  std::string sent_at_;
  std::uint64_t sent_lines_ = 0, sent_bytes_ = 0;
};

namespace {

class SharedStream final : public ResponseStream {
 public:
  explicit SharedStream(std::shared_ptr<ReadRoutes::RangeRead> read) : read_(std::move(read)) {}
  Part next(std::string* out) override { return read_->next_part(out); }

 private:
  std::shared_ptr<ReadRoutes::RangeRead> read_;
};

}  // namespace

ReadRoutes::ReadRoutes(ReadRouteOptions options, const Authorizer* authorizer, const DeviceLimiter* limiter,
                       Storage* storage, Record record)
    : options_(options),
      authorizer_(authorizer),
      limiter_(limiter),
      storage_(storage),
      record_(std::move(record)),
      watchers_(options.max_watchers) {}

ReadRoutes::~ReadRoutes() { watchers_.stop(); }

bool ReadRoutes::handles(std::string_view target) {
  return target.substr(0, kReadPathPrefix.size()) == kReadPathPrefix ||
         target.substr(0, kDevicesPathPrefix.size()) == kDevicesPathPrefix;
}

std::string ReadRoutes::connection_header(const http1::RequestHead& head, bool keep_alive) const {
  if (!keep_alive) return "Connection: close\r\n";
  const std::string keep = fmt::format("Keep-Alive: timeout={}\r\n", options_.keep_alive_timeout_seconds);
  return head.minor_version == 0 ? "Connection: keep-alive\r\n" + keep : keep;
}

void ReadRoutes::run(const http1::RequestHead& head, std::string_view remote_ip, bool keep_alive, std::string* response,
                     std::unique_ptr<ResponseStream>* stream, std::function<void()> done) {
  const auto start = Clock::now();
  const std::string connection = connection_header(head, keep_alive);
  auto refuse = [&](const Status& status) {
    append_status_response(head_only(head), status, connection, response);
    ReadOutcome outcome;
    outcome.http_status = status.http_status();
    outcome.error = status.name();
    if (record_)
      record_(head.method, head.target, remote_ip, outcome,
              std::chrono::duration<double>(Clock::now() - start).count());
    done();
  };
  if (head.method != "GET" && head.method != "HEAD")
    return refuse(Status(ErrorCode::method_not_allowed, "the Read API answers GET (and HEAD) only"));
  Target target;
  if (Status s = parse_target(head.target, &target); !s.ok()) return refuse(s);
  // Authorization first: without the key, nothing about the bucket (not
  // even whether a query is well formed) is told.
  std::string access_key;
  if (Status s = bearer_access_key(field_value(head, "Authorization"), &access_key); !s.ok()) return refuse(s);
  if (Status s = authorizer_->authorize(target.bucket, access_key); !s.ok()) return refuse(s);

  if (target.route != Route::object && !target.query.empty())
    return refuse(Status(ErrorCode::invalid_parameter, "this route takes no query parameters"));
  if (target.route == Route::keys) {
    std::vector<ObjectInfo> objects;
    if (Status s = storage_->list_objects(target.bucket, &objects); !s.ok()) return refuse(s);
    std::string body = "{\"ok\":true,\"keys\":[";
    for (std::size_t i = 0; i < objects.size(); ++i) {
      if (i > 0) body += ',';
      body += "{\"key\":";
      append_json_string(&body, objects[i].key);
      body += fmt::format(",\"bytes\":{},\"modified\":\"{}\"}}", objects[i].bytes, rfc3339(objects[i].modified));
    }
    body += "]}\n";
    append_json_response(head_only(head), body, connection, response);
    ReadOutcome outcome;
    outcome.lines = objects.size();
    outcome.bytes = body.size();
    if (record_)
      record_(head.method, head.target, remote_ip, outcome,
              std::chrono::duration<double>(Clock::now() - start).count());
    return done();
  }
  if (target.route == Route::devices) {
    bool truncated = false;
    std::vector<DeviceState> devices;
    if (limiter_) devices = limiter_->devices(target.bucket, options_.max_devices, &truncated);
    std::string body = "{\"ok\":true,\"devices\":[";
    for (std::size_t i = 0; i < devices.size(); ++i) {
      const DeviceState& d = devices[i];
      if (i > 0) body += ',';
      body += "{\"deviceId\":";
      if (d.device_id.empty()) {
        body += "null";
      } else {
        append_json_string(&body, d.device_id);
      }
      body += fmt::format(
          ",\"state\":\"{}\",\"secondsLeft\":{},\"budget\":{{\"rate\":{},\"burst\":{},\"tokens\":{}}},"
          "\"recentRequests\":{},\"recentRefusals\":{}}}",
          state_name(d.state), d.seconds_left, d.limit.rate, d.limit.burst,
          static_cast<std::uint64_t>(std::floor(std::max(0.0, d.tokens))), d.recent_requests, d.recent_refusals);
    }
    body += fmt::format("],\"recentWindowSeconds\":{},\"truncated\":{}}}\n", kDeviceRecentWindow.count(),
                        truncated ? "true" : "false");
    append_json_response(head_only(head), body, connection, response);
    ReadOutcome outcome;
    outcome.lines = devices.size();
    outcome.bytes = body.size();
    if (record_)
      record_(head.method, head.target, remote_ip, outcome,
              std::chrono::duration<double>(Clock::now() - start).count());
    return done();
  }

  ReadQuery query;
  if (Status s = parse_read_query(target.query, options_.limits, &query); !s.ok()) return refuse(s);
  std::size_t limit = query.limit;
  if (query.tail > 0) {
    bool exists = false;
    if (Status s = storage_->tail_cursor(target.bucket, target.key, query.tail, &query.cursor, &exists); !s.ok())
      return refuse(s);
    limit = query.tail;
  }
  auto read = std::make_shared<RangeRead>(this, head, remote_ip, connection, target.bucket, target.key, query.cursor,
                                          limit, start);
  std::shared_ptr<ReadWatchers::Watch> watch;
  if (query.wait_seconds > 0 && options_.max_watchers > 0) {
    // Opened before the look at the store, so an append in between wakes it.
    watch = watchers_.open(target.bucket, target.key, remote_ip);
    if (!watch && watchers_.stopping()) return refuse(server_busy("the server is stopping; retry later"));
    if (!watch)
      return refuse(
          server_busy("too many reads are waiting for new lines (--max-watchers, a quarter of them per client "
                      "address); retry later, or read without wait"));
  }
  const Status planned = read->plan();
  if (watch && planned.ok() && read->exists() && read->lines() == 0) {
    // Nothing follows the cursor: park (no thread) until lines come, the
    // deadline or a stop. The connection layer keeps head, remote_ip,
    // *response and *stream until done().
    const auto deadline = Clock::now() + std::chrono::seconds(query.wait_seconds);
    watchers_.arm(watch, deadline, [read, response, stream, done](ReadWatchers::Wake why) {
      if (why == ReadWatchers::Wake::stopping) {
        read->render(Status(), response);  // nothing new: the same cursor
      } else {
        // The look at the store (a read that may block) runs on a worker,
        // as the first part of the stream.
        read->replan_on_next_part();
        *stream = std::make_unique<SharedStream>(read);
      }
      done();
    });
    return;
  }
  if (watch) watchers_.close(watch);
  if (!read->render(planned, response)) *stream = std::make_unique<SharedStream>(read);
  done();
}

}  // namespace writeapi::server
