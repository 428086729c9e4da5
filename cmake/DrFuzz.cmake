# dr_add_fuzzer(NAME name SOURCES a.c ... [LIBS lib...])
# Builds a libFuzzer target into build/bin/fuzz/ (only with -DDR_FUZZ=ON and clang). List the
# code under test in SOURCES (not only via LIBS) so that it is compiled with coverage
# instrumentation; LIBS are linked as they are. Run: build/bin/fuzz/<name> -max_total_time=60
function(dr_add_fuzzer)
  cmake_parse_arguments(F "" "NAME" "SOURCES;LIBS" ${ARGN})
  add_executable(${F_NAME} ${F_SOURCES})
  target_compile_options(${F_NAME} PRIVATE -fsanitize=fuzzer,address,undefined -fno-omit-frame-pointer)
  target_link_options(${F_NAME} PRIVATE -fsanitize=fuzzer,address,undefined)
  target_include_directories(${F_NAME} PRIVATE ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(${F_NAME} PRIVATE ${F_LIBS})
  set_target_properties(${F_NAME} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin/fuzz)
endfunction()
