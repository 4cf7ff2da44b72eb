# Builds and runs tests/cmake_consumer against fourierft, as a CTest test (cmake -P):
#   MODE=find_package   configure fourierft alone (no tests/examples), `cmake --install` it into
#                       WORK_DIR/prefix, then build the consumer with find_package(fourierft)
#                       — then moves the installed tree to WORK_DIR/moved (an install must be relocatable)
#                       and builds the consumer with find_package(fourierft) from there
#   MODE=subdirectory   build the consumer with add_subdirectory(SOURCE_DIR)
#   MODE=pkgconfig      install and move as find_package does, then compile main.cpp with the flags of
#                       `pkg-config --cflags --libs fourierft` (the moved tree's lib/pkgconfig)
# Inputs: MODE, SOURCE_DIR, WORK_DIR, GENERATOR, CXX_COMPILER, USE_BLAS. Any failing step fails.
cmake_minimum_required(VERSION 3.21)
foreach(var MODE SOURCE_DIR WORK_DIR GENERATOR CXX_COMPILER USE_BLAS)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_consumer.cmake: -D${var}=... is required")
  endif()
endforeach()

file(REMOVE_RECURSE ${WORK_DIR})
set(common -G ${GENERATOR} -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
           -DFOURIERFT_USE_BLAS=${USE_BLAS})

function(run)
  message(STATUS "run_consumer: ${ARGN}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "run_consumer: failed (${rc}): ${ARGN}")
  endif()
endfunction()

if(MODE STREQUAL "find_package" OR MODE STREQUAL "pkgconfig")
  run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/fourierft-build ${common}
      -DFOURIERFT_BUILD_TESTS=OFF -DFOURIERFT_BUILD_EXAMPLES=OFF -DFOURIERFT_BUILD_BENCHMARKS=OFF)
  run(${CMAKE_COMMAND} --install ${WORK_DIR}/fourierft-build --prefix ${WORK_DIR}/prefix)
  file(RENAME ${WORK_DIR}/prefix ${WORK_DIR}/moved)
  set(consumer_args -DCMAKE_PREFIX_PATH=${WORK_DIR}/moved)
  if(MODE STREQUAL "pkgconfig")
    file(GLOB_RECURSE pc_file ${WORK_DIR}/moved/*/fourierft.pc)
    if(NOT pc_file)
      message(FATAL_ERROR "run_consumer: no fourierft.pc installed under ${WORK_DIR}/moved")
    endif()
    get_filename_component(pc_dir ${pc_file} DIRECTORY)
    set(ENV{PKG_CONFIG_PATH} ${pc_dir})
    execute_process(COMMAND pkg-config --cflags --libs fourierft OUTPUT_VARIABLE flags
                    RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "run_consumer: pkg-config --cflags --libs fourierft failed (${rc})")
    endif()
    separate_arguments(flags UNIX_COMMAND "${flags}")
    file(MAKE_DIRECTORY ${WORK_DIR}/consumer-build)
    run(${CXX_COMPILER} -O1 ${SOURCE_DIR}/tests/cmake_consumer/main.cpp ${flags}
        -o ${WORK_DIR}/consumer-build/consumer)
    run(${WORK_DIR}/consumer-build/consumer)
    return()
  endif()
elseif(MODE STREQUAL "subdirectory")
  set(consumer_args -DCONSUMER_USE_SUBDIRECTORY=ON -DFOURIERFT_SOURCE_DIR=${SOURCE_DIR})
else()
  message(FATAL_ERROR "run_consumer.cmake: MODE must be find_package, subdirectory or pkgconfig, got '${MODE}'")
endif()

run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/cmake_consumer -B ${WORK_DIR}/consumer-build ${common}
    ${consumer_args})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer-build)
run(${WORK_DIR}/consumer-build/consumer)
