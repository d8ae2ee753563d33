// Parsing a Write API request body.
//
// parse() validates an entire request body as JSON (RFC 8259, UTF-8) and
// extracts what ingestion needs: the access key, the optional device ID and
// the items of "data", already laid out as JSON Lines. It knows nothing about
// HTTP; the server and embedders call it (usually through Ingestor).
//
// Body shape: {"accessKey": string, "deviceId": optional string,
//              "requestId": optional string,
//              "data": any JSON value except null}
//   - A top-level array in "data" is split: each element is one item ("[]"
//     is zero items). Any other value is one item. Items may not be null.
//   - Each item becomes one line: the item with the whitespace outside its
//     strings removed, every other byte exactly as the client sent it
//     (numbers and escapes are not rewritten), followed by '\n'.
//   - Other top-level fields are validated as JSON and then ignored.
//   - Numbers are checked against the JSON grammar, never converted, so
//     integers beyond 64 bits and exponents beyond double range are kept.
//   - Strings must be valid UTF-8 and escapes must be valid; an escaped
//     UTF-16 surrogate must be part of a pair (as simdjson requires).
//
// Thread-safety: parse() is reentrant and threads share nothing on the
// hot path (one counter of index memory, below, changes only when a
// thread's index grows), so it scales with cores. A ParsedRequest must not be shared between threads
// while parse() writes to it; reusing one per thread keeps its buffers'
// capacity and avoids allocation on the hot path.
//
// Memory: each thread that calls parse() keeps, for reuse, a nesting stack
// (1 byte per level, at most the smaller of max_depth and the largest body's
// size) and 128 bytes of guesses at the lengths of object keys (lengths
// only, checked before use, so that bodies of one shape parse faster).
// On CPUs with AVX-512, where pretty-printed bodies are parsed over a
// structural index, a thread that has parsed one also keeps that index:
// 4.5 bytes per byte of the largest such body, and at most 64 MiB for all
// threads together (a body whose index would not fit is parsed without
// one: the same answer, more slowly). `lines` needs the body's size plus
// 33 bytes of capacity while parse() runs.
#ifndef WRITEAPI_PARSE_H_
#define WRITEAPI_PARSE_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "writeapi/export.h"
#include "writeapi/status.h"

namespace writeapi {

struct WRITEAPI_EXPORT ParseOptions {
  // Deepest nesting of arrays and objects accepted, counting the top-level
  // object as depth 1. Deeper bodies get ErrorCode::too_deep. Default 1024,
  // so every stored item nests at most 1023 deep and reads back with
  // simdjson's default limit. parse() never recurses: depth costs one byte
  // per level of a reused array, not stack frames.
  std::size_t max_depth = 1024;
};

// Longest deviceId accepted, in bytes after unescaping.
inline constexpr std::size_t kMaxDeviceIdBytes = 256;
// Longest requestId accepted, in bytes after unescaping (the same bound
// applies to the Idempotency-Key header).
inline constexpr std::size_t kMaxRequestIdBytes = 128;

struct WRITEAPI_EXPORT ParsedRequest {
  std::string access_key;  // unescaped value of "accessKey"
  bool has_device_id = false;
  std::string device_id;  // unescaped value of "deviceId" (if present)
  bool has_request_id = false;
  std::string request_id;  // unescaped value of "requestId" (if present)
  std::string lines;       // items as JSON Lines, each ending in '\n'
  std::size_t item_count = 0;

  // Resets the fields, keeping buffer capacity.
  void clear() noexcept {
    access_key.clear();
    has_device_id = false;
    device_id.clear();
    has_request_id = false;
    request_id.clear();
    lines.clear();
    item_count = 0;
  }
};

// Parses `body` into `*out` (cleared first).
//
// Returns ok, or:
//   invalid_utf8       the body is not UTF-8
//   invalid_json       syntax, bad escape, bad number or literal, trailing data
//   too_deep           nesting beyond options.max_depth
//   not_an_object      the top-level value is not an object
//   duplicate_field    accessKey, deviceId, requestId, data (or any top-level field) twice
//   invalid_field      accessKey or deviceId is not a string
//   missing_field      "data" is absent
//   null_data          "data" is null, or an item of a data array is null
//   invalid_device_id  deviceId empty, over 256 bytes, or has control chars
//   invalid_request_id requestId not a string of 1 to 128 bytes of printable
//                      ASCII (0x20..0x7e)
//   missing_access_key "accessKey" absent or empty
// Syntax errors take precedence: a body that is not valid JSON is always
// invalid_json/invalid_utf8/too_deep, whatever else is wrong with it.
// invalid_utf8 comes first; between invalid_json and too_deep, whichever
// the body meets first in reading order (whitespace never changes which).
// On error, `*out` holds no usable data. Only a failed allocation throws
// (std::bad_alloc); `*out` then holds no lines and no field, of this body
// or of the last one.
WRITEAPI_EXPORT Status parse(std::string_view body, ParsedRequest* out, const ParseOptions& options = ParseOptions());

}  // namespace writeapi

#endif  // WRITEAPI_PARSE_H_
