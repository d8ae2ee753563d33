// parse(): the request body contract (JSON validation, shape, JSON Lines
// output byte for byte), cross-checked against simdjson's DOM parser.
#include <simdjson.h>
#include <catch2/catch.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <condition_variable>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "api_document.h"
#include "parse_walk.h"
#include "writeapi/parse.h"

using writeapi::ErrorCode;
using writeapi::ParsedRequest;
using writeapi::ParseOptions;
using writeapi::Status;

namespace {

const std::string kDocKey(writeapi::testing::kAccessKey);

// A body with accessKey "k" and the given raw JSON text as "data".
std::string with_data(std::string_view data) {
  return std::string(R"({"accessKey":"k","data":)") + std::string(data) + "}";
}

// A valid body plus one extra (ignored) field holding `value`.
std::string with_extra(std::string_view value) {
  return std::string(R"({"accessKey":"k","extra":)") + std::string(value) + R"(,"data":1})";
}

ErrorCode code_of(std::string_view body, const ParseOptions& options = ParseOptions()) {
  ParsedRequest out;
  return writeapi::parse(body, &out, options).code();
}

std::string name_of(ErrorCode code) { return std::string(writeapi::error_name(code)); }

// Parses a body with `data` and returns its lines (REQUIREs success).
std::string lines_of(std::string_view data, std::size_t* items = nullptr) {
  ParsedRequest out;
  Status s = writeapi::parse(with_data(data), &out);
  INFO("data: " << data << " -> " << s.name() << ": " << s.message());
  REQUIRE(s.ok());
  if (items) *items = out.item_count;
  return out.lines;
}

std::vector<std::string> split_lines(const std::string& lines) {
  std::vector<std::string> result;
  std::size_t start = 0;
  while (start < lines.size()) {
    std::size_t nl = lines.find('\n', start);
    if (nl == std::string::npos) {
      result.push_back(lines.substr(start));  // unterminated: caught by callers
      break;
    }
    result.push_back(lines.substr(start, nl - start));
    start = nl + 1;
  }
  return result;
}

std::string repeat(std::string_view s, std::size_t n) {
  std::string out;
  out.reserve(s.size() * n);
  for (std::size_t i = 0; i < n; ++i) out.append(s);
  return out;
}

std::string nested_arrays(std::size_t depth, std::string_view inner = "1") {
  return repeat("[", depth) + std::string(inner) + repeat("]", depth);
}

bool simdjson_accepts(std::string_view text, simdjson::error_code* error = nullptr) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded(text);
  simdjson::dom::element element;
  simdjson::error_code e = parser.parse(padded).get(element);
  if (error) *error = e;
  return e == simdjson::SUCCESS;
}

}  // namespace

// ---------------------------------------------------------------------------
// The API document's example.

TEST_CASE("parse: the API document's example body", "[parse]") {
  const std::string& body = writeapi::testing::kDocumentBody;
  ParsedRequest out;
  Status s = writeapi::parse(body, &out);
  REQUIRE(s.ok());
  CHECK(out.item_count == 1);
  CHECK(out.lines == "{\"timestamp\":1584156800,\"temperature\":4.7}\n");
  CHECK(out.access_key == kDocKey);
  CHECK(out.has_device_id);
  CHECK(out.device_id == "outdoors_u871a");
}

TEST_CASE("parse: the example with CRLF and tabs", "[parse]") {
  const std::string body =
      "\r\n{\r\n\t\"accessKey\"\t:\t\"" + kDocKey +
      "\" ,\r\n"
      "\t\"data\" : {\r\n\t\t\"timestamp\" : 1584156800 ,\r\n\t\t\"temperature\" : 4.7\r\n\t}\r\n}\r\n";
  ParsedRequest out;
  REQUIRE(writeapi::parse(body, &out).ok());
  CHECK(out.item_count == 1);
  CHECK(out.lines == "{\"timestamp\":1584156800,\"temperature\":4.7}\n");
  CHECK(out.access_key == kDocKey);
  CHECK_FALSE(out.has_device_id);
  CHECK(out.device_id.empty());
}

TEST_CASE("parse: field order does not matter", "[parse]") {
  ParsedRequest out;
  REQUIRE(writeapi::parse(R"({"data":[1,2],"deviceId":"d","accessKey":"key"})", &out).ok());
  CHECK(out.lines == "1\n2\n");
  CHECK(out.item_count == 2);
  CHECK(out.access_key == "key");
  CHECK(out.device_id == "d");
}

// ---------------------------------------------------------------------------
// Byte-exactness.

TEST_CASE("parse: numbers are kept exactly as written", "[parse]") {
  CHECK(lines_of("4.70") == "4.70\n");
  CHECK(lines_of("1e3") == "1e3\n");
  CHECK(lines_of("-0") == "-0\n");
  CHECK(lines_of("1E+5") == "1E+5\n");
  CHECK(lines_of("0.0e-0") == "0.0e-0\n");
  CHECK(lines_of("[4.70,1e3,-0,1E+5,0.0e-0,-0.0,1.50E-07,10]") == "4.70\n1e3\n-0\n1E+5\n0.0e-0\n-0.0\n1.50E-07\n10\n");
  CHECK(lines_of(R"({"t":1.000,"u":-2E-0,"v":0})") == "{\"t\":1.000,\"u\":-2E-0,\"v\":0}\n");
}

TEST_CASE("parse: big numbers are valid and kept", "[parse]") {
  CHECK(lines_of("123456789012345678901234567890") == "123456789012345678901234567890\n");
  CHECK(lines_of("-123456789012345678901234567890") == "-123456789012345678901234567890\n");
  CHECK(lines_of("-1e400") == "-1e400\n");
  CHECK(lines_of("1e400") == "1e400\n");
  CHECK(lines_of("1.5e-999") == "1.5e-999\n");
  CHECK(lines_of("18446744073709551616") == "18446744073709551616\n");
  CHECK(lines_of("[123456789012345678901234567890,-1e400,1e400,1.5e-999]") ==
        "123456789012345678901234567890\n-1e400\n1e400\n1.5e-999\n");
  CHECK(lines_of(R"({"n":1e99999999999})") == "{\"n\":1e99999999999}\n");
}

TEST_CASE("parse: string escapes are kept exactly as written", "[parse]") {
  CHECK(lines_of(R"("a\u00e9\n\"x")") == "\"a\\u00e9\\n\\\"x\"\n");
  CHECK(lines_of(R"("\u00E9\/\\\b\f\r\t")") == "\"\\u00E9\\/\\\\\\b\\f\\r\\t\"\n");
  CHECK(lines_of(R"("\ud83d\ude00")") == "\"\\ud83d\\ude00\"\n");
  CHECK(lines_of(R"({"k\u0065y":"\u0000"})") == "{\"k\\u0065y\":\"\\u0000\"}\n");
}

TEST_CASE("parse: whitespace inside strings is kept", "[parse]") {
  CHECK(lines_of(R"({ "a b" : "  x  y  " })") == "{\"a b\":\"  x  y  \"}\n");
  CHECK(lines_of(R"([" ", "  lead", "trail  "])") == "\" \"\n\"  lead\"\n\"trail  \"\n");
}

TEST_CASE("parse: whitespace outside strings is removed everywhere", "[parse]") {
  const std::string data =
      " \r\n\t{ \"a\" :\t[ 1 ,\n 2 , { \"b\" : null } ,\r\n [ ] , { } ] ,\r\n \"c\" : true ,\t\"d\"\n:\n\"x y\" } "
      "\t\r\n";
  CHECK(lines_of(data) == "{\"a\":[1,2,{\"b\":null},[],{}],\"c\":true,\"d\":\"x y\"}\n");
  // Around items of a split array and inside each.
  CHECK(lines_of(" [ \n1 , \"a\"\t,\r{ \"k\" : [ false , true ] } , [ 3 , 4 ] \n] ") ==
        "1\n\"a\"\n{\"k\":[false,true]}\n[3,4]\n");
  // Around every token of the whole body.
  ParsedRequest out;
  REQUIRE(writeapi::parse(" \t\r\n{ \t\r\n\"accessKey\" \t\r\n: \t\r\n\"k\" \t\r\n, \t\r\n\"data\" \t\r\n: "
                          "\t\r\n[ \t\r\n1 \t\r\n, \t\r\n2 \t\r\n] \t\r\n} \t\r\n",
                          &out)
              .ok());
  CHECK(out.lines == "1\n2\n");
}

TEST_CASE("parse: non-ASCII UTF-8 is kept byte for byte", "[parse]") {
  const std::string text =
      "\"hyv\xc3\xa4\xc3\xa4 p\xc3\xa4iv\xc3\xa4\xc3\xa4 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80\"";
  CHECK(lines_of(text) == text + "\n");
  const std::string object = "{\"\xc3\xa4\":\"\xe2\x82\xac\",\"\xf4\x8f\xbf\xbf\":1}";
  CHECK(lines_of(object) == object + "\n");
}

// ---------------------------------------------------------------------------
// Splitting "data".

TEST_CASE("parse: an empty data array is zero items", "[parse]") {
  ParsedRequest out;
  REQUIRE(writeapi::parse(with_data("[]"), &out).ok());
  CHECK(out.item_count == 0);
  CHECK(out.lines.empty());
  REQUIRE(writeapi::parse(with_data("[ \n\t ]"), &out).ok());
  CHECK(out.item_count == 0);
  CHECK(out.lines.empty());
}

TEST_CASE("parse: a data array is split into one line per element", "[parse]") {
  std::size_t items = 0;
  CHECK(lines_of(R"([1,"a",{"b":[1,2]},[3]])", &items) == "1\n\"a\"\n{\"b\":[1,2]}\n[3]\n");
  CHECK(items == 4);
  CHECK(lines_of(R"([{},[],"",0,false,true])", &items) == "{}\n[]\n\"\"\n0\nfalse\ntrue\n");
  CHECK(items == 6);
}

TEST_CASE("parse: nested arrays are not split", "[parse]") {
  std::size_t items = 0;
  CHECK(lines_of("[[1,2],[3,[4,5]]]", &items) == "[1,2]\n[3,[4,5]]\n");
  CHECK(items == 2);
  CHECK(lines_of("[[[]]]", &items) == "[[]]\n");
  CHECK(items == 1);
  CHECK(lines_of(R"({"a":[1,2,3]})", &items) == "{\"a\":[1,2,3]}\n");
  CHECK(items == 1);
}

TEST_CASE("parse: scalar data is one item", "[parse]") {
  std::size_t items = 0;
  CHECK(lines_of(R"("text")", &items) == "\"text\"\n");
  CHECK(items == 1);
  CHECK(lines_of("42", &items) == "42\n");
  CHECK(items == 1);
  CHECK(lines_of("true", &items) == "true\n");
  CHECK(items == 1);
  CHECK(lines_of("false", &items) == "false\n");
  CHECK(items == 1);
  CHECK(lines_of("{}", &items) == "{}\n");
  CHECK(items == 1);
  CHECK(lines_of(R"("")", &items) == "\"\"\n");
  CHECK(items == 1);
}

TEST_CASE("parse: null data or a null item is null_data", "[parse]") {
  CHECK(code_of(with_data("null")) == ErrorCode::null_data);
  CHECK(code_of(with_data("[1,null]")) == ErrorCode::null_data);
  CHECK(code_of(with_data("[null]")) == ErrorCode::null_data);
  CHECK(code_of(with_data("[null,1]")) == ErrorCode::null_data);
  CHECK(code_of(with_data("[ 1 , \n null ]")) == ErrorCode::null_data);
  CHECK(code_of(R"({"data":null,"accessKey":"k"})") == ErrorCode::null_data);
  // Nulls nested inside an item are ordinary values.
  CHECK(lines_of(R"([[null],{"a":null}])") == "[null]\n{\"a\":null}\n");
  CHECK(lines_of(R"({"a":null})") == "{\"a\":null}\n");
  // A string "null" is not null.
  CHECK(lines_of(R"("null")") == "\"null\"\n");
}

// ---------------------------------------------------------------------------
// Invalid JSON.

TEST_CASE("parse: malformed numbers are invalid_json", "[parse]") {
  const char* bad[] = {
      "01",   "-01", "00",   "1.",       "-",         "1e",    "1e+",   "1E-",     ".5",  "+1",
      "0x10", "NaN", "-NaN", "Infinity", "-Infinity", "1.e5",  "1..2",  "1e5.5",   "--1", "1-",
      "0.",   "- 1", "1 2",  "0e",       "2.5e",      "1_000", "1e+-1", "\xd9\xa1" /* arabic-indic one */};
  for (const char* number : bad) {
    INFO("number: " << number);
    CHECK(name_of(code_of(with_data(number))) == "invalid_json");
    CHECK(name_of(code_of(with_data(std::string("[") + number + "]"))) == "invalid_json");
    CHECK(name_of(code_of(with_extra(number))) == "invalid_json");
  }
}

TEST_CASE("parse: malformed literals are invalid_json", "[parse]") {
  const char* bad[] = {"tru",   "nul",   "True", "TRUE", "Null", "NULL",      "False", "fals",
                       "truex", "nulll", "t",    "f",    "n",    "undefined", "none"};
  for (const char* literal : bad) {
    INFO("literal: " << literal);
    CHECK(name_of(code_of(with_data(literal))) == "invalid_json");
    CHECK(name_of(code_of(with_data(std::string("[1,") + literal + "]"))) == "invalid_json");
    CHECK(name_of(code_of(with_extra(literal))) == "invalid_json");
  }
}

TEST_CASE("parse: malformed strings are invalid_json", "[parse]") {
  const std::string bad[] = {
      R"("abc)",   // unterminated (then the closing brace)
      "\"a\tb\"",  // raw tab
      "\"a\x01"
      "b\"",                       // raw control character
      "\"a\nb\"",                  // raw newline
      "\"a\rb\"",                  // raw CR
      "\"\x1f\"",                  // raw unit separator
      std::string("\"a\0b\"", 5),  // raw NUL
      R"("\x")",                   // unknown escapes
      R"("\a")",
      R"("\'")",
      R"("\U0041")",
      R"("\0")",
      R"("\u12")",  // short \u
      R"("\u")",
      R"("\u12G4")",  // non-hex digit
      R"("\u-123")",
      R"("\ud800")",  // lone high surrogate
      R"("\udc00")",  // lone low surrogate
      R"("\udfff")",
      R"("\ud800\u0041")",  // high surrogate + non-surrogate
      R"("\ud800x")",
      R"("\ud800\n")",
      R"("\ud800\ud800")",  // high + high
      R"("\ude00\ud83d")",  // reversed pair
      R"("\ud83d\ude0")",   // truncated low half
      R"('single')",        // single quotes
      "\"abc\\\"",          // escaped closing quote: unterminated
  };
  for (const std::string& s : bad) {
    INFO("string: " << s);
    CHECK(name_of(code_of(with_data(s))) == "invalid_json");
    CHECK(name_of(code_of(with_data("[" + s + "]"))) == "invalid_json");
    CHECK(name_of(code_of(with_data("{\"k\":" + s + "}"))) == "invalid_json");
    CHECK(name_of(code_of(with_data("{" + s + ":1}"))) == "invalid_json");
    CHECK(name_of(code_of(with_extra(s))) == "invalid_json");
    CHECK(name_of(code_of(R"({"accessKey":)" + s + R"(,"data":1})")) == "invalid_json");
    CHECK(name_of(code_of(R"({"accessKey":"k","deviceId":)" + s + R"(,"data":1})")) == "invalid_json");
    CHECK(name_of(code_of(R"({"accessKey":"k","data":1,)" + s + ":1}")) == "invalid_json");
  }
}

TEST_CASE("parse: a lone trailing backslash or unterminated string at the end is invalid_json", "[parse]") {
  CHECK(code_of(R"({"accessKey":"k","data":"abc)") == ErrorCode::invalid_json);
  CHECK(code_of(R"({"accessKey":"k","data":"abc\)") == ErrorCode::invalid_json);
  CHECK(code_of(R"({"accessKey":"k","data":"\u00)") == ErrorCode::invalid_json);
  CHECK(code_of(R"({"accessKey":"k","data":"\ud83d)") == ErrorCode::invalid_json);
  CHECK(code_of(R"({"accessKey":"k","data":"\ud83d\u)") == ErrorCode::invalid_json);
  CHECK(code_of(R"({"accessKey)") == ErrorCode::invalid_json);
  // Long strings take the vectorised path: errors must still be seen.
  const std::string pad(100, 'x');
  CHECK(code_of(with_data("\"" + pad + "\t" + pad + "\"")) == ErrorCode::invalid_json);
  CHECK(code_of(with_data("\"" + pad + "\\x" + pad + "\"")) == ErrorCode::invalid_json);
  CHECK(code_of(R"({"accessKey":"k","data":")" + pad) == ErrorCode::invalid_json);
  CHECK(lines_of("\"" + pad + "\\n" + pad + "\"") == "\"" + pad + "\\n" + pad + "\"\n");
}

TEST_CASE("parse: valid surrogate pairs and escapes are accepted", "[parse]") {
  CHECK(code_of(with_data(R"("\ud83d\ude00")")) == ErrorCode::ok);
  CHECK(code_of(with_data(R"("\uD83D\uDE00")")) == ErrorCode::ok);
  CHECK(code_of(with_data(R"("\udbff\udfff")")) == ErrorCode::ok);
  CHECK(code_of(with_data(R"("\ud800\udc00")")) == ErrorCode::ok);
  CHECK(code_of(with_data(R"("\u0000\u001f\uffff\ufffe\uabCD")")) == ErrorCode::ok);
  CHECK(code_of(with_data(R"("\"\\\/\b\f\n\r\t")")) == ErrorCode::ok);
  CHECK(code_of(with_data("\"\x7f\"")) == ErrorCode::ok);  // DEL is not a JSON control character
}

TEST_CASE("parse: structural errors are invalid_json", "[parse]") {
  const std::string bad[] = {
      // Trailing commas.
      with_data("[1,2,]"),
      with_data(R"({"a":1,})"),
      R"({"accessKey":"k","data":1,})",
      // Leading / double commas.
      with_data("[,1]"),
      with_data("[1,,2]"),
      with_data(R"({,"a":1})"),
      R"({,"accessKey":"k","data":1})",
      R"({"accessKey":"k",,"data":1})",
      // Missing colon, wrong separators.
      with_data(R"({"a" 1})"),
      with_data(R"({"a",1})"),
      with_data(R"({"a"=1})"),
      with_data("[1:2]"),
      R"({"accessKey" "k","data":1})",
      R"({"accessKey":"k","data" 1})",
      R"({"accessKey"="k","data":1})",
      // Missing comma.
      with_data("[1 2]"),
      with_data(R"(["a" "b"])"),
      with_data(R"({"a":1 "b":2})"),
      R"({"accessKey":"k" "data":1})",
      R"({"accessKey":"k","data":1 "x":2})",
      // Non-string keys.
      with_data("{1:2}"),
      with_data("{a:1}"),
      with_data("{null:1}"),
      R"({accessKey:"k","data":1})",
      // Unbalanced containers.
      with_data("[1,2"),
      with_data("[1,2}"),
      with_data(R"({"a":1])"),
      with_data(R"({"a":[1})"),
      with_data("]"),
      with_data("}"),
      R"({"accessKey":"k","data":1)",
      R"({"accessKey":"k","data":)",
      R"({"accessKey":"k","data")",
      R"({"accessKey":"k",)",
      "{",
      "}",
      "[",
      // Missing values.
      with_data(""),
      R"({"accessKey":,"data":1})",
      R"({"accessKey":"k","data":1,"x":})",
      // Trailing content after the object.
      with_data("1") + " x",
      with_data("1") + "{}",
      with_data("1") + "]",
      with_data("1") + "}",
      with_data("1") + ",",
      with_data("1") + "1",
      with_data("1") + "\"\"",
      with_data("1") + " \n " + with_data("2"),
      with_data("1") + std::string("\0", 1),
      // Empty and whitespace-only bodies.
      "",
      " ",
      " \n\t\r ",
      // Single quotes.
      "{'accessKey':'k','data':1}",
      R"({"accessKey":'k',"data":1})",
      // Not JSON at all.
      "accessKey=k&data=1",
      "<json/>",
      // Comments are not JSON.
      R"({"accessKey":"k",/* c */"data":1})",
      R"({"accessKey":"k","data":1} // c)",
      // Form feed / vertical tab / NBSP are not JSON whitespace.
      "{\"accessKey\":\"k\",\f\"data\":1}",
      "{\"accessKey\":\"k\",\v\"data\":1}",
      "{\"accessKey\":\"k\",\xc2\xa0\"data\":1}",
  };
  for (const std::string& body : bad) {
    INFO("body: " << body);
    CHECK(name_of(code_of(body)) == "invalid_json");
  }
}

TEST_CASE("parse: errors inside ignored fields are rejected", "[parse]") {
  const char* bad[] = {"[1,,2]", "01",      "[1,2,]",      R"({"a" 1})",  R"({"a":1,})",
                       "tru",    R"("\x")", R"("\ud800")", "[",           R"({"a":[1})",
                       "1.",     "'x'",     "[1 2]",       R"({"a":01})", R"([{"a":[{"b":-}]}])"};
  for (const char* value : bad) {
    INFO("extra: " << value);
    CHECK(name_of(code_of(with_extra(value))) == "invalid_json");
    // Also after "data", and as a nested member of an ignored object.
    CHECK(name_of(code_of(std::string(R"({"accessKey":"k","data":1,"extra":)") + value + "}")) == "invalid_json");
    CHECK(name_of(code_of(std::string(R"({"accessKey":"k","extra":{"inner":[)") + value + R"(]},"data":1})")) ==
          "invalid_json");
  }
  // Valid ignored fields of every kind are fine.
  CHECK(code_of(with_extra(R"({"a":[1,{"b":null}],"c":"\u00e9"})")) == ErrorCode::ok);
  CHECK(code_of(with_extra("null")) == ErrorCode::ok);
  CHECK(code_of(with_extra("123456789012345678901234567890")) == ErrorCode::ok);
}

TEST_CASE("parse: syntax errors take precedence over shape errors", "[parse]") {
  // Missing data and a syntax error.
  CHECK(code_of(R"({"accessKey":"k","extra":[1,,2]})") == ErrorCode::invalid_json);
  CHECK(code_of(R"({"accessKey":"k"} x)") == ErrorCode::invalid_json);
  CHECK(code_of(R"({"extra":01})") == ErrorCode::invalid_json);
  // Missing access key and a syntax error.
  CHECK(code_of(R"({"data":1,"x":tru})") == ErrorCode::invalid_json);
  CHECK(code_of(R"({"data":1,})") == ErrorCode::invalid_json);
  // Null data and a later syntax error.
  CHECK(code_of(R"({"accessKey":"k","data":null,"x":01})") == ErrorCode::invalid_json);
  CHECK(code_of(R"({"accessKey":"k","data":[null],"x":[1,]})") == ErrorCode::invalid_json);
  // Duplicate field and a later syntax error.
  CHECK(code_of(R"({"accessKey":"k","data":1,"data":2,"x":"\x"})") == ErrorCode::invalid_json);
  // Invalid field types and a later syntax error.
  CHECK(code_of(R"({"accessKey":1,"data":1,"x":[})") == ErrorCode::invalid_json);
  CHECK(code_of(R"({"accessKey":"k","deviceId":1,"data":1)") == ErrorCode::invalid_json);
  CHECK(code_of(R"({"accessKey":"k","deviceId":"","data":1} x)") == ErrorCode::invalid_json);
  // Not an object and a syntax error.
  CHECK(code_of("[1,2,]") == ErrorCode::invalid_json);
  CHECK(code_of(R"("abc)") == ErrorCode::invalid_json);
  CHECK(code_of("[1] x") == ErrorCode::invalid_json);
  CHECK(code_of("1 2") == ErrorCode::invalid_json);
  CHECK(code_of("01") == ErrorCode::invalid_json);
  CHECK(code_of("tru") == ErrorCode::invalid_json);
  // Invalid UTF-8 beats every shape error as well.
  CHECK(code_of("{\"accessKey\":\"k\",\"x\":\"\xff\"}") == ErrorCode::invalid_utf8);
  CHECK(code_of("[\"\xff\"]") == ErrorCode::invalid_utf8);
  CHECK(code_of("{\"data\":null,\"x\":\"\xc0\xaf\"}") == ErrorCode::invalid_utf8);
}

// ---------------------------------------------------------------------------
// Invalid UTF-8.

TEST_CASE("parse: invalid UTF-8 anywhere is invalid_utf8", "[parse]") {
  const std::string bad[] = {
      "\xff",  // never valid
      "\xfe",
      "\x80",              // lone continuation byte
      "\xc0\xaf",          // overlong '/'
      "\xc1\xbf",          // overlong
      "\xe0\x80\xaf",      // overlong, 3 bytes
      "\xf0\x80\x80\xaf",  // overlong, 4 bytes
      "\xc3",              // truncated 2-byte sequence
      "\xe2\x82",          // truncated 3-byte sequence
      "\xf0\x9f\x98",      // truncated 4-byte sequence
      "\xed\xa0\x80",      // UTF-16 surrogate D800 encoded in UTF-8
      "\xed\xbf\xbf",      // surrogate DFFF
      "\xf4\x90\x80\x80",  // above U+10FFFF
      "\xf8\x88\x80\x80\x80",
      "\xc3\x28",  // bad continuation
  };
  for (const std::string& seq : bad) {
    INFO("sequence bytes: " << seq.size() << " first " << int(static_cast<unsigned char>(seq[0])));
    // In data.
    CHECK(name_of(code_of(with_data("\"a" + seq + "b\""))) == "invalid_utf8");
    CHECK(name_of(code_of(with_data("[1,{\"x\":\"" + seq + "\"}]"))) == "invalid_utf8");
    // In an ignored field.
    CHECK(name_of(code_of(with_extra("\"" + seq + "\""))) == "invalid_utf8");
    // In a key, top-level or nested.
    CHECK(name_of(code_of(R"({"accessKey":"k",")" + seq + R"(":1,"data":1})")) == "invalid_utf8");
    CHECK(name_of(code_of(with_data("{\"" + seq + "\":1}"))) == "invalid_utf8");
    // In accessKey and deviceId.
    CHECK(name_of(code_of(R"({"accessKey":"k)" + seq + R"(","data":1})")) == "invalid_utf8");
    CHECK(name_of(code_of(R"({"accessKey":"k","deviceId":"d)" + seq + R"(","data":1})")) == "invalid_utf8");
    // Outside any string.
    CHECK(name_of(code_of(with_data("1") + seq)) == "invalid_utf8");
  }
}

TEST_CASE("parse: invalid UTF-8 deep inside a long valid string is found", "[parse]") {
  std::string s(4096, 'a');
  s[3001] = '\xff';
  CHECK(code_of(with_data("\"" + s + "\"")) == ErrorCode::invalid_utf8);
}

TEST_CASE("parse: a bad byte at every offset of a string is invalid_utf8 and a good one is kept", "[parse]") {
  // Strings are scanned 16 bytes at a time and their last bytes one at a
  // time, and UTF-8 is checked only when a string held a byte of 0x80 or
  // more: every offset, in strings that end the body (the byte-wise tail)
  // and that do not, compact and pretty-printed.
  for (std::size_t length = 1; length <= 40; ++length) {
    for (std::size_t at = 0; at < length; ++at) {
      INFO("length " << length << " offset " << at);
      std::string bad(length, 'a'), good(length, 'a');
      bad[at] = '\xff';
      good.replace(at, 1, "\xc3\xa9");
      const std::string last = R"({"accessKey":"k","data":")";
      const std::string first = R"({"x":")";
      CHECK(code_of(last + bad + "\"}") == ErrorCode::invalid_utf8);
      CHECK(code_of(first + bad + R"(","accessKey":"k","data":1})") == ErrorCode::invalid_utf8);
      // Pretty-printed, with indentation longer than a 16-byte step.
      const std::string indent = "\n" + std::string(320, ' ');
      CHECK(code_of("{" + indent + "\"accessKey\": \"k\"," + indent + "\"data\": \"" + bad + "\"\n}") ==
            ErrorCode::invalid_utf8);
      CHECK(code_of("{\n  \"accessKey\": \"k\",\n  \"data\": \"" + bad + "\"\n}") == ErrorCode::invalid_utf8);
      CHECK(code_of(R"({"accessKey":"k","deviceId":")" + bad + R"(","data":1})") == ErrorCode::invalid_utf8);
      // Nothing of such a body is kept, compact or pretty-printed: a
      // deviceId that is not UTF-8 would otherwise reach the access log.
      for (const std::string& space : {std::string(), "\n" + std::string(320, ' ')}) {
        writeapi::ParsedRequest rejected;
        const std::string body = "{" + space + R"("accessKey":"k","deviceId":"d","requestId":"r","x":")" + bad +
                                 R"(","deviceId2":")" + bad + R"(","data":1})";
        CHECK(writeapi::parse(body, &rejected).code() == ErrorCode::invalid_utf8);
        CHECK(!rejected.has_device_id);
        CHECK(rejected.device_id.empty());
        CHECK(!rejected.has_request_id);
        CHECK(rejected.request_id.empty());
        CHECK(rejected.access_key.empty());
        CHECK(rejected.lines.empty());
        REQUIRE(writeapi::parse(R"({"accessKey":"k","deviceId":"d)" + bad + R"(","data":1})", &rejected).code() ==
                ErrorCode::invalid_utf8);
        CHECK(!rejected.has_device_id);
        CHECK(rejected.device_id.empty());
      }
      // A bad byte after a syntax error is still found first.
      CHECK(code_of(R"({"accessKey":"k","data":[1,],"x":")" + bad + "\"}") == ErrorCode::invalid_utf8);
      writeapi::ParsedRequest out;
      REQUIRE(writeapi::parse(last + good + "\"}", &out).ok());
      CHECK(out.lines == "\"" + good + "\"\n");
      REQUIRE(writeapi::parse(R"({"accessKey":"k","deviceId":")" + good + R"(","data":1})", &out).ok());
      CHECK(out.device_id == good);
    }
  }
}

TEST_CASE("parse: between invalid_json and too_deep the first met wins and whitespace does not change it", "[parse]") {
  struct Case {
    std::string body;
    std::size_t max_depth;
    ErrorCode code;
  };
  const Case cases[] = {
      {R"({"a":")", 0, ErrorCode::too_deep},         // the object is already too deep
      {"{\"a\":\"\x01\"}", 0, ErrorCode::too_deep},  // before the raw control character
      {R"({"data":[[")", 2, ErrorCode::too_deep},    // before the unclosed string
      {R"({"accessKey":"k","data":[1,],"x":[[[[1]]]]})", 3, ErrorCode::invalid_json},  // the comma first
      {R"({"accessKey":"k","data":[[[[1]]]],"x":[1,]})", 3, ErrorCode::too_deep},
  };
  for (const Case& c : cases) {
    ParseOptions options;
    options.max_depth = c.max_depth;
    // Compact, and with a line break and indentation wherever one may go.
    std::string pretty;
    for (char ch : c.body) {
      pretty += ch;
      if (ch == '{' || ch == '[' || ch == ',') pretty += "\n    ";
    }
    INFO("body " << c.body << " max_depth " << c.max_depth);
    CHECK(code_of(c.body, options) == c.code);
    CHECK(code_of(pretty, options) == c.code);
    CHECK(code_of("\n" + c.body, options) == c.code);
  }
}

TEST_CASE("parse: numbers with digit runs of every length up to 40 end where the digits do", "[parse]") {
  // Digits are skipped 8 at a time: every run length, ended by each byte
  // that may follow a digit, and by the bytes next to '0' and '9'.
  for (std::size_t length = 1; length <= 40; ++length) {
    std::string digits;
    for (std::size_t i = 0; i < length; ++i) digits += static_cast<char>('1' + (i * 3) % 9);
    const std::string forms[] = {digits,        "-" + digits,          "0." + digits,
                                 digits + ".5", digits + "e" + digits, "1E-" + digits};
    for (const std::string& number : forms) {
      INFO("number " << number);
      CHECK(lines_of(number) == number + "\n");
      CHECK(lines_of("[" + number + "," + number + "]") == number + "\n" + number + "\n");
      CHECK(lines_of("{\"v\":" + number + "}") == "{\"v\":" + number + "}\n");
      CHECK(lines_of("[" + number + " ]") == number + "\n");
      for (const char* after : {"/", ":", "a", "x", "\x7f", "-", "+", "."}) {
        INFO("followed by " << after);
        CHECK(code_of(with_data(number + after)) == ErrorCode::invalid_json);
        if (std::string_view(after) != ".")  // 12.1 is a number
          CHECK(code_of(with_data("[" + number + after + "1]")) == ErrorCode::invalid_json);
      }
    }
  }
}

TEST_CASE("parse: whitespace runs that change length at one depth end where the whitespace does", "[parse]") {
  // The walk guesses a run's length from the last one at its depth and
  // checks the guess: every pair of lengths (the second shorter, equal,
  // longer, across 16-byte steps), of each whitespace byte, before every
  // kind of token, in arrays and objects, and at the end of the body.
  const std::string tokens[] = {"1", "-2.5e3", "\"s\"", "true", "false", "null", "{}", "[]", "{\"k\":[7]}"};
  for (const char* fill : {" ", "\t", "\r\n", "\n ", " \t", "\r"}) {
    for (const char* line_break : {"\n", "\r\n"}) {
      for (std::size_t first = 2; first <= 70; first += (first < 20 ? 1 : 7)) {
        for (std::size_t second : {std::size_t{2}, first - 1, first, first + 1, first + 16, std::size_t{1}}) {
          if (second < 1) continue;
          auto run = [&](std::size_t n) {
            std::string ws = line_break;
            while (ws.size() < n) ws += fill;
            return ws.substr(0, n);
          };
          for (const std::string& token : tokens) {
            INFO("fill " << static_cast<int>(fill[0]) << " runs " << first << " then " << second << " token " << token);
            const std::string items = "[[" + run(first) + token + "," + run(first) + token + "," + run(second) + token +
                                      run(second) + "]," + run(second) + "{" + run(first) + "\"a\":" + token + "," +
                                      run(second) + "\"b\":" + token + run(first) + "}" + run(first) + "]";
            CHECK(lines_of(items) ==
                  "[" + token + "," + token + "," + token + "]\n{\"a\":" + token + ",\"b\":" + token + "}\n");
            // A byte that is not whitespace where a guessed run would end.
            for (const char* odd : {"\x01", "x", "\x0b", "\x0c", "\x7f"}) {
              const std::string broken =
                  "[[" + run(first) + token + "," + run(first) + token + "," + run(second - 1) + odd + token + "]]";
              CHECK(code_of(with_data(broken)) == ErrorCode::invalid_json);
            }
          }
          // Between the body's fields and the items of data.
          ParsedRequest out;
          const std::string body = "{" + run(first) + "\"accessKey\": \"k\"," + run(second) + "\"x\": 1," + run(first) +
                                   "\"data\": [" + run(second) + "1," + run(first) + "2," + run(second) + "3" +
                                   run(first) + "]" + run(second) + "}";
          REQUIRE(writeapi::parse(body, &out).ok());
          CHECK(out.lines == "1\n2\n3\n");
          for (const char* odd : {"\x01", "x"}) {
            CHECK(code_of("{" + run(first) + "\"accessKey\": \"k\"," + run(first - 1) + odd + "\"data\": 1}") ==
                  ErrorCode::invalid_json);
            CHECK(code_of("{\"accessKey\": \"k\", \"data\": [" + run(first) + "1," + run(first - 1) + odd + "2]}") ==
                  ErrorCode::invalid_json);
          }
          // The body ends inside a run as long as the guess, or shorter.
          CHECK(code_of(R"({"accessKey":"k","data":[[)" + run(first) + "1," + run(first) + "2," + run(second)) ==
                ErrorCode::invalid_json);
        }
      }
    }
  }
}

TEST_CASE("parse: object keys that change length between objects end where their quote is", "[parse]") {
  // A key's length is guessed from the key that followed the same previous
  // key last time, also in an earlier body, and checked: every pair of
  // lengths up to 18, with an escaped quote, a backslash or a bad byte
  // where the guessed key would end.
  auto key = [](std::size_t n, char base) {
    std::string k;
    for (std::size_t i = 0; i < n; ++i) k += static_cast<char>(base + i % 20);
    return k;
  };
  for (std::size_t a = 0; a <= 18; ++a) {
    for (std::size_t b : {a, a + 1, a - 1, std::size_t{0}, std::size_t{14}, std::size_t{15}, std::size_t{16}}) {
      if (b > 40) continue;  // a - 1 with a == 0
      INFO("keys of " << a << " then " << b << " bytes");
      const std::string first = "\"" + key(a, 'a') + "\"", second = "\"" + key(b, 'A') + "\"";
      const std::string item1 = "{" + first + ":1,\"x\":[{" + first + ":2}]}";
      const std::string item2 = "{" + second + ":1,\"x\":[{" + second + ":2}]}";
      CHECK(lines_of("[" + item1 + "," + item1 + "," + item2 + "," + item1 + "]") ==
            item1 + "\n" + item1 + "\n" + item2 + "\n" + item1 + "\n");
      // Keys whose bytes around the guessed end are special.
      for (std::size_t at = 0; at <= b; ++at) {
        const std::string head = key(at, 'A'), tail = key(b - at, 'a');
        for (const char* special : {"\\\"", "\\\\", "\\u0022", "\\n"}) {
          const std::string odd = "{\"" + head + special + tail + "\":1}";
          CHECK(lines_of("[" + item1 + "," + item1 + "," + odd + "]") == item1 + "\n" + item1 + "\n" + odd + "\n");
        }
        for (const char* bad : {"\x01", "\t", "\\x", "\x1f"}) {
          const std::string odd = "{\"" + head + bad + tail + "\":1}";
          CHECK(code_of(with_data("[" + item1 + "," + item1 + "," + odd + "]")) == ErrorCode::invalid_json);
        }
      }
      // The body's own fields: their names are guessed too.
      for (std::size_t at = 0; at <= b; ++at) {
        const std::string head = key(at, 'A'), tail = key(b - at, 'a');
        ParsedRequest out;
        REQUIRE(writeapi::parse("{\"accessKey\":\"k\"," + first + ":1,\"data\":2}", &out).ok());
        const std::string escaped = "\"" + head + "\\\"" + tail + "\"";
        REQUIRE(writeapi::parse("{\"accessKey\":\"k\"," + escaped + ":1,\"data\":[3]}", &out).ok());
        CHECK(out.lines == "3\n");
        CHECK(code_of("{\"accessKey\":\"k\",\"" + head + "\x01" + tail + "\":1,\"data\":2}") ==
              ErrorCode::invalid_json);
      }
      // The body ends inside the key, or right after it.
      for (std::size_t cut = 0; cut <= b + 1; ++cut) {
        const std::string body =
            R"({"accessKey":"k","data":[)" + item1 + "," + item1 + ",{" + second.substr(0, cut + 1);
        CHECK(code_of(body) == ErrorCode::invalid_json);
      }
    }
  }
}

TEST_CASE("parse: strings of every length up to 80 with an escape or a bad byte at every offset", "[parse]") {
  // A string's end is taken from the first quote of its first 16 bytes
  // when no backslash or control character comes before it.
  for (std::size_t length = 0; length <= 80; ++length) {
    std::string text;
    for (std::size_t i = 0; i < length; ++i) text += static_cast<char>('a' + i % 26);
    const std::string quoted = "\"" + text + "\"";
    INFO("length " << length);
    CHECK(lines_of("[" + quoted + "," + quoted + "]") == quoted + "\n" + quoted + "\n");
    CHECK(lines_of("{" + quoted + ":" + quoted + "}") == "{" + quoted + ":" + quoted + "}\n");
    for (std::size_t at = 0; at <= length; ++at) {
      INFO("at " << at);
      const std::string head = text.substr(0, at), tail = text.substr(at);
      for (const char* escape : {"\\\"", "\\\\", "\\n", "\\u00e9", "\\ud83d\\ude00"}) {
        const std::string s = "\"" + head + escape + tail + "\"";
        CHECK(lines_of("[" + s + "," + s + "]") == s + "\n" + s + "\n");
      }
      for (const char* bad : {"\x01", "\t", "\n", "\x1f", "\\x", "\\'", "\\u12g"}) {
        const std::string s = "\"" + head + bad + tail + "\"";
        CHECK(code_of(with_data("[" + s + ",1]")) == ErrorCode::invalid_json);
        CHECK(code_of(with_data("{" + s + ":1}")) == ErrorCode::invalid_json);
      }
    }
    // The closing quote escaped: the string runs on to the next quote.
    CHECK(code_of(with_data("[\"" + text + "\\\",1]")) == ErrorCode::invalid_json);
  }
}

TEST_CASE("parse: accessKey deviceId and requestId of every length up to 300 bytes are kept exactly", "[parse]") {
  // Strings without escapes are copied in 8- and 16-byte moves that
  // overlap: every length, each byte distinct from its neighbours.
  for (std::size_t length = 1; length <= 300; ++length) {
    std::string value;
    for (std::size_t i = 0; i < length; ++i) value += "abcdefghijklmnopqrstuvwxyz0123456789"[(i * 7) % 36];
    const std::string id = value.substr(0, std::min<std::size_t>(length, 128));
    const std::string body =
        R"({"accessKey":")" + value + R"(","deviceId":")" + value + R"(","requestId":")" + id + R"(","data":1})";
    INFO("length " << length);
    writeapi::ParsedRequest out;
    const Status s = writeapi::parse(body, &out);
    if (length <= writeapi::kMaxDeviceIdBytes) {
      REQUIRE(s.ok());
      CHECK(out.device_id == value);
    } else {
      CHECK(s.code() == ErrorCode::invalid_device_id);
    }
    CHECK(out.access_key == (s.ok() ? value : ""));
    CHECK(out.request_id == id);
  }
}

TEST_CASE("parse: an ASCII check of the device ID word by word still finds every control character", "[parse]") {
  // deviceId is checked 8 bytes at a time while it is printable ASCII.
  const std::string controls[] = {std::string(1, '\0'), "\x01", "\x1f", "\x7f", "\xc2\x80", "\xc2\x9f"};
  for (std::size_t length = 1; length <= 24; ++length) {
    for (std::size_t at = 0; at < length; ++at) {
      for (const std::string& control : controls) {
        std::string id(length, 'd');
        id.replace(at, 1, control);
        std::string escaped;  // raw C0 controls must be escaped in JSON
        for (char c : id) {
          if (static_cast<unsigned char>(c) < 0x20)
            escaped += "\\u00" + std::string(1, "0123456789abcdef"[c >> 4]) + "0123456789abcdef"[c & 15];
          else
            escaped += c;
        }
        INFO("length " << length << " offset " << at << " control byte "
                       << int(static_cast<unsigned char>(control[0])));
        CHECK(code_of(R"({"accessKey":"k","deviceId":")" + escaped + R"(","data":1})") == ErrorCode::invalid_device_id);
      }
    }
    std::string printable;
    for (std::size_t i = 0; i < length; ++i) printable += static_cast<char>(0x20 + (i * 7) % 0x5F);
    std::string escaped;
    for (char c : printable) escaped += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
    INFO("printable of length " << length);
    writeapi::ParsedRequest out;
    CHECK(writeapi::parse(R"({"accessKey":"k","deviceId":")" + escaped + R"(","data":1})", &out).ok());
    CHECK(out.device_id == printable);
  }
}

// ---------------------------------------------------------------------------
// Body shape.

TEST_CASE("parse: a top-level value other than an object is not_an_object", "[parse]") {
  const char* bodies[] = {
      "[]",    "[1,2]",    R"([{"accessKey":"k","data":1}])", R"("string")", "1", "-1.5e3", "true", "false", "null",
      " [ ] ", "\n\"x\"\n"};
  for (const char* body : bodies) {
    INFO("body: " << body);
    CHECK(name_of(code_of(body)) == "not_an_object");
  }
}

TEST_CASE("parse: missing data is missing_field", "[parse]") {
  CHECK(code_of(R"({"accessKey":"k"})") == ErrorCode::missing_field);
  CHECK(code_of(R"({"accessKey":"k","deviceId":"d"})") == ErrorCode::missing_field);
  CHECK(code_of(R"({"accessKey":"k","Data":1})") == ErrorCode::missing_field);  // names are case-sensitive
  CHECK(code_of(R"({"accessKey":"k","data ":1})") == ErrorCode::missing_field);
  CHECK(code_of(R"({"accessKey":"k","extra":{"data":1}})") == ErrorCode::missing_field);  // nested does not count
}

TEST_CASE("parse: a missing or empty accessKey is missing_access_key", "[parse]") {
  CHECK(code_of(R"({"data":1})") == ErrorCode::missing_access_key);
  CHECK(code_of(R"({"data":1,"deviceId":"d"})") == ErrorCode::missing_access_key);
  CHECK(code_of(R"({"accessKey":"","data":1})") == ErrorCode::missing_access_key);
  CHECK(code_of(R"({"accesskey":"k","data":1})") == ErrorCode::missing_access_key);
  CHECK(code_of(R"({"data":{"accessKey":"k"}})") == ErrorCode::missing_access_key);
  Status s;
  ParsedRequest out;
  s = writeapi::parse(R"({"data":1})", &out);
  CHECK(s.http_status() == 401);
}

TEST_CASE("parse: an accessKey that is not a string is invalid_field", "[parse]") {
  const char* values[] = {"1", "null", "true", "[]", "[\"k\"]", "{}", R"({"k":"v"})"};
  for (const char* value : values) {
    INFO("accessKey: " << value);
    CHECK(name_of(code_of(std::string(R"({"accessKey":)") + value + R"(,"data":1})")) == "invalid_field");
  }
}

TEST_CASE("parse: a deviceId that is not a string is invalid_field", "[parse]") {
  const char* values[] = {"1", "null", "false", "[]", "[\"d\"]", "{}", R"({"id":"d"})"};
  for (const char* value : values) {
    INFO("deviceId: " << value);
    CHECK(name_of(code_of(std::string(R"({"accessKey":"k","deviceId":)") + value + R"(,"data":1})")) ==
          "invalid_field");
  }
}

TEST_CASE("parse: deviceId validation", "[parse]") {
  auto with_device = [](const std::string& device_json) {
    return R"({"accessKey":"k","deviceId":)" + device_json + R"(,"data":1})";
  };
  CHECK(code_of(with_device(R"("")")) == ErrorCode::invalid_device_id);
  CHECK(code_of(with_device("\"" + std::string(257, 'd') + "\"")) == ErrorCode::invalid_device_id);
  CHECK(code_of(with_device("\"" + std::string(1000, 'd') + "\"")) == ErrorCode::invalid_device_id);
  CHECK(code_of(with_device(R"("a\u0001b")")) == ErrorCode::invalid_device_id);
  CHECK(code_of(with_device(R"("\u0000")")) == ErrorCode::invalid_device_id);
  CHECK(code_of(with_device(R"("a\nb")")) == ErrorCode::invalid_device_id);
  CHECK(code_of(with_device(R"("a\tb")")) == ErrorCode::invalid_device_id);
  CHECK(code_of(with_device(R"("\u001F")")) == ErrorCode::invalid_device_id);
  CHECK(code_of(with_device("\"a\x7f"
                            "b\"")) == ErrorCode::invalid_device_id);  // raw DEL
  CHECK(code_of(with_device(R"("a\u007fb")")) == ErrorCode::invalid_device_id);
  CHECK(code_of(with_device(R"("a\u0085b")")) == ErrorCode::invalid_device_id);  // C1 control (NEL)
  CHECK(code_of(with_device("\"a\xc2\x9f"
                            "b\"")) == ErrorCode::invalid_device_id);

  ParsedRequest out;
  // Exactly 256 bytes is fine.
  const std::string d256(256, 'd');
  REQUIRE(writeapi::parse(with_device("\"" + d256 + "\""), &out).ok());
  CHECK(out.device_id == d256);
  // Bytes, not characters: 128 two-byte characters are 256 bytes, 129 too many.
  const std::string a128 = repeat("\xc3\xa4", 128);
  REQUIRE(writeapi::parse(with_device("\"" + a128 + "\""), &out).ok());
  CHECK(out.device_id == a128);
  CHECK(code_of(with_device("\"" + repeat("\xc3\xa4", 129) + "\"")) == ErrorCode::invalid_device_id);
  // The limit applies after unescaping: 256 escapes of one byte each are fine.
  REQUIRE(writeapi::parse(with_device("\"" + repeat("\\u0061", 256) + "\""), &out).ok());
  CHECK(out.device_id == std::string(256, 'a'));
  CHECK(code_of(with_device("\"" + repeat("\\u0061", 257) + "\"")) == ErrorCode::invalid_device_id);
  // Non-control non-ASCII characters are allowed.
  REQUIRE(writeapi::parse(with_device(R"("sensor \u00e9 \ud83d\ude00 \u00a0")"), &out).ok());
  CHECK(out.device_id == "sensor \xc3\xa9 \xf0\x9f\x98\x80 \xc2\xa0");
  CHECK(out.has_device_id);
}

TEST_CASE("parse: deviceId is unescaped", "[parse]") {
  ParsedRequest out;
  REQUIRE(writeapi::parse(R"({"accessKey":"k","deviceId":"dev\u002dice\/1 \"q\"","data":1})", &out).ok());
  CHECK(out.has_device_id);
  CHECK(out.device_id == "dev-ice/1 \"q\"");
}

TEST_CASE("parse: requestId is extracted, unescaped and validated", "[parse]") {
  auto with_id = [](const std::string& id_json) {
    return R"({"accessKey":"k","requestId":)" + id_json + R"(,"data":[1,2]})";
  };
  ParsedRequest out;
  REQUIRE(writeapi::parse(R"({"accessKey":"k","data":1})", &out).ok());
  CHECK(!out.has_request_id);
  REQUIRE(writeapi::parse(with_id(R"("req-\u0031 ~")"), &out).ok());
  CHECK(out.has_request_id);
  CHECK(out.request_id == "req-1 ~");
  CHECK(out.item_count == 2);
  // The field is not part of any stored line.
  CHECK(out.lines == "1\n2\n");
  const std::string id128(128, 'r');
  REQUIRE(writeapi::parse(with_id("\"" + id128 + "\""), &out).ok());
  CHECK(out.request_id == id128);
  CHECK(code_of(with_id("\"" + std::string(129, 'r') + "\"")) == ErrorCode::invalid_request_id);
  CHECK(code_of(with_id(R"("")")) == ErrorCode::invalid_request_id);
  CHECK(code_of(with_id(R"("a\tb")")) == ErrorCode::invalid_request_id);
  CHECK(code_of(with_id("\"a\x7f"
                        "b\"")) == ErrorCode::invalid_request_id);
  CHECK(code_of(with_id(R"("\u00e9")")) == ErrorCode::invalid_request_id);
  for (const char* value : {"1", "null", "[]", "{}"}) {
    INFO("requestId: " << value);
    CHECK(code_of(with_id(value)) == ErrorCode::invalid_request_id);
  }
  CHECK(code_of(R"({"accessKey":"k","requestId":"a","requestId":"a","data":1})") == ErrorCode::duplicate_field);
  // Syntax errors still take precedence.
  CHECK(code_of(R"({"accessKey":"k","requestId":1,"data":tru})") == ErrorCode::invalid_json);
  // Pretty-printed bodies give the same, with short indentation and with
  // indentation longer than a 16-byte step.
  for (const std::string& indent : {std::string("\n  "), "\n" + std::string(320, ' ')}) {
    REQUIRE(writeapi::parse(
                "{" + indent + "\"accessKey\": \"k\"," + indent + "\"requestId\": \"p-1\"," + indent + "\"data\": 1\n}",
                &out)
                .ok());
    CHECK(out.request_id == "p-1");
    CHECK(code_of("{" + indent + "\"accessKey\": \"k\"," + indent + "\"requestId\": 7," + indent + "\"data\": 1\n}") ==
          ErrorCode::invalid_request_id);
  }
}

TEST_CASE("parse: duplicate top-level fields are duplicate_field", "[parse]") {
  CHECK(code_of(R"({"accessKey":"k","accessKey":"k","data":1})") == ErrorCode::duplicate_field);
  CHECK(code_of(R"({"accessKey":"k","data":1,"data":1})") == ErrorCode::duplicate_field);
  CHECK(code_of(R"({"accessKey":"k","data":[1],"data":[2]})") == ErrorCode::duplicate_field);
  CHECK(code_of(R"({"accessKey":"k","deviceId":"a","deviceId":"b","data":1})") == ErrorCode::duplicate_field);
  CHECK(code_of(R"({"accessKey":"k","x":1,"data":1,"x":2})") == ErrorCode::duplicate_field);
  CHECK(code_of(R"({"accessKey":"k","data":1,"":1,"":2})") == ErrorCode::duplicate_field);
  // Written once plainly and once with escapes, it is still the same field.
  CHECK(code_of(R"({"accessKey":"k","data":1,"d\u0061ta":2})") == ErrorCode::duplicate_field);
  CHECK(code_of(R"({"\u0061ccessKey":"k","data":1,"accessKey":"k"})") == ErrorCode::duplicate_field);
  CHECK(code_of(R"({"accessKey":"k","data":1,"\u0078":1,"x":2})") == ErrorCode::duplicate_field);
  // Nested duplicates are data, not top-level fields.
  CHECK(lines_of(R"({"a":1,"a":2})") == "{\"a\":1,\"a\":2}\n");
}

TEST_CASE("parse: duplicates are found among many top-level fields", "[parse]") {
  // More fields than any small fixed-size table, some plain, some escaped.
  std::string fields;
  for (int i = 0; i < 64; ++i) {
    fields += "\"f" + std::to_string(i) + "\":" + std::to_string(i) + ",";
    fields += "\"\\u0067" + std::to_string(i) + "\":" + std::to_string(i) + ",";  // "g<i>"
  }
  const std::string ok_body = "{" + fields + R"("accessKey":"k","data":1})";
  ParsedRequest out;
  REQUIRE(writeapi::parse(ok_body, &out).ok());
  CHECK(out.lines == "1\n");
  for (const char* dup :
       {R"("f0")", R"("f63")", R"("g0")", R"("g1")", R"("\u0066\u0030")", R"("g63")", R"("\u0067\u0031\u0037")"}) {
    INFO("duplicate: " << dup);
    CHECK(name_of(code_of("{" + fields + R"("accessKey":"k",)" + dup + R"(:0,"data":1})")) == "duplicate_field");
  }
}

TEST_CASE("parse: escaped short field names are remembered correctly", "[parse]") {
  // A few escaped names, each short; the last one repeats the first.
  CHECK(code_of(R"({"\u0061":1,"\u0062":2,"\u0063":3,"\u0064":4,"\u0065":5,"\u0061":6,"accessKey":"k","data":1})") ==
        ErrorCode::duplicate_field);
  CHECK(code_of(R"({"\u0061":1,"\u0062":2,"\u0063":3,"\u0064":4,"\u0065":5,"a":6,"accessKey":"k","data":1})") ==
        ErrorCode::duplicate_field);
  CHECK(code_of(R"({"\u0061":1,"\u0062":2,"\u0063":3,"\u0064":4,"\u0065":5,"f":6,"accessKey":"k","data":1})") ==
        ErrorCode::ok);
}

TEST_CASE("parse: unknown top-level fields are ignored", "[parse]") {
  ParsedRequest out;
  REQUIRE(writeapi::parse(
              R"({"extra":{"x":[1,2]},"accessKey":"k","timestamp":123,"data":[1,{"y":2}],"more":"zzz","n":null})", &out)
              .ok());
  CHECK(out.item_count == 2);
  CHECK(out.lines == "1\n{\"y\":2}\n");
  CHECK(out.lines.find("zzz") == std::string::npos);
  CHECK(out.lines.find("extra") == std::string::npos);
}

TEST_CASE("parse: field names written with escapes are recognised", "[parse]") {
  ParsedRequest out;
  REQUIRE(writeapi::parse(R"({"\u0061ccessKey":"k","d\u0061ta":[1,2],"device\u0049d":"dev"})", &out).ok());
  CHECK(out.access_key == "k");
  CHECK(out.item_count == 2);
  CHECK(out.lines == "1\n2\n");
  CHECK(out.device_id == "dev");
  CHECK(code_of(R"({"\u0061ccessKey":"k"})") == ErrorCode::missing_field);
  CHECK(code_of(R"({"d\u0061ta":null,"accessKey":"k"})") == ErrorCode::null_data);
  CHECK(code_of(R"({"\u0064\u0061\u0074\u0061":1})") == ErrorCode::missing_access_key);
}

TEST_CASE("parse: the access key is unescaped", "[parse]") {
  ParsedRequest out;
  REQUIRE(writeapi::parse(R"({"accessKey":"\u0066b","data":1})", &out).ok());
  CHECK(out.access_key == "fb");
  REQUIRE(writeapi::parse(R"({"accessKey":"a\/b\\c\"d\u00e9\ud83d\ude00","data":1})", &out).ok());
  CHECK(out.access_key == "a/b\\c\"d\xc3\xa9\xf0\x9f\x98\x80");
  REQUIRE(writeapi::parse(R"({"accessKey":" spaced key ","data":1})", &out).ok());
  CHECK(out.access_key == " spaced key ");
}

// ---------------------------------------------------------------------------
// Depth.

TEST_CASE("parse: max_depth counts the top-level object as depth 1", "[parse]") {
  ParseOptions options;
  options.max_depth = 4;
  ParsedRequest out;
  // { = 1, data array = 2, [ = 3, [ = 4.
  REQUIRE(writeapi::parse(with_data("[[[1]]]"), &out, options).ok());
  CHECK(out.lines == "[[1]]\n");
  CHECK(writeapi::parse(with_data("[[[[1]]]]"), &out, options).code() == ErrorCode::too_deep);
  CHECK(out.lines.empty());
  CHECK(out.item_count == 0);
  // Empty containers count as a level too.
  CHECK(code_of(with_data("[[[]]]"), options) == ErrorCode::ok);
  CHECK(code_of(with_data("[[[[]]]]"), options) == ErrorCode::too_deep);
  CHECK(code_of(with_data("[[[{}]]]"), options) == ErrorCode::too_deep);
  // Objects as data: { = 1, data object = 2, 3, 4.
  CHECK(code_of(with_data(R"({"a":{"b":{"c":1}}})"), options) == ErrorCode::ok);
  CHECK(code_of(with_data(R"({"a":{"b":{"c":{"d":1}}}})"), options) == ErrorCode::too_deep);
  CHECK(code_of(with_data(R"({"a":[[1]]})"), options) == ErrorCode::ok);
  CHECK(code_of(with_data(R"({"a":[[[1]]]})"), options) == ErrorCode::too_deep);
  // Ignored fields obey the same limit.
  CHECK(code_of(with_extra("[[[1]]]"), options) == ErrorCode::ok);
  CHECK(code_of(with_extra("[[[[1]]]]"), options) == ErrorCode::too_deep);
  // A later sibling at the limit is fine after a deep one closed.
  CHECK(code_of(with_data("[[[1]],[[2]],{\"a\":[3]}]"), options) == ErrorCode::ok);
}

TEST_CASE("parse: small max_depth values", "[parse]") {
  ParseOptions options;
  options.max_depth = 2;
  CHECK(code_of(with_data("[1,2]"), options) == ErrorCode::ok);
  CHECK(code_of(with_data("{}"), options) == ErrorCode::ok);
  CHECK(code_of(with_data("1"), options) == ErrorCode::ok);
  CHECK(code_of(with_data("[[1]]"), options) == ErrorCode::too_deep);
  CHECK(code_of(with_data(R"({"a":[]})"), options) == ErrorCode::too_deep);
  CHECK(code_of(with_extra("[]"), options) == ErrorCode::ok);
  CHECK(code_of(with_extra("[[]]"), options) == ErrorCode::too_deep);
  options.max_depth = 1;
  CHECK(code_of(with_data("1"), options) == ErrorCode::ok);
  CHECK(code_of(with_data("[]"), options) == ErrorCode::too_deep);
  CHECK(code_of(with_data("{}"), options) == ErrorCode::too_deep);
}

TEST_CASE("parse: the default depth limit is 1024", "[parse]") {
  CHECK(ParseOptions().max_depth == 1024);
  ParsedRequest out;
  // The data array is depth 2, so 1023 nested arrays reach exactly 1024.
  REQUIRE(writeapi::parse(with_data(nested_arrays(1023)), &out).ok());
  CHECK(out.item_count == 1);
  CHECK(out.lines == nested_arrays(1022) + "\n");
  CHECK(code_of(with_data(nested_arrays(1024))) == ErrorCode::too_deep);
}

TEST_CASE("parse: 100000-deep nesting is too_deep, not a crash", "[parse]") {
  const std::string deep = nested_arrays(100000);
  ParsedRequest out;
  CHECK(writeapi::parse(with_data(deep), &out).code() == ErrorCode::too_deep);
  CHECK(out.lines.empty());
  CHECK(out.item_count == 0);
  CHECK(code_of(with_extra(deep)) == ErrorCode::too_deep);
  CHECK(code_of(with_data(repeat("{\"a\":", 100000) + "1" + repeat("}", 100000))) == ErrorCode::too_deep);
  CHECK(code_of(deep) == ErrorCode::too_deep);  // top-level array
  // Unterminated deep nesting is rejected one way or the other.
  ErrorCode open_only = code_of(with_data(repeat("[", 100000)));
  CHECK((open_only == ErrorCode::too_deep || open_only == ErrorCode::invalid_json));
  // With the limit lifted, the parser copes without recursion.
  ParseOptions unlimited;
  unlimited.max_depth = 200000;
  REQUIRE(writeapi::parse(with_data(deep), &out, unlimited).ok());
  CHECK(out.item_count == 1);
  CHECK(out.lines.size() == 2 * 99999 + 1 + 1);
}

// ---------------------------------------------------------------------------
// Hostile sizes.

TEST_CASE("parse: a million tiny items", "[parse]") {
  const std::size_t n = 1000000;
  std::string data = "[";
  data.reserve(2 * n + 2);
  for (std::size_t i = 0; i < n; ++i) data += i ? ",1" : "1";
  data += "]";
  ParsedRequest out;
  REQUIRE(writeapi::parse(with_data(data), &out).ok());
  CHECK(out.item_count == n);
  CHECK(out.lines.size() == 2 * n);
  bool all_ones = out.lines == repeat("1\n", n);
  CHECK(all_ones);
}

TEST_CASE("parse: a 10 MiB string is one item, byte-exact", "[parse]") {
  const std::size_t size = 10 * 1024 * 1024;
  std::string text;
  text.reserve(size);
  const std::string pieces[] = {"abcdefghij", "0123456789",       " spaced ", "\\n", "\\u00e9",
                                "\xc3\xa4",   "\xf0\x9f\x98\x80", "\\\"",     "/",   "\x7f"};
  for (std::size_t i = 0; text.size() < size - 16; ++i) text += pieces[(i * 7) % 10];
  const std::string item = "\"" + text + "\"";
  ParsedRequest out;
  REQUIRE(writeapi::parse(with_data(item), &out).ok());
  CHECK(out.item_count == 1);
  CHECK(out.lines.size() == item.size() + 1);
  bool exact = out.lines == item + "\n";
  CHECK(exact);
}

// ---------------------------------------------------------------------------
// Reuse of a ParsedRequest.

TEST_CASE("parse: a ParsedRequest is reused without leaking old data", "[parse]") {
  ParsedRequest out;
  REQUIRE(writeapi::parse(R"({"accessKey":"first","deviceId":"dev1","data":[1,2,3]})", &out).ok());
  CHECK(out.item_count == 3);
  CHECK(out.lines == "1\n2\n3\n");

  REQUIRE(writeapi::parse(R"({"accessKey":"second","data":"x"})", &out).ok());
  CHECK(out.access_key == "second");
  CHECK_FALSE(out.has_device_id);
  CHECK(out.device_id.empty());
  CHECK(out.item_count == 1);
  CHECK(out.lines == "\"x\"\n");

  // A failure after data was copied leaves nothing usable behind.
  CHECK(writeapi::parse(R"({"accessKey":"k","data":[4,5,6],"x":01})", &out).code() == ErrorCode::invalid_json);
  CHECK(out.lines.empty());
  CHECK(out.item_count == 0);
  CHECK(writeapi::parse(R"({"accessKey":"k","data":[7,8],"data":[9]})", &out).code() == ErrorCode::duplicate_field);
  CHECK(out.lines.empty());
  CHECK(out.item_count == 0);
  CHECK(writeapi::parse(R"({"accessKey":"k","data":[7,null]})", &out).code() == ErrorCode::null_data);
  CHECK(out.lines.empty());
  CHECK(out.item_count == 0);
  CHECK(writeapi::parse("\xff", &out).code() == ErrorCode::invalid_utf8);
  CHECK(out.lines.empty());
  CHECK(out.item_count == 0);

  // Empty data after a full one.
  REQUIRE(writeapi::parse(R"({"accessKey":"k","data":[10]})", &out).ok());
  REQUIRE(writeapi::parse(R"({"accessKey":"k","data":[]})", &out).ok());
  CHECK(out.lines.empty());
  CHECK(out.item_count == 0);

  // And it works again afterwards.
  REQUIRE(writeapi::parse(R"({"accessKey":"third","deviceId":"d3","data":{"v":1}})", &out).ok());
  CHECK(out.access_key == "third");
  CHECK(out.device_id == "d3");
  CHECK(out.lines == "{\"v\":1}\n");
  CHECK(out.item_count == 1);
}

TEST_CASE("parse: clear() resets every field", "[parse]") {
  ParsedRequest out;
  REQUIRE(writeapi::parse(R"({"accessKey":"k","deviceId":"d","data":[1]})", &out).ok());
  out.clear();
  CHECK(out.access_key.empty());
  CHECK_FALSE(out.has_device_id);
  CHECK(out.device_id.empty());
  CHECK(out.lines.empty());
  CHECK(out.item_count == 0);
}

// ---------------------------------------------------------------------------
// Differential check against simdjson's DOM parser.

TEST_CASE("parse: agrees with simdjson on validity and emits valid JSON lines", "[parse][simdjson]") {
  struct Case {
    std::string body;
    bool big_numbers;  // lines hold numbers outside double range
  };
  const std::string pad(70, 'p');
  const std::vector<Case> cases = {
      {with_data("1"), false},
      {with_data("[]"), false},
      {with_data(R"([1,"a",{"b":[1,2]},[3]])"), false},
      {with_data(R"({ "t" : 1584156800 , "v" : [ 4.70 , -0 , 1E+5 , 0.0e-0 ] })"), false},
      {with_data(R"("a\u00e9\n\"x\ud83d\ude00\/")"), false},
      {with_data("\" \xc3\xa4 \xe6\x97\xa5 \xf0\x9f\x98\x80 \x7f\""), false},
      {with_data("[123456789012345678901234567890,-1e400,1e400,1.5e-999]"), true},
      {with_data("\"" + pad + "\\t" + pad + "\""), false},
      // simdjson's own limit is one level lower than ours (it rejects depth
      // 1024), so stay below it here; depth 1024 is tested separately.
      {with_data(nested_arrays(1022)), false},
      {with_extra(R"({"x":[1,{"y":null}]})"), false},
      {R"({"accessKey":"k","deviceId":"d","data":[true,false,{}]})", false},
      {" \r\n\t{ \"accessKey\" : \"k\" , \"data\" : [ 1 , [ 2 , 3 ] ] } \r\n", false},
      {with_data("null"), false},
      {R"({"accessKey":"k"})", false},
      {"[1,2]", false},
      {R"({"accessKey":"k","data":1,"data":2})", false},
      // Invalid ones.
      {with_data("01"), false},
      {with_data("1."), false},
      {with_data("-"), false},
      {with_data("1e+"), false},
      {with_data(".5"), false},
      {with_data("+1"), false},
      {with_data("0x10"), false},
      {with_data("NaN"), false},
      {with_data("Infinity"), false},
      {with_data("tru"), false},
      {with_data("True"), false},
      {with_data(R"("abc)"), false},
      {with_data("\"a\tb\""), false},
      {with_data("\"a\x01\""), false},
      {with_data(R"("\x")"), false},
      {with_data(R"("\u12G4")"), false},
      {with_data(R"("\ud800")"), false},
      {with_data(R"("\udc00")"), false},
      {with_data(R"("\ud800\u0041")"), false},
      {with_data("[1,2,]"), false},
      {with_data(R"({"a":1,})"), false},
      {with_data(R"({"a" 1})"), false},
      {with_data("[1 2]"), false},
      {with_data("1") + " x", false},
      {with_data("1") + "{}", false},
      {"", false},
      {" \n ", false},
      {"{'accessKey':'k','data':1}", false},
      {with_extra("[1,,2]"), false},
      {with_extra("01"), false},
      {with_data("\"\xff\""), false},
      {with_data("\"\xc0\xaf\""), false},
      {with_data("\"\xed\xa0\x80\""), false},
      {with_data(nested_arrays(1024)), false},
      {with_data(nested_arrays(100000)), false},
  };
  for (const Case& c : cases) {
    INFO("body: " << (c.body.size() > 300 ? c.body.substr(0, 300) + "..." : c.body));
    ParsedRequest out;
    Status s = writeapi::parse(c.body, &out);
    simdjson::error_code simd_error;
    bool simd_ok = simdjson_accepts(c.body, &simd_error);
    INFO("parse: " << s.name() << "; simdjson: " << simdjson::error_message(simd_error));
    if (s.code() == ErrorCode::invalid_json || s.code() == ErrorCode::invalid_utf8 || s.code() == ErrorCode::too_deep) {
      // Never stricter than simdjson about JSON itself.
      CHECK_FALSE(simd_ok);
    } else if (!c.big_numbers) {
      // Everything else parsed as JSON, so simdjson must accept the body.
      CHECK(simd_ok);
    }
    if (!s.ok()) continue;
    REQUIRE(!out.lines.empty() == (out.item_count > 0));
    if (!out.lines.empty()) CHECK(out.lines.back() == '\n');
    std::vector<std::string> lines = split_lines(out.lines);
    CHECK(lines.size() == out.item_count);
    for (const std::string& line : lines) {
      INFO("line: " << (line.size() > 300 ? line.substr(0, 300) + "..." : line));
      CHECK(line.find('\n') == std::string::npos);
      CHECK(line.find('\r') == std::string::npos);
      if (c.big_numbers) continue;
      simdjson::error_code line_error;
      bool line_ok = simdjson_accepts(line, &line_error);
      INFO("simdjson on line: " << simdjson::error_message(line_error));
      CHECK(line_ok);
    }
  }
}

// ---------------------------------------------------------------------------
// The two walks (lib/src/parse_walk.h): the forward pass and the walk over
// simdjson's stage-1 index give the same answer for every body.

namespace {

struct Answer {
  ErrorCode code;
  std::string lines, access_key, device_id, request_id;
  bool has_device_id, has_request_id;
  std::size_t items;
  bool operator==(const Answer& o) const {
    return code == o.code && lines == o.lines && access_key == o.access_key && device_id == o.device_id &&
           request_id == o.request_id && has_device_id == o.has_device_id && has_request_id == o.has_request_id &&
           items == o.items;
  }
};

Answer answer_with(writeapi::internal::ParseWalk walk, std::string_view body, std::size_t max_depth = 1024) {
  writeapi::internal::set_parse_walk(walk);
  ParsedRequest out;
  ParseOptions options;
  options.max_depth = max_depth;
  const Status s = writeapi::parse(body, &out, options);
  writeapi::internal::set_parse_walk(writeapi::internal::ParseWalk::automatic);
  return {s.code(),       out.lines,         out.access_key,     out.device_id,
          out.request_id, out.has_device_id, out.has_request_id, out.item_count};
}

}  // namespace

TEST_CASE("parse: the forward and index walks agree on every one-byte change of pretty-printed bodies", "[parse]") {
  // indexed: with AVX-512 where the CPU has it; indexed_baseline: SSE2
  // only; indexed_compressed: items copied by SIMD compression.
  using writeapi::internal::ParseWalk;
  const std::string pretty_batch = R"({
  "accessKey": "k\u0041y",
  "deviceId": "dev-1",
  "requestId": "r1",
  "extra": [true, false, null, {"x": "\"q\\"}],
  "data": [
    {"t": 1584156800, "v": [-0.5e+3, 12, 0], "s": "caf\u00e9 é"},
    null,
    [[1], {}],
    "plain"
  ]
})";
  const std::string bodies[] = {writeapi::testing::kDocumentBody, pretty_batch,
                                "\n" + std::string(400, ' ') + with_data("[1,2,3]") + "\n\t\r "};
  const unsigned char replacements[] = {' ', '\n', '"', '\\', '{', '}', '[',  ']',  ',',  ':',
                                        '0', '1',  '-', 'e',  'x', 'n', 0x01, 0x7f, 0xc3, 0xff};
  std::size_t compared = 0;
  for (const std::string& body : bodies) {
    for (std::size_t depth : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{1024}}) {
      REQUIRE(answer_with(ParseWalk::forward, body, depth) == answer_with(ParseWalk::indexed, body, depth));
      REQUIRE(answer_with(ParseWalk::forward, body, depth) == answer_with(ParseWalk::indexed_baseline, body, depth));
      REQUIRE(answer_with(ParseWalk::forward, body, depth) == answer_with(ParseWalk::indexed_compressed, body, depth));
    }
    for (std::size_t i = 0; i < body.size(); ++i) {
      for (unsigned char c : replacements) {
        std::string changed = body;
        changed[i] = static_cast<char>(c);
        for (std::string_view variant : {std::string_view(changed), std::string_view(changed).substr(0, i + 1)}) {
          INFO("offset " << i << " byte " << int(c) << " length " << variant.size());
          const Answer forward = answer_with(ParseWalk::forward, variant);
          const Answer indexed = answer_with(ParseWalk::indexed, variant);
          const Answer baseline = answer_with(ParseWalk::indexed_baseline, variant);
          const Answer compressed = answer_with(ParseWalk::indexed_compressed, variant);
          CHECK(name_of(forward.code) == name_of(indexed.code));
          CHECK(forward == indexed);
          CHECK(forward == baseline);
          CHECK(forward == compressed);
          ++compared;
        }
      }
    }
  }
  CHECK(compared > 10000);
}

TEST_CASE("parse: index memory is bounded for all threads together and returned when a thread ends", "[parse]") {
  using writeapi::internal::ParseWalk;
  // What this process's other threads hold (this one's index, from earlier
  // cases when they run in one process) is not for this case to use.
  const std::size_t before = writeapi::internal::parse_index_bytes();
  REQUIRE(before < writeapi::internal::kParseIndexBudget);
  const std::size_t room = writeapi::internal::kParseIndexBudget - before;
  // A pretty-printed body whose index (4.5 bytes per byte) takes three
  // quarters of the room left: two threads cannot both hold one.
  std::string body = "{\n  \"accessKey\": \"k\",\n  \"data\": [\n";
  const std::string item = "    {\n      \"t\": 1584156800,\n      \"v\": \"abcdefghij\"\n    },\n";
  while (body.size() < room / 6) body += item;
  body += "    1\n  ]\n}\n";
  const Answer expected = answer_with(ParseWalk::forward, body);
  REQUIRE(expected.code == ErrorCode::ok);

  std::mutex mutex;
  std::condition_variable changed;
  int stage = 0;
  auto wait_for = [&](int s) {
    std::unique_lock<std::mutex> lock(mutex);
    changed.wait(lock, [&] { return stage >= s; });
  };
  auto advance = [&] {
    std::lock_guard<std::mutex> lock(mutex);
    ++stage;
    changed.notify_all();
  };
  Answer first, second;
  std::size_t held_by_first = 0, held_by_both = 0;
  std::thread a([&] {
    first = answer_with(ParseWalk::indexed, body);
    held_by_first = writeapi::internal::parse_index_bytes();
    advance();    // stage 1: a holds its index
    wait_for(2);  // until b has parsed
  });
  std::thread b([&] {
    wait_for(1);
    second = answer_with(ParseWalk::indexed, body);  // no room: the forward pass
    held_by_both = writeapi::internal::parse_index_bytes();
    advance();
  });
  a.join();
  b.join();
  CHECK(first == expected);
  CHECK(second == expected);
  CHECK(held_by_first - before > body.size() * 4);
  CHECK(held_by_first <= writeapi::internal::kParseIndexBudget);
  CHECK(held_by_both == held_by_first);
  CHECK(writeapi::internal::parse_index_bytes() == before);
}

namespace {

// `body` copied to the end of a readable page followed by an unreadable
// one: a read past its end faults, even in code that sanitizers do not see
// (simdjson is not instrumented).
class GuardedBody {
 public:
  explicit GuardedBody(std::string_view body) {
    page_ = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    pages_ = (body.size() + page_ - 1) / page_ + 1;
    base_ =
        static_cast<char*>(mmap(nullptr, pages_ * page_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    REQUIRE(base_ != MAP_FAILED);
    REQUIRE(mprotect(base_ + (pages_ - 1) * page_, page_, PROT_NONE) == 0);
    char* at = base_ + (pages_ - 1) * page_ - body.size();
    std::memcpy(at, body.data(), body.size());
    view_ = std::string_view(at, body.size());
  }
  GuardedBody(const GuardedBody&) = delete;
  GuardedBody& operator=(const GuardedBody&) = delete;
  ~GuardedBody() { munmap(base_, pages_ * page_); }
  std::string_view view() const { return view_; }

 private:
  std::size_t page_ = 0, pages_ = 0;
  char* base_ = nullptr;
  std::string_view view_;
};

}  // namespace

TEST_CASE("parse: no walk reads past the body's end on any of simdjson's kernels", "[parse]") {
  using writeapi::internal::ParseWalk;
  // simdjson's fallback kernel reads a byte past a body that ends inside a
  // string (a cut UTF-8 sequence among others): the index walk must never
  // run its stage 1, even when a program makes it the active kernel after
  // parse() has used another.
  const std::string pad = "{\n" + std::string(400, ' ');
  const std::string bodies[] = {
      "\"\xc3",
      "\"\xe2\x82",
      "\"\xf0\x9f\x98",
      R"({"accessKey":"k","data":")"
      "\xc3",
      pad + "\"\xc3",
      pad + R"("accessKey": "k", "data": "abc)",
      pad + R"("accessKey": "k", "data": "a\)",
      pad + R"("accessKey": "k", "data": [1, 2)",
      pad + R"("accessKey": "k", "data": tru)",
      pad + R"("accessKey": "k", "data": 12)",
      pad + R"("accessKey": "k", "data": [1, 2]})",
      writeapi::testing::kDocumentBody,
  };
  auto& active = simdjson::get_active_implementation();
  const simdjson::implementation* const original = active;
  for (const char* name : {"icelake", "haswell", "westmere", "fallback"}) {
    const simdjson::implementation* kernel = simdjson::get_available_implementations()[name];
    if (kernel == nullptr || !kernel->supported_by_runtime_system()) continue;
    active = kernel;
    for (const std::string& text : bodies) {
      const Answer expected = answer_with(ParseWalk::forward, text);
      for (ParseWalk walk :
           {ParseWalk::automatic, ParseWalk::indexed, ParseWalk::indexed_baseline, ParseWalk::indexed_compressed}) {
        INFO("kernel " << name << ", walk " << static_cast<int>(walk) << ", body " << text);
        const GuardedBody guarded(text);
        CHECK(answer_with(walk, guarded.view()) == expected);
      }
    }
  }
  active = original;
}
