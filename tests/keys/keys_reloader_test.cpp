// KeysReloader (writeapi/keys_reloader.h): reloads on request, notices an
// edit in place and a replacement by rename, keeps the previous keys when
// the new file is bad, and its background thread reloads and stops.
#include <stdlib.h>

#include <catch2/catch.hpp>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "writeapi/auth.h"
#include "writeapi/keys_file.h"
#include "writeapi/keys_reloader.h"

using writeapi::KeysReloader;
using writeapi::KeysReloaderOptions;
using writeapi::Status;

namespace {

struct Fixture {
  Fixture() {
    char pattern[] = "/tmp/writeapi-reloader-XXXXXX";
    REQUIRE(::mkdtemp(pattern) != nullptr);
    dir = pattern;
    path = dir + "/keys.json";
    write(key_file("first"));
    Status status;
    keys = writeapi::make_keys_file_authorizer(path, &status);
    REQUIRE(keys);
    options.poll_interval = std::chrono::milliseconds(0);  // tests call poll()
    options.log = [this](std::string_view line) {
      std::lock_guard<std::mutex> lock(mu);
      log.emplace_back(line);
      cv.notify_all();
    };
  }
  ~Fixture() { std::filesystem::remove_all(dir); }

  static std::string key_file(const std::string& key) {
    return R"({"buckets": {"b": {"keys": [{"id": "k1", "sha256": ")" + writeapi::sha256_hex(key) + R"("}]}}})";
  }
  void write(const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
    REQUIRE(out.good());
  }
  // Replaces the file by rename, as writeapi-keys does (same size, new inode).
  void replace(const std::string& text) {
    const std::string temporary = path + ".tmp";
    {
      std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
      out << text;
    }
    REQUIRE(std::rename(temporary.c_str(), path.c_str()) == 0);
  }
  bool opens(const std::string& key) { return keys->authorize("b", key).ok(); }
  std::string last_log() {
    std::lock_guard<std::mutex> lock(mu);
    return log.empty() ? std::string() : log.back();
  }

  std::string dir, path;
  std::unique_ptr<writeapi::KeysFileAuthorizer> keys;
  KeysReloaderOptions options;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> log;
};

}  // namespace

TEST_CASE("keys reloader: nothing changed, nothing reloaded", "[keys][reloader]") {
  Fixture f;
  KeysReloader reloader(f.keys.get(), f.options);
  CHECK_FALSE(reloader.poll());
  CHECK(reloader.reloads() == 0);
  CHECK(f.keys->stats().reloads == 0);
}

TEST_CASE("keys reloader: reload() reloads at once, changed or not", "[keys][reloader]") {
  Fixture f;
  KeysReloader reloader(f.keys.get(), f.options);
  REQUIRE(reloader.reload("SIGHUP").ok());
  CHECK(f.last_log() == "reloaded keys file " + f.path + " (SIGHUP)");
  f.write(Fixture::key_file("second-key"));
  REQUIRE(reloader.reload("SIGHUP").ok());
  CHECK(f.opens("second-key"));
  CHECK_FALSE(f.opens("first"));
  // The reload took the file as it is: no second reload for the same change.
  CHECK_FALSE(reloader.poll());
  CHECK(reloader.reloads() == 2);
}

TEST_CASE("keys reloader: an edit in place and a replacement by rename are noticed", "[keys][reloader]") {
  Fixture f;
  KeysReloader reloader(f.keys.get(), f.options);
  f.write(Fixture::key_file("edited-in-place"));  // another size
  CHECK(reloader.poll());
  CHECK(f.opens("edited-in-place"));
  CHECK(f.last_log() == "reloaded keys file " + f.path + " (file changed)");
  CHECK_FALSE(reloader.poll());
  f.replace(Fixture::key_file("renamed-over-it"));  // same size as the last one: a new inode
  CHECK(reloader.poll());
  CHECK(f.opens("renamed-over-it"));
}

TEST_CASE("keys reloader: a bad file keeps the previous keys and is not retried until it changes", "[keys][reloader]") {
  Fixture f;
  KeysReloader reloader(f.keys.get(), f.options);
  f.write("{ not json");
  CHECK(reloader.poll());
  CHECK(f.opens("first"));
  CHECK(f.last_log().rfind("keeping previous keys; reload failed: ", 0) == 0);
  CHECK_FALSE(reloader.poll());
  CHECK(f.keys->stats().reload_failures == 1);
  f.write(Fixture::key_file("fixed"));
  CHECK(reloader.poll());
  CHECK(f.opens("fixed"));
}

TEST_CASE("keys reloader: the background thread reloads a changed file and stops promptly", "[keys][reloader]") {
  Fixture f;
  f.options.poll_interval = std::chrono::milliseconds(1);
  {
    KeysReloader reloader(f.keys.get(), f.options);
    f.replace(Fixture::key_file("seen-by-the-thread"));  // atomic: never seen half written
    std::unique_lock<std::mutex> lock(f.mu);
    // Waits for the event, not for a time: the thread logs the reload.
    f.cv.wait(lock, [&] { return !f.log.empty(); });
    CHECK(f.log.back() == "reloaded keys file " + f.path + " (file changed)");
  }
  CHECK(f.opens("seen-by-the-thread"));
  // An hour's interval: the destructor does not wait it out.
  f.options.poll_interval = std::chrono::hours(1);
  { KeysReloader idle(f.keys.get(), f.options); }
  SUCCEED("stopped");
}
