// The answers the library renders for every front end (writeapi/response.h).
#include "writeapi/response.h"

#include <catch2/catch.hpp>

#include <string>

using writeapi::ErrorCode;
using writeapi::Status;

TEST_CASE("response: JSON strings escape quotes, backslashes and control characters only", "[response]") {
  std::string out;
  writeapi::append_json_string(&out, std::string("a\"b\\c\n\r\t\x01\x1f\x7f", 12) + "\xc3\xa9");
  CHECK(out == "\"a\\\"b\\\\c\\n\\r\\t\\u0001\\u001f\\u007f\\u0000\xc3\xa9\"");
}

TEST_CASE("response: the error and ok bodies", "[response]") {
  CHECK(writeapi::error_json("access_denied", "wrong \"key\"") ==
        "{\"ok\":false,\"error\":\"access_denied\",\"message\":\"wrong \\\"key\\\"\"}\n");
  CHECK(writeapi::ok_json(0) == "{\"ok\":true,\"items\":0}\n");
  CHECK(writeapi::ok_json(123456789012u) == "{\"ok\":true,\"items\":123456789012}\n");
}

TEST_CASE("response: a whole write answer, byte for byte", "[response]") {
  std::string out;
  writeapi::append_write_response(Status(), 3, "Connection: close\r\n", &out);
  CHECK(out ==
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 22\r\nConnection: close\r\n\r\n"
        "{\"ok\":true,\"items\":3}\n");

  out = "kept:";
  writeapi::append_write_response(Status(ErrorCode::rate_limited, "slow down").with_retry_after(7), 0, "", &out);
  const std::string body = "{\"ok\":false,\"error\":\"rate_limited\",\"message\":\"slow down\"}\n";
  CHECK(out == "kept:HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nContent-Length: " +
                   std::to_string(body.size()) + "\r\nRetry-After: 7\r\n\r\n" + body);

  // Every code of the status table renders with its own status and a reason.
  for (int code = 0; code < writeapi::kErrorCodeCount; ++code) {
    Status status(static_cast<ErrorCode>(code), "m");
    out.clear();
    writeapi::append_write_response(status, 0, "", &out);
    INFO(status.name());
    CHECK(out.rfind("HTTP/1.1 " + std::to_string(status.http_status()) + " " +
                        writeapi::reason_phrase(status.http_status()) + "\r\n",
                    0) == 0);
    if (!status.ok())
      CHECK(out.find(std::string("\"error\":\"") + std::string(status.name()) + "\"") != std::string::npos);
  }
}

TEST_CASE("response: the headers a status brings", "[response]") {
  auto headers = writeapi::status_headers(Status(ErrorCode::method_not_allowed, "POST only"));
  REQUIRE(headers.size() == 1);
  CHECK(headers[0].name == "Allow");
  CHECK(headers[0].value == "POST");
  headers = writeapi::status_headers(Status(ErrorCode::suspended, "later").with_retry_after(30));
  REQUIRE(headers.size() == 1);
  CHECK(headers[0].name == "Retry-After");
  CHECK(headers[0].value == "30");
  CHECK(writeapi::status_headers(Status()).empty());
  CHECK(writeapi::status_headers(Status(ErrorCode::access_denied, "no")).empty());

  std::string out;
  writeapi::append_write_response(Status(ErrorCode::method_not_allowed, "POST only"), 0, "", &out);
  CHECK(out.find("\r\nAllow: POST\r\n\r\n") != std::string::npos);
}

TEST_CASE("response: reason phrases of the statuses the API uses", "[response]") {
  CHECK(std::string(writeapi::reason_phrase(409)) == "Conflict");
  CHECK(std::string(writeapi::reason_phrase(413)) == "Payload Too Large");
  CHECK(std::string(writeapi::reason_phrase(507)) == "Insufficient Storage");
  CHECK(std::string(writeapi::reason_phrase(499)) == "Bad Request");
  CHECK(std::string(writeapi::reason_phrase(599)) == "Internal Server Error");
}
