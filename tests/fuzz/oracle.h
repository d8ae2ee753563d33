// Oracle failures for the fuzz targets: print what went wrong and abort, so
// libFuzzer saves the input as a crash file (and the replay driver fails).
#ifndef WRITEAPI_TESTS_FUZZ_ORACLE_H_
#define WRITEAPI_TESTS_FUZZ_ORACLE_H_

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace writeapi::fuzz {

// At most `limit` bytes of `bytes`, printable ASCII as is, the rest \xNN.
inline std::string escaped(std::string_view bytes, std::size_t limit = 400) {
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < bytes.size() && i < limit; ++i) {
    auto c = static_cast<unsigned char>(bytes[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(static_cast<char>(c));
    } else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  if (bytes.size() > limit) out += "...(" + std::to_string(bytes.size()) + " bytes)";
  return out;
}

[[noreturn]] inline void oracle_failure(const char* target, const char* condition, const std::string& detail,
                                        const char* file, int line) {
  std::fprintf(stderr, "\n%s: ORACLE FAILURE at %s:%d\n  expected: %s\n%s\n", target, file, line, condition,
               detail.c_str());
  std::fflush(stderr);
  std::abort();
}

}  // namespace writeapi::fuzz

// EXPECT(condition, detail): `detail` is a std::string expression evaluated
// only on failure.
#define WRITEAPI_FUZZ_EXPECT(target, condition, detail)                                                   \
  do {                                                                                                    \
    if (!(condition)) ::writeapi::fuzz::oracle_failure(target, #condition, (detail), __FILE__, __LINE__); \
  } while (0)

#endif  // WRITEAPI_TESTS_FUZZ_ORACLE_H_
