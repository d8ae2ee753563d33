// writeapi-keys: manages the keys file that writeapi-server reads.
//
// Every change goes through update_keys_file (writeapi/keys_file.h): an
// exclusive lock on "<file>.lock", read, change, write to a temporary file,
// fsync, rename, fsync the directory. So concurrent runs never lose each
// other's changes and a crash never leaves a half-written file; the server
// notices the new file within a second (or on SIGHUP).
#include <fmt/core.h>

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "writeapi/auth.h"
#include "writeapi/keys_file.h"
#include "writeapi/names.h"
#include "writeapi/version.h"

namespace {

using writeapi::BucketRecord;
using writeapi::ErrorCode;
using writeapi::KeyRecord;
using writeapi::KeysFileContents;
using writeapi::Status;

constexpr const char* kUsage = R"(Usage: writeapi-keys [--keys FILE] COMMAND [ARGS]

Manages the keys file of writeapi-server (default ./keys.json). The file holds
only SHA-256 hashes of access keys. Every change is written atomically and
serialized with other writeapi-keys runs; a running server applies it within
a second or two (or at once on SIGHUP), without a restart.

Commands:
  add-key BUCKET [--label TEXT]  create a new access key for BUCKET (and the
                                 bucket if needed). Prints the key once, alone
                                 on the last line: store it now, it cannot be
                                 shown again.
  list [--show-hashes]           buckets, key ids, labels, creation dates and
                                 effective device limits (hashes on request)
  revoke BUCKET KEY_ID           remove one key; requests with it are refused
  remove-bucket BUCKET           remove a bucket with its keys and limits
                                 (stored data is not touched)

Rotation without downtime: add-key, give the new key to the devices, then
revoke the old key. Both keys work in between.

Device limits ("limits", "devices" of a bucket) are edited by hand in the file
(see the README, "Operations"); this tool keeps them as they are.

Options: --keys FILE (the keys file), --version, --help.

Exit status: 0 done, 1 failed (message on standard error), 2 usage error.
)";

int fail(const Status& status) {
  fmt::print(stderr, "writeapi-keys: {}\n", status.message());
  return 1;
}

int usage_error(std::string_view message) {
  fmt::print(stderr, "writeapi-keys: {} (see --help)\n", message);
  return 2;
}

std::string quoted(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out + "\"";
}

int add_key(const std::string& path, const std::string& bucket_name, const std::string& label) {
  if (!writeapi::is_valid_name(bucket_name))
    return usage_error("bucket name \"" + bucket_name +
                       "\" is not valid: 1 to 128 characters of A-Z a-z 0-9 . _ -, not starting with .");
  if (!writeapi::is_valid_utf8(label)) return usage_error("the label must be UTF-8 text");
  std::string key;
  if (Status s = writeapi::generate_access_key(&key); !s.ok()) return fail(s);
  std::string id;
  bool created_bucket = false;
  Status s = writeapi::update_keys_file(path, /*create_if_missing=*/true, [&](KeysFileContents* contents) {
    BucketRecord* bucket = contents->find_bucket(bucket_name);
    if (!bucket) {
      contents->buckets.push_back(BucketRecord{});
      bucket = &contents->buckets.back();
      bucket->name = bucket_name;
      created_bucket = true;
    }
    KeyRecord record;
    record.id = id = writeapi::next_key_id(*bucket);
    record.sha256 = writeapi::sha256_hex(key);
    record.label = label;
    record.created = writeapi::utc_now_iso8601();
    bucket->keys.push_back(std::move(record));
    return Status();
  });
  if (!s.ok()) return fail(s);
  fmt::print("{}added key {} to bucket {} in {}\n", created_bucket ? "created bucket " + bucket_name + "; " : "", id,
             bucket_name, path);
  fmt::print("the access key follows; store it now, only its SHA-256 is kept:\n");
  fmt::print("{}\n", key);
  std::fflush(stdout);
  return 0;
}

std::string rate_text(const writeapi::RateLimit& limit) {
  return fmt::format("{}/s burst {}", limit.rate, limit.burst);
}

int list(const std::string& path, bool show_hashes) {
  KeysFileContents contents;
  if (Status s = writeapi::read_keys_file(path, &contents); !s.ok()) return fail(s);
  if (contents.buckets.empty()) fmt::print("no buckets in {}\n", path);
  const writeapi::BucketLimitsMap limits = writeapi::bucket_limits(contents);
  for (const BucketRecord& bucket : contents.buckets) {
    fmt::print("bucket {}\n", bucket.name);
    if (bucket.keys.empty()) fmt::print("  no keys: every write is refused\n");
    for (const KeyRecord& key : bucket.keys) {
      fmt::print("  key {}  created {}  label {}", key.id, key.created.empty() ? "-" : key.created,
                 key.label.empty() ? "-" : quoted(key.label));
      if (show_hashes) fmt::print("  sha256 {}", key.sha256);
      fmt::print("\n");
    }
    const writeapi::BucketLimits& effective = limits.at(bucket.name);
    fmt::print("  limits: anonymous {}, device {}, max suspension {} s\n", rate_text(effective.anonymous),
               rate_text(effective.device), effective.max_suspension.count());
    for (const writeapi::DeviceRecord& device : bucket.devices) {
      const writeapi::DeviceRule& rule = effective.devices.at(device.device_id);
      fmt::print("  device {}: {}\n", quoted(device.device_id), rule.blocked ? "blocked" : rate_text(rule.limit));
    }
  }
  return 0;
}

int revoke(const std::string& path, const std::string& bucket_name, const std::string& key_id) {
  std::size_t left = 0;
  Status s = writeapi::update_keys_file(path, /*create_if_missing=*/false, [&](KeysFileContents* contents) {
    BucketRecord* bucket = contents->find_bucket(bucket_name);
    if (!bucket) return Status(ErrorCode::not_found, "bucket " + bucket_name + " is not in " + path);
    for (auto it = bucket->keys.begin(); it != bucket->keys.end(); ++it) {
      if (it->id == key_id) {
        bucket->keys.erase(it);
        left = bucket->keys.size();
        return Status();
      }
    }
    std::string ids;
    for (const KeyRecord& key : bucket->keys) ids += (ids.empty() ? "" : ", ") + key.id;
    return Status(ErrorCode::not_found, "bucket " + bucket_name + " has no key " + key_id +
                                            (ids.empty() ? " (it has no keys)" : " (its keys: " + ids + ")"));
  });
  if (!s.ok()) return fail(s);
  fmt::print("revoked key {} of bucket {}; {} key{} left\n", key_id, bucket_name, left, left == 1 ? "" : "s");
  if (left == 0) fmt::print("bucket {} has no key now: every write to it is refused until add-key\n", bucket_name);
  return 0;
}

int remove_bucket(const std::string& path, const std::string& bucket_name) {
  std::size_t keys = 0;
  Status s = writeapi::update_keys_file(path, /*create_if_missing=*/false, [&](KeysFileContents* contents) {
    for (auto it = contents->buckets.begin(); it != contents->buckets.end(); ++it) {
      if (it->name == bucket_name) {
        keys = it->keys.size();
        contents->buckets.erase(it);
        return Status();
      }
    }
    return Status(ErrorCode::not_found, "bucket " + bucket_name + " is not in " + path);
  });
  if (!s.ok()) return fail(s);
  fmt::print("removed bucket {} and its {} key{}; its stored data is untouched\n", bucket_name, keys,
             keys == 1 ? "" : "s");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string path = "keys.json";
  std::string label;
  bool has_label = false, show_hashes = false;
  std::vector<std::string> words;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view value;
    bool inline_value = false;
    if (auto eq = arg.find('='); arg.substr(0, 2) == "--" && eq != std::string_view::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      inline_value = true;
    }
    auto take_value = [&]() -> bool {
      if (inline_value) return true;
      if (i + 1 >= argc) return false;
      value = argv[++i];
      return true;
    };
    if (arg == "--help" || arg == "-h") {
      fmt::print("{}", kUsage);
      return 0;
    } else if (arg == "--version" && !inline_value) {
      fmt::print("writeapi-keys {}\n", writeapi::kVersion);
      return 0;
    } else if (arg == "--keys") {
      if (!take_value() || value.empty()) return usage_error("--keys needs a file");
      path = std::string(value);
    } else if (arg == "--label") {
      if (!take_value()) return usage_error("--label needs a text");
      label = std::string(value);
      has_label = true;
    } else if (arg == "--show-hashes" && !inline_value) {
      show_hashes = true;
    } else if (arg.size() > 1 && arg[0] == '-') {
      return usage_error("unknown option " + std::string(arg));
    } else {
      words.emplace_back(arg);
    }
  }
  if (words.empty()) return usage_error("no command given");
  const std::string& command = words[0];
  auto expect_args = [&](std::size_t n, const char* shape) {
    if (words.size() != n + 1) {
      usage_error(fmt::format("usage: writeapi-keys [--keys FILE] {} {}", command, shape));
      return false;
    }
    return true;
  };
  if (has_label && command != "add-key") return usage_error("--label goes with add-key only");
  if (show_hashes && command != "list") return usage_error("--show-hashes goes with list only");

  if (command == "add-key") {
    if (!expect_args(1, "BUCKET [--label TEXT]")) return 2;
    return add_key(path, words[1], label);
  }
  if (command == "list") {
    if (!expect_args(0, "[--show-hashes]")) return 2;
    return list(path, show_hashes);
  }
  if (command == "revoke") {
    if (!expect_args(2, "BUCKET KEY_ID")) return 2;
    return revoke(path, words[1], words[2]);
  }
  if (command == "remove-bucket") {
    if (!expect_args(1, "BUCKET")) return 2;
    return remove_bucket(path, words[1]);
  }
  return usage_error("unknown command " + command);
}
