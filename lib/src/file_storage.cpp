// FileStorage: one append-only file per object, <data_dir>/<bucket>/<key>.jsonl.
//
// Durability (FsyncPolicy::always) follows PostgreSQL's synchronous commit
// with group commit and a write-ahead log: a writer appends its lines to the
// object file (page cache) and a record of them to the log's pending buffer,
// both under the object's lock, then waits. One log thread writes all pending
// records with one write and one fdatasync of one file, however many objects
// and writers they come from, and then answers every writer of the group.
// Object files are synced in the background when a log segment is retired
// (a checkpoint), and on a clean shutdown. After a crash, open() replays the
// log into the objects, so every acknowledged line is restored.
//
// A failed log sync is not retried (the kernel may have dropped the dirty
// pages, PostgreSQL's fsync lesson): every writer not yet synced is refused,
// their lines are cut from the objects, and the log moves to a new segment.
//
// Crash consistency without the log (interval, never): a request's lines
// go out in one pwrite at the object's tracked end; on any error the file
// is truncated back. On open, a tail without a final '\n' (a write torn by
// a power failure) is cut back to the last newline, logged and counted.
#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <set>
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
constexpr std::string_view kWalDir = "/.wal";

// An open descriptor, closed when the last holder lets go.
struct FileHandle {
  explicit FileHandle(int fd) : fd(fd) {}
  ~FileHandle() {
    if (fd >= 0) ::close(fd);
  }
  FileHandle(const FileHandle&) = delete;
  FileHandle& operator=(const FileHandle&) = delete;
  int fd;
};

// A writer waiting for its lines to be durable (lives on the writer's stack).
struct SyncWaiter {
  bool done = false;
  Status result;
};

struct ObjectFile {
  std::mutex mu;  // serializes appends; guards everything below
  std::string bucket;
  std::string key;
  std::string path;
  std::shared_ptr<FileHandle> handle;  // null when it must be (re)opened
  std::uint64_t size = 0;              // bytes written and not cut back
  bool new_file = false;               // created since the last checkpoint
  bool new_bucket = false;             // its bucket directory too
  bool queued_for_sync = false;        // FsyncPolicy::interval
  bool error_logged = false;           // errors are logged once per object
  // LRU position (guarded by the cache mutex).
  std::list<std::string>::iterator lru;
};

Status storage_status(int err) {
  if (err == ENOSPC || err == EDQUOT)
    return Status(ErrorCode::insufficient_storage, "the server is out of storage space; retry later")
        .with_retry_after(60);
  return Status(ErrorCode::storage_error, "the server could not store the data; retry later")
      .with_retry_after(1);
}

int fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  int rc = ::fsync(fd) == 0 ? 0 : errno;
  ::close(fd);
  return rc;
}

// Log records: "WAL1", crc32 of the payload, payload length (little
// endian u32s), then the payload: u16 id length, id ("bucket/key"), u64
// offset of the lines in the object, the lines.
constexpr char kRecordMagic[4] = {'W', 'A', 'L', '1'};
constexpr std::size_t kRecordHeader = 12;

void put_u32(std::string* out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
void put_u64(std::string* out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
std::uint64_t get_le(const char* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

void encode_record(std::string* out, const ObjectFile& object, std::uint64_t offset, std::string_view lines) {
  const std::size_t id_length = object.bucket.size() + 1 + object.key.size();
  const std::size_t payload = 2 + id_length + 8 + lines.size();
  const std::size_t start = out->size();
  out->append(kRecordMagic, 4);
  put_u32(out, 0);  // crc, filled below
  put_u32(out, static_cast<std::uint32_t>(payload));
  out->push_back(static_cast<char>(id_length & 0xFF));
  out->push_back(static_cast<char>(id_length >> 8));
  out->append(object.bucket).append("/").append(object.key);
  put_u64(out, offset);
  out->append(lines);
  uLong crc = crc32(0L, reinterpret_cast<const Bytef*>(out->data() + start + kRecordHeader),
                    static_cast<uInt>(payload));
  for (int i = 0; i < 4; ++i) (*out)[start + 4 + i] = static_cast<char>((crc >> (8 * i)) & 0xFF);
}

std::string segment_name(std::uint64_t sequence) {
  char name[32];
  std::snprintf(name, sizeof name, "/%020llu.wal", static_cast<unsigned long long>(sequence));
  return name;
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
      std::lock_guard<std::mutex> lock(wal_mu_);
      stopping_ = true;
    }
    wal_cv_.notify_all();
    interval_cv_.notify_all();
    for (auto& thread : threads_) thread.join();
    if (checkpoint_thread_.joinable()) {
      {
        std::lock_guard<std::mutex> lock(checkpoint_mu_);
        checkpoint_stopping_ = true;
      }
      checkpoint_cv_.notify_all();
      checkpoint_thread_.join();  // after retiring what is queued
    }
    if (wal_fd_ >= 0) {
      // Clean shutdown: make the objects durable and empty the log.
      retire_segment(wal_sequence_, std::move(wal_dirty_));
      ::close(wal_fd_);
    }
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
    // A log left by a crash is replayed whatever the policy now is.
    if (Status s = recover(); !s.ok()) return s;
    if (options_.fsync == FsyncPolicy::always) {
      if (Status s = open_segment(wal_sequence_ + 1); !s.ok()) return s;
      threads_.emplace_back([this] { wal_loop(); });
      checkpoint_thread_ = std::thread([this] { checkpoint_loop(); });
    } else if (options_.fsync == FsyncPolicy::interval) {
      threads_.emplace_back([this] { interval_loop(); });
    }
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
      const std::uint64_t offset = object->size;
      if (Status s = write_locked(*object, batch.lines); !s.ok()) return s;
      if (options_.fsync == FsyncPolicy::always) {
        // Log the lines while the object is locked, so the log holds an
        // object's records in offset order.
        std::lock_guard<std::mutex> wal_lock(wal_mu_);
        if (wal_failing_) {
          cut_back_locked(*object, offset);
          return storage_status(EIO);
        }
        encode_record(&wal_pending_, *object, offset, batch.lines);
        wal_records_.push_back({object, offset, &waiter});
        wal_cv_.notify_one();
      } else if (options_.fsync == FsyncPolicy::interval && !object->queued_for_sync) {
        object->queued_for_sync = true;
        std::lock_guard<std::mutex> interval_lock(interval_mu_);
        interval_queue_.push_back(object);
      }
    }
    appends_++;
    bytes_written_ += batch.lines.size();
    if (options_.fsync != FsyncPolicy::always) return Status();
    std::unique_lock<std::mutex> lock(done_mu_);
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
      return storage_status(errno);
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
    if (fd < 0) return errno == ENOENT ? Status() : storage_status(errno);
    char buffer[1 << 16];
    for (;;) {
      ssize_t n = ::read(fd, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        int err = errno;
        ::close(fd);
        return storage_status(err);
      }
      if (n == 0) break;
      contents->append(buffer, static_cast<std::size_t>(n));
    }
    ::close(fd);
    // A torn last line (a crash mid-write, repaired on the next append) is
    // not part of the object.
    std::size_t complete = contents->rfind('\n');
    contents->resize(complete == std::string::npos ? 0 : complete + 1);
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
    object->key = std::string(key);
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
    if (created) object.new_file = true;
    if (new_bucket) object.new_bucket = true;
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
    return storage_status(err);
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
      if (start == 0 && object.new_file) {
        // The object's first write failed: leave no empty object behind.
        ::unlink(object.path.c_str());
        object.handle.reset();
        object.size = 0;
        return log_error(object, err, "cannot append to");
      }
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


  // Cuts the object back to `length` (a refused request's lines). Caller
  // holds object.mu.
  void cut_back_locked(ObjectFile& object, std::uint64_t length) {
    if (object.size <= length) return;
    if (!object.handle || io_->ftruncate(object.handle->fd, static_cast<off_t>(length)) != 0) {
      object.handle.reset();  // state unknown: reopen and check the tail
    }
    object.size = length;
  }

  // ---- Write-ahead log (FsyncPolicy::always) ----

  struct WalRecord {
    std::shared_ptr<ObjectFile> object;
    std::uint64_t offset;
    SyncWaiter* waiter;
  };

  // What a retired segment's checkpoint must sync: object paths and the
  // directories that gained entries.
  struct DirtySet {
    std::set<std::string> files;
    std::set<std::string> directories;
  };

  std::string wal_dir() const { return options_.data_dir + std::string(kWalDir); }

  Status open_segment(std::uint64_t sequence) {
    std::string path = wal_dir() + segment_name(sequence);
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return Status(ErrorCode::storage_error, "cannot create log segment " + path + ": " + std::strerror(errno));
    // Reserve the segment's blocks up front: an fdatasync then does not
    // have to commit block allocations of a growing file with every group.
    // (Recovery stops at the first bytes that are not a record.)
    if (int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(options_.wal_segment_bytes)); rc != 0 && rc != EOPNOTSUPP)
      options_.log(std::string("cannot reserve space for log segment ") + path + ": " + std::strerror(rc));
    if (fsync_path(wal_dir()) != 0) {
      ::close(fd);
      return Status(ErrorCode::storage_error, "cannot sync log directory " + wal_dir());
    }
    if (wal_fd_ >= 0) ::close(wal_fd_);
    wal_fd_ = fd;
    wal_sequence_ = sequence;
    wal_size_ = 0;
    return Status();
  }

  void answer(std::vector<WalRecord>& records, const Status& result) {
    {
      std::lock_guard<std::mutex> lock(done_mu_);
      for (WalRecord& record : records) {
        record.waiter->result = result;
        record.waiter->done = true;
      }
    }
    done_cv_.notify_all();
  }

  // The log thread: one write and one fdatasync per group of records.
  void wal_loop() {
    std::string buffer;
    std::vector<WalRecord> records;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(wal_mu_);
        wal_cv_.wait(lock, [&] { return stopping_ || !wal_pending_.empty(); });
        if (wal_pending_.empty()) return;  // stopping, nothing left
        buffer.swap(wal_pending_);
        records.swap(wal_records_);
      }
      int err = 0;
      std::size_t done = 0;
      while (err == 0 && done < buffer.size()) {
        ssize_t n = io_->pwrite(wal_fd_, buffer.data() + done, buffer.size() - done,
                                static_cast<off_t>(wal_size_ + done));
        if (n > 0) done += static_cast<std::size_t>(n);
        else if (n < 0 && errno != EINTR) err = errno;
        else if (n == 0) err = EIO;
      }
      if (err == 0 && io_->fdatasync(wal_fd_) != 0) err = errno;
      syncs_++;
      if (err == 0) {
        wal_size_ += buffer.size();
        synced_appends_ += records.size();
        for (WalRecord& record : records) note_dirty(*record.object);
        answer(records, Status());
      } else {
        wal_failed(records, err);
      }
      buffer.clear();
      if (buffer.capacity() > (4u << 20)) std::string().swap(buffer);
      records.clear();
      if (wal_size_ >= options_.wal_segment_bytes) rotate();
    }
  }

  void note_dirty(ObjectFile& object) {
    wal_dirty_.files.insert(object.path);
    std::lock_guard<std::mutex> lock(object.mu);
    if (object.new_file) {
      wal_dirty_.directories.insert(options_.data_dir + "/" + object.bucket);
      object.new_file = false;
    }
    if (object.new_bucket) {
      wal_dirty_.directories.insert(options_.data_dir);
      object.new_bucket = false;
    }
  }

  // A failed log write or sync: refuse every unsynced writer, cut their
  // lines from the objects, continue in a fresh segment.
  void wal_failed(std::vector<WalRecord>& records, int err) {
    write_errors_++;
    {
      std::lock_guard<std::mutex> lock(wal_mu_);
      wal_failing_ = true;
      for (WalRecord& record : wal_records_) records.push_back(std::move(record));
      wal_records_.clear();
      wal_pending_.clear();
    }
    options_.log(std::string("log sync failed: ") + std::strerror(err) + "; refusing " +
                 std::to_string(records.size()) + " unsynced appends and starting a new log segment");
    std::map<ObjectFile*, std::uint64_t> cut;
    for (WalRecord& record : records) {
      auto [it, inserted] = cut.emplace(record.object.get(), record.offset);
      if (!inserted) it->second = std::min(it->second, record.offset);
    }
    for (auto [object, offset] : cut) {
      std::lock_guard<std::mutex> lock(object->mu);
      cut_back_locked(*object, offset);
    }
    // The segment's tail is unknown now: keep what was synced, move on.
    if (io_->ftruncate(wal_fd_, static_cast<off_t>(wal_size_)) != 0)
      options_.log("cannot cut back the log segment; recovery will stop at its first bad record");
    rotate();
    {
      std::lock_guard<std::mutex> lock(wal_mu_);
      wal_failing_ = false;
    }
    answer(records, storage_status(err));
  }

  // Starts a new segment; the checkpoint thread retires the old one, so
  // writers do not wait for the objects' syncs.
  void rotate() {
    std::uint64_t old_sequence = wal_sequence_;
    if (Status s = open_segment(old_sequence + 1); !s.ok()) {
      options_.log(s.message() + "; keeping the current segment");
      return;
    }
    {
      std::lock_guard<std::mutex> lock(checkpoint_mu_);
      checkpoints_.emplace_back(old_sequence, std::move(wal_dirty_));
    }
    wal_dirty_ = DirtySet();
    checkpoint_cv_.notify_one();
  }

  void checkpoint_loop() {
    for (;;) {
      std::pair<std::uint64_t, DirtySet> job;
      {
        std::unique_lock<std::mutex> lock(checkpoint_mu_);
        checkpoint_cv_.wait(lock, [&] { return checkpoint_stopping_ || !checkpoints_.empty(); });
        if (checkpoints_.empty()) return;  // stopping, nothing left
        job = std::move(checkpoints_.front());
        checkpoints_.pop_front();
      }
      retire_segment(job.first, std::move(job.second));
    }
  }

  // Syncs every object a segment covered, then deletes the segment.
  void retire_segment(std::uint64_t sequence, DirtySet dirty) {
    int err = 0;
    for (const std::string& path : dirty.files) {
      int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;  // removed by the operator: nothing to keep
      if (io_->fdatasync(fd) != 0) err = errno;
      ::close(fd);
    }
    for (const std::string& dir : dirty.directories)
      if (int e = fsync_path(dir); e != 0) err = e;
    if (err != 0) {
      options_.log(std::string("checkpoint sync failed: ") + std::strerror(err) + "; keeping log segment " +
                   std::to_string(sequence) + " for replay");
      return;
    }
    ::unlink((wal_dir() + segment_name(sequence)).c_str());
    fsync_path(wal_dir());
  }

  // Replays log segments left by a crash into the objects.
  Status recover() {
    std::string dir = wal_dir();
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST)
      return Status(ErrorCode::storage_error, "cannot create log directory " + dir + ": " + std::strerror(errno));
    std::vector<std::uint64_t> segments;
    if (DIR* d = ::opendir(dir.c_str())) {
      while (dirent* entry = ::readdir(d)) {
        unsigned long long sequence;
        char tail[8];
        if (std::sscanf(entry->d_name, "%20llu.%4s", &sequence, tail) == 2 && std::string_view(tail) == "wal")
          segments.push_back(sequence);
      }
      ::closedir(d);
    }
    std::sort(segments.begin(), segments.end());
    wal_sequence_ = segments.empty() ? 0 : segments.back();
    if (segments.empty()) return Status();
    DirtySet dirty;
    std::size_t replayed = 0;
    for (std::uint64_t sequence : segments) {
      std::string contents;
      if (Status s = read_object_file(dir + segment_name(sequence), &contents); !s.ok()) return s;
      std::size_t pos = 0;
      while (contents.size() - pos >= kRecordHeader && std::memcmp(contents.data() + pos, kRecordMagic, 4) == 0) {
        std::uint32_t crc = static_cast<std::uint32_t>(get_le(contents.data() + pos + 4, 4));
        std::size_t payload = get_le(contents.data() + pos + 8, 4);
        if (payload < 10 || contents.size() - pos - kRecordHeader < payload) break;
        const char* p = contents.data() + pos + kRecordHeader;
        if (crc32(0L, reinterpret_cast<const Bytef*>(p), static_cast<uInt>(payload)) != crc) break;
        std::size_t id_length = get_le(p, 2);
        if (2 + id_length + 8 > payload) break;
        std::string_view id(p + 2, id_length);
        std::uint64_t offset = get_le(p + 2 + id_length, 8);
        std::string_view lines(p + 2 + id_length + 8, payload - 2 - id_length - 8);
        if (Status s = replay(id, offset, lines, &dirty); !s.ok()) return s;
        ++replayed;
        pos += kRecordHeader + payload;
      }
      if (pos != contents.size())
        options_.log("log segment " + std::to_string(sequence) + ": ignoring " +
                     std::to_string(contents.size() - pos) + " bytes after the last complete record");
    }
    options_.log("recovered " + std::to_string(replayed) + " logged appends from " + std::to_string(segments.size()) +
                 " log segment(s)");
    for (std::size_t i = 0; i + 1 < segments.size(); ++i) retire_segment(segments[i], DirtySet());
    retire_segment(segments.back(), std::move(dirty));
    return Status();
  }

  Status replay(std::string_view id, std::uint64_t offset, std::string_view lines, DirtySet* dirty) {
    std::size_t slash = id.find('/');
    if (slash == std::string_view::npos || !is_valid_name(id.substr(0, slash)) || !is_valid_name(id.substr(slash + 1)))
      return Status();  // not ours; never written by this store
    std::string bucket_dir = options_.data_dir + "/" + std::string(id.substr(0, slash));
    if (::mkdir(bucket_dir.c_str(), 0755) == 0) dirty->directories.insert(options_.data_dir);
    std::string path = object_path(id.substr(0, slash), id.substr(slash + 1));
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
      fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      dirty->directories.insert(bucket_dir);
    }
    if (fd < 0) return Status(ErrorCode::storage_error, "cannot open " + path + " for log replay: " + std::strerror(errno));
    struct stat st;
    if (::fstat(fd, &st) == 0 && static_cast<std::uint64_t>(st.st_size) < offset)
      options_.log("log replay: " + path + " is shorter than its logged lines expect; was it truncated by hand?");
    std::size_t done = 0;
    while (done < lines.size()) {
      ssize_t n = ::pwrite(fd, lines.data() + done, lines.size() - done, static_cast<off_t>(offset + done));
      if (n <= 0 && errno == EINTR) continue;
      if (n <= 0) {
        int err = errno;
        ::close(fd);
        return Status(ErrorCode::storage_error, "log replay into " + path + " failed: " + std::strerror(err));
      }
      done += static_cast<std::size_t>(n);
    }
    ::close(fd);
    dirty->files.insert(path);
    return Status();
  }

  Status read_object_file(const std::string& path, std::string* contents) {
    contents->clear();
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? Status() : storage_status(errno);
    char buffer[1 << 16];
    for (;;) {
      ssize_t n = ::read(fd, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        int err = errno;
        ::close(fd);
        return storage_status(err);
      }
      if (n == 0) break;
      contents->append(buffer, static_cast<std::size_t>(n));
    }
    ::close(fd);
    return Status();
  }

  // ---- FsyncPolicy::interval ----

  void interval_loop() {
    std::deque<std::shared_ptr<ObjectFile>> batch;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(interval_mu_);
        interval_cv_.wait_for(lock, options_.fsync_interval, [&] { return stopping(); });
        batch.swap(interval_queue_);
      }
      for (auto& object : batch) sync_in_background(*object);
      batch.clear();
      if (stopping()) return;
    }
  }

  bool stopping() {
    std::lock_guard<std::mutex> lock(wal_mu_);
    return stopping_;
  }

  // The lines were acknowledged already: a failure is logged and counted,
  // and the object is reopened (tail checked) before its next append.
  void sync_in_background(ObjectFile& object) {
    std::shared_ptr<FileHandle> handle;
    bool new_file, new_bucket;
    {
      std::lock_guard<std::mutex> lock(object.mu);
      object.queued_for_sync = false;
      handle = object.handle;
      new_file = object.new_file;
      new_bucket = object.new_bucket;
    }
    if (!handle) return;
    int err = io_->fdatasync(handle->fd) == 0 ? 0 : errno;
    if (err == 0 && new_file) err = fsync_path(options_.data_dir + "/" + object.bucket);
    if (err == 0 && new_bucket) err = fsync_path(options_.data_dir);
    syncs_++;
    std::lock_guard<std::mutex> lock(object.mu);
    if (err == 0) {
      if (new_file) object.new_file = false;
      if (new_bucket) object.new_bucket = false;
      return;
    }
    write_errors_++;
    options_.log("background sync of " + object.path + " failed: " + std::strerror(err) +
                 "; lines acknowledged since the last sync may not be durable");
    object.handle.reset();
  }

  FileStorageOptions options_;
  std::shared_ptr<FileIo> io_;
  int lock_fd_ = -1;
  std::vector<std::thread> threads_;

  mutable std::mutex cache_mu_;
  std::unordered_map<std::string, std::shared_ptr<ObjectFile>> cache_;
  std::list<std::string> lru_;  // most recent first

  // Log state. wal_mu_ guards the pending buffer, records, wal_failing_ and
  // stopping_; the rest belongs to the log thread.
  std::mutex wal_mu_;
  std::condition_variable wal_cv_;
  std::string wal_pending_;
  std::vector<WalRecord> wal_records_;
  bool wal_failing_ = false;
  bool stopping_ = false;
  int wal_fd_ = -1;
  std::uint64_t wal_sequence_ = 0;
  std::uint64_t wal_size_ = 0;
  DirtySet wal_dirty_;

  // Segments waiting for their checkpoint (oldest first).
  std::mutex checkpoint_mu_;
  std::condition_variable checkpoint_cv_;
  std::deque<std::pair<std::uint64_t, DirtySet>> checkpoints_;
  bool checkpoint_stopping_ = false;
  std::thread checkpoint_thread_;

  std::mutex done_mu_;
  std::condition_variable done_cv_;  // wakes writers whose group was synced

  std::mutex interval_mu_;
  std::condition_variable interval_cv_;
  std::deque<std::shared_ptr<ObjectFile>> interval_queue_;

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
