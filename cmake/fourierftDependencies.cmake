# Finds everything fourierft::fourierft links against. Included by the top-level CMakeLists.txt and
# by the installed fourierftConfig.cmake, so a consumer re-finds exactly the same dependencies.
include(CMakeFindDependencyMacro)
find_dependency(Eigen3 3.3 NO_MODULE)
find_dependency(OpenMP)
find_dependency(nlohmann_json 3)
find_dependency(PkgConfig)
pkg_check_modules(FOURIERFT_FFTW REQUIRED IMPORTED_TARGET fftw3 fftw3f)
pkg_check_modules(FOURIERFT_PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
# FFTW's OpenMP threading libraries are not described by pkg-config: look beside libfftw3.
find_library(FOURIERFT_FFTW3_OMP NAMES fftw3_omp HINTS ${FOURIERFT_FFTW_LIBRARY_DIRS} REQUIRED)
find_library(FOURIERFT_FFTW3F_OMP NAMES fftw3f_omp HINTS ${FOURIERFT_FFTW_LIBRARY_DIRS} REQUIRED)
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
  pkg_check_modules(FOURIERFT_OPENBLAS REQUIRED IMPORTED_TARGET openblas)
  set(ENV{PKG_CONFIG_PATH} "${_fourierft_saved_pkg_config_path}")
endif()
