// fourierft/version.hpp — the library's version as macros and a constant. CMakeLists.txt's
// project(VERSION) must say the same: configuring checks it, so the two cannot drift apart.
#pragma once

#define FOURIERFT_VERSION_MAJOR 0
#define FOURIERFT_VERSION_MINOR 1
#define FOURIERFT_VERSION_PATCH 0
#define FOURIERFT_VERSION_STRING "0.1.0"
// One comparable number: 10000·major + 100·minor + patch (0.1.0 -> 100).
#define FOURIERFT_VERSION \
  (FOURIERFT_VERSION_MAJOR * 10000 + FOURIERFT_VERSION_MINOR * 100 + FOURIERFT_VERSION_PATCH)

namespace fourierft {
inline constexpr const char* version_string = FOURIERFT_VERSION_STRING;
}  // namespace fourierft
