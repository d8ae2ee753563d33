// FileStorage: one append-only file per object, <data_dir>/<bucket>/<key>.jsonl,
// with an LRU cache of open files.
//
// Durability (FsyncPolicy::always) follows PostgreSQL's synchronous commit
// with group commit and a write-ahead log (wal_writer.h): a writer reserves
// its lines' place in the object and queues a record of them in the log,
// both under the object's lock, then waits for the log thread to make its
// group durable and write the lines into the object (page cache). Object
// files are synced when a log segment is retired (a checkpoint), and on a
// clean shutdown. After a crash, open() replays the log into the objects
// (wal_reader.h), so every acknowledged line is restored, and no object
// holds a line that no durable record names.
//
// Crash consistency without the log (interval, never): a request's lines
// go out in one pwrite at the object's tracked end; on any error the file
// is truncated back. On open, a tail without a final '\n' (a write torn by
// a power failure) is cut back to the last newline, logged and counted.
//
// Every file system call goes through FileIo (file_io.h), so tests can fail
// any of them.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "file_io.h"
#include "range_read.h"
#include "request_id_file.h"
#include "wal_reader.h"
#include "wal_writer.h"
#include "writeapi/names.h"
#include "writeapi/storage.h"

namespace writeapi {
namespace {

constexpr std::string_view kSuffix = ".jsonl";
constexpr std::string_view kWalDir = "/.wal";
constexpr std::string_view kRequestIdFile = "/request-ids";

// An open descriptor, closed when the last holder lets go.
struct FileHandle {
  FileHandle(FileIo* io, int fd) : io(io), fd(fd) {}
  ~FileHandle() {
    if (fd >= 0) io->close(fd);
  }
  FileHandle(const FileHandle&) = delete;
  FileHandle& operator=(const FileHandle&) = delete;
  FileIo* io;
  int fd;
};

// bucket and key (wal::LoggedObject) are set once, before it is shared.
struct ObjectFile final : wal::LoggedObject {
  std::mutex mu;  // serializes appends; guards everything below
  std::string path;
  std::shared_ptr<FileHandle> handle;  // null when it must be (re)opened
  std::uint64_t size = 0;              // bytes written and not cut back
  std::uint64_t acked_size = 0;        // bytes stored as promised: what readers see
  bool new_file = false;               // created since the last checkpoint
  bool new_bucket = false;             // its bucket directory too
  bool queued_for_sync = false;        // FsyncPolicy::interval
  bool error_logged = false;           // errors are logged once per object
  // Refused lines could not be cut from the file: no appends until a
  // restart repairs it. Read without the lock by the cache's eviction.
  std::atomic<bool> fenced{false};
  // LRU position (guarded by the cache mutex).
  std::list<std::string>::iterator lru;
};

class FileStorage final : public Storage, public wal::Delegate {
 public:
  FileStorage(FileStorageOptions options, std::shared_ptr<FileIo> io)
      : options_(std::move(options)), io_(std::move(io)) {
    if (!options_.log)
      options_.log = [](std::string_view line) { std::fprintf(stderr, "%.*s\n", int(line.size()), line.data()); };
    if (options_.max_open_files == 0) options_.max_open_files = 1;
  }

  ~FileStorage() override {
    {
      std::lock_guard<std::mutex> lock(interval_mu_);
      stopping_ = true;
    }
    interval_cv_.notify_all();
    if (interval_thread_.joinable()) interval_thread_.join();
    if (wal_) wal_->stop();  // drains the log, then retires every segment
    wal_.reset();
    cache_.clear();
    lru_.clear();
    if (lock_fd_ >= 0) io_->close(lock_fd_);
  }

  Status open() {
    if (io_->mkdir(options_.data_dir, 0755) == 0) {
      // A new directory's entry is durable only once its parent is synced.
      if (io_->sync_directory(parent_directory(options_.data_dir)) != 0)
        return Status(ErrorCode::storage_error,
                      "cannot sync the parent of data directory " + options_.data_dir + ": " + std::strerror(errno));
    } else if (errno != EEXIST) {
      return Status(ErrorCode::storage_error,
                    "cannot create data directory " + options_.data_dir + ": " + std::strerror(errno));
    }
    std::string lock_path = options_.data_dir + "/.writeapi.lock";
    lock_fd_ = io_->open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd_ < 0)
      return Status(ErrorCode::storage_error,
                    "data directory " + options_.data_dir + " is not writable: " + std::strerror(errno));
    if (io_->lock(lock_fd_) != 0)
      return Status(ErrorCode::storage_error,
                    "data directory " + options_.data_dir + " is in use by another writeapi process");
    // A log left by a crash is replayed whatever the policy now is.
    std::uint64_t last_sequence = 0;
    if (Status s = recover(&last_sequence); !s.ok()) return s;
    if (options_.fsync == FsyncPolicy::always) {
      wal::WriterOptions wal_options;
      wal_options.dir = wal_dir();
      wal_options.segment_bytes = options_.wal_segment_bytes;
      wal_options.log = options_.log;
      wal_options.keep_requests = [this](std::string_view records) { return request_id_file_->append(records, true); };
      wal_ = std::make_unique<wal::Writer>(io_, std::move(wal_options), this);
      if (Status s = wal_->start(last_sequence + 1); !s.ok()) {
        wal_.reset();
        return s;
      }
    } else if (options_.fsync == FsyncPolicy::interval) {
      interval_thread_ = std::thread([this] { interval_loop(); });
    }
    return Status();
  }

  Status append(const AppendBatch& batch) override {
    if (batch.item_count == 0 || batch.lines.empty()) return Status();
    wal::Writer::Waiter waiter;
    bool logged = false;
    Status result = submit(batch, &waiter, &logged);
    if (logged) result = wal_->wait(&waiter);
    return count(result, batch.lines.size());
  }

  void append_async(const AppendBatch& batch, std::function<void(Status)> done) override {
    if (batch.item_count == 0 || batch.lines.empty()) return done(Status());
    // Owns the waiter until the log thread answers it.
    struct Pending {
      wal::Writer::Waiter waiter;
      std::function<void(Status)> done;
      std::size_t bytes;
    };
    auto* pending = new Pending{{}, std::move(done), batch.lines.size()};
    pending->waiter.callback = [this, pending](const Status& durable) {
      std::function<void(Status)> finish = std::move(pending->done);
      const std::size_t bytes = pending->bytes;
      delete pending;
      finish(count(durable, bytes));
    };
    bool logged = false;
    Status result = submit(batch, &pending->waiter, &logged);
    if (logged) return;  // the log thread answers (maybe already has)
    std::function<void(Status)> finish = std::move(pending->done);
    delete pending;
    finish(count(result, batch.lines.size()));
  }

  Status list_keys(std::string_view bucket, std::vector<std::string>* keys) override {
    keys->clear();
    if (!is_valid_name(bucket)) return Status();
    std::string dir = options_.data_dir + "/" + std::string(bucket);
    std::vector<std::string> names;
    if (io_->list_directory(dir, &names) != 0) {
      if (errno == ENOENT) return Status();
      return storage_status(errno);
    }
    for (const std::string& entry : names) {
      std::string_view name(entry);
      if (name.size() <= kSuffix.size() || name.substr(name.size() - kSuffix.size()) != kSuffix) continue;
      std::string_view key = name.substr(0, name.size() - kSuffix.size());
      if (is_valid_name(key)) keys->emplace_back(key);
    }
    std::sort(keys->begin(), keys->end());
    return Status();
  }

  Status read_object(std::string_view bucket, std::string_view key, std::string* contents) override {
    contents->clear();
    if (!is_valid_name(bucket) || !is_valid_name(key)) return Status();
    // Only acknowledged bytes are visible: an open object is read up to its
    // acknowledged length (lines in flight, or refused and about to be cut,
    // lie beyond it; the bytes before it never change). An object without
    // an open file has no append in flight, so it is read under its lock.
    std::shared_ptr<ObjectFile> object = acquire(bucket, key);
    std::unique_lock<std::mutex> lock(object->mu);
    std::uint64_t limit = UINT64_MAX;
    if (object->handle || object->fenced) {
      limit = object->acked_size;
      lock.unlock();
    }
    if (io_->read_file(object->path, contents) != 0) {
      int err = errno;
      contents->clear();
      return err == ENOENT ? Status() : storage_status(err);
    }
    if (contents->size() > limit) contents->resize(static_cast<std::size_t>(limit));
    // A torn last line (a crash mid-write, repaired on the next append) is
    // not part of the object.
    std::size_t complete = contents->rfind('\n');
    contents->resize(complete == std::string::npos ? 0 : complete + 1);
    return Status();
  }

  Status take_recovered_requests(std::vector<StoredRequest>* requests) override {
    std::lock_guard<std::mutex> lock(recovered_mu_);
    requests->clear();
    requests->swap(recovered_requests_);
    return Status();
  }

  // Reads from the file up to its acknowledged length, without the
  // object's lock: the bytes before that length never change.
  Status read_range(std::string_view bucket, std::string_view key, std::string_view cursor, std::size_t max_lines,
                    std::size_t max_bytes, ReadChunk* chunk) override {
    *chunk = ReadChunk();
    std::uint64_t offset = 0;
    const Status bad_cursor(ErrorCode::invalid_cursor, "the cursor is not one this object returned");
    if (!range_read::parse_position(cursor, &offset)) return bad_cursor;
    chunk->next_cursor = range_read::format_position(offset);
    std::shared_ptr<FileHandle> file;
    std::uint64_t limit = 0;
    struct stat st {};
    if (Status s = open_for_reading(bucket, key, &file, &limit, &st); !s.ok()) return s;
    if (!file) return Status();  // never written: absent (not found), whatever the cursor
    chunk->exists = true;
    if (offset > limit) return bad_cursor;
    if (offset > 0) {
      char before = 0;
      if (Status s = pread_full(file->fd, &before, 1, offset - 1); !s.ok()) return s;
      if (before != '\n') return bad_cursor;
    }
    const std::uint64_t available = limit - offset;
    const std::size_t block =
        static_cast<std::size_t>(std::min<std::uint64_t>(available, std::max<std::size_t>(max_bytes, 1)));
    std::string& buffer = chunk->lines;
    std::size_t taken = 0;
    // A line longer than max_bytes is read whole, one block at a time.
    while (max_lines > 0 && buffer.size() < available) {
      const std::size_t have = buffer.size();
      const std::size_t more = static_cast<std::size_t>(std::min<std::uint64_t>(block, available - have));
      buffer.resize(have + more);
      if (Status s = pread_full(file->fd, &buffer[have], more, offset + have); !s.ok()) {
        buffer.clear();
        return s;
      }
      taken = range_read::take_lines(buffer, max_lines, max_bytes, &chunk->line_count);
      if (taken > 0) break;
    }
    buffer.resize(taken);
    chunk->next_cursor = range_read::format_position(offset + taken);
    return Status();
  }

  // Scans backwards from the acknowledged end, one block at a time: the
  // last `lines` line ends (after the one ending the object) are found
  // without reading more than they span.
  Status tail_cursor(std::string_view bucket, std::string_view key, std::size_t lines, std::string* cursor,
                     bool* exists) override {
    *cursor = range_read::format_position(0);
    *exists = false;
    std::shared_ptr<FileHandle> file;
    std::uint64_t limit = 0;
    struct stat st {};
    if (Status s = open_for_reading(bucket, key, &file, &limit, &st); !s.ok()) return s;
    if (!file) return Status();
    *exists = true;
    // Line ends seen from the end: the first is the object's last (a torn
    // tail after it is not part of the object), the (lines+1)-th ends the
    // line before the tail; fewer lines than asked: from the start.
    std::uint64_t start = 0;
    if (Status s = after_line_end_from_end(file->fd, limit, lines + 1, &start); !s.ok()) return s;
    *cursor = range_read::format_position(start);
    return Status();
  }

  Status list_objects(std::string_view bucket, std::vector<ObjectInfo>* objects) override {
    objects->clear();
    std::vector<std::string> keys;
    if (Status s = list_keys(bucket, &keys); !s.ok()) return s;
    for (std::string& key : keys) {
      std::shared_ptr<FileHandle> file;
      std::uint64_t limit = 0;
      struct stat st {};
      if (Status s = open_for_reading(bucket, key, &file, &limit, &st); !s.ok()) return s;
      if (!file) continue;  // removed since it was listed
      // A torn tail (a crash with --fsync never or interval, not repaired
      // until the object's next append) is not part of the object.
      if (Status s = after_line_end_from_end(file->fd, limit, 1, &limit); !s.ok()) return s;
      ObjectInfo info;
      info.key = std::move(key);
      info.bytes = limit;
      info.modified =
          std::chrono::system_clock::time_point(std::chrono::duration_cast<std::chrono::system_clock::duration>(
              std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
      objects->push_back(std::move(info));
    }
    return Status();
  }

  StorageStats stats() const override {
    StorageStats s;
    s.appends = appends_.load();
    s.bytes_written = bytes_written_.load();
    s.syncs = syncs_.load() + (wal_ ? wal_->syncs() : 0);
    s.synced_appends = wal_ ? wal_->synced_records() : 0;
    s.torn_tails_repaired = torn_tails_.load();
    s.write_errors = write_errors_.load() + (wal_ ? wal_->failures() : 0);
    std::lock_guard<std::mutex> lock(cache_mu_);
    s.open_objects = cache_.size();
    s.fenced_objects = fenced_objects_.load();
    return s;
  }

 private:
  std::string object_path(std::string_view bucket, std::string_view key) const {
    std::string path;
    path.reserve(options_.data_dir.size() + bucket.size() + key.size() + 8);
    path.append(options_.data_dir).append("/").append(bucket).append("/").append(key).append(kSuffix);
    return path;
  }

  // Opens the object read-only and finds how much of it readers may see:
  // the acknowledged length of an open object, else (no append in flight,
  // checked under its lock) the file's size. *file stays null for an object
  // never written.
  Status open_for_reading(std::string_view bucket, std::string_view key, std::shared_ptr<FileHandle>* file,
                          std::uint64_t* limit, struct stat* st) {
    file->reset();
    *limit = 0;
    if (!is_valid_name(bucket) || !is_valid_name(key)) return Status();
    std::shared_ptr<ObjectFile> object = acquire(bucket, key);
    int fd = io_->open(object->path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) return errno == ENOENT ? Status() : storage_status(errno);
    auto handle = std::make_shared<FileHandle>(io_.get(), fd);
    std::lock_guard<std::mutex> lock(object->mu);
    if (io_->fstat(fd, st) != 0) return storage_status(errno);
    *limit = (object->handle || object->fenced) ? object->acked_size : static_cast<std::uint64_t>(st->st_size);
    *file = std::move(handle);
    return Status();
  }

  // *after = the position just after the n-th '\n' (n >= 1) counted back
  // from `length`, or 0 when there are fewer. Reads backwards, 4 KiB first
  // (most answers are in the last block), then 64 KiB at a time.
  Status after_line_end_from_end(int fd, std::uint64_t length, std::size_t n, std::uint64_t* after) {
    std::string block;
    std::size_t ends = 0;
    std::uint64_t position = length;
    while (position > 0) {
      const std::size_t want = block.empty() ? 4096 : 64 * 1024;
      const std::size_t size = static_cast<std::size_t>(std::min<std::uint64_t>(want, position));
      position -= size;
      block.resize(size);
      if (Status s = pread_full(fd, block.data(), size, position); !s.ok()) return s;
      for (std::size_t i = size; i-- > 0;)
        if (block[i] == '\n' && ++ends == n) {
          *after = position + i + 1;
          return Status();
        }
    }
    *after = 0;
    return Status();
  }

  Status pread_full(int fd, char* data, std::size_t length, std::uint64_t offset) {
    while (length > 0) {
      ssize_t n = io_->pread(fd, data, length, static_cast<off_t>(offset));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return storage_status(errno);
      if (n == 0) return Status(ErrorCode::storage_error, "an object file is shorter than its acknowledged length");
      data += n;
      length -= static_cast<std::size_t>(n);
      offset += static_cast<std::uint64_t>(n);
    }
    return Status();
  }

  std::string wal_dir() const { return options_.data_dir + std::string(kWalDir); }

  static std::string parent_directory(const std::string& path) {
    std::size_t slash = path.find_last_not_of('/');
    slash = slash == std::string::npos ? std::string::npos : path.rfind('/', slash);
    if (slash == std::string::npos) return ".";
    if (slash == 0) return "/";
    return path.substr(0, slash);
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
      if (found->second.use_count() == 1 && !found->second->fenced) {
        cache_.erase(found);
        it = lru_.erase(it);
      }
    }
  }

  // Opens (or reopens) the object's file and repairs a torn tail.
  Status open_object(ObjectFile& object) {
    bool new_bucket = false;
    std::string bucket_dir = options_.data_dir + "/" + object.bucket;
    int fd = io_->open(object.path, O_RDWR | O_CLOEXEC, 0);
    bool created = false;
    if (fd < 0 && errno == ENOENT) {
      if (io_->mkdir(bucket_dir, 0755) == 0) {
        new_bucket = true;
      } else if (errno != EEXIST) {
        return log_error(object, errno, "cannot create bucket directory");
      }
      fd = io_->open(object.path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      created = fd >= 0;
    }
    if (fd < 0) return log_error(object, errno, "cannot open object");
    auto handle = std::make_shared<FileHandle>(io_.get(), fd);
    struct stat st;
    if (io_->fstat(fd, &st) != 0) return log_error(object, errno, "cannot stat object");
    std::uint64_t size = static_cast<std::uint64_t>(st.st_size);
    if (size > 0) {
      std::uint64_t kept = 0;
      if (Status s = repair_tail(object, fd, size, &kept); !s.ok()) return s;
      size = kept;
    }
    object.handle = std::move(handle);
    object.size = size;
    object.acked_size = size;
    if (created) object.new_file = true;
    if (new_bucket) object.new_bucket = true;
    return Status();
  }

  // Cuts a tail that does not end in '\n' back to the last newline.
  Status repair_tail(ObjectFile& object, int fd, std::uint64_t size, std::uint64_t* kept) {
    char last;
    errno = 0;
    if (io_->pread(fd, &last, 1, static_cast<off_t>(size - 1)) != 1)
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
      errno = 0;
      ssize_t n = io_->pread(fd, buffer, static_cast<std::size_t>(end - start), static_cast<off_t>(start));
      if (n != static_cast<ssize_t>(end - start))
        return log_error(object, errno ? errno : EIO, "cannot read object tail");
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
    if (io_->pwrite_all(fd, lines.data(), lines.size(), static_cast<off_t>(start)) != 0) {
      int err = errno;
      write_errors_++;
      if (start == 0 && object.new_file && io_->unlink(object.path) == 0) {
        // The object's first write failed: leave no empty object behind.
        object.handle.reset();
        object.size = 0;
        return log_error(object, err, "cannot append to");
      }
      Status status = log_error(object, err, "cannot append to");
      if (io_->ftruncate(fd, static_cast<off_t>(start)) != 0) fence_locked(object, start, errno);
      return status;
    }
    object.size = start + lines.size();
    if (object.error_logged) {
      object.error_logged = false;
      options_.log("appends to " + object.path + " succeed again");
    }
    return Status();
  }

  // Cuts the object back to `length` (a refused request's lines), or
  // fences it when that fails. Caller holds object.mu.
  void cut_back_locked(ObjectFile& object, std::uint64_t length, int cause) {
    if (object.size <= length) return;
    if (!object.handle) {
      fence_locked(object, length, cause);
    } else if (io_->ftruncate(object.handle->fd, static_cast<off_t>(length)) != 0) {
      fence_locked(object, length, errno);
    } else {
      object.size = length;
    }
  }

  // Refused lines are stuck in the object's file: keep them invisible and
  // accept no appends until a restart (log replay, then tail repair) has
  // cut them. Caller holds object.mu.
  void fence_locked(ObjectFile& object, std::uint64_t length, int err) {
    object.size = length;
    object.acked_size = std::min(object.acked_size, length);
    if (object.fenced.exchange(true)) return;
    fenced_objects_++;
    options_.log("object " + object.path + " fenced: cannot cut refused lines from it (" + std::strerror(err) +
                 "); appends to it answer 503 storage_unavailable until the server restarts");
  }

  // The part of an append made under the object's lock: with the log,
  // reserve the lines' place and queue their record (the log thread writes
  // them once it is durable: write() below); without, write the lines.
  // Sets *logged when a record was queued with `waiter`: the log answers
  // it. Otherwise returns the result.
  Status submit(const AppendBatch& batch, wal::Writer::Waiter* waiter, bool* logged) {
    *logged = false;
    if (batch.item_count == 0 || batch.lines.empty()) return Status();
    if (wal::encoded_size(batch.bucket.size() + 1 + batch.key.size(), batch.lines.size()) >
        wal::kHeaderBytes + wal::kMaxPayloadBytes)
      return Status(ErrorCode::payload_too_large, "the request is too large to store");
    std::shared_ptr<ObjectFile> object = acquire(batch.bucket, batch.key);
    std::lock_guard<std::mutex> lock(object->mu);
    if (object->fenced) {
      write_errors_++;
      return fenced_status();
    }
    if (!object->handle) {
      if (Status s = open_object(*object); !s.ok()) {
        write_errors_++;
        return s;
      }
    }
    const std::uint64_t offset = object->size;
    if (wal_) {
      // Log the lines while the object is locked, so the log holds an
      // object's records in offset order.
      if (Status s = wal_->add(object, offset, batch.lines, waiter, batch.request, batch.item_count); !s.ok()) return s;
      object->size = offset + batch.lines.size();
      *logged = true;
      return Status();
    }
    if (Status s = write_locked(*object, batch.lines); !s.ok()) return s;
    if (!batch.request.id.empty()) {
      // Without the log the id goes to the request-id file right after the
      // lines (a crash between the two forgets the id: see DURABILITY.md).
      std::string record;
      wal::RequestFields fields;
      fields.id = batch.request.id;
      fields.fingerprint = batch.request.fingerprint;
      fields.items = static_cast<std::uint32_t>(batch.item_count);
      fields.stored_at_ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
              .count();
      wal::encode_request(&record, batch.bucket, fields);
      if (int err = request_id_file_->append(record, false); err != 0) {
        write_errors_++;
        cut_back_locked(*object, offset, err);
        return log_error(*object, err, "cannot record the request id of an append to");
      }
    }
    object->acked_size = object->size;
    if (options_.fsync == FsyncPolicy::interval && !object->queued_for_sync) {
      object->queued_for_sync = true;
      std::lock_guard<std::mutex> interval_lock(interval_mu_);
      interval_queue_.push_back(object);
    }
    return Status();
  }

  // Counts an acknowledged append.
  Status count(Status result, std::size_t bytes) {
    if (result.ok()) {
      appends_++;
      bytes_written_ += bytes;
    }
    return result;
  }

  static Status fenced_status() {
    return Status(ErrorCode::storage_unavailable,
                  "this object cannot be written until the server restarts after a storage failure")
        .with_retry_after(60);
  }

  // ---- wal::Delegate, called on the log thread ----

  void durable(wal::LoggedObject& logged, std::uint64_t end, wal::DirtySet* dirty) override {
    ObjectFile& object = static_cast<ObjectFile&>(logged);
    dirty->files.insert(object.path);
    std::lock_guard<std::mutex> lock(object.mu);
    if (!object.fenced) object.acked_size = std::max(object.acked_size, std::min(end, object.size));
    if (object.new_file) {
      dirty->directories.insert(options_.data_dir + "/" + object.bucket);
      object.new_file = false;
    }
    if (object.new_bucket) {
      dirty->directories.insert(options_.data_dir);
      object.new_bucket = false;
    }
  }

  int write(const std::shared_ptr<wal::LoggedObject>& logged, std::uint64_t offset, std::string_view lines,
            std::uint64_t generation) override {
    ObjectFile& object = static_cast<ObjectFile&>(*logged);
    std::lock_guard<std::mutex> lock(object.mu);
    if (object.generation != generation || object.fenced) return ECANCELED;
    int err = EIO;  // no open file: a failed reopen (sync_in_background) left none
    if (object.handle) {
      if (io_->pwrite_all(object.handle->fd, lines.data(), lines.size(), static_cast<off_t>(offset)) == 0) {
        if (object.error_logged) {
          object.error_logged = false;
          options_.log("appends to " + object.path + " succeed again");
        }
        return 0;
      }
      err = errno;
    }
    // The record is durable: cut the lines from the file now and, after a
    // crash, by the truncate record; records queued after this one (a later
    // generation) start again at `offset`.
    write_errors_++;
    (void)log_error(object, err, "cannot append to");
    object.generation++;
    if (!object.handle || io_->ftruncate(object.handle->fd, static_cast<off_t>(offset)) != 0)
      fence_locked(object, offset, object.handle ? errno : err);
    object.size = offset;
    object.acked_size = std::min(object.acked_size, offset);
    if (!wal_->add_truncate(logged, offset, nullptr).ok())
      options_.log("cannot queue the truncate record of a refused append to " + object.path +
                   "; a restart replays its lines");
    return err;
  }

  void refused(wal::LoggedObject& logged, std::uint64_t offset) override {
    ObjectFile& object = static_cast<ObjectFile&>(logged);
    std::lock_guard<std::mutex> lock(object.mu);
    if (object.size <= offset) return;
    object.generation++;
    object.size = offset;
    object.acked_size = std::min(object.acked_size, offset);
  }

  // ---- Recovery ----

  // Replays log segments left by a crash into the objects; sets
  // *last_sequence to the highest segment found (0 for none). No segment
  // is deleted before every object and directory replay touched is synced,
  // so a crash at any step of recovery leaves a log that a second recovery
  // replays again (replay is idempotent).
  Status recover(std::uint64_t* last_sequence) {
    const std::string dir = wal_dir();
    if (io_->mkdir(dir, 0755) == 0) {
      if (io_->sync_directory(options_.data_dir) != 0)
        return Status(ErrorCode::storage_error,
                      "cannot sync data directory " + options_.data_dir + ": " + std::strerror(errno));
    } else if (errno != EEXIST) {
      return Status(ErrorCode::storage_error, "cannot create log directory " + dir + ": " + std::strerror(errno));
    }
    wal::DirtySet dirty;
    wal::ReplayResult result;
    // The ids of replayed appends, with where their lines start; a later
    // truncate record of the same object to at most that offset voids the
    // id (its request was refused: a retry must store it).
    struct Replayed {
      std::string object;
      std::uint64_t offset;
      StoredRequest request;
    };
    std::vector<Replayed> tagged;
    Status s = wal::replay_log(
        *io_, dir,
        [&](const wal::Record& record) {
          Status applied = replay(record, &dirty);
          if (!applied.ok()) return applied;
          if (record.kind == wal::Record::Kind::truncate)
            tagged.erase(
                std::remove_if(tagged.begin(), tagged.end(),
                               [&](const Replayed& r) { return r.object == record.id && r.offset >= record.offset; }),
                tagged.end());
          else if (!record.request_id.empty())
            tagged.push_back({std::string(record.id), record.offset, stored_request_of(record)});
          return applied;
        },
        options_.log, &result);
    if (!s.ok()) return s;
    std::vector<StoredRequest> replayed;
    replayed.reserve(tagged.size());
    for (Replayed& r : tagged) replayed.push_back(std::move(r.request));
    // The request ids: those of the file and those replayed, compacted into
    // the file (durable before any segment that held them is deleted).
    RequestIdFile::Options ids;
    ids.path = dir + std::string(kRequestIdFile);
    ids.window = options_.request_id_window;
    ids.max_per_bucket = options_.max_request_ids;
    ids.log = options_.log;
    request_id_file_ = std::make_unique<RequestIdFile>(io_, std::move(ids));
    {
      std::lock_guard<std::mutex> lock(recovered_mu_);
      if (Status opened = request_id_file_->open(replayed, &recovered_requests_); !opened.ok()) return opened;
    }
    *last_sequence = result.segments.empty() ? 0 : result.segments.back();
    if (result.segments.empty()) return Status();
    options_.log("recovered " + std::to_string(result.records) + " logged appends from " +
                 std::to_string(result.segments.size()) + " log segment(s)");
    // All or none: a kept segment is replayed again at the next start.
    wal::retire_segments(*io_, dir, result.segments, dirty, options_.log, nullptr);
    return Status();
  }

  // Applies one logged record: writes an append's lines back at their
  // offset in the object, or cuts the object back for a truncate record.
  Status replay(const wal::Record& record, wal::DirtySet* dirty) {
    std::string_view id = record.id;
    std::size_t slash = id.find('/');
    if (slash == std::string_view::npos || !is_valid_name(id.substr(0, slash)) || !is_valid_name(id.substr(slash + 1)))
      return Status();  // not ours; never written by this store
    std::string bucket_dir = options_.data_dir + "/" + std::string(id.substr(0, slash));
    std::string path = object_path(id.substr(0, slash), id.substr(slash + 1));
    if (record.kind == wal::Record::Kind::truncate) return replay_truncate(path, record.offset, dirty);
    if (io_->mkdir(bucket_dir, 0755) == 0) dirty->directories.insert(options_.data_dir);
    int fd = io_->open(path, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0 && errno == ENOENT) {
      fd = io_->open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
      dirty->directories.insert(bucket_dir);
    }
    if (fd < 0)
      return Status(ErrorCode::storage_error, "cannot open " + path + " for log replay: " + std::strerror(errno));
    struct stat st;
    if (io_->fstat(fd, &st) == 0 && static_cast<std::uint64_t>(st.st_size) < record.offset)
      options_.log("log replay: " + path + " is shorter than its logged lines expect; was it truncated by hand?");
    if (io_->pwrite_all(fd, record.lines.data(), record.lines.size(), static_cast<off_t>(record.offset)) != 0) {
      int err = errno;
      io_->close(fd);
      return Status(ErrorCode::storage_error, "log replay into " + path + " failed: " + std::strerror(err));
    }
    io_->close(fd);
    dirty->files.insert(path);
    return Status();
  }

  Status replay_truncate(const std::string& path, std::uint64_t length, wal::DirtySet* dirty) {
    int fd = io_->open(path, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0 && errno == ENOENT) return Status();  // nothing to cut
    if (fd < 0)
      return Status(ErrorCode::storage_error, "cannot open " + path + " for log replay: " + std::strerror(errno));
    struct stat st;
    int rc = io_->fstat(fd, &st);
    if (rc == 0 && static_cast<std::uint64_t>(st.st_size) > length) {
      rc = io_->ftruncate(fd, static_cast<off_t>(length));
      if (rc == 0)
        options_.log("log replay: cut " + path + " back to " + std::to_string(length) +
                     " bytes, removing refused lines");
    }
    int err = errno;
    io_->close(fd);
    if (rc != 0)
      return Status(ErrorCode::storage_error, "cannot cut back " + path + " in log replay: " + std::strerror(err));
    dirty->files.insert(path);
    return Status();
  }

  // ---- FsyncPolicy::interval ----

  void interval_loop() {
    std::deque<std::shared_ptr<ObjectFile>> batch;
    for (;;) {
      bool stop;
      {
        std::unique_lock<std::mutex> lock(interval_mu_);
        interval_cv_.wait_for(lock, options_.fsync_interval, [&] { return stopping_; });
        batch.swap(interval_queue_);
        stop = stopping_;
      }
      for (auto& object : batch) sync_in_background(*object);
      if (!batch.empty())
        if (int err = request_id_file_->sync(); err != 0)
          options_.log(std::string("background sync of the request-id file failed: ") + std::strerror(err));
      batch.clear();
      if (stop) return;
    }
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
    if (err == 0 && new_file && io_->sync_directory(options_.data_dir + "/" + object.bucket) != 0) err = errno;
    if (err == 0 && new_bucket && io_->sync_directory(options_.data_dir) != 0) err = errno;
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

  mutable std::mutex cache_mu_;
  std::unordered_map<std::string, std::shared_ptr<ObjectFile>> cache_;
  std::list<std::string> lru_;  // most recent first

  std::unique_ptr<wal::Writer> wal_;                // FsyncPolicy::always
  std::unique_ptr<RequestIdFile> request_id_file_;  // set by open()
  std::mutex recovered_mu_;
  std::vector<StoredRequest> recovered_requests_;  // until take_recovered_requests

  std::mutex interval_mu_;  // guards the queue and stopping_
  std::condition_variable interval_cv_;
  std::deque<std::shared_ptr<ObjectFile>> interval_queue_;
  bool stopping_ = false;
  std::thread interval_thread_;

  std::atomic<std::uint64_t> appends_{0}, bytes_written_{0}, syncs_{0}, torn_tails_{0}, write_errors_{0},
      fenced_objects_{0};
};

}  // namespace

std::unique_ptr<Storage> make_file_storage(const FileStorageOptions& options, Status* status) {
  return make_file_storage_with_io(options, default_file_io(), status);
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
