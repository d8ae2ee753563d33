// writeapi-keys, run as a separate process the way an operator runs it.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "temp_dir.h"
#include "writeapi/auth.h"
#include "writeapi/keys_file.h"

#ifndef WRITEAPI_KEYS_PATH
#error "WRITEAPI_KEYS_PATH must name the writeapi-keys binary"
#endif

using writeapi::KeysFileContents;
using writeapi::Status;
using writeapi::testing::read_file;
using writeapi::testing::TempDir;
using writeapi::testing::write_file;

namespace {

struct Run {
  int exit_code = -1;
  std::string out, err;
};

// Starts writeapi-keys with `args`, its output going to files named after
// `output_prefix`.
pid_t spawn_keys(const std::vector<std::string>& args, const std::string& output_prefix) {
  // Everything is prepared before fork: the child of a multi-threaded
  // process may only make async-signal-safe calls until exec.
  std::vector<std::string> argv_strings = {WRITEAPI_KEYS_PATH};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  const std::string out_path = output_prefix + ".out", err_path = output_prefix + ".err";
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0 || err < 0) ::_exit(126);
    ::dup2(out, 1);
    ::dup2(err, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

Run finish(pid_t pid, const std::string& output_prefix) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
  }
  Run run;
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  run.out = read_file(output_prefix + ".out");
  run.err = read_file(output_prefix + ".err");
  return run;
}

class KeysTool {
 public:
  KeysTool() : keys_(dir_.path() + "/keys.json") {}
  const std::string& keys() const { return keys_; }
  const std::string& dir() const { return dir_.path(); }

  Run run(std::vector<std::string> args) {
    args.insert(args.begin(), {"--keys", keys_});
    const std::string prefix = dir_.path() + "/run";
    Run result = finish(spawn_keys(args, prefix), prefix);
    UNSCOPED_INFO("writeapi-keys exit " << result.exit_code << "\nstdout:\n"
                                        << result.out << "stderr:\n"
                                        << result.err);
    return result;
  }

  KeysFileContents contents() {
    KeysFileContents contents;
    Status s = writeapi::read_keys_file(keys_, &contents);
    INFO(s.message());
    REQUIRE(s.ok());
    return contents;
  }

 private:
  TempDir dir_;
  std::string keys_;
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The key printed by add-key: the last line of standard output.
std::string printed_key(const Run& run) {
  auto lines = lines_of(run.out);
  REQUIRE_FALSE(lines.empty());
  REQUIRE(run.out.back() == '\n');
  return lines.back();
}

bool is_lowercase_hex_key(const std::string& key) {
  return key.size() == 64 && key.find_first_not_of("0123456789abcdef") == std::string::npos;
}

// Does `key` open `bucket` according to the keys file at `path`?
bool authorizes(const std::string& path, const std::string& bucket, const std::string& key, std::string* id = nullptr) {
  Status status;
  auto auth = writeapi::make_keys_file_authorizer(path, &status);
  INFO(status.message());
  REQUIRE(auth);
  return auth->authorize(bucket, key, id).ok();
}

}  // namespace

TEST_CASE("keys cli: add-key creates the file and bucket, prints the key once, stores its hash", "[keys][cli]") {
  KeysTool tool;
  Run run = tool.run({"add-key", "homelab", "--label", "garden sensors"});
  REQUIRE(run.exit_code == 0);
  const std::string key = printed_key(run);
  CHECK(is_lowercase_hex_key(key));
  // Printed once, on the last line only.
  CHECK(run.out.find(key) == run.out.size() - key.size() - 1);

  KeysFileContents contents = tool.contents();
  REQUIRE(contents.buckets.size() == 1);
  const auto& bucket = contents.buckets[0];
  CHECK(bucket.name == "homelab");
  REQUIRE(bucket.keys.size() == 1);
  CHECK(bucket.keys[0].id == "k1");
  CHECK(bucket.keys[0].sha256 == writeapi::sha256_hex(key));
  CHECK(bucket.keys[0].label == "garden sensors");
  const std::string& created = bucket.keys[0].created;
  REQUIRE(created.size() == 20);
  CHECK(created[4] == '-');
  CHECK(created[10] == 'T');
  CHECK(created.back() == 'Z');
  // The key itself is nowhere in the file.
  CHECK(read_file(tool.keys()).find(key) == std::string::npos);

  std::string id;
  CHECK(authorizes(tool.keys(), "homelab", key, &id));
  CHECK(id == "k1");
  CHECK_FALSE(authorizes(tool.keys(), "otherlab", key));

  // --label=TEXT and no label work too; keys differ every time.
  Run second = tool.run({"add-key", "--label=second", "homelab"});
  REQUIRE(second.exit_code == 0);
  Run third = tool.run({"add-key", "homelab"});
  REQUIRE(third.exit_code == 0);
  std::set<std::string> keys = {key, printed_key(second), printed_key(third)};
  CHECK(keys.size() == 3);
  contents = tool.contents();
  REQUIRE(contents.buckets[0].keys.size() == 3);
  CHECK(contents.buckets[0].keys[1].id == "k2");
  CHECK(contents.buckets[0].keys[1].label == "second");
  CHECK(contents.buckets[0].keys[2].id == "k3");
  CHECK(contents.buckets[0].keys[2].label.empty());
  CHECK(contents.buckets[0].keys[2].sha256 == writeapi::sha256_hex(printed_key(third)));
}

TEST_CASE("keys cli: list shows buckets, ids, labels and dates, hashes only when asked", "[keys][cli]") {
  KeysTool tool;
  Run first = tool.run({"add-key", "homelab", "--label", "garden"});
  Run second = tool.run({"add-key", "otherlab", "--label", "lab \"B\""});
  REQUIRE(first.exit_code == 0);
  REQUIRE(second.exit_code == 0);
  const KeysFileContents contents = tool.contents();
  const std::string hash = contents.buckets[0].keys[0].sha256;

  Run list = tool.run({"list"});
  REQUIRE(list.exit_code == 0);
  CHECK(list.out.find("homelab") != std::string::npos);
  CHECK(list.out.find("otherlab") != std::string::npos);
  CHECK(list.out.find("k1") != std::string::npos);
  CHECK(list.out.find("garden") != std::string::npos);
  CHECK(list.out.find(contents.buckets[0].keys[0].created) != std::string::npos);
  CHECK(list.out.find("limits") != std::string::npos);
  CHECK(list.out.find(hash) == std::string::npos);
  CHECK(list.out.find(printed_key(first)) == std::string::npos);

  Run hashes = tool.run({"list", "--show-hashes"});
  REQUIRE(hashes.exit_code == 0);
  CHECK(hashes.out.find(hash) != std::string::npos);
  CHECK(hashes.out.find(contents.buckets[1].keys[0].sha256) != std::string::npos);
  CHECK(hashes.out.find(printed_key(first)) == std::string::npos);

  // A missing file is an error, not an empty list.
  std::filesystem::remove(tool.keys());
  CHECK(tool.run({"list"}).exit_code == 1);
}

TEST_CASE("keys cli: rotation with two live keys, then revoke the old one", "[keys][cli]") {
  KeysTool tool;
  Run old_run = tool.run({"add-key", "homelab", "--label", "2025 devices"});
  REQUIRE(old_run.exit_code == 0);
  const std::string old_key = printed_key(old_run);
  Run new_run = tool.run({"add-key", "homelab", "--label", "2026 devices"});
  REQUIRE(new_run.exit_code == 0);
  const std::string new_key = printed_key(new_run);

  // Both keys open the bucket while devices move over.
  std::string id;
  CHECK(authorizes(tool.keys(), "homelab", old_key, &id));
  CHECK(id == "k1");
  CHECK(authorizes(tool.keys(), "homelab", new_key, &id));
  CHECK(id == "k2");

  Run revoke = tool.run({"revoke", "homelab", "k1"});
  REQUIRE(revoke.exit_code == 0);
  CHECK_FALSE(authorizes(tool.keys(), "homelab", old_key));
  CHECK(authorizes(tool.keys(), "homelab", new_key));
  KeysFileContents contents = tool.contents();
  REQUIRE(contents.buckets[0].keys.size() == 1);
  CHECK(contents.buckets[0].keys[0].id == "k2");

  // Unknown key or bucket: exit 1, file untouched.
  const std::string before = read_file(tool.keys());
  Run unknown_key = tool.run({"revoke", "homelab", "k1"});
  CHECK(unknown_key.exit_code == 1);
  CHECK(unknown_key.err.find("k1") != std::string::npos);
  CHECK(tool.run({"revoke", "nolab", "k2"}).exit_code == 1);
  CHECK(read_file(tool.keys()) == before);

  // Revoking the last key leaves a bucket nobody can write to (and says so).
  Run last = tool.run({"revoke", "homelab", "k2"});
  REQUIRE(last.exit_code == 0);
  CHECK(last.out.find("no key") != std::string::npos);
  CHECK_FALSE(authorizes(tool.keys(), "homelab", new_key));
  // Ids count on from the highest one in the bucket (none left here).
  Run again = tool.run({"add-key", "homelab"});
  REQUIRE(again.exit_code == 0);
  CHECK(tool.contents().buckets[0].keys.at(0).id == "k1");
  CHECK(authorizes(tool.keys(), "homelab", printed_key(again)));
}

TEST_CASE("keys cli: remove-bucket removes one bucket, keeps the rest and hand-written limits", "[keys][cli]") {
  KeysTool tool;
  const std::string hash = writeapi::sha256_hex("key");
  write_file(tool.keys(), R"({"buckets": {
      "homelab": {"keys": [{"id": "demo", "sha256": ")" +
                              hash + R"("}],
                  "limits": {"anonymous": {"rate": 0.5, "burst": 5}, "max_suspension_s": 120},
                  "devices": {"outdoors_u871a": {"rate": 5, "burst": 20}, "broken_7": {"blocked": true}}},
      "oldlab": {"keys": [{"id": "k1", "sha256": ")" +
                              hash + R"("}]}}})");
  Run added = tool.run({"add-key", "homelab"});
  REQUIRE(added.exit_code == 0);
  Run removed = tool.run({"remove-bucket", "oldlab"});
  REQUIRE(removed.exit_code == 0);
  CHECK(tool.run({"remove-bucket", "oldlab"}).exit_code == 1);

  KeysFileContents contents = tool.contents();
  REQUIRE(contents.buckets.size() == 1);
  const auto& bucket = contents.buckets[0];
  CHECK(bucket.name == "homelab");
  REQUIRE(bucket.keys.size() == 2);
  CHECK(bucket.keys[0].id == "demo");
  CHECK(bucket.keys[1].id == "k1");
  CHECK(*bucket.limits.anonymous.rate == 0.5);
  CHECK(*bucket.limits.anonymous.burst == 5);
  CHECK(*bucket.limits.max_suspension_seconds == 120);
  REQUIRE(bucket.devices.size() == 2);
  CHECK(bucket.devices[0].device_id == "outdoors_u871a");
  CHECK(*bucket.devices[0].limit.burst == 20);
  CHECK(bucket.devices[1].blocked);

  Run list = tool.run({"list"});
  CHECK(list.out.find("oldlab") == std::string::npos);
  CHECK(list.out.find("broken_7") != std::string::npos);
  CHECK(list.out.find("blocked") != std::string::npos);
}

TEST_CASE("keys cli: a broken keys file is reported and left alone", "[keys][cli]") {
  KeysTool tool;
  write_file(tool.keys(), "{\"buckets\": {\"homelab\": {\"keys\": [");
  Run run = tool.run({"add-key", "homelab"});
  CHECK(run.exit_code == 1);
  CHECK(run.err.find(tool.keys()) != std::string::npos);
  CHECK(run.out.empty());  // no key printed for a change that was not made
  CHECK(read_file(tool.keys()) == "{\"buckets\": {\"homelab\": {\"keys\": [");
}

TEST_CASE("keys cli: usage errors exit 2, --help exits 0", "[keys][cli]") {
  KeysTool tool;
  Run help = tool.run({"--help"});
  CHECK(help.exit_code == 0);
  for (const char* word : {"add-key", "list", "revoke", "remove-bucket", "--show-hashes", "--label", "--keys"})
    CHECK(help.out.find(word) != std::string::npos);
  CHECK(tool.run({}).exit_code == 2);
  CHECK(tool.run({"frobnicate"}).exit_code == 2);
  CHECK(tool.run({"add-key"}).exit_code == 2);
  CHECK(tool.run({"add-key", "../etc"}).exit_code == 2);
  CHECK(tool.run({"add-key", "a", "b"}).exit_code == 2);
  CHECK(tool.run({"add-key", "a", "--label"}).exit_code == 2);
  CHECK(tool.run({"revoke", "homelab"}).exit_code == 2);
  CHECK(tool.run({"list", "--label", "x"}).exit_code == 2);
  CHECK(tool.run({"add-key", "a", "--show-hashes"}).exit_code == 2);
  CHECK(tool.run({"list", "--verbose"}).exit_code == 2);
  CHECK_FALSE(std::filesystem::exists(tool.keys()));
}

TEST_CASE("keys cli: concurrent add-key runs lose nothing and the file is always valid", "[keys][cli]") {
  KeysTool tool;
  REQUIRE(tool.run({"add-key", "homelab", "--label", "first"}).exit_code == 0);

  // A reader parses the file over and over while 20 writers run.
  std::atomic<bool> done{false};
  std::atomic<int> reads{0}, bad_reads{0};
  std::string first_bad;
  std::thread reader([&] {
    while (!done.load()) {
      KeysFileContents contents;
      Status s = writeapi::read_keys_file(tool.keys(), &contents);
      if (!s.ok() && bad_reads++ == 0) first_bad = s.message();
      ++reads;
    }
  });

  constexpr int kRuns = 20;
  std::vector<pid_t> pids;
  std::vector<std::string> prefixes;
  for (int i = 0; i < kRuns; ++i) {
    prefixes.push_back(tool.dir() + "/concurrent-" + std::to_string(i));
    const std::string bucket = i % 2 ? "homelab" : "otherlab";
    pids.push_back(
        spawn_keys({"--keys", tool.keys(), "add-key", bucket, "--label", "run " + std::to_string(i)}, prefixes.back()));
  }
  std::map<std::string, std::string> printed;  // label -> key
  for (int i = 0; i < kRuns; ++i) {
    Run run = finish(pids[static_cast<std::size_t>(i)], prefixes[static_cast<std::size_t>(i)]);
    INFO("run " << i << " stderr: " << run.err);
    REQUIRE(run.exit_code == 0);
    printed["run " + std::to_string(i)] = printed_key(run);
  }
  done = true;
  reader.join();
  INFO("first bad read: " << first_bad);
  CHECK(bad_reads == 0);
  CHECK(reads > 0);

  KeysFileContents contents = tool.contents();
  std::size_t found = 0;
  for (const auto& bucket : contents.buckets) {
    std::set<std::string> ids;
    for (const auto& key : bucket.keys) {
      CHECK(ids.insert(key.id).second);  // ids unique within the bucket
      if (key.label == "first") continue;
      auto it = printed.find(key.label);
      REQUIRE(it != printed.end());
      CHECK(key.sha256 == writeapi::sha256_hex(it->second));
      CHECK(((bucket.name == "homelab") == (std::stoi(key.label.substr(4)) % 2 == 1)));
      ++found;
    }
  }
  CHECK(found == kRuns);
  CHECK(contents.find_bucket("homelab")->keys.size() == kRuns / 2 + 1);
  CHECK(contents.find_bucket("otherlab")->keys.size() == kRuns / 2);
}
