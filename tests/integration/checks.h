// Catch2 assertions shared by the integration tests.
#ifndef WRITEAPI_TESTS_INTEGRATION_CHECKS_H_
#define WRITEAPI_TESTS_INTEGRATION_CHECKS_H_

#include <catch2/catch.hpp>
#include <string>
#include <string_view>

#include "server_process.h"

namespace writeapi::testing {

// Sends `request` (exact bytes) on a new connection; checks the answer is
// `status` with the error body {"ok":false,"error":<code>,"message":...}
// and that nothing under the data directory changed. Returns the response.
inline RawResponse expect_refused(const ServerProcess& server, std::string_view what, std::string_view request,
                                  int status, std::string_view code) {
  auto before = snapshot_tree(server.data_dir());
  RawResponse res = raw_exchange(server.port(), request);
  INFO("case: " << what << "\nresponse:\n" << res.raw);
  CHECK(res.status == status);
  CHECK(check_error_body(res.body, code) == "");
  CHECK(res.header("content-type").rfind("application/json", 0) == 0);
  CHECK(tree_diff(before, snapshot_tree(server.data_dir())) == "");
  return res;
}

// Writes `line_json` (one item) to homelab/<key> so later refusals can be
// shown to leave an existing object unchanged.
inline void prefill(const ServerProcess& server, std::string_view key, std::string_view line_json = "0") {
  RawResponse res = raw_exchange(server.port(), make_post(write_path("homelab", key), make_body(line_json)));
  INFO(res.raw);
  REQUIRE(res.status == 200);
  REQUIRE(server.read_object("homelab", key) == std::string(line_json) + "\n");
}

}  // namespace writeapi::testing

#endif  // WRITEAPI_TESTS_INTEGRATION_CHECKS_H_
