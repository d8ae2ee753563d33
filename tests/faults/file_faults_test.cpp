// FileStorage under injected failures of its file system calls (the seam is
// lib/src/file_io.h, the injector tests/support/fault_injecting_io.h): a
// failed append leaves no byte behind, is answered with the documented code,
// is logged once per object, and the object works again afterwards; failed
// directory syncs and failures during log replay lose nothing.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "fault_injecting_io.h"
#include "file_io.h"
#include "memory_file_io.h"
#include "temp_dir.h"
#include "wal_format.h"
#include "writeapi/storage.h"

namespace fs = std::filesystem;
using writeapi::AppendBatch;
using writeapi::ErrorCode;
using writeapi::FileIo;
using writeapi::FsyncPolicy;
using writeapi::testing::Call;
using writeapi::testing::FaultInjectingIo;
using writeapi::testing::FaultRule;
using writeapi::testing::MemoryFileIo;
using writeapi::testing::read_file;
using writeapi::testing::TempDir;

namespace {

struct Harness {
  explicit Harness(FsyncPolicy policy) {
    options.data_dir = dir.path() + "/data";
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
  std::string object(const char* key) { return read_file(options.data_dir + "/b/" + key + ".jsonl"); }
  std::size_t log_lines_mentioning(const std::string& text) {
    std::lock_guard<std::mutex> lock(log_mu);
    std::size_t n = 0;
    for (auto& l : log)
      if (l.find(text) != std::string::npos) ++n;
    return n;
  }

  TempDir dir;
  std::shared_ptr<FaultInjectingIo> io = std::make_shared<FaultInjectingIo>();
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

  // (With the log, the lines reach the object after their record is
  // durable: the object write fails, the log holds a truncate record.)
  h.io->short_writes(5, ENOSPC, ".jsonl");
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
  h.io->short_writes(0, EDQUOT);
  CHECK(h.append("o", "2\n", 1).code() == ErrorCode::insufficient_storage);
  h.io->short_writes(1, EIO);
  writeapi::Status s = h.append("o", "333\n", 1);
  CHECK(s.code() == ErrorCode::storage_error);
  CHECK(s.http_status() == 503);
  CHECK(s.retry_after_seconds() > 0);
  h.io->short_writes(0, EFBIG);
  CHECK(h.append("o", "4\n", 1).code() == ErrorCode::storage_error);
  CHECK(h.object("o") == "1\n");
}

TEST_CASE("A failed write to one object does not affect another", "[faults]") {
  Harness h(FsyncPolicy::never);
  REQUIRE(h.append("full", "1\n", 1).ok());
  REQUIRE(h.append("other", "1\n", 1).ok());
  h.io->short_writes(0, ENOSPC);
  CHECK_FALSE(h.append("full", "2\n", 1).ok());
  h.io->heal();
  CHECK(h.append("other", "2\n", 1).ok());
  CHECK(h.object("other") == "1\n2\n");
  CHECK(h.object("full") == "1\n");
}

TEST_CASE("A failed log sync is not acknowledged and the object is cut back", "[faults]") {
  Harness h(FsyncPolicy::always);
  REQUIRE(h.append("o", "{\"synced\":1}\n", 1).ok());
  h.io->fail(FaultRule{Call::fdatasync, EIO, "", 0, 1, /*perform=*/true});
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

namespace {

// Appends asynchronously from this one thread and collects the results.
// An answer may come inline (a refusal before anything was queued) or from
// the log thread, so the callback takes only its own short lock.
struct AsyncAppends {
  AsyncAppends(writeapi::Storage* storage, std::size_t count)
      : storage(storage),
        results(count, writeapi::Status(ErrorCode::internal_error, "not answered")),
        calls(count, 0) {}
  void append(const char* key, std::string lines, std::size_t items) {
    AppendBatch batch;
    batch.bucket = "b";
    batch.key = key;
    batch.lines = lines;
    batch.item_count = items;
    const std::size_t index = queued++;
    storage->append_async(batch, [this, index](writeapi::Status s) {
      std::lock_guard<std::mutex> lock(mu);
      results[index] = s;
      calls[index]++;
      answered++;
      cv.notify_all();
    });
  }
  // Waits for every answer.
  bool wait_all() {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(60), [&] { return answered == queued; });
  }
  writeapi::Storage* storage;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<writeapi::Status> results;  // sized up front: callbacks write while appends go on
  std::vector<int> calls;
  std::size_t queued = 0;
  std::size_t answered = 0;
};

}  // namespace

TEST_CASE("append_async: appends in flight from one thread share group commits and are answered once", "[faults]") {
  Harness h(FsyncPolicy::always);
  constexpr int kAppends = 2000;
  AsyncAppends appends(h.storage.get(), kAppends);
  for (int i = 0; i < kAppends; ++i) appends.append(i % 2 ? "odd" : "even", "{\"i\":" + std::to_string(i) + "}\n", 1);
  REQUIRE(appends.wait_all());
  for (int i = 0; i < kAppends; ++i) {
    CHECK(appends.results[i].ok());
    CHECK(appends.calls[i] == 1);
  }
  auto stats = h.storage->stats();
  CHECK(stats.appends == kAppends);
  CHECK(stats.synced_appends == kAppends);
  // Queueing an append takes microseconds, a sync far longer: with nothing
  // waiting between appends they share syncs (a waiting append would
  // make one sync each).
  INFO("syncs " << stats.syncs);
  CHECK(stats.syncs * 4 < stats.appends);
  std::string even, odd;
  for (int i = 0; i < kAppends; ++i) (i % 2 ? odd : even) += "{\"i\":" + std::to_string(i) + "}\n";
  CHECK(h.object("even") == even);
  CHECK(h.object("odd") == odd);
}

TEST_CASE("append_async: a failed log sync refuses every append of its group and keeps none of them", "[faults]") {
  Harness h(FsyncPolicy::always);
  REQUIRE(h.append("o", "{\"synced\":1}\n", 1).ok());
  h.io->fail(FaultRule{Call::fdatasync, EIO, ".wal", 0, 1, /*perform=*/true});
  constexpr int kAppends = 20;
  AsyncAppends appends(h.storage.get(), kAppends);
  for (int i = 0; i < kAppends; ++i) appends.append("o", "{\"lost\":" + std::to_string(i) + "}\n", 1);
  REQUIRE(appends.wait_all());
  std::size_t refused = 0;
  for (int i = 0; i < kAppends; ++i) {
    CHECK(appends.calls[i] == 1);
    if (!appends.results[i].ok()) {
      CHECK(appends.results[i].code() == ErrorCode::storage_error);
      refused++;
    }
  }
  CHECK(refused >= 1);  // the first group at least (later ones may land in the fresh segment)
  // What is in the object is exactly the acknowledged lines, in order.
  std::string expected = "{\"synced\":1}\n";
  for (int i = 0; i < kAppends; ++i)
    if (appends.results[i].ok()) expected += "{\"lost\":" + std::to_string(i) + "}\n";
  CHECK(h.object("o") == expected);
  std::string visible;
  REQUIRE(h.storage->read_object("b", "o", &visible).ok());
  CHECK(visible == expected);
  CHECK(h.storage->stats().appends == 1 + (kAppends - refused));
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
  for (auto& entry : fs::directory_iterator(data_dir + "/.wal"))
    if (entry.path().extension() == ".wal") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

TEST_CASE("Acknowledged lines lost from an object file are restored from the log", "[faults][wal]") {
  TempDir dir;
  const std::string data = dir.path() + "/data";
  append_then_die(data, "o", 50);
  REQUIRE(read_file(data + "/b/o.jsonl") == expected_lines(50));
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
  CHECK(read_file(data + "/b/o.jsonl") == expected_lines(50));
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
  CHECK(read_file(data + "/b/o.jsonl") == expected_lines(50) + "{\"after\":1}\n");
  CHECK(wal_segments(data).empty());  // a clean shutdown leaves no log
}

TEST_CASE("Replay restores a deleted object and stops at a torn log record", "[faults][wal]") {
  TempDir dir;
  const std::string data = dir.path() + "/data";
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
  CHECK(read_file(data + "/b/gone.jsonl") == expected_lines(3));
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
  options.data_dir = dir.path() + "/data";
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
  for (int k = 0; k < 4; ++k) CHECK(read_file(options.data_dir + "/b/o" + std::to_string(k) + ".jsonl") == expected[k]);
}

namespace {

// A store over the in-memory file system, for the faults a real disk cannot
// be made to produce on demand. `io` is replaced to start a store with
// other faults on the same files.
struct MemoryStore {
  explicit MemoryStore(FsyncPolicy policy = FsyncPolicy::always) { options.fsync = policy; }
  writeapi::Status open() {
    storage.reset();
    io = std::make_shared<FaultInjectingIo>(memory);
    return reopen();
  }
  // Opens with the current `io` (faults already set).
  writeapi::Status reopen() {
    storage.reset();
    options.data_dir = "/data";
    options.log = [this](std::string_view line) {
      {
        std::lock_guard<std::mutex> lock(log_mu);
        log.emplace_back(line);
      }
      log_cv.notify_all();
    };
    writeapi::Status status;
    storage = writeapi::make_file_storage_with_io(options, io, &status);
    return status;
  }
  writeapi::Status append(const std::string& lines, std::size_t items = 1, const char* key = "o") {
    AppendBatch batch;
    batch.bucket = "b";
    batch.key = key;
    batch.lines = lines;
    batch.item_count = items;
    return storage->append(batch);
  }
  // Stops the store as kill -9 would: nothing it would do on a clean
  // shutdown reaches the files.
  void kill() {
    io->crash_after(0);
    storage.reset();
  }
  std::string object(const char* key = "o") { return memory->contents(std::string("/data/b/") + key + ".jsonl"); }
  std::vector<std::string> segments() { return memory->list("/data/.wal", ".wal"); }
  bool logged(const std::string& text) {
    std::lock_guard<std::mutex> lock(log_mu);
    return logged_locked(text);
  }
  // Waits until the store logs `text`, e.g. from a background thread (the
  // timeout only keeps a broken store from hanging the test).
  bool wait_logged(const std::string& text, std::chrono::seconds timeout = std::chrono::seconds(60)) {
    std::unique_lock<std::mutex> lock(log_mu);
    return log_cv.wait_for(lock, timeout, [&] { return logged_locked(text); });
  }
  bool logged_locked(const std::string& text) {
    for (auto& line : log)
      if (line.find(text) != std::string::npos) return true;
    return false;
  }
  ~MemoryStore() { storage.reset(); }

  std::shared_ptr<MemoryFileIo> memory = std::make_shared<MemoryFileIo>();
  std::shared_ptr<FaultInjectingIo> io;
  writeapi::FileStorageOptions options;
  std::mutex log_mu;
  std::condition_variable log_cv;
  std::vector<std::string> log;
  std::unique_ptr<writeapi::Storage> storage;
};

}  // namespace

TEST_CASE("A failed directory sync at a checkpoint keeps the log segment, and the next start replays it",
          "[faults][wal]") {
  MemoryStore s;
  REQUIRE(s.open().ok());
  REQUIRE(s.append("{\"a\":1}\n").ok());
  REQUIRE(s.append("{\"a\":2}\n").ok());
  // The new object's directory entry cannot be made durable.
  s.io->fail(FaultRule{Call::fsync, EIO, "/data/b"});
  s.storage.reset();  // a clean shutdown tries to retire the log
  CHECK(s.logged("checkpoint sync failed"));
  CHECK(s.segments().size() == 1);
  s.memory->put("/data/b/o.jsonl", "");  // what a power failure may leave
  REQUIRE(s.open().ok());
  CHECK(s.object() == "{\"a\":1}\n{\"a\":2}\n");
  s.storage.reset();
  CHECK(s.segments().empty());
}

TEST_CASE("A failed directory sync in interval mode is logged, counted and retried", "[faults]") {
  MemoryStore s(FsyncPolicy::interval);
  s.options.fsync_interval = std::chrono::milliseconds(1);
  REQUIRE(s.open().ok());
  s.io->fail(FaultRule{Call::fsync, EIO, "/data/b", 0, 1});
  REQUIRE(s.append("1\n").ok());
  s.storage.reset();  // stops the background thread after its last round
  CHECK(s.logged("background sync of /data/b/o.jsonl failed"));
  // The directory sync is retried by the next round that sees the object.
  auto trace = s.io->trace();
  std::size_t directory_syncs = std::count(trace.begin(), trace.end(), "fsync /data/b");
  CHECK(directory_syncs >= 1);
}

TEST_CASE("A failure during log replay refuses to start and loses nothing", "[faults][wal]") {
  const FaultRule rule = GENERATE(FaultRule{Call::pwrite, EIO, ".jsonl"}, FaultRule{Call::open, EACCES, ".jsonl"},
                                  FaultRule{Call::read, EIO, ".wal"}, FaultRule{Call::list_directory, EIO, "/.wal"});
  INFO("failing " << writeapi::testing::call_name(rule.call) << " on " << rule.path_contains);
  MemoryStore s;
  REQUIRE(s.open().ok());
  for (int i = 0; i < 5; ++i) REQUIRE(s.append("{\"i\":" + std::to_string(i) + "}\n").ok());
  s.kill();
  s.memory->unlink("/data/b/o.jsonl");
  s.memory->unlink("/data/b");  // not a file: the directory stays
  const auto segments = s.segments();
  REQUIRE(segments.size() == 1);

  s.io = std::make_shared<FaultInjectingIo>(s.memory);
  s.io->fail(rule);
  writeapi::Status status = s.reopen();
  CHECK(status.code() == ErrorCode::storage_error);
  CHECK(s.segments() == segments);  // the log is kept for the next attempt

  REQUIRE(s.open().ok());
  CHECK(s.object() == "{\"i\":0}\n{\"i\":1}\n{\"i\":2}\n{\"i\":3}\n{\"i\":4}\n");
}

TEST_CASE("Failures of open, fstat and pread on an object answer 503 and leave it intact", "[faults]") {
  const FaultRule rule = GENERATE(FaultRule{Call::open, EIO, ".jsonl"}, FaultRule{Call::fstat, EIO, ".jsonl"},
                                  FaultRule{Call::pread, EIO, ".jsonl"}, FaultRule{Call::mkdir, EIO, "/data/b"});
  INFO("failing " << writeapi::testing::call_name(rule.call));
  MemoryStore s(FsyncPolicy::never);
  s.options.max_open_files = 1;
  REQUIRE(s.open().ok());
  if (rule.call != Call::mkdir) {
    REQUIRE(s.append("{\"a\":1}\n").ok());
    REQUIRE(s.append("x\n", 1, "other").ok());  // evicts o: its next append reopens it
  }
  s.io->fail(rule);
  writeapi::Status status = s.append("{\"b\":2}\n");
  CHECK(status.code() == ErrorCode::storage_error);
  CHECK(s.object() == (rule.call == Call::mkdir ? "" : "{\"a\":1}\n"));
  s.io->heal();
  REQUIRE(s.append("{\"c\":3}\n").ok());
  CHECK(s.object() == (rule.call == Call::mkdir ? "{\"c\":3}\n" : "{\"a\":1}\n{\"c\":3}\n"));
}

TEST_CASE("A store that cannot take its lock, list its log or create a segment does not start", "[faults]") {
  const FaultRule rule = GENERATE(FaultRule{Call::lock, EWOULDBLOCK}, FaultRule{Call::open, EACCES, ".writeapi.lock"},
                                  FaultRule{Call::open, EIO, ".wal"}, FaultRule{Call::fsync, EIO, "/.wal"},
                                  FaultRule{Call::mkdir, EIO, "/.wal"}, FaultRule{Call::list_directory, EIO, "/.wal"});
  INFO("failing " << writeapi::testing::call_name(rule.call) << " on " << rule.path_contains);
  MemoryStore s;
  s.io = std::make_shared<FaultInjectingIo>(s.memory);
  s.io->fail(rule);
  CHECK(s.reopen().code() == ErrorCode::storage_error);
  CHECK(s.storage == nullptr);
  REQUIRE(s.open().ok());
  REQUIRE(s.append("1\n").ok());
}

TEST_CASE("list_keys and read_object report a failing directory listing or read", "[faults]") {
  MemoryStore s(FsyncPolicy::never);
  REQUIRE(s.open().ok());
  REQUIRE(s.append("1\n").ok());
  s.io->fail(FaultRule{Call::list_directory, EIO, "/data/b"});
  std::vector<std::string> keys;
  CHECK(s.storage->list_keys("b", &keys).code() == ErrorCode::storage_error);
  s.io->heal();
  s.io->fail(FaultRule{Call::read, EIO, ".jsonl"});
  std::string contents;
  CHECK(s.storage->read_object("b", "o", &contents).code() == ErrorCode::storage_error);
  CHECK(contents.empty());
  s.io->heal();
  REQUIRE(s.storage->read_object("b", "o", &contents).ok());
  CHECK(contents == "1\n");
}

// ---- Recovery that cannot lose, all or nothing under double faults ----

namespace {

std::string numbered(const char* tag, int from, int to) {
  std::string s;
  for (int i = from; i < to; ++i) s += "{\"" + std::string(tag) + "\":" + std::to_string(i) + "}\n";
  return s;
}

}  // namespace

TEST_CASE("A crash at each step of recovery, then another recovery: every acknowledged line exactly once",
          "[faults][wal][recovery]") {
  // The state a power failure leaves after acknowledged appends to three
  // objects spread over several segments.
  MemoryStore base;
  base.options.wal_segment_bytes = 300;
  REQUIRE(base.open().ok());
  // Objects are never synced: checkpoints keep every segment.
  base.io->fail(FaultRule{Call::fdatasync, EIO, ".jsonl"});
  std::string expected[3];
  const char* keys[3] = {"o0", "o1", "o2"};
  for (int i = 0; i < 30; ++i) {
    std::string line = numbered("i", i, i + 1);
    REQUIRE(base.append(line, 1, keys[i % 3]).ok());
    expected[i % 3] += line;
  }
  base.kill();
  base.memory->power_failure();
  REQUIRE(base.segments().size() >= 2);

  std::size_t steps = 0;
  for (std::size_t crash_at = 0;; ++crash_at) {
    INFO("crash after " << crash_at << " calls of recovery");
    auto memory = base.memory->clone();  // a copy of the disk
    MemoryStore s;
    s.options.wal_segment_bytes = 300;
    s.memory = memory;
    s.io = std::make_shared<FaultInjectingIo>(memory);
    s.io->crash_after(crash_at);
    (void)s.reopen();
    const bool finished = !s.io->crashed();
    s.kill();
    s.memory->power_failure();
    // Whatever the crash left, the next recovery restores everything once.
    REQUIRE(s.open().ok());
    for (int k = 0; k < 3; ++k) CHECK(s.object(keys[k]) == expected[k]);
    s.storage.reset();
    CHECK(s.segments().empty());
    s.memory->power_failure();  // and what it restored is durable
    for (int k = 0; k < 3; ++k) CHECK(s.object(keys[k]) == expected[k]);
    ++steps;
    if (finished) break;
  }
  CHECK(steps > 20);  // every call of a real recovery was a crash point
}

TEST_CASE("A failed sync after replay keeps every segment for the next recovery", "[faults][wal][recovery]") {
  MemoryStore s;
  s.options.wal_segment_bytes = 200;
  REQUIRE(s.open().ok());
  s.io->fail(FaultRule{Call::fdatasync, EIO, ".jsonl"});  // checkpoints keep every segment
  std::string expected;
  for (int i = 0; i < 20; ++i) {
    std::string line = numbered("i", i, i + 1);
    REQUIRE(s.append(line).ok());
    expected += line;
  }
  s.kill();
  s.memory->power_failure();
  const auto segments = s.segments();
  REQUIRE(segments.size() >= 2);
  s.io = std::make_shared<FaultInjectingIo>(s.memory);
  s.io->fail(FaultRule{Call::fdatasync, EIO, ".jsonl"});
  REQUIRE(s.reopen().ok());  // serves; the log stays
  CHECK(s.logged("checkpoint sync failed"));
  s.kill();
  for (const auto& name : segments) CHECK(s.memory->exists("/data/.wal/" + name));
  s.memory->power_failure();
  REQUIRE(s.open().ok());
  CHECK(s.object() == expected);
}

TEST_CASE("A new data directory and its log directory are durable before anything is acknowledged",
          "[faults][wal][recovery]") {
  MemoryStore s;
  REQUIRE(s.open().ok());
  REQUIRE(s.append("{\"a\":1}\n").ok());
  s.kill();
  s.memory->power_failure();
  REQUIRE(s.open().ok());
  CHECK(s.object() == "{\"a\":1}\n");
}

TEST_CASE("Double fault: a failed append whose cut-back also fails fences the object until a restart",
          "[faults][fence]") {
  const FsyncPolicy policy = GENERATE(FsyncPolicy::always, FsyncPolicy::never);
  INFO("policy " << static_cast<int>(policy));
  MemoryStore s(policy);
  REQUIRE(s.open().ok());
  REQUIRE(s.append("{\"a\":1}\n").ok());
  // Two of three lines reach the file, then ENOSPC; and the cut fails.
  s.io->short_writes(16, ENOSPC, ".jsonl");
  s.io->fail(FaultRule{Call::ftruncate, EIO, ".jsonl"});
  writeapi::Status refused = s.append("{\"b\":2}\n{\"c\":3}\n{\"d\":4}\n", 3);
  CHECK(refused.code() == ErrorCode::insufficient_storage);
  s.io->heal();
  CHECK(s.logged("fenced"));
  CHECK(s.storage->stats().fenced_objects == 1);
  CHECK(s.storage->stats().appends == 1);  // only what was stored
  // The refused lines are in the file but never visible.
  CHECK(s.object().find("{\"b\":2}") != std::string::npos);
  std::string contents;
  REQUIRE(s.storage->read_object("b", "o", &contents).ok());
  CHECK(contents == "{\"a\":1}\n");
  // Fenced: further appends answer 503 and store nothing; other objects work.
  writeapi::Status fenced = s.append("{\"e\":5}\n");
  CHECK(fenced.code() == ErrorCode::storage_unavailable);
  CHECK(fenced.http_status() == 503);
  CHECK(s.append("1\n", 1, "other").ok());
  REQUIRE(s.storage->read_object("b", "o", &contents).ok());
  CHECK(contents == "{\"a\":1}\n");
  if (policy == FsyncPolicy::always) {
    // The log recorded the cut: a restart, even after a power failure,
    // removes the refused lines and the object works again.
    s.kill();
    s.memory->power_failure();
    REQUIRE(s.open().ok());
    CHECK(s.object() == "{\"a\":1}\n");
    REQUIRE(s.append("{\"f\":6}\n").ok());
    CHECK(s.object() == "{\"a\":1}\n{\"f\":6}\n");
  }
}

TEST_CASE("Double fault: a failed log sync whose segment cut-back fails leaves the object untouched, restart too",
          "[faults][fence][wal]") {
  MemoryStore s;
  REQUIRE(s.open().ok());
  REQUIRE(s.append("{\"a\":1}\n").ok());
  s.io->fail(FaultRule{Call::fdatasync, EIO, ".wal", 0, 1, /*perform=*/true});
  s.io->fail(FaultRule{Call::ftruncate, EIO});  // nothing can be cut
  CHECK(s.append("{\"refused\":2}\n").code() == ErrorCode::storage_error);
  s.io->heal();
  // The lines of a record that never became durable never reach the
  // object: nothing to cut, nothing to fence.
  CHECK(s.object() == "{\"a\":1}\n");
  CHECK(s.storage->stats().fenced_objects == 0);
  REQUIRE(s.append("{\"b\":3}\n").ok());
  CHECK(s.object() == "{\"a\":1}\n{\"b\":3}\n");
  // The refused record was synced into segment 1 and its truncation failed:
  // replay must not apply it (the limit record voids it).
  s.kill();
  s.memory->power_failure();
  REQUIRE(s.open().ok());
  CHECK(s.object() == "{\"a\":1}\n{\"b\":3}\n");
  REQUIRE(s.append("{\"c\":4}\n").ok());
  CHECK(s.object() == "{\"a\":1}\n{\"b\":3}\n{\"c\":4}\n");
}

namespace {

// The kernel may write an object's dirty pages back at any time: here,
// just before the store cuts refused lines from it.
class WritebackBeforeCutIo : public FaultInjectingIo {
 public:
  explicit WritebackBeforeCutIo(std::shared_ptr<MemoryFileIo> memory)
      : FaultInjectingIo(memory), memory_(std::move(memory)) {}
  int ftruncate(int fd, off_t length) override {
    memory_->fdatasync(fd);
    return FaultInjectingIo::ftruncate(fd, length);
  }

 private:
  std::shared_ptr<MemoryFileIo> memory_;
};

}  // namespace

TEST_CASE("A refused append never survives a power failure, even when its record reached the disk", "[faults][wal]") {
  MemoryStore s;
  s.io = std::make_shared<WritebackBeforeCutIo>(s.memory);
  REQUIRE(s.reopen().ok());
  REQUIRE(s.append("{\"a\":1}\n").ok());
  s.io->fail(FaultRule{Call::fdatasync, EIO, ".jsonl"});  // no checkpoint makes the object durable
  // The failing sync wrote the record anyway, and the segment's truncation
  // is not durable either.
  s.io->fail(FaultRule{Call::fdatasync, EIO, ".wal", 0, 1, /*perform=*/true});
  CHECK(s.append("{\"refused\":2}\n").code() == ErrorCode::storage_error);
  CHECK(s.storage->stats().fenced_objects == 0);
  // The refusal moved the log to segment 2 and queued segment 1's
  // checkpoint for the checkpoint thread. Only that checkpoint syncs the
  // directories that gained the new object's entries (/data/b, /data):
  // killed before it runs, the store leaves a disk without the object file
  // at all (replay rebuilds it from the log), so the refused bytes never
  // reach the disk and there is nothing for replay to cut. Wait for it: it
  // syncs the directories, fails on the object, and keeps segment 1.
  REQUIRE(s.wait_logged("keeping log segment(s) 1 for replay"));
  REQUIRE(s.append("{\"b\":3}\n").ok());  // shorter than the refused line
  s.kill();
  s.memory->power_failure();
  // The refused lines never reached the object (only their record reached
  // the log, and no writeback can bring them to the disk).
  CHECK(s.object().find("refused") == std::string::npos);
  REQUIRE(s.open().ok());
  CHECK(s.object() == "{\"a\":1}\n{\"b\":3}\n");
}

namespace {

// Holds the log's fdatasync until released, so a test can look at the
// store while an append is in flight.
class HeldSyncIo : public FaultInjectingIo {
 public:
  using FaultInjectingIo::FaultInjectingIo;
  void hold() {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = true;
  }
  void wait_until_held() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return waiting_; });
  }
  void release(int error) {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = false;
    error_ = error;
    cv_.notify_all();
  }
  int fdatasync(int fd) override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (hold_) {
        waiting_ = true;
        cv_.notify_all();
        cv_.wait(lock, [&] { return !hold_; });
        waiting_ = false;
        if (int error = std::exchange(error_, 0); error != 0) {
          errno = error;
          return -1;
        }
      }
    }
    return FaultInjectingIo::fdatasync(fd);
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool hold_ = false, waiting_ = false;
  int error_ = 0;
};

}  // namespace

TEST_CASE("Readers never see lines whose append is still in flight or then refused", "[faults][wal]") {
  const int outcome = GENERATE(0, EIO);
  MemoryStore s;
  auto held = std::make_shared<HeldSyncIo>(s.memory);
  s.io = held;
  REQUIRE(s.reopen().ok());
  REQUIRE(s.append("{\"a\":1}\n").ok());
  held->hold();
  writeapi::Status in_flight;
  std::thread writer([&] { in_flight = s.append("{\"b\":2}\n"); });
  held->wait_until_held();
  CHECK(s.object() == "{\"a\":1}\n");  // not in the file before its record is durable
  std::string contents;
  REQUIRE(s.storage->read_object("b", "o", &contents).ok());
  CHECK(contents == "{\"a\":1}\n");  // but not visible
  held->release(outcome);
  writer.join();
  REQUIRE(s.storage->read_object("b", "o", &contents).ok());
  if (outcome == 0) {
    CHECK(in_flight.ok());
    CHECK(contents == "{\"a\":1}\n{\"b\":2}\n");
    CHECK(s.storage->stats().appends == 2);
  } else {
    CHECK(in_flight.code() == ErrorCode::storage_error);
    CHECK(contents == "{\"a\":1}\n");
    CHECK(s.storage->stats().appends == 1);  // counters count only what was stored
    CHECK(s.storage->stats().bytes_written == 8);
  }
}

TEST_CASE("Complete lines of a failed object write never come back after a power failure", "[faults][wal]") {
  MemoryStore s;
  REQUIRE(s.open().ok());
  REQUIRE(s.append("{\"a\":1}\n").ok());
  s.storage.reset();  // a clean shutdown: the object is durable
  s.io = std::make_shared<WritebackBeforeCutIo>(s.memory);
  REQUIRE(s.reopen().ok());
  s.io->fail(FaultRule{Call::fdatasync, EIO, ".jsonl"});  // no checkpoint syncs the object
  // Two complete lines reach the file (and the disk, by writeback) before
  // ENOSPC; the cut back succeeds, but is not durable.
  s.io->short_writes(16, ENOSPC, ".jsonl");
  CHECK(s.append("{\"b\":2}\n{\"c\":3}\n{\"d\":4}\n", 3).code() == ErrorCode::insufficient_storage);
  CHECK(s.storage->stats().fenced_objects == 0);
  // Counters count what was stored: neither the refused append nor the
  // truncate record that voids it is a synced append.
  CHECK(s.storage->stats().synced_appends == 0);
  CHECK(s.storage->stats().appends == 0);
  s.io->heal();
  s.io->fail(FaultRule{Call::fdatasync, EIO, ".jsonl"});
  s.kill();
  s.memory->power_failure();
  CHECK(s.object() == "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n");  // what the disk holds
  REQUIRE(s.open().ok());
  CHECK(s.object() == "{\"a\":1}\n");
}

// ---- Request ids kept with the lines (issue 12) ----

namespace {

writeapi::RequestFingerprint fingerprint_of(int n) {
  writeapi::RequestFingerprint f{};
  f[0] = static_cast<std::uint8_t>(n & 0xFF);
  f[1] = static_cast<std::uint8_t>(n >> 8);
  f[15] = 0x5A;
  return f;
}

// Appends `lines` as one request with id "r<n>" to object `key`.
writeapi::Status append_tagged(MemoryStore& s, int n, const std::string& lines, std::size_t items,
                               const char* key = "o") {
  const std::string id = "r" + std::to_string(n);
  AppendBatch batch;
  batch.bucket = "b";
  batch.key = key;
  batch.lines = lines;
  batch.item_count = items;
  batch.request.id = id;
  batch.request.fingerprint = fingerprint_of(n);
  return s.storage->append(batch);
}

// The ids the store recovered when it opened, as "id:items" sorted, with
// each one's fingerprint checked.
std::vector<std::string> recovered(MemoryStore& s) {
  std::vector<writeapi::StoredRequest> requests;
  REQUIRE(s.storage->take_recovered_requests(&requests).ok());
  std::vector<std::string> ids;
  for (const auto& r : requests) {
    CHECK(r.bucket == "b");
    CHECK(r.fingerprint == fingerprint_of(std::stoi(r.id.substr(1))));
    ids.push_back(r.id + ":" + std::to_string(r.item_count));
  }
  std::sort(ids.begin(), ids.end());
  // Handed over once.
  REQUIRE(s.storage->take_recovered_requests(&requests).ok());
  CHECK(requests.empty());
  return ids;
}

std::vector<std::string> ids_from(int from, int to) {
  std::vector<std::string> ids;
  for (int i = from; i < to; ++i) ids.push_back("r" + std::to_string(i) + ":" + std::to_string(i % 3 + 1));
  std::sort(ids.begin(), ids.end());
  return ids;
}

}  // namespace

TEST_CASE("Request ids survive kill -9, a power failure, checkpoints and restarts with the log", "[faults][wal][ids]") {
  MemoryStore s;
  s.options.wal_segment_bytes = 400;  // many segments retire while writing
  REQUIRE(s.open().ok());
  for (int i = 0; i < 40; ++i) REQUIRE(append_tagged(s, i, numbered("v", 0, i % 3 + 1), i % 3 + 1).ok());
  // Records without an id carry none.
  REQUIRE(s.append("{\"plain\":1}\n").ok());
  s.kill();
  s.memory->power_failure();
  REQUIRE(s.open().ok());
  CHECK(recovered(s) == ids_from(0, 40));
  // A clean restart (every segment retired) keeps them in the file.
  REQUIRE(append_tagged(s, 40, numbered("v", 0, 2), 2).ok());
  s.storage.reset();
  CHECK(s.segments().empty());
  REQUIRE(s.open().ok());
  CHECK(recovered(s) == ids_from(0, 41));
  s.memory->power_failure();
  REQUIRE(s.open().ok());
  CHECK(recovered(s) == ids_from(0, 41));
}

TEST_CASE("Request ids: a crash at each step of recovery, then another recovery, keeps every id",
          "[faults][wal][ids][recovery]") {
  MemoryStore base;
  base.options.wal_segment_bytes = 300;
  REQUIRE(base.open().ok());
  for (int i = 0; i < 12; ++i) REQUIRE(append_tagged(base, i, numbered("v", 0, i % 3 + 1), i % 3 + 1).ok());
  REQUIRE(base.open().ok());                                 // the first ids now live in the request-id file only
  base.io->fail(FaultRule{Call::fdatasync, EIO, ".jsonl"});  // later checkpoints keep their segments
  for (int i = 12; i < 24; ++i) REQUIRE(append_tagged(base, i, numbered("v", 0, i % 3 + 1), i % 3 + 1).ok());
  base.kill();
  base.memory->power_failure();
  REQUIRE(base.segments().size() >= 2);

  std::size_t steps = 0;
  for (std::size_t crash_at = 0;; ++crash_at) {
    INFO("crash after " << crash_at << " calls of recovery");
    MemoryStore s;
    s.options.wal_segment_bytes = 300;
    s.memory = base.memory->clone();
    s.io = std::make_shared<FaultInjectingIo>(s.memory);
    s.io->crash_after(crash_at);
    (void)s.reopen();
    const bool finished = !s.io->crashed();
    s.kill();
    s.memory->power_failure();
    REQUIRE(s.open().ok());
    CHECK(recovered(s) == ids_from(0, 24));
    ++steps;
    if (finished) break;
  }
  CHECK(steps > 20);
}

TEST_CASE("Request ids: an id whose append is refused is not recovered", "[faults][wal][ids]") {
  MemoryStore s;
  REQUIRE(s.open().ok());
  REQUIRE(append_tagged(s, 1, "{\"a\":1}\n", 1).ok());
  s.io->fail(FaultRule{Call::fdatasync, EIO, "/data/.wal/0"});  // the log's sync
  CHECK_FALSE(append_tagged(s, 2, "{\"a\":2}\n", 1).ok());
  s.io->heal();
  REQUIRE(append_tagged(s, 3, "{\"a\":3}\n", 1).ok());
  s.kill();
  s.memory->power_failure();
  REQUIRE(s.open().ok());
  CHECK(recovered(s) == std::vector<std::string>{"r1:1", "r3:1"});
  CHECK(s.object() == "{\"a\":1}\n{\"a\":3}\n");
}

TEST_CASE("Request ids: a checkpoint that cannot keep its ids keeps its segment, and the next start replays them",
          "[faults][wal][ids]") {
  MemoryStore s;
  s.options.wal_segment_bytes = 300;
  REQUIRE(s.open().ok());
  s.io->fail(FaultRule{Call::fdatasync, EIO, "request-ids"});
  for (int i = 0; i < 20; ++i) REQUIRE(append_tagged(s, i, numbered("v", 0, i % 3 + 1), i % 3 + 1).ok());
  CHECK(s.wait_logged("cannot keep the request ids of a checkpoint"));
  s.kill();
  s.memory->power_failure();
  CHECK_FALSE(s.segments().empty());
  REQUIRE(s.open().ok());
  CHECK(recovered(s) == ids_from(0, 20));
}

TEST_CASE("Request ids without the log: kept in the request-id file across restarts", "[faults][ids]") {
  for (FsyncPolicy policy : {FsyncPolicy::never, FsyncPolicy::interval}) {
    MemoryStore s(policy);
    REQUIRE(s.open().ok());
    for (int i = 0; i < 10; ++i) REQUIRE(append_tagged(s, i, numbered("v", 0, i % 3 + 1), i % 3 + 1).ok());
    s.kill();  // the page cache survives a process crash
    REQUIRE(s.open().ok());
    CHECK(recovered(s) == ids_from(0, 10));
    // A failed write of the id refuses the append and keeps none of it.
    s.io->fail(FaultRule{Call::pwrite, ENOSPC, "request-ids"});
    CHECK(append_tagged(s, 10, "{\"x\":1}\n", 1).code() == ErrorCode::insufficient_storage);
    s.io->heal();
    std::string contents;
    REQUIRE(s.storage->read_object("b", "o", &contents).ok());
    CHECK(contents.find("{\"x\":1}") == std::string::npos);
    REQUIRE(s.open().ok());
    CHECK(recovered(s) == ids_from(0, 10));
  }
}

TEST_CASE("Request ids: the file keeps the newest max_request_ids per bucket and drops expired ids", "[faults][ids]") {
  MemoryStore s;
  s.options.max_request_ids = 5;
  REQUIRE(s.open().ok());
  for (int i = 0; i < 12; ++i) REQUIRE(append_tagged(s, i, numbered("v", 0, i % 3 + 1), i % 3 + 1).ok());
  REQUIRE(s.open().ok());
  CHECK(recovered(s) == ids_from(7, 12));
  s.options.request_id_window = std::chrono::seconds(0);  // everything is older than the window
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  REQUIRE(s.open().ok());
  CHECK(recovered(s).empty());
  CHECK(s.memory->contents("/data/.wal/request-ids").empty());
}

TEST_CASE("Request ids: a damaged record in the request-id file costs only itself", "[faults][ids]") {
  MemoryStore s;
  REQUIRE(s.open().ok());
  for (int i = 0; i < 5; ++i) REQUIRE(append_tagged(s, i, numbered("v", 0, i % 3 + 1), i % 3 + 1).ok());
  s.storage.reset();
  std::string file = s.memory->contents("/data/.wal/request-ids");
  REQUIRE(file.size() > 100);
  file[file.size() / 5 + 20] ^= 0x55;  // inside the second record
  s.memory->put("/data/.wal/request-ids", file);
  REQUIRE(s.open().ok());
  CHECK(recovered(s) == std::vector<std::string>{"r0:1", "r2:3", "r3:1", "r4:2"});
  CHECK(s.logged("skipped"));
}

TEST_CASE("Request ids: the newest are those acknowledged last, whatever the wall clock said", "[faults][ids]") {
  // Ids stamped an hour ahead (a clock stepped back since), then newer ids.
  MemoryStore s;
  s.options.max_request_ids = 3;
  REQUIRE(s.open().ok());
  s.storage.reset();
  std::string file;
  const auto now_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count();
  for (int i = 0; i < 5; ++i) {
    const std::string id = "r" + std::to_string(i);
    writeapi::wal::RequestFields fields;
    fields.id = id;
    fields.fingerprint = fingerprint_of(i);
    fields.items = static_cast<std::uint32_t>(i % 3 + 1);
    fields.stored_at_ms = now_ms + (i < 3 ? 3'600'000 : 0);
    writeapi::wal::encode_request(&file, "b", fields);
  }
  s.memory->put("/data/.wal/request-ids", file);
  REQUIRE(s.open().ok());
  CHECK(recovered(s) == ids_from(2, 5));
}

TEST_CASE("Request ids: a start with ids off keeps the file for a later start with them on", "[faults][ids]") {
  MemoryStore s;
  REQUIRE(s.open().ok());
  for (int i = 0; i < 4; ++i) REQUIRE(append_tagged(s, i, numbered("v", 0, i % 3 + 1), i % 3 + 1).ok());
  s.options.max_request_ids = 0;  // --dedup-max 0
  REQUIRE(s.open().ok());
  s.options.max_request_ids = 1'000'000;
  REQUIRE(s.open().ok());
  CHECK(recovered(s) == ids_from(0, 4));
}

TEST_CASE("A request refused after its record was durable is forgotten: a restart does not call its retry a duplicate",
          "[faults][ids][wal]") {
  const bool fence = GENERATE(false, true);
  INFO("the cut-back fails too: " << fence);
  MemoryStore s;
  REQUIRE(s.open().ok());
  REQUIRE(append_tagged(s, 1, "{\"a\":1}\n", 1).ok());
  // The record is durable, then the object write fails.
  s.io->short_writes(5, ENOSPC, ".jsonl");
  if (fence) s.io->fail(FaultRule{Call::ftruncate, EIO, ".jsonl"});
  CHECK(append_tagged(s, 2, "{\"b\":2}\n", 1).code() == ErrorCode::insufficient_storage);
  s.io->heal();
  CHECK(s.storage->stats().fenced_objects == (fence ? 1u : 0u));
  CHECK(s.storage->stats().appends == 1);
  s.kill();
  s.memory->power_failure();
  REQUIRE(s.open().ok());
  CHECK(s.object() == "{\"a\":1}\n");
  CHECK(recovered(s) == std::vector<std::string>{"r1:1"});
  REQUIRE(append_tagged(s, 2, "{\"b\":2}\n", 1).ok());
  CHECK(s.object() == "{\"a\":1}\n{\"b\":2}\n");
}
