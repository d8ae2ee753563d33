#include "writeapi/read.h"

#include <string>

#include "writeapi/names.h"

namespace writeapi {
namespace {

Status bad(std::string_view message) { return Status(ErrorCode::invalid_parameter, std::string(message)); }

// A whole number from `low` to `high`, digits only.
bool parse_number(std::string_view text, std::size_t low, std::size_t high, std::size_t* value) {
  if (text.empty() || text.size() > 9) return false;
  std::size_t n = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<std::size_t>(c - '0');
  }
  if (n < low || n > high) return false;
  *value = n;
  return true;
}

bool is_cursor_byte(char c) {
  return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == '-';
}

}  // namespace

Status parse_read_query(std::string_view query, const ReadLimits& limits, ReadQuery* out) {
  *out = ReadQuery();
  out->limit = limits.default_lines;
  bool seen_cursor = false, seen_limit = false, seen_tail = false, seen_wait = false;
  while (!query.empty()) {
    std::size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query.remove_prefix(amp == std::string_view::npos ? query.size() : amp + 1);
    if (pair.empty()) continue;
    std::size_t eq = pair.find('=');
    std::string_view name = pair.substr(0, eq);
    std::string_view value = eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    auto once = [&](bool* seen) {
      if (*seen) return false;
      *seen = true;
      return true;
    };
    if (name == "cursor") {
      if (!once(&seen_cursor)) return bad("send cursor at most once");
      if (value.size() > limits.max_cursor_bytes) return bad("cursor is too long: send back an X-Next-Cursor value");
      for (char c : value)
        if (!is_cursor_byte(c)) return bad("cursor is malformed: send back an X-Next-Cursor value");
      out->cursor = std::string(value);
    } else if (name == "limit") {
      if (!once(&seen_limit)) return bad("send limit at most once");
      if (!parse_number(value, 1, limits.max_lines, &out->limit))
        return bad("limit must be a whole number from 1 to " + std::to_string(limits.max_lines));
    } else if (name == "tail") {
      if (!once(&seen_tail)) return bad("send tail at most once");
      if (!parse_number(value, 1, limits.max_lines, &out->tail))
        return bad("tail must be a whole number from 1 to " + std::to_string(limits.max_lines));
    } else if (name == "wait") {
      if (!once(&seen_wait)) return bad("send wait at most once");
      std::size_t seconds = 0;
      if (!parse_number(value, 0, static_cast<std::size_t>(limits.max_wait_seconds), &seconds))
        return bad("wait must be a whole number of seconds from 0 to " + std::to_string(limits.max_wait_seconds));
      out->wait_seconds = static_cast<int>(seconds);
    } else {
      return bad("unknown query parameter: use cursor, limit, tail or wait");
    }
  }
  if (seen_tail && (seen_cursor || seen_wait || seen_limit))
    return bad("tail cannot be combined with cursor, limit or wait");
  return Status();
}

Status bearer_access_key(std::string_view authorization, std::string* key) {
  key->clear();
  const Status missing(ErrorCode::missing_access_key, "send the bucket's access key as Authorization: Bearer <key>");
  constexpr std::string_view kScheme = "Bearer";
  if (authorization.size() <= kScheme.size() || !ascii_iequals(authorization.substr(0, kScheme.size()), kScheme) ||
      authorization[kScheme.size()] != ' ')
    return missing;
  std::string_view rest = authorization.substr(kScheme.size());
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  while (!rest.empty() && (rest.back() == ' ' || rest.back() == '\t')) rest.remove_suffix(1);
  if (rest.empty() || rest.find(' ') != std::string_view::npos) return missing;
  *key = std::string(rest);
  return Status();
}

}  // namespace writeapi
