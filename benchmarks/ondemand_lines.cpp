// Built with -mavx2 -mbmi -mpclmul -mlzcnt (see CMakeLists.txt), so that
// simdjson's On-Demand front end compiles to its haswell kernel.
#include "ondemand_lines.h"

#include <simdjson.h>

#include <string_view>
#include <vector>

namespace writeapi_bench {

struct OnDemandLines::State {
  simdjson::ondemand::parser parser;
  std::vector<char> scratch;
};

OnDemandLines::OnDemandLines() : state_(new State) {}
OnDemandLines::~OnDemandLines() = default;

bool OnDemandLines::run(const char* body, std::size_t length, std::size_t capacity, std::string* lines) {
  lines->clear();
  std::vector<char>& scratch = state_->scratch;
  auto emit = [&](std::string_view raw) {
    if (scratch.size() < raw.size()) scratch.resize(raw.size());
    std::size_t minified = 0;
    if (simdjson::minify(raw.data(), raw.size(), scratch.data(), minified) != simdjson::SUCCESS) return false;
    lines->append(scratch.data(), minified).push_back('\n');
    return true;
  };
  simdjson::ondemand::document doc;
  simdjson::ondemand::object object;
  if (state_->parser.iterate(body, length, capacity).get(doc) != simdjson::SUCCESS ||
      doc.get_object().get(object) != simdjson::SUCCESS)
    return false;
  for (auto field : object) {
    std::string_view key;
    simdjson::ondemand::value value;
    if (field.unescaped_key().get(key) != simdjson::SUCCESS || field.value().get(value) != simdjson::SUCCESS)
      return false;
    if (key != "data") continue;  // skipped: On-Demand does not look inside
    simdjson::ondemand::json_type type;
    if (value.type().get(type) != simdjson::SUCCESS) return false;
    std::string_view raw;
    if (type != simdjson::ondemand::json_type::array) {
      if (simdjson::to_json_string(value).get(raw) != simdjson::SUCCESS || !emit(raw)) return false;
      continue;
    }
    simdjson::ondemand::array array;
    if (value.get_array().get(array) != simdjson::SUCCESS) return false;
    for (auto element : array) {
      simdjson::ondemand::value item;
      if (element.get(item) != simdjson::SUCCESS || simdjson::to_json_string(item).get(raw) != simdjson::SUCCESS ||
          !emit(raw))
        return false;
    }
  }
  return true;
}

}  // namespace writeapi_bench
