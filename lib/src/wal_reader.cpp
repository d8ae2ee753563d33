#include "wal_reader.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>

namespace writeapi::wal {

bool Reader::next(Record* record) {
  if (stop_ != Stop::none) return false;
  const std::size_t left = bytes_.size() - position_;
  const char* p = bytes_.data() + position_;
  if (left == 0) {
    stop_ = Stop::end;
    return false;
  }
  if (std::all_of(p, p + left, [](char c) { return c == '\0'; })) {
    stop_ = Stop::padding;
    return false;
  }
  Record::Kind kind = Record::Kind::append;
  bool tagged = false;  // an append with a request id
  const std::size_t magic_bytes = std::min<std::size_t>(left, 4);
  if (std::memcmp(p, kRecordMagic, magic_bytes) == 0)
    kind = Record::Kind::append;
  else if (std::memcmp(p, kTruncateMagic, magic_bytes) == 0)
    kind = Record::Kind::truncate;
  else if (std::memcmp(p, kLimitMagic, magic_bytes) == 0)
    kind = Record::Kind::limit;
  else if (std::memcmp(p, kTaggedMagic, magic_bytes) == 0)
    tagged = true;
  else if (std::memcmp(p, kRequestMagic, magic_bytes) == 0)
    kind = Record::Kind::request;
  else {
    stop_ = Stop::bad_magic;
    return false;
  }
  if (left < kHeaderBytes) {
    stop_ = Stop::torn;
    return false;
  }
  const std::uint32_t crc = get_u32(p + 4);
  const std::size_t payload = get_u32(p + 8);
  if (payload < kMinPayloadBytes) {
    stop_ = Stop::bad_length;
    return false;
  }
  if (left - kHeaderBytes < payload) {
    stop_ = Stop::torn;
    return false;
  }
  const char* body = p + kHeaderBytes;
  if (crc32(0L, reinterpret_cast<const Bytef*>(body), static_cast<uInt>(payload)) != crc) {
    stop_ = Stop::checksum_mismatch;
    return false;
  }
  *record = Record();
  record->kind = kind;
  if (kind == Record::Kind::limit) {
    if (payload != kLimitPayloadBytes) {
      stop_ = Stop::bad_length;
      return false;
    }
    record->segment = get_u64(body);
    record->offset = get_u64(body + 8);
  } else {
    const std::size_t id_length =
        static_cast<unsigned char>(body[0]) | (static_cast<std::size_t>(static_cast<unsigned char>(body[1])) << 8);
    // Where the request fields start (tagged appends and requests).
    std::size_t at = kind == Record::Kind::request ? 2 + id_length : 2 + id_length + 8;
    if (at > payload || (kind == Record::Kind::truncate && at != payload)) {
      stop_ = Stop::bad_length;
      return false;
    }
    record->id = std::string_view(body + 2, id_length);
    if (kind != Record::Kind::request) record->offset = get_u64(body + 2 + id_length);
    if (tagged || kind == Record::Kind::request) {
      const std::size_t request_length = at < payload ? static_cast<unsigned char>(body[at]) : 0;
      if (request_length == 0 || at + 1 + request_length + kRequestFixedBytes > payload ||
          (kind == Record::Kind::request && at + 1 + request_length + kRequestFixedBytes != payload)) {
        stop_ = Stop::bad_length;
        return false;
      }
      record->request_id = std::string_view(body + at + 1, request_length);
      at += 1 + request_length;
      std::memcpy(record->fingerprint.data(), body + at, record->fingerprint.size());
      record->items = get_u32(body + at + 16);
      record->stored_at_ms = static_cast<std::int64_t>(get_u64(body + at + 20));
      at += kRequestFixedBytes;
    }
    if (kind == Record::Kind::append) record->lines = std::string_view(body + at, payload - at);
  }
  position_ += kHeaderBytes + payload;
  return true;
}

const char* stop_name(Reader::Stop stop) {
  switch (stop) {
    case Reader::Stop::none:
      return "none";
    case Reader::Stop::end:
      return "end";
    case Reader::Stop::padding:
      return "padding";
    case Reader::Stop::torn:
      return "a torn record";
    case Reader::Stop::bad_magic:
      return "bytes that are not a record";
    case Reader::Stop::bad_length:
      return "a record with an impossible length";
    case Reader::Stop::checksum_mismatch:
      return "a checksum mismatch";
  }
  return "?";
}

Status replay_log(FileIo& io, const std::string& dir, const std::function<Status(const Record&)>& apply,
                  const std::function<void(std::string_view)>& log, ReplayResult* result) {
  result->segments.clear();
  result->records = 0;
  std::vector<std::string> names;
  if (io.list_directory(dir, &names) != 0) {
    if (errno == ENOENT) return Status();
    return Status(ErrorCode::storage_error, "cannot list log directory " + dir + ": " + std::strerror(errno));
  }
  for (const std::string& name : names) {
    std::uint64_t sequence;
    if (parse_segment_file_name(name, &sequence)) result->segments.push_back(sequence);
  }
  std::sort(result->segments.begin(), result->segments.end());
  // Pass 1: limit records (written after a failed group, in a later
  // segment) void the refused records of an earlier segment.
  std::map<std::uint64_t, std::uint64_t> limits;
  std::string contents;
  for (std::uint64_t sequence : result->segments) {
    const std::string path = dir + "/" + segment_file_name(sequence);
    if (io.read_file(path, &contents) != 0)
      return Status(ErrorCode::storage_error, "cannot read log segment " + path + ": " + std::strerror(errno));
    Reader reader(contents);
    Record record;
    while (reader.next(&record)) {
      if (record.kind != Record::Kind::limit) continue;
      auto [it, inserted] = limits.emplace(record.segment, record.offset);
      if (!inserted) it->second = std::min(it->second, record.offset);
    }
  }
  // Pass 2: apply.
  for (std::uint64_t sequence : result->segments) {
    const std::string path = dir + "/" + segment_file_name(sequence);
    if (io.read_file(path, &contents) != 0)
      return Status(ErrorCode::storage_error, "cannot read log segment " + path + ": " + std::strerror(errno));
    auto limit = limits.find(sequence);
    const std::uint64_t end = limit == limits.end() ? UINT64_MAX : limit->second;
    Reader reader(contents);
    Record record;
    bool limited = false;
    for (;;) {
      const std::size_t start = reader.valid_bytes();
      if (!reader.next(&record)) break;
      if (start >= end) {
        limited = true;
        break;
      }
      if (record.kind == Record::Kind::limit || record.kind == Record::Kind::request) continue;
      if (Status s = apply(record); !s.ok()) return s;
      ++result->records;
    }
    if (limited)
      log("log segment " + std::to_string(sequence) + ": ignoring records from byte " + std::to_string(end) +
          " on, refused after a failed sync");
    else if (reader.stop() != Reader::Stop::end && reader.stop() != Reader::Stop::padding)
      log("log segment " + std::to_string(sequence) + ": ignoring " +
          std::to_string(contents.size() - reader.valid_bytes()) + " bytes from " + stop_name(reader.stop()) +
          " after the last complete record");
  }
  return Status();
}

}  // namespace writeapi::wal
