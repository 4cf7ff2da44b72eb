// fourierft/detail/kept_per_size.hpp — tables made once per size and kept for the process.
#pragma once

#include <map>
#include <memory>
#include <mutex>

#include "fourierft/core/tensor.hpp"

namespace fourierft::detail {

// The T built as T(size) on the first request for `size`, the same object on every later one.
// Thread-safe; never freed (the map outlives every static that may still use a table at exit).
template <class T>
const T& kept_per_size(Index size) {
  static std::mutex mutex;
  static auto* const made = new std::map<Index, std::unique_ptr<const T>>;
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = (*made)[size];
  if (!slot) slot = std::make_unique<const T>(size);
  return *slot;
}

}  // namespace fourierft::detail
