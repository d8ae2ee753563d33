// FaultInjectingIo: a FileIo (lib/src/file_io.h) that passes every call to
// another FileIo (the real calls or a MemoryFileIo) unless a rule says the
// call fails, in the spirit of LevelDB's fault-injection Env.
//
//   io->fail(Call::fdatasync, EIO);                       // every fdatasync
//   io->fail({Call::pwrite, ENOSPC, ".jsonl", 0, 1});     // the next object write
//   io->short_writes(5, ENOSPC);                          // 5 bytes, then ENOSPC
//   io->crash_after(12);                                  // the process dies
//
// Calls on a descriptor match a rule's path through the path it was opened
// with, so "fail the fsync of the log directory" is one rule. After
// crash_after(n) the first n calls pass and every later call fails with EIO
// and does nothing: the process died there, and nothing it would have done
// next reaches the disk. Every call is recorded in trace() as "call path".
//
// Thread-safety: all methods may be called concurrently.
#ifndef WRITEAPI_TESTS_SUPPORT_FAULT_INJECTING_IO_H_
#define WRITEAPI_TESTS_SUPPORT_FAULT_INJECTING_IO_H_

#include <cerrno>
#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "file_io.h"

namespace writeapi::testing {

enum class Call {
  open,
  close,
  read,
  pread,
  pwrite,
  fdatasync,
  fsync,
  ftruncate,
  fallocate,
  fstat,
  mkdir,
  unlink,
  rename,
  lock,
  list_directory,
};

const char* call_name(Call call);

struct FaultRule {
  FaultRule(Call call, int error = EIO, std::string path_contains = "", int skip = 0, int times = -1,
            bool perform = false)
      : call(call), error(error), path_contains(std::move(path_contains)), skip(skip), times(times), perform(perform) {}
  Call call;
  int error = EIO;
  std::string path_contains;  // empty: any path
  int skip = 0;               // matching calls that pass before the rule fires
  int times = -1;             // how often it fires (-1: until cleared)
  bool perform = false;       // make the real call, then report the error
};

class FaultInjectingIo : public FileIo {
 public:
  explicit FaultInjectingIo(std::shared_ptr<FileIo> target = default_file_io()) : target_(std::move(target)) {}

  void fail(Call call, int error) { fail(FaultRule{call, error}); }
  void fail(FaultRule rule);
  // pwrites (to paths containing `path_contains`) write `bytes` more bytes
  // in all (short writes), then fail with `error` until heal().
  void short_writes(std::size_t bytes, int error, std::string path_contains = "");
  // Removes every rule and short-write budget (not a crash).
  void heal();
  // The first `calls` calls from now pass; every later call fails with EIO.
  void crash_after(std::size_t calls);
  bool crashed();
  std::size_t calls();  // calls made so far (crashed ones too)
  std::vector<std::string> trace();

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

 private:
  enum class Verdict { pass, fail, perform_then_fail };
  // Decides the fate of one call; sets *error for failures.
  Verdict decide(Call call, const std::string& path, int* error);
  std::string path_of(int fd);

  std::shared_ptr<FileIo> target_;
  std::mutex mu_;
  std::vector<FaultRule> rules_;
  std::map<int, std::string> paths_;
  bool budget_active_ = false;
  std::size_t budget_ = 0;
  int budget_error_ = 0;
  std::string budget_path_;
  std::size_t calls_ = 0;
  std::size_t crash_at_ = static_cast<std::size_t>(-1);
  std::vector<std::string> trace_;
};

}  // namespace writeapi::testing

#endif  // WRITEAPI_TESTS_SUPPORT_FAULT_INJECTING_IO_H_
