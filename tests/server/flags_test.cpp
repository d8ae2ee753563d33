// writeapi-server's flags and --config file (server/flags.h), parsed in
// process: which value wins, and what is refused.
#include "flags.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "server_process.h"

using writeapi::server::ServerConfig;
using writeapi::testing::TempDir;
using writeapi::testing::write_file;

namespace {

int parse(std::vector<std::string> args, ServerConfig* config) {
  args.insert(args.begin(), "writeapi-server");
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  return writeapi::server::parse_flags(static_cast<int>(args.size()), argv.data(), config);
}

}  // namespace

TEST_CASE("config file: settings are read, comments and blank lines skipped", "[flags][config]") {
  TempDir dir;
  const std::string path = dir.path() + "/writeapi.conf";
  write_file(path,
             "# writeapi-server settings\n"
             "\n"
             "host = 0.0.0.0\n"
             "   port=9090   \n"
             "\t# indented comment\n"
             "data-dir = /var/lib/writeapi\n"
             "keys = /etc/writeapi/keys.json\r\n"
             "fsync = interval\n"
             "fsync-interval-ms = 250\n"
             "max-body = 1MiB\n"
             "access-log = off\n"
             "clickhouse-table = lines with spaces kept\n");
  ServerConfig config;
  REQUIRE(parse({"--config", path}, &config) == 0);
  CHECK(config.host == "0.0.0.0");
  CHECK(config.port == 9090);
  CHECK(config.data_dir == "/var/lib/writeapi");
  CHECK(config.keys_path == "/etc/writeapi/keys.json");
  CHECK(config.fsync == writeapi::FsyncPolicy::interval);
  CHECK(config.fsync_interval == std::chrono::milliseconds(250));
  CHECK(config.max_body_bytes == 1024 * 1024);
  CHECK(config.access_log == "off");
  CHECK(config.clickhouse.table == "lines with spaces kept");
  // Unset settings keep their defaults.
  CHECK(config.threads == ServerConfig{}.threads);
}

TEST_CASE("config file: command-line flags override it, wherever --config stands", "[flags][config]") {
  TempDir dir;
  const std::string path = dir.path() + "/writeapi.conf";
  write_file(path, "port = 9090\nthreads = 8\naccess-log = off\n");
  ServerConfig before;
  REQUIRE(parse({"--port", "7070", "--config", path}, &before) == 0);
  CHECK(before.port == 7070);
  CHECK(before.threads == 8);
  ServerConfig after;
  REQUIRE(parse({"--config=" + path, "--access-log=-", "--threads", "16"}, &after) == 0);
  CHECK(after.port == 9090);
  CHECK(after.threads == 16);
  CHECK(after.access_log == "-");
}

TEST_CASE("config file: an empty file and a file of comments change nothing", "[flags][config]") {
  TempDir dir;
  const std::string path = dir.path() + "/writeapi.conf";
  for (const char* text : {"", "\n\n", "# only\n   # comments\n"}) {
    write_file(path, text);
    ServerConfig config;
    REQUIRE(parse({"--config", path}, &config) == 0);
    CHECK(config.port == ServerConfig{}.port);
    CHECK(config.data_dir == ServerConfig{}.data_dir);
  }
}

TEST_CASE("config file: mistakes are refused with exit status 2", "[flags][config]") {
  TempDir dir;
  const std::string path = dir.path() + "/writeapi.conf";
  for (const char* text :
       {"no-such-setting = 1\n", "port = eighty\n", "port\n", " = 1\n", "--port = 1\n", "port = 1\nport = 2\n",
        "config = /etc/other.conf\n", "help = yes\n", "fsync = sometimes\n", "tls-cert = c.pem\n"}) {
    INFO("config file: " << text);
    write_file(path, text);
    ServerConfig config;
    CHECK(parse({"--config", path}, &config) == 2);
  }
  ServerConfig config;
  CHECK(parse({"--config", dir.path() + "/missing.conf"}, &config) == 2);
  CHECK(parse({"--config", path, "--config", path}, &config) == 2);
  CHECK(parse({"--config="}, &config) == 2);
  CHECK(parse({"--config"}, &config) == 2);
}

TEST_CASE("flags: --storage clickhouse is taken only when the library has the backend", "[flags]") {
  ServerConfig config;
  if (writeapi::clickhouse_storage_supported()) {
    CHECK(parse({"--storage", "clickhouse"}, &config) == 0);
    CHECK(config.storage == writeapi::server::StorageBackend::clickhouse);
  } else {
    // Built with WRITEAPI_WITH_CLICKHOUSE=OFF: refused at startup, not at
    // the first write.
    CHECK(parse({"--storage", "clickhouse"}, &config) == 2);
  }
  CHECK(parse({"--storage", "file"}, &config) == 0);
  CHECK(config.storage == writeapi::server::StorageBackend::file);
}

TEST_CASE("flags: --version and --help print and stop", "[flags]") {
  ServerConfig config;
  CHECK(parse({"--version"}, &config) == -1);
  CHECK(parse({"--help"}, &config) == -1);
}

TEST_CASE("config file: empty values, NUL bytes, CR-only line ends and huge files are refused", "[flags][config]") {
  TempDir dir;
  const std::string path = dir.path() + "/writeapi.conf";
  for (const std::string& text : {std::string("data-dir =\n"), std::string("keys = \n"), std::string("host=\n"),
                                  std::string("access-log =\n"), std::string("data-dir = /tmp/a\0b\n", 20),
                                  std::string("port = 9000\rkeys = k.json\r"), std::string(2u << 20, '#')}) {
    INFO("config file: " << text.substr(0, 40));
    write_file(path, text);
    ServerConfig config;
    CHECK(parse({"--config", path}, &config) == 2);
  }
  // /dev/zero never ends: refused at the size cap, not read until memory runs out.
  ServerConfig config;
  CHECK(parse({"--config", "/dev/zero"}, &config) == 2);
  // CRLF line ends are fine.
  write_file(path, "port = 9000\r\nkeys = k.json\r\n");
  ServerConfig crlf;
  CHECK(parse({"--config", path}, &crlf) == 0);
  CHECK(crlf.port == 9000);
  CHECK(crlf.keys_path == "k.json");
}
