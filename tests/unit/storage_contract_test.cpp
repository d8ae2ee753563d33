// The Storage contract, run against every backend.
//
// To add a backend, write a fixture with `std::unique_ptr<writeapi::Storage>
// make()` and add it to WRITEAPI_STORAGE_FIXTURES below. A fixture whose
// backend is not available here (ClickHouse without a server) WARNs and
// returns nullptr: the test case then ends, passing.
#include <httplib.h>
#include <stdlib.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "temp_dir.h"
#include "writeapi/clickhouse.h"
#include "writeapi/storage.h"

using writeapi::AppendBatch;
using writeapi::ErrorCode;
using writeapi::Status;
using writeapi::Storage;
using writeapi::testing::TempDir;

namespace {

struct MemoryFixture {
  std::unique_ptr<Storage> make() { return writeapi::make_memory_storage(); }
};

template <writeapi::FsyncPolicy Policy>
struct FileFixtureT {
  TempDir dir;
  std::unique_ptr<Storage> make() {
    writeapi::FileStorageOptions options;
    options.data_dir = dir.path() + "/data";
    options.fsync = Policy;
    options.log = [](std::string_view) {};
    Status status;
    std::unique_ptr<Storage> storage = writeapi::make_file_storage(options, &status);
    INFO("make_file_storage: " << status.name() << ": " << status.message());
    REQUIRE(storage != nullptr);
    REQUIRE(status.ok());
    return storage;
  }
};
using FileFixture = FileFixtureT<writeapi::FsyncPolicy::always>;
using FileNeverFixture = FileFixtureT<writeapi::FsyncPolicy::never>;

// ClickHouse at $WRITEAPI_CLICKHOUSE_URL (.ci/run starts one with
// scripts/clickhouse-test-server); without it the test cases are skipped.
// Each instance writes to a database of its own, dropped afterwards.
struct ClickHouseFixture {
  std::string url;
  std::string database;
  ~ClickHouseFixture() {
    if (database.empty()) return;
    httplib::Client client(url);
    auto result = client.Post("/", "DROP DATABASE IF EXISTS `" + database + "`", "text/plain");
    if (!result || result->status != 200) WARN("could not drop ClickHouse database " << database);
  }
  std::unique_ptr<Storage> make() {
    if (!writeapi::clickhouse_storage_supported()) {
      WARN("libwriteapi built without ClickHouse support: ClickHouse backend skipped");
      return nullptr;
    }
    const char* env = std::getenv("WRITEAPI_CLICKHOUSE_URL");
    if (!env || !*env) {
      WARN("WRITEAPI_CLICKHOUSE_URL is not set: ClickHouse backend skipped");
      return nullptr;
    }
    url = env;
    static int instances = 0;
    database = "writeapi_contract_" + std::to_string(::getpid()) + "_" + std::to_string(++instances);
    writeapi::ClickHouseStorageOptions options;
    options.url = url;
    options.database = database;
    options.log = [](std::string_view) {};
    // Many small INSERTs at once, so that later ones often commit before
    // earlier ones: the contract must hold whatever order they land in.
    options.flush_interval = std::chrono::milliseconds(0);
    options.max_inserts_in_flight = 8;
    Status status;
    std::unique_ptr<Storage> storage = writeapi::make_clickhouse_storage(options, &status);
    INFO("make_clickhouse_storage(" << url << "): " << status.name() << ": " << status.message());
    REQUIRE(storage != nullptr);
    REQUIRE(status.ok());
    return storage;
  }
};

// Every backend the contract runs against: add new fixtures here.
#define WRITEAPI_STORAGE_FIXTURES MemoryFixture, FileFixture, FileNeverFixture, ClickHouseFixture

AppendBatch batch(std::string_view bucket, std::string_view key, std::string_view lines, std::size_t items,
                  std::string_view device = {}) {
  AppendBatch b;
  b.bucket = bucket;
  b.key = key;
  b.device_id = device;
  b.lines = lines;
  b.item_count = items;
  return b;
}

std::string read(Storage& storage, std::string_view bucket, std::string_view key) {
  std::string contents = "garbage that must be replaced";
  Status s = storage.read_object(bucket, key, &contents);
  INFO("read_object: " << s.name() << ": " << s.message());
  REQUIRE(s.ok());
  return contents;
}

std::vector<std::string> keys_of(Storage& storage, std::string_view bucket) {
  std::vector<std::string> keys = {"garbage"};
  Status s = storage.list_keys(bucket, &keys);
  INFO("list_keys: " << s.name() << ": " << s.message());
  REQUIRE(s.ok());
  return keys;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t nl = text.find('\n', start);
    REQUIRE(nl != std::string::npos);  // every line ends in '\n'
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

}  // namespace

TEMPLATE_TEST_CASE("storage: append then read_object returns the exact bytes", "[storage]", WRITEAPI_STORAGE_FIXTURES) {
  TestType fixture;
  auto storage = fixture.make();
  if (!storage) return;  // backend not available here (the fixture WARNed)
  const std::string lines =
      "{\"timestamp\":1584156800,\"temperature\":4.7}\n\"a\\u00e9\\n\"\n\"h\xc3\xa4 \xf0\x9f\x98\x80\"\n"
      "123456789012345678901234567890\n";
  REQUIRE(storage->append(batch("homelab", "outdoors_temp1", lines, 4, "dev")).ok());
  CHECK(read(*storage, "homelab", "outdoors_temp1") == lines);
}

TEMPLATE_TEST_CASE("storage: appends accumulate in order", "[storage]", WRITEAPI_STORAGE_FIXTURES) {
  TestType fixture;
  auto storage = fixture.make();
  if (!storage) return;  // backend not available here (the fixture WARNed)
  REQUIRE(storage->append(batch("b", "k", "1\n", 1)).ok());
  REQUIRE(storage->append(batch("b", "k", "2\n3\n", 2)).ok());
  REQUIRE(storage->append(batch("b", "k", "{\"x\":4}\n", 1)).ok());
  CHECK(read(*storage, "b", "k") == "1\n2\n3\n{\"x\":4}\n");
  REQUIRE(storage->append(batch("b", "k", "5\n", 1)).ok());
  CHECK(read(*storage, "b", "k") == "1\n2\n3\n{\"x\":4}\n5\n");
}

TEMPLATE_TEST_CASE("storage: objects are independent per bucket and key", "[storage]", WRITEAPI_STORAGE_FIXTURES) {
  TestType fixture;
  auto storage = fixture.make();
  if (!storage) return;  // backend not available here (the fixture WARNed)
  REQUIRE(storage->append(batch("b1", "k", "b1k\n", 1)).ok());
  REQUIRE(storage->append(batch("b1", "k2", "b1k2\n", 1)).ok());
  REQUIRE(storage->append(batch("b2", "k", "b2k\n", 1)).ok());
  CHECK(read(*storage, "b1", "k") == "b1k\n");
  CHECK(read(*storage, "b1", "k2") == "b1k2\n");
  CHECK(read(*storage, "b2", "k") == "b2k\n");
  CHECK(read(*storage, "b2", "k2").empty());
}

TEMPLATE_TEST_CASE("storage: an empty batch creates nothing", "[storage]", WRITEAPI_STORAGE_FIXTURES) {
  TestType fixture;
  auto storage = fixture.make();
  if (!storage) return;  // backend not available here (the fixture WARNed)
  CHECK(storage->append(batch("empty", "nothing", "", 0)).ok());
  CHECK(keys_of(*storage, "empty").empty());
  CHECK(read(*storage, "empty", "nothing").empty());
  CHECK(storage->stats().appends == 0);
  CHECK(storage->stats().bytes_written == 0);
  // An empty batch to an existing object leaves it unchanged.
  REQUIRE(storage->append(batch("b", "k", "1\n", 1)).ok());
  CHECK(storage->append(batch("b", "k", "", 0)).ok());
  CHECK(read(*storage, "b", "k") == "1\n");
  CHECK(keys_of(*storage, "b") == std::vector<std::string>{"k"});
}

TEMPLATE_TEST_CASE("storage: list_keys is sorted and per bucket", "[storage]", WRITEAPI_STORAGE_FIXTURES) {
  TestType fixture;
  auto storage = fixture.make();
  if (!storage) return;  // backend not available here (the fixture WARNed)
  const std::vector<std::string> keys = {"m", "b", "z9", "a", "A", "a-1", "a.2", "_x", "0", "a_b", "Zed"};
  for (const std::string& key : keys) REQUIRE(storage->append(batch("bucket1", key, key + "\n", 1)).ok());
  // Writing an existing key again does not duplicate it.
  REQUIRE(storage->append(batch("bucket1", "m", "again\n", 1)).ok());
  REQUIRE(storage->append(batch("bucket2", "only", "x\n", 1)).ok());
  REQUIRE(storage->append(batch("bucket10", "other", "y\n", 1)).ok());

  std::vector<std::string> expected = keys;
  std::sort(expected.begin(), expected.end());
  CHECK(keys_of(*storage, "bucket1") == expected);
  CHECK(keys_of(*storage, "bucket2") == std::vector<std::string>{"only"});
  CHECK(keys_of(*storage, "bucket10") == std::vector<std::string>{"other"});
}

TEMPLATE_TEST_CASE("storage: an unknown bucket lists empty", "[storage]", WRITEAPI_STORAGE_FIXTURES) {
  TestType fixture;
  auto storage = fixture.make();
  if (!storage) return;  // backend not available here (the fixture WARNed)
  CHECK(keys_of(*storage, "nobody").empty());
  REQUIRE(storage->append(batch("somebody", "k", "1\n", 1)).ok());
  CHECK(keys_of(*storage, "nobody").empty());
  CHECK(keys_of(*storage, "somebod").empty());
  CHECK(keys_of(*storage, "somebody1").empty());
}

TEMPLATE_TEST_CASE("storage: reading a never-written object is ok and empty", "[storage]", WRITEAPI_STORAGE_FIXTURES) {
  TestType fixture;
  auto storage = fixture.make();
  if (!storage) return;  // backend not available here (the fixture WARNed)
  CHECK(read(*storage, "nobody", "nothing").empty());
  REQUIRE(storage->append(batch("b", "k", "1\n", 1)).ok());
  CHECK(read(*storage, "b", "other").empty());
  CHECK(read(*storage, "other", "k").empty());
}

TEMPLATE_TEST_CASE("storage: a large batch is stored whole", "[storage]", WRITEAPI_STORAGE_FIXTURES) {
  TestType fixture;
  auto storage = fixture.make();
  if (!storage) return;  // backend not available here (the fixture WARNed)
  std::string lines;
  std::size_t items = 0;
  while (lines.size() < 3 * 1024 * 1024) {
    lines += "{\"i\":" + std::to_string(items++) + ",\"pad\":\"" + std::string(500, 'x') + "\"}\n";
  }
  REQUIRE(storage->append(batch("big", "k", lines, items)).ok());
  REQUIRE(storage->append(batch("big", "k", "tail\n", 1)).ok());
  std::string back = read(*storage, "big", "k");
  CHECK(back.size() == lines.size() + 5);
  bool exact = back == lines + "tail\n";
  CHECK(exact);
}

TEMPLATE_TEST_CASE("storage: concurrent appends to one object never interleave", "[storage]",
                   WRITEAPI_STORAGE_FIXTURES) {
  TestType fixture;
  auto storage = fixture.make();
  if (!storage) return;  // backend not available here (the fixture WARNed)
  constexpr int kThreads = 16;
  constexpr int kAppends = 200;
  std::vector<int> failures(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int s = 0; s < kAppends; ++s) {
        std::string id = "\"t\":" + std::to_string(t) + ",\"s\":" + std::to_string(s);
        std::string lines = "{" + id + ",\"p\":0}\n{" + id + ",\"p\":1}\n";
        if (!storage->append(batch("shared", "object", lines, 2)).ok()) failures[t]++;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  for (int t = 0; t < kThreads; ++t) CHECK(failures[t] == 0);

  std::vector<std::string> lines = split_lines(read(*storage, "shared", "object"));
  REQUIRE(lines.size() == 2u * kThreads * kAppends);
  std::vector<int> next_seq(kThreads, 0);
  bool adjacent = true, ordered = true;
  for (std::size_t i = 0; i < lines.size(); i += 2) {
    int t = -1, s = -1, p0 = -1, t2 = -1, s2 = -1, p1 = -1;
    REQUIRE(std::sscanf(lines[i].c_str(), "{\"t\":%d,\"s\":%d,\"p\":%d}", &t, &s, &p0) == 3);
    REQUIRE(std::sscanf(lines[i + 1].c_str(), "{\"t\":%d,\"s\":%d,\"p\":%d}", &t2, &s2, &p1) == 3);
    if (t != t2 || s != s2 || p0 != 0 || p1 != 1) adjacent = false;
    REQUIRE((t >= 0 && t < kThreads));
    // One thread's appends are sequential, so they appear in its order.
    if (s != next_seq[t]) ordered = false;
    next_seq[t] = s + 1;
  }
  CHECK(adjacent);
  CHECK(ordered);
  for (int t = 0; t < kThreads; ++t) CHECK(next_seq[t] == kAppends);

  writeapi::StorageStats stats = storage->stats();
  CHECK(stats.appends == static_cast<std::uint64_t>(kThreads * kAppends));
}

TEMPLATE_TEST_CASE("storage: concurrent appends to many objects", "[storage]", WRITEAPI_STORAGE_FIXTURES) {
  TestType fixture;
  auto storage = fixture.make();
  if (!storage) return;  // backend not available here (the fixture WARNed)
  constexpr int kThreads = 8;
  constexpr int kAppends = 50;
  std::vector<int> failures(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::string key = "key" + std::to_string(t);
      for (int s = 0; s < kAppends; ++s) {
        std::string line = std::to_string(s) + "\n";
        if (!storage->append(batch(t % 2 ? "odd" : "even", key, line, 1)).ok()) failures[t]++;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::string expected;
  for (int s = 0; s < kAppends; ++s) expected += std::to_string(s) + "\n";
  for (int t = 0; t < kThreads; ++t) {
    CHECK(failures[t] == 0);
    CHECK(read(*storage, t % 2 ? "odd" : "even", "key" + std::to_string(t)) == expected);
  }
  CHECK(keys_of(*storage, "even") == std::vector<std::string>{"key0", "key2", "key4", "key6"});
  CHECK(keys_of(*storage, "odd") == std::vector<std::string>{"key1", "key3", "key5", "key7"});
}

TEMPLATE_TEST_CASE("storage: stats count appends and bytes", "[storage]", WRITEAPI_STORAGE_FIXTURES) {
  TestType fixture;
  auto storage = fixture.make();
  if (!storage) return;  // backend not available here (the fixture WARNed)
  writeapi::StorageStats before = storage->stats();
  CHECK(before.appends == 0);
  CHECK(before.bytes_written == 0);
  REQUIRE(storage->append(batch("b", "k", "1\n", 1)).ok());
  REQUIRE(storage->append(batch("b", "k", "22\n333\n", 2)).ok());
  REQUIRE(storage->append(batch("b", "k2", "{\"a\":1}\n", 1)).ok());
  writeapi::StorageStats after = storage->stats();
  CHECK(after.appends == 3);
  CHECK(after.bytes_written == 2 + 7 + 8);
  CHECK(after.write_errors == 0);
  CHECK(after.torn_tails_repaired == 0);
}

// append_async: each batch completes exactly once, from whatever thread
// the backend uses, and what completed ok is all there, in one piece.
TEMPLATE_TEST_CASE("storage: append_async completes every batch exactly once with its lines stored", "[storage]",
                   WRITEAPI_STORAGE_FIXTURES) {
  TestType fixture;
  auto storage = fixture.make();
  if (!storage) return;  // backend not available here (the fixture WARNed)
  constexpr int kBatches = 500;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int> completions(kBatches, 0);
  int done = 0, failed = 0;
  for (int i = 0; i < kBatches; ++i) {
    // The batch's memory is gone when append_async returns.
    auto lines = std::make_unique<std::string>("{\"i\":" + std::to_string(i) +
                                               ",\"p\":0}\n{\"i\":" + std::to_string(i) + ",\"p\":1}\n");
    storage->append_async(batch("async", i % 2 ? "odd" : "even", *lines, 2), [&, i](Status s) {
      std::lock_guard<std::mutex> lock(mu);
      completions[i]++;
      if (!s.ok()) failed++;
      done++;
      cv.notify_all();
    });
    lines->assign(lines->size(), 'x');
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    REQUIRE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return done == kBatches; }));
  }
  CHECK(failed == 0);
  CHECK(std::all_of(completions.begin(), completions.end(), [](int n) { return n == 1; }));
  std::map<int, int> seen;  // i -> lines
  for (const char* key : {"even", "odd"}) {
    std::vector<std::string> lines = split_lines(read(*storage, "async", key));
    for (std::size_t n = 0; n < lines.size(); n += 2) {
      int i = -1, p0 = -1, i2 = -2, p1 = -1;
      REQUIRE(std::sscanf(lines[n].c_str(), "{\"i\":%d,\"p\":%d}", &i, &p0) == 2);
      REQUIRE(n + 1 < lines.size());
      REQUIRE(std::sscanf(lines[n + 1].c_str(), "{\"i\":%d,\"p\":%d}", &i2, &p1) == 2);
      CHECK((i == i2 && p0 == 0 && p1 == 1));
      CHECK((i % 2 == 1) == (std::string(key) == "odd"));
      seen[i] += 2;
    }
  }
  CHECK(seen.size() == static_cast<std::size_t>(kBatches));
  CHECK(std::all_of(seen.begin(), seen.end(), [](const auto& entry) { return entry.second == 2; }));
  CHECK(storage->stats().appends == static_cast<std::uint64_t>(kBatches));
  // Nothing waited for its own sync or INSERT: the batches in flight shared them.
  CHECK(storage->stats().syncs < static_cast<std::uint64_t>(kBatches) / 4);
}

TEMPLATE_TEST_CASE("storage: append_async of an empty batch completes ok and stores nothing", "[storage]",
                   WRITEAPI_STORAGE_FIXTURES) {
  TestType fixture;
  auto storage = fixture.make();
  if (!storage) return;  // backend not available here (the fixture WARNed)
  int calls = 0;
  Status result(ErrorCode::internal_error, "not called");
  storage->append_async(batch("b", "empty", "", 0), [&](Status s) {
    calls++;
    result = s;
  });
  CHECK(calls == 1);
  CHECK(result.ok());
  CHECK(keys_of(*storage, "b").empty());
}

namespace {

writeapi::ReadChunk range(Storage& storage, std::string_view bucket, std::string_view key, std::string_view cursor,
                          std::size_t max_lines, std::size_t max_bytes = 1 << 20) {
  writeapi::ReadChunk chunk;
  chunk.lines = "garbage";
  Status s = storage.read_range(bucket, key, cursor, max_lines, max_bytes, &chunk);
  INFO("read_range: " << s.name() << ": " << s.message());
  REQUIRE(s.ok());
  return chunk;
}

}  // namespace

TEMPLATE_TEST_CASE("storage: read_range chains cursors across appends", "[storage][read_range]",
                   WRITEAPI_STORAGE_FIXTURES) {
  TestType fixture;
  auto storage = fixture.make();
  if (!storage) return;
  REQUIRE(storage->append(batch("b", "k", "{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n", 3)).ok());
  writeapi::ReadChunk first = range(*storage, "b", "k", "", 2);
  CHECK(first.exists);
  CHECK(first.lines == "{\"a\":1}\n{\"a\":2}\n");
  CHECK(first.line_count == 2);
  writeapi::ReadChunk second = range(*storage, "b", "k", first.next_cursor, 10);
  CHECK(second.lines == "{\"a\":3}\n");
  CHECK(second.line_count == 1);
  writeapi::ReadChunk empty = range(*storage, "b", "k", second.next_cursor, 10);
  CHECK(empty.exists);
  CHECK(empty.lines.empty());
  CHECK(empty.line_count == 0);
  CHECK(empty.next_cursor == second.next_cursor);
  REQUIRE(storage->append(batch("b", "k", "{\"a\":4}\n", 1)).ok());
  writeapi::ReadChunk after = range(*storage, "b", "k", second.next_cursor, 10);
  CHECK(after.lines == "{\"a\":4}\n");
  CHECK(after.next_cursor != second.next_cursor);
}

TEMPLATE_TEST_CASE("storage: read_range stops at max_bytes on a line end but returns a long line whole",
                   "[storage][read_range]", WRITEAPI_STORAGE_FIXTURES) {
  TestType fixture;
  auto storage = fixture.make();
  if (!storage) return;
  const std::string long_line = "{\"v\":\"" + std::string(5000, 'x') + "\"}\n";
  const std::string lines = "{\"a\":1}\n" + long_line + "{\"a\":3}\n";
  REQUIRE(storage->append(batch("b", "k", lines, 3)).ok());
  std::string all;
  std::string cursor;
  std::size_t reads = 0, total_lines = 0;
  for (;;) {
    writeapi::ReadChunk chunk = range(*storage, "b", "k", cursor, 1000, 100);
    if (chunk.line_count == 0) break;
    REQUIRE(chunk.lines.back() == '\n');
    // It stops at the first line end at or past 100 bytes.
    const std::size_t before_last = chunk.lines.rfind('\n', chunk.lines.size() - 2);
    if (before_last != std::string::npos) CHECK(before_last + 1 < 100);
    all += chunk.lines;
    total_lines += chunk.line_count;
    cursor = chunk.next_cursor;
    REQUIRE(++reads < 10);
  }
  CHECK(all == lines);
  CHECK(total_lines == 3);
  CHECK(reads >= 2);
}

TEMPLATE_TEST_CASE("storage: read_range of a never-written object is ok, absent and empty", "[storage][read_range]",
                   WRITEAPI_STORAGE_FIXTURES) {
  TestType fixture;
  auto storage = fixture.make();
  if (!storage) return;
  REQUIRE(storage->append(batch("b", "other", "{}\n", 1)).ok());
  writeapi::ReadChunk chunk = range(*storage, "b", "missing", "", 10);
  CHECK_FALSE(chunk.exists);
  CHECK(chunk.lines.empty());
  CHECK(chunk.line_count == 0);
  // Whatever well-formed cursor comes with it (the route answers 404).
  chunk = range(*storage, "b", "missing", "8", 10);
  CHECK_FALSE(chunk.exists);
  CHECK(chunk.line_count == 0);
  writeapi::ReadChunk bad;
  CHECK(storage->read_range("b", "missing", "x", 10, 1 << 20, &bad).code() == ErrorCode::invalid_cursor);
}

TEMPLATE_TEST_CASE("storage: read_range refuses cursors it never issued", "[storage][read_range]",
                   WRITEAPI_STORAGE_FIXTURES) {
  TestType fixture;
  auto storage = fixture.make();
  if (!storage) return;
  REQUIRE(storage->append(batch("b", "k", "{\"a\":1}\n{\"a\":2}\n", 2)).ok());
  for (std::string_view cursor : {"x", "-1", "01", "1e3", "99999999999999999999999", "1000000"}) {
    INFO("cursor " << cursor);
    writeapi::ReadChunk chunk;
    Status s = storage->read_range("b", "k", cursor, 10, 1 << 20, &chunk);
    CHECK(s.code() == ErrorCode::invalid_cursor);
  }
}

TEMPLATE_TEST_CASE("storage: list_objects reports sizes and last writes, sorted", "[storage][read_range]",
                   WRITEAPI_STORAGE_FIXTURES) {
  TestType fixture;
  auto storage = fixture.make();
  if (!storage) return;
  const auto before = std::chrono::system_clock::now() - std::chrono::seconds(5);
  REQUIRE(storage->append(batch("b", "zeta", "{\"a\":1}\n", 1)).ok());
  REQUIRE(storage->append(batch("b", "alpha", "{\"a\":1}\n{\"a\":22}\n", 2)).ok());
  REQUIRE(storage->append(batch("c", "other", "{}\n", 1)).ok());
  std::vector<writeapi::ObjectInfo> objects;
  REQUIRE(storage->list_objects("b", &objects).ok());
  REQUIRE(objects.size() == 2);
  CHECK(objects[0].key == "alpha");
  CHECK(objects[0].bytes == 17);
  CHECK(objects[1].key == "zeta");
  CHECK(objects[1].bytes == 8);
  for (const auto& object : objects) {
    CHECK(object.modified > before);
    CHECK(object.modified < std::chrono::system_clock::now() + std::chrono::seconds(5));
  }
  REQUIRE(storage->list_objects("nobody", &objects).ok());
  CHECK(objects.empty());
}

TEMPLATE_TEST_CASE("storage: read_range during concurrent appends returns only whole lines, each once",
                   "[storage][read_range]", WRITEAPI_STORAGE_FIXTURES) {
  TestType fixture;
  auto storage = fixture.make();
  if (!storage) return;
  constexpr int kWriters = 4, kBatches = 50;
  std::vector<std::thread> writers;
  std::atomic<int> failed_appends{0};
  for (int w = 0; w < kWriters; ++w)
    writers.emplace_back([&, w] {
      for (int i = 0; i < kBatches; ++i) {
        std::string lines = "{\"w\":" + std::to_string(w) + ",\"i\":" + std::to_string(i) + ",\"pad\":\"" +
                            std::string(static_cast<std::size_t>(100 + i * 7), 'p') + "\"}\n";
        lines += lines;
        if (!storage->append(batch("b", "k", lines, 2)).ok()) failed_appends++;
      }
    });
  std::string cursor;
  std::map<std::string, int> seen;
  std::size_t total = 0;
  auto drain = [&] {
    for (;;) {
      writeapi::ReadChunk chunk = range(*storage, "b", "k", cursor, 7, 300);
      if (chunk.line_count == 0) return;
      for (const std::string& line : split_lines(chunk.lines)) {
        REQUIRE(line.front() == '{');
        REQUIRE(line.back() == '}');
        seen[line]++;
      }
      total += chunk.line_count;
      cursor = chunk.next_cursor;
    }
  };
  for (int round = 0; round < 20; ++round) drain();
  for (auto& t : writers) t.join();
  drain();
  REQUIRE(failed_appends == 0);
  CHECK(total == static_cast<std::size_t>(kWriters * kBatches * 2));
  CHECK(seen.size() == static_cast<std::size_t>(kWriters * kBatches));
  for (const auto& [line, count] : seen) CHECK(count == 2);
}

namespace {

std::string tail_of(Storage& storage, std::string_view bucket, std::string_view key, std::size_t lines, bool* exists) {
  std::string cursor = "garbage";
  *exists = true;
  Status s = storage.tail_cursor(bucket, key, lines, &cursor, exists);
  INFO("tail_cursor: " << s.name() << ": " << s.message());
  REQUIRE(s.ok());
  return cursor;
}

}  // namespace

TEMPLATE_TEST_CASE("storage: tail_cursor names where the last N lines start", "[storage][read_range]",
                   WRITEAPI_STORAGE_FIXTURES) {
  TestType fixture;
  auto storage = fixture.make();
  if (!storage) return;
  REQUIRE(storage->append(batch("b", "k", "{\"a\":1}\n{\"a\":2}\n", 2)).ok());
  REQUIRE(storage->append(batch("b", "k", "{\"a\":3}\n{\"a\":4}\n{\"a\":5}\n", 3)).ok());
  bool exists = false;
  const std::string two = tail_of(*storage, "b", "k", 2, &exists);
  CHECK(exists);
  writeapi::ReadChunk chunk = range(*storage, "b", "k", two, 2);
  CHECK(chunk.lines == "{\"a\":4}\n{\"a\":5}\n");
  // One line, and what is appended after it follows its next_cursor.
  chunk = range(*storage, "b", "k", tail_of(*storage, "b", "k", 1, &exists), 10);
  CHECK(chunk.lines == "{\"a\":5}\n");
  REQUIRE(storage->append(batch("b", "k", "{\"a\":6}\n", 1)).ok());
  CHECK(range(*storage, "b", "k", chunk.next_cursor, 10).lines == "{\"a\":6}\n");
  // More than the object holds: from the start.
  chunk = range(*storage, "b", "k", tail_of(*storage, "b", "k", 100, &exists), 100);
  CHECK(chunk.line_count == 6);
  CHECK(chunk.lines.rfind("{\"a\":1}\n", 0) == 0);
  // Exactly as many as it holds: from the start too.
  CHECK(range(*storage, "b", "k", tail_of(*storage, "b", "k", 6, &exists), 100).line_count == 6);
}

TEMPLATE_TEST_CASE("storage: tail_cursor of a never-written object is the start, absent", "[storage][read_range]",
                   WRITEAPI_STORAGE_FIXTURES) {
  TestType fixture;
  auto storage = fixture.make();
  if (!storage) return;
  REQUIRE(storage->append(batch("b", "other", "{}\n", 1)).ok());
  bool exists = true;
  const std::string cursor = tail_of(*storage, "b", "missing", 5, &exists);
  CHECK_FALSE(exists);
  writeapi::ReadChunk chunk = range(*storage, "b", "missing", cursor, 10);
  CHECK(chunk.lines.empty());
}

TEMPLATE_TEST_CASE("storage: tail_cursor finds lines across long lines and block edges", "[storage][read_range]",
                   WRITEAPI_STORAGE_FIXTURES) {
  TestType fixture;
  auto storage = fixture.make();
  if (!storage) return;
  // Lines of several sizes around the file store's 64 KiB scan block.
  std::string lines;
  std::vector<std::string> each;
  for (std::size_t size : {10u, 70000u, 3u, 65535u, 65536u, 1u, 200000u, 5u}) {
    each.push_back("\"" + std::string(size, 'x') + "\"\n");
    lines += each.back();
  }
  REQUIRE(storage->append(batch("b", "k", lines, each.size())).ok());
  for (std::size_t n = 1; n <= each.size(); ++n) {
    INFO("tail " << n);
    bool exists = false;
    const std::string cursor = tail_of(*storage, "b", "k", n, &exists);
    std::string expected;
    for (std::size_t i = each.size() - n; i < each.size(); ++i) expected += each[i];
    std::string got;
    std::string at = cursor;
    for (int reads = 0; reads < 20; ++reads) {
      writeapi::ReadChunk chunk = range(*storage, "b", "k", at, 100, 1 << 16);
      if (chunk.line_count == 0) break;
      got += chunk.lines;
      at = chunk.next_cursor;
    }
    CHECK(got == expected);
  }
}
