#include "memory_file_io.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace writeapi::testing {

std::string MemoryFileIo::parent_of(const std::string& path) {
  std::size_t slash = path.rfind('/');
  if (slash == std::string::npos || slash == 0) return "/";
  return path.substr(0, slash);
}

MemoryFileIo::Descriptor* MemoryFileIo::find(int fd) {
  auto it = descriptors_.find(fd);
  if (it == descriptors_.end()) {
    errno = EBADF;
    return nullptr;
  }
  return &it->second;
}

int MemoryFileIo::open(const std::string& path, int flags, mode_t) {
  std::lock_guard<std::mutex> lock(mu_);
  std::shared_ptr<Node> node;
  if (path == "/") {
    static auto root = std::make_shared<Node>(Node{true, "", "", false});
    node = root;
  } else if (auto it = names_.find(path); it != names_.end()) {
    if ((flags & O_CREAT) && (flags & O_EXCL)) {
      errno = EEXIST;
      return -1;
    }
    node = it->second;
  } else {
    if (!(flags & O_CREAT)) {
      errno = ENOENT;
      return -1;
    }
    const std::string parent = parent_of(path);
    if (parent != "/") {
      auto p = names_.find(parent);
      if (p == names_.end() || !p->second->directory) {
        errno = ENOENT;
        return -1;
      }
    }
    node = std::make_shared<Node>();
    names_[path] = node;
  }
  if ((flags & O_DIRECTORY) && !node->directory) {
    errno = ENOTDIR;
    return -1;
  }
  if (node->directory && (flags & (O_WRONLY | O_RDWR))) {
    errno = EISDIR;
    return -1;
  }
  if (flags & O_TRUNC) node->data.clear();
  int fd = next_fd_++;
  descriptors_[fd] = Descriptor{node, path, 0, false};
  return fd;
}

int MemoryFileIo::close(int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  Descriptor* d = find(fd);
  if (!d) return -1;
  if (d->locks) d->node->locked = false;
  descriptors_.erase(fd);
  return 0;
}

ssize_t MemoryFileIo::read(int fd, void* data, std::size_t length) {
  std::lock_guard<std::mutex> lock(mu_);
  Descriptor* d = find(fd);
  if (!d) return -1;
  if (d->node->directory) {
    errno = EISDIR;
    return -1;
  }
  const std::string& bytes = d->node->data;
  if (static_cast<std::size_t>(d->position) >= bytes.size()) return 0;
  std::size_t n = std::min(length, bytes.size() - static_cast<std::size_t>(d->position));
  std::memcpy(data, bytes.data() + d->position, n);
  d->position += static_cast<off_t>(n);
  return static_cast<ssize_t>(n);
}

ssize_t MemoryFileIo::pread(int fd, void* data, std::size_t length, off_t offset) {
  std::lock_guard<std::mutex> lock(mu_);
  Descriptor* d = find(fd);
  if (!d) return -1;
  const std::string& bytes = d->node->data;
  if (static_cast<std::size_t>(offset) >= bytes.size()) return 0;
  std::size_t n = std::min(length, bytes.size() - static_cast<std::size_t>(offset));
  std::memcpy(data, bytes.data() + offset, n);
  return static_cast<ssize_t>(n);
}

ssize_t MemoryFileIo::pwrite(int fd, const void* data, std::size_t length, off_t offset) {
  std::lock_guard<std::mutex> lock(mu_);
  Descriptor* d = find(fd);
  if (!d) return -1;
  std::string& bytes = d->node->data;
  const std::size_t end = static_cast<std::size_t>(offset) + length;
  if (bytes.size() < end) bytes.resize(end, '\0');
  std::memcpy(bytes.data() + offset, data, length);
  return static_cast<ssize_t>(length);
}

void MemoryFileIo::sync_entries(const std::string& dir) {
  // The directory's durable entries become its current ones.
  for (auto it = durable_.begin(); it != durable_.end();) {
    if (parent_of(it->first) == dir && names_.count(it->first) == 0)
      it = durable_.erase(it);
    else
      ++it;
  }
  for (auto& [path, node] : names_)
    if (parent_of(path) == dir) durable_[path] = node;
}

int MemoryFileIo::fdatasync(int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  Descriptor* d = find(fd);
  if (!d) return -1;
  if (d->node->directory)
    sync_entries(d->path);
  else
    d->node->durable = d->node->data;
  return 0;
}

int MemoryFileIo::fsync(int fd) { return fdatasync(fd); }

int MemoryFileIo::ftruncate(int fd, off_t length) {
  std::lock_guard<std::mutex> lock(mu_);
  Descriptor* d = find(fd);
  if (!d) return -1;
  d->node->data.resize(static_cast<std::size_t>(length), '\0');
  return 0;
}

int MemoryFileIo::fallocate(int fd, off_t offset, off_t length) {
  std::lock_guard<std::mutex> lock(mu_);
  Descriptor* d = find(fd);
  if (!d) return -1;
  std::size_t end = static_cast<std::size_t>(offset + length);
  if (d->node->data.size() < end) d->node->data.resize(end, '\0');
  return 0;
}

int MemoryFileIo::fstat(int fd, struct stat* st) {
  std::lock_guard<std::mutex> lock(mu_);
  Descriptor* d = find(fd);
  if (!d) return -1;
  std::memset(st, 0, sizeof *st);
  st->st_size = static_cast<off_t>(d->node->data.size());
  st->st_mode = d->node->directory ? (S_IFDIR | 0755) : (S_IFREG | 0644);
  return 0;
}

int MemoryFileIo::mkdir(const std::string& path, mode_t) {
  std::lock_guard<std::mutex> lock(mu_);
  if (path == "/" || names_.count(path)) {
    errno = EEXIST;
    return -1;
  }
  const std::string parent = parent_of(path);
  if (parent != "/" && names_.count(parent) == 0) {
    errno = ENOENT;
    return -1;
  }
  auto node = std::make_shared<Node>();
  node->directory = true;
  names_[path] = node;
  return 0;
}

int MemoryFileIo::unlink(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = names_.find(path);
  if (it == names_.end()) {
    errno = ENOENT;
    return -1;
  }
  if (it->second->directory) {
    errno = EISDIR;
    return -1;
  }
  names_.erase(it);
  return 0;
}

int MemoryFileIo::rename(const std::string& from, const std::string& to) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = names_.find(from);
  if (it == names_.end()) {
    errno = ENOENT;
    return -1;
  }
  auto node = it->second;
  names_.erase(it);
  names_[to] = node;
  return 0;
}

int MemoryFileIo::lock(int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  Descriptor* d = find(fd);
  if (!d) return -1;
  if (d->node->locked && !d->locks) {
    errno = EWOULDBLOCK;
    return -1;
  }
  d->node->locked = true;
  d->locks = true;
  return 0;
}

int MemoryFileIo::list_directory(const std::string& path, std::vector<std::string>* names) {
  std::lock_guard<std::mutex> lock(mu_);
  names->clear();
  if (path != "/") {
    auto it = names_.find(path);
    if (it == names_.end()) {
      errno = ENOENT;
      return -1;
    }
    if (!it->second->directory) {
      errno = ENOTDIR;
      return -1;
    }
  }
  for (auto& [name, node] : names_)
    if (parent_of(name) == path) names->push_back(name.substr(path == "/" ? 1 : path.size() + 1));
  return 0;
}

void MemoryFileIo::power_failure() {
  std::lock_guard<std::mutex> lock(mu_);
  descriptors_.clear();
  // A directory whose own entry was lost takes its entries with it.
  std::map<std::string, std::shared_ptr<Node>> survivors;
  for (auto& [path, node] : durable_) {
    bool reachable = true;
    for (std::string p = parent_of(path); p != "/"; p = parent_of(p))
      if (durable_.count(p) == 0) reachable = false;
    if (reachable) survivors[path] = node;
  }
  durable_ = survivors;
  names_ = survivors;
  for (auto& [path, node] : names_) {
    node->data = node->durable;
    node->locked = false;
  }
}

std::shared_ptr<MemoryFileIo> MemoryFileIo::clone() {
  std::lock_guard<std::mutex> lock(mu_);
  auto copy = std::make_shared<MemoryFileIo>();
  std::map<Node*, std::shared_ptr<Node>> copies;
  auto copy_of = [&](const std::shared_ptr<Node>& node) {
    auto& c = copies[node.get()];
    if (!c) {
      c = std::make_shared<Node>(*node);
      c->locked = false;
    }
    return c;
  };
  for (auto& [path, node] : names_) copy->names_[path] = copy_of(node);
  for (auto& [path, node] : durable_) copy->durable_[path] = copy_of(node);
  return copy;
}

std::string MemoryFileIo::contents(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = names_.find(path);
  return it == names_.end() ? std::string() : it->second->data;
}

bool MemoryFileIo::exists(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  return names_.count(path) != 0;
}

void MemoryFileIo::put(const std::string& path, const std::string& contents) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& node = names_[path];
  if (!node) node = std::make_shared<Node>();
  node->data = node->durable = contents;
  durable_[path] = node;
}

std::vector<std::string> MemoryFileIo::list(const std::string& dir, const std::string& suffix) {
  std::vector<std::string> names;
  list_directory(dir, &names);
  names.erase(std::remove_if(names.begin(), names.end(),
                             [&](const std::string& n) {
                               return n.size() < suffix.size() ||
                                      n.compare(n.size() - suffix.size(), suffix.size(), suffix) != 0;
                             }),
              names.end());
  std::sort(names.begin(), names.end());
  return names;
}

std::size_t MemoryFileIo::open_descriptors() {
  std::lock_guard<std::mutex> lock(mu_);
  return descriptors_.size();
}

}  // namespace writeapi::testing
