// Lines to standard error: the server's log.
#ifndef WRITEAPI_SERVER_LOG_H_
#define WRITEAPI_SERVER_LOG_H_

#include <fmt/core.h>

#include <cstdio>
#include <iterator>
#include <string>
#include <utility>

namespace writeapi::server {

// Writes one line ("writeapi-server: " and the text) to stderr, and never
// throws: a full disk under the log file or a log pipe nobody reads must
// not take the server down (fmt::print throws when the write fails). Such
// a line is lost.
template <typename... Args>
void log_line(fmt::format_string<Args...> format, Args&&... args) noexcept {
  try {
    std::string line = "writeapi-server: ";
    fmt::format_to(std::back_inserter(line), format, std::forward<Args>(args)...);
    line.push_back('\n');
    (void)std::fwrite(line.data(), 1, line.size(), stderr);
  } catch (...) {
  }
}

}  // namespace writeapi::server

#endif  // WRITEAPI_SERVER_LOG_H_
