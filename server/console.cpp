#include "console.h"

#include <httplib.h>

#include <string>

#include "embedded_assets.h"

namespace writeapi::server {
namespace {

const EmbeddedAsset* find_asset(std::string_view path) {
  for (std::size_t i = 0; i < kEmbeddedAssetCount; ++i)
    if (kEmbeddedAssets[i].path == path) return &kEmbeddedAssets[i];
  return nullptr;
}

// True when an If-None-Match value names `etag` (or is "*").
bool etag_matches(std::string_view if_none_match, std::string_view etag) {
  while (!if_none_match.empty()) {
    std::size_t comma = if_none_match.find(',');
    std::string_view item = if_none_match.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (item.substr(0, 2) == "W/") item.remove_prefix(2);
    if (item == etag || item == "*") return true;
    if (comma == std::string_view::npos) break;
    if_none_match.remove_prefix(comma + 1);
  }
  return false;
}

void serve_asset(const EmbeddedAsset& asset, const httplib::Request& req, httplib::Response& res) {
  res.set_header("Content-Security-Policy", std::string(kConsoleContentSecurityPolicy));
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_header("Referrer-Policy", "no-referrer");
  res.set_header("Cache-Control", "no-cache");
  res.set_header("ETag", std::string(asset.etag));
  if (etag_matches(req.get_header_value("If-None-Match"), asset.etag)) {
    res.status = 304;
    return;
  }
  res.set_content(asset.body.data(), asset.body.size(), std::string(asset.content_type));
}

}  // namespace

void install_console_routes(httplib::Server& http) {
  http.Get("/", [](const httplib::Request& req, httplib::Response& res) {
    if (const EmbeddedAsset* index = find_asset("/")) serve_asset(*index, req, res);
  });
  // Unknown files fall through to the server's JSON 404.
  http.Get(R"(/console/[A-Za-z0-9._/-]+)", [](const httplib::Request& req, httplib::Response& res) {
    if (const EmbeddedAsset* asset = find_asset(req.path)) {
      serve_asset(*asset, req, res);
    } else {
      res.status = 404;
    }
  });
}

}  // namespace writeapi::server
