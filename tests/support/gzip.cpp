#include "gzip.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace writeapi::testing {

namespace {

// Streams `total` bytes produced by `next` (which fills up to n bytes and
// returns how many) through deflate.
template <typename Next>
std::string deflate_stream(std::size_t total, int window_bits, int level, Next next) {
  z_stream stream{};
  if (deflateInit2(&stream, level, Z_DEFLATED, window_bits, 9, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("deflateInit2 failed");
  std::string out;
  std::vector<char> in(1 << 20);
  std::vector<char> chunk(1 << 16);
  std::size_t fed = 0;
  int flush = Z_NO_FLUSH;
  do {
    std::size_t n = std::min(in.size(), total - fed);
    next(in.data(), fed, n);
    fed += n;
    flush = fed == total ? Z_FINISH : Z_NO_FLUSH;
    stream.next_in = reinterpret_cast<Bytef*>(in.data());
    stream.avail_in = static_cast<uInt>(n);
    do {
      stream.next_out = reinterpret_cast<Bytef*>(chunk.data());
      stream.avail_out = static_cast<uInt>(chunk.size());
      deflate(&stream, flush);
      out.append(chunk.data(), chunk.size() - stream.avail_out);
    } while (stream.avail_out == 0);
  } while (flush != Z_FINISH);
  deflateEnd(&stream);
  return out;
}

}  // namespace

std::string gzip_compress(std::string_view data, int window_bits, int level) {
  return deflate_stream(data.size(), window_bits, level, [&](char* dst, std::size_t offset, std::size_t n) {
    std::memcpy(dst, data.data() + offset, n);
  });
}

std::string gzip_of_zeros(std::size_t zeros) {
  return deflate_stream(zeros, 16 + 15, 9, [](char* dst, std::size_t, std::size_t n) { std::memset(dst, 0, n); });
}

}  // namespace writeapi::testing
