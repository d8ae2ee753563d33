// Reading and writing the keys file (private to libwriteapi and its tools).
//
// The file is JSON:
//   {"buckets": {"<bucket>": {"keys": [{"id": "k1", "sha256": "<hex>",
//                                       "label": "...", "created": "..."}]}}}
// Unknown fields are kept by no one: readers ignore them.
#ifndef WRITEAPI_SRC_KEYS_FILE_H_
#define WRITEAPI_SRC_KEYS_FILE_H_

#include <string>
#include <vector>

#include "writeapi/status.h"

namespace writeapi {

struct KeyRecord {
  std::string id;
  std::string sha256;  // lowercase hex
  std::string label;
  std::string created;  // ISO 8601 UTC, may be empty
};

struct BucketRecord {
  std::string name;
  std::vector<KeyRecord> keys;
};

struct KeysFileContents {
  std::vector<BucketRecord> buckets;
};

// Reads and validates the keys file at `path`. Errors name the problem
// (never a key) and use ErrorCode::internal_error as a generic carrier.
Status read_keys_file(const std::string& path, KeysFileContents* contents);

}  // namespace writeapi

#endif  // WRITEAPI_SRC_KEYS_FILE_H_
