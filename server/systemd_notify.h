// Readiness and watchdog notifications for a systemd Type=notify service,
// through libsystemd's sd_notify when writeapi-server is built with it
// (CMake finds libsystemd at configure time; WRITEAPI_SYSTEMD).
//
// Without libsystemd, or when the service manager passed no NOTIFY_SOCKET
// (every run outside a Type=notify unit), each call does nothing, so the
// server behaves the same everywhere. Thread-safety: callable from any
// thread.
#ifndef WRITEAPI_SERVER_SYSTEMD_NOTIFY_H_
#define WRITEAPI_SERVER_SYSTEMD_NOTIFY_H_

#include <chrono>
#include <string_view>

namespace writeapi::server {

// True when built with libsystemd.
bool systemd_notify_supported();

// READY=1 and STATUS=<status>: the listener is bound, requests are taken.
void notify_ready(std::string_view status);

// STOPPING=1: shutdown has begun (requests in flight are being finished).
void notify_stopping();

// How often to send WATCHDOG=1: half of the WatchdogSec= the manager asked
// of this process ($WATCHDOG_USEC, $WATCHDOG_PID), or zero when none.
std::chrono::microseconds watchdog_period();

// WATCHDOG=1: the process is alive.
void notify_watchdog();

}  // namespace writeapi::server

#endif  // WRITEAPI_SERVER_SYSTEMD_NOTIFY_H_
