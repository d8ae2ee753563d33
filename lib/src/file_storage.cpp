// FileStorage: one append-only file per object, <data_dir>/<bucket>/<key>.jsonl.
//
// Durability follows PostgreSQL's synchronous commit with group commit:
// with FsyncPolicy::always a writer appends its lines, then waits while a
// single sync thread fdatasyncs every object written since its last round;
// writers arriving during a round share the next one. A failed sync is not
// retried (the kernel may have dropped the dirty pages): the object is cut
// back to its last synced length, every writer not yet synced is refused,
// and the file is reopened and its tail checked before the next append.
//
// Crash consistency: a request's lines go out in one pwrite at the
// object's tracked end; on any error the file is truncated back. On open,
// a tail without a final '\n' (a write torn by a crash) is cut back to the
// last newline, logged and counted.
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "file_io.h"
#include "writeapi/names.h"
#include "writeapi/storage.h"

namespace writeapi {
namespace {

constexpr std::string_view kSuffix = ".jsonl";

// An open descriptor, closed when the last holder lets go. The sync thread
// holds one while it syncs, so a writer may reopen the object meanwhile.
struct FileHandle {
  explicit FileHandle(int fd) : fd(fd) {}
  ~FileHandle() {
    if (fd >= 0) ::close(fd);
  }
  FileHandle(const FileHandle&) = delete;
  FileHandle& operator=(const FileHandle&) = delete;
  int fd;
};

// A writer waiting for its lines to be synced (lives on the writer's stack).
struct SyncWaiter {
  bool done = false;
  Status result;
};

struct ObjectFile {
  std::mutex mu;  // serializes appends; guards everything below
  std::string bucket;
  std::string path;
  std::shared_ptr<FileHandle> handle;  // null when it must be (re)opened
  std::uint64_t size = 0;              // bytes written and not cut back
  std::uint64_t durable_size = 0;      // bytes known synced
  bool queued_for_sync = false;
  bool sync_bucket_dir = false;  // the file is new: its name needs a sync
  bool sync_data_dir = false;    // the bucket directory is new, too
  bool error_logged = false;     // write errors are logged once per object
  std::vector<SyncWaiter*> waiters;
  // LRU position (guarded by the cache mutex).
  std::list<std::string>::iterator lru;
};

Status storage_status(int err, const std::string& what) {
  if (err == ENOSPC || err == EDQUOT)
    return Status(ErrorCode::insufficient_storage, "the server is out of storage space; retry later")
        .with_retry_after(60);
  (void)what;
  return Status(ErrorCode::storage_error, "the server could not store the data; retry later")
      .with_retry_after(1);
}

int fsync_path(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno;
  int rc = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  return rc;
}

class FileStorage final : public Storage {
 public:
  FileStorage(FileStorageOptions options, std::shared_ptr<FileIo> io)
      : options_(std::move(options)), io_(std::move(io)) {
    if (!options_.log)
      options_.log = [](std::string_view line) { std::fprintf(stderr, "%.*s\n", int(line.size()), line.data()); };
    if (options_.max_open_files == 0) options_.max_open_files = 1;
  }

  ~FileStorage() override {
    {
      std::lock_guard<std::mutex> lock(sync_mu_);
      stopping_ = true;
    }
    sync_cv_.notify_all();
    if (sync_thread_.joinable()) sync_thread_.join();
    if (lock_fd_ >= 0) ::close(lock_fd_);
  }

  Status open() {
    if (::mkdir(options_.data_dir.c_str(), 0755) != 0 && errno != EEXIST)
      return Status(ErrorCode::storage_error,
                    "cannot create data directory " + options_.data_dir + ": " + std::strerror(errno));
    std::string lock_path = options_.data_dir + "/.writeapi.lock";
    lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd_ < 0)
      return Status(ErrorCode::storage_error,
                    "data directory " + options_.data_dir + " is not writable: " + std::strerror(errno));
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0)
      return Status(ErrorCode::storage_error,
                    "data directory " + options_.data_dir + " is in use by another writeapi process");
    if (options_.fsync != FsyncPolicy::never) sync_thread_ = std::thread([this] { sync_loop(); });
    return Status();
  }

  Status append(const AppendBatch& batch) override {
    if (batch.item_count == 0 || batch.lines.empty()) return Status();
    std::shared_ptr<ObjectFile> object = acquire(batch.bucket, batch.key);
    SyncWaiter waiter;
    {
      std::lock_guard<std::mutex> lock(object->mu);
      if (!object->handle) {
        if (Status s = open_object(*object); !s.ok()) {
          write_errors_++;
          return s;
        }
      }
      if (Status s = write_locked(*object, batch.lines); !s.ok()) return s;
      if (options_.fsync == FsyncPolicy::always) object->waiters.push_back(&waiter);
      if (options_.fsync != FsyncPolicy::never && !object->queued_for_sync) {
        object->queued_for_sync = true;
        std::lock_guard<std::mutex> sync_lock(sync_mu_);
        sync_queue_.push_back(object);
        if (options_.fsync == FsyncPolicy::always) sync_cv_.notify_one();
      }
    }
    appends_++;
    bytes_written_ += batch.lines.size();
    if (options_.fsync != FsyncPolicy::always) return Status();
    std::unique_lock<std::mutex> lock(sync_mu_);
    done_cv_.wait(lock, [&] { return waiter.done; });
    return waiter.result;
  }

  Status list_keys(std::string_view bucket, std::vector<std::string>* keys) override {
    keys->clear();
    if (!is_valid_name(bucket)) return Status();
    std::string dir = options_.data_dir + "/" + std::string(bucket);
    DIR* d = ::opendir(dir.c_str());
    if (!d) {
      if (errno == ENOENT) return Status();
      return storage_status(errno, dir);
    }
    while (dirent* entry = ::readdir(d)) {
      std::string_view name(entry->d_name);
      if (name.size() <= kSuffix.size() || name.substr(name.size() - kSuffix.size()) != kSuffix) continue;
      std::string_view key = name.substr(0, name.size() - kSuffix.size());
      if (is_valid_name(key)) keys->emplace_back(key);
    }
    ::closedir(d);
    std::sort(keys->begin(), keys->end());
    return Status();
  }

  Status read_object(std::string_view bucket, std::string_view key, std::string* contents) override {
    contents->clear();
    if (!is_valid_name(bucket) || !is_valid_name(key)) return Status();
    std::string path = object_path(bucket, key);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? Status() : storage_status(errno, path);
    char buffer[1 << 16];
    for (;;) {
      ssize_t n = ::read(fd, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        int err = errno;
        ::close(fd);
        return storage_status(err, path);
      }
      if (n == 0) break;
      contents->append(buffer, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return Status();
  }

  StorageStats stats() const override {
    StorageStats s;
    s.appends = appends_.load();
    s.bytes_written = bytes_written_.load();
    s.syncs = syncs_.load();
    s.synced_appends = synced_appends_.load();
    s.torn_tails_repaired = torn_tails_.load();
    s.write_errors = write_errors_.load();
    std::lock_guard<std::mutex> lock(cache_mu_);
    s.open_objects = cache_.size();
    return s;
  }

 private:
  std::string object_path(std::string_view bucket, std::string_view key) const {
    std::string path;
    path.reserve(options_.data_dir.size() + bucket.size() + key.size() + 8);
    path.append(options_.data_dir).append("/").append(bucket).append("/").append(key).append(kSuffix);
    return path;
  }

  // Returns the cached object, creating its entry (not yet opened) if new.
  std::shared_ptr<ObjectFile> acquire(std::string_view bucket, std::string_view key) {
    std::string id;
    id.reserve(bucket.size() + key.size() + 1);
    id.append(bucket).append("/").append(key);
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(id);
    if (it != cache_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second->lru);
      return it->second;
    }
    evict_locked();
    auto object = std::make_shared<ObjectFile>();
    object->bucket = std::string(bucket);
    object->path = object_path(bucket, key);
    lru_.push_front(id);
    object->lru = lru_.begin();
    cache_.emplace(std::move(id), object);
    return object;
  }

  // Drops least recently used objects nobody is using (only the cache holds
  // them) until there is room for one more.
  void evict_locked() {
    auto it = lru_.end();
    while (cache_.size() >= options_.max_open_files && it != lru_.begin()) {
      --it;
      auto found = cache_.find(*it);
      if (found->second.use_count() == 1) {
        cache_.erase(found);
        it = lru_.erase(it);
      }
    }
  }

  // Opens (or reopens) the object's file and repairs a torn tail.
  Status open_object(ObjectFile& object) {
    bool new_bucket = false;
    std::string bucket_dir = options_.data_dir + "/" + object.bucket;
    int fd = ::open(object.path.c_str(), O_RDWR | O_CLOEXEC);
    bool created = false;
    if (fd < 0 && errno == ENOENT) {
      if (::mkdir(bucket_dir.c_str(), 0755) == 0) {
        new_bucket = true;
      } else if (errno != EEXIST) {
        return log_error(object, errno, "cannot create bucket directory");
      }
      fd = ::open(object.path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      created = fd >= 0;
    }
    if (fd < 0) return log_error(object, errno, "cannot open object");
    auto handle = std::make_shared<FileHandle>(fd);
    struct stat st;
    if (::fstat(fd, &st) != 0) return log_error(object, errno, "cannot stat object");
    std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
    if (size > 0) {
      std::uint64_t kept = 0;
      if (Status s = repair_tail(object, fd, size, &kept); !s.ok()) return s;
      size = kept;
    }
    object.handle = std::move(handle);
    object.size = size;
    object.durable_size = size;
    if (created) object.sync_bucket_dir = true;
    if (new_bucket) object.sync_data_dir = true;
    return Status();
  }

  // Cuts a tail that does not end in '\n' back to the last newline.
  Status repair_tail(ObjectFile& object, int fd, std::uint64_t size, std::uint64_t* kept) {
    char last;
    if (::pread(fd, &last, 1, static_cast<off_t>(size - 1)) != 1)
      return log_error(object, errno ? errno : EIO, "cannot read object tail");
    if (last == '\n') {
      *kept = size;
      return Status();
    }
    std::uint64_t end = size;
    std::uint64_t cut = 0;
    char buffer[4096];
    while (end > 0) {
      std::uint64_t start = end > sizeof buffer ? end - sizeof buffer : 0;
      ssize_t n = ::pread(fd, buffer, static_cast<std::size_t>(end - start), static_cast<off_t>(start));
      if (n != static_cast<ssize_t>(end - start)) return log_error(object, errno ? errno : EIO, "cannot read object tail");
      const void* nl = ::memrchr(buffer, '\n', static_cast<std::size_t>(n));
      if (nl) {
        cut = start + static_cast<std::uint64_t>(static_cast<const char*>(nl) - buffer) + 1;
        break;
      }
      end = start;
    }
    if (io_->ftruncate(fd, static_cast<off_t>(cut)) != 0 || io_->fdatasync(fd) != 0)
      return log_error(object, errno, "cannot repair torn tail of object");
    torn_tails_++;
    options_.log("repaired torn tail of " + object.path + ": dropped " + std::to_string(size - cut) +
                 " bytes after the last complete line");
    *kept = cut;
    return Status();
  }

  Status log_error(ObjectFile& object, int err, const char* what) {
    if (!object.error_logged) {
      object.error_logged = true;
      options_.log(std::string(what) + " " + object.path + ": " + std::strerror(err) +
                   " (further errors on this object are not logged until it recovers)");
    }
    return storage_status(err, object.path);
  }

  // Writes `lines` at the object's end; on failure cuts the file back so
  // nothing of the request remains. Caller holds object.mu.
  Status write_locked(ObjectFile& object, std::string_view lines) {
    const int fd = object.handle->fd;
    const std::uint64_t start = object.size;
    std::size_t done = 0;
    while (done < lines.size()) {
      ssize_t n = io_->pwrite(fd, lines.data() + done, lines.size() - done, static_cast<off_t>(start + done));
      if (n > 0) {
        done += static_cast<std::size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      int err = n < 0 ? errno : EIO;
      write_errors_++;
      if (io_->ftruncate(fd, static_cast<off_t>(start)) != 0) {
        // The file's state is unknown: reopen and check the tail next time.
        object.handle.reset();
      }
      return log_error(object, err, "cannot append to");
    }
    object.size = start + lines.size();
    if (object.error_logged) {
      object.error_logged = false;
      options_.log("appends to " + object.path + " succeed again");
    }
    return Status();
  }

  void sync_loop() {
    std::vector<std::shared_ptr<ObjectFile>> batch;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(sync_mu_);
        if (options_.fsync == FsyncPolicy::always) {
          sync_cv_.wait(lock, [&] { return stopping_ || !sync_queue_.empty(); });
        } else {
          sync_cv_.wait_for(lock, options_.fsync_interval, [&] { return stopping_; });
        }
        if (stopping_ && sync_queue_.empty()) return;
        batch.swap(sync_queue_);
      }
      for (auto& object : batch) sync_object(*object);
      batch.clear();
    }
  }

  void sync_object(ObjectFile& object) {
    std::shared_ptr<FileHandle> handle;
    std::vector<SyncWaiter*> waiters;
    std::uint64_t target;
    bool bucket_dir, data_dir;
    {
      std::lock_guard<std::mutex> lock(object.mu);
      object.queued_for_sync = false;
      handle = object.handle;
      target = object.size;
      waiters.swap(object.waiters);
      bucket_dir = object.sync_bucket_dir;
      data_dir = object.sync_data_dir;
    }
    int err = 0;
    if (!handle) {
      err = EIO;  // a failed write dropped the handle; nothing to sync
    } else if (io_->fdatasync(handle->fd) != 0) {
      err = errno;
    }
    if (err == 0 && bucket_dir) err = fsync_path(options_.data_dir + "/" + object.bucket);
    if (err == 0 && data_dir) err = fsync_path(options_.data_dir);
    syncs_++;
    synced_appends_ += waiters.size();
    Status result;
    {
      std::lock_guard<std::mutex> lock(object.mu);
      if (err == 0) {
        object.durable_size = std::max(object.durable_size, target);
        if (bucket_dir) object.sync_bucket_dir = false;
        if (data_dir) object.sync_data_dir = false;
      } else {
        // Do not trust the page cache after a failed sync: cut back to what
        // was synced, refuse every writer since, reopen before next append.
        write_errors_++;
        if (options_.fsync != FsyncPolicy::always) {
          // The lines were acknowledged already; keep them, reopen, and
          // check the tail before the next append.
          options_.log("background sync of " + object.path + " failed: " + std::strerror(err) +
                       "; lines acknowledged since the last sync may not be durable");
          object.handle.reset();
          return;
        }
        options_.log("sync of " + object.path + " failed: " + std::strerror(err) +
                     "; cutting back to the last synced length " + std::to_string(object.durable_size));
        if (object.handle) {
          if (io_->ftruncate(object.handle->fd, static_cast<off_t>(object.durable_size)) != 0)
            options_.log("cannot cut back " + object.path + ": " + std::strerror(errno));
        }
        object.handle.reset();
        object.size = object.durable_size;
        waiters.insert(waiters.end(), object.waiters.begin(), object.waiters.end());
        object.waiters.clear();
        result = storage_status(err, object.path);
      }
    }
    if (waiters.empty()) return;
    {
      std::lock_guard<std::mutex> lock(sync_mu_);
      for (SyncWaiter* waiter : waiters) {
        waiter->result = result;
        waiter->done = true;
      }
    }
    done_cv_.notify_all();
  }

  FileStorageOptions options_;
  std::shared_ptr<FileIo> io_;
  int lock_fd_ = -1;

  mutable std::mutex cache_mu_;
  std::unordered_map<std::string, std::shared_ptr<ObjectFile>> cache_;
  std::list<std::string> lru_;  // most recent first

  std::mutex sync_mu_;
  std::condition_variable sync_cv_;  // wakes the sync thread
  std::condition_variable done_cv_;  // wakes writers whose sync finished
  std::vector<std::shared_ptr<ObjectFile>> sync_queue_;
  bool stopping_ = false;
  std::thread sync_thread_;

  std::atomic<std::uint64_t> appends_{0}, bytes_written_{0}, syncs_{0}, synced_appends_{0},
      torn_tails_{0}, write_errors_{0};
};

}  // namespace

std::unique_ptr<Storage> make_file_storage(const FileStorageOptions& options, Status* status) {
  return make_file_storage_with_io(options, std::make_shared<FileIo>(), status);
}

std::unique_ptr<Storage> make_file_storage_with_io(const FileStorageOptions& options, std::shared_ptr<FileIo> io,
                                                   Status* status) {
  auto storage = std::make_unique<FileStorage>(options, std::move(io));
  Status s = storage->open();
  if (status) *status = s;
  if (!s.ok()) return nullptr;
  return storage;
}

}  // namespace writeapi
