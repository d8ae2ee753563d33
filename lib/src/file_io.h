// FileIo: every file system call the file store and its write-ahead log
// make, behind one interface, so tests can fail any of them (a short write,
// ENOSPC, EIO, a failed fdatasync or directory sync, a failed truncation or
// unlink) or run the store over an in-memory file system that can simulate
// a power failure. In the spirit of LevelDB's Env and EnvWrapper. Private
// to libwriteapi and its tests (tests/support holds the fakes).
//
// Convention: each call behaves like the POSIX call it is named after and
// returns -1 with errno set on failure (fallocate too, unlike
// posix_fallocate). The default implementation makes the real calls.
//
// Thread-safety: an implementation must allow concurrent calls.
#ifndef WRITEAPI_SRC_FILE_IO_H_
#define WRITEAPI_SRC_FILE_IO_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "writeapi/storage.h"

namespace writeapi {

class FileIo {
 public:
  virtual ~FileIo() = default;

  virtual int open(const std::string& path, int flags, mode_t mode);  // a descriptor
  virtual int close(int fd);
  virtual ssize_t read(int fd, void* data, std::size_t length);
  virtual ssize_t pread(int fd, void* data, std::size_t length, off_t offset);
  virtual ssize_t pwrite(int fd, const void* data, std::size_t length, off_t offset);
  virtual int fdatasync(int fd);
  virtual int fsync(int fd);
  virtual int ftruncate(int fd, off_t length);
  // Reserves [offset, offset + length); EOPNOTSUPP where the file system
  // cannot.
  virtual int fallocate(int fd, off_t offset, off_t length);
  virtual int fstat(int fd, struct stat* st);
  virtual int mkdir(const std::string& path, mode_t mode);
  virtual int unlink(const std::string& path);
  virtual int rename(const std::string& from, const std::string& to);
  // flock(LOCK_EX | LOCK_NB): EWOULDBLOCK when another process holds it.
  virtual int lock(int fd);
  // The entries of a directory (opendir, readdir, closedir), without "."
  // and "..", in no particular order.
  virtual int list_directory(const std::string& path, std::vector<std::string>* names);

  // Makes a directory's entries durable: open, fsync, close through the
  // calls above, so each step can be failed. Returns 0, or -1 and errno.
  int sync_directory(const std::string& path);
  // Writes all of `data` at `offset`, retrying short writes and EINTR.
  // Returns 0, or -1 and errno (EIO when a write made no progress).
  int pwrite_all(int fd, const char* data, std::size_t length, off_t offset);
  // Reads the whole file into *contents. Returns 0, or -1 and errno
  // (ENOENT when it does not exist).
  int read_file(const std::string& path, std::string* contents);
};

// The Status a failed call's errno maps to: insufficient_storage for
// ENOSPC and EDQUOT (Retry-After 60), storage_error otherwise (Retry-After 1).
Status storage_status(int err);

// The real calls, shared by every store that is not given another FileIo.
std::shared_ptr<FileIo> default_file_io();

// make_file_storage with the given FileIo.
std::unique_ptr<Storage> make_file_storage_with_io(const FileStorageOptions& options, std::shared_ptr<FileIo> io,
                                                   Status* status);

}  // namespace writeapi

#endif  // WRITEAPI_SRC_FILE_IO_H_
