// Clock: where libwriteapi reads the time.
//
// Rate limits and suspensions (limits.h) measure time through a Clock
// rather than calling std::chrono::steady_clock directly, so tests can
// drive time by hand (ManualClock) instead of sleeping. Times are steady
// (monotonic): a wall-clock jump never lifts or lengthens a suspension.
//
// Thread-safety: now() may be called concurrently. ManualClock may be
// advanced from one thread while others read it.
#ifndef WRITEAPI_CLOCK_H_
#define WRITEAPI_CLOCK_H_

#include <atomic>
#include <chrono>
#include <cstdint>

#include "writeapi/export.h"

namespace writeapi {

class WRITEAPI_EXPORT Clock {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  using duration = std::chrono::steady_clock::duration;

  virtual ~Clock() = default;

  // The current steady time. Never goes backwards.
  virtual time_point now() const = 0;
};

// std::chrono::steady_clock behind the Clock interface. The returned clock
// lives for the whole process; never null.
WRITEAPI_EXPORT const Clock* real_clock() noexcept;

// A clock that moves only when told to, for tests.
class WRITEAPI_EXPORT ManualClock final : public Clock {
 public:
  // Starts at `start`; by default at one hour past the steady epoch, so
  // that "an hour ago" is still a valid time point.
  explicit ManualClock(time_point start = time_point(std::chrono::hours(1)))
      : ticks_(start.time_since_epoch().count()) {}

  time_point now() const override { return time_point(duration(ticks_.load(std::memory_order_acquire))); }

  // Moves the clock forward by `step` (a negative step is ignored: steady
  // time never goes backwards).
  void advance(duration step) {
    if (step.count() > 0) ticks_.fetch_add(step.count(), std::memory_order_acq_rel);
  }

 private:
  std::atomic<duration::rep> ticks_;
};

}  // namespace writeapi

#endif  // WRITEAPI_CLOCK_H_
