// writeapi-asio-server: the Write API on Boost.Asio, a second front end
// over libwriteapi's public headers. The library frames each request
// (writeapi/http1.h: the same strict HTTP/1.1 grammar writeapi-server
// uses), decides it from its head (Ingestor::check_head), runs it without
// blocking (Ingestor::ingest_async: a group commit completes from the
// store's thread) and renders the answer (writeapi/response.h). This file
// moves bytes: sockets, timers, signals.
//
//   writeapi-asio-server --keys keys.json [--host 127.0.0.1] [--port 8080]
//       [--data-dir data] [--fsync always|interval|never] [--max-body BYTES]
//       [--threads N] [--keep-alive-timeout-s S]
//
// SIGINT or SIGTERM: stop accepting, answer the requests in flight (each
// within its deadline), exit 0. SIGHUP, or a change of the keys file:
// reload the keys.
#include <writeapi/auth.h>
#include <writeapi/http1.h>
#include <writeapi/ingest.h>
#include <writeapi/keys_reloader.h>
#include <writeapi/limits.h>
#include <writeapi/names.h>
#include <writeapi/response.h>
#include <writeapi/storage.h>

#include <boost/asio.hpp>

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using writeapi::ErrorCode;
using writeapi::Status;
namespace http1 = writeapi::http1;

namespace {

constexpr std::size_t kMaxHeadBytes = 64 * 1024;
constexpr auto kRequestTimeout = std::chrono::seconds(30);  // a whole request, from its first byte
constexpr std::size_t kKeepBufferBytes = 64 * 1024;         // buffer kept between requests
constexpr auto kLingerTimeout = std::chrono::seconds(2);    // reading a refused body, per read
constexpr long kMaxConnections = 4096;                      // beyond: 503 and close

struct Config {
  std::string host = "127.0.0.1", data_dir = "data", keys, fsync = "always";
  unsigned short port = 8080;
  std::size_t max_body = writeapi::kDefaultMaxBodyBytes;
  unsigned threads = std::max(2u, std::thread::hardware_concurrency());
  std::chrono::seconds keep_alive_timeout{60};
};

struct App {
  writeapi::Ingestor* ingestor = nullptr;
  std::chrono::seconds keep_alive_timeout{60};
  std::atomic<long> connections{0};
  std::atomic<long> requests_in_flight{0};  // from a request's first byte to its answer sent
  std::atomic<bool> stopping{false};
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, App* app) : socket_(std::move(socket)), timer_(socket_.get_executor()), app_(app) {
    app_->connections.fetch_add(1);
  }
  ~Session() {
    in_flight(false);
    app_->connections.fetch_sub(1);
  }

  void start() { next_request(); }

 private:
  // Waits for (or finds, pipelined) the next request's head.
  void next_request() {
    in_.erase(0, used_);
    used_ = 0;
    head_ = http1::RequestHead();
    head_bytes_.clear();
    scan_ = 0;
    phase_ = Phase::head;
    answering_ = false;
    chunked_.reset();
    body_.clear();
    // An idle connection keeps no large buffer (a body's may be --max-body).
    if (body_.capacity() > kKeepBufferBytes) std::string().swap(body_);
    if (in_.capacity() > kKeepBufferBytes && in_.size() <= kKeepBufferBytes) in_.shrink_to_fit();
    if (out_.capacity() > kKeepBufferBytes) std::string().swap(out_);
    if (app_->stopping) return close();
    if (!in_.empty()) return on_bytes();
    arm_timer(app_->keep_alive_timeout, [this] { close(); });
    read();
  }

  void read() {
    socket_.async_read_some(asio::buffer(chunk_), [self = shared_from_this()](error_code ec, std::size_t n) {
      if (self->answering_) return;  // a timeout refused the request meanwhile
      if (ec) return self->close();
      self->in_.append(self->chunk_.data(), n);
      self->on_bytes();
    });
  }

  void on_bytes() {
    if (!busy_) {
      in_flight(true);
      deadline_ = std::chrono::steady_clock::now() + kRequestTimeout;
      arm_request_deadline();
    }
    if (phase_ == Phase::head) return on_head_bytes();
    on_body_bytes();
  }

  void on_head_bytes() {
    http1::HeadResult r = http1::parse_head(in_, kMaxHeadBytes, &head_, &scan_);
    if (r.status == http1::HeadStatus::incomplete) return read();
    if (r.status != http1::HeadStatus::complete) {
      http1::HeadRefusal refusal = http1::refusal_of(r.status);
      return refuse(refusal.http_status, refusal.code, r.reason, linger_limit());
    }
    // The head moves to a buffer of its own (its views re-pointed there), so
    // that body bytes can be dropped from in_ as they are decoded.
    head_bytes_.assign(in_, 0, r.head_bytes);
    in_.erase(0, r.head_bytes);
    scan_ = 0;
    http1::parse_head(head_bytes_, kMaxHeadBytes, &head_, &scan_);
    const std::string_view path = head_.target.substr(0, head_.target.find('?'));
    if ((head_.method == "GET" || head_.method == "HEAD") && path == "/healthz") {
      const bool close_after = !head_.keep_alive || head_.has_body();  // a body stays unread
      out_ = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n";
      out_ += close_after ? "Connection: close\r\n" : connection_header();
      out_ += "\r\n{\"ok\":true}\n";
      linger_left_ = close_after ? linger_limit() : 0;
      return send(close_after);
    }
    // A refusal from the head leaves any body unread: the connection
    // closes after it (lingering), so its bytes are never a request.
    Status status = app_->ingestor->check_head(head_, &bucket_, &key_);
    if (!status.ok()) {
      // Refusing a POST to the write path closes (as writeapi-server does).
      const bool write_post =
          head_.method == "POST" && path.substr(0, writeapi::kWritePathPrefix.size()) == writeapi::kWritePathPrefix;
      const bool close_after = head_.has_body() || write_post || !head_.keep_alive;
      return send_status(status, close_after, 0, false, close_after ? linger_limit() : 0);
    }
    phase_ = Phase::body;
    if (head_.framing == http1::BodyFraming::chunked) chunked_.emplace(app_->ingestor->max_body_bytes());
    if (head_.expect_continue && in_.size() == used_ && head_.has_body()) {
      out_ = "HTTP/1.1 100 Continue\r\n\r\n";
      return write([this] {
        arm_request_deadline();  // the body comes within the request's deadline, or 408
        on_body_bytes();
      });
    }
    on_body_bytes();
  }

  // Takes the body from in_: whole, or de-chunked into body_ (the framing
  // dropped as it goes, so in_ holds at most a read's worth of it).
  void on_body_bytes() {
    std::string_view body;
    if (chunked_) {
      std::size_t consumed = 0;
      auto s = chunked_->feed(in_, &body_, &consumed);
      in_.erase(0, consumed);
      if (s == http1::ChunkedDecoder::Status::bad) return refuse(400, "bad_request", chunked_->reason(), 0);
      if (s == http1::ChunkedDecoder::Status::too_large) return refuse_too_large();
      if (s == http1::ChunkedDecoder::Status::more) return read();
      body = body_;
    } else {
      if (in_.size() < head_.content_length) return read();
      body = std::string_view(in_).substr(0, head_.content_length);
      used_ = head_.content_length;
    }
    writeapi::IngestRequest request;
    request.bucket = bucket_;
    request.key = key_;
    if (const http1::Field* f = head_.find("Content-Type")) request.content_type = f->value;
    if (const http1::Field* f = head_.find("Content-Encoding")) request.content_encoding = f->value;
    if (const http1::Field* f = head_.find("Idempotency-Key")) request.idempotency_key = f->value;
    request.body = body;
    disarm_timer();  // the store's part has no deadline of ours
    // The answer may come from the store's thread: back to this
    // connection's strand before touching it.
    app_->ingestor->ingest_async(
        request, [self = shared_from_this()](const Status& status, const writeapi::IngestResult& result) {
          asio::post(self->socket_.get_executor(), [self, status, items = result.items, dup = result.duplicate] {
            self->send_status(status, !self->head_.keep_alive, items, dup, 0);
          });
        });
  }

  void refuse_too_large() {
    writeapi::WriteHead over;  // the library's own refusal, as for a declared length
    over.target = head_.target;
    over.content_length = app_->ingestor->max_body_bytes() + 1;
    send_status(app_->ingestor->check_head(over, &bucket_, &key_), true, 0, false, 0);
  }

  void refuse(int http_status, std::string_view code, std::string_view message, std::size_t linger) {
    out_.clear();
    writeapi::append_error_response(http_status, code, message, "Connection: close\r\n", &out_);
    linger_left_ = linger;
    send(true);
  }

  // What lingering reads after leaving a body unread: the declared rest.
  std::size_t linger_limit() const {
    const std::size_t max = app_->ingestor->max_body_bytes() + (1u << 20);
    if (head_.framing == http1::BodyFraming::length) return std::min<std::uint64_t>(head_.content_length, max) + 65536;
    return head_.framing == http1::BodyFraming::chunked ? max : 65536;
  }

  std::string_view connection_header() const {
    if (!head_.keep_alive || app_->stopping) return "Connection: close\r\n";
    return head_.minor_version == 0 ? "Connection: keep-alive\r\n" : "";
  }

  void send_status(const Status& status, bool close_after, std::size_t items, bool duplicate, std::size_t linger) {
    out_.clear();
    close_after = close_after || !head_.keep_alive || app_->stopping;
    writeapi::append_write_response(status, items, close_after ? "Connection: close\r\n" : connection_header(), &out_,
                                    duplicate);
    linger_left_ = linger;
    send(close_after);
  }

  void send(bool close_after) {
    answering_ = true;
    if (head_.method == "HEAD") out_.resize(out_.find("\r\n\r\n") + 4);
    write([this, close_after] {
      in_flight(false);
      if (!close_after) return next_request();
      error_code ignored;
      socket_.shutdown(tcp::socket::shutdown_send, ignored);
      linger();
    });
  }

  template <typename Then>
  void write(Then then) {
    arm_timer(kRequestTimeout, [this] { close(); });
    asio::async_write(socket_, asio::buffer(out_), [self = shared_from_this(), then](error_code ec, std::size_t) {
      if (ec) return self->close();
      then();
    });
  }

  // Reads and drops what the client still sends (a refused body), for a
  // bounded time and size, so that its answer is not lost to a reset.
  void linger() {
    arm_timer(kLingerTimeout, [this] { close(); });
    socket_.async_read_some(asio::buffer(chunk_), [self = shared_from_this()](error_code ec, std::size_t n) {
      if (ec || n >= self->linger_left_) return self->close();
      self->linger_left_ -= n;
      self->linger();
    });
  }

  // One timer per connection; a wait armed before the last arm or disarm
  // does nothing even when its expiry was already queued (cancel() cannot
  // take that back).
  template <typename Expired>
  void arm_timer(std::chrono::steady_clock::time_point at, Expired expired) {
    timer_.expires_at(at);
    timer_.async_wait([self = shared_from_this(), expired, generation = ++timer_generation_](error_code ec) {
      if (!ec && generation == self->timer_generation_) expired();
    });
  }
  template <typename Expired>
  void arm_timer(std::chrono::seconds after, Expired expired) {
    arm_timer(std::chrono::steady_clock::now() + after, expired);
  }
  void disarm_timer() {
    ++timer_generation_;
    timer_.cancel();
  }

  void arm_request_deadline() {
    arm_timer(deadline_, [this] {
      error_code ignored;
      socket_.cancel(ignored);  // the pending read
      refuse(408, "bad_request", "the request was not received in time", 0);
    });
  }

  void close() {
    error_code ignored;
    disarm_timer();
    socket_.close(ignored);
  }

  void in_flight(bool busy) {
    if (busy != busy_) app_->requests_in_flight.fetch_add(busy ? 1 : -1);
    busy_ = busy;
  }

  enum class Phase { head, body };
  tcp::socket socket_;
  asio::steady_timer timer_;
  App* app_;
  std::array<char, 16 * 1024> chunk_;
  std::string in_;          // bytes received and not yet taken
  std::string head_bytes_;  // the request's head; head_'s views point into it
  std::size_t used_ = 0;    // bytes of in_ the request's body takes
  std::size_t scan_ = 0;
  http1::RequestHead head_;
  Phase phase_ = Phase::head;
  std::optional<http1::ChunkedDecoder> chunked_;
  std::string body_, bucket_, key_, out_;
  std::size_t linger_left_ = 0;
  std::chrono::steady_clock::time_point deadline_{};  // of the request in progress
  std::uint64_t timer_generation_ = 0;
  bool busy_ = false, answering_ = false;
};

void accept(tcp::acceptor* acceptor, App* app, asio::steady_timer* backoff) {
  acceptor->async_accept(asio::make_strand(acceptor->get_executor()),
                         [acceptor, app, backoff](error_code ec, tcp::socket socket) {
                           if (!acceptor->is_open()) return;
                           if (ec) {  // out of descriptors: try again shortly instead of spinning
                             backoff->expires_after(std::chrono::milliseconds(100));
                             return backoff->async_wait([=](error_code) { accept(acceptor, app, backoff); });
                           }
                           if (app->connections.load() >= kMaxConnections) {
                             std::string answer;
                             writeapi::append_error_response(503, "server_busy", "too many connections; retry later",
                                                             "Connection: close\r\nRetry-After: 1\r\n", &answer);
                             error_code ignored;
                             socket.write_some(asio::buffer(answer), ignored);
                           } else {
                             std::make_shared<Session>(std::move(socket), app)->start();
                           }
                           accept(acceptor, app, backoff);
                         });
}

[[noreturn]] void usage(const char* problem) {
  std::fprintf(stderr,
               "writeapi-asio-server: %s\nusage: writeapi-asio-server --keys FILE [--host ADDR] [--port N] "
               "[--data-dir DIR] [--fsync always|interval|never] [--max-body BYTES] [--threads N] "
               "[--keep-alive-timeout-s S]\n",
               problem);
  std::exit(2);
}

Config parse_flags(int argc, char** argv) {
  Config config;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help") usage("the Write API on Boost.Asio");
    if (i + 1 >= argc) usage(("missing value for " + flag).c_str());
    std::string value = argv[++i];
    auto number = [&](unsigned long long min, unsigned long long max) {
      char* end = nullptr;
      errno = 0;
      unsigned long long n = std::strtoull(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || errno != 0 || n < min || n > max || value[0] == '-')
        usage((flag + " is a number from " + std::to_string(min) + " to " + std::to_string(max) +
               (max == writeapi::kMaxBodyBytesLimit ? ": at most 1073741824 bytes (1 GiB)" : ""))
                  .c_str());
      return n;
    };
    if (flag == "--host")
      config.host = value;
    else if (flag == "--port")
      config.port = static_cast<unsigned short>(number(0, 65535));
    else if (flag == "--data-dir")
      config.data_dir = value;
    else if (flag == "--keys")
      config.keys = value;
    else if (flag == "--fsync")
      config.fsync = value;
    else if (flag == "--max-body")
      config.max_body = number(1, writeapi::kMaxBodyBytesLimit);
    else if (flag == "--threads")
      config.threads = static_cast<unsigned>(number(1, 256));
    else if (flag == "--keep-alive-timeout-s")
      config.keep_alive_timeout = std::chrono::seconds(number(1, 3600));
    else
      usage(("unknown flag " + flag).c_str());
  }
  if (config.keys.empty()) usage("--keys is required");
  if (config.fsync != "always" && config.fsync != "interval" && config.fsync != "never")
    usage("--fsync must be always, interval or never");
  return config;
}

}  // namespace

int main(int argc, char** argv) {
  Config config = parse_flags(argc, argv);
  Status status;
  writeapi::DeviceLimiter limiter;
  auto keys = writeapi::make_keys_file_authorizer(config.keys, &limiter, &status);
  if (!keys) return std::fprintf(stderr, "writeapi-asio-server: %s\n", status.message().c_str()), 1;
  writeapi::FileStorageOptions storage_options;
  storage_options.data_dir = config.data_dir;
  storage_options.fsync = config.fsync == "always"     ? writeapi::FsyncPolicy::always
                          : config.fsync == "interval" ? writeapi::FsyncPolicy::interval
                                                       : writeapi::FsyncPolicy::never;
  // Destroyed in reverse: the store before the io_context (a write it
  // completes while stopping still posts its answer to a live, stopped
  // context), the io_context (and the connections its handlers hold)
  // before the App they count in.
  App app;
  app.keep_alive_timeout = config.keep_alive_timeout;
  asio::io_context io(static_cast<int>(config.threads));
  auto storage = writeapi::make_file_storage(storage_options, &status);
  if (!storage) return std::fprintf(stderr, "writeapi-asio-server: %s\n", status.message().c_str()), 1;
  writeapi::IngestOptions ingest_options;
  ingest_options.max_body_bytes = config.max_body;
  writeapi::Ingestor ingestor(keys.get(), &limiter, storage.get(), ingest_options);
  app.ingestor = &ingestor;
  writeapi::KeysReloader reloader(keys.get());

  tcp::acceptor acceptor(io);
  try {
    tcp::endpoint endpoint(asio::ip::make_address(config.host), config.port);
    acceptor.open(endpoint.protocol());
    acceptor.set_option(asio::socket_base::reuse_address(true));
    acceptor.bind(endpoint);
    acceptor.listen(asio::socket_base::max_listen_connections);
  } catch (const std::exception& e) {
    return std::fprintf(stderr, "writeapi-asio-server: cannot listen on %s:%u: %s\n", config.host.c_str(),
                        static_cast<unsigned>(config.port), e.what()),
           1;
  }
  std::fprintf(stderr, "writeapi-asio-server: listening on http://%s:%u (%u threads, fsync %s)\n", config.host.c_str(),
               static_cast<unsigned>(acceptor.local_endpoint().port()), config.threads, config.fsync.c_str());
  asio::steady_timer backoff(io);
  accept(&acceptor, &app, &backoff);

  // Stop: no new connections or requests; once the requests in flight are
  // answered (each within its deadline), stop the loop, which drops idle
  // keep-alive connections.
  asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  asio::steady_timer drain(io);
  std::chrono::steady_clock::time_point give_up;
  std::function<void()> wait_drained = [&] {
    if (app.requests_in_flight.load() == 0 || std::chrono::steady_clock::now() - give_up > 2 * kRequestTimeout)
      return io.stop();
    drain.expires_after(std::chrono::milliseconds(10));
    drain.async_wait([&](error_code) { wait_drained(); });
  };
  std::function<void(error_code, int)> on_signal = [&](error_code ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      (void)reloader.reload("SIGHUP");  // it logs the outcome
      return signals.async_wait(on_signal);
    }
    std::fprintf(stderr, "writeapi-asio-server: %s: finishing the requests in flight\n",
                 sig == SIGTERM ? "SIGTERM" : "SIGINT");
    app.stopping = true;
    give_up = std::chrono::steady_clock::now();
    acceptor.close();
    wait_drained();
  };
  signals.async_wait(on_signal);
  std::vector<std::thread> threads;
  for (unsigned i = 1; i < config.threads; ++i) threads.emplace_back([&] { io.run(); });
  io.run();
  for (auto& t : threads) t.join();
  return 0;
}
