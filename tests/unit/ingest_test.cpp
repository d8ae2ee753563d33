// Ingestor: content checks, gzip, names, parsing, authorization and storage
// wired together; nothing is stored unless every check passed.
#include <zlib.h>
#include <catch2/catch.hpp>

#include <stdlib.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "api_document.h"
#include "gzip.h"
#include "temp_dir.h"
#include "writeapi/auth.h"
#include "writeapi/ingest.h"
#include "writeapi/limits.h"
#include "writeapi/storage.h"

using writeapi::ErrorCode;
using writeapi::IngestOptions;
using writeapi::Ingestor;
using writeapi::IngestRequest;
using writeapi::IngestResult;
using writeapi::Status;
using writeapi::Storage;
using writeapi::testing::TempDir;

namespace {

const std::string kDocKey(writeapi::testing::kAccessKey);
const std::string& kDocBody = writeapi::testing::kDocumentBody;
const std::string& kDocLine = writeapi::testing::kDocumentLine;

// gzip-compresses `data` at zlib's default level (or `level`).
std::string gzip(std::string_view data, int level = Z_DEFAULT_COMPRESSION) {
  return writeapi::testing::gzip_compress(data, 16 + 15, level);
}

// Delegates to a MemoryStorage, or fails every append with `fail`.
class FaultyStorage : public Storage {
 public:
  explicit FaultyStorage(Status fail) : inner_(writeapi::make_memory_storage()), fail_(std::move(fail)) {}
  Status append(const writeapi::AppendBatch& batch) override {
    calls++;
    if (!fail_.ok()) return fail_;
    return inner_->append(batch);
  }
  Status list_keys(std::string_view bucket, std::vector<std::string>* keys) override {
    return inner_->list_keys(bucket, keys);
  }
  Status read_object(std::string_view bucket, std::string_view key, std::string* contents) override {
    return inner_->read_object(bucket, key, contents);
  }
  writeapi::StorageStats stats() const override { return inner_->stats(); }

  std::atomic<int> calls{0};

 private:
  std::unique_ptr<Storage> inner_;
  Status fail_;
};

// A keys file with bucket "homelab" opened by the document's key (k1) and
// bucket "garden" opened by "garden-key" (g1); a memory store.
struct Env {
  TempDir dir;
  std::unique_ptr<writeapi::KeysFileAuthorizer> auth;
  std::unique_ptr<Storage> storage = writeapi::make_memory_storage();

  Env() {
    const std::string path = dir.path() + "/keys.json";
    std::ofstream out(path);
    out << R"({"buckets":{"homelab":{"keys":[{"id":"k1","sha256":")" << writeapi::sha256_hex(kDocKey)
        << R"(","label":"x"}]},"garden":{"keys":[{"id":"g1","sha256":")" << writeapi::sha256_hex("garden-key")
        << R"("}]}}})";
    out.close();
    Status status;
    auth = writeapi::make_keys_file_authorizer(path, &status);
    INFO(status.message());
    REQUIRE(auth != nullptr);
  }

  std::string object(std::string_view bucket, std::string_view key) {
    std::string contents;
    REQUIRE(storage->read_object(bucket, key, &contents).ok());
    return contents;
  }
  // True when nothing at all was stored in the buckets used by the tests.
  bool nothing_stored() {
    for (const char* bucket : {"homelab", "garden", "Homelab", "other"}) {
      std::vector<std::string> keys;
      REQUIRE(storage->list_keys(bucket, &keys).ok());
      if (!keys.empty()) return false;
    }
    return storage->stats().appends == 0;
  }
};

IngestRequest request(std::string_view body, std::string_view bucket = "homelab",
                      std::string_view key = "outdoors_temp1", std::string_view content_type = "application/json",
                      std::string_view content_encoding = {}) {
  IngestRequest r;
  r.bucket = bucket;
  r.key = key;
  r.content_type = content_type;
  r.content_encoding = content_encoding;
  r.body = body;
  return r;
}

std::string body_with(std::string_view data, std::string_view key = kDocKey) {
  return R"({"accessKey":")" + std::string(key) + R"(","data":)" + std::string(data) + "}";
}

}  // namespace

TEST_CASE("ingest: the API document's example is stored as one line", "[ingest]") {
  Env env;
  Ingestor ingestor(env.auth.get(), env.storage.get());
  IngestResult result;
  Status s = ingestor.ingest(request(kDocBody), &result);
  INFO(s.name() << ": " << s.message());
  REQUIRE(s.ok());
  CHECK(s.http_status() == 200);
  CHECK(result.items == 1);
  CHECK(result.bytes_stored == kDocLine.size());
  CHECK(result.device_id == "outdoors_u871a");
  CHECK(env.object("homelab", "outdoors_temp1") == kDocLine);

  // The same request again appends a second line.
  REQUIRE(ingestor.ingest(request(kDocBody), &result).ok());
  CHECK(env.object("homelab", "outdoors_temp1") == kDocLine + kDocLine);
}

TEST_CASE("ingest: data arrays become one line per item", "[ingest]") {
  Env env;
  Ingestor ingestor(env.auth.get(), env.storage.get());
  IngestResult result;
  REQUIRE(ingestor.ingest(request(body_with(R"([1, {"a" : 2}, "x"])")), &result).ok());
  CHECK(result.items == 3);
  CHECK(result.bytes_stored == 14);  // "1\n" + "{\"a\":2}\n" + "\"x\"\n"
  CHECK(result.device_id.empty());
  CHECK(env.object("homelab", "outdoors_temp1") == "1\n{\"a\":2}\n\"x\"\n");
}

TEST_CASE("ingest: an empty data array stores nothing and succeeds", "[ingest]") {
  Env env;
  Ingestor ingestor(env.auth.get(), env.storage.get());
  IngestResult result;
  REQUIRE(ingestor.ingest(request(body_with("[]")), &result).ok());
  CHECK(result.items == 0);
  CHECK(result.bytes_stored == 0);
  CHECK(env.nothing_stored());
}

TEST_CASE("ingest: accepted content types", "[ingest]") {
  for (const char* type : {"application/json", "application/json; charset=utf-8", "Application/JSON",
                           "APPLICATION/JSON;charset=UTF-8", "application/json;charset=utf-8"}) {
    INFO("Content-Type: " << type);
    CHECK(writeapi::check_content_type(type).ok());
    Env env;
    Ingestor ingestor(env.auth.get(), env.storage.get());
    IngestResult result;
    CHECK(ingestor.ingest(request(kDocBody, "homelab", "k", type), &result).ok());
    CHECK(env.object("homelab", "k") == kDocLine);
  }
}

TEST_CASE("ingest: other content types are unsupported_media_type", "[ingest]") {
  for (const char* type :
       {"", "text/plain", "application/x-www-form-urlencoded", "application/jsonp", "application/json-seq", "json",
        "application/", "text/json", "multipart/form-data", "application/xjson"}) {
    INFO("Content-Type: '" << type << "'");
    Status direct = writeapi::check_content_type(type);
    CHECK(direct.code() == ErrorCode::unsupported_media_type);
    CHECK(direct.http_status() == 415);
    Env env;
    Ingestor ingestor(env.auth.get(), env.storage.get());
    IngestResult result;
    Status s = ingestor.ingest(request(kDocBody, "homelab", "k", type), &result);
    CHECK(s.code() == ErrorCode::unsupported_media_type);
    CHECK(env.nothing_stored());
  }
}

TEST_CASE("ingest: a missing Content-Type is named in the message", "[ingest]") {
  Env env;
  Ingestor ingestor(env.auth.get(), env.storage.get());
  IngestResult result;
  Status s = ingestor.ingest(request(kDocBody, "homelab", "k", ""), &result);
  CHECK(s.code() == ErrorCode::unsupported_media_type);
  CHECK(s.message().find("Content-Type") != std::string::npos);
  CHECK(env.nothing_stored());
}

TEST_CASE("ingest: a gzip body is inflated and stored", "[ingest]") {
  Env env;
  Ingestor ingestor(env.auth.get(), env.storage.get());
  IngestResult result;
  const std::string compressed = gzip(kDocBody);
  REQUIRE(compressed.substr(0, 2) == "\x1f\x8b");
  Status s = ingestor.ingest(request(compressed, "homelab", "k", "application/json", "gzip"), &result);
  INFO(s.name() << ": " << s.message());
  REQUIRE(s.ok());
  CHECK(result.items == 1);
  CHECK(result.device_id == "outdoors_u871a");
  CHECK(env.object("homelab", "k") == kDocLine);
}

TEST_CASE("ingest: a larger gzip body spanning many inflate chunks", "[ingest]") {
  Env env;
  Ingestor ingestor(env.auth.get(), env.storage.get());
  std::string data = "[";
  std::string expected;
  for (int i = 0; i < 20000; ++i) {
    std::string item = "{\"i\":" + std::to_string(i) + ",\"v\":\"value number " + std::to_string(i * 7) + "\"}";
    data += (i ? "," : "") + item;
    expected += item + "\n";
  }
  data += "]";
  const std::string body = body_with(data);
  REQUIRE(body.size() > 200000);
  IngestResult result;
  REQUIRE(ingestor.ingest(request(gzip(body), "homelab", "big", "application/json", "gzip"), &result).ok());
  CHECK(result.items == 20000);
  bool exact = env.object("homelab", "big") == expected;
  CHECK(exact);
}

TEST_CASE("ingest: identity encoding is accepted", "[ingest]") {
  Env env;
  Ingestor ingestor(env.auth.get(), env.storage.get());
  IngestResult result;
  CHECK(ingestor.ingest(request(kDocBody, "homelab", "k", "application/json", "identity"), &result).ok());
  CHECK(env.object("homelab", "k") == kDocLine);
}

// zlib-compresses `data` (windowBits 15 = zlib wrapper, HTTP "deflate").
std::string zlib_deflate(std::string_view data) {
  z_stream stream{};
  REQUIRE(deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&stream, static_cast<uLong>(data.size())) + 64, '\0');
  stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  stream.avail_in = static_cast<uInt>(data.size());
  stream.next_out = reinterpret_cast<Bytef*>(out.data());
  stream.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&stream, Z_FINISH) == Z_STREAM_END);
  out.resize(stream.total_out);
  deflateEnd(&stream);
  return out;
}

TEST_CASE("ingest: x-gzip and deflate (zlib) bodies are inflated", "[ingest]") {
  Env env;
  Ingestor ingestor(env.auth.get(), env.storage.get());
  IngestResult result;
  REQUIRE(ingestor.ingest(request(gzip(kDocBody), "homelab", "k", "application/json", "x-gzip"), &result).ok());
  REQUIRE(
      ingestor.ingest(request(zlib_deflate(kDocBody), "homelab", "k", "application/json", "deflate"), &result).ok());
  CHECK(result.items == 1);
  CHECK(env.object("homelab", "k") == kDocLine + kDocLine);
  // A deflate bomb is refused like a gzip one.
  Status s = ingestor.ingest(
      request(zlib_deflate(std::string(20 * 1024 * 1024, ' ')), "homelab", "k", "application/json", "deflate"),
      &result);
  CHECK(s.code() == ErrorCode::payload_too_large);
  CHECK(env.object("homelab", "k") == kDocLine + kDocLine);
}

TEST_CASE("ingest: other content encodings are unsupported_encoding", "[ingest]") {
  // ingest.h accepts identity, gzip, x-gzip and deflate (zlib); nothing else.
  for (const char* encoding : {"br", "compress", "zstd", "gzip, br", "bogus", "x-compress", "*"}) {
    INFO("Content-Encoding: " << encoding);
    Env env;
    Ingestor ingestor(env.auth.get(), env.storage.get());
    IngestResult result;
    // The body is gzip: it must not be inflated under another name either.
    Status s = ingestor.ingest(request(gzip(kDocBody), "homelab", "k", "application/json", encoding), &result);
    CHECK(s.code() == ErrorCode::unsupported_encoding);
    CHECK(s.http_status() == 415);
    Status plain = ingestor.ingest(request(kDocBody, "homelab", "k", "application/json", encoding), &result);
    CHECK(plain.code() == ErrorCode::unsupported_encoding);
    CHECK(env.nothing_stored());
  }
}

TEST_CASE("ingest: corrupt gzip is bad_request", "[ingest]") {
  const std::string good = gzip(kDocBody);
  std::string flipped = good;
  flipped[good.size() / 2] = static_cast<char>(flipped[good.size() / 2] ^ 0x55);
  std::string bad_crc = good;
  bad_crc[good.size() - 6] = static_cast<char>(bad_crc[good.size() - 6] ^ 0xff);  // CRC32 trailer
  const std::string cases[] = {
      "this is not gzip at all",
      kDocBody,                         // plain JSON labelled gzip
      good.substr(0, good.size() / 2),  // truncated
      good.substr(0, good.size() - 4),  // trailer cut
      flipped,
      bad_crc,
      std::string("\x1f\x8b", 2),
      std::string(),
  };
  int i = 0;
  for (const std::string& body : cases) {
    INFO("case " << i++);
    Env env;
    Ingestor ingestor(env.auth.get(), env.storage.get());
    IngestResult result;
    Status s = ingestor.ingest(request(body, "homelab", "k", "application/json", "gzip"), &result);
    CHECK(s.code() == ErrorCode::bad_request);
    CHECK(s.http_status() == 400);
    CHECK(env.nothing_stored());
  }
}

TEST_CASE("ingest: a gzip bomb is payload_too_large and stores nothing", "[ingest]") {
  Env env;
  Ingestor ingestor(env.auth.get(), env.storage.get());
  const std::string bomb = gzip(std::string(50 * 1024 * 1024, '\0'), 9);
  REQUIRE(bomb.size() < 1024 * 1024);
  IngestResult result;
  Status s = ingestor.ingest(request(bomb, "homelab", "k", "application/json", "gzip"), &result);
  CHECK(s.code() == ErrorCode::payload_too_large);
  CHECK(s.http_status() == 413);
  CHECK(env.nothing_stored());

  // A bomb of valid JSON (one huge string) is refused the same way.
  std::string json = body_with("\"" + std::string(11 * 1024 * 1024, 'a') + "\"");
  s = ingestor.ingest(request(gzip(json, 1), "homelab", "k", "application/json", "gzip"), &result);
  CHECK(s.code() == ErrorCode::payload_too_large);
  CHECK(env.nothing_stored());
}

TEST_CASE("gunzip: limit on the inflated size", "[ingest]") {
  const std::string text = std::string(100000, 'z') + "end";
  const std::string compressed = gzip(text);
  std::string out;
  REQUIRE(writeapi::gunzip(compressed, text.size(), &out).ok());
  CHECK(out == text);
  CHECK(writeapi::gunzip(compressed, text.size() - 1, &out).code() == ErrorCode::payload_too_large);
  CHECK(writeapi::gunzip("garbage", 1000, &out).code() == ErrorCode::bad_request);
  // Sizes around internal buffer boundaries inflate exactly.
  for (std::size_t size : {0, 1, 65535, 65536, 65537, 131072, 1000000}) {
    INFO("size " << size);
    std::string data(size, '\0');
    for (std::size_t i = 0; i < size; ++i) data[i] = static_cast<char>('a' + (i * 31 + i / 7) % 26);
    std::string inflated = "stale";
    REQUIRE(writeapi::gunzip(gzip(data), size, &inflated).ok());
    bool exact = inflated == data;
    CHECK(exact);
    if (size > 0) CHECK(writeapi::gunzip(gzip(data), size - 1, &inflated).code() == ErrorCode::payload_too_large);
  }
}

TEST_CASE("ingest: bodies over max_body_bytes are payload_too_large", "[ingest]") {
  Env env;
  IngestOptions options;
  CHECK(options.max_body_bytes == 10u * 1024 * 1024);
  options.max_body_bytes = kDocBody.size();
  Ingestor ingestor(env.auth.get(), env.storage.get(), options);
  CHECK(ingestor.options().max_body_bytes == kDocBody.size());
  IngestResult result;
  // One byte over the limit.
  Status s = ingestor.ingest(request(kDocBody + " "), &result);
  CHECK(s.code() == ErrorCode::payload_too_large);
  CHECK(env.nothing_stored());
  // Over the limit after inflating, though small compressed.
  s = ingestor.ingest(request(gzip(kDocBody + " "), "homelab", "outdoors_temp1", "application/json", "gzip"), &result);
  CHECK(s.code() == ErrorCode::payload_too_large);
  CHECK(env.nothing_stored());
  // Exactly at the limit is fine, plain or gzip.
  REQUIRE(ingestor.ingest(request(kDocBody), &result).ok());
  REQUIRE(
      ingestor.ingest(request(gzip(kDocBody), "homelab", "outdoors_temp1", "application/json", "gzip"), &result).ok());
  CHECK(env.object("homelab", "outdoors_temp1") == kDocLine + kDocLine);
}

TEST_CASE("ingest: the default limit accepts a body of 10 MiB", "[ingest]") {
  Env env;
  Ingestor ingestor(env.auth.get(), env.storage.get());
  const std::string prefix = R"({"accessKey":")" + kDocKey + R"(","data":")";
  const std::size_t limit = writeapi::kDefaultMaxBodyBytes;
  std::string body = prefix + std::string(limit - prefix.size() - 2, 'q') + "\"}";
  REQUIRE(body.size() == limit);
  IngestResult result;
  REQUIRE(ingestor.ingest(request(body, "homelab", "big"), &result).ok());
  CHECK(result.items == 1);
  CHECK(env.object("homelab", "big").size() == limit - prefix.size() - 2 + 3);
  body.insert(prefix.size(), "q");
  CHECK(ingestor.ingest(request(body, "homelab", "big2"), &result).code() == ErrorCode::payload_too_large);
}

TEST_CASE("ingest: invalid bucket or key names are invalid_name", "[ingest]") {
  const std::pair<const char*, const char*> targets[] = {
      {"..", "k"},     {"homelab", ".."},      {"homelab", "a/b"}, {"", "k"},
      {"homelab", ""}, {"homelab", ".hidden"}, {"home lab", "k"},  {"homelab", "\xc3\xa4"}};
  for (const auto& [bucket, key] : targets) {
    INFO("bucket '" << bucket << "' key '" << key << "'");
    Env env;
    Ingestor ingestor(env.auth.get(), env.storage.get());
    IngestResult result;
    Status s = ingestor.ingest(request(kDocBody, bucket, key), &result);
    CHECK(s.code() == ErrorCode::invalid_name);
    CHECK(env.nothing_stored());
  }
  Env env;
  Ingestor ingestor(env.auth.get(), env.storage.get());
  IngestResult result;
  CHECK(ingestor.ingest(request(kDocBody, "homelab", std::string(129, 'k')), &result).code() ==
        ErrorCode::invalid_name);
  CHECK(env.nothing_stored());
}

TEST_CASE("ingest: a wrong key or bucket is access_denied and stores nothing", "[ingest]") {
  Env env;
  Ingestor ingestor(env.auth.get(), env.storage.get());
  IngestResult result;
  Status wrong = ingestor.ingest(request(body_with("1", "not-the-key")), &result);
  CHECK(wrong.code() == ErrorCode::access_denied);
  CHECK(wrong.http_status() == 403);
  Status unknown = ingestor.ingest(request(kDocBody, "other", "k"), &result);
  CHECK(unknown.code() == ErrorCode::access_denied);
  Status cross = ingestor.ingest(request(body_with("1", "garden-key")), &result);  // key of another bucket
  CHECK(cross.code() == ErrorCode::access_denied);
  Status case_bucket = ingestor.ingest(request(kDocBody, "Homelab", "k"), &result);
  CHECK(case_bucket.code() == ErrorCode::access_denied);
  CHECK(wrong.message() == unknown.message());
  CHECK(env.nothing_stored());
  // The garden key opens garden.
  REQUIRE(ingestor.ingest(request(body_with("[1,2]", "garden-key"), "garden", "plot"), &result).ok());
  CHECK(env.object("garden", "plot") == "1\n2\n");
}

TEST_CASE("ingest: parse errors are returned and store nothing", "[ingest]") {
  struct Case {
    std::string body;
    ErrorCode code;
  };
  const Case cases[] = {
      {"", ErrorCode::invalid_json},
      {"{", ErrorCode::invalid_json},
      {body_with("01"), ErrorCode::invalid_json},
      {body_with("\"\xff\""), ErrorCode::invalid_utf8},
      {"[1]", ErrorCode::not_an_object},
      {R"({"accessKey":")" + kDocKey + R"("})", ErrorCode::missing_field},
      {R"({"data":1})", ErrorCode::missing_access_key},
      {R"({"accessKey":"","data":1})", ErrorCode::missing_access_key},
      {R"({"accessKey":1,"data":1})", ErrorCode::invalid_field},
      {body_with("null"), ErrorCode::null_data},
      {body_with("[1,null]"), ErrorCode::null_data},
      {R"({"accessKey":")" + kDocKey + R"(","data":1,"data":2})", ErrorCode::duplicate_field},
      {R"({"accessKey":")" + kDocKey + R"(","deviceId":"","data":1})", ErrorCode::invalid_device_id},
      {body_with("[[[[[[[[[[1]]]]]]]]]]"), ErrorCode::too_deep},
  };
  for (const Case& c : cases) {
    INFO("body: " << c.body);
    Env env;
    IngestOptions options;
    options.parse.max_depth = 8;
    Ingestor ingestor(env.auth.get(), env.storage.get(), options);
    IngestResult result;
    Status s = ingestor.ingest(request(c.body), &result);
    CHECK(s.name() == writeapi::error_name(c.code));
    CHECK(result.items == 0);
    CHECK(env.nothing_stored());
  }
}

TEST_CASE("ingest: parse errors win over a wrong key", "[ingest]") {
  Env env;
  Ingestor ingestor(env.auth.get(), env.storage.get());
  IngestResult result;
  CHECK(ingestor.ingest(request(body_with("01", "wrong")), &result).code() == ErrorCode::invalid_json);
  CHECK(ingestor.ingest(request(body_with("null", "wrong")), &result).code() == ErrorCode::null_data);
  CHECK(env.nothing_stored());
}

TEST_CASE("ingest: content checks come before name checks", "[ingest]") {
  // ingest.h: "ingest() runs, in order: content checks (type, encoding,
  // size), name checks, parse(), authorization, then Storage::append()".
  Env env;
  IngestOptions options;
  options.max_body_bytes = 10;
  Ingestor ingestor(env.auth.get(), env.storage.get(), options);
  IngestResult result;
  CHECK(ingestor.ingest(request(kDocBody, "..", "k", "text/plain"), &result).name() == "unsupported_media_type");
  CHECK(ingestor.ingest(request(kDocBody, "..", "k", "application/json", "br"), &result).name() ==
        "unsupported_encoding");
  CHECK(ingestor.ingest(request(kDocBody, "..", "k"), &result).name() == "payload_too_large");
  CHECK(env.nothing_stored());
}

TEST_CASE("ingest: result.device_id is filled whenever the body parsed", "[ingest]") {
  Env env;
  Ingestor ingestor(env.auth.get(), env.storage.get());
  IngestResult result;
  result.device_id = "stale";
  REQUIRE(ingestor.ingest(request(body_with("1")), &result).ok());
  CHECK(result.device_id.empty());
  const std::string with_device = R"({"accessKey":"wrong","deviceId":"dev-7","data":1})";
  CHECK(ingestor.ingest(request(with_device), &result).code() == ErrorCode::access_denied);
  CHECK(result.device_id == "dev-7");
  CHECK(result.items == 0);
  const std::string escaped = R"({"accessKey":")" + kDocKey + R"(","deviceId":"dev\u002d8","data":1})";
  REQUIRE(ingestor.ingest(request(escaped), &result).ok());
  CHECK(result.device_id == "dev-8");
}

TEST_CASE("ingest: storage failures are returned as they are", "[ingest]") {
  const Status failures[] = {
      Status(ErrorCode::storage_error, "disk said no").with_retry_after(1),
      Status(ErrorCode::insufficient_storage, "disk full").with_retry_after(60),
      Status(ErrorCode::storage_unavailable, "remote down"),
  };
  for (const Status& failure : failures) {
    INFO(failure.name());
    Env env;
    FaultyStorage storage(failure);
    Ingestor ingestor(env.auth.get(), &storage);
    IngestResult result;
    Status s = ingestor.ingest(request(kDocBody), &result);
    CHECK(s.code() == failure.code());
    CHECK(s.http_status() == failure.http_status());
    CHECK(s.retry_after_seconds() == failure.retry_after_seconds());
    CHECK(result.items == 0);
    CHECK(result.bytes_stored == 0);
    CHECK(storage.calls == 1);
    std::string contents;
    REQUIRE(storage.read_object("homelab", "outdoors_temp1", &contents).ok());
    CHECK(contents.empty());
  }
}

TEST_CASE("ingest: storage is not called for rejected requests", "[ingest]") {
  Env env;
  FaultyStorage storage{Status()};
  Ingestor ingestor(env.auth.get(), &storage);
  IngestResult result;
  CHECK_FALSE(ingestor.ingest(request(body_with("1", "wrong")), &result).ok());
  CHECK_FALSE(ingestor.ingest(request(body_with("01")), &result).ok());
  CHECK_FALSE(ingestor.ingest(request(kDocBody, "homelab", "k", "text/plain"), &result).ok());
  CHECK_FALSE(ingestor.ingest(request(kDocBody, "..", "k"), &result).ok());
  CHECK(storage.calls == 0);
  REQUIRE(ingestor.ingest(request(kDocBody), &result).ok());
  CHECK(storage.calls == 1);
  std::string contents;
  REQUIRE(storage.read_object("homelab", "outdoors_temp1", &contents).ok());
  CHECK(contents == kDocLine);
}

TEST_CASE("ingest: concurrent requests are all stored", "[ingest]") {
  Env env;
  Ingestor ingestor(env.auth.get(), env.storage.get());
  constexpr int kThreads = 8;
  constexpr int kRequests = 50;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRequests; ++i) {
        std::string body = body_with("[" + std::to_string(t) + "," + std::to_string(i) + "]");
        std::string compressed;
        IngestResult result;
        Status s;
        if (i % 2) {
          // Mix plain and gzip bodies; gzip() may not REQUIRE off the main thread.
          z_stream z{};
          deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
          compressed.resize(deflateBound(&z, body.size()) + 64);
          z.next_in = reinterpret_cast<Bytef*>(body.data());
          z.avail_in = static_cast<uInt>(body.size());
          z.next_out = reinterpret_cast<Bytef*>(compressed.data());
          z.avail_out = static_cast<uInt>(compressed.size());
          if (deflate(&z, Z_FINISH) != Z_STREAM_END) failures++;
          compressed.resize(z.total_out);
          deflateEnd(&z);
          s = ingestor.ingest(request(compressed, "homelab", "k" + std::to_string(t), "application/json", "gzip"),
                              &result);
        } else {
          s = ingestor.ingest(request(body, "homelab", "k" + std::to_string(t)), &result);
        }
        if (!s.ok() || result.items != 2) failures++;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(failures == 0);
  for (int t = 0; t < kThreads; ++t) {
    std::string expected;
    for (int i = 0; i < kRequests; ++i) expected += std::to_string(t) + "\n" + std::to_string(i) + "\n";
    CHECK(env.object("homelab", "k" + std::to_string(t)) == expected);
  }
}

namespace {

// A store that completes appends later, from another thread, as the file
// store's group commit does: the test decides when.
class DeferredStorage : public writeapi::Storage {
 public:
  explicit DeferredStorage(Status result) : result_(std::move(result)) {}
  Status append(const writeapi::AppendBatch&) override { return result_; }
  void append_async(const writeapi::AppendBatch& batch, std::function<void(Status)> done) override {
    stored_.append(batch.lines);  // the batch is only valid until we return
    pending_.push_back(std::move(done));
  }
  Status list_keys(std::string_view, std::vector<std::string>* keys) override {
    keys->clear();
    return Status();
  }
  Status read_object(std::string_view, std::string_view, std::string* contents) override {
    *contents = stored_;
    return Status();
  }
  // Answers every pending append from a thread of its own.
  void complete_all() {
    std::thread([this] {
      for (auto& done : pending_) done(result_);
    }).join();
    pending_.clear();
  }
  std::size_t pending() const { return pending_.size(); }

 private:
  Status result_;
  std::string stored_;
  std::vector<std::function<void(Status)>> pending_;
};

}  // namespace

TEST_CASE("ingest_async: the answer comes when the store completes, with the request's count", "[ingest]") {
  Env env;
  DeferredStorage storage{Status()};
  Ingestor ingestor(env.auth.get(), &storage);
  int calls = 0;
  Status answer(ErrorCode::internal_error, "not answered");
  IngestResult answered;
  {
    // The request's memory is gone once ingest_async returns.
    std::string body = body_with(R"([1, {"a" : 2}, "x"])");
    body.insert(body.find('{') + 1, R"("deviceId":"dev1",)");
    ingestor.ingest_async(request(body), [&](const Status& s, const IngestResult& r) {
      calls++;
      answer = s;
      answered = r;
    });
    body.assign(body.size(), ' ');
  }
  CHECK(calls == 0);  // nothing waited: the store has not answered yet
  REQUIRE(storage.pending() == 1);
  std::string contents;
  REQUIRE(storage.read_object("homelab", "outdoors_temp1", &contents).ok());
  CHECK(contents == "1\n{\"a\":2}\n\"x\"\n");
  storage.complete_all();
  CHECK(calls == 1);
  CHECK(answer.ok());
  CHECK(answered.items == 3);
  CHECK(answered.bytes_stored == 14);
  CHECK(answered.device_id == "dev1");
}

TEST_CASE("ingest_async: refusals are answered before it returns, and store failures with nothing counted",
          "[ingest]") {
  Env env;
  DeferredStorage failing{Status(ErrorCode::storage_error, "disk said no")};
  Ingestor ingestor(env.auth.get(), &failing);
  int calls = 0;
  Status answer;
  IngestResult answered;
  auto done = [&](const Status& s, const IngestResult& r) {
    calls++;
    answer = s;
    answered = r;
  };
  ingestor.ingest_async(request(body_with("1", "wrong")), done);
  CHECK(calls == 1);
  CHECK(answer.code() == ErrorCode::access_denied);
  CHECK(failing.pending() == 0);
  ingestor.ingest_async(request(kDocBody, "homelab", "k", "text/plain"), done);
  CHECK(calls == 2);
  CHECK(answer.code() == ErrorCode::unsupported_media_type);

  ingestor.ingest_async(request(kDocBody), done);
  CHECK(calls == 2);
  failing.complete_all();
  CHECK(calls == 3);
  CHECK(answer.code() == ErrorCode::storage_error);
  CHECK(answered.items == 0);
  CHECK(answered.bytes_stored == 0);
  CHECK(answered.device_id == "outdoors_u871a");
}

TEST_CASE("check_head: what the head alone decides, before any body is read", "[ingest]") {
  Env env;
  writeapi::IngestOptions options;
  options.max_body_bytes = 1000;
  Ingestor ingestor(env.auth.get(), env.storage.get(), options);
  CHECK(ingestor.max_body_bytes() == 1000);
  auto head = [] {
    writeapi::WriteHead h;
    h.method = "POST";
    h.target = "/write/v3/bucket/homelab/outdoors%5Ftemp1?x=1";
    h.content_type = "application/json; charset=utf-8";
    h.content_length = 1000;
    return h;
  };
  std::string bucket, key;
  REQUIRE(ingestor.check_head(head(), &bucket, &key).ok());
  CHECK(bucket == "homelab");
  CHECK(key == "outdoors_temp1");
  auto refusal = [&](writeapi::WriteHead h) { return ingestor.check_head(h, &bucket, &key).code(); };
  auto h = head();
  h.target = "/write/v3/bucket/homelab";
  CHECK(refusal(h) == ErrorCode::not_found);
  // Another method on the write path is 405 (before the names are looked
  // at); off the write path every method is not_found.
  for (const char* method : {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "post"}) {
    INFO(method);
    h = head();
    h.method = method;
    CHECK(refusal(h) == ErrorCode::method_not_allowed);
    h.target = "/write/v3/bucket/Bad!/k";
    CHECK(refusal(h) == ErrorCode::method_not_allowed);
    h.target = "/nope";
    CHECK(refusal(h) == ErrorCode::not_found);
    h.target = "/write/v3/bucke";
    CHECK(refusal(h) == ErrorCode::not_found);
  }
  CHECK(writeapi::WriteHead().method == "POST");
  h = head();
  h.target = "/write/v3/bucket/home%2Flab/k";
  CHECK(refusal(h) == ErrorCode::invalid_name);
  h = head();
  h.framing = writeapi::WriteHead::Framing::none;
  CHECK(refusal(h) == ErrorCode::length_required);
  h = head();
  h.content_length = 1001;
  CHECK(refusal(h) == ErrorCode::payload_too_large);
  h.framing = writeapi::WriteHead::Framing::chunked;  // its length is known only as it arrives
  CHECK(ingestor.check_head(h, &bucket, &key).ok());
  h = head();
  h.content_type = "text/plain";
  CHECK(refusal(h) == ErrorCode::unsupported_media_type);
  h = head();
  h.content_type_count = 2;
  CHECK(refusal(h) == ErrorCode::unsupported_media_type);
  h = head();
  h.content_encoding = "br";
  CHECK(refusal(h) == ErrorCode::unsupported_encoding);
  h = head();
  h.content_encoding = "GZip";
  CHECK(ingestor.check_head(h, &bucket, &key).ok());
  h.content_encoding_count = 2;
  CHECK(refusal(h) == ErrorCode::unsupported_encoding);
}

namespace {

std::string body_with_id(std::string_view data, std::string_view id, std::string_view key = kDocKey) {
  return R"({"accessKey":")" + std::string(key) + R"(","requestId":")" + std::string(id) + R"(","data":)" +
         std::string(data) + "}";
}

}  // namespace

TEST_CASE("ingest: a retried requestId is answered with its original count and stores nothing", "[ingest][dedup]") {
  Env env;
  Ingestor ingestor(env.auth.get(), env.storage.get());
  IngestResult result;
  const std::string body = body_with_id("[1,2,3]", "sensor-7/0001");
  REQUIRE(ingestor.ingest(request(body), &result).ok());
  CHECK(result.items == 3);
  CHECK_FALSE(result.duplicate);
  for (int retry = 0; retry < 3; ++retry) {
    REQUIRE(ingestor.ingest(request(body), &result).ok());
    CHECK(result.items == 3);
    CHECK(result.duplicate);
    CHECK(result.bytes_stored == 0);
  }
  CHECK(env.object("homelab", "outdoors_temp1") == "1\n2\n3\n");
  // The body's field order and whitespace do not matter; what is stored does.
  const std::string reordered =
      R"({ "requestId" : "sensor-7/0001", "data" : [1, 2, 3], "accessKey" : ")" + std::string(kDocKey) + "\"}";
  REQUIRE(ingestor.ingest(request(reordered), &result).ok());
  CHECK(result.duplicate);
  // Another id stores again.
  REQUIRE(ingestor.ingest(request(body_with_id("[1,2,3]", "sensor-7/0002")), &result).ok());
  CHECK_FALSE(result.duplicate);
  CHECK(env.object("homelab", "outdoors_temp1") == "1\n2\n3\n1\n2\n3\n");
}

TEST_CASE("ingest: the same id for another body, key or bucket is request_id_conflict", "[ingest][dedup]") {
  Env env;
  Ingestor ingestor(env.auth.get(), env.storage.get());
  IngestResult result;
  REQUIRE(ingestor.ingest(request(body_with_id("1", "id-1")), &result).ok());
  CHECK(ingestor.ingest(request(body_with_id("2", "id-1")), &result).code() == ErrorCode::request_id_conflict);
  CHECK(ingestor.ingest(request(body_with_id("1", "id-1"), "homelab", "other"), &result).code() ==
        ErrorCode::request_id_conflict);
  // Ids are per bucket: the same id in another bucket is another request.
  REQUIRE(ingestor.ingest(request(body_with_id("1", "id-1", "garden-key"), "garden"), &result).ok());
  CHECK_FALSE(result.duplicate);
  CHECK(env.object("homelab", "outdoors_temp1") == "1\n");
  CHECK(env.object("homelab", "other") == "");
  CHECK(env.object("garden", "outdoors_temp1") == "1\n");
}

TEST_CASE("ingest: Idempotency-Key is the same id as requestId, and the two must agree", "[ingest][dedup]") {
  Env env;
  Ingestor ingestor(env.auth.get(), env.storage.get());
  IngestResult result;
  const std::string plain = body_with("[4]");
  IngestRequest r = request(plain);
  r.idempotency_key = "k-42";
  REQUIRE(ingestor.ingest(r, &result).ok());
  CHECK_FALSE(result.duplicate);
  const std::string same = body_with_id("[4]", "k-42");
  REQUIRE(ingestor.ingest(request(same), &result).ok());  // the body's id, the header's request
  CHECK(result.duplicate);
  IngestRequest both = request(same);
  both.idempotency_key = "k-42";
  REQUIRE(ingestor.ingest(both, &result).ok());
  CHECK(result.duplicate);
  both.idempotency_key = "k-43";
  CHECK(ingestor.ingest(both, &result).code() == ErrorCode::invalid_request_id);
  IngestRequest bad = request(plain);
  const std::string too_long(129, 'x');
  bad.idempotency_key = too_long;
  CHECK(ingestor.ingest(bad, &result).code() == ErrorCode::invalid_request_id);
  bad.idempotency_key = "tab\there";
  CHECK(ingestor.ingest(bad, &result).code() == ErrorCode::invalid_request_id);
  bad.idempotency_key = "";  // sent, but empty: not the same as no header
  CHECK(ingestor.ingest(bad, &result).code() == ErrorCode::invalid_request_id);
  CHECK(env.object("homelab", "outdoors_temp1") == "4\n");
}

TEST_CASE("ingest: a refused request forgets its id, so its retry stores", "[ingest][dedup]") {
  Env env;
  FaultyStorage failing{Status(ErrorCode::storage_error, "disk said no")};
  Ingestor refusing(env.auth.get(), &failing);
  IngestResult result;
  const std::string body = body_with_id("[1]", "retry-me");
  CHECK(refusing.ingest(request(body), &result).code() == ErrorCode::storage_error);
  CHECK(refusing.ingest(request(body), &result).code() == ErrorCode::storage_error);
  CHECK(failing.calls == 2);  // each retry reached the store again
}

TEST_CASE("ingest_async: a retry while the first is in flight gets the first's answer", "[ingest][dedup]") {
  Env env;
  DeferredStorage storage{Status()};
  Ingestor ingestor(env.auth.get(), &storage);
  std::vector<std::pair<Status, IngestResult>> answers;
  auto done = [&](const Status& s, const IngestResult& r) { answers.emplace_back(s, r); };
  const std::string body = body_with_id("[1,2]", "in-flight");
  ingestor.ingest_async(request(body), done);
  ingestor.ingest_async(request(body), done);                              // waits for the first
  ingestor.ingest_async(request(body_with_id("[9]", "in-flight")), done);  // conflict at once
  REQUIRE(answers.size() == 1);
  CHECK(answers[0].first.code() == ErrorCode::request_id_conflict);
  CHECK(storage.pending() == 1);
  storage.complete_all();
  REQUIRE(answers.size() == 3);
  // The first request's answer and its retry's (in either order).
  int firsts = 0, duplicates = 0;
  for (std::size_t i = 1; i < 3; ++i) {
    CHECK(answers[i].first.ok());
    CHECK(answers[i].second.items == 2);
    (answers[i].second.duplicate ? duplicates : firsts)++;
  }
  CHECK(firsts == 1);
  CHECK(duplicates == 1);
  std::string contents;
  REQUIRE(storage.read_object("homelab", "outdoors_temp1", &contents).ok());
  CHECK(contents == "1\n2\n");
}

TEST_CASE("ingest: retries of an acknowledged id spend no device budget", "[ingest][dedup]") {
  Env env;
  writeapi::DeviceLimiter limiter;
  writeapi::BucketLimitsMap limits;
  writeapi::BucketLimits homelab;
  homelab.anonymous = writeapi::RateLimit{0.001, 1};  // one request, then 429
  limits["homelab"] = homelab;
  limiter.set_limits(limits);
  Ingestor ingestor(env.auth.get(), &limiter, env.storage.get());
  IngestResult result;
  const std::string body = body_with_id("1", "only-once");
  REQUIRE(ingestor.ingest(request(body), &result).ok());
  for (int i = 0; i < 5; ++i) {
    REQUIRE(ingestor.ingest(request(body), &result).ok());
    CHECK(result.duplicate);
  }
  CHECK(ingestor.ingest(request(body_with_id("1", "another")), &result).code() == ErrorCode::rate_limited);
}

TEST_CASE("ingest: dedup_max_ids 0 turns retry detection off", "[ingest][dedup]") {
  Env env;
  writeapi::IngestOptions options;
  options.dedup_max_ids = 0;
  Ingestor ingestor(env.auth.get(), env.storage.get(), options);
  IngestResult result;
  const std::string body = body_with_id("1", "twice");
  REQUIRE(ingestor.ingest(request(body), &result).ok());
  REQUIRE(ingestor.ingest(request(body), &result).ok());
  CHECK_FALSE(result.duplicate);
  CHECK(env.object("homelab", "outdoors_temp1") == "1\n1\n");
}

TEST_CASE("ingest: request ids outlive the Ingestor and its file store: a restart answers retries", "[ingest][dedup]") {
  Env env;
  writeapi::FileStorageOptions options;
  options.data_dir = env.dir.path() + "/data";
  options.log = [](std::string_view) {};
  const std::string body = body_with_id("[1,2,3]", "sensor-7/0001");
  {
    Status status;
    auto store = writeapi::make_file_storage(options, &status);
    REQUIRE(store);
    Ingestor ingestor(env.auth.get(), store.get());
    IngestResult result;
    REQUIRE(ingestor.ingest(request(body), &result).ok());
    CHECK_FALSE(result.duplicate);
  }
  // A new process: a new store on the same directory and a new Ingestor.
  Status status;
  auto store = writeapi::make_file_storage(options, &status);
  REQUIRE(store);
  writeapi::ManualClock clock;
  IngestOptions ingest_options;
  ingest_options.clock = &clock;
  ingest_options.dedup_window = std::chrono::hours(1);
  Ingestor ingestor(env.auth.get(), nullptr, store.get(), ingest_options);
  IngestResult result;
  REQUIRE(ingestor.ingest(request(body), &result).ok());
  CHECK(result.duplicate);
  CHECK(result.items == 3);
  CHECK(ingestor.ingest(request(body_with_id("[4]", "sensor-7/0001")), &result).code() ==
        ErrorCode::request_id_conflict);
  // The window counts from the first acknowledgement, on the Ingestor's clock.
  clock.advance(std::chrono::minutes(61));
  REQUIRE(ingestor.ingest(request(body), &result).ok());
  CHECK_FALSE(result.duplicate);
  std::string contents;
  REQUIRE(store->read_object("homelab", "outdoors_temp1", &contents).ok());
  CHECK(contents == "1\n2\n3\n1\n2\n3\n");
}

TEST_CASE("ingest: on_appended names each stored object once, after its lines are readable", "[ingest]") {
  Env env;
  std::vector<std::string> appended;
  writeapi::IngestOptions options;
  options.on_appended = [&](std::string_view bucket, std::string_view key) {
    // The lines are visible to reads by now.
    std::string contents;
    REQUIRE(env.storage->read_object(bucket, key, &contents).ok());
    CHECK_FALSE(contents.empty());
    appended.push_back(std::string(bucket) + "/" + std::string(key));
  };
  Ingestor ingestor(env.auth.get(), env.storage.get(), options);
  IngestResult result;
  REQUIRE(ingestor.ingest(request(body_with("[1,2]")), &result).ok());
  REQUIRE(ingestor.ingest(request(body_with("[]"), "homelab", "empty"), &result).ok());  // nothing stored
  CHECK(ingestor.ingest(request(body_with("1", "wrong-key"), "homelab", "k"), &result).code() ==
        writeapi::ErrorCode::access_denied);
  // With a request id: the first is stored, its retry is a duplicate.
  const std::string with_id = R"({"accessKey":")" + std::string(kDocKey) + R"(","requestId":"r1","data":3})";
  bool first_done = false, retry_done = false;
  ingestor.ingest_async(request(with_id, "homelab", "ids"), [&](const Status& s, const IngestResult&) {
    CHECK(s.ok());
    first_done = true;
  });
  ingestor.ingest_async(request(with_id, "homelab", "ids"), [&](const Status& s, const IngestResult& r) {
    CHECK(s.ok());
    CHECK(r.duplicate);
    retry_done = true;
  });
  CHECK(first_done);
  CHECK(retry_done);
  CHECK(appended == std::vector<std::string>{"homelab/outdoors_temp1", "homelab/ids"});
}
