# dr_add_test(NAME name SOURCES a.c b.c LIBS lib... [TIMEOUT s] [LABELS l...])
# Builds a cmocka test program into build/bin/tests/ and registers it with CTest.
# A program that skips (DR_SKIP, tests/common/skip.h) exits 77, which CTest shows as "Skipped".
# LABELS testdata: the test needs ../shared/testdata and must not skip where it exists
# (scripts/check-skips.sh).
# Each test runs in its own process with a timeout (CTest), as libuv's runner does.
function(dr_add_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS;ARGS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  math(EXPR T_TIMEOUT "${T_TIMEOUT} * ${DR_TEST_TIMEOUT_SCALE}") # sanitizer builds run slower
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} PkgConfig::CMOCKA)
  target_include_directories(${T_NAME} PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/tests)
  set_target_properties(${T_NAME} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin/tests)
  add_test(NAME ${T_NAME} COMMAND ${T_NAME} ${T_ARGS})
  # Exit code 77 is a skip (tests/common/skip.h): CTest shows "Skipped", not "Passed".
  set_tests_properties(${T_NAME} PROPERTIES TIMEOUT ${T_TIMEOUT} SKIP_RETURN_CODE 77
    ENVIRONMENT "DR_SOURCE_DIR=${PROJECT_SOURCE_DIR};DR_BIN_DIR=${CMAKE_BINARY_DIR}/bin")
  if(T_LABELS)
    set_tests_properties(${T_NAME} PROPERTIES LABELS "${T_LABELS}")
  endif()
endfunction()
