// Helpers shared by the backends' ranged reads (Storage::read_range): the
// byte-offset cursor of the file and memory stores, and the cut of a buffer
// into whole lines within a range's limits.
#ifndef WRITEAPI_SRC_RANGE_READ_H_
#define WRITEAPI_SRC_RANGE_READ_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "writeapi/storage.h"

namespace writeapi {
namespace range_read {

// Parses a position cursor: empty is 0, otherwise 1 to 20 decimal digits
// without a leading zero (so each position has one spelling). Returns false
// for anything else or a value over UINT64_MAX.
bool parse_position(std::string_view cursor, std::uint64_t* position);

std::string format_position(std::uint64_t position);

// Of `available` (bytes of whole lines starting at a line boundary), the
// length of the prefix a range takes: at most max_lines lines, and stopping
// at the first line end at or past max_bytes (always at least one line).
// Only bytes up to the last '\n' count. Sets *lines to the lines taken.
std::size_t take_lines(std::string_view available, std::size_t max_lines, std::size_t max_bytes, std::size_t* lines);

// The generic read_range over a whole object's contents (memory store and
// the default implementation): cursor is a byte offset at a line boundary.
Status slice(std::string_view contents, std::string_view cursor, std::size_t max_lines, std::size_t max_bytes,
             ReadChunk* chunk);

// The offset in `contents` (an object's bytes; only whole lines count)
// where its last `lines` lines start: 0 when it has fewer.
std::size_t tail_offset(std::string_view contents, std::size_t lines);

}  // namespace range_read
}  // namespace writeapi

#endif  // WRITEAPI_SRC_RANGE_READ_H_
