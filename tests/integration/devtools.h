// A headless Chromium driven through the Chrome DevTools Protocol, for the
// web console's browser test (console_test.cpp).
//
// The browser runs as a child process with --remote-debugging-pipe: it reads
// commands from its descriptor 3 and writes answers and events to its
// descriptor 4, each message one JSON text ended by a NUL byte. One page
// (a target attached with flatten: its commands carry the sessionId) is
// enough for the test. Calls block with a timeout; events are read and
// dropped.
//
// Thread-safety: one thread uses a Browser.
#ifndef WRITEAPI_TESTS_INTEGRATION_DEVTOOLS_H_
#define WRITEAPI_TESTS_INTEGRATION_DEVTOOLS_H_

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "temp_dir.h"

namespace writeapi::testing {

// The Chromium binary to run: $WRITEAPI_CHROMIUM if set, else the first of
// chromium, chromium-browser, google-chrome on PATH; "" when none exists.
std::string find_chromium();

// `text` as a JSON string literal (quotes and escapes added).
std::string json_quote(std::string_view text);

class Browser {
 public:
  // Starts `binary` headless with a fresh profile in a temporary directory
  // and opens one blank page. Returns null with *error set when the browser
  // does not start or does not answer within `timeout`.
  static std::unique_ptr<Browser> launch(const std::string& binary, std::string* error,
                                         std::chrono::milliseconds timeout = std::chrono::seconds(30));
  ~Browser();  // closes the browser (Browser.close, then SIGKILL after 5 s)
  Browser(const Browser&) = delete;
  Browser& operator=(const Browser&) = delete;

  // Sends `method` with `params` (a JSON object) to the page (or to the
  // browser when `to_page` is false) and waits for its answer. Returns the
  // answer's "result" as JSON text; nullopt with *error set on a protocol
  // error, a broken pipe or timeout.
  std::optional<std::string> call(std::string_view method, std::string_view params, std::string* error,
                                  bool to_page = true, std::chrono::milliseconds timeout = std::chrono::seconds(20));

  // Evaluates `expression` in the page (awaiting it when it is a promise).
  // Returns its value as JSON text ("true", "3", "\"text\"", "null" for
  // undefined); nullopt with *error on an exception or a failed call.
  std::optional<std::string> evaluate(std::string_view expression, std::string* error);

  // Evaluates `expression` every 50 ms until its value is JSON `true`.
  // Returns true then; false at the timeout, with *last set to the last
  // value or error seen.
  bool wait_for(std::string_view expression, std::chrono::milliseconds timeout, std::string* last);

  // Loads `url` in the page and waits until its document has loaded.
  bool navigate(const std::string& url, std::string* error);

  // A PNG of the page's viewport; "" with *error on failure.
  std::string screenshot(std::string* error);

  // What the browser wrote to standard error (for failure messages).
  std::string log() const;

 private:
  Browser() = default;
  bool send(std::string_view message);
  // Reads until the answer with `id` arrives; its JSON text.
  std::optional<std::string> read_answer(int id, std::chrono::steady_clock::time_point deadline, std::string* error);

  TempDir profile_;
  std::string log_path_;
  pid_t pid_ = -1;
  int to_browser_ = -1;
  int from_browser_ = -1;
  int next_id_ = 1;
  std::string session_id_;
  std::string buffer_;
};

}  // namespace writeapi::testing

#endif  // WRITEAPI_TESTS_INTEGRATION_DEVTOOLS_H_
