// Temporary directories and whole-file helpers shared by every test suite
// (tests/support, linked through writeapi_test_support).
//
// Thread-safety: TempDir is not shared between threads; the free functions
// may be called from any thread.
#ifndef WRITEAPI_TESTS_SUPPORT_TEMP_DIR_H_
#define WRITEAPI_TESTS_SUPPORT_TEMP_DIR_H_

#include <string>
#include <string_view>

namespace writeapi::testing {

// A fresh directory, removed with everything in it on destruction (even
// when a test took permissions away from its subdirectories). It is made
// under `preferred_base` when that is a writable directory, else under
// $TMPDIR or /tmp. Throws std::runtime_error when mkdtemp fails.
class TempDir {
 public:
  explicit TempDir(const char* preferred_base = nullptr);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::string read_file(const std::string& path);  // "" when missing
// Replaces the file's contents, making its missing parent directories;
// throws std::runtime_error on failure.
void write_file(const std::string& path, std::string_view contents);
bool file_exists(const std::string& path);

}  // namespace writeapi::testing

#endif  // WRITEAPI_TESTS_SUPPORT_TEMP_DIR_H_
