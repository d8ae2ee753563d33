#include <algorithm>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "writeapi/storage.h"

namespace writeapi {
namespace {

class MemoryStorage final : public Storage {
 public:
  Status append(const AppendBatch& batch) override {
    if (batch.item_count == 0) return Status();
    std::lock_guard<std::mutex> lock(mu_);
    objects_[{std::string(batch.bucket), std::string(batch.key)}].append(batch.lines);
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
      *contents = it->second;
    }
    return Status();
  }

  StorageStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, std::string> objects_;
  StorageStats stats_;
};

}  // namespace

std::unique_ptr<Storage> make_memory_storage() { return std::make_unique<MemoryStorage>(); }

}  // namespace writeapi
