#include "fault_injecting_io.h"

#include <algorithm>
#include <cerrno>

namespace writeapi::testing {

const char* call_name(Call call) {
  switch (call) {
    case Call::open:
      return "open";
    case Call::close:
      return "close";
    case Call::read:
      return "read";
    case Call::pread:
      return "pread";
    case Call::pwrite:
      return "pwrite";
    case Call::fdatasync:
      return "fdatasync";
    case Call::fsync:
      return "fsync";
    case Call::ftruncate:
      return "ftruncate";
    case Call::fallocate:
      return "fallocate";
    case Call::fstat:
      return "fstat";
    case Call::mkdir:
      return "mkdir";
    case Call::unlink:
      return "unlink";
    case Call::rename:
      return "rename";
    case Call::lock:
      return "lock";
    case Call::list_directory:
      return "list_directory";
  }
  return "?";
}

void FaultInjectingIo::fail(FaultRule rule) {
  std::lock_guard<std::mutex> lock(mu_);
  rules_.push_back(std::move(rule));
}

void FaultInjectingIo::short_writes(std::size_t bytes, int error, std::string path_contains) {
  std::lock_guard<std::mutex> lock(mu_);
  budget_active_ = true;
  budget_path_ = std::move(path_contains);
  budget_ = bytes;
  budget_error_ = error;
}

void FaultInjectingIo::heal() {
  std::lock_guard<std::mutex> lock(mu_);
  rules_.clear();
  budget_active_ = false;
}

void FaultInjectingIo::crash_after(std::size_t calls) {
  std::lock_guard<std::mutex> lock(mu_);
  crash_at_ = calls_ + calls;
}

bool FaultInjectingIo::crashed() {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_ > crash_at_;
}

std::size_t FaultInjectingIo::calls() {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_;
}

std::vector<std::string> FaultInjectingIo::trace() {
  std::lock_guard<std::mutex> lock(mu_);
  return trace_;
}

std::string FaultInjectingIo::path_of(int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = paths_.find(fd);
  return it == paths_.end() ? std::string() : it->second;
}

FaultInjectingIo::Verdict FaultInjectingIo::decide(Call call, const std::string& path, int* error) {
  std::lock_guard<std::mutex> lock(mu_);
  ++calls_;
  trace_.push_back(std::string(call_name(call)) + " " + path);
  if (calls_ > crash_at_) {
    *error = EIO;
    return Verdict::fail;
  }
  for (auto it = rules_.begin(); it != rules_.end(); ++it) {
    FaultRule& rule = *it;
    if (rule.call != call) continue;
    if (!rule.path_contains.empty() && path.find(rule.path_contains) == std::string::npos) continue;
    if (rule.skip > 0) {
      --rule.skip;
      continue;
    }
    *error = rule.error;
    bool perform = rule.perform;
    if (rule.times > 0 && --rule.times == 0) rules_.erase(it);
    return perform ? Verdict::perform_then_fail : Verdict::fail;
  }
  return Verdict::pass;
}

// Runs `real` unless the verdict says otherwise; failures return -1 with errno.
#define WRITEAPI_FAULT_CALL(call, path, real) \
  do {                                        \
    int error = 0;                            \
    switch (decide(call, path, &error)) {     \
      case Verdict::pass:                     \
        return real;                          \
      case Verdict::perform_then_fail:        \
        (void)real;                           \
        [[fallthrough]];                      \
      case Verdict::fail:                     \
        errno = error;                        \
        return -1;                            \
    }                                         \
    return -1;                                \
  } while (false)

int FaultInjectingIo::open(const std::string& path, int flags, mode_t mode) {
  int error = 0;
  Verdict verdict = decide(Call::open, path, &error);
  if (verdict == Verdict::fail) {
    errno = error;
    return -1;
  }
  int fd = target_->open(path, flags, mode);
  if (fd >= 0) {
    std::lock_guard<std::mutex> lock(mu_);
    paths_[fd] = path;
  }
  if (verdict == Verdict::perform_then_fail && fd >= 0) {
    target_->close(fd);
    errno = error;
    return -1;
  }
  return fd;
}

int FaultInjectingIo::close(int fd) {
  std::string path = path_of(fd);
  {
    std::lock_guard<std::mutex> lock(mu_);
    paths_.erase(fd);
  }
  // A descriptor is released even when close "fails" (as on Linux), and a
  // dead process's descriptors are closed by the kernel.
  int error = 0;
  Verdict verdict = decide(Call::close, path, &error);
  int rc = target_->close(fd);
  if (verdict != Verdict::pass) {
    errno = error;
    return -1;
  }
  return rc;
}

ssize_t FaultInjectingIo::read(int fd, void* data, std::size_t length) {
  WRITEAPI_FAULT_CALL(Call::read, path_of(fd), target_->read(fd, data, length));
}

ssize_t FaultInjectingIo::pread(int fd, void* data, std::size_t length, off_t offset) {
  WRITEAPI_FAULT_CALL(Call::pread, path_of(fd), target_->pread(fd, data, length, offset));
}

ssize_t FaultInjectingIo::pwrite(int fd, const void* data, std::size_t length, off_t offset) {
  {
    std::unique_lock<std::mutex> lock(mu_);
    const std::string path = paths_.count(fd) ? paths_[fd] : std::string();
    if (budget_active_ && calls_ < crash_at_ && path.find(budget_path_) != std::string::npos) {
      ++calls_;
      trace_.push_back("pwrite " + path);
      if (budget_ == 0) {
        errno = budget_error_;
        return -1;
      }
      std::size_t n = std::min(length, budget_);
      budget_ -= n;
      lock.unlock();
      return target_->pwrite(fd, data, n, offset);  // a short write
    }
  }
  WRITEAPI_FAULT_CALL(Call::pwrite, path_of(fd), target_->pwrite(fd, data, length, offset));
}

int FaultInjectingIo::fdatasync(int fd) { WRITEAPI_FAULT_CALL(Call::fdatasync, path_of(fd), target_->fdatasync(fd)); }

int FaultInjectingIo::fsync(int fd) { WRITEAPI_FAULT_CALL(Call::fsync, path_of(fd), target_->fsync(fd)); }

int FaultInjectingIo::ftruncate(int fd, off_t length) {
  WRITEAPI_FAULT_CALL(Call::ftruncate, path_of(fd), target_->ftruncate(fd, length));
}

int FaultInjectingIo::fallocate(int fd, off_t offset, off_t length) {
  WRITEAPI_FAULT_CALL(Call::fallocate, path_of(fd), target_->fallocate(fd, offset, length));
}

int FaultInjectingIo::fstat(int fd, struct stat* st) {
  WRITEAPI_FAULT_CALL(Call::fstat, path_of(fd), target_->fstat(fd, st));
}

int FaultInjectingIo::mkdir(const std::string& path, mode_t mode) {
  WRITEAPI_FAULT_CALL(Call::mkdir, path, target_->mkdir(path, mode));
}

int FaultInjectingIo::unlink(const std::string& path) {
  WRITEAPI_FAULT_CALL(Call::unlink, path, target_->unlink(path));
}

int FaultInjectingIo::rename(const std::string& from, const std::string& to) {
  WRITEAPI_FAULT_CALL(Call::rename, from, target_->rename(from, to));
}

int FaultInjectingIo::lock(int fd) { WRITEAPI_FAULT_CALL(Call::lock, path_of(fd), target_->lock(fd)); }

int FaultInjectingIo::list_directory(const std::string& path, std::vector<std::string>* names) {
  WRITEAPI_FAULT_CALL(Call::list_directory, path, target_->list_directory(path, names));
}

}  // namespace writeapi::testing
