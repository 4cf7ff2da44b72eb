# Finds everything fourierft::fourierft links against. Included by the top-level CMakeLists.txt and
# by the installed fourierftConfig.cmake, so a consumer re-finds exactly the same dependencies.
#
# A missing dependency is reported by name. Building fourierft itself, that stops configuring at
# once. Inside a consumer's find_package(fourierft) it makes the package not found instead (with
# the reason, unless QUIET), so find_package(fourierft QUIET) never aborts the consumer's configure.
include(CMakeFindDependencyMacro)
if(CMAKE_FIND_PACKAGE_NAME STREQUAL "fourierft")
  set(_fourierft_in_find_package TRUE)
else()
  set(_fourierft_in_find_package FALSE)
endif()

# Reports the missing dependency `what` (its Debian package `debian`): a fatal error when building
# fourierft, else fourierft_FOUND = FALSE with the reason, and the including file returns.
macro(_fourierft_missing what debian)
  if(_fourierft_in_find_package)
    set(fourierft_FOUND FALSE)
    set(fourierft_NOT_FOUND_MESSAGE "fourierft needs ${what} (Debian: ${debian}), which was not found")
    return()
  endif()
  message(FATAL_ERROR "fourierft needs ${what}, which was not found (Debian: apt-get install "
                      "${debian}; or run scripts/install-deps.sh)")
endmacro()

find_package(Eigen3 3.3 QUIET NO_MODULE)
if(NOT Eigen3_FOUND)
  _fourierft_missing("Eigen 3.3 or newer" libeigen3-dev)
endif()
find_package(OpenMP QUIET)
if(NOT OpenMP_CXX_FOUND)
  _fourierft_missing("OpenMP for C++" "g++ (libgomp)")
endif()
find_package(nlohmann_json 3 QUIET)
if(NOT nlohmann_json_FOUND)
  _fourierft_missing("nlohmann_json 3" nlohmann-json3-dev)
endif()
find_package(PkgConfig QUIET)
if(NOT PKG_CONFIG_FOUND)
  _fourierft_missing("pkg-config" pkg-config)
endif()
pkg_check_modules(FOURIERFT_FFTW QUIET IMPORTED_TARGET fftw3 fftw3f)
if(NOT FOURIERFT_FFTW_FOUND)
  _fourierft_missing("FFTW 3 (double and float)" libfftw3-dev)
endif()
pkg_check_modules(FOURIERFT_PCRE2 QUIET IMPORTED_TARGET libpcre2-8)
if(NOT FOURIERFT_PCRE2_FOUND)
  _fourierft_missing("PCRE2 (8-bit)" libpcre2-dev)
endif()
# JPEG decoding: libjpeg-turbo, the library Pillow decodes with (Debian libjpeg62-turbo-dev).
pkg_check_modules(FOURIERFT_JPEG QUIET IMPORTED_TARGET libjpeg)
if(NOT FOURIERFT_JPEG_FOUND)
  _fourierft_missing("libjpeg (libjpeg-turbo)" libjpeg-dev)
endif()
# FFTW's OpenMP threading libraries are not described by pkg-config: look beside libfftw3. They
# become imported targets, found again here by an installed package's consumer, so the exported
# target names them (fourierft::fftw3_omp) instead of holding this machine's paths.
find_library(FOURIERFT_FFTW3_OMP NAMES fftw3_omp HINTS ${FOURIERFT_FFTW_LIBRARY_DIRS})
find_library(FOURIERFT_FFTW3F_OMP NAMES fftw3f_omp HINTS ${FOURIERFT_FFTW_LIBRARY_DIRS})
if(NOT FOURIERFT_FFTW3_OMP OR NOT FOURIERFT_FFTW3F_OMP)
  _fourierft_missing("FFTW's OpenMP libraries fftw3_omp and fftw3f_omp" libfftw3-dev)
endif()
foreach(_fourierft_lib fftw3_omp fftw3f_omp)
  string(TOUPPER ${_fourierft_lib} _fourierft_var)
  if(NOT TARGET fourierft::${_fourierft_lib})
    add_library(fourierft::${_fourierft_lib} UNKNOWN IMPORTED)
    set_target_properties(fourierft::${_fourierft_lib} PROPERTIES
      IMPORTED_LOCATION ${FOURIERFT_${_fourierft_var}})
  endif()
endforeach()
# stb_image (header only, Debian libstb-dev), for PNG: included as <stb/stb_image.h>.
find_path(FOURIERFT_STB_INCLUDE_DIR stb/stb_image.h)
if(NOT FOURIERFT_STB_INCLUDE_DIR)
  _fourierft_missing("stb_image (stb/stb_image.h)" libstb-dev)
endif()
if(NOT TARGET fourierft::stb)
  add_library(fourierft::stb INTERFACE IMPORTED)
  set_target_properties(fourierft::stb PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES ${FOURIERFT_STB_INCLUDE_DIR})
endif()
# OpenBLAS: Debian ships a pthreads build (the system default) and an OpenMP build side by side
# (/usr/lib/<arch>/openblas-{pthread,openmp}/, same SONAME). fourierft prefers the OpenMP build:
# its GEMMs then run in the same libgomp thread team as fourierft's own loops. With the pthreads
# build the two pools spin against each other after every switch between a GEMM and an OpenMP
# loop; on 2 cores that made a FourierFT layer's forward+backward ~2x slower (docs/performance.md).
# FOURIERFT_OPENBLAS_THREADING = openmp (default; falls back to the system build if the OpenMP one
# is not installed), pthread, or system (whatever pkg-config's `openblas` resolves to).
if(FOURIERFT_USE_BLAS)
  if(NOT DEFINED FOURIERFT_OPENBLAS_THREADING)
    set(FOURIERFT_OPENBLAS_THREADING openmp)
  endif()
  set(_fourierft_saved_pkg_config_path "$ENV{PKG_CONFIG_PATH}")
  if(FOURIERFT_OPENBLAS_THREADING MATCHES "^(openmp|pthread)$")
    find_path(FOURIERFT_OPENBLAS_PC_DIR openblas.pc
              PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-${FOURIERFT_OPENBLAS_THREADING}/pkgconfig
              NO_DEFAULT_PATH)
    if(FOURIERFT_OPENBLAS_PC_DIR)
      set(ENV{PKG_CONFIG_PATH} "${FOURIERFT_OPENBLAS_PC_DIR}:$ENV{PKG_CONFIG_PATH}")
    elseif(NOT FOURIERFT_OPENBLAS_PC_DIR_WARNED)
      message(STATUS "fourierft: OpenBLAS ${FOURIERFT_OPENBLAS_THREADING} build not found "
                     "(Debian: libopenblas-${FOURIERFT_OPENBLAS_THREADING}-dev); using the system one")
      set(FOURIERFT_OPENBLAS_PC_DIR_WARNED ON CACHE INTERNAL "")
    endif()
  endif()
  pkg_check_modules(FOURIERFT_OPENBLAS QUIET IMPORTED_TARGET openblas)
  set(ENV{PKG_CONFIG_PATH} "${_fourierft_saved_pkg_config_path}")
  if(NOT FOURIERFT_OPENBLAS_FOUND)
    _fourierft_missing("OpenBLAS (or configure with -DFOURIERFT_USE_BLAS=OFF)" libopenblas-dev)
  endif()
endif()
