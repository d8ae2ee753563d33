// writeapi-server: the Write API over HTTP, on top of libwriteapi.
#include <fmt/core.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <thread>

#include "flags.h"
#include "http_server.h"
#include "metrics.h"
#include "writeapi/auth.h"
#include "writeapi/clickhouse.h"
#include "writeapi/keys_reloader.h"
#include "writeapi/limits.h"
#include "writeapi/storage.h"

namespace {

using writeapi::server::HttpServer;
using writeapi::server::ServerConfig;

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
  // The keys file carries the device limits too: every successful (re)load
  // hands them to the limiter, so keys and limits always change together.
  writeapi::DeviceLimiterOptions limiter_options;
  limiter_options.max_tracked_devices = config.max_tracked_devices;
  writeapi::DeviceLimiter limiter(limiter_options);
  auto keys = writeapi::make_keys_file_authorizer(config.keys_path, &limiter, &status);
  if (!keys) {
    fmt::print(stderr, "writeapi-server: {}\n", status.message());
    return 1;
  }
  auto log = [](std::string_view line) { fmt::print(stderr, "writeapi-server: {}\n", line); };
  std::unique_ptr<writeapi::Storage> storage;
  std::string data_location = config.data_dir;
  if (config.storage == writeapi::server::StorageBackend::clickhouse) {
    writeapi::ClickHouseStorageOptions clickhouse_options = config.clickhouse;
    clickhouse_options.log = log;
    storage = writeapi::make_clickhouse_storage(clickhouse_options, &status);
    data_location = config.clickhouse.url + " " + config.clickhouse.database + "." + config.clickhouse.table;
  } else {
    writeapi::FileStorageOptions storage_options;
    storage_options.data_dir = config.data_dir;
    storage_options.fsync = config.fsync;
    storage_options.fsync_interval = config.fsync_interval;
    storage_options.max_open_files = config.max_open_files;
    storage_options.log = log;
    storage = writeapi::make_file_storage(storage_options, &status);
  }
  if (!storage) {
    fmt::print(stderr, "writeapi-server: {}\n", status.message());
    return 1;
  }

  HttpServer server(config, keys.get(), &limiter, storage.get());
  if (!server.startup_error().empty()) {
    fmt::print(stderr, "writeapi-server: {}\n", server.startup_error());
    return 1;
  }
  server.add_metrics_source([&keys] { return writeapi::server::render_keys_metrics(keys->stats()); });
  server.add_metrics_source([&limiter] { return writeapi::server::render_limiter_metrics(limiter.stats()); });
  if (!server.bind()) {
    fmt::print(stderr, "writeapi-server: cannot listen on {}:{}: {}\n", config.host, config.port,
               std::strerror(errno));
    return 1;
  }
  fmt::print(stderr, "writeapi-server: listening on {}://{}:{} (data {}, keys {})\n", server.tls() ? "https" : "http",
             config.host, server.port(), data_location, config.keys_path);

  // The library watches the keys file (polling once a second); SIGHUP asks
  // it to reload at once.
  writeapi::KeysReloaderOptions reloader_options;
  reloader_options.log = log;
  writeapi::KeysReloader reloader(keys.get(), reloader_options);

  std::atomic<bool> stopping{false};
  std::thread signal_thread([&] {
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
      if (signal == SIGHUP) (void)reloader.reload("SIGHUP");
    }
  });

  server.serve();
  stopping = true;
  signal_thread.join();
  fmt::print(stderr, "writeapi-server: stopped\n");
  return 0;
}
