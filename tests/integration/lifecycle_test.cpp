// Process lifecycle: flags, startup failures, signals, graceful shutdown,
// keys reload.
#include <httplib.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <string>
#include <thread>
#include <vector>

#include "checks.h"
#include "server_process.h"
#include "writeapi/auth.h"

using namespace writeapi::testing;
using namespace std::chrono_literals;

TEST_CASE("help flag exits 0 and lists every flag", "[integration][lifecycle][server-only]") {
  auto result = run_server_to_exit({"--help"});
  REQUIRE(result.exited);
  CHECK(result.exit_code == 0);
  const std::string help = result.out + result.err;
  INFO(help);
  for (const char* flag :
       {"--host", "--port", "--data-dir", "--keys", "--max-body", "--threads", "--fsync", "--fsync-interval-ms",
        "--max-open-files", "--access-log", "--read-timeout-s", "--keep-alive-timeout-s", "--help"}) {
    INFO("flag " << flag);
    CHECK(help.find(flag) != std::string::npos);
  }
}

TEST_CASE("a missing keys file stops startup with a message naming it", "[integration][lifecycle]") {
  TempDir dir;
  const std::string keys = dir.path() + "/no-such-keys-file.json";
  auto result = run_server_to_exit(
      {"--port", "0", "--data-dir", dir.path() + "/data", "--keys", keys, "--access-log", "off"}, 10s);
  INFO("stderr: " << result.err);
  REQUIRE(result.exited);
  CHECK(result.exit_code != 0);
  CHECK(result.elapsed < 5s);
  CHECK(result.err.find(keys) != std::string::npos);
  CHECK(result.err.find("listening") == std::string::npos);
}

TEST_CASE("a malformed keys file stops startup", "[integration][lifecycle]") {
  TempDir dir;
  const std::string keys = dir.path() + "/keys.json";
  write_file(keys, "{\"buckets\": {\"homelab\": {\"keys\": [{\"id\": \"x\", \"sha256\": \"not-hex\"}]}}}");
  auto result = run_server_to_exit(
      {"--port", "0", "--data-dir", dir.path() + "/data", "--keys", keys, "--access-log", "off"}, 10s);
  INFO("stderr: " << result.err);
  REQUIRE(result.exited);
  CHECK(result.exit_code != 0);
  CHECK_FALSE(result.err.empty());
}

TEST_CASE("an unusable data directory stops startup", "[integration][lifecycle]") {
  TempDir dir;
  const std::string keys = dir.path() + "/keys.json";
  write_keys_file(keys);
  // A path below a regular file can be neither created nor written.
  write_file(dir.path() + "/plain-file", "x");
  auto result = run_server_to_exit(
      {"--port", "0", "--data-dir", dir.path() + "/plain-file/data", "--keys", keys, "--access-log", "off"}, 10s);
  INFO("stderr: " << result.err);
  REQUIRE(result.exited);
  CHECK(result.exit_code != 0);
  CHECK(result.elapsed < 5s);
  CHECK_FALSE(result.err.empty());

  // The data directory itself a regular file.
  result = run_server_to_exit(
      {"--port", "0", "--data-dir", dir.path() + "/plain-file", "--keys", keys, "--access-log", "off"}, 10s);
  INFO("stderr: " << result.err);
  REQUIRE(result.exited);
  CHECK(result.exit_code != 0);
}

TEST_CASE("a data directory in use by another server stops startup", "[integration][lifecycle]") {
  ServerProcess first;
  auto result = run_server_to_exit(
      {"--port", "0", "--data-dir", first.data_dir(), "--keys", first.keys_path(), "--access-log", "off"}, 10s);
  INFO("stderr: " << result.err);
  REQUIRE(result.exited);
  CHECK(result.exit_code != 0);
  // The first server is unaffected.
  auto res = first.client()->Post(write_path("homelab", "k"), make_body("1"), "application/json");
  REQUIRE(res);
  CHECK(res->status == 200);
}

TEST_CASE("a port in use stops startup", "[integration][lifecycle]") {
  ServerProcess first;
  TempDir dir;
  auto result = run_server_to_exit({"--port", std::to_string(first.port()), "--data-dir", dir.path() + "/data",
                                    "--keys", first.keys_path(), "--access-log", "off"},
                                   3s);
  INFO("stderr: " << result.err);
  REQUIRE(result.exited);
  CHECK(result.exit_code != 0);
  CHECK(result.err.find(std::to_string(first.port())) != std::string::npos);
}

TEST_CASE("bad flags stop startup with a message", "[integration][lifecycle]") {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"--no-such-flag", "1"}, std::vector<std::string>{"--port", "http"},
        std::vector<std::string>{"--port", "70000"}, std::vector<std::string>{"--fsync", "sometimes"},
        std::vector<std::string>{"--max-body", "0"}, std::vector<std::string>{"--threads", "0"},
        std::vector<std::string>{"--port"}}) {
    auto result = run_server_to_exit(args, 10s);
    INFO("args: " << args[0] << " stderr: " << result.err);
    REQUIRE(result.exited);
    CHECK(result.exit_code != 0);
    CHECK(result.err.find(args[0]) != std::string::npos);
  }
}

TEST_CASE("a --max-body above the format's 1 GiB bound stops startup with a message", "[integration][lifecycle]") {
  auto result = run_server_to_exit({"--max-body", "1073741825"}, 10s);
  REQUIRE(result.exited);
  CHECK(result.exit_code != 0);
  CHECK(result.err.find("at most 1073741824 bytes (1 GiB)") != std::string::npos);
}

TEST_CASE("SIGTERM and SIGINT exit 0", "[integration][lifecycle][signals]") {
  for (int sig : {SIGTERM, SIGINT}) {
    INFO("signal " << sig);
    ServerProcess server;
    auto res = server.client()->Post(write_path("homelab", "k"), make_body("1"), "application/json");
    REQUIRE(res);
    REQUIRE(res->status == 200);
    server.send_signal(sig);
    auto status = server.wait_exit(10s);
    REQUIRE(status);
    CHECK(*status == 0);
    CHECK(server.read_object("homelab", "k") == "1\n");
  }
}

TEST_CASE("SIGTERM with an idle keep-alive connection still exits 0", "[integration][lifecycle][signals]") {
  // Idle keep-alive connections may hold shutdown up to their timeout.
  ServerProcess server({"--keep-alive-timeout-s", "2"});
  auto client = server.client();
  auto res = client->Post(write_path("homelab", "k"), make_body("1"), "application/json");
  REQUIRE(res);
  REQUIRE(res->status == 200);
  // The client keeps its connection open while the server stops.
  server.send_signal(SIGTERM);
  auto status = server.wait_exit(15s);
  REQUIRE(status);
  CHECK(*status == 0);
}

TEST_CASE("a request in flight when SIGTERM arrives still completes", "[integration][lifecycle][signals]") {
  ServerProcess server;
  const std::string body = make_body("{\"in_flight\":true}", kAccessKey, "slow-device");
  const std::size_t half = body.size() / 2;
  auto chunk = [](std::string_view data) {
    char size_line[32];
    std::snprintf(size_line, sizeof size_line, "%zx\r\n", data.size());
    return std::string(size_line) + std::string(data) + "\r\n";
  };
  RawConnection connection(server.port());
  REQUIRE(
      connection.send("POST " + write_path("homelab", "inflight") +
                      " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
                      chunk(std::string_view(body).substr(0, half))));
  // Let the server start on the request, then ask it to stop.
  std::this_thread::sleep_for(300ms);
  server.send_signal(SIGTERM);
  std::this_thread::sleep_for(300ms);
  CHECK(server.running());  // still serving the upload
  REQUIRE(connection.send(chunk(std::string_view(body).substr(half)) + "0\r\n\r\n"));
  auto res = connection.read_response(10s);
  INFO(res.raw);
  CHECK(res.status == 200);
  CHECK(check_ok_body(res.body, 1) == "");
  auto status = server.wait_exit(15s);
  REQUIRE(status);
  CHECK(*status == 0);
  CHECK(server.read_object("homelab", "inflight") == "{\"in_flight\":true}\n");
  CHECK(server.stderr_contents().find("SIGTERM") != std::string::npos);
}

TEST_CASE("SIGHUP reloads the keys file and a bad reload keeps the old keys", "[integration][lifecycle][keys]") {
  ServerProcess server;
  auto client = server.client();
  const std::string new_key = "a-brand-new-key-for-newlab-0001";
  auto post = [&](std::string_view bucket, std::string_view key) {
    auto res = client->Post(write_path(bucket, "k"), make_body("1", key), "application/json");
    REQUIRE(res);
    return res->status;
  };
  CHECK(post("newlab", new_key) == 403);

  write_file(server.keys_path(), "{\"buckets\": {\"newlab\": {\"keys\": [{\"id\": \"n\", \"sha256\": \"" +
                                     writeapi::sha256_hex(new_key) + "\"}]}}}");
  server.send_signal(SIGHUP);
  int status = 0;
  for (int i = 0; i < 200 && (status = post("newlab", new_key)) != 200; ++i) std::this_thread::sleep_for(10ms);
  CHECK(status == 200);
  CHECK(post("homelab", kAccessKey) == 403);  // the old key is gone

  write_file(server.keys_path(), "{ not json");
  server.send_signal(SIGHUP);
  for (int i = 0; i < 200 && server.stderr_contents().find("keeping previous keys") == std::string::npos; ++i)
    std::this_thread::sleep_for(10ms);
  CHECK(server.stderr_contents().find("keeping previous keys") != std::string::npos);
  CHECK(post("newlab", new_key) == 200);
  CHECK(server.read_object("newlab", "k") == "1\n1\n");
}

TEST_CASE("a log line that cannot be written costs only that line and never the server",
          "[integration][lifecycle][server-only]") {
  ServerProcess server({"--fsync", "always"});
  REQUIRE(server.client()->Post(write_path("homelab", "before"), make_body("1"), "application/json"));
  // From now on every file of the server stops at its current size plus
  // one byte, standard error (a file) included: the next log line fails
  // part-way (as on a full disk), and so does the next append, whose
  // refusal is logged.
  struct stat err {};
  REQUIRE(::stat(server.stderr_path().c_str(), &err) == 0);
  const rlimit tight{static_cast<rlim_t>(err.st_size + 1), RLIM_INFINITY};
  REQUIRE(::prlimit(server.pid(), RLIMIT_FSIZE, &tight, nullptr) == 0);
  std::string big = "[";
  for (int i = 0; i < 2000; ++i) big += (i > 0 ? ",\"" : "\"") + std::string(100, 'x') + "\"";
  big += "]";
  auto refused = server.client()->Post(write_path("homelab", "refused"), make_body(big), "application/json");
  REQUIRE(refused);  // answered, not dropped with the process
  CHECK(refused->status >= 500);
  const rlimit open{RLIM_INFINITY, RLIM_INFINITY};
  REQUIRE(::prlimit(server.pid(), RLIMIT_FSIZE, &open, nullptr) == 0);
  auto after = server.client()->Post(write_path("homelab", "after"), make_body("2"), "application/json");
  REQUIRE(after);
  CHECK(after->status == 200);
}
