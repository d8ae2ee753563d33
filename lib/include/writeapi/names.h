// Bucket and key names.
//
// A name is 1 to 128 characters of A-Z a-z 0-9 '.' '_' '-' and does not
// start with '.'. The rule keeps every object inside its bucket directory
// (no '/', no "..") and portable across file systems and databases.
// Names are checked after percent-decoding of the URL path.
//
// Thread-safety: pure functions.
#ifndef WRITEAPI_NAMES_H_
#define WRITEAPI_NAMES_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "writeapi/export.h"
#include "writeapi/status.h"

namespace writeapi {

inline constexpr std::size_t kMaxNameLength = 128;

// True when `name` is a valid bucket or key name.
WRITEAPI_EXPORT bool is_valid_name(std::string_view name) noexcept;

// Ok, or invalid_name with a message naming `what` ("bucket" or "key").
WRITEAPI_EXPORT Status validate_name(std::string_view name, std::string_view what);

// Splits a request target ("/write/v3/bucket/<bucket>/<key>", optionally
// followed by "?query") into its percent-decoded bucket and key.
// Returns not_found when the target is not a write path (wrong prefix, or
// not exactly two segments after it), invalid_name when a segment is
// malformed or decodes to an invalid name.
WRITEAPI_EXPORT Status parse_write_target(std::string_view target, std::string* bucket, std::string* key);

// The path prefix of the Write API.
inline constexpr std::string_view kWritePathPrefix = "/write/v3/bucket/";

// Decodes %XX escapes of a URL path segment into `*out`. Returns false on a
// malformed escape ('%' not followed by two hex digits). '+' is kept as is.
WRITEAPI_EXPORT bool percent_decode(std::string_view in, std::string* out);

// Compares ASCII case-insensitively, as HTTP compares field names, tokens
// and media types (bytes above 0x7f only match themselves).
WRITEAPI_EXPORT bool ascii_iequals(std::string_view a, std::string_view b) noexcept;

}  // namespace writeapi

#endif  // WRITEAPI_NAMES_H_
