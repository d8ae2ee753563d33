// HTTP framing and content negotiation: Content-Length / chunked / size
// limits / gzip bombs / Content-Type / Content-Encoding, and what happens to
// the connection after a refusal. Exact bytes go over raw sockets.
#include <httplib.h>

#include <catch2/catch.hpp>
#include <string>
#include <thread>
#include <vector>

#include "checks.h"
#include "server_process.h"

using namespace writeapi::testing;
using namespace std::chrono_literals;

namespace {

const std::string K(kAccessKey);

// A valid body of exactly `size` bytes (padded with spaces inside the object).
std::string body_of_size(std::size_t size) {
  std::string body = make_body("{\"v\":1}");
  REQUIRE(body.size() <= size);
  body.insert(body.size() - 1, size - body.size(), ' ');
  REQUIRE(body.size() == size);
  return body;
}

std::string chunked(std::string_view body, std::size_t chunk_size) {
  std::string out;
  for (std::size_t offset = 0; offset < body.size(); offset += chunk_size) {
    std::size_t n = std::min(chunk_size, body.size() - offset);
    char size_line[32];
    std::snprintf(size_line, sizeof size_line, "%zx\r\n", n);
    out += size_line;
    out.append(body.substr(offset, n));
    out += "\r\n";
  }
  return out + "0\r\n\r\n";
}

std::string headers_only(std::string_view method, std::string_view target, const std::vector<std::string>& headers) {
  std::string request = std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (const auto& h : headers) request += h + "\r\n";
  return request + "\r\n";
}

}  // namespace

TEST_CASE("POST without Content-Length or chunked is 411", "[integration][framing]") {
  ServerProcess server;
  prefill(server, "target");
  const std::string body = make_body("1");
  expect_refused(server, "no length, body follows",
                 make_post(write_path("homelab", "target"), body, {"Content-Type: application/json"}, false), 411,
                 "length_required");
  expect_refused(server, "no length, no body",
                 headers_only("POST", write_path("homelab", "target"), {"Content-Type: application/json"}), 411,
                 "length_required");
  CHECK(server.read_object("homelab", "target") == "0\n");
}

TEST_CASE("Content-Length over --max-body is 413", "[integration][framing][limits]") {
  ServerProcess server({"--max-body", "1000"});
  prefill(server, "target");
  const std::string target = write_path("homelab", "target");
  expect_refused(server, "1001 bytes", make_post(target, body_of_size(1001)), 413, "payload_too_large");
  expect_refused(server, "10 MB announced, nothing sent",
                 headers_only("POST", target, {"Content-Type: application/json", "Content-Length: 10000000"}), 413,
                 "payload_too_large");
  expect_refused(server, "huge Content-Length",
                 headers_only("POST", target, {"Content-Type: application/json", "Content-Length: 999999999999999"}),
                 413, "payload_too_large");
  CHECK(server.read_object("homelab", "target") == "0\n");

  // The limit itself is allowed.
  auto res = raw_exchange(server.port(), make_post(target, body_of_size(1000)));
  INFO(res.raw);
  CHECK(res.status == 200);
  CHECK(server.read_object("homelab", "target") == "0\n{\"v\":1}\n");
}

TEST_CASE("chunked body over --max-body is 413", "[integration][framing][limits][chunked]") {
  ServerProcess server({"--max-body", "1000"});
  prefill(server, "target");
  const std::string target = write_path("homelab", "target");
  const std::vector<std::string> headers = {"Content-Type: application/json", "Transfer-Encoding: chunked"};
  expect_refused(server, "1001 bytes in chunks of 100",
                 make_post(target, chunked(body_of_size(1001), 100), headers, false), 413, "payload_too_large");
  expect_refused(server, "5000 bytes in one chunk",
                 make_post(target, chunked(body_of_size(5000), 5000), headers, false), 413, "payload_too_large");
  CHECK(server.read_object("homelab", "target") == "0\n");

  auto res = raw_exchange(server.port(), make_post(target, chunked(body_of_size(1000), 300), headers, false));
  INFO(res.raw);
  CHECK(res.status == 200);
  CHECK(server.read_object("homelab", "target") == "0\n{\"v\":1}\n");
}

TEST_CASE("gzip body over --max-body once inflated is 413", "[integration][framing][limits][encoding]") {
  ServerProcess server({"--max-body", "1000"});
  prefill(server, "target");
  std::string compressed = gzip_compress(body_of_size(1500));
  REQUIRE(compressed.size() < 1000);
  expect_refused(server, "1500 bytes gzipped to under 1000",
                 make_post(write_path("homelab", "target"), compressed,
                           {"Content-Type: application/json", "Content-Encoding: gzip"}),
                 413, "payload_too_large");
  CHECK(server.read_object("homelab", "target") == "0\n");
}

TEST_CASE("gzip bomb is 413 and the server stays up", "[integration][framing][limits][encoding]") {
  ServerProcess server;  // default 10 MiB limit
  prefill(server, "target");
  const std::string target = write_path("homelab", "target");
  std::string bomb = gzip_of_zeros(50u * 1000 * 1000);
  REQUIRE(bomb.size() < 200 * 1000);
  auto client = server.client();
  auto res = client->Post(target, {{"Content-Encoding", "gzip"}}, bomb, "application/json");
  REQUIRE(res);
  INFO(res->body);
  CHECK(res->status == 413);
  CHECK(check_error_body(res->body, "payload_too_large") == "");

  // A bomb that is valid JSON (one 11 MB string) is refused for its size too.
  std::string big = "{\"accessKey\":\"" + K + "\",\"data\":\"" + std::string(11u << 20, 'a') + "\"}";
  expect_refused(server, "11 MiB JSON gzipped",
                 make_post(target, gzip_compress(big), {"Content-Type: application/json", "Content-Encoding: gzip"}),
                 413, "payload_too_large");
  CHECK(server.read_object("homelab", "target") == "0\n");
  auto health = server.client()->Get("/healthz");
  REQUIRE(health);
  CHECK(health->status == 200);
}

TEST_CASE("missing or wrong Content-Type is 415", "[integration][framing][content-type]") {
  ServerProcess server;
  prefill(server, "target");
  const std::string target = write_path("homelab", "target");
  const std::string body = make_body("1");
  auto missing = expect_refused(server, "no Content-Type", make_post(target, body, {}), 415, "unsupported_media_type");
  CHECK_THAT(error_message(missing.body), Catch::Contains("Content-Type"));
  auto plain = expect_refused(server, "text/plain", make_post(target, body, {"Content-Type: text/plain"}), 415,
                              "unsupported_media_type");
  CHECK_THAT(error_message(plain.body), Catch::Contains("Content-Type"));
  expect_refused(server, "form-urlencoded (curl's default for --data)",
                 make_post(target, body, {"Content-Type: application/x-www-form-urlencoded"}), 415,
                 "unsupported_media_type");
  expect_refused(server, "application/json-patch+json",
                 make_post(target, body, {"Content-Type: application/json-patch+json"}), 415, "unsupported_media_type");
  expect_refused(server, "empty Content-Type", make_post(target, body, {"Content-Type: "}), 415,
                 "unsupported_media_type");
  CHECK(server.read_object("homelab", "target") == "0\n");

  // Through cpp-httplib: text/plain is refused, charset=utf-8 is fine.
  auto client = server.client();
  auto res = client->Post(target, body, "text/plain");
  REQUIRE(res);
  CHECK(res->status == 415);
  CHECK(check_error_body(res->body, "unsupported_media_type") == "");
  res = client->Post(target, body, "application/json; charset=utf-8");
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(server.read_object("homelab", "target") == "0\n1\n");
}

TEST_CASE("unsupported Content-Encoding is 415 unsupported_encoding", "[integration][framing][encoding]") {
  ServerProcess server;
  prefill(server, "target");
  const std::string target = write_path("homelab", "target");
  const std::string body = make_body("1");
  for (const char* encoding : {"br", "compress", "zstd", "gzip, br"}) {
    expect_refused(
        server, std::string("Content-Encoding: ") + encoding,
        make_post(target, body, {"Content-Type: application/json", std::string("Content-Encoding: ") + encoding}), 415,
        "unsupported_encoding");
  }
  CHECK(server.read_object("homelab", "target") == "0\n");
}

TEST_CASE("ambiguous or malformed framing is 400 (501 for an unknown transfer coding)", "[integration][framing]") {
  ServerProcess server;
  prefill(server, "target");
  const std::string target = write_path("homelab", "target");
  const std::string body = make_body("1");
  const std::string length = "Content-Length: " + std::to_string(body.size());
  expect_refused(server, "Content-Length and Transfer-Encoding",
                 make_post(target, chunked(body, 8),
                           {"Content-Type: application/json", length, "Transfer-Encoding: chunked"}, false),
                 400, "bad_request");
  expect_refused(
      server, "two different Content-Length headers",
      make_post(target, body,
                {"Content-Type: application/json", length, "Content-Length: " + std::to_string(body.size() + 1)},
                false),
      400, "bad_request");
  expect_refused(server, "Transfer-Encoding other than chunked",
                 make_post(target, chunked(body, 8),
                           {"Content-Type: application/json", "Transfer-Encoding: gzip, chunked"}, false),
                 501, "not_implemented");
  expect_refused(server, "bad chunk size",
                 make_post(target, "zz\r\n" + body + "\r\n0\r\n\r\n",
                           {"Content-Type: application/json", "Transfer-Encoding: chunked"}, false),
                 400, "bad_request");
  CHECK(server.read_object("homelab", "target") == "0\n");
}

// status.h: bad_request covers "unreadable body, bad gzip"; the library's
// gunzip() refuses a stream that does not end or has data after its end.
TEST_CASE("gzip data that does not decompress cleanly is 400 bad_request", "[integration][framing][encoding]") {
  ServerProcess server;
  prefill(server, "target");
  const std::string target = write_path("homelab", "target");
  const std::string gz = gzip_compress(make_body("{\"gz\":1}"));
  std::string bad_crc = gz;
  bad_crc[bad_crc.size() - 8] = static_cast<char>(bad_crc[bad_crc.size() - 8] ^ 0x5a);
  const std::vector<std::string> headers = {"Content-Type: application/json", "Content-Encoding: gzip"};
  expect_refused(server, "not gzip at all", make_post(target, "garbage-not-gzip", headers), 400, "bad_request");
  expect_refused(server, "gzip header then garbage",
                 make_post(target, "\x1f\x8b\x08\x00garbage-not-deflate-data", headers), 400, "bad_request");
  expect_refused(server, "wrong CRC", make_post(target, bad_crc, headers), 400, "bad_request");
  expect_refused(server, "data after the gzip stream", make_post(target, gz + "trailing", headers), 400, "bad_request");
  CHECK(server.read_object("homelab", "target") == "0\n");
}

// A gzip stream cut short (here: without its CRC32/ISIZE trailer) was never
// verified; it must not be stored as if it were complete.
TEST_CASE("truncated gzip body is refused and stores nothing", "[integration][framing][encoding]") {
  ServerProcess server;
  prefill(server, "target");
  const std::string gz = gzip_compress(make_body("{\"gz\":1}"));
  expect_refused(server, "gzip without its 8-byte trailer",
                 make_post(write_path("homelab", "target"), gz.substr(0, gz.size() - 8),
                           {"Content-Type: application/json", "Content-Encoding: gzip"}),
                 400, "bad_request");
  CHECK(server.read_object("homelab", "target") == "0\n");
}

TEST_CASE("a body cut short stores nothing", "[integration][framing]") {
  ServerProcess server;
  prefill(server, "target");
  const std::string body = make_body("{\"complete\":false}");
  SECTION("Content-Length larger than the bytes sent") {
    RawConnection connection(server.port());
    REQUIRE(connection.send("POST " + write_path("homelab", "target") +
                            " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
                            std::to_string(body.size() + 10) + "\r\n\r\n" + body));
    connection.shutdown_write();
    auto res = connection.read_response(5s);
    INFO(res.raw);
    if (res.status != 0) CHECK(res.status == 400);
  }
  SECTION("chunked stream without its last chunk") {
    RawConnection connection(server.port());
    REQUIRE(
        connection.send("POST " + write_path("homelab", "target") +
                        " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
                        chunked(body, 10).substr(0, 40)));
    connection.shutdown_write();
    auto res = connection.read_response(5s);
    INFO(res.raw);
    if (res.status != 0) CHECK(res.status == 400);
  }
  // The server handles the next request normally.
  auto health = server.client()->Get("/healthz");
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(server.read_object("homelab", "target") == "0\n");
}

TEST_CASE("the connection stays usable after a refused body", "[integration][framing][keepalive]") {
  ServerProcess server;
  RawConnection connection(server.port());
  REQUIRE(connection.connected());
  REQUIRE(connection.send(make_post(write_path("homelab", "k"), "{\"accessKey\":")));
  auto bad = connection.read_response();
  INFO(bad.raw);
  CHECK(bad.status == 400);
  CHECK(check_error_body(bad.body, "invalid_json") == "");
  REQUIRE(connection.send(make_post(write_path("homelab", "k"), make_body("1", "wrong"))));
  auto denied = connection.read_response();
  INFO(denied.raw);
  CHECK(denied.status == 403);
  REQUIRE(connection.send(make_post(write_path("homelab", "k"), make_body("2"))));
  auto ok = connection.read_response();
  INFO(ok.raw);
  CHECK(ok.status == 200);
  CHECK(server.read_object("homelab", "k") == "2\n");
}

namespace {

// Requests the server refuses from their headers alone, before reading the
// body (the handler answers with "Connection: close").
struct EarlyRefusal {
  const char* what;
  std::string head;  // request line and headers, ending in CRLF CRLF
  int status;
  const char* code;
};

std::vector<EarlyRefusal> early_refusals(std::size_t body_size) {
  const std::string length = "Content-Length: " + std::to_string(body_size);
  const std::string target = write_path("homelab", "outer");
  return {
      {"415 text/plain", headers_only("POST", target, {"Content-Type: text/plain", length}), 415,
       "unsupported_media_type"},
      {"415 Content-Encoding br",
       headers_only("POST", target, {"Content-Type: application/json", "Content-Encoding: br", length}), 415,
       "unsupported_encoding"},
      {"413 Content-Length over the limit",
       headers_only("POST", target, {"Content-Type: application/json", "Content-Length: 5000"}), 413,
       "payload_too_large"},
      {"405 PUT", headers_only("PUT", target, {"Content-Type: application/json", length}), 405, "method_not_allowed"},
      {"400 invalid bucket name",
       headers_only("POST", "/write/v3/bucket/.hidden/outer", {"Content-Type: application/json", length}), 400,
       "invalid_name"},
      {"404 one path segment",
       headers_only("POST", "/write/v3/bucket/onlyone", {"Content-Type: application/json", length}), 404, "not_found"},
      {"411 no length", headers_only("POST", target, {"Content-Type: application/json"}), 411, "length_required"},
  };
}

}  // namespace

// The handler answers these before reading the body and says
// "Connection: close" because the unread body would otherwise be taken for
// the next request. The connection must then actually be closed.
TEST_CASE("a refusal announced with Connection close closes the connection", "[integration][framing][connection]") {
  // A long keep-alive timeout, so an idle close cannot pass for the real one.
  ServerProcess server({"--max-body", "1000", "--keep-alive-timeout-s", "30"});
  for (const auto& refusal : early_refusals(100)) {
    INFO("case: " << refusal.what);
    RawConnection connection(server.port());
    REQUIRE(connection.send(refusal.head));
    auto res = connection.read_response();
    INFO(res.raw);
    CHECK(res.status == refusal.status);
    CHECK(check_error_body(res.body, refusal.code) == "");
    CHECK(res.header("connection") == "close");
    CHECK(connection.wait_closed(1s));
  }
}

// Request smuggling: the body of a refused request, framed by its
// Content-Length, must never be executed as a request of its own.
TEST_CASE("the unread body of a refused request is never run as a request", "[integration][framing][connection]") {
  ServerProcess server({"--max-body", "1000", "--keep-alive-timeout-s", "30"});
  const std::string inner_body = make_body("{\"smuggled\":true}");
  // Same length for every case: "smuggled<digit>".
  const std::size_t inner_size = make_post(write_path("homelab", "smuggled0"), inner_body).size();
  int index = 0;
  for (const auto& refusal : early_refusals(inner_size)) {
    if (std::string_view(refusal.code) == "length_required") continue;  // its body has no framing
    INFO("case: " << refusal.what);
    const std::string smuggled_key = "smuggled" + std::to_string(index++);
    const std::string inner = make_post(write_path("homelab", smuggled_key), inner_body);
    REQUIRE(inner.size() == inner_size);
    auto before = snapshot_tree(server.data_dir());
    RawConnection connection(server.port());
    REQUIRE(connection.send(refusal.head));
    auto res = connection.read_response();
    INFO(res.raw);
    CHECK(res.status == refusal.status);
    // The body, sent once the refusal is in (a proxy in front would forward
    // it just the same), is a complete write request.
    connection.send(inner);
    auto second = connection.read_response(1s);
    INFO("after the body:\n" << second.raw);
    CHECK(second.status == 0);
    CHECK_FALSE(server.object_exists("homelab", smuggled_key));
    CHECK(tree_diff(before, snapshot_tree(server.data_dir())) == "");
  }
}
