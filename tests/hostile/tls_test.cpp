// HTTPS: --tls-cert/--tls-key serve the Write API over TLS; bad or missing
// files stop the server at startup with a clear message; clients that do
// not speak TLS, or never finish the handshake, do not hurt it.
#include <fcntl.h>
#include <httplib.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "hostile_support.h"
#include "server_process.h"

using namespace std::chrono_literals;
using namespace writeapi::testing;

namespace {

std::unique_ptr<httplib::SSLClient> tls_client(const TlsServerProcess& server) {
  auto client = std::make_unique<httplib::SSLClient>("127.0.0.1", server.port());
  client->set_ca_cert_path(server.cert_path().c_str());
  client->enable_server_certificate_verification(true);
  client->set_connection_timeout(5, 0);
  client->set_read_timeout(10, 0);
  return client;
}

}  // namespace

TEST_CASE("hostile: a write over HTTPS with a verified self-signed certificate", "[hostile][tls]") {
  TlsServerProcess server;
  auto client = tls_client(server);
  auto res = client->Post(write_path("homelab", "tls"),
                          make_body("[{\"timestamp\":1584156800,\"temperature\":4.7},4.5]", kAccessKey, "tls-device"),
                          "application/json");
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(check_ok_body(res->body, 2) == "");
  CHECK(server.read_object("homelab", "tls") == "{\"timestamp\":1584156800,\"temperature\":4.7}\n4.5\n");

  // Keep-alive over TLS, and errors keep their shape.
  auto denied = client->Post(write_path("homelab", "tls"), make_body("1", "wrong-key"), "application/json");
  REQUIRE(denied);
  CHECK(denied->status == 403);
  CHECK(check_error_body(denied->body, "access_denied") == "");

  // gzip over TLS.
  httplib::Headers headers = {{"Content-Encoding", "gzip"}};
  auto gzipped =
      client->Post(write_path("homelab", "tls"), headers, gzip_compress(make_body("[7]")), "application/json");
  REQUIRE(gzipped);
  CHECK(gzipped->status == 200);
  CHECK(server.read_object("homelab", "tls") == "{\"timestamp\":1584156800,\"temperature\":4.7}\n4.5\n7\n");
}

TEST_CASE("hostile: plain HTTP and stalled handshakes on the HTTPS port do not stop it", "[hostile][tls]") {
  TlsServerProcess server({"--request-timeout-s", "2", "--read-timeout-s", "2"});
  {
    // Plain HTTP: the handshake fails and the connection is closed.
    RawConnection plain(server.port(), "127.0.0.1");
    REQUIRE(plain.send(make_post(write_path("homelab", "plain"), make_body("1"))));
    CHECK(plain.drain_until_closed(5s));
  }
  {
    // A client that connects and sends nothing is closed by the deadline.
    RawConnection silent(server.port(), "127.0.0.1");
    REQUIRE(silent.connected());
    CHECK(silent.drain_until_closed(6s));
  }
  auto res = tls_client(server)->Post(write_path("homelab", "after"), make_body("1"), "application/json");
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(server.read_object("homelab", "plain").empty());
}

TEST_CASE("hostile: TLS flags fail at startup with a clear message", "[hostile][tls]") {
  TempDir dir;
  const std::string keys = dir.path() + "/keys.json";
  const std::string cert = dir.path() + "/cert.pem";
  const std::string key = dir.path() + "/key.pem";
  write_keys_file(keys);
  write_self_signed_certificate(cert, key);
  const std::vector<std::string> base = {"--port", "0", "--data-dir", dir.path() + "/data", "--keys", keys};
  auto run = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = base;
    args.insert(args.end(), extra.begin(), extra.end());
    return run_server_to_exit(args, 10s);
  };

  SECTION("a certificate without a key") {
    ExitResult r = run({"--tls-cert", cert});
    INFO(r.err);
    CHECK(r.exited);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("--tls-key") != std::string::npos);
  }
  SECTION("a key without a certificate") {
    ExitResult r = run({"--tls-key", key});
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("--tls-cert") != std::string::npos);
  }
  SECTION("a missing key file") {
    ExitResult r = run({"--tls-cert", cert, "--tls-key", dir.path() + "/missing.pem"});
    INFO(r.err);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("cannot read the TLS key") != std::string::npos);
    CHECK(r.err.find("missing.pem") != std::string::npos);
  }
  SECTION("files that are not a certificate and its key") {
    write_file(dir.path() + "/garbage.pem", "not a certificate\n");
    ExitResult r = run({"--tls-cert", dir.path() + "/garbage.pem", "--tls-key", key});
    INFO(r.err);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("cannot load the TLS certificate") != std::string::npos);
  }
  SECTION("a key that does not match the certificate") {
    write_self_signed_certificate(dir.path() + "/other-cert.pem", dir.path() + "/other-key.pem");
    ExitResult r = run({"--tls-cert", cert, "--tls-key", dir.path() + "/other-key.pem"});
    INFO(r.err);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("cannot load the TLS certificate") != std::string::npos);
  }
}

TEST_CASE("hostile: pipelined requests over TLS are all answered, bytes buffered inside TLS included",
          "[hostile][tls]") {
  TlsServerProcess server;
  // 60 requests of ~240 bytes in one TLS write: records of 16 KiB, read 8 KiB
  // at a time, so decrypted bytes wait inside OpenSSL where epoll cannot see
  // them.
  constexpr int kRequests = 60;
  std::string pipeline;
  for (int i = 0; i < kRequests; ++i)
    pipeline += "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + std::string(200, 'a') + "\r\n\r\n";
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  REQUIRE(ctx);
  RawConnection socket(server.port(), "127.0.0.1");
  REQUIRE(socket.connected());
  int flags = ::fcntl(socket.fd(), F_GETFL);
  ::fcntl(socket.fd(), F_SETFL, flags & ~O_NONBLOCK);
  timeval timeout{10, 0};
  ::setsockopt(socket.fd(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, socket.fd());
  REQUIRE(SSL_connect(ssl) == 1);
  REQUIRE(SSL_write(ssl, pipeline.data(), static_cast<int>(pipeline.size())) == static_cast<int>(pipeline.size()));
  std::string received;
  const auto start = std::chrono::steady_clock::now();
  char buffer[16384];
  while (count_status_lines(received) < static_cast<std::size_t>(kRequests) &&
         std::chrono::steady_clock::now() - start < std::chrono::seconds(8)) {
    int n = SSL_read(ssl, buffer, sizeof buffer);
    if (n <= 0) break;
    received.append(buffer, static_cast<std::size_t>(n));
  }
  CHECK(count_status_lines(received) == static_cast<std::size_t>(kRequests));
  CHECK(received.find("408") == std::string::npos);
  SSL_free(ssl);
  SSL_CTX_free(ctx);
}
