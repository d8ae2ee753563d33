// Strict HTTP/1.1 request framing (RFC 9112): the request head and the
// chunked body, exactly as the grammar says. Every front end frames
// requests with it (writeapi-server's connection layer before cpp-httplib
// sees anything, examples/asio-server on Asio), so they agree on what a
// request is; Ingestor::check_head then decides the write from the head.
//
// Why not cpp-httplib's own parser: it accepts bare LF line ends, drops
// header lines it cannot split, percent-decodes header values (so
// "Content-Length: 5%34" reads as 54) and is lenient about chunk framing.
// Debian 12 has no llhttp, and its http-parser 2.9 is built non-strict
// (bare LF and obs-fold accepted). The grammar is small; it is written here
// once, unit-tested (tests/unit/http1_test.cpp) and fuzzed
// (tests/fuzz/fuzz_http1.cpp).
//
// Everything here is a pure function or a small state machine over bytes:
// no allocation except RequestHead::fields, no I/O, safe from any thread.
#ifndef WRITEAPI_HTTP1_H_
#define WRITEAPI_HTTP1_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "writeapi/export.h"
#include "writeapi/names.h"

namespace writeapi::http1 {

// Bounds of the grammar. A head, a field line or a target beyond them is
// refused (431, 431, 414): cpp-httplib's own limits (8192 per line) are
// never reached by what the connection layer hands it.
inline constexpr std::size_t kMaxTargetBytes = 8000;
inline constexpr std::size_t kMaxFieldLineBytes = 8000;
inline constexpr std::size_t kMaxFields = 100;
// Chunk-size line (size and extensions) and the trailer section.
inline constexpr std::size_t kMaxChunkLineBytes = 1024;
inline constexpr std::size_t kMaxTrailerBytes = 8192;

struct WRITEAPI_EXPORT Field {
  std::string_view name;   // as sent (a token)
  std::string_view value;  // without surrounding whitespace
};

enum class BodyFraming { none, length, chunked };

// A parsed request head. The views point into the buffer given to
// parse_head and are valid while it is.
struct WRITEAPI_EXPORT RequestHead {
  std::string_view method;
  std::string_view target;  // origin-form (absolute-form reduced to it) or "*"
  int minor_version = 1;    // HTTP/1.<minor_version>: 0 or 1
  std::vector<Field> fields;
  BodyFraming framing = BodyFraming::none;
  std::uint64_t content_length = 0;  // with BodyFraming::length
  bool keep_alive = true;            // after this request, by version and Connection
  bool expect_continue = false;      // "Expect: 100-continue" (HTTP/1.1 only)

  // First field named `name` (case-insensitive), or nullptr.
  const Field* find(std::string_view name) const;
  // Number of fields named `name`.
  std::size_t count(std::string_view name) const;
  bool has_body() const { return framing == BodyFraming::chunked || content_length > 0; }
};

// Outcome of parse_head. Every status but incomplete and complete is a
// refusal: answer it with its HTTP status and close the connection.
enum class HeadStatus {
  incomplete,          // need more bytes
  complete,            // *head filled, *head_bytes set
  bad_request,         // 400
  too_large,           // 431: head over max_head_bytes or a field line over its cap
  uri_too_long,        // 414
  not_implemented,     // 501: a transfer coding other than chunked, or a method
                       // other than GET HEAD POST PUT DELETE OPTIONS PATCH
  bad_version,         // 505: HTTP/x.y other than 1.0 and 1.1
  expectation_failed,  // 417: an Expect other than 100-continue
};

struct WRITEAPI_EXPORT HeadResult {
  HeadStatus status = HeadStatus::incomplete;
  std::size_t head_bytes = 0;  // with complete: bytes of the head incl. the empty line
  const char* reason = "";     // with a refusal: what was wrong, for the client
};

// Parses the request head at the start of `input` (after any empty lines
// a client sent between requests, which are skipped and counted in
// head_bytes). `scan_from` is where a previous incomplete call stopped
// looking for the end of the head (0 at first): only new bytes are
// scanned again. Returns incomplete while no empty line has arrived and
// the input is within max_head_bytes.
WRITEAPI_EXPORT HeadResult parse_head(std::string_view input, std::size_t max_head_bytes, RequestHead* head,
                                      std::size_t* scan_from);

// Decodes a chunked body incrementally and exactly. Feed it the bytes
// after the head as they arrive; data is appended to *out. Bounded: the
// size line, the trailers and the decoded body (max_body_bytes) all have
// caps.
class WRITEAPI_EXPORT ChunkedDecoder {
 public:
  enum class Status { more, done, bad, too_large };

  explicit ChunkedDecoder(std::uint64_t max_body_bytes) : max_body_(max_body_bytes) {}

  // Consumes from `input`; *consumed is how many bytes were used (with
  // done, the rest belongs to the next request). bad: the framing broke the
  // grammar (reason() says how); too_large: the body exceeds the cap.
  Status feed(std::string_view input, std::string* out, std::size_t* consumed);
  const char* reason() const { return reason_; }
  std::uint64_t body_bytes() const { return body_bytes_; }

 private:
  enum class State { size, size_lf, ext, data, data_cr, data_lf, trailer, trailer_lf, done };
  Status fail(const char* reason) {
    reason_ = reason;
    return Status::bad;
  }

  std::uint64_t max_body_;
  std::uint64_t body_bytes_ = 0;
  std::uint64_t chunk_left_ = 0;
  std::size_t line_bytes_ = 0;  // bytes of the current size line
  std::size_t size_digits_ = 0;
  std::size_t trailer_bytes_ = 0;  // bytes of the trailer section
  std::size_t trailer_line_ = 0;   // bytes of the current trailer line
  bool ext_quoted_ = false, ext_escape_ = false;
  bool trailer_colon_ = false;  // the current trailer line has its colon
  State state_ = State::size;
  const char* reason_ = "";
};

// Whether `c` may appear in a token (RFC 9110 tchar).
WRITEAPI_EXPORT bool is_token_char(unsigned char c);

// The answer to a refused head: its HTTP status and the error code clients
// see (bad_request, or not_implemented for a transfer coding or method the
// server does not know).
struct WRITEAPI_EXPORT HeadRefusal {
  int http_status = 400;
  std::string_view code = "bad_request";
};
WRITEAPI_EXPORT HeadRefusal refusal_of(HeadStatus status) noexcept;

}  // namespace writeapi::http1

#endif  // WRITEAPI_HTTP1_H_
