// A replaced global operator new (counting_new.cpp) that counts heap
// allocations while told to, and can make one of them fail.
#ifndef WRITEAPI_TESTS_PERF_COUNTING_NEW_H_
#define WRITEAPI_TESTS_PERF_COUNTING_NEW_H_

#include <atomic>

namespace writeapi::testing {

// Allocations made while g_counting is true.
extern std::atomic<long> g_allocations;
extern std::atomic<bool> g_counting;
// While counting, the allocation with this number (0 is the first) fails
// with std::bad_alloc; -1: none does.
extern std::atomic<long> g_fail_at;

}  // namespace writeapi::testing

#endif  // WRITEAPI_TESTS_PERF_COUNTING_NEW_H_
