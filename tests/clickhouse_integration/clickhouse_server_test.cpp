// writeapi-server with --storage clickhouse: the HTTP tests of
// tests/integration that say what is stored (the document example, appends,
// batches, exact bytes, refusals storing nothing, concurrent clients), with
// objects read back from ClickHouse instead of files. Also flags and startup.
#include <httplib.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "clickhouse_support.h"
#include "server_process.h"
#include "writeapi/clickhouse.h"

using namespace writeapi::testing;
using namespace std::chrono_literals;

namespace {

void require_ok(const httplib::Result& res, std::size_t items) {
  REQUIRE(res);
  INFO("body: " << res->body);
  REQUIRE(res->status == 200);
  CHECK(check_ok_body(res->body, items) == "");
}

// A writeapi-server on ClickHouse, on a database of its own, and a reader.
struct ClickHouseServer {
  ScratchDatabase database{{clickhouse_url()}, "http"};
  ServerProcess server{clickhouse_server_args(clickhouse_url(), database.name())};
  std::unique_ptr<writeapi::Storage> reader = clickhouse_reader(clickhouse_url(), database.name());

  std::string object(std::string_view bucket, std::string_view key) {
    std::string contents;
    writeapi::Status s = reader->read_object(bucket, key, &contents);
    INFO(s.message());
    REQUIRE(s.ok());
    return contents;
  }
  std::vector<std::string> keys(std::string_view bucket) {
    std::vector<std::string> keys;
    REQUIRE(reader->list_keys(bucket, &keys).ok());
    return keys;
  }
  std::string row_count() {
    return clickhouse_query(clickhouse_url(), "SELECT count() FROM `" + database.name() + "`.lines");
  }
};

}  // namespace

TEST_CASE("clickhouse: --help lists the storage flags", "[clickhouse][lifecycle]") {
  auto result = run_server_to_exit({"--help"});
  REQUIRE(result.exited);
  CHECK(result.exit_code == 0);
  for (const char* flag : {"--storage", "--clickhouse-url", "--clickhouse-database", "--clickhouse-table",
                           "--clickhouse-user", "--clickhouse-flush-ms", "--clickhouse-flush-rows",
                           "--clickhouse-inserts", "--frontend-id", "WRITEAPI_CLICKHOUSE_PASSWORD"}) {
    INFO("flag " << flag);
    CHECK(result.out.find(flag) != std::string::npos);
  }
  auto bad = run_server_to_exit({"--storage", "tape"});
  CHECK(bad.exit_code == 2);
  CHECK(bad.err.find("--storage") != std::string::npos);
}

TEST_CASE("clickhouse: an unreachable ClickHouse stops startup with a message naming it", "[clickhouse][lifecycle]") {
  TempDir dir;
  write_keys_file(dir.path() + "/keys.json");
  // Port 1 on loopback: nothing listens there, connections are refused.
  const std::string url = "http://127.0.0.1:1";
  auto result = run_server_to_exit({"--port", "0", "--keys", dir.path() + "/keys.json", "--access-log", "off",
                                    "--storage", "clickhouse", "--clickhouse-url", url},
                                   15s);
  INFO("stderr: " << result.err);
  REQUIRE(result.exited);
  CHECK(result.exit_code == 1);
  CHECK(result.err.find(url) != std::string::npos);
  CHECK(result.err.find("listening") == std::string::npos);
}

TEST_CASE("clickhouse: document example stores one JSON line", "[clickhouse][write]") {
  WRITEAPI_REQUIRE_CLICKHOUSE_OR_SKIP();
  ClickHouseServer ch;
  auto client = ch.server.client();
  require_ok(client->Post("/write/v3/bucket/homelab/outdoors_temp1", kDocumentBody, "application/json"), 1);
  CHECK(ch.object("homelab", "outdoors_temp1") == kDocumentLine);
  CHECK(clickhouse_query(clickhouse_url(),
                         "SELECT bucket, key, device_id, line FROM `" + ch.database.name() + "`.lines FORMAT TSV") ==
        "homelab\toutdoors_temp1\toutdoors_u871a\t{\"timestamp\":1584156800,\"temperature\":4.7}\n");
  // A second request appends.
  std::string second = R"({"accessKey": "fbebeb8ae7f94930fd07dd8249287973e786d047e9820a254c4a3aecb36fc238",
      "deviceId": "outdoors_u871a", "data": {"timestamp": 1584156860, "temperature": 4.5}})";
  require_ok(client->Post("/write/v3/bucket/homelab/outdoors_temp1", second, "application/json"), 1);
  CHECK(ch.object("homelab", "outdoors_temp1") == kDocumentLine + "{\"timestamp\":1584156860,\"temperature\":4.5}\n");
}

TEST_CASE("clickhouse: batches, scalars and exact bytes", "[clickhouse][write]") {
  WRITEAPI_REQUIRE_CLICKHOUSE_OR_SKIP();
  ClickHouseServer ch;
  auto client = ch.server.client();
  require_ok(
      client->Post(write_path("homelab", "batch"),
                   make_body(R"([ {"a": 1}, {"b": [2, 3]} , {"c": "x y"} ])", kAccessKey, "dev1"), "application/json"),
      3);
  CHECK(ch.object("homelab", "batch") == "{\"a\":1}\n{\"b\":[2,3]}\n{\"c\":\"x y\"}\n");

  require_ok(client->Post(write_path("homelab", "scalars"), make_body("42"), "application/json"), 1);
  require_ok(client->Post(write_path("homelab", "scalars"), make_body("true"), "application/json"), 1);
  require_ok(client->Post(write_path("homelab", "scalars"), make_body("[[1, 2]]"), "application/json"), 1);
  CHECK(ch.object("homelab", "scalars") == "42\ntrue\n[1,2]\n");

  // Tabs, backslashes and quotes as escapes, non-ASCII UTF-8 raw: every byte
  // survives the trip through ClickHouse.
  std::string data = R"([1.50, 123456789012345678901234567890, "a\u00e9\n", "tab\there", "back\\slash \"q\"",
                         "h\u00e4 )"
                     "\xc3\xa4\xf0\x9f\x98\x80"
                     R"(", {"k" : [ -0 , 2E-3 ]}])";
  require_ok(client->Post(write_path("homelab", "exact"), make_body(data), "application/json"), 7);
  CHECK(ch.object("homelab", "exact") ==
        "1.50\n123456789012345678901234567890\n\"a\\u00e9\\n\"\n\"tab\\there\"\n\"back\\\\slash \\\"q\\\"\"\n"
        "\"h\\u00e4 \xc3\xa4\xf0\x9f\x98\x80\"\n{\"k\":[-0,2E-3]}\n");

  // gzip bodies too.
  std::string gz = gzip_compress(make_body("[7,8]"));
  httplib::Headers headers = {{"Content-Encoding", "gzip"}};
  require_ok(client->Post(write_path("homelab", "gz"), headers, gz, "application/json"), 2);
  CHECK(ch.object("homelab", "gz") == "7\n8\n");
}

TEST_CASE("clickhouse: objects are separate and listed per bucket", "[clickhouse][write]") {
  WRITEAPI_REQUIRE_CLICKHOUSE_OR_SKIP();
  ClickHouseServer ch;
  auto client = ch.server.client();
  require_ok(client->Post(write_path("homelab", "k2"), make_body("2"), "application/json"), 1);
  require_ok(client->Post(write_path("homelab", "k1"), make_body("1"), "application/json"), 1);
  require_ok(client->Post(write_path(kOtherBucket, "k1"), make_body("3", kOtherAccessKey), "application/json"), 1);
  require_ok(client->Post(write_path("homelab", "empty"), make_body("[]"), "application/json"), 0);
  CHECK(ch.object("homelab", "k1") == "1\n");
  CHECK(ch.object("homelab", "k2") == "2\n");
  CHECK(ch.object(kOtherBucket, "k1") == "3\n");
  CHECK(ch.object("homelab", "empty").empty());
  CHECK(ch.keys("homelab") == std::vector<std::string>{"k1", "k2"});
  CHECK(ch.keys(kOtherBucket) == std::vector<std::string>{"k1"});
}

TEST_CASE("clickhouse: refused requests store nothing", "[clickhouse][errors]") {
  WRITEAPI_REQUIRE_CLICKHOUSE_OR_SKIP();
  ClickHouseServer ch;
  auto client = ch.server.client();
  require_ok(client->Post(write_path("homelab", "kept"), make_body("0"), "application/json"), 1);
  struct Case {
    const char* what;
    std::string path, body;
    int status;
    const char* code;
  };
  const std::vector<Case> cases = {
      {"invalid JSON", write_path("homelab", "kept"), R"({"accessKey":"x","data":[1,2)", 400, "invalid_json"},
      {"null item", write_path("homelab", "kept"), make_body("[1, null, 3]"), 400, "null_data"},
      {"wrong key", write_path("homelab", "kept"), make_body("[1]", "wrong-key"), 403, "access_denied"},
      {"no key", write_path("homelab", "kept"), R"({"data":[1]})", 401, "missing_access_key"},
      {"bad name", write_path("homelab", ".hidden"), make_body("[1]"), 400, "invalid_name"},
      {"too deep", write_path("homelab", "kept"), make_body(std::string(1100, '[') + std::string(1100, ']')), 400,
       "too_deep"},
  };
  for (const Case& c : cases) {
    INFO(c.what);
    auto res = client->Post(c.path, c.body, "application/json");
    REQUIRE(res);
    CHECK(res->status == c.status);
    CHECK(check_error_body(res->body, c.code) == "");
  }
  CHECK(ch.object("homelab", "kept") == "0\n");
  CHECK(ch.row_count() == "1\n");
}

TEST_CASE("clickhouse: 8 clients x 100 batches to one object never interleave", "[clickhouse][concurrency]") {
  WRITEAPI_REQUIRE_CLICKHOUSE_OR_SKIP();
  ClickHouseServer ch;
  constexpr int kThreads = 8, kRequests = 100;
  std::atomic<int> failures{0};
  std::mutex mu;
  std::string first_failure;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto client = ch.server.client();
      for (int s = 0; s < kRequests; ++s) {
        std::string id = "\"t\":" + std::to_string(t) + ",\"s\":" + std::to_string(s);
        auto res = client->Post(write_path("homelab", "shared"),
                                make_body("[{" + id + ",\"i\":0},{" + id + ",\"i\":1}]"), "application/json");
        if (!res || res->status != 200) {
          if (failures++ == 0) {
            std::lock_guard<std::mutex> lock(mu);
            first_failure = res ? std::to_string(res->status) + " " + res->body : httplib::to_string(res.error());
          }
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  INFO("first failure: " << first_failure);
  REQUIRE(failures == 0);

  std::vector<std::string> lines = split_lines(ch.object("homelab", "shared"));
  REQUIRE(lines.size() == 2u * kThreads * kRequests);
  std::vector<int> next(kThreads, 0);
  int misplaced = 0;
  for (std::size_t i = 0; i < lines.size(); i += 2) {
    int t = -1, s = -1, i0 = -1, t2 = -1, s2 = -1, i1 = -1;
    REQUIRE(std::sscanf(lines[i].c_str(), "{\"t\":%d,\"s\":%d,\"i\":%d}", &t, &s, &i0) == 3);
    REQUIRE(std::sscanf(lines[i + 1].c_str(), "{\"t\":%d,\"s\":%d,\"i\":%d}", &t2, &s2, &i1) == 3);
    REQUIRE((t >= 0 && t < kThreads));
    // A request's two lines are adjacent; one client's requests in order.
    if (t != t2 || s != s2 || i0 != 0 || i1 != 1 || s != next[t]) misplaced++;
    next[t] = s + 1;
  }
  CHECK(misplaced == 0);
  for (int t = 0; t < kThreads; ++t) CHECK(next[t] == kRequests);

  // Batching: fewer INSERTs than requests (metrics count INSERTs as syncs).
  auto inserts = ch.server.metric("writeapi_storage_syncs_total");
  auto appends = ch.server.metric("writeapi_storage_appends_total");
  REQUIRE(inserts);
  REQUIRE(appends);
  CHECK(*appends == kThreads * kRequests);
  CHECK(*inserts < *appends);
}

TEST_CASE("clickhouse: request ids are stored with the rows and recognised after a restart", "[clickhouse][ids]") {
  WRITEAPI_REQUIRE_CLICKHOUSE_OR_SKIP();
  ScratchDatabase database{{clickhouse_url()}, "ids"};
  // A table made before request ids: the server adds their columns.
  writeapi::ClickHouseStorageOptions old;
  old.database = database.name();
  std::string sql = writeapi::clickhouse_table_sql(old);
  sql.replace(sql.find(",\n  request_id"), sql.find("\n) ENGINE") - sql.find(",\n  request_id"), "");
  clickhouse_query(clickhouse_url(), "CREATE DATABASE IF NOT EXISTS `" + database.name() + "`");
  clickhouse_query(clickhouse_url(), sql);
  clickhouse_query(clickhouse_url(), "INSERT INTO `" + database.name() +
                                         "`.lines (bucket, key, device_id, received, received_us, frontend, seq, "
                                         "line) VALUES ('homelab', 'old', '', now(), 1, 'x', 0, '0')");
  const std::string body =
      "{\"accessKey\":\"" + std::string(kAccessKey) + "\",\"requestId\":\"dev-3/77\",\"data\":[{\"t\":1},{\"t\":2}]}";
  const std::string target = write_path("homelab", "retried");
  {
    ServerProcess server(clickhouse_server_args(clickhouse_url(), database.name()));
    httplib::Client client("127.0.0.1", server.port());
    require_ok(client.Post(target, body, "application/json"), 2);
    auto retry = client.Post(target, body, "application/json");
    REQUIRE(retry);
    CHECK(retry->body == "{\"ok\":true,\"items\":2,\"duplicate\":true}\n");
  }
  CHECK(clickhouse_query(clickhouse_url(), "SELECT request_id, count() FROM `" + database.name() +
                                               "`.lines WHERE key = 'retried' GROUP BY request_id") == "dev-3/77\t2\n");
  ServerProcess server(clickhouse_server_args(clickhouse_url(), database.name()));
  httplib::Client client("127.0.0.1", server.port());
  auto retry = client.Post(target, body, "application/json");
  REQUIRE(retry);
  CHECK(retry->status == 200);
  CHECK(retry->body == "{\"ok\":true,\"items\":2,\"duplicate\":true}\n");
  auto conflict = client.Post(
      target, "{\"accessKey\":\"" + std::string(kAccessKey) + "\",\"requestId\":\"dev-3/77\",\"data\":[{\"t\":9}]}",
      "application/json");
  REQUIRE(conflict);
  CHECK(conflict->status == 409);
  auto reader = clickhouse_reader(clickhouse_url(), database.name());
  std::string contents;
  REQUIRE(reader->read_object("homelab", "retried", &contents).ok());
  CHECK(contents == "{\"t\":1}\n{\"t\":2}\n");
  REQUIRE(reader->read_object("homelab", "old", &contents).ok());
  CHECK(contents == "0\n");
}

TEST_CASE("clickhouse: a retry sent to another front-end is stored again and counted once after a restart",
          "[clickhouse][ids]") {
  // The documented limit (docs/DURABILITY.md): a front-end knows the ids it
  // stored and those the table held when it started.
  WRITEAPI_REQUIRE_CLICKHOUSE_OR_SKIP();
  ScratchDatabase database{{clickhouse_url()}, "ids2"};
  const std::string body = "{\"accessKey\":\"" + std::string(kAccessKey) +
                           "\",\"requestId\":\"dev-4/1\",\"data\":[{\"t\":1},{\"t\":2},{\"t\":3}]}";
  const std::string target = write_path("homelab", "two");
  auto a = std::make_unique<ServerProcess>(clickhouse_server_args(clickhouse_url(), database.name()));
  ServerProcess b(clickhouse_server_args(clickhouse_url(), database.name()));
  require_ok(httplib::Client("127.0.0.1", a->port()).Post(target, body, "application/json"), 3);
  require_ok(httplib::Client("127.0.0.1", b.port()).Post(target, body, "application/json"), 3);
  a.reset();
  a = std::make_unique<ServerProcess>(clickhouse_server_args(clickhouse_url(), database.name()));
  auto retry = httplib::Client("127.0.0.1", a->port()).Post(target, body, "application/json");
  REQUIRE(retry);
  CHECK(retry->body == "{\"ok\":true,\"items\":3,\"duplicate\":true}\n");  // the request's count, not the rows'
}
