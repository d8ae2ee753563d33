// A body is only ever read by the write route. Every other route, and every
// method but POST on the write path, answers a request that carries a body
// with its normal status and "Connection: close", closes the connection
// without reading the body into memory, and never answers the body's bytes
// as a request of their own. The same holds for the answers cpp-httplib
// produces by itself (416 for a Range, 414, 400), and for requests that ask
// for the connection to close ("Connection: Close" in any case).
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "../integration/checks.h"
#include "hostile_checks.h"
#include "hostile_support.h"
#include "server_process.h"

using namespace std::chrono_literals;
using namespace writeapi::testing;

namespace {

using Clock = std::chrono::steady_clock;

// `method target` with Host, the extra `lines`, and a Content-Length for a
// body that is exactly the hidden request expect_refused_then_closed appends.
std::string with_hidden_body(std::string_view method, std::string_view target, std::string_view lines = "") {
  return std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + std::string(lines) +
         "Content-Length: " + std::to_string(valid_request().size()) + "\r\n\r\n";
}

// Streams a body of up to `total` bytes made of `piece` after `head`, reading
// at the same time; stops when the server answers and closes, stops reading
// (a send blocks for 2 s), or after 30 s. Then reads to the end and checks
// one answer with one of `statuses`, "Connection: close", a closed
// connection, and the server's memory growth under rss_growth_bound().
void stream_body_to_refusing_route(const ServerProcess& server, std::string_view head, const std::string& piece,
                                   std::size_t total, const std::vector<int>& statuses, std::string_view tail = "") {
  RssWatch memory(server.pid(), 4 * rss_growth_bound());
  RawConnection client(server.port(), "127.0.0.1");
  REQUIRE(client.connected());
  REQUIRE(client.send(head));
  std::size_t sent = 0;
  bool peer_closed = false;
  const auto deadline = Clock::now() + 30s;
  while (sent < total && Clock::now() < deadline && !memory.killed()) {
    if (!client.poll_incoming()) {
      peer_closed = true;
      break;
    }
    if (!client.send(piece, 2s)) break;
    sent += piece.size();
  }
  if (sent >= total && !tail.empty()) client.send(tail, 2s);
  bool closed = false;
  // What arrived while sending is still buffered: read_to_eof returns it first.
  std::string bytes = client.read_to_eof(5s, &closed);
  memory.stop();
  Exchange exchange;
  exchange.bytes = bytes;
  exchange.first = parse_response(bytes);
  exchange.closed = closed || peer_closed;
  exchange.status_lines = count_status_lines(bytes);
  INFO("sent " << (sent >> 20) << " MiB of " << (total >> 20) << " MiB; server RSS peak growth "
               << (memory.peak_growth() >> 20) << " MiB (bound " << (rss_growth_bound() >> 20)
               << " MiB), killed for memory: " << memory.killed());
  CHECK(memory.peak_growth() < rss_growth_bound());
  CHECK(!memory.killed());
  check_single_answer_then_close(server, exchange, statuses, "", true);
}

}  // namespace

TEST_CASE("body routes: GET, OPTIONS and other methods with a body are answered once and closed",
          "[hostile][routes][smuggling]") {
  ServerProcess server(long_keep_alive());
  const std::string write_target = write_path("homelab", "routes");
  struct Case {
    std::string what, head;
    std::vector<int> statuses;
  };
  const std::vector<Case> cases = {
      {"GET /healthz with Content-Length", with_hidden_body("GET", "/healthz"), {200}},
      {"GET /metrics with Content-Length", with_hidden_body("GET", "/metrics"), {200}},
      {"HEAD /healthz with Content-Length", with_hidden_body("HEAD", "/healthz"), {200, 405}},
      {"GET on the write path with a body", with_hidden_body("GET", write_target), {405}},
      {"OPTIONS on the write path with a body", with_hidden_body("OPTIONS", write_target), {405}},
      {"PUT on the write path with a body",
       with_hidden_body("PUT", write_target, "Content-Type: application/json\r\n"),
       {405}},
      {"DELETE on the write path with a body", with_hidden_body("DELETE", write_target), {405}},
      {"PATCH on the write path with a body", with_hidden_body("PATCH", write_target), {405}},
      {"POST /healthz with a body", with_hidden_body("POST", "/healthz"), {404, 405}},
      {"POST /nope with a body", with_hidden_body("POST", "/nope"), {404}},
      {"POST /write/v3/bucket (no key) with a body", with_hidden_body("POST", "/write/v3/bucket"), {404}},
      {"OPTIONS * with a body", with_hidden_body("OPTIONS", "*"), {200, 204, 400, 404, 405}},
  };
  for (const auto& c : cases) expect_refused_then_closed(server, c.what, c.head, c.statuses, "", true);
  // GET /healthz with the hidden request as a chunked body.
  const std::string hidden = valid_request();
  char size[32];
  std::snprintf(size, sizeof size, "%zx", hidden.size());
  INFO("GET /healthz with a chunked body");
  Exchange exchange = exchange_to_eof(server.port(),
                                      "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n" +
                                          std::string(size) + "\r\n" + hidden + "\r\n0\r\n\r\n" + hidden,
                                      3s);
  check_single_answer_then_close(server, exchange, {200}, "", true);
  CHECK(!server.object_exists("homelab", "routes"));
}

TEST_CASE("body routes: answers cpp-httplib makes itself (416 Range, 414, 400) never leave a body to run",
          "[hostile][routes][smuggling]") {
  ServerProcess server(long_keep_alive());
  expect_refused_then_closed(server, "GET /healthz with an unsatisfiable Range and a body",
                             with_hidden_body("GET", "/healthz", "Range: bytes=1000-2000\r\n"), {200, 416}, "", true);
  expect_refused_then_closed(server, "GET /metrics with a multi-range and a body",
                             with_hidden_body("GET", "/metrics", "Range: bytes=0-1,5-6\r\n"), {200, 206, 416}, "",
                             true);
  expect_refused_then_closed(server, "a 9,000-byte target with a body",
                             with_hidden_body("GET", "/" + std::string(9000, 'a')), {414}, "");
  expect_refused_then_closed(server, "an unknown method with a body", with_hidden_body("BREW", "/healthz"),
                             {400, 405, 501}, "");
  expect_refused_then_closed(server, "a version with a suffix and a body",
                             "GET /healthz HTTP/1.1x\r\nHost: 127.0.0.1\r\nContent-Length: " +
                                 std::to_string(valid_request().size()) + "\r\n\r\n",
                             {400, 505}, "");
}

TEST_CASE("body routes: 1.5 GB chunked to POST /nope is answered 404 and never read into memory",
          "[hostile][routes][memory]") {
  ServerProcess server(long_keep_alive());
  prefill(server, "warmup");
  // One 64 KiB chunk per piece.
  const std::string piece = "10000\r\n" + std::string(65536, 'x') + "\r\n";
  stream_body_to_refusing_route(server,
                                "POST /nope HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n",
                                piece, std::size_t{1536} << 20, {404}, "0\r\n\r\n" + valid_request());
  prefill(server, "after");
}

TEST_CASE("body routes: a 4 MB gzip body to POST /write/v3/bucket (no key) is 404 and never inflated",
          "[hostile][routes][memory]") {
  ServerProcess server(long_keep_alive());
  prefill(server, "warmup");
  // Four gzip members of 1 GiB of zeros each (valid multi-member gzip).
  const std::string member = gzip_of_zeros(std::size_t{1} << 30);
  std::string body;
  for (int i = 0; i < 4; ++i) body += member;
  INFO("gzip body of " << body.size() << " bytes");
  const std::string head =
      "POST /write/v3/bucket HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
      "Content-Encoding: gzip\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n";
  // Sent in 64 KiB pieces through the same loop as the chunked flood.
  RssWatch memory(server.pid(), 4 * rss_growth_bound());
  RawConnection client(server.port(), "127.0.0.1");
  REQUIRE(client.connected());
  REQUIRE(client.send(head));
  std::size_t sent = 0;
  bool peer_closed = false;
  while (sent < body.size() && !memory.killed()) {
    if (!client.poll_incoming()) {
      peer_closed = true;
      break;
    }
    std::size_t n = std::min<std::size_t>(65536, body.size() - sent);
    if (!client.send(std::string_view(body).substr(sent, n), 2s)) break;
    sent += n;
  }
  if (sent == body.size()) client.send(valid_request(), 1s);
  bool closed = false;
  // What arrived while sending is still buffered: read_to_eof returns it first.
  std::string bytes = client.read_to_eof(5s, &closed);
  // Inflation, if it happens, may lag the send.
  std::this_thread::sleep_for(500ms);
  memory.stop();
  Exchange exchange;
  exchange.bytes = bytes;
  exchange.first = parse_response(bytes);
  exchange.closed = closed || peer_closed;
  exchange.status_lines = count_status_lines(bytes);
  INFO("sent " << sent << " of " << body.size() << " bytes; server RSS peak growth " << (memory.peak_growth() >> 20)
               << " MiB, killed for memory: " << memory.killed());
  CHECK(memory.peak_growth() < rss_growth_bound());
  CHECK(!memory.killed());
  check_single_answer_then_close(server, exchange, {404}, "not_found", true);
  prefill(server, "after");
}

TEST_CASE("connection: Connection tokens are case-insensitive and HTTP/1.0 closes by default",
          "[hostile][connection]") {
  ServerProcess server(long_keep_alive());
  for (const char* value : {"Close", "CLOSE", "keep-alive, CLOSE", "close, keep-alive", "Upgrade, cLoSe"}) {
    expect_refused_then_closed(
        server, std::string("GET /healthz with Connection: ") + value,
        std::string("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: ") + value + "\r\n\r\n", {200}, "");
  }
  // A write that asks to close is stored, then the connection closes.
  {
    const std::string body = make_body("1");
    INFO("POST with Connection: Close");
    Exchange exchange = exchange_to_eof(server.port(),
                                        "POST " + write_path("homelab", "closing") +
                                            " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                            "Connection: Close\r\nContent-Length: " +
                                            std::to_string(body.size()) + "\r\n\r\n" + body + valid_request(),
                                        3s);
    check_single_answer_then_close(server, exchange, {200}, "");
    CHECK(server.read_object("homelab", "closing") == "1\n");
  }
  expect_refused_then_closed(server, "HTTP/1.0 without keep-alive", "GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
                             {200}, "");
}
