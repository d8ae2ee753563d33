// writeapi-parse-bench: how fast writeapi::parse handles your own data,
// next to simdjson's DOM parser on the same bytes.
//
//   writeapi-parse-bench [--threads N] [--seconds S] [--check] FILE...
//
// Each FILE is a Write API request body ({"accessKey": ..., "data": ...}),
// or any other JSON document, which is then wrapped as the body's "data"
// (so a top-level array is split into items, as the server would). For
// each file it prints bytes, items, GB/s and items/s for writeapi::parse
// and for simdjson's DOM parse, and the ratio of their CPU times per body
// (>1: writeapi is faster). The two alternate in 10 rounds per file, and
// the ratio is the median of the rounds' ratios, with the lowest and
// highest beside it: on a shared machine whose speed drifts, each round
// compares the two under the same conditions.
//
//   --threads N   parse on N threads at once (default 1). Threads share
//                 nothing but the read-only input; GB/s and items/s are the
//                 sum of the threads' rates, each over its own wall-clock
//                 time (from the common start to its last body). With N > 1 the
//                 tool also measures writeapi on one thread and prints the
//                 scaling factor (wall clock), and how much CPU time per
//                 body grew with the threads (contention, 1.00 = none).
//   --seconds S   wall time per parser and file, over all rounds
//                 (default 1).
//   --check       before timing, verify every output line byte for byte:
//                 each line must be its item with the whitespace outside
//                 strings removed and nothing else changed (reference:
//                 simdjson's DOM parser and text minifier, see
//                 reference_lines.h). Exits 1 on any difference.
//
// Exit status: 0, 1 when a check fails or a file does not parse, 2 on
// usage errors.
#include <simdjson.h>
#include <time.h>
#include <writeapi/parse.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../reference_lines.h"

namespace {

struct Input {
  std::string file;
  std::string body;  // the request body that is timed
  bool wrapped = false;
  std::size_t items = 0;
};

bool read_file(const std::string& path, std::string* content) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream buffer;
  buffer << in.rdbuf();
  *content = std::move(buffer).str();
  return !in.bad();
}

// Uses the file as a body when parse() accepts it as one; otherwise wraps
// it as "data" of a body with a placeholder key.
bool make_input(const std::string& path, Input* input, std::string* error) {
  std::string content;
  if (!read_file(path, &content)) {
    *error = "cannot read the file";
    return false;
  }
  input->file = path;
  writeapi::ParsedRequest out;
  writeapi::Status status = writeapi::parse(content, &out);
  if (status.ok()) {
    input->body = std::move(content);
  } else {
    input->body = "{\"accessKey\":\"writeapi-parse-bench\",\"data\":" + content + "}";
    input->wrapped = true;
    status = writeapi::parse(input->body, &out);
    if (!status.ok()) {
      *error = std::string(status.name()) + ": " + status.message();
      return false;
    }
  }
  input->items = out.item_count;
  return true;
}

bool check(const Input& input, std::string* error) {
  writeapi::ParsedRequest out;
  if (!writeapi::parse(input.body, &out).ok()) {
    *error = "writeapi::parse refused the body";
    return false;
  }
  std::string expected;
  std::size_t items = 0;
  if (!writeapi_bench::reference_lines(input.body, &expected, &items, error)) return false;
  if (items != out.item_count) {
    *error = "writeapi counts " + std::to_string(out.item_count) + " items, the reference " + std::to_string(items);
    return false;
  }
  if (out.lines != expected) {
    std::size_t at = 0;
    while (at < expected.size() && at < out.lines.size() && expected[at] == out.lines[at]) ++at;
    std::size_t line = 1;
    for (std::size_t i = 0; i < at; ++i) line += expected[i] == '\n';
    *error = "line " + std::to_string(line) + " differs from the reference (byte " + std::to_string(at) + ")";
    return false;
  }
  return true;
}

double thread_cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + t.tv_nsec * 1e-9;
}

enum class Parser { writeapi, simdjson_dom };

// One thread's result, on its own cache line.
struct alignas(64) ThreadResult {
  std::size_t bodies = 0;
  double cpu_seconds = 0;
  double wall_seconds = 0;  // from the start to this thread's last body
  bool ok = true;
};

struct Measurement {
  // Such that bodies / wall_seconds is the sum of the threads' own rates
  // (each thread's bodies over its own time): a thread that ends a batch
  // later than another does not count against the other.
  double wall_seconds = 0;
  std::size_t bodies = 0;   // over all threads
  double cpu_per_body = 0;  // seconds of CPU per body, averaged
  bool ok = true;
};

// Parses the body over and over on `threads` threads for `seconds`.
Measurement measure(const Input& input, Parser parser, int threads, double seconds) {
  std::vector<ThreadResult> results(static_cast<std::size_t>(threads));
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  const auto run = [&](ThreadResult* result) {
    // Everything a thread touches is its own, except the read-only input.
    writeapi::ParsedRequest out;
    simdjson::dom::parser dom;
    simdjson::padded_string padded(input.body);
    auto once = [&]() {
      if (parser == Parser::writeapi) return writeapi::parse(input.body, &out).ok();
      simdjson::dom::element root;
      return dom.parse(padded).get(root) == simdjson::SUCCESS;
    };
    result->ok = once();  // warm-up: sizes the buffers
    ready.fetch_add(1);
    while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
    const auto start = std::chrono::steady_clock::now();
    const auto deadline = start + std::chrono::duration<double>(seconds);
    const double cpu_start = thread_cpu_seconds();
    std::size_t bodies = 0, batch = 1;
    auto now = start;
    while (result->ok) {
      for (std::size_t i = 0; i < batch; ++i) result->ok &= once();
      bodies += batch;
      now = std::chrono::steady_clock::now();
      if (now >= deadline) break;
      // Fewer clock reads for small bodies, but no batch longer than a
      // fiftieth of the time, so that no thread runs far past the end.
      const double per_body = std::chrono::duration<double>(now - start).count() / static_cast<double>(bodies);
      if (batch < 1024 && per_body * static_cast<double>(2 * batch) < seconds / 50) batch *= 2;
    }
    result->cpu_seconds = thread_cpu_seconds() - cpu_start;
    result->wall_seconds = std::chrono::duration<double>(now - start).count();
    result->bodies = bodies;
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(run, &results[static_cast<std::size_t>(t)]);
  while (ready.load() < threads) std::this_thread::yield();
  go.store(true, std::memory_order_release);
  for (std::thread& thread : pool) thread.join();
  Measurement m;
  double cpu = 0, rate = 0;
  for (const ThreadResult& r : results) {
    m.bodies += r.bodies;
    cpu += r.cpu_seconds;
    if (r.wall_seconds > 0) rate += static_cast<double>(r.bodies) / r.wall_seconds;
    m.ok &= r.ok;
  }
  m.wall_seconds = rate > 0 ? static_cast<double>(m.bodies) / rate : 0;
  m.cpu_per_body = m.bodies ? cpu / static_cast<double>(m.bodies) : 0;
  return m;
}

// The two parsers on one input, alternating: `rounds` rounds, each timing
// writeapi then simdjson DOM for seconds / rounds.
struct Comparison {
  Measurement writeapi, dom;  // summed over the rounds
  double ratio = 0;           // median of the rounds' DOM / writeapi CPU time per body
  double lowest = 0, highest = 0;
  bool ok = true;
};

constexpr int kRounds = 10;

Comparison compare(const Input& input, int threads, double seconds) {
  Comparison c;
  std::vector<double> ratios;
  auto add = [](Measurement* total, const Measurement& m) {
    total->ok &= m.ok;
    if (m.bodies == 0) return;
    total->cpu_per_body =
        (total->cpu_per_body * static_cast<double>(total->bodies) + m.cpu_per_body * static_cast<double>(m.bodies)) /
        static_cast<double>(total->bodies + m.bodies);
    total->bodies += m.bodies;
    total->wall_seconds += m.wall_seconds;
  };
  for (int r = 0; r < kRounds && c.ok; ++r) {
    Measurement w = measure(input, Parser::writeapi, threads, seconds / kRounds);
    Measurement d = measure(input, Parser::simdjson_dom, threads, seconds / kRounds);
    add(&c.writeapi, w);
    add(&c.dom, d);
    c.ok = w.ok && d.ok;
    if (c.ok) ratios.push_back(d.cpu_per_body / w.cpu_per_body);
  }
  if (!c.ok) return c;
  std::sort(ratios.begin(), ratios.end());
  const std::size_t n = ratios.size();
  c.ratio = n % 2 ? ratios[n / 2] : (ratios[n / 2 - 1] + ratios[n / 2]) / 2;
  c.lowest = ratios.front();
  c.highest = ratios.back();
  return c;
}

int usage(std::FILE* to = stderr) {
  std::fprintf(to, "usage: writeapi-parse-bench [--threads N] [--seconds S] [--check] FILE...\n");
  return 2;
}

void help() {
  usage(stdout);
  std::printf(
      "\n"
      "Times writeapi::parse against simdjson's DOM parser on each FILE: a Write API request\n"
      "body, or any JSON document (then parsed as the body's \"data\"; a top-level array is\n"
      "split into items). Prints bytes, items, GB/s and items/s for both, and the ratio of\n"
      "their CPU time per body (>1: writeapi is faster): the median of %d rounds that time\n"
      "both in turn, with the lowest and highest round beside it.\n"
      "\n"
      "  --threads N   parse on N threads at once (default 1); also prints how writeapi\n"
      "                scales from one thread to N (wall clock) and the CPU time per body\n"
      "                on N threads relative to one (1.00: the threads do not contend)\n"
      "  --seconds S   time per parser and file, over all rounds (default 1)\n"
      "  --check       first verify every output line byte for byte (the item with the\n"
      "                whitespace outside strings removed); exit 1 on a difference\n"
      "  --help        print this help and exit\n",
      kRounds);
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 1;
  double seconds = 1.0;
  bool do_check = false;
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--threads" && i + 1 < argc) {
      threads = std::atoi(argv[++i]);
      if (threads < 1 || threads > 1024) return usage();
    } else if (arg == "--seconds" && i + 1 < argc) {
      seconds = std::atof(argv[++i]);
      if (!(seconds > 0)) return usage();
    } else if (arg == "--check") {
      do_check = true;
    } else if (arg == "--help" || arg == "-h") {
      help();
      return 0;
    } else if (!arg.empty() && arg[0] == '-' && arg != "-") {
      return usage();
    } else {
      files.push_back(arg);
    }
  }
  if (files.empty()) return usage();

  std::vector<Input> inputs;
  for (const std::string& file : files) {
    Input input;
    std::string error;
    if (!make_input(file, &input, &error)) {
      std::fprintf(stderr, "%s: %s\n", file.c_str(), error.c_str());
      return 1;
    }
    if (do_check) {
      if (!check(input, &error)) {
        std::fprintf(stderr, "%s: check FAILED: %s\n", file.c_str(), error.c_str());
        return 1;
      }
      std::printf("%s: %zu lines checked byte for byte\n", file.c_str(), input.items);
    }
    inputs.push_back(std::move(input));
  }

  std::printf("writeapi-parse-bench: %d thread%s, %.2f s per measurement, simdjson %d.%d.%d (%s kernel)\n", threads,
              threads == 1 ? "" : "s", seconds, simdjson::SIMDJSON_VERSION_MAJOR, simdjson::SIMDJSON_VERSION_MINOR,
              simdjson::SIMDJSON_VERSION_REVISION, simdjson::get_active_implementation()->name().c_str());
  std::printf(
      "GB/s and items/s: all threads, per wall second; ratio: simdjson DOM CPU time / writeapi CPU time, median of %d "
      "alternating rounds (lowest-highest)\n",
      kRounds);
  int width = 4;
  for (const Input& input : inputs)
    width = std::max(width, static_cast<int>(input.file.size() + (input.wrapped ? 10 : 0)));
  std::printf("%-*s %10s %8s  %13s %9s  %8s %9s  %7s  %s\n", width, "file", "bytes", "items", "writeapi GB/s",
              "Mitems/s", "DOM GB/s", "Mitems/s", "ratio", "range");
  double bytes_1 = 0, time_1 = 0, bytes_n = 0, time_n = 0, cpu_1 = 0, cpu_n = 0;
  for (const Input& input : inputs) {
    Comparison c = compare(input, threads, seconds);
    const Measurement& w = c.writeapi;
    const Measurement& d = c.dom;
    if (!c.ok) {
      std::fprintf(stderr, "%s: a parse failed while timing (%s)\n", input.file.c_str(),
                   w.ok ? "simdjson DOM: numbers out of double range?" : "writeapi");
      return 1;
    }
    auto gbps = [&](const Measurement& m) { return m.bodies * input.body.size() / m.wall_seconds / 1e9; };
    auto mitems = [&](const Measurement& m) { return m.bodies * input.items / m.wall_seconds / 1e6; };
    std::string name = input.file + (input.wrapped ? " (as data)" : "");
    std::printf("%-*s %10zu %8zu  %13.2f %9.2f  %8.2f %9.2f  %6.2fx  %.2f-%.2f\n", width, name.c_str(),
                input.body.size(), input.items, gbps(w), mitems(w), gbps(d), mitems(d), c.ratio, c.lowest, c.highest);
    if (threads > 1) {
      Measurement one = measure(input, Parser::writeapi, 1, seconds);
      bytes_1 += static_cast<double>(one.bodies * input.body.size());
      time_1 += one.wall_seconds;
      bytes_n += static_cast<double>(w.bodies * input.body.size());
      time_n += w.wall_seconds;
      cpu_1 += one.cpu_per_body;
      cpu_n += w.cpu_per_body;
    }
  }
  if (threads > 1) {
    std::printf("scaling: writeapi on %d threads = %.2fx its throughput on one thread (wall clock)\n", threads,
                (bytes_n / time_n) / (bytes_1 / time_1));
    // On a machine other processes share, wall-clock scaling shows their
    // load as much as ours; CPU time per body shows whether our threads
    // slow each other down (1.00: not at all).
    std::printf("contention: CPU time per body on %d threads = %.2fx that on one thread\n", threads, cpu_n / cpu_1);
  }
  return 0;
}
