// KeysReloader: keeps a KeysFileAuthorizer (auth.h) in step with its keys
// file while serving.
//
// It notices edits and replacements of the file (size, modification time,
// device and inode: an edit in place or a rename over it, as
// writeapi-keys does) by polling, on a background thread or through poll()
// called by the embedder, and reloads on request (reload(), for SIGHUP). A
// reload that fails leaves the previous keys in force (see
// KeysFileAuthorizer::reload) and is logged; so is every successful one.
// writeapi-server polls once a second and calls reload() on SIGHUP; signal
// handling stays with the program.
//
// Thread-safety: reload() and poll() may be called from any thread, also
// while the background thread runs; reloads never overlap.
#ifndef WRITEAPI_KEYS_RELOADER_H_
#define WRITEAPI_KEYS_RELOADER_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "writeapi/auth.h"
#include "writeapi/export.h"
#include "writeapi/status.h"

namespace writeapi {

struct WRITEAPI_EXPORT KeysReloaderOptions {
  // How often the background thread checks the file. Zero starts no
  // thread: the embedder calls poll() when it likes (tests do). Default
  // 1 s; a check costs one stat().
  std::chrono::milliseconds poll_interval{1000};
  // Receives one line per reload: "reloaded keys file <path> (<why>)" or
  // "keeping previous keys; reload failed: <message>". Default: standard
  // error.
  std::function<void(std::string_view)> log;
};

class WRITEAPI_EXPORT KeysReloader {
 public:
  // Watches keys->path(), taking the file as it is now as loaded. `keys`
  // must outlive the reloader. Starts the background thread when
  // options.poll_interval is positive.
  explicit KeysReloader(KeysFileAuthorizer* keys, KeysReloaderOptions options = KeysReloaderOptions());
  // Stops the background thread (promptly: it does not finish its wait).
  ~KeysReloader();
  KeysReloader(const KeysReloader&) = delete;
  KeysReloader& operator=(const KeysReloader&) = delete;

  // Reloads now, changed or not (for SIGHUP); `why` goes into the log line.
  // Returns the reload's status: ok, or why the previous keys stay.
  Status reload(std::string_view why = "requested");

  // Checks the file once and reloads it ("file changed") when it differs
  // from the last load or check. Returns true when it reloaded (or tried
  // to: a failed reload is not retried until the file changes again).
  bool poll();

  // Reloads attempted, successful or not, since construction.
  std::uint64_t reloads() const;

 private:
  struct FileStamp {
    std::uint64_t device = 0, inode = 0;
    std::int64_t size = -1, modified_seconds = 0, modified_nanoseconds = 0;
    bool operator==(const FileStamp& o) const;
  };
  static FileStamp stamp_of(const std::string& path);
  Status reload_locked(std::string_view why);
  void loop();

  KeysFileAuthorizer* keys_;
  KeysReloaderOptions options_;
  mutable std::mutex mu_;  // serializes reloads; guards the fields below
  FileStamp last_;
  std::uint64_t reloads_ = 0;
  bool stopping_ = false;
  std::condition_variable stop_cv_;
  std::thread thread_;
};

}  // namespace writeapi

#endif  // WRITEAPI_KEYS_RELOADER_H_
