// Status, ErrorCode wire names and HTTP statuses (the public error table).
#include <catch2/catch.hpp>

#include <set>
#include <string>

#include "writeapi/status.h"

using writeapi::ErrorCode;
using writeapi::Status;

namespace {

ErrorCode code_at(int i) { return static_cast<ErrorCode>(i); }

}  // namespace

TEST_CASE("every error code has a distinct non-empty wire name", "[status]") {
  std::set<std::string> names;
  for (int i = 0; i < writeapi::kErrorCodeCount; ++i) {
    std::string name(writeapi::error_name(code_at(i)));
    INFO("code " << i << " name '" << name << "'");
    CHECK(!name.empty());
    // Wire names are snake_case identifiers.
    for (char c : name) CHECK(((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'));
    CHECK(names.insert(name).second);
  }
  CHECK(names.size() == static_cast<std::size_t>(writeapi::kErrorCodeCount));
}

TEST_CASE("every error code maps to an allowed HTTP status", "[status]") {
  const std::set<int> allowed = {200, 400, 401, 403, 404, 405, 409, 411, 413, 415, 429, 500, 501, 503, 507};
  for (int i = 0; i < writeapi::kErrorCodeCount; ++i) {
    int http = writeapi::http_status(code_at(i));
    INFO("code " << i << " (" << writeapi::error_name(code_at(i)) << ") -> " << http);
    CHECK(allowed.count(http) == 1);
    // Only ok is a success.
    if (i == 0) {
      CHECK(http == 200);
    } else {
      CHECK(http >= 400);
    }
  }
}

TEST_CASE("wire names and HTTP statuses of selected codes", "[status]") {
  struct Expect {
    ErrorCode code;
    const char* name;
    int http;
  };
  const Expect table[] = {
      {ErrorCode::ok, "ok", 200},
      {ErrorCode::invalid_json, "invalid_json", 400},
      {ErrorCode::invalid_utf8, "invalid_utf8", 400},
      {ErrorCode::invalid_name, "invalid_name", 400},
      {ErrorCode::too_deep, "too_deep", 400},
      {ErrorCode::missing_access_key, "missing_access_key", 401},
      {ErrorCode::access_denied, "access_denied", 403},
      {ErrorCode::not_found, "not_found", 404},
      {ErrorCode::invalid_request_id, "invalid_request_id", 400},
      {ErrorCode::request_id_conflict, "request_id_conflict", 409},
      {ErrorCode::method_not_allowed, "method_not_allowed", 405},
      {ErrorCode::length_required, "length_required", 411},
      {ErrorCode::payload_too_large, "payload_too_large", 413},
      {ErrorCode::unsupported_media_type, "unsupported_media_type", 415},
      {ErrorCode::rate_limited, "rate_limited", 429},
      {ErrorCode::insufficient_storage, "insufficient_storage", 507},
      {ErrorCode::storage_error, "storage_error", 503},
      {ErrorCode::storage_unavailable, "storage_unavailable", 503},
      {ErrorCode::internal_error, "internal_error", 500},
      {ErrorCode::not_implemented, "not_implemented", 501},
      {ErrorCode::server_busy, "server_busy", 503},
      {ErrorCode::invalid_cursor, "invalid_cursor", 400},
      {ErrorCode::invalid_parameter, "invalid_parameter", 400},
  };
  for (const Expect& e : table) {
    INFO(e.name);
    CHECK(writeapi::error_name(e.code) == e.name);
    CHECK(writeapi::http_status(e.code) == e.http);
  }
}

TEST_CASE("codes are only appended: old values keep their numbers", "[status]") {
  // internal_error closed the first table; codes added later follow it.
  CHECK(static_cast<int>(ErrorCode::internal_error) == 26);
  CHECK(static_cast<int>(ErrorCode::not_implemented) == 27);
  CHECK(static_cast<int>(ErrorCode::server_busy) == 28);
  CHECK(static_cast<int>(ErrorCode::invalid_request_id) == 29);
  CHECK(static_cast<int>(ErrorCode::request_id_conflict) == 30);
  CHECK(static_cast<int>(ErrorCode::invalid_cursor) == 31);
  CHECK(static_cast<int>(ErrorCode::invalid_parameter) == 32);
  CHECK(writeapi::kErrorCodeCount == static_cast<int>(ErrorCode::invalid_parameter) + 1);
  CHECK(writeapi::error_name(code_at(writeapi::kErrorCodeCount - 1)) == "invalid_parameter");
}

TEST_CASE("a default Status is ok", "[status]") {
  Status s;
  CHECK(s.ok());
  CHECK(s.code() == ErrorCode::ok);
  CHECK(s.message().empty());
  CHECK(s.name() == "ok");
  CHECK(s.http_status() == 200);
  CHECK(s.retry_after_seconds() == 0);
  CHECK(Status::Ok().ok());
}

TEST_CASE("an error Status carries code, message, name and HTTP status", "[status]") {
  Status s(ErrorCode::payload_too_large, "too big");
  CHECK_FALSE(s.ok());
  CHECK(s.code() == ErrorCode::payload_too_large);
  CHECK(s.message() == "too big");
  CHECK(s.name() == "payload_too_large");
  CHECK(s.http_status() == 413);
  CHECK(s.retry_after_seconds() == 0);
}

TEST_CASE("with_retry_after sets the advice and chains", "[status]") {
  Status s(ErrorCode::rate_limited, "slow down");
  Status& same = s.with_retry_after(30);
  CHECK(&same == &s);
  CHECK(s.retry_after_seconds() == 30);
  CHECK(s.code() == ErrorCode::rate_limited);
  CHECK(s.message() == "slow down");
  CHECK(s.http_status() == 429);

  Status copy = Status(ErrorCode::storage_error, "retry").with_retry_after(1);
  CHECK(copy.retry_after_seconds() == 1);
  CHECK(copy.http_status() == 503);
  copy.with_retry_after(0);
  CHECK(copy.retry_after_seconds() == 0);
}
