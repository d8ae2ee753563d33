// Request limits per device: token buckets, temporary suspension, blocking.
//
// A DeviceLimiter decides, for an authorized request, whether it may be
// stored now. Ingestor asks it after authorization and before storage, so
// a refused request stores nothing and an unauthorized one costs no budget.
//
//   - Requests with a deviceId draw on that device's own token bucket
//     (one per (bucket, deviceId)): a misbehaving device never slows the
//     others of its bucket.
//   - Requests without a deviceId share one token bucket per bucket: one
//     broken anonymous device can exhaust it for all of them, as the Write
//     API document warns. Send a deviceId.
//   - A request over budget gets rate_limited (429) with Retry-After set to
//     the whole seconds until a token is available (at least 1).
//   - A budget that keeps being exceeded (suspend_after_rejections refusals
//     within rejection_window) is suspended: first for first_suspension
//     (10 s), then twice as long at each new suspension, up to the bucket's
//     max_suspension (1 hour). While suspended every request gets suspended
//     (429) with Retry-After set to the time left. Suspension ends by itself;
//     after suspension_reset without a new one the period starts over at
//     first_suspension.
//   - A device marked blocked gets device_blocked (403) and is not tracked.
//
// Memory is bounded: at most max_tracked_devices (device) budgets are kept.
// A budget idle for idle_expiry is forgotten (unless suspended, or
// suspended less than suspension_reset ago); at the cap the least recently
// seen one is evicted, whatever its state. A forgotten or evicted device
// starts again with a full bucket and no suspension history: it can send at
// most its burst before being limited again, never more. Anonymous budgets
// (one per bucket) are not counted against the cap.
//
// Thread-safety: every method may be called concurrently.
#ifndef WRITEAPI_LIMITS_H_
#define WRITEAPI_LIMITS_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "writeapi/clock.h"
#include "writeapi/export.h"
#include "writeapi/status.h"

namespace writeapi {

// A token bucket: `burst` requests may arrive at once after a quiet
// period; beyond that, `rate` requests per second are sustained.
// Preconditions: rate > 0, burst >= 1.
struct WRITEAPI_EXPORT RateLimit {
  double rate = 1;   // tokens added per second
  double burst = 1;  // bucket capacity, in requests
};

// Defaults, generous for real sensors (which report every few seconds or
// minutes) while stopping a device stuck in a send loop.
//
// Anonymous (per bucket, shared): 100 requests/s sustained, bursts of
// 2,000, so a fleet of anonymous devices reconnecting at once after an
// outage is served.
inline constexpr RateLimit kDefaultAnonymousLimit{100, 2000};
// Per device: 10 requests/s sustained, bursts of 100 (a device flushing
// readings buffered while offline, one request each).
inline constexpr RateLimit kDefaultDeviceLimit{10, 100};
// Longest suspension: 1 hour.
inline constexpr std::chrono::seconds kDefaultMaxSuspension{3600};

// An operator's rule for one deviceId of a bucket.
struct WRITEAPI_EXPORT DeviceRule {
  // Refuse every request of this device with device_blocked.
  bool blocked = false;
  // The device's own budget, replacing BucketLimits::device.
  RateLimit limit = kDefaultDeviceLimit;
};

// The limits of one bucket.
struct WRITEAPI_EXPORT BucketLimits {
  // Shared budget of the requests without a deviceId.
  RateLimit anonymous = kDefaultAnonymousLimit;
  // Budget of each deviceId without a rule of its own.
  RateLimit device = kDefaultDeviceLimit;
  // Cap of the doubling suspension period (at least 1 s).
  std::chrono::seconds max_suspension = kDefaultMaxSuspension;
  // Rules for particular devices, by deviceId.
  std::map<std::string, DeviceRule, std::less<>> devices;
};

// Limits by bucket name. A bucket not listed gets BucketLimits{}.
using BucketLimitsMap = std::map<std::string, BucketLimits, std::less<>>;

struct WRITEAPI_EXPORT DeviceLimiterOptions {
  // Device budgets kept at most; beyond it the least recently seen is
  // evicted. Each costs about 200 bytes plus its bucket name and deviceId:
  // 100,000 take about 21 MB with short ids, at most about 60 MB with
  // maximal names. Default 100,000.
  std::size_t max_tracked_devices = 100000;
  // A device budget unseen for this long is forgotten, unless its
  // suspension history still counts (see suspension_reset). Default 1 hour.
  std::chrono::seconds idle_expiry{3600};
  // A budget refused this many times within rejection_window is
  // suspended. Clients that honour Retry-After never get there. Default
  // 30 within 60 s.
  int suspend_after_rejections = 30;
  std::chrono::seconds rejection_window{60};
  // First suspension period; each next one doubles up to max_suspension.
  // Default 10 s.
  std::chrono::seconds first_suspension{10};
  // A suspension starting this long after the previous one ended starts
  // over at first_suspension. Default 1 hour.
  std::chrono::seconds suspension_reset{3600};
  // Time source; nullptr means real_clock(). Must outlive the limiter.
  const Clock* clock = nullptr;
};

// Monotonic counters (except tracked_devices, a gauge).
struct WRITEAPI_EXPORT DeviceLimiterStats {
  std::uint64_t tracked_devices = 0;  // device budgets in the table now
  std::uint64_t rate_limited = 0;     // requests refused with rate_limited
  std::uint64_t suspended = 0;        // requests refused with suspended
  std::uint64_t blocked = 0;          // requests refused with device_blocked
  std::uint64_t suspensions = 0;      // suspensions started
  std::uint64_t evictions = 0;        // budgets evicted at the cap
  std::uint64_t expirations = 0;      // budgets forgotten after idle_expiry
};

// What the limiter knows of one device of a bucket, for its owner
// (DeviceLimiter::devices; GET /devices/v3/bucket/<bucket>).
struct WRITEAPI_EXPORT DeviceState {
  enum class Kind {
    ok,            // its next request would be admitted
    rate_limited,  // its budget is empty: the next request waits for a token
    suspended,     // refused until the suspension ends
    blocked,       // blocked by the keys file: always refused
  };
  std::string device_id;  // empty: the bucket's shared budget of requests without a deviceId
  Kind state = Kind::ok;
  // suspended: whole seconds until it ends; rate_limited: until a token is
  // back (both at least 1); otherwise 0.
  int seconds_left = 0;
  RateLimit limit;    // its budget (rate and burst); the bucket's device budget for a blocked device
  double tokens = 0;  // requests it could send at once now (0 for blocked and suspended)
  // Requests seen, and of them refused (rate_limited or suspended), over
  // the last recent_window (at recent_slot resolution). Blocked devices
  // are not tracked: 0.
  std::uint64_t recent_requests = 0;
  std::uint64_t recent_refusals = 0;
};

// The window of DeviceState's recent counts, kept in slots.
inline constexpr std::chrono::seconds kDeviceRecentWindow{60};
inline constexpr std::chrono::seconds kDeviceRecentSlot{10};

class WRITEAPI_EXPORT DeviceLimiter {
 public:
  explicit DeviceLimiter(DeviceLimiterOptions options = DeviceLimiterOptions());
  ~DeviceLimiter();
  DeviceLimiter(const DeviceLimiter&) = delete;
  DeviceLimiter& operator=(const DeviceLimiter&) = delete;

  // Replaces the limits of every bucket (a keys file reload calls this).
  // Budgets already tracked keep their tokens and suspensions; new rates
  // and bursts apply from the next request. Anonymous budgets of buckets
  // no longer listed are dropped.
  void set_limits(BucketLimitsMap limits);

  // Takes one request of `device_id` (empty: the request had no deviceId)
  // to `bucket`. Returns ok, or rate_limited / suspended (with
  // retry_after_seconds() >= 1), or device_blocked. A refused request
  // consumes no token.
  Status admit(std::string_view bucket, std::string_view device_id);

  DeviceLimiterStats stats() const;

  // The devices of `bucket` the limiter knows, sorted by deviceId: its
  // tracked budgets (the shared anonymous one first, device_id empty) and
  // the devices its limits block. At most max_devices (then *truncated is
  // set). Reads the state without changing it; holds the limiter's lock
  // for the walk over the bucket's budgets, so max_devices bounds how
  // long admit() may wait for it.
  std::vector<DeviceState> devices(std::string_view bucket, std::size_t max_devices, bool* truncated) const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace writeapi

#endif  // WRITEAPI_LIMITS_H_
