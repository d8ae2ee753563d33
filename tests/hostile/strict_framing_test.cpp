// Strict request framing (RFC 9112): every head or chunked body that is not
// exactly as the grammar says is refused (400, 501 for a transfer coding
// other than chunked, 431/414/505 for the limits), the connection is closed,
// and a complete request hidden behind it is never run. Each case is sent
// with a valid write of homelab/smuggled after it; that object must never
// appear, and exactly one status line may come back.
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

const std::string kTarget = write_path("homelab", "strict");
const std::string kBody = make_body("1");
const std::string kLength = std::to_string(kBody.size());

std::string hex(std::size_t n) {
  char text[32];
  std::snprintf(text, sizeof text, "%zx", n);
  return text;
}

// `body` as one chunk and the last chunk.
std::string chunked(std::string_view body) { return hex(body.size()) + "\r\n" + std::string(body) + "\r\n0\r\n\r\n"; }

// A POST to the write path with Host and Content-Type, then `lines` (each
// ending in its own line terminator), the empty line, and `body`.
std::string post_with(std::string_view lines, std::string_view body = kBody) {
  return "POST " + kTarget + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" + std::string(lines) +
         "\r\n" + std::string(body);
}

// post_with and a Content-Length of kBody.
std::string post_with_length(std::string_view lines) {
  return post_with(std::string(lines) + "Content-Length: " + kLength + "\r\n");
}

struct Case {
  std::string what;
  std::string request;
};

void expect_all_refused(const ServerProcess& server, const std::vector<Case>& cases, const std::vector<int>& statuses,
                        std::string_view code) {
  for (const auto& c : cases) expect_refused_then_closed(server, c.what, c.request, statuses, code);
  CHECK(!server.object_exists("homelab", "strict"));
}

// A request the server must accept: 200 and one more line in homelab/strict.
void expect_stored(const ServerProcess& server, std::string_view what, std::string_view request) {
  INFO("case: " << what);
  const std::size_t lines_before = split_lines(server.read_object("homelab", "strict")).size();
  Exchange exchange = exchange_to_eof(server.port(), request, 3s);
  INFO("received:\n" << exchange.bytes.substr(0, 1000));
  CHECK(exchange.first.status == 200);
  CHECK(split_lines(server.read_object("homelab", "strict")).size() == lines_before + 1);
}

}  // namespace

TEST_CASE("strict: a bare LF or bare CR anywhere in the head is 400 and closes the connection", "[hostile][strict]") {
  ServerProcess server(long_keep_alive());
  const std::string h = "Host: 127.0.0.1\r\nContent-Type: application/json\r\n";
  expect_all_refused(
      server,
      {
          {"bare LF after the request line",
           "POST " + kTarget + " HTTP/1.1\n" + h + "Content-Length: " + kLength + "\r\n\r\n" + kBody},
          {"bare LF ending Transfer-Encoding: chunked", post_with("Transfer-Encoding: chunked\n", chunked(kBody))},
          {"bare LF ending a header before Content-Length", post_with_length("X-Note: a\n")},
          {"bare LF ending Content-Length", post_with("Content-Length: " + kLength + "\n", kBody)},
          {"bare CR inside a header value", post_with_length("X-Note: a\rb\r\n")},
          {"bare CR ending the request line",
           "POST " + kTarget + " HTTP/1.1\r" + h + "Content-Length: " + kLength + "\r\n\r\n" + kBody},
          {"bare CR ending a header line", post_with_length("X-Note: a\r")},
          {"head ending in LF LF", "GET /healthz HTTP/1.1\nHost: 127.0.0.1\n\n"},
      },
      {400}, "bad_request");
}

TEST_CASE("strict: obs-fold, whitespace before the colon and field names that are not tokens are 400",
          "[hostile][strict]") {
  ServerProcess server(long_keep_alive());
  expect_all_refused(server,
                     {
                         {"obs-fold with SP", post_with_length("X-Note: a\r\n b\r\n")},
                         {"obs-fold with HTAB", post_with_length("X-Note: a\r\n\tb\r\n")},
                         {"obs-fold continuing Content-Length", post_with("Content-Length:\r\n " + kLength + "\r\n")},
                         {"SP between name and colon", post_with("Content-Length : " + kLength + "\r\n")},
                         {"HTAB between name and colon", post_with_length("X-Note\t: a\r\n")},
                         {"SP inside a field name", post_with_length("X Note: a\r\n")},
                         {"parenthesis in a field name", post_with_length("X(Note): a\r\n")},
                         {"quote in a field name", post_with_length("X\"Note: a\r\n")},
                         {"at sign in a field name", post_with_length("X@Note: a\r\n")},
                         {"empty field name", post_with_length(": a\r\n")},
                         {"header line without a colon", post_with_length("NoColonHere\r\n")},
                     },
                     {400}, "bad_request");
}

TEST_CASE("strict: a control character other than HTAB in a field value is 400, HTAB is accepted",
          "[hostile][strict]") {
  ServerProcess server(long_keep_alive());
  expect_all_refused(
      server,
      {
          {"SOH in a value", post_with_length("X-Note: a\x01"
                                              "b\r\n")},
          {"ESC in a value", post_with_length("X-Note: a\x1b[2Jb\r\n")},
          {"DEL in a value", post_with_length("X-Note: a\x7f"
                                              "b\r\n")},
          {"NUL in a value", post_with_length(std::string("X-Note: a\0b\r\n", 13))},
          {"NUL in Content-Length", post_with(std::string("Content-Length: ") + kLength + std::string("\0\r\n", 3))},
      },
      {400}, "bad_request");
  expect_stored(server, "HTAB inside a value", post_with_length("X-Note: a\tb\r\n"));
}

TEST_CASE("strict: a request line that is not METHOD SP target SP HTTP/1.x CRLF is 400", "[hostile][strict]") {
  ServerProcess server(long_keep_alive());
  const std::string rest = "\r\nHost: 127.0.0.1\r\n\r\n";
  expect_all_refused(server,
                     {
                         {"two spaces after the method", "GET  /healthz HTTP/1.1" + rest},
                         {"two spaces before the version", "GET /healthz  HTTP/1.1" + rest},
                         {"trailing space", "GET /healthz HTTP/1.1 " + rest},
                         {"HTAB as separator", "GET\t/healthz HTTP/1.1" + rest},
                         {"leading space", " GET /healthz HTTP/1.1" + rest},
                         {"no version (HTTP/0.9 shape)", "GET /healthz" + rest},
                         {"version in lower case", "GET /healthz http/1.1" + rest},
                         {"space inside the target", "GET /hea lthz HTTP/1.1" + rest},
                         {"version with a suffix", "GET /healthz HTTP/1.1x" + rest},
                         {"version without minor", "GET /healthz HTTP/1" + rest},
                     },
                     {400}, "bad_request");
}

TEST_CASE("strict: an HTTP version other than 1.0 or 1.1 is 505 or 400 and closes the connection",
          "[hostile][strict]") {
  ServerProcess server(long_keep_alive());
  for (const char* version : {"HTTP/2.0", "HTTP/1.2", "HTTP/3.0", "HTTP/0.9"}) {
    expect_refused_then_closed(server, version, std::string("GET /healthz ") + version + "\r\nHost: 127.0.0.1\r\n\r\n",
                               {505, 400}, "");
  }
}

TEST_CASE("strict: a Content-Length that is not digits only is 400 and closes the connection", "[hostile][strict]") {
  ServerProcess server(long_keep_alive());
  // The length of kBody with its last digit percent-encoded ("8%36" for
  // 86): a server that percent-decodes header values reads exactly kBody.
  const std::string percent = kLength.substr(0, kLength.size() - 1) + "%3" + kLength.back();
  const std::string other = std::to_string(kBody.size() + 1);
  expect_all_refused(
      server,
      {
          {"percent-encoded digit " + percent, post_with("Content-Length: " + percent + "\r\n")},
          {"5%34", post_with("Content-Length: 5%34\r\n")},
          {"plus sign", post_with("Content-Length: +" + kLength + "\r\n")},
          {"hexadecimal", post_with("Content-Length: 0x" + hex(kBody.size()) + "\r\n")},
          {"two numbers with a space", post_with("Content-Length: " + kLength + " " + kLength + "\r\n")},
          {"-1", post_with("Content-Length: -1\r\n")},
          {"empty", post_with("Content-Length: \r\n")},
          {"different list members without space", post_with("Content-Length: " + kLength + "," + other + "\r\n")},
          {"different list members", post_with("Content-Length: " + kLength + ", " + other + "\r\n")},
          {"two fields, different values",
           post_with("Content-Length: " + kLength + "\r\nContent-Length: " + other + "\r\n")},
          {"digits then letters", post_with("Content-Length: " + kLength + "abc\r\n")},
      },
      {400}, "bad_request");
  // Digits only but past 2^64: a length no body can have, refused as too
  // large (never wrapped around to a small number).
  expect_all_refused(server, {{"20 digits (overflow)", post_with("Content-Length: 18446744073709551616\r\n")}}, {413},
                     "payload_too_large");
}

TEST_CASE("strict: a Content-Length list of equal values is accepted", "[hostile][strict]") {
  ServerProcess server(long_keep_alive());
  expect_stored(server, "Content-Length: N, N", post_with("Content-Length: " + kLength + ", " + kLength + "\r\n"));
  expect_stored(server, "Content-Length: N,N", post_with("Content-Length: " + kLength + "," + kLength + "\r\n"));
}

TEST_CASE("strict: Transfer-Encoding with Content-Length, or in an HTTP/1.0 request, is 400", "[hostile][strict]") {
  ServerProcess server(long_keep_alive());
  const std::string chunked_body = chunked(kBody);
  expect_all_refused(
      server,
      {
          {"chunked in HTTP/1.0", "POST " + kTarget +
                                      " HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                      "Transfer-Encoding: chunked\r\n\r\n" +
                                      chunked_body},
          {"CL then TE",
           post_with("Content-Length: " + std::to_string(chunked_body.size()) + "\r\nTransfer-Encoding: chunked\r\n",
                     chunked_body)},
          {"TE then CL on GET /healthz",
           "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
           "Content-Length: 5\r\n\r\n0\r\n\r\n"},
      },
      {400}, "bad_request");
}

TEST_CASE("strict: a missing or repeated Host in HTTP/1.1 is 400, HTTP/1.0 may omit it", "[hostile][strict]") {
  ServerProcess server(long_keep_alive());
  const std::string head =
      "POST " + kTarget + " HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: " + kLength;
  expect_all_refused(
      server,
      {
          {"no Host on the write path", head + "\r\n\r\n" + kBody},
          {"two Host fields on the write path", head + "\r\nHost: 127.0.0.1\r\nHost: 127.0.0.2\r\n\r\n" + kBody},
          {"no Host on GET /healthz", "GET /healthz HTTP/1.1\r\n\r\n"},
          {"two equal Host fields on GET /healthz",
           "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: 127.0.0.1\r\n\r\n"},
      },
      {400}, "bad_request");
  RawResponse res = raw_exchange(server.port(), "GET /healthz HTTP/1.0\r\n\r\n", 3s);
  INFO(res.raw);
  CHECK(res.status == 200);
}

TEST_CASE("strict: a Transfer-Encoding other than exactly chunked is 501 and closes the connection",
          "[hostile][strict]") {
  ServerProcess server(long_keep_alive());
  const std::string body = chunked(kBody);
  expect_all_refused(server,
                     {
                         {"gzip", post_with("Transfer-Encoding: gzip\r\n", body)},
                         {"identity", post_with("Transfer-Encoding: identity\r\n", body)},
                         {"chunked, chunked", post_with("Transfer-Encoding: chunked, chunked\r\n", body)},
                         {"gzip, chunked", post_with("Transfer-Encoding: gzip, chunked\r\n", body)},
                         {"xchunked", post_with("Transfer-Encoding: xchunked\r\n", body)},
                         {"two fields: gzip then chunked",
                          post_with("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n", body)},
                     },
                     {501}, "not_implemented");
  // Any case of "chunked" is chunked.
  expect_stored(server, "Transfer-Encoding: ChUnKeD", post_with("Transfer-Encoding: ChUnKeD\r\n", body));
}

TEST_CASE("strict: a request head over 64 KiB is 431 and closes, one under it is served", "[hostile][strict]") {
  ServerProcess server(long_keep_alive());
  expect_refused_then_closed(server, "one 70,000-byte header",
                             post_with_length("X-Filler: " + std::string(70000, 'a') + "\r\n"), {431}, "bad_request");
  std::string many;
  for (int i = 0; i < 80; ++i) many += "X-Filler-" + std::to_string(i) + ": " + std::string(1000, 'b') + "\r\n";
  expect_refused_then_closed(server, "80 headers of 1,000 bytes", post_with_length(many), {431}, "bad_request");
  CHECK(!server.object_exists("homelab", "strict"));
  std::string under;
  for (int i = 0; i < 50; ++i) under += "X-Filler-" + std::to_string(i) + ": " + std::string(1000, 'c') + "\r\n";
  expect_stored(server, "a head of 50 headers of 1,000 bytes", post_with_length(under));
}

TEST_CASE("strict: a request target over 8000 bytes is 414 and closes the connection", "[hostile][strict]") {
  ServerProcess server(long_keep_alive());
  for (std::size_t length : {8001u, 8100u, 9000u, 20000u}) {
    std::string target = "/healthz?q=" + std::string(length - 11, 'a');
    REQUIRE(target.size() == length);
    expect_refused_then_closed(server, "target of " + std::to_string(length) + " bytes with a body",
                               "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " +
                                   std::to_string(valid_request().size()) + "\r\n\r\n",
                               {414}, "");
  }
  // 7,000 bytes is fine.
  RawResponse res = raw_exchange(
      server.port(), "GET /healthz?q=" + std::string(6989, 'a') + " HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
      3s);
  CHECK(res.status == 200);
}

// ---------------------------------------------------------------------------
// Chunked bodies

TEST_CASE("strict: a chunk-size line that is not plain hex is 400 and closes the connection",
          "[hostile][strict][chunked]") {
  ServerProcess server(long_keep_alive());
  const std::string size = hex(kBody.size());
  auto with_size_line = [&](std::string_view line) {
    return post_with("Transfer-Encoding: chunked\r\n", std::string(line) + kBody + "\r\n0\r\n\r\n");
  };
  expect_all_refused(server,
                     {
                         {"minus sign", with_size_line("-" + size + "\r\n")},
                         {"plus sign", with_size_line("+" + size + "\r\n")},
                         {"0x prefix", with_size_line("0x" + size + "\r\n")},
                         {"leading space", with_size_line(" " + size + "\r\n")},
                         {"not hex", with_size_line("g\r\n")},
                         {"empty size line", with_size_line("\r\n")},
                         {"17 hex digits", with_size_line(std::string(17 - size.size(), '0') + size + "\r\n")},
                         {"bare LF after the size", with_size_line(size + "\n")},
                         {"bare CR after the size", with_size_line(size + "\r")},
                     },
                     {400}, "bad_request");
}

TEST_CASE("strict: chunk data not followed by exactly CRLF is 400 and closes the connection",
          "[hostile][strict][chunked]") {
  ServerProcess server(long_keep_alive());
  const std::string size = hex(kBody.size());
  auto chunk_then = [&](std::string_view after_data) {
    return post_with("Transfer-Encoding: chunked\r\n", size + "\r\n" + kBody + std::string(after_data) + "0\r\n\r\n");
  };
  expect_all_refused(server,
                     {
                         {"XX instead of CRLF", chunk_then("XX")},
                         {"bare LF", chunk_then("\n")},
                         {"nothing", chunk_then("")},
                         {"spaces then CRLF (data longer than the size)", chunk_then("  \r\n")},
                         {"CR CR LF", chunk_then("\r\r\n")},
                     },
                     {400}, "bad_request");
  // Chunk extensions and trailer fields are part of the grammar.
  expect_stored(server, "a chunk extension",
                post_with("Transfer-Encoding: chunked\r\n", size + ";name=value\r\n" + kBody + "\r\n0\r\n\r\n"));
  expect_stored(server, "a trailer field",
                post_with("Transfer-Encoding: chunked\r\n", size + "\r\n" + kBody + "\r\n0\r\nX-Trailer: t\r\n\r\n"));
}

TEST_CASE("strict: an endless chunk-size line is cut with 400 after a few KiB and memory stays bounded",
          "[hostile][strict][chunked]") {
  ServerProcess server(long_keep_alive());
  prefill(server, "warmup");
  auto flood = [&](std::string_view what, const std::string& start, char filler) {
    INFO("case: " << what);
    // Kill the server long before it could exhaust the machine.
    RssWatch memory(server.pid(), 4 * rss_growth_bound());
    RawConnection client(server.port(), "127.0.0.1");
    REQUIRE(client.connected());
    REQUIRE(client.send(start));
    const std::string piece(65536, filler);
    std::size_t sent = start.size();
    const auto deadline = Clock::now() + 20s;
    bool answered = false;
    while (sent < (256u << 20) && Clock::now() < deadline && !memory.killed()) {
      if (!client.poll_incoming() || client.buffered().find("\r\n\r\n") != std::string::npos) {
        answered = true;
        break;
      }
      if (!client.send(piece, 200ms)) break;  // the server stopped reading
      sent += piece.size();
    }
    bool closed = false;
    std::string bytes = client.read_to_eof(3s, &closed);
    memory.stop();
    RawResponse res = parse_response(bytes);
    INFO("sent " << (sent >> 10) << " KiB, answered while sending: " << answered << ", server RSS peak growth "
                 << (memory.peak_growth() >> 20) << " MiB, killed for memory: " << memory.killed() << "; received:\n"
                 << bytes.substr(0, 500));
    CHECK(res.status == 400);
    CHECK(check_error_body(res.body, "bad_request") == "");
    CHECK(closed);
    // A few KiB of line plus what the socket buffers held.
    CHECK(sent < (32u << 20));
    CHECK(memory.peak_growth() < rss_growth_bound());
    CHECK(!memory.killed());
  };
  flood("hex digits without end", post_with("Transfer-Encoding: chunked\r\n", "1"), '1');
  flood("a chunk extension without end", post_with("Transfer-Encoding: chunked\r\n", "5;ext="), 'x');
  CHECK(!server.object_exists("homelab", "strict"));
}

TEST_CASE("strict: a chunked body whose last chunk never comes is never stored", "[hostile][strict][chunked]") {
  ServerProcess server({"--request-timeout-s", "3", "--keep-alive-timeout-s", "60"});
  const std::string start = post_with("Transfer-Encoding: chunked\r\n", hex(kBody.size()) + "\r\n" + kBody + "\r\n");
  SECTION("the client ends its side before the last chunk") {
    RawConnection client(server.port(), "127.0.0.1");
    REQUIRE(client.send(start));
    client.shutdown_write();
    bool closed = false;
    std::string bytes = client.read_to_eof(8s, &closed);
    RawResponse res = parse_response(bytes);
    INFO("received:\n" << bytes);
    CHECK(res.status != 200);
    if (res.status != 0) CHECK(res.status == 400);
    CHECK(closed);
  }
  SECTION("the client keeps sending valid one-byte chunks") {
    RawConnection client(server.port(), "127.0.0.1");
    REQUIRE(client.send(start));
    const auto begin = Clock::now();
    bool cut = false;
    while (Clock::now() - begin < 15s) {
      if (!client.poll_incoming() || !client.buffered().empty()) {
        cut = true;
        break;
      }
      if (!client.send("1\r\n \r\n", 200ms)) {
        cut = true;
        break;
      }
      std::this_thread::sleep_for(200ms);
    }
    const auto took = Clock::now() - begin;
    bool closed = false;
    std::string bytes = client.read_to_eof(3s, &closed);
    RawResponse res = parse_response(bytes);
    INFO("cut after " << std::chrono::duration<double>(took).count() << " s; received:\n" << bytes);
    CHECK(cut);
    CHECK(res.status != 200);
    if (res.status != 0) CHECK((res.status == 408 || res.status == 400));
    CHECK(closed);
  }
  CHECK(!server.object_exists("homelab", "strict"));
}

TEST_CASE("strict: body bytes that arrive in pieces on a kept-alive connection are never read as a request",
          "[hostile][strict]") {
  ServerProcess server({"--keep-alive-timeout-s", "60", "--fsync", "never"});
  // Bodies of every framing and of sizes around the connection layer's
  // read sizes, each holding a complete request in its text, sent in two
  // or three pieces with pauses between them, then a second, ordinary
  // request on the same connection. Exactly two answers may come back, the
  // bodies' text is stored as data, and the request inside it never runs.
  const std::string hidden = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + valid_request("smuggled-inside");
  int round = 0;
  for (std::size_t size : {100u, 8000u, 8192u, 9000u, 70000u, 200000u}) {
    for (bool chunked_body : {false, true}) {
      INFO("size " << size << " chunked " << chunked_body);
      std::string text(size, 'x');
      text.replace(size / 2, std::min(hidden.size(), size / 2), hidden.substr(0, size / 2));
      std::string json;
      for (char c : text) {  // as a JSON string: escape CR, LF and quotes
        if (c == '\r')
          json += "\\r";
        else if (c == '\n')
          json += "\\n";
        else if (c == '"')
          json += "\\\"";
        else
          json += c;
      }
      const std::string body = make_body("\"" + json + "\"");
      const std::string key = "pieces" + std::to_string(round++);
      std::string head = "POST " + write_path("homelab", key) +
                         " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
                         (chunked_body ? std::string("Transfer-Encoding: chunked\r\n")
                                       : "Content-Length: " + std::to_string(body.size()) + "\r\n") +
                         "\r\n";
      std::string payload = chunked_body ? hex(body.size()) + "\r\n" + body + "\r\n0\r\n\r\n" : body;
      RawConnection client(server.port(), "127.0.0.1");
      REQUIRE(client.connected());
      const std::size_t cut1 = std::min<std::size_t>(payload.size(), 8192 - std::min<std::size_t>(head.size(), 8000));
      const std::size_t cut2 = cut1 + (payload.size() - cut1) / 2;
      REQUIRE(client.send(head + payload.substr(0, cut1)));
      std::this_thread::sleep_for(50ms);
      REQUIRE(client.send(payload.substr(cut1, cut2 - cut1)));
      std::this_thread::sleep_for(50ms);
      REQUIRE(client.send(payload.substr(cut2)));
      RawResponse first = client.read_response(10s);
      CHECK(first.status == 200);
      REQUIRE(client.send(make_post(write_path("homelab", key + "-after"), make_body("1"))));
      RawResponse second = client.read_response(10s);
      CHECK(second.status == 200);
      CHECK(server.read_object("homelab", key) == "\"" + json + "\"\n");
      CHECK(server.read_object("homelab", key + "-after") == "1\n");
    }
  }
  CHECK(!server.object_exists("homelab", "smuggled-inside"));
}

TEST_CASE("strict: an unknown or overlong method is 501 and closes the connection", "[hostile][strict]") {
  ServerProcess server(long_keep_alive());
  expect_all_refused(server,
                     {
                         {"unknown method", "FOO /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"},
                         {"8200-byte method", std::string(8200, 'G') + " / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"},
                         {"lower-case get", "get /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"},
                     },
                     {501}, "not_implemented");
}
