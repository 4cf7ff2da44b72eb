// fourierft inspect — what a safetensors file holds: each tensor's name, dtype and shape, the
// metadata, and the total parameter count (a FourierFT adapter of RoBERTa-base, n = 1000: 24,000).
//
//   fourierft inspect adapter_model.safetensors            (tensors in file order)
//   fourierft inspect model.safetensors --sorted           (tensors sorted by name)
#pragma once

#include <algorithm>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/io/safetensors.hpp"
#include "fourierft/util/args.hpp"

namespace fourierft::cli {

namespace detail {
// 124439808 -> "124,439,808".
inline std::string with_commas(Index n) {
  // The magnitude as unsigned: -n would overflow for the most negative Index.
  const auto magnitude = n < 0 ? std::uint64_t(0) - static_cast<std::uint64_t>(n)
                               : static_cast<std::uint64_t>(n);
  std::string digits = std::to_string(magnitude), out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}
}  // namespace detail

// Writes the report to `out` (the test calls it with a string stream).
inline int inspect(const std::vector<std::string>& args, std::ostream& out) {
  util::Args options(args, {"--help", "--sorted"});
  if (options.has("--help")) {
    out << "usage: fourierft inspect FILE.safetensors [--sorted]\n"
           "Prints each tensor's name, dtype, shape and element count (in file order, or\n"
           "sorted by name with --sorted), the metadata, and the total parameter count.\n";
    return 0;
  }
  const bool sorted = options.has("--sorted");
  options.reject_unknown();
  check(options.positional().size() == 1, "inspect: expected one FILE.safetensors, got ",
        options.positional().size(), " arguments (see --help)");

  const io::SafetensorsFile file(options.positional()[0]);
  const std::ios_base::fmtflags saved_flags = out.flags();  // std::left below is sticky
  const std::vector<std::string> names = sorted ? file.sorted_names() : file.names();
  std::size_t name_width = 4, shape_width = 5;
  for (const std::string& name : names) {
    name_width = std::max(name_width, name.size());
    shape_width = std::max(shape_width, shape_str(file.info(name).shape).size());
  }
  auto row = [&](const std::string& name, std::string_view dtype, const std::string& shape,
                 const std::string& elements) {
    out << "  " << std::left << std::setw(static_cast<int>(name_width)) << name << "  "
        << std::setw(5) << dtype << "  " << std::setw(static_cast<int>(shape_width)) << shape
        << "  " << elements << "\n";
  };
  out << file.path() << ": " << file.size() << " tensors\n";
  if (!names.empty()) row("name", "dtype", "shape", "elements");
  for (const std::string& name : names) {
    const io::TensorInfo& t = file.info(name);
    row(name, io::dtype_name(t.dtype), shape_str(t.shape), detail::with_commas(t.numel()));
  }
  out << (file.metadata().empty() ? "metadata: none\n" : "metadata:\n");
  for (const auto& [key, value] : file.metadata()) out << "  " << key << ": " << value << "\n";
  out << "total parameters: " << detail::with_commas(file.num_elements()) << "\n";
  out.flags(saved_flags);
  return 0;
}

inline int cmd_inspect(const std::vector<std::string>& args) { return inspect(args, std::cout); }

}  // namespace fourierft::cli
