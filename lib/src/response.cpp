#include "writeapi/response.h"

#include <cstdio>
#include <string>

namespace writeapi {

void append_json_string(std::string* out, std::string_view text) {
  out->push_back('"');
  for (char c : text) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          static constexpr char kHex[] = "0123456789abcdef";
          out->append("\\u00");
          out->push_back(kHex[(c >> 4) & 15]);
          out->push_back(kHex[c & 15]);
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

std::string error_json(std::string_view code, std::string_view message) {
  std::string body = "{\"ok\":false,\"error\":";
  append_json_string(&body, code);
  body += ",\"message\":";
  append_json_string(&body, message);
  body += "}\n";
  return body;
}

std::string ok_json(std::size_t items, bool duplicate) {
  char json[80];
  int size = std::snprintf(
      json, sizeof json,
      duplicate ? "{\"ok\":true,\"items\":%zu,\"duplicate\":true}\n" : "{\"ok\":true,\"items\":%zu}\n", items);
  return std::string(json, static_cast<std::size_t>(size));
}

const char* reason_phrase(int http_status) noexcept {
  switch (http_status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 413:
      return "Payload Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 417:
      return "Expectation Failed";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    case 507:
      return "Insufficient Storage";
    default:
      return http_status < 500 ? "Bad Request" : "Internal Server Error";
  }
}

std::vector<ResponseHeader> status_headers(const Status& status) {
  std::vector<ResponseHeader> headers;
  if (status.code() == ErrorCode::method_not_allowed) headers.push_back({"Allow", "POST"});
  if (status.retry_after_seconds() > 0)
    headers.push_back({"Retry-After", std::to_string(status.retry_after_seconds())});
  return headers;
}

namespace {

void append_response(int http_status, std::string_view body, std::string_view header_lines, const Status* status,
                     std::string* out) {
  char head[160];
  int size =
      std::snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n",
                    http_status, reason_phrase(http_status), body.size());
  out->append(head, static_cast<std::size_t>(size));
  out->append(header_lines);
  if (status && !status->ok()) {
    for (const ResponseHeader& header : status_headers(*status))
      out->append(header.name).append(": ").append(header.value).append("\r\n");
  }
  out->append("\r\n").append(body);
}

}  // namespace

void append_error_response(int http_status, std::string_view code, std::string_view message,
                           std::string_view header_lines, std::string* out) {
  append_response(http_status, error_json(code, message), header_lines, nullptr, out);
}

void append_write_response(const Status& status, std::size_t items, std::string_view header_lines, std::string* out,
                           bool duplicate) {
  const std::string body = status.ok() ? ok_json(items, duplicate) : error_json(status.name(), status.message());
  append_response(status.http_status(), body, header_lines, &status, out);
}

}  // namespace writeapi
