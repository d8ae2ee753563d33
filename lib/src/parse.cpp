// A validating JSON scanner that copies the items of "data" to JSON Lines
// while it checks them.
//
// Why not simdjson's DOM or On-Demand API directly: DOM builds a tape and
// converts every number (and rejects integers beyond 64 bits and exponents
// beyond double range, which the Write API must keep as written); On-Demand
// does not validate what it skips. Validation plus a copy needs neither a
// tape nor conversions: one forward pass (ForwardWalk) checks the grammar,
// scanning strings 16 bytes at a time (SSE2), digits 8 at a time, and
// whitespace runs of a line break and indentation 16 at a time (a lone
// space is one test). Such a walk's speed is set less by its instructions
// than by how long each token's position takes to find, since the next
// token cannot be read before it: a string's end waits on the quote alone,
// an indentation's length is guessed from the last one at its depth, and an
// object key's from the key that followed the same previous key last time
// (in arrays of objects, and in bodies of one shape, keys repeat); each
// guess is checked beside the walk (skip_ws_guessed, scan_key). UTF-8 is
// checked after the walk, and only when a string held a byte of 0x80 or
// more (outside strings the grammar admits only ASCII). Numbers are checked
// against the JSON grammar without converting them. Each item is copied
// straight into the output buffer as it is checked, in runs between
// whitespace (one memcpy per compact item, one 16- or 32-byte store per run
// of a pretty-printed one). The top-level logic (the fields, their errors
// and precedence) is run_body(). The walk keeps its position, output
// position and container stack in locals, never members: a store through
// the char output pointer would otherwise force them back to memory.
//
// A second walk (IndexWalk) runs over simdjson's stage-1 structural index:
// SIMD classification of the whole body first (UTF-8 validated with it),
// so that whitespace costs nothing and every token's position is known
// before the walk reads it. On an AVX2 CPU the forward pass was as fast or
// faster on every pretty-printed shape measured; on an AVX-512 CPU, where
// stage 1 runs 64 bytes per step, the index walk is the faster on
// pretty-printed bodies of a few hundred bytes and more (docs/
// BENCHMARKS.md), and parse() takes it there (wants_index()). It checks
// long strings 64 bytes per step and copies each item either in runs
// between whitespace or whole, by AVX-512 byte compression, by which is
// faster for the body (IndexKernel). Both walks give the same answer for
// every body; tests and fuzzers force each (parse_walk.h). The index costs
// 4.5 bytes per byte of body, kept per thread within a budget for all
// (StructuralIndex).
#include "writeapi/parse.h"

#include "parse_walk.h"

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <exception>
#include <forward_list>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define WRITEAPI_INLINE inline __attribute__((always_inline))

namespace writeapi {
namespace {

using Byte = uint8_t;

// One compare and a bit test.
WRITEAPI_INLINE bool is_ws(Byte c) {
  constexpr uint64_t kSet =
      (uint64_t{1} << ' ') | (uint64_t{1} << '\n') | (uint64_t{1} << '\r') | (uint64_t{1} << '\t');
  return c <= ' ' && ((kSet >> c) & 1) != 0;
}
WRITEAPI_INLINE bool is_digit(Byte c) { return static_cast<Byte>(c - '0') < 10; }

inline int hex_value(Byte c) {
  if (is_digit(c)) return c - '0';
  c |= 0x20;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Output slack: short runs are copied with 16- or 32-byte stores that may
// write past the run's end (never past the buffer).
constexpr std::size_t kOutputSlack = 32;

// Copies [from, to) to `w` and returns the end of the copy. `end` is the
// end of the input: a wide load must stay inside it.
WRITEAPI_INLINE char* copy_run(char* w, const Byte* from, const Byte* to, const Byte* end) {
  const std::size_t n = static_cast<std::size_t>(to - from);
#if defined(__SSE2__)
  if (n <= 16 && end - from >= 16) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(w), _mm_loadu_si128(reinterpret_cast<const __m128i*>(from)));
    return w + n;
  }
  if (n <= 32 && end - from >= 32) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(w), _mm_loadu_si128(reinterpret_cast<const __m128i*>(from)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(w + 16), _mm_loadu_si128(reinterpret_cast<const __m128i*>(from + 16)));
    return w + n;
  }
#else
  (void)end;
#endif
  std::memcpy(w, from, n);
  return w + n;
}

// Copies n bytes from `from` to `to`, reading and writing only inside
// both: short copies inline, with overlapping 8- or 16-byte moves.
WRITEAPI_INLINE void copy_within(char* to, const char* from, std::size_t n) {
  auto move8 = [](char* t, const char* f) {
    uint64_t v;
    std::memcpy(&v, f, 8);
    std::memcpy(t, &v, 8);
  };
  if (n >= 16 && n <= 64) {
#if defined(__SSE2__)
    auto move16 = [](char* t, const char* f) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(t), _mm_loadu_si128(reinterpret_cast<const __m128i*>(f)));
    };
#else
    auto move16 = [&](char* t, const char* f) {
      move8(t, f);
      move8(t + 8, f + 8);
    };
#endif
    for (std::size_t i = 0; i + 16 < n; i += 16) move16(to + i, from + i);
    move16(to + n - 16, from + n - 16);
  } else if (n >= 8 && n < 16) {
    move8(to, from);
    move8(to + n - 8, from + n - 8);
  } else if (n < 8) {
    for (std::size_t i = 0; i < n; ++i) to[i] = from[i];
  } else {
    std::memcpy(to, from, n);
  }
}

// Validates an escape at `p` (the backslash). Returns the byte after it, or
// nullptr when it is invalid.
__attribute__((noinline)) const Byte* scan_escape(const Byte* p, const Byte* end) {
  if (end - p < 2) return nullptr;
  switch (p[1]) {
    case '"':
    case '\\':
    case '/':
    case 'b':
    case 'f':
    case 'n':
    case 'r':
    case 't':
      return p + 2;
    case 'u':
      break;
    default:
      return nullptr;
  }
  auto read_u = [&](const Byte* at, uint32_t* code) {
    if (end - at < 6 || at[0] != '\\' || at[1] != 'u') return false;
    uint32_t value = 0;
    for (int i = 2; i < 6; ++i) {
      int h = hex_value(at[i]);
      if (h < 0) return false;
      value = (value << 4) | static_cast<uint32_t>(h);
    }
    *code = value;
    return true;
  };
  uint32_t code;
  if (!read_u(p, &code)) return nullptr;
  p += 6;
  // Escaped surrogates must pair up, as simdjson (and I-JSON) require:
  // a lone half cannot become UTF-8 in any reader of the stored line.
  if (code >= 0xDC00 && code <= 0xDFFF) return nullptr;
  if (code >= 0xD800 && code <= 0xDBFF) {
    uint32_t low;
    if (!read_u(p, &low) || low < 0xDC00 || low > 0xDFFF) return nullptr;
    p += 6;
  }
  return p;
}

#if defined(__SSE2__)
// Bit i is set when p[i] is whitespace, for i < 16.
WRITEAPI_INLINE unsigned ws_mask16(const Byte* p) {
  const __m128i chunk = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i ws = _mm_or_si128(
      _mm_or_si128(_mm_cmpeq_epi8(chunk, _mm_set1_epi8(' ')), _mm_cmpeq_epi8(chunk, _mm_set1_epi8('\n'))),
      _mm_or_si128(_mm_cmpeq_epi8(chunk, _mm_set1_epi8('\r')), _mm_cmpeq_epi8(chunk, _mm_set1_epi8('\t'))));
  return static_cast<unsigned>(_mm_movemask_epi8(ws));
}
#endif

// Returns the first byte after `p`, which is whitespace, that is not. A
// lone space (compact bodies with ": " and ", ", as Python writes them)
// costs one test: a SIMD compare for it made such bodies about 15 % slower,
// as the next token waited on it. Longer runs (a line break and
// indentation) take one 16-byte compare instead of a branch per byte.
WRITEAPI_INLINE const Byte* skip_ws_run(const Byte* p, const Byte* end) {
  // A single space (after a colon or comma) is one test.
  if (end - p < 2 || !is_ws(p[1])) return p + 1;
#if defined(__SSE2__)
  // A line break and indentation: 16 bytes per step.
  while (end - p >= 16) {
    const unsigned other = ~ws_mask16(p) & 0xFFFFu;
    if (other != 0) return p + __builtin_ctz(other);
    p += 16;
  }
#endif
  while (p < end && is_ws(*p)) ++p;
  return p;
}

constexpr std::size_t kMaxGuess = 128;  // longer runs are skipped unguessed

// The first guess at each depth: a line break and 4 spaces per level, as
// JSON.stringify(value, null, 4) and Python's json.dumps(indent=4) write.
// Other indentations cost one wrong guess per depth.
constexpr std::array<Byte, 32> kFirstGuesses = [] {
  std::array<Byte, 32> guesses{};
  for (std::size_t level = 1; level < guesses.size(); ++level) guesses[level] = static_cast<Byte>(1 + 4 * level);
  return guesses;
}();
static_assert(1 + 4 * 31 <= kMaxGuess);

// skip_ws_run for a run whose length is guessed: `*guess` is the length
// of the last run of two or more bytes at the same depth (at first,
// kFirstGuesses). Indentation repeats at a depth, and the guess is
// checked, not trusted: the bytes it covers must be whitespace (two bytes,
// a line break or CRLF, then one byte repeated: one compare per 16 bytes)
// and the byte after it not. Runs of another form (indentation mixing
// tabs and spaces) are skipped unguessed. What the guess buys is time:
// when it holds, the next token's position is p + guess, known before the
// compares that check it complete, so the walk goes on while they run,
// instead of waiting on a compare, a mask and a count as skip_ws_run's
// result makes it. On R1 (4-space indentation 7 or more deep) the walk ran
// 1.4 times as fast on an AVX-512 EPYC (docs/BENCHMARKS.md).
WRITEAPI_INLINE const Byte* skip_ws_guessed(const Byte* p, const Byte* end, Byte* guess) {
  if (end - p < 2 || !is_ws(p[1])) return p + 1;
#if defined(__SSE2__)
  const std::size_t n = *guess;
  // p[0] and p[1] are whitespace. The guess holds when p[2..n) repeat
  // p[2] (the indentation's space or tab, after a line break or CRLF),
  // that is whitespace, and p[n] is not.
  if (n >= 3 && static_cast<std::size_t>(end - p) >= n + 16 && is_ws(p[2]) && !is_ws(p[n])) {
    const __m128i fill = _mm_set1_epi8(static_cast<char>(p[2]));
    auto same = [&](std::size_t at) {
      return static_cast<unsigned>(
          _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + at)), fill)));
    };
    // Bits of the bytes in [at, at + count) that do not repeat the fill.
    auto differ = [&](std::size_t at, std::size_t count) {
      const unsigned want = count >= 16 ? 0xFFFFu : (1u << count) - 1;
      return ~(same(at) | (at == 0 ? 3u : 0u)) & want;
    };
    bool ok = differ(0, n) == 0;
    for (std::size_t i = 16; ok && i < n; i += 16) ok = differ(i, n - i) == 0;
    if (ok) return p + n;
  }
#endif
  const Byte* q = skip_ws_run(p, end);
  const std::size_t got = static_cast<std::size_t>(q - p);
  *guess = static_cast<Byte>(got <= kMaxGuess ? got : 0);
  return q;
}

#if defined(__SSE2__)
// The bytes of `chunk` that are a backslash or a control character.
WRITEAPI_INLINE __m128i backslash_or_control(__m128i chunk) {
  const __m128i control_max = _mm_set1_epi8(0x1F);
  return _mm_or_si128(_mm_cmpeq_epi8(chunk, _mm_set1_epi8('\\')),
                      _mm_cmpeq_epi8(_mm_max_epu8(chunk, control_max), control_max));
}
#endif

__attribute__((noinline)) const Byte* skip_ws_outlined(const Byte* p, const Byte* end, Byte* guess) {
  return skip_ws_guessed(p, end, guess);
}

#if defined(__SSE2__)
// The quotes, and the backslashes and control characters, among the 16
// bytes at `p`, as bit masks; ORs their high bits into `*high`.
struct StringMasks {
  unsigned quotes;
  unsigned others;
};
WRITEAPI_INLINE StringMasks string_masks(const Byte* p, unsigned* high) {
  const __m128i chunk = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  *high |= static_cast<unsigned>(_mm_movemask_epi8(chunk));
  return {static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(chunk, _mm_set1_epi8('"')))),
          static_cast<unsigned>(_mm_movemask_epi8(backslash_or_control(chunk)))};
}
#endif

// Scans a string whose opening quote is at `p`. Returns the byte after the
// closing quote, or nullptr when the string is invalid. Only quotes,
// backslashes and control characters matter to the grammar; UTF-8 is left
// to the caller, told by `*high` (the OR of bytes it read, the string's and
// possibly some after it: any byte of 0x80 or more sets bit 7 or above).
// `*escapes` is set when the string holds a backslash.
WRITEAPI_INLINE const Byte* scan_string(const Byte* p, const Byte* end, bool* escapes, unsigned* high) {
  ++p;
  for (;;) {
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"');
    if (end - p >= 16) {
      // The first 16 bytes hold most strings whole. The closing quote's
      // position comes from one compare, and the backslashes and control
      // characters before it are checked beside it: the next token's
      // position waits on the quote alone.
      const auto [quotes, others] = string_masks(p, high);
      if (quotes != 0) {
        const unsigned at = static_cast<unsigned>(__builtin_ctz(quotes));
        if ((others & ((1u << at) - 1)) == 0) return p + at + 1;
      }
      if ((quotes | others) != 0) {
        p += __builtin_ctz(quotes | others);
        goto special_byte;
      }
      p += 16;
    }
    // Longer strings: 32 bytes per step, then 16.
    while (end - p >= 32) {
      const __m128i c0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      const __m128i c1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16));
      *high |= static_cast<unsigned>(_mm_movemask_epi8(_mm_or_si128(c0, c1)));
      const unsigned mask =
          static_cast<unsigned>(_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(c0, quote), backslash_or_control(c0)))) |
          static_cast<unsigned>(_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(c1, quote), backslash_or_control(c1))))
              << 16;
      if (mask != 0) {
        p += __builtin_ctz(mask);
        goto special_byte;
      }
      p += 32;
    }
    while (end - p >= 16) {
      const __m128i chunk = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      *high |= static_cast<unsigned>(_mm_movemask_epi8(chunk));
      const unsigned mask = static_cast<unsigned>(
          _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(chunk, quote), backslash_or_control(chunk))));
      if (mask != 0) {
        p += __builtin_ctz(mask);
        goto special_byte;
      }
      p += 16;
    }
#endif
    while (p < end && *p != '"' && *p != '\\' && *p >= 0x20) *high |= *p++ & 0x80u;
    if (p == end) return nullptr;  // unterminated
#if defined(__SSE2__)
  special_byte:
#endif
    Byte c = *p;
    if (c == '"') return p + 1;
    if (c < 0x20) return nullptr;  // raw control character
    *escapes = true;
    p = scan_escape(p, end);
    if (p == nullptr) return nullptr;
  }
}

constexpr std::size_t kMaxKeyGuess = 14;  // a guessed key and its quotes fit 16 bytes
// Key guesses: 8 depths by 16 lengths of the key before (15: longer).
constexpr std::size_t kKeyGuessDepths = 8, kKeyGuessSlots = kKeyGuessDepths * 16;

// scan_string for an object's key whose length is guessed: `*guess` is the
// length of the key that came after the same previous key (by length) at
// the same depth last time, 0 for none. Keys repeat in arrays of objects.
// The guess holds when the first 16 bytes after the quote have their first
// quote at the guessed length and no backslash or control character before
// it; then the key's end is known without waiting on the compares.
WRITEAPI_INLINE const Byte* scan_key(const Byte* p, const Byte* end, bool* escapes, unsigned* high, Byte* guess) {
#if defined(__SSE2__)
  const std::size_t n = *guess;
  if (n != 0 && end - p >= 17) {
    const auto [quotes, others] = string_masks(p + 1, high);
    if ((quotes & ((2u << n) - 1)) == (1u << n) && (others & ((1u << n) - 1)) == 0) return p + n + 2;
  }
#endif
  const Byte* q = scan_string(p, end, escapes, high);
  if (q != nullptr) {
    const std::size_t length = static_cast<std::size_t>(q - p) - 2;
    *guess = static_cast<Byte>(length <= kMaxKeyGuess ? length : 0);
  }
  return q;
}

// For the index walk: true when every backslash in [p, close) begins a
// valid escape that ends at or before `close`; sets `*escapes` when there
// is one. `end` is the end of the input: a wide load must stay inside it.
// 32 bytes per step, inline: the strings that get here are long or hold a
// backslash, and the next token's position does not wait on this.
WRITEAPI_INLINE bool check_escapes(const Byte* p, const Byte* close, const Byte* end, bool* escapes) {
  while (p < close) {
#if defined(__SSE2__)
    if (end - p >= 32) {
      const __m128i backslash = _mm_set1_epi8('\\');
      const __m128i c0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      const __m128i c1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16));
      const unsigned mask = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(c0, backslash))) |
                            static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(c1, backslash))) << 16;
      if (mask == 0) {
        p += 32;
        continue;
      }
      p += __builtin_ctz(mask);
      if (p >= close) return true;
    } else
#endif
    {
      while (p < close && *p != '\\') ++p;
      if (p == close) return true;
    }
    *escapes = true;
    p = scan_escape(p, end);
    if (p == nullptr || p > close) return false;
  }
  return true;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define WRITEAPI_HAVE_AVX512 1
// The bytes of a 64-byte block that are escaped, given the block's
// backslashes: each byte that an odd run of backslashes ends before
// (simdjson's stage 1 finds them the same way). `*carry` is 1 when the
// block's first byte is escaped by the block before; it is set for the
// next block.
WRITEAPI_INLINE uint64_t escaped_bytes(uint64_t backslash, uint64_t* carry) {
  constexpr uint64_t kEven = 0x5555555555555555;
  const uint64_t first = *carry;
  backslash &= ~first;
  const uint64_t follows = backslash << 1 | first;
  const uint64_t odd_starts = backslash & ~kEven & ~follows;
  uint64_t even_starts;
  *carry = __builtin_add_overflow(odd_starts, backslash, &even_starts) ? 1 : 0;
  return (kEven ^ (even_starts << 1)) & follows;
}
// check_escapes() for CPUs with AVX-512BW, where the index walk runs
// (index_walk_pays()): 64 bytes per step, and the escapes of a block
// checked together rather than one by one. A byte is escaped when an odd
// run of backslashes ends before it (found as simdjson's stage 1 finds it,
// with a carry between blocks); each escaped byte must be one of " \ / b f
// n r t u, and each \u escape (with its surrogate pair) is checked by
// scan_escape(), in order. Out of line: built for AVX-512, it cannot be
// inlined into code built for the baseline.
__attribute__((target("avx512f,avx512bw"), noinline)) bool check_escapes_avx512(const Byte* p, const Byte* close,
                                                                                const Byte* end, bool* escapes) {
  uint64_t carry = 0;          // the block's first byte is escaped
  const Byte* checked_to = p;  // \u escapes before this are checked
  for (; p < close; p += 64) {
    const std::size_t left = static_cast<std::size_t>(close - p);
    const uint64_t in = left >= 64 ? ~uint64_t{0} : (uint64_t{1} << left) - 1;
    // Bytes at and past `close` are not loaded (masked) when it is near.
    const __m512i block = left >= 64 ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(in, p);
    const uint64_t backslash = _mm512_cmpeq_epi8_mask(block, _mm512_set1_epi8('\\')) & in;
    if ((backslash | carry) == 0) continue;
    *escapes = true;
    const uint64_t escaped = escaped_bytes(backslash, &carry);
#define WRITEAPI_IS(c) _mm512_cmpeq_epi8_mask(block, _mm512_set1_epi8(c))
    const uint64_t simple = WRITEAPI_IS('"') | WRITEAPI_IS('\\') | WRITEAPI_IS('/') | WRITEAPI_IS('b') |
                            WRITEAPI_IS('f') | WRITEAPI_IS('n') | WRITEAPI_IS('r') | WRITEAPI_IS('t');
    uint64_t u = escaped & WRITEAPI_IS('u');
#undef WRITEAPI_IS
    if ((escaped & ~(simple | u)) != 0) return false;
    for (; u != 0; u &= u - 1) {
      const Byte* backslash_at = p + __builtin_ctzll(u) - 1;
      if (backslash_at < checked_to) continue;  // the second half of a surrogate pair
      checked_to = scan_escape(backslash_at, end);
      if (checked_to == nullptr || checked_to > close) return false;
    }
  }
  return true;
}

// Copies the item [p, to) to `w` minified: every byte but whitespace
// outside strings. Returns the end of the copy. 64 bytes per step, with
// AVX-512 VBMI2's byte compression: a byte is inside a string when an odd
// number of unescaped quotes precede it in the item (a prefix XOR, by
// carry-less multiplication), escaped as in check_escapes_avx512(). The
// item is valid JSON (the walk has checked it), so that is exact. Reads and
// writes only inside [p, to) and [w, w + (to - p)): the last block's bytes
// are loaded and stored under masks.
__attribute__((target("avx512f,avx512bw,avx512vbmi2,pclmul"), noinline)) char* compact_avx512(const Byte* p,
                                                                                              const Byte* to, char* w) {
  uint64_t carry = 0;   // the block's first byte is escaped
  uint64_t inside = 0;  // all ones when the block starts inside a string
  for (; p < to; p += 64) {
    const std::size_t left = static_cast<std::size_t>(to - p);
    const uint64_t in = left >= 64 ? ~uint64_t{0} : (uint64_t{1} << left) - 1;
    const __m512i block = left >= 64 ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8(in, p);
    const uint64_t backslash = _mm512_cmpeq_epi8_mask(block, _mm512_set1_epi8('\\'));
    // escaped_bytes() only where there is a backslash: most blocks have none.
    const uint64_t escaped = backslash != 0 ? escaped_bytes(backslash, &carry) : std::exchange(carry, 0);
    const uint64_t quotes = _mm512_cmpeq_epi8_mask(block, _mm512_set1_epi8('"')) & ~escaped;
    // Bit i of the prefix XOR: the parity of the quotes at or below i.
    const uint64_t strings =
        static_cast<uint64_t>(_mm_cvtsi128_si64(_mm_clmulepi64_si128(_mm_set_epi64x(0, static_cast<int64_t>(quotes)),
                                                                     _mm_set1_epi8(static_cast<char>(0xFF)), 0))) ^
        inside;
    inside = static_cast<uint64_t>(static_cast<int64_t>(strings) >> 63);
    // Whitespace outside strings (inside one, only spaces can occur: stage 1
    // refused raw control characters).
    const uint64_t ws =
        (_mm512_cmpeq_epi8_mask(block, _mm512_set1_epi8(' ')) | _mm512_cmpeq_epi8_mask(block, _mm512_set1_epi8('\n')) |
         _mm512_cmpeq_epi8_mask(block, _mm512_set1_epi8('\r')) |
         _mm512_cmpeq_epi8_mask(block, _mm512_set1_epi8('\t'))) &
        ~strings;
    const uint64_t keep = in & ~ws;
    const unsigned n = static_cast<unsigned>(__builtin_popcountll(keep));
    // Compressed in a register and stored under a mask: a compressing store
    // to memory is slow on some CPUs (AMD Zen 4).
    _mm512_mask_storeu_epi8(w, n == 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1,
                            _mm512_maskz_compress_epi8(keep, block));
    w += n;
  }
  return w;
}

// The CPU has what the wide index walk (compact_avx512() and
// check_escapes_avx512()) needs.
// (__builtin_cpu_init first: this may run before libgcc's own
// initialisation of what __builtin_cpu_supports reads.)
const bool kWideIndexWalk = [] {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vbmi2") && __builtin_cpu_supports("pclmul");
}();
#else
constexpr bool kWideIndexWalk = false;
#endif

// For the index walk: checks the string whose opening quote is at `p`,
// given `next`, the start of the token after it in the structural index.
// Returns the byte after its closing quote, or nullptr when it is invalid.
// Stage 1 has already refused unclosed strings and raw control characters,
// so the closing quote is the last byte before `next` that is not
// whitespace, and the string needs a closer look only when it holds a
// backslash: the next token's position never waits for a scan of the
// string.
// kWide: long strings go to check_escapes_avx512().
template <bool kWide>
WRITEAPI_INLINE const Byte* check_string(const Byte* p, const Byte* next, const Byte* end, bool* escapes) {
#if defined(__SSE2__)
  // Most strings (keys, short values) end within 16 bytes: one load finds
  // the first quote or backslash. A quote with no backslash before it is
  // the closing one.
  if (end - p >= 17) {
    const __m128i chunk = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 1));
    const unsigned quotes = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(chunk, _mm_set1_epi8('"'))));
    const unsigned backslashes = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(chunk, _mm_set1_epi8('\\'))));
    // quotes & (backslashes - 1): a quote below the first backslash (all
    // quotes when there is none).
    const unsigned early_quotes = quotes & (backslashes - 1);
    if (early_quotes != 0) return p + 2 + __builtin_ctz(early_quotes);
  }
#endif
  const Byte* close = next - 1;
  while (close > p && *close != '"') --close;  // whitespace: stage 1 put nothing else there
  if (close == p) return nullptr;
#if defined(WRITEAPI_HAVE_AVX512)
  if constexpr (kWide) return check_escapes_avx512(p + 1, close, end, escapes) ? close + 1 : nullptr;
#endif
  return check_escapes(p + 1, close, end, escapes) ? close + 1 : nullptr;
}

// Returns the first byte at or after `p` that is not an ASCII digit. The
// first byte is tested alone (called after a number's first digit: many
// numbers in sensor data have one or two), then 8 bytes per step: a byte is
// a digit when its high nibble is 3 and so is that of the byte plus 6. A
// carry out of a lane only comes from a byte that is not a digit, and only
// changes later lanes, past the one found.
WRITEAPI_INLINE const Byte* skip_digits(const Byte* p, const Byte* end) {
  if (p == end || !is_digit(*p)) return p;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  constexpr uint64_t kHigh = 0xF0F0F0F0F0F0F0F0ULL, kThrees = 0x3030303030303030ULL;
  while (end - p >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    const uint64_t other = ((w & kHigh) ^ kThrees) | (((w + 0x0606060606060606ULL) & kHigh) ^ kThrees);
    if (other != 0) return p + (__builtin_ctzll(other) >> 3);
    p += 8;
  }
#endif
  while (p < end && is_digit(*p)) ++p;
  return p;
}

// Scans a number starting at `p`. Returns the byte after it, or nullptr
// when it breaks the grammar. What follows must be a delimiter; the caller
// checks that ("01", "1x").
WRITEAPI_INLINE const Byte* scan_number(const Byte* p, const Byte* end) {
  if (*p == '-') ++p;
  if (p == end) return nullptr;
  if (*p == '0') {
    ++p;
  } else if (is_digit(*p)) {
    p = skip_digits(p + 1, end);
  } else {
    return nullptr;
  }
  if (p < end && *p == '.') {
    ++p;
    if (p == end || !is_digit(*p)) return nullptr;
    p = skip_digits(p + 1, end);
  }
  if (p < end && (*p | 0x20) == 'e') {
    ++p;
    if (p < end && (*p == '+' || *p == '-')) ++p;
    if (p == end || !is_digit(*p)) return nullptr;
    p = skip_digits(p + 1, end);
  }
  return p;
}

WRITEAPI_INLINE bool starts_with_word(const Byte* p, const Byte* end, const char (&word)[5]) {
  if (end - p < 4) return false;
  uint32_t have, want;
  std::memcpy(&have, p, 4);
  std::memcpy(&want, word, 4);
  return have == want;
}

enum class Scan { ok, invalid_json, too_deep };

// Container kinds on the stack.
constexpr Byte kInObject = 1;
constexpr Byte kInArray = 2;

// A string's raw bytes (without quotes) and whether they contain escapes.
struct StringSpan {
  const char* begin;
  const char* end;
  bool has_escapes;
};

// The single forward pass, for compact bodies: the grammar walk reads the
// bytes themselves, skipping whitespace as it meets it (byte by byte: the
// branches are predicted, so the next token does not wait for a SIMD
// compare). UTF-8 was validated before.
class ForwardWalk {
 public:
  // `stack` has room for min(max_depth, body size) + 1 entries; `output`
  // for body size + 1 + kOutputSlack bytes.
  ForwardWalk(const Byte* body, std::size_t length, std::size_t max_depth, char* output, Byte* stack, Byte* key_guesses)
      : p_(body), end_(body + length), max_depth_(max_depth), w_(output), stack_(stack), key_guesses_(key_guesses) {
    std::memcpy(guess_, kFirstGuesses.data(), sizeof guess_);
    skip_ws(0);
  }

  // The primitives run_body() uses. The cursor is on a token, or at_end().
  bool at_end() const { return p_ == end_; }
  Byte peek() const { return *p_; }
  std::size_t max_depth() const { return max_depth_; }
  void skip_byte() {
    ++p_;
    skip_ws();
  }
  Scan string(StringSpan* span) { return string_with(span, nullptr); }
  // A top-level field's name: string() with its length guessed (scan_key)
  // from the field before it, in the guesses of depth 0.
  Scan key(StringSpan* span) {
    if (Scan s = string_with(span, &key_guesses_[last_field_]); s != Scan::ok) return s;
    last_field_ = std::min<std::size_t>(static_cast<std::size_t>(span->end - span->begin), 15);
    return Scan::ok;
  }
  Scan value(std::size_t depth) {
    if (Scan s = scan_value<false>(depth); s != Scan::ok) return s;
    skip_ws();
    return Scan::ok;
  }
  Scan data(std::size_t* items, bool* null_item) {
    if (Scan s = scan_data(items, null_item); s != Scan::ok) return s;
    skip_ws();
    return Scan::ok;
  }
  char* output_end() const { return w_; }
  // True when a string held a byte of 0x80 or more: the body needs a UTF-8
  // check (bytes outside strings are ASCII or the grammar refused them).
  bool saw_non_ascii() const { return high_ != 0; }

 private:
  // A string at p_, its length guessed (scan_key) when `guess` is given.
  Scan string_with(StringSpan* span, Byte* guess) {
    span->begin = reinterpret_cast<const char*>(p_ + 1);
    span->has_escapes = false;
    const Byte* after = guess != nullptr ? scan_key(p_, end_, &span->has_escapes, &high_, guess)
                                         : scan_string(p_, end_, &span->has_escapes, &high_);
    if (after == nullptr) return Scan::invalid_json;
    span->end = reinterpret_cast<const char*>(after - 1);
    p_ = after;
    skip_ws();
    return Scan::ok;
  }
  // `level`: the depth of the line the run may indent (skip_ws_guessed),
  // that of the body's fields unless told.
  void skip_ws(std::size_t level = 1) {
    if (p_ < end_ && is_ws(*p_)) {
      // A lone space inline; a longer run, which comes a few times per
      // body or once per item here, out of line: the top-level logic that
      // inlines this stays small.
      if (end_ - p_ >= 2 && is_ws(p_[1]))
        p_ = skip_ws_outlined(p_, end_, &guess_[level]);
      else
        ++p_;
    }
  }
  // Scans one complete value (any depth) starting at p_, whitespace
  // skipped; leaves p_ just after it. `depth` is the nesting depth of the
  // container holding it. kCopy: the value is an item, copied minified.
  template <bool kCopy>
  Scan scan_value(std::size_t depth);
  Scan scan_data(std::size_t* items, bool* null_item);

  const Byte* p_;
  const Byte* end_;
  std::size_t max_depth_;
  char* w_;
  Byte* stack_;
  unsigned high_ = 0;
  Byte guess_[32];              // skip_ws_guessed's guesses, by depth (mod 32)
  Byte* key_guesses_;           // scan_key's guesses, kKeyGuessSlots of them
  std::size_t last_field_ = 0;  // length of the last top-level field's name, up to 15
};

// Aligned to 64 bytes, so that its layout (short loops, many branches) is
// the same in every binary. Left to the linker it started 48 bytes past a
// 64-byte boundary in the CLI and on one in parse_benchmark, and the same
// code ran 10 to 40 % slower on pretty-printed bodies in the CLI
// (docs/BENCHMARKS.md).
template <bool kCopy>
__attribute__((aligned(64))) Scan ForwardWalk::scan_value(std::size_t depth) {
  // Iterative, so hostile nesting costs one byte of stack per level, not a
  // stack frame.
  const Byte* p = p_;
  const Byte* const end = end_;
  char* w = w_;
  const Byte* run = p;  // start of the item's bytes not yet copied
  Byte* const stack = stack_;
  std::size_t top = 0;                          // containers open inside this value
  const std::size_t room = max_depth_ - depth;  // how many it may open
  bool escapes = false;
  unsigned high = 0;

  // Whitespace splits an item's copy into runs. The common case is a
  // structural character right away: one compare. The guess for a run is
  // kept by the depth of the line it indents: a container's members are
  // one deeper than its opening bracket (level 1), and its closing bracket
  // is at the depth of the member it closes (level 31, -1 modulo 32).
  auto skip_ws = [&](std::size_t level = 0) __attribute__((always_inline)) {
    if (p < end && is_ws(*p)) {
      if constexpr (kCopy) w = copy_run(w, run, p, end);
      p = skip_ws_guessed(p, end, &guess_[(depth + top + level) % 32]);
      if constexpr (kCopy) run = p;
    }
  };
  Scan result = Scan::ok;
  std::size_t last_key = 0;  // length of the object's key before, up to 15
  Byte* const key_guesses = key_guesses_;
  for (;;) {
    // A value at p.
    if (p == end) goto invalid;
    switch (*p) {
      case '{':
        if (top + 1 > room) goto deep;
        ++p;
        skip_ws(1);
        if (p < end && *p == '}') {
          ++p;
          break;
        }
        stack[top++] = kInObject;
        last_key = 0;
        goto object_key;
      case '[':
        if (top + 1 > room) goto deep;
        ++p;
        skip_ws(1);
        if (p < end && *p == ']') {
          ++p;
          break;
        }
        stack[top++] = kInArray;
        continue;  // first element
      case '"':
        p = scan_string(p, end, &escapes, &high);
        if (p == nullptr) goto invalid;
        break;
      case 't':
        if (!starts_with_word(p, end, "true")) goto invalid;
        p += 4;
        break;
      case 'f':
        if (end - p < 5 || !starts_with_word(p + 1, end, "alse")) goto invalid;
        p += 5;
        break;
      case 'n':
        if (!starts_with_word(p, end, "null")) goto invalid;
        p += 4;
        break;
      default:
        p = scan_number(p, end);
        if (p == nullptr) goto invalid;
        break;
    }
    // After a complete value: close containers or move to the next member.
    for (;;) {
      if (top == 0) goto done;
      skip_ws(31);
      if (p == end) goto invalid;
      Byte c = *p;
      if (c == ',') {
        ++p;
        skip_ws();
        if (stack[top - 1] == kInArray) goto next_value;
        goto object_key;
      }
      if (c != (stack[top - 1] == kInArray ? ']' : '}')) goto invalid;
      ++p;
      --top;
    }
  object_key:
    if (p == end || *p != '"') goto invalid;
    {
      const Byte* const key = p;
      p = scan_key(p, end, &escapes, &high, &key_guesses[((depth + top) % kKeyGuessDepths) * 16 + last_key]);
      if (p == nullptr) goto invalid;
      last_key = std::min<std::size_t>(static_cast<std::size_t>(p - key) - 2, 15);
    }
    skip_ws();
    if (p == end || *p != ':') goto invalid;
    ++p;
    skip_ws();
  next_value:;
  }
deep:
  result = Scan::too_deep;
  goto done;
invalid:
  result = Scan::invalid_json;
done:
  high_ |= high;
  if (result == Scan::ok) {
    p_ = p;
    if constexpr (kCopy) w_ = copy_run(w, run, p, end);
  }
  return result;
}

Scan ForwardWalk::scan_data(std::size_t* items, bool* null_item) {
  // p_ at the value of "data". A top-level array is split into items.
  *items = 0;
  if (*p_ != '[') {
    if (*p_ == 'n') *null_item = true;
    if (Scan s = scan_value<true>(1); s != Scan::ok) return s;
    *w_++ = '\n';
    *items = 1;
    return Scan::ok;
  }
  if (2 > max_depth_) return Scan::too_deep;
  ++p_;
  skip_ws(2);  // the items' lines are one deeper than the fields'
  if (p_ < end_ && *p_ == ']') {
    ++p_;
    return Scan::ok;
  }
  std::size_t count = 0;
  for (;;) {
    if (p_ == end_) return Scan::invalid_json;
    if (*p_ == 'n') *null_item = true;
    if (Scan s = scan_value<true>(2); s != Scan::ok) return s;
    *w_++ = '\n';
    ++count;
    skip_ws();
    if (p_ == end_) return Scan::invalid_json;
    if (*p_ == ',') {
      ++p_;
      skip_ws(2);
      continue;
    }
    if (*p_ != ']') return Scan::invalid_json;
    ++p_;
    *items = count;
    return Scan::ok;
  }
}

// The structural index of a body: simdjson's stage 1 (the first half of its
// DOM parser), which validates UTF-8 and finds, 64 bytes per step with
// SIMD, the position of every structural character ({ } [ ] : ,), every
// string's opening quote and the first byte of every other token, skipping
// whitespace and string contents. Reused per thread; it holds 4 bytes per
// byte of the largest body it has indexed, and all threads' indexes
// together at most kIndexBudget bytes: a thread that cannot have the index a
// body needs parses it with the forward pass instead (the same answer,
// slower). simdjson::internal::dom_parser_implementation is public in
// simdjson.h but not part of simdjson's documented API: after a simdjson
// upgrade, run the parse tests and both fuzzers before trusting it (written
// against 3.0.1).
constexpr std::size_t kIndexBudget = internal::kParseIndexBudget;
std::atomic<std::size_t> g_index_bytes{0};

// simdjson's SIMD kernels, looked up once (nullptr where this simdjson has
// none of that name). Their stage 1 reads only inside the body, copying its
// last partial block into a padded one; the fallback kernel's reads a byte
// past the end of a body that ends inside a string, so the index walk never
// runs on it (nor on any kernel not named here).
struct Kernels {
  const simdjson::implementation* icelake;
  const simdjson::implementation* haswell;
  const simdjson::implementation* westmere;
};
const Kernels& kernels() {
  static const Kernels k{simdjson::get_available_implementations()["icelake"],
                         simdjson::get_available_implementations()["haswell"],
                         simdjson::get_available_implementations()["westmere"]};
  return k;
}
bool stage1_reads_inside(const simdjson::implementation* kernel) {
  const Kernels& k = kernels();
  return kernel != nullptr && (kernel == k.icelake || kernel == k.haswell || kernel == k.westmere);
}

class StructuralIndex {
 public:
  StructuralIndex() = default;
  StructuralIndex(const StructuralIndex&) = delete;
  StructuralIndex& operator=(const StructuralIndex&) = delete;
  ~StructuralIndex() { g_index_bytes.fetch_sub(held_, std::memory_order_relaxed); }

  // Makes room to index `length` bytes with `kernel`'s stage 1 (simdjson's
  // active implementation, which a program may change: an index made by
  // another is made again). Returns false when the budget has none (the
  // index is then empty); throws std::bad_alloc when the allocator has
  // none, as parse() does for every failed allocation.
  bool reserve(std::size_t length, const simdjson::implementation* kernel) {
    if (implementation_ && kernel_ == kernel && implementation_->capacity() >= length) return true;
    // 1/8 of headroom, so a stream of slightly larger bodies does not
    // reallocate each time.
    std::size_t capacity = std::max<std::size_t>(length + length / 8, 4096);
    capacity = std::min<std::size_t>(capacity, simdjson::SIMDJSON_MAXSIZE_BYTES);
    if (length > capacity) return false;
    release();
    const std::size_t bytes = bytes_for(capacity);
    std::size_t used = g_index_bytes.load(std::memory_order_relaxed);
    do {
      if (used > kIndexBudget || kIndexBudget - used < bytes) return false;
    } while (!g_index_bytes.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed));
    held_ = bytes;
    if (kernel->create_dom_parser_implementation(capacity, 1, implementation_) != simdjson::SUCCESS) {
      release();
      throw std::bad_alloc();
    }
    kernel_ = kernel;
    return true;
  }

  // Indexes `body` (after reserve()). Returns false when stage 1 refused
  // it: the body is not valid JSON or not UTF-8, and which error comes first
  // is the forward pass's to tell.
  bool build(const Byte* body, std::size_t length) {
    if (implementation_->stage1(body, length, simdjson::stage1_mode::regular) != simdjson::SUCCESS) return false;
    // simdjson ends the index with `length` (the end of the body); set it
    // here too, as the walk relies on it.
    implementation_->structural_indexes[implementation_->n_structural_indexes] = static_cast<uint32_t>(length);
    return true;
  }
  const uint32_t* begin() const { return implementation_->structural_indexes.get(); }
  // Tokens in the body indexed last.
  std::size_t size() const { return implementation_->n_structural_indexes; }

 private:
  // What create_dom_parser_implementation allocates: the index (rounded up
  // to 64 entries, plus 9), the depth stacks (one level) and the object.
  static std::size_t bytes_for(std::size_t capacity) { return (capacity + 64 + 9) * sizeof(uint32_t) + 256; }
  void release() {
    implementation_.reset();
    g_index_bytes.fetch_sub(held_, std::memory_order_relaxed);
    held_ = 0;
  }

  std::unique_ptr<simdjson::internal::dom_parser_implementation> implementation_;
  const simdjson::implementation* kernel_ = nullptr;  // the one that made implementation_
  std::size_t held_ = 0;                              // bytes counted against kIndexBudget
};

// How the index walk checks long strings and copies items.
enum class IndexKernel {
  // SSE2: strings 16 bytes per step; items copied in runs between
  // whitespace as the walk meets it (one 16- or 32-byte store per run).
  baseline,
  // AVX-512: strings 64 bytes per step (check_escapes_avx512()); items in
  // runs as baseline does.
  wide,
  // wide, with each item copied whole at its end by compact_avx512(): its
  // cost is per byte of the item, that of runs per token, and it is the
  // faster where tokens are short (kMaxCompressedBytesPerToken).
  wide_compressed,
};

// The grammar walk over the structural index, for pretty-printed bodies.
// `p_` is the current token and `ix_` its entry in the index; the entry
// after the last token holds the body's length, so past the last token
// p_ == end_. Stage 1 validated UTF-8 and refused unclosed strings and raw
// control characters; the walk checks everything else.
class IndexWalk {
 public:
  // `stack` has room for min(max_depth, body size) + 1 entries; `output`
  // for body size + 1 + kOutputSlack bytes.
  // `kernel`: see IndexKernel (anything but baseline needs kWideIndexWalk).
  IndexWalk(const Byte* body, std::size_t length, const uint32_t* index, std::size_t max_depth, char* output,
            Byte* stack, IndexKernel kernel)
      : buf_(body),
        end_(body + length),
        ix_(index),
        p_(body + *index),
        max_depth_(max_depth),
        w_(output),
        stack_(stack),
        kernel_(kernel) {}

  // The primitives run_body() uses. The cursor is on a token, or at_end().
  bool at_end() const { return p_ == end_; }
  Byte peek() const { return *p_; }
  std::size_t max_depth() const { return max_depth_; }
  // Moves past a one-byte token ({ } : ,).
  void skip_byte() { next(); }
  // Moves past the string at the cursor, setting `*span`.
  Scan string(StringSpan* span) { return scan_string_at(span); }
  Scan key(StringSpan* span) { return scan_string_at(span); }
  // Moves past one value, validated and not copied.
  Scan value(std::size_t depth) {
    return kernel_ == IndexKernel::baseline ? scan_value<false, false, IndexKernel::baseline>(depth)
                                            : scan_value<false, false, IndexKernel::wide>(depth);
  }
  // Moves past the value of "data", copying its items.
  Scan data(std::size_t* items, bool* null_item) {
    switch (kernel_) {
      case IndexKernel::baseline:
        return scan_data<IndexKernel::baseline>(items, null_item);
      case IndexKernel::wide:
        return scan_data<IndexKernel::wide>(items, null_item);
      case IndexKernel::wide_compressed:
        break;
    }
    return scan_data<IndexKernel::wide_compressed>(items, null_item);
  }
  // Bytes written to the output.
  char* output_end() const { return w_; }
  // Stage 1 validated the body's UTF-8.
  bool saw_non_ascii() const { return false; }

 private:
  // Moves to the next token. The current one must be < end_.
  void next() { p_ = buf_ + *++ix_; }
  Scan scan_string_at(StringSpan* span) {
    span->begin = reinterpret_cast<const char*>(p_ + 1);
    span->has_escapes = false;
    const Byte* after = kernel_ != IndexKernel::baseline
                            ? check_string<true>(p_, buf_ + ix_[1], end_, &span->has_escapes)
                            : check_string<false>(p_, buf_ + ix_[1], end_, &span->has_escapes);
    if (after == nullptr) return Scan::invalid_json;
    span->end = reinterpret_cast<const char*>(after - 1);
    next();
    return Scan::ok;
  }

  // Scans one complete value (any depth) at the current token. `depth` is
  // the nesting depth of the container holding it. kCopy: the value is an
  // item, copied minified to the output. kSplit (with kCopy): the value is
  // the array of "data", each element an item; `*items` counts them and
  // `*null_item` is set when one is null.
  template <bool kCopy, bool kSplit, IndexKernel kKernel>
  Scan scan_value(std::size_t depth, std::size_t* items = nullptr, bool* null_item = nullptr);
  template <IndexKernel kKernel>
  Scan scan_data(std::size_t* items, bool* null_item);

  const Byte* buf_;
  const Byte* end_;
  const uint32_t* ix_;
  const Byte* p_;
  std::size_t max_depth_;
  char* w_;
  Byte* stack_;
  IndexKernel kernel_;
};

// Copies the item [from, to) minified to `w` (wide_compressed only).
template <IndexKernel kKernel>
WRITEAPI_INLINE char* copy_item(char* w, const Byte* from, const Byte* to) {
#if defined(WRITEAPI_HAVE_AVX512)
  if constexpr (kKernel == IndexKernel::wide_compressed) return compact_avx512(from, to, w);
#endif
  (void)from, (void)to;
  return w;
}

template <bool kCopy, bool kSplit, IndexKernel kKernel>
__attribute__((aligned(64))) Scan IndexWalk::scan_value(std::size_t depth, std::size_t* items, bool* null_item) {
  constexpr bool kWide = kKernel != IndexKernel::baseline;
  constexpr bool kCompressed = kKernel == IndexKernel::wide_compressed;
  // Iterative, so hostile nesting costs one byte of stack per level, not a
  // stack frame. Locals, not members: a store through the char output
  // pointer would otherwise force them back to memory.
  const Byte* const buf = buf_;
  const Byte* const end = end_;
  const uint32_t* ix = ix_;
  const Byte* p = p_;
  char* w = w_;
  const Byte* run = p;  // start of the item's bytes not yet copied
  const Byte* token_end = p;
  Byte* const stack = stack_;
  std::size_t top = 0;                          // containers open inside this value
  const std::size_t room = max_depth_ - depth;  // how many it may open
  bool escapes = false;

  // Moves past the current token, which ends at `after`. Whitespace shows
  // as a gap before the next token: it splits the item's copy into runs
  // (unless kCompressed, which copies whole items at their end).
  auto next = [&](const Byte* after) __attribute__((always_inline)) {
    const Byte* following = buf + *++ix;
    if constexpr (kCopy && !kCompressed) {
      if (following != after) {
        w = copy_run(w, run, after, end);
        run = following;
      }
    }
    token_end = after;
    p = following;
  };
  // After a number or literal: the next byte must end the token. (Stage 1
  // makes "1x" or "truex" one token, so the next index lies beyond it.)
  auto delimited = [&](const Byte* after) __attribute__((always_inline)) {
    return after == buf + ix[1] || is_ws(*after);
  };
  Scan result = Scan::ok;
  std::size_t count = 0;  // items ended (kSplit)
  if constexpr (kSplit) {
    // p at the '[' of "data": stack[0] stands for it, so top == 1 while
    // inside an item. No copy: items start after it.
    if (room < 1) goto deep;
    p = buf + *++ix;
    if (p < end && *p == ']') {
      p = buf + *++ix;
      goto done;
    }
    stack[top++] = kInArray;
    run = p;
    if (p < end && *p == 'n') *null_item = true;
  }
  for (;;) {
    // A value at p.
    if (p == end) goto invalid;
    switch (*p) {
      case '{':
        if (top + 1 > room) goto deep;
        next(p + 1);
        if (p < end && *p == '}') {
          next(p + 1);
          break;
        }
        stack[top++] = kInObject;
        goto object_key;
      case '[':
        if (top + 1 > room) goto deep;
        next(p + 1);
        if (p < end && *p == ']') {
          next(p + 1);
          break;
        }
        stack[top++] = kInArray;
        continue;  // first element
      case '"': {
        const Byte* after = check_string<kWide>(p, buf + ix[1], end, &escapes);
        if (after == nullptr) goto invalid;
        next(after);
        break;
      }
      case 't':
        if (!starts_with_word(p, end, "true") || !delimited(p + 4)) goto invalid;
        next(p + 4);
        break;
      case 'f':
        if (end - p < 5 || !starts_with_word(p + 1, end, "alse") || !delimited(p + 5)) goto invalid;
        next(p + 5);
        break;
      case 'n':
        if (!starts_with_word(p, end, "null") || !delimited(p + 4)) goto invalid;
        next(p + 4);
        break;
      default: {
        const Byte* after = scan_number(p, end);
        if (after == nullptr || !delimited(after)) goto invalid;
        next(after);
        break;
      }
    }
    // After a complete value: close containers or move to the next member.
    for (;;) {
      if (top == 0) goto done;
      if (p == end) goto invalid;
      if constexpr (kSplit) {
        if (top == 1) {
          // An item ended at token_end (its copy up to the last gap is
          // done, unless kCompressed). Separators between items are not
          // copied.
          if constexpr (kCompressed) {
            w = copy_item<kKernel>(w, run, token_end);
          } else if (token_end > run) {
            w = copy_run(w, run, token_end, end);
          }
          *w++ = '\n';
          ++count;
          if (*p == ',') {
            p = buf + *++ix;
            run = p;
            if (p < end && *p == 'n') *null_item = true;
            goto next_value;
          }
          if (*p != ']') goto invalid;
          p = buf + *++ix;
          top = 0;
          goto done;
        }
      }
      Byte c = *p;
      if (c == ',') {
        next(p + 1);
        if (stack[top - 1] == kInArray) goto next_value;
        goto object_key;
      }
      if (c != (stack[top - 1] == kInArray ? ']' : '}')) goto invalid;
      next(p + 1);
      --top;
    }
  object_key:
    if (p == end || *p != '"') goto invalid;
    {
      const Byte* after = check_string<kWide>(p, buf + ix[1], end, &escapes);
      if (after == nullptr) goto invalid;
      next(after);
    }
    if (p == end || *p != ':') goto invalid;
    next(p + 1);
  next_value:;
  }
deep:
  result = Scan::too_deep;
  goto done;
invalid:
  result = Scan::invalid_json;
done:
  if (result == Scan::ok) {
    ix_ = ix;
    p_ = p;
    if constexpr (kCopy) {
      if constexpr (kSplit) {
        *items = count;
      } else if (kCompressed) {
        w = copy_item<kKernel>(w, run, token_end);
      } else if (token_end > run) {
        w = copy_run(w, run, token_end, end);
      }
      w_ = w;
    }
  }
  return result;
}

template <IndexKernel kKernel>
Scan IndexWalk::scan_data(std::size_t* items, bool* null_item) {
  // p_ at the value of "data". A top-level array is split into items.
  *items = 0;
  if (*p_ == '[') return scan_value<true, true, kKernel>(1, items, null_item);
  if (*p_ == 'n') *null_item = true;
  if (Scan s = scan_value<true, false, kKernel>(1); s != Scan::ok) return s;
  *w_++ = '\n';
  *items = 1;
  return Scan::ok;
}

__attribute__((noinline)) void unescape_escapes(const StringSpan& span, std::string* out) {
  out->clear();
  const char* p = span.begin;
  while (p < span.end) {
    if (*p != '\\') {
      out->push_back(*p++);
      continue;
    }
    char e = p[1];
    p += 2;
    switch (e) {
      case 'b':
        out->push_back('\b');
        break;
      case 'f':
        out->push_back('\f');
        break;
      case 'n':
        out->push_back('\n');
        break;
      case 'r':
        out->push_back('\r');
        break;
      case 't':
        out->push_back('\t');
        break;
      case 'u': {
        auto hex4 = [](const char* at) {
          uint32_t v = 0;
          for (int i = 0; i < 4; ++i) v = (v << 4) | static_cast<uint32_t>(hex_value(at[i]));
          return v;
        };
        uint32_t code = hex4(p);
        p += 4;
        if (code >= 0xD800 && code <= 0xDBFF) {  // validated: a pair follows
          uint32_t low = hex4(p + 2);
          p += 6;
          code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
        }
        if (code < 0x80) {
          out->push_back(static_cast<char>(code));
        } else if (code < 0x800) {
          out->push_back(static_cast<char>(0xC0 | (code >> 6)));
          out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
        } else if (code < 0x10000) {
          out->push_back(static_cast<char>(0xE0 | (code >> 12)));
          out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
          out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
        } else {
          out->push_back(static_cast<char>(0xF0 | (code >> 18)));
          out->push_back(static_cast<char>(0x80 | ((code >> 12) & 0x3F)));
          out->push_back(static_cast<char>(0x80 | ((code >> 6) & 0x3F)));
          out->push_back(static_cast<char>(0x80 | (code & 0x3F)));
        }
        break;
      }
      default:  // '"', '\\', '/'
        out->push_back(e);
    }
  }
}

// Sets `*out` to the string's value. Inline: most strings (keys, device
// IDs) have no escapes and are one copy.
WRITEAPI_INLINE void unescape(const StringSpan& span, std::string* out) {
  if (span.has_escapes) return unescape_escapes(span, out);
#if defined(__cpp_lib_string_resize_and_overwrite)
  // Up to 64 bytes inline, with loads that overlap rather than pass either
  // end of the string; longer ones through memcpy.
  const std::size_t n = static_cast<std::size_t>(span.end - span.begin);
  out->resize_and_overwrite(n, [&](char* to, std::size_t) {
    copy_within(to, span.begin, n);
    return n;
  });
#else
  out->assign(span.begin, span.end);
#endif
}

// True when a device ID has a control character (C0, DEL or C1). The
// string is valid UTF-8, so C1 controls appear as 0xC2 0x80..0x9F.
__attribute__((noinline)) bool has_control_characters_slow(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<uint8_t>(s[i]);
    if (static_cast<uint8_t>(c - 0x20) < 0x5F) continue;  // printable ASCII: one compare
    if (c < 0x20 || c == 0x7F) return true;
    if (c == 0xC2 && i + 1 < s.size() && static_cast<uint8_t>(s[i + 1]) < 0xA0) return true;
  }
  return false;
}

WRITEAPI_INLINE bool has_control_characters(std::string_view s) {
  // Printable ASCII, the usual case, 8 bytes per step: a byte below 0x20
  // sets bit 7 of its lane in w - 0x20.., one of 0x80 or more in w, and 0x7F
  // in w + 0x01.. (no carry crosses a lane whose bit 7 is clear). A word
  // that fails, or the last bytes, go byte by byte.
  if (s.size() >= 8) {
    constexpr uint64_t kLanes = 0x0101010101010101ULL;
    auto printable = [](const char* at) {
      uint64_t w;
      std::memcpy(&w, at, 8);
      return (((w - 0x20 * kLanes) | w | (w + kLanes)) & (0x80 * kLanes)) == 0;
    };
    std::size_t i = 0;
    while (i + 8 <= s.size() && printable(s.data() + i)) i += 8;
    if (i + 8 > s.size() && printable(s.data() + s.size() - 8)) return false;
  }
  return has_control_characters_slow(s);
}

Status scan_error(Scan s) {
  if (s == Scan::too_deep) return Status(ErrorCode::too_deep, "JSON nesting is too deep; flatten the data");
  return Status(ErrorCode::invalid_json, "the request body is not valid JSON");
}

// The requestId rule: 1 to kMaxRequestIdBytes bytes, each 0x20..0x7e.
bool is_printable_ascii_id(std::string_view id) {
  if (id.empty() || id.size() > kMaxRequestIdBytes) return false;
  for (char c : id)
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) return false;
  return true;
}

// Top-level fields the body may carry.
enum class Field { access_key, device_id, request_id, data, other };

WRITEAPI_INLINE Field classify(std::string_view name) {
  switch (name.size()) {
    case 9:
      if (std::memcmp(name.data(), "accessKey", 9) == 0) return Field::access_key;
      return std::memcmp(name.data(), "requestId", 9) == 0 ? Field::request_id : Field::other;
    case 8:
      return std::memcmp(name.data(), "deviceId", 8) == 0 ? Field::device_id : Field::other;
    case 4:
      return std::memcmp(name.data(), "data", 4) == 0 ? Field::data : Field::other;
    default:
      return Field::other;
  }
}

// Remembers top-level field names to find duplicates. Bodies normally carry
// two or three fields; a set takes over for hostile ones with thousands.
// Constructed only for bodies with fields other than the three known ones.
class FieldNames {
 public:
  // Returns false when `name` was seen before.
  bool insert(std::string_view name) {
    if (!set_) {
      for (std::size_t i = 0; i < small_count_; ++i)
        if (small_[i] == name) return false;
      if (small_count_ < kSmall) {
        small_[small_count_++] = name;
        return true;
      }
      set_ = std::make_unique<std::unordered_set<std::string_view>>(small_.begin(), small_.end());
    }
    return set_->insert(name).second;
  }
  // Storage for unescaped names, which string_views then point into.
  std::string_view keep(std::string name) {
    owned_.push_front(std::move(name));
    return owned_.front();
  }

 private:
  static constexpr std::size_t kSmall = 8;
  std::array<std::string_view, kSmall> small_;
  std::size_t small_count_ = 0;
  std::unique_ptr<std::unordered_set<std::string_view>> set_;
  // A forward_list never moves its elements and, unlike std::deque, costs
  // no allocation while empty (the usual case: no escaped field names).
  std::forward_list<std::string> owned_;
};

// A T constructed on first use. Unlike std::optional, which GCC zero-fills
// when it is declared, declaring one costs a single store.
template <class T>
class Lazy {
 public:
  Lazy() {}
  ~Lazy() {
    if (constructed_) value_.~T();
  }
  Lazy(const Lazy&) = delete;
  Lazy& operator=(const Lazy&) = delete;
  T& get() {
    if (!constructed_) {
      new (&value_) T();
      constructed_ = true;
    }
    return value_;
  }

 private:
  union {
    T value_;
  };
  bool constructed_ = false;
};

// The body's top-level object: the fields ingestion needs, each other field
// validated and skipped. The walk keeps its cursor on a token, whitespace
// skipped.
template <class Walk>
Status run_body(Walk& walk, ParsedRequest* request) {
  if (walk.at_end()) return Status(ErrorCode::invalid_json, "the request body is empty; send a JSON object");
  if (walk.peek() != '{') {
    // Syntax errors take precedence over the wrong shape.
    if (Scan s = walk.value(0); s != Scan::ok) return scan_error(s);
    if (!walk.at_end()) return scan_error(Scan::invalid_json);
    return Status(ErrorCode::not_an_object, "the request body must be a JSON object with accessKey and data");
  }
  if (walk.max_depth() < 1) return scan_error(Scan::too_deep);  // the object itself is depth 1
  walk.skip_byte();

  // Semantic problems are remembered, not returned, until the whole body
  // is known to be valid JSON.
  ErrorCode problem = ErrorCode::ok;
  const char* problem_message = nullptr;
  auto note = [&](ErrorCode code, const char* message) {
    if (problem == ErrorCode::ok) problem = code, problem_message = message;
  };
  // The three known fields can only repeat themselves: flags find those.
  // Other names go to a set, built only when a body has such a field.
  bool seen_access_key = false, seen_device_id = false, seen_request_id = false, seen_data = false;
  Lazy<FieldNames> names;
  std::string scratch;
  StringSpan span;

  if (!walk.at_end() && walk.peek() == '}') {
    walk.skip_byte();
  } else {
    for (;;) {
      if (walk.at_end() || walk.peek() != '"') return scan_error(Scan::invalid_json);
      if (Scan s = walk.key(&span); s != Scan::ok) return scan_error(s);
      std::string_view name(span.begin, span.end - span.begin);
      if (span.has_escapes) {
        unescape(span, &scratch);
        name = scratch;
      }
      if (walk.at_end() || walk.peek() != ':') return scan_error(Scan::invalid_json);
      walk.skip_byte();
      if (walk.at_end()) return scan_error(Scan::invalid_json);

      const Field field = classify(name);
      bool duplicate;
      switch (field) {
        case Field::access_key:
          duplicate = seen_access_key;
          break;
        case Field::device_id:
          duplicate = seen_device_id, seen_device_id = true;
          break;
        case Field::request_id:
          duplicate = seen_request_id, seen_request_id = true;
          break;
        case Field::data:
          duplicate = seen_data;
          break;
        default:
          if (span.has_escapes) name = names.get().keep(scratch);
          duplicate = !names.get().insert(name);
      }
      if (duplicate) note(ErrorCode::duplicate_field, "a top-level field appears twice; send each field once");
      switch (field) {
        case Field::access_key:
          seen_access_key = true;
          if (walk.peek() == '"') {
            if (Scan s = walk.string(&span); s != Scan::ok) return scan_error(s);
            unescape(span, &request->access_key);
          } else {
            if (Scan s = walk.value(1); s != Scan::ok) return scan_error(s);
            note(ErrorCode::invalid_field, "accessKey must be a string");
          }
          break;
        case Field::device_id:
          if (walk.peek() == '"') {
            if (Scan s = walk.string(&span); s != Scan::ok) return scan_error(s);
            request->has_device_id = true;
            unescape(span, &request->device_id);
            if (request->device_id.empty() || request->device_id.size() > kMaxDeviceIdBytes ||
                has_control_characters(request->device_id))
              note(ErrorCode::invalid_device_id,
                   "deviceId must be a non-empty string of at most 256 bytes without control characters");
          } else {
            if (Scan s = walk.value(1); s != Scan::ok) return scan_error(s);
            note(ErrorCode::invalid_field, "deviceId must be a string");
          }
          break;
        case Field::request_id:
          if (walk.peek() == '"') {
            if (Scan s = walk.string(&span); s != Scan::ok) return scan_error(s);
            request->has_request_id = true;
            unescape(span, &request->request_id);
            if (!is_printable_ascii_id(request->request_id))
              note(ErrorCode::invalid_request_id, "requestId must be a string of 1 to 128 printable ASCII bytes");
          } else {
            if (Scan s = walk.value(1); s != Scan::ok) return scan_error(s);
            note(ErrorCode::invalid_request_id, "requestId must be a string of 1 to 128 printable ASCII bytes");
          }
          break;
        case Field::data: {
          seen_data = true;
          bool null_item = false;
          std::size_t items = 0;
          if (Scan s = walk.data(&items, &null_item); s != Scan::ok) return scan_error(s);
          request->item_count += items;
          if (null_item) note(ErrorCode::null_data, "data must not be null, nor hold null items");
          break;
        }
        case Field::other:
          if (Scan s = walk.value(1); s != Scan::ok) return scan_error(s);
          break;
      }
      if (walk.at_end()) return scan_error(Scan::invalid_json);
      if (walk.peek() == '}') {
        walk.skip_byte();
        break;
      }
      if (walk.peek() != ',') return scan_error(Scan::invalid_json);
      walk.skip_byte();
    }
  }
  if (!walk.at_end()) return Status(ErrorCode::invalid_json, "unexpected content after the JSON object");

  if (problem != ErrorCode::ok) return Status(problem, problem_message);
  if (!seen_data) return Status(ErrorCode::missing_field, "the body has no data field; send \"data\": value");
  if (!seen_access_key || request->access_key.empty())
    return Status(ErrorCode::missing_access_key, "the body has no accessKey; send \"accessKey\": \"<your key>\"");
  return Status();
}

// simdjson chooses its kernel on first use and allocates as it does, inside
// noexcept functions (validate_utf8() among them), where a std::bad_alloc
// ends the process. That first use is made while the library loads, so
// that no request's body can be the one to meet a failing allocation there.
[[maybe_unused]] const bool kSimdjsonReady = simdjson::validate_utf8("", 0);

thread_local internal::ParseWalk t_walk = internal::ParseWalk::automatic;

// True when `kernel`, simdjson's active one, runs stage 1 64 bytes per step
// (its AVX-512 kernel): there the index walk is faster than the forward
// pass on pretty-printed bodies. With its 32-byte kernel (AVX2) the two are
// even on the largest and the forward pass is faster on the rest
// (docs/BENCHMARKS.md).
bool index_walk_pays(const simdjson::implementation* kernel) {
  return kernel != nullptr && kernel == kernels().icelake;
}

// Pretty-printed bodies of kMinIndexedBody bytes or more go to the index
// walk, where whitespace costs nothing; below that stage 1's fixed cost
// outweighs the whitespace it saves.
constexpr std::size_t kMinIndexedBody = 320;

// True when the body looks pretty-printed or spaced: a line break before
// its first quote (formatters break right after the opening brace), a
// space after the colon of one of its first fields (`": "`, as Python's
// json.dumps and many others separate: the index walk reads such a batch
// 1.3 times as fast as the forward pass, which tests each lone space), or
// a quarter of the 64 bytes at its middle whitespace (a compact envelope
// around pretty-printed data). Only a guess at which walk is faster: both
// give the same answer for every body.
bool looks_pretty(const Byte* json, std::size_t length) {
  for (std::size_t i = 0; i < length && i < 64 && json[i] != '"'; ++i)
    if (json[i] == '\n') return true;
  for (std::size_t i = 2; i < length && i < 64; ++i)
    if (json[i] == ' ' && json[i - 1] == ':' && json[i - 2] == '"') return true;
  if (length < 128) return false;
  const Byte* middle = json + length / 2 - 32;
  int spaces = 0;
  for (int i = 0; i < 64; ++i) spaces += is_ws(middle[i]);
  return spaces >= 16;
}

// Bodies with fewer bytes than this per token (of the structural index) have
// their items copied by compact_avx512(), the others in runs. Measured on
// an AVX-512 CPU (docs/BENCHMARKS.md): compression was the faster at 6.6
// (tab indentation), 8.3 and 8.6 bytes per token (batches of small objects,
// 4-space indentation), runs at 11 and more (deep 4-space indentation, long
// strings).
constexpr std::size_t kMaxCompressedBytesPerToken = 10;

IndexKernel index_kernel(std::size_t length, std::size_t tokens) {
  if (!kWideIndexWalk || t_walk == internal::ParseWalk::indexed_baseline) return IndexKernel::baseline;
  if (t_walk == internal::ParseWalk::indexed_compressed || length < kMaxCompressedBytesPerToken * tokens)
    return IndexKernel::wide_compressed;
  return IndexKernel::wide;
}

bool wants_index(const Byte* json, std::size_t length, const simdjson::implementation* kernel) {
  if (!stage1_reads_inside(kernel)) return false;
  switch (t_walk) {
    case internal::ParseWalk::forward:
      return false;
    case internal::ParseWalk::indexed:
    case internal::ParseWalk::indexed_baseline:
    case internal::ParseWalk::indexed_compressed:
      return true;
    case internal::ParseWalk::automatic:
      break;
  }
  return length >= kMinIndexedBody && index_walk_pays(kernel) && looks_pretty(json, length);
}

// Clears what parse() reports besides the lines.
void clear_fields(ParsedRequest* out) {
  out->access_key.clear();
  out->has_device_id = false;
  out->device_id.clear();
  out->has_request_id = false;
  out->request_id.clear();
  out->item_count = 0;
}

// parse() itself; it may throw (std::bad_alloc), leaving `out` half written.
Status parse_body(std::string_view body, ParsedRequest* out, const ParseOptions& options) {
  std::string& lines = out->lines;
  const Byte* json = reinterpret_cast<const Byte*>(body.data());
  std::size_t length = body.size();
  // Leading UTF-8 byte order mark: RFC 8259 lets parsers ignore it.
  if (length >= 3 && json[0] == 0xEF && json[1] == 0xBB && json[2] == 0xBF) json += 3, length -= 3;
  // UTF-8 is left for after the walk: only strings can hold bytes of 0x80
  // or more, and it notes whether one did. Most bodies are ASCII and need
  // no second pass.
  bool check_utf8 = false;
  // The container stack is reused per thread: no allocation per request
  // once it has grown. Nesting never exceeds the body's size.
  thread_local std::vector<uint8_t> stack;
  // Key guesses carry over from body to body on a thread (they are
  // lengths, checked before use): bodies of one shape keep them right.
  thread_local std::array<Byte, kKeyGuessSlots> key_guesses{};
  const std::size_t stack_size = std::min(options.max_depth, length) + 1;
  if (stack.size() < stack_size) stack.resize(stack_size);
  // The index is reused per thread too, within kIndexBudget for all.
  thread_local StructuralIndex index;
  const simdjson::implementation* const kernel = simdjson::get_active_implementation();
  const bool indexed = wants_index(json, length, kernel) && index.reserve(length, kernel) && index.build(json, length);
  auto run = [&](char* output, char** output_end) {
    auto walk_with = [&](auto& walk) {
      Status status = run_body(walk, out);
      *output_end = walk.output_end();
      // A failed walk may have stopped before a bad byte; invalid UTF-8
      // takes precedence over every other error.
      check_utf8 = !status.ok() || walk.saw_non_ascii();
      return status;
    };
    if (indexed) {
      IndexWalk walk(json, length, index.begin(), options.max_depth, output, stack.data(),
                     index_kernel(length, index.size()));
      return walk_with(walk);
    }
    ForwardWalk walk(json, length, options.max_depth, output, stack.data(), key_guesses.data());
    return walk_with(walk);
  };
  // Lines are never longer than the body plus one newline; the walk writes
  // them straight into `lines`.
  const std::size_t capacity = length + 1 + kOutputSlack;
  Status status;
  char* output_end = nullptr;
#if defined(__cpp_lib_string_resize_and_overwrite)
  lines.clear();  // nothing to keep: resize_and_overwrite would copy it
  // The operation must not throw (a precondition of resize_and_overwrite),
  // and the walk may: std::bad_alloc from a field name's set or a field's
  // copy. It is caught inside and rethrown once `lines` is whole.
  std::exception_ptr failure;
  lines.resize_and_overwrite(capacity, [&](char* buffer, std::size_t) noexcept -> std::size_t {
    try {
      status = run(buffer, &output_end);
    } catch (...) {
      failure = std::current_exception();
      return 0;
    }
    return status.ok() ? static_cast<std::size_t>(output_end - buffer) : 0;
  });
  if (failure) std::rethrow_exception(failure);
#else
  // Before C++23, growing a string writes zeros over everything past its
  // old size. A reused ParsedRequest keeps the last lines' size, so only
  // what they did not cover (the last body's whitespace) is zeroed.
  if (lines.size() < capacity) lines.resize(capacity);
  status = run(lines.data(), &output_end);
  lines.resize(status.ok() ? static_cast<std::size_t>(output_end - lines.data()) : 0);
#endif
  if (check_utf8 && !simdjson::validate_utf8(body.data(), body.size())) {
    // As if UTF-8 had been checked first: none of the body's fields are
    // kept (a deviceId that is not UTF-8 must reach no log).
    lines.clear();
    out->has_device_id = false;
    out->device_id.clear();
    out->has_request_id = false;
    out->request_id.clear();
    status = Status(ErrorCode::invalid_utf8, "the request body is not valid UTF-8");
  }
  if (!status.ok()) {
    out->item_count = 0;
    out->access_key.clear();
  }
  return status;
}

}  // namespace

void internal::set_parse_walk(ParseWalk walk) { t_walk = walk; }
std::size_t internal::parse_index_bytes() { return g_index_bytes.load(std::memory_order_relaxed); }

Status parse(std::string_view body, ParsedRequest* out, const ParseOptions& options) {
  clear_fields(out);
  try {
    return parse_body(body, out, options);
  } catch (...) {
    // An allocation failed (the container stack, the lines, a field, an
    // error message): nothing of this body or the last one is kept.
    out->lines.clear();
    clear_fields(out);
    throw;
  }
}

}  // namespace writeapi
