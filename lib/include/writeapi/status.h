// Status: the outcome of every libwriteapi operation that can fail.
//
// A Status is either ok (no allocation, no cost) or carries an ErrorCode and
// a human-readable message meant for the client ("send Content-Type:
// application/json"). Every ErrorCode has a stable wire name and an HTTP
// status, listed in one table (status.cc), so an embedder using any HTTP
// stack answers exactly as writeapi-server does.
//
// Thread-safety: Status is a value type; distinct objects may be used from
// distinct threads freely.
#ifndef WRITEAPI_STATUS_H_
#define WRITEAPI_STATUS_H_

#include <string>
#include <string_view>
#include <utility>

#include "writeapi/export.h"

namespace writeapi {

// Stable error codes. The wire name (error_name) and HTTP status
// (http_status) of each are part of the public contract; never renumber or
// rename, only append.
enum class ErrorCode : int {
  ok = 0,
  // 400: the request is malformed.
  invalid_json,       // body is not valid JSON (syntax, escapes, numbers)
  invalid_utf8,       // body is not valid UTF-8
  not_an_object,      // top-level JSON value is not an object
  missing_field,      // a required field ("data") is absent
  invalid_field,      // a field has the wrong JSON type
  null_data,          // "data" (or an item of it) is null
  duplicate_field,    // a top-level field appears twice
  invalid_device_id,  // deviceId empty, too long or with control characters
  invalid_name,       // bucket or key name breaks the naming rules
  too_deep,           // nesting deeper than ParseOptions::max_depth
  bad_request,        // HTTP framing problem (unreadable body, bad gzip)
  // 401
  missing_access_key,  // no accessKey in the body
  // 403
  access_denied,   // wrong access key or unknown bucket (same answer)
  device_blocked,  // the deviceId is blocked by the operator
  // 404 / 405 / 411 / 413 / 415
  not_found,
  method_not_allowed,
  length_required,
  payload_too_large,
  unsupported_media_type,  // Content-Type is not application/json
  unsupported_encoding,    // Content-Encoding other than gzip/identity
  // 429
  rate_limited,  // over the request budget; retry after Retry-After
  suspended,     // device suspended for repeated abuse
  // 5xx: storage failures; nothing of the request was kept.
  insufficient_storage,  // 507: no space or quota left
  storage_error,         // 503: I/O error, failed sync; retry later
  storage_unavailable,   // 503: remote store unreachable; retry later
  internal_error,        // 500: a bug
  // Appended later (the order above is fixed).
  not_implemented,      // 501: a transfer coding other than chunked
  server_busy,          // 503: the server holds all the connections it can; retry later
  invalid_request_id,   // 400: requestId/Idempotency-Key malformed, or both present and different
  request_id_conflict,  // 409: the request id was acknowledged for another bucket/key/body
  invalid_cursor,       // 400: a read cursor that this object never issued (or past its end)
  invalid_parameter,    // 400: a read query parameter unknown, repeated or out of range
};

// Number of ErrorCode values (for tables and tests).
inline constexpr int kErrorCodeCount = static_cast<int>(ErrorCode::invalid_parameter) + 1;

// Wire name of `code` ("invalid_json"); "ok" for ErrorCode::ok.
WRITEAPI_EXPORT std::string_view error_name(ErrorCode code) noexcept;

// HTTP status for `code` (200 for ok).
WRITEAPI_EXPORT int http_status(ErrorCode code) noexcept;

class [[nodiscard]] WRITEAPI_EXPORT Status {
 public:
  // An ok status.
  Status() noexcept = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() noexcept { return Status(); }

  bool ok() const noexcept { return code_ == ErrorCode::ok; }
  ErrorCode code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }
  std::string_view name() const noexcept { return error_name(code_); }
  int http_status() const noexcept { return writeapi::http_status(code_); }

  // Seconds a client should wait before retrying (Retry-After); 0 when the
  // status carries no advice.
  int retry_after_seconds() const noexcept { return retry_after_seconds_; }
  Status& with_retry_after(int seconds) noexcept {
    retry_after_seconds_ = seconds;
    return *this;
  }

  // Explicitly ignore a status (for best-effort paths).
  void ignore_error() const noexcept {}

 private:
  ErrorCode code_ = ErrorCode::ok;
  int retry_after_seconds_ = 0;
  std::string message_;
};

}  // namespace writeapi

#endif  // WRITEAPI_STATUS_H_
