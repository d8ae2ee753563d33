#include <writeapi/clickhouse.h>
#include <writeapi/parse.h>
#include <writeapi/storage.h>
#include <writeapi/version.h>

#include <cstdio>
#include <cstring>
#include <string>

int main() {
  // One version: the CMake package's is the headers'.
  if (std::strcmp(writeapi::kVersion, WRITEAPI_PACKAGE_VERSION) != 0) {
    std::printf("consumer: package version %s, headers %s\n", WRITEAPI_PACKAGE_VERSION, writeapi::kVersion);
    return 1;
  }
  // Without the backend, make_clickhouse_storage refuses with
  // not_implemented instead of trying to connect.
  writeapi::Status clickhouse_status;
  writeapi::ClickHouseStorageOptions clickhouse_options;
  clickhouse_options.url = "http://";  // refused before any connection
  auto clickhouse = writeapi::make_clickhouse_storage(clickhouse_options, &clickhouse_status);
  const bool clickhouse_supported = writeapi::clickhouse_storage_supported();
  std::printf("consumer: writeapi %s, ClickHouse backend %s (%s)\n", writeapi::kVersion,
              clickhouse_supported ? "built in" : "left out", std::string(clickhouse_status.name()).c_str());
  if (clickhouse || clickhouse_supported != (clickhouse_status.code() != writeapi::ErrorCode::not_implemented))
    return 1;
#ifdef WRITEAPI_EXPECT_CLICKHOUSE
  if (clickhouse_supported != (WRITEAPI_EXPECT_CLICKHOUSE != 0)) return 1;
#endif

  writeapi::ParsedRequest request;
  writeapi::Status status = writeapi::parse(R"({"accessKey":"k","data":[1,{"a": 2}]})", &request);
  auto storage = writeapi::make_memory_storage();
  writeapi::AppendBatch batch;
  batch.bucket = "b";
  batch.key = "k";
  batch.lines = request.lines;
  batch.item_count = request.item_count;
  if (!status.ok() || !storage->append(batch).ok()) return 1;
  std::string contents;
  if (!storage->read_object("b", "k", &contents).ok()) return 1;
  std::printf("consumer read: %s", contents.c_str());
  return contents == "1\n{\"a\":2}\n" ? 0 : 1;
}
