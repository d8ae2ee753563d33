#include "writeapi/status.h"

#include <array>

namespace writeapi {
namespace {

struct CodeInfo {
  ErrorCode code;
  std::string_view name;
  int http_status;
};

// The one table of wire names and HTTP statuses. Order follows ErrorCode;
// tests/unit/status_test.cpp checks that it covers every code.
constexpr std::array<CodeInfo, kErrorCodeCount> kCodes = {{
    {ErrorCode::ok, "ok", 200},
    {ErrorCode::invalid_json, "invalid_json", 400},
    {ErrorCode::invalid_utf8, "invalid_utf8", 400},
    {ErrorCode::not_an_object, "not_an_object", 400},
    {ErrorCode::missing_field, "missing_field", 400},
    {ErrorCode::invalid_field, "invalid_field", 400},
    {ErrorCode::null_data, "null_data", 400},
    {ErrorCode::duplicate_field, "duplicate_field", 400},
    {ErrorCode::invalid_device_id, "invalid_device_id", 400},
    {ErrorCode::invalid_name, "invalid_name", 400},
    {ErrorCode::too_deep, "too_deep", 400},
    {ErrorCode::bad_request, "bad_request", 400},
    {ErrorCode::missing_access_key, "missing_access_key", 401},
    {ErrorCode::access_denied, "access_denied", 403},
    {ErrorCode::device_blocked, "device_blocked", 403},
    {ErrorCode::not_found, "not_found", 404},
    {ErrorCode::method_not_allowed, "method_not_allowed", 405},
    {ErrorCode::length_required, "length_required", 411},
    {ErrorCode::payload_too_large, "payload_too_large", 413},
    {ErrorCode::unsupported_media_type, "unsupported_media_type", 415},
    {ErrorCode::unsupported_encoding, "unsupported_encoding", 415},
    {ErrorCode::rate_limited, "rate_limited", 429},
    {ErrorCode::suspended, "suspended", 429},
    {ErrorCode::insufficient_storage, "insufficient_storage", 507},
    {ErrorCode::storage_error, "storage_error", 503},
    {ErrorCode::storage_unavailable, "storage_unavailable", 503},
    {ErrorCode::internal_error, "internal_error", 500},
    {ErrorCode::not_implemented, "not_implemented", 501},
    {ErrorCode::server_busy, "server_busy", 503},
    {ErrorCode::invalid_request_id, "invalid_request_id", 400},
    {ErrorCode::request_id_conflict, "request_id_conflict", 409},
    {ErrorCode::invalid_cursor, "invalid_cursor", 400},
    {ErrorCode::invalid_parameter, "invalid_parameter", 400},
}};

constexpr bool table_in_order() {
  for (int i = 0; i < kErrorCodeCount; ++i)
    if (static_cast<int>(kCodes[i].code) != i) return false;
  return true;
}
static_assert(table_in_order(), "kCodes must list every ErrorCode in order");

const CodeInfo& info(ErrorCode code) {
  auto index = static_cast<int>(code);
  if (index < 0 || index >= kErrorCodeCount) return kCodes[static_cast<int>(ErrorCode::internal_error)];
  return kCodes[index];
}

}  // namespace

std::string_view error_name(ErrorCode code) noexcept { return info(code).name; }
int http_status(ErrorCode code) noexcept { return info(code).http_status; }

}  // namespace writeapi
