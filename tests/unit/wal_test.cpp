// The write-ahead log on its own (lib/src/wal_*.h), over the in-memory file
// system of tests/support: the byte layout of docs/WAL_FORMAT.md, a reader
// that stops at the first torn or corrupt record, replay in segment order,
// group commit, refusal after a failed sync, and segments retired only
// after the objects they cover are durable.
#include <fcntl.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fault_injecting_io.h"
#include "memory_file_io.h"
#include "wal_format.h"
#include "wal_reader.h"
#include "wal_writer.h"

using namespace writeapi;
using writeapi::testing::Call;
using writeapi::testing::FaultInjectingIo;
using writeapi::testing::FaultRule;
using writeapi::testing::MemoryFileIo;

namespace {

std::string record(std::string_view bucket, std::string_view key, std::uint64_t offset, std::string_view lines) {
  std::string out;
  wal::encode_record(&out, bucket, key, offset, lines);
  return out;
}

std::vector<std::string> read_all(std::string_view bytes, wal::Reader::Stop* stop = nullptr) {
  wal::Reader reader(bytes);
  wal::Record r;
  std::vector<std::string> out;
  while (reader.next(&r))
    out.push_back(std::string(r.id) + "@" + std::to_string(r.offset) + ":" + std::string(r.lines));
  if (stop) *stop = reader.stop();
  return out;
}

}  // namespace

TEST_CASE("wal format: a record is laid out byte for byte as docs/WAL_FORMAT.md says", "[wal]") {
  const std::string bytes = record("b", "k", 0x0102030405060708ull, "1\n");
  // payload: u16 id length 3, "b/k", u64 offset, "1\n" = 2 + 3 + 8 + 2
  REQUIRE(bytes.size() == 12 + 15);
  CHECK(bytes.substr(0, 4) == "WAL1");
  CHECK(wal::get_u32(bytes.data() + 8) == 15);
  const std::string payload = bytes.substr(12);
  CHECK(wal::get_u32(bytes.data() + 4) ==
        crc32(0L, reinterpret_cast<const Bytef*>(payload.data()), static_cast<uInt>(payload.size())));
  CHECK(payload.substr(0, 2) == std::string("\x03\x00", 2));
  CHECK(payload.substr(2, 3) == "b/k");
  CHECK(payload.substr(5, 8) == std::string("\x08\x07\x06\x05\x04\x03\x02\x01", 8));
  CHECK(payload.substr(13) == "1\n");
  CHECK(wal::encoded_size(3, 2) == bytes.size());
}

TEST_CASE("wal format: segment names are 20 zero-padded digits", "[wal]") {
  CHECK(wal::segment_file_name(42) == "00000000000000000042.wal");
  std::uint64_t sequence = 0;
  CHECK(wal::parse_segment_file_name("00000000000000000042.wal", &sequence));
  CHECK(sequence == 42);
  CHECK(wal::parse_segment_file_name(wal::segment_file_name(UINT64_MAX), &sequence));
  CHECK(sequence == UINT64_MAX);
  CHECK_FALSE(wal::parse_segment_file_name("42.wal", &sequence));
  CHECK_FALSE(wal::parse_segment_file_name("0000000000000000004x.wal", &sequence));
  CHECK_FALSE(wal::parse_segment_file_name("00000000000000000042.tmp", &sequence));
  CHECK_FALSE(wal::parse_segment_file_name("99999999999999999999.wal", &sequence));  // beyond u64
}

TEST_CASE("wal reader: records come back in order and the end is reported", "[wal]") {
  const std::string bytes = record("b", "k", 0, "1\n") + record("b", "other", 7, "2\n3\n");
  wal::Reader::Stop stop;
  CHECK(read_all(bytes, &stop) == std::vector<std::string>{"b/k@0:1\n", "b/other@7:2\n3\n"});
  CHECK(stop == wal::Reader::Stop::end);
  // Preallocated zeros after the records are padding, not damage.
  CHECK(read_all(bytes + std::string(4096, '\0'), &stop).size() == 2);
  CHECK(stop == wal::Reader::Stop::padding);
}

TEST_CASE("wal reader: a torn record at any byte is never returned", "[wal]") {
  const std::string first = record("b", "k", 0, "{\"a\":1}\n");
  const std::string second = record("b", "k", 8, "{\"b\":2}\n");
  const std::string bytes = first + second;
  for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
    INFO("cut at " << cut);
    wal::Reader::Stop stop;
    auto records = read_all(std::string_view(bytes).substr(0, cut), &stop);
    if (cut < first.size()) {
      CHECK(records.empty());
    } else {
      CHECK(records == std::vector<std::string>{"b/k@0:{\"a\":1}\n"});
    }
    if (cut == 0 || cut == first.size())
      CHECK(stop == wal::Reader::Stop::end);
    else
      CHECK(stop == wal::Reader::Stop::torn);
  }
  wal::Reader::Stop stop;
  // Torn, then zeros (a preallocated segment): the zeros complete the
  // payload's length, so the checksum is what catches it.
  CHECK(read_all(bytes.substr(0, first.size() + 20) + std::string(100, '\0'), &stop).size() == 1);
  CHECK(stop == wal::Reader::Stop::checksum_mismatch);
}

TEST_CASE("wal reader: a checksum mismatch ends the segment, later records included", "[wal]") {
  std::string bytes = record("b", "k", 0, "1\n") + record("b", "k", 2, "2\n") + record("b", "k", 4, "3\n");
  const std::size_t second = record("b", "k", 0, "1\n").size();
  bytes[second + 12 + 2] ^= 0x20;  // one bit of the second record's id
  wal::Reader::Stop stop;
  wal::Reader reader(bytes);
  CHECK(read_all(bytes, &stop) == std::vector<std::string>{"b/k@0:1\n"});
  CHECK(stop == wal::Reader::Stop::checksum_mismatch);
  wal::Record r;
  REQUIRE(reader.next(&r));
  CHECK_FALSE(reader.next(&r));
  CHECK(reader.valid_bytes() == second);
}

TEST_CASE("wal reader: impossible lengths and stray bytes end the segment", "[wal]") {
  wal::Reader::Stop stop;
  // A payload shorter than its fixed fields.
  std::string tiny = std::string("WAL1") + std::string(4, '\0') + std::string("\x05\x00\x00\x00", 4) + "12345";
  CHECK(read_all(tiny, &stop).empty());
  CHECK(stop == wal::Reader::Stop::bad_length);
  // An id length beyond the payload (checksum made valid on purpose).
  std::string bad = record("b", "k", 0, "1\n");
  bad[12] = '\x7f';
  uLong crc = crc32(0L, reinterpret_cast<const Bytef*>(bad.data() + 12), static_cast<uInt>(bad.size() - 12));
  for (int i = 0; i < 4; ++i) bad[4 + i] = static_cast<char>((crc >> (8 * i)) & 0xFF);
  CHECK(read_all(bad, &stop).empty());
  CHECK(stop == wal::Reader::Stop::bad_length);
  CHECK(read_all(record("b", "k", 0, "1\n") + "garbage", &stop).size() == 1);
  CHECK(stop == wal::Reader::Stop::bad_magic);
}

namespace {

struct Replayed {
  std::vector<std::string> records;
  std::vector<std::string> log;
  Status status;
  wal::ReplayResult result;
};

Replayed replay(FileIo& io, const std::string& dir) {
  Replayed out;
  out.status = wal::replay_log(
      io, dir,
      [&](const wal::Record& r) {
        if (r.kind == wal::Record::Kind::truncate)
          out.records.push_back("cut " + std::string(r.id) + " to " + std::to_string(r.offset));
        else
          out.records.push_back(std::string(r.id) + "@" + std::to_string(r.offset) + ":" + std::string(r.lines));
        return Status();
      },
      [&](std::string_view line) { out.log.emplace_back(line); }, &out.result);
  return out;
}

}  // namespace

TEST_CASE("wal replay: segments in sequence order, each stopping at its first bad record", "[wal]") {
  MemoryFileIo fs;
  fs.mkdir("/wal", 0755);
  fs.put("/wal/" + wal::segment_file_name(10), record("b", "k", 4, "3\n"));
  std::string torn = record("b", "k", 0, "1\n") + record("b", "k", 2, "2\n");
  torn += record("b", "k", 9, "never acknowledged\n").substr(0, 15);
  fs.put("/wal/" + wal::segment_file_name(9), torn);
  fs.put("/wal/notes.txt", "not a segment");
  Replayed r = replay(fs, "/wal");
  REQUIRE(r.status.ok());
  CHECK(r.records == std::vector<std::string>{"b/k@0:1\n", "b/k@2:2\n", "b/k@4:3\n"});
  CHECK(r.result.segments == std::vector<std::uint64_t>{9, 10});
  CHECK(r.result.records == 3);
  REQUIRE(r.log.size() == 1);
  CHECK(r.log[0].find("log segment 9: ignoring 15 bytes from a torn record") != std::string::npos);
}

TEST_CASE("wal replay: a missing directory is an empty log, unreadable segments and apply errors stop it", "[wal]") {
  MemoryFileIo memory;
  CHECK(replay(memory, "/nowhere").status.ok());
  auto fs = std::make_shared<MemoryFileIo>();
  fs->mkdir("/wal", 0755);
  fs->put("/wal/" + wal::segment_file_name(1), record("b", "k", 0, "1\n"));
  FaultInjectingIo io(fs);
  io.fail(Call::read, EIO);
  CHECK(replay(io, "/wal").status.code() == ErrorCode::storage_error);
  io.heal();
  io.fail(Call::list_directory, EACCES);
  CHECK(replay(io, "/wal").status.code() == ErrorCode::storage_error);
  io.heal();
  wal::ReplayResult result;
  Status s = wal::replay_log(
      io, "/wal", [](const wal::Record&) { return Status(ErrorCode::storage_error, "apply failed"); },
      [](std::string_view) {}, &result);
  CHECK(s.message() == "apply failed");
}

namespace {

struct FakeObject final : wal::LoggedObject {
  explicit FakeObject(std::string path) : path(std::move(path)) {
    bucket = "b";
    key = "k";
  }
  std::string path;
  std::uint64_t durable_end = 0;
  std::vector<std::uint64_t> refused;
};

struct FakeDelegate final : wal::Delegate {
  // Writes durable lines into the fake object; with fail_writes set, refuses
  // them as the object store does (a truncate record, a new generation).
  int write(const std::shared_ptr<wal::LoggedObject>& o, std::uint64_t offset, std::string_view lines,
            std::uint64_t generation) override {
    auto& object = static_cast<FakeObject&>(*o);
    std::lock_guard<std::mutex> lock(*object_mu);
    if (generation != object.generation) return ECANCELED;
    if (fail_writes) {
      object.generation++;
      *object_size = offset;
      (void)writer->add_truncate(o, offset, nullptr);
      return ENOSPC;
    }
    int fd = files->open(object.path, O_RDWR, 0);
    files->pwrite(fd, lines.data(), lines.size(), static_cast<off_t>(offset));
    files->close(fd);
    return 0;
  }
  void durable(wal::LoggedObject& o, std::uint64_t end, wal::DirtySet* dirty) override {
    auto& object = static_cast<FakeObject&>(o);
    object.durable_end = end;
    dirty->files.insert(object.path);
  }
  void refused(wal::LoggedObject& o, std::uint64_t offset) override {
    static_cast<FakeObject&>(o).refused.push_back(offset);
  }
  writeapi::FileIo* files = nullptr;
  std::mutex* object_mu = nullptr;
  std::uint64_t* object_size = nullptr;
  wal::Writer* writer = nullptr;
  std::atomic<bool> fail_writes{false};
};

struct WriterHarness {
  explicit WriterHarness(std::uint64_t segment_bytes = 1 << 20) {
    memory->mkdir("/wal", 0755);
    memory->sync_directory("/");
    memory->put("/obj", "");
    wal::WriterOptions options;
    options.dir = "/wal";
    options.segment_bytes = segment_bytes;
    options.log = [this](std::string_view line) {
      std::lock_guard<std::mutex> lock(log_mu);
      log.emplace_back(line);
    };
    writer = std::make_unique<wal::Writer>(io, options, &delegate);
    delegate.files = io.get();
    delegate.object_mu = &object_mu;
    delegate.object_size = &object_size;
    delegate.writer = writer.get();
  }
  // Logs lines; the log writes them into the fake object (page cache only)
  // once durable.
  Status append(const std::string& lines) {
    wal::Writer::Waiter waiter;
    {
      std::lock_guard<std::mutex> lock(object_mu);
      if (Status s = writer->add(object, object_size, lines, &waiter); !s.ok()) return s;
      object_size += lines.size();
    }
    return writer->wait(&waiter);
  }
  ~WriterHarness() { writer.reset(); }  // before the log it writes to
  bool logged(const std::string& text) {
    std::lock_guard<std::mutex> lock(log_mu);
    for (auto& line : log)
      if (line.find(text) != std::string::npos) return true;
    return false;
  }

  std::shared_ptr<MemoryFileIo> memory = std::make_shared<MemoryFileIo>();
  std::shared_ptr<FaultInjectingIo> io = std::make_shared<FaultInjectingIo>(memory);
  FakeDelegate delegate;
  std::shared_ptr<FakeObject> object = std::make_shared<FakeObject>("/obj");
  std::mutex object_mu;
  std::uint64_t object_size = 0;
  std::unique_ptr<wal::Writer> writer;
  std::mutex log_mu;
  std::vector<std::string> log;
};

}  // namespace

TEST_CASE("wal writer: an acknowledged record survives a power failure", "[wal]") {
  WriterHarness h;
  REQUIRE(h.writer->start(1).ok());
  REQUIRE(h.append("1\n").ok());
  REQUIRE(h.append("2\n").ok());
  CHECK(h.object->durable_end == 4);
  h.memory->power_failure();
  Replayed r = replay(*h.memory, "/wal");
  CHECK(r.records == std::vector<std::string>{"b/k@0:1\n", "b/k@2:2\n"});
  CHECK(h.memory->contents("/obj").empty());  // the object was never synced: the log is what holds it
  h.writer.reset();                           // stop() on dead descriptors must not hang
}

TEST_CASE("wal writer: concurrent records share one write and one sync per group", "[wal]") {
  WriterHarness h;
  REQUIRE(h.writer->start(1).ok());
  constexpr int kThreads = 8, kEach = 40;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < kEach; ++i)
        if (!h.append("x\n").ok()) failures++;
    });
  for (auto& t : threads) t.join();
  CHECK(failures == 0);
  CHECK(h.writer->synced_records() == kThreads * kEach);
  CHECK(h.writer->syncs() <= kThreads * kEach);
  auto trace = h.io->trace();
  std::size_t segment_syncs = std::count(trace.begin(), trace.end(), "fdatasync /wal/" + wal::segment_file_name(1));
  CHECK(segment_syncs == h.writer->syncs());
  CHECK(replay(*h.memory, "/wal").records.size() == kThreads * kEach);
}

TEST_CASE("wal writer: lines reach the object only after their record is durable", "[wal]") {
  WriterHarness h;
  REQUIRE(h.writer->start(1).ok());
  // The log cannot sync: the group is refused and its lines were never
  // written to the object, so a crash leaves nothing no record names.
  h.io->fail(FaultRule{Call::fdatasync, EIO, ".wal", 0, 1});
  CHECK(h.append("never\n").code() == ErrorCode::storage_error);
  CHECK(h.memory->contents("/obj").empty());
  h.io->heal();
  h.object_size = 0;  // the store's refused() resets its end
  REQUIRE(h.append("1\n").ok());
  CHECK(h.memory->contents("/obj") == "1\n");
  auto trace = h.io->trace();
  auto sync = std::find(trace.begin(), trace.end(), "fdatasync /wal/" + wal::segment_file_name(2));
  auto write = std::find(trace.begin(), trace.end(), "pwrite /obj");
  CHECK(sync < write);
}

TEST_CASE("wal writer: an object write refused after its record is durable waits for its truncate record", "[wal]") {
  WriterHarness h;
  REQUIRE(h.writer->start(1).ok());
  REQUIRE(h.append("1\n").ok());
  h.delegate.fail_writes = true;
  Status refused = h.append("refused\n");
  CHECK(refused.code() == ErrorCode::insufficient_storage);
  h.delegate.fail_writes = false;
  REQUIRE(h.append("2\n").ok());
  CHECK(h.memory->contents("/obj") == "1\n2\n");
  // Before the refused writer was answered, the cut was durable: replay
  // after a power failure writes the refused lines, then cuts them.
  h.memory->power_failure();
  Replayed r = replay(*h.memory, "/wal");
  CHECK(r.records == std::vector<std::string>{"b/k@0:1\n", "b/k@2:refused\n", "cut b/k to 2", "b/k@2:2\n"});
  h.writer.reset();
}

TEST_CASE("wal writer: a failed sync refuses the group, cuts the segment back and moves on", "[wal]") {
  WriterHarness h;
  REQUIRE(h.writer->start(1).ok());
  // Checkpoints cannot sync the object, so no segment is deleted under us.
  h.io->fail(FaultRule{Call::fdatasync, EIO, "/obj"});
  REQUIRE(h.append("kept\n").ok());
  h.io->fail(FaultRule{Call::fdatasync, EIO, ".wal", 0, 1, /*perform=*/true});
  Status refused = h.append("refused\n");
  CHECK(refused.code() == ErrorCode::storage_error);
  CHECK(h.object->refused == std::vector<std::uint64_t>{5});
  CHECK(h.logged("log sync failed"));
  CHECK(h.writer->failures() == 1);
  // The old segment holds only what was synced; the log went on in segment 2.
  CHECK(h.memory->contents("/wal/" + wal::segment_file_name(1)) == record("b", "k", 0, "kept\n"));
  REQUIRE(h.memory->exists("/wal/" + wal::segment_file_name(2)));
  REQUIRE(h.append("next\n").ok());
  // The new segment opens with the refusal: a limit for segment 1 and the
  // object's cut. The refused record was synced (the failing fdatasync did
  // write it) and the truncation of segment 1 never was: a power failure
  // brings it back into segment 1, and the limit record voids it.
  CHECK(h.memory->contents("/wal/" + wal::segment_file_name(2)).substr(0, 4) == "WALS");
  h.memory->power_failure();
  CHECK(h.memory->contents("/wal/" + wal::segment_file_name(1)).find("refused") != std::string::npos);
  Replayed r = replay(*h.memory, "/wal");
  CHECK(r.records == std::vector<std::string>{"b/k@0:kept\n", "cut b/k to 5", "b/k@13:next\n"});
}

TEST_CASE("wal writer: a segment is deleted only after the objects it covers are synced", "[wal]") {
  WriterHarness h(256);  // rotate every few records
  REQUIRE(h.writer->start(1).ok());
  h.io->fail(FaultRule{Call::fdatasync, EIO, "/obj"});
  for (int i = 0; i < 40; ++i) REQUIRE(h.append("{\"i\":" + std::to_string(i) + "}\n").ok());
  h.writer->stop();  // drains the checkpoints, then tries the last segment
  // Every checkpoint failed to sync the object: no segment was deleted.
  auto segments = h.memory->list("/wal", ".wal");
  CHECK(segments.size() > 3);
  CHECK(h.logged("checkpoint sync failed"));
  h.memory->power_failure();
  CHECK(replay(*h.memory, "/wal").records.size() == 40);

  // Healthy: each deletion comes after a sync of the object.
  WriterHarness ok(256);
  REQUIRE(ok.writer->start(1).ok());
  for (int i = 0; i < 40; ++i) REQUIRE(ok.append("{\"i\":" + std::to_string(i) + "}\n").ok());
  ok.writer->stop();
  CHECK(ok.memory->list("/wal", ".wal").empty());
  auto trace = ok.io->trace();
  std::size_t deletions = 0;
  for (std::size_t i = 0; i < trace.size(); ++i) {
    if (trace[i].rfind("unlink /wal/", 0) != 0) continue;
    // The segment's last record write, then a sync of the object, then the deletion.
    const std::string written = "pwrite " + trace[i].substr(7);
    std::size_t last_write = trace.size();
    for (std::size_t j = 0; j < i; ++j)
      if (trace[j] == written) last_write = j;
    if (last_write == trace.size()) continue;  // an empty segment covers nothing
    ++deletions;
    bool object_synced_between = false;
    for (std::size_t j = last_write; j < i; ++j) object_synced_between |= trace[j] == "fdatasync /obj";
    CHECK(object_synced_between);
  }
  CHECK(deletions > 3);
  ok.memory->power_failure();
  CHECK(ok.memory->contents("/obj").size() == ok.object_size);
}

TEST_CASE("wal format: truncate and limit records round-trip", "[wal]") {
  std::string bytes;
  wal::encode_truncate(&bytes, "b", "k", 77);
  wal::encode_limit(&bytes, 5, 4096);
  CHECK(bytes.substr(0, 4) == "WALT");
  wal::Reader reader(bytes);
  wal::Record r;
  REQUIRE(reader.next(&r));
  CHECK(r.kind == wal::Record::Kind::truncate);
  CHECK(r.id == "b/k");
  CHECK(r.offset == 77);
  CHECK(r.lines.empty());
  REQUIRE(reader.next(&r));
  CHECK(r.kind == wal::Record::Kind::limit);
  CHECK(r.segment == 5);
  CHECK(r.offset == 4096);
  CHECK_FALSE(reader.next(&r));
  CHECK(reader.stop() == wal::Reader::Stop::end);
}

TEST_CASE("wal replay: a limit record voids an earlier segment's records from its byte on", "[wal]") {
  MemoryFileIo fs;
  fs.mkdir("/wal", 0755);
  const std::string kept = record("b", "k", 0, "1\n");
  fs.put("/wal/" + wal::segment_file_name(1), kept + record("b", "k", 2, "refused\n") + record("b", "k", 10, "x\n"));
  std::string second;
  wal::encode_limit(&second, 1, kept.size());
  wal::encode_truncate(&second, "b", "k", 2);
  second += record("b", "k", 2, "2\n");
  fs.put("/wal/" + wal::segment_file_name(2), second);
  Replayed r = replay(fs, "/wal");
  REQUIRE(r.status.ok());
  CHECK(r.records == std::vector<std::string>{"b/k@0:1\n", "cut b/k to 2", "b/k@2:2\n"});
  REQUIRE(r.log.size() == 1);
  CHECK(r.log[0].find("refused after a failed sync") != std::string::npos);
}

TEST_CASE("wal writer: until the refusal is recorded every group is refused, then the log heals", "[wal]") {
  WriterHarness h;
  REQUIRE(h.writer->start(1).ok());
  h.io->fail(FaultRule{Call::fdatasync, EIO, "/obj"});  // no checkpoint deletes a segment
  REQUIRE(h.append("kept\n").ok());
  // A full disk: the group's sync fails, and so does every log write.
  h.io->fail(FaultRule{Call::fdatasync, ENOSPC, ".wal", 0, 1, /*perform=*/true});
  h.io->fail(FaultRule{Call::pwrite, ENOSPC, ".wal"});
  CHECK(h.append("refused\n").code() == ErrorCode::insufficient_storage);
  CHECK(h.writer->recording_refusal());
  CHECK(h.logged("cannot record the refused appends"));
  CHECK(h.append("also refused\n").code() == ErrorCode::insufficient_storage);
  // Space returns: the next group records the refusals first, then is acknowledged.
  h.io->heal();
  h.io->fail(FaultRule{Call::fdatasync, EIO, "/obj"});
  REQUIRE(h.append("later\n").ok());
  CHECK_FALSE(h.writer->recording_refusal());
  h.memory->power_failure();
  Replayed r = replay(*h.memory, "/wal");
  CHECK(std::find(r.records.begin(), r.records.end(), "b/k@0:kept\n") != r.records.end());
  CHECK(std::find(r.records.begin(), r.records.end(), "cut b/k to 5") != r.records.end());
  CHECK(std::find(r.records.begin(), r.records.end(), "cut b/k to 13") != r.records.end());
  CHECK(r.records.back() == "b/k@26:later\n");
  for (const auto& record : r.records) CHECK(record.find("refused") == std::string::npos);
}

TEST_CASE("wal writer: a failed directory sync when creating a segment keeps the current one", "[wal]") {
  WriterHarness h;
  h.io->fail(FaultRule{Call::fsync, EIO, "/wal"});
  CHECK(h.writer->start(1).code() == ErrorCode::storage_error);
  h.io->heal();
  REQUIRE(h.writer->start(1).ok());
  REQUIRE(h.append("1\n").ok());
}

TEST_CASE("wal format: appends with a request id and request records round-trip", "[wal][ids]") {
  wal::RequestFields request;
  request.id = "sensor-7/0042";
  for (std::size_t i = 0; i < request.fingerprint.size(); ++i)
    request.fingerprint[i] = static_cast<std::uint8_t>(i * 7);
  request.items = 3;
  request.stored_at_ms = 1'796'000'000'123;
  std::string bytes;
  wal::encode_tagged_record(&bytes, "b", "k", 99, request, "1\n2\n3\n");
  wal::encode_request(&bytes, "bucket", request);
  CHECK(bytes.substr(0, 4) == "WALR");
  // payload: u16 3, "b/k", u64 offset, u8 13, the id, 16 + 4 + 8, the lines
  CHECK(wal::get_u32(bytes.data() + 8) == 2 + 3 + 8 + 1 + 13 + 28 + 6);
  wal::Reader reader(bytes);
  wal::Record r;
  REQUIRE(reader.next(&r));
  CHECK(r.kind == wal::Record::Kind::append);
  CHECK(r.id == "b/k");
  CHECK(r.offset == 99);
  CHECK(r.lines == "1\n2\n3\n");
  CHECK(r.request_id == "sensor-7/0042");
  CHECK(r.fingerprint == request.fingerprint);
  CHECK(r.items == 3);
  CHECK(r.stored_at_ms == request.stored_at_ms);
  REQUIRE(reader.next(&r));
  CHECK(r.kind == wal::Record::Kind::request);
  CHECK(r.id == "bucket");
  CHECK(r.request_id == "sensor-7/0042");
  CHECK(r.lines.empty());
  CHECK(r.items == 3);
  CHECK_FALSE(reader.next(&r));
  CHECK(reader.stop() == wal::Reader::Stop::end);
  // A record cut anywhere, or with its id length past the payload, is never returned.
  for (std::size_t cut = 1; cut < bytes.size(); ++cut) {
    wal::Reader torn(std::string_view(bytes).substr(0, cut));
    std::size_t n = 0;
    while (torn.next(&r)) ++n;
    CHECK(n == (cut < wal::encoded_size(3, 6) + 1 + 13 + 28 ? 0u : 1u));
  }
}
