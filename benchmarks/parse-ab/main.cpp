// parse-ab: two builds of writeapi::parse timed against each other in one
// process (benchmarks/parse-ab/run.sh builds it; docs/BENCHMARKS.md).
//
// For each file (a request body), every round times copy A, simdjson's DOM
// parse and copy B, each over about 100 KB of input, swapping the order of
// A and B every other round, and prints the medians over the rounds of
// DOM/A, DOM/B and A/B (time of A over time of B: above 1 means B is
// faster). Before timing it checks that A and B give the same status and
// the same lines, so it is also a differential test of two versions.
#include <simdjson.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

const std::string* parse_ab_a(std::string_view body, int* code);
const std::string* parse_ab_b(std::string_view body, int* code);

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 200;
  int first = 1;
  if (argc > 2 && std::strcmp(argv[1], "--rounds") == 0) {
    rounds = std::max(1, std::atoi(argv[2]));
    first = 3;
  }
  if (first >= argc) {
    std::fprintf(stderr, "usage: parse-ab [--rounds N] FILE...\n");
    return 2;
  }
  std::printf("%-28s %10s %8s %8s %8s\n", "file", "bytes", "DOM/A", "DOM/B", "A/B");
  for (int a = first; a < argc; ++a) {
    std::ifstream in(argv[a], std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "parse-ab: cannot read %s\n", argv[a]);
      return 2;
    }
    std::stringstream content;
    content << in.rdbuf();
    const std::string body = content.str();
    int code_a = 0, code_b = 0;
    const std::string lines_a = *parse_ab_a(body, &code_a);
    const std::string lines_b = *parse_ab_b(body, &code_b);
    if (code_a != code_b || lines_a != lines_b) {
      std::fprintf(stderr, "parse-ab: %s: A and B differ (status %d and %d)\n", argv[a], code_a, code_b);
      return 1;
    }
    simdjson::padded_string padded(body);
    simdjson::dom::parser parser;
    const bool dom_ok = parser.parse(padded).error() == simdjson::SUCCESS;
    const int n = std::max<int>(1, 100000 / static_cast<int>(std::max<std::size_t>(body.size(), 1)));
    using Clock = std::chrono::steady_clock;
    auto time = [&](auto&& run) {
      const auto start = Clock::now();
      for (int i = 0; i < n; ++i) run();
      return std::chrono::duration<double>(Clock::now() - start).count();
    };
    auto run_a = [&] { parse_ab_a(body, &code_a); };
    auto run_b = [&] { parse_ab_b(body, &code_b); };
    auto run_dom = [&] {
      simdjson::dom::element doc;
      if (parser.parse(padded).get(doc) == simdjson::SUCCESS) asm volatile("" : : "r"(&doc) : "memory");
    };
    std::vector<double> dom_a, dom_b, a_b;
    for (int r = 0; r < rounds + 10; ++r) {
      double ta, tb, td;
      if (r % 2 != 0) {
        ta = time(run_a), td = time(run_dom), tb = time(run_b);
      } else {
        tb = time(run_b), td = time(run_dom), ta = time(run_a);
      }
      if (r < 10) continue;  // warm-up
      dom_a.push_back(td / ta);
      dom_b.push_back(td / tb);
      a_b.push_back(ta / tb);
    }
    std::string name(argv[a]);
    name = name.substr(name.rfind('/') + 1);  // npos + 1 is 0
    if (dom_ok) {
      std::printf("%-28s %10zu %8.3f %8.3f %8.3f\n", name.c_str(), body.size(), median(dom_a), median(dom_b),
                  median(a_b));
    } else {
      std::printf("%-28s %10zu %8s %8s %8.3f\n", name.c_str(), body.size(), "-", "-", median(a_b));
    }
  }
  return 0;
}
