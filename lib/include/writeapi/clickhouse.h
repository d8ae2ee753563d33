// ClickHouse storage: objects kept as rows of a ClickHouse table, so several
// front-ends (writeapi-server processes on any number of machines) can write
// to one store, a single server or a sharded cluster.
//
// Each stored line is one row: bucket, key, device ID, receive time, the id
// of the front-end that stored it and a per-front-end sequence number. An
// object is the rows of its (bucket, key) read in (received_us, frontend,
// seq) order; see clickhouse_table_sql() for the table and docs/SCALING.md
// for the topology and the ordering guarantees across front-ends.
//
// ClickHouse wants few large INSERTs: append() queues its rows and waits;
// a background thread sends everything queued as one INSERT when flush_rows
// rows are waiting or flush_interval has passed since the first of them
// (at most max_inserts_in_flight at once), and answers every append of that
// INSERT with its outcome. An
// append is acknowledged only after the INSERT holding its rows succeeded.
// The rows of one append always travel in one INSERT and land in one
// MergeTree part, so an append is stored whole or not at all. When
// ClickHouse is unreachable or refuses, the appends of that INSERT fail
// with storage_unavailable (HTTP 503, Retry-After 1); the next INSERT tries
// again, so the store recovers by itself when ClickHouse returns.
//
// The backend speaks ClickHouse's HTTP interface (RowBinary both ways, so
// every byte of a line round-trips). It works with ClickHouse 18.16 (Debian
// 12) and later.
//
// The backend is optional: a libwriteapi built with
// WRITEAPI_WITH_CLICKHOUSE=OFF needs no cpp-httplib. This header and its
// functions are there all the same (one API and one set of symbols for both
// builds); make_clickhouse_storage() then refuses with not_implemented, and
// clickhouse_storage_supported() tells a program beforehand.
//
// Thread-safety: the Storage returned is safe for concurrent use.
#ifndef WRITEAPI_CLICKHOUSE_H_
#define WRITEAPI_CLICKHOUSE_H_

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "writeapi/export.h"
#include "writeapi/status.h"
#include "writeapi/storage.h"

namespace writeapi {

struct WRITEAPI_EXPORT ClickHouseStorageOptions {
  // Base URL of ClickHouse's HTTP interface: http://host:8123 (https:// works
  // too). A path after the port is kept as a prefix (a proxy in front).
  std::string url = "http://127.0.0.1:8123";
  // Database and table of the rows. Both are plain identifiers
  // ([A-Za-z_][A-Za-z0-9_]*). The table may be a MergeTree table with the
  // columns of clickhouse_table_sql(), or a Distributed table over such
  // tables on the shards of a cluster.
  std::string database = "writeapi";
  std::string table = "lines";
  // Credentials, sent with HTTP basic authentication. Empty user: none sent
  // (ClickHouse's "default" user).
  std::string user;
  std::string password;
  // Identifies this front-end in the rows it writes; with seq it orders the
  // lines that two front-ends stored in the same microsecond. Empty (the
  // default): "<hostname>-<pid>-<8 random hex digits>", unique per process.
  // Set it to a stable name to tell front-ends apart in queries; two live
  // processes must never share one.
  std::string frontend_id;
  // An INSERT is sent as soon as this many rows are queued...
  std::size_t flush_rows = 10000;
  // ...or this long after the first queued row, whichever comes first.
  // Higher makes fewer, larger INSERTs (what ClickHouse prefers) at the cost
  // of latency for every request; 0 sends as soon as an INSERT slot is free
  // (pure group commit).
  std::chrono::milliseconds flush_interval{5};
  // INSERTs sent at once, each from its own connection. Rows queue while
  // all are busy, so under load INSERTs grow rather than multiply. More
  // hides ClickHouse's per-INSERT latency (each INSERT writes a new part)
  // at the cost of more, smaller parts to merge.
  std::size_t max_inserts_in_flight = 2;
  // Time to establish a connection to ClickHouse, and to send a request and
  // receive its answer. An INSERT that times out is reported as failed
  // (storage_unavailable) although ClickHouse may still complete it: a
  // client's retry can then store its lines twice (never zero times).
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds request_timeout{30000};
  // Run CREATE DATABASE / CREATE TABLE IF NOT EXISTS at start. Turn off
  // when the schema is managed elsewhere (a cluster's Distributed table).
  bool create_schema = true;
  // Request ids (AppendBatch::request) are stored in every row of their
  // request (columns request_id and request_fp, added to an older table at
  // start when create_schema is on). At start the ids of the last
  // request_id_window, at most max_request_ids per bucket, are read back
  // for take_recovered_requests. Set them to the Ingestor's dedup_window and
  // dedup_max_ids.
  std::chrono::seconds request_id_window = std::chrono::hours(24);
  std::size_t max_request_ids = 1'000'000;
  // Receives one line per notable event (ClickHouse became unreachable, and
  // reachable again). Default: standard error.
  std::function<void(std::string_view)> log;
};

// True when this libwriteapi was built with the ClickHouse backend
// (WRITEAPI_WITH_CLICKHOUSE=ON); false when make_clickhouse_storage()
// always fails with not_implemented. Asked at run time, so it answers for
// the library a program runs with (a shared libwriteapi may be swapped).
WRITEAPI_EXPORT bool clickhouse_storage_supported() noexcept;

// Connects to ClickHouse, creates the schema when missing (unless
// options.create_schema is false) and checks that the table answers.
// Returns nullptr and sets *status on failure: storage_error for invalid
// options (URL, identifiers, flush_rows 0), storage_unavailable when
// ClickHouse cannot be reached or refuses, not_implemented when the library
// was built without the backend (clickhouse_storage_supported() is false).
WRITEAPI_EXPORT std::unique_ptr<Storage> make_clickhouse_storage(const ClickHouseStorageOptions& options,
                                                                 Status* status);

// The CREATE TABLE IF NOT EXISTS statement the backend runs for
// options.database and options.table (MergeTree, partitioned by month,
// ordered by bucket, key, received_us, frontend, seq). For a cluster, run it
// on every shard for the local table and put a Distributed table over it.
WRITEAPI_EXPORT std::string clickhouse_table_sql(const ClickHouseStorageOptions& options);

}  // namespace writeapi

#endif  // WRITEAPI_CLICKHOUSE_H_
