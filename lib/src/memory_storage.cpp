#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "range_read.h"
#include "writeapi/storage.h"

namespace writeapi {
namespace {

class MemoryStorage final : public Storage {
 public:
  Status append(const AppendBatch& batch) override {
    if (batch.item_count == 0) return Status();
    std::lock_guard<std::mutex> lock(mu_);
    Object& object = objects_[{std::string(batch.bucket), std::string(batch.key)}];
    object.lines.append(batch.lines);
    object.modified = std::chrono::system_clock::now();
    stats_.appends++;
    stats_.bytes_written += batch.lines.size();
    return Status();
  }

  Status list_keys(std::string_view bucket, std::vector<std::string>* keys) override {
    keys->clear();
    std::lock_guard<std::mutex> lock(mu_);
    std::string b(bucket);
    for (auto it = objects_.lower_bound({b, std::string()}); it != objects_.end() && it->first.first == b; ++it)
      keys->push_back(it->first.second);
    return Status();  // the map is ordered, so keys are sorted
  }

  Status read_object(std::string_view bucket, std::string_view key, std::string* contents) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = objects_.find({std::string(bucket), std::string(key)});
    if (it == objects_.end()) {
      contents->clear();
    } else {
      *contents = it->second.lines;
    }
    return Status();
  }

  Status read_range(std::string_view bucket, std::string_view key, std::string_view cursor, std::size_t max_lines,
                    std::size_t max_bytes, ReadChunk* chunk) override {
    *chunk = ReadChunk();
    std::lock_guard<std::mutex> lock(mu_);
    auto it = objects_.find({std::string(bucket), std::string(key)});
    chunk->exists = it != objects_.end();
    if (!chunk->exists) {  // never written: absent, whatever the (well-formed) cursor
      std::uint64_t offset = 0;
      if (!range_read::parse_position(cursor, &offset))
        return Status(ErrorCode::invalid_cursor, "the cursor is not one this object returned");
      chunk->next_cursor = range_read::format_position(offset);
      return Status();
    }
    return range_read::slice(it->second.lines, cursor, max_lines, max_bytes, chunk);
  }

  Status tail_cursor(std::string_view bucket, std::string_view key, std::size_t lines, std::string* cursor,
                     bool* exists) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = objects_.find({std::string(bucket), std::string(key)});
    *exists = it != objects_.end();
    *cursor = range_read::format_position(*exists ? range_read::tail_offset(it->second.lines, lines) : 0);
    return Status();
  }

  Status list_objects(std::string_view bucket, std::vector<ObjectInfo>* objects) override {
    objects->clear();
    std::lock_guard<std::mutex> lock(mu_);
    std::string b(bucket);
    for (auto it = objects_.lower_bound({b, std::string()}); it != objects_.end() && it->first.first == b; ++it)
      objects->push_back({it->first.second, it->second.lines.size(), it->second.modified});
    return Status();
  }

  StorageStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

 private:
  struct Object {
    std::string lines;
    std::chrono::system_clock::time_point modified;
  };
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, Object> objects_;
  StorageStats stats_;
};

}  // namespace

std::unique_ptr<Storage> make_memory_storage() { return std::make_unique<MemoryStorage>(); }

}  // namespace writeapi
