// writeapi-server: the Write API over HTTP, on top of libwriteapi.
#include <fmt/core.h>
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "flags.h"
#include "http_server.h"
#include "log.h"
#include "metrics.h"
#include "systemd_notify.h"
#include "writeapi/auth.h"
#include "writeapi/clickhouse.h"
#include "writeapi/keys_reloader.h"
#include "writeapi/limits.h"
#include "writeapi/storage.h"

namespace {

using writeapi::server::HttpServer;
using writeapi::server::log_line;
using writeapi::server::ServerConfig;

}  // namespace

int main(int argc, char** argv) {
  // Buffers of a megabyte or more (bodies, inflated bodies, parsed lines)
  // are mapped and unmapped by themselves: glibc's default raises this
  // threshold after the first such free, and then keeps every worker's
  // largest request in its heap for good, beyond the memory bound.
  ::mallopt(M_MMAP_THRESHOLD, 1 << 20);
  ServerConfig config;
  if (int rc = writeapi::server::parse_flags(argc, argv, &config); rc != 0) return rc < 0 ? 0 : rc;
  if (std::string error = writeapi::server::fit_file_descriptors(&config); !error.empty()) {
    log_line("{}", error);
    return 1;
  }

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
    log_line("{}", status.message());
    return 1;
  }
  auto log = [](std::string_view line) { log_line("{}", line); };
  std::unique_ptr<writeapi::Storage> storage;
  std::string data_location = config.data_dir;
  if (config.storage == writeapi::server::StorageBackend::clickhouse) {
    writeapi::ClickHouseStorageOptions clickhouse_options = config.clickhouse;
    clickhouse_options.request_id_window = config.dedup_window;
    clickhouse_options.max_request_ids = config.dedup_max_ids;
    clickhouse_options.log = log;
    storage = writeapi::make_clickhouse_storage(clickhouse_options, &status);
    data_location = config.clickhouse.url + " " + config.clickhouse.database + "." + config.clickhouse.table;
  } else {
    writeapi::FileStorageOptions storage_options;
    storage_options.data_dir = config.data_dir;
    storage_options.fsync = config.fsync;
    storage_options.fsync_interval = config.fsync_interval;
    storage_options.max_open_files = config.max_open_files;
    storage_options.request_id_window = config.dedup_window;
    storage_options.max_request_ids = config.dedup_max_ids;
    storage_options.log = log;
    storage = writeapi::make_file_storage(storage_options, &status);
  }
  if (!storage) {
    log_line("{}", status.message());
    return 1;
  }

  HttpServer server(config, keys.get(), &limiter, storage.get());
  if (!server.startup_error().empty()) {
    log_line("{}", server.startup_error());
    return 1;
  }
  server.add_metrics_source(
      [&keys](bool with_buckets) { return writeapi::server::render_keys_metrics(keys->stats(), with_buckets); });
  server.add_metrics_source([&limiter](bool) { return writeapi::server::render_limiter_metrics(limiter.stats()); });
  if (std::string error; !server.bind(&error)) {
    log_line("{}", error);
    return 1;
  }
  const std::string listening =
      fmt::format("listening on {}://{}:{}", server.tls() ? "https" : "http", config.host, server.port());
  log_line("{} (data {}, keys {})", listening, data_location, config.keys_path);
  // Under a Type=notify unit: the listener is bound, so clients connecting
  // from now on are queued and served.
  writeapi::server::notify_ready(listening);
  if (server.metrics_port() >= 0)
    log_line("metrics on http://{}:{}/metrics", config.metrics_listen_host, server.metrics_port());

  // The library watches the keys file (polling once a second); SIGHUP asks
  // it to reload at once.
  writeapi::KeysReloaderOptions reloader_options;
  reloader_options.log = log;
  writeapi::KeysReloader reloader(keys.get(), reloader_options);

  std::atomic<bool> stopping{false};
  std::thread signal_thread([&] {
    // This thread wakes at least every second and, under
    // a unit with WatchdogSec=, tells systemd at half that period that the
    // process is alive.
    using Clock = std::chrono::steady_clock;
    const std::chrono::microseconds watchdog = writeapi::server::watchdog_period();
    std::chrono::microseconds wake = std::chrono::seconds(1);
    if (watchdog.count() > 0) wake = std::min(wake, watchdog);
    const timespec poll{static_cast<time_t>(wake.count() / 1000000), static_cast<long>(wake.count() % 1000000) * 1000};
    Clock::time_point last_watchdog = Clock::now();
    if (watchdog.count() > 0) writeapi::server::notify_watchdog();
    while (!stopping.load()) {
      int signal = ::sigtimedwait(&signals, nullptr, &poll);
      if (watchdog.count() > 0 && Clock::now() - last_watchdog >= watchdog) {
        writeapi::server::notify_watchdog();
        last_watchdog = Clock::now();
      }
      if (signal == SIGINT || signal == SIGTERM) {
        log_line("{} received; finishing requests in flight", signal == SIGINT ? "SIGINT" : "SIGTERM");
        writeapi::server::notify_stopping();
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
  log_line("stopped");
  return 0;
}
