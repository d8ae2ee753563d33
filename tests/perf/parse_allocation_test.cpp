// parse() when an allocation fails: it throws std::bad_alloc and keeps
// nothing. Built twice: against the library, and (as
// parse_allocation_cxx20_test) against parse.cpp built as C++20, where
// parse() writes its lines another way.
#include <catch2/catch.hpp>
#include <new>
#include <string>
#include <thread>

#include "counting_new.h"
#include "writeapi/parse.h"

using writeapi::testing::g_allocations;
using writeapi::testing::g_counting;
using writeapi::testing::g_fail_at;

// parse() may allocate at many points: the container stack (once per
// thread), the lines, the fields' copies, the set of field names,
// unescaped names, an error message. Each allocation of one call is made
// to fail in turn, each time on a new thread (whose stack has not grown)
// with a ParsedRequest that holds an earlier, smaller body's result:
// parse() throws std::bad_alloc and keeps nothing, neither of this body nor
// of the earlier one (the access key least of all), and the same
// ParsedRequest then parses the body as it should. (resize_and_overwrite,
// the C++23 way parse() writes its lines, must not see an exception from
// its operation: parse() catches and rethrows it.)
namespace {

struct Attempt {
  bool threw = false;
  bool kept_nothing = false;
  bool then_ok = false;
  bool any_allocation_failed = false;
};

Attempt fail_allocation(long fail_at, const std::string& body, writeapi::ErrorCode expected_code,
                        const std::string& expected_lines, const std::string& expected_key) {
  Attempt attempt;
  std::thread([&] {
    writeapi::ParsedRequest out;
    const std::string earlier = R"({"accessKey":"EARLIER-KEY","deviceId":"earlier","data":["earlier line"]})";
    if (!writeapi::parse(earlier, &out).ok()) return;
    g_allocations = 0;
    g_fail_at = fail_at;
    g_counting = true;
    try {
      (void)writeapi::parse(body, &out);
    } catch (const std::bad_alloc&) {
      attempt.threw = true;
    }
    g_counting = false;
    g_fail_at = -1;
    attempt.any_allocation_failed = g_allocations.load() > fail_at;
    attempt.kept_nothing = out.lines.empty() && out.access_key.empty() && out.device_id.empty() &&
                           out.request_id.empty() && out.item_count == 0 && !out.has_device_id && !out.has_request_id;
    writeapi::Status status = writeapi::parse(body, &out);
    attempt.then_ok = status.code() == expected_code && out.lines == expected_lines && out.access_key == expected_key;
  }).join();
  return attempt;
}

}  // namespace

TEST_CASE("parse: a failed allocation at any point throws std::bad_alloc and keeps nothing", "[perf][alloc]") {
  std::string big = R"({"accessKey":")" + std::string(100, 'k') + R"(","deviceId":")" + std::string(60, 'd') +
                    R"(","requestId":")" + std::string(40, 'r') + R"(",)";
  for (int i = 0; i < 12; ++i) big += R"("field\u00e9)" + std::to_string(i) + R"(":[1,{"a":"b"}],)";
  big += R"("data":[{"t":1},"x\ny"])" + std::string(3000, ' ') + "}";
  const std::string not_utf8 = R"({"accessKey":")" + std::string(40, 'K') + "\",\"data\":[\"caf\xff\"]}";
  struct Case {
    const char* name;
    std::string body;
    writeapi::ErrorCode code;
    std::string lines;
    std::string key;
  };
  const Case cases[] = {
      {"a body with long and escaped fields", big, writeapi::ErrorCode::ok, "{\"t\":1}\n\"x\\ny\"\n",
       std::string(100, 'k')},
      {"a body that is not UTF-8", not_utf8, writeapi::ErrorCode::invalid_utf8, "", ""},
  };
  for (const Case& c : cases) {
    long failures = 0;
    for (long fail_at = 0;; ++fail_at) {
      INFO(c.name << ": allocation " << fail_at << " fails");
      const Attempt attempt = fail_allocation(fail_at, c.body, c.code, c.lines, c.key);
      if (!attempt.any_allocation_failed) {
        CHECK_FALSE(attempt.threw);
        break;
      }
      ++failures;
      CHECK(attempt.threw);
      CHECK(attempt.kept_nothing);
      CHECK(attempt.then_ok);
      REQUIRE(fail_at < 1000);
    }
    INFO(c.name);
    CHECK(failures >= 2);  // at least the container stack and the lines' buffer
  }
}

// simdjson allocates when it is first used, inside noexcept functions,
// where a failed allocation would end the process. parse() makes that first
// use while the library loads; here (its own process under ctest) the first
// body with non-ASCII bytes, the first that needs simdjson's UTF-8 check,
// is parsed with each of its allocations failing in turn.
TEST_CASE("parse: the first body that needs the UTF-8 check survives failed allocations", "[perf][alloc]") {
  const std::string body = "{\"accessKey\":\"" + std::string(40, 'K') + "\",\"data\":[\"caf\xc3\xa9\"]}";
  long failures = 0;
  for (long fail_at = 0;; ++fail_at) {
    INFO("allocation " << fail_at << " fails");
    writeapi::ParsedRequest out;
    bool threw = false;
    writeapi::Status status;
    g_allocations = 0;
    g_fail_at = fail_at;
    g_counting = true;
    try {
      status = writeapi::parse(body, &out);
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    g_counting = false;
    g_fail_at = -1;
    if (!threw) {
      CHECK(status.ok());
      CHECK(out.lines == "\"caf\xc3\xa9\"\n");
      break;
    }
    ++failures;
    CHECK(out.lines.empty());
    CHECK(out.access_key.empty());
    REQUIRE(fail_at < 1000);
  }
  CHECK(failures >= 1);
}
