// Which of parse()'s two walks (lib/src/parse.cpp) a body takes: the
// forward pass, or the walk over simdjson's stage-1 structural index. Both
// give the same answer for every body, so the choice is one of speed only.
// Private to the library; tests and fuzzers force each walk in turn to hold
// the two to the same answers.
#ifndef WRITEAPI_SRC_PARSE_WALK_H_
#define WRITEAPI_SRC_PARSE_WALK_H_

#include <cstddef>

namespace writeapi::internal {

enum class ParseWalk {
  // The default: the index walk for pretty-printed bodies of 320 bytes or
  // more where simdjson's stage 1 runs 64 bytes per step (AVX-512), the
  // forward pass otherwise.
  automatic,
  // The forward pass for every body.
  forward,
  // The index walk for every body, as long as simdjson's active kernel is
  // one of its SIMD ones (its fallback kernel's stage 1 reads past the end
  // of some bodies), the index memory budget has room (the forward pass
  // otherwise) and stage 1 accepts the body (for a body it refuses, the
  // forward pass tells which error comes first). On a
  // CPU with AVX-512 VBMI2 it checks long strings 64 bytes per step and
  // copies items either by SIMD compression or in runs between whitespace,
  // by which is faster for the body; elsewhere it uses SSE2 only.
  indexed,
  // indexed, with SSE2 only whatever the CPU.
  indexed_baseline,
  // indexed, with every item copied by SIMD compression where the CPU has
  // AVX-512 VBMI2 (indexed picks per body between that and copies in runs).
  indexed_compressed,
};

// Sets the walk parse() takes on the calling thread (automatic until set).
void set_parse_walk(ParseWalk walk);

// The index walk's memory: each thread keeps its index (4 bytes per byte
// of the largest body it indexed, plus 1/8), and all threads' indexes
// together hold at most kParseIndexBudget bytes. A body whose index does not
// fit takes the forward pass.
constexpr std::size_t kParseIndexBudget = std::size_t{64} << 20;

// Bytes the indexes of all threads hold now, counted against
// kParseIndexBudget.
std::size_t parse_index_bytes();

}  // namespace writeapi::internal

#endif  // WRITEAPI_SRC_PARSE_WALK_H_
