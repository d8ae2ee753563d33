# ctest script: install the built libwriteapi to a scratch prefix, then
# configure, build and run tests/consumer/project against it.
# Variables: BUILD_DIR, SOURCE_DIR, WORK_DIR, GENERATOR; optional
# CXX_COMPILER (the build's) and LINK_FLAGS (a sanitizer runtime).
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix --component Unspecified)
set(compiler_args "")
if(CXX_COMPILER)
  list(APPEND compiler_args -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
endif()
if(LINK_FLAGS)
  list(APPEND compiler_args -DCMAKE_EXE_LINKER_FLAGS=${LINK_FLAGS})
endif()
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/build -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_BUILD_TYPE=Release ${compiler_args})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/consumer)
