// The request id table (lib/src/request_ids.h): id rules, duplicates,
// conflicts, in-flight waits, the window on the clock seam, the id cap.
#include <catch2/catch.hpp>

#include <malloc.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "request_ids.h"

using writeapi::ErrorCode;
using writeapi::ManualClock;
using writeapi::RequestFingerprint;
using writeapi::RequestIds;
using writeapi::RequestIdsOptions;
using writeapi::RequestOutcome;
using writeapi::Status;

// Heap bytes in use by this test program, to measure the memory per id.
namespace {
std::atomic<long long> heap_bytes{0};
}  // namespace

void* operator new(std::size_t size) {
  void* p = std::malloc(size == 0 ? 1 : size);
  if (p == nullptr) throw std::bad_alloc();
  heap_bytes.fetch_add(static_cast<long long>(malloc_usable_size(p)), std::memory_order_relaxed);
  return p;
}
void operator delete(void* p) noexcept {
  if (p == nullptr) return;
  heap_bytes.fetch_sub(static_cast<long long>(malloc_usable_size(p)), std::memory_order_relaxed);
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept { operator delete(p); }
// Every form that can reach the delete above comes from the new above: left
// to the runtime, the nothrow form would come from another allocator than
// this free(), which AddressSanitizer reports as alloc-dealloc-mismatch.
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return operator new(size);
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}
void operator delete(void* p, const std::nothrow_t&) noexcept { operator delete(p); }
void* operator new[](std::size_t size) { return operator new(size); }
void operator delete[](void* p) noexcept { operator delete(p); }
void operator delete[](void* p, std::size_t) noexcept { operator delete(p); }

namespace {

RequestIdsOptions options_with(ManualClock* clock, std::size_t max_ids = 1000) {
  RequestIdsOptions options;
  options.clock = clock;
  options.max_ids = max_ids;
  options.window = std::chrono::hours(24);
  options.wait_limit = std::chrono::seconds(30);
  return options;
}

RequestIds::Waiter no_waiter() {
  return [](const RequestOutcome&) { FAIL("unexpected waiter call"); };
}

const RequestFingerprint kBody = writeapi::request_fingerprint("b", "k", "{\"x\":1}\n");

// Acknowledges `id` with `items` in bucket "b".
void acknowledge(RequestIds& ids, const std::string& id, std::size_t items) {
  std::size_t unused = 0;
  REQUIRE(ids.begin("b", id, kBody, &unused, no_waiter()) == RequestIds::Begin::fresh);
  ids.finish("b", id, RequestOutcome{Status::Ok(), items});
}

}  // namespace

TEST_CASE("request ids are 1 to 128 bytes of printable ASCII", "[request_ids]") {
  CHECK(writeapi::validate_request_id("a").ok());
  CHECK(writeapi::validate_request_id(std::string(128, 'x')).ok());
  CHECK(writeapi::validate_request_id(" ~!").ok());
  CHECK(writeapi::validate_request_id("").code() == ErrorCode::invalid_request_id);
  CHECK(writeapi::validate_request_id(std::string(129, 'x')).code() == ErrorCode::invalid_request_id);
  CHECK(writeapi::validate_request_id("a\tb").code() == ErrorCode::invalid_request_id);
  CHECK(writeapi::validate_request_id("a\x7f").code() == ErrorCode::invalid_request_id);
  CHECK(writeapi::validate_request_id("\xc3\xa9").code() == ErrorCode::invalid_request_id);
}

TEST_CASE("a body id and a header id must agree", "[request_ids]") {
  std::string id;
  CHECK(writeapi::resolve_request_id(std::nullopt, std::nullopt, &id).ok());
  CHECK(id.empty());
  CHECK(writeapi::resolve_request_id("r1", std::nullopt, &id).ok());
  CHECK(id == "r1");
  CHECK(writeapi::resolve_request_id(std::nullopt, "r2", &id).ok());
  CHECK(id == "r2");
  CHECK(writeapi::resolve_request_id("r3", "r3", &id).ok());
  CHECK(id == "r3");
  CHECK(writeapi::resolve_request_id("r3", "r4", &id).code() == ErrorCode::invalid_request_id);
  CHECK(writeapi::resolve_request_id(std::nullopt, "bad\n", &id).code() == ErrorCode::invalid_request_id);
  // Present but empty (an empty Idempotency-Key header, requestId ""): malformed, not absent.
  CHECK(writeapi::resolve_request_id(std::nullopt, "", &id).code() == ErrorCode::invalid_request_id);
  CHECK(writeapi::resolve_request_id("", std::nullopt, &id).code() == ErrorCode::invalid_request_id);
}

TEST_CASE("fingerprints tell bucket, key and body apart", "[request_ids]") {
  using writeapi::request_fingerprint;
  CHECK(request_fingerprint("b", "k", "x") == request_fingerprint("b", "k", "x"));
  CHECK(request_fingerprint("b", "k", "x") != request_fingerprint("b", "k", "y"));
  CHECK(request_fingerprint("b", "k", "x") != request_fingerprint("b", "k2", "x"));
  CHECK(request_fingerprint("ab", "c", "x") != request_fingerprint("a", "bc", "x"));
}

TEST_CASE("an acknowledged id is a duplicate with its original count", "[request_ids]") {
  ManualClock clock;
  RequestIds ids(options_with(&clock));
  acknowledge(ids, "r1", 7);
  std::size_t items = 0;
  CHECK(ids.begin("b", "r1", kBody, &items, no_waiter()) == RequestIds::Begin::duplicate);
  CHECK(items == 7);
  // The same id in another bucket is another request.
  CHECK(ids.begin("other", "r1", kBody, &items, no_waiter()) == RequestIds::Begin::fresh);
  CHECK(ids.stats().duplicates == 1);
}

TEST_CASE("the same id with another fingerprint is a conflict", "[request_ids]") {
  ManualClock clock;
  RequestIds ids(options_with(&clock));
  acknowledge(ids, "r1", 1);
  std::size_t items = 0;
  auto other = writeapi::request_fingerprint("b", "k", "{\"x\":2}\n");
  CHECK(ids.begin("b", "r1", other, &items, no_waiter()) == RequestIds::Begin::conflict);
  CHECK(ids.stats().conflicts == 1);
  // In flight too.
  CHECK(ids.begin("b", "r2", kBody, &items, no_waiter()) == RequestIds::Begin::fresh);
  CHECK(ids.begin("b", "r2", other, &items, no_waiter()) == RequestIds::Begin::conflict);
}

TEST_CASE("a refused request forgets its id so a retry stores again", "[request_ids]") {
  ManualClock clock;
  RequestIds ids(options_with(&clock));
  std::size_t items = 0;
  REQUIRE(ids.begin("b", "r1", kBody, &items, no_waiter()) == RequestIds::Begin::fresh);
  ids.finish("b", "r1", RequestOutcome{Status(ErrorCode::storage_error, "disk"), 0});
  CHECK(ids.begin("b", "r1", kBody, &items, no_waiter()) == RequestIds::Begin::fresh);
  CHECK(ids.stats().remembered == 0);
}

TEST_CASE("a retry while the first is in flight gets the first's answer", "[request_ids]") {
  ManualClock clock;
  RequestIds ids(options_with(&clock));
  std::size_t items = 0;
  REQUIRE(ids.begin("b", "r1", kBody, &items, no_waiter()) == RequestIds::Begin::fresh);
  std::vector<RequestOutcome> answers;
  auto waiter = [&](const RequestOutcome& outcome) { answers.push_back(outcome); };
  CHECK(ids.begin("b", "r1", kBody, &items, waiter) == RequestIds::Begin::waiting);
  CHECK(ids.begin("b", "r1", kBody, &items, waiter) == RequestIds::Begin::waiting);
  CHECK(answers.empty());
  ids.finish("b", "r1", RequestOutcome{Status::Ok(), 3});
  REQUIRE(answers.size() == 2);
  CHECK(answers[0].status.ok());
  CHECK(answers[0].items == 3);
  // Finishing twice does nothing more.
  ids.finish("b", "r1", RequestOutcome{Status::Ok(), 3});
  CHECK(answers.size() == 2);
}

TEST_CASE("waiters per id are bounded and time out on the clock", "[request_ids]") {
  ManualClock clock;
  RequestIds ids(options_with(&clock));
  std::size_t items = 0;
  REQUIRE(ids.begin("b", "r1", kBody, &items, no_waiter()) == RequestIds::Begin::fresh);
  std::vector<RequestOutcome> answers;
  auto waiter = [&](const RequestOutcome& outcome) { answers.push_back(outcome); };
  for (std::size_t i = 0; i < RequestIds::kMaxWaitersPerId; ++i)
    REQUIRE(ids.begin("b", "r1", kBody, &items, waiter) == RequestIds::Begin::waiting);
  CHECK(ids.begin("b", "r1", kBody, &items, waiter) == RequestIds::Begin::busy);
  clock.advance(std::chrono::seconds(29));
  ids.expire_waiters();
  CHECK(answers.empty());
  clock.advance(std::chrono::seconds(1));
  ids.expire_waiters();
  REQUIRE(answers.size() == RequestIds::kMaxWaitersPerId);
  CHECK(answers[0].status.code() == ErrorCode::storage_error);
  CHECK(answers[0].status.retry_after_seconds() > 0);
  // The first request still finishes normally, with no one left waiting.
  ids.finish("b", "r1", RequestOutcome{Status::Ok(), 1});
  CHECK(answers.size() == RequestIds::kMaxWaitersPerId);
  CHECK(ids.begin("b", "r1", kBody, &items, no_waiter()) == RequestIds::Begin::duplicate);
}

TEST_CASE("expire_waiters_if_due runs the expiry at most once a second", "[request_ids]") {
  ManualClock clock;
  RequestIds ids(options_with(&clock));
  std::size_t items = 0;
  REQUIRE(ids.begin("b", "r1", kBody, &items, no_waiter()) == RequestIds::Begin::fresh);
  std::vector<RequestOutcome> answers;
  REQUIRE(ids.begin("b", "r1", kBody, &items, [&](const RequestOutcome& o) { answers.push_back(o); }) ==
          RequestIds::Begin::waiting);
  ids.expire_waiters_if_due();  // due (never ran): nothing is old enough yet
  clock.advance(std::chrono::milliseconds(30500));
  REQUIRE(ids.begin("b", "r1", kBody, &items, [&](const RequestOutcome& o) { answers.push_back(o); }) ==
          RequestIds::Begin::waiting);
  ids.expire_waiters_if_due();  // due again: the first waiter is past the 30 s limit
  CHECK(answers.size() == 1);
  clock.advance(std::chrono::seconds(30));
  ids.expire_waiters_if_due();
  CHECK(answers.size() == 2);
  // A waiter just short of its limit at a run, past it half a second
  // later: the next run is not due yet, the one after is.
  clock.advance(std::chrono::seconds(60));
  REQUIRE(ids.begin("b", "r1", kBody, &items, [&](const RequestOutcome& o) { answers.push_back(o); }) ==
          RequestIds::Begin::waiting);
  clock.advance(std::chrono::milliseconds(29700));
  ids.expire_waiters_if_due();
  CHECK(answers.size() == 2);
  clock.advance(std::chrono::milliseconds(500));
  ids.expire_waiters_if_due();  // within a second of the last run: skipped
  CHECK(answers.size() == 2);
  clock.advance(std::chrono::milliseconds(600));
  ids.expire_waiters_if_due();
  CHECK(answers.size() == 3);
}

TEST_CASE("ids are remembered for the window and no longer", "[request_ids]") {
  ManualClock clock;
  RequestIds ids(options_with(&clock));
  acknowledge(ids, "r1", 2);
  std::size_t items = 0;
  clock.advance(std::chrono::hours(24) - std::chrono::seconds(1));
  CHECK(ids.begin("b", "r1", kBody, &items, no_waiter()) == RequestIds::Begin::duplicate);
  clock.advance(std::chrono::seconds(1));
  CHECK(ids.begin("b", "r1", kBody, &items, no_waiter()) == RequestIds::Begin::fresh);
}

TEST_CASE("the id cap per bucket evicts the oldest id", "[request_ids]") {
  ManualClock clock;
  RequestIds ids(options_with(&clock, 3));
  for (int i = 0; i < 4; ++i) {
    std::string id = "r";
    id += std::to_string(i);
    acknowledge(ids, id, 1);
  }
  std::size_t items = 0;
  CHECK(ids.stats().evictions == 1);
  CHECK(ids.stats().remembered == 3);
  CHECK(ids.begin("b", "r3", kBody, &items, no_waiter()) == RequestIds::Begin::duplicate);
  CHECK(ids.begin("b", "r1", kBody, &items, no_waiter()) == RequestIds::Begin::duplicate);
  CHECK(ids.begin("b", "r0", kBody, &items, no_waiter()) == RequestIds::Begin::fresh);
}

TEST_CASE("restored ids are duplicates unless already outside the window", "[request_ids]") {
  ManualClock clock;
  RequestIds ids(options_with(&clock));
  ids.restore("b", "old", kBody, 5, clock.now() - std::chrono::hours(25));
  ids.restore("b", "new", kBody, 5, clock.now() - std::chrono::hours(1));
  std::size_t items = 0;
  CHECK(ids.begin("b", "old", kBody, &items, no_waiter()) == RequestIds::Begin::fresh);
  CHECK(ids.begin("b", "new", kBody, &items, no_waiter()) == RequestIds::Begin::duplicate);
  CHECK(items == 5);
}

TEST_CASE("memory per remembered id stays within the documented estimate", "[request_ids]") {
  ManualClock clock;
  constexpr int kIds = 100000;
  // 15-byte ids fit the small-string buffer; 16 bytes is the first that
  // does not, 36 a UUID, 128 the longest.
  for (std::size_t length : {15, 16, 36, 128}) {
    INFO("ids of " << length << " bytes");
    long long before = heap_bytes.load();
    RequestIds ids(options_with(&clock, kIds));
    for (int i = 0; i < kIds; ++i) {
      std::string id = std::to_string(i);
      id.insert(0, length - id.size(), 'r');
      acknowledge(ids, id, 1);
    }
    REQUIRE(ids.stats().remembered == static_cast<std::uint64_t>(kIds));
    long long per_id = (heap_bytes.load() - before) / kIds;
    INFO("heap bytes per remembered id: " << per_id << ", estimate " << RequestIds::bytes_per_id_estimate(length));
    CHECK(per_id <= static_cast<long long>(RequestIds::bytes_per_id_estimate(length)));
  }
}
