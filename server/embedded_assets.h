// Files compiled into writeapi-server (the web console's pages, scripts and
// Chart.js), from a source cmake/embed_assets.cmake generates at build time.
#ifndef WRITEAPI_SERVER_EMBEDDED_ASSETS_H_
#define WRITEAPI_SERVER_EMBEDDED_ASSETS_H_

#include <cstddef>
#include <string_view>

namespace writeapi::server {

struct EmbeddedAsset {
  std::string_view path;          // URL path it is served at ("/console/app.js")
  std::string_view content_type;  // from the file name's extension
  std::string_view body;
  std::string_view etag;  // strong, quoted: a prefix of the SHA-256 of body
};

extern const EmbeddedAsset kEmbeddedAssets[];
extern const std::size_t kEmbeddedAssetCount;

}  // namespace writeapi::server

#endif  // WRITEAPI_SERVER_EMBEDDED_ASSETS_H_
