// fuzz_ingest: the whole write step (writeapi::Ingestor) with every input
// a client controls carved from the fuzz input, against MemoryStorage.
//
// Input layout (fields as FuzzedDataProvider's ConsumeRandomLengthString
// takes them: a field ends at a backslash followed by any byte other than a
// backslash, "\\" is one backslash), so seeds are readable text:
//   mode\<newline>bucket\<newline>key\<newline>content-type\<newline>
//   content-encoding\<newline>body...
// mode letters: 'z' the harness gzips the body, 'd' it zlib-compresses it
// (otherwise the body bytes are sent as they are, compressed or not);
// 's' a 100-byte body limit; 'D' a parse depth limit of 3; 't' the bucket
// field is a request target ("/write/v3/bucket/b/k?q") split and
// percent-decoded by parse_write_target, as the server does, and key is
// unused.
//
// The oracle:
//   - The object (bucket, key) holds one line before the request.
//   - ok => the object is that line followed by exactly the lines parse()
//     makes of the (decompressed) body, nothing else is stored, and the
//     result reports those items and bytes; the names are valid
//     (independent check), the content type is JSON, the key is the
//     bucket's.
//   - any error => storage is unchanged, and the message never contains
//     the access key.
//   - whenever the harness can predict it (all but raw compressed bodies),
//     the status code is the one the documented order of checks gives:
//     media type, encoding, size (after inflation), names, parse, key.
#include <zlib.h>

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "oracle.h"
#include "writeapi/auth.h"
#include "writeapi/ingest.h"
#include "writeapi/names.h"
#include "writeapi/parse.h"
#include "writeapi/storage.h"

#define EXPECT(condition, detail) WRITEAPI_FUZZ_EXPECT("fuzz_ingest", condition, detail)

namespace {

using writeapi::ErrorCode;
using writeapi::Status;
using writeapi::fuzz::escaped;

constexpr std::size_t kMaxInput = 1 << 20;
constexpr std::string_view kHomelabKey = "k-homelab-secret";
constexpr std::string_view kOtherKey = "k-other-secret";

// Fixed keys: "homelab" opens with kHomelabKey, "otherlab" with kOtherKey.
class FixedAuthorizer final : public writeapi::Authorizer {
 public:
  Status authorize(std::string_view bucket, std::string_view access_key, std::string* key_id) const override {
    if ((bucket == "homelab" && access_key == kHomelabKey) || (bucket == "otherlab" && access_key == kOtherKey)) {
      if (key_id) *key_id = std::string(bucket) + "-key";
      return Status();
    }
    return Status(ErrorCode::access_denied, "wrong access key");
  }
};

// The next field of *input (see the layout above), at most `max` bytes.
std::string take_field(std::string_view* input, std::size_t max) {
  std::string field;
  while (field.size() < max && !input->empty()) {
    char c = input->front();
    input->remove_prefix(1);
    if (c == '\\' && !input->empty()) {
      c = input->front();
      input->remove_prefix(1);
      if (c != '\\') break;
    }
    field.push_back(c);
  }
  return field;
}

bool key_opens(std::string_view bucket, std::string_view access_key) {
  return FixedAuthorizer().authorize(bucket, access_key, nullptr).ok();
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool json_media_type(std::string_view content_type) {
  return lower(trim(content_type.substr(0, content_type.find(';')))) == "application/json";
}

enum class Encoding { identity, compressed, unsupported };
Encoding encoding_of(std::string_view header) {
  std::string e = lower(trim(header));
  if (e.empty() || e == "identity") return Encoding::identity;
  if (e == "gzip" || e == "x-gzip" || e == "deflate") return Encoding::compressed;
  return Encoding::unsupported;
}

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 128 || name[0] == '.') return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) return false;
  return true;
}

std::string compress(std::string_view data, int window_bits, int level) {
  z_stream stream{};
  if (deflateInit2(&stream, level, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) != Z_OK) std::abort();
  std::string out(deflateBound(&stream, data.size()) + 64, '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  if (deflate(&stream, Z_FINISH) != Z_STREAM_END) std::abort();
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return out;
}

// Inflates a whole gzip or zlib stream with nothing after it, up to
// `limit` bytes; nullopt when it is not one.
std::optional<std::string> inflate_all(std::string_view data, std::size_t limit) {
  z_stream stream{};
  if (inflateInit2(&stream, 15 + 32) != Z_OK) std::abort();
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  std::string out;
  char chunk[16384];
  int rc;
  do {
    stream.next_out = reinterpret_cast<Bytef*>(chunk);
    stream.avail_out = sizeof chunk;
    rc = inflate(&stream, Z_NO_FLUSH);
    out.append(chunk, sizeof chunk - stream.avail_out);
  } while (rc == Z_OK && out.size() <= limit && !(stream.avail_in == 0 && stream.avail_out != 0));
  bool whole = rc == Z_STREAM_END && stream.avail_in == 0;
  inflateEnd(&stream);
  if (!whole || out.size() > limit) return std::nullopt;
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size > kMaxInput) return 0;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::string mode = take_field(&input, 16);
  std::string bucket = take_field(&input, 300);
  std::string key = take_field(&input, 300);
  const std::string content_type = take_field(&input, 100);
  const std::string content_encoding = take_field(&input, 100);
  const std::string original_body(input);

  const bool harness_gzip = mode.find('z') != std::string::npos;
  const bool harness_zlib = !harness_gzip && mode.find('d') != std::string::npos;
  std::string body = original_body;
  if (harness_gzip) body = compress(original_body, 16 + 15, static_cast<int>(size % 10));
  if (harness_zlib) body = compress(original_body, 15, static_cast<int>(size % 10));

  writeapi::IngestOptions options;
  if (mode.find('s') != std::string::npos) options.max_body_bytes = 100;
  if (mode.find('D') != std::string::npos) options.parse.max_depth = 3;

  std::string context = "mode " + escaped(mode) + "\nbucket " + escaped(bucket) + "\nkey " + escaped(key) +
                        "\ncontent-type " + escaped(content_type) + "\ncontent-encoding " + escaped(content_encoding) +
                        "\nbody " + escaped(original_body) + "\n";

  // Path tricks: the target as the server receives it.
  if (mode.find('t') != std::string::npos) {
    const std::string target = bucket;
    Status s = writeapi::parse_write_target(target, &bucket, &key);
    context += "target split into " + escaped(bucket) + " / " + escaped(key) + ": " + std::string(s.name()) + "\n";
    if (!s.ok()) {
      EXPECT(s.code() == ErrorCode::not_found || s.code() == ErrorCode::invalid_name, context);
      return 0;
    }
    // Whatever the encoding, a target yields names that stay inside the
    // data directory.
    EXPECT(valid_name(bucket) && valid_name(key), context);
    EXPECT(target.rfind(std::string(writeapi::kWritePathPrefix), 0) == 0, context);
  }

  FixedAuthorizer authorizer;
  std::unique_ptr<writeapi::Storage> storage = writeapi::make_memory_storage();
  const std::string kPrefill = "0\n";
  writeapi::AppendBatch prefill;
  prefill.bucket = bucket;
  prefill.key = key;
  prefill.lines = kPrefill;
  prefill.item_count = 1;
  EXPECT(storage->append(prefill).ok(), context);
  writeapi::Ingestor ingestor(&authorizer, storage.get(), options);

  writeapi::IngestRequest request;
  request.bucket = bucket;
  request.key = key;
  request.content_type = content_type;
  request.content_encoding = content_encoding;
  request.body = body;
  writeapi::IngestResult result;
  const Status status = ingestor.ingest(request, &result);
  context += "ingest: " + std::string(status.name()) + " (" + status.message() + ")\n";

  // What the body is after inflation, when the harness can know it.
  const Encoding encoding = encoding_of(content_encoding);
  std::optional<std::string> plain;
  if (encoding == Encoding::identity) {
    plain = body;
  } else if (encoding == Encoding::compressed) {
    if (harness_gzip || harness_zlib)
      plain = original_body;
    else
      plain = inflate_all(body, options.max_body_bytes);
  }

  std::vector<std::string> keys;
  EXPECT(storage->list_keys(bucket, &keys).ok(), context);
  const writeapi::StorageStats stats = storage->stats();
  std::string stored;
  EXPECT(storage->read_object(bucket, key, &stored).ok(), context);

  if (!status.ok()) {
    EXPECT(status.http_status() >= 400 && !status.message().empty(), context);
    EXPECT(keys.size() == 1 && keys[0] == key && stats.appends == 1 && stats.bytes_written == kPrefill.size() &&
               stored == kPrefill,
           context + "storage changed: " + escaped(stored));
    EXPECT(result.items == 0 && result.bytes_stored == 0, context);
    EXPECT(status.message().find(kHomelabKey) == std::string::npos &&
               status.message().find(kOtherKey) == std::string::npos,
           context + "the message shows an access key");
  } else {
    EXPECT(json_media_type(content_type), context);
    EXPECT(encoding != Encoding::unsupported, context);
    EXPECT(valid_name(bucket) && valid_name(key), context);
    // A raw compressed body that ingest accepted must be a whole stream.
    EXPECT(plain.has_value(), context + "accepted a body the reference cannot inflate");
    EXPECT(plain->size() <= options.max_body_bytes, context);
    writeapi::ParsedRequest parsed;
    EXPECT(writeapi::parse(*plain, &parsed, options.parse).ok(), context);
    EXPECT(key_opens(bucket, parsed.access_key), context);
    EXPECT(result.items == parsed.item_count && result.bytes_stored == parsed.lines.size(), context);
    EXPECT(result.device_id == parsed.device_id, context);
    EXPECT(stored == kPrefill + parsed.lines,
           context + "stored " + escaped(stored) + "\nexpected " + escaped(kPrefill + parsed.lines));
    EXPECT(keys.size() == 1 && keys[0] == key, context);
    EXPECT(stats.appends == (parsed.item_count == 0 ? 1u : 2u), context);
    EXPECT(stats.bytes_written == kPrefill.size() + parsed.lines.size(), context);
  }

  // The exact code, in the documented order of checks.
  if (!plain && encoding == Encoding::compressed) return 0;  // raw compressed bytes: only the above
  ErrorCode expected = ErrorCode::ok;
  writeapi::ParsedRequest parsed;
  if (!json_media_type(content_type)) {
    expected = ErrorCode::unsupported_media_type;
  } else if (encoding == Encoding::unsupported) {
    expected = ErrorCode::unsupported_encoding;
  } else if (plain->size() > options.max_body_bytes) {
    expected = ErrorCode::payload_too_large;
  } else if (!valid_name(bucket) || !valid_name(key)) {
    expected = ErrorCode::invalid_name;
  } else if (Status p = writeapi::parse(*plain, &parsed, options.parse); !p.ok()) {
    expected = p.code();
  } else if (!key_opens(bucket, parsed.access_key)) {
    expected = ErrorCode::access_denied;
  }
  EXPECT(status.code() == expected, context + "expected " + std::string(writeapi::error_name(expected)));
  return 0;
}
