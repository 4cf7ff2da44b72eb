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
if(FOURIERFT_USE_BLAS)
  pkg_check_modules(FOURIERFT_OPENBLAS REQUIRED IMPORTED_TARGET openblas)
endif()
