// The strict HTTP/1.1 framing of writeapi-server (server/http1.h): request
// heads and chunked bodies, accepted exactly as RFC 9112 writes them and
// refused otherwise, whole or arriving a byte at a time.
#include "writeapi/http1.h"

#include <catch2/catch.hpp>
#include <memory>
#include <string>

using namespace writeapi::http1;

namespace {

// The head's views point into the input: it lives as long as the result.
struct Parsed {
  std::unique_ptr<std::string> input;
  HeadResult result;
  RequestHead head;
};

Parsed parse(const std::string& input, std::size_t max_head = 64 * 1024) {
  Parsed p;
  p.input = std::make_unique<std::string>(input);
  std::size_t scan = 0;
  p.result = parse_head(*p.input, max_head, &p.head, &scan);
  return p;
}

// Feeds `input` one byte more at a time, as a slow client sends it; the
// outcome must be the same as for the whole input.
Parsed parse_bytewise(const std::string& input) {
  Parsed p;
  p.input = std::make_unique<std::string>(input);
  std::size_t scan = 0;
  for (std::size_t n = 1; n <= input.size(); ++n) {
    p.result = parse_head(std::string_view(*p.input).substr(0, n), 64 * 1024, &p.head, &scan);
    if (p.result.status != HeadStatus::incomplete) return p;
  }
  return p;
}

HeadStatus status_of(const std::string& head) {
  HeadStatus whole = parse(head).result.status;
  HeadStatus bytewise = parse_bytewise(head).result.status;
  INFO("head: " << head);
  CHECK(whole == bytewise);
  return whole;
}

std::string post(const std::string& fields) {
  return "POST /write/v3/bucket/b/k HTTP/1.1\r\nHost: x\r\n" + fields + "\r\n";
}

struct Decoded {
  ChunkedDecoder::Status status;
  std::string body;
  std::size_t consumed;
  std::string reason;
};

Decoded decode(const std::string& input, std::uint64_t max_body = 1 << 20) {
  ChunkedDecoder decoder(max_body);
  Decoded d;
  d.status = decoder.feed(input, &d.body, &d.consumed);
  d.reason = decoder.reason();
  return d;
}

Decoded decode_bytewise(const std::string& input, std::uint64_t max_body = 1 << 20) {
  ChunkedDecoder decoder(max_body);
  Decoded d{ChunkedDecoder::Status::more, "", 0, ""};
  for (std::size_t i = 0; i < input.size(); ++i) {
    std::size_t used = 0;
    d.status = decoder.feed(std::string_view(input).substr(i, 1), &d.body, &used);
    d.consumed += used;
    if (d.status != ChunkedDecoder::Status::more) break;
  }
  return d;
}

}  // namespace

TEST_CASE("http1: a simple GET and a POST with Content-Length", "[http1]") {
  Parsed p = parse("GET /healthz HTTP/1.1\r\nHost: localhost\r\nUser-Agent: t\r\n\r\n");
  REQUIRE(p.result.status == HeadStatus::complete);
  CHECK(p.head.method == "GET");
  CHECK(p.head.target == "/healthz");
  CHECK(p.head.minor_version == 1);
  CHECK(p.head.framing == BodyFraming::none);
  CHECK(p.head.keep_alive);
  CHECK(!p.head.has_body());
  REQUIRE(p.head.find("user-agent") != nullptr);
  CHECK(p.head.find("user-agent")->value == "t");

  std::string head = post("Content-Type: application/json\r\nContent-Length: 42\r\n");
  p = parse(head + "{body...");
  REQUIRE(p.result.status == HeadStatus::complete);
  CHECK(p.result.head_bytes == head.size());
  CHECK(p.head.framing == BodyFraming::length);
  CHECK(p.head.content_length == 42);
  CHECK(p.head.has_body());
}

TEST_CASE("http1: field values lose surrounding whitespace, keep inner and high bytes", "[http1]") {
  Parsed p = parse(post("X-A: \t  a b\t \r\nX-B:\xc3\xa9t\xc3\xa9\r\nX-C:\r\n"));
  REQUIRE(p.result.status == HeadStatus::complete);
  CHECK(p.head.find("X-A")->value == "a b");
  CHECK(p.head.find("X-B")->value == "\xc3\xa9t\xc3\xa9");
  CHECK(p.head.find("X-C")->value == "");
  CHECK(p.head.count("x-a") == 1);
}

TEST_CASE("http1: an incomplete head waits, empty lines before it are skipped", "[http1]") {
  CHECK(parse("GET / HTTP/1.1\r\nHost: x\r\n").result.status == HeadStatus::incomplete);
  CHECK(parse("GET / HTTP/1.1\r\nHost: x\r\n\r").result.status == HeadStatus::incomplete);
  CHECK(parse("\r\n\r\n").result.status == HeadStatus::incomplete);
  Parsed p = parse("\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
  REQUIRE(p.result.status == HeadStatus::complete);
  CHECK(p.result.head_bytes == 4 + 27);
  CHECK(p.head.target == "/");
}

TEST_CASE("http1: byte-at-a-time arrival gives the same head", "[http1]") {
  std::string head = post("Content-Length: 3\r\nConnection: close\r\n");
  Parsed p = parse_bytewise(head);
  REQUIRE(p.result.status == HeadStatus::complete);
  CHECK(p.result.head_bytes == head.size());
  CHECK(p.head.content_length == 3);
  CHECK(!p.head.keep_alive);
}

TEST_CASE("http1: bare CR or LF anywhere in the head is 400", "[http1]") {
  CHECK(status_of("GET / HTTP/1.1\nHost: x\r\n\r\n") == HeadStatus::bad_request);
  CHECK(status_of("GET / HTTP/1.1\r\nHost: x\n\r\n") == HeadStatus::bad_request);
  CHECK(status_of("GET / HTTP/1.1\r\nHost: x\r\n\n") == HeadStatus::bad_request);
  CHECK(status_of(post("Transfer-Encoding: chunked\n")) == HeadStatus::bad_request);
  CHECK(status_of("GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n") == HeadStatus::bad_request);
  CHECK(status_of("GET /\r HTTP/1.1\r\nHost: x\r\n\r\n") == HeadStatus::bad_request);
  CHECK(status_of("\nGET / HTTP/1.1\r\nHost: x\r\n\r\n") == HeadStatus::bad_request);
  CHECK(status_of("GET / HTTP/1.1\r\nHost: x\r\n\r\r\n") == HeadStatus::bad_request);
}

TEST_CASE("http1: the request line must be exact", "[http1]") {
  CHECK(status_of("GET  / HTTP/1.1\r\nHost: x\r\n\r\n") == HeadStatus::bad_request);
  CHECK(status_of("GET / HTTP/1.1 \r\nHost: x\r\n\r\n") == HeadStatus::bad_request);
  CHECK(status_of("GET /\tx HTTP/1.1\r\nHost: x\r\n\r\n") == HeadStatus::bad_request);
  CHECK(status_of("G(T / HTTP/1.1\r\nHost: x\r\n\r\n") == HeadStatus::bad_request);
  CHECK(status_of(" GET / HTTP/1.1\r\nHost: x\r\n\r\n") == HeadStatus::bad_request);
  CHECK(status_of("GET / http/1.1\r\nHost: x\r\n\r\n") == HeadStatus::bad_request);
  CHECK(status_of("GET / HTTP/1.10\r\nHost: x\r\n\r\n") == HeadStatus::bad_request);
  CHECK(status_of("GET / HTTP/1\r\nHost: x\r\n\r\n") == HeadStatus::bad_request);
  CHECK(status_of("GET /\r\nHost: x\r\n\r\n") == HeadStatus::bad_request);
  CHECK(status_of("GET x HTTP/1.1\r\nHost: x\r\n\r\n") == HeadStatus::bad_request);
  CHECK(status_of("GET * HTTP/1.1\r\nHost: x\r\n\r\n") == HeadStatus::bad_request);
  CHECK(status_of("GET / HTTP/2.0\r\nHost: x\r\n\r\n") == HeadStatus::bad_version);
  CHECK(status_of("GET / HTTP/1.2\r\nHost: x\r\n\r\n") == HeadStatus::bad_version);
  CHECK(status_of("GET / HTTP/0.9\r\nHost: x\r\n\r\n") == HeadStatus::bad_version);
  CHECK(status_of("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n") == HeadStatus::complete);
  CHECK(status_of("GET /" + std::string(kMaxTargetBytes, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n") ==
        HeadStatus::uri_too_long);
}

TEST_CASE("http1: absolute-form targets are reduced to their path", "[http1]") {
  Parsed p = parse("GET http://example.org:8080/write/v3/bucket/b/k?x=1 HTTP/1.1\r\nHost: example.org\r\n\r\n");
  REQUIRE(p.result.status == HeadStatus::complete);
  CHECK(p.head.target == "/write/v3/bucket/b/k?x=1");
  p = parse("GET HTTPS://example.org HTTP/1.1\r\nHost: example.org\r\n\r\n");
  REQUIRE(p.result.status == HeadStatus::complete);
  CHECK(p.head.target == "/");
  CHECK(status_of("GET http:///x HTTP/1.1\r\nHost: x\r\n\r\n") == HeadStatus::bad_request);
  CHECK(status_of("GET http://h?x HTTP/1.1\r\nHost: x\r\n\r\n") == HeadStatus::bad_request);
  CHECK(status_of("GET ftp://h/x HTTP/1.1\r\nHost: x\r\n\r\n") == HeadStatus::bad_request);
}

TEST_CASE("http1: field lines must be token: value", "[http1]") {
  CHECK(status_of(post("Content-Length : 5\r\n")) == HeadStatus::bad_request);
  CHECK(status_of(post("Content-Length\t: 5\r\n")) == HeadStatus::bad_request);
  CHECK(status_of(post(" X: y\r\n")) == HeadStatus::bad_request);        // obs-fold at the start
  CHECK(status_of(post("X: y\r\n z\r\n")) == HeadStatus::bad_request);   // obs-fold
  CHECK(status_of(post("X: y\r\n\tz\r\n")) == HeadStatus::bad_request);  // obs-fold
  CHECK(status_of(post("X(y): z\r\n")) == HeadStatus::bad_request);
  CHECK(status_of(post(": z\r\n")) == HeadStatus::bad_request);
  CHECK(status_of(post("NoColon\r\n")) == HeadStatus::bad_request);
  CHECK(status_of(post(std::string("X: a\0b\r\n", 8))) == HeadStatus::bad_request);
  CHECK(status_of(post("X: a\x01"
                       "b\r\n")) == HeadStatus::bad_request);
  CHECK(status_of(post("X: a\x7f\r\n")) == HeadStatus::bad_request);
  CHECK(status_of(post("X: a\tb\r\n")) == HeadStatus::complete);
  CHECK(status_of(post("X-" + std::string(kMaxFieldLineBytes, 'a') + ": b\r\n")) == HeadStatus::too_large);
  std::string many;
  for (std::size_t i = 0; i < kMaxFields; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
  CHECK(status_of(post(many)) == HeadStatus::too_large);
}

TEST_CASE("http1: Content-Length is digits only, a list of equal values is one value", "[http1]") {
  for (const char* bad :
       {"5%34", "+5", "-1", "0x5", "5 5", "", "5,6", "5, 6", "5,", ",5", "1e3", "5.0", " ", "\xd9\xa5"}) {
    INFO("Content-Length: " << bad);
    CHECK(status_of(post(std::string("Content-Length: ") + bad + "\r\n")) == HeadStatus::bad_request);
  }
  CHECK(status_of(post("Content-Length: 5\r\nContent-Length: 6\r\n")) == HeadStatus::bad_request);
  Parsed p = parse(post("Content-Length: 5, 5\r\nContent-Length: 005\r\n"));
  REQUIRE(p.result.status == HeadStatus::complete);
  CHECK(p.head.content_length == 5);
  p = parse(post("Content-Length: 99999999999999999999999\r\n"));
  REQUIRE(p.result.status == HeadStatus::complete);
  CHECK(p.head.content_length == UINT64_MAX);  // over any size limit
  p = parse(post("Content-Length: 18446744073709551615\r\n"));
  REQUIRE(p.result.status == HeadStatus::complete);
  CHECK(p.head.content_length == UINT64_MAX);
  p = parse(post("Content-Length: 0\r\n"));
  REQUIRE(p.result.status == HeadStatus::complete);
  CHECK(!p.head.has_body());
  // Leading zeros are digits like any other, however many.
  p = parse(post("Content-Length: 000000000000000000117\r\n"));
  REQUIRE(p.result.status == HeadStatus::complete);
  CHECK(p.head.content_length == 117);
  p = parse(post("Content-Length: " + std::string(25, '0') + "\r\n"));
  REQUIRE(p.result.status == HeadStatus::complete);
  CHECK(!p.head.has_body());
  // Values past 64 bits are numbers too: one that differs from another
  // member is a conflict, whichever is larger.
  for (const char* conflict : {"0\r\nContent-Length: 99999999999999999999", "117, 123456789012345678901",
                               "99999999999999999999, 99999999999999999998", "123456789012345678901, 117"}) {
    INFO("Content-Length: " << conflict);
    CHECK(status_of(post(std::string("Content-Length: ") + conflict + "\r\n")) == HeadStatus::bad_request);
  }
  p = parse(post("Content-Length: 99999999999999999999, 099999999999999999999\r\n"));
  REQUIRE(p.result.status == HeadStatus::complete);
  CHECK(p.head.content_length == UINT64_MAX);
}

TEST_CASE("http1: Transfer-Encoding is exactly chunked, never with Content-Length", "[http1]") {
  Parsed p = parse(post("Transfer-Encoding: ChUnKeD\r\n"));
  REQUIRE(p.result.status == HeadStatus::complete);
  CHECK(p.head.framing == BodyFraming::chunked);
  CHECK(p.head.has_body());
  for (const char* other : {"gzip", "identity", "chunked, chunked", "gzip, chunked", "xchunked", "chunked;q=1", ""}) {
    INFO("Transfer-Encoding: " << other);
    CHECK(status_of(post(std::string("Transfer-Encoding: ") + other + "\r\n")) == HeadStatus::not_implemented);
  }
  CHECK(status_of(post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n")) == HeadStatus::not_implemented);
  CHECK(status_of(post("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n")) == HeadStatus::bad_request);
  CHECK(status_of(post("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n")) == HeadStatus::bad_request);
  CHECK(status_of(post("Content-Length: 5\r\nTransfer-Encoding: gzip\r\n")) == HeadStatus::bad_request);
  CHECK(status_of("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n") == HeadStatus::bad_request);
}

TEST_CASE("http1: Host is required once in HTTP/1.1", "[http1]") {
  CHECK(status_of("GET / HTTP/1.1\r\n\r\n") == HeadStatus::bad_request);
  CHECK(status_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") == HeadStatus::bad_request);
  CHECK(status_of("GET / HTTP/1.0\r\n\r\n") == HeadStatus::complete);
  CHECK(status_of("GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n") == HeadStatus::bad_request);
}

TEST_CASE("http1: a Host value is one host and an optional port", "[http1]") {
  for (const char* good : {"", "localhost", "localhost:8080", "127.0.0.1:1", "[::1]", "[::1]:8080", "a-b.c_d~e",
                           "xn--bcher-kva.example", "%41b", "a,b"}) {
    INFO("Host: " << good);
    CHECK(status_of(std::string("GET / HTTP/1.1\r\nHost: ") + good + "\r\n\r\n") == HeadStatus::complete);
  }
  for (const char* bad : {"a, b", "a b", "a/b@c", "user@host", "h:80:80", "h:http", "h:123456", "[::1", "[::1]x",
                          "[zz]", "h?x", "h#x", "%4", "a\\b", ":", ":80", "[]", "[]:80"}) {
    INFO("Host: " << bad);
    CHECK(status_of(std::string("GET / HTTP/1.1\r\nHost: ") + bad + "\r\n\r\n") == HeadStatus::bad_request);
  }
  // userinfo in an absolute-form target is refused too.
  CHECK(status_of("POST http://user:pw@h/write/v3/bucket/b/k HTTP/1.1\r\nHost: h\r\n\r\n") == HeadStatus::bad_request);
  CHECK(status_of("GET http://h/a@b HTTP/1.1\r\nHost: h\r\n\r\n") == HeadStatus::complete);
}

TEST_CASE("http1: a head refused after its framing was read keeps the framing (for the lingering close)", "[http1]") {
  Parsed p = parse(post("Content-Length: 4194304\r\nExpect: 200-ok\r\n"));
  CHECK(p.result.status == HeadStatus::expectation_failed);
  CHECK(p.head.framing == BodyFraming::length);
  CHECK(p.head.content_length == 4194304);
  p = parse("POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n");  // no Host
  CHECK(p.result.status == HeadStatus::bad_request);
  CHECK(p.head.content_length == 10);
  p = parse(post("Content-Length: 5\r\nContent-Length: 6\r\n"));  // framing unknown
  CHECK(p.result.status == HeadStatus::bad_request);
  CHECK(p.head.framing == BodyFraming::none);
}

TEST_CASE("http1: Connection tokens are case-insensitive, HTTP/1.0 closes unless keep-alive", "[http1]") {
  CHECK(!parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n").head.keep_alive);
  CHECK(!parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, CLOSE\r\n\r\n").head.keep_alive);
  CHECK(!parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: te\r\nconnection: close\r\n\r\n").head.keep_alive);
  CHECK(parse("GET / HTTP/1.1\r\nHost: x\r\nConnection: closed\r\n\r\n").head.keep_alive);
  CHECK(!parse("GET / HTTP/1.0\r\n\r\n").head.keep_alive);
  CHECK(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").head.keep_alive);
  CHECK(!parse("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n").head.keep_alive);
}

TEST_CASE("http1: Expect is 100-continue or 417", "[http1]") {
  Parsed p = parse(post("Content-Length: 5\r\nExpect: 100-Continue\r\n"));
  REQUIRE(p.result.status == HeadStatus::complete);
  CHECK(p.head.expect_continue);
  CHECK(status_of(post("Content-Length: 5\r\nExpect: something\r\n")) == HeadStatus::expectation_failed);
  // HTTP/1.0 has no Expect: ignored.
  p = parse("POST / HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
  REQUIRE(p.result.status == HeadStatus::complete);
  CHECK(!p.head.expect_continue);
}

TEST_CASE("http1: a head over the cap is 431, complete or not", "[http1]") {
  std::string big = post("X: " + std::string(5000, 'a') + "\r\nY: " + std::string(5000, 'b') + "\r\n");
  CHECK(parse(big, 4096).result.status == HeadStatus::too_large);
  CHECK(parse(big.substr(0, 6000), 4096).result.status == HeadStatus::too_large);
  CHECK(parse(big, big.size()).result.status == HeadStatus::complete);
  CHECK(parse("GET /" + std::string(70000, 'a'), 64 * 1024).result.status == HeadStatus::too_large);
}

TEST_CASE("http1: chunked bodies decode exactly, whole or a byte at a time", "[http1][chunked]") {
  const std::string body = "5\r\nhello\r\n6;name=value;x=\"q\\\"s\"\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";
  for (bool bytewise : {false, true}) {
    Decoded d = bytewise ? decode_bytewise(body + "NEXT") : decode(body + "NEXT");
    INFO("bytewise " << bytewise << " reason " << d.reason);
    CHECK(d.status == ChunkedDecoder::Status::done);
    CHECK(d.body == "hello world");
    CHECK(d.consumed == body.size());
  }
  Decoded d = decode("A\r\n0123456789\r\nf\r\n0123456789abcde\r\n0\r\n\r\n");
  CHECK(d.status == ChunkedDecoder::Status::done);
  CHECK(d.body.size() == 25);
  d = decode("0000\r\n\r\n");
  CHECK(d.status == ChunkedDecoder::Status::done);
  CHECK(d.body.empty());
  CHECK(decode("5\r\nhel").status == ChunkedDecoder::Status::more);
  CHECK(decode("5\r\nhello\r\n").status == ChunkedDecoder::Status::more);
  CHECK(decode("5\r\nhello\r\n0\r\n").status == ChunkedDecoder::Status::more);
}

TEST_CASE("http1: chunked framing that breaks the grammar is refused", "[http1][chunked]") {
  for (const std::string& bad : {
           std::string("5\r\nhelloXX0\r\n\r\n"),  // data not followed by CRLF
           std::string("5\r\nhello\n0\r\n\r\n"),  // bare LF after data
           std::string("5\r\nhello\rX0\r\n\r\n"),
           std::string("5\nhello\r\n0\r\n\r\n"),  // bare LF after the size
           std::string("5\rhello\r\n0\r\n\r\n"),
           std::string("0x5\r\nhello\r\n0\r\n\r\n"),
           std::string("+5\r\nhello\r\n0\r\n\r\n"),
           std::string("-5\r\nhello\r\n0\r\n\r\n"),
           std::string(" 5\r\nhello\r\n0\r\n\r\n"),
           std::string("5 \r\nhello\r\n0\r\n\r\n"),
           std::string("\r\n5\r\nhello\r\n0\r\n\r\n"),
           std::string("g\r\n"),
           std::string("11111111111111111\r\n"),  // 17 hex digits
           std::string("5;a\x01\r\nhello\r\n0\r\n\r\n"),
           std::string("5;a\nb\r\nhello\r\n0\r\n\r\n"),
           std::string("5;\"unterminated\r\nhello\r\n0\r\n\r\n"),
           std::string("0\r\nNoColon\r\n\r\n"),
           std::string("0\r\n folded: x\r\n\r\n"),
           std::string("0\r\nX: y\n\r\n"),
           std::string("0\r\nX: y\r\n\n"),
           std::string("0\r\n\n"),
           std::string("0\r\nX: \x01\r\n\r\n"),
       }) {
    for (bool bytewise : {false, true}) {
      Decoded d = bytewise ? decode_bytewise(bad) : decode(bad);
      INFO("input " << bad << " bytewise " << bytewise);
      CHECK(d.status == ChunkedDecoder::Status::bad);
    }
  }
  // Endless size lines and trailers are cut, not buffered.
  CHECK(decode(std::string(100000, '0')).status == ChunkedDecoder::Status::bad);
  CHECK(decode("5;" + std::string(100000, 'a')).status == ChunkedDecoder::Status::bad);
  std::string trailers = "0\r\n";
  while (trailers.size() < 100000) trailers += "X: y\r\n";
  CHECK(decode(trailers).status == ChunkedDecoder::Status::bad);
}

TEST_CASE("http1: a chunked body over the cap is too_large before its data is read", "[http1][chunked]") {
  Decoded d = decode("10\r\n0123456789abcdef\r\n0\r\n\r\n", 15);
  CHECK(d.status == ChunkedDecoder::Status::too_large);
  CHECK(d.body.empty());
  d = decode("8\r\n01234567\r\n8\r\n01234567\r\n0\r\n\r\n", 15);
  CHECK(d.status == ChunkedDecoder::Status::too_large);
  CHECK(d.body.size() == 8);
  d = decode("ffffffffffffffff\r\n", 1 << 20);
  CHECK(d.status == ChunkedDecoder::Status::too_large);
  d = decode("8\r\n01234567\r\n7\r\n0123456\r\n0\r\n\r\n", 15);
  CHECK(d.status == ChunkedDecoder::Status::done);
}

TEST_CASE("http1: methods other than the seven served are 501, after the framing is read", "[http1]") {
  for (const char* method : {"TRACE", "CONNECT", "PROPFIND", "FOO", "get", "Post", "PRI"}) {
    INFO(method);
    Parsed p = parse(std::string(method) + " / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n");
    CHECK(p.result.status == HeadStatus::not_implemented);
    CHECK(p.head.content_length == 9);  // known, for the lingering close
  }
  for (const char* method : {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
    CHECK(status_of(std::string(method) + " / HTTP/1.1\r\nHost: x\r\n\r\n") == HeadStatus::complete);
  CHECK(refusal_of(HeadStatus::not_implemented).http_status == 501);
  CHECK(refusal_of(HeadStatus::not_implemented).code == "not_implemented");
  CHECK(refusal_of(HeadStatus::too_large).http_status == 431);
  CHECK(refusal_of(HeadStatus::uri_too_long).http_status == 414);
  CHECK(refusal_of(HeadStatus::bad_version).http_status == 505);
  CHECK(refusal_of(HeadStatus::expectation_failed).http_status == 417);
  CHECK(refusal_of(HeadStatus::bad_request).http_status == 400);
  CHECK(refusal_of(HeadStatus::bad_request).code == "bad_request");
}

TEST_CASE("http1: token characters and case-insensitive comparison", "[http1]") {
  for (char c : std::string("!#$%&'*+-.^_`|~09azAZ")) CHECK(is_token_char(static_cast<unsigned char>(c)));
  for (char c : std::string(" \t\"(),/:;<=>?@[\\]{}\x7f\x80")) CHECK(!is_token_char(static_cast<unsigned char>(c)));
  CHECK(!is_token_char(0));
  CHECK(writeapi::ascii_iequals("Content-Length", "content-LENGTH"));
  CHECK(!writeapi::ascii_iequals("Content-Length", "Content-Lengt"));
  CHECK(!writeapi::ascii_iequals("\xc5", "\xe5"));
}
