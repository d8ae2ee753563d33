// RequestIdFile: the request ids a file store keeps after their log segment
// is gone, in one compact file beside the log (<data_dir>/.wal/request-ids).
//
// With FsyncPolicy::always a request id travels in its append's log record
// ("WALR", wal_format.h), durable with the lines in the same group commit.
// Before a checkpoint deletes a segment, the ids of its records are
// appended here and synced (RequestIdFile::append), so an id outlives its
// segment; after a crash, the ids of the segments replayed are added when
// the store opens. Without the log (interval, never) the store appends an
// id here right after writing its lines.
//
// The file is a sequence of request records ("WALQ", in the log's record
// framing with its checksum) in the order their requests were
// acknowledged; a damaged record (a torn append, bad bytes) is skipped and
// reading resumes at the next intact one. open() reads it, adds the ids
// replayed from the log, drops ids stamped before the window and all but
// the newest max_per_bucket of each bucket (newest by that order, not by
// the wall clock, which may have been stepped), and rewrites it compacted (to a temporary file, synced, renamed
// over it, directory synced: a crash leaves the old file or the new). It is
// compacted the same way when it has doubled since the last compaction.
//
// Every file system call goes through FileIo.
//
// Thread-safety: append() may be called concurrently; open() once, first.
#ifndef WRITEAPI_SRC_REQUEST_ID_FILE_H_
#define WRITEAPI_SRC_REQUEST_ID_FILE_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "file_io.h"
#include "wal_format.h"
#include "writeapi/status.h"
#include "writeapi/storage.h"

namespace writeapi {

class RequestIdFile {
 public:
  struct Options {
    std::string path;  // the file; its directory exists
    std::chrono::seconds window = std::chrono::hours(24);
    std::size_t max_per_bucket = 1'000'000;  // 0: ids are off; every id is kept
    std::function<void(std::string_view)> log;
    // Wall-clock time in milliseconds since the Unix epoch (tests set it).
    std::function<std::int64_t()> now_ms;
  };

  RequestIdFile(std::shared_ptr<FileIo> io, Options options);
  ~RequestIdFile();
  RequestIdFile(const RequestIdFile&) = delete;
  RequestIdFile& operator=(const RequestIdFile&) = delete;

  // Reads the file, adds `replayed` (ids of log records replayed at this
  // start, which may repeat ids of the file: the later copy wins), keeps
  // what is within the window and the cap and rewrites the file with it.
  // Sets *kept to those ids, oldest first. storage_error when the file
  // cannot be read or rewritten (then the store must not open: the log's
  // segments would otherwise be deleted with ids nowhere else).
  Status open(const std::vector<StoredRequest>& replayed, std::vector<StoredRequest>* kept);

  // Appends encoded request records (wal::encode_request) and, when
  // `sync`, fdatasyncs the file. Returns 0, or the errno of the failure:
  // then nothing of `records` is in the file (its tail is cut back, or the
  // file is rewritten at the next append).
  int append(std::string_view records, bool sync);

  // Syncs what append() wrote without `sync` (FsyncPolicy::interval).
  int sync();

  std::uint64_t compactions() const;

 private:
  Status read_locked(std::vector<StoredRequest>* requests);
  Status rewrite_locked(std::vector<StoredRequest>* requests);
  void keep_window_and_cap(std::vector<StoredRequest>* requests) const;

  std::shared_ptr<FileIo> io_;
  Options options_;
  mutable std::mutex mu_;
  int fd_ = -1;
  std::uint64_t size_ = 0;            // bytes of whole records in the file
  std::uint64_t compacted_size_ = 0;  // its size after the last compaction
  bool damaged_ = false;              // a failed append left bytes past size_
  std::uint64_t compactions_ = 0;
};

// A StoredRequest from a request record or a tagged append record whose id
// is `bucket` (request) or "bucket/key" (append).
StoredRequest stored_request_of(const wal::Record& record);

}  // namespace writeapi

#endif  // WRITEAPI_SRC_REQUEST_ID_FILE_H_
