#include "keys_file.h"

#include <simdjson.h>

#include "writeapi/names.h"

namespace writeapi {
namespace {

Status bad(const std::string& path, const std::string& why) {
  return Status(ErrorCode::internal_error, "keys file " + path + ": " + why);
}

}  // namespace

Status read_keys_file(const std::string& path, KeysFileContents* contents) {
  contents->buckets.clear();
  simdjson::padded_string json;
  if (simdjson::padded_string::load(path).get(json) != simdjson::SUCCESS)
    return bad(path, "cannot be read");
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (auto error = parser.parse(json).get(root); error)
    return bad(path, std::string("is not valid JSON: ") + simdjson::error_message(error));
  simdjson::dom::object buckets;
  if (root["buckets"].get_object().get(buckets) != simdjson::SUCCESS)
    return bad(path, "needs a \"buckets\" object");
  for (auto [name, value] : buckets) {
    if (!is_valid_name(name)) return bad(path, "bucket name \"" + std::string(name) + "\" is not a valid name");
    BucketRecord bucket;
    bucket.name = std::string(name);
    simdjson::dom::array keys;
    if (value["keys"].get_array().get(keys) != simdjson::SUCCESS)
      return bad(path, "bucket " + bucket.name + " needs a \"keys\" array");
    for (simdjson::dom::element key : keys) {
      KeyRecord record;
      std::string_view text;
      if (key["id"].get_string().get(text) != simdjson::SUCCESS)
        return bad(path, "a key of bucket " + bucket.name + " has no string \"id\"");
      record.id = std::string(text);
      if (key["sha256"].get_string().get(text) != simdjson::SUCCESS)
        return bad(path, "key " + record.id + " of bucket " + bucket.name + " has no string \"sha256\"");
      record.sha256 = std::string(text);
      if (key["label"].get_string().get(text) == simdjson::SUCCESS) record.label = std::string(text);
      if (key["created"].get_string().get(text) == simdjson::SUCCESS) record.created = std::string(text);
      bucket.keys.push_back(std::move(record));
    }
    contents->buckets.push_back(std::move(bucket));
  }
  return Status();
}

}  // namespace writeapi
