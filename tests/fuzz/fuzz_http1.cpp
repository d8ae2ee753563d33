// fuzz_http1: the server's strict HTTP/1.1 framing (server/http1.h), the
// request head and the chunked body decoder.
//
// Input: the first byte picks split points (for incremental arrival); the
// rest is the bytes a client sends.
//
// The oracle:
//   - parse_head over the input fed in pieces gives the same outcome (and
//     head length) as over the whole input: how bytes arrive never changes
//     what a request means.
//   - A complete head holds only what the grammar allows: the method and
//     every field name are tokens, no value holds CR, LF or another
//     control character but HTAB, values have no surrounding whitespace,
//     the target has no space or control, the version is 1.0 or 1.1, and
//     chunked framing never comes with a Content-Length. Rebuilt from its
//     parts, the head parses to the same parts (nothing ambiguous).
//   - The chunked decoder, whole or byte by byte, gives the same status,
//     body and consumed length; a decoded body re-encoded as one chunk
//     decodes to itself; the body never exceeds the cap.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "oracle.h"
#include "writeapi/http1.h"

#define EXPECT(condition, detail) WRITEAPI_FUZZ_EXPECT("fuzz_http1", condition, detail)

namespace {

using namespace writeapi::http1;
using writeapi::fuzz::escaped;

constexpr std::size_t kMaxHead = 4096;

bool has_control(std::string_view s) {
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t') || c == 0x7f) return true;
  }
  return false;
}

bool all_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!is_token_char(static_cast<unsigned char>(c))) return false;
  return true;
}

std::string rebuild(const RequestHead& head) {
  std::string out = std::string(head.method) + " " + std::string(head.target) + " HTTP/1." +
                    std::to_string(head.minor_version) + "\r\n";
  for (const Field& f : head.fields) out += std::string(f.name) + ": " + std::string(f.value) + "\r\n";
  return out + "\r\n";
}

void check_head(std::string_view input, std::size_t step) {
  RequestHead whole;
  std::size_t scan = 0;
  HeadResult r = parse_head(input, kMaxHead, &whole, &scan);

  RequestHead pieces;
  std::size_t scan2 = 0;
  HeadResult r2;
  for (std::size_t n = std::min(step, input.size());; n = std::min(n + step, input.size())) {
    r2 = parse_head(input.substr(0, n), kMaxHead, &pieces, &scan2);
    if (r2.status != HeadStatus::incomplete || n == input.size()) break;
  }
  EXPECT(r.status == r2.status, "whole " + std::to_string(static_cast<int>(r.status)) + " pieces " +
                                    std::to_string(static_cast<int>(r2.status)) + " input " + escaped(input));
  if (r.status != HeadStatus::complete) return;
  EXPECT(r.head_bytes == r2.head_bytes, escaped(input));
  EXPECT(r.head_bytes <= input.size() && r.head_bytes <= kMaxHead, escaped(input));
  EXPECT(all_token(whole.method), escaped(whole.method));
  EXPECT(!whole.target.empty() && (whole.target[0] == '/' || whole.target == "*"), escaped(whole.target));
  for (char c : whole.target) EXPECT(static_cast<unsigned char>(c) > 0x20 && c != 0x7f, escaped(whole.target));
  EXPECT(whole.minor_version == 0 || whole.minor_version == 1, escaped(input));
  for (const Field& f : whole.fields) {
    EXPECT(all_token(f.name), escaped(f.name));
    EXPECT(!has_control(f.value), escaped(f.value));
    EXPECT(f.value.empty() ||
               (f.value.front() != ' ' && f.value.front() != '\t' && f.value.back() != ' ' && f.value.back() != '\t'),
           escaped(f.value));
  }
  if (whole.framing == BodyFraming::chunked) {
    EXPECT(whole.count("Content-Length") == 0, escaped(input));
    EXPECT(whole.count("Transfer-Encoding") == 1, escaped(input));
  }
  if (whole.minor_version == 1) EXPECT(whole.count("Host") == 1, escaped(input));

  std::string again = rebuild(whole);
  RequestHead reparsed;
  std::size_t scan3 = 0;
  HeadResult r3 = parse_head(again, kMaxHead * 2, &reparsed, &scan3);
  EXPECT(r3.status == HeadStatus::complete, escaped(again));
  EXPECT(reparsed.method == whole.method && reparsed.target == whole.target &&
             reparsed.fields.size() == whole.fields.size() && reparsed.framing == whole.framing &&
             reparsed.content_length == whole.content_length && reparsed.keep_alive == whole.keep_alive &&
             reparsed.expect_continue == whole.expect_continue,
         escaped(again));
  for (std::size_t i = 0; i < whole.fields.size(); ++i)
    EXPECT(reparsed.fields[i].name == whole.fields[i].name && reparsed.fields[i].value == whole.fields[i].value,
           escaped(again));
}

void check_chunked(std::string_view input) {
  constexpr std::uint64_t kCap = 2048;
  ChunkedDecoder whole(kCap);
  std::string body;
  std::size_t consumed = 0;
  auto status = whole.feed(input, &body, &consumed);
  EXPECT(body.size() <= kCap, std::to_string(body.size()));
  EXPECT(consumed <= input.size(), escaped(input));
  if (status == ChunkedDecoder::Status::more) EXPECT(consumed == input.size(), escaped(input));

  ChunkedDecoder bytewise(kCap);
  std::string body2;
  std::size_t consumed2 = 0;
  auto status2 = ChunkedDecoder::Status::more;
  for (std::size_t i = 0; i < input.size() && status2 == ChunkedDecoder::Status::more; ++i) {
    std::size_t used = 0;
    status2 = bytewise.feed(input.substr(i, 1), &body2, &used);
    consumed2 += used;
  }
  EXPECT(status == status2, escaped(input));
  if (status == ChunkedDecoder::Status::done) {
    EXPECT(body == body2 && consumed == consumed2, escaped(input));
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", body.size());
    std::string encoded = body.empty() ? "0\r\n\r\n" : std::string(size) + body + "\r\n0\r\n\r\n";
    ChunkedDecoder again(kCap);
    std::string body3;
    std::size_t consumed3 = 0;
    EXPECT(again.feed(encoded, &body3, &consumed3) == ChunkedDecoder::Status::done && body3 == body &&
               consumed3 == encoded.size(),
           escaped(encoded));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size == 0 || size > 16384) return 0;
  std::size_t step = 1 + data[0] % 16;
  std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  check_head(input, step);
  // The same bytes as a chunked body, and what follows a parsed head.
  check_chunked(input);
  RequestHead head;
  std::size_t scan = 0;
  HeadResult r = parse_head(input, kMaxHead, &head, &scan);
  if (r.status == HeadStatus::complete) check_chunked(input.substr(r.head_bytes));
  return 0;
}
