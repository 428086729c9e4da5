# dr_add_fuzzer(NAME name SOURCES harness.c ... [UNDER_TEST code.c ...] [LIBS lib...]
#               [FUZZ_LIBS lib...] [REPLAY_LIBS lib...] [TIMEOUT s])
#
# Declares fuzz target `name` (an LLVMFuzzerTestOneInput in SOURCES) and the CTest test
# `name_corpus` (label fuzz) that runs every file of fuzz/corpus/<name>/ through it once.
#
# With -DDR_FUZZ=ON (clang): build/bin/fuzz/<name> is a libFuzzer binary built with
#   -fsanitize=fuzzer,address,undefined from SOURCES + UNDER_TEST (list the code under test in
#   UNDER_TEST, so that it is compiled with coverage instrumentation), linked with LIBS and
#   FUZZ_LIBS. Fuzz: build/bin/fuzz/<name> -max_total_time=60 fuzz/corpus/<name>
#   The corpus test runs it with -runs=0 (each corpus input once, no mutation).
# Otherwise (gcc, the normal and sanitizer builds): build/bin/fuzz/<name> is SOURCES +
#   fuzz/replay_main.c (a standalone driver, no libFuzzer), linked with LIBS and REPLAY_LIBS;
#   when REPLAY_LIBS is empty the UNDER_TEST sources are compiled in instead.
#   Replay by hand: build/bin/fuzz/<name> fuzz/corpus/<name> [more files or dirs]
function(dr_add_fuzzer)
  cmake_parse_arguments(F "" "NAME;TIMEOUT" "SOURCES;UNDER_TEST;LIBS;FUZZ_LIBS;REPLAY_LIBS" ${ARGN})
  if(NOT F_TIMEOUT)
    set(F_TIMEOUT 120)
  endif()
  set(corpus ${PROJECT_SOURCE_DIR}/fuzz/corpus/${F_NAME})
  if(DR_FUZZ)
    add_executable(${F_NAME} ${F_SOURCES} ${F_UNDER_TEST})
    target_compile_options(${F_NAME} PRIVATE -fsanitize=fuzzer,address,undefined
      -fno-sanitize-recover=undefined -fno-omit-frame-pointer -UNDEBUG)
    target_link_options(${F_NAME} PRIVATE -fsanitize=fuzzer,address,undefined)
    target_link_libraries(${F_NAME} PRIVATE ${F_FUZZ_LIBS} ${F_LIBS})
    add_test(NAME ${F_NAME}_corpus COMMAND ${F_NAME} -runs=0 -rss_limit_mb=4096 ${corpus})
  else()
    if(F_REPLAY_LIBS)
      add_executable(${F_NAME} ${F_SOURCES} ${PROJECT_SOURCE_DIR}/fuzz/replay_main.c)
    else()
      add_executable(${F_NAME} ${F_SOURCES} ${F_UNDER_TEST} ${PROJECT_SOURCE_DIR}/fuzz/replay_main.c)
    endif()
    target_compile_options(${F_NAME} PRIVATE -UNDEBUG)
    target_link_libraries(${F_NAME} PRIVATE ${F_REPLAY_LIBS} ${F_LIBS})
    add_test(NAME ${F_NAME}_corpus COMMAND ${F_NAME} ${corpus})
  endif()
  target_include_directories(${F_NAME} PRIVATE ${PROJECT_SOURCE_DIR}/include
    ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/fuzz)
  set_target_properties(${F_NAME} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin/fuzz)
  set_tests_properties(${F_NAME}_corpus PROPERTIES LABELS fuzz TIMEOUT ${F_TIMEOUT}
    ENVIRONMENT "DR_SOURCE_DIR=${PROJECT_SOURCE_DIR};DR_BIN_DIR=${CMAKE_BINARY_DIR}/bin")
endfunction()
