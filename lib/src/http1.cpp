#include "writeapi/http1.h"

#include <algorithm>
#include <cctype>
#include <cstring>

namespace writeapi::http1 {
namespace {

bool is_ows(char c) { return c == ' ' || c == '\t'; }

// field-vchar / SP / HTAB / obs-text: everything but controls and DEL.
bool is_field_value_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

unsigned char lower(unsigned char c) { return (c >= 'A' && c <= 'Z') ? static_cast<unsigned char>(c + 32) : c; }

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

// Calls fn(member) for each comma-separated member (OWS trimmed); empty
// members are passed too.
template <class Fn>
void for_each_member(std::string_view value, Fn fn) {
  for (;;) {
    std::size_t comma = value.find(',');
    fn(trim_ows(value.substr(0, comma)));
    if (comma == std::string_view::npos) return;
    value.remove_prefix(comma + 1);
  }
}

HeadResult refuse(HeadStatus status, const char* reason) {
  HeadResult r;
  r.status = status;
  r.reason = reason;
  return r;
}

// The request line: method SP request-target SP HTTP-version.
HeadResult parse_request_line(std::string_view line, RequestHead* head) {
  std::size_t i = 0;
  while (i < line.size() && is_token_char(static_cast<unsigned char>(line[i]))) ++i;
  if (i == 0 || i == line.size() || line[i] != ' ')
    return refuse(HeadStatus::bad_request, "the request line must be: METHOD SP target SP HTTP/1.1");
  head->method = line.substr(0, i);
  std::size_t target_begin = ++i;
  while (i < line.size() && static_cast<unsigned char>(line[i]) > 0x20 && static_cast<unsigned char>(line[i]) < 0x7f)
    ++i;
  if (i == target_begin || i == line.size() || line[i] != ' ')
    return refuse(HeadStatus::bad_request, "the request line must be: METHOD SP target SP HTTP/1.1");
  std::string_view target = line.substr(target_begin, i - target_begin);
  if (target.size() > kMaxTargetBytes) return refuse(HeadStatus::uri_too_long, "the request target is too long");
  std::string_view version = line.substr(i + 1);
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' || version[5] < '0' ||
      version[5] > '9' || version[7] < '0' || version[7] > '9')
    return refuse(HeadStatus::bad_request, "the request line must end in HTTP/1.1 or HTTP/1.0");
  if (version[5] != '1' || (version[7] != '0' && version[7] != '1'))
    return refuse(HeadStatus::bad_version, "only HTTP/1.1 and HTTP/1.0 are supported");
  head->minor_version = version[7] - '0';

  if (target[0] == '/') {
    head->target = target;
  } else if (target == "*") {
    if (head->method != "OPTIONS") return refuse(HeadStatus::bad_request, "the target * is for OPTIONS only");
    head->target = target;
  } else {
    // absolute-form (RFC 9112 3.2.2): keep the path and query.
    std::size_t scheme = 0;
    if (target.size() > 7 && ascii_iequals(target.substr(0, 7), "http://"))
      scheme = 7;
    else if (target.size() > 8 && ascii_iequals(target.substr(0, 8), "https://"))
      scheme = 8;
    if (scheme == 0) return refuse(HeadStatus::bad_request, "the request target must start with /");
    std::size_t path = target.find_first_of("/?", scheme);
    if (path == scheme) return refuse(HeadStatus::bad_request, "the request target has no host");
    // RFC 9110 4.2.4: userinfo in an http(s) URI is an error.
    if (target.substr(scheme, path == std::string_view::npos ? std::string_view::npos : path - scheme).find('@') !=
        std::string_view::npos)
      return refuse(HeadStatus::bad_request, "the request target must not carry userinfo");
    if (path == std::string_view::npos) {
      head->target = "/";
    } else if (target[path] == '?') {
      return refuse(HeadStatus::bad_request, "the request target must have a path");
    } else {
      head->target = target.substr(path);
    }
  }
  return HeadResult{HeadStatus::complete, 0, ""};
}

// One field line: field-name ":" OWS field-value OWS.
HeadResult parse_field_line(std::string_view line, RequestHead* head) {
  if (line.size() > kMaxFieldLineBytes) return refuse(HeadStatus::too_large, "a header line is too long");
  if (is_ows(line[0])) return refuse(HeadStatus::bad_request, "folded header lines (obs-fold) are not accepted");
  std::size_t i = 0;
  while (i < line.size() && is_token_char(static_cast<unsigned char>(line[i]))) ++i;
  if (i == 0 || i == line.size() || line[i] != ':')
    return refuse(HeadStatus::bad_request,
                  "a header line must be name: value, with a token name and no space before the colon");
  std::string_view value = line.substr(i + 1);
  for (char c : value)
    if (!is_field_value_char(static_cast<unsigned char>(c)))
      return refuse(HeadStatus::bad_request, "a header value contains a control character");
  if (head->fields.size() >= kMaxFields) return refuse(HeadStatus::too_large, "too many header lines");
  head->fields.push_back(Field{line.substr(0, i), trim_ows(value)});
  return HeadResult{HeadStatus::complete, 0, ""};
}

// Content-Length: one value, or a list of equal values, digits only.
// A Host field value as RFC 9112 3.2 and RFC 3986 3.2.2 allow: empty, or
// host [":" port] with host a reg-name (unreserved, pct-encoded,
// sub-delims), an IPv4 address or an IP literal in brackets. Anything else
// (a list, spaces, userinfo, a path) is a 400.
bool valid_host(std::string_view value) {
  if (value.empty()) return true;
  std::string_view host = value, port;
  if (value.front() == '[') {
    std::size_t close = value.find(']');
    if (close == std::string_view::npos) return false;
    for (char c : value.substr(1, close - 1))
      if (!(std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.')) return false;
    host = value.substr(0, close + 1);
    std::string_view rest = value.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return false;
    port = rest.empty() ? rest : rest.substr(1);
  } else if (std::size_t colon = value.rfind(':'); colon != std::string_view::npos) {
    host = value.substr(0, colon);
    port = value.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return false;
  }
  for (char c : port)
    if (c < '0' || c > '9') return false;
  if (port.size() > 5 || host.empty()) return false;                         // ":80" names no host
  if (host.front() == '[') return host.find(':') != std::string_view::npos;  // "[]" is no address
  for (std::size_t i = 0; i < host.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(host[i]);
    if (std::isalnum(c) || std::strchr("-._~!$&'()*+,;=", c) != nullptr) continue;
    if (c == '%' && i + 2 < host.size() && std::isxdigit(static_cast<unsigned char>(host[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(host[i + 2]))) {
      i += 2;
      continue;
    }
    return false;
  }
  return true;
}

HeadResult parse_framing(RequestHead* head) {
  bool has_length = false, has_te = false, length_overflow = false;
  std::uint64_t length = 0;
  std::string_view length_digits;  // the first member, without leading zeros
  bool bad_length = false, te_other = false;
  std::size_t te_fields = 0;
  bool close = false, keep_alive = false;
  bool expect_other = false, expect_continue = false;
  std::size_t hosts = 0;
  bool bad_host = false;
  for (const Field& f : head->fields) {
    if (ascii_iequals(f.name, "Content-Length")) {
      // 1*DIGIT each; leading zeros allowed; every member the same number
      // (compared as digit strings, so values past 64 bits are told apart).
      for_each_member(f.value, [&](std::string_view member) {
        if (member.empty()) {
          bad_length = true;
          return;
        }
        for (char c : member) bad_length |= (c < '0' || c > '9');
        if (bad_length) return;
        std::size_t first = member.find_first_not_of('0');
        std::string_view digits = first == std::string_view::npos ? std::string_view("0") : member.substr(first);
        if (has_length && digits != length_digits) bad_length = true;
        if (has_length) return;
        has_length = true;
        length_digits = digits;
        std::uint64_t v = 0;
        for (char c : digits) {
          std::uint64_t digit = static_cast<std::uint64_t>(c - '0');
          if (v > (UINT64_MAX - digit) / 10) {
            length_overflow = true;
            break;
          }
          v = v * 10 + digit;
        }
        length = length_overflow ? UINT64_MAX : v;
      });
    } else if (ascii_iequals(f.name, "Transfer-Encoding")) {
      has_te = true;
      ++te_fields;
      if (!ascii_iequals(f.value, "chunked")) te_other = true;
    } else if (ascii_iequals(f.name, "Connection")) {
      for_each_member(f.value, [&](std::string_view token) {
        if (ascii_iequals(token, "close"))
          close = true;
        else if (ascii_iequals(token, "keep-alive"))
          keep_alive = true;
      });
    } else if (ascii_iequals(f.name, "Expect")) {
      if (ascii_iequals(f.value, "100-continue"))
        expect_continue = true;
      else
        expect_other = true;
    } else if (ascii_iequals(f.name, "Host")) {
      ++hosts;
      bad_host |= !valid_host(f.value);
    }
  }
  if (bad_length) return refuse(HeadStatus::bad_request, "Content-Length must be one number (digits only)");
  if (has_te && has_length)
    return refuse(HeadStatus::bad_request, "send either Content-Length or Transfer-Encoding, not both");
  // From here on the body's framing is known even if the head is refused,
  // so that the refusal lingers for the body a client sends before reading.
  if (has_te) {
    head->framing = BodyFraming::chunked;
  } else if (has_length) {
    head->framing = BodyFraming::length;
    head->content_length = length;
  }
  if (has_te && head->minor_version == 0)
    return refuse(HeadStatus::bad_request, "Transfer-Encoding is not allowed in HTTP/1.0");
  if (has_te && (te_other || te_fields > 1))
    return refuse(HeadStatus::not_implemented, "the only Transfer-Encoding supported is chunked");
  if (hosts > 1 || (hosts == 0 && head->minor_version == 1))
    return refuse(HeadStatus::bad_request, "send exactly one Host header");
  if (bad_host)
    return refuse(HeadStatus::bad_request, "the Host header must be one host name or address, with an optional port");
  if (head->minor_version == 1 && expect_other)
    return refuse(HeadStatus::expectation_failed, "the only Expect supported is 100-continue");

  head->keep_alive = !close && (head->minor_version == 1 || keep_alive);
  head->expect_continue = expect_continue && head->minor_version == 1;
  return HeadResult{HeadStatus::complete, 0, ""};
}

}  // namespace

bool is_token_char(unsigned char c) {
  static constexpr const char* kSpecials = "!#$%&'*+-.^_`|~";
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return c != 0 && std::strchr(kSpecials, c) != nullptr;
}

const Field* RequestHead::find(std::string_view name) const {
  for (const Field& f : fields)
    if (ascii_iequals(f.name, name)) return &f;
  return nullptr;
}

std::size_t RequestHead::count(std::string_view name) const {
  return static_cast<std::size_t>(
      std::count_if(fields.begin(), fields.end(), [&](const Field& f) { return ascii_iequals(f.name, name); }));
}

HeadResult parse_head(std::string_view input, std::size_t max_head_bytes, RequestHead* head, std::size_t* scan_from) {
  // Empty lines before a request line are skipped (RFC 9112 2.2).
  std::size_t begin = 0;
  while (input.size() - begin >= 2 && input[begin] == '\r' && input[begin + 1] == '\n') begin += 2;
  if (begin >= max_head_bytes) {
    if (input.size() > max_head_bytes)
      return refuse(HeadStatus::too_large, "the request line and headers are too large");
    return HeadResult{};
  }
  if (begin < input.size() && input[begin] == '\n')
    return refuse(HeadStatus::bad_request, "bare LF in the request head");

  // Bytes past the cap are never looked at, so the outcome does not depend
  // on how much arrived beyond it.
  const std::size_t limit = std::min(input.size(), max_head_bytes);
  std::size_t end = 0;
  std::size_t i = std::max(*scan_from, begin);
  for (; i < limit; ++i) {
    char c = input[i];
    if (c == '\r') {
      if (i + 1 == input.size()) break;  // the LF may still come
      if (input[i + 1] != '\n') return refuse(HeadStatus::bad_request, "bare CR in the request head");
    } else if (c == '\n') {
      if (i == 0 || input[i - 1] != '\r') return refuse(HeadStatus::bad_request, "bare LF in the request head");
      if (i >= begin + 3 && input[i - 2] == '\n' && input[i - 3] == '\r') {
        end = i + 1;
        break;
      }
    }
  }
  if (end == 0) {
    *scan_from = i;
    if (input.size() > max_head_bytes)
      return refuse(HeadStatus::too_large, "the request line and headers are too large");
    return HeadResult{};
  }
  if (end > max_head_bytes) return refuse(HeadStatus::too_large, "the request line and headers are too large");

  *head = RequestHead();
  std::string_view section = input.substr(begin, end - begin - 2);  // lines, each ending in CRLF
  std::size_t line_end = section.find("\r\n");
  if (HeadResult r = parse_request_line(section.substr(0, line_end), head); r.status != HeadStatus::complete) return r;
  std::size_t pos = line_end + 2;
  while (pos < section.size()) {
    line_end = section.find("\r\n", pos);
    if (HeadResult r = parse_field_line(section.substr(pos, line_end - pos), head); r.status != HeadStatus::complete)
      return r;
    pos = line_end + 2;
  }
  if (HeadResult r = parse_framing(head); r.status != HeadStatus::complete) return r;
  // Last, so that the framing is known for the lingering close.
  static constexpr std::string_view kMethods[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"};
  if (std::find(std::begin(kMethods), std::end(kMethods), head->method) == std::end(kMethods))
    return refuse(HeadStatus::not_implemented, "the method is not supported; the write path takes POST");
  return HeadResult{HeadStatus::complete, end, ""};
}

HeadRefusal refusal_of(HeadStatus status) noexcept {
  switch (status) {
    case HeadStatus::too_large:
      return {431, "bad_request"};
    case HeadStatus::uri_too_long:
      return {414, "bad_request"};
    case HeadStatus::not_implemented:
      return {501, "not_implemented"};
    case HeadStatus::bad_version:
      return {505, "bad_request"};
    case HeadStatus::expectation_failed:
      return {417, "bad_request"};
    default:
      return {400, "bad_request"};
  }
}

ChunkedDecoder::Status ChunkedDecoder::feed(std::string_view input, std::string* out, std::size_t* consumed) {
  std::size_t i = 0;
  auto result = [&](Status s) {
    *consumed = i;
    return s;
  };
  while (i < input.size()) {
    const unsigned char c = static_cast<unsigned char>(input[i]);
    switch (state_) {
      case State::size: {
        int digit = (c >= '0' && c <= '9') ? c - '0' : (lower(c) >= 'a' && lower(c) <= 'f') ? lower(c) - 'a' + 10 : -1;
        if (digit >= 0) {
          if (++size_digits_ > 16) return result(fail("a chunk size has more than 16 hex digits"));
          chunk_left_ = chunk_left_ * 16 + static_cast<std::uint64_t>(digit);
        } else if (size_digits_ == 0) {
          return result(fail("a chunk must start with its size in hex"));
        } else if (c == ';') {
          state_ = State::ext;
        } else if (c == '\r') {
          state_ = State::size_lf;
        } else {
          return result(fail("a chunk size line must be hex digits, extensions, CRLF"));
        }
        break;
      }
      case State::ext:
        if (ext_escape_) {
          ext_escape_ = false;
          if (!is_field_value_char(c)) return result(fail("a control character in a chunk extension"));
        } else if (ext_quoted_) {
          if (c == '\\')
            ext_escape_ = true;
          else if (c == '"')
            ext_quoted_ = false;
          else if (!is_field_value_char(c))
            return result(fail("a control character in a chunk extension"));
        } else if (c == '"') {
          ext_quoted_ = true;
        } else if (c == '\r') {
          state_ = State::size_lf;
        } else if (!(is_token_char(c) || c == ';' || c == '=' || is_ows(static_cast<char>(c)))) {
          return result(fail("a chunk extension must be ;name=value tokens"));
        }
        break;
      case State::size_lf:
        if (c != '\n') return result(fail("a chunk size line must end in CRLF"));
        line_bytes_ = 0;
        size_digits_ = 0;
        if (chunk_left_ == 0) {
          state_ = State::trailer;
        } else {
          if (chunk_left_ > max_body_ - std::min(max_body_, body_bytes_)) {
            ++i;
            *consumed = i;
            return Status::too_large;
          }
          state_ = State::data;
        }
        break;
      case State::data: {
        std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk_left_, input.size() - i));
        out->append(input.data() + i, n);
        chunk_left_ -= n;
        body_bytes_ += n;
        i += n;
        if (chunk_left_ == 0) state_ = State::data_cr;
        continue;
      }
      case State::data_cr:
        if (c != '\r') return result(fail("chunk data must be followed by CRLF"));
        state_ = State::data_lf;
        break;
      case State::data_lf:
        if (c != '\n') return result(fail("chunk data must be followed by CRLF"));
        state_ = State::size;
        break;
      case State::trailer:
        if (++trailer_bytes_ > kMaxTrailerBytes) return result(fail("the chunked trailer section is too large"));
        if (c == '\r') {
          state_ = State::trailer_lf;
        } else if (trailer_line_ == 0 && is_ows(static_cast<char>(c))) {
          return result(fail("folded trailer lines are not accepted"));
        } else if (!trailer_colon_) {
          if (c == ':' && trailer_line_ > 0)
            trailer_colon_ = true;
          else if (!is_token_char(c))
            return result(fail("a trailer line must be name: value"));
          ++trailer_line_;
        } else {
          if (!is_field_value_char(c)) return result(fail("a control character in a trailer"));
          ++trailer_line_;
        }
        break;
      case State::trailer_lf:
        if (c != '\n') return result(fail("a trailer line must end in CRLF"));
        if (trailer_line_ == 0) {
          state_ = State::done;
          ++i;
          return result(Status::done);
        }
        if (!trailer_colon_) return result(fail("a trailer line must be name: value"));
        trailer_line_ = 0;
        trailer_colon_ = false;
        state_ = State::trailer;
        break;
      case State::done:
        return result(Status::done);
    }
    if (state_ == State::size || state_ == State::ext || state_ == State::size_lf) {
      if (++line_bytes_ > kMaxChunkLineBytes) return result(fail("a chunk size line is too long"));
    }
    ++i;
  }
  return result(state_ == State::done ? Status::done : Status::more);
}

}  // namespace writeapi::http1
