#include "clickhouse_support.h"

#include <httplib.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <stdexcept>

#include "writeapi/clickhouse.h"

#ifndef WRITEAPI_CLICKHOUSE_TEST_SERVER
#error "WRITEAPI_CLICKHOUSE_TEST_SERVER must name scripts/clickhouse-test-server"
#endif

namespace writeapi::testing {

namespace {
std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

// Runs a shell command; returns its standard output; throws on failure.
std::string run(const std::string& command) {
  std::FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) throw std::runtime_error("cannot run " + command);
  std::string out;
  char buffer[4096];
  while (std::size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) out.append(buffer, n);
  int status = ::pclose(pipe);
  if (status != 0) throw std::runtime_error(command + " failed (" + std::to_string(status) + "):\n" + out);
  return out;
}
}  // namespace

std::string clickhouse_url() { return env("WRITEAPI_CLICKHOUSE_URL"); }

std::vector<std::string> clickhouse_shard_urls() {
  std::vector<std::string> urls;
  std::string list = env("WRITEAPI_CLICKHOUSE_SHARD_URLS");
  std::size_t start = 0;
  while (start < list.size()) {
    std::size_t comma = list.find(',', start);
    if (comma == std::string::npos) comma = list.size();
    if (comma > start) urls.push_back(list.substr(start, comma - start));
    start = comma + 1;
  }
  return urls;
}

std::string clickhouse_cluster() {
  std::string name = env("WRITEAPI_CLICKHOUSE_CLUSTER");
  return name.empty() ? "writeapi_cluster" : name;
}

std::string clickhouse_query(const std::string& url, const std::string& sql) {
  httplib::Client client(url);
  client.set_read_timeout(std::chrono::seconds(30));
  auto result = client.Post("/", sql, "text/plain");
  INFO("ClickHouse " << url << ": " << sql);
  REQUIRE(result);
  INFO("answer: " << result->body);
  REQUIRE(result->status == 200);
  return result->body;
}

ScratchDatabase::ScratchDatabase(std::vector<std::string> urls, std::string_view purpose) : urls_(std::move(urls)) {
  static std::atomic<int> counter{0};
  std::random_device random;
  name_ = "writeapi_" + std::string(purpose) + "_" + std::to_string(::getpid()) + "_" + std::to_string(++counter) +
          "_" + std::to_string(random() % 100000);
  for (const std::string& url : urls_) clickhouse_query(url, "CREATE DATABASE `" + name_ + "`");
}

ScratchDatabase::~ScratchDatabase() {
  for (const std::string& url : urls_) {
    httplib::Client client(url);
    auto result = client.Post("/", "DROP DATABASE IF EXISTS `" + name_ + "`", "text/plain");
    if (!result || result->status != 200) WARN("could not drop ClickHouse database " << name_ << " on " << url);
  }
}

std::unique_ptr<Storage> clickhouse_reader(const std::string& url, const std::string& database,
                                           const std::string& table) {
  ClickHouseStorageOptions options;
  options.url = url;
  options.database = database;
  options.table = table;
  options.create_schema = false;
  options.log = [](std::string_view) {};
  Status status;
  auto storage = make_clickhouse_storage(options, &status);
  INFO("reader on " << url << " " << database << "." << table << ": " << status.message());
  REQUIRE(storage);
  return storage;
}

std::vector<std::string> clickhouse_server_args(const std::string& url, const std::string& database,
                                                const std::string& table) {
  return {"--storage",          "clickhouse", "--clickhouse-url", url, "--clickhouse-database", database,
          "--clickhouse-table", table};
}

PrivateClickHouse::PrivateClickHouse() { start(); }

PrivateClickHouse::~PrivateClickHouse() {
  try {
    stop();
  } catch (const std::exception& e) {
    WARN(e.what());
  }
}

void PrivateClickHouse::start() {
  std::string out = run(std::string(WRITEAPI_CLICKHOUSE_TEST_SERVER) + " start '" + dir_.path() + "' " + port_);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  url_ = out.substr(out.rfind('\n') == std::string::npos ? 0 : out.rfind('\n') + 1);
  port_ = url_.substr(url_.rfind(':') + 1);
  running_ = true;
}

void PrivateClickHouse::stop() {
  if (!running_) return;
  running_ = false;
  run(std::string(WRITEAPI_CLICKHOUSE_TEST_SERVER) + " stop '" + dir_.path() + "' " + port_);
}

}  // namespace writeapi::testing
