// Runs the parse tests under one of parse()'s two walks (lib/src/
// parse_walk.h), named by the environment variable WRITEAPI_PARSE_WALK:
// "forward", "indexed", "indexed-baseline" (the index walk with SSE2 only)
// or "indexed-compressed" (every item copied by SIMD compression where the
// CPU can); unset or empty, parse() picks per body as it does
// in production. tests/unit/CMakeLists.txt registers each parse test under
// each walk, so that both are held to every case on any CPU.
#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "parse_walk.h"

namespace {

struct ParseWalkListener : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  void testCaseStarting(Catch::TestCaseInfo const&) override {
    const char* walk = std::getenv("WRITEAPI_PARSE_WALK");
    if (walk == nullptr || *walk == '\0') {
      writeapi::internal::set_parse_walk(writeapi::internal::ParseWalk::automatic);
    } else if (std::strcmp(walk, "forward") == 0) {
      writeapi::internal::set_parse_walk(writeapi::internal::ParseWalk::forward);
    } else if (std::strcmp(walk, "indexed") == 0) {
      writeapi::internal::set_parse_walk(writeapi::internal::ParseWalk::indexed);
    } else if (std::strcmp(walk, "indexed-baseline") == 0) {
      writeapi::internal::set_parse_walk(writeapi::internal::ParseWalk::indexed_baseline);
    } else if (std::strcmp(walk, "indexed-compressed") == 0) {
      writeapi::internal::set_parse_walk(writeapi::internal::ParseWalk::indexed_compressed);
    } else {
      std::fprintf(stderr, "WRITEAPI_PARSE_WALK=%s: expected forward or indexed[-baseline|-compressed]\n", walk);
      std::exit(2);
    }
  }
};

}  // namespace

CATCH_REGISTER_LISTENER(ParseWalkListener)
