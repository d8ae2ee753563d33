#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <simdjson.h>

#include <array>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "keys_file.h"
#include "writeapi/auth.h"

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
using KeyTable = std::unordered_map<std::string, std::vector<KeyEntry>>;

class KeysFile final : public KeysFileAuthorizer {
 public:
  explicit KeysFile(std::string path) : path_(std::move(path)) {}

  Status authorize(std::string_view bucket, std::string_view access_key,
                   std::string* key_id) const override {
    const Digest presented = sha256(access_key);
    std::shared_ptr<const KeyTable> table = current();
    auto it = table->find(std::string(bucket));
    bool match = false;
    if (it != table->end()) {
      // Compare against every key of the bucket in constant time each.
      for (const KeyEntry& entry : it->second) {
        if (CRYPTO_memcmp(presented.data(), entry.digest.data(), presented.size()) == 0) {
          match = true;
          if (key_id) *key_id = entry.id;
        }
      }
    }
    if (match) return Status();
    return Status(ErrorCode::access_denied, "the access key does not open this bucket");
  }

  Status reload() override {
    KeysFileContents contents;
    if (Status s = read_keys_file(path_, &contents); !s.ok()) return s;
    auto table = std::make_shared<KeyTable>();
    for (const auto& bucket : contents.buckets) {
      auto& entries = (*table)[bucket.name];
      for (const auto& key : bucket.keys) {
        KeyEntry entry;
        entry.id = key.id;
        if (!parse_hex_digest(key.sha256, &entry.digest))
          return Status(ErrorCode::internal_error,
                        "keys file " + path_ + ": key " + key.id + " of bucket " + bucket.name +
                            " has a malformed sha256 (want 64 hex digits)");
        entries.push_back(std::move(entry));
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    table_ = std::move(table);
    return Status();
  }

  const std::string& path() const override { return path_; }

 private:
  std::shared_ptr<const KeyTable> current() const {
    std::lock_guard<std::mutex> lock(mu_);
    return table_;
  }

  std::string path_;
  mutable std::mutex mu_;
  std::shared_ptr<const KeyTable> table_ = std::make_shared<KeyTable>();
};

}  // namespace

std::unique_ptr<KeysFileAuthorizer> make_keys_file_authorizer(const std::string& path, Status* status) {
  auto authorizer = std::make_unique<KeysFile>(path);
  Status s = authorizer->reload();
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
