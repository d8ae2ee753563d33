// Every request-level error code over HTTP: status, JSON shape
// {"ok":false,"error":"<code>","message":"..."} and nothing stored.
#include <httplib.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "checks.h"
#include "server_process.h"

using namespace writeapi::testing;

namespace {

const std::string K(kAccessKey);

struct BodyCase {
  const char* what;
  std::string body;
};

// Posts each body (Content-Type: application/json, Content-Length) to the
// prefilled object homelab/target and expects status/code, object unchanged.
void expect_body_refused(const std::vector<BodyCase>& cases, int status, std::string_view code) {
  ServerProcess server;
  prefill(server, "target");
  for (const auto& c : cases)
    expect_refused(server, c.what, make_post(write_path("homelab", "target"), c.body), status, code);
  CHECK(server.read_object("homelab", "target") == "0\n");
}

std::string nested_arrays(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

}  // namespace

TEST_CASE("invalid_json is 400", "[integration][errors]") {
  expect_body_refused(
      {
          {"truncated", "{\"accessKey\":\"" + K + "\",\"data\":"},
          {"trailing garbage", "{\"accessKey\":\"" + K + "\",\"data\":1} x"},
          {"two values", "{\"accessKey\":\"" + K + "\",\"data\":1}{}"},
          {"single quotes", "{'accessKey':'" + K + "','data':1}"},
          {"bad escape", "{\"accessKey\":\"" + K + "\",\"data\":\"\\q\"}"},
          {"leading zero", "{\"accessKey\":\"" + K + "\",\"data\":01}"},
          {"trailing comma", "{\"accessKey\":\"" + K + "\",\"data\":[1,]}"},
          {"bad literal", "{\"accessKey\":\"" + K + "\",\"data\":tru}"},
          {"raw control character in string", "{\"accessKey\":\"" + K + "\",\"data\":\"a\tb\"}"},
          {"lone surrogate escape", "{\"accessKey\":\"" + K + "\",\"data\":\"\\ud800\"}"},
          {"empty body", ""},
          {"whitespace body", "  \n "},
          // Syntax errors win over every other problem.
          {"syntax error and no accessKey", "{\"data\": [1,}"},
          {"syntax error in an array top level", "[1,"},
      },
      400, "invalid_json");
}

TEST_CASE("invalid_utf8 is 400", "[integration][errors]") {
  expect_body_refused(
      {
          {"0xff byte", "{\"accessKey\":\"" + K + "\",\"data\":\"\xff\"}"},
          {"overlong encoding", "{\"accessKey\":\"" + K + "\",\"data\":\"\xc0\xaf\"}"},
          {"encoded surrogate", "{\"accessKey\":\"" + K + "\",\"data\":\"\xed\xa0\x80\"}"},
          {"truncated sequence", "{\"accessKey\":\"" + K + "\",\"data\":\"\xe2\x82\"}"},
          {"in an ignored field name", "{\"\xfe\":1,\"accessKey\":\"" + K + "\",\"data\":1}"},
      },
      400, "invalid_utf8");
}

TEST_CASE("not_an_object is 400", "[integration][errors]") {
  expect_body_refused(
      {
          {"array", "[1,2]"},
          {"string", "\"text\""},
          {"number", "42"},
          {"null", "null"},
          {"wrapped request", "[{\"accessKey\":\"" + K + "\",\"data\":1}]"},
      },
      400, "not_an_object");
}

TEST_CASE("missing_field is 400", "[integration][errors]") {
  expect_body_refused(
      {
          {"no data", "{\"accessKey\":\"" + K + "\"}"},
          {"no data with deviceId", "{\"accessKey\":\"" + K + "\",\"deviceId\":\"d\"}"},
          {"Data is case-sensitive", "{\"accessKey\":\"" + K + "\",\"Data\":1}"},
      },
      400, "missing_field");
}

TEST_CASE("invalid_field is 400", "[integration][errors]") {
  expect_body_refused(
      {
          {"accessKey a number", "{\"accessKey\":123,\"data\":1}"},
          {"accessKey an array", "{\"accessKey\":[\"" + K + "\"],\"data\":1}"},
          {"deviceId a number", "{\"accessKey\":\"" + K + "\",\"deviceId\":5,\"data\":1}"},
          {"deviceId null", "{\"accessKey\":\"" + K + "\",\"deviceId\":null,\"data\":1}"},
          {"deviceId an object", "{\"accessKey\":\"" + K + "\",\"deviceId\":{},\"data\":1}"},
      },
      400, "invalid_field");
}

TEST_CASE("null_data is 400", "[integration][errors]") {
  expect_body_refused(
      {
          {"data null", "{\"accessKey\":\"" + K + "\",\"data\":null}"},
          {"null item in a batch", "{\"accessKey\":\"" + K + "\",\"data\":[1,null,2]}"},
          {"only a null item", "{\"accessKey\":\"" + K + "\",\"data\":[null]}"},
      },
      400, "null_data");
}

TEST_CASE("duplicate_field is 400", "[integration][errors]") {
  expect_body_refused(
      {
          {"data twice", "{\"accessKey\":\"" + K + "\",\"data\":1,\"data\":2}"},
          {"accessKey twice", "{\"accessKey\":\"" + K + "\",\"accessKey\":\"" + K + "\",\"data\":1}"},
          {"deviceId twice", "{\"accessKey\":\"" + K + "\",\"deviceId\":\"a\",\"deviceId\":\"b\",\"data\":1}"},
          {"other field twice", "{\"x\":1,\"accessKey\":\"" + K + "\",\"data\":1,\"x\":2}"},
          {"data twice, once escaped", "{\"accessKey\":\"" + K + "\",\"data\":1,\"d\\u0061ta\":2}"},
      },
      400, "duplicate_field");
}

TEST_CASE("invalid_device_id is 400", "[integration][errors]") {
  expect_body_refused(
      {
          {"empty", "{\"accessKey\":\"" + K + "\",\"deviceId\":\"\",\"data\":1}"},
          {"257 bytes", "{\"accessKey\":\"" + K + "\",\"deviceId\":\"" + std::string(257, 'a') + "\",\"data\":1}"},
          {"258 bytes of two-byte characters", "{\"accessKey\":\"" + K + "\",\"deviceId\":\"" +
                                                   [] {
                                                     std::string s;
                                                     for (int i = 0; i < 129; ++i) s += "\xc3\xa9";
                                                     return s;
                                                   }() +
                                                   "\",\"data\":1}"},
          {"escaped control character", "{\"accessKey\":\"" + K + "\",\"deviceId\":\"a\\u0001b\",\"data\":1}"},
          {"escaped newline", "{\"accessKey\":\"" + K + "\",\"deviceId\":\"a\\nb\",\"data\":1}"},
      },
      400, "invalid_device_id");
}

TEST_CASE("deviceId of exactly 256 bytes is accepted", "[integration][errors]") {
  ServerProcess server;
  std::string device(256, 'd');
  auto res = raw_exchange(server.port(), make_post(write_path("homelab", "dev"), make_body("1", kAccessKey, device)));
  INFO(res.raw);
  CHECK(res.status == 200);
  CHECK(server.read_object("homelab", "dev") == "1\n");
}

TEST_CASE("too_deep is 400 and the server survives it", "[integration][errors]") {
  expect_body_refused(
      {
          {"5000 nested arrays", "{\"accessKey\":\"" + K + "\",\"data\":" + nested_arrays(5000) + "}"},
          {"depth 1025", "{\"accessKey\":\"" + K + "\",\"data\":" + nested_arrays(1024) + "}"},
          {"2000 nested objects", "{\"accessKey\":\"" + K + "\",\"data\":" +
                                      [] {
                                        std::string s;
                                        for (int i = 0; i < 2000; ++i) s += "{\"a\":";
                                        s += "1";
                                        s += std::string(2000, '}');
                                        return s;
                                      }() +
                                      "}"},
      },
      400, "too_deep");
}

TEST_CASE("nesting depth of exactly 1024 is accepted", "[integration][errors]") {
  ServerProcess server;
  // The top-level object is depth 1, so 1023 arrays reach 1024.
  auto res = raw_exchange(server.port(), make_post(write_path("homelab", "deep"), make_body(nested_arrays(1023))));
  INFO(res.raw);
  CHECK(res.status == 200);
  CHECK(server.read_object("homelab", "deep") == nested_arrays(1022) + "\n");
}

TEST_CASE("missing_access_key is 401", "[integration][errors][auth]") {
  expect_body_refused(
      {
          {"no accessKey", "{\"data\":1}"},
          {"no accessKey with deviceId", "{\"deviceId\":\"d\",\"data\":1}"},
          {"empty accessKey", "{\"accessKey\":\"\",\"data\":1}"},
      },
      401, "missing_access_key");
}

TEST_CASE("access_denied is 403", "[integration][errors][auth]") {
  std::string upper = K;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  expect_body_refused(
      {
          {"wrong key", make_body("1", "not-the-key")},
          {"key in upper case", make_body("1", upper)},
          {"key with a trailing space", make_body("1", K + " ")},
          {"key truncated", make_body("1", K.substr(0, 63))},
          {"another bucket's key", make_body("1", kOtherAccessKey)},
      },
      403, "access_denied");
}

TEST_CASE("unknown bucket and wrong key get the identical answer", "[integration][errors][auth]") {
  ServerProcess server;
  prefill(server, "target");
  auto wrong_key =
      expect_refused(server, "wrong key", make_post(write_path("homelab", "target"), make_body("1", "wrong-key")), 403,
                     "access_denied");
  auto unknown_bucket =
      expect_refused(server, "unknown bucket with a valid key",
                     make_post(write_path("nosuchbucket", "target"), make_body("1")), 403, "access_denied");
  auto unknown_bucket_wrong_key = expect_refused(
      server, "unknown bucket with a wrong key",
      make_post(write_path("nosuchbucket", "target"), make_body("1", "wrong-key")), 403, "access_denied");
  CHECK(wrong_key.body == unknown_bucket.body);
  CHECK(wrong_key.body == unknown_bucket_wrong_key.body);
  CHECK_FALSE(file_exists(server.data_dir() + "/nosuchbucket"));
  CHECK(server.read_object("homelab", "target") == "0\n");
}

TEST_CASE("invalid_name is 400 for bad bucket and key names", "[integration][errors][names]") {
  ServerProcess server;
  prefill(server, "target");
  const std::string body = make_body("1");
  const std::string long_name(129, 'b');
  struct NameCase {
    const char* what;
    std::string target;
  };
  std::vector<NameCase> cases = {
      {"bucket .hidden", "/write/v3/bucket/.hidden/target"},
      {"bucket a%2Fb", "/write/v3/bucket/a%2Fb/target"},
      {"bucket of 129 characters", "/write/v3/bucket/" + long_name + "/target"},
      {"bucket %2E%2E", "/write/v3/bucket/%2E%2E/target"},
      {"bucket %2e", "/write/v3/bucket/%2e/target"},
      {"bucket homelab%2F..", "/write/v3/bucket/homelab%2F../target"},
      {"key .hidden", "/write/v3/bucket/homelab/.hidden"},
      {"key a%2Fb", "/write/v3/bucket/homelab/a%2Fb"},
      {"key of 129 characters", "/write/v3/bucket/homelab/" + long_name},
      {"key %2E%2E", "/write/v3/bucket/homelab/%2E%2E"},
      {"key %2E%2E%2Ftarget", "/write/v3/bucket/homelab/%2E%2E%2Ftarget"},
      {"key with encoded space", "/write/v3/bucket/homelab/a%20b"},
      {"key with encoded NUL", "/write/v3/bucket/homelab/target%00x"},
      {"key with non-ASCII", "/write/v3/bucket/homelab/caf%C3%A9"},
      {"key with malformed escape", "/write/v3/bucket/homelab/a%2"},
      {"key with non-hex escape", "/write/v3/bucket/homelab/a%ZZb"},
      {"key with encoded backslash", "/write/v3/bucket/homelab/a%5Cb"},
  };
  for (const auto& c : cases) expect_refused(server, c.what, make_post(c.target, body), 400, "invalid_name");
  CHECK(server.read_object("homelab", "target") == "0\n");
}

TEST_CASE("not_found is 404 for paths outside the write API", "[integration][errors][routing]") {
  ServerProcess server;
  prefill(server, "target");
  const std::string body = make_body("1");
  expect_refused(server, "GET /nope", "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not_found");
  // GET / is writeapi-server's web console (console_test.cpp); around it, nothing.
  expect_refused(server, "GET /index.html", "GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not_found");
  expect_refused(server, "GET /console/", "GET /console/ HTTP/1.1\r\nHost: x\r\n\r\n", 404, "not_found");
  expect_refused(server, "POST /nope", make_post("/nope", body), 404, "not_found");
  expect_refused(server, "POST one segment", make_post("/write/v3/bucket/onlyone", body), 404, "not_found");
  expect_refused(server, "POST three segments", make_post("/write/v3/bucket/a/b/c", body), 404, "not_found");
  expect_refused(server, "POST bucket key and trailing slash", make_post("/write/v3/bucket/homelab/target/", body), 404,
                 "not_found");
  expect_refused(server, "POST without /bucket/", make_post("/write/v3/homelab/target", body), 404, "not_found");
  expect_refused(server, "POST old API version", make_post("/write/v2/bucket/homelab/target", body), 404, "not_found");
  CHECK(server.read_object("homelab", "target") == "0\n");

  // And through cpp-httplib, as a typical client sees it.
  auto client = server.client();
  auto res = client->Get("/nope");
  REQUIRE(res);
  CHECK(res->status == 404);
  CHECK(check_error_body(res->body, "not_found") == "");
}

TEST_CASE("other methods on the write path are 405 with Allow POST", "[integration][errors][routing]") {
  ServerProcess server;
  prefill(server, "target");
  auto before = snapshot_tree(server.data_dir());
  auto client = server.client();
  const std::string path = write_path("homelab", "target");
  const std::string body = make_body("1");
  std::vector<std::pair<const char*, httplib::Result>> results;
  results.emplace_back("GET", client->Get(path));
  results.emplace_back("PUT", client->Put(path, body, "application/json"));
  results.emplace_back("DELETE", client->Delete(path));
  results.emplace_back("PATCH", client->Patch(path, body, "application/json"));
  results.emplace_back("OPTIONS", client->Options(path));
  for (auto& [method, res] : results) {
    INFO("method " << method);
    REQUIRE(res);
    INFO("body " << res->body);
    CHECK(res->status == 405);
    CHECK(res->get_header_value("Allow") == "POST");
    CHECK(check_error_body(res->body, "method_not_allowed") == "");
  }
  // Exact bytes too: a PUT carrying a valid body stores nothing.
  auto raw =
      expect_refused(server, "raw PUT with a valid body",
                     "PUT " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                         std::to_string(body.size()) + "\r\n\r\n" + body,
                     405, "method_not_allowed");
  CHECK(raw.header("allow") == "POST");
  CHECK(tree_diff(before, snapshot_tree(server.data_dir())) == "");
  CHECK(server.read_object("homelab", "target") == "0\n");
}
