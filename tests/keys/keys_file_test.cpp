// The keys file: parsing and validation of keys and limits, the writer,
// locked updates, and the authorizer's limits, counters and reloads.
#include <catch2/catch.hpp>

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "temp_dir.h"
#include "writeapi/auth.h"
#include "writeapi/clock.h"
#include "writeapi/keys_file.h"
#include "writeapi/limits.h"

using namespace std::chrono_literals;
using writeapi::ErrorCode;
using writeapi::KeysFileContents;
using writeapi::Status;
using writeapi::testing::read_file;
using writeapi::testing::TempDir;
using writeapi::testing::write_file;

namespace {

const std::string kHash = writeapi::sha256_hex("key-one");
const std::string kHash2 = writeapi::sha256_hex("key-two");

std::string bucket_json(const std::string& extra) {
  return R"({"buckets": {"homelab": {"keys": [{"id": "k1", "sha256": ")" + kHash + "\"}]" + extra + "}}}";
}

Status parse(const std::string& text, KeysFileContents* contents) {
  return writeapi::parse_keys_file(text, "test.json", contents);
}

}  // namespace

TEST_CASE("keys file: limits and device rules are read, defaults filled in", "[keys_file]") {
  KeysFileContents contents;
  Status s = parse(bucket_json(R"(,
      "limits": {"anonymous": {"rate": 0.5}, "device": {"rate": 2, "burst": 7}, "max_suspension_s": 600},
      "devices": {"outdoors_u871a": {"rate": 5, "burst": 20}, "broken_7": {"blocked": true},
                  "slow": {"rate": 0.25}, "plain": {}})"),
                   &contents);
  INFO(s.message());
  REQUIRE(s.ok());
  writeapi::BucketLimitsMap map = writeapi::bucket_limits(contents);
  REQUIRE(map.count("homelab") == 1);
  const writeapi::BucketLimits& limits = map.at("homelab");
  CHECK(limits.anonymous.rate == 0.5);
  CHECK(limits.anonymous.burst == writeapi::kDefaultAnonymousLimit.burst);
  CHECK(limits.device.rate == 2);
  CHECK(limits.device.burst == 7);
  CHECK(limits.max_suspension == 600s);
  CHECK(limits.devices.at("outdoors_u871a").limit.rate == 5);
  CHECK(limits.devices.at("outdoors_u871a").limit.burst == 20);
  CHECK(limits.devices.at("broken_7").blocked);
  CHECK(limits.devices.at("slow").limit.rate == 0.25);
  CHECK(limits.devices.at("slow").limit.burst == 7);  // the bucket's device burst
  CHECK(limits.devices.at("plain").limit.rate == 2);
  CHECK_FALSE(limits.devices.at("plain").blocked);

  // A bucket without "limits" gets the defaults.
  REQUIRE(parse(bucket_json(""), &contents).ok());
  map = writeapi::bucket_limits(contents);
  CHECK(map.at("homelab").device.rate == writeapi::kDefaultDeviceLimit.rate);
  CHECK(map.at("homelab").max_suspension == writeapi::kDefaultMaxSuspension);
}

TEST_CASE("keys file: malformed limits, devices and keys are refused with a reason", "[keys_file]") {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"misspelt limits field", R"(, "limits": {"anonymus": {"rate": 1}})"},
      {"misspelt rate field", R"(, "limits": {"device": {"rate": 1, "brust": 5}})"},
      {"zero rate", R"(, "limits": {"device": {"rate": 0}})"},
      {"negative rate", R"(, "limits": {"anonymous": {"rate": -1}})"},
      {"burst below 1", R"(, "limits": {"device": {"burst": 0.5}})"},
      {"string rate", R"(, "limits": {"device": {"rate": "5"}})"},
      {"limits not an object", R"(, "limits": [])"},
      {"zero suspension", R"(, "limits": {"max_suspension_s": 0})"},
      {"fractional suspension", R"(, "limits": {"max_suspension_s": 1.5})"},
      {"devices not an object", R"(, "devices": [])"},
      {"device rule not an object", R"(, "devices": {"d": 5})"},
      {"blocked not a boolean", R"(, "devices": {"d": {"blocked": "yes"}})"},
      {"unknown device field", R"(, "devices": {"d": {"rate": 1, "bloked": true}})"},
      {"empty deviceId", R"(, "devices": {"": {"blocked": true}})"},
      {"control character in deviceId", R"(, "devices": {"a\u0001b": {"blocked": true}})"},
      {"deviceId too long", R"(, "devices": {")" + std::string(257, 'd') + R"(": {"blocked": true}})"},
  };
  for (const auto& [what, extra] : cases) {
    INFO(what);
    KeysFileContents contents;
    Status s = parse(bucket_json(extra), &contents);
    CHECK_FALSE(s.ok());
    CHECK(s.message().find("test.json") != std::string::npos);
  }
  KeysFileContents contents;
  CHECK_FALSE(parse(R"({"buckets": {"b": {"keys": [{"id": "k1", "sha256": ")" + kHash + R"("},
                                                    {"id": "k1", "sha256": ")" +
                        kHash2 + R"("}]}}})",
                    &contents)
                  .ok());
  CHECK_FALSE(parse(R"({"buckets": {"b": {"keys": [{"id": "k1", "sha256": "abc"}]}}})", &contents).ok());
  CHECK_FALSE(parse(R"({"buckets": {"b": {"keys": [{"id": "", "sha256": ")" + kHash + R"("}]}}})", &contents).ok());
}

TEST_CASE("keys file: the writer's text reads back equal", "[keys_file]") {
  KeysFileContents contents;
  REQUIRE(parse(bucket_json(R"(,
      "limits": {"anonymous": {"rate": 0.1, "burst": 3}, "max_suspension_s": 90},
      "devices": {"outdoors_u871a": {"rate": 5, "burst": 20}, "broken_7": {"blocked": true, "rate": 1},
                  "caf\u00e9 \"quoted\" \\ device": {}})"),
                &contents)
              .ok());
  contents.buckets[0].keys[0].label = "label with \"quotes\", \\, a tab\t, a newline\n and caf\xc3\xa9";
  contents.buckets[0].keys[0].created = "2026-11-25T00:00:00Z";
  contents.buckets.push_back(writeapi::BucketRecord{});
  contents.buckets.back().name = "empty-bucket";

  const std::string text = writeapi::format_keys_file(contents);
  KeysFileContents again;
  Status s = parse(text, &again);
  INFO(text << "\n" << s.message());
  REQUIRE(s.ok());
  REQUIRE(again.buckets.size() == 2);
  CHECK(writeapi::format_keys_file(again) == text);
  const auto& bucket = again.buckets[0];
  CHECK(bucket.keys[0].label == contents.buckets[0].keys[0].label);
  CHECK(bucket.keys[0].created == "2026-11-25T00:00:00Z");
  CHECK(*bucket.limits.anonymous.rate == 0.1);
  CHECK_FALSE(bucket.limits.device.rate);
  CHECK(*bucket.limits.max_suspension_seconds == 90);
  REQUIRE(bucket.devices.size() == 3);
  CHECK(bucket.devices[1].blocked);
  CHECK(*bucket.devices[1].limit.rate == 1);
  CHECK(bucket.devices[2].device_id == "caf\xc3\xa9 \"quoted\" \\ device");
  CHECK(again.buckets[1].keys.empty());

  KeysFileContents empty;
  REQUIRE(parse(writeapi::format_keys_file(empty), &again).ok());
  CHECK(again.buckets.empty());
}

TEST_CASE("keys file: updates are atomic, keep the mode, and a failed change writes nothing", "[keys_file]") {
  TempDir dir;
  const std::string path = dir.path() + "/keys.json";

  // A missing file is created only when asked.
  Status s = writeapi::update_keys_file(path, false, [](KeysFileContents*) { return Status(); });
  CHECK(s.code() == ErrorCode::not_found);
  CHECK_FALSE(std::filesystem::exists(path));
  REQUIRE(writeapi::update_keys_file(path, true, [](KeysFileContents* c) {
            c->buckets.push_back(writeapi::BucketRecord{});
            c->buckets.back().name = "homelab";
            return Status();
          }).ok());
  REQUIRE(std::filesystem::exists(path));
  CHECK(std::filesystem::exists(path + ".lock"));

  REQUIRE(::chmod(path.c_str(), 0640) == 0);
  const std::string before = read_file(path);
  s = writeapi::update_keys_file(path, false, [](KeysFileContents* c) {
    c->buckets.clear();
    return Status(ErrorCode::not_found, "no such thing");
  });
  CHECK(s.message() == "no such thing");
  CHECK(read_file(path) == before);

  // A label that is not UTF-8 would make the file unreadable: refused.
  s = writeapi::update_keys_file(path, false, [](KeysFileContents* c) {
    c->buckets[0].keys.push_back({"k1", kHash, "bad \xff label", ""});
    return Status();
  });
  CHECK_FALSE(s.ok());
  CHECK(read_file(path) == before);

  REQUIRE(writeapi::update_keys_file(path, false, [](KeysFileContents* c) {
            c->buckets[0].keys.push_back({"k1", kHash, "fine", ""});
            return Status();
          }).ok());
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0640);
  // No temporary file is left behind.
  std::set<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) names.insert(entry.path().filename());
  CHECK(names == std::set<std::string>{"keys.json", "keys.json.lock"});
}

TEST_CASE("keys file: updates keep the owner and group where the writer may set them", "[keys_file]") {
  // The packaged keys file is root:writeapi 0640 and root edits it with
  // writeapi-keys: the service must still read it afterwards. Run as root
  // (CI), the file is given another group first and must keep it; run as
  // anyone else, the owner must stay the writer.
  TempDir dir;
  const std::string path = dir.path() + "/keys.json";
  REQUIRE(writeapi::update_keys_file(path, true, [](KeysFileContents*) { return Status(); }).ok());
  const gid_t other_group = ::getuid() == 0 ? 1 : ::getgid();  // gid 1: "daemon" on Debian
  if (::getuid() == 0) REQUIRE(::chown(path.c_str(), 0, other_group) == 0);
  REQUIRE(::chmod(path.c_str(), 0640) == 0);
  REQUIRE(writeapi::update_keys_file(path, false, [](KeysFileContents* c) {
            c->buckets.push_back(writeapi::BucketRecord{});
            c->buckets.back().name = "homelab";
            return Status();
          }).ok());
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK(st.st_uid == ::getuid());
  CHECK(st.st_gid == other_group);
  CHECK((st.st_mode & 07777) == 0640);
}

TEST_CASE("keys file: key ids and generated keys", "[keys_file]") {
  writeapi::BucketRecord bucket;
  CHECK(writeapi::next_key_id(bucket) == "k1");
  bucket.keys.push_back({"demo", kHash, "", ""});
  bucket.keys.push_back({"k7", kHash, "", ""});
  bucket.keys.push_back({"k3", kHash, "", ""});
  bucket.keys.push_back({"kx", kHash, "", ""});
  CHECK(writeapi::next_key_id(bucket) == "k8");

  std::set<std::string> keys;
  for (int i = 0; i < 100; ++i) {
    std::string key;
    REQUIRE(writeapi::generate_access_key(&key).ok());
    REQUIRE(key.size() == 64);
    CHECK(key.find_first_not_of("0123456789abcdef") == std::string::npos);
    keys.insert(key);
  }
  CHECK(keys.size() == 100);
  std::string now = writeapi::utc_now_iso8601();
  CHECK(now.size() == 20);
  CHECK(now.back() == 'Z');
  CHECK(now[10] == 'T');
}

TEST_CASE("keys file authorizer: limits follow reloads, counters count", "[keys_file][auth]") {
  TempDir dir;
  const std::string path = dir.path() + "/keys.json";
  write_file(path, R"({"buckets": {
      "homelab": {"keys": [{"id": "k1", "sha256": ")" +
                       kHash + R"("}, {"id": "k2", "sha256": ")" + kHash2 + R"("}],
                  "devices": {"broken_7": {"blocked": true}, "tiny": {"rate": 1, "burst": 1}}},
      "otherlab": {"keys": []}}})");
  writeapi::ManualClock clock;
  writeapi::DeviceLimiterOptions options;
  options.clock = &clock;
  writeapi::DeviceLimiter limiter(options);
  Status status;
  auto auth = writeapi::make_keys_file_authorizer(path, &limiter, &status);
  INFO(status.message());
  REQUIRE(auth);

  // Two live keys (rotation): both open the bucket, each reports its id.
  std::string id;
  CHECK(auth->authorize("homelab", "key-one", &id).ok());
  CHECK(id == "k1");
  CHECK(auth->authorize("homelab", "key-two", &id).ok());
  CHECK(id == "k2");

  CHECK(limiter.admit("homelab", "broken_7").code() == ErrorCode::device_blocked);
  CHECK(limiter.admit("homelab", "tiny").ok());
  CHECK(limiter.admit("homelab", "tiny").code() == ErrorCode::rate_limited);

  // Failures: per bucket of the file, one counter for unknown buckets.
  CHECK(auth->authorize("homelab", "wrong").code() == ErrorCode::access_denied);
  CHECK(auth->authorize("homelab", "key-one-").code() == ErrorCode::access_denied);
  CHECK(auth->authorize("otherlab", "key-one").code() == ErrorCode::access_denied);
  for (int i = 0; i < 5; ++i)
    CHECK(auth->authorize("nolab" + std::to_string(i), "key-one").code() == ErrorCode::access_denied);
  auto stats = auth->stats();
  using Counts = std::vector<std::pair<std::string, std::uint64_t>>;
  CHECK(stats.auth_failures == Counts{{"homelab", 2}, {"otherlab", 1}});
  CHECK(stats.unknown_bucket_failures == 5);
  CHECK(stats.reloads == 0);
  CHECK(stats.reload_failures == 0);

  // A reload changes limits with the keys; counts of kept buckets survive.
  write_file(path, R"({"buckets": {"homelab": {"keys": [{"id": "k2", "sha256": ")" + kHash2 + R"("}],
                                                "devices": {"tiny": {"rate": 1, "burst": 3}}}}})");
  REQUIRE(auth->reload().ok());
  CHECK(auth->authorize("homelab", "key-one").code() == ErrorCode::access_denied);  // revoked
  CHECK(auth->authorize("homelab", "key-two").ok());
  CHECK(limiter.admit("homelab", "broken_7").ok());  // no longer blocked
  clock.advance(1h);
  for (int i = 0; i < 3; ++i) CHECK(limiter.admit("homelab", "tiny").ok());
  stats = auth->stats();
  CHECK(stats.auth_failures == Counts{{"homelab", 3}});
  CHECK(stats.reloads == 1);

  // A broken file keeps keys and limits, and is counted.
  write_file(path, R"({"buckets": {"homelab": {"keys": [], "devices": {"tiny": {"rate": 0}}}}})");
  CHECK_FALSE(auth->reload().ok());
  write_file(path, "{ not json");
  CHECK_FALSE(auth->reload().ok());
  CHECK(auth->authorize("homelab", "key-two").ok());
  clock.advance(1h);
  for (int i = 0; i < 3; ++i) CHECK(limiter.admit("homelab", "tiny").ok());
  CHECK(limiter.admit("homelab", "tiny").code() == ErrorCode::rate_limited);
  stats = auth->stats();
  CHECK(stats.reloads == 1);
  CHECK(stats.reload_failures == 2);
}

TEST_CASE("keys file: a new file is 0640 whatever the umask, a symbolic link is written through", "[keys_file]") {
  TempDir dir;
  const std::string path = dir.path() + "/keys.json";
  const mode_t old_umask = ::umask(022);
  REQUIRE(writeapi::update_keys_file(path, true, [](KeysFileContents*) { return Status(); }).ok());
  ::umask(old_umask);
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0640);

  // A link to the real file: the file changes, the link stays a link.
  const std::string link = dir.path() + "/link.json";
  REQUIRE(::symlink(path.c_str(), link.c_str()) == 0);
  REQUIRE(writeapi::update_keys_file(link, false, [](KeysFileContents* c) {
            c->buckets.emplace_back();
            c->buckets.back().name = "viaLink";
            return Status();
          }).ok());
  struct stat lst;
  REQUIRE(::lstat(link.c_str(), &lst) == 0);
  CHECK(S_ISLNK(lst.st_mode));
  KeysFileContents contents;
  REQUIRE(writeapi::read_keys_file(path, &contents).ok());
  REQUIRE(contents.buckets.size() == 1);
  CHECK(contents.buckets[0].name == "viaLink");
}
