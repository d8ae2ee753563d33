#include "writeapi/keys_reloader.h"

#include <sys/stat.h>

#include <cstdio>
#include <utility>

namespace writeapi {

bool KeysReloader::FileStamp::operator==(const FileStamp& o) const {
  return device == o.device && inode == o.inode && size == o.size && modified_seconds == o.modified_seconds &&
         modified_nanoseconds == o.modified_nanoseconds;
}

KeysReloader::FileStamp KeysReloader::stamp_of(const std::string& path) {
  FileStamp stamp;
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    stamp.device = static_cast<std::uint64_t>(st.st_dev);
    stamp.inode = static_cast<std::uint64_t>(st.st_ino);
    stamp.size = static_cast<std::int64_t>(st.st_size);
    stamp.modified_seconds = static_cast<std::int64_t>(st.st_mtim.tv_sec);
    stamp.modified_nanoseconds = static_cast<std::int64_t>(st.st_mtim.tv_nsec);
  }
  return stamp;
}

KeysReloader::KeysReloader(KeysFileAuthorizer* keys, KeysReloaderOptions options)
    : keys_(keys), options_(std::move(options)) {
  if (!options_.log)
    options_.log = [](std::string_view line) { std::fprintf(stderr, "%.*s\n", int(line.size()), line.data()); };
  last_ = stamp_of(keys_->path());
  if (options_.poll_interval.count() > 0) thread_ = std::thread([this] { loop(); });
}

KeysReloader::~KeysReloader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Status KeysReloader::reload_locked(std::string_view why) {
  // The stamp is taken before reading, so an edit during the read is seen
  // by the next check.
  last_ = stamp_of(keys_->path());
  ++reloads_;
  Status s = keys_->reload();
  if (s.ok())
    options_.log("reloaded keys file " + keys_->path() + " (" + std::string(why) + ")");
  else
    options_.log("keeping previous keys; reload failed: " + s.message());
  return s;
}

Status KeysReloader::reload(std::string_view why) {
  std::lock_guard<std::mutex> lock(mu_);
  return reload_locked(why);
}

bool KeysReloader::poll() {
  std::lock_guard<std::mutex> lock(mu_);
  if (stamp_of(keys_->path()) == last_) return false;
  (void)reload_locked("file changed");
  return true;
}

std::uint64_t KeysReloader::reloads() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reloads_;
}

void KeysReloader::loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    stop_cv_.wait_for(lock, options_.poll_interval, [&] { return stopping_; });
    if (stopping_) return;
    if (!(stamp_of(keys_->path()) == last_)) (void)reload_locked("file changed");
  }
}

}  // namespace writeapi
