// The Write API document's example, shared by the suites: its access key
// (bucket "homelab" in examples/demo-keys.json and the test keys files),
// its request body exactly as printed, and the line that body stores.
#ifndef WRITEAPI_TESTS_SUPPORT_API_DOCUMENT_H_
#define WRITEAPI_TESTS_SUPPORT_API_DOCUMENT_H_

#include <string>
#include <string_view>

namespace writeapi::testing {

inline constexpr std::string_view kAccessKey = "fbebeb8ae7f94930fd07dd8249287973e786d047e9820a254c4a3aecb36fc238";

inline const std::string kDocumentBody = R"({
    "accessKey": "fbebeb8ae7f94930fd07dd8249287973e786d047e9820a254c4a3aecb36fc238",
    "deviceId": "outdoors_u871a",
    "data": {
        "timestamp": 1584156800,
        "temperature": 4.7
    }
})";
inline const std::string kDocumentLine = "{\"timestamp\":1584156800,\"temperature\":4.7}\n";

}  // namespace writeapi::testing

#endif  // WRITEAPI_TESTS_SUPPORT_API_DOCUMENT_H_
