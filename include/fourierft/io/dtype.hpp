// fourierft/io/dtype.hpp — the element types of safetensors files (F32, BF16, I64, ...): names,
// sizes, parsing. Shared by io/safetensors.hpp and core/half.hpp (HalfMatrix's BF16 / F16).
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace fourierft::io {

// ---------------------------------------------------------------------------
// Element types, in Hugging Face's order of increasing alignment (its writer sorts by this order,
// descending). Floating types load into Tensor<float/double>, integer ones into Tensor<int64_t>.
enum class Dtype { BOOL, U8, I8, I16, F16, BF16, I32, F32, F64, I64 };

inline constexpr Dtype all_dtypes[] = {Dtype::BOOL, Dtype::U8,  Dtype::I8,  Dtype::I16, Dtype::F16,
                                       Dtype::BF16, Dtype::I32, Dtype::F32, Dtype::F64, Dtype::I64};

inline std::string_view dtype_name(Dtype d) {
  switch (d) {
    case Dtype::BOOL: return "BOOL";
    case Dtype::U8: return "U8";
    case Dtype::I8: return "I8";
    case Dtype::I16: return "I16";
    case Dtype::F16: return "F16";
    case Dtype::BF16: return "BF16";
    case Dtype::I32: return "I32";
    case Dtype::F32: return "F32";
    case Dtype::F64: return "F64";
    case Dtype::I64: return "I64";
  }
  return "?";
}
inline std::optional<Dtype> parse_dtype(std::string_view name) {
  for (Dtype d : all_dtypes)
    if (dtype_name(d) == name) return d;
  return std::nullopt;
}
inline std::size_t dtype_size(Dtype d) {
  switch (d) {
    case Dtype::BOOL:
    case Dtype::U8:
    case Dtype::I8: return 1;
    case Dtype::I16:
    case Dtype::F16:
    case Dtype::BF16: return 2;
    case Dtype::I32:
    case Dtype::F32: return 4;
    case Dtype::F64:
    case Dtype::I64: return 8;
  }
  return 0;
}
inline bool is_floating(Dtype d) {
  return d == Dtype::F16 || d == Dtype::BF16 || d == Dtype::F32 || d == Dtype::F64;
}

}  // namespace fourierft::io
