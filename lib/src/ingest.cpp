#include "writeapi/ingest.h"

#include <zlib.h>

#include <algorithm>
#include <condition_variable>
#include <limits>
#include <memory>
#include <mutex>
#include <string>

#include "request_ids.h"
#include "writeapi/names.h"

namespace writeapi {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Per-thread buffers: parsing and inflating reuse their capacity.
struct ThreadBuffers {
  ParsedRequest parsed;
  std::string inflated;
};

ThreadBuffers& thread_buffers() {
  thread_local ThreadBuffers buffers;
  return buffers;
}

// Buffers above this size are released after the request, so one 10 MiB
// request does not pin 10 MiB per thread forever.
constexpr std::size_t kKeepBufferBytes = 1 << 20;

void trim_buffer(std::string* s) {
  if (s->capacity() > kKeepBufferBytes) std::string().swap(*s);
}

}  // namespace

Status check_content_type(std::string_view content_type) {
  std::string_view media = trim(content_type.substr(0, content_type.find(';')));
  if (ascii_iequals(media, "application/json")) return Status();
  if (content_type.empty())
    return Status(ErrorCode::unsupported_media_type, "send the header Content-Type: application/json");
  return Status(ErrorCode::unsupported_media_type,
                "the body must be JSON; send the header Content-Type: application/json");
}

Status check_content_encoding(std::string_view content_encoding) {
  std::string_view encoding = trim(content_encoding);
  if (encoding.empty() || ascii_iequals(encoding, "identity") || ascii_iequals(encoding, "gzip") ||
      ascii_iequals(encoding, "x-gzip") || ascii_iequals(encoding, "deflate"))
    return Status();
  return Status(ErrorCode::unsupported_encoding, "Content-Encoding must be gzip, deflate or absent");
}

static_assert(kMaxBodyBytesLimit <= std::numeric_limits<uInt>::max(), "zlib counts bytes in uInt");

Status gunzip(std::string_view compressed, std::size_t max_bytes, std::string* out) {
  out->clear();
  if (compressed.size() > kMaxBodyBytesLimit)
    return Status(ErrorCode::payload_too_large, "the body exceeds the size limit");
  z_stream stream{};
  if (inflateInit2(&stream, 15 + 32) != Z_OK)  // 15 + 32: gzip or zlib header
    return Status(ErrorCode::internal_error, "cannot initialise zlib");
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(compressed.data()));
  stream.avail_in = static_cast<uInt>(compressed.size());
  Status status;
  char chunk[1 << 16];
  for (;;) {
    stream.next_out = reinterpret_cast<Bytef*>(chunk);
    stream.avail_out = sizeof chunk;
    int rc = inflate(&stream, Z_NO_FLUSH);
    std::size_t produced = sizeof chunk - stream.avail_out;
    if (out->size() + produced > max_bytes) {
      status = Status(ErrorCode::payload_too_large, "the decompressed body exceeds the size limit");
      break;
    }
    out->append(chunk, produced);
    if (rc == Z_STREAM_END) {
      if (stream.avail_in != 0) status = Status(ErrorCode::bad_request, "unexpected data after the gzip stream");
      break;
    }
    if (rc != Z_OK || (produced == 0 && stream.avail_in == 0)) {
      status = Status(ErrorCode::bad_request, "the body is not valid gzip data");
      break;
    }
  }
  inflateEnd(&stream);
  return status;
}

namespace {

// The table of request ids, holding from the start the ids the store kept
// of earlier runs (their age carried over from the wall clock).
std::shared_ptr<RequestIds> make_request_ids(const IngestOptions& options, Storage* storage) {
  if (options.dedup_max_ids == 0) return nullptr;
  RequestIdsOptions ids;
  ids.window = options.dedup_window;
  ids.max_ids = options.dedup_max_ids;
  ids.clock = options.clock;
  auto table = std::make_shared<RequestIds>(ids);
  std::vector<StoredRequest> stored;
  if (storage != nullptr && storage->take_recovered_requests(&stored).ok()) {
    const Clock* clock = options.clock != nullptr ? options.clock : real_clock();
    const Clock::time_point now = clock->now();
    const auto wall_now = std::chrono::system_clock::now();
    for (const StoredRequest& r : stored) {
      const auto age = std::max(std::chrono::system_clock::duration::zero(), wall_now - r.stored_at);
      table->restore(r.bucket, r.id, r.fingerprint, r.item_count,
                     now - std::chrono::duration_cast<Clock::duration>(age));
    }
  }
  return table;
}

}  // namespace

Ingestor::Ingestor(const Authorizer* authorizer, Storage* storage, IngestOptions options)
    : Ingestor(authorizer, nullptr, storage, std::move(options)) {}

Ingestor::Ingestor(const Authorizer* authorizer, DeviceLimiter* limiter, Storage* storage, IngestOptions options)
    : authorizer_(authorizer),
      limiter_(limiter),
      storage_(storage),
      options_(options),
      request_ids_(make_request_ids(options_, storage)) {}

namespace {

// Wipes the access key from the reused buffer as soon as it is checked.
void wipe_access_key(ParsedRequest* parsed) {
  parsed->access_key.assign(parsed->access_key.size(), '\0');
  parsed->access_key.clear();
}

// Lets go of large per-thread buffers after a request.
void release_buffers(ThreadBuffers* buffers) {
  trim_buffer(&buffers->parsed.lines);
  trim_buffer(&buffers->inflated);
}

}  // namespace

std::size_t Ingestor::max_body_bytes() const { return std::min(options_.max_body_bytes, kMaxBodyBytesLimit); }

Status Ingestor::check_head(const WriteHead& head, std::string* bucket, std::string* key) const {
  // Unknown paths are not_found whatever the method; on the write path
  // the method comes before the names, so GET on any write target is 405.
  const std::string_view path = head.target.substr(0, head.target.find('?'));
  if (path.substr(0, kWritePathPrefix.size()) == kWritePathPrefix && head.method != "POST")
    return Status(ErrorCode::method_not_allowed, "the write path accepts POST only");
  if (Status s = parse_write_target(head.target, bucket, key); !s.ok()) return s;
  if (head.framing == WriteHead::Framing::none)
    return Status(ErrorCode::length_required, "send a Content-Length header (or a chunked body)");
  if (head.framing == WriteHead::Framing::length && head.content_length > max_body_bytes())
    return Status(ErrorCode::payload_too_large,
                  "the body exceeds the size limit of " + std::to_string(max_body_bytes()) + " bytes");
  if (head.content_type_count > 1)
    return Status(ErrorCode::unsupported_media_type, "send one Content-Type: application/json");
  if (Status s = check_content_type(head.content_type); !s.ok()) return s;
  if (head.content_encoding_count > 1) return Status(ErrorCode::unsupported_encoding, "send one Content-Encoding");
  if (head.idempotency_key_count > 1)
    return Status(ErrorCode::invalid_request_id, "send one Idempotency-Key (or a requestId in the body)");
  return check_content_encoding(head.content_encoding);
}

Status Ingestor::check_head(const http1::RequestHead& head, std::string* bucket, std::string* key) const {
  WriteHead write;
  write.method = head.method;
  write.target = head.target;
  if (const http1::Field* f = head.find("Content-Type")) write.content_type = f->value;
  write.content_type_count = static_cast<int>(head.count("Content-Type"));
  if (const http1::Field* f = head.find("Content-Encoding")) write.content_encoding = f->value;
  write.content_encoding_count = static_cast<int>(head.count("Content-Encoding"));
  write.idempotency_key_count = static_cast<int>(head.count("Idempotency-Key"));
  write.framing = head.framing == http1::BodyFraming::none     ? WriteHead::Framing::none
                  : head.framing == http1::BodyFraming::length ? WriteHead::Framing::length
                                                               : WriteHead::Framing::chunked;
  write.content_length = head.content_length;
  return check_head(write, bucket, key);
}

Status Ingestor::prepare(const IngestRequest& request, IngestResult* result, AppendBatch* batch,
                         std::string* request_id) const {
  request_id->clear();
  ThreadBuffers& buffers = thread_buffers();
  if (Status s = check_content_type(request.content_type); !s.ok()) return s;
  if (Status s = check_content_encoding(request.content_encoding); !s.ok()) return s;
  std::string_view body = request.body;
  std::string_view encoding = trim(request.content_encoding);
  const std::size_t limit = max_body_bytes();
  if (!encoding.empty() && !ascii_iequals(encoding, "identity")) {
    if (Status s = gunzip(body, limit, &buffers.inflated); !s.ok()) return s;
    body = buffers.inflated;
  }
  if (body.size() > limit)
    return Status(ErrorCode::payload_too_large,
                  "the body exceeds the size limit of " + std::to_string(limit) + " bytes");

  if (Status s = validate_name(request.bucket, "bucket"); !s.ok()) return s;
  if (Status s = validate_name(request.key, "key"); !s.ok()) return s;

  ParsedRequest& parsed = buffers.parsed;
  Status status = parse(body, &parsed, options_.parse);
  if (parsed.has_device_id) result->device_id = parsed.device_id;
  if (status.ok() && (parsed.has_request_id || request.idempotency_key))
    status =
        resolve_request_id(parsed.has_request_id ? std::optional<std::string_view>(parsed.request_id) : std::nullopt,
                           request.idempotency_key, request_id);
  // A request of no items stores nothing, so nothing would keep its id
  // across a restart: it is not remembered at all (checked, then dropped).
  if (status.ok() && parsed.item_count == 0) request_id->clear();
  if (status.ok()) status = authorizer_->authorize(request.bucket, parsed.access_key);
  // Limits come after authorization, so requests with a wrong key cannot
  // spend (or suspend) a bucket's budget; for a request with an id, after
  // the id is known to be new (store_once), so retries spend nothing.
  if (status.ok() && limiter_ && (request_id->empty() || !request_ids_))
    status = limiter_->admit(request.bucket, parsed.device_id);
  wipe_access_key(&parsed);
  if (!status.ok()) return status;
  batch->bucket = request.bucket;
  batch->key = request.key;
  batch->device_id = parsed.device_id;
  batch->lines = parsed.lines;
  batch->item_count = parsed.item_count;
  return Status();
}

Status Ingestor::ingest(const IngestRequest& request, IngestResult* result) const {
  result->items = 0;
  result->bytes_stored = 0;
  result->device_id.clear();
  result->duplicate = false;
  AppendBatch batch;
  std::string request_id;
  Status status = prepare(request, result, &batch, &request_id);
  if (status.ok() && !request_id.empty() && request_ids_) {
    // A retry may wait for the first request in flight: the asynchronous
    // path and a wait.
    std::mutex mu;
    std::condition_variable cv;
    bool finished = false;
    store_once(batch, request_id, std::move(*result), [&](const Status& s, const IngestResult& r) {
      std::lock_guard<std::mutex> lock(mu);
      status = s;
      *result = r;
      finished = true;
      cv.notify_one();
    });
    release_buffers(&thread_buffers());
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return finished; });
    return status;
  }
  if (status.ok()) status = storage_->append(batch);
  if (status.ok()) {
    result->items = batch.item_count;
    result->bytes_stored = batch.lines.size();
    if (options_.on_appended && batch.item_count > 0) options_.on_appended(batch.bucket, batch.key);
  }
  release_buffers(&thread_buffers());
  return status;
}

void Ingestor::ingest_async(const IngestRequest& request,
                            std::function<void(const Status&, const IngestResult&)> done) const {
  IngestResult result;
  AppendBatch batch;
  std::string request_id;
  Status status = prepare(request, &result, &batch, &request_id);
  if (!status.ok()) {
    release_buffers(&thread_buffers());
    return done(status, result);
  }
  if (!request_id.empty() && request_ids_) {
    store_once(batch, request_id, std::move(result), std::move(done));
    release_buffers(&thread_buffers());
    return;
  }
  const std::size_t items = batch.item_count;
  const std::size_t bytes = batch.lines.size();
  // `done` may run inline and start the next request on this thread,
  // reusing the per-thread buffers: the store is done with the batch by
  // then (see Storage::append_async).
  storage_->append_async(batch, [this, done = std::move(done), result = std::move(result), items, bytes,
                                 object = appended_object(batch)](Status stored) mutable {
    if (stored.ok()) {
      result.items = items;
      result.bytes_stored = bytes;
      notify_appended(object, items);
    }
    done(stored, result);
  });
  release_buffers(&thread_buffers());
}

std::pair<std::string, std::string> Ingestor::appended_object(const AppendBatch& batch) const {
  if (!options_.on_appended || batch.item_count == 0) return {};
  return {std::string(batch.bucket), std::string(batch.key)};
}

void Ingestor::notify_appended(const std::pair<std::string, std::string>& object, std::size_t items) const {
  if (options_.on_appended && items > 0) options_.on_appended(object.first, object.second);
}

RequestIdStats Ingestor::request_id_stats() const {
  RequestIdStats stats;
  if (!request_ids_) return stats;
  const RequestIds::Stats s = request_ids_->stats();
  stats.duplicates = s.duplicates;
  stats.conflicts = s.conflicts;
  stats.evictions = s.evictions;
  stats.remembered = s.remembered;
  return stats;
}

void Ingestor::store_once(const AppendBatch& batch, const std::string& request_id, IngestResult result,
                          Done done) const {
  // Waits past their limit end when traffic comes by (no thread of our own).
  request_ids_->expire_waiters_if_due();
  const RequestFingerprint fingerprint = request_fingerprint(batch.bucket, batch.key, batch.lines);
  auto shared_done = std::make_shared<Done>(std::move(done));
  std::size_t items = 0;
  RequestIds::Waiter waiter = [shared_done, result](const RequestOutcome& outcome) {
    IngestResult answer = result;
    if (outcome.status.ok()) {
      answer.items = outcome.items;
      answer.duplicate = true;
    }
    (*shared_done)(outcome.status, answer);
  };
  switch (request_ids_->begin(batch.bucket, request_id, fingerprint, &items, std::move(waiter))) {
    case RequestIds::Begin::duplicate:
      result.items = items;
      result.duplicate = true;
      return (*shared_done)(Status(), result);
    case RequestIds::Begin::conflict:
      return (*shared_done)(Status(ErrorCode::request_id_conflict,
                                   "this requestId was used for another request (bucket, key or data); use a new id"),
                            result);
    case RequestIds::Begin::waiting:
      return;  // the waiter answers, with the first request's outcome
    case RequestIds::Begin::busy:
      return (*shared_done)(
          Status(ErrorCode::server_busy, "too many retries of this requestId are waiting; retry later")
              .with_retry_after(1),
          result);
    case RequestIds::Begin::fresh:
      break;
  }
  if (limiter_) {
    if (Status admitted = limiter_->admit(batch.bucket, batch.device_id); !admitted.ok()) {
      request_ids_->finish(batch.bucket, request_id, RequestOutcome{admitted, 0});
      return (*shared_done)(admitted, result);
    }
  }
  const std::size_t count = batch.item_count;
  const std::size_t bytes = batch.lines.size();
  // The store keeps the id with the lines, so that it survives a restart.
  AppendBatch tagged = batch;
  tagged.request.id = request_id;
  tagged.request.fingerprint = fingerprint;
  storage_->append_async(
      tagged, [this, ids = request_ids_, bucket = std::string(batch.bucket), request_id, shared_done,
               result = std::move(result), count, bytes, object = appended_object(batch)](Status stored) mutable {
        // Remembered (or forgotten) before the answer: a retry that follows
        // the answer finds the id.
        ids->finish(bucket, request_id, RequestOutcome{stored, stored.ok() ? count : 0});
        if (stored.ok()) {
          result.items = count;
          result.bytes_stored = bytes;
          notify_appended(object, count);
        }
        (*shared_done)(stored, result);
      });
}

}  // namespace writeapi
