#include "range_read.h"

#include <algorithm>

namespace writeapi {
namespace range_read {

bool parse_position(std::string_view cursor, std::uint64_t* position) {
  *position = 0;
  if (cursor.empty()) return true;
  if (cursor.size() > 20 || (cursor.size() > 1 && cursor[0] == '0')) return false;
  std::uint64_t value = 0;
  for (char c : cursor) {
    if (c < '0' || c > '9') return false;
    const std::uint64_t digit = static_cast<std::uint64_t>(c - '0');
    if (value > (UINT64_MAX - digit) / 10) return false;
    value = value * 10 + digit;
  }
  *position = value;
  return true;
}

std::string format_position(std::uint64_t position) { return std::to_string(position); }

std::size_t take_lines(std::string_view available, std::size_t max_lines, std::size_t max_bytes, std::size_t* lines) {
  *lines = 0;
  std::size_t taken = 0;
  while (*lines < max_lines && taken < available.size()) {
    std::size_t nl = available.find('\n', taken);
    if (nl == std::string_view::npos) break;  // a partial line is never taken
    taken = nl + 1;
    ++*lines;
    if (taken >= max_bytes) break;
  }
  return taken;
}

Status slice(std::string_view contents, std::string_view cursor, std::size_t max_lines, std::size_t max_bytes,
             ReadChunk* chunk) {
  std::uint64_t offset = 0;
  if (!parse_position(cursor, &offset))
    return Status(ErrorCode::invalid_cursor, "the cursor is not one this object returned");
  // Only whole lines belong to the object.
  std::size_t end = contents.rfind('\n');
  end = end == std::string_view::npos ? 0 : end + 1;
  if (offset > end || (offset > 0 && contents[static_cast<std::size_t>(offset) - 1] != '\n'))
    return Status(ErrorCode::invalid_cursor, "the cursor is not one this object returned");
  std::string_view rest = contents.substr(static_cast<std::size_t>(offset), end - static_cast<std::size_t>(offset));
  std::size_t taken = take_lines(rest, max_lines, max_bytes, &chunk->line_count);
  chunk->lines.assign(rest.data(), taken);
  chunk->next_cursor = format_position(offset + taken);
  return Status();
}

std::size_t tail_offset(std::string_view contents, std::size_t lines) {
  std::size_t end = contents.rfind('\n');
  if (end == std::string_view::npos) return 0;
  // `end` is the last line's '\n'; the line starts after the one before.
  for (std::size_t seen = 0; seen < lines; ++seen) {
    if (end == 0) return 0;
    std::size_t before = contents.rfind('\n', end - 1);
    if (before == std::string_view::npos) return 0;
    end = before;
  }
  return end + 1;
}

}  // namespace range_read

Status Storage::read_range(std::string_view bucket, std::string_view key, std::string_view cursor,
                           std::size_t max_lines, std::size_t max_bytes, ReadChunk* chunk) {
  *chunk = ReadChunk();
  std::vector<std::string> keys;
  if (Status s = list_keys(bucket, &keys); !s.ok()) return s;
  chunk->exists = std::binary_search(keys.begin(), keys.end(), std::string(key));
  std::string contents;
  if (Status s = read_object(bucket, key, &contents); !s.ok()) return s;
  return range_read::slice(contents, cursor, max_lines, max_bytes, chunk);
}

Status Storage::tail_cursor(std::string_view bucket, std::string_view key, std::size_t lines, std::string* cursor,
                            bool* exists) {
  std::vector<std::string> keys;
  if (Status s = list_keys(bucket, &keys); !s.ok()) return s;
  *exists = std::binary_search(keys.begin(), keys.end(), std::string(key));
  std::string contents;
  if (Status s = read_object(bucket, key, &contents); !s.ok()) return s;
  *cursor = range_read::format_position(range_read::tail_offset(contents, lines));
  return Status();
}

Status Storage::list_objects(std::string_view bucket, std::vector<ObjectInfo>* objects) {
  objects->clear();
  std::vector<std::string> keys;
  if (Status s = list_keys(bucket, &keys); !s.ok()) return s;
  for (std::string& key : keys) {
    std::string contents;
    if (Status s = read_object(bucket, key, &contents); !s.ok()) return s;
    ObjectInfo info;
    info.key = std::move(key);
    info.bytes = contents.size();
    objects->push_back(std::move(info));
  }
  return Status();
}

}  // namespace writeapi
