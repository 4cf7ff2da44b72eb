// examples/stb_image_write.hpp — stb_image_write's PNG encoder and stb_easy_font's quad font
// (Debian libstb-dev), compiled into each translation unit as private static functions. For plot.hpp.
#pragma once

// fourierft is header-only, so there is no library to hold stb's implementation: every translation
// unit that includes this header gets its own static copy (STB_IMAGE_WRITE_STATIC), which cannot
// clash at link time. Files are written by plot.hpp through util/atomic_file.hpp, so stb's own
// stdio writers are compiled out (STBI_WRITE_NO_STDIO). stb_easy_font is static since its v1.1.
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO

#if defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Weverything"
#elif defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-variable"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wconversion"
#pragma GCC diagnostic ignored "-Wsign-conversion"
#pragma GCC diagnostic ignored "-Wdouble-promotion"
#pragma GCC diagnostic ignored "-Wcast-qual"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wold-style-cast"
#pragma GCC diagnostic ignored "-Wuseless-cast"
#pragma GCC diagnostic ignored "-Wduplicated-branches"
#pragma GCC diagnostic ignored "-Wstrict-aliasing"
#endif
#include <stb/stb_image_write.h>
#include <stb/stb_easy_font.h>
#if defined(__clang__)
#pragma clang diagnostic pop
#elif defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#undef STB_IMAGE_WRITE_IMPLEMENTATION
