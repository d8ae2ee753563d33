// One side of parse-ab: compiled once per copy of parse.cpp, with
// -Dwriteapi=wa_a -DWRITEAPI_AB_SIDE=a (or wa_b and b), so that the two
// copies and their callers have different symbols in one binary.
#include <string>
#include <string_view>

#include "writeapi/parse.h"

#define WRITEAPI_AB_CAT2(a, b) a##b
#define WRITEAPI_AB_CAT(a, b) WRITEAPI_AB_CAT2(a, b)

// Parses `body` into a ParsedRequest kept for reuse, as a server thread
// does; returns its lines and sets `*code` to the status code.
const std::string* WRITEAPI_AB_CAT(parse_ab_, WRITEAPI_AB_SIDE)(std::string_view body, int* code) {
  static writeapi::ParsedRequest out;
  writeapi::Status status = writeapi::parse(body, &out);
  *code = static_cast<int>(status.code());
  return &out.lines;
}
