// writeapi-server --config FILE, through the real binary: the file's
// settings take effect, the command line overrides them, and mistakes stop
// startup with a message naming the file and line.
#include <httplib.h>

#include <catch2/catch.hpp>
#include <string>

#include "server_process.h"
#include "writeapi/version.h"

using namespace writeapi::testing;
using namespace std::chrono_literals;

TEST_CASE("a config file setting takes effect, a flag overrides another", "[integration][config]") {
  TempDir dir;
  const std::string config = dir.path() + "/writeapi.conf";
  // The fixture passes --port 0, --data-dir, --keys and --access-log on the
  // command line: the file's values for them must lose; max-body, set only
  // in the file, must hold.
  write_file(config,
             "# as an operator would write it\n"
             "port = 1\n"
             "data-dir = " +
                 dir.path() +
                 "/not-this-one\n"
                 "access-log = off\n"
                 "max-body = 200\n");
  ServerProcess server({"--config", config});
  auto client = server.client();
  const std::string small = make_body("1");
  auto ok = client->Post(write_path("homelab", "config"), small, "application/json");
  REQUIRE(ok);
  CHECK(ok->status == 200);
  CHECK(server.read_object("homelab", "config") == "1\n");
  CHECK_FALSE(file_exists(dir.path() + "/not-this-one"));
  CHECK(server.wait_for_access_log_lines(1) >= 1);  // --access-log of the command line
  const std::string large = make_body("\"" + std::string(300, 'x') + "\"");
  auto refused = client->Post(write_path("homelab", "config"), large, "application/json");
  REQUIRE(refused);
  CHECK(refused->status == 413);
}

TEST_CASE("config file mistakes stop startup, naming the file and line", "[integration][config]") {
  TempDir dir;
  const std::string config = dir.path() + "/writeapi.conf";
  struct Case {
    const char* text;
    const char* expected;  // in the message after "<file>:"
  };
  for (const Case& c : {Case{"port = 0\n\nthreadz = 4\n", ":3: unknown setting threadz"},
                        Case{"# ok\nport = 80x\n", ":2: port = 80x: expected a port number"},
                        Case{"fsync always\n", ":1: expected \"name = value\""},
                        Case{"port = 0\nport = 1\n", ":2: port is set again (first on line 1)"}}) {
    write_file(config, c.text);
    auto result = run_server_to_exit({"--config", config, "--access-log", "off"});
    INFO("config file:\n" << c.text << "stderr: " << result.err);
    REQUIRE(result.exited);
    CHECK(result.exit_code == 2);
    CHECK(result.err.find(config + c.expected) != std::string::npos);
    CHECK(result.err.find("listening") == std::string::npos);
  }
  auto missing = run_server_to_exit({"--config", dir.path() + "/missing.conf"});
  INFO("stderr: " << missing.err);
  REQUIRE(missing.exited);
  CHECK(missing.exit_code == 2);
  CHECK(missing.err.find(dir.path() + "/missing.conf") != std::string::npos);
}

TEST_CASE("server version: --version prints writeapi/version.h's", "[integration][config]") {
  auto result = run_server_to_exit({"--version"});
  REQUIRE(result.exited);
  CHECK(result.exit_code == 0);
  CHECK(result.out == std::string("writeapi-server ") + writeapi::kVersion + "\n");
}
