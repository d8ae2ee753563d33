// Keys and device limits through the real server: hot reload after
// writeapi-keys, a broken reload, auth-failure counters, blocked and
// over-budget devices.
#include <httplib.h>
#include <signal.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "server_process.h"
#include "writeapi/auth.h"

#ifndef WRITEAPI_KEYS_PATH
#error "WRITEAPI_KEYS_PATH must name the writeapi-keys binary"
#endif

using namespace writeapi::testing;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// Runs writeapi-keys on `keys_path` with `args` (no shell-special
// characters); returns its standard output, REQUIRE-ing exit status 0.
std::string run_keys_tool(const std::string& keys_path, const std::string& args) {
  const std::string command = std::string("'") + WRITEAPI_KEYS_PATH + "' --keys '" + keys_path + "' " + args;
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  char buffer[4096];
  for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) out.append(buffer, n);
  const int status = ::pclose(pipe);
  INFO(command << "\n" << out);
  REQUIRE(status == 0);
  return out;
}

// The Retry-After header as a number; 0 when absent or not a number.
int retry_after(const httplib::Response& res) {
  const std::string value = res.get_header_value("Retry-After");
  if (value.empty() || value.find_first_not_of("0123456789") != std::string::npos || value.size() > 9) return 0;
  return std::stoi(value);
}

std::string last_line(const std::string& text) {
  auto lines = split_lines(text);
  REQUIRE_FALSE(lines.empty());
  return lines.back();
}

int post_status(const ServerProcess& server, std::string_view bucket, std::string_view object,
                std::string_view access_key, std::optional<std::string_view> device = std::nullopt) {
  auto res = server.client()->Post(write_path(bucket, object), make_body("1", access_key, device), "application/json");
  REQUIRE(res);
  return res->status;
}

std::string get_metrics(const ServerProcess& server) {
  auto res = server.client()->Get("/metrics");
  REQUIRE(res);
  REQUIRE(res->status == 200);
  return res->body;
}

// Polls /metrics until `sample` is at least `value`; returns the last body.
std::string wait_for_metric(const ServerProcess& server, std::string_view sample, double value) {
  std::string metrics;
  for (auto deadline = Clock::now() + 5s; Clock::now() < deadline; std::this_thread::sleep_for(20ms)) {
    metrics = get_metrics(server);
    auto current = metric_value(metrics, sample);
    if (current && *current >= value) break;
  }
  return metrics;
}

// The fixture's keys ("homelab" with kAccessKey, kOtherBucket with its key)
// plus `homelab_extra` inside the homelab bucket object.
std::string keys_with(const std::string& homelab_extra) {
  return R"({"buckets": {
    "homelab": {"keys": [{"id": "demo", "sha256": ")" +
         writeapi::sha256_hex(kAccessKey) + "\"}]" + homelab_extra + R"(},
    ")" + std::string(kOtherBucket) +
         R"(": {"keys": [{"id": "other", "sha256": ")" + writeapi::sha256_hex(kOtherAccessKey) + R"("}]}}}
)";
}

}  // namespace

TEST_CASE("keys server: a key added and revoked with writeapi-keys takes effect within 2 s, no restart",
          "[integration][keys]") {
  ServerProcess server;
  const pid_t pid = server.pid();

  const std::string new_key = last_line(run_keys_tool(server.keys_path(), "add-key homelab --label rotation"));
  auto added_at = Clock::now();
  int status = 0;
  while ((status = post_status(server, "homelab", "rotation", new_key)) != 200 && Clock::now() < added_at + 5s)
    std::this_thread::sleep_for(20ms);
  REQUIRE(status == 200);
  CHECK(Clock::now() - added_at < 2500ms);

  // Both keys are live: devices can move to the new key without downtime.
  CHECK(post_status(server, "homelab", "rotation", kAccessKey) == 200);
  CHECK(post_status(server, "homelab", "rotation", new_key) == 200);

  run_keys_tool(server.keys_path(), "revoke homelab k1");
  const auto revoked_at = Clock::now();
  int accepted_after_revoke = 0;
  while ((status = post_status(server, "homelab", "rotation", new_key)) == 200 && Clock::now() < revoked_at + 5s) {
    ++accepted_after_revoke;
    std::this_thread::sleep_for(20ms);
  }
  const auto refused_after = Clock::now() - revoked_at;
  WARN("revoked key refused " << std::chrono::duration_cast<std::chrono::milliseconds>(refused_after).count()
                              << " ms after writeapi-keys revoke returned");
  CHECK(status == 403);
  CHECK(refused_after < 2s);
  CHECK(post_status(server, "homelab", "rotation", kAccessKey) == 200);  // the other key still works

  // Same process all along; exactly the accepted requests were stored.
  CHECK(server.pid() == pid);
  CHECK(server.running());
  CHECK(split_lines(server.read_object("homelab", "rotation")).size() ==
        static_cast<std::size_t>(4 + accepted_after_revoke));
  std::string metrics = wait_for_metric(server, "writeapi_keys_reloads_total", 2);
  CHECK(*metric_value(metrics, "writeapi_keys_reloads_total") >= 2);
}

TEST_CASE("keys server: a broken keys file on reload keeps the old keys and is counted", "[integration][keys]") {
  ServerProcess server;
  write_file(server.keys_path(), "{\"buckets\": {\"homelab\": ");
  server.send_signal(SIGHUP);
  std::string metrics = wait_for_metric(server, "writeapi_keys_reload_failures_total", 1);
  INFO(metrics);
  CHECK(*metric_value(metrics, "writeapi_keys_reload_failures_total") >= 1);
  CHECK(metric_value(metrics, "writeapi_keys_reloads_total") == 0.0);
  CHECK(server.stderr_contents().find("keeping previous keys") != std::string::npos);

  CHECK(post_status(server, "homelab", "still", kAccessKey) == 200);
  CHECK(post_status(server, kOtherBucket, "still", kOtherAccessKey) == 200);

  // Limits that fail validation are a broken file too.
  write_file(server.keys_path(), keys_with(R"(, "devices": {"d": {"rate": 0}})"));
  server.send_signal(SIGHUP);
  const double failures = *metric_value(metrics, "writeapi_keys_reload_failures_total");
  metrics = wait_for_metric(server, "writeapi_keys_reload_failures_total", failures + 1);
  CHECK(*metric_value(metrics, "writeapi_keys_reload_failures_total") >= failures + 1);
  CHECK(post_status(server, "homelab", "still", kAccessKey, "d") == 200);

  // A good file is taken again.
  write_file(server.keys_path(), keys_with(""));
  server.send_signal(SIGHUP);
  metrics = wait_for_metric(server, "writeapi_keys_reloads_total", 1);
  CHECK(*metric_value(metrics, "writeapi_keys_reloads_total") >= 1);
  CHECK(server.read_object("homelab", "still") == "1\n1\n");
}

TEST_CASE("keys server: auth failures are counted per known bucket and logged without the key", "[integration][keys]") {
  ServerProcess server({"--metrics-listen", "127.0.0.1:0"});
  const std::string wrong_key = "wrong-key-7d1c9a0b5e3f46a8b2c4d6e8f0a1b3c5";
  CHECK(post_status(server, "homelab", "x", wrong_key) == 403);
  CHECK(post_status(server, "homelab", "x", wrong_key) == 403);
  for (int i = 0; i < 3; ++i) CHECK(post_status(server, "nolab" + std::to_string(i), "x", wrong_key) == 403);
  CHECK(post_status(server, "homelab", "x", kAccessKey) == 200);

  // The main listener shows the total only: bucket names need the metrics
  // listener.
  const std::string public_metrics = get_metrics(server);
  CHECK(metric_value(public_metrics, "writeapi_auth_failures_total") == 5.0);
  CHECK(public_metrics.find("homelab") == std::string::npos);
  CHECK(public_metrics.find("nolab") == std::string::npos);
  REQUIRE(server.metrics_port() > 0);
  httplib::Client metrics_client("127.0.0.1", server.metrics_port());
  auto res = metrics_client.Get("/metrics");
  REQUIRE(res);
  REQUIRE(res->status == 200);
  const std::string metrics = res->body;
  INFO(metrics);
  CHECK(metric_value(metrics, "writeapi_auth_failures_total{bucket=\"homelab\"}") == 2.0);
  CHECK(metric_value(metrics, "writeapi_auth_failures_total{bucket=\"" + std::string(kOtherBucket) + "\"}") == 0.0);
  CHECK(metric_value(metrics, "writeapi_auth_failures_total{bucket=\"<unknown>\"}") == 3.0);
  CHECK(metrics.find("nolab") == std::string::npos);  // no series per unknown bucket

  server.wait_for_access_log_lines(6);
  const std::string log = server.access_log_contents();
  CHECK(log.find("error=access_denied") != std::string::npos);
  CHECK(log.find(wrong_key) == std::string::npos);
  CHECK(server.stderr_contents().find(wrong_key) == std::string::npos);
}

TEST_CASE("keys server: blocked and over-budget devices are refused and nothing of them is stored",
          "[integration][keys]") {
  ServerProcess server;
  write_file(server.keys_path(),
             keys_with(R"(, "devices": {"broken_7": {"blocked": true}, "greedy": {"rate": 0.05, "burst": 2}})"));
  server.send_signal(SIGHUP);
  int status = 0;
  for (auto deadline = Clock::now() + 5s; Clock::now() < deadline; std::this_thread::sleep_for(20ms))
    if ((status = post_status(server, "homelab", "probe", kAccessKey, "broken_7")) == 403) break;
  REQUIRE(status == 403);

  auto client = server.client();
  auto blocked =
      client->Post(write_path("homelab", "blocked"), make_body("1", kAccessKey, "broken_7"), "application/json");
  REQUIRE(blocked);
  CHECK(blocked->status == 403);
  CHECK(check_error_body(blocked->body, "device_blocked") == "");
  CHECK_FALSE(server.object_exists("homelab", "blocked"));

  // greedy: a burst of 2, then 429 with the wait for one token (20 s at
  // 0.05/s) in Retry-After.
  const std::string target = write_path("homelab", "greedy");
  for (int i = 0; i < 2; ++i) {
    auto res = client->Post(target, make_body("[1,2]", kAccessKey, "greedy"), "application/json");
    REQUIRE(res);
    REQUIRE(res->status == 200);
  }
  auto limited = client->Post(target, make_body("[3,4]", kAccessKey, "greedy"), "application/json");
  REQUIRE(limited);
  CHECK(limited->status == 429);
  CHECK(check_error_body(limited->body, "rate_limited") == "");
  const int retry = retry_after(*limited);
  CHECK(retry >= 15);
  CHECK(retry <= 20);

  // Other devices of the bucket, and anonymous requests, are unaffected.
  CHECK(post_status(server, "homelab", "neighbour", kAccessKey, "outdoors_u871a") == 200);
  CHECK(post_status(server, "homelab", "neighbour", kAccessKey) == 200);

  // Keeping on (30 refusals within a minute) suspends greedy for 10 s.
  std::string code;
  int suspended_retry = 0;
  for (int i = 0; i < 40 && code != "suspended"; ++i) {
    auto res = client->Post(target, make_body("[5]", kAccessKey, "greedy"), "application/json");
    REQUIRE(res);
    REQUIRE(res->status == 429);
    if (check_error_body(res->body, "suspended") == "") {
      code = "suspended";
      suspended_retry = retry_after(*res);
    }
  }
  CHECK(code == "suspended");
  CHECK(suspended_retry == 10);
  CHECK(post_status(server, "homelab", "neighbour", kAccessKey, "outdoors_u871a") == 200);

  CHECK(server.read_object("homelab", "greedy") == "1\n2\n1\n2\n");
  const std::string metrics = get_metrics(server);
  INFO(metrics);
  CHECK(*metric_value(metrics, "writeapi_limit_refusals_total{reason=\"device_blocked\"}") >= 2);
  CHECK(*metric_value(metrics, "writeapi_limit_refusals_total{reason=\"rate_limited\"}") >= 29);
  CHECK(metric_value(metrics, "writeapi_limit_suspensions_total") == 1.0);
  CHECK(*metric_value(metrics, "writeapi_http_requests_total{code=\"429\"}") >= 30);
}
