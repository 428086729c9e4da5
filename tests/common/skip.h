/*
 * Honest skips for cmocka test programs.
 *
 * cmocka's skip() marks one test as skipped, but cmocka_run_group_tests() returns only the
 * number of failures, so a program whose every test skipped exits 0 and CTest reports it as
 * "Passed". DR_SKIP() prints the reason, counts the skip and calls skip(); main() returns
 * dr_test_exit(cmocka_run_group_tests(...)), which turns "nothing failed, something skipped"
 * into DR_SKIP_EXIT_CODE. dr_add_test (cmake/DrTest.cmake) sets SKIP_RETURN_CODE to that code
 * on every test, so CTest shows "Skipped" for the whole program (a failure still wins).
 * Use only from the test program's main thread, in the file that holds main().
 */
#ifndef DR_TESTS_COMMON_SKIP_H
#define DR_TESTS_COMMON_SKIP_H

#include <stdio.h>

/* The exit code CTest reads as "Skipped" (SKIP_RETURN_CODE in cmake/DrTest.cmake). */
#define DR_SKIP_EXIT_CODE 77

/* How many tests of this program called DR_SKIP (one translation unit: the one with main). */
static int dr_skipped_tests;

/* Skips the current cmocka test with a printf-style reason ("SKIP: <reason>" on stdout). */
#define DR_SKIP(...)                                                                               \
    do {                                                                                           \
        printf("SKIP: " __VA_ARGS__);                                                              \
        printf("\n");                                                                              \
        fflush(stdout);                                                                            \
        dr_skipped_tests++;                                                                        \
        skip();                                                                                    \
    } while (0)

/* main()'s exit status from cmocka_run_group_tests()'s failure count: the failures when any,
 * else DR_SKIP_EXIT_CODE when a test skipped, else 0. */
static inline int dr_test_exit(int failures) {
    if (failures != 0)
        return failures;
    return dr_skipped_tests > 0 ? DR_SKIP_EXIT_CODE : 0;
}

#endif
