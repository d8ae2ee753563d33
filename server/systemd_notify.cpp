#include "systemd_notify.h"

#include <string>

#if WRITEAPI_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace writeapi::server {

#if WRITEAPI_HAVE_SYSTEMD

bool systemd_notify_supported() { return true; }

// sd_notify returns 0 when NOTIFY_SOCKET is unset and a negative errno when
// sending fails; neither is a reason to stop serving, so results are ignored.
void notify_ready(std::string_view status) {
  const std::string message = "READY=1\nSTATUS=" + std::string(status);
  (void)sd_notify(0, message.c_str());
}

void notify_stopping() { (void)sd_notify(0, "STOPPING=1\nSTATUS=finishing requests in flight"); }

std::chrono::microseconds watchdog_period() {
  uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0) return std::chrono::microseconds(0);
  return std::chrono::microseconds(usec / 2 > 0 ? usec / 2 : 1);
}

void notify_watchdog() { (void)sd_notify(0, "WATCHDOG=1"); }

#else

bool systemd_notify_supported() { return false; }
void notify_ready(std::string_view) {}
void notify_stopping() {}
std::chrono::microseconds watchdog_period() { return std::chrono::microseconds(0); }
void notify_watchdog() {}

#endif

}  // namespace writeapi::server
