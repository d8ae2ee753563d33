// Read API rules (writeapi/read.h): query parameters and the Bearer key.
#include <catch2/catch.hpp>

#include <string>

#include "writeapi/read.h"

using writeapi::ErrorCode;
using writeapi::ReadLimits;
using writeapi::ReadQuery;

TEST_CASE("read query: defaults when empty", "[read]") {
  ReadQuery q;
  REQUIRE(writeapi::parse_read_query("", ReadLimits(), &q).ok());
  CHECK(q.cursor.empty());
  CHECK(q.limit == 1000);
  CHECK(q.tail == 0);
  CHECK(q.wait_seconds == 0);
}

TEST_CASE("read query: every parameter parsed", "[read]") {
  ReadQuery q;
  REQUIRE(writeapi::parse_read_query("cursor=1234&limit=100000&wait=60", ReadLimits(), &q).ok());
  CHECK(q.cursor == "1234");
  CHECK(q.limit == 100000);
  CHECK(q.wait_seconds == 60);
  REQUIRE(writeapi::parse_read_query("tail=5", ReadLimits(), &q).ok());
  CHECK(q.tail == 5);
  REQUIRE(writeapi::parse_read_query("cursor=&limit=1", ReadLimits(), &q).ok());
  CHECK(q.cursor.empty());
  CHECK(q.limit == 1);
}

TEST_CASE("read query: bad parameters are invalid_parameter", "[read]") {
  for (const char* query :
       {"limit=0", "limit=100001", "limit=-1", "limit=abc", "limit=", "limit=1&limit=2", "tail=0", "tail=100001",
        "wait=61", "wait=1.5", "wait=-1", "cursor=a%20b", "cursor=a/b", "cursor=1&cursor=2", "accessKey=x", "foo",
        "tail=3&cursor=1", "tail=3&wait=1", "limit=99999999999999999999"}) {
    INFO(query);
    ReadQuery q;
    writeapi::Status s = writeapi::parse_read_query(query, ReadLimits(), &q);
    CHECK(s.code() == ErrorCode::invalid_parameter);
    CHECK_FALSE(s.message().empty());
  }
  ReadQuery q;
  CHECK(writeapi::parse_read_query("cursor=" + std::string(65, '1'), ReadLimits(), &q).code() ==
        ErrorCode::invalid_parameter);
}

TEST_CASE("bearer key: parsed, or missing_access_key", "[read]") {
  std::string key;
  REQUIRE(writeapi::bearer_access_key("Bearer abc123", &key).ok());
  CHECK(key == "abc123");
  REQUIRE(writeapi::bearer_access_key("bearer   abc123 ", &key).ok());
  CHECK(key == "abc123");
  for (const char* header : {"", "Bearer", "Bearer ", "Basic abc", "Bearerabc", "Bearer a b"}) {
    INFO(header);
    CHECK(writeapi::bearer_access_key(header, &key).code() == ErrorCode::missing_access_key);
    CHECK(key.empty());
  }
}
