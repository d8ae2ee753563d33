// The global operator new and delete of the allocation tests
// (counting_new.h).
#include "counting_new.h"

#include <cstdlib>
#include <new>

namespace writeapi::testing {

std::atomic<long> g_allocations{0};
std::atomic<bool> g_counting{false};
std::atomic<long> g_fail_at{-1};

}  // namespace writeapi::testing

namespace {
using writeapi::testing::g_allocations;
using writeapi::testing::g_counting;
using writeapi::testing::g_fail_at;

// Counts an allocation; true when it is the one to fail.
bool count_allocation() {
  const long n = g_allocations.fetch_add(1, std::memory_order_relaxed);
  return n == g_fail_at.load(std::memory_order_relaxed);
}
}  // namespace

void* operator new(std::size_t size) {
  void* p =
      g_counting.load(std::memory_order_relaxed) && count_allocation() ? nullptr : std::malloc(size == 0 ? 1 : size);
  if (p != nullptr) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
// The nothrow form too (simdjson allocates its parser and parse()'s
// structural index with it), counted and failed like the others: left to
// the library, it would come from another allocator than the free() above,
// which AddressSanitizer reports as alloc-dealloc-mismatch.
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  if (g_counting.load(std::memory_order_relaxed) && count_allocation()) return nullptr;
  return std::malloc(size == 0 ? 1 : size);
}
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
