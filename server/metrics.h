// Prometheus metrics of writeapi-server (text exposition format 0.0.4).
#ifndef WRITEAPI_SERVER_METRICS_H_
#define WRITEAPI_SERVER_METRICS_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

#include "writeapi/auth.h"
#include "writeapi/ingest.h"
#include "writeapi/limits.h"
#include "writeapi/storage.h"

namespace writeapi::server {

class Metrics {
 public:
  // Records one finished HTTP request.
  void record_request(int status, std::uint64_t items, std::uint64_t bytes, double seconds);

  // Renders every metric, including the storage backend's counters.
  std::string render(const StorageStats& storage) const;

  // Upper bounds (seconds) of the latency histogram buckets.
  static constexpr std::array<double, 14> kLatencyBounds = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                                            0.025,  0.05,    0.1,    0.25,  0.5,    1.0,   5.0};

 private:
  std::array<std::atomic<std::uint64_t>, 600> requests_by_status_{};
  std::atomic<std::uint64_t> items_{0};
  std::atomic<std::uint64_t> bytes_{0};
  std::array<std::atomic<std::uint64_t>, kLatencyBounds.size() + 1> latency_buckets_{};
  std::atomic<std::uint64_t> latency_count_{0};
  std::atomic<std::uint64_t> latency_sum_micros_{0};
};

// The keys file's counters: reloads, failed reloads, and authorization
// failures per bucket of the file (label bucket="<unknown>" for buckets not
// in it: bucket names cannot contain '<', so it never collides with one).
// Without `with_buckets`, only the total of authorization failures (no
// bucket name), for listeners without a credential.
std::string render_keys_metrics(const KeysFileAuthorizer::Stats& stats, bool with_buckets);

// The device limiter's counters and table size.
std::string render_limiter_metrics(const DeviceLimiterStats& stats);
// The request-id series (writeapi_request_ids_*).
std::string render_request_id_metrics(const RequestIdStats& stats);

}  // namespace writeapi::server

#endif  // WRITEAPI_SERVER_METRICS_H_
