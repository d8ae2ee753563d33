#include "read_watchers.h"

#include <algorithm>

namespace writeapi::server {

struct ReadWatchers::Watch {
  std::multimap<std::string, Watch*, std::less<>>::iterator in_object;
  std::map<std::string, std::size_t, std::less<>>::iterator address;
  bool registered = false;  // in by_object_ (open, neither fired nor closed)
  bool notified = false;    // appended to since open()
  bool armed = false;
  Clock::time_point deadline{};
  std::function<void(Wake)> wake;
  std::shared_ptr<Watch> self;  // while armed: the registry keeps it
};

ReadWatchers::ReadWatchers(std::size_t max_watchers)
    : max_watchers_(max_watchers), per_address_(std::max<std::size_t>(1, max_watchers / 4)) {
  thread_ = std::thread([this] { run(); });
}

ReadWatchers::~ReadWatchers() {
  stop();
  {
    std::lock_guard<std::mutex> lock(mu_);
    exit_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::string ReadWatchers::object_id(std::string_view bucket, std::string_view key) {
  // Names never hold '/' (names.h), so distinct objects never collide.
  std::string id;
  id.reserve(bucket.size() + key.size() + 1);
  id.append(bucket).append("/").append(key);
  return id;
}

std::shared_ptr<ReadWatchers::Watch> ReadWatchers::open(std::string_view bucket, std::string_view key,
                                                        std::string_view address) {
  auto watch = std::make_shared<Watch>();
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return nullptr;
  auto held = per_address_open_.find(address);
  if (open_ >= max_watchers_ || (held != per_address_open_.end() && held->second >= per_address_)) {
    ++refused_;
    return nullptr;
  }
  if (held == per_address_open_.end()) held = per_address_open_.emplace(std::string(address), 0).first;
  ++held->second;
  watch->address = held;
  ++open_;
  watch->in_object = by_object_.emplace(object_id(bucket, key), watch.get());
  watch->registered = true;
  return watch;
}

void ReadWatchers::detach(Watch* watch) {
  if (!watch->registered) return;
  by_object_.erase(watch->in_object);
  if (watch->armed) by_deadline_.erase({watch->deadline, watch});
  watch->registered = false;
  if (--watch->address->second == 0) per_address_open_.erase(watch->address);
  --open_;
}

void ReadWatchers::arm(const std::shared_ptr<Watch>& watch, Clock::time_point deadline,
                       std::function<void(Wake)> wake) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    watch->wake = std::move(wake);
    if (watch->registered && !watch->notified && !stopping_) {
      watch->armed = true;
      watch->deadline = deadline;
      watch->self = watch;
      by_deadline_.emplace(deadline, watch.get());
      cv_.notify_all();  // perhaps the earliest deadline now
      return;
    }
    const Wake why = stopping_ ? Wake::stopping : Wake::appended;
    detach(watch.get());
    ready_.emplace_back(watch, why);
  }
  cv_.notify_all();
}

void ReadWatchers::close(const std::shared_ptr<Watch>& watch) {
  std::lock_guard<std::mutex> lock(mu_);
  detach(watch.get());
}

void ReadWatchers::notify(std::string_view bucket, std::string_view key) {
  const std::string id = object_id(bucket, key);
  bool woke = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto [first, last] = by_object_.equal_range(id);
    for (auto it = first; it != last;) {
      Watch* watch = it->second;
      ++it;  // detach erases the entry
      if (!watch->armed) {
        watch->notified = true;
        continue;
      }
      std::shared_ptr<Watch> held = std::move(watch->self);
      detach(watch);
      ready_.emplace_back(std::move(held), Wake::appended);
      woke = true;
    }
  }
  if (woke) cv_.notify_all();
}

void ReadWatchers::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    while (!by_deadline_.empty()) {
      Watch* watch = by_deadline_.begin()->second;
      std::shared_ptr<Watch> held = std::move(watch->self);
      detach(watch);
      ready_.emplace_back(std::move(held), Wake::stopping);
    }
  }
  cv_.notify_all();
}

bool ReadWatchers::stopping() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stopping_;
}

std::size_t ReadWatchers::open_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return open_;
}

std::uint64_t ReadWatchers::refused() const {
  std::lock_guard<std::mutex> lock(mu_);
  return refused_;
}

void ReadWatchers::run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    const Clock::time_point now = Clock::now();
    while (!by_deadline_.empty() && by_deadline_.begin()->first <= now) {
      Watch* watch = by_deadline_.begin()->second;
      std::shared_ptr<Watch> held = std::move(watch->self);
      detach(watch);
      ready_.emplace_back(std::move(held), Wake::timeout);
    }
    if (!ready_.empty()) {
      std::vector<std::pair<std::shared_ptr<Watch>, Wake>> ready;
      ready.swap(ready_);
      lock.unlock();
      for (auto& [watch, why] : ready) {
        auto wake = std::move(watch->wake);
        if (wake) wake(why);
      }
      lock.lock();
      continue;
    }
    if (exit_) return;
    if (by_deadline_.empty()) {
      cv_.wait(lock);
    } else {
      // A copy: wait_until reads its deadline again after waking, and a
      // notify() while the lock is released may erase the set's node.
      const Clock::time_point next = by_deadline_.begin()->first;
      cv_.wait_until(lock, next);
    }
  }
}

}  // namespace writeapi::server
