// The JSON Lines writeapi::parse must produce for a body, computed by a
// route that shares nothing with it, for the benchmarks' output checks:
//   1. simdjson's DOM parser validates the body and says whether "data" is
//      an array and how many items it holds;
//   2. simdjson's text minifier (which removes whitespace outside strings
//      and changes no other byte) minifies the whole body;
//   3. a bracket scan of the minified text finds "data" among the top-level
//      members and splits it into items.
// So each expected line is the item as the client wrote it, minus the
// whitespace outside its strings: numbers and escapes are not rewritten.
//
// Header-only and used by parse_benchmark and writeapi-parse-bench alike.
#ifndef WRITEAPI_BENCHMARKS_REFERENCE_LINES_H_
#define WRITEAPI_BENCHMARKS_REFERENCE_LINES_H_

#include <simdjson.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace writeapi_bench {

// End of the string whose opening quote is at s[i]: the index after its
// closing quote.
inline std::size_t string_end(std::string_view s, std::size_t i) {
  for (++i; i < s.size() && s[i] != '"'; ++i)
    if (s[i] == '\\') ++i;
  return i + 1;
}

// End of the value starting at s[i] in minified JSON text.
inline std::size_t value_end(std::string_view s, std::size_t i) {
  if (s[i] == '"') return string_end(s, i);
  if (s[i] != '{' && s[i] != '[') {
    while (i < s.size() && s[i] != ',' && s[i] != ']' && s[i] != '}') ++i;
    return i;
  }
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

// Sets `*lines` to the expected output and `*items` to the item count.
// Returns false, with a reason in `*error`, when simdjson rejects the body or
// its shape is not a Write API body (no object, no "data").
inline bool reference_lines(std::string_view body, std::string* lines, std::size_t* items, std::string* error) {
  lines->clear();
  *items = 0;
  // A leading byte order mark is ignored by writeapi::parse.
  if (body.size() >= 3 && body.substr(0, 3) == "\xEF\xBB\xBF") body.remove_prefix(3);
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  simdjson::padded_string padded(body);
  if (auto e = parser.parse(padded).get(root); e != simdjson::SUCCESS) {
    *error = std::string("simdjson rejects the body: ") + simdjson::error_message(e);
    return false;
  }
  simdjson::dom::element data;
  if (root["data"].get(data) != simdjson::SUCCESS) {
    *error = "the body has no \"data\"";
    return false;
  }
  std::unique_ptr<char[]> buffer(new char[body.size() + simdjson::SIMDJSON_PADDING]);
  std::size_t length = 0;
  if (simdjson::minify(body.data(), body.size(), buffer.get(), length) != simdjson::SUCCESS) {
    *error = "simdjson::minify failed";
    return false;
  }
  std::string_view text(buffer.get(), length);
  // Top-level members of the minified object.
  std::size_t i = 1;
  std::string_view data_text;
  while (i < text.size() && text[i] == '"') {
    std::size_t key_end = string_end(text, i);
    std::string_view raw_key = text.substr(i, key_end - i);
    std::size_t value_begin = key_end + 1;  // past ':'
    std::size_t end = value_end(text, value_begin);
    simdjson::dom::parser key_parser;
    std::string_view key;
    if (key_parser.parse(simdjson::padded_string(raw_key)).get_string().get(key) == simdjson::SUCCESS &&
        key == "data") {
      data_text = text.substr(value_begin, end - value_begin);
    }
    i = end + 1;  // past ',' or the closing brace
  }
  if (data_text.empty()) {
    *error = "no \"data\" in the minified body";
    return false;
  }
  if (!data.is_array()) {
    lines->append(data_text).push_back('\n');
    *items = 1;
    return true;
  }
  for (std::size_t j = 1; j < data_text.size() && data_text[j] != ']';) {
    std::size_t end = value_end(data_text, j);
    lines->append(data_text.substr(j, end - j)).push_back('\n');
    ++*items;
    j = end + (end < data_text.size() && data_text[end] == ',');
  }
  if (*items != data.get_array().size()) {
    *error = "the bracket scan and simdjson disagree on the item count";
    return false;
  }
  return true;
}

}  // namespace writeapi_bench

#endif  // WRITEAPI_BENCHMARKS_REFERENCE_LINES_H_
