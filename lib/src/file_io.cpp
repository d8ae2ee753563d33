#include "file_io.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <string_view>

namespace writeapi {

int FileIo::open(const std::string& path, int flags, mode_t mode) { return ::open(path.c_str(), flags, mode); }
int FileIo::close(int fd) { return ::close(fd); }
ssize_t FileIo::read(int fd, void* data, std::size_t length) { return ::read(fd, data, length); }
ssize_t FileIo::pread(int fd, void* data, std::size_t length, off_t offset) {
  return ::pread(fd, data, length, offset);
}
ssize_t FileIo::pwrite(int fd, const void* data, std::size_t length, off_t offset) {
  return ::pwrite(fd, data, length, offset);
}
int FileIo::fdatasync(int fd) { return ::fdatasync(fd); }
int FileIo::fsync(int fd) { return ::fsync(fd); }
int FileIo::ftruncate(int fd, off_t length) { return ::ftruncate(fd, length); }
int FileIo::fallocate(int fd, off_t offset, off_t length) {
  int rc = ::posix_fallocate(fd, offset, length);
  if (rc == 0) return 0;
  errno = rc;
  return -1;
}
int FileIo::fstat(int fd, struct stat* st) { return ::fstat(fd, st); }
int FileIo::mkdir(const std::string& path, mode_t mode) { return ::mkdir(path.c_str(), mode); }
int FileIo::unlink(const std::string& path) { return ::unlink(path.c_str()); }
int FileIo::rename(const std::string& from, const std::string& to) { return ::rename(from.c_str(), to.c_str()); }
int FileIo::lock(int fd) { return ::flock(fd, LOCK_EX | LOCK_NB); }

int FileIo::list_directory(const std::string& path, std::vector<std::string>* names) {
  names->clear();
  DIR* d = ::opendir(path.c_str());
  if (!d) return -1;
  errno = 0;
  while (dirent* entry = ::readdir(d)) {
    std::string_view name(entry->d_name);
    if (name != "." && name != "..") names->emplace_back(name);
  }
  int err = errno;
  ::closedir(d);
  if (err != 0) {
    errno = err;
    return -1;
  }
  return 0;
}

int FileIo::sync_directory(const std::string& path) {
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
  if (fd < 0) return -1;
  int rc = fsync(fd);
  int err = errno;
  close(fd);
  errno = err;
  return rc == 0 ? 0 : -1;
}

int FileIo::pwrite_all(int fd, const char* data, std::size_t length, off_t offset) {
  std::size_t done = 0;
  while (done < length) {
    ssize_t n = pwrite(fd, data + done, length - done, offset + static_cast<off_t>(done));
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) errno = EIO;
    return -1;
  }
  return 0;
}

int FileIo::read_file(const std::string& path, std::string* contents) {
  contents->clear();
  int fd = open(path, O_RDONLY | O_CLOEXEC, 0);
  if (fd < 0) return -1;
  char buffer[1 << 16];
  for (;;) {
    ssize_t n = read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      close(fd);
      errno = err;
      return -1;
    }
    if (n == 0) break;
    contents->append(buffer, static_cast<std::size_t>(n));
  }
  close(fd);
  return 0;
}

Status storage_status(int err) {
  if (err == ENOSPC || err == EDQUOT)
    return Status(ErrorCode::insufficient_storage, "the server is out of storage space; retry later")
        .with_retry_after(60);
  return Status(ErrorCode::storage_error, "the server could not store the data; retry later").with_retry_after(1);
}

std::shared_ptr<FileIo> default_file_io() {
  static const std::shared_ptr<FileIo> io = std::make_shared<FileIo>();
  return io;
}

}  // namespace writeapi
