#include "connection_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace writeapi::server {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::size_t kReadChunk = 64 * 1024;
constexpr auto kRateWindow = std::chrono::seconds(5);
constexpr auto kLingerIdle = std::chrono::seconds(2);
// A client whose head broke the grammar gets its answer; what it sends
// after that is not a body anyone asked for.
constexpr std::size_t kLingerAfterBadHead = 256 * 1024;
constexpr auto kTick = milliseconds(100);
// Bytes a connection may hold in its head buffer without drawing on the
// shared buffer budget: a typical head, so that a budget taken by bodies
// never keeps ordinary requests from being read.
constexpr std::size_t kFreeHeadBytes = 8 * 1024;
// One address may hold at most this share of the buffer budget.
constexpr int kAddressBudgetDivisor = 4;
// The last eighth of the buffer budget is kept for connections holding
// less than kSmallHoldBytes, so that bodies filling the budget (from many
// addresses) never keep ordinary small requests out.
constexpr std::size_t kSmallHoldBytes = 64 * 1024;
// A connection waiting for the total budget while holding this much or
// more keeps its minimum rate and timeouts running: it is what fills it.
constexpr std::size_t kLargeHoldBytes = 1 << 20;
// Requests whose working memory may reach three times --max-body (a
// compressed body, or one over kHeavyBodyBytes) run at most kHeavySlots at
// once; more wait in the loop, holding no worker, addresses taking turns
// for the next free slot, and each within its request deadline (then 503).
constexpr std::size_t kHeavyBodyBytes = 1 << 20;
constexpr int kHeavySlots = 4;

std::string address_text(const sockaddr_storage& addr, int* port) {
  char text[INET6_ADDRSTRLEN] = "";
  *port = -1;
  if (addr.ss_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    ::inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    *port = ntohs(in->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    ::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    *port = ntohs(in6->sin6_port);
  }
  return text;
}

struct Counters {
  std::atomic<std::uint64_t> accepted{0}, refused_per_ip{0}, refused_capacity{0}, tls_handshake_failures{0},
      heads_too_large{0}, framing_errors{0}, request_timeouts{0}, lingering_closes{0}, buffer_pauses{0}, open{0},
      busy_workers{0};
  std::atomic<std::int64_t> buffered{0};
};

enum class Phase { handshake, head, body, worker, writing, lingering };

struct Address;

// A connection refused at accept: its answer is sent, and it reads and
// drops what the client still sends until the client closes, the linger
// limit or a deadline (no request buffers, no address entry).
struct Refused {
  int fd = -1;
  std::size_t index = 0;  // in Loop::refused_
  std::size_t lingered = 0;
  Clock::time_point deadline{}, idle_until{};
};

// One client connection. Owned by exactly one thread at a time: the loop,
// or (with in_worker set) the worker running its request.
struct Conn {
  int fd = -1;
  SSL* ssl = nullptr;
  std::string ip, local_ip;
  int port = -1, local_port = -1;
  Address* address = nullptr;
  std::size_t index = 0;  // in Loop::conns_
  std::atomic<bool> in_worker{false};
  Phase phase = Phase::head;

  // Request bytes. `in` holds what arrived for the head phase: the current
  // request's head starts at in_pos (the head's views point into it, so
  // `in` is not touched while the request runs), and the next request's
  // bytes, read along with it, start at next_pos. Bytes of the next
  // request that arrive in a body read go to `pending` instead.
  std::string in;
  std::size_t in_pos = 0;
  std::size_t next_pos = 0;
  std::size_t scan_from = 0;
  http1::RequestHead head;
  std::string body;
  std::string pending;
  std::uint64_t body_left = 0;  // with Content-Length framing
  std::optional<http1::ChunkedDecoder> chunked;
  std::int64_t buffered = 0;  // bytes of the above counted in Counters::buffered

  bool close_after = false;     // close (lingering) after the response
  bool run_keep_alive = false;  // of the request being run
  // A direct run: kRunning until its answer is rendered; kParked when the
  // run returned first (the loop finishes it when the answer comes), kDone
  // when the answer came first.
  std::atomic<int> completion{0};
  bool direct = false;    // run by ConnectionHooks::run_direct
  bool blocking = false;  // never run on the loop thread (HeadDecision::blocking)
  // The rest of a streamed response: its next part is produced on a worker
  // once `out` has gone out.
  std::unique_ptr<ResponseStream> stream;
  bool heavy = false;             // holds one of the heavy slots (Loop::dispatch)
  bool body_after_write = false;  // the response was "100 Continue": read the body next
  bool first_request = true;
  bool paused = false;           // waiting for buffer memory (the address's share or the total)
  bool paused_by_total = false;  // ... the total: not the client's doing
  bool want_write = false;       // TLS read needs the socket writable

  std::string out;
  std::size_t out_sent = 0;

  Clock::time_point deadline{};    // of the phase: idle, request, write or linger
  Clock::time_point idle_until{};  // no progress for this long ends it too
  Clock::time_point window_start{};
  std::uint64_t window_bytes = 0;
  std::size_t lingered = 0;
  // What lingering reads at most: the rest of a refused body whose size is
  // known, more when it is not, little after a broken head.
  std::size_t linger_limit = kLingerAfterBadHead;
};

// A client address: its connections, and its requests waiting for or
// holding a worker. Guarded by Loop::queue_mu_.
struct Address {
  std::string ip;
  int connections = 0;
  int active = 0;
  std::atomic<std::int64_t> buffered{0};  // request bytes its connections hold
  std::deque<Conn*> ready;
  bool in_turns = false;
  // The loop's own (no lock): requests of this address to run inline.
  std::deque<Conn*> inline_ready;
  bool inline_in_turns = false;
  // The loop's own: heavy requests of this address waiting for a slot.
  std::deque<Conn*> heavy_ready;
  bool heavy_in_turns = false;
};

// A request as cpp-httplib reads it (from memory) and its response as
// cpp-httplib writes it (into the connection's output buffer).
class RequestStream final : public httplib::Stream {
 public:
  RequestStream(std::string_view request, Conn* conn) : request_(request), conn_(conn) {}
  bool is_readable() const override { return true; }
  bool is_writable() const override { return true; }
  ssize_t read(char* ptr, std::size_t size) override {
    std::size_t n = std::min(size, request_.size() - offset_);
    std::memcpy(ptr, request_.data() + offset_, n);
    offset_ += n;
    return static_cast<ssize_t>(n);
  }
  ssize_t write(const char* ptr, std::size_t size) override {
    conn_->out.append(ptr, size);
    return static_cast<ssize_t>(size);
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = conn_->ip;
    port = conn_->port;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip = conn_->local_ip;
    port = conn_->local_port;
  }
  // Not a socket: cpp-httplib only compares it with FD_SETSIZE.
  socket_t socket() const override { return INVALID_SOCKET; }

 private:
  std::string_view request_;
  std::size_t offset_ = 0;
  Conn* conn_;
};

// Fields the connection layer has dealt with; cpp-httplib never sees them.
bool is_framing_field(std::string_view name) {
  return ascii_iequals(name, "Content-Length") || ascii_iequals(name, "Transfer-Encoding") ||
         ascii_iequals(name, "Connection") || ascii_iequals(name, "Keep-Alive") || ascii_iequals(name, "Expect") ||
         ascii_iequals(name, "Range") || ascii_iequals(name, "Content-Encoding") || ascii_iequals(name, "Upgrade") ||
         ascii_iequals(name, "TE") || ascii_iequals(name, "Trailer");
}

// The head rebuilt for cpp-httplib: request line and the other fields.
// The Connection field says what the connection layer decided, in the
// spelling cpp-httplib compares with.
void normalized_head(const http1::RequestHead& head, bool keep_alive, std::string* out) {
  out->clear();
  out->append(head.method)
      .append(" ")
      .append(head.target)
      .append(head.minor_version == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
  for (const http1::Field& f : head.fields) {
    if (is_framing_field(f.name)) continue;
    out->append(f.name).append(": ").append(f.value).append("\r\n");
  }
  if (!keep_alive)
    out->append("Connection: close\r\n");
  else if (head.minor_version == 0)
    out->append("Connection: Keep-Alive\r\n");
  out->append("\r\n");
}

class Router final : public httplib::Server {
 public:
  using httplib::Server::process_request;
};

class Loop final : public ConnectionServer {
 public:
  Loop(const ConnectionOptions& options, ConnectionHooks hooks, SSL_CTX* tls)
      : options_(options), hooks_(std::move(hooks)), tls_(tls) {
    epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
    wake_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = &wake_;
    ::epoll_ctl(epoll_, EPOLL_CTL_ADD, wake_, &ev);
    worker_share_ = std::max(1, options_.workers - std::max(1, options_.workers / 4));
  }
  ~Loop() override {
    while (!refused_.empty()) close_refused(refused_.back());
    if (listener_ >= 0) ::close(listener_);
    ::close(wake_);
    ::close(epoll_);
    if (tls_) SSL_CTX_free(tls_);
  }

  httplib::Server& http() override { return router_; }
  bool tls() const override { return tls_ != nullptr; }

  int bind(const std::string& host, int port) override {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    addrinfo* result = nullptr;
    const std::string service = std::to_string(port);
    if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &result); rc != 0) {
      errno = EADDRNOTAVAIL;
      return -1;
    }
    int saved_errno = 0;
    for (addrinfo* ai = result; ai; ai = ai->ai_next) {
      int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
      if (fd < 0) continue;
      int yes = 1;
      // SO_REUSEADDR only: a second server on a busy port must fail.
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
      if (::bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && ::listen(fd, SOMAXCONN) == 0) {
        sockaddr_storage bound{};
        socklen_t length = sizeof bound;
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length);
        int bound_port = -1;
        address_text(bound, &bound_port);
        listener_ = fd;
        ::freeaddrinfo(result);
        epoll_event ev{};
        ev.events = EPOLLIN;
        ev.data.ptr = &listener_;
        ::epoll_ctl(epoll_, EPOLL_CTL_ADD, listener_, &ev);
        return bound_port;
      }
      saved_errno = errno;
      ::close(fd);
    }
    ::freeaddrinfo(result);
    errno = saved_errno ? saved_errno : EADDRNOTAVAIL;
    return -1;
  }

  ConnectionStats stats() const override {
    ConnectionStats s;
    s.accepted = counters_.accepted.load();
    s.refused_per_ip = counters_.refused_per_ip.load();
    s.refused_capacity = counters_.refused_capacity.load();
    s.tls_handshake_failures = counters_.tls_handshake_failures.load();
    s.heads_too_large = counters_.heads_too_large.load();
    s.framing_errors = counters_.framing_errors.load();
    s.request_timeouts = counters_.request_timeouts.load();
    s.lingering_closes = counters_.lingering_closes.load();
    s.buffer_pauses = counters_.buffer_pauses.load();
    s.open = counters_.open.load();
    s.buffered_bytes = static_cast<std::uint64_t>(std::max<std::int64_t>(0, counters_.buffered.load()));
    s.busy_workers = counters_.busy_workers.load();
    return s;
  }

  void stop() override {
    stopping_ = true;
    wake();
  }

  void serve() override {
    std::vector<std::thread> workers;
    for (int i = 0; i < std::max(1, options_.workers); ++i) workers.emplace_back([this] { work(); });
    run_loop();
    // Workers finish what they run and what is queued for them before any
    // connection is freed.
    {
      std::lock_guard<std::mutex> lock(queue_mu_);
      workers_stop_ = true;
    }
    queue_cv_.notify_all();
    for (auto& t : workers) t.join();
    // A parked run's answer comes from the store's thread (a group commit:
    // milliseconds); its connection is not freed before.
    {
      std::unique_lock<std::mutex> lock(returned_mu_);
      direct_done_cv_.wait(lock, [&] { return direct_in_flight_.load(std::memory_order_acquire) == 0; });
    }
    while (!conns_.empty()) close_now(conns_.back());
  }

 private:
  // ---- the loop ----

  void run_loop() {
    std::vector<epoll_event> events(256);
    bool listener_closed = false;
    Clock::time_point next_sweep = Clock::now() + kTick;
    Clock::time_point drain_until{};
    for (;;) {
      if (stopping_ && !listener_closed) {
        if (listener_ >= 0) {
          ::epoll_ctl(epoll_, EPOLL_CTL_DEL, listener_, nullptr);
          ::close(listener_);
          listener_ = -1;
        }
        listener_closed = true;
        drain_until = Clock::now() + options_.request_timeout + options_.write_timeout;
      }
      if (listener_closed) {
        close_idle();
        if (conns_.empty() || Clock::now() > drain_until) break;
      }
      auto wait = inline_turns_.empty() && tls_ready_.empty()
                      ? std::chrono::duration_cast<milliseconds>(next_sweep - Clock::now()).count()
                      : 0;
      int n = ::epoll_wait(epoll_, events.data(), static_cast<int>(events.size()),
                           static_cast<int>(std::clamp<long long>(wait, 0, kTick.count())));
      now_ = Clock::now();
      for (int i = 0; i < n; ++i) {
        void* tag = events[i].data.ptr;
        if (tag == &listener_) {
          accept_all();
        } else if (tag == &wake_) {
          std::uint64_t value;
          while (::read(wake_, &value, sizeof value) > 0) {
          }
        } else if (reinterpret_cast<std::uintptr_t>(tag) & 1) {
          on_refused_event(reinterpret_cast<Refused*>(reinterpret_cast<std::uintptr_t>(tag) & ~std::uintptr_t{1}));
        } else {
          on_event(static_cast<Conn*>(tag), events[i].events);
        }
      }
      take_returned();
      run_inline(256);
      run_tls_ready();
      if (now_ >= next_sweep) {
        sweep();
        next_sweep = now_ + kTick;
      }
    }
  }

  void wake() {
    std::uint64_t one = 1;
    [[maybe_unused]] ssize_t r = ::write(wake_, &one, sizeof one);
  }

  void arm(Conn* c, std::uint32_t events) {
    epoll_event ev{};
    ev.events = events | EPOLLONESHOT | EPOLLRDHUP;
    ev.data.ptr = c;
    ::epoll_ctl(epoll_, EPOLL_CTL_MOD, c->fd, &ev);
  }
  void arm_read(Conn* c) { arm(c, c->want_write ? EPOLLOUT : EPOLLIN); }

  // A complete response for a connection the loop refuses before it holds
  // it (per-address cap, capacity).
  void refuse_at_accept(int fd, const std::string& ip, int status, std::string_view code, std::string_view message) {
    ConnectionError e;
    e.http_status = status;
    e.code = code;
    e.message = message;
    e.remote_ip = ip;
    std::string response = hooks_.render_error(e);
    // TLS: no answer before a handshake, which is the cost refusing here
    // avoids; the client sees the connection closed.
    if (tls_) return (void)::close(fd);
    ssize_t sent = ::send(fd, response.data(), response.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    // A client that sends its request before reading gets the answer only
    // if closing does not reset the connection: linger as after any
    // refusal (a fresh socket's buffer takes the whole answer at once).
    if (sent != static_cast<ssize_t>(response.size()) ||
        refused_.size() >= static_cast<std::size_t>(std::max(0, options_.max_refused_lingering))) {
      ::close(fd);
      return;
    }
    ::shutdown(fd, SHUT_WR);
    auto* r = new Refused;
    r->fd = fd;
    r->index = refused_.size();
    r->deadline = now_ + options_.linger_timeout;
    r->idle_until = now_ + kLingerIdle;
    refused_.push_back(r);
    counters_.lingering_closes++;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = reinterpret_cast<void*>(reinterpret_cast<std::uintptr_t>(r) | 1);
    if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev) != 0) close_refused(r);
  }

  void on_refused_event(Refused* r) {
    static thread_local char sink[16 * 1024];
    for (;;) {
      ssize_t n = ::recv(r->fd, sink, sizeof sink, 0);
      if (n > 0) {
        r->lingered += static_cast<std::size_t>(n);
        r->idle_until = now_ + kLingerIdle;
        if (r->lingered > options_.linger_bytes) return close_refused(r);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n < 0 && errno == EINTR) continue;
      return close_refused(r);  // the client closed, or an error
    }
  }

  void close_refused(Refused* r) {
    ::close(r->fd);
    Refused* last = refused_.back();
    refused_[r->index] = last;
    last->index = r->index;
    refused_.pop_back();
    delete r;
  }

  void accept_all() {
    for (int i = 0; i < 256; ++i) {
      sockaddr_storage addr{};
      socklen_t length = sizeof addr;
      int fd = ::accept4(listener_, reinterpret_cast<sockaddr*>(&addr), &length, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) {
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          // Out of descriptors: stop accepting until the next sweep.
          ::epoll_ctl(epoll_, EPOLL_CTL_DEL, listener_, nullptr);
          listener_paused_ = true;
        }
        return;
      }
      int port = -1;
      std::string ip = address_text(addr, &port);
      if (static_cast<int>(conns_.size()) >= options_.max_connections) {
        counters_.refused_capacity++;
        refuse_at_accept(fd, ip, 503, "server_busy", "the server holds all the connections it can; retry later");
        continue;
      }
      Address* address = admit(ip);
      if (!address) {
        counters_.refused_per_ip++;
        refuse_at_accept(fd, ip, 429, "rate_limited", "too many connections from your address; retry later");
        continue;
      }
      counters_.accepted++;
      counters_.open++;
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      auto* c = new Conn;
      c->fd = fd;
      c->ip = std::move(ip);
      c->port = port;
      c->address = address;
      sockaddr_storage local{};
      socklen_t local_length = sizeof local;
      if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_length) == 0)
        c->local_ip = address_text(local, &c->local_port);
      c->index = conns_.size();
      conns_.push_back(c);
      if (tls_) {
        c->ssl = SSL_new(tls_);
        SSL_set_fd(c->ssl, fd);
        SSL_set_accept_state(c->ssl);
        c->phase = Phase::handshake;
        c->deadline = now_ + options_.request_timeout;
      } else {
        c->phase = Phase::head;
        c->deadline = now_ + options_.read_timeout;
      }
      c->idle_until = now_ + options_.read_timeout;
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLONESHOT | EPOLLRDHUP;
      ev.data.ptr = c;
      ::epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev);
    }
  }

  Address* admit(const std::string& ip) {
    std::lock_guard<std::mutex> lock(queue_mu_);
    auto [it, inserted] = addresses_.try_emplace(ip);
    Address& a = it->second;
    if (inserted) a.ip = ip;
    if (options_.max_connections_per_ip > 0 && a.connections >= options_.max_connections_per_ip) {
      if (a.connections == 0 && a.active == 0) addresses_.erase(it);
      return nullptr;
    }
    ++a.connections;
    return &a;
  }

  void close_now(Conn* c) {
    if (c->ssl) std::erase(tls_ready_, c);
    if (c->ssl) SSL_free(c->ssl);
    ::close(c->fd);  // also leaves the epoll set
    account(c, 0);
    Conn* last = conns_.back();
    conns_[c->index] = last;
    last->index = c->index;
    conns_.pop_back();
    {
      std::lock_guard<std::mutex> lock(queue_mu_);
      Address* a = c->address;
      if (--a->connections == 0 && a->active == 0 && a->ready.empty() && a->inline_ready.empty() &&
          a->heavy_ready.empty())
        addresses_.erase(a->ip);
    }
    counters_.open--;
    delete c;
  }

  // Sets the buffered bytes held for `c` to `bytes` (from the thread that
  // owns it).
  void account(Conn* c, std::int64_t bytes) {
    counters_.buffered += bytes - c->buffered;
    c->address->buffered += bytes - c->buffered;
    c->buffered = bytes;
  }
  static std::int64_t held(const Conn* c) {
    return static_cast<std::int64_t>(c->in.size() + c->body.size() + c->pending.size());
  }
  // Frees the request buffers of `c` (clear() would keep their memory).
  void release_buffers(Conn* c) {
    std::string().swap(c->in);
    std::string().swap(c->body);
    std::string().swap(c->pending);
    c->in_pos = c->next_pos = c->scan_from = 0;
    account(c, 0);
  }

  void on_event(Conn* c, std::uint32_t events) {
    // A worker re-arms a connection just before it lets go of it.
    while (c->in_worker.load(std::memory_order_acquire)) sched_yield();
    if (events & EPOLLERR) return close_now(c);
    switch (c->phase) {
      case Phase::handshake:
        return handshake(c);
      case Phase::head:
      case Phase::body:
      case Phase::lingering:
        return read_ready(c);
      case Phase::writing:
        return write_ready(c);
      case Phase::worker:
        return;  // not armed while a worker has it
    }
  }

  void handshake(Conn* c) {
    ERR_clear_error();
    int r = SSL_accept(c->ssl);
    if (r == 1) {
      c->phase = Phase::head;
      c->deadline = now_ + options_.read_timeout;
      c->idle_until = c->deadline;
      return read_ready(c);
    }
    int error = SSL_get_error(c->ssl, r);
    if (error == SSL_ERROR_WANT_READ) return arm(c, EPOLLIN);
    if (error == SSL_ERROR_WANT_WRITE) return arm(c, EPOLLOUT);
    counters_.tls_handshake_failures++;
    close_now(c);
  }

  // Reads what the socket has. >0 bytes; 0 at EOF; -1 error; -2 would block.
  ssize_t read_some(Conn* c, char* buffer, std::size_t size) {
    c->want_write = false;
    if (c->ssl && c->phase != Phase::lingering) {
      ERR_clear_error();
      int n = SSL_read(c->ssl, buffer, static_cast<int>(size));
      if (n > 0) return n;
      int error = SSL_get_error(c->ssl, n);
      if (error == SSL_ERROR_WANT_READ) return -2;
      if (error == SSL_ERROR_WANT_WRITE) {
        c->want_write = true;
        return -2;
      }
      return error == SSL_ERROR_ZERO_RETURN ? 0 : -1;
    }
    for (;;) {
      ssize_t n = ::recv(c->fd, buffer, size, 0);
      if (n >= 0) return n;
      if (errno == EINTR) continue;
      return (errno == EAGAIN || errno == EWOULDBLOCK) ? -2 : -1;
    }
  }

  void read_ready(Conn* c) {
    static thread_local std::string scratch(kReadChunk, '\0');
    for (int reads = 0; reads < 8; ++reads) {
      std::size_t want = scratch.size();
      if (c->phase == Phase::head && held(c) < static_cast<std::int64_t>(kFreeHeadBytes)) {
        // A head of ordinary size is always read.
        want = kFreeHeadBytes - static_cast<std::size_t>(held(c));
      } else if (c->phase != Phase::lingering) {
        const auto chunk = static_cast<std::int64_t>(kReadChunk);
        const auto total = static_cast<std::int64_t>(options_.max_buffer_bytes);
        const auto reserve = held(c) < static_cast<std::int64_t>(kSmallHoldBytes) ? 0 : total / 8;
        const bool over_total = counters_.buffered.load() + chunk > total - reserve;
        const bool over_share = c->address->buffered.load() + chunk > total / kAddressBudgetDivisor;
        if (over_total || over_share) {
          if (!c->paused) counters_.buffer_pauses++;
          c->paused = true;  // the sweep resumes it when memory is freed
          c->paused_by_total = !over_share && held(c) < static_cast<std::int64_t>(kLargeHoldBytes);
          return;
        }
      }
      c->paused = false;
      ssize_t n = read_some(c, scratch.data(), want);
      if (n == -2) return arm_read(c);
      if (n <= 0) {
        // The client closed or the socket failed. A request cut short is
        // simply dropped: nobody is left to answer.
        return close_now(c);
      }
      if (!consume(c, std::string_view(scratch.data(), static_cast<std::size_t>(n)))) return;
      if (!c->ssl && static_cast<std::size_t>(n) < want) return arm_read(c);
      if (c->ssl && SSL_pending(c->ssl) == 0 && static_cast<std::size_t>(n) < want) return arm_read(c);
    }
    // Eight reads for this connection; more in the next round. Bytes
    // already decrypted inside OpenSSL raise no epoll event.
    if (c->ssl && SSL_pending(c->ssl) > 0) {
      tls_ready_.push_back(c);
      return;
    }
    arm_read(c);
  }
  // Reads for `c` now when OpenSSL holds decrypted bytes (epoll would never
  // report them), else waits for the socket.
  void read_or_arm(Conn* c) {
    if (c->ssl && SSL_pending(c->ssl) > 0) return read_ready(c);
    arm_read(c);
  }

  // Takes bytes read in the head, body or lingering phase. False when the
  // connection left the loop's reading (dispatched, refused or closed).
  bool consume(Conn* c, std::string_view data) {
    switch (c->phase) {
      case Phase::lingering:
        c->lingered += data.size();
        c->idle_until = now_ + kLingerIdle;
        if (c->lingered > c->linger_limit) {
          close_now(c);
          return false;
        }
        return true;
      case Phase::head:
        if (c->in_pos == c->in.size()) c->deadline = now_ + options_.request_timeout;
        c->idle_until = now_ + options_.read_timeout;
        c->in.append(data);
        account(c, held(c));
        return parse_head(c);
      case Phase::body:
        c->idle_until = now_ + options_.read_timeout;
        c->window_bytes += data.size();
        return feed_body(c, data, false);
      default:
        return false;
    }
  }

  // Parses the head at c->in_pos. False when the connection left the
  // loop's reading.
  bool parse_head(Conn* c) {
    http1::HeadResult r =
        http1::parse_head(std::string_view(c->in).substr(c->in_pos), options_.max_head_bytes, &c->head, &c->scan_from);
    if (r.status == http1::HeadStatus::incomplete) return true;
    if (r.status != http1::HeadStatus::complete) {
      const http1::HeadRefusal refusal = http1::refusal_of(r.status);
      (r.status == http1::HeadStatus::too_large ? counters_.heads_too_large : counters_.framing_errors)++;
      // A head refused after its framing was read (Host, Expect, a coding
      // other than chunked) lingers for the body that follows, as any refusal.
      if (c->head.framing != http1::BodyFraming::none) c->linger_limit = unread_body_limit(c->head);
      refuse(c, refusal.http_status, refusal.code, r.reason);
      return false;
    }
    // Bytes after the head: the body, or the next request. `in` stays as
    // it is until the request is done: the head's views point into it.
    const std::size_t head_end = c->in_pos + r.head_bytes;
    std::string_view extra = std::string_view(c->in).substr(head_end);
    c->next_pos = head_end;
    c->first_request = false;

    HeadDecision decision = hooks_.decide_head(c->head);
    c->linger_limit = unread_body_limit(c->head);
    c->direct = decision.direct;
    c->blocking = decision.blocking;
    if (!decision.refusal.empty()) {
      c->out = std::move(decision.refusal);
      c->close_after = true;
      start_write(c);
      return false;
    }
    if (!decision.read_body) {
      if (c->head.has_body()) c->close_after = true;  // the body stays unread: lingering close
      dispatch(c);
      return false;
    }
    if (c->head.framing == http1::BodyFraming::length) {
      if (c->head.content_length > decision.max_body_bytes) {
        refuse(c, 413, "payload_too_large", "the body exceeds the size limit");
        return false;
      }
      c->body_left = c->head.content_length;
      c->body.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(c->body_left, kReadChunk)));
    } else if (c->head.framing == http1::BodyFraming::chunked) {
      c->chunked.emplace(decision.max_body_bytes);
    }
    c->phase = Phase::body;
    c->window_start = now_;
    c->window_bytes = extra.size();
    if (c->head.expect_continue && extra.empty() && c->head.has_body()) {
      c->out = "HTTP/1.1 100 Continue\r\n\r\n";
      c->body_after_write = true;
      start_write(c);
      return false;
    }
    return feed_body(c, extra, true);
  }

  // How much lingering reads after leaving the body of `head` unread.
  std::size_t unread_body_limit(const http1::RequestHead& head) const {
    if (head.framing == http1::BodyFraming::length)
      return static_cast<std::size_t>(std::min<std::uint64_t>(head.content_length, options_.linger_bytes) +
                                      kLingerAfterBadHead);
    return head.framing == http1::BodyFraming::chunked ? options_.linger_bytes : kLingerAfterBadHead;
  }

  // Takes body bytes, from `in` (just after the head) or from a read.
  // Bytes after the body belong to the next request.
  bool feed_body(Conn* c, std::string_view data, bool from_in) {
    if (c->head.framing == http1::BodyFraming::chunked) {
      std::size_t used = 0;
      auto status = c->chunked->feed(data, &c->body, &used);
      data.remove_prefix(used);
      if (status == http1::ChunkedDecoder::Status::bad) {
        counters_.framing_errors++;
        c->linger_limit = kLingerAfterBadHead;
        refuse(c, 400, "bad_request", c->chunked->reason());
        return false;
      }
      if (status == http1::ChunkedDecoder::Status::too_large) {
        refuse(c, 413, "payload_too_large", "the body exceeds the size limit");
        return false;
      }
      if (status == http1::ChunkedDecoder::Status::more) {
        if (from_in) c->next_pos = c->in.size();  // all of it was body
        account(c, held(c));
        return true;
      }
    } else {
      std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(c->body_left, data.size()));
      c->body.append(data.data(), take);
      c->body_left -= take;
      data.remove_prefix(take);
      if (c->body_left > 0) {
        if (from_in) c->next_pos = c->in.size();  // all of it was body
        account(c, held(c));
        return true;
      }
    }
    if (from_in) {
      c->next_pos = static_cast<std::size_t>(data.data() - c->in.data());
    } else {
      c->pending.append(data.data(), data.size());
    }
    account(c, held(c));
    dispatch(c);
    return false;
  }

  // Answers with a refusal of the connection layer and closes after it.
  void refuse(Conn* c, int status, std::string_view code, std::string_view message) {
    ConnectionError e;
    e.http_status = status;
    e.code = code;
    e.message = message;
    e.remote_ip = c->ip;
    if (c->phase == Phase::body || !c->head.method.empty()) {
      e.method = c->head.method;
      e.target = c->head.target;
    }
    c->out = hooks_.render_error(e);
    c->close_after = true;
    start_write(c);
  }

  // Writes c->out (from c->out_sent). True when all of it went out; false
  // when the socket is full (*failed false) or broken (*failed true).
  static bool write_some(Conn* c, bool* failed) {
    *failed = false;
    while (c->out_sent < c->out.size()) {
      const char* data = c->out.data() + c->out_sent;
      std::size_t size = c->out.size() - c->out_sent;
      if (c->ssl) {
        ERR_clear_error();
        int n = SSL_write(c->ssl, data, static_cast<int>(std::min<std::size_t>(size, INT_MAX)));
        if (n > 0) {
          c->out_sent += static_cast<std::size_t>(n);
          continue;
        }
        int error = SSL_get_error(c->ssl, n);
        if (error == SSL_ERROR_WANT_WRITE || error == SSL_ERROR_WANT_READ) return false;
        *failed = true;
        return false;
      }
      ssize_t n = ::send(c->fd, data, size, MSG_NOSIGNAL);
      if (n >= 0) {
        c->out_sent += static_cast<std::size_t>(n);
        continue;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) *failed = true;
      return false;
    }
    return true;
  }

  void start_write(Conn* c) {
    c->phase = Phase::writing;
    c->out_sent = 0;
    c->deadline = now_ + options_.request_timeout + options_.write_timeout;
    c->idle_until = now_ + options_.write_timeout;
    write_ready(c);
  }

  void write_ready(Conn* c) {
    std::size_t before = c->out_sent;
    bool failed = false;
    if (!write_some(c, &failed)) {
      if (failed) return close_now(c);
      if (c->out_sent > before) c->idle_until = now_ + options_.write_timeout;
      return arm(c, EPOLLOUT);
    }
    after_write(c);
  }

  // The response is out: read the body (after 100 Continue), the next
  // request, or close.
  void after_write(Conn* c) {
    c->out.clear();
    c->out_sent = 0;
    if (c->out.capacity() > kReadChunk) std::string().swap(c->out);
    if (c->body_after_write) {
      c->body_after_write = false;
      c->phase = Phase::body;
      c->idle_until = now_ + options_.read_timeout;
      c->window_start = now_;
      return arm_read(c);
    }
    if (c->stream) {
      if (stopping_) {  // cut short: the client sees fewer bytes than announced
        c->stream.reset();
        return linger(c);
      }
      // The next part, on a worker (reading it may block), addresses
      // taking turns with every other request.
      c->phase = Phase::worker;
      c->in_worker.store(true, std::memory_order_release);
      return to_workers(c);
    }
    if (c->close_after || stopping_) return linger(c);
    next_request(c);
  }

  // Drops the finished request's bytes from `in`. Pipelined bytes stay in
  // place; `in` is compacted only when what is left is under half of it,
  // so a long pipeline costs linear time, not a copy per request.
  static void start_next_head(Conn* c) {
    c->head = http1::RequestHead();
    c->scan_from = 0;
    c->chunked.reset();
    c->body.clear();
    if (c->body.capacity() > kReadChunk) std::string().swap(c->body);
    c->in_pos = c->next_pos;
    if (!c->pending.empty()) {
      c->in.erase(0, c->in_pos);
      c->in_pos = 0;
      c->in.append(c->pending);
      std::string().swap(c->pending);
    } else if (c->in_pos >= c->in.size()) {
      c->in.clear();
      c->in_pos = 0;
      if (c->in.capacity() > kReadChunk) std::string().swap(c->in);
    } else if (c->in_pos > c->in.size() / 2) {
      c->in.erase(0, c->in_pos);
      c->in_pos = 0;
    }
    c->next_pos = c->in_pos;
  }
  bool has_next_bytes(const Conn* c) const { return c->in_pos < c->in.size(); }

  void next_request(Conn* c) {
    c->phase = Phase::head;
    c->linger_limit = kLingerAfterBadHead;
    start_next_head(c);
    account(c, held(c));
    c->deadline = now_ + options_.keep_alive_timeout;
    c->idle_until = c->deadline;
    if (has_next_bytes(c)) {
      c->deadline = now_ + options_.request_timeout;
      c->idle_until = now_ + options_.read_timeout;
      if (!parse_head(c)) return;
    }
    read_or_arm(c);
  }

  // Closes after a response: stop sending, then read and discard what the
  // client still sends, for a bounded time and size, so that closing with
  // unread data does not reset the connection and destroy the answer.
  void linger(Conn* c) {
    if (c->ssl) {
      ERR_clear_error();
      SSL_shutdown(c->ssl);  // one close_notify, no waiting
    }
    ::shutdown(c->fd, SHUT_WR);
    c->phase = Phase::lingering;
    c->lingered = 0;
    release_buffers(c);
    c->deadline = now_ + options_.linger_timeout;
    c->idle_until = now_ + kLingerIdle;
    counters_.lingering_closes++;
    arm(c, EPOLLIN);
  }

  void dispatch(Conn* c) {
    c->phase = Phase::worker;
    c->in_worker.store(true, std::memory_order_release);
    const bool compressed = c->head.find("Content-Encoding") != nullptr;
    if (options_.inline_body_bytes > 0 && c->body.size() <= options_.inline_body_bytes && !compressed && !stopping_ &&
        !c->blocking) {
      // Small uncompressed requests on a store that does not block run on
      // the loop (run_inline), addresses taking turns: no hand-over, no
      // context switch.
      Address* a = c->address;
      a->inline_ready.push_back(c);
      if (!a->inline_in_turns) {
        a->inline_in_turns = true;
        inline_turns_.push_back(a);
      }
      return;
    }
    if (compressed || c->body.size() > kHeavyBodyBytes) {
      if (heavy_running_ >= kHeavySlots) {
        Address* a = c->address;  // no worker until a slot frees
        a->heavy_ready.push_back(c);
        if (!a->heavy_in_turns) {
          a->heavy_in_turns = true;
          heavy_turns_.push_back(a);
        }
        return;
      }
      ++heavy_running_;
      c->heavy = true;
    }
    to_workers(c);
  }

  void to_workers(Conn* c) {
    std::lock_guard<std::mutex> lock(queue_mu_);
    Address* a = c->address;
    a->ready.push_back(c);
    if (!a->in_turns && a->active < worker_share_) {
      a->in_turns = true;
      turns_.push_back(a);
      queue_cv_.notify_one();
    }
  }

  void take_returned() {
    std::vector<Conn*> returned, completed;
    {
      std::lock_guard<std::mutex> lock(returned_mu_);
      returned.swap(returned_);
      completed.swap(completed_);
    }
    for (Conn* c : returned) hand_back(c);
    for (Conn* c : completed)
      if (finish_run(c, !c->run_keep_alive) == RunEnd::loop) hand_back(c);
  }

  // Runs the requests queued to run on the loop, one per address in turn,
  // at most `budget` of them; a pipelining connection queues again for
  // its next one.
  void run_inline(int budget) {
    while (!inline_turns_.empty() && budget-- > 0) {
      Address* a = inline_turns_.front();
      inline_turns_.pop_front();
      Conn* c = a->inline_ready.front();
      a->inline_ready.pop_front();
      if (!a->inline_ready.empty()) {
        inline_turns_.push_back(a);
      } else {
        a->inline_in_turns = false;
      }
      if (run(c, &inline_request_) == RunEnd::loop) hand_back(c);
    }
  }

  // Connections whose reads stopped at the per-round cap with decrypted
  // bytes left inside OpenSSL.
  void run_tls_ready() {
    std::deque<Conn*> ready;
    ready.swap(tls_ready_);
    // A timeout may have refused one meanwhile (it is being answered).
    for (Conn* c : ready)
      if (c->phase == Phase::head || c->phase == Phase::body) read_ready(c);
  }

  // The next heavy request to get a slot: the first of the address whose
  // turn it is; that address goes to the back of the turns.
  Conn* next_heavy() {
    if (heavy_turns_.empty()) return nullptr;
    Address* a = heavy_turns_.front();
    heavy_turns_.pop_front();
    Conn* c = a->heavy_ready.front();
    a->heavy_ready.pop_front();
    if (!a->heavy_ready.empty()) {
      heavy_turns_.push_back(a);
    } else {
      a->heavy_in_turns = false;
    }
    return c;
  }

  // Heavy requests still waiting for a slot past their request deadline
  // are refused (503): a wait for slots taken by others is bounded too.
  void expire_heavy_waiting() {
    std::vector<Conn*> expired;
    for (std::size_t i = heavy_turns_.size(); i-- > 0;) {
      Address* a = heavy_turns_[i];
      for (std::size_t j = a->heavy_ready.size(); j-- > 0;) {
        Conn* c = a->heavy_ready[j];
        if (now_ <= c->deadline) continue;
        a->heavy_ready.erase(a->heavy_ready.begin() + static_cast<std::ptrdiff_t>(j));
        expired.push_back(c);
      }
      if (a->heavy_ready.empty()) {
        a->heavy_in_turns = false;
        heavy_turns_.erase(heavy_turns_.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
    // Refused only now: refusing may close a connection at once (its
    // client is gone) and with it free its address entry.
    for (Conn* c : expired) {
      c->in_worker.store(false, std::memory_order_relaxed);
      counters_.request_timeouts++;
      refuse(c, 503, "server_busy", "the server is busy with large requests; retry later");
    }
  }

  // A connection a worker (or an inline run) is done with.
  void hand_back(Conn* c) {
    c->in_worker.store(false, std::memory_order_relaxed);
    if (c->heavy) {
      c->heavy = false;
      --heavy_running_;
      if (Conn* next = next_heavy()) {
        ++heavy_running_;
        next->heavy = true;
        to_workers(next);
      }
    }
    if (c->out_sent < c->out.size()) {
      c->phase = Phase::writing;
      c->deadline = now_ + options_.write_timeout + options_.request_timeout;
      c->idle_until = now_ + options_.write_timeout;
      write_ready(c);
    } else {
      after_write(c);
    }
  }

  // Timeouts, the minimum body rate, paused reads, the listener after EMFILE.
  void sweep() {
    expire_heavy_waiting();
    for (std::size_t i = refused_.size(); i-- > 0;)
      if (now_ > refused_[i]->deadline || now_ > refused_[i]->idle_until) close_refused(refused_[i]);
    if (listener_paused_ && listener_ >= 0) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.ptr = &listener_;
      ::epoll_ctl(epoll_, EPOLL_CTL_ADD, listener_, &ev);
      listener_paused_ = false;
    }
    for (std::size_t i = conns_.size(); i-- > 0;) {
      Conn* c = conns_[i];
      if (c->in_worker.load(std::memory_order_acquire)) continue;
      const bool late = now_ > c->deadline || now_ > c->idle_until;
      if (c->paused && !late) {
        // Waiting for the total buffer budget is not the client's doing;
        // waiting for its address's share is, and the minimum rate and
        // timeouts keep running for it.
        if (c->paused_by_total) {
          c->window_start = now_;
          c->window_bytes = 0;
          c->idle_until = now_ + options_.read_timeout;
        }
        if (c->phase == Phase::body && options_.min_body_rate > 0 && now_ - c->window_start >= kRateWindow &&
            !c->paused_by_total) {
          // fall through to the rate check below
        } else {
          read_ready(c);
          continue;
        }
      }
      // A paused connection that is not refused below goes back to reading
      // (read_ready pauses it again while memory is short).
      const bool was_paused = c->paused;
      c->paused = false;
      switch (c->phase) {
        case Phase::head:
          if (late) {
            if (!has_next_bytes(c)) {
              close_now(c);  // idle keep-alive connection
            } else {
              counters_.request_timeouts++;
              refuse(c, 408, "bad_request", "the request was not received in time");
            }
          }
          break;
        case Phase::body: {
          bool slow = false;
          if (options_.min_body_rate > 0 && now_ - c->window_start >= kRateWindow) {
            slow = c->window_bytes < options_.min_body_rate * static_cast<std::size_t>(kRateWindow.count());
            c->window_start = now_;
            c->window_bytes = 0;
          }
          if (late || slow) {
            counters_.request_timeouts++;
            c->linger_limit = kLingerAfterBadHead;
            refuse(c, 408, "bad_request",
                   slow ? "the body arrived too slowly" : "the request was not received in time");
          } else if (was_paused) {
            read_ready(c);
          }
          break;
        }
        case Phase::handshake:
          if (late) {
            counters_.tls_handshake_failures++;
            close_now(c);
          }
          break;
        case Phase::writing:
        case Phase::lingering:
          if (late) close_now(c);
          break;
        case Phase::worker:
          break;
      }
    }
  }

  // While stopping: idle connections, handshakes, heads still arriving and
  // lingering closes end; a body whose reading is paused is refused (503);
  // requests whose body is being read, that run or are being answered
  // finish.
  void close_idle() {
    while (!refused_.empty()) close_refused(refused_.back());
    for (std::size_t i = conns_.size(); i-- > 0;) {
      Conn* c = conns_[i];
      if (c->in_worker.load(std::memory_order_acquire)) continue;
      if (c->phase == Phase::handshake || c->phase == Phase::lingering || c->phase == Phase::head) {
        close_now(c);
      } else if (c->phase == Phase::body && c->paused) {
        // Its reading is paused (memory budget): it would hold the stop up
        // to its deadline, and a client gone meanwhile goes unnoticed.
        c->paused = false;
        refuse(c, 503, "server_busy", "the server is stopping; retry later");
      }
    }
  }

  // ---- workers ----

  void work() {
    std::string request;
    for (;;) {
      Conn* c = nullptr;
      Address* a = nullptr;
      {
        std::unique_lock<std::mutex> lock(queue_mu_);
        queue_cv_.wait(lock, [&] { return workers_stop_ || !turns_.empty(); });
        if (turns_.empty()) return;
        a = turns_.front();
        turns_.pop_front();
        c = a->ready.front();
        a->ready.pop_front();
        ++a->active;
        if (!a->ready.empty() && a->active < worker_share_) {
          turns_.push_back(a);
          queue_cv_.notify_one();
        } else {
          a->in_turns = false;
        }
      }
      counters_.busy_workers++;
      const bool back_to_loop = run(c, &request) == RunEnd::loop;
      counters_.busy_workers--;
      {
        std::lock_guard<std::mutex> lock(queue_mu_);
        --a->active;
        // A parked run's connection may have been answered and closed by
        // the loop meanwhile: then the address is this worker's to drop.
        if (a->active == 0 && a->connections == 0 && a->ready.empty()) {
          addresses_.erase(a->ip);
          continue;
        }
        if (!a->ready.empty() && !a->in_turns && a->active < worker_share_) {
          a->in_turns = true;
          turns_.push_back(a);
          queue_cv_.notify_one();
        }
      }
      if (back_to_loop) {
        bool was_empty;
        {
          std::lock_guard<std::mutex> lock(returned_mu_);
          was_empty = returned_.empty();
          returned_.push_back(c);
        }
        if (was_empty) wake();
      }
    }
  }

  // How a run ended. loop: hand the connection back to the loop; rearmed:
  // it was re-armed for its next request and belongs to the loop again
  // (the common keep-alive case, without a hand-over); parked: a direct
  // run whose answer comes later (complete_direct), holding no thread.
  enum class RunEnd { loop, rearmed, parked };
  static constexpr int kRunning = 1, kParked = 2, kDone = 3;

  // Runs the connection's request.
  RunEnd run(Conn* c, std::string* request) {
    if (c->stream) {  // the next part of a streamed response
      c->out.clear();
      const ResponseStream::Part part = c->stream->next(&c->out);
      if (part == ResponseStream::Part::more) return finish_run(c, false);
      c->stream.reset();
      return finish_run(c, part == ResponseStream::Part::abort || !c->run_keep_alive);
    }
    const bool keep_alive = c->head.keep_alive && !c->close_after && !stopping_.load();
    bool closed = false;
    c->out.clear();
    if (c->direct) {
      c->run_keep_alive = keep_alive;
      direct_in_flight_.fetch_add(1, std::memory_order_relaxed);
      c->completion.store(kRunning, std::memory_order_relaxed);
      hooks_.run_direct(c->head, c->body, c->ip, keep_alive, &c->out, &c->stream, [this, c] { complete_direct(c); });
      int expected = kRunning;
      if (c->completion.compare_exchange_strong(expected, kParked, std::memory_order_acq_rel)) return RunEnd::parked;
    } else {
      normalized_head(c->head, keep_alive, request);
      RequestStream stream(*request, c);
      router_.process_request(stream, !keep_alive, closed, nullptr);
    }
    return finish_run(c, closed || !keep_alive);
  }

  // The answer of a direct run is rendered (on any thread): the run goes on
  // where it is, or the loop finishes a parked one.
  void complete_direct(Conn* c) {
    int expected = kRunning;
    const bool parked = !c->completion.compare_exchange_strong(expected, kDone, std::memory_order_acq_rel);
    bool was_empty = false;
    if (parked) {
      std::lock_guard<std::mutex> lock(returned_mu_);
      was_empty = returned_.empty() && completed_.empty();
      completed_.push_back(c);
    }
    if (was_empty) wake();
    // Last: serve() may free the connection once this reaches 0.
    if (direct_in_flight_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(returned_mu_);
      direct_done_cv_.notify_all();
    }
  }

  // After the answer: send it and go on with the connection.
  RunEnd finish_run(Conn* c, bool close) {
    if (close) c->close_after = true;
    c->body.clear();
    if (c->body.capacity() > kReadChunk) std::string().swap(c->body);
    c->out_sent = 0;
    bool failed = false;
    bool sent = write_some(c, &failed);
    if (failed) {
      c->out.clear();
      c->out_sent = 0;
      c->close_after = true;
      c->stream.reset();
      return RunEnd::loop;
    }
    // A response still going out, a close, or a next request already here
    // (pipelined, or inside TLS): the loop takes it from here.
    if (!sent || c->stream || c->close_after || c->heavy || c->next_pos < c->in.size() || !c->pending.empty() ||
        (c->ssl && SSL_pending(c->ssl) > 0))
      return RunEnd::loop;
    // Idle: re-arm for the next request; the loop owns it from here.
    c->out.clear();
    if (c->out.capacity() > kReadChunk) std::string().swap(c->out);
    c->out_sent = 0;
    start_next_head(c);
    account(c, held(c));
    c->phase = Phase::head;
    c->linger_limit = kLingerAfterBadHead;
    c->deadline = Clock::now() + options_.keep_alive_timeout;
    c->idle_until = c->deadline;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLONESHOT | EPOLLRDHUP;
    ev.data.ptr = c;
    ::epoll_ctl(epoll_, EPOLL_CTL_MOD, c->fd, &ev);
    c->in_worker.store(false, std::memory_order_release);
    return RunEnd::rearmed;
  }

  ConnectionOptions options_;
  ConnectionHooks hooks_;
  SSL_CTX* tls_;
  Router router_;
  int epoll_ = -1;
  int wake_ = -1;
  int listener_ = -1;
  bool listener_paused_ = false;
  std::atomic<bool> stopping_{false};
  Counters counters_;
  Clock::time_point now_ = Clock::now();
  std::vector<Conn*> conns_;       // loop thread only
  std::vector<Refused*> refused_;  // loop thread only; at most options_.max_refused_lingering
  std::string inline_request_;
  std::deque<Address*> inline_turns_;  // addresses with requests to run on the loop (run_inline)
  std::deque<Conn*> tls_ready_;        // see run_tls_ready
  int heavy_running_ = 0;              // heavy requests with a worker (loop thread only)
  std::deque<Address*> heavy_turns_;   // addresses with heavy requests waiting for a slot

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::unordered_map<std::string, Address> addresses_;
  std::deque<Address*> turns_;  // addresses with ready requests and a worker to spare, in turn
  int worker_share_ = 1;
  bool workers_stop_ = false;

  std::mutex returned_mu_;
  std::vector<Conn*> returned_;
  // Parked direct runs whose answer came (complete_direct), and the direct
  // runs whose answer has not come yet (guarded by returned_mu_).
  std::vector<Conn*> completed_;
  std::atomic<std::size_t> direct_in_flight_{0};
  std::condition_variable direct_done_cv_;  // direct_in_flight_ fell to 0 (with returned_mu_)
};

SSL_CTX* load_tls(const ConnectionOptions& options, std::string* error) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) {
    *error = "cannot create a TLS context";
    return nullptr;
  }
  // TLS 1.2 at least: older versions have known weaknesses.
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_use_certificate_chain_file(ctx, options.tls_cert_path.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, options.tls_key_path.c_str(), SSL_FILETYPE_PEM) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    std::FILE* f = std::fopen(options.tls_cert_path.c_str(), "rb");
    if (!f) {
      *error = "cannot read the TLS certificate " + options.tls_cert_path + ": " + std::strerror(errno);
    } else {
      std::fclose(f);
      f = std::fopen(options.tls_key_path.c_str(), "rb");
      if (!f) {
        *error = "cannot read the TLS key " + options.tls_key_path + ": " + std::strerror(errno);
      } else {
        std::fclose(f);
        *error = "cannot load the TLS certificate " + options.tls_cert_path + " and key " + options.tls_key_path +
                 " (PEM files of a certificate and its private key expected)";
      }
    }
    SSL_CTX_free(ctx);
    return nullptr;
  }
  return ctx;
}

}  // namespace

std::unique_ptr<ConnectionServer> ConnectionServer::create(const ConnectionOptions& options, ConnectionHooks hooks,
                                                           std::string* error) {
  if (options.tls_cert_path.empty() != options.tls_key_path.empty()) {
    *error = "--tls-cert and --tls-key must be given together";
    return nullptr;
  }
  SSL_CTX* tls = nullptr;
  if (!options.tls_cert_path.empty()) {
    tls = load_tls(options, error);
    if (!tls) return nullptr;
  }
  return std::make_unique<Loop>(options, std::move(hooks), tls);
}

std::string render_connection_metrics(const ConnectionStats& stats) {
  std::string text;
  auto metric = [&](const char* name, const char* help, const char* type, std::uint64_t value) {
    text += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " +
            std::to_string(value) + "\n";
  };
  metric("writeapi_connections_accepted_total", "Connections accepted.", "counter", stats.accepted);
  metric("writeapi_connections_open", "Connections held (idle, arriving, served or lingering).", "gauge", stats.open);
  text +=
      "# HELP writeapi_connections_refused_total Connections closed before any request was read, by reason.\n"
      "# TYPE writeapi_connections_refused_total counter\n"
      "writeapi_connections_refused_total{reason=\"per_ip_limit\"} " +
      std::to_string(stats.refused_per_ip) +
      "\n"
      "writeapi_connections_refused_total{reason=\"capacity\"} " +
      std::to_string(stats.refused_capacity) +
      "\n"
      "writeapi_connections_refused_total{reason=\"tls_handshake\"} " +
      std::to_string(stats.tls_handshake_failures) + "\n";
  metric("writeapi_request_heads_too_large_total", "Requests refused with 431: request line and headers too large.",
         "counter", stats.heads_too_large);
  metric("writeapi_request_framing_errors_total", "Requests refused for their framing (400, 414, 417, 501, 505).",
         "counter", stats.framing_errors);
  metric("writeapi_request_timeouts_total",
         "Requests cut short by the read timeout, the request deadline or the minimum body rate.", "counter",
         stats.request_timeouts);
  metric("writeapi_connections_lingering_closes_total",
         "Connections closed after reading and discarding what was left.", "counter", stats.lingering_closes);
  metric("writeapi_connections_buffer_pauses_total", "Reads paused because request buffers reached their cap.",
         "counter", stats.buffer_pauses);
  metric("writeapi_connections_buffered_bytes", "Request bytes (heads and bodies) held by the connection layer.",
         "gauge", stats.buffered_bytes);
  metric("writeapi_workers_busy", "Workers running a request.", "gauge", stats.busy_workers);
  return text;
}

}  // namespace writeapi::server
