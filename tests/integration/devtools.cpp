#include "devtools.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <simdjson.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "server_process.h"
#include "writeapi/response.h"

namespace writeapi::testing {
namespace {

using Clock = std::chrono::steady_clock;

bool executable(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }

// Base64 (standard alphabet, padded) -> bytes; stops at the first byte
// outside the alphabet.
std::string base64_decode(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  unsigned bits = 0;
  int count = 0;
  for (char c : text) {
    int v = value(c);
    if (v < 0) break;
    bits = (bits << 6) | static_cast<unsigned>(v);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out.push_back(static_cast<char>((bits >> count) & 0xff));
    }
  }
  return out;
}

}  // namespace

std::string find_chromium() {
  if (const char* env = std::getenv("WRITEAPI_CHROMIUM"); env && *env) return executable(env) ? env : "";
  const char* path = std::getenv("PATH");
  std::string_view dirs = path ? path : "/usr/bin:/bin";
  for (const char* name : {"chromium", "chromium-browser", "google-chrome"}) {
    std::string_view rest = dirs;
    while (!rest.empty()) {
      std::size_t colon = rest.find(':');
      std::string candidate = std::string(rest.substr(0, colon)) + "/" + name;
      if (executable(candidate)) return candidate;
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
  }
  return "";
}

std::string json_quote(std::string_view text) {
  std::string out;
  append_json_string(&out, text);
  return out;
}

std::unique_ptr<Browser> Browser::launch(const std::string& binary, std::string* error,
                                         std::chrono::milliseconds timeout) {
  std::unique_ptr<Browser> browser(new Browser());
  browser->log_path_ = browser->profile_.path() + "/browser.log";
  const std::string profile = browser->profile_.path() + "/profile";
  std::vector<std::string> args = {binary,
                                   "--headless=new",
                                   "--remote-debugging-pipe",
                                   "--user-data-dir=" + profile,
                                   "--no-first-run",
                                   "--no-default-browser-check",
                                   "--disable-gpu",
                                   "--disable-extensions",
                                   "--disable-background-networking",
                                   "--disable-component-update",
                                   "--disable-sync",
                                   "--disable-default-apps",
                                   "--disable-dev-shm-usage",
                                   "--metrics-recording-only",
                                   "--mute-audio",
                                   "--hide-scrollbars",
                                   "--window-size=1280,900",
                                   "about:blank"};
  // Chromium's sandbox refuses to run as root.
  if (::geteuid() == 0) args.insert(args.begin() + 1, "--no-sandbox");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int to_browser[2], from_browser[2];
  if (::pipe2(to_browser, O_CLOEXEC) != 0 || ::pipe2(from_browser, O_CLOEXEC) != 0) {
    *error = std::string("pipe: ") + std::strerror(errno);
    return nullptr;
  }
  pid_t pid = ::fork();
  if (pid < 0) {
    *error = std::string("fork: ") + std::strerror(errno);
    return nullptr;
  }
  if (pid == 0) {
    // Child: the browser reads commands on 3 and writes answers on 4. Move
    // the pipe ends out of the way first (they may be 3 or 4 already).
    int in = ::fcntl(to_browser[0], F_DUPFD, 10);
    int out = ::fcntl(from_browser[1], F_DUPFD, 10);
    int null = ::open("/dev/null", O_RDONLY);
    int log = ::open(browser->log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (in < 0 || out < 0 || null < 0 || log < 0) ::_exit(126);
    ::dup2(null, 0);
    ::dup2(log, 1);
    ::dup2(log, 2);
    ::dup2(in, 3);
    ::dup2(out, 4);
    reset_child_after_fork(5);
    ::setpgid(0, 0);  // its helper processes go with it (killpg in ~Browser)
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(to_browser[0]);
  ::close(from_browser[1]);
  browser->pid_ = pid;
  browser->to_browser_ = to_browser[1];
  browser->from_browser_ = from_browser[0];

  // One page target, attached with a flat session.
  auto target = browser->call("Target.createTarget", R"({"url":"about:blank"})", error, false, timeout);
  if (!target) {
    *error += "; its log:\n" + browser->log();
    return nullptr;
  }
  simdjson::dom::parser parser;
  std::string_view target_id;
  if (parser.parse(*target)["targetId"].get(target_id) != simdjson::SUCCESS) {
    *error = "Target.createTarget: no targetId in " + *target;
    return nullptr;
  }
  auto attached = browser->call("Target.attachToTarget",
                                "{\"targetId\":" + json_quote(target_id) + ",\"flatten\":true}", error, false);
  if (!attached) return nullptr;
  std::string_view session;
  if (parser.parse(*attached)["sessionId"].get(session) != simdjson::SUCCESS) {
    *error = "Target.attachToTarget: no sessionId in " + *attached;
    return nullptr;
  }
  browser->session_id_ = std::string(session);
  for (const char* domain : {"Page.enable", "Runtime.enable"})
    if (!browser->call(domain, "{}", error)) return nullptr;
  return browser;
}

Browser::~Browser() {
  if (pid_ > 0) {
    std::string ignored;
    if (to_browser_ >= 0) call("Browser.close", "{}", &ignored, false, std::chrono::seconds(5));
    int status = 0;
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        ::killpg(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    // Helpers (renderer, GPU, zygote) left in its process group.
    ::killpg(pid_, SIGKILL);
  }
  if (to_browser_ >= 0) ::close(to_browser_);
  if (from_browser_ >= 0) ::close(from_browser_);
}

bool Browser::send(std::string_view message) {
  std::string bytes(message);
  bytes.push_back('\0');
  std::size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(to_browser_, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

std::optional<std::string> Browser::read_answer(int id, Clock::time_point deadline, std::string* error) {
  simdjson::dom::parser parser;
  for (;;) {
    std::size_t end;
    while ((end = buffer_.find('\0')) != std::string::npos) {
      std::string message = buffer_.substr(0, end);
      buffer_.erase(0, end + 1);
      simdjson::dom::element doc;
      if (parser.parse(message).get(doc) != simdjson::SUCCESS) continue;
      std::int64_t message_id;
      if (doc["id"].get(message_id) != simdjson::SUCCESS || message_id != id) continue;  // an event, or late
      simdjson::dom::element result;
      if (doc["result"].get(result) == simdjson::SUCCESS) return simdjson::minify(result);
      *error = "protocol error: " + message;
      return std::nullopt;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      *error = "no answer from the browser in time";
      return std::nullopt;
    }
    pollfd pfd{from_browser_, POLLIN, 0};
    int ready = ::poll(&pfd, 1, static_cast<int>(left));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char chunk[65536];
    ssize_t n = ::read(from_browser_, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      *error = "the browser closed its pipe (exited?)";
      return std::nullopt;
    }
    buffer_.append(chunk, static_cast<std::size_t>(n));
  }
}

std::optional<std::string> Browser::call(std::string_view method, std::string_view params, std::string* error,
                                         bool to_page, std::chrono::milliseconds timeout) {
  const int id = next_id_++;
  std::string message =
      "{\"id\":" + std::to_string(id) + ",\"method\":" + json_quote(method) + ",\"params\":" + std::string(params);
  if (to_page && !session_id_.empty()) message += ",\"sessionId\":" + json_quote(session_id_);
  message += "}";
  if (!send(message)) {
    *error = "cannot write to the browser's pipe";
    return std::nullopt;
  }
  auto answer = read_answer(id, Clock::now() + timeout, error);
  if (!answer) *error = std::string(method) + ": " + *error;
  return answer;
}

std::optional<std::string> Browser::evaluate(std::string_view expression, std::string* error) {
  auto result =
      call("Runtime.evaluate",
           "{\"expression\":" + json_quote(expression) + ",\"awaitPromise\":true,\"returnByValue\":true}", error);
  if (!result) return std::nullopt;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(*result).get(doc) != simdjson::SUCCESS) {
    *error = "Runtime.evaluate: unreadable answer " + *result;
    return std::nullopt;
  }
  simdjson::dom::element details;
  if (doc["exceptionDetails"].get(details) == simdjson::SUCCESS) {
    *error = "exception: " + simdjson::minify(details);
    return std::nullopt;
  }
  simdjson::dom::element value;
  if (doc["result"]["value"].get(value) != simdjson::SUCCESS) return std::string("null");
  return simdjson::minify(value);
}

bool Browser::wait_for(std::string_view expression, std::chrono::milliseconds timeout, std::string* last) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    std::string error;
    auto value = evaluate(expression, &error);
    if (value && *value == "true") return true;
    *last = value ? *value : error;
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

bool Browser::navigate(const std::string& url, std::string* error) {
  auto result = call("Page.navigate", "{\"url\":" + json_quote(url) + "}", error);
  if (!result) return false;
  if (result->find("\"errorText\"") != std::string::npos) {
    *error = "Page.navigate: " + *result;
    return false;
  }
  return wait_for("document.readyState === 'complete'", std::chrono::seconds(10), error);
}

std::string Browser::screenshot(std::string* error) {
  auto result = call("Page.captureScreenshot", R"({"format":"png"})", error);
  if (!result) return "";
  simdjson::dom::parser parser;
  std::string_view data;
  if (parser.parse(*result)["data"].get(data) != simdjson::SUCCESS) {
    *error = "Page.captureScreenshot: no data";
    return "";
  }
  return base64_decode(data);
}

std::string Browser::log() const { return read_file(log_path_); }

}  // namespace writeapi::testing
