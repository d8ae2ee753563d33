#include "writeapi/keys_file.h"
#include "writeapi/response.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <simdjson.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <climits>

#include <charconv>
#include <cmath>
#include <cstring>
#include <ctime>
#include <set>

#include "writeapi/names.h"
#include "writeapi/parse.h"

namespace writeapi {
namespace {

Status bad(const std::string& path, const std::string& why) {
  return Status(ErrorCode::internal_error, "keys file " + path + ": " + why);
}

Status io_error(const std::string& what, const std::string& path) {
  return Status(ErrorCode::storage_error, what + " " + path + ": " + std::strerror(errno));
}

bool is_hex_digest(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) return false;
  return true;
}

// The request parser's deviceId rule: 1 to 256 bytes, no C0, DEL or C1
// control characters (the text is valid UTF-8, so C1 is 0xC2 0x80..0x9F).
bool is_valid_device_id(std::string_view s) {
  if (s.empty() || s.size() > kMaxDeviceIdBytes) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7F) return false;
    if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) < 0xA0) return false;
  }
  return true;
}

// Reads {"rate": R, "burst": B} (both optional, no other fields, plus
// "blocked" when `blocked` is given).
Status parse_rate_limit(simdjson::dom::element element, const std::string& path, const std::string& where,
                        RateLimitRecord* out, bool* blocked = nullptr) {
  simdjson::dom::object object;
  if (element.get_object().get(object) != simdjson::SUCCESS) return bad(path, where + " must be an object");
  for (auto [field, value] : object) {
    if (field == "rate" || field == "burst") {
      double number;
      if (value.get_double().get(number) != simdjson::SUCCESS || !std::isfinite(number))
        return bad(path, where + " \"" + std::string(field) + "\" must be a number");
      if (field == "rate") {
        if (!(number > 0)) return bad(path, where + " \"rate\" must be above 0 (requests per second)");
        out->rate = number;
      } else {
        if (!(number >= 1)) return bad(path, where + " \"burst\" must be at least 1");
        out->burst = number;
      }
    } else if (field == "blocked" && blocked) {
      if (value.get_bool().get(*blocked) != simdjson::SUCCESS)
        return bad(path, where + " \"blocked\" must be true or false");
    } else {
      return bad(path, where + " has an unknown field \"" + std::string(field) + "\" (allowed: rate, burst" +
                           (blocked ? ", blocked)" : ")"));
    }
  }
  return Status();
}

Status parse_limits(simdjson::dom::element element, const std::string& path, const std::string& bucket,
                    LimitsRecord* out) {
  const std::string where = "\"limits\" of bucket " + bucket;
  simdjson::dom::object object;
  if (element.get_object().get(object) != simdjson::SUCCESS) return bad(path, where + " must be an object");
  for (auto [field, value] : object) {
    if (field == "anonymous") {
      if (Status s = parse_rate_limit(value, path, where + ": \"anonymous\"", &out->anonymous); !s.ok()) return s;
    } else if (field == "device") {
      if (Status s = parse_rate_limit(value, path, where + ": \"device\"", &out->device); !s.ok()) return s;
    } else if (field == "max_suspension_s") {
      double number;
      if (value.get_double().get(number) != simdjson::SUCCESS || !(number >= 1) || !(number <= 31536000) ||
          number != std::floor(number))
        return bad(path, where + ": \"max_suspension_s\" must be a whole number of seconds from 1 to 31536000");
      out->max_suspension_seconds = static_cast<std::int64_t>(number);
    } else {
      return bad(path, where + " has an unknown field \"" + std::string(field) +
                           "\" (allowed: anonymous, device, max_suspension_s)");
    }
  }
  return Status();
}

Status parse_devices(simdjson::dom::element element, const std::string& path, const std::string& bucket,
                     std::vector<DeviceRecord>* out) {
  simdjson::dom::object object;
  if (element.get_object().get(object) != simdjson::SUCCESS)
    return bad(path, "\"devices\" of bucket " + bucket + " must be an object");
  std::set<std::string_view> seen;
  for (auto [device_id, value] : object) {
    if (!is_valid_device_id(device_id))
      return bad(path, "bucket " + bucket + " lists a device that is not a valid deviceId");
    if (!seen.insert(device_id).second)
      return bad(path, "bucket " + bucket + " lists device \"" + std::string(device_id) + "\" twice");
    DeviceRecord record;
    record.device_id = std::string(device_id);
    if (Status s = parse_rate_limit(value, path, "device \"" + record.device_id + "\" of bucket " + bucket,
                                    &record.limit, &record.blocked);
        !s.ok())
      return s;
    out->push_back(std::move(record));
  }
  return Status();
}

// Shortest text that reads back as the same double ("5", "0.5").
void append_number(std::string* out, double value) {
  char buffer[64];
  auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  out->append(buffer, result.ptr);
}

void append_rate_limit(std::string* out, const RateLimitRecord& limit, bool blocked) {
  *out += "{";
  const char* separator = "";
  if (blocked) {
    *out += "\"blocked\": true";
    separator = ", ";
  }
  if (limit.rate) {
    *out += separator;
    *out += "\"rate\": ";
    append_number(out, *limit.rate);
    separator = ", ";
  }
  if (limit.burst) {
    *out += separator;
    *out += "\"burst\": ";
    append_number(out, *limit.burst);
  }
  *out += "}";
}

RateLimit resolve(const RateLimitRecord& record, const RateLimit& fallback) {
  return RateLimit{record.rate.value_or(fallback.rate), record.burst.value_or(fallback.burst)};
}

// The sidecar lock of update_keys_file, released on destruction.
class FileLock {
 public:
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);  // closing the descriptor releases the flock
  }
  Status acquire(const std::string& lock_path) {
    fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd_ < 0) return io_error("cannot open lock file", lock_path);
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno != EINTR) return io_error("cannot lock", lock_path);
    }
    return Status();
  }

 private:
  int fd_ = -1;
};

std::string directory_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

BucketRecord* KeysFileContents::find_bucket(std::string_view name) {
  for (BucketRecord& bucket : buckets)
    if (bucket.name == name) return &bucket;
  return nullptr;
}

Status read_keys_file(const std::string& path, KeysFileContents* contents) {
  contents->buckets.clear();
  simdjson::padded_string json;
  if (simdjson::padded_string::load(path).get(json) != simdjson::SUCCESS) {
    if (::access(path.c_str(), F_OK) != 0 && errno == ENOENT)
      return Status(ErrorCode::not_found, "keys file " + path + " does not exist");
    return bad(path, "cannot be read");
  }
  return parse_keys_file(std::string_view(json.data(), json.size()), path, contents);
}

Status parse_keys_file(std::string_view text, const std::string& path, KeysFileContents* contents) {
  contents->buckets.clear();
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (auto error = parser.parse(text.data(), text.size()).get(root); error)
    return bad(path, std::string("is not valid JSON: ") + simdjson::error_message(error));
  simdjson::dom::object buckets;
  if (root["buckets"].get_object().get(buckets) != simdjson::SUCCESS) return bad(path, "needs a \"buckets\" object");
  std::set<std::string_view> bucket_names;
  for (auto [name, value] : buckets) {
    if (!is_valid_name(name)) return bad(path, "bucket name \"" + std::string(name) + "\" is not a valid name");
    if (!bucket_names.insert(name).second) return bad(path, "bucket " + std::string(name) + " appears twice");
    BucketRecord bucket;
    bucket.name = std::string(name);
    simdjson::dom::array keys;
    if (value["keys"].get_array().get(keys) != simdjson::SUCCESS)
      return bad(path, "bucket " + bucket.name + " needs a \"keys\" array");
    std::set<std::string> ids;
    for (simdjson::dom::element key : keys) {
      KeyRecord record;
      std::string_view text_value;
      if (key["id"].get_string().get(text_value) != simdjson::SUCCESS || text_value.empty())
        return bad(path, "a key of bucket " + bucket.name + " has no non-empty string \"id\"");
      record.id = std::string(text_value);
      if (!ids.insert(record.id).second)
        return bad(path, "key id " + record.id + " appears twice in bucket " + bucket.name);
      if (key["sha256"].get_string().get(text_value) != simdjson::SUCCESS || !is_hex_digest(text_value))
        return bad(path, "key " + record.id + " of bucket " + bucket.name +
                             " needs a \"sha256\" of 64 hex digits (the SHA-256 of the access key)");
      record.sha256 = std::string(text_value);
      if (key["label"].get_string().get(text_value) == simdjson::SUCCESS) record.label = std::string(text_value);
      if (key["created"].get_string().get(text_value) == simdjson::SUCCESS) record.created = std::string(text_value);
      bucket.keys.push_back(std::move(record));
    }
    simdjson::dom::element section;
    if (value["limits"].get(section) == simdjson::SUCCESS) {
      if (Status s = parse_limits(section, path, bucket.name, &bucket.limits); !s.ok()) return s;
    }
    if (value["devices"].get(section) == simdjson::SUCCESS) {
      if (Status s = parse_devices(section, path, bucket.name, &bucket.devices); !s.ok()) return s;
    }
    contents->buckets.push_back(std::move(bucket));
  }
  return Status();
}

std::string format_keys_file(const KeysFileContents& contents) {
  std::string out = "{\n  \"buckets\": {";
  for (std::size_t b = 0; b < contents.buckets.size(); ++b) {
    const BucketRecord& bucket = contents.buckets[b];
    out += b ? ",\n    " : "\n    ";
    append_json_string(&out, bucket.name);
    out += ": {\n      \"keys\": [";
    for (std::size_t k = 0; k < bucket.keys.size(); ++k) {
      const KeyRecord& key = bucket.keys[k];
      out += k ? ",\n        {\"id\": " : "\n        {\"id\": ";
      append_json_string(&out, key.id);
      out += ", \"sha256\": ";
      append_json_string(&out, key.sha256);
      if (!key.label.empty()) {
        out += ", \"label\": ";
        append_json_string(&out, key.label);
      }
      if (!key.created.empty()) {
        out += ", \"created\": ";
        append_json_string(&out, key.created);
      }
      out += "}";
    }
    out += bucket.keys.empty() ? "]" : "\n      ]";
    if (!bucket.limits.empty()) {
      out += ",\n      \"limits\": {";
      const char* separator = "";
      if (!bucket.limits.anonymous.empty()) {
        out += "\"anonymous\": ";
        append_rate_limit(&out, bucket.limits.anonymous, false);
        separator = ", ";
      }
      if (!bucket.limits.device.empty()) {
        out += separator;
        out += "\"device\": ";
        append_rate_limit(&out, bucket.limits.device, false);
        separator = ", ";
      }
      if (bucket.limits.max_suspension_seconds) {
        out += separator;
        out += "\"max_suspension_s\": " + std::to_string(*bucket.limits.max_suspension_seconds);
      }
      out += "}";
    }
    if (!bucket.devices.empty()) {
      out += ",\n      \"devices\": {";
      for (std::size_t d = 0; d < bucket.devices.size(); ++d) {
        out += d ? ",\n        " : "\n        ";
        append_json_string(&out, bucket.devices[d].device_id);
        out += ": ";
        append_rate_limit(&out, bucket.devices[d].limit, bucket.devices[d].blocked);
      }
      out += "\n      }";
    }
    out += "\n    }";
  }
  out += contents.buckets.empty() ? "}\n}\n" : "\n  }\n}\n";
  return out;
}

Status write_keys_file(const std::string& link_path, const KeysFileContents& contents) {
  // A keys file that is a symbolic link is written where it points (the
  // rename below would replace the link itself).
  std::string path = link_path;
  struct stat link;
  if (::lstat(link_path.c_str(), &link) == 0 && S_ISLNK(link.st_mode)) {
    char resolved[PATH_MAX];
    if (!::realpath(link_path.c_str(), resolved)) return io_error("cannot follow the symbolic link", link_path);
    path = resolved;
  }
  const std::string text = format_keys_file(contents);
  KeysFileContents check;
  if (Status s = parse_keys_file(text, path + " (new contents)", &check); !s.ok()) return s;
  // The temporary file sits beside the target: rename is atomic only
  // within one file system. Its name is unique per process; a leftover of a
  // crashed writer with a recycled pid is simply replaced.
  const std::string temporary = path + ".tmp." + std::to_string(::getpid());
  ::unlink(temporary.c_str());
  // A new keys file is readable by its owner and group only (0640 before
  // the umask), like the one the package creates.
  int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
  if (fd < 0) return io_error("cannot create", temporary);
  auto fail = [&](const std::string& what) {
    Status s = io_error(what, temporary);
    ::close(fd);
    ::unlink(temporary.c_str());
    return s;
  };
  struct stat existing;
  if (::stat(path.c_str(), &existing) == 0) {
    // The owner and group too, so that root editing a packaged keys file
    // (root:writeapi, 0640) leaves it readable by the service. Only root (or
    // a member of the file's group who owns it) may keep them: for anyone
    // else the new file is theirs, as any file they write.
    if (::fchown(fd, existing.st_uid, existing.st_gid) != 0 && errno != EPERM) return fail("cannot set the owner of");
    if (::fchmod(fd, existing.st_mode & 07777) != 0) return fail("cannot set the permissions of");
  }
  for (std::size_t written = 0; written < text.size();) {
    ssize_t n = ::write(fd, text.data() + written, text.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("cannot write");
    written += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("cannot sync");
  if (::close(fd) != 0) {
    fd = -1;
    Status s = io_error("cannot close", temporary);
    ::unlink(temporary.c_str());
    return s;
  }
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    Status s = io_error("cannot rename " + temporary + " to", path);
    ::unlink(temporary.c_str());
    return s;
  }
  // The rename is durable only once the directory entry is synced.
  const std::string directory = directory_of(path);
  int dir = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return io_error("cannot open directory", directory);
  const int rc = ::fsync(dir);
  ::close(dir);
  if (rc != 0) return io_error("cannot sync directory", directory);
  return Status();
}

Status update_keys_file(const std::string& path, bool create_if_missing,
                        const std::function<Status(KeysFileContents*)>& change) {
  FileLock lock;
  if (Status s = lock.acquire(path + ".lock"); !s.ok()) return s;
  KeysFileContents contents;
  Status s = read_keys_file(path, &contents);
  if (!s.ok() && !(s.code() == ErrorCode::not_found && create_if_missing)) return s;
  if (s = change(&contents); !s.ok()) return s;
  return write_keys_file(path, contents);
}

BucketLimitsMap bucket_limits(const KeysFileContents& contents) {
  BucketLimitsMap map;
  for (const BucketRecord& bucket : contents.buckets) {
    BucketLimits limits;
    limits.anonymous = resolve(bucket.limits.anonymous, limits.anonymous);
    limits.device = resolve(bucket.limits.device, limits.device);
    if (bucket.limits.max_suspension_seconds)
      limits.max_suspension = std::chrono::seconds(*bucket.limits.max_suspension_seconds);
    for (const DeviceRecord& device : bucket.devices) {
      DeviceRule rule;
      rule.blocked = device.blocked;
      rule.limit = resolve(device.limit, limits.device);
      limits.devices.emplace(device.device_id, rule);
    }
    map.emplace(bucket.name, std::move(limits));
  }
  return map;
}

Status generate_access_key(std::string* key) {
  unsigned char bytes[32];
  if (RAND_bytes(bytes, sizeof bytes) != 1)
    return Status(ErrorCode::internal_error, "the system's random number generator failed");
  static const char* kHex = "0123456789abcdef";
  key->assign(64, '0');
  for (std::size_t i = 0; i < sizeof bytes; ++i) {
    (*key)[2 * i] = kHex[bytes[i] >> 4];
    (*key)[2 * i + 1] = kHex[bytes[i] & 15];
  }
  OPENSSL_cleanse(bytes, sizeof bytes);
  return Status();
}

std::string next_key_id(const BucketRecord& bucket) {
  std::uint64_t highest = 0;
  for (const KeyRecord& key : bucket.keys) {
    if (key.id.size() < 2 || key.id.size() > 19 || key.id[0] != 'k') continue;
    std::uint64_t n = 0;
    auto [end, error] = std::from_chars(key.id.data() + 1, key.id.data() + key.id.size(), n);
    if (error == std::errc() && end == key.id.data() + key.id.size()) highest = std::max(highest, n);
  }
  std::string id = "k";
  id += std::to_string(highest + 1);  // not "k" + ...: GCC 12 warns falsely (-Wrestrict)
  return id;
}

bool is_valid_utf8(std::string_view text) { return simdjson::validate_utf8(text.data(), text.size()); }

std::string utc_now_iso8601() {
  std::time_t now = std::time(nullptr);
  std::tm tm;
  gmtime_r(&now, &tm);
  char buffer[32];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buffer;
}

}  // namespace writeapi
