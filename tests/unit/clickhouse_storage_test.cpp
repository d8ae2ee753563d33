// The ClickHouse backend without ClickHouse: its encoding helpers, option
// checks, and its batching, failure and recovery behaviour against a fake
// ClickHouse HTTP endpoint (a cpp-httplib server that records INSERTs and can
// hold or refuse them). The same backend against a real server runs in
// storage_contract_test and tests/clickhouse_integration.
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "clickhouse_storage.h"
#include "writeapi/clickhouse.h"
#include "writeapi/storage.h"

using namespace std::chrono_literals;
using writeapi::AppendBatch;
using writeapi::ErrorCode;
using writeapi::Status;
using writeapi::Storage;
namespace ch = writeapi::clickhouse;

namespace {

struct Row {
  std::string bucket, key, device_id;
  std::uint32_t received = 0;
  std::uint64_t received_us = 0;
  std::string frontend;
  std::uint64_t seq = 0;
  std::string line;
  std::string request_id, request_fp;  // when the INSERT names them
};

struct Insert {
  std::string query;                               // the INSERT statement
  std::multimap<std::string, std::string> params;  // URL parameters
  std::vector<Row> rows;
};

bool get_fixed(std::string_view* in, int bytes, std::uint64_t* value) {
  if (in->size() < static_cast<std::size_t>(bytes)) return false;
  *value = 0;
  for (int i = 0; i < bytes; ++i) *value |= std::uint64_t(static_cast<unsigned char>((*in)[i])) << (8 * i);
  in->remove_prefix(bytes);
  return true;
}

bool decode_rows(std::string_view in, bool with_request, std::vector<Row>* rows) {
  while (!in.empty()) {
    Row row;
    std::string_view text;
    std::uint64_t number;
    if (!ch::get_string(&in, &text)) return false;
    row.bucket = text;
    if (!ch::get_string(&in, &text)) return false;
    row.key = text;
    if (!ch::get_string(&in, &text)) return false;
    row.device_id = text;
    if (!get_fixed(&in, 4, &number)) return false;
    row.received = static_cast<std::uint32_t>(number);
    if (!get_fixed(&in, 8, &row.received_us)) return false;
    if (!ch::get_string(&in, &text)) return false;
    row.frontend = text;
    if (!get_fixed(&in, 8, &row.seq)) return false;
    if (!ch::get_string(&in, &text)) return false;
    row.line = text;
    if (with_request) {
      if (!ch::get_string(&in, &text)) return false;
      row.request_id = text;
      if (!ch::get_string(&in, &text)) return false;
      row.request_fp = text;
    }
    rows->push_back(std::move(row));
  }
  return true;
}

// Just enough of ClickHouse's HTTP interface for the backend: DDL, the
// system.columns check and INSERT ... FORMAT RowBinary.
class FakeClickHouse {
 public:
  explicit FakeClickHouse(int port = 0) {
    server_.Post("/", [this](const httplib::Request& req, httplib::Response& res) { handle(req, res); });
    port_ = port ? (server_.bind_to_port("127.0.0.1", port) ? port : -1) : server_.bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(1ms);
  }
  ~FakeClickHouse() {
    release_inserts();
    server_.stop();
    thread_.join();
  }

  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // Answer INSERTs with a ClickHouse error (500) until turned off.
  void refuse_inserts(bool refuse) { refuse_ = refuse; }
  // INSERTs wait (unanswered) until release_inserts().
  void hold_inserts() {
    std::lock_guard<std::mutex> lock(mu_);
    holding_ = true;
  }
  void release_inserts() {
    std::lock_guard<std::mutex> lock(mu_);
    holding_ = false;
    cv_.notify_all();
  }
  // With no table, system.columns answers nothing (a missing table).
  void drop_table() { table_exists_ = false; }
  // A table made before request ids: no request_id or request_fp column
  // until an ALTER TABLE adds them.
  void old_table() { request_columns_ = false; }
  // What the SELECT of request ids answers (RowBinary rows).
  void set_request_rows(std::string rows) {
    std::lock_guard<std::mutex> lock(mu_);
    request_rows_ = std::move(rows);
  }

  std::vector<Insert> inserts() const {
    std::lock_guard<std::mutex> lock(mu_);
    return inserts_;
  }
  std::vector<std::string> statements() const {
    std::lock_guard<std::mutex> lock(mu_);
    return statements_;
  }
  int inserts_received() const { return inserts_received_; }

 private:
  void handle(const httplib::Request& req, httplib::Response& res) {
    if (req.has_param("query")) {
      inserts_received_++;
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return !holding_; });
      if (refuse_) {
        res.status = 500;
        res.set_content("Code: 252, e.displayText() = DB::Exception: Too many parts (300).\n", "text/plain");
        return;
      }
      Insert insert;
      insert.query = req.get_param_value("query");
      for (const auto& [name, value] : req.params) insert.params.emplace(name, value);
      if (!decode_rows(req.body, insert.query.find("request_id") != std::string::npos, &insert.rows)) {
        res.status = 400;
        res.set_content("Code: 33, Cannot read all data\n", "text/plain");
        return;
      }
      inserts_.push_back(std::move(insert));
      return;  // 200, empty body
    }
    std::lock_guard<std::mutex> lock(mu_);
    statements_.push_back(req.body);
    if (req.body.rfind("SELECT name FROM system.columns", 0) == 0) {
      std::string body;
      if (table_exists_)
        for (const char* column : {"bucket", "key", "device_id", "received", "received_us", "frontend", "seq", "line"})
          ch::put_string(&body, column);
      if (table_exists_ && request_columns_)
        for (const char* column : {"request_id", "request_fp"}) ch::put_string(&body, column);
      res.set_content(body, "application/octet-stream");
    } else if (req.body.rfind("ALTER TABLE", 0) == 0) {
      request_columns_ = true;
    } else if (req.body.rfind("SELECT bucket, request_id", 0) == 0) {
      res.set_content(request_rows_, "application/octet-stream");
    }
  }

  httplib::Server server_;
  std::thread thread_;
  int port_ = -1;
  std::atomic<bool> refuse_{false};
  std::atomic<bool> table_exists_{true};
  std::atomic<bool> request_columns_{true};
  std::string request_rows_;
  std::atomic<int> inserts_received_{0};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool holding_ = false;
  std::vector<Insert> inserts_;
  std::vector<std::string> statements_;
};

AppendBatch batch(std::string_view key, std::string_view lines, std::size_t items, std::string_view device = {}) {
  AppendBatch b;
  b.bucket = "homelab";
  b.key = key;
  b.device_id = device;
  b.lines = lines;
  b.item_count = items;
  return b;
}

// Appends on threads of their own. Their outcomes are checked on the test's
// thread after join() (Catch2 assertions are not thread-safe).
class Appenders {
 public:
  explicit Appenders(Storage* storage) : storage_(storage) {}
  ~Appenders() { join(); }
  void start(std::string key, std::string lines, std::size_t items) {
    Status* out = &results_.emplace_back();
    threads_.emplace_back([this, out, key = std::move(key), lines = std::move(lines), items] {
      *out = storage_->append(batch(key, lines, items));
    });
  }
  const std::deque<Status>& join() {
    for (auto& thread : threads_)
      if (thread.joinable()) thread.join();
    return results_;
  }

 private:
  Storage* storage_;
  std::deque<Status> results_;  // a deque: elements stay put as it grows
  std::vector<std::thread> threads_;
};

std::size_t count_ok(const std::deque<Status>& results) {
  return static_cast<std::size_t>(
      std::count_if(results.begin(), results.end(), [](const Status& s) { return s.ok(); }));
}

struct Logged {
  std::mutex mu;
  std::vector<std::string> lines;
  std::size_t count_containing(std::string_view text) {
    std::lock_guard<std::mutex> lock(mu);
    std::size_t n = 0;
    for (const auto& line : lines) n += line.find(text) != std::string::npos;
    return n;
  }
};

std::unique_ptr<Storage> open(const FakeClickHouse& fake, writeapi::ClickHouseStorageOptions options,
                              Logged* logged = nullptr) {
  options.url = fake.url();
  options.frontend_id = "fe1";
  options.connect_timeout = 1s;
  options.request_timeout = 5s;
  options.log = [logged](std::string_view line) {
    if (!logged) return;
    std::lock_guard<std::mutex> lock(logged->mu);
    logged->lines.emplace_back(line);
  };
  Status status;
  auto storage = writeapi::make_clickhouse_storage(options, &status);
  INFO(status.name() << ": " << status.message());
  REQUIRE(storage);
  return storage;
}

// A loopback TCP port nothing listens on (bound, then released).
int closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0);
  ::close(fd);
  return ntohs(address.sin_port);
}

}  // namespace

TEST_CASE("clickhouse: URLs are split for the HTTP client", "[clickhouse]") {
  ch::Endpoint endpoint;
  std::string error;
  REQUIRE(ch::parse_url("http://127.0.0.1:8123", &endpoint, &error));
  CHECK(endpoint.scheme_host_port == "http://127.0.0.1:8123");
  CHECK(endpoint.path_prefix.empty());
  REQUIRE(ch::parse_url("https://ch.example:8443/proxy/clickhouse/", &endpoint, &error));
  CHECK(endpoint.scheme_host_port == "https://ch.example:8443");
  CHECK(endpoint.path_prefix == "/proxy/clickhouse");
  REQUIRE(ch::parse_url("http://[::1]:8123/", &endpoint, &error));
  CHECK(endpoint.scheme_host_port == "http://[::1]:8123");
  for (const char* bad : {"ftp://host", "host:8123", "http://", "http:///x", "http://user:pw@host:8123",
                          "http://host:8123/?database=x"}) {
    INFO(bad);
    CHECK_FALSE(ch::parse_url(bad, &endpoint, &error));
    CHECK_FALSE(error.empty());
  }
}

TEST_CASE("clickhouse: identifiers, string literals and URL parameters are quoted", "[clickhouse]") {
  CHECK(ch::valid_identifier("writeapi"));
  CHECK(ch::valid_identifier("_lines_2"));
  CHECK_FALSE(ch::valid_identifier(""));
  CHECK_FALSE(ch::valid_identifier("2lines"));
  CHECK_FALSE(ch::valid_identifier("a-b"));
  CHECK_FALSE(ch::valid_identifier("a`b"));
  CHECK_FALSE(ch::valid_identifier(std::string(129, 'a')));
  CHECK(ch::quote_string("homelab") == "'homelab'");
  CHECK(ch::quote_string("it's a \\ test") == "'it\\'s a \\\\ test'");
  CHECK(ch::url_encode("INSERT INTO `d`.`t` (a, b)") == "INSERT%20INTO%20%60d%60.%60t%60%20%28a%2C%20b%29");
  CHECK(ch::url_encode("a-b_c.d~") == "a-b_c.d~");
}

TEST_CASE("clickhouse: RowBinary strings and integers round-trip", "[clickhouse]") {
  std::string out;
  const std::string long_text(300, '\t');  // a two-byte length
  const std::string bytes("a\0b\n\\\xc3\xa4\xff", 8);
  ch::put_string(&out, "");
  ch::put_string(&out, long_text);
  ch::put_string(&out, bytes);
  CHECK(static_cast<unsigned char>(out[1]) == 0xac);  // 300 = 0b10'0101100
  CHECK(static_cast<unsigned char>(out[2]) == 0x02);
  std::string_view in = out, text;
  REQUIRE(ch::get_string(&in, &text));
  CHECK(text.empty());
  REQUIRE(ch::get_string(&in, &text));
  CHECK(text == long_text);
  REQUIRE(ch::get_string(&in, &text));
  CHECK(text == bytes);
  CHECK(in.empty());
  CHECK_FALSE(ch::get_string(&in, &text));
  std::string_view truncated = std::string_view(out).substr(0, 10);
  truncated.remove_prefix(1);
  CHECK_FALSE(ch::get_string(&truncated, &text));

  std::string numbers;
  ch::put_u32(&numbers, 0x01020304u);
  ch::put_u64(&numbers, 0x0102030405060708ull);
  CHECK(numbers == std::string("\x04\x03\x02\x01\x08\x07\x06\x05\x04\x03\x02\x01", 12));
}

TEST_CASE("clickhouse: the partition month is the UTC month", "[clickhouse]") {
  CHECK(ch::utc_year_month(0) == 197001);
  CHECK(ch::utc_year_month(1584156800) == 202003);
  CHECK(ch::utc_year_month(1709251199) == 202402);  // 2024-02-29 23:59:59
  CHECK(ch::utc_year_month(1709251200) == 202403);
}

TEST_CASE("clickhouse: invalid options are refused before connecting", "[clickhouse]") {
  auto refused = [](writeapi::ClickHouseStorageOptions options) {
    Status status;
    auto storage = writeapi::make_clickhouse_storage(options, &status);
    CHECK(storage == nullptr);
    CHECK(status.code() == ErrorCode::storage_error);
    CHECK_FALSE(status.message().empty());
  };
  writeapi::ClickHouseStorageOptions options;
  options.url = "ftp://127.0.0.1";
  refused(options);
  options = {};
  options.database = "no-dashes";
  refused(options);
  options = {};
  options.table = "x`; DROP TABLE y";
  refused(options);
  options = {};
  options.flush_rows = 0;
  refused(options);
  options = {};
  options.max_inserts_in_flight = 0;
  refused(options);
}

TEST_CASE("clickhouse: an unreachable server fails the start with storage_unavailable", "[clickhouse]") {
  writeapi::ClickHouseStorageOptions options;
  options.url = "http://127.0.0.1:" + std::to_string(closed_port());
  Status status;
  auto started = std::chrono::steady_clock::now();
  auto storage = writeapi::make_clickhouse_storage(options, &status);
  CHECK(storage == nullptr);
  CHECK(status.code() == ErrorCode::storage_unavailable);
  CHECK(status.message().find(options.url) != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - started < 5s);
}

TEST_CASE("clickhouse: the schema is created when asked, and a missing table is refused", "[clickhouse]") {
  FakeClickHouse fake;
  writeapi::ClickHouseStorageOptions options;
  options.database = "db1";
  options.table = "t1";
  open(fake, options);
  std::vector<std::string> statements = fake.statements();
  REQUIRE(statements.size() == 4);  // and the request ids of the window
  CHECK(statements[0] == "CREATE DATABASE IF NOT EXISTS `db1`");
  CHECK(statements[1] == writeapi::clickhouse_table_sql(options));
  CHECK(statements[1].find("CREATE TABLE IF NOT EXISTS `db1`.`t1`") == 0);
  CHECK(statements[1].find("ENGINE = MergeTree") != std::string::npos);
  CHECK(statements[1].find("PARTITION BY toYYYYMM(received)") != std::string::npos);
  CHECK(statements[1].find("ORDER BY (bucket, key, received_us, frontend, seq)") != std::string::npos);

  FakeClickHouse managed;
  options.create_schema = false;
  open(managed, options);
  REQUIRE(managed.statements().size() == 2);  // only the column check and the request ids

  managed.drop_table();
  options.url = managed.url();
  Status status;
  CHECK(writeapi::make_clickhouse_storage(options, &status) == nullptr);
  CHECK(status.code() == ErrorCode::storage_error);
  CHECK(status.message().find("does not exist") != std::string::npos);
}

TEST_CASE("clickhouse: one row per line, every byte kept, in order", "[clickhouse]") {
  FakeClickHouse fake;
  writeapi::ClickHouseStorageOptions options;
  options.flush_interval = 0ms;
  auto storage = open(fake, options);
  const std::string lines = "{\"a\":\"x\\ty\\\\\"}\n\"h\xc3\xa4\"\n\n42\n";
  REQUIRE(storage->append(batch("k1", lines, 4, "dev-1")).ok());
  REQUIRE(storage->append(batch("k2", "7\n", 1)).ok());
  CHECK(storage->append(batch("k3", "", 0)).ok());  // stores nothing, sends nothing

  std::vector<Insert> inserts = fake.inserts();
  REQUIRE(inserts.size() == 2);
  CHECK(inserts[0].query ==
        "INSERT INTO `writeapi`.`lines` (bucket, key, device_id, received, received_us, frontend, seq, line, "
        "request_id, request_fp) FORMAT RowBinary");
  CHECK(inserts[0].params.find("insert_distributed_sync")->second == "1");
  CHECK(std::stoull(inserts[0].params.find("max_insert_block_size")->second) > 4);
  const std::vector<Row>& rows = inserts[0].rows;
  REQUIRE(rows.size() == 4);
  const char* expected[] = {"{\"a\":\"x\\ty\\\\\"}", "\"h\xc3\xa4\"", "", "42"};
  for (std::size_t i = 0; i < rows.size(); ++i) {
    CHECK(rows[i].bucket == "homelab");
    CHECK(rows[i].key == "k1");
    CHECK(rows[i].device_id == "dev-1");
    CHECK(rows[i].frontend == "fe1");
    CHECK(rows[i].line == expected[i]);
    CHECK(rows[i].seq == rows[0].seq + i);              // consecutive
    CHECK(rows[i].received_us == rows[0].received_us);  // one receive time per append
    CHECK(rows[i].received == rows[0].received_us / 1000000);
  }
  auto now_s = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch());
  CHECK(std::abs(static_cast<long long>(rows[0].received) - now_s.count()) < 60);
  REQUIRE(inserts[1].rows.size() == 1);
  CHECK(inserts[1].rows[0].device_id.empty());
  CHECK(inserts[1].rows[0].seq == rows[3].seq + 1);
  CHECK(inserts[1].rows[0].received_us >= rows[0].received_us);

  writeapi::StorageStats stats = storage->stats();
  CHECK(stats.appends == 2);
  CHECK(stats.bytes_written == lines.size() + 2);
  CHECK(stats.syncs == 2);  // INSERTs
  CHECK(stats.write_errors == 0);
}

TEST_CASE("clickhouse: rows stream from the requests, long lines and many of them", "[clickhouse]") {
  FakeClickHouse fake;
  writeapi::ClickHouseStorageOptions options;
  options.flush_interval = 0ms;
  auto storage = open(fake, options);
  // Past the 64 KiB send buffer, a line passed through whole (100 KB), a
  // line of exactly the pass-through size, and a last line without '\n'.
  std::vector<std::string> expected;
  std::string lines;
  for (int i = 0; i < 200; ++i) expected.push_back(std::to_string(i) + std::string(1000, 'x'));
  expected.push_back(std::string(100000, 'L'));
  expected.push_back(std::string(4096, 'P'));
  expected.push_back("{\"last\":\"\xc3\xa4\"}");
  for (const std::string& line : expected) lines += line + "\n";
  lines.pop_back();
  REQUIRE(storage->append(batch("big", lines, expected.size(), "d")).ok());
  std::vector<Insert> inserts = fake.inserts();
  REQUIRE(inserts.size() == 1);
  REQUIRE(inserts[0].rows.size() == expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    INFO("row " << i);
    CHECK(inserts[0].rows[i].line == expected[i]);
    CHECK(inserts[0].rows[i].key == "big");
    CHECK(inserts[0].rows[i].seq == inserts[0].rows[0].seq + i);
  }
}

TEST_CASE("clickhouse: appends queued behind an INSERT in flight share the next INSERT", "[clickhouse]") {
  FakeClickHouse fake;
  writeapi::ClickHouseStorageOptions options;
  options.flush_interval = 0ms;
  options.max_inserts_in_flight = 1;
  auto storage = open(fake, options);
  fake.hold_inserts();
  Appenders appenders(storage.get());
  appenders.start("first", "0\n", 1);
  while (fake.inserts_received() < 1) std::this_thread::sleep_for(1ms);

  constexpr int kWriters = 10;
  for (int t = 0; t < kWriters; ++t)
    appenders.start("shared", "{\"t\":" + std::to_string(t) + ",\"p\":0}\n{\"t\":" + std::to_string(t) + ",\"p\":1}\n",
                    2);
  std::this_thread::sleep_for(500ms);  // every writer queues behind the held INSERT
  fake.release_inserts();
  CHECK(count_ok(appenders.join()) == kWriters + 1);

  std::vector<Insert> inserts = fake.inserts();
  REQUIRE(inserts.size() == 2);
  CHECK(inserts[0].rows.size() == 1);
  const std::vector<Row>& rows = inserts[1].rows;
  REQUIRE(rows.size() == 2 * kWriters);
  for (std::size_t i = 0; i < rows.size(); i += 2) {
    // An append's lines are adjacent, in order, with consecutive seq.
    CHECK(rows[i].line.substr(0, rows[i].line.find(",")) == rows[i + 1].line.substr(0, rows[i + 1].line.find(",")));
    CHECK(rows[i].line.find("\"p\":0") != std::string::npos);
    CHECK(rows[i + 1].seq == rows[i].seq + 1);
    if (i > 0) CHECK(rows[i].received_us >= rows[i - 1].received_us);
  }
  CHECK(storage->stats().appends == kWriters + 1);
  CHECK(storage->stats().syncs == 2);
}

TEST_CASE("clickhouse: max_inserts_in_flight INSERTs go out at once, then rows queue", "[clickhouse]") {
  FakeClickHouse fake;
  writeapi::ClickHouseStorageOptions options;
  options.flush_interval = 0ms;
  options.max_inserts_in_flight = 2;
  auto storage = open(fake, options);
  fake.hold_inserts();
  Appenders appenders(storage.get());
  appenders.start("a", "1\n", 1);
  while (fake.inserts_received() < 1) std::this_thread::sleep_for(1ms);
  appenders.start("b", "2\n", 1);
  while (fake.inserts_received() < 2) std::this_thread::sleep_for(1ms);  // a second INSERT while one is held
  for (int t = 0; t < 5; ++t) appenders.start("c", "3\n", 1);
  std::this_thread::sleep_for(300ms);
  CHECK(fake.inserts_received() == 2);  // both slots busy: the five wait together
  fake.release_inserts();
  CHECK(count_ok(appenders.join()) == 7);
  std::vector<Insert> inserts = fake.inserts();
  REQUIRE(inserts.size() == 3);
  std::vector<std::size_t> sizes;
  for (const Insert& insert : inserts) sizes.push_back(insert.rows.size());
  std::sort(sizes.begin(), sizes.end());
  CHECK(sizes == std::vector<std::size_t>{1, 1, 5});
}

TEST_CASE("clickhouse: flush_rows sends at once, flush_interval waits for company", "[clickhouse]") {
  FakeClickHouse fake;
  writeapi::ClickHouseStorageOptions options;
  options.flush_rows = 4;
  options.flush_interval = 60s;
  auto storage = open(fake, options);
  auto started = std::chrono::steady_clock::now();
  // Two appends of two rows fill the group: sent without waiting 60 s.
  Appenders appenders(storage.get());
  appenders.start("k", "1\n2\n", 2);
  appenders.start("k", "3\n4\n", 2);
  CHECK(count_ok(appenders.join()) == 2);
  // One append over flush_rows goes alone, at once.
  CHECK(storage->append(batch("k", "5\n6\n7\n8\n9\n", 5)).ok());
  CHECK(std::chrono::steady_clock::now() - started < 30s);
  std::vector<Insert> inserts = fake.inserts();
  REQUIRE(inserts.size() == 2);
  CHECK(inserts[0].rows.size() == 4);
  CHECK(inserts[1].rows.size() == 5);

  FakeClickHouse slow;
  options.flush_rows = 10000;
  options.flush_interval = 100ms;
  storage = open(slow, options);
  started = std::chrono::steady_clock::now();
  CHECK(storage->append(batch("k", "1\n", 1)).ok());
  CHECK(std::chrono::steady_clock::now() - started >= 90ms);
}

TEST_CASE("clickhouse: a refused INSERT is storage_unavailable for all its appends, then recovers", "[clickhouse]") {
  FakeClickHouse fake;
  writeapi::ClickHouseStorageOptions options;
  options.flush_interval = 20ms;
  Logged logged;
  auto storage = open(fake, options, &logged);
  fake.refuse_inserts(true);
  Appenders appenders(storage.get());
  for (int t = 0; t < 4; ++t) appenders.start("k", "1\n2\n", 2);
  for (const Status& s : appenders.join()) {
    CHECK(s.code() == ErrorCode::storage_unavailable);
    CHECK(s.http_status() == 503);
    CHECK(s.retry_after_seconds() == 1);
    CHECK(s.message().find("Too many parts") == std::string::npos);  // no internals for clients
  }
  Status again = storage->append(batch("k", "3\n", 1));
  CHECK(again.code() == ErrorCode::storage_unavailable);
  CHECK(fake.inserts().empty());
  CHECK(storage->stats().write_errors == 5);
  CHECK(storage->stats().appends == 0);
  CHECK(logged.count_containing("Too many parts") == 1);  // logged once, not per request

  fake.refuse_inserts(false);
  REQUIRE(storage->append(batch("k", "4\n", 1)).ok());
  REQUIRE(fake.inserts().size() == 1);
  CHECK(fake.inserts()[0].rows.size() == 1);
  CHECK(fake.inserts()[0].rows[0].line == "4");
  CHECK(logged.count_containing("succeed again") == 1);
  CHECK(storage->stats().appends == 1);
}

TEST_CASE("clickhouse: a server that goes away and comes back on its port", "[clickhouse]") {
  auto fake = std::make_unique<FakeClickHouse>();
  const int port = fake->port();
  writeapi::ClickHouseStorageOptions options;
  options.flush_interval = 0ms;
  auto storage = open(*fake, options);
  REQUIRE(storage->append(batch("k", "1\n", 1)).ok());
  fake.reset();  // connection refused from now on
  Status s = storage->append(batch("k", "2\n", 1));
  CHECK(s.code() == ErrorCode::storage_unavailable);
  fake = std::make_unique<FakeClickHouse>(port);
  REQUIRE(storage->append(batch("k", "3\n", 1)).ok());
  REQUIRE(fake->inserts().size() == 1);
  CHECK(fake->inserts()[0].rows[0].line == "3");
}

TEST_CASE("clickhouse: a request id is stored in every row of its request and read back at start",
          "[clickhouse][ids]") {
  FakeClickHouse fake;
  writeapi::ClickHouseStorageOptions options;
  options.flush_interval = 0ms;
  // What the table answers for the ids of the window: two of "homelab".
  std::string rows;
  const std::uint64_t now_us = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
  for (int i : {2, 1}) {  // newest first, as ORDER BY ... DESC sends them
    ch::put_string(&rows, "homelab");
    ch::put_string(&rows, "dev/" + std::to_string(i));
    ch::put_string(&rows, std::string(30, '0') + "0" + std::to_string(i));
    ch::put_u64(&rows, static_cast<std::uint64_t>(i + 1));
    ch::put_u64(&rows, now_us - 1000000 * static_cast<std::uint64_t>(10 - i));
  }
  ch::put_string(&rows, "homelab");  // a fingerprint not written by us is skipped
  ch::put_string(&rows, "foreign");
  ch::put_string(&rows, "xyz");
  ch::put_u64(&rows, 1);
  ch::put_u64(&rows, now_us);
  fake.set_request_rows(rows);
  auto storage = open(fake, options);
  std::vector<writeapi::StoredRequest> recovered;
  REQUIRE(storage->take_recovered_requests(&recovered).ok());
  REQUIRE(recovered.size() == 2);
  CHECK(recovered[0].id == "dev/1");  // oldest first
  CHECK(recovered[0].item_count == 2);
  CHECK(recovered[0].fingerprint[15] == 1);
  CHECK(recovered[1].id == "dev/2");
  CHECK(recovered[1].bucket == "homelab");
  REQUIRE(storage->take_recovered_requests(&recovered).ok());
  CHECK(recovered.empty());
  const std::string select = fake.statements().back();
  CHECK(select.find("LIMIT 1000000 BY bucket") != std::string::npos);
  CHECK(select.find("86400000000") != std::string::npos);  // the window, in microseconds

  AppendBatch tagged = batch("k", "1\n2\n", 2);
  tagged.request.id = "dev/3";
  tagged.request.fingerprint[0] = 0xAB;
  REQUIRE(storage->append(tagged).ok());
  std::atomic<bool> done{false}, async_ok{false};
  storage->append_async(tagged, [&](Status s) {
    async_ok = s.ok();
    done = true;
  });
  REQUIRE(storage->append(batch("k", "3\n", 1)).ok());
  while (!done) std::this_thread::sleep_for(1ms);
  CHECK(async_ok);
  std::vector<Row> all;
  for (const Insert& insert : fake.inserts()) all.insert(all.end(), insert.rows.begin(), insert.rows.end());
  // Two flush threads may send the three appends' INSERTs in any order.
  REQUIRE(all.size() == 5);
  for (const Row& row : all) {
    INFO("line " << row.line);
    if (row.line == "3") {
      CHECK(row.request_id.empty());
      CHECK(row.request_fp.empty());
    } else {
      CHECK(row.request_id == "dev/3");
      CHECK(row.request_fp == "ab" + std::string(30, '0'));
    }
  }
}

TEST_CASE("clickhouse: a table made before request ids gets their columns when the schema is ours",
          "[clickhouse][ids]") {
  FakeClickHouse fake;
  fake.old_table();
  writeapi::ClickHouseStorageOptions options;
  options.create_schema = true;
  auto storage = open(fake, options);
  bool altered = false;
  for (const std::string& statement : fake.statements())
    if (statement.rfind("ALTER TABLE `writeapi`.`lines` ADD COLUMN request_id String DEFAULT '', ADD COLUMN "
                        "request_fp String DEFAULT ''",
                        0) == 0)
      altered = true;
  CHECK(altered);

  FakeClickHouse managed;
  managed.old_table();
  options.create_schema = false;
  Logged logged;
  auto kept = open(managed, options, &logged);
  REQUIRE(storage->append(batch("k", "1\n", 1)).ok());
  AppendBatch tagged = batch("k", "1\n", 1);
  tagged.request.id = "x";
  REQUIRE(kept->append(tagged).ok());  // stored without the id
  REQUIRE(managed.inserts().size() == 1);
  CHECK(managed.inserts()[0].query.find("request_id") == std::string::npos);
  std::lock_guard<std::mutex> lock(logged.mu);
  REQUIRE(logged.lines.size() == 1);
  CHECK(logged.lines[0].find("request ids are remembered only in this process's memory") != std::string::npos);
}
