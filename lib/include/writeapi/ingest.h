// Ingestor: the whole write step, independent of any HTTP stack.
//
// ingest() runs, in order: content checks (type, encoding, size), name
// checks, parse(), authorization, device limits (when a DeviceLimiter is
// given; see limits.h), then Storage::append(). It returns the
// Status to answer with; Status::http_status() and Status::name() give the
// HTTP status and stable error code, so a program with its own HTTP server
// answers exactly as writeapi-server does. Nothing is stored unless every
// check passed.
//
// Thread-safety: ingest() may be called concurrently. The Authorizer,
// DeviceLimiter and Storage must outlive the Ingestor and be thread-safe
// themselves.
#ifndef WRITEAPI_INGEST_H_
#define WRITEAPI_INGEST_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "writeapi/auth.h"
#include "writeapi/clock.h"
#include "writeapi/export.h"
#include "writeapi/http1.h"
#include "writeapi/limits.h"
#include "writeapi/parse.h"
#include "writeapi/status.h"
#include "writeapi/storage.h"

namespace writeapi {

// Default request body limit: 10 MiB.
inline constexpr std::size_t kDefaultMaxBodyBytes = 10 * 1024 * 1024;

// The largest max_body_bytes that means what it says: 1 GiB. A request's
// lines are never longer than its decompressed body, and the file store's
// log record holds them behind a 32-bit length (docs/WAL_FORMAT.md); zlib
// counts input and output in 32-bit uInt. A larger max_body_bytes acts as
// this limit. Servers should refuse a larger setting at startup.
inline constexpr std::size_t kMaxBodyBytesLimit = std::size_t{1} << 30;

struct WRITEAPI_EXPORT IngestOptions {
  // Largest body accepted, in bytes, after gzip decompression. Bigger
  // bodies get payload_too_large. Default 10 MiB (the API's limit); at most
  // kMaxBodyBytesLimit (a larger value acts as that limit).
  std::size_t max_body_bytes = kDefaultMaxBodyBytes;
  ParseOptions parse;
  // Idempotent writes: a request carrying an id (`requestId` in the body or
  // the Idempotency-Key header, IngestRequest::idempotency_key) that was
  // acknowledged before is answered with its original count and stores
  // nothing; the same id for another bucket, key or body is
  // request_id_conflict; a retry while the first is in flight gets the
  // first's answer. Ids are remembered per bucket for at least
  // dedup_window and at most dedup_max_ids (about 200 bytes each) in this
  // process's memory, and handed to the store with the lines
  // (AppendBatch::request): a store that keeps them (the file store does;
  // see FileStorageOptions::request_id_window) gives them back to the next
  // Ingestor built on it, so retries are recognised across a crash or a
  // restart. dedup_max_ids 0 turns the feature off (ids are then checked
  // and ignored).
  std::chrono::seconds dedup_window = std::chrono::hours(24);
  std::size_t dedup_max_ids = 1'000'000;
  // Time source of the dedup window and of waits for a request in flight;
  // nullptr means real_clock(). Must outlive the Ingestor.
  const Clock* clock = nullptr;
  // Called once for every request whose lines were stored (at least one
  // item, acknowledged by the store; not for duplicates), with its bucket
  // and key, just before its `done`: from then on the store's reads show
  // the lines. For waking readers that wait for new lines (long-polls).
  // Called on the thread that completes the append (the caller's, or the
  // store's): it must be quick and must not block. Default: none.
  std::function<void(std::string_view bucket, std::string_view key)> on_appended;
};

struct WRITEAPI_EXPORT IngestRequest {
  std::string_view bucket;            // percent-decoded path segment
  std::string_view key;               // percent-decoded path segment
  std::string_view content_type;      // Content-Type header; empty if absent
  std::string_view content_encoding;  // Content-Encoding: empty or identity,
                                      // gzip, x-gzip or deflate (zlib)
  std::string_view body;              // as received (maybe gzip)
  // The Idempotency-Key header's value when the header was sent (an empty
  // value is a malformed id: 400), nullopt when it was not.
  std::optional<std::string_view> idempotency_key;
};

// What a front end knows of a write request once its head has arrived.
struct WRITEAPI_EXPORT WriteHead {
  std::string_view method = "POST";   // the request method, as sent
  std::string_view target;            // as sent: "/write/v3/bucket/<b>/<k>[?query]"
  std::string_view content_type;      // first Content-Type value; empty if absent
  int content_type_count = 1;         // how many Content-Type fields were sent
  std::string_view content_encoding;  // first Content-Encoding value; empty if absent
  int content_encoding_count = 1;
  int idempotency_key_count = 0;  // Idempotency-Key fields (more than one: 400)
  enum class Framing { none, length, chunked };
  Framing framing = Framing::length;
  std::uint64_t content_length = 0;  // with Framing::length
};

struct WRITEAPI_EXPORT IngestResult {
  std::size_t items = 0;         // items stored
  std::size_t bytes_stored = 0;  // bytes of JSON Lines stored
  std::string device_id;         // deviceId of the request, if any
  bool duplicate = false;        // a retry of an acknowledged request: nothing
                                 // stored now, items is the original count
};

class RequestIds;

// Counters of idempotent writes (IngestOptions::dedup_*), for monitoring.
struct WRITEAPI_EXPORT RequestIdStats {
  std::uint64_t duplicates = 0;  // retries answered with the original count
  std::uint64_t conflicts = 0;   // ids reused for other data (409)
  std::uint64_t evictions = 0;   // ids dropped at dedup_max_ids before their window ended
  std::uint64_t remembered = 0;  // ids held now, all buckets
};

class WRITEAPI_EXPORT Ingestor {
 public:
  // Without device limits: every authorized request is stored.
  Ingestor(const Authorizer* authorizer, Storage* storage, IngestOptions options = IngestOptions());
  // With device limits: an authorized request over its budget gets
  // rate_limited or suspended (429, with Retry-After), a blocked device
  // device_blocked (403), and nothing of it is stored. `limiter` may be
  // null (no limits).
  Ingestor(const Authorizer* authorizer, DeviceLimiter* limiter, Storage* storage,
           IngestOptions options = IngestOptions());

  // The checks the head alone decides, before any of the body is read:
  // the target (not_found outside the write path, method_not_allowed for
  // a method other than POST on it, invalid_name; fills *bucket and *key), a body
  // framing (length_required), the declared length against max_body_bytes
  // (payload_too_large), one supported Content-Type and Content-Encoding.
  // Ok: read a body of at most max_body_bytes() and pass it to ingest() or
  // ingest_async(), which check the rest (the inflated size, the body's
  // content, the key, the limits). A refusal here is the complete answer
  // (render it with writeapi/response.h; "Expect: 100-continue" then gets
  // it instead of 100 Continue).
  Status check_head(const WriteHead& head, std::string* bucket, std::string* key) const;
  // The same for a head framed by writeapi/http1.h (its method, target,
  // first Content-Type and Content-Encoding and their counts, framing).
  Status check_head(const http1::RequestHead& head, std::string* bucket, std::string* key) const;

  // The body limit in bytes: options().max_body_bytes, at most
  // kMaxBodyBytesLimit.
  std::size_t max_body_bytes() const;

  // Validates, authorizes and stores one request. On return
  // result->device_id is set whenever the body parsed (for logging).
  Status ingest(const IngestRequest& request, IngestResult* result) const;

  // ingest() that completes through `done`, for front ends on an event
  // loop: everything up to the store runs before ingest_async returns (on
  // the calling thread); the store's part completes through
  // Storage::append_async, so nothing waits for a sync or a remote insert.
  // `done` is called exactly once with the status and the result, either
  // before ingest_async returns or later from a thread of the store: it
  // must be quick and must not block. The request's memory need only stay
  // valid until ingest_async returns. ingest() is this call and a wait.
  void ingest_async(const IngestRequest& request, std::function<void(const Status&, const IngestResult&)> done) const;

  const IngestOptions& options() const { return options_; }
  RequestIdStats request_id_stats() const;

 private:
  using Done = std::function<void(const Status&, const IngestResult&)>;
  // Everything before the store: fills *batch (pointing into per-thread
  // buffers), result->device_id and *request_id (empty: none), or returns
  // the refusal.
  Status prepare(const IngestRequest& request, IngestResult* result, AppendBatch* batch, std::string* request_id) const;
  // The store's part for a request with an id: duplicates, conflicts and
  // waits first (RequestIds), then append_async.
  void store_once(const AppendBatch& batch, const std::string& request_id, IngestResult result, Done done) const;
  // The object of a batch, copied for IngestOptions::on_appended (empty
  // without one), and the call made once the batch is stored.
  std::pair<std::string, std::string> appended_object(const AppendBatch& batch) const;
  void notify_appended(const std::pair<std::string, std::string>& object, std::size_t items) const;
  const Authorizer* authorizer_;
  DeviceLimiter* limiter_ = nullptr;
  Storage* storage_;
  IngestOptions options_;
  std::shared_ptr<RequestIds> request_ids_;  // null when dedup_max_ids is 0
};

// Ok when `content_type` is application/json (any case, parameters such as
// charset=utf-8 allowed); unsupported_media_type otherwise.
WRITEAPI_EXPORT Status check_content_type(std::string_view content_type);

// Ok when `content_encoding` is empty, identity, gzip, x-gzip or deflate
// (any case); unsupported_encoding otherwise.
WRITEAPI_EXPORT Status check_content_encoding(std::string_view content_encoding);

// Inflates a gzip (or zlib, for "deflate") stream into *out, failing with
// payload_too_large as soon as the output would exceed `max_bytes` (or the
// input kMaxBodyBytesLimit), and with bad_request on corrupt data.
WRITEAPI_EXPORT Status gunzip(std::string_view compressed, std::size_t max_bytes, std::string* out);

}  // namespace writeapi

#endif  // WRITEAPI_INGEST_H_
