// Read API long-polls waiting for new lines (GET ...?wait=S): who waits
// for which object, until when, and the wake-up when lines are appended.
//
// A waiting read holds no thread: its connection is parked (a direct run
// that has not called `done`), and one thread of ours keeps the deadlines.
// The ingest path reports every stored batch (IngestOptions::on_appended ->
// notify), and the watchers of that object are woken on our thread, whose
// wake callbacks only hand the connection back to the connection layer:
// the read itself then runs on a worker.
//
// A read registers (open) before it looks at the store and arms after it
// found nothing: an append in between is not lost (arm then wakes at once).
// At most `max_watchers` are open at once, and a quarter of them (at least
// one) per client address; open() refuses beyond either. A client that
// disconnects while its read waits keeps the slot until the wait ends (its
// connection is parked, not watched), so the per-address share is what
// keeps one client from taking every slot with waits it abandoned.
//
// Thread-safety: every method may be called from any thread.
#ifndef WRITEAPI_SERVER_READ_WATCHERS_H_
#define WRITEAPI_SERVER_READ_WATCHERS_H_

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace writeapi::server {

class ReadWatchers {
 public:
  using Clock = std::chrono::steady_clock;
  enum class Wake {
    appended,  // lines were appended to the object
    timeout,   // the deadline passed
    stopping,  // the server is stopping: answer now, with nothing
  };
  struct Watch;

  explicit ReadWatchers(std::size_t max_watchers);
  ~ReadWatchers();
  ReadWatchers(const ReadWatchers&) = delete;
  ReadWatchers& operator=(const ReadWatchers&) = delete;

  // Registers a read from `address` that may wait on (bucket, key). Null
  // when max_watchers are open already, or the address's share, or while
  // stopping.
  std::shared_ptr<Watch> open(std::string_view bucket, std::string_view key, std::string_view address);
  // The read found nothing: calls `wake` exactly once, on the watchers'
  // thread (quick; must not block): at once when the object was appended
  // to since open(), else at the next append, at `deadline`, or at stop().
  void arm(const std::shared_ptr<Watch>& watch, Clock::time_point deadline, std::function<void(Wake)> wake);
  // The read needs no waiting (it found lines, or failed): forgets it.
  void close(const std::shared_ptr<Watch>& watch);

  // Lines were appended to (bucket, key) and can be read now.
  void notify(std::string_view bucket, std::string_view key);
  // Wakes every watcher with Wake::stopping and refuses new ones.
  void stop();

  bool stopping() const;
  std::size_t open_count() const;
  std::uint64_t refused() const;  // open() calls refused at the cap

 private:
  void run();
  static std::string object_id(std::string_view bucket, std::string_view key);
  void detach(Watch* watch);  // with mu_ held

  const std::size_t max_watchers_;
  const std::size_t per_address_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool exit_ = false;
  std::multimap<std::string, Watch*, std::less<>> by_object_;
  std::set<std::pair<Clock::time_point, Watch*>> by_deadline_;
  std::vector<std::pair<std::shared_ptr<Watch>, Wake>> ready_;
  std::size_t open_ = 0;
  std::map<std::string, std::size_t, std::less<>> per_address_open_;
  std::uint64_t refused_ = 0;
  std::thread thread_;
};

}  // namespace writeapi::server

#endif  // WRITEAPI_SERVER_READ_WATCHERS_H_
