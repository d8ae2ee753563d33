// FileStorage specifics: layout on disk, torn-tail repair, descriptor
// limits, locking, durability policies and write errors.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "temp_dir.h"
#include "writeapi/storage.h"

using writeapi::AppendBatch;
using writeapi::ErrorCode;
using writeapi::FileStorageOptions;
using writeapi::FsyncPolicy;
using writeapi::Status;
using writeapi::Storage;
using writeapi::testing::read_file;
using writeapi::testing::TempDir;
using writeapi::testing::write_file;

namespace {

// Collects log lines of a storage (thread-safe).
struct LogSink {
  std::mutex mu;
  std::vector<std::string> lines;
  std::function<void(std::string_view)> fn() {
    return [this](std::string_view line) {
      std::lock_guard<std::mutex> lock(mu);
      lines.emplace_back(line);
    };
  }
  std::size_t count() {
    std::lock_guard<std::mutex> lock(mu);
    return lines.size();
  }
};

FileStorageOptions options_for(const std::string& data_dir, FsyncPolicy policy = FsyncPolicy::always) {
  FileStorageOptions options;
  options.data_dir = data_dir;
  options.fsync = policy;
  options.log = [](std::string_view) {};
  return options;
}

std::unique_ptr<Storage> open_storage(const FileStorageOptions& options) {
  Status status;
  std::unique_ptr<Storage> storage = writeapi::make_file_storage(options, &status);
  INFO("make_file_storage(" << options.data_dir << "): " << status.name() << ": " << status.message());
  REQUIRE(status.ok());
  REQUIRE(storage != nullptr);
  return storage;
}

AppendBatch batch(std::string_view bucket, std::string_view key, std::string_view lines, std::size_t items) {
  AppendBatch b;
  b.bucket = bucket;
  b.key = key;
  b.lines = lines;
  b.item_count = items;
  return b;
}

std::size_t open_fd_count() {
  std::size_t n = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd"); it != std::filesystem::directory_iterator();
       ++it)
    ++n;
  return n;
}

}  // namespace

TEST_CASE("file storage: objects live at <data_dir>/<bucket>/<key>.jsonl", "[file_storage]") {
  TempDir dir;
  const std::string data_dir = dir.path() + "/data";
  auto storage = open_storage(options_for(data_dir));
  CHECK(std::filesystem::is_directory(data_dir));  // created when missing
  const std::string lines = "{\"timestamp\":1584156800,\"temperature\":4.7}\n\"\xc3\xa4\"\n";
  REQUIRE(storage->append(batch("homelab", "outdoors_temp1", lines, 2)).ok());
  REQUIRE(storage->append(batch("homelab", "outdoors_temp1", "3\n", 1)).ok());
  REQUIRE(storage->append(batch("homelab", "other.key-1", "x\n", 1)).ok());
  CHECK(read_file(data_dir + "/homelab/outdoors_temp1.jsonl") == lines + "3\n");
  CHECK(read_file(data_dir + "/homelab/other.key-1.jsonl") == "x\n");
  // Nothing else appears in the bucket directory.
  std::vector<std::string> names;
  for (auto& entry : std::filesystem::directory_iterator(data_dir + "/homelab"))
    names.push_back(entry.path().filename().string());
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"other.key-1.jsonl", "outdoors_temp1.jsonl"});
}

TEST_CASE("file storage: an empty batch creates no file or directory", "[file_storage]") {
  TempDir dir;
  const std::string data_dir = dir.path() + "/data";
  auto storage = open_storage(options_for(data_dir));
  REQUIRE(storage->append(batch("emptyb", "k", "", 0)).ok());
  CHECK_FALSE(std::filesystem::exists(data_dir + "/emptyb/k.jsonl"));
  CHECK_FALSE(std::filesystem::exists(data_dir + "/emptyb"));
}

TEST_CASE("file storage: data survives reopening and appends continue", "[file_storage]") {
  TempDir dir;
  const std::string data_dir = dir.path() + "/data";
  {
    auto storage = open_storage(options_for(data_dir));
    REQUIRE(storage->append(batch("b", "k", "1\n2\n", 2)).ok());
  }
  auto storage = open_storage(options_for(data_dir));
  std::string contents;
  REQUIRE(storage->read_object("b", "k", &contents).ok());
  CHECK(contents == "1\n2\n");
  std::vector<std::string> keys;
  REQUIRE(storage->list_keys("b", &keys).ok());
  CHECK(keys == std::vector<std::string>{"k"});
  REQUIRE(storage->append(batch("b", "k", "3\n", 1)).ok());
  CHECK(read_file(data_dir + "/b/k.jsonl") == "1\n2\n3\n");
  CHECK(storage->stats().torn_tails_repaired == 0);
}

TEST_CASE("file storage: list_keys ignores files that are not objects", "[file_storage]") {
  TempDir dir;
  const std::string data_dir = dir.path() + "/data";
  auto storage = open_storage(options_for(data_dir));
  REQUIRE(storage->append(batch("b", "k", "1\n", 1)).ok());
  write_file(data_dir + "/b/notes.txt", "hello");
  write_file(data_dir + "/b/.jsonl", "x\n");
  std::vector<std::string> keys;
  REQUIRE(storage->list_keys("b", &keys).ok());
  CHECK(keys == std::vector<std::string>{"k"});
}

TEST_CASE("file storage: a torn tail is cut back before the next append", "[file_storage]") {
  TempDir dir;
  const std::string data_dir = dir.path() + "/data";
  write_file(data_dir + "/b/k.jsonl", "a\nb\npart");
  LogSink log;
  FileStorageOptions options = options_for(data_dir);
  options.log = log.fn();
  auto storage = open_storage(options);
  REQUIRE(storage->append(batch("b", "k", "c\nd\n", 2)).ok());
  CHECK(read_file(data_dir + "/b/k.jsonl") == "a\nb\nc\nd\n");
  CHECK(storage->stats().torn_tails_repaired == 1);
  CHECK(log.count() >= 1);
  std::string contents;
  REQUIRE(storage->read_object("b", "k", &contents).ok());
  CHECK(contents == "a\nb\nc\nd\n");
  // Further appends do not repair again.
  REQUIRE(storage->append(batch("b", "k", "e\n", 1)).ok());
  CHECK(storage->stats().torn_tails_repaired == 1);
  CHECK(read_file(data_dir + "/b/k.jsonl") == "a\nb\nc\nd\ne\n");
}

TEST_CASE("file storage: reads and the key list leave out a torn tail not yet repaired", "[file_storage]") {
  TempDir dir;
  const std::string data_dir = dir.path() + "/data";
  // Short and long torn tails (longer than one block of the backward scan),
  // a file of only a partial line, a whole one.
  const std::string long_line = std::string(70000, 'l') + "\n";
  write_file(data_dir + "/b/short.jsonl", "a\nb\npart");
  write_file(data_dir + "/b/long.jsonl", "a\n" + long_line + std::string(140000, 't'));
  write_file(data_dir + "/b/only.jsonl", "partial");
  write_file(data_dir + "/b/whole.jsonl", "a\n");
  auto storage = open_storage(options_for(data_dir, FsyncPolicy::never));
  std::vector<writeapi::ObjectInfo> objects;
  REQUIRE(storage->list_objects("b", &objects).ok());
  REQUIRE(objects.size() == 4);
  const std::map<std::string, std::uint64_t> expected = {
      {"long", 2 + long_line.size()}, {"only", 0}, {"short", 4}, {"whole", 2}};
  for (const auto& object : objects) {
    INFO(object.key);
    CHECK(object.bytes == expected.at(object.key));
    writeapi::ReadChunk chunk;
    REQUIRE(storage->read_range("b", object.key, "", 100, 1 << 20, &chunk).ok());
    CHECK(chunk.lines.size() == object.bytes);
  }
}

TEST_CASE("file storage: a file holding only a partial line is cut to empty", "[file_storage]") {
  TempDir dir;
  const std::string data_dir = dir.path() + "/data";
  write_file(data_dir + "/b/k.jsonl", "partial");
  auto storage = open_storage(options_for(data_dir));
  REQUIRE(storage->append(batch("b", "k", "new\n", 1)).ok());
  CHECK(read_file(data_dir + "/b/k.jsonl") == "new\n");
  CHECK(storage->stats().torn_tails_repaired == 1);
}

TEST_CASE("file storage: a long torn tail is cut back to the last newline", "[file_storage]") {
  TempDir dir;
  const std::string data_dir = dir.path() + "/data";
  // The partial line is longer than any small read buffer.
  const std::string head = "first\n" + std::string(5000, 'h') + "\n";
  write_file(data_dir + "/b/k.jsonl", head + std::string(10000, 't'));
  auto storage = open_storage(options_for(data_dir, FsyncPolicy::never));
  REQUIRE(storage->append(batch("b", "k", "next\n", 1)).ok());
  bool exact = read_file(data_dir + "/b/k.jsonl") == head + "next\n";
  CHECK(exact);
  CHECK(storage->stats().torn_tails_repaired == 1);
}

TEST_CASE("file storage: a complete file is not repaired", "[file_storage]") {
  TempDir dir;
  const std::string data_dir = dir.path() + "/data";
  write_file(data_dir + "/b/k.jsonl", "a\nb\n");
  auto storage = open_storage(options_for(data_dir));
  REQUIRE(storage->append(batch("b", "k", "c\n", 1)).ok());
  CHECK(read_file(data_dir + "/b/k.jsonl") == "a\nb\nc\n");
  CHECK(storage->stats().torn_tails_repaired == 0);
}

TEST_CASE("file storage: max_open_files bounds descriptors across many objects", "[file_storage]") {
  // Descriptor limits do not depend on the file system; tmpfs keeps the
  // 4,000 opens and 2,000 creations fast.
  TempDir dir("/dev/shm");
  const std::string data_dir = dir.path() + "/data";
  FileStorageOptions options = options_for(data_dir, FsyncPolicy::never);
  options.max_open_files = 8;
  auto storage = open_storage(options);
  const std::size_t fds_before = open_fd_count();
  constexpr int kObjects = 2000;
  std::size_t max_fds = 0;
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < kObjects; ++i) {
      std::string line = "{\"o\":" + std::to_string(i) + ",\"r\":" + std::to_string(round) + "}\n";
      Status s = storage->append(batch(i % 2 ? "bodd" : "beven", "obj" + std::to_string(i), line, 1));
      if (!s.ok()) {
        FAIL("append " << round << "/" << i << " failed: " << s.name() << ": " << s.message());
      }
      if (i % 97 == 0) max_fds = std::max(max_fds, open_fd_count());
    }
  }
  CHECK(max_fds <= fds_before + 8 + 2);
  CHECK(storage->stats().open_objects <= 8);
  CHECK(storage->stats().appends == 2u * kObjects);
  for (int i = 0; i < kObjects; ++i) {
    std::string contents;
    REQUIRE(storage->read_object(i % 2 ? "bodd" : "beven", "obj" + std::to_string(i), &contents).ok());
    std::string expected = "{\"o\":" + std::to_string(i) + ",\"r\":0}\n{\"o\":" + std::to_string(i) + ",\"r\":1}\n";
    if (contents != expected) FAIL("object " << i << " holds '" << contents << "'");
  }
  std::vector<std::string> keys;
  REQUIRE(storage->list_keys("beven", &keys).ok());
  CHECK(keys.size() == kObjects / 2);
}

TEST_CASE("file storage: a second store on the same data_dir is refused", "[file_storage]") {
  TempDir dir;
  const std::string data_dir = dir.path() + "/data";
  {
    auto first = open_storage(options_for(data_dir));
    Status status;
    std::unique_ptr<Storage> second = writeapi::make_file_storage(options_for(data_dir), &status);
    CHECK(second == nullptr);
    CHECK_FALSE(status.ok());
    CHECK_FALSE(status.message().empty());
    // The first one keeps working.
    REQUIRE(first->append(batch("b", "k", "1\n", 1)).ok());
  }
  // Once the first is gone the directory is free again.
  auto third = open_storage(options_for(data_dir));
  std::string contents;
  REQUIRE(third->read_object("b", "k", &contents).ok());
  CHECK(contents == "1\n");
}

TEST_CASE("file storage: a data_dir that cannot be created fails with a status", "[file_storage]") {
  TempDir dir;
  write_file(dir.path() + "/regular", "not a directory");
  Status status;
  std::unique_ptr<Storage> storage = writeapi::make_file_storage(options_for(dir.path() + "/regular/data"), &status);
  CHECK(storage == nullptr);
  CHECK_FALSE(status.ok());
  CHECK_FALSE(status.message().empty());

  Status status2;
  std::unique_ptr<Storage> storage2 = writeapi::make_file_storage(options_for(dir.path() + "/regular"), &status2);
  CHECK(storage2 == nullptr);
  CHECK_FALSE(status2.ok());
}

TEST_CASE("file storage: FsyncPolicy::always group-commits concurrent appends", "[file_storage]") {
  TempDir dir;
  const std::string data_dir = dir.path() + "/data";
  auto storage = open_storage(options_for(data_dir, FsyncPolicy::always));
  constexpr int kThreads = 32;
  constexpr int kAppends = 5;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int s = 0; s < kAppends; ++s) {
        std::string line = std::to_string(t) + "." + std::to_string(s) + "\n";
        // Half the threads share one object, the rest have their own.
        std::string key = t % 2 ? "shared" : "own" + std::to_string(t);
        if (!storage->append(batch("b", key, line, 1)).ok()) failures++;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(failures == 0);
  writeapi::StorageStats stats = storage->stats();
  CHECK(stats.appends == kThreads * kAppends);
  CHECK(stats.synced_appends == stats.appends);
  CHECK(stats.syncs >= 1);
  CHECK(stats.syncs <= stats.appends);
  CHECK(stats.write_errors == 0);
  std::string shared;
  REQUIRE(storage->read_object("b", "shared", &shared).ok());
  CHECK(std::count(shared.begin(), shared.end(), '\n') == (kThreads / 2) * kAppends);
}

TEST_CASE("file storage: FsyncPolicy::interval syncs in the background", "[file_storage]") {
  TempDir dir;
  const std::string data_dir = dir.path() + "/data";
  FileStorageOptions options = options_for(data_dir, FsyncPolicy::interval);
  options.fsync_interval = std::chrono::milliseconds(50);
  auto storage = open_storage(options);
  auto start = std::chrono::steady_clock::now();
  std::string expected;
  for (int i = 0; i < 20; ++i) {
    std::string line = std::to_string(i) + "\n";
    REQUIRE(storage->append(batch("b", "k", line, 1)).ok());
    expected += line;
  }
  // Appends do not wait for the interval (20 waits would take >= 1 s).
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(1000));
  CHECK(read_file(data_dir + "/b/k.jsonl") == expected);
  // The background thread syncs the dirty object within a few intervals.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
  while (storage->stats().syncs == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(storage->stats().syncs >= 1);
  CHECK(storage->stats().appends == 20);
  CHECK(storage->stats().write_errors == 0);
}

TEST_CASE("file storage: FsyncPolicy::never does not sync", "[file_storage]") {
  TempDir dir;
  auto storage = open_storage(options_for(dir.path() + "/data", FsyncPolicy::never));
  for (int i = 0; i < 10; ++i) REQUIRE(storage->append(batch("b", "k", "x\n", 1)).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(storage->stats().syncs == 0);
  CHECK(storage->stats().appends == 10);
}

namespace {

// Exit codes of the write-error child (0 = every step as expected).
enum ChildStep {
  kChildOk = 0,
  kChildRlimit = 10,
  kChildOpen,
  kChildSmallAppend,
  kChildBigAppendSucceeded,
  kChildBigAppendWrongCode,
  kChildFileChangedAfterError,
  kChildRetryFailed,
  kChildFinalContents,
  kChildNoWriteError,
  kChildReadObject,
};

const char* describe(int code) {
  switch (code) {
    case kChildOk:
      return "ok";
    case kChildRlimit:
      return "setrlimit failed";
    case kChildOpen:
      return "make_file_storage failed";
    case kChildSmallAppend:
      return "a small append below the limit failed";
    case kChildBigAppendSucceeded:
      return "the append crossing RLIMIT_FSIZE succeeded";
    case kChildBigAppendWrongCode:
      return "the append crossing RLIMIT_FSIZE did not fail with storage_error";
    case kChildFileChangedAfterError:
      return "the file is not exactly its previous bytes after the failed append";
    case kChildRetryFailed:
      return "a smaller append after the failure failed";
    case kChildFinalContents:
      return "final file contents wrong";
    case kChildNoWriteError:
      return "stats().write_errors not counted";
    case kChildReadObject:
      return "read_object after the failure returned wrong bytes";
    default:
      return "child crashed or unknown exit code";
  }
}

int write_error_child(const std::string& data_dir, FsyncPolicy policy) {
  ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit limit;
  limit.rlim_cur = 4096;
  limit.rlim_max = 4096;
  if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) return kChildRlimit;
  FileStorageOptions options = options_for(data_dir, policy);
  Status status;
  std::unique_ptr<Storage> storage = writeapi::make_file_storage(options, &status);
  if (!storage) return kChildOpen;
  const std::string path = data_dir + "/b/k.jsonl";
  std::string expected;
  const std::string small = std::string(99, 's') + "\n";  // 100 bytes
  for (int i = 0; i < 10; ++i) {
    if (!storage->append(batch("b", "k", small, 1)).ok()) return kChildSmallAppend;
    expected += small;
  }
  // 1000 bytes stored; 4000 more would cross the 4096-byte limit.
  std::string big;
  for (int i = 0; i < 40; ++i) big += std::string(99, 'B') + "\n";
  Status s = storage->append(batch("b", "k", big, 40));
  if (s.ok()) return kChildBigAppendSucceeded;
  if (s.code() != ErrorCode::storage_error) return kChildBigAppendWrongCode;
  if (read_file(path) != expected) return kChildFileChangedAfterError;
  std::string contents;
  if (!storage->read_object("b", "k", &contents).ok() || contents != expected) return kChildReadObject;
  // A smaller append that fits succeeds and lands right after the old end.
  const std::string fits = std::string(499, 'f') + "\n";
  if (!storage->append(batch("b", "k", fits, 1)).ok()) return kChildRetryFailed;
  expected += fits;
  if (read_file(path) != expected) return kChildFinalContents;
  if (storage->stats().write_errors < 1) return kChildNoWriteError;
  storage.reset();
  return kChildOk;
}

int run_in_child(const std::string& data_dir, FsyncPolicy policy) {
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) ::_exit(write_error_child(data_dir, policy));
  int wstatus = 0;
  REQUIRE(::waitpid(pid, &wstatus, 0) == pid);
  if (!WIFEXITED(wstatus)) return -1;
  return WEXITSTATUS(wstatus);
}

}  // namespace

TEST_CASE("file storage: a failed write leaves no partial line (RLIMIT_FSIZE)", "[file_storage]") {
  TempDir dir;
  int code = run_in_child(dir.path() + "/data", FsyncPolicy::always);
  INFO("child: " << code << " = " << describe(code));
  CHECK(code == kChildOk);
}

TEST_CASE("file storage: a failed write leaves no partial line with FsyncPolicy::never", "[file_storage]") {
  TempDir dir;
  int code = run_in_child(dir.path() + "/data", FsyncPolicy::never);
  INFO("child: " << code << " = " << describe(code));
  CHECK(code == kChildOk);
}
