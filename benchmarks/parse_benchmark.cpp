// Parsing throughput: writeapi::parse against simdjson's DOM parser (the
// validation ceiling), memcpy (the memory-bandwidth limit) and nlohmann::json
// parse + dump per item (what most teams would write), on payloads the
// benchmark generates itself:
//   P1c/P1p  the API document's single-item request, compact and pretty
//   P2       a batch of 1,000 varied readings (~120 KB)
//   P3       one item holding a 1 MiB base64 string
//   P4       a batch filling the 10 MiB request limit
//
//   parse_benchmark                 full run; prints a ratio table at the end
//   parse_benchmark --smoke         checks every payload's output, then runs
//                                   each case briefly (for CI; no timing checks)
// Other flags go to Google Benchmark (e.g. --benchmark_filter=P2).
#include <benchmark/benchmark.h>
#include <simdjson.h>
#include <writeapi/parse.h>

#include <cstdio>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

namespace {

constexpr const char* kKey = "fbebeb8ae7f94930fd07dd8249287973e786d047e9820a254c4a3aecb36fc238";

struct Payload {
  std::string name;
  std::string body;
  std::size_t items;
};

std::string reading(std::mt19937_64& rng, long i) {
  std::uniform_real_distribution<double> temp(-30, 40), hum(0, 100);
  char buf[256];
  static const char* kinds[] = {"outdoor", "indoor", "greenhouse", "cellar"};
  std::snprintf(buf, sizeof buf,
                "{\"timestamp\":%ld,\"device\":\"%s_u%03ld\",\"temperature\":%.2f,\"humidity\":%.1f,"
                "\"battery\":%ld,\"ok\":%s,\"tags\":[\"a\",\"b\"],\"note\":null}",
                1584156800L + i * 60, kinds[i % 4], i % 1000, temp(rng), hum(rng), 3000 + i % 700,
                (i % 7) ? "true" : "false");
  return buf;
}

std::string batch_body(std::size_t target_bytes, std::size_t max_items, std::size_t* items) {
  std::mt19937_64 rng(42);
  std::string body = std::string("{\"accessKey\":\"") + kKey + "\",\"deviceId\":\"bench\",\"data\":[";
  *items = 0;
  while (*items < max_items) {
    std::string item = reading(rng, static_cast<long>(*items));
    if (body.size() + item.size() + 3 > target_bytes) break;
    if (*items) body += ',';
    body += item;
    ++*items;
  }
  body += "]}";
  return body;
}

std::vector<Payload> make_payloads() {
  std::vector<Payload> payloads;
  payloads.push_back({"P1c",
                      std::string("{\"accessKey\":\"") + kKey +
                          "\",\"deviceId\":\"outdoors_u871a\",\"data\":{\"timestamp\":1584156800,\"temperature\":4.7}}",
                      1});
  payloads.push_back({"P1p",
                      std::string("{\n    \"accessKey\": \"") + kKey +
                          "\",\n    \"deviceId\": \"outdoors_u871a\",\n    \"data\": {\n        \"timestamp\": "
                          "1584156800,\n        \"temperature\": 4.7\n    }\n}\n",
                      1});
  std::size_t items;
  std::string p2 = batch_body(1 << 30, 1000, &items);
  payloads.push_back({"P2", p2, items});
  {
    std::mt19937_64 rng(7);
    static const char* b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string blob(1 << 20, 'A');
    for (char& c : blob) c = b64[rng() % 64];
    payloads.push_back({"P3",
                        std::string("{\"accessKey\":\"") + kKey +
                            "\",\"deviceId\":\"camera\",\"data\":{\"timestamp\":1584156800,\"image\":\"" + blob + "\"}}",
                        1});
  }
  std::string p4 = batch_body(10 * 1024 * 1024, SIZE_MAX, &items);
  payloads.push_back({"P4", p4, items});
  return payloads;
}

void set_counters(benchmark::State& state, const Payload& p) {
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * p.body.size()));
  state.counters["items/s"] =
      benchmark::Counter(static_cast<double>(state.iterations() * p.items), benchmark::Counter::kIsRate);
}

void bench_writeapi(benchmark::State& state, const Payload* p) {
  writeapi::ParsedRequest out;
  for (auto _ : state) {
    writeapi::Status s = writeapi::parse(p->body, &out);
    if (!s.ok()) state.SkipWithError("parse failed");
    benchmark::DoNotOptimize(out.lines.data());
  }
  set_counters(state, *p);
}

void bench_dom(benchmark::State& state, const Payload* p) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded(p->body);  // padding is simdjson's need, not counted
  for (auto _ : state) {
    simdjson::dom::element doc;
    if (parser.parse(padded).get(doc) != simdjson::SUCCESS) state.SkipWithError("dom failed");
    benchmark::DoNotOptimize(doc);
  }
  set_counters(state, *p);
}

void bench_memcpy(benchmark::State& state, const Payload* p) {
  std::string dst(p->body.size(), '\0');
  for (auto _ : state) {
    std::memcpy(dst.data(), p->body.data(), p->body.size());
    benchmark::ClobberMemory();
  }
  set_counters(state, *p);
}

void bench_nlohmann(benchmark::State& state, const Payload* p) {
  std::string lines;
  for (auto _ : state) {
    lines.clear();
    nlohmann::json doc = nlohmann::json::parse(p->body);
    const nlohmann::json& data = doc.at("data");
    if (data.is_array()) {
      for (const auto& item : data) {
        lines += item.dump();
        lines += '\n';
      }
    } else {
      lines += data.dump();
      lines += '\n';
    }
    benchmark::DoNotOptimize(lines.data());
  }
  set_counters(state, *p);
}

// Checks writeapi::parse's output: item count, and every line equal to the
// item as simdjson's own minifier writes it.
bool check_output(const Payload& p) {
  writeapi::ParsedRequest out;
  writeapi::Status s = writeapi::parse(p.body, &out);
  if (!s.ok() || out.item_count != p.items) {
    std::fprintf(stderr, "%s: parse -> %s, %zu items (want %zu)\n", p.name.c_str(), std::string(s.name()).c_str(),
                 out.item_count, p.items);
    return false;
  }
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(p.body).get(doc) != simdjson::SUCCESS) return false;
  std::string expected;
  auto add = [&](simdjson::dom::element e) {
    expected += simdjson::minify(e);
    expected += '\n';
  };
  simdjson::dom::element data = doc["data"];
  if (data.is_array()) {
    for (auto e : data.get_array()) add(e);
  } else {
    add(data);
  }
  // simdjson::minify re-serialises numbers; our payloads use numbers it
  // prints identically (integers and two-decimal or one-decimal floats are
  // compared after parsing both sides).
  simdjson::dom::parser a, b;
  std::size_t pos_out = 0, pos_exp = 0;
  for (std::size_t i = 0; i < p.items; ++i) {
    std::size_t end_out = out.lines.find('\n', pos_out), end_exp = expected.find('\n', pos_exp);
    if (end_out == std::string::npos || end_exp == std::string::npos) return false;
    simdjson::dom::element x, y;
    if (a.parse(out.lines.substr(pos_out, end_out - pos_out)).get(x) != simdjson::SUCCESS) return false;
    if (b.parse(expected.substr(pos_exp, end_exp - pos_exp)).get(y) != simdjson::SUCCESS) return false;
    if (simdjson::minify(x) != simdjson::minify(y)) {
      std::fprintf(stderr, "%s: item %zu differs\n", p.name.c_str(), i);
      return false;
    }
    pos_out = end_out + 1;
    pos_exp = end_exp + 1;
  }
  return pos_out == out.lines.size();
}

// Collects results to print the ratio table after the run.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.error_occurred || run.run_type != Run::RT_Iteration) continue;
      // CPU time: the machines this runs on are shared, and wall time then
      // includes other processes' turns.
      times_[run.benchmark_name()] = run.GetAdjustedCPUTime();  // in run.time_unit
    }
  }
  void print_ratios(const std::vector<Payload>& payloads) const {
    std::printf("\n%-6s %12s %14s %16s %14s\n", "load", "parse GB/s", "parse/DOM", "parse/nlohmann", "parse/memcpy");
    for (const Payload& p : payloads) {
      auto get = [&](const char* impl) {
        auto it = times_.find(std::string(impl) + "/" + p.name);
        return it == times_.end() ? 0.0 : it->second;
      };
      double parse = get("writeapi_parse"), dom = get("simdjson_dom"), nl = get("nlohmann_dump"), mc = get("memcpy");
      if (parse <= 0) continue;
      // Times are in ns per iteration; a ratio of speeds is the inverse
      // ratio of times.
      std::printf("%-6s %12.2f %13.2fx %15.1fx %13.2fx\n", p.name.c_str(), p.body.size() / parse,
                  dom > 0 ? dom / parse : 0.0, nl > 0 ? nl / parse : 0.0, mc > 0 ? mc / parse : 0.0);
    }
  }

 private:
  std::map<std::string, double> times_;
};

}  // namespace

int main(int argc, char** argv) {
  bool smoke = false;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--smoke") == 0) {
      smoke = true;
    } else {
      args.push_back(argv[i]);
    }
  }
  static std::string min_time = "--benchmark_min_time=0.001";
  if (smoke) args.push_back(min_time.data());
  int count = static_cast<int>(args.size());

  static const std::vector<Payload> payloads = make_payloads();
  for (const Payload& p : payloads) {
    if (!check_output(p)) {
      std::fprintf(stderr, "output check failed for %s\n", p.name.c_str());
      return 1;
    }
    std::printf("%s: %zu bytes, %zu items, output checked\n", p.name.c_str(), p.body.size(), p.items);
  }
  for (const Payload& p : payloads) {
    benchmark::RegisterBenchmark(("writeapi_parse/" + p.name).c_str(), bench_writeapi, &p);
    benchmark::RegisterBenchmark(("simdjson_dom/" + p.name).c_str(), bench_dom, &p);
    benchmark::RegisterBenchmark(("memcpy/" + p.name).c_str(), bench_memcpy, &p);
    if (!smoke || p.body.size() < (2 << 20))
      benchmark::RegisterBenchmark(("nlohmann_dump/" + p.name).c_str(), bench_nlohmann, &p);
  }
  benchmark::Initialize(&count, args.data());
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.print_ratios(payloads);
  benchmark::Shutdown();
  return 0;
}
