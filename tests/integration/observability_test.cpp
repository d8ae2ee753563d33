// What the server reveals about itself: access log, secrecy of access keys,
// /healthz and /metrics.
#include <httplib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "checks.h"
#include "server_process.h"
#include "writeapi/version.h"

using namespace writeapi::testing;
using namespace std::chrono_literals;

namespace {

const std::string K(kAccessKey);

std::vector<std::string> tokens(const std::string& line) {
  std::vector<std::string> out;
  std::istringstream in(line);
  for (std::string t; in >> t;) out.push_back(t);
  return out;
}

bool has_token(const std::vector<std::string>& t, std::string_view token) {
  for (const auto& x : t)
    if (x == token) return true;
  return false;
}

// Every regular file under `dir` whose contents contain `needle`.
std::vector<std::string> files_containing(const std::string& dir, std::string_view needle) {
  std::vector<std::string> hits;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dir)) {
    if (!entry.is_regular_file()) continue;
    if (read_file(entry.path().string()).find(needle) != std::string::npos) hits.push_back(entry.path().string());
  }
  return hits;
}

}  // namespace

TEST_CASE("GET /healthz is 200", "[integration][observability]") {
  ServerProcess server;
  auto res = server.client()->Get("/healthz");
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->get_header_value("Content-Type").rfind("application/json", 0) == 0);
}

TEST_CASE("access keys never reach the logs or the data directory", "[integration][observability][secrecy]") {
  ServerProcess server({"--max-body", "4096"});
  const std::string wrong_key = "wrong-key-3c1f9e0b7d5a4e21b8f6";
  auto client = server.client();
  const std::string target = write_path("homelab", "secret");
  std::vector<int> statuses;
  auto post = [&](const std::string& path, const std::string& body, httplib::Headers headers = {}) {
    auto res = client->Post(path, headers, body, "application/json");
    REQUIRE(res);
    statuses.push_back(res->status);
  };
  post(target, make_body("{\"v\":1}", K, "dev-1"));                                           // 200
  post(target, make_body("[1,2,3]", K));                                                      // 200
  post(target, make_body("1", wrong_key, "dev-2"));                                           // 403
  post(write_path("nosuchbucket", "secret"), make_body("1", K));                              // 403
  post(target, "{\"accessKey\":\"" + K + "\",\"data\":");                                     // 400 invalid_json
  post(target, "{\"accessKey\":\"" + K + "\"}");                                              // 400 missing_field
  post(target, "{\"accessKey\":\"" + K + "\",\"deviceId\":\"\",\"data\":1}");                 // 400 invalid_device_id
  post(target, "{\"accessKey\":\"" + K + "\",\"data\":\"" + std::string(5000, 'x') + "\"}");  // 413
  post(target + "?accessKey=" + K, make_body("2", K));                             // 200, key also in the query
  post(target, gzip_compress(make_body("3", K)), {{"Content-Encoding", "gzip"}});  // 200
  auto raw = raw_exchange(server.port(), make_post(target, make_body("4", K), {"Content-Type: text/plain"}));  // 415
  statuses.push_back(raw.status);
  CHECK(statuses == std::vector<int>{200, 200, 403, 403, 400, 400, 400, 413, 200, 200, 415});

  server.wait_for_access_log_lines(1 + statuses.size());
  // Stop the server so everything it writes is flushed (closing the client
  // first: an idle keep-alive connection would delay the exit).
  client.reset();
  CHECK(server.terminate() == 0);

  for (std::string_view secret : {std::string_view(K), std::string_view(wrong_key)}) {
    INFO("secret " << secret);
    CHECK(server.access_log_contents().find(secret) == std::string::npos);
    CHECK(server.stderr_contents().find(secret) == std::string::npos);
    CHECK(server.stdout_contents().find(secret) == std::string::npos);
    CHECK(files_containing(server.data_dir(), secret).empty());
  }
  // The writes themselves are there.
  CHECK(server.read_object("homelab", "secret") == "{\"v\":1}\n1\n2\n3\n2\n3\n");
}

TEST_CASE("the access log has one line per request", "[integration][observability][access-log][server-only]") {
  ServerProcess server;
  const std::size_t baseline = server.wait_for_access_log_lines(1);  // the readiness probe
  auto client = server.client();

  struct Expected {
    std::string method, path;
    int status;
    int items;
    std::string device;  // "" when none
  };
  std::vector<Expected> expected;
  auto check = [&](const httplib::Result& res, Expected e) {
    REQUIRE(res);
    REQUIRE(res->status == e.status);
    expected.push_back(std::move(e));
  };
  const std::string target = write_path("homelab", "logged");
  check(client->Post(target, make_body("[1,2]", K, "sensor-7"), "application/json"),
        {"POST", target, 200, 2, "sensor-7"});
  check(client->Post(target, make_body("1", "wrong", "sensor-8"), "application/json"),
        {"POST", target, 403, 0, "sensor-8"});
  check(client->Get("/healthz"), {"GET", "/healthz", 200, 0, ""});
  check(client->Get("/nope"), {"GET", "/nope", 404, 0, ""});
  check(client->Post(target, "{\"accessKey\":", "application/json"), {"POST", target, 400, 0, ""});
  check(client->Post(target, make_body("{\"a\":1}", K, "a b\"c"), "application/json"),
        {"POST", target, 200, 1, "a b\\\"c"});
  check(client->Get(target), {"GET", target, 405, 0, ""});
  check(client->Get("/metrics"), {"GET", "/metrics", 200, 0, ""});

  std::size_t total = server.wait_for_access_log_lines(baseline + expected.size());
  auto lines = split_lines(server.access_log_contents());
  REQUIRE(total == baseline + expected.size());
  REQUIRE(lines.size() == baseline + expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const auto& line = lines[baseline + i];
    const auto& e = expected[i];
    INFO("line: " << line);
    auto t = tokens(line);
    CHECK(has_token(t, e.method));
    CHECK(has_token(t, e.path));
    CHECK(has_token(t, std::to_string(e.status)));
    CHECK(has_token(t, "items=" + std::to_string(e.items)));
    if (!e.device.empty()) CHECK(line.find(e.device) != std::string::npos);
  }
}

TEST_CASE("metrics are exposed and move with traffic", "[integration][observability][metrics][server-only]") {
  ServerProcess server;
  auto client = server.client();
  auto get_metrics = [&] {
    auto res = client->Get("/metrics");
    REQUIRE(res);
    REQUIRE(res->status == 200);
    CHECK(res->get_header_value("Content-Type").rfind("text/plain", 0) == 0);
    return res->body;
  };
  // The readiness probe is counted just after its response went out: poll.
  std::string before = get_metrics();
  for (int attempt = 0; attempt < 100 && !metric_value(before, "writeapi_http_requests_total{code=\"200\"}");
       ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    before = get_metrics();
  }
  INFO("metrics before:\n" << before);
  CHECK(before.find(std::string("writeapi_build_info{version=\"") + writeapi::kVersion + "\"") != std::string::npos);
  CHECK(before.find("writeapi_request_duration_seconds_bucket") != std::string::npos);
  REQUIRE(metric_value(before, "writeapi_http_requests_total{code=\"200\"}"));  // the readiness probe
  REQUIRE(metric_value(before, "writeapi_items_stored_total"));
  CHECK(*metric_value(before, "writeapi_items_stored_total") == 0);
  CHECK_FALSE(metric_value(before, "writeapi_http_requests_total{code=\"400\"}"));

  const std::string target = write_path("homelab", "metrics");
  for (int i = 0; i < 3; ++i) {
    auto res = client->Post(target, make_body("[1,2]"), "application/json");
    REQUIRE(res);
    REQUIRE(res->status == 200);
  }
  auto bad = client->Post(target, "{\"accessKey\":", "application/json");
  REQUIRE(bad);
  REQUIRE(bad->status == 400);

  // Requests are counted just after their response is sent: poll briefly.
  std::string after;
  for (int attempt = 0; attempt < 100; ++attempt) {
    after = get_metrics();
    auto items = metric_value(after, "writeapi_items_stored_total");
    auto bad_requests = metric_value(after, "writeapi_http_requests_total{code=\"400\"}");
    if (items && *items == 6 && bad_requests && *bad_requests == 1) break;
    std::this_thread::sleep_for(10ms);
  }
  INFO("metrics after:\n" << after);
  CHECK(metric_value(after, "writeapi_items_stored_total") == 6.0);
  CHECK(metric_value(after, "writeapi_http_requests_total{code=\"400\"}") == 1.0);
  CHECK(*metric_value(after, "writeapi_http_requests_total{code=\"200\"}") >=
        *metric_value(before, "writeapi_http_requests_total{code=\"200\"}") + 4);  // 3 writes + 1 GET /metrics
  auto count_before = metric_value(before, "writeapi_request_duration_seconds_count");
  auto count_after = metric_value(after, "writeapi_request_duration_seconds_count");
  REQUIRE(count_before);
  REQUIRE(count_after);
  CHECK(*count_after >= *count_before + 5);
  CHECK(metric_value(after, "writeapi_request_duration_seconds_bucket{le=\"+Inf\"}") == count_after);
  CHECK(metric_value(after, "writeapi_bytes_stored_total") == 12.0);  // "1\n2\n" three times
  CHECK(metric_value(after, "writeapi_storage_appends_total") == 3.0);
}
