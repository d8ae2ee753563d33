// Shared pieces of the ClickHouse integration tests: which ClickHouse
// servers to use (from the environment .ci/run sets), scratch databases,
// SQL over HTTP, reading objects back through the library, and private
// ClickHouse servers for tests that stop and start them.
//
// Environment:
//   WRITEAPI_CLICKHOUSE_URL         a server for the single-server tests; when
//                                   unset every ClickHouse test WARNs and passes
//   WRITEAPI_CLICKHOUSE_SHARD_URLS  "URL1,URL2": two servers forming a cluster
//                                   (scripts/clickhouse-test-server starts them)
//   WRITEAPI_CLICKHOUSE_CLUSTER     its name (default writeapi_cluster)
#ifndef WRITEAPI_TESTS_CLICKHOUSE_INTEGRATION_CLICKHOUSE_SUPPORT_H_
#define WRITEAPI_TESTS_CLICKHOUSE_INTEGRATION_CLICKHOUSE_SUPPORT_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "server_process.h"
#include "writeapi/storage.h"

namespace writeapi::testing {

// Ends the test case, passing with a warning, when no ClickHouse is given.
#define WRITEAPI_REQUIRE_CLICKHOUSE_OR_SKIP()                                            \
  do {                                                                                   \
    if (::writeapi::testing::clickhouse_url().empty()) {                                 \
      WARN("WRITEAPI_CLICKHOUSE_URL is not set: ClickHouse test skipped (see .ci/run)"); \
      return;                                                                            \
    }                                                                                    \
  } while (false)

std::string clickhouse_url();                      // "" when not set
std::vector<std::string> clickhouse_shard_urls();  // empty when not set
std::string clickhouse_cluster();

// Runs `sql` on the server at `url`; REQUIREs success; returns the answer.
std::string clickhouse_query(const std::string& url, const std::string& sql);

// A database name no other test uses, dropped (on every server given) when
// the object goes away.
class ScratchDatabase {
 public:
  ScratchDatabase(std::vector<std::string> urls, std::string_view purpose);
  ~ScratchDatabase();
  ScratchDatabase(const ScratchDatabase&) = delete;
  ScratchDatabase& operator=(const ScratchDatabase&) = delete;
  const std::string& name() const { return name_; }

 private:
  std::vector<std::string> urls_;
  std::string name_;
};

// The library's ClickHouse storage on an existing table, for reading back
// what servers stored (read_object, list_keys).
std::unique_ptr<Storage> clickhouse_reader(const std::string& url, const std::string& database,
                                           const std::string& table = "lines");

// writeapi-server flags for the ClickHouse backend.
std::vector<std::string> clickhouse_server_args(const std::string& url, const std::string& database,
                                                const std::string& table = "lines");

// A private ClickHouse server (scripts/clickhouse-test-server) in a temp
// directory on a free port, for tests that stop and restart it. Stopped on
// destruction.
class PrivateClickHouse {
 public:
  PrivateClickHouse();  // starts it
  ~PrivateClickHouse();
  PrivateClickHouse(const PrivateClickHouse&) = delete;
  PrivateClickHouse& operator=(const PrivateClickHouse&) = delete;
  const std::string& url() const { return url_; }
  void stop();
  void start();  // again, on the same port and data

 private:
  TempDir dir_;
  std::string port_ = "auto";
  std::string url_;
  bool running_ = false;
};

}  // namespace writeapi::testing

#endif  // WRITEAPI_TESTS_CLICKHOUSE_INTEGRATION_CLICKHOUSE_SUPPORT_H_
