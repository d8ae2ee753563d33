// The keys file as data: reading, validating, editing and rewriting it.
//
// KeysFileAuthorizer (auth.h) reads the file to answer requests; this
// header is for tools that maintain it (writeapi-keys is built on it alone)
// and for embedders that edit keys from their own code. KeysReloader
// (keys_reloader.h) picks up the changes while serving.
//
// The file is JSON:
//   {"buckets": {"<bucket>": {
//       "keys": [{"id": "k1", "sha256": "<hex>", "label": "...", "created": "..."}],
//       "limits": {"anonymous": {"rate": R, "burst": B},
//                  "device": {"rate": R, "burst": B}, "max_suspension_s": N},
//       "devices": {"<deviceId>": {"rate": R, "burst": B}, "<deviceId>": {"blocked": true}}}}}
// "limits", "devices" and every field inside them are optional; absent
// ones take the defaults of limits.h (a device rule without "burst" takes
// the bucket's device burst, and likewise for "rate"). Fields inside
// "limits" and "devices" are checked strictly, so a misspelt "brust" fails
// the load instead of silently meaning the default; elsewhere unknown
// fields are ignored by the reader and dropped by the writer.
//
// Writers serialize through update_keys_file: an exclusive flock on the
// sidecar "<file>.lock" (not on the file itself, which rename replaces),
// then read, change, write a temporary file in the same directory, fsync,
// rename over the file, fsync the directory. Readers never lock: they see
// either the old file or the new one, never a mix.
//
// Thread-safety: the functions are reentrant; update_keys_file serializes
// writers across threads and processes. A KeysFileContents is plain data,
// not to be shared between threads while one changes it.
#ifndef WRITEAPI_KEYS_FILE_H_
#define WRITEAPI_KEYS_FILE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "writeapi/export.h"
#include "writeapi/limits.h"
#include "writeapi/status.h"

namespace writeapi {

struct WRITEAPI_EXPORT KeyRecord {
  std::string id;
  std::string sha256;  // 64 hex digits
  std::string label;
  std::string created;  // ISO 8601 UTC, may be empty
};

// A token bucket as written in the file: absent fields are defaults.
struct WRITEAPI_EXPORT RateLimitRecord {
  std::optional<double> rate;
  std::optional<double> burst;
  bool empty() const { return !rate && !burst; }
};

struct WRITEAPI_EXPORT LimitsRecord {
  RateLimitRecord anonymous;
  RateLimitRecord device;
  std::optional<std::int64_t> max_suspension_seconds;
  bool empty() const { return anonymous.empty() && device.empty() && !max_suspension_seconds; }
};

struct WRITEAPI_EXPORT DeviceRecord {
  std::string device_id;
  bool blocked = false;
  RateLimitRecord limit;
};

struct WRITEAPI_EXPORT BucketRecord {
  std::string name;
  std::vector<KeyRecord> keys;
  LimitsRecord limits;
  std::vector<DeviceRecord> devices;  // in file order
};

struct WRITEAPI_EXPORT KeysFileContents {
  std::vector<BucketRecord> buckets;  // in file order

  // The bucket named `name`, or nullptr.
  BucketRecord* find_bucket(std::string_view name);
};

// Reads and validates the keys file at `path`. Errors name the file and
// the problem (never a key) and use ErrorCode::internal_error as a generic
// carrier; a missing file is not_found.
WRITEAPI_EXPORT Status read_keys_file(const std::string& path, KeysFileContents* contents);

// The same, from text already read (`path` only names it in messages).
WRITEAPI_EXPORT Status parse_keys_file(std::string_view text, const std::string& path, KeysFileContents* contents);

// The file's text: indented JSON that parse_keys_file reads back equal.
WRITEAPI_EXPORT std::string format_keys_file(const KeysFileContents& contents);

// Replaces the file at `path` with `contents` atomically (temporary file,
// fsync, rename, directory fsync). An existing file's permission bits are
// kept; a new one gets 0666 minus the umask. The text is parsed back
// before anything is written, so a file the server would reject (say, a
// label that is not UTF-8) is never installed. Callers that read before
// writing must hold the lock: use update_keys_file.
WRITEAPI_EXPORT Status write_keys_file(const std::string& path, const KeysFileContents& contents);

// Locks the file against other updaters, reads it (or starts empty when it
// does not exist and `create_if_missing`), applies `change`, and writes the
// result atomically. Nothing is written when `change` fails.
WRITEAPI_EXPORT Status update_keys_file(const std::string& path, bool create_if_missing,
                                        const std::function<Status(KeysFileContents*)>& change);

// The limits of every bucket of the file, defaults filled in.
WRITEAPI_EXPORT BucketLimitsMap bucket_limits(const KeysFileContents& contents);

// A new access key: 32 bytes from OpenSSL's CSPRNG as 64 lowercase hex
// digits. Fails (internal_error) only when the CSPRNG does.
WRITEAPI_EXPORT Status generate_access_key(std::string* key);

// "k<N+1>" where N is the highest numeric suffix of the bucket's "k<N>" ids
// (so "k1" for a bucket without such ids).
WRITEAPI_EXPORT std::string next_key_id(const BucketRecord& bucket);

// True when `text` is valid UTF-8 (labels must be, to stay valid JSON).
WRITEAPI_EXPORT bool is_valid_utf8(std::string_view text);

// The current UTC time as "YYYY-MM-DDTHH:MM:SSZ".
WRITEAPI_EXPORT std::string utc_now_iso8601();

}  // namespace writeapi

#endif  // WRITEAPI_KEYS_FILE_H_
