// Refusals every client can read. A client that sends its whole body before
// reading (Python's http.client, requests, Node's http) must get the JSON
// refusal, not a reset: the server keeps reading and discarding for a
// bounded time and size after refusing (lingering close). And a head that
// already decides the answer gets it at once under "Expect: 100-continue",
// without a "100 Continue" first.
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "../integration/checks.h"
#include "hostile_checks.h"
#include "hostile_support.h"
#include "server_process.h"

using namespace std::chrono_literals;
using namespace writeapi::testing;

namespace {

// Sends one POST of an 11 MiB JSON body with http.client (Content-Length,
// whole body sent before the response is read) and prints what happened:
// "STATUS <code>" and "BODY <body>", or "EXCEPTION <type> <message>".
constexpr const char* kSendBeforeRead = R"PY(
import http.client, sys
port, target, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
body = b'{"accessKey":"' + key.encode() + b'","data":"' + b'a' * (11 * 1024 * 1024) + b'"}'
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
try:
    conn.request("POST", target, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    print("STATUS", response.status)
    print("BODY", data.decode("utf-8", "replace"))
except Exception as e:
    print("EXCEPTION", type(e).__name__, e)
sys.stdout.flush()
)PY";

bool have_python() { return std::system("python3 -c 'import http.client' >/dev/null 2>&1") == 0; }

// Runs `script` with python3 and the arguments (bounded by `timeout` s);
// returns its standard output and error.
std::string run_python(const std::string& script_path, const std::vector<std::string>& args, int timeout_seconds) {
  std::string command = "timeout " + std::to_string(timeout_seconds) + " python3 " + script_path;
  for (const auto& a : args) command += " '" + a + "'";
  command += " 2>&1";
  std::string output;
  if (FILE* pipe = ::popen(command.c_str(), "r")) {
    char buffer[4096];
    std::size_t n;
    while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
    int status = ::pclose(pipe);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 124)
      output += "\n(timed out after " + std::to_string(timeout_seconds) + " s)";
  }
  return output;
}

std::string line_after(const std::string& output, const std::string& prefix) {
  for (const auto& line : split_lines(output))
    if (line.rfind(prefix, 0) == 0) return line.substr(prefix.size());
  return "";
}

}  // namespace

TEST_CASE("refusals: Python http.client sending an 11 MiB body first reads the 413", "[hostile][refusals][python]") {
  if (!have_python()) {
    WARN("python3 with http.client is not available; skipped");
    return;
  }
  ServerProcess server(long_keep_alive());
  TempDir dir;
  const std::string script = dir.path() + "/send_before_read.py";
  write_file(script, kSendBeforeRead);
  // Two rounds: a reset races with the answer, so one lucky round proves
  // little.
  for (int round = 0; round < 2; ++round) {
    std::string output =
        run_python(script, {std::to_string(server.port()), write_path("homelab", "big"), std::string(kAccessKey)}, 25);
    INFO("round " << round << ", python output:\n" << output.substr(0, 2000));
    CHECK(line_after(output, "EXCEPTION ") == "");
    CHECK(line_after(output, "STATUS ") == "413");
    CHECK(check_error_body(line_after(output, "BODY "), "payload_too_large") == "");
  }
  CHECK(!server.object_exists("homelab", "big"));
  prefill(server, "after");
}

TEST_CASE("refusals: a raw client sending 11 MiB before reading gets the whole 413", "[hostile][refusals]") {
  ServerProcess server(long_keep_alive());
  const std::string body(11u << 20, ' ');
  RawConnection client(server.port(), "127.0.0.1");
  REQUIRE(client.connected());
  bool sent = client.send("POST " + write_path("homelab", "big") +
                              " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: " +
                              std::to_string(body.size()) + "\r\n\r\n" + body,
                          20s);
  bool closed = false;
  std::string bytes = client.read_to_eof(5s, &closed);
  RawResponse res = parse_response(bytes);
  INFO("whole body sent: " << sent << "; received:\n" << bytes.substr(0, 800));
  CHECK(sent);
  CHECK(res.status == 413);
  CHECK(check_error_body(res.body, "payload_too_large") == "");
  CHECK(closed);
  CHECK(count_status_lines(bytes) == 1);
}

TEST_CASE("refusals: Expect 100-continue on a head that decides a refusal gets the final status only",
          "[hostile][refusals][expect]") {
  ServerProcess server(long_keep_alive());
  const std::string body = make_body("1");
  auto head = [&](std::string_view target, std::string_view lines, std::size_t length) {
    return "POST " + std::string(target) + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + std::string(lines) +
           "Expect: 100-continue\r\nContent-Length: " + std::to_string(length) + "\r\n\r\n";
  };
  const std::string target = write_path("homelab", "expect");
  struct Case {
    std::string what, request;
    int status;
    std::string code;
  };
  const std::vector<Case> cases = {
      {"Content-Length over --max-body", head(target, "Content-Type: application/json\r\n", 11u << 20), 413,
       "payload_too_large"},
      {"wrong Content-Type", head(target, "Content-Type: text/plain\r\n", body.size()), 415, "unsupported_media_type"},
      {"no Content-Type", head(target, "", body.size()), 415, "unsupported_media_type"},
      {"unsupported Content-Encoding",
       head(target, "Content-Type: application/json\r\nContent-Encoding: br\r\n", body.size()), 415,
       "unsupported_encoding"},
      {"invalid bucket name", head("/write/v3/bucket/bad$name/k", "Content-Type: application/json\r\n", body.size()),
       400, "invalid_name"},
      {"unknown path", head("/nope", "Content-Type: application/json\r\n", body.size()), 404, "not_found"},
  };
  for (const auto& c : cases) {
    INFO("case: " << c.what);
    RawConnection client(server.port(), "127.0.0.1");
    REQUIRE(client.connected());
    REQUIRE(client.send(c.request));
    // The body is withheld, as a client waiting for 100 Continue does: the
    // final answer must come on the head alone.
    bool closed = false;
    std::string bytes = client.read_to_eof(3s, &closed);
    RawResponse res = parse_response(bytes);
    INFO("received:\n" << bytes.substr(0, 800));
    CHECK(bytes.find("100 Continue") == std::string::npos);
    CHECK(res.status == c.status);
    CHECK(check_error_body(res.body, c.code) == "");
    CHECK(count_status_lines(bytes) == 1);
    CHECK(closed);
  }
  CHECK(!server.object_exists("homelab", "expect"));
}

TEST_CASE("refusals: Expect 100-continue on an acceptable head gets 100 Continue, then 200 after the body",
          "[hostile][refusals][expect]") {
  ServerProcess server(long_keep_alive());
  const std::string body = make_body("1");
  RawConnection client(server.port(), "127.0.0.1");
  REQUIRE(client.connected());
  REQUIRE(client.send("POST " + write_path("homelab", "expect") +
                      " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nExpect: 100-continue\r\n"
                      "Content-Length: " +
                      std::to_string(body.size()) + "\r\n\r\n"));
  RawResponse interim = client.read_response(3s);
  INFO("interim:\n" << interim.raw);
  REQUIRE(interim.status == 100);
  CHECK(interim.raw == "HTTP/1.1 100 Continue\r\n\r\n");
  REQUIRE(client.send(body));
  RawResponse final_response = client.read_response(3s);
  INFO("final:\n" << final_response.raw);
  CHECK(final_response.status == 200);
  CHECK(check_ok_body(final_response.body, 1) == "");
  CHECK(server.read_object("homelab", "expect") == "1\n");
}

namespace {

// Sends `head` and a body of `body_bytes` whole before reading anything,
// as http.client does, then reads to the close: the one answer must be
// `status` with the JSON error `code`, and every byte must have been taken
// (a reset would fail the send or destroy the answer).
void expect_read_after_sending(int port, const char* source_ip, const std::string& head, std::size_t body_bytes,
                               int status, std::string_view code, std::string_view what) {
  INFO("case: " << what);
  RawConnection client(port, source_ip);
  REQUIRE(client.connected());
  bool sent = client.send(head + std::string(body_bytes, ' '), 20s);
  bool closed = false;
  std::string bytes = client.read_to_eof(5s, &closed);
  RawResponse res = parse_response(bytes);
  INFO("whole body sent: " << sent << "; received:\n" << bytes.substr(0, 800));
  CHECK(sent);
  CHECK(res.status == status);
  CHECK(check_error_body(res.body, code) == "");
  CHECK(closed);
  CHECK(count_status_lines(bytes) == 1);
}

std::string post_head(const std::string& fields) {
  return "POST " + write_path("homelab", "sent-first") + " HTTP/1.1\r\nContent-Type: application/json\r\n" + fields +
         "\r\n";
}

}  // namespace

TEST_CASE("refusals: heads the grammar refuses after their framing linger for the whole body", "[hostile][refusals]") {
  ServerProcess server(long_keep_alive());
  const std::size_t size = 8u << 20;  // far more than socket buffers hold
  const std::string length = "Content-Length: " + std::to_string(size) + "\r\n";
  expect_read_after_sending(server.port(), "127.0.0.1", post_head("Host: x\r\nExpect: 200-ok\r\n" + length), size, 417,
                            "bad_request", "Expect other than 100-continue");
  expect_read_after_sending(server.port(), "127.0.0.1", post_head(length), size, 400, "bad_request", "no Host");
  expect_read_after_sending(server.port(), "127.0.0.1", post_head("Host: x\r\nHost: y\r\n" + length), size, 400,
                            "bad_request", "two Host fields");
  expect_read_after_sending(server.port(), "127.0.0.1", post_head("Host: a, b\r\n" + length), size, 400, "bad_request",
                            "a list as Host");
  // A chunked body after an unsupported coding: read up to the linger cap.
  std::string chunked_body = "800000\r\n" + std::string(8u << 20, 'x') + "\r\n0\r\n\r\n";
  expect_read_after_sending(server.port(), "127.0.0.1",
                            post_head("Host: x\r\nTransfer-Encoding: gzip, chunked\r\n") + chunked_body, 0, 501,
                            "not_implemented", "Transfer-Encoding gzip, chunked");
  CHECK(!server.object_exists("homelab", "sent-first"));
  prefill(server, "after");
}

TEST_CASE("refusals: connections refused at accept linger, so a client that sends first reads the refusal",
          "[hostile][refusals]") {
  const std::size_t size = 8u << 20;
  const std::string head = post_head("Host: x\r\nContent-Length: " + std::to_string(size) + "\r\n");
  {
    std::vector<std::string> args = long_keep_alive();
    args.insert(args.end(), {"--max-connections-per-ip", "1"});
    ServerProcess server(args);
    RawConnection holder(server.port(), "127.0.0.2");
    REQUIRE(holder.connected());
    REQUIRE(holder.send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    REQUIRE(holder.read_response(5s).status == 200);  // the address's one connection, kept open
    for (int round = 0; round < 2; ++round)
      expect_read_after_sending(server.port(), "127.0.0.2", head, size, 429, "rate_limited", "per-address cap");
    prefill(server, "after-cap");  // another address is served meanwhile
  }
  {
    std::vector<std::string> args = long_keep_alive();
    args.insert(args.end(), {"--max-connections", "1"});
    ServerProcess server(args);
    // The fixture's readiness probe may still hold the one connection for
    // a moment after it closed its end.
    std::unique_ptr<RawConnection> holder;
    for (int attempt = 0; attempt < 200; ++attempt) {
      holder = std::make_unique<RawConnection>(server.port(), "127.0.0.2");
      REQUIRE(holder->connected());
      REQUIRE(holder->send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
      if (holder->read_response(5s).status == 200) break;
      holder.reset();
      std::this_thread::sleep_for(10ms);
    }
    REQUIRE(holder);
    for (int round = 0; round < 2; ++round)
      expect_read_after_sending(server.port(), "127.0.0.3", head, size, 503, "server_busy", "capacity");
  }
}
