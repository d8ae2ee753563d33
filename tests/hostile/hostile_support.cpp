#include "hostile_support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace writeapi::testing {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

}  // namespace

std::size_t resident_bytes(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0)
      return static_cast<std::size_t>(std::strtoull(line.c_str() + 6, nullptr, 10)) * 1024;
  }
  return 0;
}

std::size_t thread_count(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) return static_cast<std::size_t>(std::strtoull(line.c_str() + 8, nullptr, 10));
  }
  return 0;
}

std::uint64_t open_files_soft_limit(pid_t pid) {
  std::ifstream limits("/proc/" + std::to_string(pid) + "/limits");
  std::string line;
  while (std::getline(limits, line)) {
    // "Max open files            1024                 4096                 files"
    if (line.rfind("Max open files", 0) == 0) return std::strtoull(line.c_str() + 14, nullptr, 10);
  }
  return 0;
}

std::uint64_t raise_own_open_files_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
    ::getrlimit(RLIMIT_NOFILE, &limit);
  }
  return limit.rlim_cur;
}

std::size_t rss_growth_bound() { return (address_sanitizer_build() ? 640u : 150u) << 20; }

// ---------------------------------------------------------------------------
// Responses on the wire

std::size_t count_status_lines(std::string_view bytes) {
  std::size_t count = 0;
  for (std::size_t at = 0; at < bytes.size();) {
    if (bytes.compare(at, 7, "HTTP/1.") == 0) ++count;
    std::size_t nl = bytes.find('\n', at);
    if (nl == std::string_view::npos) break;
    at = nl + 1;
  }
  return count;
}

RawResponse parse_response(std::string_view bytes) {
  RawResponse response;
  std::size_t head_end = bytes.find("\r\n\r\n");
  if (head_end == std::string_view::npos) {
    response.raw = std::string(bytes);
    return response;
  }
  parse_response_head(bytes.substr(0, head_end), &response);
  std::string_view rest = bytes.substr(head_end + 4);
  std::size_t length = rest.size();
  if (std::string n = response.header("content-length"); !n.empty()) length = std::strtoull(n.c_str(), nullptr, 10);
  if (response.status >= 100 && response.status < 200) length = 0;
  response.body = std::string(rest.substr(0, std::min(length, rest.size())));
  response.raw = std::string(bytes.substr(0, head_end + 4)) + response.body;
  return response;
}

Exchange exchange_to_eof(int port, std::string_view request, std::chrono::milliseconds timeout, const char* source_ip) {
  Exchange exchange;
  RawConnection client(port, source_ip);
  if (!client.connected()) return exchange;
  const auto deadline = Clock::now() + timeout;
  // Send and read at once: a server that answers early and stops reading
  // must not stall the send.
  std::string_view left = request;
  while (!left.empty() && Clock::now() < deadline) {
    std::size_t piece = std::min<std::size_t>(left.size(), 65536);
    if (!client.send(left.substr(0, piece), 200ms)) break;
    left.remove_prefix(piece);
    if (!client.poll_incoming()) break;
  }
  auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  exchange.bytes = client.read_to_eof(std::max(remaining, std::chrono::milliseconds(100)), &exchange.closed);
  exchange.first = parse_response(exchange.bytes);
  exchange.status_lines = count_status_lines(exchange.bytes);
  return exchange;
}

// ---------------------------------------------------------------------------
// RssWatch

RssWatch::RssWatch(pid_t pid, std::size_t kill_growth) : pid_(pid), baseline_(resident_bytes(pid)) {
  thread_ = std::thread([this, kill_growth] {
    while (!stop_.load()) {
      std::size_t now = resident_bytes(pid_);
      if (now > baseline_) {
        std::size_t growth = now - baseline_;
        if (growth > peak_growth_.load()) peak_growth_ = growth;
        if (growth > kill_growth && !killed_.load()) {
          ::kill(pid_, SIGKILL);
          killed_ = true;
        }
      }
      std::this_thread::sleep_for(10ms);
    }
  });
}

RssWatch::~RssWatch() { stop(); }

void RssWatch::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

// ---------------------------------------------------------------------------
// Certificates

void write_self_signed_certificate(const std::string& cert_path, const std::string& key_path) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  if (!key || !cert) throw std::runtime_error("OpenSSL: cannot create a key or certificate");
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 24 * 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* san = X509V3_EXT_conf_nid(nullptr, &context, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
  if (!san || X509_add_ext(cert, san, -1) != 1) throw std::runtime_error("OpenSSL: cannot add subjectAltName");
  X509_EXTENSION_free(san);
  if (X509_sign(cert, key, EVP_sha256()) == 0) throw std::runtime_error("OpenSSL: cannot sign the certificate");

  std::FILE* out = std::fopen(cert_path.c_str(), "w");
  bool ok = out && PEM_write_X509(out, cert) == 1;
  if (out) std::fclose(out);
  out = std::fopen(key_path.c_str(), "w");
  ok = ok && out && PEM_write_PrivateKey(out, key, nullptr, nullptr, 0, nullptr, nullptr) == 1;
  if (out) std::fclose(out);
  X509_free(cert);
  EVP_PKEY_free(key);
  if (!ok) throw std::runtime_error("cannot write " + cert_path + " or " + key_path);
}

// ---------------------------------------------------------------------------
// TlsServerProcess

TlsServerProcess::TlsServerProcess(std::vector<std::string> extra_args) {
  ::signal(SIGPIPE, SIG_IGN);
  data_dir_ = root_.path() + "/data";
  keys_path_ = root_.path() + "/keys.json";
  cert_path_ = root_.path() + "/cert.pem";
  key_path_ = root_.path() + "/key.pem";
  stderr_path_ = root_.path() + "/stderr.log";
  write_keys_file(keys_path_);
  write_self_signed_certificate(cert_path_, key_path_);

  std::vector<std::string> args = {server_binary(), "--port",     "0",        "--host",    "127.0.0.1",
                                   "--data-dir",    data_dir_,    "--keys",   keys_path_,  "--access-log",
                                   "off",           "--tls-cert", cert_path_, "--tls-key", key_path_};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    int null_fd = ::open("/dev/null", O_RDWR);
    int err = ::open(stderr_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (null_fd < 0 || err < 0) ::_exit(126);
    ::dup2(null_fd, 0);
    ::dup2(null_fd, 1);
    ::dup2(err, 2);
    for (int fd = 3; fd < 1024; ++fd) ::close(fd);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }

  const auto deadline = Clock::now() + 10s;
  const std::string marker = "listening on https://127.0.0.1:";
  while (port_ < 0) {
    std::string err = stderr_contents();
    port_ = announced_port(err, marker);
    int status;
    if (port_ < 0 && ::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("writeapi-server exited during startup; stderr:\n" + err);
    }
    if (port_ < 0 && Clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
      throw std::runtime_error("writeapi-server did not announce an https port; stderr:\n" + err);
    }
    if (port_ < 0) std::this_thread::sleep_for(5ms);
  }
  httplib::SSLClient probe("127.0.0.1", port_);
  probe.set_ca_cert_path(cert_path_.c_str());
  probe.enable_server_certificate_verification(true);
  probe.set_connection_timeout(1, 0);
  probe.set_read_timeout(1, 0);
  for (;;) {
    auto res = probe.Get("/healthz");
    if (res && res->status == 200) break;
    if (Clock::now() > deadline)
      throw std::runtime_error("no GET /healthz 200 over TLS; stderr:\n" + stderr_contents());
    std::this_thread::sleep_for(10ms);
  }
}

TlsServerProcess::~TlsServerProcess() {
  if (pid_ < 0) return;
  ::kill(pid_, SIGTERM);
  int status = 0;
  auto deadline = Clock::now() + 15s;
  while (::waitpid(pid_, &status, WNOHANG) != pid_) {
    if (Clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
  if (std::uncaught_exceptions() == 0) {
    INFO("server stderr:\n" << stderr_contents());
    CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 0));
  }
}

std::string TlsServerProcess::read_object(std::string_view bucket, std::string_view key) const {
  return read_file(data_dir_ + "/" + std::string(bucket) + "/" + std::string(key) + ".jsonl");
}

}  // namespace writeapi::testing
