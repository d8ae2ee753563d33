// DeviceLimiter: token buckets, suspension, blocking and the bounded device
// table, driven by a ManualClock (no sleeps).
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "writeapi/auth.h"
#include "writeapi/clock.h"
#include "writeapi/ingest.h"
#include "writeapi/limits.h"
#include "writeapi/storage.h"

using namespace std::chrono_literals;
using writeapi::BucketLimits;
using writeapi::BucketLimitsMap;
using writeapi::DeviceLimiter;
using writeapi::DeviceLimiterOptions;
using writeapi::ErrorCode;
using writeapi::ManualClock;
using writeapi::Status;

namespace {

DeviceLimiterOptions options_with(const ManualClock& clock) {
  DeviceLimiterOptions options;
  options.clock = &clock;
  return options;
}

// Limits for bucket "b": devices at `rate`/`burst`, anonymous likewise.
BucketLimitsMap limits_for_b(double rate, double burst, std::chrono::seconds max_suspension = 3600s) {
  BucketLimits limits;
  limits.device = {rate, burst};
  limits.anonymous = {rate, burst};
  limits.max_suspension = max_suspension;
  BucketLimitsMap map;
  map.emplace("b", limits);
  return map;
}

// Sends requests of `device` until one is answered `suspended`; returns
// that answer's Retry-After. Fails if none comes within 1000 requests.
int abuse_until_suspended(DeviceLimiter& limiter, std::string_view device, std::string_view bucket = "b") {
  for (int i = 0; i < 1000; ++i) {
    Status s = limiter.admit(bucket, device);
    if (s.code() == ErrorCode::suspended) return s.retry_after_seconds();
    REQUIRE((s.ok() || s.code() == ErrorCode::rate_limited));
  }
  FAIL("no suspension after 1000 requests");
  return 0;
}

}  // namespace

TEST_CASE("limits: defaults are the documented ones", "[limits]") {
  BucketLimits limits;
  CHECK(limits.anonymous.rate == 100);
  CHECK(limits.anonymous.burst == 2000);
  CHECK(limits.device.rate == 10);
  CHECK(limits.device.burst == 100);
  CHECK(limits.max_suspension == 3600s);
  DeviceLimiterOptions options;
  CHECK(options.max_tracked_devices == 100000);
  CHECK(options.first_suspension == 10s);
  CHECK(options.suspend_after_rejections == 30);
  CHECK(options.rejection_window == 60s);

  // A bucket without configured limits gets them: 100 device requests at
  // once pass, the 101st is limited.
  ManualClock clock;
  DeviceLimiter limiter(options_with(clock));
  for (int i = 0; i < 100; ++i) REQUIRE(limiter.admit("any", "dev").ok());
  CHECK(limiter.admit("any", "dev").code() == ErrorCode::rate_limited);
  for (int i = 0; i < 2000; ++i) REQUIRE(limiter.admit("any", "").ok());
  CHECK(limiter.admit("any", "").code() == ErrorCode::rate_limited);
}

TEST_CASE("limits: a burst passes, then Retry-After is the wait for the next token", "[limits]") {
  ManualClock clock;
  DeviceLimiter limiter(options_with(clock));
  limiter.set_limits(limits_for_b(2, 5));

  for (int i = 0; i < 5; ++i) REQUIRE(limiter.admit("b", "dev").ok());
  Status limited = limiter.admit("b", "dev");
  CHECK(limited.code() == ErrorCode::rate_limited);
  CHECK(limited.http_status() == 429);
  CHECK(limited.retry_after_seconds() == 1);  // 0.5 s, rounded up
  CHECK_FALSE(limited.message().empty());

  clock.advance(500ms);  // one token
  CHECK(limiter.admit("b", "dev").ok());
  CHECK(limiter.admit("b", "dev").code() == ErrorCode::rate_limited);

  SECTION("a slow rate gives a long Retry-After; refusals cost no token") {
    limiter.set_limits(limits_for_b(0.1, 1));
    clock.advance(100s);
    REQUIRE(limiter.admit("b", "slow").ok());
    Status s = limiter.admit("b", "slow");
    CHECK(s.retry_after_seconds() == 10);
    clock.advance(2500ms);  // 0.25 tokens: 7.5 s to go
    CHECK(limiter.admit("b", "slow").retry_after_seconds() == 8);
    clock.advance(7500ms);  // exactly one token, although refused twice meanwhile
    CHECK(limiter.admit("b", "slow").ok());
  }
  SECTION("the bucket refills to its burst, not beyond") {
    clock.advance(1h);
    for (int i = 0; i < 5; ++i) REQUIRE(limiter.admit("b", "dev").ok());
    CHECK(limiter.admit("b", "dev").code() == ErrorCode::rate_limited);
  }
}

TEST_CASE("limits: repeated refusals start a suspension with the remaining time in Retry-After", "[limits]") {
  ManualClock clock;
  DeviceLimiter limiter(options_with(clock));
  limiter.set_limits(limits_for_b(1, 1));

  REQUIRE(limiter.admit("b", "loop").ok());
  // 29 refusals are rate_limited; the 30th (within 60 s) suspends.
  for (int i = 0; i < 29; ++i) REQUIRE(limiter.admit("b", "loop").code() == ErrorCode::rate_limited);
  Status s = limiter.admit("b", "loop");
  CHECK(s.code() == ErrorCode::suspended);
  CHECK(s.http_status() == 429);
  CHECK(s.retry_after_seconds() == 10);
  CHECK(limiter.stats().suspensions == 1);

  clock.advance(4s);  // tokens have refilled, but the suspension holds
  s = limiter.admit("b", "loop");
  CHECK(s.code() == ErrorCode::suspended);
  CHECK(s.retry_after_seconds() == 6);
  clock.advance(5500ms);
  CHECK(limiter.admit("b", "loop").retry_after_seconds() == 1);  // 0.5 s left: at least 1

  // Other devices of the bucket are not affected.
  CHECK(limiter.admit("b", "neighbour").ok());

  clock.advance(500ms);  // the suspension ends by itself
  CHECK(limiter.admit("b", "loop").ok());
}

TEST_CASE("limits: refusals spread wider than the window never suspend", "[limits]") {
  ManualClock clock;
  DeviceLimiter limiter(options_with(clock));
  limiter.set_limits(limits_for_b(1, 1));
  // One accepted and one refused request every 3 s: 20 refusals a minute.
  for (int i = 0; i < 200; ++i) {
    REQUIRE(limiter.admit("b", "steady").ok());
    REQUIRE(limiter.admit("b", "steady").code() == ErrorCode::rate_limited);
    clock.advance(3s);
  }
  CHECK(limiter.stats().suspensions == 0);
}

TEST_CASE("limits: suspensions double up to the maximum and start over after a good spell", "[limits]") {
  ManualClock clock;
  DeviceLimiter limiter(options_with(clock));
  limiter.set_limits(limits_for_b(1, 1, /*max_suspension=*/100s));

  std::vector<int> periods;
  for (int round = 0; round < 7; ++round) {
    int period = abuse_until_suspended(limiter, "loop");
    periods.push_back(period);
    // Just before the end it is still suspended; at the end it is not.
    clock.advance(std::chrono::seconds(period) - 1s);
    REQUIRE(limiter.admit("b", "loop").code() == ErrorCode::suspended);
    clock.advance(1s);
  }
  CHECK(periods == std::vector<int>{10, 20, 40, 80, 100, 100, 100});

  // An hour after the last suspension ended, the next one is short again.
  clock.advance(3600s);
  CHECK(abuse_until_suspended(limiter, "loop") == 10);

  SECTION("the default maximum is one hour, also for a device sitting its suspensions out quietly") {
    limiter.set_limits(limits_for_b(1, 1));
    std::vector<int> long_periods;
    for (int round = 0; round < 12; ++round) {
      clock.advance(std::chrono::seconds(long_periods.empty() ? 10 : long_periods.back()));
      long_periods.push_back(abuse_until_suspended(limiter, "loop"));
    }
    CHECK(long_periods == std::vector<int>{20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600, 3600, 3600});
  }
}

TEST_CASE("limits: anonymous requests share one budget per bucket, devices have their own", "[limits]") {
  ManualClock clock;
  DeviceLimiter limiter(options_with(clock));
  BucketLimitsMap map = limits_for_b(1, 3);
  map.emplace("c", map.at("b"));
  limiter.set_limits(map);

  // Three anonymous requests (from whichever devices: they are
  // indistinguishable) exhaust the bucket's shared budget.
  for (int i = 0; i < 3; ++i) REQUIRE(limiter.admit("b", "").ok());
  Status s = limiter.admit("b", "");
  CHECK(s.code() == ErrorCode::rate_limited);
  CHECK(s.message().find("deviceId") != std::string::npos);
  // Named devices of the bucket and anonymous requests of another bucket
  // are unaffected.
  CHECK(limiter.admit("b", "a").ok());
  CHECK(limiter.admit("b", "b").ok());
  CHECK(limiter.admit("c", "").ok());

  SECTION("one named device exhausting or suspending itself leaves the others alone") {
    CHECK(abuse_until_suspended(limiter, "a") == 10);
    CHECK(limiter.admit("b", "a").code() == ErrorCode::suspended);
    CHECK(limiter.admit("b", "b").ok());
    CHECK(limiter.admit("b", "c").ok());
  }
  SECTION("the anonymous budget is suspended as a whole") {
    CHECK(abuse_until_suspended(limiter, "") == 10);
    CHECK(limiter.admit("b", "").code() == ErrorCode::suspended);
    CHECK(limiter.admit("b", "a").ok());
    CHECK(limiter.admit("c", "").ok());
  }
}

TEST_CASE("limits: per-device rules and blocked devices", "[limits]") {
  ManualClock clock;
  DeviceLimiter limiter(options_with(clock));
  BucketLimits limits;
  limits.device = {1, 2};
  limits.devices["big"].limit = {1, 10};
  limits.devices["broken_7"].blocked = true;
  BucketLimitsMap map;
  map.emplace("b", limits);
  limiter.set_limits(map);

  for (int i = 0; i < 10; ++i) REQUIRE(limiter.admit("b", "big").ok());
  CHECK(limiter.admit("b", "big").code() == ErrorCode::rate_limited);
  for (int i = 0; i < 2; ++i) REQUIRE(limiter.admit("b", "small").ok());
  CHECK(limiter.admit("b", "small").code() == ErrorCode::rate_limited);

  const auto tracked = limiter.stats().tracked_devices;
  Status blocked = limiter.admit("b", "broken_7");
  CHECK(blocked.code() == ErrorCode::device_blocked);
  CHECK(blocked.http_status() == 403);
  CHECK(blocked.retry_after_seconds() == 0);
  CHECK(limiter.stats().blocked == 1);
  CHECK(limiter.stats().tracked_devices == tracked);  // blocked devices cost no memory
  // Blocked in this bucket only.
  CHECK(limiter.admit("other", "broken_7").ok());

  SECTION("a reload applies new limits to budgets already tracked") {
    limits.devices.erase("broken_7");
    limits.devices["big"].limit = {1, 3};
    map["b"] = limits;
    limiter.set_limits(map);
    CHECK(limiter.admit("b", "broken_7").ok());
    clock.advance(1h);  // refills "big" to its new burst of 3, not 10
    for (int i = 0; i < 3; ++i) REQUIRE(limiter.admit("b", "big").ok());
    CHECK(limiter.admit("b", "big").code() == ErrorCode::rate_limited);
  }
}

TEST_CASE("limits: a million distinct deviceIds keep the table at its cap", "[limits]") {
  ManualClock clock;
  DeviceLimiter limiter(options_with(clock));  // default cap: 100,000
  std::string device;
  for (int i = 0; i < 1000000; ++i) {
    device = "attacker-";
    device += std::to_string(i);
    Status s = limiter.admit("b", device);
    if (!s.ok()) FAIL("device " << device << ": " << s.message());
  }
  auto stats = limiter.stats();
  CHECK(stats.tracked_devices == 100000);
  CHECK(stats.evictions == 900000);
}

TEST_CASE("limits: at the cap the least recently seen device is evicted and restarts with one burst", "[limits]") {
  ManualClock clock;
  DeviceLimiterOptions options = options_with(clock);
  options.max_tracked_devices = 3;
  DeviceLimiter limiter(options);
  limiter.set_limits(limits_for_b(1, 2));

  for (int i = 0; i < 2; ++i) REQUIRE(limiter.admit("b", "greedy").ok());
  REQUIRE(limiter.admit("b", "greedy").code() == ErrorCode::rate_limited);
  REQUIRE(limiter.admit("b", "x").ok());
  REQUIRE(limiter.admit("b", "y").ok());
  REQUIRE(limiter.admit("b", "greedy").code() == ErrorCode::rate_limited);  // now the most recent
  REQUIRE(limiter.admit("b", "z").ok());                                    // evicts x, the least recently seen
  CHECK(limiter.stats().tracked_devices == 3);
  CHECK(limiter.stats().evictions == 1);
  REQUIRE(limiter.admit("b", "greedy").code() == ErrorCode::rate_limited);  // still tracked

  REQUIRE(limiter.admit("b", "u").ok());
  REQUIRE(limiter.admit("b", "v").ok());
  REQUIRE(limiter.admit("b", "w").ok());  // greedy is evicted by now
  // Evicted, greedy starts over with a full bucket: its burst, no more.
  CHECK(limiter.admit("b", "greedy").ok());
  CHECK(limiter.admit("b", "greedy").ok());
  CHECK(limiter.admit("b", "greedy").code() == ErrorCode::rate_limited);
  CHECK(limiter.stats().tracked_devices == 3);
}

TEST_CASE("limits: idle devices expire, suspended ones are kept until their suspension ends", "[limits]") {
  ManualClock clock;
  DeviceLimiterOptions options = options_with(clock);
  options.idle_expiry = 600s;
  options.first_suspension = 1000s;  // outlasts idle_expiry
  options.suspension_reset = 600s;
  DeviceLimiter limiter(options);
  limiter.set_limits(limits_for_b(1, 1));

  for (int i = 0; i < 10; ++i) REQUIRE(limiter.admit("b", "idle-" + std::to_string(i)).ok());
  REQUIRE(abuse_until_suspended(limiter, "loop") == 1000);
  CHECK(limiter.stats().tracked_devices == 11);

  // Idle entries are swept a few per request, so an idle table shrinks
  // without a background thread; the suspended one stays.
  clock.advance(601s);
  for (int i = 0; i < 5; ++i) limiter.admit("b", "fresh").ignore_error();
  CHECK(limiter.stats().expirations == 10);
  CHECK(limiter.stats().tracked_devices == 2);  // loop and fresh
  Status s = limiter.admit("b", "loop");
  CHECK(s.code() == ErrorCode::suspended);
  CHECK(s.retry_after_seconds() == 399);

  // Once its suspension is over and its history no longer counts
  // (suspension_reset), it is forgotten too, and comes back with no
  // history: the first period again.
  clock.advance(1000s);
  limiter.admit("b", "fresh").ignore_error();
  CHECK(limiter.stats().expirations == 12);  // loop and the old "fresh"
  CHECK(limiter.stats().tracked_devices == 1);
  CHECK(abuse_until_suspended(limiter, "loop") == 1000);
}

TEST_CASE("limits: concurrent admits are safe", "[limits]") {
  DeviceLimiter limiter;  // the real clock
  limiter.set_limits(limits_for_b(1000000, 1000000));
  std::atomic<int> refused{0};  // Catch2 assertions are not thread-safe
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&limiter, &refused, t] {
      for (int i = 0; i < 20000; ++i) {
        std::string device;  // built by append: "d" + ... trips a false GCC 12 -Wrestrict
        if (i % 3 != 0) device.append("d").append(std::to_string((t * 7 + i) % 500));
        Status s = limiter.admit("b", device);
        if (!s.ok()) ++refused;
        if (i % 5000 == 0) limiter.set_limits(limits_for_b(1000000, 1000000));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(refused == 0);
  CHECK(limiter.stats().tracked_devices == 500);
}

TEST_CASE("limits: Ingestor stores nothing of a limited request", "[limits][ingest]") {
  // An authorizer that accepts the key "good" for every bucket.
  struct AcceptGood : writeapi::Authorizer {
    Status authorize(std::string_view, std::string_view key, std::string*) const override {
      return key == "good" ? Status() : Status(ErrorCode::access_denied, "no");
    }
  } authorizer;
  ManualClock clock;
  DeviceLimiter limiter(options_with(clock));
  BucketLimitsMap map = limits_for_b(1, 2);
  map.at("b").devices["broken_7"].blocked = true;
  limiter.set_limits(map);
  auto storage = writeapi::make_memory_storage();
  writeapi::Ingestor ingestor(&authorizer, &limiter, storage.get());

  auto post = [&](std::string_view key, std::string_view device) {
    std::string body = "{\"accessKey\":\"" + std::string(key) + "\"";
    if (!device.empty()) body += ",\"deviceId\":\"" + std::string(device) + "\"";
    body += ",\"data\":[1,2]}";
    writeapi::IngestRequest request;
    request.bucket = "b";
    request.key = "obj";
    request.content_type = "application/json";
    request.body = body;
    writeapi::IngestResult result;
    Status s = ingestor.ingest(request, &result);
    if (!s.ok()) CHECK(result.items == 0);
    return s;
  };
  // Wrong keys spend no budget.
  for (int i = 0; i < 10; ++i) REQUIRE(post("bad", "dev").code() == ErrorCode::access_denied);
  REQUIRE(post("good", "dev").ok());
  REQUIRE(post("good", "dev").ok());
  Status limited = post("good", "dev");
  CHECK(limited.code() == ErrorCode::rate_limited);
  CHECK(limited.retry_after_seconds() == 1);
  CHECK(post("good", "broken_7").code() == ErrorCode::device_blocked);
  std::string contents;
  REQUIRE(storage->read_object("b", "obj", &contents).ok());
  CHECK(contents == "1\n2\n1\n2\n");
}

TEST_CASE("limits: devices() reports each device's state, budget and recent counts, sorted", "[limits][devices]") {
  ManualClock clock;
  DeviceLimiter limiter(options_with(clock));
  BucketLimitsMap map = limits_for_b(1, 2);
  writeapi::DeviceRule blocked;
  blocked.blocked = true;
  map["b"].devices.emplace("m_blocked", blocked);
  limiter.set_limits(map);
  REQUIRE(limiter.admit("b", "z_calm").ok());
  REQUIRE(limiter.admit("b", "a_busy").ok());
  REQUIRE(limiter.admit("b", "a_busy").ok());
  CHECK(limiter.admit("b", "a_busy").code() == ErrorCode::rate_limited);
  const int suspended_for = abuse_until_suspended(limiter, "k_loop");
  REQUIRE(limiter.admit("b", "").ok());
  REQUIRE(limiter.admit("other", "x").ok());
  CHECK(limiter.admit("b", "m_blocked").code() == ErrorCode::device_blocked);

  bool truncated = true;
  std::vector<writeapi::DeviceState> devices = limiter.devices("b", 100, &truncated);
  CHECK_FALSE(truncated);
  REQUIRE(devices.size() == 5);
  using Kind = writeapi::DeviceState::Kind;
  CHECK(devices[0].device_id.empty());  // the anonymous budget first
  CHECK(devices[0].state == Kind::ok);
  CHECK(devices[1].device_id == "a_busy");
  CHECK(devices[1].state == Kind::rate_limited);
  CHECK(devices[1].seconds_left == 1);
  CHECK(devices[1].recent_requests == 3);
  CHECK(devices[1].recent_refusals == 1);
  CHECK(devices[1].limit.rate == 1);
  CHECK(devices[1].limit.burst == 2);
  CHECK(devices[2].device_id == "k_loop");
  CHECK(devices[2].state == Kind::suspended);
  CHECK(devices[2].seconds_left == suspended_for);
  CHECK(devices[2].recent_refusals >= 30);
  CHECK(devices[3].device_id == "m_blocked");
  CHECK(devices[3].state == Kind::blocked);
  CHECK(devices[4].device_id == "z_calm");
  CHECK(devices[4].state == Kind::ok);
  CHECK(devices[4].tokens == Approx(1));
  CHECK(devices[4].recent_requests == 1);

  // Time moves on: the suspension counts down, tokens come back, and the
  // recent counts leave the window.
  clock.advance(std::chrono::seconds(5));
  devices = limiter.devices("b", 100, &truncated);
  CHECK(devices[2].seconds_left == suspended_for - 5);
  CHECK(devices[1].state == Kind::ok);
  CHECK(devices[1].tokens == Approx(2));
  clock.advance(writeapi::kDeviceRecentWindow + std::chrono::seconds(10));
  devices = limiter.devices("b", 100, &truncated);
  CHECK(devices[4].recent_requests == 0);
  CHECK(devices[1].recent_requests == 0);

  // The cap.
  devices = limiter.devices("b", 2, &truncated);
  CHECK(truncated);
  CHECK(devices.size() == 2);
  CHECK(limiter.devices("nobody", 10, &truncated).empty());
}
