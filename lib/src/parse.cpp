// A validating JSON scanner that copies the items of "data" to JSON Lines
// while it checks them.
//
// Why not simdjson's DOM or On-Demand API directly: DOM builds a tape and
// converts every number (and rejects integers beyond 64 bits and exponents
// beyond double range, which the Write API must keep as written); On-Demand
// does not validate what it skips. Validation plus a copy needs neither a
// tape nor conversions, so one forward pass does it: simdjson checks UTF-8
// with SIMD over the whole body first, strings are scanned 16 bytes at a
// time, and items are copied in runs between whitespace (one memcpy per
// item for compact bodies).
#include "writeapi/parse.h"

#include <simdjson.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <forward_list>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace writeapi {
namespace {

inline bool is_ws(uint8_t c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }
inline bool is_digit(uint8_t c) { return static_cast<uint8_t>(c - '0') < 10; }

inline int hex_value(uint8_t c) {
  if (is_digit(c)) return c - '0';
  c |= 0x20;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

enum class Scan { ok, invalid_json, too_deep };

// How a scanned string ended: its raw bytes (without quotes) and whether
// they contain escapes.
struct StringSpan {
  const char* begin;
  const char* end;
  bool has_escapes;
};

class Scanner {
 public:
  Scanner(std::string_view body, std::size_t max_depth, std::string* out,
          std::vector<uint8_t>* stack)
      : p_(reinterpret_cast<const uint8_t*>(body.data())),
        end_(p_ + body.size()),
        max_depth_(max_depth),
        out_(out),
        stack_(*stack) {
    stack_.clear();
  }

  Status run(ParsedRequest* request);

 private:
  // Skips whitespace. While copying an item, whitespace splits the copy run.
  // The common case is a structural character right away: one compare.
  inline __attribute__((always_inline)) void skip_ws() {
    if (p_ < end_ && *p_ <= ' ' && is_ws(*p_)) skip_ws_slow();
  }
  void skip_ws_slow() {
    if (copying_) flush_run(p_);
    // Pretty-printed bodies indent with runs of spaces: skip 8 at a time.
    while (end_ - p_ >= 8) {
      uint64_t word;
      std::memcpy(&word, p_, 8);
      if (word != 0x2020202020202020ULL) break;
      p_ += 8;
    }
    while (p_ < end_ && is_ws(*p_)) ++p_;
    if (copying_) run_start_ = p_;
  }
  void flush_run(const uint8_t* until) {
    out_->append(reinterpret_cast<const char*>(run_start_), until - run_start_);
  }
  void begin_item() {
    copying_ = true;
    run_start_ = p_;
  }
  void end_item() {
    flush_run(p_);
    out_->push_back('\n');
    copying_ = false;
  }

  inline __attribute__((always_inline)) Scan scan_string(StringSpan* span);
  __attribute__((noinline)) Scan scan_escape();
  Scan scan_number();
  Scan scan_literal(const char* word, std::size_t length);
  // Scans one complete value (any depth) starting at p_. `depth` is the
  // nesting depth of the container holding it.
  Scan scan_value(std::size_t depth);
  Scan scan_data(std::size_t* items, bool* null_item);

  bool unescape(const StringSpan& span, std::string* out);

  const uint8_t* p_;
  const uint8_t* end_;
  std::size_t max_depth_;
  std::string* out_;
  bool copying_ = false;
  const uint8_t* run_start_ = nullptr;
  std::vector<uint8_t>& stack_;  // container kinds below the current value
};

Scan Scanner::scan_escape() {
  // p_ at the backslash.
  if (end_ - p_ < 2) return Scan::invalid_json;
  switch (p_[1]) {
    case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
      p_ += 2;
      return Scan::ok;
    case 'u':
      break;
    default:
      return Scan::invalid_json;
  }
  auto read_u = [&](const uint8_t* at, uint32_t* code) {
    if (end_ - at < 6 || at[0] != '\\' || at[1] != 'u') return false;
    uint32_t value = 0;
    for (int i = 2; i < 6; ++i) {
      int h = hex_value(at[i]);
      if (h < 0) return false;
      value = (value << 4) | static_cast<uint32_t>(h);
    }
    *code = value;
    return true;
  };
  uint32_t code;
  if (!read_u(p_, &code)) return Scan::invalid_json;
  p_ += 6;
  // Escaped surrogates must pair up, as simdjson (and I-JSON) require:
  // a lone half cannot become UTF-8 in any reader of the stored line.
  if (code >= 0xDC00 && code <= 0xDFFF) return Scan::invalid_json;
  if (code >= 0xD800 && code <= 0xDBFF) {
    uint32_t low;
    if (!read_u(p_, &low) || low < 0xDC00 || low > 0xDFFF) return Scan::invalid_json;
    p_ += 6;
  }
  return Scan::ok;
}

inline __attribute__((always_inline)) Scan Scanner::scan_string(StringSpan* span) {
  // p_ at the opening quote. UTF-8 was validated for the whole body, so
  // only quotes, backslashes and control characters matter here.
  ++p_;
  span->begin = reinterpret_cast<const char*>(p_);
  span->has_escapes = false;
  for (;;) {
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i backslash = _mm_set1_epi8('\\');
    const __m128i control_max = _mm_set1_epi8(0x1F);
    while (end_ - p_ >= 16) {
      __m128i chunk = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p_));
      __m128i special = _mm_or_si128(
          _mm_or_si128(_mm_cmpeq_epi8(chunk, quote), _mm_cmpeq_epi8(chunk, backslash)),
          _mm_cmpeq_epi8(_mm_max_epu8(chunk, control_max), control_max));
      unsigned mask = static_cast<unsigned>(_mm_movemask_epi8(special));
      if (mask != 0) {
        p_ += __builtin_ctz(mask);
        goto special_byte;
      }
      p_ += 16;
    }
#endif
    while (p_ < end_ && *p_ != '"' && *p_ != '\\' && *p_ >= 0x20) ++p_;
    if (p_ == end_) return Scan::invalid_json;  // unterminated
#if defined(__SSE2__)
  special_byte:
#endif
    uint8_t c = *p_;
    if (c == '"') {
      span->end = reinterpret_cast<const char*>(p_);
      ++p_;
      return Scan::ok;
    }
    if (c < 0x20) return Scan::invalid_json;  // raw control character
    span->has_escapes = true;
    if (Scan s = scan_escape(); s != Scan::ok) return s;
  }
}

Scan Scanner::scan_number() {
  const uint8_t* p = p_;
  if (p < end_ && *p == '-') ++p;
  if (p == end_) return Scan::invalid_json;
  if (*p == '0') {
    ++p;
  } else if (is_digit(*p)) {
    do ++p; while (p < end_ && is_digit(*p));
  } else {
    return Scan::invalid_json;
  }
  if (p < end_ && *p == '.') {
    ++p;
    if (p == end_ || !is_digit(*p)) return Scan::invalid_json;
    do ++p; while (p < end_ && is_digit(*p));
  }
  if (p < end_ && (*p == 'e' || *p == 'E')) {
    ++p;
    if (p < end_ && (*p == '+' || *p == '-')) ++p;
    if (p == end_ || !is_digit(*p)) return Scan::invalid_json;
    do ++p; while (p < end_ && is_digit(*p));
  }
  // What follows must be a delimiter; the caller checks it ("01", "1x").
  p_ = p;
  return Scan::ok;
}

Scan Scanner::scan_literal(const char* word, std::size_t length) {
  if (static_cast<std::size_t>(end_ - p_) < length || std::memcmp(p_, word, length) != 0)
    return Scan::invalid_json;
  p_ += length;
  return Scan::ok;
}

// Container kinds on stack_.
constexpr uint8_t kInObject = 1;
constexpr uint8_t kInArray = 2;

Scan Scanner::scan_value(std::size_t depth) {
  // Iterative, so hostile nesting costs one byte of stack_ per level, not a
  // stack frame. `base` is where this value's own containers start.
  const std::size_t base = stack_.size();
  StringSpan span;
  for (;;) {
    // Parse a value at p_ (whitespace already skipped).
    if (p_ == end_) return Scan::invalid_json;
    switch (*p_) {
      case '{':
        if (depth + (stack_.size() - base) + 1 > max_depth_) return Scan::too_deep;
        ++p_;
        skip_ws();
        if (p_ < end_ && *p_ == '}') {
          ++p_;
          break;
        }
        stack_.push_back(kInObject);
        goto object_key;
      case '[':
        if (depth + (stack_.size() - base) + 1 > max_depth_) return Scan::too_deep;
        ++p_;
        skip_ws();
        if (p_ < end_ && *p_ == ']') {
          ++p_;
          break;
        }
        stack_.push_back(kInArray);
        continue;  // first element
      case '"':
        if (Scan s = scan_string(&span); s != Scan::ok) return s;
        break;
      case 't':
        if (Scan s = scan_literal("true", 4); s != Scan::ok) return s;
        break;
      case 'f':
        if (Scan s = scan_literal("false", 5); s != Scan::ok) return s;
        break;
      case 'n':
        if (Scan s = scan_literal("null", 4); s != Scan::ok) return s;
        break;
      default:
        if (Scan s = scan_number(); s != Scan::ok) return s;
        break;
    }
    // After a complete value: close containers or move to the next member.
    for (;;) {
      if (stack_.size() == base) return Scan::ok;
      skip_ws();
      if (p_ == end_) return Scan::invalid_json;
      uint8_t c = *p_;
      if (stack_.back() == kInArray) {
        if (c == ',') {
          ++p_;
          skip_ws();
          goto next_value;
        }
        if (c != ']') return Scan::invalid_json;
      } else {
        if (c == ',') {
          ++p_;
          skip_ws();
          goto object_key;
        }
        if (c != '}') return Scan::invalid_json;
      }
      ++p_;
      stack_.pop_back();
    }
  object_key:
    if (p_ == end_ || *p_ != '"') return Scan::invalid_json;
    if (Scan s = scan_string(&span); s != Scan::ok) return s;
    skip_ws();
    if (p_ == end_ || *p_ != ':') return Scan::invalid_json;
    ++p_;
    skip_ws();
  next_value:;
  }
}

Scan Scanner::scan_data(std::size_t* items, bool* null_item) {
  // p_ at the value of "data". A top-level array is split into items.
  *items = 0;
  if (*p_ != '[') {
    if (*p_ == 'n') *null_item = true;
    begin_item();
    if (Scan s = scan_value(1); s != Scan::ok) return s;
    end_item();
    *items = 1;
    return Scan::ok;
  }
  if (2 > max_depth_) return Scan::too_deep;
  ++p_;
  skip_ws();
  if (p_ < end_ && *p_ == ']') {
    ++p_;
    return Scan::ok;
  }
  for (;;) {
    if (p_ < end_ && *p_ == 'n') *null_item = true;
    begin_item();
    if (Scan s = scan_value(2); s != Scan::ok) return s;
    end_item();
    ++*items;
    skip_ws();
    if (p_ == end_) return Scan::invalid_json;
    if (*p_ == ']') {
      ++p_;
      return Scan::ok;
    }
    if (*p_ != ',') return Scan::invalid_json;
    ++p_;
    skip_ws();
  }
}

bool Scanner::unescape(const StringSpan& span, std::string* out) {
  out->clear();
  const char* p = span.begin;
  if (!span.has_escapes) {
    out->assign(p, span.end);
    return true;
  }
  while (p < span.end) {
    if (*p != '\\') {
      out->push_back(*p++);
      continue;
    }
    char e = p[1];
    p += 2;
    switch (e) {
      case 'b': out->push_back('\b'); break;
      case 'f': out->push_back('\f'); break;
      case 'n': out->push_back('\n'); break;
      case 'r': out->push_back('\r'); break;
      case 't': out->push_back('\t'); break;
      case 'u': {
        auto hex4 = [](const char* at) {
          uint32_t v = 0;
          for (int i = 0; i < 4; ++i) v = (v << 4) | static_cast<uint32_t>(hex_value(at[i]));
          return v;
        };
        uint32_t code = hex4(p);
        p += 4;
        if (code >= 0xD800 && code <= 0xDBFF) {  // validated: a pair follows
          uint32_t low = hex4(p + 2);
          p += 6;
          code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
        }
        if (code < 0x80) {
          out->push_back(static_cast<char>(code));
        } else if (code < 0x800) {
          out->push_back(static_cast<char>(0xC0 | (code >> 6)));
          out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
        } else if (code < 0x10000) {
          out->push_back(static_cast<char>(0xE0 | (code >> 12)));
          out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
          out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
        } else {
          out->push_back(static_cast<char>(0xF0 | (code >> 18)));
          out->push_back(static_cast<char>(0x80 | ((code >> 12) & 0x3F)));
          out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
          out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
        }
        break;
      }
      default:  // '"', '\\', '/'
        out->push_back(e);
    }
  }
  return true;
}

// True when a device ID has a control character (C0, DEL or C1). The
// string is valid UTF-8, so C1 controls appear as 0xC2 0x80..0x9F.
bool has_control_characters(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<uint8_t>(s[i]);
    if (c < 0x20 || c == 0x7F) return true;
    if (c == 0xC2 && i + 1 < s.size() && static_cast<uint8_t>(s[i + 1]) < 0xA0) return true;
  }
  return false;
}

Status scan_error(Scan s) {
  if (s == Scan::too_deep)
    return Status(ErrorCode::too_deep, "JSON nesting is too deep; flatten the data");
  return Status(ErrorCode::invalid_json, "the request body is not valid JSON");
}

// Top-level fields the body may carry.
enum class Field { access_key, device_id, data, other };

Field classify(std::string_view name) {
  if (name == "accessKey") return Field::access_key;
  if (name == "deviceId") return Field::device_id;
  if (name == "data") return Field::data;
  return Field::other;
}

// Remembers top-level field names to find duplicates. Bodies normally carry
// two or three fields; a set takes over for hostile ones with thousands.
class FieldNames {
 public:
  // Returns false when `name` was seen before.
  bool insert(std::string_view name) {
    if (set_.empty()) {
      for (std::size_t i = 0; i < small_count_; ++i)
        if (small_[i] == name) return false;
      if (small_count_ < small_.size()) {
        small_[small_count_++] = name;
        return true;
      }
      set_.insert(small_.begin(), small_.end());
    }
    return set_.insert(name).second;
  }
  // Storage for unescaped names, which string_views then point into.
  std::string_view keep(std::string name) {
    owned_.push_front(std::move(name));
    return owned_.front();
  }

 private:
  std::array<std::string_view, 16> small_;
  std::size_t small_count_ = 0;
  std::unordered_set<std::string_view> set_;
  // A forward_list never moves its elements and, unlike std::deque, costs
  // no allocation while empty (the usual case: no escaped field names).
  std::forward_list<std::string> owned_;
};

Status Scanner::run(ParsedRequest* request) {
  // Leading UTF-8 byte order mark: RFC 8259 lets parsers ignore it.
  if (end_ - p_ >= 3 && p_[0] == 0xEF && p_[1] == 0xBB && p_[2] == 0xBF) p_ += 3;
  skip_ws();
  if (p_ == end_) return Status(ErrorCode::invalid_json, "the request body is empty; send a JSON object");

  if (*p_ != '{') {
    // Syntax errors take precedence over the wrong shape.
    if (Scan s = scan_value(0); s != Scan::ok) return scan_error(s);
    skip_ws();
    if (p_ != end_) return scan_error(Scan::invalid_json);
    return Status(ErrorCode::not_an_object,
                  "the request body must be a JSON object with accessKey and data");
  }
  if (max_depth_ < 1) return scan_error(Scan::too_deep);  // the object itself is depth 1
  ++p_;
  skip_ws();

  // Semantic problems are remembered, not returned, until the whole body
  // is known to be valid JSON.
  Status problem;
  auto note = [&problem](ErrorCode code, const char* message) {
    if (problem.ok()) problem = Status(code, message);
  };
  bool seen_access_key = false, seen_data = false;
  FieldNames names;
  std::string scratch;
  StringSpan span;

  if (p_ < end_ && *p_ == '}') {
    ++p_;
  } else {
    for (;;) {
      if (p_ == end_ || *p_ != '"') return scan_error(Scan::invalid_json);
      if (Scan s = scan_string(&span); s != Scan::ok) return scan_error(s);
      std::string_view name(span.begin, span.end - span.begin);
      if (span.has_escapes) {
        unescape(span, &scratch);
        name = names.keep(scratch);
      }
      skip_ws();
      if (p_ == end_ || *p_ != ':') return scan_error(Scan::invalid_json);
      ++p_;
      skip_ws();
      if (p_ == end_) return scan_error(Scan::invalid_json);

      if (!names.insert(name))
        note(ErrorCode::duplicate_field, "a top-level field appears twice; send each field once");
      switch (classify(name)) {
        case Field::access_key:
          seen_access_key = true;
          if (*p_ == '"') {
            if (Scan s = scan_string(&span); s != Scan::ok) return scan_error(s);
            unescape(span, &request->access_key);
          } else {
            if (Scan s = scan_value(1); s != Scan::ok) return scan_error(s);
            note(ErrorCode::invalid_field, "accessKey must be a string");
          }
          break;
        case Field::device_id:
          if (*p_ == '"') {
            if (Scan s = scan_string(&span); s != Scan::ok) return scan_error(s);
            request->has_device_id = true;
            unescape(span, &request->device_id);
            if (request->device_id.empty() || request->device_id.size() > kMaxDeviceIdBytes ||
                has_control_characters(request->device_id))
              note(ErrorCode::invalid_device_id,
                   "deviceId must be a non-empty string of at most 256 bytes without control characters");
          } else {
            if (Scan s = scan_value(1); s != Scan::ok) return scan_error(s);
            note(ErrorCode::invalid_field, "deviceId must be a string");
          }
          break;
        case Field::data: {
          seen_data = true;
          bool null_item = false;
          std::size_t items = 0;
          if (Scan s = scan_data(&items, &null_item); s != Scan::ok) return scan_error(s);
          request->item_count += items;
          if (null_item) note(ErrorCode::null_data, "data must not be null, nor hold null items");
          break;
        }
        case Field::other:
          if (Scan s = scan_value(1); s != Scan::ok) return scan_error(s);
          break;
      }
      skip_ws();
      if (p_ == end_) return scan_error(Scan::invalid_json);
      if (*p_ == '}') {
        ++p_;
        break;
      }
      if (*p_ != ',') return scan_error(Scan::invalid_json);
      ++p_;
      skip_ws();
    }
  }
  skip_ws();
  if (p_ != end_) return Status(ErrorCode::invalid_json, "unexpected content after the JSON object");

  if (!problem.ok()) return problem;
  if (!seen_data) return Status(ErrorCode::missing_field, "the body has no data field; send \"data\": value");
  if (!seen_access_key || request->access_key.empty())
    return Status(ErrorCode::missing_access_key, "the body has no accessKey; send \"accessKey\": \"<your key>\"");
  return Status();
}

// True for a short all-ASCII body (ASCII is valid UTF-8). For the typical
// small device request this word-at-a-time check costs less than the setup
// of simdjson's vectorised validator; larger or non-ASCII bodies go there.
bool is_ascii_small(std::string_view body) {
  if (body.size() > 1024) return false;
  uint64_t high_bits = 0;
  std::size_t i = 0;
  for (; i + 8 <= body.size(); i += 8) {
    uint64_t word;
    std::memcpy(&word, body.data() + i, 8);
    high_bits |= word;
  }
  for (; i < body.size(); ++i) high_bits |= static_cast<uint8_t>(body[i]);
  return (high_bits & 0x8080808080808080ULL) == 0;
}

}  // namespace

Status parse(std::string_view body, ParsedRequest* out, const ParseOptions& options) {
  out->clear();
  if (!is_ascii_small(body) && !simdjson::validate_utf8(body.data(), body.size()))
    return Status(ErrorCode::invalid_utf8, "the request body is not valid UTF-8");
  // Lines are never longer than the body plus one newline; reserving once
  // keeps the copy loop free of reallocation.
  out->lines.reserve(body.size() + 1);
  // The container stack is reused per thread: no allocation per request.
  thread_local std::vector<uint8_t> stack;
  Scanner scanner(body, options.max_depth, &out->lines, &stack);
  Status status = scanner.run(out);
  if (!status.ok()) {
    out->lines.clear();
    out->item_count = 0;
    out->access_key.clear();
  }
  return status;
}

}  // namespace writeapi
