// The few file system calls FileStorage makes on object files, behind an
// interface so tests can inject failures (short writes, ENOSPC, EIO, a
// failed fdatasync) around the real calls, in the spirit of LevelDB's
// fault-injection Env. Private to libwriteapi and its tests.
#ifndef WRITEAPI_SRC_FILE_IO_H_
#define WRITEAPI_SRC_FILE_IO_H_

#include <sys/types.h>
#include <unistd.h>

#include <memory>

#include "writeapi/storage.h"

namespace writeapi {

// Each call behaves like the POSIX call of the same name: -1 and errno on
// failure.
class FileIo {
 public:
  virtual ~FileIo() = default;
  virtual ssize_t pwrite(int fd, const void* data, std::size_t length, off_t offset) {
    return ::pwrite(fd, data, length, offset);
  }
  virtual int fdatasync(int fd) { return ::fdatasync(fd); }
  virtual int ftruncate(int fd, off_t length) { return ::ftruncate(fd, length); }
};

// make_file_storage with the given FileIo (the default is the real calls).
std::unique_ptr<Storage> make_file_storage_with_io(const FileStorageOptions& options,
                                                   std::shared_ptr<FileIo> io, Status* status);

}  // namespace writeapi

#endif  // WRITEAPI_SRC_FILE_IO_H_
