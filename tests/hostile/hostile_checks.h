// Catch2 assertions shared by the hostile tests of the connection layer:
// a refusal is one answer, then the connection closes, and nothing hidden
// behind the refused request is ever run as a request of its own.
#ifndef WRITEAPI_TESTS_HOSTILE_HOSTILE_CHECKS_H_
#define WRITEAPI_TESTS_HOSTILE_HOSTILE_CHECKS_H_

#include <catch2/catch.hpp>
#include <chrono>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "hostile_support.h"
#include "server_process.h"

namespace writeapi::testing {

// The key a hidden second request writes to; it must never be stored. Each
// case hides a request for a key of its own (next_smuggled_key), so one
// case that lets it through does not make the later ones fail.
inline constexpr std::string_view kSmuggledKey = "smuggled";
inline std::string next_smuggled_key() {
  static int counter = 0;
  return std::string(kSmuggledKey) + "-" + std::to_string(++counter);
}

// A complete, valid write of {"smuggled":true} to homelab/<key>.
inline std::string valid_request(std::string_view key = kSmuggledKey) {
  return make_post(write_path("homelab", key), make_body("{\"smuggled\":true}"));
}

inline bool one_of(int status, const std::vector<int>& statuses) {
  for (int s : statuses)
    if (s == status) return true;
  return false;
}

// Checks an exchange read to the end: exactly one response, with one of
// `statuses` (and the JSON error body `code` unless empty), then the
// server closed the connection; and homelab/<smuggled_key> was never
// stored. With `connection_close_header`, the response also says
// "Connection: close".
inline void check_single_answer_then_close(const ServerProcess& server, const Exchange& exchange,
                                           const std::vector<int>& statuses, std::string_view code,
                                           bool connection_close_header = false,
                                           std::string_view smuggled_key = kSmuggledKey) {
  INFO("received (" << exchange.bytes.size() << " bytes):\n" << exchange.bytes.substr(0, 1500));
  CHECK(one_of(exchange.first.status, statuses));
  if (!code.empty()) CHECK(check_error_body(exchange.first.body, code) == "");
  if (connection_close_header) {
    std::string connection = exchange.first.header("connection");
    for (auto& c : connection) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    CHECK(connection == "close");
  }
  CHECK(exchange.status_lines == 1);
  CHECK(exchange.closed);
  CHECK(!server.object_exists("homelab", smuggled_key));
}

// Sends `request` followed by a complete valid request for a fresh
// homelab/smuggled-N on one connection, and checks
// check_single_answer_then_close.
inline void expect_refused_then_closed(const ServerProcess& server, std::string_view what, std::string_view request,
                                       const std::vector<int>& statuses, std::string_view code,
                                       bool connection_close_header = false) {
  INFO("case: " << what);
  const std::string key = next_smuggled_key();
  Exchange exchange =
      exchange_to_eof(server.port(), std::string(request) + valid_request(key), std::chrono::seconds(3));
  check_single_answer_then_close(server, exchange, statuses, code, connection_close_header, key);
}

// The server flags these tests run with: idle keep-alive connections are
// kept far longer than any read here, so a server that fails to close one
// is seen as such instead of timing out in the middle of a check.
inline std::vector<std::string> long_keep_alive() { return {"--keep-alive-timeout-s", "60"}; }

}  // namespace writeapi::testing

#endif  // WRITEAPI_TESTS_HOSTILE_HOSTILE_CHECKS_H_
