// Storage: where accepted items go.
//
// A Storage keeps objects: append-only sequences of JSON Lines, one per
// (bucket, key). Ingestor hands it one batch per request; the batch is
// either stored whole or not at all. Backends are private and built by
// factories (make_file_storage, make_memory_storage, make_clickhouse_storage
// in clickhouse.h); a program that embeds libwriteapi may implement Storage
// itself (see examples/embed).
//
// Contract every backend honours (tests/unit/storage_contract_test.cpp runs
// the same suite against each):
//   - append() returns ok only once the lines are stored as promised by the
//     backend's durability policy; on error, none of the batch is visible,
//     and read_object() never shows lines of an append that fails.
//   - The lines of one append are contiguous in the object: concurrent
//     appends to one object never interleave.
//   - read_object() returns the object's lines in append order, byte for
//     byte; list_keys() returns the keys of a bucket that hold data.
//   - read_range() returns whole acknowledged lines only, in the same order,
//     from an opaque cursor; chaining its next_cursor reads every line once
//     even while appends go on; tail_cursor() names where the last N lines
//     start; list_objects() adds each key's size and last write.
//
// Thread-safety: all methods may be called concurrently from any thread.
#ifndef WRITEAPI_STORAGE_H_
#define WRITEAPI_STORAGE_H_

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "writeapi/export.h"
#include "writeapi/status.h"

namespace writeapi {

// A digest of what a request stores (its bucket, key and minified items;
// never the access key), so that a reused request id with other data is
// recognised as a conflict. The first 128 bits of a SHA-256.
using RequestFingerprint = std::array<std::uint8_t, 16>;

// The request id a batch was sent with (IngestOptions::dedup_*). A store
// that keeps it with the lines, atomically, lets an Ingestor that starts
// after a crash recognise retries of requests stored before it.
struct WRITEAPI_EXPORT RequestTag {
  std::string_view id;  // empty: the request had none
  RequestFingerprint fingerprint{};
};

// One request's worth of lines for one object.
struct WRITEAPI_EXPORT AppendBatch {
  std::string_view bucket;     // a valid name (see names.h)
  std::string_view key;        // a valid name
  std::string_view device_id;  // empty when the request had none
  std::string_view lines;      // item_count complete lines, each ending '\n'
  std::size_t item_count = 0;
  RequestTag request;
};

// A request id a store kept with an acknowledged batch.
struct WRITEAPI_EXPORT StoredRequest {
  std::string bucket;
  std::string id;
  RequestFingerprint fingerprint{};
  std::size_t item_count = 0;
  std::chrono::system_clock::time_point stored_at;  // when it was logged
};

// Counters a backend exposes for monitoring. All monotonic since start.
struct WRITEAPI_EXPORT StorageStats {
  std::uint64_t appends = 0;         // batches stored (acknowledged)
  std::uint64_t bytes_written = 0;   // bytes of lines stored (acknowledged)
  std::uint64_t syncs = 0;           // durability syncs (fdatasync rounds)
  std::uint64_t synced_appends = 0;  // batches covered by those syncs
  std::uint64_t torn_tails_repaired = 0;
  std::uint64_t write_errors = 0;  // failed appends (any cause)
  std::uint64_t open_objects = 0;  // gauge: objects with an open handle
  // Objects fenced since start: refused lines could not be cut from their
  // file, so they answer storage_unavailable until a restart repairs them.
  std::uint64_t fenced_objects = 0;
};

// What list_objects() reports of one object.
struct WRITEAPI_EXPORT ObjectInfo {
  std::string key;
  std::uint64_t bytes = 0;                           // acknowledged bytes of lines
  std::chrono::system_clock::time_point modified{};  // last acknowledged write (epoch when unknown)
};

// One ranged read: whole lines and the cursor that follows them.
struct WRITEAPI_EXPORT ReadChunk {
  std::string lines;  // whole lines, each ending '\n', byte for byte as appended
  std::size_t line_count = 0;
  std::string next_cursor;  // the position after the last line in `lines`
  bool exists = false;      // the object has ever been written
};

class WRITEAPI_EXPORT Storage {
 public:
  virtual ~Storage() = default;

  // Appends batch.lines to the object (batch.bucket, batch.key), creating
  // it if needed. An empty batch (item_count 0) succeeds without touching
  // storage. Returns ok when stored; insufficient_storage (no space or
  // quota), storage_error (I/O error, failed sync) or storage_unavailable
  // (remote store unreachable) otherwise, with nothing of the batch kept.
  virtual Status append(const AppendBatch& batch) = 0;

  // append() that completes through `done`, for callers on an event loop
  // that must not wait for a sync or a remote store. `done` is called
  // exactly once with what append() would have returned: either before
  // append_async returns (when nothing had to be waited for) or later from
  // a thread of the backend, so it must be quick and must not block; it
  // may call append_async again. The batch's memory need only stay valid
  // until append_async returns. The same contract holds as for append():
  // nothing of a batch is visible to read_object() before `done` reports
  // ok, and nothing of it ever when `done` reports an error.
  //
  // The default calls append() and then `done`, so a backend that does not
  // override it blocks the caller as append() does. The file store with
  // FsyncPolicy::always completes from its log thread when the group
  // commit that holds the batch is durable, with no thread per waiting
  // append; its other policies never wait and complete inline. The
  // ClickHouse store copies the batch and completes from its flush thread
  // when the INSERT holding it is answered.
  virtual void append_async(const AppendBatch& batch, std::function<void(Status)> done) { done(append(batch)); }

  // Fills *keys with the keys of `bucket` that hold an object, sorted.
  // An unknown bucket yields an empty list and ok.
  virtual Status list_keys(std::string_view bucket, std::vector<std::string>* keys) = 0;

  // Reads the whole object into *contents. An object never written reads
  // as empty (ok).
  virtual Status read_object(std::string_view bucket, std::string_view key, std::string* contents) = 0;

  // Reads at most max_lines whole lines of the object from `cursor` (empty:
  // the start) into *chunk, stopping once about max_bytes are gathered (but
  // always at least one line when one follows, however long), so a caller
  // streams an object of any size in bounded memory by chaining
  // chunk->next_cursor. Only acknowledged lines are ever returned, never a
  // part of one. When nothing follows the cursor, chunk->lines is empty and
  // next_cursor equals the cursor given (or the start's). The cursor is
  // opaque: a byte offset for files, a row position for ClickHouse; a
  // caller must only pass back a next_cursor this object returned.
  // Returns ok (an object never written: ok, exists false, empty);
  // invalid_cursor for a cursor this object cannot have issued; storage
  // errors as read_object(). Does not hold the object's append lock while
  // reading. The default reads the whole object with read_object() (correct
  // but unbounded; every backend of this library overrides it).
  virtual Status read_range(std::string_view bucket, std::string_view key, std::string_view cursor,
                            std::size_t max_lines, std::size_t max_bytes, ReadChunk* chunk);

  // Sets *cursor to the position from which the last `lines` acknowledged
  // lines of the object follow (the start when it has fewer), so that
  // read_range(cursor, lines, ...) chained returns exactly those lines and
  // then what is appended after them: the `tail` of a read. *exists says
  // whether the object has ever been written (never written: ok, the
  // start's cursor, exists false). Returns ok, or storage errors as
  // read_object(). Bounded memory whatever the object's size (the file
  // store scans backwards from its acknowledged end in blocks; ClickHouse
  // counts rows). The default reads the whole object with read_object().
  // Precondition: lines >= 1.
  virtual Status tail_cursor(std::string_view bucket, std::string_view key, std::size_t lines, std::string* cursor,
                             bool* exists);

  // Fills *objects with every object of `bucket` (key, acknowledged bytes,
  // last write), sorted by key. An unknown bucket yields an empty list and
  // ok. The default derives it from list_keys() and read_object(), with an
  // unknown (epoch) modified time.
  virtual Status list_objects(std::string_view bucket, std::vector<ObjectInfo>* objects);

  // Snapshot of the backend's counters.
  virtual StorageStats stats() const { return {}; }

  // Moves into *requests the request ids of acknowledged batches that the
  // store found when it opened (batches whose AppendBatch::request had an
  // id), oldest first, so an Ingestor built on it answers their retries as
  // duplicates. Yields them once: later calls give none. The default (a
  // store that keeps no ids) gives none.
  virtual Status take_recovered_requests(std::vector<StoredRequest>* requests) {
    requests->clear();
    return Status();
  }
};

// When an append is acknowledged relative to the disk.
enum class FsyncPolicy {
  // fdatasync (plus the directory entry of new objects) before append()
  // returns. Concurrent appends share syncs (group commit). Nothing
  // acknowledged is lost on a crash or power failure.
  always,
  // A background thread syncs dirty objects every fsync_interval. A power
  // failure can lose up to that interval of acknowledged lines (a process
  // crash loses nothing: the lines are in the page cache).
  interval,
  // Never sync; the OS writes back when it likes (typically within 30 s).
  never,
};

struct WRITEAPI_EXPORT FileStorageOptions {
  // Root directory; objects live at <data_dir>/<bucket>/<key>.jsonl.
  // Created if missing.
  std::string data_dir = "data";
  FsyncPolicy fsync = FsyncPolicy::always;
  // Period of background syncs for FsyncPolicy::interval.
  std::chrono::milliseconds fsync_interval{1000};
  // File descriptors kept open (least recently used are closed beyond it).
  // Higher keeps more hot objects at one write per append; each costs a
  // descriptor. Default 1024.
  std::size_t max_open_files = 1024;
  // FsyncPolicy::always: size at which a write-ahead log segment is retired
  // (its objects synced, the file deleted). Larger segments mean fewer
  // checkpoints and more replay after a crash. Default 64 MiB.
  std::uint64_t wal_segment_bytes = 64ull << 20;
  // Request ids (AppendBatch::request) are kept with the lines: in the log
  // record with FsyncPolicy::always, and in a compact file beside the log
  // (<data_dir>/.wal/request-ids) once their segment is retired. Ids older
  // than request_id_window, or beyond the newest max_request_ids of their
  // bucket, are dropped from that file when it is compacted (at open, and
  // when it has doubled). Set them to the Ingestor's dedup_window and
  // dedup_max_ids.
  std::chrono::seconds request_id_window = std::chrono::hours(24);
  std::size_t max_request_ids = 1'000'000;
  // Receives one line per notable event (torn tail repaired, write error on
  // an object, failed sync). Default: standard error.
  std::function<void(std::string_view)> log;
};

// Opens a file store at options.data_dir. On failure (directory not
// creatable or not writable, or held by another process) returns nullptr
// and sets *status.
WRITEAPI_EXPORT std::unique_ptr<Storage> make_file_storage(const FileStorageOptions& options, Status* status);

// An in-memory store, for tests and embedders. Nothing survives the process.
WRITEAPI_EXPORT std::unique_ptr<Storage> make_memory_storage();

}  // namespace writeapi

#endif  // WRITEAPI_STORAGE_H_
