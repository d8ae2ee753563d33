#include "wal_writer.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>

#include "wal_format.h"

#include "writeapi/ingest.h"
#include "writeapi/names.h"

namespace writeapi::wal {

// The largest request's record fits the format's 32-bit payload length.
static_assert(encoded_size(2 * kMaxNameLength + 1, kMaxBodyBytesLimit) - kHeaderBytes <= kMaxPayloadBytes);

int sync_dirty_set(FileIo& io, const DirtySet& dirty) {
  int err = 0;
  for (const std::string& path : dirty.files) {
    int fd = io.open(path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0) {
      if (errno != ENOENT) err = errno;
      continue;  // ENOENT: removed by the operator, nothing to keep
    }
    if (io.fdatasync(fd) != 0) err = errno;
    io.close(fd);
  }
  for (const std::string& dir : dirty.directories)
    if (io.sync_directory(dir) != 0) err = errno;
  return err;
}

bool retire_segments(FileIo& io, const std::string& dir, const std::vector<std::uint64_t>& sequences,
                     const DirtySet& dirty, const std::function<void(std::string_view)>& log,
                     const KeepRequests& keep_requests) {
  auto keep = [&](const char* what, int err) {
    std::string names;
    for (std::uint64_t sequence : sequences) names += (names.empty() ? "" : ", ") + std::to_string(sequence);
    log(std::string(what) + std::strerror(err) + "; keeping log segment(s) " + names + " for replay");
    return false;
  };
  if (!dirty.requests.empty() && keep_requests)
    if (int err = keep_requests(dirty.requests); err != 0)
      return keep("cannot keep the request ids of a checkpoint: ", err);
  if (int err = sync_dirty_set(io, dirty); err != 0) return keep("checkpoint sync failed: ", err);
  bool removed = true;
  for (std::uint64_t sequence : sequences)
    if (io.unlink(dir + "/" + segment_file_name(sequence)) != 0 && errno != ENOENT) {
      log("cannot delete log segment " + std::to_string(sequence) + ": " + std::strerror(errno) +
          "; it will be replayed again (replay is idempotent)");
      removed = false;
    }
  if (io.sync_directory(dir) != 0)
    log(std::string("cannot sync log directory after a checkpoint: ") + std::strerror(errno));
  return removed;
}

Writer::Writer(std::shared_ptr<FileIo> io, WriterOptions options, Delegate* delegate)
    : io_(std::move(io)), options_(std::move(options)), delegate_(delegate) {}

Writer::~Writer() { stop(); }

std::string Writer::segment_path(std::uint64_t sequence) const {
  return options_.dir + "/" + segment_file_name(sequence);
}

Status Writer::start(std::uint64_t first_sequence) {
  if (Status s = open_segment(first_sequence); !s.ok()) return s;
  running_ = true;
  log_thread_ = std::thread([this] { log_loop(); });
  checkpoint_thread_ = std::thread([this] { checkpoint_loop(); });
  return Status();
}

void Writer::stop() {
  if (!running_) return;
  running_ = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  log_thread_.join();  // after writing what is pending
  {
    std::lock_guard<std::mutex> lock(checkpoint_mu_);
    checkpoint_stopping_ = true;
  }
  checkpoint_cv_.notify_all();
  checkpoint_thread_.join();  // after retiring what is queued
  if (fd_ >= 0) {
    // Clean shutdown: make the objects durable and empty the log (unless an
    // earlier segment is kept: then this one is replayed after it; or a
    // refusal could not be recorded: the objects may hold refused lines).
    bool recorded = control_.empty() || flush_control();
    if (!recorded)
      options_.log("keeping the log: refused appends could not be recorded; the next start replays it");
    else if (!checkpoints_blocked_)
      retire_segments(*io_, options_.dir, {sequence_}, dirty_, options_.log, options_.keep_requests);
    io_->close(fd_);
    fd_ = -1;
  }
}

Status Writer::open_segment(std::uint64_t sequence) {
  const std::string path = segment_path(sequence);
  int fd = io_->open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return Status(ErrorCode::storage_error, "cannot create log segment " + path + ": " + std::strerror(errno));
  // Reserve the segment's blocks up front: an fdatasync then does not
  // have to commit block allocations of a growing file with every group.
  // (Recovery stops at the first bytes that are not a record.)
  if (io_->fallocate(fd, 0, static_cast<off_t>(options_.segment_bytes)) != 0 && errno != EOPNOTSUPP)
    options_.log(std::string("cannot reserve space for log segment ") + path + ": " + std::strerror(errno));
  if (io_->sync_directory(options_.dir) != 0) {
    io_->close(fd);
    return Status(ErrorCode::storage_error, "cannot sync log directory " + options_.dir);
  }
  if (fd_ >= 0) io_->close(fd_);
  fd_ = fd;
  sequence_ = sequence;
  size_ = 0;
  return Status();
}

Status Writer::add(const std::shared_ptr<LoggedObject>& object, std::uint64_t offset, std::string_view lines,
                   Waiter* waiter, const RequestTag& request, std::size_t items) {
  std::string request_record;
  RequestFields fields;
  if (!request.id.empty()) {
    fields.id = request.id;
    fields.fingerprint = request.fingerprint;
    fields.items = static_cast<std::uint32_t>(items);
    fields.stored_at_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
            .count();
    encode_request(&request_record, object->bucket, fields);
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (failing_) return storage_status(EIO);
  if (request.id.empty())
    encode_record(&pending_, object->bucket, object->key, offset, lines);
  else
    encode_tagged_record(&pending_, object->bucket, object->key, offset, fields, lines);
  // The lines end the record (wal_format.cpp).
  records_.push_back({object, offset, offset + lines.size(), waiter, std::move(request_record),
                      pending_.size() - lines.size(), lines.size(), object->generation, 0});
  cv_.notify_one();
  return Status();
}

Status Writer::add_truncate(const std::shared_ptr<LoggedObject>& object, std::uint64_t length, Waiter* waiter) {
  std::lock_guard<std::mutex> lock(mu_);
  if (failing_) return storage_status(EIO);
  encode_truncate(&pending_, object->bucket, object->key, length);
  records_.push_back({object, length, length, waiter, {}, 0, 0, object->generation, 0});
  cv_.notify_one();
  return Status();
}

Status Writer::wait(Waiter* waiter) {
  std::unique_lock<std::mutex> lock(done_mu_);
  done_cv_.wait(lock, [&] { return waiter->done; });
  return waiter->result;
}

void Writer::answer(std::vector<Pending>& records, const Status& result) {
  std::vector<std::pair<std::function<void(const Status&)>, Status>> callbacks;
  bool blocked = false;
  {
    std::lock_guard<std::mutex> lock(done_mu_);
    for (Pending& record : records) {
      if (record.waiter == nullptr) continue;
      Status status = result.ok() && record.refusal != 0 ? storage_status(record.refusal) : result;
      if (record.waiter->callback) {
        callbacks.emplace_back(std::move(record.waiter->callback), std::move(status));
        continue;
      }
      record.waiter->result = std::move(status);
      record.waiter->done = true;
      blocked = true;
    }
  }
  if (blocked) done_cv_.notify_all();
  for (auto& [callback, status] : callbacks) callback(status);
}

// One write and one fdatasync per group of records.
void Writer::log_loop() {
  std::string buffer;
  std::vector<Pending> records;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
      if (pending_.empty()) return;  // stopping, nothing left
      buffer.swap(pending_);
      records.swap(records_);
    }
    int err = 0;
    // An earlier refusal must be durable before anything else is acknowledged.
    if (!control_.empty() && !flush_control()) err = errno;
    if (err == 0 && io_->pwrite_all(fd_, buffer.data(), buffer.size(), static_cast<off_t>(size_)) != 0) err = errno;
    if (err == 0 && io_->fdatasync(fd_) != 0) err = errno;
    syncs_++;
    bool refusing = false;
    if (err == 0) {
      size_ += buffer.size();
      refusing = write_objects(buffer, records);
      answer(records, Status());
    } else {
      failed(records, err);
    }
    buffer.clear();
    if (buffer.capacity() > (4u << 20)) std::string().swap(buffer);
    records.clear();
    // A refusal's truncate record must be durable before the segment that
    // holds the refused record can be retired.
    if (size_ >= options_.segment_bytes && !refusing) rotate();
  }
}

// After the group's sync: writes each record's lines into its object, in
// log order. A record whose write is refused keeps its writer waiting until
// the truncate record the store queued (in the next group) is durable; so
// do the later records of that object in this group, which the refusal
// voids. Returns true when any record was refused that way.
bool Writer::write_objects(const std::string& buffer, std::vector<Pending>& records) {
  std::vector<Pending> deferred;
  std::set<const LoggedObject*> refused_here;
  for (Pending& record : records) {
    if (record.refusal != 0) continue;  // deferred from the last group: answered with its refusal
    if (record.lines_size > 0) {
      record.refusal =
          delegate_->write(record.object, record.offset,
                           std::string_view(buffer).substr(record.lines_at, record.lines_size), record.generation);
      if (record.refusal != 0) {
        record.lines_size = 0;
        record.request.clear();
        // A record voided by an earlier group's refusal is answered now:
        // its truncate record followed it in this group.
        if (record.refusal == ECANCELED && refused_here.count(record.object.get()) == 0) continue;
        refused_here.insert(record.object.get());
        deferred.push_back(std::move(record));
        record.waiter = nullptr;  // answered with the next group
        continue;
      }
    }
    if (record.lines_size > 0) synced_records_++;  // appends, not truncate records
    delegate_->durable(*record.object, record.end, &dirty_);
    dirty_.requests += record.request;
  }
  if (deferred.empty()) return false;
  std::lock_guard<std::mutex> lock(mu_);
  for (Pending& record : deferred) records_.push_back(std::move(record));
  cv_.notify_one();
  return true;
}

// A failed log write or sync: refuse every unsynced writer, cut their lines
// from the objects, continue in a fresh segment.
void Writer::failed(std::vector<Pending>& records, int err) {
  failures_++;
  {
    std::lock_guard<std::mutex> lock(mu_);
    failing_ = true;
    for (Pending& record : records_) records.push_back(std::move(record));
    records_.clear();
    pending_.clear();
  }
  options_.log(std::string("log sync failed: ") + std::strerror(err) + "; refusing " + std::to_string(records.size()) +
               " unsynced appends and starting a new log segment");
  std::map<LoggedObject*, std::uint64_t> cut;
  for (Pending& record : records) {
    auto [it, inserted] = cut.emplace(record.object.get(), record.offset);
    if (!inserted) it->second = std::min(it->second, record.offset);
  }
  for (auto [object, offset] : cut) delegate_->refused(*object, offset);
  // The segment's tail is unknown now: keep what was synced, and record
  // durably, first thing in a fresh segment, what was refused.
  if (!need_segment_) {
    if (io_->ftruncate(fd_, static_cast<off_t>(size_)) != 0)
      options_.log(std::string("cannot cut back log segment ") + std::to_string(sequence_) + ": " +
                   std::strerror(errno) + "; its limit record voids the refused records");
    encode_limit(&control_, sequence_, size_);
    need_segment_ = true;
  }
  for (Pending& record : records) {
    auto it = cut.find(record.object.get());
    if (it == cut.end()) continue;  // one truncate per object, at its smallest offset
    encode_truncate(&control_, record.object->bucket, record.object->key, it->second);
    control_objects_.emplace_back(record.object, it->second);
    cut.erase(it);
  }
  recording_refusal_ = true;
  if (!flush_control())
    options_.log(std::string("cannot record the refused appends in a new log segment: ") + std::strerror(errno) +
                 "; every append is refused until that succeeds");
  {
    std::lock_guard<std::mutex> lock(mu_);
    failing_ = false;
  }
  answer(records, storage_status(err));
}

// Writes the pending refusal at the start of a fresh segment and syncs it.
// Returns false (errno set) when it cannot: the next group tries again.
bool Writer::flush_control() {
  if (need_segment_) {
    const std::uint64_t old_sequence = sequence_;
    if (Status s = open_segment(old_sequence + 1); !s.ok()) {
      errno = EIO;
      return false;
    }
    {
      std::lock_guard<std::mutex> lock(checkpoint_mu_);
      checkpoints_.emplace_back(old_sequence, std::move(dirty_));
    }
    dirty_ = DirtySet();
    checkpoint_cv_.notify_one();
    need_segment_ = false;
  }
  if (io_->pwrite_all(fd_, control_.data(), control_.size(), static_cast<off_t>(size_)) != 0 ||
      io_->fdatasync(fd_) != 0) {
    int err = errno;
    need_segment_ = true;  // this segment's tail is unknown too
    errno = err;
    return false;
  }
  size_ += control_.size();
  // The cuts must be synced before this segment is deleted.
  for (auto& [object, offset] : control_objects_) delegate_->durable(*object, offset, &dirty_);
  control_.clear();
  control_objects_.clear();
  recording_refusal_ = false;
  options_.log("refused appends recorded in log segment " + std::to_string(sequence_));
  return true;
}

// Starts a new segment; the checkpoint thread retires the old one, so
// writers do not wait for the objects' syncs.
bool Writer::rotate() {
  const std::uint64_t old_sequence = sequence_;
  if (Status s = open_segment(old_sequence + 1); !s.ok()) {
    options_.log(s.message() + "; keeping the current segment");
    return false;
  }
  {
    std::lock_guard<std::mutex> lock(checkpoint_mu_);
    checkpoints_.emplace_back(old_sequence, std::move(dirty_));
  }
  dirty_ = DirtySet();
  checkpoint_cv_.notify_one();
  return true;
}

void Writer::checkpoint_loop() {
  for (;;) {
    std::pair<std::uint64_t, DirtySet> job;
    {
      std::unique_lock<std::mutex> lock(checkpoint_mu_);
      checkpoint_cv_.wait(lock, [&] { return checkpoint_stopping_ || !checkpoints_.empty(); });
      if (checkpoints_.empty()) return;  // stopping, nothing left
      job = std::move(checkpoints_.front());
      checkpoints_.pop_front();
    }
    if (checkpoints_blocked_) {
      options_.log("keeping log segment " + std::to_string(job.first) +
                   " for replay: an earlier segment could not be retired");
      continue;
    }
    if (!retire_segments(*io_, options_.dir, {job.first}, job.second, options_.log, options_.keep_requests))
      checkpoints_blocked_ = true;
  }
}

}  // namespace writeapi::wal
