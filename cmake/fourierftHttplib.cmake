# cpp-httplib, for `fourierft serve` (fourierft_cli) and test_serve only: the library itself does not
# need it. Debian's libcpp-httplib-dev ships httplib.h as declarations with the implementation in
# libcpp-httplib.so, and a pkg-config file whose flags (SSL / zlib / brotli support) must match how
# that library was built, so it is found through pkg-config, never by the header alone.
# Sets FOURIERFT_HTTPLIB_FOUND and the target PkgConfig::FOURIERFT_HTTPLIB; FOURIERFT_HTTPLIB_MISSING
# is the message a target that needs it prints when it is absent.
find_package(PkgConfig QUIET)
if(PkgConfig_FOUND AND NOT TARGET PkgConfig::FOURIERFT_HTTPLIB)
  pkg_check_modules(FOURIERFT_HTTPLIB QUIET IMPORTED_TARGET cpp-httplib)
endif()
find_package(Threads REQUIRED)
set(FOURIERFT_HTTPLIB_MISSING
    "cpp-httplib was not found (pkg-config cpp-httplib; Debian: apt-get install libcpp-httplib-dev)")
