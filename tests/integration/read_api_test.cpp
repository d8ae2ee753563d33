// The Read API (GET /read/v3/..., GET /devices/v3/...) through the real
// server on the file store: cursors, tail, long-polls, limits, auth,
// streaming a 1 GiB object in bounded memory, reads during concurrent
// writes, and the devices view of the limiter.
#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "read_checks.h"
#include "server_process.h"
#include "writeapi/auth.h"

using namespace writeapi::testing;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// A /proc/<pid>/status field in KiB ("VmHWM", "VmRSS"); -1 when absent.
long proc_status_kib(pid_t pid, std::string_view field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(std::string(field) + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
  return -1;
}

}  // namespace

TEST_CASE("read: cursors chain across appends", "[integration][read]") {
  ServerProcess server;
  check_cursors_across_appends(server);
}

TEST_CASE("read: tail sends the last lines and its cursor goes on", "[integration][read]") {
  ServerProcess server;
  check_tail(server);
}

TEST_CASE("read: an object never written is 404 not_found", "[integration][read]") {
  ServerProcess server;
  check_not_found(server);
}

TEST_CASE("read: a waiting read wakes on a write to its object", "[integration][read]") {
  ServerProcess server;
  check_long_poll_wakes(server);
}

TEST_CASE("read: the keys of a bucket, sorted, with bytes and last write", "[integration][read]") {
  ServerProcess server;
  write_items(server, "zeta", "[1,2]");
  write_items(server, "alpha", R"({"t":1})");
  auto res = server.client()->Get("/read/v3/bucket/homelab", bearer());
  REQUIRE(res);
  INFO(res->body);
  REQUIRE(res->status == 200);
  CHECK(res->get_header_value("Content-Type") == "application/json");
  const std::regex shape(
      R"(\{"ok":true,"keys":\[\{"key":"alpha","bytes":8,"modified":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"\},)"
      R"(\{"key":"zeta","bytes":4,"modified":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"\}\]\}\n)");
  CHECK(std::regex_match(res->body, shape));
  // A bucket without objects.
  res = server.client()->Get("/read/v3/bucket/otherlab", bearer(kOtherAccessKey));
  REQUIRE(res);
  CHECK(res->body == "{\"ok\":true,\"keys\":[]}\n");
}

TEST_CASE("read: limit, tail and wait are bounded, bad parameters are 400", "[integration][read]") {
  ServerProcess server;
  std::string items = "[";
  for (int i = 0; i < 1500; ++i) {
    if (i > 0) items += ',';
    items += std::to_string(i);
  }
  items += "]";
  write_items(server, "many", items);
  // Default: 1000 lines.
  auto res = get_lines(server, "many");
  REQUIRE(res->status == 200);
  CHECK(split_lines(res->body).size() == 1000);
  res = get_lines(server, "many", "limit=100000");
  CHECK(split_lines(res->body).size() == 1500);
  res = get_lines(server, "many", "cursor=" + next_cursor(get_lines(server, "many")) + "&limit=3");
  CHECK(res->body == "1000\n1001\n1002\n");
  for (std::string_view query :
       {"limit=0", "limit=100001", "limit=x", "tail=0", "tail=100001", "wait=61", "wait=-1", "tail=2&cursor=0",
        "tail=2&wait=1", "tail=2&limit=5", "limit=1&limit=2", "colour=red", "cursor=%2F"}) {
    INFO("query " << query);
    res = get_lines(server, "many", query);
    CHECK(res->status == 400);
    CHECK(check_error_body(res->body, "invalid_parameter") == "");
  }
  for (std::string_view cursor : {"7", "99999999", "01"}) {  // not a line start, past the end, not a spelling
    INFO("cursor " << cursor);
    res = get_lines(server, "many", "cursor=" + std::string(cursor));
    CHECK(res->status == 400);
    CHECK(check_error_body(res->body, "invalid_cursor") == "");
  }
  // Only GET and HEAD.
  auto post = server.client()->Post(read_path("homelab", "many"), bearer(), "{}", "application/json");
  REQUIRE(post);
  CHECK(post->status == 405);
  CHECK(post->get_header_value("Allow") == "GET, HEAD");
  auto head = server.client()->Head(read_path("homelab", "many", "limit=2"), bearer());
  REQUIRE(head);
  CHECK(head->status == 200);
  CHECK(head->get_header_value("Content-Length") == "4");
}

TEST_CASE("read: only the bucket's key as a Bearer credential opens it", "[integration][read]") {
  ServerProcess server;
  write_items(server, "secret", "1");
  const std::vector<std::string> paths = {"/read/v3/bucket/homelab", read_path("homelab", "secret"),
                                          "/devices/v3/bucket/homelab"};
  for (const std::string& path : paths) {
    INFO("path " << path);
    auto client = server.client();
    // No key, another scheme, or the key in the URL: 401.
    for (const httplib::Headers& headers :
         {httplib::Headers{}, httplib::Headers{{"Authorization", "Basic " + std::string(kAccessKey)}},
          httplib::Headers{{"Authorization", "Bearer"}}}) {
      auto res = client->Get(path, headers);
      REQUIRE(res);
      CHECK(res->status == 401);
      CHECK(check_error_body(res->body, "missing_access_key") == "");
    }
    // A wrong key, another bucket's key and an unknown bucket: the same 403.
    auto wrong = client->Get(path, bearer("not-the-key"));
    auto other = client->Get(path, bearer(kOtherAccessKey));
    std::string unknown_path = path;
    unknown_path.replace(unknown_path.find("homelab"), 7, "nobucket");
    auto unknown = client->Get(unknown_path, bearer());
    REQUIRE((wrong && other && unknown));
    for (const auto* res : {&wrong, &other, &unknown}) {
      CHECK((*res)->status == 403);
      CHECK(check_error_body((*res)->body, "access_denied") == "");
      CHECK((*res)->body == wrong->body);
    }
  }
  // The key is never logged.
  server.wait_for_access_log_lines(paths.size() * 6);
  CHECK(server.access_log_contents().find(std::string(kAccessKey)) == std::string::npos);
  CHECK(server.access_log_contents().find(std::string(kOtherAccessKey)) == std::string::npos);
}

TEST_CASE("read: waiting reads hold no worker: writes and reads go on beside them", "[integration][read]") {
  ServerProcess server({"--threads", "2"});
  write_items(server, "quiet", "0");
  const std::string end = next_cursor(get_lines(server, "quiet"));
  // More waiting reads than workers.
  std::vector<std::unique_ptr<RawConnection>> waiting;
  for (int i = 0; i < 8; ++i) {
    waiting.push_back(std::make_unique<RawConnection>(server.port()));
    REQUIRE(waiting.back()->send("GET " + read_path("homelab", "quiet", "cursor=" + end + "&wait=20") +
                                 " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(kAccessKey) +
                                 "\r\n\r\n"));
  }
  std::this_thread::sleep_for(300ms);
  CHECK(server.metric("writeapi_read_watchers") == 8);
  const auto start = Clock::now();
  for (int i = 0; i < 20; ++i) write_items(server, "busy", std::to_string(i));
  check_lines(get_lines(server, "busy", "tail=1"), "19\n");
  CHECK(Clock::now() - start < 10s);  // not a figure: only that nothing waited for the long-polls
  // One write to their object answers all of them.
  write_items(server, "quiet", "1");
  for (auto& connection : waiting) {
    RawResponse res = connection->read_response(5s);
    CHECK(res.status == 200);
    CHECK(res.body == "1\n");
  }
}

TEST_CASE("read: --max-watchers caps waiting reads with 503 server_busy, a quarter per client address",
          "[integration][read]") {
  ServerProcess server({"--max-watchers", "8"});  // 2 per address
  write_items(server, "watched", "0");
  const std::string end = next_cursor(get_lines(server, "watched"));
  const std::string request = "GET " + read_path("homelab", "watched", "cursor=" + end + "&wait=20") +
                              " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(kAccessKey) + "\r\n\r\n";
  auto refused = [&](const char* source, std::string_view why) {
    INFO("from " << source << ": " << why);
    RawConnection connection(server.port(), source);
    REQUIRE(connection.send(request));
    RawResponse res = connection.read_response(5s);
    CHECK(res.status == 503);
    CHECK(check_error_body(res.body, "server_busy") == "");
    CHECK(error_message(res.body).find("--max-watchers") != std::string::npos);
    CHECK(res.header("retry-after") == "1");
  };
  std::vector<std::unique_ptr<RawConnection>> waiting;
  for (const char* source : {"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"}) {
    for (int i = 0; i < 2; ++i) {
      waiting.push_back(std::make_unique<RawConnection>(server.port(), source));
      REQUIRE(waiting.back()->send(request));
    }
    std::this_thread::sleep_for(100ms);
    if (std::string_view(source) == "127.0.0.1") refused(source, "its address's share is taken");
  }
  std::this_thread::sleep_for(200ms);
  CHECK(server.metric("writeapi_read_watchers") == 8);
  refused("127.0.0.5", "all 8 are taken");
  // A read that does not wait is still served.
  check_lines(get_lines(server, "watched"), "0\n");
  CHECK(server.metric("writeapi_read_watchers_refused_total") == 2);
  write_items(server, "watched", "1");
  for (auto& connection : waiting) CHECK(connection->read_response(5s).body == "1\n");
  // Room again.
  auto res = get_lines(server, "watched", "cursor=" + end + "&wait=1");
  check_lines(res, "1\n");
}

TEST_CASE("read: more woken reads than stream slots each get their first part", "[integration][read]") {
  ServerProcess server;
  write_items(server, "burst", "0");
  const std::string end = next_cursor(get_lines(server, "burst"));
  // 20 waits on one object, whose clients do not read yet: one write of
  // about 8 MB then wakes them all, and 16 streams (the slots) fill their
  // sockets and stay in flight.
  constexpr int kWaiting = 20, kLines = 8000;
  std::vector<std::unique_ptr<RawConnection>> waiting;
  for (int i = 0; i < kWaiting; ++i) {
    const std::string source = "127.0.0." + std::to_string(1 + i % 5);
    waiting.push_back(std::make_unique<RawConnection>(server.port(), source.c_str()));
    REQUIRE(waiting.back()->send("GET " + read_path("homelab", "burst", "cursor=" + end + "&limit=100000&wait=20") +
                                 " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(kAccessKey) +
                                 "\r\n\r\n"));
  }
  std::this_thread::sleep_for(300ms);
  REQUIRE(server.metric("writeapi_read_watchers") == kWaiting);
  const std::string item = "\"" + std::string(1000, 'b') + "\"";
  std::string items = "[";
  for (int i = 0; i < kLines; ++i) items += (i > 0 ? "," : "") + item;
  items += "]";
  write_items(server, "burst", items);
  std::this_thread::sleep_for(500ms);
  // While the slots are taken, HEAD answers the head a GET would get: its
  // first part.
  RawResponse head =
      raw_exchange(server.port(), "HEAD " + read_path("homelab", "burst", "cursor=" + end + "&limit=100000") +
                                      " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(kAccessKey) +
                                      "\r\nConnection: close\r\n\r\n");
  CHECK(head.status == 200);
  CHECK(std::stoul(head.header("content-length")) <= 256 * 1024);
  CHECK(std::stoul(head.header("x-next-cursor")) == std::stoul(end) + std::stoul(head.header("content-length")));
  int shortened = 0;
  std::vector<std::pair<std::size_t, std::string>> partial;  // lines so far, next cursor
  for (auto& connection : waiting) {
    RawResponse res = connection->read_response(30s);
    REQUIRE(res.status == 200);
    REQUIRE(res.body.size() == std::stoul(res.header("content-length")));
    REQUIRE((!res.body.empty() && res.body.back() == '\n'));
    const std::size_t lines = split_lines(res.body).size();
    if (lines < kLines) {
      ++shortened;
      CHECK(res.body.size() <= 256 * 1024);
      partial.emplace_back(lines, res.header("x-next-cursor"));
    } else {
      CHECK(lines == kLines);
    }
  }
  INFO(shortened << " of " << kWaiting << " answers shortened");
  CHECK(shortened >= kWaiting - 16);
  // Reading on from its cursor gets the rest. A read made while other
  // streams still hold every slot is shortened too (when the server is
  // slow, as under ASan, the last streams may still be finishing): chain
  // cursors, and count those answers as well.
  int rest_shortened = 0;
  for (auto& [lines, cursor] : partial) {
    for (int round = 0; lines < kLines && round < 64; ++round) {
      auto rest = get_lines(server, "burst", "cursor=" + cursor + "&limit=100000");
      REQUIRE(rest->status == 200);
      const std::size_t got = split_lines(rest->body).size();
      REQUIRE(got > 0);
      lines += got;
      if (lines < kLines) ++rest_shortened;
      cursor = rest->get_header_value("x-next-cursor");
    }
    CHECK(lines == kLines);
  }
  CHECK(server.metric("writeapi_read_answers_shortened_total") == shortened + rest_shortened);
}

TEST_CASE("read: a waiting read is answered when the server stops", "[integration][read]") {
  ServerProcess server;
  write_items(server, "stopping", "0");
  const std::string end = next_cursor(get_lines(server, "stopping"));
  RawConnection waiting(server.port());
  REQUIRE(waiting.send("GET " + read_path("homelab", "stopping", "cursor=" + end + "&wait=60") +
                       " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(kAccessKey) + "\r\n\r\n"));
  std::this_thread::sleep_for(300ms);
  const auto start = Clock::now();
  server.send_signal(SIGTERM);
  RawResponse res = waiting.read_response(10s);
  CHECK(res.status == 200);
  CHECK(res.body.empty());
  CHECK(res.header("x-next-cursor") == end);
  CHECK(server.wait_exit(10s) == 0);
  CHECK(Clock::now() - start < 10s);
}

TEST_CASE("read: a 1 GiB object streams with the server's peak RSS under 64 MiB", "[integration][read][large]") {
  ServerProcess server({"--fsync", "never"});
  // The object is 1 GiB of whole lines as an earlier run of the server left
  // it (writing it through HTTP would take minutes here); this server has
  // never opened it, so all of it is acknowledged.
  const std::string line = "{\"v\":\"" + std::string(10900, 'x') + "\"}\n";
  constexpr std::size_t kLines = 100000;  // the largest limit
  std::filesystem::create_directories(server.data_dir() + "/homelab");
  {
    std::ofstream out(server.object_path("homelab", "big"), std::ios::binary);
    for (std::size_t i = 0; i < kLines; ++i) out.write(line.data(), static_cast<std::streamsize>(line.size()));
  }
  const std::uint64_t size = kLines * line.size();
  REQUIRE(size > (1ull << 30));
  const long before = proc_status_kib(server.pid(), "VmHWM");
  auto client = server.client();
  client->set_read_timeout(300, 0);
  std::uint64_t received = 0, newlines = 0;
  std::string cursor;
  auto res = client->Get(
      read_path("homelab", "big", "limit=100000"), bearer(),
      [&](const httplib::Response& response) {
        cursor = response.get_header_value("X-Next-Cursor");
        return response.status == 200;
      },
      [&](const char* data, std::size_t length) {
        received += length;
        for (std::size_t i = 0; i < length; ++i) newlines += data[i] == '\n';
        return true;
      });
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(received == size);
  CHECK(newlines == kLines);
  CHECK(cursor == std::to_string(size));
  const long peak = proc_status_kib(server.pid(), "VmHWM");
  // With AddressSanitizer the 256 MiB quarantine and shadow memory come on
  // top; a bound below the object's size still shows it was streamed.
  const long bound_kib = address_sanitizer_build() ? 512 * 1024 : 64 * 1024;
  INFO("server VmHWM before " << before << " KiB, after " << peak << " KiB, bound " << bound_kib << " KiB");
  REQUIRE(peak > 0);
  CHECK(peak < bound_kib);
}

TEST_CASE("read: readers chaining cursors during concurrent writes see whole lines, each once",
          "[integration][read][concurrency]") {
  ServerProcess server({"--fsync", "never"});
  constexpr int kWriters = 4, kRequests = 60;
  std::atomic<int> failures{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w)
    writers.emplace_back([&, w] {
      auto client = server.client();
      for (int i = 0; i < kRequests; ++i) {
        // Items of growing size, three per request.
        std::string item = "{\"w\":" + std::to_string(w) + ",\"i\":" + std::to_string(i) + ",\"pad\":\"" +
                           std::string(static_cast<std::size_t>(50 + i * 300), 'p') + "\"}";
        auto res = client->Post(write_path("homelab", "contended"),
                                make_body("[" + item + "," + item + "," + item + "]"), "application/json");
        if (!res || res->status != 200) failures++;
      }
    });
  std::map<std::string, int> seen;
  std::size_t lines = 0;
  std::string cursor;
  bool bad_line = false;
  auto drain = [&](std::string_view extra) {
    for (;;) {
      auto client = server.client();
      auto res = client->Get(
          read_path("homelab", "contended", (cursor.empty() ? "" : "cursor=" + cursor + "&") + std::string(extra)),
          bearer());
      if (!res || res->status == 404) return;  // not written yet
      REQUIRE(res->status == 200);
      REQUIRE(res->body.size() == std::stoul(res->get_header_value("Content-Length")));
      if (res->body.empty()) return;
      REQUIRE(res->body.back() == '\n');
      for (const std::string& line : split_lines(res->body)) {
        if (line.empty() || line.front() != '{' || line.back() != '}') bad_line = true;
        seen[line]++;
        ++lines;
      }
      cursor = next_cursor(res);
    }
  };
  const auto until = Clock::now() + 60s;
  while (seen.size() < static_cast<std::size_t>(kWriters * kRequests) && Clock::now() < until) drain("limit=7");
  for (auto& t : writers) t.join();
  drain("limit=100");
  CHECK_FALSE(bad_line);
  REQUIRE(failures == 0);
  CHECK(lines == static_cast<std::size_t>(kWriters * kRequests * 3));
  CHECK(seen.size() == static_cast<std::size_t>(kWriters * kRequests));
  for (const auto& [line, count] : seen) CHECK(count == 3);
}

TEST_CASE("read: the devices view shows a suspended device with the time left", "[integration][read]") {
  ServerProcess server;
  // Tight limits for homelab's devices, through a reload of the keys file.
  const std::string keys = R"({"buckets": {"homelab": {"keys": [{"id": "demo", "sha256": ")" +
                           writeapi::sha256_hex(kAccessKey) +
                           R"("}], "limits": {"device": {"rate": 1, "burst": 2}}}}})";
  {
    std::ofstream out(server.keys_path() + ".new");
    out << keys;
  }
  REQUIRE(std::rename((server.keys_path() + ".new").c_str(), server.keys_path().c_str()) == 0);
  server.send_signal(SIGHUP);
  auto client = server.client();
  auto stuck_status = [&] {
    auto res = client->Post(write_path("homelab", "t"), make_body("1", kAccessKey, "stuck_sensor"), "application/json");
    REQUIRE(res);
    return std::make_pair(res->status, res->status == 429 && res->body.find("\"suspended\"") != std::string::npos
                                           ? std::stoi(res->get_header_value("Retry-After"))
                                           : 0);
  };
  // Until the new limits apply (the first refusal).
  const auto until = Clock::now() + 10s;
  while (stuck_status().first != 429 && Clock::now() < until) std::this_thread::sleep_for(20ms);
  write_items(server, "t", "1", "calm_sensor");
  int suspended_for = 0;
  for (int i = 0; i < 200 && suspended_for == 0; ++i) suspended_for = stuck_status().second;
  REQUIRE(suspended_for > 0);
  auto res = client->Get("/devices/v3/bucket/homelab", bearer());
  REQUIRE(res);
  INFO(res->body);
  REQUIRE(res->status == 200);
  const std::regex calm(
      R"(\{"deviceId":"calm_sensor","state":"ok","secondsLeft":0,"budget":\{"rate":1,"burst":2,"tokens":[12]\},)"
      R"("recentRequests":1,"recentRefusals":0\})");
  const std::regex stuck(
      R"(\{"deviceId":"stuck_sensor","state":"suspended","secondsLeft":(\d+),"budget":\{"rate":1,"burst":2,)"
      R"("tokens":0\},"recentRequests":(\d+),"recentRefusals":(\d+)\})");
  CHECK(std::regex_search(res->body, calm));
  std::smatch match;
  REQUIRE(std::regex_search(res->body, match, stuck));
  CHECK(std::stoi(match[1]) >= 1);
  CHECK(std::stoi(match[1]) <= suspended_for);
  CHECK(std::stoi(match[3]) >= 30);
  CHECK(res->body.find("\"truncated\":false") != std::string::npos);
  CHECK(res->body.rfind("{\"ok\":true,\"devices\":[", 0) == 0);
  // calm_sensor sorts first.
  CHECK(res->body.find("calm_sensor") < res->body.find("stuck_sensor"));
}

TEST_CASE("read: a streamed answer on a keep-alive connection is followed by the next request", "[integration][read]") {
  ServerProcess server({"--fsync", "never"});
  // Over one part (256 KiB): streamed.
  std::string items = "[";
  const std::string item = "\"" + std::string(1000, 'y') + "\"";
  for (int i = 0; i < 600; ++i) {
    if (i > 0) items += ',';
    items += item;
  }
  items += "]";
  write_items(server, "streamed", items);
  const std::string expected = server.read_object("homelab", "streamed");
  REQUIRE(expected.size() > 256 * 1024);
  RawConnection connection(server.port());
  const std::string get = "GET " + read_path("homelab", "streamed") + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
                          std::string(kAccessKey) + "\r\n\r\n";
  // Two requests pipelined, then a third after them.
  REQUIRE(connection.send(get + get));
  for (int i = 0; i < 2; ++i) {
    RawResponse res = connection.read_response(20s);
    REQUIRE(res.status == 200);
    CHECK(res.header("content-length") == std::to_string(expected.size()));
    CHECK(res.body == expected);
  }
  REQUIRE(connection.send(get));
  RawResponse res = connection.read_response(20s);
  CHECK(res.status == 200);
  CHECK(res.body == expected);
}
