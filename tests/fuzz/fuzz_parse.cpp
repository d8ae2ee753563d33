// fuzz_parse: writeapi::parse against simdjson's DOM parser and a reference
// model of the body contract (lib/include/writeapi/parse.h).
//
// The oracle, for every input:
//   - invalid_utf8 exactly when an independent UTF-8 check fails.
//   - Syntax: parse rejects as invalid_json/too_deep exactly what simdjson's
//     DOM parser (with a depth limit far above ours) rejects, with two
//     documented differences handled here: a leading UTF-8 BOM is ignored
//     by parse (simdjson leaves it to the caller), and numbers outside
//     double range (big integers, 1e400) are valid for us while simdjson
//     fails them with NUMBER_ERROR: such bodies are checked again with every
//     number that matches the JSON number grammar (an independent POSIX
//     regex) replaced by 0.
//   - too_deep exactly when the nesting exceeds max_depth.
//   - For valid JSON, the error code (or ok) is the one a reference model
//     built on the simdjson DOM predicts, in the documented precedence.
//   - On ok: access key and deviceId as the DOM has them; one line per item,
//     each line free of raw control characters, valid JSON for simdjson's
//     DOM parser at its default depth limit (so readers can read it back),
//     equal to the DOM's item, and byte for byte the item's text from the
//     body minus whitespace outside strings (an independent minifier).
//   - A smaller max_depth changes the answer only to too_deep.
//   - parse()'s two walks (lib/src/parse_walk.h), each forced, give the
//     same answer as the one parse() picks: every field, every line.
#include <regex.h>
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "oracle.h"
#include "parse_walk.h"
#include "writeapi/parse.h"

#define EXPECT(condition, detail) WRITEAPI_FUZZ_EXPECT("fuzz_parse", condition, detail)

namespace {

using writeapi::ErrorCode;
using writeapi::ParsedRequest;
using writeapi::ParseOptions;
using writeapi::Status;
using writeapi::fuzz::escaped;

constexpr std::size_t kMaxInput = 1 << 20;
const std::size_t kDefaultDepth = ParseOptions().max_depth;

std::string name(ErrorCode code) { return std::string(writeapi::error_name(code)); }

// --- Independent checks -----------------------------------------------------

// RFC 3629 UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
bool utf8_valid(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<uint8_t>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t length;
    uint8_t low = 0x80, high = 0xBF;  // range of the second byte
    if (c >= 0xC2 && c <= 0xDF) {
      length = 2;
    } else if (c == 0xE0) {
      length = 3, low = 0xA0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
      length = 3;
    } else if (c == 0xED) {
      length = 3, high = 0x9F;
    } else if (c == 0xF0) {
      length = 4, low = 0x90;
    } else if (c >= 0xF1 && c <= 0xF3) {
      length = 4;
    } else if (c == 0xF4) {
      length = 4, high = 0x8F;
    } else {
      return false;
    }
    if (s.size() - i < length) return false;
    auto second = static_cast<uint8_t>(s[i + 1]);
    if (second < low || second > high) return false;
    for (std::size_t k = 2; k < length; ++k) {
      auto next = static_cast<uint8_t>(s[i + k]);
      if (next < 0x80 || next > 0xBF) return false;
    }
    i += length;
  }
  return true;
}

bool is_json_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Deepest bracket nesting outside strings. Exact for valid JSON, and for
// any prefix parse validated before it answered too_deep.
std::size_t max_nesting(std::string_view s) {
  std::size_t depth = 0, deepest = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > deepest) deepest = depth;
    } else if ((c == '}' || c == ']') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

// Removes whitespace outside strings; everything else is kept.
std::string minify_text(std::string_view s) {
  std::string out;
  bool in_string = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (in_string) {
      out.push_back(c);
      if (c == '\\' && i + 1 < s.size()) {
        out.push_back(s[++i]);
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') in_string = true;
    if (!is_json_ws(c)) out.push_back(c);
  }
  return out;
}

// The JSON number grammar (RFC 8259 section 6), as a POSIX regex.
bool is_json_number(const std::string& token) {
  static regex_t number = [] {
    regex_t r;
    if (regcomp(&r, "^-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?$", REG_EXTENDED | REG_NOSUB) != 0) std::abort();
    return r;
  }();
  return regexec(&number, token.c_str(), 0, nullptr, 0) == 0;
}

// Replaces every number token (outside strings) that matches the grammar
// with 0; other tokens are left alone so that they still fail.
std::string neutralize_numbers(std::string_view s) {
  std::string out;
  bool in_string = false;
  for (std::size_t i = 0; i < s.size();) {
    char c = s[i];
    if (in_string) {
      out.push_back(c);
      if (c == '\\' && i + 1 < s.size()) {
        out.push_back(s[i + 1]);
        i += 2;
        continue;
      }
      if (c == '"') in_string = false;
      ++i;
      continue;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      std::size_t j = i;
      while (j < s.size() && std::strchr("0123456789+-.eE", s[j]) != nullptr && s[j] != '\0') ++j;
      std::string token(s.substr(i, j - i));
      out += is_json_number(token) ? std::string("0") : token;
      i = j;
      continue;
    }
    if (c == '"') in_string = true;
    out.push_back(c);
    ++i;
  }
  return out;
}

// --- Raw spans of a valid JSON text (for byte-exact comparisons) ---------

std::size_t skip_ws(std::string_view s, std::size_t i) {
  while (i < s.size() && is_json_ws(s[i])) ++i;
  return i;
}

std::size_t string_end(std::string_view s, std::size_t i) {  // s[i] == '"'
  for (++i; i < s.size() && s[i] != '"'; ++i)
    if (s[i] == '\\') ++i;
  return i + 1;
}

std::size_t value_end(std::string_view s, std::size_t i) {
  if (s[i] == '"') return string_end(s, i);
  if (s[i] == '{' || s[i] == '[') {
    std::size_t depth = 0;
    for (; i < s.size(); ++i) {
      char c = s[i];
      if (c == '"') {
        i = string_end(s, i) - 1;
      } else if (c == '{' || c == '[') {
        ++depth;
      } else if ((c == '}' || c == ']') && --depth == 0) {
        return i + 1;
      }
    }
    return i;
  }
  while (i < s.size() && std::strchr(",]} \t\r\n", s[i]) == nullptr) ++i;
  return i;
}

struct Member {
  std::string_view raw_key;  // with quotes, escapes as written
  std::string_view value;
};

// Members of the top-level object of a valid JSON text, in order.
std::vector<Member> top_level_members(std::string_view s) {
  std::vector<Member> members;
  std::size_t i = skip_ws(s, 0);
  if (i >= s.size() || s[i] != '{') return members;
  i = skip_ws(s, i + 1);
  while (i < s.size() && s[i] == '"') {
    std::size_t key_end = string_end(s, i);
    Member m;
    m.raw_key = s.substr(i, key_end - i);
    i = skip_ws(s, skip_ws(s, key_end) + 1);  // past ':'
    std::size_t end = value_end(s, i);
    m.value = s.substr(i, end - i);
    members.push_back(m);
    i = skip_ws(s, end);
    if (i < s.size() && s[i] == ',') i = skip_ws(s, i + 1);
  }
  return members;
}

// Elements of a valid JSON array text.
std::vector<std::string_view> array_elements(std::string_view s) {
  std::vector<std::string_view> elements;
  std::size_t i = skip_ws(s, 1);
  while (i < s.size() && s[i] != ']') {
    std::size_t end = value_end(s, i);
    elements.push_back(s.substr(i, end - i));
    i = skip_ws(s, end);
    if (i < s.size() && s[i] == ',') i = skip_ws(s, i + 1);
  }
  return elements;
}

// --- simdjson ------------------------------------------------------------

// A DOM parser whose depth limit never binds (depth <= input size).
simdjson::dom::parser& deep_parser() {
  static simdjson::dom::parser parser = [] {
    simdjson::dom::parser p;
    if (p.allocate(4096, kMaxInput + 8) != simdjson::SUCCESS) std::abort();
    return p;
  }();
  return parser;
}

// simdjson's default limits: what a reader of a stored line uses.
simdjson::dom::parser& default_parser() {
  static simdjson::dom::parser parser;
  return parser;
}

simdjson::dom::parser& scratch_parser() {
  static simdjson::dom::parser parser;
  return parser;
}

std::string unescape_key(std::string_view raw_key) {
  simdjson::padded_string padded(raw_key);
  std::string_view value;
  simdjson::error_code e = scratch_parser().parse(padded).get_string().get(value);
  EXPECT(e == simdjson::SUCCESS, "key " + escaped(raw_key) + ": " + simdjson::error_message(e));
  return std::string(value);
}

// --- Reference model of parse() on a valid JSON body ----------------------

bool has_control_character(std::string_view utf8) {
  for (std::size_t i = 0; i < utf8.size();) {
    auto c = static_cast<uint8_t>(utf8[i]);
    uint32_t code;
    std::size_t length;
    if (c < 0x80)
      code = c, length = 1;
    else if (c < 0xE0)
      code = c & 0x1F, length = 2;
    else if (c < 0xF0)
      code = c & 0x0F, length = 3;
    else
      code = c & 0x07, length = 4;
    for (std::size_t k = 1; k < length && i + k < utf8.size(); ++k)
      code = (code << 6) | (static_cast<uint8_t>(utf8[i + k]) & 0x3F);
    if (code < 0x20 || (code >= 0x7F && code <= 0x9F)) return true;
    i += length;
  }
  return false;
}

struct Expected {
  ErrorCode code = ErrorCode::ok;
  std::string access_key;
  bool has_device_id = false;
  std::string device_id;
  std::vector<std::string> items;  // simdjson::minify of each item's DOM
};

Expected reference(simdjson::dom::element root) {
  Expected e;
  simdjson::dom::object object;
  if (root.get_object().get(object) != simdjson::SUCCESS) {
    e.code = ErrorCode::not_an_object;
    return e;
  }
  ErrorCode problem = ErrorCode::ok;
  auto note = [&](ErrorCode code) {
    if (problem == ErrorCode::ok) problem = code;
  };
  std::unordered_set<std::string> seen;
  bool seen_access_key = false, seen_data = false;
  for (simdjson::dom::key_value_pair field : object) {
    std::string key(field.key);
    if (!seen.insert(key).second) note(ErrorCode::duplicate_field);
    simdjson::dom::element value = field.value;
    if (key == "accessKey") {
      seen_access_key = true;
      std::string_view text;
      if (value.get_string().get(text) == simdjson::SUCCESS)
        e.access_key = std::string(text);
      else
        note(ErrorCode::invalid_field);
    } else if (key == "deviceId") {
      std::string_view text;
      if (value.get_string().get(text) == simdjson::SUCCESS) {
        e.has_device_id = true;
        e.device_id = std::string(text);
        if (text.empty() || text.size() > writeapi::kMaxDeviceIdBytes || has_control_character(text))
          note(ErrorCode::invalid_device_id);
      } else {
        note(ErrorCode::invalid_field);
      }
    } else if (key == "requestId") {
      // 1 to kMaxRequestIdBytes of printable ASCII once unescaped; any
      // other value (also not a string) is invalid_request_id.
      std::string_view text;
      bool valid = value.get_string().get(text) == simdjson::SUCCESS && !text.empty() &&
                   text.size() <= writeapi::kMaxRequestIdBytes;
      for (char c : text) valid = valid && c >= 0x20 && c <= 0x7e;
      if (!valid) note(ErrorCode::invalid_request_id);
    } else if (key == "data") {
      seen_data = true;
      bool null_item = value.is_null();
      simdjson::dom::array array;
      if (value.get_array().get(array) == simdjson::SUCCESS) {
        for (simdjson::dom::element item : array) {
          if (item.is_null()) null_item = true;
          e.items.push_back(simdjson::minify(item));
        }
      } else {
        e.items.push_back(simdjson::minify(value));
      }
      if (null_item) note(ErrorCode::null_data);
    }
  }
  if (problem != ErrorCode::ok)
    e.code = problem;
  else if (!seen_data)
    e.code = ErrorCode::missing_field;
  else if (!seen_access_key || e.access_key.empty())
    e.code = ErrorCode::missing_access_key;
  return e;
}

std::vector<std::string_view> split_lines(std::string_view lines) {
  std::vector<std::string_view> result;
  while (!lines.empty()) {
    std::size_t nl = lines.find('\n');
    if (nl == std::string_view::npos) nl = lines.size();
    result.push_back(lines.substr(0, nl));
    lines.remove_prefix(std::min(nl + 1, lines.size()));
  }
  return result;
}

// The checks on an accepted body. `json` is the body without a BOM;
// `neutralized` tells whether the DOM came from neutralize_numbers(json).
void check_accepted(std::string_view json, const ParsedRequest& out, const Expected& expected, bool neutralized,
                    const std::string& context) {
  EXPECT(out.access_key == expected.access_key, context + "access key " + escaped(out.access_key));
  EXPECT(out.has_device_id == expected.has_device_id, context);
  EXPECT(out.device_id == expected.device_id, context + "device id " + escaped(out.device_id));
  EXPECT(out.item_count == expected.items.size(), context + "item_count " + std::to_string(out.item_count) +
                                                      ", simdjson sees " + std::to_string(expected.items.size()));
  EXPECT(out.lines.empty() || out.lines.back() == '\n', context + "lines " + escaped(out.lines));

  std::vector<std::string_view> lines = split_lines(out.lines);
  EXPECT(lines.size() == out.item_count,
         context + std::to_string(lines.size()) + " lines for " + std::to_string(out.item_count) + " items");

  // Byte-exact: the raw text of each item minus whitespace outside strings.
  std::vector<std::string_view> raw_items;
  for (const Member& m : top_level_members(json)) {
    if (unescape_key(m.raw_key) != "data") continue;
    if (m.value.front() == '[')
      raw_items = array_elements(m.value);
    else
      raw_items.push_back(m.value);
  }
  EXPECT(raw_items.size() == lines.size(), context + "raw items " + std::to_string(raw_items.size()));

  for (std::size_t i = 0; i < lines.size(); ++i) {
    std::string_view line = lines[i];
    std::string where = context + "line " + std::to_string(i) + ": " + escaped(line) + "\n";
    for (char c : line) EXPECT(static_cast<uint8_t>(c) >= 0x20, where + "raw control character in a line");
    std::string want = minify_text(raw_items[i]);
    EXPECT(line == want, where + "expected (item minus whitespace): " + escaped(want));

    // Valid JSON on its own, readable at simdjson's default depth limit,
    // and the same value as the item in the body.
    simdjson::padded_string padded(neutralized ? neutralize_numbers(line) : std::string(line));
    simdjson::dom::element element;
    simdjson::error_code e = default_parser().parse(padded).get(element);
    EXPECT(e == simdjson::SUCCESS, where + "simdjson rejects the line: " + simdjson::error_message(e));
    std::string value = simdjson::minify(element);
    EXPECT(value == expected.items[i],
           where + "simdjson reads " + escaped(value) + "\nbut the body's item is " + escaped(expected.items[i]));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size > kMaxInput) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  const std::string context = "body: " + escaped(body) + "\n";

  ParsedRequest out;
  const Status status = writeapi::parse(body, &out);
  const ErrorCode code = status.code();
  const std::string verdict = context + "parse: " + name(code) + " (" + status.message() + ")\n";
  if (!status.ok()) {
    // Nothing of a refused body survives, in particular not its access key.
    EXPECT(out.lines.empty() && out.item_count == 0 && out.access_key.empty(), verdict);
  }

  // UTF-8 is checked before anything else.
  const bool utf8 = utf8_valid(body);
  EXPECT((code == ErrorCode::invalid_utf8) == !utf8, verdict + "independent UTF-8 check: " + std::to_string(utf8));

  // A leading BOM is ignored by contract; simdjson leaves it to the caller.
  std::string_view json = body;
  if (json.size() >= 3 && json.substr(0, 3) == "\xEF\xBB\xBF") json.remove_prefix(3);

  simdjson::dom::element root;
  simdjson::padded_string padded(json);
  simdjson::error_code simd_error = deep_parser().parse(padded).get(root);
  bool neutralized = false;
  std::string neutral;
  if (simd_error == simdjson::NUMBER_ERROR) {
    // Maybe only numbers out of double range: valid for us.
    neutral = neutralize_numbers(json);
    simdjson::padded_string padded_neutral(neutral);
    simd_error = deep_parser().parse(padded_neutral).get(root);
    neutralized = true;
  }
  const bool valid = simd_error == simdjson::SUCCESS;
  const std::size_t depth = max_nesting(json);
  const std::string both = verdict + "simdjson: " + simdjson::error_message(simd_error) +
                           (neutralized ? " (numbers neutralized)" : "") + "; nesting " + std::to_string(depth) + "\n";

  if (!utf8) {
    EXPECT(!valid, both);
    return 0;
  }
  if (code == ErrorCode::too_deep) EXPECT(depth > kDefaultDepth, both);
  if (!valid) {
    // Never more lenient than simdjson.
    EXPECT(code == ErrorCode::invalid_json || code == ErrorCode::too_deep, both);
  } else if (depth > kDefaultDepth) {
    EXPECT(code == ErrorCode::too_deep, both);
  } else {
    // Never stricter than simdjson, and the right answer for the shape.
    Expected expected = reference(root);
    EXPECT(code == expected.code, both + "reference model: " + name(expected.code));
    if (status.ok()) check_accepted(json, out, expected, neutralized, both);
  }

  // A smaller depth limit only ever turns the answer into too_deep.
  ParseOptions shallow;
  shallow.max_depth = (size * 31 + (size ? data[size / 2] : 0)) % 9;  // 0..8
  ParsedRequest out_shallow;
  const Status status_shallow = writeapi::parse(body, &out_shallow, shallow);
  const std::string shallow_context =
      both + "with max_depth " + std::to_string(shallow.max_depth) + ": " + name(status_shallow.code()) + "\n";
  if (status_shallow.code() == ErrorCode::too_deep) {
    EXPECT(depth > shallow.max_depth, shallow_context);
    EXPECT(code != ErrorCode::invalid_utf8, shallow_context);
  } else {
    EXPECT(status_shallow.code() == code, shallow_context);
    EXPECT(depth <= shallow.max_depth || !valid, shallow_context);
    if (status.ok()) {
      EXPECT(out_shallow.lines == out.lines && out_shallow.item_count == out.item_count, shallow_context);
    }
  }

  // Each walk, forced, gives the answer parse() gave with the one it picked.
  using writeapi::internal::ParseWalk;
  for (ParseWalk walk :
       {ParseWalk::forward, ParseWalk::indexed, ParseWalk::indexed_baseline, ParseWalk::indexed_compressed}) {
    writeapi::internal::set_parse_walk(walk);
    ParsedRequest forced;
    const Status status_forced = writeapi::parse(body, &forced);
    writeapi::internal::set_parse_walk(ParseWalk::automatic);
    const char* walk_name = walk == ParseWalk::forward            ? "forward"
                            : walk == ParseWalk::indexed          ? "indexed"
                            : walk == ParseWalk::indexed_baseline ? "indexed_baseline"
                                                                  : "indexed_compressed";
    const std::string forced_context = verdict + walk_name + " walk: " + name(status_forced.code()) + "\n";
    EXPECT(status_forced.code() == code, forced_context);
    EXPECT(forced.lines == out.lines && forced.item_count == out.item_count && forced.access_key == out.access_key,
           forced_context);
    EXPECT(forced.has_device_id == out.has_device_id && forced.device_id == out.device_id &&
               forced.has_request_id == out.has_request_id && forced.request_id == out.request_id,
           forced_context);
  }
  return 0;
}
