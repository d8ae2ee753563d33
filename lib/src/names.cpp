#include "writeapi/names.h"

namespace writeapi {

bool is_valid_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > kMaxNameLength || name[0] == '.') return false;
  for (char c : name) {
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Status validate_name(std::string_view name, std::string_view what) {
  if (is_valid_name(name)) return Status();
  std::string message(what);
  message += " names are 1 to 128 characters of A-Z a-z 0-9 . _ - and do not start with '.'";
  return Status(ErrorCode::invalid_name, std::move(message));
}

bool percent_decode(std::string_view in, std::string* out) {
  out->clear();
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out->push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) return false;
    int hi = hex(in[i + 1]), lo = hex(in[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

bool ascii_iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

Status parse_write_target(std::string_view target, std::string* bucket, std::string* key) {
  std::size_t query = target.find('?');
  if (query != std::string_view::npos) target = target.substr(0, query);
  if (target.substr(0, kWritePathPrefix.size()) != kWritePathPrefix)
    return Status(ErrorCode::not_found, "unknown path; write to /write/v3/bucket/<bucket>/<key>");
  std::string_view rest = target.substr(kWritePathPrefix.size());
  std::size_t slash = rest.find('/');
  if (slash == std::string_view::npos || rest.find('/', slash + 1) != std::string_view::npos)
    return Status(ErrorCode::not_found, "unknown path; write to /write/v3/bucket/<bucket>/<key>");
  if (!percent_decode(rest.substr(0, slash), bucket) || !percent_decode(rest.substr(slash + 1), key))
    return Status(ErrorCode::invalid_name, "malformed percent-encoding in the path");
  if (Status s = validate_name(*bucket, "bucket"); !s.ok()) return s;
  return validate_name(*key, "key");
}

}  // namespace writeapi
