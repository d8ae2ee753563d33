#include "request_ids.h"

#include <openssl/evp.h>

#include <iterator>
#include <utility>

namespace writeapi {

Status validate_request_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxRequestIdBytes)
    return Status(ErrorCode::invalid_request_id, "a request id must be 1 to 128 bytes of printable ASCII");
  for (char c : id) {
    auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte > 0x7e)
      return Status(ErrorCode::invalid_request_id, "a request id must be 1 to 128 bytes of printable ASCII");
  }
  return Status::Ok();
}

Status resolve_request_id(std::optional<std::string_view> body_id, std::optional<std::string_view> header_id,
                          std::string* id) {
  id->clear();
  if (body_id) {
    Status status = validate_request_id(*body_id);
    if (!status.ok()) return status;
  }
  if (header_id) {
    Status status = validate_request_id(*header_id);
    if (!status.ok()) return status;
  }
  if (body_id && header_id && *body_id != *header_id)
    return Status(ErrorCode::invalid_request_id,
                  "requestId and the Idempotency-Key header differ; send one or the same");
  if (body_id || header_id) id->assign(body_id ? *body_id : *header_id);
  return Status::Ok();
}

RequestFingerprint request_fingerprint(std::string_view bucket, std::string_view key, std::string_view stored_body) {
  // Lengths first, so "a"+"bc" and "ab"+"c" differ.
  std::uint64_t lengths[2] = {bucket.size(), key.size()};
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  EVP_MD_CTX* context = EVP_MD_CTX_new();
  RequestFingerprint fingerprint{};
  if (context != nullptr && EVP_DigestInit_ex(context, EVP_sha256(), nullptr) == 1 &&
      EVP_DigestUpdate(context, lengths, sizeof lengths) == 1 &&
      EVP_DigestUpdate(context, bucket.data(), bucket.size()) == 1 &&
      EVP_DigestUpdate(context, key.data(), key.size()) == 1 &&
      EVP_DigestUpdate(context, stored_body.data(), stored_body.size()) == 1 &&
      EVP_DigestFinal_ex(context, digest, &digest_size) == 1 && digest_size >= fingerprint.size()) {
    for (std::size_t i = 0; i < fingerprint.size(); ++i) fingerprint[i] = digest[i];
  }
  EVP_MD_CTX_free(context);
  return fingerprint;
}

RequestIds::RequestIds(RequestIdsOptions options)
    : options_(options), clock_(options.clock != nullptr ? options.clock : real_clock()) {
  if (options_.max_ids == 0) options_.max_ids = 1;
}

void RequestIds::forget_expired_locked(Bucket& bucket, Clock::time_point now) {
  while (!bucket.order.empty()) {
    auto it = bucket.entries.find(bucket.order.front());
    if (it == bucket.entries.end() || now - it->second.acknowledged_at < options_.window) break;
    bucket.entries.erase(it);
    bucket.order.pop_front();
    --stats_.remembered;
  }
}

void RequestIds::remember_locked(Bucket& bucket, std::unordered_map<std::string, Entry>::iterator it) {
  while (bucket.order.size() >= options_.max_ids) {
    bucket.entries.erase(bucket.order.front());
    bucket.order.pop_front();
    --stats_.remembered;
    ++stats_.evictions;
  }
  it->second.in_flight = false;
  it->second.order = bucket.order.insert(bucket.order.end(), it->first);
  ++stats_.remembered;
}

RequestIds::Begin RequestIds::begin(std::string_view bucket_name, std::string_view id,
                                    const RequestFingerprint& fingerprint, std::size_t* items, Waiter waiter) {
  std::lock_guard<std::mutex> lock(mutex_);
  Clock::time_point now = clock_->now();
  Bucket& bucket = buckets_[std::string(bucket_name)];
  forget_expired_locked(bucket, now);
  auto [it, inserted] = bucket.entries.try_emplace(std::string(id));
  Entry& entry = it->second;
  if (inserted) {
    entry.fingerprint = fingerprint;
    return Begin::fresh;
  }
  if (entry.fingerprint != fingerprint) {
    ++stats_.conflicts;
    return Begin::conflict;
  }
  if (!entry.in_flight) {
    ++stats_.duplicates;
    *items = entry.items;
    return Begin::duplicate;
  }
  if (entry.waiters.size() >= kMaxWaitersPerId) return Begin::busy;
  entry.waiters.push_back(Pending{std::move(waiter), now});
  bucket.with_waiters.insert(it->first);
  return Begin::waiting;
}

void RequestIds::finish(std::string_view bucket_name, std::string_view id, const RequestOutcome& outcome) {
  std::vector<Pending> waiters;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto bucket_it = buckets_.find(std::string(bucket_name));
    if (bucket_it == buckets_.end()) return;
    Bucket& bucket = bucket_it->second;
    auto it = bucket.entries.find(std::string(id));
    if (it == bucket.entries.end() || !it->second.in_flight) return;
    waiters.swap(it->second.waiters);
    bucket.with_waiters.erase(it->first);
    if (outcome.status.ok()) {
      it->second.items = outcome.items;
      it->second.acknowledged_at = clock_->now();
      remember_locked(bucket, it);
    } else {
      bucket.entries.erase(it);
    }
    if (outcome.status.ok()) stats_.duplicates += waiters.size();
  }
  for (Pending& pending : waiters) pending.waiter(outcome);
}

void RequestIds::restore(std::string_view bucket_name, std::string_view id, const RequestFingerprint& fingerprint,
                         std::size_t items, Clock::time_point acknowledged_at) {
  std::lock_guard<std::mutex> lock(mutex_);
  Clock::time_point now = clock_->now();
  if (now - acknowledged_at >= options_.window) return;
  Bucket& bucket = buckets_[std::string(bucket_name)];
  auto [it, inserted] = bucket.entries.try_emplace(std::string(id));
  if (!inserted) return;
  it->second.fingerprint = fingerprint;
  it->second.items = items;
  it->second.acknowledged_at = acknowledged_at;
  remember_locked(bucket, it);
}

void RequestIds::expire_waiters_if_due() {
  const std::int64_t now =
      std::chrono::duration_cast<std::chrono::nanoseconds>(clock_->now().time_since_epoch()).count();
  std::int64_t due = next_expiry_ns_.load(std::memory_order_relaxed);
  if (now < due) return;
  if (!next_expiry_ns_.compare_exchange_strong(due, now + 1'000'000'000, std::memory_order_relaxed)) return;
  expire_waiters();
}

void RequestIds::expire_waiters() {
  std::vector<Pending> expired;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    Clock::time_point now = clock_->now();
    for (auto& [name, bucket] : buckets_) {
      forget_expired_locked(bucket, now);
      for (auto id_it = bucket.with_waiters.begin(); id_it != bucket.with_waiters.end();) {
        auto entry_it = bucket.entries.find(*id_it);
        if (entry_it == bucket.entries.end()) {
          id_it = bucket.with_waiters.erase(id_it);
          continue;
        }
        auto& waiters = entry_it->second.waiters;
        for (auto it = waiters.begin(); it != waiters.end();) {
          if (now - it->since >= options_.wait_limit) {
            expired.push_back(std::move(*it));
            it = waiters.erase(it);
          } else {
            ++it;
          }
        }
        id_it = waiters.empty() ? bucket.with_waiters.erase(id_it) : std::next(id_it);
      }
    }
  }
  RequestOutcome outcome{
      Status(ErrorCode::storage_error, "the first request with this request id is still being stored; retry later")
          .with_retry_after(1),
      0};
  for (Pending& pending : expired) pending.waiter(outcome);
}

RequestIds::Stats RequestIds::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

}  // namespace writeapi
