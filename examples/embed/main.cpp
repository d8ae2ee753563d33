// Embedding libwriteapi: the same ingestion logic as writeapi-server, run
// in-process, with a Storage of our own (here: lines kept in a vector and
// printed). A real program would put its database behind Storage.
#include <writeapi/auth.h>
#include <writeapi/ingest.h>
#include <writeapi/storage.h>

#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

namespace {

// A Storage that records what it is given.
class PrintingStorage : public writeapi::Storage {
 public:
  writeapi::Status append(const writeapi::AppendBatch& batch) override {
    std::lock_guard<std::mutex> lock(mu_);
    objects_.push_back(std::string(batch.bucket) + "/" + std::string(batch.key));
    contents_.push_back(std::string(batch.lines));
    return writeapi::Status();
  }
  writeapi::Status list_keys(std::string_view, std::vector<std::string>* keys) override {
    keys->clear();
    return writeapi::Status();
  }
  writeapi::Status read_object(std::string_view, std::string_view, std::string* contents) override {
    contents->clear();
    return writeapi::Status();
  }
  void print() const {
    for (std::size_t i = 0; i < objects_.size(); ++i)
      std::printf("%s.jsonl gets:\n%s", objects_[i].c_str(), contents_[i].c_str());
  }

 private:
  std::mutex mu_;
  std::vector<std::string> objects_, contents_;
};

// An Authorizer of our own: one bucket, one key (a real program would use
// make_keys_file_authorizer or its own user database).
class OneKey : public writeapi::Authorizer {
 public:
  writeapi::Status authorize(std::string_view bucket, std::string_view key, std::string*) const override {
    if (bucket == "sensors" && key == "secret-key") return writeapi::Status();
    return writeapi::Status(writeapi::ErrorCode::access_denied, "wrong key");
  }
};

}  // namespace

int main() {
  PrintingStorage storage;
  OneKey authorizer;
  writeapi::Ingestor ingestor(&authorizer, &storage);

  writeapi::IngestRequest request;
  request.bucket = "sensors";
  request.key = "kitchen";
  request.content_type = "application/json";
  request.body = R"({"accessKey": "secret-key", "deviceId": "kitchen-1",
                     "data": [{"t": 1584156800, "c": 21.5}, {"t": 1584156860, "c": 21.6}, 42]})";
  writeapi::IngestResult result;
  writeapi::Status status = ingestor.ingest(request, &result);
  if (!status.ok()) {
    std::fprintf(stderr, "ingest failed: %d %s: %s\n", status.http_status(), std::string(status.name()).c_str(),
                 status.message().c_str());
    return 1;
  }
  std::printf("stored %zu items in sensors/kitchen from device %s\n", result.items, result.device_id.c_str());
  storage.print();

  // A wrong key is refused with the same status an HTTP client would see.
  request.body = R"({"accessKey": "guess", "data": 1})";
  status = ingestor.ingest(request, &result);
  std::printf("wrong key -> HTTP %d %s\n", status.http_status(), std::string(status.name()).c_str());
  return status.code() == writeapi::ErrorCode::access_denied ? 0 : 1;
}
