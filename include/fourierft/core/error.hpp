// fourierft/core/error.hpp — the exception hierarchy and the check_* helpers every header uses.
// Messages name the op or file, the argument or tensor, and expected vs actual; nothing here exits.
#pragma once

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace fourierft {

// Base class of everything fourierft throws. Catch this in programs; what() is one readable line.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
// Shapes that do not fit an op ("linear: x has shape (4, 7) but weight (3, 5) expects last dim 5").
class ShapeError : public Error {
 public:
  using Error::Error;
};
// An index outside its range (embedding ids, slices, labels).
class IndexError : public Error {
 public:
  using Error::Error;
};
// A file that cannot be opened, read or written.
class IoError : public Error {
 public:
  using Error::Error;
};
// A file or string whose content is malformed (safetensors header, JSON, TSV row, config field).
class FormatError : public Error {
 public:
  using Error::Error;
};
// An argument with a bad value (n <= 0, negative probability, unknown option) or a NaN/Inf loss.
class ValueError : public Error {
 public:
  using Error::Error;
};

using Index = std::int64_t;
using Shape = std::vector<Index>;

// "(4, 7)"; a scalar's empty shape prints as "()".
inline std::string shape_str(const Shape& shape) {
  std::ostringstream out;
  out << '(';
  for (std::size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ')';
  return out.str();
}

// Builds a message from any streamable pieces: str_cat("x has ", 3, " dims").
template <class... Parts>
std::string str_cat(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

template <class E = ValueError, class... Parts>
void check(bool condition, const Parts&... message) {
  if (!condition) throw E(str_cat(message...));
}

}  // namespace fourierft
