// Compression for the tests' request bodies (zlib).
//
// Thread-safety: the functions may be called from any thread; they throw
// std::runtime_error when zlib cannot start.
#ifndef WRITEAPI_TESTS_SUPPORT_GZIP_H_
#define WRITEAPI_TESTS_SUPPORT_GZIP_H_

#include <cstddef>
#include <string>
#include <string_view>

namespace writeapi::testing {

// gzip (window_bits 16 + 15) or zlib (15) compression of `data` at zlib
// level `level` (1 fastest to 9 smallest).
std::string gzip_compress(std::string_view data, int window_bits = 16 + 15, int level = 9);
// gzip of `zeros` bytes of zeros, compressed in pieces (no huge buffer).
std::string gzip_of_zeros(std::size_t zeros);

}  // namespace writeapi::testing

#endif  // WRITEAPI_TESTS_SUPPORT_GZIP_H_
