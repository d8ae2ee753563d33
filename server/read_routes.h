// The Read API of writeapi-server (issue 14): a bucket's keys, an object's
// lines from a cursor or its tail with long-polling, and the limiter's
// view of the bucket's devices. Every route is authorized by the bucket's
// access key sent as "Authorization: Bearer <key>".
//
//   GET /read/v3/bucket/<bucket>            {"ok":true,"keys":[{"key","bytes","modified"}...]}
//   GET /read/v3/bucket/<bucket>/<key>?...  the lines, application/x-ndjson, X-Next-Cursor
//   GET /devices/v3/bucket/<bucket>         {"ok":true,"devices":[...],...}
//
// The rules of a read (query parameters, Bearer credential, cursors, tail)
// are the library's (writeapi/read.h, Storage::read_range, tail_cursor);
// this file maps them to HTTP. Responses have a Content-Length: a read is
// planned first (the lines that follow the cursor, up to `limit`, are
// counted in parts of bounded size), then sent in parts (ResponseStream)
// so an object of any size is served in bounded memory; a response that
// fits in one part is sent at once. A read with wait=S that finds nothing
// parks its connection on ReadWatchers (no thread) until an append to the
// object, the deadline or a stop.
//
// Bounds: waiting reads at most ReadRouteOptions::max_watchers; streamed
// responses at once at most kMaxStreams (each holds one part, about
// kPartBytes or one line when longer); more get 503 server_busy.
//
// Thread-safety: run() is called on workers, concurrently; appended() on
// the threads that complete appends; stop() from any thread.
#ifndef WRITEAPI_SERVER_READ_ROUTES_H_
#define WRITEAPI_SERVER_READ_ROUTES_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "connection_server.h"
#include "read_watchers.h"
#include "writeapi/auth.h"
#include "writeapi/http1.h"
#include "writeapi/limits.h"
#include "writeapi/read.h"
#include "writeapi/storage.h"

namespace writeapi::server {

inline constexpr std::string_view kReadPathPrefix = "/read/v3/bucket/";
inline constexpr std::string_view kDevicesPathPrefix = "/devices/v3/bucket/";

struct ReadRouteOptions {
  ReadLimits limits;
  // Reads waiting for lines at once (--max-watchers); 0: a wait is
  // answered at once, as without it.
  std::size_t max_watchers = 1024;
  // The Keep-Alive header's timeout.
  int keep_alive_timeout_seconds = 5;
  // Bytes of lines per part of a response (and per read of the store).
  std::size_t part_bytes = 256 * 1024;
  // Streamed responses (larger than one part) at once; beyond them an
  // answer is cut to its first part's lines.
  std::size_t max_streams = 16;
  // Devices listed at most per answer of the devices route.
  std::size_t max_devices = 10000;
};

// What one read request did, for the access log and the metrics.
struct ReadOutcome {
  int http_status = 200;
  std::string_view error;  // error code; empty on success
  std::uint64_t lines = 0;
  std::uint64_t bytes = 0;  // bytes of lines (or of the JSON body)
};

class ReadRoutes {
 public:
  // `limiter` may be null (no device limits: the devices route lists none).
  // `record` is called once per request when its answer is decided (for a
  // long-poll: when it wakes), with the seconds since the request started.
  using Record = std::function<void(std::string_view method, std::string_view target, std::string_view remote_ip,
                                    const ReadOutcome& outcome, double seconds)>;
  ReadRoutes(ReadRouteOptions options, const Authorizer* authorizer, const DeviceLimiter* limiter, Storage* storage,
             Record record);
  ~ReadRoutes();

  // Whether `target` is one of these routes (any method).
  static bool handles(std::string_view target);

  // ConnectionHooks::run_direct for these routes (no body).
  void run(const http1::RequestHead& head, std::string_view remote_ip, bool keep_alive, std::string* response,
           std::unique_ptr<ResponseStream>* stream, std::function<void()> done);

  // Lines were stored in (bucket, key): wakes its waiting reads.
  void appended(std::string_view bucket, std::string_view key) { watchers_.notify(bucket, key); }
  // Answers every waiting read now (with nothing new) and refuses new waits.
  void stop() { watchers_.stop(); }

  std::size_t waiting() const { return watchers_.open_count(); }
  std::uint64_t watchers_refused() const { return watchers_.refused(); }
  // Answers cut to their first part because max_streams were being sent.
  std::uint64_t streams_shortened() const { return streams_shortened_.load(std::memory_order_relaxed); }

  class RangeRead;

 private:
  std::string connection_header(const http1::RequestHead& head, bool keep_alive) const;

  ReadRouteOptions options_;
  const Authorizer* authorizer_;
  const DeviceLimiter* limiter_;
  Storage* storage_;
  Record record_;
  ReadWatchers watchers_;
  std::atomic<std::size_t> streams_{0};
  std::atomic<std::uint64_t> streams_shortened_{0};
};

}  // namespace writeapi::server

#endif  // WRITEAPI_SERVER_READ_ROUTES_H_
