// The web console (docs in README.md, "The console"): static pages and
// scripts compiled into the binary (embedded_assets.h), served at / and
// /console/. Everything the console shows comes from the Read API in the
// browser, with the access key the user signs in with; these routes know
// no bucket and no key.
#ifndef WRITEAPI_SERVER_CONSOLE_H_
#define WRITEAPI_SERVER_CONSOLE_H_

#include <string_view>

namespace httplib {
class Server;
}

namespace writeapi::server {

// Content-Security-Policy of every console page: scripts, styles and
// connections to this origin only, images also from data: URLs (the
// base64 images items may hold); no inline script or style, no framing.
inline constexpr std::string_view kConsoleContentSecurityPolicy =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

// Adds GET (and HEAD) / and /console/<file> to `http`: each asset with its
// Content-Type, the policy above, nosniff, no referrer, and an ETag with
// Cache-Control: no-cache (a browser revalidates and gets 304 until the
// binary changes).
void install_console_routes(httplib::Server& http);

}  // namespace writeapi::server

#endif  // WRITEAPI_SERVER_CONSOLE_H_
