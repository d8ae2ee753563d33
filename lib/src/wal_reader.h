// Reading the write-ahead log back: a Reader walks the records of one
// segment's bytes and stops at the first one that is not whole and intact;
// replay_log() reads every segment of a log directory, in sequence order,
// through FileIo and hands each record to the object store.
//
// A record that is torn (cut short by a crash), fails its checksum or has
// an impossible length ends its segment: it was never acknowledged, since a
// writer is answered only after the whole group it belongs to is synced,
// and nothing after it in that segment is trusted either.
//
// Thread-safety: a Reader is used by one thread; replay_log() is reentrant.
#ifndef WRITEAPI_SRC_WAL_READER_H_
#define WRITEAPI_SRC_WAL_READER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "file_io.h"
#include "wal_format.h"
#include "writeapi/status.h"

namespace writeapi::wal {

class Reader {
 public:
  // Why the reader stopped.
  enum class Stop {
    none,               // not yet
    end,                // the bytes ended exactly after a record
    padding,            // only zero bytes follow (the preallocated rest)
    torn,               // a record's header or payload is cut short
    bad_magic,          // bytes that do not start a record
    bad_length,         // the payload is too short for its fields
    checksum_mismatch,  // the payload's CRC-32 does not match
  };

  explicit Reader(std::string_view segment) : bytes_(segment) {}

  // Sets *record to the next record and returns true, or returns false at
  // the end or the first bad record (see stop()). The record's views point
  // into the bytes given to the constructor.
  bool next(Record* record);

  Stop stop() const { return stop_; }
  // Bytes of whole, intact records read so far.
  std::size_t valid_bytes() const { return position_; }

 private:
  std::string_view bytes_;
  std::size_t position_ = 0;
  Stop stop_ = Stop::none;
};

const char* stop_name(Reader::Stop stop);

struct ReplayResult {
  std::vector<std::uint64_t> segments;  // sequences found, ascending
  std::size_t records = 0;              // records applied
};

// Reads every segment of the log directory `dir` in sequence order and
// calls `apply` for each intact append and truncate record, stopping each
// segment at its first bad record and at the byte a limit record (from any
// segment) names for it (logged through `log` with the bytes ignored, unless they are
// only preallocated zeros). Returns ok, the first error `apply` returns, or
// storage_error when the directory or a segment cannot be read. A missing
// directory is an empty log.
Status replay_log(FileIo& io, const std::string& dir, const std::function<Status(const Record&)>& apply,
                  const std::function<void(std::string_view)>& log, ReplayResult* result);

}  // namespace writeapi::wal

#endif  // WRITEAPI_SRC_WAL_READER_H_
