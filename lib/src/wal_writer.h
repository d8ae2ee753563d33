// The write-ahead log's writer: group commit and checkpoints, for
// FsyncPolicy::always.
//
// A writer thread of the object store calls add() while it holds the
// object's lock (so one object's records are in offset order in the log),
// releases the lock, then wait()s. One log thread takes every pending
// record, writes them to the current segment with one write and one
// fdatasync of one file, then writes each record's lines into its object
// (Delegate::write) and answers the whole group. The lines reach an object
// only once their record is durable: a crash at any moment leaves no
// complete line in an object that no durable record names, so a record's
// request id covers every line a crash may leave (exactly-once retries).
// An object write that fails after its record is durable is undone by a
// truncate record the store queues (see Delegate::write); the refused
// writers are answered once that record is durable. When a segment passes
// segment_bytes the log moves to a new one and a checkpoint thread retires
// the old one: it syncs every object file and directory the segment's
// records touched (the DirtySet) and only then deletes the segment.
//
// A failed log write or sync is not retried (the kernel may have dropped
// the dirty pages): every unsynced record is refused through
// Delegate::refused, the segment is cut back to its synced length, and the
// log continues in a new segment that first records, durably, what was
// refused (a limit record for the old segment, a truncate record per
// object; see wal_format.h), so neither a failed truncation nor a power
// failure lets replay bring refused lines back. Until that record is
// durable no group is acknowledged: each group first retries it (in a
// fresh segment) and is refused with the error when it fails again, so a
// full disk refuses appends (507) and the log heals once space returns.
//
// Checkpoints retire segments in order; once one fails (a sync error),
// later segments are kept too, so a limit record is never deleted before
// the segment it refers to.
//
// Every file system call goes through the FileIo given at construction.
//
// Thread-safety: add() and wait() may be called from any thread; start()
// and stop() once each, from the owner.
#ifndef WRITEAPI_SRC_WAL_WRITER_H_
#define WRITEAPI_SRC_WAL_WRITER_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "file_io.h"
#include "writeapi/status.h"
#include "writeapi/storage.h"

namespace writeapi {

namespace wal {

// What the log knows of an object: its identity. The object store derives
// its per-object state from it and gets it back through Delegate.
struct LoggedObject {
  virtual ~LoggedObject() = default;
  std::string bucket;
  std::string key;
  // The store's count of refusals of this object, changed under the
  // object's lock; add() (called under it) stamps each record with it, so
  // Delegate::write can tell a record queued before a refusal.
  std::uint64_t generation = 0;
};

// What must be durable before a segment may be deleted: object files, the
// directories that gained entries, and the request ids of its records (as
// request records, wal::encode_request) that must outlive it.
struct DirtySet {
  std::set<std::string> files;
  std::set<std::string> directories;
  std::string requests;
  void merge(const DirtySet& other) {
    files.insert(other.files.begin(), other.files.end());
    directories.insert(other.directories.begin(), other.directories.end());
    requests += other.requests;
  }
};

// Makes request records durable elsewhere (the store's request-id file):
// returns 0, or an errno when it cannot (the segment is then kept).
using KeepRequests = std::function<int(std::string_view records)>;

// fdatasyncs every file (a file that no longer exists is skipped: removed
// by the operator, nothing to keep) and syncs every directory. Returns 0 or
// the errno of the last failure; every item is attempted.
int sync_dirty_set(FileIo& io, const DirtySet& dirty);

// Hands dirty.requests to `keep_requests` (when both are non-empty), syncs
// `dirty`, then deletes the segments and syncs the log directory. When
// either fails nothing is deleted and the failure is logged: the segments
// are replayed again after the next start. Returns true when the segments
// were deleted.
bool retire_segments(FileIo& io, const std::string& dir, const std::vector<std::uint64_t>& sequences,
                     const DirtySet& dirty, const std::function<void(std::string_view)>& log,
                     const KeepRequests& keep_requests);

// The object store's side of the log, called on the log thread.
class Delegate {
 public:
  virtual ~Delegate() = default;
  // The record of `lines` at `offset`, stamped with `generation`, is
  // durable: write the lines into the object. Returns 0 when they are
  // written. Otherwise returns the errno to answer the record's writer
  // with; for a failed write, after cutting the object back to `offset`
  // (or fencing it), starting a new generation and, still under the
  // object's lock (so it precedes every later record of the object), queuing
  // a truncate record to `offset` with add_truncate. A record of an
  // earlier generation (queued before a refusal) is not written: returns
  // ECANCELED.
  virtual int write(const std::shared_ptr<LoggedObject>& object, std::uint64_t offset, std::string_view lines,
                    std::uint64_t generation) = 0;
  // A group holding a record of `object` that ends at `end` is durable and
  // its lines are written: add what the segment's checkpoint must sync to
  // *dirty.
  virtual void durable(LoggedObject& object, std::uint64_t end, DirtySet* dirty) = 0;
  // A record of `object` starting at `offset` (the smallest refused offset
  // of that object) was refused before it was durable: its lines and those
  // of later records never reached the object; its appends continue at
  // `offset`. A truncate record of the refusal follows in the next segment.
  virtual void refused(LoggedObject& object, std::uint64_t offset) = 0;
};

struct WriterOptions {
  std::string dir;                            // the log directory (exists)
  std::uint64_t segment_bytes = 64ull << 20;  // see FileStorageOptions
  std::function<void(std::string_view)> log;  // notable events
  KeepRequests keep_requests;                 // see retire_segments; may be empty
};

class Writer {
 public:
  // A writer waiting for its record to be durable. Without a callback it
  // lives on the writer's stack and wait() blocks on it. With one, nobody
  // waits: the log thread moves the callback out and calls it once with the
  // result (after the group is durable or refused) and touches the waiter
  // no more, so the callback may free the waiter's memory. The callback
  // must not block: every later group waits for it.
  struct Waiter {
    bool done = false;
    Status result;
    std::function<void(const Status&)> callback;
  };

  Writer(std::shared_ptr<FileIo> io, WriterOptions options, Delegate* delegate);
  ~Writer();  // stop() if still running
  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;

  // Creates segment `first_sequence` and starts the log and checkpoint
  // threads. Returns storage_error when the segment cannot be created.
  Status start(std::uint64_t first_sequence);

  // Queues the record of `lines` at `offset` in `object`; with a request id
  // in `request` (its `items` lines), a record that carries it, stamped with
  // the wall-clock time, whose id goes to the segment's DirtySet once
  // durable. Precondition: the caller holds the object's lock. Returns ok,
  // or (queueing nothing) storage_error while the log is handling a
  // failure: the caller undoes its write.
  Status add(const std::shared_ptr<LoggedObject>& object, std::uint64_t offset, std::string_view lines, Waiter* waiter,
             const RequestTag& request = {}, std::size_t items = 0);
  // Queues a truncate record: replay cuts `object` back to `length`. For
  // Delegate::write, whose refused lines' record is durable. Same
  // precondition and results as add(); `waiter` may be null.
  Status add_truncate(const std::shared_ptr<LoggedObject>& object, std::uint64_t length, Waiter* waiter);

  // Blocks until the group holding the waiter's record is synced or
  // refused; returns ok or the refusal (storage_error, insufficient_storage).
  // Only for a waiter without a callback.
  Status wait(Waiter* waiter);

  // Drains pending records, retires every segment (objects synced, files
  // deleted) and stops the threads. A clean shutdown leaves no log.
  void stop();

  std::uint64_t syncs() const { return syncs_.load(); }
  std::uint64_t synced_records() const { return synced_records_.load(); }
  std::uint64_t failures() const { return failures_.load(); }
  // True while a refusal is not yet durably recorded (see above): groups
  // are refused until it is.
  bool recording_refusal() const { return recording_refusal_.load(); }

 private:
  struct Pending {
    std::shared_ptr<LoggedObject> object;
    std::uint64_t offset;
    std::uint64_t end;
    Waiter* waiter;                // null for a truncate record queued by Delegate::write
    std::string request;           // the request record of its id, if it has one
    std::size_t lines_at = 0;      // where its lines are in the group's buffer
    std::size_t lines_size = 0;    // 0: a truncate record, or a refusal answered later
    std::uint64_t generation = 0;  // the object's when queued
    int refusal = 0;               // an errno: refused by Delegate::write
  };

  Status open_segment(std::uint64_t sequence);
  void log_loop();
  void failed(std::vector<Pending>& records, int err);
  bool write_objects(const std::string& buffer, std::vector<Pending>& records);
  bool rotate();
  bool flush_control();
  void checkpoint_loop();
  void answer(std::vector<Pending>& records, const Status& result);
  std::string segment_path(std::uint64_t sequence) const;

  std::shared_ptr<FileIo> io_;
  WriterOptions options_;
  Delegate* delegate_;

  // mu_ guards the pending buffer and records, failing_ and stopping_; the
  // segment fields below belong to the log thread (and stop()).
  std::mutex mu_;
  std::condition_variable cv_;
  std::string pending_;
  std::vector<Pending> records_;
  bool failing_ = false;
  bool stopping_ = false;
  bool running_ = false;
  int fd_ = -1;
  std::uint64_t sequence_ = 0;
  std::uint64_t size_ = 0;
  DirtySet dirty_;
  std::thread log_thread_;

  // Segments waiting for their checkpoint (oldest first).
  std::mutex checkpoint_mu_;
  std::condition_variable checkpoint_cv_;
  std::deque<std::pair<std::uint64_t, DirtySet>> checkpoints_;
  bool checkpoint_stopping_ = false;
  std::thread checkpoint_thread_;

  std::mutex done_mu_;
  std::condition_variable done_cv_;  // wakes writers whose group was answered

  // The refusal still to record (log thread): limit and truncate records,
  // the objects they cut (synced by the next checkpoint), and whether they
  // must go to a fresh segment first.
  std::string control_;
  std::vector<std::pair<std::shared_ptr<LoggedObject>, std::uint64_t>> control_objects_;
  bool need_segment_ = false;

  bool checkpoints_blocked_ = false;  // the checkpoint thread's (then stop()'s)

  std::atomic<std::uint64_t> syncs_{0}, synced_records_{0}, failures_{0};
  std::atomic<bool> recording_refusal_{false};
};

}  // namespace wal
}  // namespace writeapi

#endif  // WRITEAPI_SRC_WAL_WRITER_H_
