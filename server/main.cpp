// writeapi-server: the Write API over HTTP, on top of libwriteapi.
#include <fmt/core.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>

#include "flags.h"
#include "http_server.h"
#include "writeapi/auth.h"
#include "writeapi/storage.h"

namespace {

using writeapi::server::HttpServer;
using writeapi::server::ServerConfig;

// Identity of the keys file on disk, to notice edits and replacements.
struct FileStamp {
  dev_t device = 0;
  ino_t inode = 0;
  off_t size = -1;
  timespec modified{};
  bool operator==(const FileStamp& o) const {
    return device == o.device && inode == o.inode && size == o.size && modified.tv_sec == o.modified.tv_sec &&
           modified.tv_nsec == o.modified.tv_nsec;
  }
};

FileStamp stamp_of(const std::string& path) {
  FileStamp stamp;
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    stamp.device = st.st_dev;
    stamp.inode = st.st_ino;
    stamp.size = st.st_size;
    stamp.modified = st.st_mtim;
  }
  return stamp;
}

void reload_keys(writeapi::KeysFileAuthorizer* keys, const char* why) {
  writeapi::Status s = keys->reload();
  if (s.ok()) {
    fmt::print(stderr, "writeapi-server: reloaded keys file {} ({})\n", keys->path(), why);
  } else {
    fmt::print(stderr, "writeapi-server: keeping previous keys; reload failed: {}\n", s.message());
  }
}

}  // namespace

int main(int argc, char** argv) {
  ServerConfig config;
  if (int rc = writeapi::server::parse_flags(argc, argv, &config); rc != 0) return rc < 0 ? 0 : rc;

  // A write past RLIMIT_FSIZE must fail with EFBIG, not kill the server;
  // a vanished client must not either.
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGXFSZ, SIG_IGN);
  // Shutdown and reload signals are taken by one thread with sigwait, so
  // block them before any other thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  writeapi::Status status;
  auto keys = writeapi::make_keys_file_authorizer(config.keys_path, &status);
  if (!keys) {
    fmt::print(stderr, "writeapi-server: {}\n", status.message());
    return 1;
  }
  writeapi::FileStorageOptions storage_options;
  storage_options.data_dir = config.data_dir;
  storage_options.fsync = config.fsync;
  storage_options.fsync_interval = config.fsync_interval;
  storage_options.max_open_files = config.max_open_files;
  storage_options.log = [](std::string_view line) { fmt::print(stderr, "writeapi-server: {}\n", line); };
  auto storage = writeapi::make_file_storage(storage_options, &status);
  if (!storage) {
    fmt::print(stderr, "writeapi-server: {}\n", status.message());
    return 1;
  }

  HttpServer server(config, keys.get(), storage.get());
  if (!server.bind()) {
    fmt::print(stderr, "writeapi-server: cannot listen on {}:{}: {}\n", config.host, config.port,
               std::strerror(errno));
    return 1;
  }
  fmt::print(stderr, "writeapi-server: listening on http://{}:{} (data {}, keys {})\n", config.host,
             server.port(), config.data_dir, config.keys_path);

  std::atomic<bool> stopping{false};
  std::thread signal_thread([&] {
    FileStamp last = stamp_of(config.keys_path);
    const timespec poll{1, 0};
    while (!stopping.load()) {
      int signal = ::sigtimedwait(&signals, nullptr, &poll);
      if (signal == SIGINT || signal == SIGTERM) {
        fmt::print(stderr, "writeapi-server: {} received; finishing requests in flight\n",
                   signal == SIGINT ? "SIGINT" : "SIGTERM");
        stopping = true;
        server.stop();
        return;
      }
      FileStamp now = stamp_of(config.keys_path);
      if (signal == SIGHUP) {
        reload_keys(keys.get(), "SIGHUP");
        last = now;
      } else if (!(now == last)) {
        reload_keys(keys.get(), "file changed");
        last = now;
      }
    }
  });

  server.serve();
  stopping = true;
  signal_thread.join();
  fmt::print(stderr, "writeapi-server: stopped\n");
  return 0;
}
