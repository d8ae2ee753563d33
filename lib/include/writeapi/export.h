// WRITEAPI_EXPORT: marks what libwriteapi exports.
//
// The library is compiled with hidden visibility (-fvisibility=hidden,
// -fvisibility-inlines-hidden), so a shared libwriteapi.so exports only
// what its public headers declare with WRITEAPI_EXPORT: every public class
// (its vtable and type information too) and every free function that is
// not inline. Its dependencies (simdjson, cpp-httplib, OpenSSL) and its
// private helpers stay inside. A static library is unaffected.
//
// A new public class or function needs the macro: the
// headers.export_macro test (tests/unit/export_macro_test.sh) fails
// on a public header that declares one without it.
//
// Thread-safety: a macro only.
#ifndef WRITEAPI_EXPORT_H_
#define WRITEAPI_EXPORT_H_

// The standard attribute syntax, so it may follow [[nodiscard]] in a
// class head ("class [[nodiscard]] WRITEAPI_EXPORT Status").
#if defined(__GNUC__) || defined(__clang__)
#define WRITEAPI_EXPORT [[gnu::visibility("default")]]
#else
#define WRITEAPI_EXPORT
#endif

#endif  // WRITEAPI_EXPORT_H_
