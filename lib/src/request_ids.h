// RequestIds: the memory of acknowledged request ids that makes a retried
// write idempotent (issue 12).
//
// A write that carries a request id (`requestId` in the body or the
// Idempotency-Key header) calls begin() before it stores anything:
//   - fresh: no request with this id is known; the caller stores the items
//     and then calls finish() with the outcome (acknowledged or refused).
//   - duplicate: the id was acknowledged within the window for the same
//     fingerprint; the caller answers {"ok":true,"items":N,"duplicate":true}
//     with the original count and stores nothing.
//   - conflict: the id was acknowledged (or is in flight) for another
//     bucket/key/body: 409 request_id_conflict.
//   - waiting: a request with the same id and fingerprint is in flight; the
//     waiter callback runs once with that request's outcome (from the thread
//     that calls finish(), or from expire_waiters() when the wait is over).
//   - busy: the id is in flight and already has kMaxWaitersPerId waiters;
//     the caller answers 503 and the client retries later.
// Nothing here blocks a thread: a waiting retry is a callback, bounded in
// number per id and in time (wait_limit, fired by expire_waiters()).
//
// Per bucket, acknowledged ids are kept for at least `window` and at most
// `max_ids` (the oldest is evicted first when the cap is reached, counted
// in stats().evictions). A refused request forgets its id, so a retry
// stores again.
//
// Memory: at most bytes_per_id_estimate(length) heap bytes per remembered
// id: kBytesPerIdEstimate when the id fits the small-string buffer (15
// bytes); a longer id is held twice on the heap (in the table and in the
// age order), each copy with its allocator's overhead, hence 2 x (length +
// 24) more. Measured by tests/unit/request_ids_test.cpp with GCC 12 and
// glibc 2.36: 189 bytes per 15-byte id, so --dedup-max 1,000,000 costs
// about 190 MB per bucket that fills it; with 36-byte ids (UUIDs) about
// 300 MB.
//
// Thread-safety: every member may be called concurrently; callbacks run
// without the table's lock held.
#ifndef WRITEAPI_SRC_REQUEST_IDS_H_
#define WRITEAPI_SRC_REQUEST_IDS_H_

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "writeapi/clock.h"
#include "writeapi/parse.h"
#include "writeapi/status.h"
#include "writeapi/storage.h"

namespace writeapi {

// Ok when `id` is 1 to kMaxRequestIdBytes (parse.h) bytes of printable ASCII
// (0x20..0x7e); otherwise invalid_request_id with a message for the client.
Status validate_request_id(std::string_view id);

// The request id of a write from its body field and its Idempotency-Key
// header (nullopt: absent; a present but empty one is malformed). Sets
// `*id` to the one present (empty when neither is) and returns ok;
// invalid_request_id when one is malformed or both are present and
// different.
Status resolve_request_id(std::optional<std::string_view> body_id, std::optional<std::string_view> header_id,
                          std::string* id);

// The RequestFingerprint (storage.h) of what a request stores (bucket, key
// and the body after parsing), never of the access key: the same id with
// another fingerprint is a conflict.
RequestFingerprint request_fingerprint(std::string_view bucket, std::string_view key, std::string_view stored_body);

struct RequestIdsOptions {
  // Acknowledged ids are remembered at least this long (unless evicted by
  // max_ids). Default 24 hours.
  std::chrono::seconds window = std::chrono::hours(24);
  // At most this many acknowledged ids per bucket; the oldest goes first.
  // Default 1,000,000.
  std::size_t max_ids = 1'000'000;
  // A retry waits at most this long for the request in flight with its id;
  // then its callback gets storage_error with Retry-After. Default 30 s.
  std::chrono::seconds wait_limit = std::chrono::seconds(30);
  // Time source (tests pass a ManualClock). Null means real_clock().
  const Clock* clock = nullptr;
};

// The outcome a waiting retry receives: the first request's status and, when
// ok, its item count.
struct RequestOutcome {
  Status status;
  std::size_t items = 0;
};

class RequestIds {
 public:
  static constexpr std::size_t kMaxWaitersPerId = 16;
  static constexpr std::size_t kBytesPerIdEstimate = 200;
  static constexpr std::size_t bytes_per_id_estimate(std::size_t id_length) {
    return kBytesPerIdEstimate + (id_length > 15 ? 2 * (id_length + 24) : 0);
  }

  enum class Begin { fresh, duplicate, conflict, waiting, busy };
  using Waiter = std::function<void(const RequestOutcome&)>;

  explicit RequestIds(RequestIdsOptions options);

  // See the header comment. `*items` is set for duplicate. `waiter` is kept
  // only when the result is waiting.
  Begin begin(std::string_view bucket, std::string_view id, const RequestFingerprint& fingerprint, std::size_t* items,
              Waiter waiter);

  // Ends a request begin() answered fresh. With an ok status the id is
  // remembered with `items`; otherwise it is forgotten. Waiters get
  // `outcome` (a refused outcome lets them retry).
  void finish(std::string_view bucket, std::string_view id, const RequestOutcome& outcome);

  // Remembers an acknowledged id without a request in flight (recovery from
  // the log or the checkpoint file). `acknowledged_at` is when it was
  // acknowledged on this clock; ids already outside the window are skipped.
  void restore(std::string_view bucket, std::string_view id, const RequestFingerprint& fingerprint, std::size_t items,
               Clock::time_point acknowledged_at);

  // Ends the waits older than wait_limit (their callbacks get
  // storage_error) and forgets ids older than the window. Call it
  // periodically (the server's housekeeping tick).
  void expire_waiters();
  // expire_waiters() at most once a second, for callers on the request
  // path (it takes the table's lock and visits every bucket).
  void expire_waiters_if_due();

  struct Stats {
    std::uint64_t duplicates = 0;
    std::uint64_t conflicts = 0;
    std::uint64_t evictions = 0;
    std::uint64_t remembered = 0;  // ids currently remembered, all buckets
  };
  Stats stats() const;

 private:
  struct Pending {
    Waiter waiter;
    Clock::time_point since;
  };
  struct Entry {
    RequestFingerprint fingerprint{};
    std::size_t items = 0;
    bool in_flight = true;
    Clock::time_point acknowledged_at{};
    std::list<std::string>::iterator order;  // valid when !in_flight
    std::vector<Pending> waiters;
  };
  struct Bucket {
    std::unordered_map<std::string, Entry> entries;
    std::list<std::string> order;                  // acknowledged ids, oldest first
    std::unordered_set<std::string> with_waiters;  // in-flight ids with waiters
  };

  void forget_expired_locked(Bucket& bucket, Clock::time_point now);
  void remember_locked(Bucket& bucket, std::unordered_map<std::string, Entry>::iterator it);

  RequestIdsOptions options_;
  const Clock* clock_;
  std::atomic<std::int64_t> next_expiry_ns_{0};  // clock_->now() since its epoch
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Bucket> buckets_;
  Stats stats_;
};

}  // namespace writeapi

#endif  // WRITEAPI_SRC_REQUEST_IDS_H_
