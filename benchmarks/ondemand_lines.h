// simdjson On-Demand doing parse's job, behind a wrapper free of simdjson
// types: On-Demand picks its SIMD kernel when it is compiled, so
// ondemand_lines.cpp is built for AVX2 (simdjson's "haswell" kernel) while
// the rest of the benchmark keeps the default target, where simdjson's DOM
// parser chooses its kernel at run time.
#ifndef WRITEAPI_BENCHMARKS_ONDEMAND_LINES_H_
#define WRITEAPI_BENCHMARKS_ONDEMAND_LINES_H_

#include <cstddef>
#include <memory>
#include <string>

namespace writeapi_bench {

class OnDemandLines {
 public:
  OnDemandLines();
  ~OnDemandLines();
  // Iterates the body's top-level fields and writes each item of "data"
  // (its raw text through simdjson's minifier) as one line to `*lines`.
  // `body` holds `length` bytes of JSON followed by padding up to
  // `capacity` (at least simdjson::SIMDJSON_PADDING more). Returns false
  // on any error simdjson reports.
  bool run(const char* body, std::size_t length, std::size_t capacity, std::string* lines);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace writeapi_bench

#endif  // WRITEAPI_BENCHMARKS_ONDEMAND_LINES_H_
