#include "writeapi/ingest.h"

#include <zlib.h>

#include <algorithm>
#include <limits>
#include <string>

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

Ingestor::Ingestor(const Authorizer* authorizer, Storage* storage, IngestOptions options)
    : authorizer_(authorizer), storage_(storage), options_(options) {}

Ingestor::Ingestor(const Authorizer* authorizer, DeviceLimiter* limiter, Storage* storage, IngestOptions options)
    : authorizer_(authorizer), limiter_(limiter), storage_(storage), options_(options) {}

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
  return check_content_encoding(head.content_encoding);
}

Status Ingestor::prepare(const IngestRequest& request, IngestResult* result, AppendBatch* batch) const {
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
  if (status.ok()) status = authorizer_->authorize(request.bucket, parsed.access_key);
  // Limits come after authorization, so requests with a wrong key cannot
  // spend (or suspend) a bucket's budget.
  if (status.ok() && limiter_) status = limiter_->admit(request.bucket, parsed.device_id);
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
  AppendBatch batch;
  Status status = prepare(request, result, &batch);
  if (status.ok()) status = storage_->append(batch);
  if (status.ok()) {
    result->items = batch.item_count;
    result->bytes_stored = batch.lines.size();
  }
  release_buffers(&thread_buffers());
  return status;
}

void Ingestor::ingest_async(const IngestRequest& request,
                            std::function<void(const Status&, const IngestResult&)> done) const {
  IngestResult result;
  AppendBatch batch;
  Status status = prepare(request, &result, &batch);
  if (!status.ok()) {
    release_buffers(&thread_buffers());
    return done(status, result);
  }
  const std::size_t items = batch.item_count;
  const std::size_t bytes = batch.lines.size();
  // `done` may run inline and start the next request on this thread,
  // reusing the per-thread buffers: the store is done with the batch by
  // then (see Storage::append_async).
  storage_->append_async(batch,
                         [done = std::move(done), result = std::move(result), items, bytes](Status stored) mutable {
                           if (stored.ok()) {
                             result.items = items;
                             result.bytes_stored = bytes;
                           }
                           done(stored, result);
                         });
  release_buffers(&thread_buffers());
}

}  // namespace writeapi
