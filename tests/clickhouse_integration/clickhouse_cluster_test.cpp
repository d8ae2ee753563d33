// Two front-ends on a two-shard ClickHouse cluster: a MergeTree table on
// each shard and a Distributed table over them sharded by
// cityHash64(bucket, key), as docs/SCALING.md describes. Front-end A writes
// through shard 1's Distributed table, B through shard 2's, both to the same
// objects at once. Afterwards every acknowledged item is present exactly
// once, each object lives on one shard, and both shards read every object
// back identically, each front-end's requests whole and in order.
#include <httplib.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "clickhouse_support.h"
#include "server_process.h"
#include "writeapi/clickhouse.h"

using namespace writeapi::testing;

TEST_CASE("clickhouse cluster: two front-ends, two shards, the same objects", "[clickhouse][cluster]") {
  WRITEAPI_REQUIRE_CLICKHOUSE_OR_SKIP();
  const std::vector<std::string> shards = clickhouse_shard_urls();
  if (shards.size() != 2) {
    WARN("WRITEAPI_CLICKHOUSE_SHARD_URLS does not name two servers: cluster test skipped");
    return;
  }
  ScratchDatabase database(shards, "cluster");
  const std::string& db = database.name();
  writeapi::ClickHouseStorageOptions local;
  local.database = db;
  local.table = "lines_local";
  for (const std::string& shard : shards) {
    clickhouse_query(shard, writeapi::clickhouse_table_sql(local));
    clickhouse_query(shard, "CREATE TABLE `" + db + "`.lines AS `" + db + "`.lines_local ENGINE = Distributed(" +
                                clickhouse_cluster() + ", " + db + ", lines_local, cityHash64(bucket, key))");
  }

  ServerProcess front_a(clickhouse_server_args(shards[0], db, "lines"));
  ServerProcess front_b(clickhouse_server_args(shards[1], db, "lines"));

  // 2 front-ends x 4 clients x 60 requests of two items, spread over 12 objects.
  constexpr int kFrontEnds = 2, kClients = 4, kRequests = 60, kObjects = 12;
  std::atomic<int> failures{0};
  std::mutex mu;
  std::string first_failure;
  // Acknowledged requests: (front-end, client, sequence) -> object.
  std::map<std::tuple<int, int, int>, int> acknowledged;
  std::vector<std::thread> threads;
  for (int f = 0; f < kFrontEnds; ++f) {
    for (int c = 0; c < kClients; ++c) {
      threads.emplace_back([&, f, c] {
        auto client = (f == 0 ? front_a : front_b).client();
        for (int s = 0; s < kRequests; ++s) {
          int object = (s * 7 + c) % kObjects;
          std::string id = "\"f\":" + std::to_string(f) + ",\"c\":" + std::to_string(c) + ",\"s\":" + std::to_string(s);
          auto res = client->Post(write_path("homelab", "obj" + std::to_string(object)),
                                  make_body("[{" + id + ",\"i\":0},{" + id + ",\"i\":1}]"), "application/json");
          std::lock_guard<std::mutex> lock(mu);
          if (res && res->status == 200) {
            acknowledged[{f, c, s}] = object;
          } else if (failures++ == 0) {
            first_failure = res ? std::to_string(res->status) + " " + res->body : httplib::to_string(res.error());
          }
        }
      });
    }
  }
  for (auto& thread : threads) thread.join();
  INFO("first failure: " << first_failure);
  CHECK(failures == 0);

  auto reader_1 = clickhouse_reader(shards[0], db, "lines");
  auto reader_2 = clickhouse_reader(shards[1], db, "lines");
  std::set<std::tuple<int, int, int>> seen;
  int duplicates = 0, torn = 0, out_of_order = 0, misplaced = 0, not_on_one_shard = 0;
  for (int object = 0; object < kObjects; ++object) {
    const std::string key = "obj" + std::to_string(object);
    std::string contents_1, contents_2;
    REQUIRE(reader_1->read_object("homelab", key, &contents_1).ok());
    REQUIRE(reader_2->read_object("homelab", key, &contents_2).ok());
    CHECK(contents_1 == contents_2);  // one order, whichever shard answers

    std::vector<std::string> lines = split_lines(contents_1);
    REQUIRE(lines.size() % 2 == 0);
    std::map<std::pair<int, int>, int> last_seq;  // (front-end, client) -> last s
    for (std::size_t i = 0; i < lines.size(); i += 2) {
      int f = -1, c = -1, s = -1, i0 = -1, f2 = -1, c2 = -1, s2 = -1, i1 = -1;
      REQUIRE(std::sscanf(lines[i].c_str(), "{\"f\":%d,\"c\":%d,\"s\":%d,\"i\":%d}", &f, &c, &s, &i0) == 4);
      REQUIRE(std::sscanf(lines[i + 1].c_str(), "{\"f\":%d,\"c\":%d,\"s\":%d,\"i\":%d}", &f2, &c2, &s2, &i1) == 4);
      if (f != f2 || c != c2 || s != s2 || i0 != 0 || i1 != 1) torn++;
      if (!seen.insert({f, c, s}).second) duplicates++;
      auto it = acknowledged.find({f, c, s});
      if (it == acknowledged.end() || it->second != object) misplaced++;
      // One client's requests are sequential, so its lines keep their order.
      auto last = last_seq.find({f, c});
      if (last != last_seq.end() && last->second >= s) out_of_order++;
      last_seq[{f, c}] = s;
    }
    // The sharding key keeps an object on exactly one shard.
    std::string where = " WHERE bucket = 'homelab' AND key = '" + key + "'";
    int on_1 = std::stoi(clickhouse_query(shards[0], "SELECT count() FROM `" + db + "`.lines_local" + where));
    int on_2 = std::stoi(clickhouse_query(shards[1], "SELECT count() FROM `" + db + "`.lines_local" + where));
    if ((on_1 > 0) + (on_2 > 0) != 1) not_on_one_shard++;
    CHECK(on_1 + on_2 == static_cast<int>(lines.size()));
  }
  CHECK(torn == 0);
  CHECK(duplicates == 0);
  CHECK(misplaced == 0);
  CHECK(out_of_order == 0);
  CHECK(not_on_one_shard == 0);
  CHECK(seen.size() == acknowledged.size());  // every acknowledged request present
  CHECK(acknowledged.size() == static_cast<std::size_t>(kFrontEnds * kClients * kRequests));

  // Both shards hold data, and the two front-ends wrote under distinct ids.
  int local_1 = std::stoi(clickhouse_query(shards[0], "SELECT count() FROM `" + db + "`.lines_local"));
  int local_2 = std::stoi(clickhouse_query(shards[1], "SELECT count() FROM `" + db + "`.lines_local"));
  CHECK(local_1 > 0);
  CHECK(local_2 > 0);
  CHECK(clickhouse_query(shards[0], "SELECT uniqExact(frontend) FROM `" + db + "`.lines") == "2\n");
}
