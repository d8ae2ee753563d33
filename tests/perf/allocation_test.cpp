// Heap allocations on the write path, counted with a replaced global
// operator new: a steady-state write allocates nothing per item and a small
// bounded number per request (see kMaxAllocationsPerRequest).
#include <stdlib.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "api_document.h"
#include "counting_new.h"
#include "writeapi/auth.h"
#include "writeapi/ingest.h"
#include "writeapi/parse.h"
#include "writeapi/storage.h"

using writeapi::testing::g_allocations;
using writeapi::testing::g_counting;

namespace {

namespace fs = std::filesystem;
const std::string kKey(writeapi::testing::kAccessKey);

// The documented bound (README, "Performance"): C++ heap allocations per
// steady-state request through Ingestor with the keys-file authorizer and
// the file store: the object id string for the open-file cache lookup.
constexpr long kMaxAllocationsPerRequest = 1;

struct Fixture {
  Fixture() {
    char pattern[] = "/tmp/writeapi-alloc-XXXXXX";
    dir = ::mkdtemp(pattern);
    std::ofstream(dir + "/keys.json") << R"({"buckets":{"homelab":{"keys":[{"id":"k1","sha256":")"
                                      << writeapi::sha256_hex(kKey) << R"("}]}}})";
    writeapi::Status status;
    keys = writeapi::make_keys_file_authorizer(dir + "/keys.json", &status);
    writeapi::FileStorageOptions options;
    options.data_dir = dir + "/data";
    options.fsync = writeapi::FsyncPolicy::never;
    storage = writeapi::make_file_storage(options, &status);
    ingestor = std::make_unique<writeapi::Ingestor>(keys.get(), storage.get());
  }
  ~Fixture() { fs::remove_all(dir); }

  std::string body(int items) {
    std::string b = std::string(R"({"accessKey":")") + kKey + R"(","deviceId":"sensor-7","data":[)";
    for (int i = 0; i < items; ++i) {
      if (i) b += ',';
      b += R"({"timestamp":)" + std::to_string(1584156800 + i) + R"(,"temperature":4.7,"tags":["a","b"]})";
    }
    return b + "]}";
  }

  // Allocations of one ingest of `body` (after warm-up with the same body).
  long allocations_of(const std::string& body) {
    writeapi::IngestRequest request;
    request.bucket = "homelab";
    request.key = "alloc_test_object_with_a_long_name";
    request.content_type = "application/json";
    request.body = body;
    writeapi::IngestResult result;
    for (int i = 0; i < 3; ++i) REQUIRE(ingestor->ingest(request, &result).ok());
    g_allocations = 0;
    g_counting = true;
    writeapi::Status s = ingestor->ingest(request, &result);
    g_counting = false;
    REQUIRE(s.ok());
    return g_allocations.load();
  }

  std::string dir;
  std::unique_ptr<writeapi::KeysFileAuthorizer> keys;
  std::unique_ptr<writeapi::Storage> storage;
  std::unique_ptr<writeapi::Ingestor> ingestor;
};

}  // namespace

TEST_CASE("A steady-state write allocates nothing per item and a bounded amount per request", "[perf][alloc]") {
  Fixture f;
  long one = f.allocations_of(f.body(1));
  long thousand = f.allocations_of(f.body(1000));
  long ten_thousand = f.allocations_of(f.body(10000));
  INFO("allocations: 1 item " << one << ", 1000 items " << thousand << ", 10000 items " << ten_thousand);
  CHECK(thousand == one);
  CHECK(ten_thousand == one);
  CHECK(one <= kMaxAllocationsPerRequest);
}

TEST_CASE("Rejected requests allocate a bounded amount too", "[perf][alloc]") {
  Fixture f;
  std::string bad = f.body(1000);
  bad[bad.size() / 2] = '\x01';  // a control character inside the body
  writeapi::IngestRequest request;
  request.bucket = "homelab";
  request.key = "k";
  request.content_type = "application/json";
  request.body = bad;
  writeapi::IngestResult result;
  for (int i = 0; i < 3; ++i) CHECK_FALSE(f.ingestor->ingest(request, &result).ok());
  g_allocations = 0;
  g_counting = true;
  writeapi::Status s = f.ingestor->ingest(request, &result);
  g_counting = false;
  CHECK(s.code() == writeapi::ErrorCode::invalid_json);
  CHECK(g_allocations.load() <= 2);  // the error message
}
