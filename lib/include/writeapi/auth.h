// Authorization: may this access key write to this bucket?
//
// An Authorizer answers for a (bucket, access key) pair. The shipped one,
// made by make_keys_file_authorizer, reads a JSON keys file:
//
//   {"buckets": {"homelab": {"keys": [
//       {"id": "k1", "sha256": "<64 hex digits>", "label": "optional"}]}}}
//
// where "sha256" is the SHA-256 of the access key. Plain keys never appear
// in the file or in memory after hashing; the presented key is hashed and
// compared to the bucket's hashes in constant time. An unknown bucket and
// a wrong key get the same answer (access_denied), so buckets cannot be
// enumerated.
//
// Thread-safety: authorize() may be called concurrently with itself and
// with reload().
#ifndef WRITEAPI_AUTH_H_
#define WRITEAPI_AUTH_H_

#include <memory>
#include <string>
#include <string_view>

#include "writeapi/status.h"

namespace writeapi {

class Authorizer {
 public:
  virtual ~Authorizer() = default;

  // Ok when `access_key` opens `bucket`; access_denied otherwise.
  // `key_id`, when not null, receives the id of the matching key.
  virtual Status authorize(std::string_view bucket, std::string_view access_key,
                           std::string* key_id = nullptr) const = 0;
};

// An Authorizer backed by a keys file that can be re-read while serving.
class KeysFileAuthorizer : public Authorizer {
 public:
  // Re-reads the keys file. On success the new keys take effect at once
  // for later requests; on failure (unreadable, bad JSON, bad hash) the
  // previous keys stay in force and the returned status says why.
  virtual Status reload() = 0;

  // Path of the keys file.
  virtual const std::string& path() const = 0;
};

// Reads the keys file at `path`. On failure returns nullptr and sets
// *status (message names the problem, never a key).
std::unique_ptr<KeysFileAuthorizer> make_keys_file_authorizer(
    const std::string& path, Status* status);

// Lowercase hex SHA-256 of `data` (64 characters).
std::string sha256_hex(std::string_view data);

}  // namespace writeapi

#endif  // WRITEAPI_AUTH_H_
