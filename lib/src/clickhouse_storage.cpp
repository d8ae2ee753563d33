// ClickHouseStorage: objects as rows of a ClickHouse table, written through
// ClickHouse's HTTP interface.
//
// Appends are batched like the file store's group commit: an appender
// registers its batch in the open group under the lock and waits; a flush
// thread sends the oldest group as one INSERT when it holds
// flush_rows rows, when flush_interval has passed since its first row, or
// when a newer group is waiting behind it, then answers every appender of
// the group. There are max_inserts_in_flight flush threads, so when all are
// busy groups grow instead of INSERTs multiplying (ClickHouse makes one part
// per INSERT and merges them later; many tiny parts slow it down and finally
// make it refuse inserts).
//
// No copy: the appenders wait until their INSERT is answered, so their
// batches stay valid, and the flush thread encodes the rows (RowBinary)
// straight from them into the HTTP request as it sends it. A 10 MiB request
// of 5 million one-byte items would otherwise cost ~450 MB of rows.
//
// All-or-nothing: an INSERT of fewer than max_insert_block_size rows into
// one partition of a MergeTree table is one part, written atomically. So a
// group never spans two months (the partition key), and every INSERT raises
// max_insert_block_size above its row count. The rows of one append share
// one receive time and one (bucket, key), hence one partition and, behind a
// Distributed table, one shard.
//
// Order: received_us is the receive time made monotonic per process and seq
// counts lines per process, both assigned under the lock in append order,
// so ordering by (received_us, frontend, seq) gives each front-end's appends
// in the order it accepted them, never interleaved.
//
// A library built with WRITEAPI_WITH_CLICKHOUSE=OFF compiles this file
// without cpp-httplib: the RowBinary and URL helpers and
// clickhouse_table_sql() stay, make_clickhouse_storage() refuses with
// not_implemented.
#include "clickhouse_storage.h"

#if WRITEAPI_WITH_CLICKHOUSE
#include <httplib.h>
#endif
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "range_read.h"
#include "writeapi/clickhouse.h"

namespace writeapi {
namespace clickhouse {

bool parse_url(std::string_view url, Endpoint* endpoint, std::string* error) {
  std::string_view rest;
  if (url.substr(0, 7) == "http://") {
    rest = url.substr(7);
  } else if (url.substr(0, 8) == "https://") {
    rest = url.substr(8);
  } else {
    *error = "the ClickHouse URL must start with http:// or https://";
    return false;
  }
  std::size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  if (authority.empty()) {
    *error = "the ClickHouse URL has no host";
    return false;
  }
  if (authority.find('@') != std::string_view::npos) {
    *error = "put ClickHouse credentials in the user and password options, not in the URL";
    return false;
  }
  if (path.find_first_of("?#") != std::string_view::npos) {
    *error = "the ClickHouse URL must not have a query string or fragment";
    return false;
  }
  while (!path.empty() && path.back() == '/') path.remove_suffix(1);
  endpoint->scheme_host_port = std::string(url.substr(0, url.size() - rest.size())) + std::string(authority);
  endpoint->path_prefix = std::string(path);
  return true;
}

bool valid_identifier(std::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!letter && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

std::string quote_string(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out += '\'';
  for (char c : text) {
    if (c == '\\' || c == '\'') out += '\\';
    out += c;
  }
  out += '\'';
  return out;
}

std::string url_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size() * 3);
  for (unsigned char c : text) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
        c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

void put_varint(std::string* out, std::uint64_t value) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

void put_string(std::string* out, std::string_view text) {
  put_varint(out, text.size());
  out->append(text);
}

void put_u32(std::string* out, std::uint32_t value) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

void put_u64(std::string* out, std::uint64_t value) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

bool get_string(std::string_view* in, std::string_view* text) {
  std::uint64_t size = 0;
  std::size_t i = 0;
  for (int shift = 0;; shift += 7) {
    if (i >= in->size() || shift > 63) return false;
    auto byte = static_cast<unsigned char>((*in)[i++]);
    size |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
    if (!(byte & 0x80)) break;
  }
  if (size > in->size() - i) return false;
  *text = in->substr(i, size);
  in->remove_prefix(i + size);
  return true;
}

bool get_u64(std::string_view* in, std::uint64_t* value) {
  if (in->size() < 8) return false;
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>((*in)[i])) << (8 * i);
  *value = v;
  in->remove_prefix(8);
  return true;
}

int utc_year_month(std::int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm parts{};
  ::gmtime_r(&t, &parts);
  return (parts.tm_year + 1900) * 100 + parts.tm_mon + 1;
}

}  // namespace clickhouse

#if WRITEAPI_WITH_CLICKHOUSE
namespace {

using SteadyClock = std::chrono::steady_clock;

// The columns every INSERT names, in RowBinary order; then, when the table
// has them, the request id columns (tables made before them lack them).
constexpr std::string_view kColumns = "bucket, key, device_id, received, received_us, frontend, seq, line";
constexpr std::string_view kColumnNames[] = {"bucket",      "key",      "device_id", "received",
                                             "received_us", "frontend", "seq",       "line"};
constexpr std::string_view kRequestColumns = ", request_id, request_fp";

std::string hex_of(const RequestFingerprint& fingerprint) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string hex;
  for (std::uint8_t byte : fingerprint) hex.append({kDigits[byte >> 4], kDigits[byte & 15]});
  return hex;
}

bool fingerprint_of_hex(std::string_view hex, RequestFingerprint* fingerprint) {
  if (hex.size() != 2 * fingerprint->size()) return false;
  auto digit = [](char c) { return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1; };
  for (std::size_t i = 0; i < fingerprint->size(); ++i) {
    int high = digit(hex[2 * i]), low = digit(hex[2 * i + 1]);
    if (high < 0 || low < 0) return false;
    (*fingerprint)[i] = static_cast<std::uint8_t>(high * 16 + low);
  }
  return true;
}
// ClickHouse's default max_insert_block_size; INSERTs raise it when larger.
constexpr std::size_t kDefaultInsertBlockRows = 1048576;
// A keep-alive connection idle for longer may have been closed by
// ClickHouse (keep_alive_timeout, 3 s by default): open a fresh one rather
// than risk an INSERT failing on a dead socket.
constexpr auto kMaxIdleReuse = std::chrono::milliseconds(1000);

Status unavailable() {
  return Status(ErrorCode::storage_unavailable, "the storage cluster is unavailable; retry later").with_retry_after(1);
}

std::string default_frontend_id() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::snprintf(host, sizeof host, "writeapi");
  std::random_device random;
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, "%08x", static_cast<unsigned>(random()));
  return std::string(host) + "-" + std::to_string(::getpid()) + "-" + suffix;
}

// A writer waiting for the INSERT holding its rows (lives on its stack),
// or, with a callback (append_async), nobody waiting: the waiter then owns
// a copy of the batch's bytes, and the flush thread calls the callback
// once, outside the lock, and deletes the waiter.
struct Waiter {
  std::condition_variable cv;
  bool done = false;
  Status result;
  std::function<void(Status)> callback;
  std::string copy;  // bucket, key, device_id, request id and lines of an async batch
};

// One append waiting in a group. The batch's views point into the
// appender's request, alive until the appender is answered.
struct PendingAppend {
  AppendBatch batch;
  std::uint64_t received_us = 0;
  std::uint64_t first_seq = 0;  // seq of its first line; the others follow
  Waiter* waiter = nullptr;
};

// Appends bound for one INSERT.
struct Group {
  std::vector<PendingAppend> appends;
  std::size_t rows = 0;
  std::uint64_t body_bytes = 0;  // size of the RowBinary rows
  std::uint64_t line_bytes = 0;  // bytes of the lines with their '\n'
  int year_month = 0;            // the partition all rows belong to
  SteadyClock::time_point first_row_at;
};

std::size_t varint_size(std::uint64_t value) {
  std::size_t size = 1;
  while (value >= 0x80) {
    value >>= 7;
    size++;
  }
  return size;
}

std::size_t string_size(std::string_view text) { return varint_size(text.size()) + text.size(); }

// Calls f(line) for each line of `lines` (without its '\n'; a last piece
// without '\n' counts as a line).
template <typename F>
void for_each_line(std::string_view lines, F&& f) {
  while (!lines.empty()) {
    std::size_t end = lines.find('\n');
    f(lines.substr(0, end));
    lines.remove_prefix(end == std::string_view::npos ? lines.size() : end + 1);
  }
}

// Produces a group's RowBinary rows piece by piece, for a streamed request
// body: rows are gathered in a small buffer, long lines are passed through
// from the appender's batch without a copy.
class RowStream {
 public:
  RowStream(const Group& group, std::string_view frontend_id, bool with_request)
      : group_(group), frontend_id_(frontend_id), with_request_(with_request) {}

  // Writes the next piece to `write`; false when it fails or all was sent.
  template <typename Write>
  bool next(Write&& write) {
    constexpr std::size_t kBuffer = 64 * 1024, kPassThrough = 4096;
    buffer_.clear();
    while (append_ < group_.appends.size()) {
      const PendingAppend& pending = group_.appends[append_];
      std::string_view rest = std::string_view(pending.batch.lines).substr(offset_);
      if (rest.empty()) {
        append_++;
        offset_ = 0;
        line_ = 0;
        continue;
      }
      std::size_t end = rest.find('\n');
      std::string_view line = rest.substr(0, end);
      offset_ += end == std::string_view::npos ? rest.size() : end + 1;
      clickhouse::put_string(&buffer_, pending.batch.bucket);
      clickhouse::put_string(&buffer_, pending.batch.key);
      clickhouse::put_string(&buffer_, pending.batch.device_id);
      clickhouse::put_u32(&buffer_, static_cast<std::uint32_t>(pending.received_us / 1000000));
      clickhouse::put_u64(&buffer_, pending.received_us);
      clickhouse::put_string(&buffer_, frontend_id_);
      clickhouse::put_u64(&buffer_, pending.first_seq + line_++);
      clickhouse::put_varint(&buffer_, line.size());
      if (line.size() >= kPassThrough) {
        if (!write(buffer_.data(), buffer_.size()) || !write(line.data(), line.size())) return false;
        buffer_.clear();
        if (with_request_) put_request(pending);
        return write(buffer_.data(), buffer_.size());
      }
      buffer_.append(line);
      if (with_request_) put_request(pending);
      if (buffer_.size() >= kBuffer) return write(buffer_.data(), buffer_.size());
    }
    return !buffer_.empty() && write(buffer_.data(), buffer_.size());
  }

 private:
  void put_request(const PendingAppend& pending) {
    clickhouse::put_string(&buffer_, pending.batch.request.id);
    clickhouse::put_string(&buffer_, pending.batch.request.id.empty() ? "" : hex_of(pending.batch.request.fingerprint));
  }

  const Group& group_;
  std::string_view frontend_id_;
  bool with_request_;
  std::size_t append_ = 0;  // the append being encoded
  std::size_t offset_ = 0;  // into its lines
  std::uint64_t line_ = 0;  // lines of it done
  std::string buffer_;
};

// A flush thread's keep-alive connection for its INSERTs.
struct Connection {
  std::unique_ptr<httplib::Client> client;
  SteadyClock::time_point last_used;
};

// An HTTP exchange with ClickHouse: ok when it answered 200.
struct Reply {
  bool ok = false;
  std::string body;
  std::string error;  // what went wrong, for logs
};

class ClickHouseStorage final : public Storage {
 public:
  ClickHouseStorage(ClickHouseStorageOptions options, clickhouse::Endpoint endpoint)
      : options_(std::move(options)), endpoint_(std::move(endpoint)) {
    if (!options_.log)
      options_.log = [](std::string_view line) { std::fprintf(stderr, "%.*s\n", int(line.size()), line.data()); };
    if (options_.frontend_id.empty()) options_.frontend_id = default_frontend_id();
    table_ = "`" + options_.database + "`.`" + options_.table + "`";
  }

  ~ClickHouseStorage() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    flush_cv_.notify_all();
    for (std::thread& thread : flush_threads_) thread.join();
  }

  Status start() {
    if (options_.create_schema) {
      for (const std::string& sql :
           {"CREATE DATABASE IF NOT EXISTS `" + options_.database + "`", clickhouse_table_sql(options_)}) {
        Reply reply = query(*new_client(), "", sql);
        if (!reply.ok) return start_error("cannot create the schema", reply);
      }
    }
    Reply reply =
        query(*new_client(), "",
              "SELECT name FROM system.columns WHERE database = " + clickhouse::quote_string(options_.database) +
                  " AND table = " + clickhouse::quote_string(options_.table) + " FORMAT RowBinary");
    if (!reply.ok) return start_error("cannot read the table's columns", reply);
    std::set<std::string_view> columns;
    std::string_view in = reply.body, name;
    while (clickhouse::get_string(&in, &name)) columns.insert(name);
    if (columns.empty()) return Status(ErrorCode::storage_error, "ClickHouse table " + table_ + " does not exist");
    std::string missing;
    for (std::string_view column : kColumnNames)
      if (!columns.count(column)) missing += (missing.empty() ? "" : ", ") + std::string(column);
    if (!missing.empty())
      return Status(ErrorCode::storage_error, "ClickHouse table " + table_ + " lacks the columns " + missing);
    with_requests_ = columns.count("request_id") && columns.count("request_fp");
    if (!with_requests_ && options_.create_schema) {
      // A table made before request ids: add their columns (empty in old rows).
      // (ClickHouse 18, Debian 12's, has no ADD COLUMN IF NOT EXISTS.)
      std::string sql = "ALTER TABLE " + table_;
      if (!columns.count("request_id")) sql += " ADD COLUMN request_id String DEFAULT ''";
      if (!columns.count("request_fp"))
        sql += std::string(columns.count("request_id") ? "" : ",") + " ADD COLUMN request_fp String DEFAULT ''";
      Reply altered = query(*new_client(), "", sql);
      with_requests_ = altered.ok;
      if (!altered.ok) options_.log("cannot add the request id columns to " + table_ + ": " + altered.error);
    }
    if (!with_requests_)
      options_.log("ClickHouse table " + table_ +
                   " has no request_id and request_fp columns: request ids are remembered only in this "
                   "process's memory (see docs/DURABILITY.md)");
    insert_params_ =
        "query=" +
        clickhouse::url_encode("INSERT INTO " + table_ + " (" + std::string(kColumns) +
                               (with_requests_ ? std::string(kRequestColumns) : std::string()) + ") FORMAT RowBinary") +
        "&insert_distributed_sync=1";
    if (with_requests_)
      if (Status s = load_requests(); !s.ok()) return s;
    for (std::size_t i = 0; i < options_.max_inserts_in_flight; ++i)
      flush_threads_.emplace_back([this] { flush_loop(); });
    return Status();
  }

  Status append(const AppendBatch& batch) override {
    if (batch.item_count == 0) return Status();
    Waiter waiter;
    std::unique_lock<std::mutex> lock(mu_);
    enqueue(batch, &waiter);
    waiter.cv.wait(lock, [&] { return waiter.done; });
    return waiter.result;
  }

  // The batch is copied (the caller does not wait), so the flush thread's
  // INSERT encodes the rows from the copy; no thread waits for it.
  void append_async(const AppendBatch& batch, std::function<void(Status)> done) override {
    if (batch.item_count == 0) return done(Status());
    auto waiter = std::make_unique<Waiter>();
    waiter->callback = std::move(done);
    std::string& copy = waiter->copy;
    copy.reserve(batch.bucket.size() + batch.key.size() + batch.device_id.size() + batch.request.id.size() +
                 batch.lines.size());
    copy.append(batch.bucket).append(batch.key).append(batch.device_id).append(batch.request.id).append(batch.lines);
    AppendBatch owned = batch;
    std::string_view bytes = copy;
    owned.bucket = bytes.substr(0, batch.bucket.size());
    bytes.remove_prefix(batch.bucket.size());
    owned.key = bytes.substr(0, batch.key.size());
    bytes.remove_prefix(batch.key.size());
    owned.device_id = bytes.substr(0, batch.device_id.size());
    bytes.remove_prefix(batch.device_id.size());
    owned.request.id = bytes.substr(0, batch.request.id.size());
    bytes.remove_prefix(batch.request.id.size());
    owned.lines = bytes;
    std::unique_lock<std::mutex> lock(mu_);
    enqueue(owned, waiter.release());
  }

  Status list_keys(std::string_view bucket, std::vector<std::string>* keys) override {
    keys->clear();
    Reply reply = query(*new_client(), "wait_end_of_query=1",
                        "SELECT DISTINCT key FROM " + table_ + " WHERE bucket = " + clickhouse::quote_string(bucket) +
                            " ORDER BY key FORMAT RowBinary");
    if (!reply.ok) return read_error("list_keys", reply);
    std::string_view in = reply.body, key;
    while (!in.empty()) {
      if (!clickhouse::get_string(&in, &key)) return malformed("list_keys");
      keys->emplace_back(key);
    }
    return Status();
  }

 private:
  // Puts the batch in the open group (a new one when needed) for the
  // waiter; mu_ is held.
  void enqueue(const AppendBatch& batch, Waiter* waiter) {
    // The size of the rows, outside the lock; everything but the line
    // lengths and seq is the same in every row of the append.
    std::uint64_t row_overhead = string_size(batch.bucket) + string_size(batch.key) + string_size(batch.device_id) + 4 +
                                 8 + string_size(options_.frontend_id) + 8;
    if (with_requests_)
      row_overhead +=
          string_size(batch.request.id) + (batch.request.id.empty() ? 1 : 1 + 2 * RequestFingerprint().size());
    std::size_t rows = 0;
    std::uint64_t body_bytes = 0;
    for_each_line(batch.lines, [&](std::string_view line) {
      rows++;
      body_bytes += row_overhead + string_size(line);
    });
    // One receive time per append, never behind the previous one, so a
    // clock stepped back cannot reorder this front-end's appends.
    auto now_us = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count());
    const std::uint64_t received_us = std::max(now_us, last_received_us_);
    last_received_us_ = received_us;
    const int year_month = clickhouse::utc_year_month(static_cast<std::int64_t>(received_us / 1000000));

    if (groups_.empty() || groups_.back().year_month != year_month ||
        (groups_.back().rows > 0 && groups_.back().rows + rows > options_.flush_rows)) {
      groups_.emplace_back();
      groups_.back().year_month = year_month;
      groups_.back().first_row_at = SteadyClock::now();
      // Every idle flush thread looks again: one takes a group that is now
      // ready, another sets its timer for the new one.
      flush_cv_.notify_all();
    }
    Group& group = groups_.back();
    group.appends.push_back({batch, received_us, next_seq_, waiter});
    next_seq_ += rows;
    group.rows += rows;
    group.body_bytes += body_bytes;
    group.line_bytes += batch.lines.size();
    if (group.rows >= options_.flush_rows) flush_cv_.notify_all();
  }

 public:
  // The rows of an object a read may see: all but this front-end's rows
  // from its earliest append not yet stored on. INSERTs run in parallel
  // (max_inserts_in_flight) and may commit out of order; without the bound
  // a reader could pass a later group's rows, then see an earlier group's
  // rows appear before its cursor (row positions shift: a line read twice,
  // another skipped). With it, what a read sees only ever grows at the end
  // of this front-end's order.
  std::string visible_rows(std::string_view bucket, std::string_view key) {
    std::string where =
        " WHERE bucket = " + clickhouse::quote_string(bucket) + " AND key = " + clickhouse::quote_string(key);
    // The earliest append not yet stored: the first of the INSERTs being
    // sent, else of the queued groups (in append order, never empty).
    std::optional<std::pair<std::uint64_t, std::uint64_t>> first;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!inserting_.empty()) {
        first = *inserting_.begin();
      } else if (!groups_.empty()) {
        first = {groups_.front().appends.front().received_us, groups_.front().appends.front().first_seq};
      }
    }
    if (first)
      where += " AND NOT (frontend = " + clickhouse::quote_string(options_.frontend_id) + " AND (received_us > " +
               std::to_string(first->first) + " OR (received_us = " + std::to_string(first->first) +
               " AND seq >= " + std::to_string(first->second) + ")))";
    return where;
  }

  Status read_object(std::string_view bucket, std::string_view key, std::string* contents) override {
    contents->clear();
    Reply reply = query(*new_client(), "wait_end_of_query=1",
                        "SELECT line FROM " + table_ + visible_rows(bucket, key) +
                            " ORDER BY received_us, frontend, seq FORMAT RowBinary");
    if (!reply.ok) return read_error("read_object", reply);
    std::string_view in = reply.body, line;
    contents->reserve(reply.body.size());
    while (!in.empty()) {
      if (!clickhouse::get_string(&in, &line)) {
        contents->clear();
        return malformed("read_object");
      }
      contents->append(line);
      contents->push_back('\n');
    }
    return Status();
  }

  Status take_recovered_requests(std::vector<StoredRequest>* requests) override {
    std::lock_guard<std::mutex> lock(mu_);
    requests->clear();
    requests->swap(recovered_requests_);
    return Status();
  }

  // The cursor is a row position in the object's order (received_us,
  // frontend, seq). Rows of one front-end are appended in that order, so a
  // position stays valid as appends go on.
  Status read_range(std::string_view bucket, std::string_view key, std::string_view cursor, std::size_t max_lines,
                    std::size_t max_bytes, ReadChunk* chunk) override {
    *chunk = ReadChunk();
    std::uint64_t offset = 0;
    const Status bad_cursor(ErrorCode::invalid_cursor, "the cursor is not one this object returned");
    if (!range_read::parse_position(cursor, &offset)) return bad_cursor;
    chunk->next_cursor = range_read::format_position(offset);
    // One bound for both queries: the count must be of the rows the first
    // one saw.
    const std::string where = visible_rows(bucket, key);
    if (max_lines > 0) {
      Reply reply = query(*new_client(), "wait_end_of_query=1",
                          "SELECT line FROM " + table_ + where + " ORDER BY received_us, frontend, seq LIMIT " +
                              std::to_string(max_lines) + " OFFSET " + std::to_string(offset) + " FORMAT RowBinary");
      if (!reply.ok) return read_error("read_range", reply);
      std::string_view in = reply.body, line;
      while (!in.empty() && chunk->line_count < max_lines &&
             chunk->lines.size() < std::max<std::size_t>(max_bytes, 1)) {
        if (!clickhouse::get_string(&in, &line)) {
          chunk->lines.clear();
          chunk->line_count = 0;
          return malformed("read_range");
        }
        chunk->lines.append(line);
        chunk->lines.push_back('\n');
        chunk->line_count++;
      }
    }
    if (chunk->line_count > 0) {
      chunk->exists = true;
      chunk->next_cursor = range_read::format_position(offset + chunk->line_count);
      return Status();
    }
    // Nothing follows: does the object exist, and is the cursor within it?
    Reply reply = query(*new_client(), "wait_end_of_query=1", "SELECT count() FROM " + table_ + where + " FORMAT TSV");
    if (!reply.ok) return read_error("read_range", reply);
    std::string_view text = reply.body;
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
    std::uint64_t rows = 0;
    if (!range_read::parse_position(text, &rows)) return malformed("read_range");
    chunk->exists = rows > 0;
    return offset > rows && rows > 0 ? bad_cursor : Status();  // never written: absent, whatever the cursor
  }

  // A row position: the count less `lines`.
  Status tail_cursor(std::string_view bucket, std::string_view key, std::size_t lines, std::string* cursor,
                     bool* exists) override {
    *cursor = range_read::format_position(0);
    *exists = false;
    Reply reply = query(*new_client(), "wait_end_of_query=1",
                        "SELECT count() FROM " + table_ + visible_rows(bucket, key) + " FORMAT TSV");
    if (!reply.ok) return read_error("tail_cursor", reply);
    std::string_view text = reply.body;
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
    std::uint64_t rows = 0;
    if (!range_read::parse_position(text, &rows)) return malformed("tail_cursor");
    *exists = rows > 0;
    *cursor = range_read::format_position(rows > lines ? rows - lines : 0);
    return Status();
  }

  Status list_objects(std::string_view bucket, std::vector<ObjectInfo>* objects) override {
    objects->clear();
    Reply reply = query(*new_client(), "wait_end_of_query=1",
                        "SELECT key, sum(length(line) + 1), max(received_us) FROM " + table_ + " WHERE bucket = " +
                            clickhouse::quote_string(bucket) + " GROUP BY key ORDER BY key FORMAT TSV");
    if (!reply.ok) return read_error("list_objects", reply);
    std::string_view in = reply.body;
    while (!in.empty()) {
      std::size_t nl = in.find('\n');
      std::string_view row = in.substr(0, nl);
      in.remove_prefix(nl == std::string_view::npos ? in.size() : nl + 1);
      std::size_t tab1 = row.find('\t');
      std::size_t tab2 = tab1 == std::string_view::npos ? tab1 : row.find('\t', tab1 + 1);
      if (tab2 == std::string_view::npos) return malformed("list_objects");
      ObjectInfo info;
      info.key = std::string(row.substr(0, tab1));  // valid names need no TSV escaping
      std::uint64_t us = 0;
      if (!range_read::parse_position(row.substr(tab1 + 1, tab2 - tab1 - 1), &info.bytes) ||
          !range_read::parse_position(row.substr(tab2 + 1), &us))
        return malformed("list_objects");
      info.modified = std::chrono::system_clock::time_point(
          std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::microseconds(us)));
      objects->push_back(std::move(info));
    }
    return Status();
  }

  StorageStats stats() const override {
    StorageStats stats;
    stats.appends = appends_.load();
    stats.bytes_written = bytes_written_.load();
    stats.syncs = inserts_.load();
    stats.synced_appends = appends_.load();
    stats.write_errors = write_errors_.load();
    return stats;
  }

 private:
  std::unique_ptr<httplib::Client> new_client() const {
    auto client = std::make_unique<httplib::Client>(endpoint_.scheme_host_port);
    client->set_connection_timeout(options_.connect_timeout);
    client->set_read_timeout(options_.request_timeout);
    client->set_write_timeout(options_.request_timeout);
    if (!options_.user.empty()) client->set_basic_auth(options_.user, options_.password);
    return client;
  }

  // POSTs the SQL `body` to /?<params>.
  Reply query(httplib::Client& client, const std::string& params, std::string_view body) const {
    std::string path = endpoint_.path_prefix + "/?" + params;
    return to_reply(client.Post(path, {}, body.data(), body.size(), "text/plain"));
  }

  Reply to_reply(httplib::Result result) const {
    Reply reply;
    if (!result) {
      reply.error = "cannot reach ClickHouse at " + options_.url + ": " + httplib::to_string(result.error());
      return reply;
    }
    if (result->status != 200) {
      std::string_view text = result->body;
      text = text.substr(0, std::min(text.find('\n'), std::size_t{400}));
      reply.error = "ClickHouse answered " + std::to_string(result->status) + ": " + std::string(text);
      return reply;
    }
    reply.ok = true;
    reply.body = std::move(result->body);
    return reply;
  }

  Status start_error(std::string_view what, const Reply& reply) const {
    return Status(ErrorCode::storage_unavailable, std::string(what) + " " + table_ + ": " + reply.error);
  }

  Status read_error(std::string_view what, const Reply& reply) const {
    options_.log("ClickHouse " + std::string(what) + " failed: " + reply.error);
    return unavailable();
  }

  Status malformed(std::string_view what) const {
    options_.log("ClickHouse " + std::string(what) + ": malformed RowBinary answer");
    return unavailable();
  }

  void flush_loop() {
    Connection connection;
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      if (groups_.empty()) {
        if (stopping_) return;
        flush_cv_.wait(lock);
        continue;
      }
      Group& front = groups_.front();
      const auto due = front.first_row_at + options_.flush_interval;
      const bool ready =
          stopping_ || groups_.size() > 1 || front.rows >= options_.flush_rows || SteadyClock::now() >= due;
      if (!ready) {
        flush_cv_.wait_until(lock, due);
        continue;
      }
      Group group = std::move(front);
      groups_.pop_front();
      auto in_flight = inserting_.end();
      if (!group.appends.empty())
        in_flight = inserting_.emplace(group.appends.front().received_us, group.appends.front().first_seq);
      lock.unlock();
      Status result = insert(group, &connection);
      lock.lock();
      if (in_flight != inserting_.end()) inserting_.erase(in_flight);
      // Still under the lock: a waiter cannot see done and leave (taking its
      // condition variable with it) before it is notified.
      std::vector<Waiter*> callbacks;
      for (const PendingAppend& pending : group.appends) {
        if (pending.waiter->callback) {
          callbacks.push_back(pending.waiter);
          continue;
        }
        pending.waiter->done = true;
        pending.waiter->result = result;
        pending.waiter->cv.notify_one();
      }
      if (callbacks.empty()) continue;
      group = Group();  // its views point into the waiters' copies
      lock.unlock();
      for (Waiter* waiter : callbacks) {
        std::unique_ptr<Waiter> owned(waiter);
        std::function<void(Status)> callback = std::move(owned->callback);
        owned.reset();
        callback(result);
      }
      lock.lock();
    }
  }

  // Reads the request ids of the window from the table, the newest
  // max_request_ids of each bucket, for take_recovered_requests.
  Status load_requests() {
    if (options_.request_id_window.count() <= 0 || options_.max_request_ids == 0) return Status();
    const std::string window_us =
        std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(options_.request_id_window).count());
    Reply reply = query(*new_client(), "wait_end_of_query=1",
                        // One request's rows share its front-end and receive time: the item
                        // count is that of one copy (two front-ends may each have stored one).
                        "SELECT bucket, request_id, any(fp), any(n), min(at) AS first FROM (SELECT bucket, request_id, "
                        "any(request_fp) AS fp, count() AS n, min(received_us) AS at FROM " +
                            table_ + " WHERE request_id != '' AND received_us + " + window_us +
                            " >= toUInt64(now()) * 1000000 GROUP BY bucket, request_id, frontend, received_us) "
                            "GROUP BY bucket, request_id ORDER BY first DESC LIMIT " +
                            std::to_string(options_.max_request_ids) + " BY bucket FORMAT RowBinary");
    if (!reply.ok) return start_error("cannot read the request ids", reply);
    std::string_view in = reply.body;
    std::vector<StoredRequest> requests;
    while (!in.empty()) {
      std::string_view bucket, id, fingerprint;
      std::uint64_t items = 0, at = 0;
      StoredRequest r;
      if (!clickhouse::get_string(&in, &bucket) || !clickhouse::get_string(&in, &id) ||
          !clickhouse::get_string(&in, &fingerprint) || !clickhouse::get_u64(&in, &items) ||
          !clickhouse::get_u64(&in, &at))
        return malformed("the request ids");
      if (!fingerprint_of_hex(fingerprint, &r.fingerprint)) continue;  // not written by us
      r.bucket = std::string(bucket);
      r.id = std::string(id);
      r.item_count = static_cast<std::size_t>(items);
      r.stored_at = std::chrono::system_clock::time_point(std::chrono::microseconds(at));
      requests.push_back(std::move(r));
    }
    std::reverse(requests.begin(), requests.end());  // oldest first
    std::lock_guard<std::mutex> lock(mu_);
    recovered_requests_ = std::move(requests);
    return Status();
  }

  // Sends one group as one INSERT on a flush thread's connection.
  Status insert(const Group& group, Connection* connection) {
    auto now = SteadyClock::now();
    if (!connection->client || now - connection->last_used > kMaxIdleReuse) connection->client = new_client();
    std::string path = endpoint_.path_prefix + "/?" + insert_params_ +
                       "&max_insert_block_size=" + std::to_string(std::max(group.rows + 1, kDefaultInsertBlockRows));
    RowStream rows(group, options_.frontend_id, with_requests_);
    std::uint64_t sent = 0;
    httplib::Result result = connection->client->Post(
        path, {}, group.body_bytes,
        [&](std::size_t, std::size_t, httplib::DataSink& sink) {
          return rows.next([&](const char* data, std::size_t size) {
            sent += size;
            // More than announced would be a bug in body_bytes: fail
            // rather than send a corrupt request.
            return sent <= group.body_bytes && sink.write(data, size);
          });
        },
        "application/octet-stream");
    Reply reply = to_reply(std::move(result));
    connection->last_used = SteadyClock::now();
    if (!reply.ok) {
      connection->client.reset();  // the next INSERT starts on a fresh connection
      write_errors_ += group.appends.size();
      if (!failing_.exchange(true))
        options_.log("ClickHouse INSERT into " + table_ + " failed: " + reply.error +
                     "; appends are refused (503 storage_unavailable) until an INSERT succeeds");
      return unavailable();
    }
    if (failing_.exchange(false)) options_.log("ClickHouse INSERTs into " + table_ + " succeed again");
    inserts_++;
    appends_ += group.appends.size();
    bytes_written_ += group.line_bytes;
    return Status();
  }

  ClickHouseStorageOptions options_;
  const clickhouse::Endpoint endpoint_;
  std::string table_;          // `database`.`table`
  std::string insert_params_;  // query=<INSERT ...>&settings

  std::mutex mu_;  // guards groups_, the sequence state and stopping_
  std::condition_variable flush_cv_;
  std::deque<Group> groups_;  // front flushes first; back takes new rows
  // (received_us, seq) of the first row of each group an INSERT is sending:
  // with max_inserts_in_flight > 1 a later group may commit first.
  std::multiset<std::pair<std::uint64_t, std::uint64_t>> inserting_;
  std::uint64_t last_received_us_ = 0;
  std::uint64_t next_seq_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> flush_threads_;

  std::atomic<bool> failing_{false};               // the last INSERT failed (for logging transitions)
  bool with_requests_ = false;                     // the table has request_id and request_fp (set by start)
  std::vector<StoredRequest> recovered_requests_;  // guarded by mu_

  std::atomic<std::uint64_t> appends_{0}, bytes_written_{0}, inserts_{0}, write_errors_{0};
};

}  // namespace
#endif  // WRITEAPI_WITH_CLICKHOUSE

bool clickhouse_storage_supported() noexcept { return WRITEAPI_WITH_CLICKHOUSE != 0; }

std::string clickhouse_table_sql(const ClickHouseStorageOptions& options) {
  return "CREATE TABLE IF NOT EXISTS `" + options.database + "`.`" + options.table +
         "` (\n"
         "  bucket String,\n"
         "  key String,\n"
         "  device_id String,\n"
         "  received DateTime('UTC'),\n"
         "  received_us UInt64,\n"
         "  frontend String,\n"
         "  seq UInt64,\n"
         "  line String,\n"
         "  request_id String DEFAULT '',\n"
         "  request_fp String DEFAULT ''\n"
         ") ENGINE = MergeTree\n"
         "PARTITION BY toYYYYMM(received)\n"
         "ORDER BY (bucket, key, received_us, frontend, seq)";
}

std::unique_ptr<Storage> make_clickhouse_storage(const ClickHouseStorageOptions& options, Status* status) {
  Status ignored;
  if (!status) status = &ignored;
#if !WRITEAPI_WITH_CLICKHOUSE
  (void)options;
  *status = Status(ErrorCode::not_implemented,
                   "this libwriteapi was built without ClickHouse support (WRITEAPI_WITH_CLICKHOUSE=OFF)");
  return nullptr;
#else
  clickhouse::Endpoint endpoint;
  std::string error;
  if (!clickhouse::parse_url(options.url, &endpoint, &error)) {
    *status = Status(ErrorCode::storage_error, error);
    return nullptr;
  }
  if (!clickhouse::valid_identifier(options.database) || !clickhouse::valid_identifier(options.table)) {
    *status = Status(ErrorCode::storage_error, "ClickHouse database and table names must match [A-Za-z_][A-Za-z0-9_]*");
    return nullptr;
  }
  if (options.flush_rows == 0 || options.flush_interval.count() < 0 || options.max_inserts_in_flight == 0) {
    *status = Status(ErrorCode::storage_error,
                     "flush_rows and max_inserts_in_flight must be positive and flush_interval not negative");
    return nullptr;
  }
  auto storage = std::make_unique<ClickHouseStorage>(options, std::move(endpoint));
  *status = storage->start();
  if (!status->ok()) return nullptr;
  return storage;
#endif
}

}  // namespace writeapi
