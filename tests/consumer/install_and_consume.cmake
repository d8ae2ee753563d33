# ctest script: install a libwriteapi to a scratch prefix, then configure,
# build and run tests/consumer/project against it.
# Variables: SOURCE_DIR (the consumer), WORK_DIR, GENERATOR, VERSION (the
# project's), SHARED and WITH_CLICKHOUSE (ON or OFF: the variant); BUILD_DIR,
# a build of that variant to install, or empty to build the library alone
# from LIBRARY_SOURCE_DIR (with BUILD_TYPE and SANITIZE) under
# WORK_DIR/library; optional CXX_COMPILER (the build's) and LINK_FLAGS (a
# sanitizer runtime).
#
# Beyond building and running, it checks what each variant promises: built
# without ClickHouse, neither the library nor its package needs cpp-httplib;
# a shared library's package looks for none of its dependencies (nor
# pkg-config), and the library exports none of their symbols.
file(REMOVE_RECURSE ${WORK_DIR}/prefix ${WORK_DIR}/build)
file(MAKE_DIRECTORY ${WORK_DIR})
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

set(compiler_args "")
if(CXX_COMPILER)
  list(APPEND compiler_args -DCMAKE_CXX_COMPILER=${CXX_COMPILER})
endif()
# Without ClickHouse, configuring the library and the consumer runs with a
# pkg-config that finds no package, so cpp-httplib cannot be found.
# (Disabling pkg-config altogether is not possible: CMake's FindOpenSSL,
# which a static library's package calls, uses it.)
set(no_pkg_config_packages "")
if(NOT WITH_CLICKHOUSE)
  file(MAKE_DIRECTORY ${WORK_DIR}/no-pkg-config)
  set(no_pkg_config_packages ${CMAKE_COMMAND} -E env --unset=PKG_CONFIG_PATH
      PKG_CONFIG_LIBDIR=${WORK_DIR}/no-pkg-config)
endif()
# What a consumer's configure may not find: a shared library's private
# dependencies (below).
set(disabled_packages "")

if(NOT BUILD_DIR)
  set(BUILD_DIR ${WORK_DIR}/library)
  run(${no_pkg_config_packages} ${CMAKE_COMMAND} -S ${LIBRARY_SOURCE_DIR} -B ${BUILD_DIR} -G ${GENERATOR} ${compiler_args}
      -DCMAKE_BUILD_TYPE=${BUILD_TYPE} -DWRITEAPI_SANITIZE=${SANITIZE}
      -DBUILD_SHARED_LIBS=${SHARED} -DWRITEAPI_WITH_CLICKHOUSE=${WITH_CLICKHOUSE} -DWRITEAPI_INSTALL=ON
      -DWRITEAPI_BUILD_SERVER=OFF -DWRITEAPI_BUILD_TESTS=OFF -DWRITEAPI_BUILD_EXAMPLES=OFF
      -DWRITEAPI_BUILD_BENCHMARKS=OFF)
  run(${CMAKE_COMMAND} --build ${BUILD_DIR} --target writeapi)
endif()
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix --component Unspecified)

if(SHARED)
  file(GLOB_RECURSE libraries ${WORK_DIR}/prefix/*/libwriteapi.so)
  file(GLOB_RECURSE archives ${WORK_DIR}/prefix/*/libwriteapi.a)
  if(NOT libraries OR archives)
    message(FATAL_ERROR "a shared install has libwriteapi.so and no libwriteapi.a: ${libraries} ${archives}")
  endif()
  list(APPEND disabled_packages -DCMAKE_DISABLE_FIND_PACKAGE_simdjson=ON -DCMAKE_DISABLE_FIND_PACKAGE_OpenSSL=ON
       -DCMAKE_DISABLE_FIND_PACKAGE_ZLIB=ON -DCMAKE_DISABLE_FIND_PACKAGE_PkgConfig=ON)
  # Hidden visibility: the public API is exported, the dependencies'
  # inline code compiled into the library is not.
  execute_process(COMMAND nm -DC --defined-only ${libraries} RESULT_VARIABLE rc OUTPUT_VARIABLE symbols)
  if(NOT rc EQUAL 0 OR NOT symbols MATCHES "writeapi::parse\\(")
    message(FATAL_ERROR "libwriteapi.so does not export writeapi::parse (nm: ${rc})")
  endif()
  if(symbols MATCHES "simdjson|httplib|nlohmann")
    string(REGEX MATCHALL "[^\n]*(simdjson|httplib|nlohmann)[^\n]*" leaked "${symbols}")
    message(FATAL_ERROR "libwriteapi.so exports its dependencies' symbols:\n${leaked}")
  endif()
endif()

if(LINK_FLAGS)
  list(APPEND compiler_args -DCMAKE_EXE_LINKER_FLAGS=${LINK_FLAGS})
endif()
run(${no_pkg_config_packages} ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/build -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_BUILD_TYPE=Release ${compiler_args} ${disabled_packages}
    -DWRITEAPI_EXPECTED_VERSION=${VERSION} -DWRITEAPI_EXPECT_CLICKHOUSE=${WITH_CLICKHOUSE})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/consumer)
