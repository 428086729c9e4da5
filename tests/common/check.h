/*
 * CHECK: an assertion for test code that never compiles out.
 *
 * assert() vanishes under NDEBUG, which the default RelWithDebInfo build defines, so a test
 * harness guarded by assert() silently runs past overflows and failed calls there. CHECK always
 * evaluates its condition; when false it prints file:line, the condition and a printf-style
 * message to stderr and aborts (CTest reports the test as failed). Safe on any thread, unlike
 * cmocka's assert_* (which longjmp to the main thread's test runner).
 */
#ifndef DR_TESTS_COMMON_CHECK_H
#define DR_TESTS_COMMON_CHECK_H

#include <stdio.h>
#include <stdlib.h>

/* tests/CMakeLists.txt adds -UNDEBUG to all test code: assert() in tests must never vanish. */
#ifdef NDEBUG
#error "test code must be compiled without NDEBUG (tests/CMakeLists.txt adds -UNDEBUG)"
#endif

/* Aborts with file:line, the failed condition and the message unless cond is true. */
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);               \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
