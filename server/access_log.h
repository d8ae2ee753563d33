// The access log of writeapi-server: one line per request, written by a
// thread of its own so that a slow or stalled sink (a full pipe, a stuck
// journald) never blocks a request. Lines wait in a bounded queue; when it
// is full they are dropped and counted.
//
// Thread-safety: write() and dropped() may be called from any thread.
#ifndef WRITEAPI_SERVER_ACCESS_LOG_H_
#define WRITEAPI_SERVER_ACCESS_LOG_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

namespace writeapi::server {

class AccessLog {
 public:
  // Writes to a duplicate of descriptor `fd` (which stays the caller's),
  // with write(2) and no stdio: a writer stuck on a full pipe holds no
  // lock that exit() or another thread could wait for. `max_queued_bytes`
  // bounds the lines waiting for it.
  explicit AccessLog(int fd, std::size_t max_queued_bytes = 4u << 20);
  // Writes what is queued (as far as the sink takes it), then stops.
  ~AccessLog();
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  // Queues one line (ending in '\n'), or drops it when the queue is full.
  void write(std::string_view line);
  // Lines dropped since start.
  std::uint64_t dropped() const { return state_->dropped.load(); }

 private:
  // Shared with the writer thread, which may outlive the log when the sink
  // never drains (the destructor waits a moment, then lets it go).
  struct State {
    int fd = -1;
    std::size_t max_queued = 0;
    std::mutex mu;
    std::condition_variable cv;
    std::string queued;
    bool stop = false;
    bool done = false;
    std::atomic<std::uint64_t> dropped{0};
  };
  static void run(std::shared_ptr<State> state);

  std::shared_ptr<State> state_;
};

// Appends `field` for a log line: printable ASCII as is, anything else
// (control characters, spaces, bytes over 0x7e) as \xHH, so one request is
// always one line and fields stay separated by spaces.
void append_log_field(std::string* line, std::string_view field);

}  // namespace writeapi::server

#endif  // WRITEAPI_SERVER_ACCESS_LOG_H_
