// The Write API's answers, rendered by the library so that every front end
// sends the same bytes: the JSON bodies, the status line and the headers
// that go with a Status (Retry-After for 429, 503 and 507).
//
//   200 {"ok":true,"items":N}
//   4xx/5xx {"ok":false,"error":"<Status::name()>","message":"<Status::message()>"}
//
// Both bodies end in '\n' and are sent as Content-Type: application/json.
//
// Thread-safety: pure functions.
#ifndef WRITEAPI_RESPONSE_H_
#define WRITEAPI_RESPONSE_H_

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "writeapi/export.h"
#include "writeapi/status.h"

namespace writeapi {

// Appends `text` as a JSON string (quotes, backslashes and control
// characters escaped; other bytes, UTF-8 included, as they are).
WRITEAPI_EXPORT void append_json_string(std::string* out, std::string_view text);

// {"ok":false,"error":<code>,"message":<message>} and '\n'.
WRITEAPI_EXPORT std::string error_json(std::string_view code, std::string_view message);

// {"ok":true,"items":<items>} and '\n'; with `duplicate` (a retry of an
// acknowledged request) {"ok":true,"items":<items>,"duplicate":true}.
WRITEAPI_EXPORT std::string ok_json(std::size_t items, bool duplicate = false);

// A header that goes with an answer beyond Content-Type and Content-Length.
struct WRITEAPI_EXPORT ResponseHeader {
  std::string_view name;
  std::string value;
};

// The headers a status brings: Allow: POST with method_not_allowed,
// Retry-After with a status that has retry_after_seconds(). For front ends
// that set headers one at a time; append_write_response includes them.
WRITEAPI_EXPORT std::vector<ResponseHeader> status_headers(const Status& status);

// The reason phrase of an HTTP status code ("Too Many Requests").
WRITEAPI_EXPORT const char* reason_phrase(int http_status) noexcept;

// Appends a whole HTTP/1.1 error response: `http_status` with
// error_json(code, message) and `header_lines`. For refusals that come
// before the write contract (framing: 400, 414, 431, 501, 505, ...).
WRITEAPI_EXPORT void append_error_response(int http_status, std::string_view code, std::string_view message,
                                           std::string_view header_lines, std::string* out);

// Appends the whole HTTP/1.1 response to a write request: for an ok status
// 200 with ok_json(items), else the status's code with error_json and
// its status_headers(). `header_lines` (each ending
// "\r\n", e.g. "Connection: close\r\n") go after the fixed headers.
WRITEAPI_EXPORT void append_write_response(const Status& status, std::size_t items, std::string_view header_lines,
                                           std::string* out, bool duplicate = false);

}  // namespace writeapi

#endif  // WRITEAPI_RESPONSE_H_
