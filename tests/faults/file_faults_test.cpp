// FileStorage under injected write and sync failures (see lib/src/file_io.h):
// a failed append leaves no byte behind, is answered with the documented
// code, is logged once per object, and the object works again afterwards.
#include <fcntl.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "file_io.h"
#include "writeapi/storage.h"

namespace fs = std::filesystem;
using writeapi::AppendBatch;
using writeapi::ErrorCode;
using writeapi::FileIo;
using writeapi::FsyncPolicy;

namespace {

// Real calls, with failures switched on by the test.
class FaultyIo : public FileIo {
 public:
  // The next pwrite writes at most `bytes` bytes, then later calls fail
  // with `error` until heal().
  void fail_writes_after(std::size_t bytes, int error) {
    std::lock_guard<std::mutex> lock(mu_);
    budget_ = bytes;
    write_error_ = error;
  }
  void fail_next_sync(int error) { sync_error_ = error; }
  void heal() {
    std::lock_guard<std::mutex> lock(mu_);
    write_error_ = 0;
  }

  ssize_t pwrite(int fd, const void* data, std::size_t length, off_t offset) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (write_error_ == 0) return ::pwrite(fd, data, length, offset);
    if (budget_ == 0) {
      errno = write_error_;
      return -1;
    }
    std::size_t n = std::min(length, budget_);
    budget_ -= n;
    return ::pwrite(fd, data, n, offset);  // a short write
  }
  int fdatasync(int fd) override {
    if (int error = sync_error_.exchange(0); error != 0) {
      ::fdatasync(fd);
      errno = error;
      return -1;
    }
    return ::fdatasync(fd);
  }

 private:
  std::mutex mu_;
  std::size_t budget_ = 0;
  int write_error_ = 0;
  std::atomic<int> sync_error_{0};
};

struct TempDir {
  TempDir() {
    char pattern[] = "/tmp/writeapi-faults-XXXXXX";
    path = ::mkdtemp(pattern);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string path;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Harness {
  explicit Harness(FsyncPolicy policy) {
    options.data_dir = dir.path + "/data";
    options.fsync = policy;
    options.log = [this](std::string_view line) {
      std::lock_guard<std::mutex> lock(log_mu);
      log.emplace_back(line);
    };
    writeapi::Status status;
    storage = writeapi::make_file_storage_with_io(options, io, &status);
    REQUIRE(status.ok());
  }
  writeapi::Status append(const char* key, const std::string& lines, std::size_t items) {
    AppendBatch batch;
    batch.bucket = "b";
    batch.key = key;
    batch.lines = lines;
    batch.item_count = items;
    return storage->append(batch);
  }
  std::string object(const char* key) { return slurp(options.data_dir + "/b/" + key + ".jsonl"); }
  std::size_t log_lines_mentioning(const std::string& text) {
    std::lock_guard<std::mutex> lock(log_mu);
    std::size_t n = 0;
    for (auto& l : log)
      if (l.find(text) != std::string::npos) ++n;
    return n;
  }

  TempDir dir;
  std::shared_ptr<FaultyIo> io = std::make_shared<FaultyIo>();
  writeapi::FileStorageOptions options;
  std::unique_ptr<writeapi::Storage> storage;
  std::mutex log_mu;
  std::vector<std::string> log;
};

}  // namespace

TEST_CASE("ENOSPC after a short write leaves the object as it was and answers 507", "[faults]") {
  auto policy = GENERATE(FsyncPolicy::always, FsyncPolicy::never);
  Harness h(policy);
  REQUIRE(h.append("o", "{\"a\":1}\n", 1).ok());
  const std::string before = h.object("o");

  h.io->fail_writes_after(5, ENOSPC);
  writeapi::Status s = h.append("o", "{\"b\":2}\n{\"c\":3}\n", 2);
  CHECK(s.code() == ErrorCode::insufficient_storage);
  CHECK(s.http_status() == 507);
  CHECK(h.object("o") == before);

  // Logged once per object, not per request.
  CHECK(h.append("o", "{\"d\":4}\n", 1).code() == ErrorCode::insufficient_storage);
  CHECK(h.object("o") == before);
  CHECK(h.log_lines_mentioning("o.jsonl") == 1);

  // Space returns: writes succeed again without a restart.
  h.io->heal();
  REQUIRE(h.append("o", "{\"e\":5}\n", 1).ok());
  CHECK(h.object("o") == before + "{\"e\":5}\n");
  CHECK(h.storage->stats().write_errors >= 2);
}

TEST_CASE("EDQUOT is insufficient_storage, EIO and EFBIG are storage_error with Retry-After", "[faults]") {
  Harness h(FsyncPolicy::never);
  REQUIRE(h.append("o", "1\n", 1).ok());
  h.io->fail_writes_after(0, EDQUOT);
  CHECK(h.append("o", "2\n", 1).code() == ErrorCode::insufficient_storage);
  h.io->fail_writes_after(1, EIO);
  writeapi::Status s = h.append("o", "333\n", 1);
  CHECK(s.code() == ErrorCode::storage_error);
  CHECK(s.http_status() == 503);
  CHECK(s.retry_after_seconds() > 0);
  h.io->fail_writes_after(0, EFBIG);
  CHECK(h.append("o", "4\n", 1).code() == ErrorCode::storage_error);
  CHECK(h.object("o") == "1\n");
}

TEST_CASE("A failed write to one object does not affect another", "[faults]") {
  Harness h(FsyncPolicy::never);
  REQUIRE(h.append("full", "1\n", 1).ok());
  REQUIRE(h.append("other", "1\n", 1).ok());
  h.io->fail_writes_after(0, ENOSPC);
  CHECK_FALSE(h.append("full", "2\n", 1).ok());
  h.io->heal();
  CHECK(h.append("other", "2\n", 1).ok());
  CHECK(h.object("other") == "1\n2\n");
  CHECK(h.object("full") == "1\n");
}

TEST_CASE("A failed log sync is not acknowledged and the object is cut back", "[faults]") {
  Harness h(FsyncPolicy::always);
  REQUIRE(h.append("o", "{\"synced\":1}\n", 1).ok());
  h.io->fail_next_sync(EIO);
  writeapi::Status s = h.append("o", "{\"lost\":2}\n", 1);
  CHECK(s.code() == ErrorCode::storage_error);
  CHECK(s.retry_after_seconds() > 0);
  // Nothing of the refused request remains.
  CHECK(h.object("o") == "{\"synced\":1}\n");
  CHECK(h.log_lines_mentioning("log sync failed") == 1);
  // The next append reopens the object and succeeds.
  writeapi::Status next = h.append("o", "{\"next\":3}\n", 1);
  INFO(next.message());
  REQUIRE(next.ok());
  CHECK(h.object("o") == "{\"synced\":1}\n{\"next\":3}\n");
}

TEST_CASE("Group commit: concurrent writers share syncs and all are acknowledged", "[faults]") {
  Harness h(FsyncPolicy::always);
  constexpr int kThreads = 16, kPerThread = 50;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string line = "{\"t\":" + std::to_string(t) + ",\"i\":" + std::to_string(i) + "}\n";
        if (!h.append(t % 2 ? "odd" : "even", line, 1).ok()) failures++;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(failures == 0);
  auto stats = h.storage->stats();
  CHECK(stats.appends == kThreads * kPerThread);
  CHECK(stats.synced_appends == kThreads * kPerThread);
  // Every sync covers at least one append; with 16 writers most cover more.
  CHECK(stats.syncs <= stats.appends);
  CHECK(stats.syncs > 0);
}

namespace {

// Appends `count` one-line batches to b/<key> with FsyncPolicy::always in a
// child process that then dies without any cleanup, as kill -9 would leave
// it: the log holds the lines, no checkpoint ran.
void append_then_die(const std::string& data_dir, const char* key, int count) {
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    writeapi::FileStorageOptions options;
    options.data_dir = data_dir;
    options.fsync = FsyncPolicy::always;
    options.log = [](std::string_view) {};
    writeapi::Status status;
    auto storage = writeapi::make_file_storage(options, &status);
    if (!storage) ::_exit(2);
    for (int i = 0; i < count; ++i) {
      std::string line = "{\"i\":" + std::to_string(i) + "}\n";
      AppendBatch batch;
      batch.bucket = "b";
      batch.key = key;
      batch.lines = line;
      batch.item_count = 1;
      if (!storage->append(batch).ok()) ::_exit(3);
    }
    ::_exit(0);  // no destructor: no checkpoint
  }
  int wstatus = 0;
  REQUIRE(::waitpid(pid, &wstatus, 0) == pid);
  REQUIRE(WIFEXITED(wstatus));
  REQUIRE(WEXITSTATUS(wstatus) == 0);
}

std::string expected_lines(int count) {
  std::string s;
  for (int i = 0; i < count; ++i) s += "{\"i\":" + std::to_string(i) + "}\n";
  return s;
}

std::vector<std::string> wal_segments(const std::string& data_dir) {
  std::vector<std::string> files;
  for (auto& entry : fs::directory_iterator(data_dir + "/.wal")) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

TEST_CASE("Acknowledged lines lost from an object file are restored from the log", "[faults][wal]") {
  TempDir dir;
  const std::string data = dir.path + "/data";
  append_then_die(data, "o", 50);
  REQUIRE(slurp(data + "/b/o.jsonl") == expected_lines(50));
  REQUIRE_FALSE(wal_segments(data).empty());
  // What a power failure can do to data that was never synced: the object
  // file lost its contents (here: all of them).
  fs::resize_file(data + "/b/o.jsonl", 0);

  std::vector<std::string> log;
  writeapi::FileStorageOptions options;
  options.data_dir = data;
  options.log = [&](std::string_view line) { log.emplace_back(line); };
  writeapi::Status status;
  auto storage = writeapi::make_file_storage(options, &status);
  REQUIRE(storage);
  CHECK(slurp(data + "/b/o.jsonl") == expected_lines(50));
  bool reported = false;
  for (auto& line : log) reported |= line.find("recovered 50 logged appends") != std::string::npos;
  CHECK(reported);
  // Replayed segments are retired; the store goes on appending.
  AppendBatch batch;
  batch.bucket = "b";
  batch.key = "o";
  batch.lines = "{\"after\":1}\n";
  batch.item_count = 1;
  REQUIRE(storage->append(batch).ok());
  storage.reset();
  CHECK(slurp(data + "/b/o.jsonl") == expected_lines(50) + "{\"after\":1}\n");
  CHECK(wal_segments(data).empty());  // a clean shutdown leaves no log
}

TEST_CASE("Replay restores a deleted object and stops at a torn log record", "[faults][wal]") {
  TempDir dir;
  const std::string data = dir.path + "/data";
  append_then_die(data, "gone", 3);
  fs::remove(data + "/b/gone.jsonl");
  // A record cut short by the crash (never acknowledged) ends the segment.
  auto segments = wal_segments(data);
  REQUIRE(segments.size() == 1);
  {
    std::ofstream out(segments[0], std::ios::binary | std::ios::app);
    out << "WAL1\x01\x02\x03\x04\x50\x00\x00\x00partial";
  }
  writeapi::FileStorageOptions options;
  options.data_dir = data;
  options.log = [](std::string_view) {};
  writeapi::Status status;
  auto storage = writeapi::make_file_storage(options, &status);
  REQUIRE(storage);
  CHECK(slurp(data + "/b/gone.jsonl") == expected_lines(3));
}

TEST_CASE("100,000 distinct objects in one run stay within the descriptor budget", "[scale]") {
  // tmpfs when available: this is about descriptors, not disk speed.
  std::string base = fs::exists("/dev/shm") && ::access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  std::string pattern = base + "/writeapi-scale-XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  REQUIRE(::mkdtemp(buffer.data()) != nullptr);
  std::string root = buffer.data();
  struct Cleanup {
    std::string path;
    ~Cleanup() { fs::remove_all(path); }
  } cleanup{root};

  writeapi::FileStorageOptions options;
  options.data_dir = root + "/data";
  options.fsync = FsyncPolicy::never;
  options.max_open_files = 64;
  options.log = [](std::string_view) {};
  writeapi::Status status;
  auto storage = writeapi::make_file_storage(options, &status);
  REQUIRE(storage);
  constexpr int kObjects = 100000;
  int failures = 0;
  for (int i = 0; i < kObjects; ++i) {
    std::string key = "o" + std::to_string(i);
    std::string line = std::to_string(i) + "\n";
    AppendBatch batch;
    batch.bucket = "b";
    batch.key = key;
    batch.lines = line;
    batch.item_count = 1;
    if (!storage->append(batch).ok()) ++failures;
  }
  CHECK(failures == 0);
  CHECK(storage->stats().open_objects <= 64);
  std::vector<std::string> keys;
  REQUIRE(storage->list_keys("b", &keys).ok());
  CHECK(keys.size() == kObjects);
  std::string contents;
  REQUIRE(storage->read_object("b", "o99999", &contents).ok());
  CHECK(contents == "99999\n");
}

TEST_CASE("Log segments rotate and are retired in the background without losing lines", "[faults][wal]") {
  TempDir dir;
  writeapi::FileStorageOptions options;
  options.data_dir = dir.path + "/data";
  options.wal_segment_bytes = 4096;  // rotate every few dozen appends
  options.log = [](std::string_view) {};
  writeapi::Status status;
  auto storage = writeapi::make_file_storage(options, &status);
  REQUIRE(storage);
  std::string expected[4];
  for (int i = 0; i < 2000; ++i) {
    std::string key = "o" + std::to_string(i % 4);
    std::string line = "{\"i\":" + std::to_string(i) + ",\"pad\":\"" + std::string(40, 'p') + "\"}\n";
    expected[i % 4] += line;
    AppendBatch batch;
    batch.bucket = "b";
    batch.key = key;
    batch.lines = line;
    batch.item_count = 1;
    REQUIRE(storage->append(batch).ok());
  }
  storage.reset();  // a clean shutdown checkpoints everything
  CHECK(wal_segments(options.data_dir).empty());
  for (int k = 0; k < 4; ++k) CHECK(slurp(options.data_dir + "/b/o" + std::to_string(k) + ".jsonl") == expected[k]);
}
