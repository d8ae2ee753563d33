// Read API rules: what a read request (GET /read/v3/bucket/<bucket>/<key>)
// may ask for, and the Bearer access key that authorizes it.
//
// A front end passes the raw query string and Authorization header here and
// maps the returned Status with response.h; the limits live in one place so
// that every front end refuses the same requests with the same codes.
//
// Thread-safety: the functions are pure.
#ifndef WRITEAPI_READ_H_
#define WRITEAPI_READ_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "writeapi/export.h"
#include "writeapi/status.h"

namespace writeapi {

struct WRITEAPI_EXPORT ReadLimits {
  std::size_t default_lines = 1000;   // `limit` when absent
  std::size_t max_lines = 100000;     // largest `limit` or `tail`
  int max_wait_seconds = 60;          // largest `wait`
  std::size_t max_cursor_bytes = 64;  // longest `cursor`
};

// What a read asks for, after parse_read_query.
struct WRITEAPI_EXPORT ReadQuery {
  std::string cursor;     // opaque (Storage::read_range); empty: the start
  std::size_t limit = 0;  // lines at most (ReadLimits::default_lines when absent)
  std::size_t tail = 0;   // when > 0: the last `tail` lines instead of a range
  int wait_seconds = 0;   // long-poll when nothing follows the cursor
};

// Parses `query` (the part after '?', without it; may be empty) of the
// parameters cursor, limit, tail and wait. Returns ok and fills *out, or
// invalid_parameter naming the parameter to fix: an unknown or repeated
// parameter, limit or tail not a whole number from 1 to limits.max_lines,
// wait not a whole number from 0 to limits.max_wait_seconds, a cursor
// longer than limits.max_cursor_bytes or with bytes other than [0-9A-Za-z_-],
// or tail together with cursor or wait.
WRITEAPI_EXPORT Status parse_read_query(std::string_view query, const ReadLimits& limits, ReadQuery* out);

// Extracts the access key of an `Authorization: Bearer <key>` header value
// (scheme case-insensitive, one or more spaces). Returns ok with *key set;
// missing_access_key when the header is empty or absent, or is not a
// Bearer credential with a non-empty key.
WRITEAPI_EXPORT Status bearer_access_key(std::string_view authorization, std::string* key);

}  // namespace writeapi

#endif  // WRITEAPI_READ_H_
