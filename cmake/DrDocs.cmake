# Target `docs`: the API reference of include/derecho/ with doxygen (docs/Doxyfile), written
# to build/docs/html/. Not part of `all`; fails on any doxygen warning. Needs Debian's doxygen
# (scripts/install-deps.sh); without it the target only says so and fails.
find_program(DOXYGEN_EXECUTABLE doxygen)
if(DOXYGEN_EXECUTABLE)
  set(dr_docs_command ${DOXYGEN_EXECUTABLE} ${PROJECT_SOURCE_DIR}/docs/Doxyfile)
else()
  set(dr_docs_command ${CMAKE_COMMAND} -E echo "docs: doxygen not found (scripts/install-deps.sh)"
      COMMAND ${CMAKE_COMMAND} -E false)
endif()
add_custom_target(docs
  COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/docs
  COMMAND ${CMAKE_COMMAND} -E env DR_SOURCE_DIR=${PROJECT_SOURCE_DIR}
          DR_DOCS_OUT=${CMAKE_BINARY_DIR}/docs DR_VERSION=${PROJECT_VERSION} ${dr_docs_command}
  WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
  COMMENT "doxygen: API reference in ${CMAKE_BINARY_DIR}/docs/html"
  VERBATIM)
