// Parsing throughput: writeapi::parse against simdjson's DOM parse (the
// reference: validation alone, no output) and against peers doing the same
// job as parse (validate the whole body, emit each item of "data" minified,
// one line each), on payloads the benchmark generates itself:
//   P1c/P1p  the API document's single-item request, compact and pretty
//   P2       a batch of 1,000 varied readings (~130 KB)
//   P3       one item holding a 1 MiB base64 string
//   P4       a batch filling the 10 MiB request limit
//   R1       pretty-printed, 4-space indentation, items nested 7 deep
//   R2       number-heavy: GeoJSON-like line strings (coordinate pairs)
//   R3       string-heavy: messages in many scripts, with escapes
//   R4       a large array of small objects (100,000 items)
//
// Implementations (each optional one is built when CMake finds it):
//   writeapi_parse      writeapi::parse
//   simdjson_dom        simdjson DOM parse only: the 1.0x reference
//   simdjson_dom_items  DOM parse, then simdjson::minify(element) per item
//                       (re-serialises numbers: not byte-exact)
//   simdjson_ondemand   On-Demand: iterate the fields, raw text of each item
//                       through simdjson's text minifier (validates only
//                       what it visits: the items' insides are skipped);
//                       compiled for AVX2 (ondemand_lines.cpp)
//   rapidjson           Document::Parse, then a Writer per item
//   boost_json          boost::json::parse (default allocator), then a
//                       serializer per item
//   nlohmann_dump       nlohmann::json::parse, then dump() per item
//   memcpy              the memory-bandwidth limit
//
//   parse_benchmark                 full run; prints a ratio table at the end
//   parse_benchmark --smoke         checks every payload's output, then runs
//                                   each case briefly (for CI; no timing checks)
//   parse_benchmark --table FILE    also writes the table as tab-separated
//                                   values (for benchmarks/plot-parse.sh)
//   parse_benchmark --write-payloads DIR
//                                   writes each payload to DIR/<name>.json
//                                   and exits (input for writeapi-parse-bench)
// Other flags go to Google Benchmark (e.g. --benchmark_filter=P2).
#include <benchmark/benchmark.h>
#include <simdjson.h>
#include <writeapi/parse.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#if WRITEAPI_BENCH_RAPIDJSON
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#endif
#if WRITEAPI_BENCH_BOOST_JSON
#include <boost/json.hpp>
#endif

#include "ondemand_lines.h"
#include "reference_lines.h"

namespace {

constexpr const char* kKey = "fbebeb8ae7f94930fd07dd8249287973e786d047e9820a254c4a3aecb36fc238";

struct Payload {
  std::string name;
  std::string body;
  std::size_t items;
};

std::string envelope(const std::string& device, const std::string& data) {
  return std::string("{\"accessKey\":\"") + kKey + "\",\"deviceId\":\"" + device + "\",\"data\":" + data + "}";
}

// Indents compact JSON text as JSON.stringify(value, null, 4) does.
std::string pretty(const std::string& compact) {
  std::string out;
  int depth = 0;
  auto newline = [&] {
    out += '\n';
    out.append(static_cast<std::size_t>(depth) * 4, ' ');
  };
  for (std::size_t i = 0; i < compact.size(); ++i) {
    char c = compact[i];
    if (c == '"') {
      std::size_t end = writeapi_bench::string_end(compact, i);
      out.append(compact, i, end - i);
      i = end - 1;
    } else if (c == '{' || c == '[') {
      out += c;
      char close = c == '{' ? '}' : ']';
      if (compact[i + 1] == close) {
        out += close;
        ++i;
      } else {
        ++depth;
        newline();
      }
    } else if (c == '}' || c == ']') {
      --depth;
      newline();
      out += c;
    } else if (c == ',') {
      out += c;
      newline();
    } else if (c == ':') {
      out += ": ";
    } else {
      out += c;
    }
  }
  return out;
}

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

// A body whose data is an array of generated items, as long as it stays
// under `target_bytes` and `max_items`.
template <class MakeItem>
std::string batch(MakeItem make_item, std::size_t target_bytes, std::size_t max_items, std::size_t* items) {
  std::string data = "[";
  *items = 0;
  while (*items < max_items) {
    std::string item = make_item(static_cast<long>(*items));
    if (data.size() + item.size() + 200 > target_bytes) break;
    if (*items) data += ',';
    data += item;
    ++*items;
  }
  data += ']';
  return data;
}

// R1: a site inventory, each item nested 7 deep.
std::string nested_item(std::mt19937_64& rng, long i) {
  std::uniform_real_distribution<double> value(0, 100);
  char buf[1024];
  std::snprintf(buf, sizeof buf,
                "{\"site\":{\"id\":\"site-%ld\",\"building\":{\"name\":\"B%ld\",\"floor\":{\"level\":%ld,"
                "\"room\":{\"name\":\"room %ld\",\"sensors\":[{\"kind\":\"temperature\",\"reading\":{\"value\":%.2f,"
                "\"unit\":\"C\",\"quality\":{\"ok\":true,\"flags\":[]}}},{\"kind\":\"humidity\",\"reading\":{"
                "\"value\":%.1f,\"unit\":\"%%\",\"quality\":{\"ok\":%s,\"flags\":[\"drift\"]}}}]}}}},"
                "\"updated\":%ld}",
                i % 17, i % 5, i % 9, i, value(rng), value(rng), (i % 11) ? "true" : "false", 1584156800L + i);
  return buf;
}

// R2: GeoJSON-like line strings of 40 points each.
std::string track_item(std::mt19937_64& rng, long i) {
  std::uniform_real_distribution<double> step(-0.0005, 0.0005);
  double lon = -122.4194155 + (i % 100) * 0.01, lat = 37.7749295 + (i % 37) * 0.01;
  std::string item = "{\"type\":\"Feature\",\"properties\":{\"id\":" + std::to_string(i) +
                     ",\"speed\":" + std::to_string(i % 90) +
                     ".5},\"geometry\":{\"type\":\"LineString\",\"coordinates\":[";
  char buf[64];
  for (int k = 0; k < 40; ++k) {
    lon += step(rng), lat += step(rng);
    std::snprintf(buf, sizeof buf, "%s[%.7f,%.7f,%.1f]", k ? "," : "", lon, lat, 10.0 + k);
    item += buf;
  }
  return item + "]}}";
}

// R3: chat-like messages in many scripts, some with escapes.
std::string message_item(std::mt19937_64& rng, long i) {
  static const char* fragments[] = {
      "Hyv\xc3\xa4\xc3\xa4 p\xc3\xa4iv\xc3\xa4\xc3\xa4, ",  // Finnish
      "\xce\x9a\xce\xb1\xce\xbb\xce\xb7\xce\xbc\xce\xad\xcf\x81\xce\xb1 \xce\xba\xcf\x8c\xcf\x83\xce\xbc\xce\xb5 ",  // Greek
      "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82, \xd0\xbc\xd0\xb8\xd1\x80! ",                        // Russian
      "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf\xe4\xb8\x96\xe7\x95\x8c ",               // Japanese
      "\xe4\xbd\xa0\xe5\xa5\xbd\xef\xbc\x8c\xe4\xb8\x96\xe7\x95\x8c ",                                       // Chinese
      "\xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7 \xd8\xa8\xd8\xa7\xd9\x84\xd8\xb9\xd8\xa7\xd9\x84\xd9\x85 ",  // Arabic
      "\xf0\x9f\x8c\x8d\xf0\x9f\x9a\x80 ",                                                                   // emoji
      "caf\\u00e9 \\\"quoted\\\" ",                                                                          // escapes
      "line one\\nline two ",
      "temperature rose to 21.5 \xc2\xb0"
      "C in the greenhouse ",
  };
  std::uniform_int_distribution<int> pick(0, 9), count(6, 24);
  std::string text;
  for (int k = count(rng); k > 0; --k) text += fragments[pick(rng)];
  static const char* langs[] = {"fi", "el", "ru", "ja", "zh", "ar"};
  return "{\"id\":" + std::to_string(i) + ",\"user\":\"k\xc3\xa4ytt\xc3\xa4j\xc3\xa4_" + std::to_string(i % 97) +
         "\",\"lang\":\"" + langs[i % 6] + "\",\"text\":\"" + text +
         "\",\"tags\":[\"\xc3\xa9t\xc3\xa9\",\"\xe5\x86\xac\"]}";
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
  std::mt19937_64 rng(42);
  auto readings = [&](long i) { return reading(rng, i); };
  std::string p2 = envelope("bench", batch(readings, 1 << 30, 1000, &items));
  payloads.push_back({"P2", p2, items});
  {
    std::mt19937_64 blob_rng(7);
    static const char* b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string blob(1 << 20, 'A');
    for (char& c : blob) c = b64[blob_rng() % 64];
    payloads.push_back({"P3", envelope("camera", "{\"timestamp\":1584156800,\"image\":\"" + blob + "\"}"), 1});
  }
  rng.seed(42);
  std::string p4 = envelope("bench", batch(readings, 10 * 1024 * 1024, SIZE_MAX, &items));
  payloads.push_back({"P4", p4, items});

  rng.seed(1);
  std::string r1 =
      pretty(envelope("inventory", batch([&](long i) { return nested_item(rng, i); }, 1 << 19, SIZE_MAX, &items)));
  payloads.push_back({"R1", r1, items});
  rng.seed(2);
  payloads.push_back(
      {"R2", envelope("tracker", batch([&](long i) { return track_item(rng, i); }, 1 << 20, SIZE_MAX, &items)), items});
  rng.seed(3);
  payloads.push_back(
      {"R3", envelope("chat", batch([&](long i) { return message_item(rng, i); }, 1 << 20, SIZE_MAX, &items)), items});
  payloads.push_back({"R4",
                      envelope("counter", batch(
                                              [](long i) {
                                                return "{\"id\":" + std::to_string(i) +
                                                       ",\"v\":" + std::to_string(i % 1000) + "." +
                                                       std::to_string(i % 10) + ",\"ok\":true}";
                                              },
                                              1 << 30, 100000, &items)),
                      items});
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

void bench_dom_items(benchmark::State& state, const Payload* p) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded(p->body);
  std::string lines;
  for (auto _ : state) {
    lines.clear();
    simdjson::dom::element doc, data;
    if (parser.parse(padded).get(doc) != simdjson::SUCCESS || doc["data"].get(data) != simdjson::SUCCESS)
      state.SkipWithError("dom failed");
    simdjson::dom::array array;
    if (data.get_array().get(array) == simdjson::SUCCESS) {
      for (simdjson::dom::element item : array) lines.append(simdjson::minify(item)).push_back('\n');
    } else {
      lines.append(simdjson::minify(data)).push_back('\n');
    }
    benchmark::DoNotOptimize(lines.data());
  }
  set_counters(state, *p);
}

void bench_ondemand(benchmark::State& state, const Payload* p) {
  writeapi_bench::OnDemandLines ondemand;
  std::string padded = p->body;
  padded.resize(p->body.size() + simdjson::SIMDJSON_PADDING, ' ');
  std::string lines;
  for (auto _ : state) {
    if (!ondemand.run(padded.data(), p->body.size(), padded.size(), &lines)) state.SkipWithError("ondemand failed");
    benchmark::DoNotOptimize(lines.data());
  }
  set_counters(state, *p);
}

#if WRITEAPI_BENCH_RAPIDJSON
void bench_rapidjson(benchmark::State& state, const Payload* p) {
  std::string lines;
  rapidjson::StringBuffer buffer;
  for (auto _ : state) {
    lines.clear();
    rapidjson::Document doc;
    // Full precision: RapidJSON's default number parsing rounds.
    doc.Parse<rapidjson::kParseFullPrecisionFlag>(p->body.data(), p->body.size());
    if (doc.HasParseError() || !doc.IsObject() || !doc.HasMember("data")) state.SkipWithError("rapidjson failed");
    const rapidjson::Value& data = doc["data"];
    auto emit = [&](const rapidjson::Value& item) {
      buffer.Clear();
      rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
      item.Accept(writer);
      lines.append(buffer.GetString(), buffer.GetSize()).push_back('\n');
    };
    if (data.IsArray()) {
      for (const rapidjson::Value& item : data.GetArray()) emit(item);
    } else {
      emit(data);
    }
    benchmark::DoNotOptimize(lines.data());
  }
  set_counters(state, *p);
}
#endif

#if WRITEAPI_BENCH_BOOST_JSON
void bench_boost_json(benchmark::State& state, const Payload* p) {
  std::string lines;
  boost::json::serializer serializer;
  char chunk[4096];
  for (auto _ : state) {
    lines.clear();
    boost::system::error_code ec;
    boost::json::value doc = boost::json::parse(p->body, ec);
    const boost::json::object* object = ec ? nullptr : doc.if_object();
    const boost::json::value* data = object ? object->if_contains("data") : nullptr;
    if (data == nullptr) {
      state.SkipWithError("boost.json failed");
      break;
    }
    auto emit = [&](const boost::json::value& item) {
      serializer.reset(&item);
      while (!serializer.done()) lines.append(serializer.read(chunk));
      lines.push_back('\n');
    };
    if (const boost::json::array* array = data->if_array()) {
      for (const boost::json::value& item : *array) emit(item);
    } else {
      emit(*data);
    }
    benchmark::DoNotOptimize(lines.data());
  }
  set_counters(state, *p);
}
#endif

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

// Checks writeapi::parse's output byte for byte against reference_lines().
bool check_output(const Payload& p) {
  writeapi::ParsedRequest out;
  writeapi::Status s = writeapi::parse(p.body, &out);
  std::string expected, error;
  std::size_t items = 0;
  if (!writeapi_bench::reference_lines(p.body, &expected, &items, &error)) {
    std::fprintf(stderr, "%s: %s\n", p.name.c_str(), error.c_str());
    return false;
  }
  if (!s.ok() || out.item_count != p.items || items != p.items) {
    std::fprintf(stderr, "%s: parse -> %s, %zu items (reference %zu, want %zu)\n", p.name.c_str(),
                 std::string(s.name()).c_str(), out.item_count, items, p.items);
    return false;
  }
  if (out.lines != expected) {
    std::size_t at = 0;
    while (at < expected.size() && at < out.lines.size() && expected[at] == out.lines[at]) ++at;
    std::fprintf(stderr, "%s: lines differ from the reference at byte %zu\n", p.name.c_str(), at);
    return false;
  }
  return true;
}

// The implementations, in table order: name and whether it is built.
const std::vector<const char*>& implementations() {
  static const std::vector<const char*> names = {
    "writeapi_parse",
    "simdjson_dom",
    "simdjson_dom_items",
    "simdjson_ondemand",
#if WRITEAPI_BENCH_RAPIDJSON
    "rapidjson",
#endif
#if WRITEAPI_BENCH_BOOST_JSON
    "boost_json",
#endif
    "nlohmann_dump",
    "memcpy"
  };
  return names;
}

// Collects results to print the ratio table after the run. With
// --benchmark_repetitions=N each benchmark's time is the median of its N
// runs; with --benchmark_enable_random_interleaving=true too, those runs
// are spread over the whole run in random order, so a machine whose speed
// drifts slows every implementation alike.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.error_occurred || run.run_type != Run::RT_Iteration) continue;
      // CPU time: the machines this runs on are shared, and wall time then
      // includes other processes' turns.
      times_[run.run_name.str()].push_back(run.GetAdjustedCPUTime());  // in run.time_unit (ns)
    }
  }
  double time(const std::string& impl, const Payload& p) const {
    auto it = times_.find(impl + "/" + p.name);
    if (it == times_.end() || it->second.empty()) return 0.0;
    std::vector<double> sorted = it->second;
    std::sort(sorted.begin(), sorted.end());
    const std::size_t n = sorted.size();
    return n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  }
  // One row per payload: writeapi's GB/s and items/s, then every
  // implementation's speed relative to simdjson DOM parse (higher is faster).
  void print_ratios(const std::vector<Payload>& payloads, std::FILE* tsv) const {
    std::printf("\nspeed relative to simdjson DOM parse (ratios of CPU time; >1 is faster than DOM)\n");
    std::printf("%-5s %10s %10s %10s", "load", "bytes", "parse GB/s", "Mitems/s");
    for (const char* impl : implementations()) std::printf(" %18s", impl);
    std::printf("\n");
    if (tsv) {
      std::fprintf(tsv, "payload\tbytes\titems\tparse_GBps\tparse_Mitems_per_s");
      for (const char* impl : implementations()) std::fprintf(tsv, "\t%s", impl);
      std::fprintf(tsv, "\n");
    }
    for (const Payload& p : payloads) {
      double parse = time("writeapi_parse", p), dom = time("simdjson_dom", p);
      if (parse <= 0 || dom <= 0) continue;
      // Times are in ns per iteration: bytes per ns is GB/s.
      double gbps = p.body.size() / parse, mitems = p.items * 1e3 / parse;
      std::printf("%-5s %10zu %10.2f %10.2f", p.name.c_str(), p.body.size(), gbps, mitems);
      if (tsv) std::fprintf(tsv, "%s\t%zu\t%zu\t%.3f\t%.3f", p.name.c_str(), p.body.size(), p.items, gbps, mitems);
      for (const char* impl : implementations()) {
        double t = time(impl, p);
        if (t > 0) {
          std::printf(" %17.2fx", dom / t);
        } else {
          std::printf(" %18s", "-");
        }
        if (tsv) std::fprintf(tsv, "\t%.4f", t > 0 ? dom / t : 0.0);
      }
      std::printf("\n");
      if (tsv) std::fprintf(tsv, "\n");
    }
  }

 private:
  std::map<std::string, std::vector<double>> times_;
};

}  // namespace

int main(int argc, char** argv) {
  bool smoke = false;
  const char* table_path = nullptr;
  const char* payload_dir = nullptr;
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--smoke") == 0) {
      smoke = true;
    } else if (std::strcmp(argv[i], "--table") == 0 && i + 1 < argc) {
      table_path = argv[++i];
    } else if (std::strcmp(argv[i], "--write-payloads") == 0 && i + 1 < argc) {
      payload_dir = argv[++i];
    } else {
      args.push_back(argv[i]);
    }
  }
  static std::string min_time = "--benchmark_min_time=0.001";
  if (smoke) args.push_back(min_time.data());
  int count = static_cast<int>(args.size());

  static const std::vector<Payload> payloads = make_payloads();
  if (payload_dir) {
    for (const Payload& p : payloads) {
      std::string path = std::string(payload_dir) + "/" + p.name + ".json";
      std::FILE* f = std::fopen(path.c_str(), "wb");
      if (!f || std::fwrite(p.body.data(), 1, p.body.size(), f) != p.body.size() || std::fclose(f) != 0) {
        std::perror(path.c_str());
        return 1;
      }
      std::printf("%s: %zu bytes, %zu items\n", path.c_str(), p.body.size(), p.items);
    }
    return 0;
  }
  for (const Payload& p : payloads) {
    if (!check_output(p)) {
      std::fprintf(stderr, "output check failed for %s\n", p.name.c_str());
      return 1;
    }
    std::printf("%s: %zu bytes, %zu items, output checked byte for byte\n", p.name.c_str(), p.body.size(), p.items);
  }
  for (const Payload& p : payloads) {
    benchmark::RegisterBenchmark(("writeapi_parse/" + p.name).c_str(), bench_writeapi, &p);
    benchmark::RegisterBenchmark(("simdjson_dom/" + p.name).c_str(), bench_dom, &p);
    benchmark::RegisterBenchmark(("simdjson_dom_items/" + p.name).c_str(), bench_dom_items, &p);
    benchmark::RegisterBenchmark(("simdjson_ondemand/" + p.name).c_str(), bench_ondemand, &p);
#if WRITEAPI_BENCH_RAPIDJSON
    benchmark::RegisterBenchmark(("rapidjson/" + p.name).c_str(), bench_rapidjson, &p);
#endif
#if WRITEAPI_BENCH_BOOST_JSON
    benchmark::RegisterBenchmark(("boost_json/" + p.name).c_str(), bench_boost_json, &p);
#endif
    if (!smoke || p.body.size() < (2 << 20))
      benchmark::RegisterBenchmark(("nlohmann_dump/" + p.name).c_str(), bench_nlohmann, &p);
    benchmark::RegisterBenchmark(("memcpy/" + p.name).c_str(), bench_memcpy, &p);
  }
  benchmark::Initialize(&count, args.data());
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  std::FILE* tsv = table_path ? std::fopen(table_path, "w") : nullptr;
  if (table_path && !tsv) {
    std::perror(table_path);
    return 1;
  }
  reporter.print_ratios(payloads, tsv);
  if (tsv) std::fclose(tsv);
  benchmark::Shutdown();
  return 0;
}
