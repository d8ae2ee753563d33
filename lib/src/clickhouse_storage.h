// Pieces of the ClickHouse backend that unit tests check without a server:
// URL parsing, SQL quoting and the RowBinary encoding.
#ifndef WRITEAPI_SRC_CLICKHOUSE_STORAGE_H_
#define WRITEAPI_SRC_CLICKHOUSE_STORAGE_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace writeapi::clickhouse {

// ClickHouseStorageOptions::url split for cpp-httplib.
struct Endpoint {
  std::string scheme_host_port;  // "http://host:8123", what httplib::Client takes
  std::string path_prefix;       // "" or "/prefix" (no trailing slash)
};

// Parses http[s]://host[:port][/path]. False with *error set when the URL
// has another scheme, no host, credentials (use the user/password options)
// or a query string.
bool parse_url(std::string_view url, Endpoint* endpoint, std::string* error);

// True for a plain identifier: [A-Za-z_][A-Za-z0-9_]*, at most 128 bytes.
bool valid_identifier(std::string_view name);

// A ClickHouse string literal: '...' with \ and ' escaped (any bytes).
std::string quote_string(std::string_view text);

// Percent-encodes everything but unreserved characters (RFC 3986).
std::string url_encode(std::string_view text);

// RowBinary: strings are a LEB128 length then the bytes; integers and
// DateTime are little-endian.
void put_varint(std::string* out, std::uint64_t value);
void put_string(std::string* out, std::string_view text);
void put_u32(std::string* out, std::uint32_t value);
void put_u64(std::string* out, std::uint64_t value);
// Reads one RowBinary string from the front of *in into *text (a view into
// the input) and advances *in. False when *in is truncated or malformed.
bool get_string(std::string_view* in, std::string_view* text);
// Reads one little-endian UInt64 the same way.
bool get_u64(std::string_view* in, std::uint64_t* value);

// UTC year * 100 + month of a Unix time, as ClickHouse's
// toYYYYMM(DateTime('UTC')) computes it: the partition of a row.
int utc_year_month(std::int64_t unix_seconds);

}  // namespace writeapi::clickhouse

#endif  // WRITEAPI_SRC_CLICKHOUSE_STORAGE_H_
