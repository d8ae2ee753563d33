// The public headers are C++17: this unit is compiled with CXX_STANDARD 17
// (see CMakeLists.txt) and includes every one of them.
#include "writeapi/auth.h"
#include "writeapi/clickhouse.h"
#include "writeapi/clock.h"
#include "writeapi/export.h"
#include "writeapi/ingest.h"
#include "writeapi/keys_file.h"
#include "writeapi/keys_reloader.h"
#include "writeapi/limits.h"
#include "writeapi/names.h"
#include "writeapi/parse.h"
#include "writeapi/read.h"
#include "writeapi/status.h"
#include "writeapi/storage.h"
#include "writeapi/version.h"

#include <cstdio>
#include <memory>
#include <string>

#if __cplusplus > 201703L
#error "headers_cxx17_test must be compiled as C++17"
#endif

int main() {
  int failures = 0;
  auto expect = [&failures](bool ok, const char* what) {
    if (!ok) {
      std::fprintf(stderr, "FAILED: %s\n", what);
      ++failures;
    }
  };

  writeapi::Status status;
  expect(status.ok(), "default Status is ok");
  expect(writeapi::error_name(writeapi::ErrorCode::invalid_json) == "invalid_json", "error_name");
  expect(writeapi::http_status(writeapi::ErrorCode::access_denied) == 403, "http_status");
  expect(writeapi::is_valid_name("homelab") && !writeapi::is_valid_name(".."), "is_valid_name");

  writeapi::ParsedRequest parsed;
  writeapi::Status parse_status = writeapi::parse(R"({"accessKey":"k","data":[1,2]})", &parsed);
  expect(parse_status.ok() && parsed.item_count == 2 && parsed.lines == "1\n2\n", "parse");

  std::unique_ptr<writeapi::Storage> storage = writeapi::make_memory_storage();
  writeapi::AppendBatch batch;
  batch.bucket = "b";
  batch.key = "k";
  batch.lines = parsed.lines;
  batch.item_count = parsed.item_count;
  expect(storage->append(batch).ok(), "append");
  std::string contents;
  expect(storage->read_object("b", "k", &contents).ok() && contents == "1\n2\n", "read_object");

  writeapi::IngestOptions options;
  expect(options.max_body_bytes == writeapi::kDefaultMaxBodyBytes, "IngestOptions default");
  expect(writeapi::check_content_type("application/json").ok(), "check_content_type");
  expect(writeapi::sha256_hex("abc").size() == 64, "sha256_hex");
  writeapi::FileStorageOptions file_options;
  expect(file_options.fsync == writeapi::FsyncPolicy::always, "FileStorageOptions default");

  writeapi::ManualClock clock;
  writeapi::DeviceLimiterOptions limiter_options;
  limiter_options.clock = &clock;
  writeapi::DeviceLimiter limiter(limiter_options);
  writeapi::BucketLimitsMap limits;
  limits["b"].devices["broken"].blocked = true;
  limiter.set_limits(limits);
  expect(limiter.admit("b", "sensor").ok(), "DeviceLimiter admits");
  expect(limiter.admit("b", "broken").code() == writeapi::ErrorCode::device_blocked, "DeviceLimiter blocks");
  expect(writeapi::real_clock()->now().time_since_epoch().count() > 0, "real_clock");
  expect(std::string(writeapi::kVersion) == std::to_string(writeapi::kVersionMajor) + "." +
                                                std::to_string(writeapi::kVersionMinor) + "." +
                                                std::to_string(writeapi::kVersionPatch),
         "kVersion is MAJOR.MINOR.PATCH");

  if (failures == 0) std::printf("headers_cxx17_test: ok (C++ %ld)\n", static_cast<long>(__cplusplus));
  return failures == 0 ? 0 : 1;
}
