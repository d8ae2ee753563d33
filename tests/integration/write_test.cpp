// Successful writes over HTTP against the real server: the Write API
// document's example, appends, batches, encodings, keep-alive.
#include <httplib.h>

#include <catch2/catch.hpp>
#include <string>

#include "checks.h"
#include "server_process.h"

using namespace writeapi::testing;

namespace {

void require_ok(const httplib::Result& res, std::size_t items) {
  REQUIRE(res);
  INFO("body: " << res->body);
  REQUIRE(res->status == 200);
  CHECK(check_ok_body(res->body, items) == "");
  CHECK(res->get_header_value("Content-Type").rfind("application/json", 0) == 0);
}

}  // namespace

TEST_CASE("document example stores one JSON line", "[integration][write]") {
  ServerProcess server;
  auto client = server.client();
  auto res = client->Post("/write/v3/bucket/homelab/outdoors_temp1", kDocumentBody, "application/json");
  require_ok(res, 1);
  CHECK(server.read_object("homelab", "outdoors_temp1") == kDocumentLine);
}

TEST_CASE("second write to the same object appends a line", "[integration][write]") {
  ServerProcess server;
  auto client = server.client();
  require_ok(client->Post("/write/v3/bucket/homelab/outdoors_temp1", kDocumentBody, "application/json"), 1);
  std::string second = R"({"accessKey": "fbebeb8ae7f94930fd07dd8249287973e786d047e9820a254c4a3aecb36fc238",
      "deviceId": "outdoors_u871a", "data": {"timestamp": 1584156860, "temperature": 4.5}})";
  require_ok(client->Post("/write/v3/bucket/homelab/outdoors_temp1", second, "application/json"), 1);
  CHECK(server.read_object("homelab", "outdoors_temp1") ==
        kDocumentLine + "{\"timestamp\":1584156860,\"temperature\":4.5}\n");
}

TEST_CASE("batch data array stores one line per item", "[integration][write]") {
  ServerProcess server;
  auto client = server.client();
  std::string body = make_body(R"([ {"a": 1}, {"b": [2, 3]} , {"c": "x y"} ])", kAccessKey, "dev1");
  require_ok(client->Post(write_path("homelab", "batch"), body, "application/json"), 3);
  CHECK(server.read_object("homelab", "batch") == "{\"a\":1}\n{\"b\":[2,3]}\n{\"c\":\"x y\"}\n");
}

TEST_CASE("empty data array stores nothing and creates no object", "[integration][write]") {
  ServerProcess server;
  auto client = server.client();
  auto before = snapshot_tree(server.data_dir());
  require_ok(client->Post(write_path("homelab", "empty"), make_body("[]"), "application/json"), 0);
  CHECK_FALSE(server.object_exists("homelab", "empty"));
  CHECK(tree_diff(before, snapshot_tree(server.data_dir())) == "");
}

TEST_CASE("scalar data values are single items", "[integration][write]") {
  ServerProcess server;
  auto client = server.client();
  require_ok(client->Post(write_path("homelab", "scalars"), make_body("42"), "application/json"), 1);
  require_ok(client->Post(write_path("homelab", "scalars"), make_body("true"), "application/json"), 1);
  require_ok(client->Post(write_path("homelab", "scalars"), make_body("\"text\""), "application/json"), 1);
  require_ok(client->Post(write_path("homelab", "scalars"), make_body("[[1, 2]]"), "application/json"), 1);
  CHECK(server.read_object("homelab", "scalars") == "42\ntrue\n\"text\"\n[1,2]\n");
}

TEST_CASE("items keep numbers and escapes exactly as sent", "[integration][write]") {
  ServerProcess server;
  auto client = server.client();
  std::string data = R"([1.50, 123456789012345678901234567890, 1e400, "a\u00e9\n", {"k" : [ -0 , 2E-3 ]}, "x y"])";
  require_ok(client->Post(write_path("homelab", "exact"), make_body(data), "application/json"), 6);
  CHECK(server.read_object("homelab", "exact") ==
        "1.50\n123456789012345678901234567890\n1e400\n\"a\\u00e9\\n\"\n{\"k\":[-0,2E-3]}\n\"x y\"\n");
}

TEST_CASE("deviceId is optional and other top-level fields are ignored", "[integration][write]") {
  ServerProcess server;
  auto client = server.client();
  std::string body = std::string(R"({"extra": {"nested": [1]}, "accessKey": ")") + std::string(kAccessKey) +
                     R"(", "data": {"v": 1}, "more": null})";
  require_ok(client->Post(write_path("homelab", "nodevice"), body, "application/json"), 1);
  CHECK(server.read_object("homelab", "nodevice") == "{\"v\":1}\n");
}

TEST_CASE("objects are separate per key and per bucket", "[integration][write]") {
  ServerProcess server;
  auto client = server.client();
  require_ok(client->Post(write_path("homelab", "k1"), make_body("1"), "application/json"), 1);
  require_ok(client->Post(write_path("homelab", "k2"), make_body("2"), "application/json"), 1);
  require_ok(client->Post(write_path(kOtherBucket, "k1"), make_body("3", kOtherAccessKey), "application/json"), 1);
  CHECK(server.read_object("homelab", "k1") == "1\n");
  CHECK(server.read_object("homelab", "k2") == "2\n");
  CHECK(server.read_object(kOtherBucket, "k1") == "3\n");
}

TEST_CASE("names at the limits of the naming rules are accepted", "[integration][write]") {
  ServerProcess server;
  auto client = server.client();
  std::string key128(128, 'k');
  require_ok(client->Post(write_path("homelab", key128), make_body("1"), "application/json"), 1);
  CHECK(server.read_object("homelab", key128) == "1\n");
  require_ok(client->Post(write_path("homelab", "A-z_0.9"), make_body("2"), "application/json"), 1);
  CHECK(server.read_object("homelab", "A-z_0.9") == "2\n");
}

TEST_CASE("path segments are percent-decoded and a query string is ignored", "[integration][write]") {
  ServerProcess server;
  // Raw bytes on the wire, so no client re-encodes the target.
  auto res = raw_exchange(server.port(), make_post("/write/v3/bucket/homelab/out%64oors?x=1&y=%2F", make_body("7")));
  INFO(res.raw);
  REQUIRE(res.status == 200);
  CHECK(check_ok_body(res.body, 1) == "");
  CHECK(server.read_object("homelab", "outdoors") == "7\n");
}

TEST_CASE("Content-Type with parameters and any case is accepted", "[integration][write]") {
  ServerProcess server;
  auto client = server.client();
  require_ok(client->Post(write_path("homelab", "ct"), make_body("1"), "application/json; charset=utf-8"), 1);
  require_ok(client->Post(write_path("homelab", "ct"), make_body("2"), "Application/JSON"), 1);
  CHECK(server.read_object("homelab", "ct") == "1\n2\n");
}

TEST_CASE("gzip request body is accepted", "[integration][write][encoding]") {
  ServerProcess server;
  auto client = server.client();
  std::string compressed = gzip_compress(kDocumentBody);
  REQUIRE(compressed.substr(0, 2) == "\x1f\x8b");
  auto res = client->Post("/write/v3/bucket/homelab/outdoors_temp1", {{"Content-Encoding", "gzip"}}, compressed,
                          "application/json");
  require_ok(res, 1);
  CHECK(server.read_object("homelab", "outdoors_temp1") == kDocumentLine);
}

TEST_CASE("deflate (zlib) request body is accepted", "[integration][write][encoding]") {
  ServerProcess server;
  auto client = server.client();
  std::string compressed = gzip_compress(kDocumentBody, 15);
  auto res = client->Post("/write/v3/bucket/homelab/outdoors_temp1", {{"Content-Encoding", "deflate"}}, compressed,
                          "application/json");
  require_ok(res, 1);
  CHECK(server.read_object("homelab", "outdoors_temp1") == kDocumentLine);
}

// Content codings are case-insensitive (RFC 9110 8.4.1); the server's own
// check compares without case.
TEST_CASE("Content-Encoding GZIP in upper case is accepted", "[integration][write][encoding]") {
  ServerProcess server;
  auto client = server.client();
  auto res = client->Post("/write/v3/bucket/homelab/outdoors_temp1", {{"Content-Encoding", "GZIP"}},
                          gzip_compress(kDocumentBody), "application/json");
  require_ok(res, 1);
  CHECK(server.read_object("homelab", "outdoors_temp1") == kDocumentLine);
}

// status.h: unsupported_encoding is for "Content-Encoding other than
// gzip/identity"; ingest.h lists identity as accepted.
TEST_CASE("Content-Encoding identity is accepted", "[integration][write][encoding]") {
  ServerProcess server;
  auto client = server.client();
  auto res = client->Post("/write/v3/bucket/homelab/outdoors_temp1", {{"Content-Encoding", "identity"}}, kDocumentBody,
                          "application/json");
  require_ok(res, 1);
  CHECK(server.read_object("homelab", "outdoors_temp1") == kDocumentLine);
}

TEST_CASE("chunked request body is accepted", "[integration][write][chunked]") {
  ServerProcess server;
  SECTION("through cpp-httplib's chunked content provider") {
    auto client = server.client();
    const std::string body = kDocumentBody;
    auto res = client->Post(
        "/write/v3/bucket/homelab/outdoors_temp1",
        [&](std::size_t offset, httplib::DataSink& sink) {
          // Ten-byte chunks.
          if (offset < body.size()) {
            sink.write(body.data() + offset, std::min<std::size_t>(10, body.size() - offset));
          } else {
            sink.done();
          }
          return true;
        },
        "application/json");
    require_ok(res, 1);
  }
  SECTION("raw bytes with chunk extensions and odd chunk sizes") {
    const std::string body = kDocumentBody;
    std::string chunked;
    std::size_t sizes[] = {1, 7, 64, 3};
    std::size_t offset = 0, i = 0;
    while (offset < body.size()) {
      std::size_t n = std::min(sizes[i++ % 4], body.size() - offset);
      char size_line[32];
      std::snprintf(size_line, sizeof size_line, "%zx\r\n", n);
      chunked += size_line;
      chunked += body.substr(offset, n) + "\r\n";
      offset += n;
    }
    chunked += "0\r\n\r\n";
    auto res =
        raw_exchange(server.port(), make_post("/write/v3/bucket/homelab/outdoors_temp1", chunked,
                                              {"Content-Type: application/json", "Transfer-Encoding: chunked"}, false));
    INFO(res.raw);
    REQUIRE(res.status == 200);
    CHECK(check_ok_body(res.body, 1) == "");
  }
  CHECK(server.read_object("homelab", "outdoors_temp1") == kDocumentLine);
}

TEST_CASE("chunked gzip request body is accepted", "[integration][write][chunked][encoding]") {
  ServerProcess server;
  std::string compressed = gzip_compress(make_body("[1,2,3,4]"));
  std::string chunked;
  for (std::size_t offset = 0; offset < compressed.size(); offset += 16) {
    std::size_t n = std::min<std::size_t>(16, compressed.size() - offset);
    char size_line[32];
    std::snprintf(size_line, sizeof size_line, "%zx\r\n", n);
    chunked += size_line + compressed.substr(offset, n) + "\r\n";
  }
  chunked += "0\r\n\r\n";
  auto res = raw_exchange(
      server.port(),
      make_post(write_path("homelab", "cgz"), chunked,
                {"Content-Type: application/json", "Transfer-Encoding: chunked", "Content-Encoding: gzip"}, false));
  INFO(res.raw);
  REQUIRE(res.status == 200);
  CHECK(check_ok_body(res.body, 4) == "");
  CHECK(server.read_object("homelab", "cgz") == "1\n2\n3\n4\n");
}

TEST_CASE("100 sequential requests on one keep-alive client", "[integration][keepalive]") {
  ServerProcess server;
  auto client = server.client();
  for (int i = 0; i < 100; ++i) {
    auto res =
        client->Post(write_path("homelab", "seq"), make_body("{\"n\":" + std::to_string(i) + "}"), "application/json");
    INFO("request " << i);
    REQUIRE(res);
    REQUIRE(res->status == 200);
    REQUIRE(check_ok_body(res->body, 1) == "");
  }
  auto lines = split_lines(server.read_object("homelab", "seq"));
  REQUIRE(lines.size() == 100);
  for (int i = 0; i < 100; ++i) CHECK(lines[static_cast<std::size_t>(i)] == "{\"n\":" + std::to_string(i) + "}");
}

TEST_CASE("100 sequential requests on one raw TCP connection", "[integration][keepalive]") {
  ServerProcess server;
  RawConnection connection(server.port());
  REQUIRE(connection.connected());
  for (int i = 0; i < 100; ++i) {
    INFO("request " << i);
    REQUIRE(connection.send(make_post(write_path("homelab", "rawseq"), make_body(std::to_string(i)))));
    auto res = connection.read_response();
    INFO(res.raw);
    REQUIRE(res.status == 200);
    REQUIRE(check_ok_body(res.body, 1) == "");
    REQUIRE(res.header("connection") != "close");
  }
  auto lines = split_lines(server.read_object("homelab", "rawseq"));
  REQUIRE(lines.size() == 100);
  CHECK(lines.front() == "0");
  CHECK(lines.back() == "99");
}

TEST_CASE("a retried requestId is answered duplicate with its original count and stored once",
          "[integration][write][dedup]") {
  ServerProcess server;
  const std::string target = write_path("homelab", "retried");
  const std::string body = "{\"accessKey\":\"" + std::string(kAccessKey) +
                           "\",\"requestId\":\"dev-1/000042\",\"data\":[{\"t\":1},{\"t\":2}]}";
  RawConnection connection(server.port());
  REQUIRE(connection.send(make_post(target, body)));
  RawResponse first = connection.read_response();
  CHECK(first.status == 200);
  CHECK(check_ok_body(first.body, 2) == "");
  for (int retry = 0; retry < 3; ++retry) {
    REQUIRE(connection.send(make_post(target, body)));
    RawResponse again = connection.read_response();
    CHECK(again.status == 200);
    CHECK(again.body == "{\"ok\":true,\"items\":2,\"duplicate\":true}\n");
  }
  CHECK(server.read_object("homelab", "retried") == "{\"t\":1}\n{\"t\":2}\n");

  // The header carries the same id; both present and different is a 400.
  const std::string plain = make_body("[{\"t\":1},{\"t\":2}]");
  RawResponse header_retry = raw_exchange(
      server.port(), make_post(target, plain, {"Content-Type: application/json", "Idempotency-Key: dev-1/000042"}));
  CHECK(header_retry.status == 200);
  CHECK(header_retry.body == "{\"ok\":true,\"items\":2,\"duplicate\":true}\n");
  expect_refused(server, "ids that disagree",
                 make_post(target, body, {"Content-Type: application/json", "Idempotency-Key: other"}), 400,
                 "invalid_request_id");
  expect_refused(
      server, "two Idempotency-Key fields",
      make_post(target, plain, {"Content-Type: application/json", "Idempotency-Key: h1", "Idempotency-Key: h2"}), 400,
      "invalid_request_id");
  expect_refused(
      server, "an id too long",
      make_post(target, plain, {"Content-Type: application/json", "Idempotency-Key: " + std::string(129, 'x')}), 400,
      "invalid_request_id");
  for (const char* empty : {"Idempotency-Key:", "Idempotency-Key:   "})  // sent but empty: not an absent header
    expect_refused(server, empty, make_post(target, plain, {"Content-Type: application/json", empty}), 400,
                   "invalid_request_id");
  // The same id for other data is a conflict, and stores nothing.
  expect_refused(server, "the same id for other data",
                 make_post(target, "{\"accessKey\":\"" + std::string(kAccessKey) +
                                       "\",\"requestId\":\"dev-1/000042\",\"data\":[{\"t\":3}]}"),
                 409, "request_id_conflict");
  CHECK(server.read_object("homelab", "retried") == "{\"t\":1}\n{\"t\":2}\n");
  if (!testing_asio_front_end()) {  // /metrics is writeapi-server's
    CHECK(server.metric("writeapi_request_ids_duplicates_total") == 4.0);
    CHECK(server.metric("writeapi_request_ids_conflicts_total") == 1.0);
    CHECK(server.metric("writeapi_request_ids_remembered") == 1.0);
    // Counters count what was stored: the duplicates stored nothing.
    CHECK(server.metric("writeapi_items_stored_total") == 2.0);
  }
}

TEST_CASE("a request id on a request of no items is checked but not remembered", "[integration][write][dedup]") {
  ServerProcess server;
  const std::string target = write_path("homelab", "empty_then_full");
  auto with_id = [](std::string_view data) {
    return "{\"accessKey\":\"" + std::string(kAccessKey) + "\",\"requestId\":\"z1\",\"data\":" + std::string(data) +
           "}";
  };
  RawResponse empty = raw_exchange(server.port(), make_post(target, with_id("[]")));
  CHECK(empty.status == 200);
  CHECK(check_ok_body(empty.body, 0) == "");
  // Nothing was stored under z1, so it is free for a request that stores
  // (as it would be after a restart): no 409, stored once, then duplicate.
  RawResponse full = raw_exchange(server.port(), make_post(target, with_id("[{\"a\":1}]")));
  CHECK(full.status == 200);
  CHECK(check_ok_body(full.body, 1) == "");
  RawResponse again = raw_exchange(server.port(), make_post(target, with_id("[{\"a\":1}]")));
  CHECK(again.body == "{\"ok\":true,\"items\":1,\"duplicate\":true}\n");
  CHECK(server.read_object("homelab", "empty_then_full") == "{\"a\":1}\n");
  // A malformed id is refused even with no items.
  expect_refused(
      server, "an empty id with no items",
      make_post(target, "{\"accessKey\":\"" + std::string(kAccessKey) + "\",\"requestId\":\"\",\"data\":[]}"), 400,
      "invalid_request_id");
}

TEST_CASE("request ids survive a restart of the server in every fsync mode", "[integration][write][dedup]") {
  TempDir root;
  const std::string data = root.path() + "/data";
  for (const char* fsync : {"always", "interval", "never"}) {
    INFO("--fsync " << fsync);
    const std::string key = std::string("restart_") + fsync;
    const std::string target = write_path("homelab", key);
    // One id per mode: the same id for another key would be a conflict.
    const std::string id = std::string("dev-9/") + fsync;
    const std::string body = "{\"accessKey\":\"" + std::string(kAccessKey) + "\",\"requestId\":\"" + id +
                             "\",\"data\":[{\"t\":1},{\"t\":2},{\"t\":3}]}";
    const std::vector<std::string> args = {"--data-dir", data, "--fsync", fsync};
    {
      ServerProcess server(args);
      RawResponse first = raw_exchange(server.port(), make_post(target, body));
      CHECK(first.status == 200);
      CHECK(check_ok_body(first.body, 3) == "");
    }  // SIGTERM, exit 0
    ServerProcess server(args);
    RawResponse again = raw_exchange(server.port(), make_post(target, body));
    CHECK(again.status == 200);
    CHECK(again.body == "{\"ok\":true,\"items\":3,\"duplicate\":true}\n");
    expect_refused(server, "the same id for other data after a restart",
                   make_post(target, "{\"accessKey\":\"" + std::string(kAccessKey) + "\",\"requestId\":\"" + id +
                                         "\",\"data\":[{\"t\":4}]}"),
                   409, "request_id_conflict");
    CHECK(read_file(data + "/homelab/" + key + ".jsonl") == "{\"t\":1}\n{\"t\":2}\n{\"t\":3}\n");
  }
}

TEST_CASE("the dedup cap (--dedup-max) bounds the ids per bucket with the oldest forgotten first across a restart too",
          "[integration][write][dedup][server-only]") {
  TempDir root;
  const std::string data = root.path() + "/data";
  const std::vector<std::string> args = {"--data-dir", data, "--dedup-max", "2"};
  const std::string target = write_path("homelab", "capped");
  auto body = [](int n) {
    return "{\"accessKey\":\"" + std::string(kAccessKey) + "\",\"requestId\":\"id-" + std::to_string(n) +
           "\",\"data\":" + std::to_string(n) + "}";
  };
  auto post = [&](ServerProcess& server, int n) { return raw_exchange(server.port(), make_post(target, body(n))); };
  {
    ServerProcess server(args);
    for (int n = 1; n <= 3; ++n) REQUIRE(post(server, n).status == 200);
    CHECK(post(server, 3).body.find("\"duplicate\":true") != std::string::npos);
    CHECK(post(server, 2).body.find("\"duplicate\":true") != std::string::npos);
    CHECK(server.metric("writeapi_request_ids_evictions_total") == 1.0);
  }
  ServerProcess server(args);
  CHECK(server.metric("writeapi_request_ids_remembered") == 2.0);
  CHECK(post(server, 2).body.find("\"duplicate\":true") != std::string::npos);
  CHECK(post(server, 3).body.find("\"duplicate\":true") != std::string::npos);
  // id-1 was evicted: its retry stores again.
  RawResponse first_again = post(server, 1);
  CHECK(first_again.status == 200);
  CHECK(first_again.body.find("duplicate") == std::string::npos);
  CHECK(read_file(data + "/homelab/capped.jsonl") == "1\n2\n3\n1\n");
}
