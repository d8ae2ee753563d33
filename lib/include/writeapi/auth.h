// Authorization: may this access key write to this bucket?
//
// An Authorizer answers for a (bucket, access key) pair. The shipped one,
// made by make_keys_file_authorizer, reads a JSON keys file:
//
//   {"buckets": {"homelab": {"keys": [
//       {"id": "k1", "sha256": "<64 hex digits>", "label": "optional"}]}}}
//
// where "sha256" is the SHA-256 of the access key. A bucket may list
// several keys (rotation: add the new key, move the devices, revoke the
// old one). Plain keys never appear in the file or in memory after
// hashing. Per request, the presented key is hashed once, the bucket is
// found by one hash-table lookup, and the digest is compared with each of
// that bucket's few digests in constant time (CRYPTO_memcmp). An unknown
// bucket and a wrong key get the same answer (access_denied), so buckets
// cannot be enumerated; failures are counted per bucket (stats()).
//
// A bucket may also carry device limits (see limits.h), handed to a
// DeviceLimiter on every successful load:
//
//   "homelab": {"keys": [...],
//     "limits": {"anonymous": {"rate": 100, "burst": 2000},
//                "device": {"rate": 10, "burst": 100}, "max_suspension_s": 3600},
//     "devices": {"outdoors_u871a": {"rate": 5, "burst": 20},
//                 "broken_7": {"blocked": true}}}
//
// Every field of "limits" and of a device rule is optional (defaults in
// limits.h; a device rule's missing rate or burst is the bucket's device
// one); unknown fields there fail the load, so typos are not silently
// ignored. The writeapi-keys tool maintains the file.
//
// Thread-safety: authorize() and stats() may be called concurrently with
// themselves and with reload().
#ifndef WRITEAPI_AUTH_H_
#define WRITEAPI_AUTH_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "writeapi/export.h"
#include "writeapi/status.h"

namespace writeapi {

class DeviceLimiter;

class WRITEAPI_EXPORT Authorizer {
 public:
  virtual ~Authorizer() = default;

  // Ok when `access_key` opens `bucket`; access_denied otherwise.
  // `key_id`, when not null, receives the id of the matching key.
  virtual Status authorize(std::string_view bucket, std::string_view access_key,
                           std::string* key_id = nullptr) const = 0;
};

// An Authorizer backed by a keys file that can be re-read while serving.
class WRITEAPI_EXPORT KeysFileAuthorizer : public Authorizer {
 public:
  // Re-reads the keys file. On success the new keys take effect at once
  // for later requests; on failure (unreadable, bad JSON, bad hash) the
  // previous keys stay in force and the returned status says why.
  virtual Status reload() = 0;

  // Path of the keys file.
  virtual const std::string& path() const = 0;

  // Counters for monitoring.
  struct Stats {
    std::uint64_t reloads = 0;          // successful reload() calls
    std::uint64_t reload_failures = 0;  // failed reload() calls
    // Refused requests per bucket of the keys in force (zeros included),
    // sorted by bucket. A bucket's count survives reloads that keep it.
    std::vector<std::pair<std::string, std::uint64_t>> auth_failures;
    // Refused requests naming a bucket that is not in the keys file; one
    // counter, so clients cannot create unbounded per-bucket series.
    std::uint64_t unknown_bucket_failures = 0;
  };
  virtual Stats stats() const = 0;
};

// Reads the keys file at `path`. On failure returns nullptr and sets
// *status (message names the problem, never a key).
WRITEAPI_EXPORT std::unique_ptr<KeysFileAuthorizer> make_keys_file_authorizer(const std::string& path, Status* status);

// The same, and every successful load (the first and each reload) also
// hands the file's bucket limits to `limiter` (DeviceLimiter::set_limits),
// so keys and limits change together. `limiter` must outlive the result.
WRITEAPI_EXPORT std::unique_ptr<KeysFileAuthorizer> make_keys_file_authorizer(const std::string& path,
                                                                              DeviceLimiter* limiter, Status* status);

// Lowercase hex SHA-256 of `data` (64 characters).
WRITEAPI_EXPORT std::string sha256_hex(std::string_view data);

}  // namespace writeapi

#endif  // WRITEAPI_AUTH_H_
