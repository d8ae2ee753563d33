#include <writeapi/parse.h>
#include <writeapi/storage.h>

#include <cstdio>

int main() {
  writeapi::ParsedRequest request;
  writeapi::Status status = writeapi::parse(R"({"accessKey":"k","data":[1,{"a": 2}]})", &request);
  auto storage = writeapi::make_memory_storage();
  writeapi::AppendBatch batch;
  batch.bucket = "b";
  batch.key = "k";
  batch.lines = request.lines;
  batch.item_count = request.item_count;
  if (!status.ok() || !storage->append(batch).ok()) return 1;
  std::string contents;
  if (!storage->read_object("b", "k", &contents).ok()) return 1;
  std::printf("consumer read: %s", contents.c_str());
  return contents == "1\n{\"a\":2}\n" ? 0 : 1;
}
