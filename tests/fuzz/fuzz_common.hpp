// tests/fuzz/fuzz_common.hpp — what every libFuzzer harness shares: the input as a file (the
// readers take paths), splitting one input into several files, and the rule "fourierft::Error
// is a clean rejection; anything else (crash, other exception, sanitizer report) is a finding".
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "fourierft/core/error.hpp"

namespace fuzz {

// A per-process scratch directory (libFuzzer's -jobs / -fork run harnesses in parallel).
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    auto d = std::filesystem::temp_directory_path() / ("fourierft_fuzz_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

inline std::filesystem::path write_file(std::string_view name, std::string_view bytes) {
  const std::filesystem::path path = scratch_dir() / std::string(name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

// Splits the input at the separator line "\n#--\n" (the seed corpora use it to hold several
// files in one input); missing parts are empty.
inline std::vector<std::string_view> split_parts(std::string_view input, std::size_t parts) {
  std::vector<std::string_view> out;
  constexpr std::string_view separator = "\n#--\n";
  while (out.size() + 1 < parts) {
    const std::size_t at = input.find(separator);
    if (at == std::string_view::npos) break;
    out.push_back(input.substr(0, at));
    input.remove_prefix(at + separator.size());
  }
  out.push_back(input);
  while (out.size() < parts) out.emplace_back();
  return out;
}

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace fuzz

// Runs `body`; fourierft::Error is an expected rejection of malformed input.
#define FOURIERFT_FUZZ_GUARD(body) \
  try {                            \
    body;                          \
  } catch (const fourierft::Error&) { \
  }
