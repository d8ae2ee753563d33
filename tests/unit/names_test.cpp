// Bucket/key names, percent-decoding and write-target parsing.
#include <catch2/catch.hpp>

#include <string>

#include "writeapi/names.h"

using writeapi::ErrorCode;
using writeapi::is_valid_name;
using writeapi::parse_write_target;
using writeapi::percent_decode;
using writeapi::Status;

TEST_CASE("is_valid_name accepts the allowed alphabet", "[names]") {
  CHECK(is_valid_name("a"));
  CHECK(is_valid_name("homelab"));
  CHECK(is_valid_name("outdoors_temp1"));
  CHECK(is_valid_name("A-Z.a_z-0.9"));
  CHECK(is_valid_name("0123456789"));
  CHECK(is_valid_name("a."));
  CHECK(is_valid_name("a..b"));
  CHECK(is_valid_name("-leading-dash"));
  CHECK(is_valid_name("_"));
  CHECK(is_valid_name(std::string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")));
}

TEST_CASE("is_valid_name length limits", "[names]") {
  CHECK(writeapi::kMaxNameLength == 128);
  CHECK_FALSE(is_valid_name(""));
  CHECK(is_valid_name(std::string(1, 'x')));
  CHECK(is_valid_name(std::string(128, 'x')));
  CHECK_FALSE(is_valid_name(std::string(129, 'x')));
  CHECK_FALSE(is_valid_name(std::string(1000, 'x')));
}

TEST_CASE("is_valid_name rejects dots at the start, separators and other bytes", "[names]") {
  CHECK_FALSE(is_valid_name("."));
  CHECK_FALSE(is_valid_name(".."));
  CHECK_FALSE(is_valid_name(".hidden"));
  CHECK_FALSE(is_valid_name("a/b"));
  CHECK_FALSE(is_valid_name("/"));
  CHECK_FALSE(is_valid_name("a\\b"));
  CHECK_FALSE(is_valid_name("a b"));
  CHECK_FALSE(is_valid_name(" a"));
  CHECK_FALSE(is_valid_name("a\t"));
  CHECK_FALSE(is_valid_name("\xc3\xa4"));  // "ä"
  CHECK_FALSE(is_valid_name("a\xc3\xa4"));
  CHECK_FALSE(is_valid_name("a%2F"));
  CHECK_FALSE(is_valid_name(std::string("a\0b", 3)));
  CHECK_FALSE(is_valid_name(std::string("\0", 1)));
  CHECK_FALSE(is_valid_name("a:b"));
  CHECK_FALSE(is_valid_name("a+b"));
  CHECK_FALSE(is_valid_name("a?b"));
  CHECK_FALSE(is_valid_name("a*"));
  CHECK_FALSE(is_valid_name("a\x7f"));
  CHECK_FALSE(is_valid_name("a\xff"));
}

TEST_CASE("validate_name returns invalid_name naming what was checked", "[names]") {
  CHECK(writeapi::validate_name("homelab", "bucket").ok());
  Status s = writeapi::validate_name("..", "bucket");
  CHECK(s.code() == ErrorCode::invalid_name);
  CHECK(s.http_status() == 400);
  CHECK(s.message().find("bucket") != std::string::npos);
  Status k = writeapi::validate_name("a/b", "key");
  CHECK(k.code() == ErrorCode::invalid_name);
  CHECK(k.message().find("key") != std::string::npos);
}

TEST_CASE("percent_decode decodes valid escapes", "[names]") {
  std::string out;
  REQUIRE(percent_decode("abc", &out));
  CHECK(out == "abc");
  REQUIRE(percent_decode("%41bc", &out));
  CHECK(out == "Abc");
  REQUIRE(percent_decode("a%2fb%2F", &out));
  CHECK(out == "a/b/");
  REQUIRE(percent_decode("%7e%7E", &out));
  CHECK(out == "~~");
  REQUIRE(percent_decode("%00", &out));
  CHECK(out == std::string("\0", 1));
  REQUIRE(percent_decode("%c3%A4", &out));
  CHECK(out == "\xc3\xa4");
  REQUIRE(percent_decode("a+b", &out));
  CHECK(out == "a+b");  // '+' is not a space in paths
  REQUIRE(percent_decode("%25", &out));
  CHECK(out == "%");
  REQUIRE(percent_decode("%2541", &out));
  CHECK(out == "%41");  // decoded once, not twice
  REQUIRE(percent_decode("", &out));
  CHECK(out.empty());
}

TEST_CASE("percent_decode overwrites its output", "[names]") {
  std::string out = "stale";
  REQUIRE(percent_decode("x", &out));
  CHECK(out == "x");
}

TEST_CASE("percent_decode rejects malformed escapes", "[names]") {
  std::string out;
  CHECK_FALSE(percent_decode("%", &out));
  CHECK_FALSE(percent_decode("%4", &out));
  CHECK_FALSE(percent_decode("%zz", &out));
  CHECK_FALSE(percent_decode("%4g", &out));
  CHECK_FALSE(percent_decode("%g4", &out));
  CHECK_FALSE(percent_decode("abc%", &out));
  CHECK_FALSE(percent_decode("abc%4", &out));
  CHECK_FALSE(percent_decode("%41%", &out));
  CHECK_FALSE(percent_decode("% 41", &out));
}

TEST_CASE("parse_write_target splits bucket and key", "[names]") {
  std::string bucket, key;
  Status s = parse_write_target("/write/v3/bucket/homelab/outdoors_temp1", &bucket, &key);
  REQUIRE(s.ok());
  CHECK(bucket == "homelab");
  CHECK(key == "outdoors_temp1");
}

TEST_CASE("parse_write_target ignores the query string", "[names]") {
  std::string bucket, key;
  REQUIRE(parse_write_target("/write/v3/bucket/homelab/outdoors_temp1?x=1&y=/a/b", &bucket, &key).ok());
  CHECK(bucket == "homelab");
  CHECK(key == "outdoors_temp1");
  REQUIRE(parse_write_target("/write/v3/bucket/b/k?", &bucket, &key).ok());
  CHECK(bucket == "b");
  CHECK(key == "k");
}

TEST_CASE("parse_write_target percent-decodes segments", "[names]") {
  std::string bucket, key;
  REQUIRE(parse_write_target("/write/v3/bucket/%41bc/k%2D1", &bucket, &key).ok());
  CHECK(bucket == "Abc");
  CHECK(key == "k-1");
}

TEST_CASE("parse_write_target rejects bad names with invalid_name", "[names]") {
  std::string bucket, key;
  // An encoded slash stays inside the segment and then breaks the name rule.
  CHECK(parse_write_target("/write/v3/bucket/homelab/a%2Fb", &bucket, &key).code() == ErrorCode::invalid_name);
  CHECK(parse_write_target("/write/v3/bucket/a%2fb/key", &bucket, &key).code() == ErrorCode::invalid_name);
  CHECK(parse_write_target("/write/v3/bucket/homelab/..", &bucket, &key).code() == ErrorCode::invalid_name);
  CHECK(parse_write_target("/write/v3/bucket/../key", &bucket, &key).code() == ErrorCode::invalid_name);
  CHECK(parse_write_target("/write/v3/bucket/homelab/%2E%2E", &bucket, &key).code() == ErrorCode::invalid_name);
  CHECK(parse_write_target("/write/v3/bucket/homelab/.hidden", &bucket, &key).code() == ErrorCode::invalid_name);
  CHECK(parse_write_target("/write/v3/bucket/homelab/a%20b", &bucket, &key).code() == ErrorCode::invalid_name);
  CHECK(parse_write_target("/write/v3/bucket/homelab/a%00b", &bucket, &key).code() == ErrorCode::invalid_name);
  CHECK(parse_write_target("/write/v3/bucket/homelab/%zz", &bucket, &key).code() == ErrorCode::invalid_name);
  CHECK(parse_write_target("/write/v3/bucket/homelab/%4", &bucket, &key).code() == ErrorCode::invalid_name);
  CHECK(parse_write_target("/write/v3/bucket/homelab/" + std::string(129, 'k'), &bucket, &key).code() ==
        ErrorCode::invalid_name);
}

TEST_CASE("parse_write_target rejects an empty key or bucket with invalid_name", "[names]") {
  std::string bucket, key;
  CHECK(parse_write_target("/write/v3/bucket/homelab/", &bucket, &key).code() == ErrorCode::invalid_name);
  CHECK(parse_write_target("/write/v3/bucket//key", &bucket, &key).code() == ErrorCode::invalid_name);
}

TEST_CASE("parse_write_target answers not_found for other paths", "[names]") {
  std::string bucket, key;
  CHECK(parse_write_target("/", &bucket, &key).code() == ErrorCode::not_found);
  CHECK(parse_write_target("", &bucket, &key).code() == ErrorCode::not_found);
  CHECK(parse_write_target("/write/v2/bucket/homelab/k", &bucket, &key).code() == ErrorCode::not_found);
  CHECK(parse_write_target("/read/v3/bucket/homelab/k", &bucket, &key).code() == ErrorCode::not_found);
  CHECK(parse_write_target("write/v3/bucket/homelab/k", &bucket, &key).code() == ErrorCode::not_found);
  CHECK(parse_write_target("/write/v3/bucket", &bucket, &key).code() == ErrorCode::not_found);
  CHECK(parse_write_target("/write/v3/bucket/", &bucket, &key).code() == ErrorCode::not_found);
  // One segment.
  CHECK(parse_write_target("/write/v3/bucket/homelab", &bucket, &key).code() == ErrorCode::not_found);
  CHECK(parse_write_target("/write/v3/bucket/homelab?x=/k", &bucket, &key).code() == ErrorCode::not_found);
  // Three segments.
  CHECK(parse_write_target("/write/v3/bucket/homelab/a/b", &bucket, &key).code() == ErrorCode::not_found);
  CHECK(parse_write_target("/write/v3/bucket/homelab/k/", &bucket, &key).code() == ErrorCode::not_found);
}
