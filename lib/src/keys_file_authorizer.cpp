#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "writeapi/auth.h"
#include "writeapi/keys_file.h"
#include "writeapi/limits.h"

namespace writeapi {
namespace {

using Digest = std::array<unsigned char, 32>;

Digest sha256(std::string_view data) {
  Digest digest{};
  unsigned int length = 0;
  EVP_Digest(data.data(), data.size(), digest.data(), &length, EVP_sha256(), nullptr);
  return digest;
}

bool parse_hex_digest(std::string_view hex, Digest* out) {
  if (hex.size() != 64) return false;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < 32; ++i) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    (*out)[i] = static_cast<unsigned char>(hi * 16 + lo);
  }
  return true;
}

// The keys in force: bucket name to the digests of its keys.
struct KeyEntry {
  std::string id;
  Digest digest;
};
struct BucketKeys {
  std::vector<KeyEntry> keys;
  // Shared with the next table while the bucket stays in the file, so
  // counts survive reloads.
  std::shared_ptr<std::atomic<std::uint64_t>> failures;
};
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
// Transparent hashing: the request's bucket (a string_view) is looked up
// without building a std::string.
using KeyTable = std::unordered_map<std::string, BucketKeys, StringHash, std::equal_to<>>;

class KeysFile final : public KeysFileAuthorizer {
 public:
  KeysFile(std::string path, DeviceLimiter* limiter) : path_(std::move(path)), limiter_(limiter) {}

  Status authorize(std::string_view bucket, std::string_view access_key, std::string* key_id) const override {
    const Digest presented = sha256(access_key);
    std::shared_ptr<const KeyTable> table = current();
    auto it = table->find(bucket);
    if (it == table->end()) {
      unknown_bucket_failures_.fetch_add(1, std::memory_order_relaxed);
      return denied();
    }
    // Every key of the bucket is compared, in constant time each, so the
    // time taken does not tell which key (or which prefix) was close.
    const KeyEntry* match = nullptr;
    for (const KeyEntry& entry : it->second.keys) {
      if (CRYPTO_memcmp(presented.data(), entry.digest.data(), presented.size()) == 0 && !match) match = &entry;
    }
    if (!match) {
      it->second.failures->fetch_add(1, std::memory_order_relaxed);
      return denied();
    }
    if (key_id) *key_id = match->id;
    return Status();
  }

  Status reload() override {
    Status s = load();
    (s.ok() ? reloads_ : reload_failures_).fetch_add(1, std::memory_order_relaxed);
    return s;
  }

  // Reads the file and swaps the new keys (and limits) in; on any error
  // nothing changes. Loads are serialized so that keys and limits in force
  // always come from the same file.
  Status load() {
    std::lock_guard<std::mutex> load_lock(load_mu_);
    KeysFileContents contents;
    if (Status s = read_keys_file(path_, &contents); !s.ok()) return s;
    std::shared_ptr<const KeyTable> old_table = current();
    auto table = std::make_shared<KeyTable>();
    for (const auto& bucket : contents.buckets) {
      BucketKeys& entries = (*table)[bucket.name];
      if (auto old = old_table->find(bucket.name); old != old_table->end()) {
        entries.failures = old->second.failures;
      } else {
        entries.failures = std::make_shared<std::atomic<std::uint64_t>>(0);
      }
      for (const auto& key : bucket.keys) {
        KeyEntry entry;
        entry.id = key.id;
        if (!parse_hex_digest(key.sha256, &entry.digest))
          return Status(ErrorCode::internal_error, "keys file " + path_ + ": key " + key.id + " of bucket " +
                                                       bucket.name + " has a malformed sha256 (want 64 hex digits)");
        entries.keys.push_back(std::move(entry));
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      table_ = std::move(table);
    }
    if (limiter_) limiter_->set_limits(bucket_limits(contents));
    return Status();
  }

  const std::string& path() const override { return path_; }

  Stats stats() const override {
    Stats stats;
    stats.reloads = reloads_.load(std::memory_order_relaxed);
    stats.reload_failures = reload_failures_.load(std::memory_order_relaxed);
    stats.unknown_bucket_failures = unknown_bucket_failures_.load(std::memory_order_relaxed);
    std::shared_ptr<const KeyTable> table = current();
    for (const auto& [name, bucket] : *table)
      stats.auth_failures.emplace_back(name, bucket.failures->load(std::memory_order_relaxed));
    std::sort(stats.auth_failures.begin(), stats.auth_failures.end());
    return stats;
  }

 private:
  static Status denied() { return Status(ErrorCode::access_denied, "the access key does not open this bucket"); }

  std::shared_ptr<const KeyTable> current() const {
    std::lock_guard<std::mutex> lock(mu_);
    return table_;
  }

  std::string path_;
  DeviceLimiter* limiter_;
  std::mutex load_mu_;
  mutable std::mutex mu_;  // guards table_ only: held for a pointer copy
  std::shared_ptr<const KeyTable> table_ = std::make_shared<KeyTable>();
  std::atomic<std::uint64_t> reloads_{0};
  std::atomic<std::uint64_t> reload_failures_{0};
  mutable std::atomic<std::uint64_t> unknown_bucket_failures_{0};
};

}  // namespace

std::unique_ptr<KeysFileAuthorizer> make_keys_file_authorizer(const std::string& path, Status* status) {
  return make_keys_file_authorizer(path, nullptr, status);
}

std::unique_ptr<KeysFileAuthorizer> make_keys_file_authorizer(const std::string& path, DeviceLimiter* limiter,
                                                              Status* status) {
  auto authorizer = std::make_unique<KeysFile>(path, limiter);
  Status s = authorizer->load();
  if (status) *status = s;
  if (!s.ok()) return nullptr;
  return authorizer;
}

std::string sha256_hex(std::string_view data) {
  Digest digest = sha256(data);
  static const char* kHex = "0123456789abcdef";
  std::string hex(64, '0');
  for (std::size_t i = 0; i < digest.size(); ++i) {
    hex[2 * i] = kHex[digest[i] >> 4];
    hex[2 * i + 1] = kHex[digest[i] & 15];
  }
  return hex;
}

}  // namespace writeapi
