// MemoryFileIo: an in-memory file system behind the store's FileIo seam
// (lib/src/file_io.h), for tests that must see what a power failure would
// leave. Each file has its current bytes and its durable bytes (copied by
// fdatasync/fsync); each directory has its current entries and its durable
// entries (copied by fsync of the directory). power_failure() throws away
// everything not durable and closes every descriptor, as a machine that
// lost power and rebooted would find the disk.
//
// Paths are absolute ("/data/b/o.jsonl"); "/" always exists. Only the
// calls and flags the store uses are modelled: O_CREAT, O_TRUNC, O_EXCL,
// O_DIRECTORY; read position for read(); fallocate extends with zeros.
//
// Thread-safety: every call takes one mutex.
#ifndef WRITEAPI_TESTS_SUPPORT_MEMORY_FILE_IO_H_
#define WRITEAPI_TESTS_SUPPORT_MEMORY_FILE_IO_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "file_io.h"

namespace writeapi::testing {

class MemoryFileIo : public FileIo {
 public:
  int open(const std::string& path, int flags, mode_t mode) override;
  int close(int fd) override;
  ssize_t read(int fd, void* data, std::size_t length) override;
  ssize_t pread(int fd, void* data, std::size_t length, off_t offset) override;
  ssize_t pwrite(int fd, const void* data, std::size_t length, off_t offset) override;
  int fdatasync(int fd) override;
  int fsync(int fd) override;
  int ftruncate(int fd, off_t length) override;
  int fallocate(int fd, off_t offset, off_t length) override;
  int fstat(int fd, struct stat* st) override;
  int mkdir(const std::string& path, mode_t mode) override;
  int unlink(const std::string& path) override;
  int rename(const std::string& from, const std::string& to) override;
  int lock(int fd) override;
  int list_directory(const std::string& path, std::vector<std::string>* names) override;

  // A deep copy of the files (current and durable state), without open
  // descriptors: the same disk, for another run.
  std::shared_ptr<MemoryFileIo> clone();

  // Drops every byte and directory entry that was not made durable, and
  // every open descriptor (and lock).
  void power_failure();

  // Test access, outside the seam: the current contents of a file
  // (empty if missing), whether it exists, and writing one directly
  // (durable at once, as if it had been there before the test).
  std::string contents(const std::string& path);
  bool exists(const std::string& path);
  void put(const std::string& path, const std::string& contents);
  // Entries of a directory whose names end with `suffix`, sorted.
  std::vector<std::string> list(const std::string& dir, const std::string& suffix = "");
  std::size_t open_descriptors();

 private:
  struct Node {
    bool directory = false;
    std::string data;
    std::string durable;
    bool locked = false;
  };
  struct Descriptor {
    std::shared_ptr<Node> node;
    std::string path;
    off_t position = 0;
    bool locks = false;
  };

  static std::string parent_of(const std::string& path);
  Descriptor* find(int fd);
  void sync_entries(const std::string& dir);

  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Node>> names_;    // current namespace
  std::map<std::string, std::shared_ptr<Node>> durable_;  // survives power_failure
  std::map<int, Descriptor> descriptors_;
  int next_fd_ = 100;
};

}  // namespace writeapi::testing

#endif  // WRITEAPI_TESTS_SUPPORT_MEMORY_FILE_IO_H_
