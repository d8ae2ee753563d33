#include "access_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

namespace writeapi::server {

AccessLog::AccessLog(int fd, std::size_t max_queued_bytes) : state_(std::make_shared<State>()) {
  state_->fd = ::fcntl(fd, F_DUPFD_CLOEXEC, 3);
  state_->max_queued = max_queued_bytes;
  std::thread(run, state_).detach();
}

AccessLog::~AccessLog() {
  std::unique_lock<std::mutex> lock(state_->mu);
  state_->stop = true;
  state_->cv.notify_all();
  // What is queued gets two seconds to go out; a sink that takes nothing
  // must not keep the server from stopping.
  state_->cv.wait_for(lock, std::chrono::seconds(2), [&] { return state_->done; });
}

void AccessLog::write(std::string_view line) {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->queued.size() + line.size() > state_->max_queued) {
      state_->dropped++;
      return;
    }
    state_->queued.append(line);
  }
  state_->cv.notify_all();
}

void AccessLog::run(std::shared_ptr<State> state) {
  std::string batch;
  std::unique_lock<std::mutex> lock(state->mu);
  for (;;) {
    state->cv.wait(lock, [&] { return state->stop || !state->queued.empty(); });
    if (state->queued.empty()) break;
    batch.clear();
    batch.swap(state->queued);
    lock.unlock();
    // Blocks here, and only here, when the sink is slow.
    for (std::size_t done = 0; done < batch.size();) {
      ssize_t n = ::write(state->fd, batch.data() + done, batch.size() - done);
      if (n > 0) {
        done += static_cast<std::size_t>(n);
      } else if (n < 0 && errno != EINTR) {
        break;  // a sink that fails (a closed pipe) loses these lines
      }
    }
    lock.lock();
  }
  ::close(state->fd);
  state->done = true;
  state->cv.notify_all();
}

void append_log_field(std::string* line, std::string_view field) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (char ch : field) {
    auto c = static_cast<unsigned char>(ch);
    if (c > 0x20 && c < 0x7f && c != '\\') {
      line->push_back(ch);
    } else {
      line->append("\\x");
      line->push_back(kHex[c >> 4]);
      line->push_back(kHex[c & 15]);
    }
  }
}

}  // namespace writeapi::server
