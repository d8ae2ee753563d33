#include "wal_format.h"

#include <zlib.h>

#include <cstdio>

namespace writeapi::wal {
namespace {

void put_u32(std::string* out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
void put_u64(std::string* out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
std::uint64_t get_le(const char* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

// Fills in the payload length and checksum of the record starting at `start`.
void finish(std::string* out, std::size_t start) {
  const std::size_t payload = out->size() - start - kHeaderBytes;
  for (int i = 0; i < 4; ++i) (*out)[start + 8 + i] = static_cast<char>((payload >> (8 * i)) & 0xFF);
  uLong crc = crc32(0L, reinterpret_cast<const Bytef*>(out->data() + start + kHeaderBytes), static_cast<uInt>(payload));
  for (int i = 0; i < 4; ++i) (*out)[start + 4 + i] = static_cast<char>((crc >> (8 * i)) & 0xFF);
}

void begin(std::string* out, const char* magic) {
  out->append(magic, 4);
  put_u32(out, 0);  // crc, filled by finish()
  put_u32(out, 0);  // payload length, filled by finish()
}

void put_request(std::string* out, const RequestFields& request) {
  out->push_back(static_cast<char>(request.id.size()));
  out->append(request.id);
  out->append(reinterpret_cast<const char*>(request.fingerprint.data()), request.fingerprint.size());
  put_u32(out, request.items);
  put_u64(out, static_cast<std::uint64_t>(request.stored_at_ms));
}

// An append (with its request when `request` is set) or truncate record.
void encode_object_record(std::string* out, const char* magic, std::string_view bucket, std::string_view key,
                          std::uint64_t offset, const RequestFields* request, std::string_view lines) {
  const std::size_t id_length = bucket.size() + 1 + key.size();
  const std::size_t start = out->size();
  begin(out, magic);
  out->push_back(static_cast<char>(id_length & 0xFF));
  out->push_back(static_cast<char>(id_length >> 8));
  out->append(bucket).append("/").append(key);
  put_u64(out, offset);
  if (request != nullptr) put_request(out, *request);
  out->append(lines);
  finish(out, start);
}

}  // namespace

std::uint32_t get_u32(const char* p) { return static_cast<std::uint32_t>(get_le(p, 4)); }
std::uint64_t get_u64(const char* p) { return get_le(p, 8); }

void encode_record(std::string* out, std::string_view bucket, std::string_view key, std::uint64_t offset,
                   std::string_view lines) {
  encode_object_record(out, kRecordMagic, bucket, key, offset, nullptr, lines);
}

void encode_tagged_record(std::string* out, std::string_view bucket, std::string_view key, std::uint64_t offset,
                          const RequestFields& request, std::string_view lines) {
  encode_object_record(out, kTaggedMagic, bucket, key, offset, &request, lines);
}

void encode_request(std::string* out, std::string_view bucket, const RequestFields& request) {
  const std::size_t start = out->size();
  begin(out, kRequestMagic);
  out->push_back(static_cast<char>(bucket.size() & 0xFF));
  out->push_back(static_cast<char>(bucket.size() >> 8));
  out->append(bucket);
  put_request(out, request);
  finish(out, start);
}

void encode_truncate(std::string* out, std::string_view bucket, std::string_view key, std::uint64_t length) {
  encode_object_record(out, kTruncateMagic, bucket, key, length, nullptr, {});
}

void encode_limit(std::string* out, std::uint64_t sequence, std::uint64_t length) {
  const std::size_t start = out->size();
  begin(out, kLimitMagic);
  put_u64(out, sequence);
  put_u64(out, length);
  finish(out, start);
}

std::string segment_file_name(std::uint64_t sequence) {
  char name[32];
  std::snprintf(name, sizeof name, "%020llu.wal", static_cast<unsigned long long>(sequence));
  return name;
}

bool parse_segment_file_name(std::string_view name, std::uint64_t* sequence) {
  if (name.size() != 24 || name.substr(20) != ".wal") return false;
  std::uint64_t value = 0;
  for (char c : name.substr(0, 20)) {
    if (c < '0' || c > '9') return false;
    std::uint64_t digit = static_cast<std::uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return false;
    value = value * 10 + digit;
  }
  *sequence = value;
  return true;
}

}  // namespace writeapi::wal
