// The web console (server/console.cpp, server/console/): its assets as an
// HTTP client sees them, then the real thing in headless Chromium driven
// through the DevTools protocol (devtools.h) against the real server: sign
// in from the keyboard, the keys, a key's chart with one point per item
// written and a new write arriving through the long-poll within 2 s, an
// image item, the devices view with a suspended device, a phone-sized
// screen. Screenshots go to the build directory (and, with
// $WRITEAPI_CONSOLE_SCREENSHOT=<file>, the key view to that file: how
// docs/img/console.png is made). Without Chromium the browser case warns
// and passes; CI installs it (scripts/install-deps browser).
#include <httplib.h>
#include <signal.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include "devtools.h"
#include "server_process.h"
#include "writeapi/auth.h"

namespace writeapi::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// An 8x8 PNG, as a sensor with a camera would send it.
constexpr std::string_view kPngBase64 =
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAbElEQVR4nA3JQQEAMAgDMaRUClIqpVKQwvNkIGXLN1WFii5cpJhiiyuqhEQLi4gRK0"
    "4/GjXduEkzzTbXP4xMG5uYMWvOP4JCB4eECRsuPwYNPXjIMMMONz8WLb14yTLLLrc/Dh19+Mgxxx53PLzkagFHPAwGAAAAAElFTkSuQmCC";

// Items written to homelab/outdoors_temp1 before the browser looks.
constexpr int kItems = 24;

std::string output_path(const std::string& name) { return std::string(WRITEAPI_TEST_OUTPUT_DIR) + "/" + name; }

void save(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  INFO("writing " << path);
  CHECK(out.good());
}

int post(const ServerProcess& server, std::string_view key, std::string_view data_json,
         std::optional<std::string_view> device = std::nullopt) {
  auto res =
      server.client()->Post(write_path("homelab", key), make_body(data_json, kAccessKey, device), "application/json");
  return res ? res->status : 0;
}

// The test keys file, plus a device "greedy" on a budget of 2 requests,
// then one per 20 s: easy to get suspended.
void use_greedy_device_keys(ServerProcess& server) {
  write_file(server.keys_path(), R"({"buckets": {
  "homelab": {"keys": [{"id": "demo", "sha256": ")" +
                                     sha256_hex(kAccessKey) +
                                     R"("}],
              "limits": {"anonymous": {"rate": 1000000, "burst": 1000000},
                         "device": {"rate": 1000000, "burst": 1000000}},
              "devices": {"greedy": {"rate": 0.05, "burst": 2}}}}}
)");
  server.send_signal(SIGHUP);
}

// Sends greedy's requests until the limiter suspends it.
bool suspend_greedy(const ServerProcess& server) {
  auto client = server.client();
  for (int i = 0; i < 60; ++i) {
    auto res =
        client->Post(write_path("homelab", "greedy"), make_body("[1]", kAccessKey, "greedy"), "application/json");
    if (res && res->status == 429 && res->body.find("\"suspended\"") != std::string::npos) return true;
  }
  return false;
}

bool key_event(Browser& browser, std::string_view key, int code, std::string_view text = "") {
  std::string error;
  const std::string common = ",\"key\":" + json_quote(key) + ",\"code\":" + json_quote(key) +
                             ",\"windowsVirtualKeyCode\":" + std::to_string(code);
  std::string down = "{\"type\":\"keyDown\"" + common;
  if (!text.empty()) down += ",\"text\":" + json_quote(text);
  down += "}";
  bool ok = browser.call("Input.dispatchKeyEvent", down, &error).has_value();
  ok = browser.call("Input.dispatchKeyEvent", "{\"type\":\"keyUp\"" + common + "}", &error).has_value() && ok;
  INFO(error);
  CHECK(ok);
  return ok;
}

bool type_text(Browser& browser, std::string_view text) {
  std::string error;
  bool ok = browser.call("Input.insertText", "{\"text\":" + json_quote(text) + "}", &error).has_value();
  INFO(error);
  CHECK(ok);
  return ok;
}

// Evaluates `js` and returns its JSON value ("" on error, reported).
std::string eval(Browser& browser, std::string_view js) {
  std::string error;
  auto value = browser.evaluate(js, &error);
  INFO("evaluating " << js << ": " << error);
  CHECK(value.has_value());
  return value.value_or("");
}

#define WAIT_FOR(browser, js, timeout)                      \
  do {                                                      \
    std::string last_;                                      \
    bool ok_ = (browser).wait_for((js), (timeout), &last_); \
    INFO("waiting for " << (js) << "; last: " << last_);    \
    REQUIRE(ok_);                                           \
  } while (0)

std::string points_js(std::string_view field) {
  return "(() => { const c = document.querySelector('canvas[data-field=\"" + std::string(field) +
         "\"]'); const chart = c && window.Chart.getChart(c); return chart ? chart.data.datasets[0].data.length : "
         "-1; })()";
}

}  // namespace

TEST_CASE("console: the page and its assets come from the binary with a 'self' policy and cache validators",
          "[integration][browser][server-only]") {
  ServerProcess server;
  auto client = server.client();
  auto index = client->Get("/");
  REQUIRE(index);
  CHECK(index->status == 200);
  CHECK(index->get_header_value("Content-Type") == "text/html; charset=utf-8");
  const std::string policy = index->get_header_value("Content-Security-Policy");
  CHECK(policy.find("default-src 'self'") != std::string::npos);
  CHECK(policy.find("script-src 'self'") != std::string::npos);
  CHECK(policy.find("unsafe-inline") == std::string::npos);
  CHECK(index->get_header_value("X-Content-Type-Options") == "nosniff");
  CHECK(index->get_header_value("Cache-Control") == "no-cache");
  // No inline script: every <script> has a src, no on* handler attributes.
  const std::string& html = index->body;
  for (std::size_t at = html.find("<script"); at != std::string::npos; at = html.find("<script", at + 1))
    CHECK(html.substr(at, html.find('>', at) - at).find(" src=") != std::string::npos);
  CHECK(html.find(" onclick=") == std::string::npos);
  CHECK(html.find(" onload=") == std::string::npos);
  CHECK(html.find("http://") == std::string::npos);  // no CDN
  CHECK(html.find("https://") == std::string::npos);

  for (auto [path, type] : {std::pair{"/console/app.js", "text/javascript; charset=utf-8"},
                            std::pair{"/console/chart.js", "text/javascript; charset=utf-8"},
                            std::pair{"/console/console.css", "text/css; charset=utf-8"}}) {
    INFO(path);
    auto res = client->Get(path);
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(res->get_header_value("Content-Type") == type);
    CHECK(res->body.size() > 100);
    const std::string etag = res->get_header_value("ETag");
    REQUIRE(etag.size() > 2);
    auto again = client->Get(path, {{"If-None-Match", etag}});
    REQUIRE(again);
    CHECK(again->status == 304);
    CHECK(again->body.empty());
  }
  auto chart = client->Get("/console/chart.js");
  REQUIRE(chart);
  CHECK(chart->body.find("Chart.js v") != std::string::npos);

  auto missing = client->Get("/console/nothing.js");
  REQUIRE(missing);
  CHECK(missing->status == 404);
  CHECK(check_error_body(missing->body, "not_found") == "");
}

TEST_CASE("console: in headless Chromium, sign in, keys, a live chart, an image, a suspended device",
          "[integration][browser][server-only]") {
  const std::string chromium = find_chromium();
  if (chromium.empty()) {
    WARN("chromium is not installed (apt install chromium, or scripts/install-deps browser): browser test skipped");
    return;
  }
  ServerProcess server;
  use_greedy_device_keys(server);
  // The reload has happened once greedy's third request is refused.
  bool limited = false;
  for (auto deadline = Clock::now() + 5s; !limited && Clock::now() < deadline; std::this_thread::sleep_for(50ms))
    limited = post(server, "greedy", "0", std::string_view("greedy")) == 429;
  REQUIRE(limited);

  // 24 readings in 4 requests, one minute apart, with two numeric fields.
  const long long t0 = 1796000000;
  for (int request = 0; request < 4; ++request) {
    std::string items = "[";
    for (int i = 0; i < kItems / 4; ++i) {
      const int n = request * (kItems / 4) + i;
      if (i) items += ",";
      items += "{\"timestamp\":" + std::to_string(t0 + 60 * n) + ",\"temperature\":" + std::to_string(4 + n % 7) +
               ".5,\"humidity\":" + std::to_string(60 + n % 11) + "}";
    }
    REQUIRE(post(server, "outdoors_temp1", items + "]", std::string_view("outdoors_u871a")) == 200);
  }
  REQUIRE(post(server, "camera", "{\"timestamp\":1796000000,\"image\":\"" + std::string(kPngBase64) + "\"}") == 200);

  std::string error;
  auto browser_ptr = Browser::launch(chromium, &error);
  INFO("launching " << chromium << ": " << error);
  REQUIRE(browser_ptr);
  Browser& browser = *browser_ptr;
  // Any Content-Security-Policy violation (an inline style or script, a
  // request elsewhere) is recorded, and checked at the end.
  REQUIRE(browser.call(
      "Page.addScriptToEvaluateOnNewDocument",
      R"({"source":"window.__cspViolations = []; document.addEventListener('securitypolicyviolation', (e) => window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));"})",
      &error));
  const std::string origin = "http://127.0.0.1:" + std::to_string(server.port());
  REQUIRE(browser.navigate(origin + "/", &error));

  // The landing page shows how to write to this very server.
  WAIT_FOR(browser, "document.querySelector('main h1') !== null", 5s);
  CHECK(eval(browser,
             "document.querySelector('main pre').textContent.includes(location.origin + "
             "'/write/v3/bucket/homelab/')") == "true");
  CHECK(eval(browser, "typeof window.Chart") == "\"function\"");

  // Sign in from the keyboard: first with a wrong key, then the right one.
  REQUIRE(eval(browser, "document.querySelector('a[href=\"#/sign-in\"]').click(), true") == "true");
  WAIT_FOR(browser, "document.activeElement && document.activeElement.id === 'bucket'", 5s);
  CHECK(eval(browser, "[...document.querySelectorAll('main input')].every((i) => i.labels.length === 1)") == "true");
  type_text(browser, "homelab");
  key_event(browser, "Tab", 9);
  CHECK(eval(browser, "document.activeElement.id") == "\"access-key\"");
  type_text(browser, "not-the-key");
  key_event(browser, "Enter", 13, "\r");
  WAIT_FOR(browser,
           "(document.querySelector('#sign-in-error') || {textContent: ''}).textContent.includes('access_denied')", 5s);
  CHECK(eval(browser, "sessionStorage.length") == "0");
  REQUIRE(eval(browser, "document.getElementById('access-key').select(), true") == "true");
  type_text(browser, std::string(kAccessKey));
  key_event(browser, "Tab", 9);
  CHECK(eval(browser, "document.activeElement.id") == "\"sign-in-submit\"");
  key_event(browser, "Enter", 13, "\r");

  // The keys, with size and last write.
  WAIT_FOR(browser, "location.hash === '#/keys' && document.querySelectorAll('#keys-table tbody tr').length === 3", 5s);
  CHECK(eval(browser, "[...document.querySelectorAll('#keys-table tbody th')].map((t) => t.textContent).join()") ==
        "\"camera,greedy,outdoors_temp1\"");
  CHECK(eval(browser, "document.querySelector('#keys-table tbody tr:last-child td').textContent.endsWith('B')") ==
        "true");
  CHECK(eval(browser, "localStorage.length") == "0");
  CHECK(eval(browser, "JSON.parse(sessionStorage.getItem('writeapi.session')).bucket") == "\"homelab\"");

  // A key: one point per item in each numeric field's chart.
  REQUIRE(eval(browser, "document.querySelector('#keys-table a[href=\"#/key/outdoors_temp1\"]').click(), true") ==
          "true");
  WAIT_FOR(browser, points_js("temperature") + " === " + std::to_string(kItems), 5s);
  CHECK(eval(browser, points_js("humidity")) == std::to_string(kItems));
  CHECK(eval(browser, "document.querySelectorAll('#latest-table tbody tr').length") == "20");
  WAIT_FOR(browser, "document.getElementById('live').dataset.state === 'live'", 5s);

  // A new write shows up within 2 s, through the long-poll.
  std::this_thread::sleep_for(300ms);  // let the long-poll be waiting
  const auto written = Clock::now();
  REQUIRE(post(server, "outdoors_temp1",
               "{\"timestamp\":" + std::to_string(t0 + 60 * kItems) + ",\"temperature\":-3.25,\"humidity\":99}",
               std::string_view("outdoors_u871a")) == 200);
  WAIT_FOR(browser, points_js("temperature") + " === " + std::to_string(kItems + 1), 2s);
  const auto latency = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - written);
  INFO("new item on the chart after " << latency.count() << " ms");
  CHECK(latency < 2s);
  CHECK(eval(browser, "document.querySelector('#latest-table tbody tr td').firstChild.textContent") ==
        "\"" + std::to_string(t0 + 60 * kItems) + "\"");
  CHECK(eval(browser, "document.querySelector('#latest-table tbody tr').textContent.includes('-3.25')") == "true");
  std::this_thread::sleep_for(300ms);  // the chart drawn
  std::string png = browser.screenshot(&error);
  INFO(error);
  REQUIRE(png.substr(0, 8) == "\x89PNG\r\n\x1a\n");
  save(output_path("console-key.png"), png);
  if (const char* docs = std::getenv("WRITEAPI_CONSOLE_SCREENSHOT"); docs && *docs) save(docs, png);

  // An item holding a base64 PNG shows the image.
  REQUIRE(eval(browser, "location.hash = '#/key/camera', true") == "true");
  WAIT_FOR(browser,
           "(() => { const i = document.querySelector('#latest-table img'); return !!i && i.complete && "
           "i.naturalWidth === 8; })()",
           5s);

  // A key not written yet: the view waits for it, and shows its first line
  // (plotted against arrival order: it has no timestamp).
  REQUIRE(eval(browser, "location.hash = '#/key/later', true") == "true");
  WAIT_FOR(browser, "document.getElementById('live').textContent.startsWith('Waiting')", 5s);
  REQUIRE(post(server, "later", "{\"level\":7}") == 200);
  WAIT_FOR(browser, points_js("level") + " === 1", 5s);
  CHECK(eval(browser, "document.querySelector('canvas[data-field=\"level\"]').getAttribute('aria-label')") ==
        "\"Line chart of level against arrival order\"");

  // The devices: greedy is suspended (for 10 s from now), with the time it
  // ends.
  REQUIRE(suspend_greedy(server));
  REQUIRE(eval(browser, "document.querySelector('nav a[href=\"#/devices\"]').click(), true") == "true");
  WAIT_FOR(browser, "!!document.querySelector('#devices-table tr[data-device=\"greedy\"][data-state=\"suspended\"]')",
           5s);
  CHECK(eval(browser,
             "document.querySelector('#devices-table tr[data-device=\"greedy\"]').textContent.includes('s "
             "left')") == "true");
  png = browser.screenshot(&error);
  save(output_path("console-devices.png"), png);

  // A phone screen: nothing wider than the screen.
  REQUIRE(browser.call("Emulation.setDeviceMetricsOverride",
                       R"({"width":390,"height":844,"deviceScaleFactor":2,"mobile":true})", &error));
  REQUIRE(eval(browser, "location.hash = '#/key/outdoors_temp1', true") == "true");
  WAIT_FOR(browser, points_js("temperature") + " === " + std::to_string(kItems + 1), 5s);
  CHECK(eval(browser, "document.documentElement.scrollWidth <= window.innerWidth") == "true");
  save(output_path("console-phone.png"), browser.screenshot(&error));

  // Signing out forgets the key.
  REQUIRE(eval(browser, "document.getElementById('sign-out').click(), true") == "true");
  WAIT_FOR(browser, "sessionStorage.length === 0 && location.hash === '#/'", 5s);
  CHECK(eval(browser, "window.__cspViolations.join('; ')") == "\"\"");
}

}  // namespace writeapi::testing
