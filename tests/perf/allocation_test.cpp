// Heap allocations on the write path, counted with a replaced global
// operator new: a steady-state write allocates nothing per item and a small
// bounded number per request (see kMaxAllocationsPerRequest).
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <new>
#include <string>
#include <thread>

#include "api_document.h"
#include "writeapi/auth.h"
#include "writeapi/ingest.h"
#include "writeapi/parse.h"
#include "writeapi/storage.h"

namespace {
std::atomic<long> g_allocations{0};
std::atomic<bool> g_counting{false};
// While counting, the allocation with this number (0 is the first) fails
// with std::bad_alloc; -1: none does.
std::atomic<long> g_fail_at{-1};
}  // namespace

namespace {
// Counts an allocation; true when it is the one to fail.
bool count_allocation() {
  const long n = g_allocations.fetch_add(1, std::memory_order_relaxed);
  return n == g_fail_at.load(std::memory_order_relaxed);
}
}  // namespace

void* operator new(std::size_t size) {
  void* p =
      g_counting.load(std::memory_order_relaxed) && count_allocation() ? nullptr : std::malloc(size == 0 ? 1 : size);
  if (p != nullptr) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
// The nothrow form too (simdjson allocates its parser with it): left to the
// library, it would come from another allocator than the free() above,
// which AddressSanitizer reports as alloc-dealloc-mismatch.
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  if (g_counting.load(std::memory_order_relaxed)) g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(size == 0 ? 1 : size);
}
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }

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

// parse() may allocate at many points: the container stack (once per
// thread), the lines, the fields' copies, the set of field names,
// unescaped names, an error message. Each allocation of one call is made
// to fail in turn, each time on a new thread (whose stack has not grown)
// with a ParsedRequest that holds an earlier, smaller body's result:
// parse() throws std::bad_alloc and keeps nothing, neither of this body nor
// of the earlier one (the access key least of all), and the same
// ParsedRequest then parses the body as it should. (resize_and_overwrite,
// the C++23 way parse() writes its lines, must not see an exception from
// its operation: parse() catches and rethrows it.)
namespace {

struct Attempt {
  bool threw = false;
  bool kept_nothing = false;
  bool then_ok = false;
  bool any_allocation_failed = false;
};

Attempt fail_allocation(long fail_at, const std::string& body, writeapi::ErrorCode expected_code,
                        const std::string& expected_lines, const std::string& expected_key) {
  Attempt attempt;
  std::thread([&] {
    writeapi::ParsedRequest out;
    const std::string earlier = R"({"accessKey":"EARLIER-KEY","deviceId":"earlier","data":["earlier line"]})";
    if (!writeapi::parse(earlier, &out).ok()) return;
    g_allocations = 0;
    g_fail_at = fail_at;
    g_counting = true;
    try {
      (void)writeapi::parse(body, &out);
    } catch (const std::bad_alloc&) {
      attempt.threw = true;
    }
    g_counting = false;
    g_fail_at = -1;
    attempt.any_allocation_failed = g_allocations.load() > fail_at;
    attempt.kept_nothing = out.lines.empty() && out.access_key.empty() && out.device_id.empty() &&
                           out.request_id.empty() && out.item_count == 0 && !out.has_device_id && !out.has_request_id;
    writeapi::Status status = writeapi::parse(body, &out);
    attempt.then_ok = status.code() == expected_code && out.lines == expected_lines && out.access_key == expected_key;
  }).join();
  return attempt;
}

}  // namespace

TEST_CASE("parse: a failed allocation at any point throws std::bad_alloc and keeps nothing", "[perf][alloc]") {
  std::string big = R"({"accessKey":")" + std::string(100, 'k') + R"(","deviceId":")" + std::string(60, 'd') +
                    R"(","requestId":")" + std::string(40, 'r') + R"(",)";
  for (int i = 0; i < 12; ++i) big += R"("field\u00e9)" + std::to_string(i) + R"(":[1,{"a":"b"}],)";
  big += R"("data":[{"t":1},"x\ny"])" + std::string(3000, ' ') + "}";
  const std::string not_utf8 = R"({"accessKey":")" + std::string(40, 'K') + "\",\"data\":[\"caf\xff\"]}";
  struct Case {
    const char* name;
    std::string body;
    writeapi::ErrorCode code;
    std::string lines;
    std::string key;
  };
  const Case cases[] = {
      {"a body with long and escaped fields", big, writeapi::ErrorCode::ok, "{\"t\":1}\n\"x\\ny\"\n",
       std::string(100, 'k')},
      {"a body that is not UTF-8", not_utf8, writeapi::ErrorCode::invalid_utf8, "", ""},
  };
  for (const Case& c : cases) {
    long failures = 0;
    for (long fail_at = 0;; ++fail_at) {
      INFO(c.name << ": allocation " << fail_at << " fails");
      const Attempt attempt = fail_allocation(fail_at, c.body, c.code, c.lines, c.key);
      if (!attempt.any_allocation_failed) {
        CHECK_FALSE(attempt.threw);
        break;
      }
      ++failures;
      CHECK(attempt.threw);
      CHECK(attempt.kept_nothing);
      CHECK(attempt.then_ok);
      REQUIRE(fail_at < 1000);
    }
    INFO(c.name);
    CHECK(failures >= 2);  // at least the container stack and the lines' buffer
  }
}

// simdjson allocates when it is first used, inside noexcept functions,
// where a failed allocation would end the process. parse() makes that first
// use while the library loads; here (its own process under ctest) the first
// body with non-ASCII bytes, the first that needs simdjson's UTF-8 check,
// is parsed with each of its allocations failing in turn.
TEST_CASE("parse: the first body that needs the UTF-8 check survives failed allocations", "[perf][alloc]") {
  const std::string body = "{\"accessKey\":\"" + std::string(40, 'K') + "\",\"data\":[\"caf\xc3\xa9\"]}";
  long failures = 0;
  for (long fail_at = 0;; ++fail_at) {
    INFO("allocation " << fail_at << " fails");
    writeapi::ParsedRequest out;
    bool threw = false;
    writeapi::Status status;
    g_allocations = 0;
    g_fail_at = fail_at;
    g_counting = true;
    try {
      status = writeapi::parse(body, &out);
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    g_counting = false;
    g_fail_at = -1;
    if (!threw) {
      CHECK(status.ok());
      CHECK(out.lines == "\"caf\xc3\xa9\"\n");
      break;
    }
    ++failures;
    CHECK(out.lines.empty());
    CHECK(out.access_key.empty());
    REQUIRE(fail_at < 1000);
  }
  CHECK(failures >= 1);
}
