// Keys-file authorizer and sha256_hex.
#include <catch2/catch.hpp>

#include <stdlib.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "api_document.h"
#include "temp_dir.h"
#include "writeapi/auth.h"

using writeapi::ErrorCode;
using writeapi::KeysFileAuthorizer;
using writeapi::sha256_hex;
using writeapi::Status;
using writeapi::testing::TempDir;
using writeapi::testing::write_file;

namespace {

const std::string kDocKey(writeapi::testing::kAccessKey);

std::string key_entry(const std::string& id, const std::string& sha, const std::string& label = "x") {
  return R"({"id":")" + id + R"(","sha256":")" + sha + R"(","label":")" + label + R"("})";
}

std::string keys_file(const std::string& bucket, const std::vector<std::string>& entries) {
  std::string keys;
  for (const std::string& e : entries) keys += (keys.empty() ? "" : ",") + e;
  return R"({"buckets":{")" + bucket + R"(":{"keys":[)" + keys + "]}}}";
}

std::unique_ptr<KeysFileAuthorizer> load(const std::string& path) {
  Status status;
  std::unique_ptr<KeysFileAuthorizer> auth = writeapi::make_keys_file_authorizer(path, &status);
  INFO("make_keys_file_authorizer: " << status.name() << ": " << status.message());
  REQUIRE(status.ok());
  REQUIRE(auth != nullptr);
  return auth;
}

}  // namespace

TEST_CASE("sha256_hex matches known digests", "[auth]") {
  CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex(kDocKey) == "df981c9a8a8304c0925a61995f4fe86b2d9e9aceef345e4311cbe0d6325ea048");
  CHECK(sha256_hex(std::string("a\0b", 3)) != sha256_hex("a"));
  std::string h = sha256_hex("anything");
  CHECK(h.size() == 64);
  for (char c : h) CHECK(((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')));
}

TEST_CASE("auth: the right key opens its bucket", "[auth]") {
  TempDir dir;
  const std::string path = dir.path() + "/keys.json";
  write_file(path, keys_file("homelab", {key_entry("k1", sha256_hex(kDocKey))}));
  auto auth = load(path);
  CHECK(auth->path() == path);
  std::string key_id;
  Status s = auth->authorize("homelab", kDocKey, &key_id);
  CHECK(s.ok());
  CHECK(key_id == "k1");
  CHECK(auth->authorize("homelab", kDocKey).ok());  // key_id is optional
}

TEST_CASE("auth: wrong key, unknown bucket and empty key get the same answer", "[auth]") {
  TempDir dir;
  const std::string path = dir.path() + "/keys.json";
  write_file(path, R"({"buckets":{"homelab":{"keys":[)" + key_entry("k1", sha256_hex(kDocKey)) +
                       R"(]},"other":{"keys":[)" + key_entry("o1", sha256_hex("other-key")) + "]}}}");
  auto auth = load(path);
  std::string key_id = "untouched";
  Status wrong = auth->authorize("homelab", "not-the-key", &key_id);
  Status unknown = auth->authorize("nosuchbucket", kDocKey, &key_id);
  Status empty = auth->authorize("homelab", "", &key_id);
  Status cross = auth->authorize("other", kDocKey, &key_id);  // a key of another bucket
  Status prefix = auth->authorize("homelab", kDocKey.substr(0, 63), &key_id);
  Status hash_as_key = auth->authorize("homelab", sha256_hex(kDocKey), &key_id);
  for (const Status* s : {&wrong, &unknown, &empty, &cross, &prefix, &hash_as_key}) {
    CHECK(s->code() == ErrorCode::access_denied);
    CHECK(s->http_status() == 403);
    CHECK(s->message() == wrong.message());
    CHECK(s->message().find(kDocKey) == std::string::npos);
  }
  CHECK(key_id == "untouched");
  CHECK(auth->authorize("other", "other-key").ok());
}

TEST_CASE("auth: two keys in one bucket both work", "[auth]") {
  TempDir dir;
  const std::string path = dir.path() + "/keys.json";
  write_file(path, keys_file("homelab", {key_entry("k1", sha256_hex("key-one"), "laptop"),
                                         key_entry("k2", sha256_hex("key-two"), "sensor")}));
  auto auth = load(path);
  std::string id;
  REQUIRE(auth->authorize("homelab", "key-one", &id).ok());
  CHECK(id == "k1");
  REQUIRE(auth->authorize("homelab", "key-two", &id).ok());
  CHECK(id == "k2");
  CHECK(auth->authorize("homelab", "key-three").code() == ErrorCode::access_denied);
}

TEST_CASE("auth: upper-case hex digests are accepted", "[auth]") {
  TempDir dir;
  const std::string path = dir.path() + "/keys.json";
  std::string upper = sha256_hex("key-one");
  for (char& c : upper)
    if (c >= 'a' && c <= 'f') c = static_cast<char>(c - 'a' + 'A');
  write_file(path, keys_file("homelab", {key_entry("k1", upper)}));
  auto auth = load(path);
  CHECK(auth->authorize("homelab", "key-one").ok());
}

TEST_CASE("auth: a bucket without keys opens to nobody", "[auth]") {
  TempDir dir;
  const std::string path = dir.path() + "/keys.json";
  write_file(path, R"({"buckets":{"homelab":{"keys":[]}}})");
  auto auth = load(path);
  CHECK(auth->authorize("homelab", "").code() == ErrorCode::access_denied);
  CHECK(auth->authorize("homelab", "anything").code() == ErrorCode::access_denied);
  write_file(path, R"({"buckets":{}})");
  REQUIRE(auth->reload().ok());
  CHECK(auth->authorize("homelab", "anything").code() == ErrorCode::access_denied);
}

TEST_CASE("auth: reload picks up a changed file", "[auth]") {
  TempDir dir;
  const std::string path = dir.path() + "/keys.json";
  write_file(path, keys_file("homelab", {key_entry("k1", sha256_hex("old-key"))}));
  auto auth = load(path);
  REQUIRE(auth->authorize("homelab", "old-key").ok());
  CHECK(auth->authorize("homelab", "new-key").code() == ErrorCode::access_denied);

  write_file(path, keys_file("homelab", {key_entry("k2", sha256_hex("new-key"))}));
  // Nothing changes until reload().
  CHECK(auth->authorize("homelab", "old-key").ok());
  REQUIRE(auth->reload().ok());
  std::string id;
  REQUIRE(auth->authorize("homelab", "new-key", &id).ok());
  CHECK(id == "k2");
  CHECK(auth->authorize("homelab", "old-key").code() == ErrorCode::access_denied);

  // A new bucket appears, the old one goes.
  write_file(path, keys_file("garden", {key_entry("g1", sha256_hex("garden-key"))}));
  REQUIRE(auth->reload().ok());
  CHECK(auth->authorize("garden", "garden-key").ok());
  CHECK(auth->authorize("homelab", "new-key").code() == ErrorCode::access_denied);
}

TEST_CASE("auth: a failed reload keeps the old keys", "[auth]") {
  TempDir dir;
  const std::string path = dir.path() + "/keys.json";
  const std::string good = keys_file("homelab", {key_entry("k1", sha256_hex(kDocKey))});
  write_file(path, good);
  auto auth = load(path);

  const std::string new_key_sha = sha256_hex("new-key");
  const std::vector<std::pair<std::string, std::string>> broken = {
      {"bad JSON", R"({"buckets":{"homelab":{"keys":[)"},
      {"not JSON", "hello"},
      {"empty file", ""},
      {"no buckets", R"({"keys":[]})"},
      {"short sha256", keys_file("homelab", {key_entry("k1", new_key_sha.substr(0, 63))})},
      {"long sha256", keys_file("homelab", {key_entry("k1", new_key_sha + "0")})},
      {"non-hex sha256", keys_file("homelab", {key_entry("k1", "g" + new_key_sha.substr(1))})},
      // One good key next to a malformed one: nothing of the file applies.
      {"mixed", keys_file("homelab", {key_entry("k2", new_key_sha), key_entry("k3", "xyz")})},
  };
  for (const auto& [what, contents] : broken) {
    INFO(what);
    write_file(path, contents);
    Status s = auth->reload();
    CHECK_FALSE(s.ok());
    CHECK_FALSE(s.message().empty());
    std::string id;
    CHECK(auth->authorize("homelab", kDocKey, &id).ok());
    CHECK(id == "k1");
    CHECK(auth->authorize("homelab", "new-key").code() == ErrorCode::access_denied);
  }

  // A missing file.
  std::filesystem::remove(path);
  Status missing = auth->reload();
  CHECK_FALSE(missing.ok());
  CHECK(auth->authorize("homelab", kDocKey).ok());

  // And a later good file works again.
  write_file(path, keys_file("homelab", {key_entry("k2", new_key_sha)}));
  REQUIRE(auth->reload().ok());
  CHECK(auth->authorize("homelab", "new-key").ok());
  CHECK(auth->authorize("homelab", kDocKey).code() == ErrorCode::access_denied);
}

TEST_CASE("auth: make_keys_file_authorizer fails on a missing or broken file", "[auth]") {
  TempDir dir;
  Status status;
  auto missing = writeapi::make_keys_file_authorizer(dir.path() + "/nope.json", &status);
  CHECK(missing == nullptr);
  CHECK_FALSE(status.ok());
  CHECK_FALSE(status.message().empty());

  const std::string path = dir.path() + "/keys.json";
  write_file(path, "{not json");
  Status status2;
  auto broken = writeapi::make_keys_file_authorizer(path, &status2);
  CHECK(broken == nullptr);
  CHECK_FALSE(status2.ok());

  write_file(path, keys_file("homelab", {key_entry("k1", "abc")}));
  Status status3;
  auto bad_hash = writeapi::make_keys_file_authorizer(path, &status3);
  CHECK(bad_hash == nullptr);
  CHECK_FALSE(status3.ok());
}

TEST_CASE("auth: authorize is safe during concurrent reloads", "[auth]") {
  TempDir dir;
  const std::string path = dir.path() + "/keys.json";
  const std::string version_a = keys_file("homelab", {key_entry("k1", sha256_hex("stable"))});
  const std::string version_b =
      keys_file("homelab", {key_entry("k1", sha256_hex("stable")), key_entry("k2", sha256_hex("extra"))});
  write_file(path, version_a);
  auto auth = load(path);
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0}, checks{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < 4; ++i) {
    readers.emplace_back([&] {
      while (!stop) {
        if (!auth->authorize("homelab", "stable").ok()) failures++;
        if (auth->authorize("homelab", "wrong").ok()) failures++;
        checks++;
      }
    });
  }
  for (int i = 0; i < 60; ++i) {
    write_file(path, i % 2 ? version_a : version_b);
    if (!auth->reload().ok()) failures++;
  }
  stop = true;
  for (auto& t : readers) t.join();
  CHECK(failures == 0);
  CHECK(checks > 0);
}
