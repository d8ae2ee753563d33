#include "writeapi/limits.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <list>
#include <mutex>
#include <unordered_map>
#include <utility>

namespace writeapi {
namespace {

using TimePoint = Clock::time_point;
using Seconds = std::chrono::duration<double>;

// Retry-After is whole seconds, at least 1: "0" would invite an immediate
// retry that is refused again. Capped so a tiny rate cannot overflow int.
int retry_after_seconds(double seconds) {
  if (!(seconds < 1e9)) return 1000000000;
  return std::max(1, static_cast<int>(std::ceil(seconds)));
}

int retry_after_seconds(Clock::duration remaining) { return retry_after_seconds(Seconds(remaining).count()); }

// One token bucket with its suspension state.
struct Budget {
  double tokens = 0;
  TimePoint refilled{};  // time `tokens` was computed for
  TimePoint last_seen{};
  TimePoint window_start{};             // start of the current rejection window
  int rejections = 0;                   // refusals in that window
  TimePoint suspended_until{};          // not suspended when <= now
  std::chrono::seconds last_period{0};  // 0: never suspended

  // Requests and refusals per kDeviceRecentSlot, the slot of newest_slot (slot numbers count
  // kDeviceRecentSlot periods of the clock).
  static constexpr std::size_t kSlots = static_cast<std::size_t>(kDeviceRecentWindow / kDeviceRecentSlot);
  std::int64_t newest_slot = 0;
  std::array<std::uint32_t, kSlots> slot_requests{};
  std::array<std::uint32_t, kSlots> slot_refusals{};

  Budget(const RateLimit& limit, TimePoint now)
      : tokens(limit.burst), refilled(now), last_seen(now), window_start(now), newest_slot(slot_of(now)) {}

  static std::int64_t slot_of(TimePoint t) { return t.time_since_epoch() / kDeviceRecentSlot; }

  // Moves the slots on to the one of `now`, zeroing those skipped.
  void advance(TimePoint now) {
    const std::int64_t slot = slot_of(now);
    if (slot <= newest_slot) return;
    const std::int64_t steps = std::min<std::int64_t>(slot - newest_slot, static_cast<std::int64_t>(kSlots));
    for (std::int64_t i = 1; i <= steps; ++i) {
      const std::size_t index = static_cast<std::size_t>((newest_slot + i) % static_cast<std::int64_t>(kSlots));
      slot_requests[index] = 0;
      slot_refusals[index] = 0;
    }
    newest_slot = slot;
  }
  void count(TimePoint now, bool refused) {
    advance(now);
    const std::size_t index = static_cast<std::size_t>(newest_slot % static_cast<std::int64_t>(kSlots));
    if (slot_requests[index] < UINT32_MAX) ++slot_requests[index];
    if (refused && slot_refusals[index] < UINT32_MAX) ++slot_refusals[index];
  }
  // The counts over the window ending now, without moving the slots.
  void recent(TimePoint now, std::uint64_t* requests, std::uint64_t* refusals) const {
    *requests = *refusals = 0;
    const std::int64_t slot = slot_of(now);
    for (std::size_t i = 0; i < kSlots; ++i) {
      const std::int64_t counted = newest_slot - static_cast<std::int64_t>(i);
      if (counted < 0 || slot - counted >= static_cast<std::int64_t>(kSlots)) continue;
      const std::size_t index = static_cast<std::size_t>(counted % static_cast<std::int64_t>(kSlots));
      *requests += slot_requests[index];
      *refusals += slot_refusals[index];
    }
  }
};

// A device budget in the LRU list. `key` is bucket + '\0' + deviceId:
// neither may contain NUL, so keys of distinct pairs never collide.
struct DeviceEntry {
  std::string key;
  Budget budget;
};

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

const BucketLimits& default_bucket_limits() {
  static const BucketLimits limits;
  return limits;
}

}  // namespace

class DeviceLimiter::Impl {
 public:
  explicit Impl(DeviceLimiterOptions options)
      : options_(options), clock_(options.clock ? options.clock : real_clock()) {
    options_.max_tracked_devices = std::max<std::size_t>(1, options_.max_tracked_devices);
    options_.suspend_after_rejections = std::max(1, options_.suspend_after_rejections);
  }

  void set_limits(BucketLimitsMap limits) {
    auto shared = std::make_shared<const BucketLimitsMap>(std::move(limits));
    std::lock_guard<std::mutex> lock(mu_);
    limits_ = std::move(shared);
    for (auto it = anonymous_.begin(); it != anonymous_.end();) {
      it = limits_->count(it->first) ? std::next(it) : anonymous_.erase(it);
    }
  }

  Status admit(std::string_view bucket, std::string_view device_id) {
    const TimePoint now = clock_->now();
    std::lock_guard<std::mutex> lock(mu_);
    const BucketLimits* limits = &default_bucket_limits();
    if (auto it = limits_->find(bucket); it != limits_->end()) limits = &it->second;
    expire_idle(now);

    if (device_id.empty()) {
      auto it = anonymous_.find(bucket);
      if (it == anonymous_.end()) it = anonymous_.emplace(std::string(bucket), Budget(limits->anonymous, now)).first;
      return take(&it->second, limits->anonymous, limits->max_suspension, now, /*anonymous=*/true);
    }

    RateLimit limit = limits->device;
    if (auto rule = limits->devices.find(device_id); rule != limits->devices.end()) {
      if (rule->second.blocked) {
        ++stats_.blocked;
        return Status(ErrorCode::device_blocked,
                      "this deviceId is blocked by the bucket's operator; its requests are not accepted");
      }
      limit = rule->second.limit;
    }
    return take(find_or_insert(bucket, device_id, limit, now), limit, limits->max_suspension, now,
                /*anonymous=*/false);
  }

  std::vector<DeviceState> devices(std::string_view bucket, std::size_t max_devices, bool* truncated) const {
    const TimePoint now = clock_->now();
    std::vector<DeviceState> out;
    *truncated = false;
    std::lock_guard<std::mutex> lock(mu_);
    const BucketLimits* limits = &default_bucket_limits();
    if (auto it = limits_->find(bucket); it != limits_->end()) limits = &it->second;
    auto add = [&](DeviceState state) {
      if (out.size() >= max_devices) {
        *truncated = true;
        return false;
      }
      out.push_back(std::move(state));
      return true;
    };
    if (auto it = anonymous_.find(bucket); it != anonymous_.end())
      if (!add(describe(it->second, limits->anonymous, now))) return out;
    // Tracked budgets and blocking rules, merged in deviceId order.
    std::string prefix(bucket);
    prefix.push_back('\0');
    auto tracked = index_.lower_bound(std::string_view(prefix));
    auto rule = limits->devices.begin();
    for (;;) {
      const bool more_tracked =
          tracked != index_.end() && tracked->first.substr(0, prefix.size()) == std::string_view(prefix);
      while (rule != limits->devices.end() && !rule->second.blocked) ++rule;
      const bool more_rules = rule != limits->devices.end();
      if (!more_tracked && !more_rules) break;
      std::string_view tracked_id = more_tracked ? tracked->first.substr(prefix.size()) : std::string_view();
      if (more_rules && (!more_tracked || std::string_view(rule->first) <= tracked_id)) {
        DeviceState state;
        state.device_id = rule->first;
        state.state = DeviceState::Kind::blocked;
        state.limit = limits->device;
        if (!add(std::move(state))) return out;
        if (more_tracked && std::string_view(rule->first) == tracked_id) ++tracked;  // tracked before it was blocked
        ++rule;
        continue;
      }
      RateLimit limit = limits->device;
      if (auto r = limits->devices.find(tracked_id); r != limits->devices.end()) limit = r->second.limit;
      DeviceState state = describe(tracked->second->budget, limit, now);
      state.device_id = std::string(tracked_id);
      if (!add(std::move(state))) return out;
      ++tracked;
    }
    return out;
  }

  DeviceLimiterStats stats() const {
    std::lock_guard<std::mutex> lock(mu_);
    DeviceLimiterStats stats = stats_;
    stats.tracked_devices = lru_.size();
    return stats;
  }

 private:
  Budget* find_or_insert(std::string_view bucket, std::string_view device_id, const RateLimit& limit, TimePoint now) {
    thread_local std::string key;
    key.assign(bucket);
    key.push_back('\0');
    key.append(device_id);
    if (auto it = index_.find(std::string_view(key)); it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return &it->second->budget;
    }
    // At the cap the least recently seen device is forgotten. It restarts
    // with a full bucket when it comes back, so it can gain at most one
    // burst from the eviction.
    while (lru_.size() >= options_.max_tracked_devices) {
      index_.erase(std::string_view(lru_.back().key));
      lru_.pop_back();
      ++stats_.evictions;
    }
    lru_.push_front(DeviceEntry{key, Budget(limit, now)});
    index_.emplace(std::string_view(lru_.front().key), lru_.begin());
    return &lru_.front().budget;
  }

  // Forgets a few idle device budgets from the cold end of the LRU list,
  // so an idle table shrinks without a background thread. A budget with a
  // suspension in force, or one recent enough to double the next, is kept
  // (a device quietly sitting out a long suspension must not come back
  // with a clean record): it is moved to the hot end, which leaves the
  // list only roughly ordered by last_seen; that merely delays other
  // expirations.
  void expire_idle(TimePoint now) {
    for (int step = 0; step < 4 && !lru_.empty(); ++step) {
      DeviceEntry& oldest = lru_.back();
      if (now - oldest.budget.last_seen < options_.idle_expiry) return;
      const bool remembers_suspension =
          oldest.budget.last_period.count() > 0 && now - oldest.budget.suspended_until < options_.suspension_reset;
      if (oldest.budget.suspended_until > now || remembers_suspension) {
        lru_.splice(lru_.begin(), lru_, std::prev(lru_.end()));
        continue;
      }
      index_.erase(std::string_view(oldest.key));
      lru_.pop_back();
      ++stats_.expirations;
    }
  }

  Status take(Budget* budget, const RateLimit& limit, std::chrono::seconds max_suspension, TimePoint now,
              bool anonymous) {
    budget->last_seen = now;
    if (budget->suspended_until > now) {
      budget->count(now, true);
      ++stats_.suspended;
      return suspended(budget->suspended_until - now, anonymous);
    }

    // Lazy refill: tokens accrue for the time since the last request. A
    // changed limit (reload) applies from here on.
    if (now > budget->refilled) {
      budget->tokens = std::min(limit.burst, budget->tokens + Seconds(now - budget->refilled).count() * limit.rate);
      budget->refilled = now;
    } else {
      budget->tokens = std::min(limit.burst, budget->tokens);
    }
    if (budget->tokens >= 1) {
      budget->tokens -= 1;
      budget->count(now, false);
      return Status();
    }
    budget->count(now, true);

    if (now - budget->window_start >= options_.rejection_window) {
      budget->window_start = now;
      budget->rejections = 0;
    }
    if (++budget->rejections >= options_.suspend_after_rejections) {
      // Each suspension soon after the previous one doubles the period, so
      // a device stuck in a loop costs less and less; a long good spell
      // starts over at the first period.
      std::chrono::seconds period = options_.first_suspension;
      const TimePoint previous_end = budget->suspended_until;
      if (budget->last_period.count() > 0 && now - previous_end < options_.suspension_reset)
        period = budget->last_period * 2;
      period = std::max(std::chrono::seconds(1), std::min(period, max_suspension));
      budget->last_period = period;
      budget->suspended_until = now + period;
      budget->rejections = 0;
      ++stats_.suspensions;
      ++stats_.suspended;
      return suspended(period, anonymous);
    }

    ++stats_.rate_limited;
    const int retry = retry_after_seconds((1 - budget->tokens) / limit.rate);
    std::string message = anonymous
                              ? "requests without a deviceId to this bucket exceed their shared limit; "
                                "retry after the Retry-After delay, and send a deviceId to get a budget of your own"
                              : "this device exceeds its request rate limit; retry after the Retry-After delay "
                                "and send several readings per request";
    return Status(ErrorCode::rate_limited, std::move(message)).with_retry_after(retry);
  }

  // A budget as its owner sees it now, without refilling it.
  static DeviceState describe(const Budget& budget, const RateLimit& limit, TimePoint now) {
    DeviceState state;
    state.limit = limit;
    budget.recent(now, &state.recent_requests, &state.recent_refusals);
    if (budget.suspended_until > now) {
      state.state = DeviceState::Kind::suspended;
      state.seconds_left = retry_after_seconds(budget.suspended_until - now);
      return state;
    }
    double tokens = budget.tokens;
    if (now > budget.refilled) tokens += Seconds(now - budget.refilled).count() * limit.rate;
    state.tokens = std::min(limit.burst, tokens);
    if (state.tokens < 1) {
      state.state = DeviceState::Kind::rate_limited;
      state.seconds_left = retry_after_seconds((1 - state.tokens) / limit.rate);
    }
    return state;
  }

  static Status suspended(Clock::duration remaining, bool anonymous) {
    const int retry = retry_after_seconds(remaining);
    std::string message = anonymous ? "requests without a deviceId to this bucket are suspended for " +
                                          std::to_string(retry) + " s after repeatedly exceeding their limit"
                                    : "this device is suspended for " + std::to_string(retry) +
                                          " s after repeatedly exceeding its rate limit";
    return Status(ErrorCode::suspended, std::move(message)).with_retry_after(retry);
  }

  DeviceLimiterOptions options_;
  const Clock* clock_;

  mutable std::mutex mu_;
  std::shared_ptr<const BucketLimitsMap> limits_ = std::make_shared<const BucketLimitsMap>();
  // One shared budget per bucket for requests without a deviceId. Bounded
  // by the buckets that pass authorization, so not counted in the cap.
  std::unordered_map<std::string, Budget, StringHash, std::equal_to<>> anonymous_;
  // Device budgets, most recently seen first. The index is an ordered map
  // rather than a hash table: deviceIds are chosen by clients, and a tree
  // keeps every lookup O(log n) whatever ids they choose (no hash flooding).
  std::list<DeviceEntry> lru_;
  std::map<std::string_view, std::list<DeviceEntry>::iterator> index_;
  DeviceLimiterStats stats_;
};

DeviceLimiter::DeviceLimiter(DeviceLimiterOptions options) : impl_(std::make_unique<Impl>(options)) {}
DeviceLimiter::~DeviceLimiter() = default;

void DeviceLimiter::set_limits(BucketLimitsMap limits) { impl_->set_limits(std::move(limits)); }

Status DeviceLimiter::admit(std::string_view bucket, std::string_view device_id) {
  return impl_->admit(bucket, device_id);
}

DeviceLimiterStats DeviceLimiter::stats() const { return impl_->stats(); }

std::vector<DeviceState> DeviceLimiter::devices(std::string_view bucket, std::size_t max_devices,
                                                bool* truncated) const {
  return impl_->devices(bucket, max_devices, truncated);
}

}  // namespace writeapi
