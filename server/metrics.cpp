#include "metrics.h"

#include <fmt/format.h>

#include "writeapi/version.h"

namespace writeapi::server {

void Metrics::record_request(int status, std::uint64_t items, std::uint64_t bytes, double seconds) {
  if (status < 0 || status >= static_cast<int>(requests_by_status_.size())) status = 0;
  requests_by_status_[static_cast<std::size_t>(status)].fetch_add(1, std::memory_order_relaxed);
  items_.fetch_add(items, std::memory_order_relaxed);
  bytes_.fetch_add(bytes, std::memory_order_relaxed);
  std::size_t bucket = 0;
  while (bucket < kLatencyBounds.size() && seconds > kLatencyBounds[bucket]) ++bucket;
  latency_buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  latency_count_.fetch_add(1, std::memory_order_relaxed);
  latency_sum_micros_.fetch_add(static_cast<std::uint64_t>(seconds * 1e6), std::memory_order_relaxed);
}

std::string Metrics::render(const StorageStats& storage) const {
  fmt::memory_buffer out;
  auto it = std::back_inserter(out);
  fmt::format_to(it, "# HELP writeapi_build_info Build information.\n# TYPE writeapi_build_info gauge\n");
  fmt::format_to(it, "writeapi_build_info{{version=\"{}\",compiler=\"{}\"}} 1\n", writeapi::kVersion, __VERSION__);

  fmt::format_to(it,
                 "# HELP writeapi_http_requests_total HTTP requests by status code.\n"
                 "# TYPE writeapi_http_requests_total counter\n");
  for (std::size_t code = 0; code < requests_by_status_.size(); ++code) {
    auto n = requests_by_status_[code].load(std::memory_order_relaxed);
    if (n) fmt::format_to(it, "writeapi_http_requests_total{{code=\"{}\"}} {}\n", code, n);
  }
  fmt::format_to(it,
                 "# HELP writeapi_items_stored_total Items stored.\n# TYPE writeapi_items_stored_total counter\n"
                 "writeapi_items_stored_total {}\n",
                 items_.load());
  fmt::format_to(it,
                 "# HELP writeapi_bytes_stored_total Bytes of JSON Lines stored.\n"
                 "# TYPE writeapi_bytes_stored_total counter\nwriteapi_bytes_stored_total {}\n",
                 bytes_.load());

  fmt::format_to(it,
                 "# HELP writeapi_request_duration_seconds Time from request to response.\n"
                 "# TYPE writeapi_request_duration_seconds histogram\n");
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < kLatencyBounds.size(); ++i) {
    cumulative += latency_buckets_[i].load(std::memory_order_relaxed);
    fmt::format_to(it, "writeapi_request_duration_seconds_bucket{{le=\"{}\"}} {}\n", kLatencyBounds[i], cumulative);
  }
  cumulative += latency_buckets_[kLatencyBounds.size()].load(std::memory_order_relaxed);
  fmt::format_to(it, "writeapi_request_duration_seconds_bucket{{le=\"+Inf\"}} {}\n", cumulative);
  fmt::format_to(it, "writeapi_request_duration_seconds_sum {:.6f}\n", latency_sum_micros_.load() / 1e6);
  fmt::format_to(it, "writeapi_request_duration_seconds_count {}\n", latency_count_.load());

  auto counter = [&](const char* name, const char* help, std::uint64_t value) {
    fmt::format_to(it, "# HELP {0} {1}\n# TYPE {0} counter\n{0} {2}\n", name, help, value);
  };
  counter("writeapi_storage_appends_total", "Batches appended by the storage backend.", storage.appends);
  counter("writeapi_storage_bytes_written_total", "Bytes written by the storage backend.", storage.bytes_written);
  counter("writeapi_storage_syncs_total", "Durability syncs (fdatasync) performed.", storage.syncs);
  counter("writeapi_storage_synced_appends_total", "Appends acknowledged by those syncs (group commit).",
          storage.synced_appends);
  counter("writeapi_storage_torn_tails_repaired_total", "Objects whose torn last line was cut on open.",
          storage.torn_tails_repaired);
  counter("writeapi_storage_write_errors_total", "Appends or syncs that failed.", storage.write_errors);
  counter("writeapi_storage_objects_fenced_total",
          "Objects refusing appends until a restart: refused lines could not be cut from them.",
          storage.fenced_objects);
  fmt::format_to(it,
                 "# HELP writeapi_storage_open_objects Objects with an open file handle.\n"
                 "# TYPE writeapi_storage_open_objects gauge\nwriteapi_storage_open_objects {}\n",
                 storage.open_objects);
  return fmt::to_string(out);
}

std::string render_keys_metrics(const KeysFileAuthorizer::Stats& stats, bool with_buckets) {
  fmt::memory_buffer out;
  auto it = std::back_inserter(out);
  fmt::format_to(it,
                 "# HELP writeapi_keys_reloads_total Successful reloads of the keys file.\n"
                 "# TYPE writeapi_keys_reloads_total counter\nwriteapi_keys_reloads_total {}\n",
                 stats.reloads);
  fmt::format_to(it,
                 "# HELP writeapi_keys_reload_failures_total Reloads of the keys file that failed "
                 "(previous keys kept).\n"
                 "# TYPE writeapi_keys_reload_failures_total counter\nwriteapi_keys_reload_failures_total {}\n",
                 stats.reload_failures);
  if (!with_buckets) {
    std::uint64_t total = stats.unknown_bucket_failures;
    for (const auto& entry : stats.auth_failures) total += entry.second;
    fmt::format_to(it,
                   "# HELP writeapi_auth_failures_total Requests refused for a wrong access key or an unknown bucket.\n"
                   "# TYPE writeapi_auth_failures_total counter\nwriteapi_auth_failures_total {}\n",
                   total);
    return fmt::to_string(out);
  }
  fmt::format_to(it,
                 "# HELP writeapi_auth_failures_total Requests refused for a wrong access key, by bucket.\n"
                 "# TYPE writeapi_auth_failures_total counter\n");
  // Bucket names are [A-Za-z0-9._-]: nothing to escape in the label.
  for (const auto& [bucket, count] : stats.auth_failures)
    fmt::format_to(it, "writeapi_auth_failures_total{{bucket=\"{}\"}} {}\n", bucket, count);
  fmt::format_to(it, "writeapi_auth_failures_total{{bucket=\"<unknown>\"}} {}\n", stats.unknown_bucket_failures);
  return fmt::to_string(out);
}

std::string render_request_id_metrics(const RequestIdStats& stats) {
  return fmt::format(
      "# HELP writeapi_request_ids_duplicates_total Retries of an acknowledged requestId, answered without storing.\n"
      "# TYPE writeapi_request_ids_duplicates_total counter\nwriteapi_request_ids_duplicates_total {}\n"
      "# HELP writeapi_request_ids_conflicts_total Requests reusing a requestId for other data (409).\n"
      "# TYPE writeapi_request_ids_conflicts_total counter\nwriteapi_request_ids_conflicts_total {}\n"
      "# HELP writeapi_request_ids_evictions_total Request ids dropped at --dedup-max before their window ended.\n"
      "# TYPE writeapi_request_ids_evictions_total counter\nwriteapi_request_ids_evictions_total {}\n"
      "# HELP writeapi_request_ids_remembered Request ids held in memory.\n"
      "# TYPE writeapi_request_ids_remembered gauge\nwriteapi_request_ids_remembered {}\n",
      stats.duplicates, stats.conflicts, stats.evictions, stats.remembered);
}

std::string render_limiter_metrics(const DeviceLimiterStats& stats) {
  fmt::memory_buffer out;
  auto it = std::back_inserter(out);
  fmt::format_to(it,
                 "# HELP writeapi_limit_refusals_total Authorized requests refused by device limits, by reason.\n"
                 "# TYPE writeapi_limit_refusals_total counter\n"
                 "writeapi_limit_refusals_total{{reason=\"rate_limited\"}} {}\n"
                 "writeapi_limit_refusals_total{{reason=\"suspended\"}} {}\n"
                 "writeapi_limit_refusals_total{{reason=\"device_blocked\"}} {}\n",
                 stats.rate_limited, stats.suspended, stats.blocked);
  fmt::format_to(it,
                 "# HELP writeapi_limit_suspensions_total Suspensions started (device or anonymous budget).\n"
                 "# TYPE writeapi_limit_suspensions_total counter\nwriteapi_limit_suspensions_total {}\n",
                 stats.suspensions);
  fmt::format_to(it,
                 "# HELP writeapi_limit_tracked_devices Device budgets held in memory.\n"
                 "# TYPE writeapi_limit_tracked_devices gauge\nwriteapi_limit_tracked_devices {}\n",
                 stats.tracked_devices);
  fmt::format_to(it,
                 "# HELP writeapi_limit_evictions_total Device budgets evicted at the table cap.\n"
                 "# TYPE writeapi_limit_evictions_total counter\nwriteapi_limit_evictions_total {}\n",
                 stats.evictions);
  fmt::format_to(it,
                 "# HELP writeapi_limit_expirations_total Device budgets forgotten after being idle.\n"
                 "# TYPE writeapi_limit_expirations_total counter\nwriteapi_limit_expirations_total {}\n",
                 stats.expirations);
  return fmt::to_string(out);
}

}  // namespace writeapi::server
