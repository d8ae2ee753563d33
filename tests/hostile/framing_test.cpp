// Hostile framing: ambiguous lengths (request smuggling), oversized request
// heads, bodies that never finish. Each is refused or cut off, stores
// nothing, and leaves the server serving.
#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "../integration/checks.h"
#include "hostile_support.h"
#include "server_process.h"

using namespace std::chrono_literals;
using namespace writeapi::testing;

namespace {

using Clock = std::chrono::steady_clock;

const std::string kTarget = write_path("homelab", "framing");

// A complete, valid request for homelab/<key> (for smuggling attempts).
std::string valid_request(std::string_view key) {
  return make_post(write_path("homelab", key), make_body("{\"smuggled\":true}"));
}

// Sends `request` with a second request hidden after it; the server must
// refuse the first with 400 and close the connection, so the hidden one is
// never read as a request of its own.
void expect_refused_without_smuggling(const ServerProcess& server, std::string_view what, std::string head_lines,
                                      std::string_view body) {
  INFO("case: " << what);
  auto before = snapshot_tree(server.data_dir());
  std::string request = "POST " + kTarget + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
                        head_lines + "\r\n" + std::string(body) + valid_request("smuggled");
  RawConnection client(server.port(), "127.0.0.1");
  REQUIRE(client.connected());
  REQUIRE(client.send(request));
  RawResponse res = client.read_response(5s);
  INFO("response:\n" << res.raw);
  CHECK(res.status == 400);
  CHECK(check_error_body(res.body, "bad_request") == "");
  CHECK(client.drain_until_closed(3s));
  CHECK(!server.object_exists("homelab", "smuggled"));
  CHECK(tree_diff(before, snapshot_tree(server.data_dir())) == "");
}

}  // namespace

TEST_CASE("hostile: Content-Length with Transfer-Encoding is 400 and closes the connection", "[hostile][framing]") {
  ServerProcess server;
  const std::string body = make_body("1");
  const std::string chunked = "0\r\n\r\n";
  expect_refused_without_smuggling(
      server, "CL then TE", "Content-Length: " + std::to_string(chunked.size()) + "\r\nTransfer-Encoding: chunked\r\n",
      chunked);
  expect_refused_without_smuggling(
      server, "TE then CL", "Transfer-Encoding: chunked\r\nContent-Length: " + std::to_string(body.size()) + "\r\n",
      body);
  expect_refused_without_smuggling(
      server, "TE list ending in chunked, with CL",
      "Transfer-Encoding: identity, chunked\r\nContent-Length: " + std::to_string(body.size()) + "\r\n", body);
  // The server still answers ordinary requests.
  prefill(server, "after");
}

TEST_CASE("hostile: two different Content-Length values are 400 and close the connection", "[hostile][framing]") {
  ServerProcess server;
  const std::string body = make_body("1");
  const std::string n = std::to_string(body.size());
  expect_refused_without_smuggling(
      server, "longer then shorter",
      "Content-Length: " + std::to_string(body.size() + 200) + "\r\nContent-Length: " + n + "\r\n", body);
  expect_refused_without_smuggling(
      server, "shorter then longer",
      "Content-Length: " + n + "\r\nContent-Length: " + std::to_string(body.size() + 200) + "\r\n", body);
  // A list of equal values is one value (RFC 9110 8.6); different ones are not.
  expect_refused_without_smuggling(server, "a list of different values in one header",
                                   "Content-Length: " + n + ", " + std::to_string(body.size() + 200) + "\r\n", body);
  expect_refused_without_smuggling(server, "a signed length", "Content-Length: +" + n + "\r\n", body);
  prefill(server, "after");
}

TEST_CASE("hostile: an oversized request head gets 431 and the server stops reading", "[hostile][framing]") {
  ServerProcess server;
  const std::size_t rss_before = resident_bytes(server.pid());

  // Header lines without end: the client keeps sending up to 32 MiB unless
  // the server answers and closes first.
  auto flood = [&](const std::string& start, const std::string& filler) {
    RawConnection client(server.port(), "127.0.0.1");
    REQUIRE(client.connected());
    REQUIRE(client.send(start));
    std::size_t sent = start.size();
    RawResponse res;
    const auto deadline = Clock::now() + 15s;
    while (sent < (32u << 20) && Clock::now() < deadline) {
      if (!client.send(filler, 200ms)) {
        // The server stopped reading (full buffers) or closed: the answer
        // must be there.
        res = client.read_response(5s);
        break;
      }
      sent += filler.size();
    }
    INFO("sent " << sent << " bytes; response:\n" << res.raw.substr(0, 500));
    CHECK((res.status == 431 || res.status == 400));
    if (res.status != 0) CHECK(check_error_body(res.body, "bad_request") == "");
    CHECK(sent < (32u << 20));
    CHECK(client.drain_until_closed(5s));
  };

  SECTION("many header lines") {
    std::string line = "X-Filler: " + std::string(1000, 'a') + "\r\n";
    std::string filler;
    for (int i = 0; i < 64; ++i) filler += line;
    flood("POST " + kTarget + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n", filler);
  }
  SECTION("one endless header line") {
    flood("POST " + kTarget + " HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Endless: ", std::string(65536, 'b'));
  }
  SECTION("an endless request line") {
    // No response is owed to something that never became a request line;
    // the connection must still be closed soon.
    RawConnection client(server.port(), "127.0.0.1");
    REQUIRE(client.connected());
    REQUIRE(client.send("POST /" + std::string(60000, 'c')));
    std::size_t sent = 60000;
    while (sent < (32u << 20) && client.send(std::string(65536, 'c'), 200ms)) sent += 65536;
    INFO("sent " << sent);
    CHECK(sent < (32u << 20));
    CHECK(client.drain_until_closed(5s));
  }

  const std::size_t rss_after = resident_bytes(server.pid());
  INFO("RSS before " << rss_before << " after " << rss_after);
  CHECK(rss_after < rss_before + rss_growth_bound());
  CHECK(!server.object_exists("homelab", "framing"));
  prefill(server, "after");
}

TEST_CASE("hostile: a body shorter than its Content-Length times out and stores nothing", "[hostile][framing]") {
  ServerProcess server({"--read-timeout-s", "2"});
  prefill(server, "short");
  auto before = snapshot_tree(server.data_dir());
  const std::string body = make_body("[1,2,3]");
  std::string request = make_post(write_path("homelab", "short"), body);
  request.resize(request.size() - body.size() / 2);  // Content-Length promises more

  RawConnection client(server.port(), "127.0.0.1");
  REQUIRE(client.connected());
  const auto start = Clock::now();
  REQUIRE(client.send(request));
  RawResponse res = client.read_response(8s);
  const auto waited = Clock::now() - start;
  INFO("response after " << std::chrono::duration<double>(waited).count() << " s:\n" << res.raw);
  // Either an error answer or a plain close, after the read timeout, and
  // never a success.
  CHECK(res.status != 200);
  if (res.status != 0) CHECK(res.status >= 400);
  CHECK(waited >= 1500ms);
  CHECK(waited < 8s);
  CHECK(client.drain_until_closed(3s));
  CHECK(tree_diff(before, snapshot_tree(server.data_dir())) == "");
  CHECK(server.read_object("homelab", "short") == "0\n");
}
