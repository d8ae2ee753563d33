// Regression cases for writeapi::parse found by fuzzing (tests/fuzz) or by
// review of the parser against its contract (parse.h). Each case names the
// input, what was expected and what happened. The raw inputs of fuzzer
// finds also live in tests/fuzz/corpus/parse/, where every build replays
// them through the fuzzer's oracle (ctest -L fuzz).
//
// A case for a bug still open would be tagged [!shouldfail] (Catch2 then
// counts it as passing while the bug is there, and as failing once the
// library is fixed, so that the fix also removes the tag). None is open.
#include <catch2/catch.hpp>

#include <string>
#include <string_view>

#include "writeapi/parse.h"

using writeapi::ErrorCode;
using writeapi::ParsedRequest;
using writeapi::ParseOptions;

namespace {

ErrorCode code_of(std::string_view body, std::size_t max_depth) {
  ParsedRequest out;
  ParseOptions options;
  options.max_depth = max_depth;
  return writeapi::parse(body, &out, options).code();
}

std::string name_of(ErrorCode code) { return std::string(writeapi::error_name(code)); }

}  // namespace

// Found by review (fuzz_parse then tried max_depth 1..8 only; now 0..8);
// fixed in 7b9bcc6.
// parse.h: "Deepest nesting of arrays and objects accepted, counting the
// top-level object as depth 1. Deeper bodies get ErrorCode::too_deep." The
// top-level object was never checked against the limit (Scanner::run
// consumed its '{' without the check scan_value makes for every other
// container), so with max_depth 0 a flat body was accepted while a
// top-level array of the same depth was too_deep:
//   body {"accessKey":"k","data":1}  (hex 7b226163636573734b6579223a226b222c2264617461223a317d)
//   max_depth 0: expected too_deep, got ok.
TEST_CASE("parse regression: max_depth 0 refuses even a flat body", "[parse][regression]") {
  CHECK(name_of(code_of(R"({"accessKey":"k","data":1})", 0)) == "too_deep");
  CHECK(name_of(code_of(R"({})", 0)) == "too_deep");
  CHECK(name_of(code_of(R"([1])", 0)) == "too_deep");
  // Invalid UTF-8 anywhere is still reported first.
  CHECK(name_of(code_of("{\"a\":\"\xff\"}", 0)) == "invalid_utf8");
}

TEST_CASE("parse regression: max_depth 1 is the top-level object alone", "[parse][regression]") {
  CHECK(name_of(code_of(R"({"accessKey":"k","data":1})", 1)) == "ok");
  CHECK(name_of(code_of(R"({"accessKey":"k","data":[1]})", 1)) == "too_deep");
  CHECK(name_of(code_of(R"({"accessKey":"k","data":{}})", 1)) == "too_deep");
  CHECK(name_of(code_of(R"({"accessKey":"k","x":[],"data":1})", 1)) == "too_deep");
  CHECK(name_of(code_of(R"([1])", 1)) == "not_an_object");
  CHECK(name_of(code_of(R"([[1]])", 1)) == "too_deep");
}
