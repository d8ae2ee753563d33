#include "request_id_file.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <unordered_map>
#include <utility>

#include "wal_reader.h"

namespace writeapi {
namespace {

// Compaction waits until the file is worth rewriting.
constexpr std::uint64_t kMinCompactionBytes = 1u << 20;

std::int64_t to_ms(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::string directory_of(const std::string& path) {
  std::size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

}  // namespace

StoredRequest stored_request_of(const wal::Record& record) {
  StoredRequest request;
  std::string_view bucket = record.id;
  if (record.kind != wal::Record::Kind::request) bucket = bucket.substr(0, bucket.find('/'));
  request.bucket = std::string(bucket);
  request.id = std::string(record.request_id);
  request.fingerprint = record.fingerprint;
  request.item_count = record.items;
  request.stored_at = std::chrono::system_clock::time_point(std::chrono::milliseconds(record.stored_at_ms));
  return request;
}

RequestIdFile::RequestIdFile(std::shared_ptr<FileIo> io, Options options)
    : io_(std::move(io)), options_(std::move(options)) {
  if (!options_.log) options_.log = [](std::string_view) {};
  if (!options_.now_ms) options_.now_ms = [] { return to_ms(std::chrono::system_clock::now()); };
}

RequestIdFile::~RequestIdFile() {
  if (fd_ >= 0) io_->close(fd_);
}

Status RequestIdFile::open(const std::vector<StoredRequest>& replayed, std::vector<StoredRequest>* kept) {
  std::lock_guard<std::mutex> lock(mu_);
  kept->clear();
  if (Status s = read_locked(kept); !s.ok()) return s;
  kept->insert(kept->end(), replayed.begin(), replayed.end());
  return rewrite_locked(kept);
}

Status RequestIdFile::read_locked(std::vector<StoredRequest>* requests) {
  std::string contents;
  if (io_->read_file(options_.path, &contents) != 0) {
    if (errno == ENOENT) return Status();
    return Status(ErrorCode::storage_error,
                  "cannot read the request-id file " + options_.path + ": " + std::strerror(errno));
  }
  // A damaged record (bad bytes on disk, a torn append) costs only itself:
  // reading resumes at the next intact record after it.
  std::string_view rest = contents;
  std::size_t skipped = 0;
  while (!rest.empty()) {
    wal::Reader reader(rest);
    wal::Record record;
    while (reader.next(&record))
      if (record.kind == wal::Record::Kind::request) requests->push_back(stored_request_of(record));
    if (reader.stop() == wal::Reader::Stop::end || reader.stop() == wal::Reader::Stop::padding) break;
    rest.remove_prefix(reader.valid_bytes());
    const std::size_t next = rest.find(std::string_view(wal::kRequestMagic, 4), 1);
    const std::size_t bad = next == std::string_view::npos ? rest.size() : next;
    skipped += bad;
    rest.remove_prefix(bad);
  }
  if (skipped > 0)
    options_.log("request-id file " + options_.path + ": skipped " + std::to_string(skipped) +
                 " damaged bytes (the ids they held are forgotten)");
  return Status();
}

void RequestIdFile::keep_window_and_cap(std::vector<StoredRequest>* requests) const {
  // The order is the order of acknowledgement (the file's, then the log's),
  // whatever the wall clock said: the newest are last. Of two copies of an
  // id the later is kept. Without a cap (max_per_bucket 0: ids are off for
  // now) every id is kept, for a later run that turns them back on.
  const bool off = options_.max_per_bucket == 0;
  const std::int64_t oldest = options_.now_ms() - std::chrono::milliseconds(options_.window).count();
  std::unordered_map<std::string, std::size_t> last;  // bucket + '\0' + id -> index of its latest copy
  for (std::size_t i = 0; i < requests->size(); ++i) {
    const StoredRequest& r = (*requests)[i];
    last[r.bucket + '\0' + r.id] = i;
  }
  // Newest first, counting per bucket.
  std::unordered_map<std::string, std::size_t> per_bucket;
  std::vector<bool> keep(requests->size(), false);
  for (std::size_t i = requests->size(); i-- > 0;) {
    const StoredRequest& r = (*requests)[i];
    if (last[r.bucket + '\0' + r.id] != i) continue;
    if (!off && to_ms(r.stored_at) < oldest) continue;
    std::size_t& count = per_bucket[r.bucket];
    if (!off && count >= options_.max_per_bucket) continue;
    ++count;
    keep[i] = true;
  }
  std::size_t out = 0;
  for (std::size_t i = 0; i < requests->size(); ++i)
    if (keep[i]) {
      if (out != i) (*requests)[out] = std::move((*requests)[i]);
      ++out;
    }
  requests->resize(out);
}

Status RequestIdFile::rewrite_locked(std::vector<StoredRequest>* requests) {
  keep_window_and_cap(requests);
  std::string bytes;
  for (const StoredRequest& r : *requests) {
    wal::RequestFields fields;
    fields.id = r.id;
    fields.fingerprint = r.fingerprint;
    fields.items = static_cast<std::uint32_t>(r.item_count);
    fields.stored_at_ms = to_ms(r.stored_at);
    wal::encode_request(&bytes, r.bucket, fields);
  }
  const std::string temporary = options_.path + ".tmp";
  auto fail = [&](const char* what, int err) {
    return Status(ErrorCode::storage_error,
                  std::string("cannot ") + what + " the request-id file " + options_.path + ": " + std::strerror(err));
  };
  int fd = io_->open(temporary, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return fail("create a new", errno);
  if (io_->pwrite_all(fd, bytes.data(), bytes.size(), 0) != 0 || io_->fdatasync(fd) != 0) {
    int err = errno;
    io_->close(fd);
    io_->unlink(temporary);
    return fail("write", err);
  }
  if (io_->rename(temporary, options_.path) != 0) {
    int err = errno;
    io_->close(fd);
    io_->unlink(temporary);
    return fail("replace", err);
  }
  if (io_->sync_directory(directory_of(options_.path)) != 0) {
    int err = errno;
    io_->close(fd);
    return fail("sync the directory of", err);
  }
  if (fd_ >= 0) io_->close(fd_);
  fd_ = fd;
  size_ = bytes.size();
  compacted_size_ = size_;
  damaged_ = false;
  ++compactions_;
  return Status();
}

int RequestIdFile::append(std::string_view records, bool sync) {
  if (records.empty()) return 0;
  std::lock_guard<std::mutex> lock(mu_);
  if (fd_ < 0) return EBADF;
  if (damaged_ || size_ > std::max(kMinCompactionBytes, 2 * compacted_size_)) {
    // Rewrite from what the file holds: drops expired ids (and a tail a
    // failed append left behind).
    std::vector<StoredRequest> requests;
    Status s = read_locked(&requests);
    if (s.ok()) s = rewrite_locked(&requests);
    if (!s.ok()) {
      options_.log(s.message());
      if (damaged_) return EIO;  // the tail is unknown: appending after it would hide the new records
    }
  }
  if (io_->pwrite_all(fd_, records.data(), records.size(), static_cast<off_t>(size_)) != 0 ||
      (sync && io_->fdatasync(fd_) != 0)) {
    int err = errno;
    if (io_->ftruncate(fd_, static_cast<off_t>(size_)) != 0) damaged_ = true;
    return err == 0 ? EIO : err;
  }
  size_ += records.size();
  return 0;
}

int RequestIdFile::sync() {
  std::lock_guard<std::mutex> lock(mu_);
  if (fd_ < 0) return 0;
  return io_->fdatasync(fd_) == 0 ? 0 : errno;
}

std::uint64_t RequestIdFile::compactions() const {
  std::lock_guard<std::mutex> lock(mu_);
  return compactions_;
}

}  // namespace writeapi
