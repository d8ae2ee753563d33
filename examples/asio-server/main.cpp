// writeapi-asio-server: the Write API on Boost.Beast and Asio, a second
// front end over libwriteapi's public headers. The library decides every
// request from its head (Ingestor::check_head), runs it without blocking
// (Ingestor::ingest_async: a group commit completes from the store's
// thread) and renders the answer (writeapi/response.h); this file reads
// what the library asks for and sends what it rendered.
//
//   writeapi-asio-server --keys keys.json [--host 127.0.0.1] [--port 8080]
//       [--data-dir data] [--fsync always|interval|never] [--max-body BYTES]
//       [--threads N] [--keep-alive-timeout-s S]
//
// SIGINT or SIGTERM: stop accepting, finish the requests in flight, exit 0.
// SIGHUP, or a change of the keys file: reload the keys.
#include <writeapi/auth.h>
#include <writeapi/ingest.h>
#include <writeapi/keys_reloader.h>
#include <writeapi/limits.h>
#include <writeapi/names.h>
#include <writeapi/response.h>
#include <writeapi/storage.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

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
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using writeapi::ErrorCode;
using writeapi::Status;

namespace {

constexpr std::size_t kMaxHeadBytes = 16 * 1024;
constexpr auto kReadTimeout = std::chrono::seconds(30);

struct Config {
  std::string host = "127.0.0.1", data_dir = "data", keys, fsync = "always";
  unsigned short port = 8080;
  std::size_t max_body = writeapi::kDefaultMaxBodyBytes;
  unsigned threads = std::max(2u, std::thread::hardware_concurrency());
  std::chrono::seconds keep_alive_timeout{60};
};

struct App {
  writeapi::Ingestor* ingestor;
  std::size_t linger_bytes;  // read and dropped after a refusal, so the client reads it
  std::chrono::seconds keep_alive_timeout;
  std::atomic<long> requests_in_flight{0};  // from a head read to its answer sent
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, App* app) : stream_(std::move(socket)), app_(app) {}

  void read_head() {
    parser_.emplace();
    parser_->header_limit(kMaxHeadBytes);
    parser_->body_limit(boost::none);  // the head is judged by check_head first
    stream_.expires_after(first_ ? kReadTimeout : app_->keep_alive_timeout);
    first_ = false;
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_head(ec); });
  }

 private:
  void on_head(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::connection_reset ||
        ec == asio::error::operation_aborted)
      return close();
    in_flight(true);
    std::string_view ignored;  // Beast stops at the field in conflict: those before it are kept
    if (ec == http::error::bad_transfer_encoding && count(http::field::content_length, &ignored) == 0)
      return send_status(Status(ErrorCode::not_implemented, "the only transfer coding accepted is chunked"), true);
    if (ec) return send_status(Status(ErrorCode::bad_request, "the request could not be understood"), true);
    const auto& req = parser_->get();
    // Framing as strict as writeapi-server's: one coding, chunked, and
    // never beside a Content-Length (Beast would take the chunked one).
    std::string_view coding;
    if (int codings = count(http::field::transfer_encoding, &coding); codings > 0) {
      if (codings > 1 || !writeapi::ascii_iequals(coding, "chunked"))
        return send_status(Status(ErrorCode::not_implemented, "the only transfer coding accepted is chunked"), true);
      if (count(http::field::content_length, &ignored) > 0)
        return send_status(Status(ErrorCode::bad_request, "Content-Length and Transfer-Encoding together"), true);
    }
    head_only_ = req.method() == http::verb::head;
    keep_alive_ = req.keep_alive();
    http10_ = req.version() == 10;
    if (req.method() == http::verb::get && req.target() == "/healthz") {
      out_ = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n";
      out_ += connection_header(!has_body());
      out_ += "\r\n{\"ok\":true}\n";
      return send(!keep_alive_ || has_body());
    }
    writeapi::WriteHead head;
    head.method = std::string_view(req.method_string().data(), req.method_string().size());
    head.target = std::string_view(req.target().data(), req.target().size());
    head.content_type_count = count(http::field::content_type, &head.content_type);
    head.content_encoding_count = count(http::field::content_encoding, &head.content_encoding);
    if (parser_->chunked()) {
      head.framing = writeapi::WriteHead::Framing::chunked;
    } else if (parser_->content_length()) {
      head.framing = writeapi::WriteHead::Framing::length;
      head.content_length = *parser_->content_length();
    } else {
      head.framing = writeapi::WriteHead::Framing::none;
    }
    // A refusal from the head leaves any body unread: the connection
    // closes after it, so its bytes are never taken for a request.
    Status status = app_->ingestor->check_head(head, &bucket_, &key_);
    if (!status.ok()) return send_status(status, has_body() || req.method() == http::verb::post);
    parser_->body_limit(app_->ingestor->max_body_bytes());
    if (writeapi::ascii_iequals(std::string_view(req[http::field::expect].data(), req[http::field::expect].size()),
                                "100-continue")) {
      out_ = "HTTP/1.1 100 Continue\r\n\r\n";
      asio::async_write(stream_, asio::buffer(out_), [self = shared_from_this()](beast::error_code ec, std::size_t) {
        if (ec) return self->close();
        self->read_body();
      });
      return;
    }
    read_body();
  }

  void read_body() {
    stream_.expires_after(kReadTimeout);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_body(ec); });
  }

  void on_body(beast::error_code ec) {
    if (ec == http::error::body_limit) {
      // The library's own refusal, as check_head gives it for a declared length.
      writeapi::WriteHead over;
      over.target = std::string_view(parser_->get().target().data(), parser_->get().target().size());
      over.content_length = app_->ingestor->max_body_bytes() + 1;
      std::string bucket, key;
      return send_status(app_->ingestor->check_head(over, &bucket, &key), true);
    }
    if (ec == http::error::partial_message || ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::connection_reset)
      return close();  // cut short: nothing was stored, nobody to answer
    if (ec) return send_status(Status(ErrorCode::bad_request, "the request body could not be framed"), true);
    const auto& req = parser_->get();
    writeapi::IngestRequest request;
    request.bucket = bucket_;
    request.key = key_;
    count(http::field::content_type, &request.content_type);
    count(http::field::content_encoding, &request.content_encoding);
    auto key = req.find("Idempotency-Key");
    if (key != req.end()) request.idempotency_key = std::string_view(key->value().data(), key->value().size());
    request.body = req.body();
    stream_.expires_never();
    // The answer may come from the store's thread: back to this
    // connection's strand before touching it.
    app_->ingestor->ingest_async(
        request, [self = shared_from_this()](const Status& status, const writeapi::IngestResult& result) {
          asio::post(self->stream_.get_executor(), [self, status, items = result.items, dup = result.duplicate] {
            self->send_status(status, !self->keep_alive_, items, dup);
          });
        });
  }

  bool has_body() const { return parser_->chunked() || parser_->content_length().value_or(0) > 0; }

  int count(http::field name, std::string_view* first) const {
    auto range = parser_->get().equal_range(name);
    int n = 0;
    for (auto it = range.first; it != range.second; ++it, ++n)
      if (n == 0) *first = std::string_view(it->value().data(), it->value().size());
    return n;
  }

  std::string_view connection_header(bool may_keep) const {
    if (!keep_alive_ || !may_keep) return "Connection: close\r\n";
    return http10_ ? "Connection: keep-alive\r\n" : "";
  }

  void send_status(const Status& status, bool close_after, std::size_t items = 0, bool duplicate = false) {
    out_.clear();
    close_after = close_after || !keep_alive_;
    writeapi::append_write_response(status, items, connection_header(!close_after), &out_, duplicate);
    send(close_after);
  }

  void send(bool close_after) {
    if (head_only_) out_.resize(out_.find("\r\n\r\n") + 4);
    stream_.expires_after(kReadTimeout);
    asio::async_write(stream_, asio::buffer(out_),
                      [self = shared_from_this(), close_after](beast::error_code ec, std::size_t) {
                        self->in_flight(false);
                        if (ec) return self->close();
                        if (!close_after) return self->read_head();
                        beast::error_code ignored;
                        self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
                        self->linger();
                      });
  }

  // Reads and drops what the client still sends (a refused body), for a
  // bounded time and size, so that its answer is not lost to a reset.
  void linger() {
    stream_.expires_after(std::chrono::seconds(2));
    buffer_.clear();
    stream_.async_read_some(buffer_.prepare(16 * 1024),
                            [self = shared_from_this()](beast::error_code ec, std::size_t n) {
                              self->lingered_ += n;
                              if (ec || self->lingered_ > self->app_->linger_bytes) return self->close();
                              self->linger();
                            });
  }

  void close() {
    in_flight(false);
    stream_.close();
  }

  void in_flight(bool busy) {
    if (busy != busy_) app_->requests_in_flight.fetch_add(busy ? 1 : -1);
    busy_ = busy;
  }

  beast::tcp_stream stream_;
  App* app_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::string bucket_, key_, out_;
  std::size_t lingered_ = 0;
  bool busy_ = false, first_ = true, keep_alive_ = true, http10_ = false, head_only_ = false;
};

void accept(tcp::acceptor* acceptor, App* app) {
  acceptor->async_accept(asio::make_strand(acceptor->get_executor()),
                         [acceptor, app](beast::error_code ec, tcp::socket socket) {
                           if (ec == asio::error::operation_aborted || !acceptor->is_open()) return;
                           if (!ec) std::make_shared<Session>(std::move(socket), app)->read_head();
                           accept(acceptor, app);
                         });
}

[[noreturn]] void usage(const char* problem) {
  std::fprintf(stderr,
               "writeapi-asio-server: %s\nusage: writeapi-asio-server --keys FILE [--host ADDR] [--port N] "
               "[--data-dir DIR] [--fsync always|interval|never] [--max-body BYTES] [--threads N]\n",
               problem);
  std::exit(2);
}

Config parse_flags(int argc, char** argv) {
  Config config;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help") usage("the Write API on Boost.Beast");
    if (i + 1 >= argc) usage(("missing value for " + flag).c_str());
    std::string value = argv[++i];
    char* end = nullptr;
    auto number = [&](unsigned long long min, unsigned long long max) {
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
  // The io_context outlives the store: a write the store completes while
  // stopping still posts its answer to a live (stopped) context.
  asio::io_context io(static_cast<int>(config.threads));
  auto storage = writeapi::make_file_storage(storage_options, &status);
  if (!storage) return std::fprintf(stderr, "writeapi-asio-server: %s\n", status.message().c_str()), 1;
  writeapi::IngestOptions ingest_options;
  ingest_options.max_body_bytes = config.max_body;
  writeapi::Ingestor ingestor(keys.get(), &limiter, storage.get(), ingest_options);
  App app{&ingestor, ingestor.max_body_bytes() + (1u << 20), config.keep_alive_timeout};
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
  accept(&acceptor, &app);

  // Stop: no new connections; once the requests in flight are answered,
  // stop the loop (idle keep-alive connections are dropped with it).
  asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  asio::steady_timer drain(io);
  std::function<void()> wait_drained = [&] {
    if (app.requests_in_flight.load() == 0) return io.stop();
    drain.expires_after(std::chrono::milliseconds(10));
    drain.async_wait([&](beast::error_code) { wait_drained(); });
  };
  std::function<void(beast::error_code, int)> on_signal = [&](beast::error_code ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      (void)reloader.reload("SIGHUP");  // it logs the outcome
      return signals.async_wait(on_signal);
    }
    std::fprintf(stderr, "writeapi-asio-server: %s: finishing the requests in flight\n",
                 sig == SIGTERM ? "SIGTERM" : "SIGINT");
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
