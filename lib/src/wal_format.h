// The write-ahead log's on-disk layout, shared by the writer (wal_writer.h)
// and the reader (wal_reader.h). docs/WAL_FORMAT.md describes it byte by
// byte; change both together.
//
// A log is a directory of segments named <sequence>.wal (20 decimal digits,
// zero padded, so names sort as numbers). A segment is a sequence of
// records, then anything (segments are preallocated: usually zeros):
//
//   offset  size  field
//   0       4     magic: "WAL1" (append), "WALR" (append with a request id),
//                 "WALT" (truncate), "WALS" (segment limit), "WALQ" (request id)
//   4       4     CRC-32 (zlib's crc32) of the payload, little endian
//   8       4     payload length in bytes, little endian
//   12      n     payload, by kind (integers little endian):
//                   append:   u16 id length, id "bucket/key", u64 offset of
//                             the lines in the object, the lines
//                   append with a request id: u16 id length, id, u64
//                             offset, then the request (u8 length, request
//                             id, 16-byte fingerprint, u32 item count, u64
//                             milliseconds since the Unix epoch when
//                             logged), then the lines
//                   request:  u16 bucket length, bucket, then the request as
//                             above (only in the request-id file, never in a
//                             segment)
//                   truncate: u16 id length, id, u64 length the object is
//                             cut back to (refused lines removed)
//                   limit:    u64 sequence of an earlier segment, u64 length:
//                             that segment's records from this byte on were
//                             refused and must not be replayed
//
// Thread-safety: everything here is a pure function.
#ifndef WRITEAPI_SRC_WAL_FORMAT_H_
#define WRITEAPI_SRC_WAL_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>

#include "writeapi/ingest.h"
#include "writeapi/parse.h"
#include "writeapi/storage.h"

namespace writeapi::wal {

inline constexpr char kRecordMagic[4] = {'W', 'A', 'L', '1'};    // append
inline constexpr char kTruncateMagic[4] = {'W', 'A', 'L', 'T'};  // truncate
inline constexpr char kLimitMagic[4] = {'W', 'A', 'L', 'S'};     // segment limit
inline constexpr char kTaggedMagic[4] = {'W', 'A', 'L', 'R'};    // append with a request id
inline constexpr char kRequestMagic[4] = {'W', 'A', 'L', 'Q'};   // request id (request-id file)
inline constexpr std::size_t kLimitPayloadBytes = 16;
inline constexpr std::size_t kHeaderBytes = 12;
// Payload before the lines: the id length, the shortest id ("b/k" is 3
// bytes but the reader only requires the fields), the offset.
inline constexpr std::size_t kMinPayloadBytes = 2 + 8;
inline constexpr std::size_t kMaxIdBytes = 0xFFFF;
inline constexpr std::uint64_t kMaxPayloadBytes = 0xFFFFFFFFull;

// One record as the log holds it. The views point into the segment's bytes.
struct Record {
  enum class Kind { append, truncate, limit, request };
  Kind kind = Kind::append;
  std::string_view id;        // "bucket/key" (append, truncate); the bucket (request)
  std::uint64_t offset = 0;   // append: where the lines start; truncate:
                              // the object's new length; limit: the byte
                              // of `segment` from which records are void
  std::string_view lines;     // append
  std::uint64_t segment = 0;  // limit
  // append with a request id, and request:
  std::string_view request_id;  // empty: none
  RequestFingerprint fingerprint{};
  std::uint32_t items = 0;
  std::int64_t stored_at_ms = 0;  // milliseconds since the Unix epoch
};

// A request id as a log record carries it (RequestTag plus what the log adds).
struct RequestFields {
  std::string_view id;  // 1 to kMaxRequestIdBytes bytes
  RequestFingerprint fingerprint{};
  std::uint32_t items = 0;
  std::int64_t stored_at_ms = 0;
};
// Bytes of a request's fields after the u8 length and the id.
inline constexpr std::size_t kRequestFixedBytes = 16 + 4 + 8;
static_assert(kMaxRequestIdBytes <= 0xFF, "the request id length is one byte");
static_assert(kMaxBodyBytesLimit / 2 <= std::numeric_limits<std::uint32_t>::max(),
              "an item is at least two bytes of lines: the count fits 32 bits");

// Bytes a record of these fields takes in a segment.
constexpr std::size_t encoded_size(std::size_t id_bytes, std::size_t line_bytes) {
  return kHeaderBytes + 2 + id_bytes + 8 + line_bytes;
}

// Appends the record for (bucket "/" key, offset, lines) to *out.
// Preconditions: the id fits kMaxIdBytes and the payload kMaxPayloadBytes.
void encode_record(std::string* out, std::string_view bucket, std::string_view key, std::uint64_t offset,
                   std::string_view lines);

// The same with a request id (request.id not empty): a "WALR" record.
void encode_tagged_record(std::string* out, std::string_view bucket, std::string_view key, std::uint64_t offset,
                          const RequestFields& request, std::string_view lines);
// Appends a request record (the request-id file's only kind).
void encode_request(std::string* out, std::string_view bucket, const RequestFields& request);

// Appends a truncate record: object bucket/key is cut back to `length`.
void encode_truncate(std::string* out, std::string_view bucket, std::string_view key, std::uint64_t length);
// Appends a limit record: records of segment `sequence` at or after byte
// `length` were refused.
void encode_limit(std::string* out, std::uint64_t sequence, std::uint64_t length);

// "00000000000000000042.wal" for 42.
std::string segment_file_name(std::uint64_t sequence);
// True (and *sequence set) for a name segment_file_name produces.
bool parse_segment_file_name(std::string_view name, std::uint64_t* sequence);

std::uint32_t get_u32(const char* p);
std::uint64_t get_u64(const char* p);

}  // namespace writeapi::wal

#endif  // WRITEAPI_SRC_WAL_FORMAT_H_
