// fourierft/io/safetensors.hpp — reading (memory-mapped, or streamed) and writing (atomic) Hugging
// Face safetensors files: checkpoints (model.safetensors) and adapters (adapter_model.safetensors).
#pragma once

// File layout (all little-endian):
//   [8 bytes]  N = header length, u64
//   [N bytes]  JSON header {"__metadata__": {str: str},                        (optional)
//                           name: {"dtype": "F32", "shape": [d0, ...], "data_offsets": [b, e]}, ...}
//              padded with spaces to a multiple of 8 bytes
//   [rest]     the data: tensor `name` is bytes [b, e) of this section, row-major. The tensors cover
//              the section exactly: no gaps, no overlaps, nothing after the last one.
// The reader checks all of that (as Hugging Face's reader does) and reports the first violation as a
// FormatError naming the file and the tensor. The writer produces the same bytes as Hugging Face's
// `safetensors` library: tensors ordered by dtype alignment (largest first), then by name;
// "__metadata__" first (its keys sorted; HF's order is a hash map's); compact JSON; space padding.

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <variant>
#include <vector>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "fourierft/core/error.hpp"
#include "fourierft/core/half.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/io/dtype.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/io/limits.hpp"
#include "fourierft/util/atomic_file.hpp"

namespace fourierft::io {

static_assert(
    std::endian::native == std::endian::little,
    "fourierft's safetensors I/O copies little-endian data as is: a little-endian host is "
    "required");

// The 16-bit conversions (bf16_to_float, float_to_bf16, f16_to_float, float_to_f16) live in
// core/half.hpp, beside HalfMatrix; they are visible here as io::... as before.
using fourierft::bf16_to_float;
using fourierft::f16_to_float;
using fourierft::float_to_bf16;
using fourierft::float_to_f16;

// ---------------------------------------------------------------------------
// One tensor's entry in the header; begin/end are byte offsets into the data section.
struct TensorInfo {
  std::string name;
  Dtype dtype = Dtype::F32;
  Shape shape;
  std::uint64_t begin = 0, end = 0;
  Index numel() const { return numel_of(shape); }
};

// How SafetensorsFile reaches the data: mmap(2) (the default; pages are read when touched), or
// reads on demand through a stream (used automatically when mmap fails, e.g. on a pipe).
enum class ReadMode { map, stream };

namespace detail {
// Hugging Face's limit on the header size (100 MB).
inline constexpr std::uint64_t max_header_bytes = 100'000'000;

inline std::uint64_t read_u64_le(const std::byte* p) {
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

// Decodes `n` elements of `dtype` at `src` into `dst` (float, double or int64_t).
template <class T>
void decode(Dtype dtype, const std::byte* src, T* dst, std::size_t n) {
  if (n == 0) return;  // an empty tensor's buffer may be null: no memcpy from or to it
  auto each = [&](auto raw_tag, auto convert) {
    using Raw = decltype(raw_tag);
    for (std::size_t i = 0; i < n; ++i) {
      Raw raw;
      std::memcpy(&raw, src + i * sizeof(Raw), sizeof(Raw));
      dst[i] = static_cast<T>(convert(raw));
    }
  };
  auto same = [](auto v) { return v; };
  switch (dtype) {
    case Dtype::F32:
      if constexpr (std::is_same_v<T, float>)
        std::memcpy(dst, src, n * sizeof(float));
      else
        each(float{}, same);
      break;
    case Dtype::F64:
      if constexpr (std::is_same_v<T, double>)
        std::memcpy(dst, src, n * sizeof(double));
      else
        each(double{}, same);
      break;
    case Dtype::I64:
      if constexpr (std::is_same_v<T, std::int64_t>)
        std::memcpy(dst, src, n * sizeof(T));
      else
        each(std::int64_t{}, same);
      break;
    case Dtype::F16: each(std::uint16_t{}, f16_to_float); break;
    case Dtype::BF16: each(std::uint16_t{}, bf16_to_float); break;
    case Dtype::I32: each(std::int32_t{}, same); break;
    case Dtype::I16: each(std::int16_t{}, same); break;
    case Dtype::I8: each(std::int8_t{}, same); break;
    case Dtype::U8: each(std::uint8_t{}, same); break;
    case Dtype::BOOL: each(std::uint8_t{}, [](std::uint8_t v) { return v != 0 ? 1 : 0; }); break;
  }
}

// The index of the first NaN or infinity among `n` raw elements of a floating-point `dtype`, or
// n if all are finite (integer dtypes: always n). Checks exponent bits only: no conversion.
inline std::size_t first_nonfinite(Dtype dtype, const std::byte* src, std::size_t n) {
  auto scan = [&](auto raw_tag, auto exponent_mask) -> std::size_t {
    using Raw = decltype(raw_tag);
    const auto mask = static_cast<Raw>(exponent_mask);
    constexpr std::size_t block = 4096;  // branch-free within a block, so the loop vectorises
    for (std::size_t start = 0; start < n; start += block) {
      const std::size_t end = std::min(n, start + block);
      bool bad = false;
      for (std::size_t i = start; i < end; ++i) {
        Raw raw;
        std::memcpy(&raw, src + i * sizeof(Raw), sizeof(Raw));
        bad |= (raw & mask) == mask;
      }
      if (!bad) continue;
      for (std::size_t i = start; i < end; ++i) {
        Raw raw;
        std::memcpy(&raw, src + i * sizeof(Raw), sizeof(Raw));
        if ((raw & mask) == mask) return i;
      }
    }
    return n;
  };
  switch (dtype) {
    case Dtype::F32: return scan(std::uint32_t{}, 0x7f800000u);
    case Dtype::F64: return scan(std::uint64_t{}, 0x7ff0000000000000ull);
    case Dtype::F16: return scan(std::uint16_t{}, 0x7c00u);
    case Dtype::BF16: return scan(std::uint16_t{}, 0x7f80u);
    default: return n;
  }
}

// SAX handler for the header: builds the document (nlohmann's DOM builder) and on the side records
// the top-level keys in order and the first key repeated inside one object (duplicate_in: the
// top-level key it is under, "" if it is a top-level key itself).
struct HeaderSax {
  using Json = nlohmann::json;
  nlohmann::detail::json_sax_dom_parser<Json> dom;
  std::vector<std::set<std::string>> open_objects;  // keys seen, one set per open object
  std::vector<std::string> top_level_keys;
  std::string duplicate, duplicate_in;

  explicit HeaderSax(Json& result) : dom(result) {}
  bool null() { return dom.null(); }
  bool boolean(bool v) { return dom.boolean(v); }
  bool number_integer(Json::number_integer_t v) { return dom.number_integer(v); }
  bool number_unsigned(Json::number_unsigned_t v) { return dom.number_unsigned(v); }
  bool number_float(Json::number_float_t v, const std::string& s) { return dom.number_float(v, s); }
  bool string(std::string& v) { return dom.string(v); }
  bool binary(Json::binary_t& v) { return dom.binary(v); }
  bool start_object(std::size_t n) {
    open_objects.emplace_back();
    return dom.start_object(n);
  }
  bool end_object() {
    open_objects.pop_back();
    return dom.end_object();
  }
  bool start_array(std::size_t n) { return dom.start_array(n); }
  bool end_array() { return dom.end_array(); }
  bool key(std::string& k) {
    if (open_objects.size() == 1) top_level_keys.push_back(k);
    if (!open_objects.back().insert(k).second && duplicate.empty()) {
      duplicate = k;
      duplicate_in = open_objects.size() == 1 ? std::string() : top_level_keys.back();
    }
    return dom.key(k);
  }
  template <class Exception>
  bool parse_error(std::size_t position, const std::string& token, const Exception& e) {
    return dom.parse_error(position, token, e);  // throws e
  }
};

// The whole file mapped read-only; unmapped when the last SafetensorsFile copy goes away.
struct Mapping {
  const std::byte* data = nullptr;
  std::size_t size = 0;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  Mapping(const std::byte* d, std::size_t n) : data(d), size(n) {}
  ~Mapping() {
    if (data != nullptr) ::munmap(const_cast<std::byte*>(data), size);
  }
};

// mmap(2) of a whole file, or nullptr when that is not possible (empty file, pipe, ...).
inline std::shared_ptr<const Mapping> map_file(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return nullptr;
  struct stat st {};
  std::shared_ptr<const Mapping> result;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
    void* p = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (p != MAP_FAILED)
      result = std::make_shared<const Mapping>(static_cast<const std::byte*>(p),
                                               static_cast<std::size_t>(st.st_size));
  }
  ::close(fd);
  return result;
}
}  // namespace detail

// ---------------------------------------------------------------------------
// SafetensorsFile: an open, validated safetensors file. The header is parsed and checked on
// construction; tensor data is converted on load<Real>(name) / load_int(name). Copies share the
// mapping, so loads may run concurrently; in stream mode they share one stream: open the file once
// per thread instead. Not for files that change while open.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::filesystem::path& path, ReadMode mode = ReadMode::map)
      : path_(path.string()) {
    if (mode == ReadMode::map) mapping_ = detail::map_file(path);
    if (mapping_ != nullptr) {
      file_size_ = mapping_->size;
    } else {
      std::error_code ec;
      if (!std::filesystem::is_regular_file(path, ec) && std::filesystem::exists(path, ec))
        throw IoError(str_cat("cannot read '", path_, "': not a regular file"));
      stream_ = std::make_shared<std::ifstream>(path, std::ios::binary);
      if (!*stream_)
        throw IoError(str_cat("cannot open '", path_, "' for reading: ", std::strerror(errno)));
      file_size_ = std::filesystem::file_size(path, ec);
      if (ec) throw IoError(str_cat("cannot read the size of '", path_, "': ", ec.message()));
    }
    parse_header();
  }

  const std::string& path() const { return path_; }
  bool memory_mapped() const { return mapping_ != nullptr; }
  std::size_t size() const { return tensors_.size(); }
  // Names in file order (by data offset, which for Hugging Face's files is also header order).
  const std::vector<std::string>& names() const { return names_; }
  std::vector<std::string> sorted_names() const {
    std::vector<std::string> names = names_;
    std::sort(names.begin(), names.end());
    return names;
  }
  bool contains(std::string_view name) const { return index_.count(std::string(name)) != 0; }
  const TensorInfo& info(std::string_view name) const {
    const auto it = index_.find(std::string(name));
    if (it == index_.end())
      throw FormatError(str_cat(path_, ": no tensor named '", name, "' (the file holds ",
                                tensors_.size(), " tensors)"));
    return tensors_[it->second];
  }
  // All entries in file order.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // The "__metadata__" map (empty if the file has none).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Total number of elements of all tensors (the "parameter count" of a checkpoint).
  // Cannot overflow: each tensor's bytes lie inside the file, so the sum is below the file size.
  Index num_elements() const {
    std::uint64_t n = 0;
    for (const TensorInfo& t : tensors_) n += static_cast<std::uint64_t>(t.numel());
    return static_cast<Index>(n);
  }

  // A floating-point tensor (F16, BF16, F32, F64) converted to Real (float or double).
  template <class Real>
  Tensor<Real> load(std::string_view name) const {
    static_assert(std::is_floating_point_v<Real>, "load<Real>: Real is float or double");
    const TensorInfo& t = info(name);
    check<FormatError>(is_floating(t.dtype), path_, ": tensor '", name, "' has dtype ",
                       dtype_name(t.dtype), " but a floating-point tensor (F16, BF16, F32, F64) ",
                       "was requested; use load_int for integer tensors");
    Tensor<Real> out(t.shape);
    read_into(t, out.ptr());
    return out;
  }
  // An integer or boolean tensor (I64, I32, I16, I8, U8, BOOL) as int64.
  Tensor<std::int64_t> load_int(std::string_view name) const {
    const TensorInfo& t = info(name);
    check<FormatError>(!is_floating(t.dtype), path_, ": tensor '", name, "' has dtype ",
                       dtype_name(t.dtype), " but an integer tensor (I64, I32, I16, I8, U8, BOOL) ",
                       "was requested");
    Tensor<std::int64_t> out(t.shape);
    read_into(t, out.ptr());
    return out;
  }
  // A 2-D floating-point tensor as a HalfMatrix of `dtype` (BF16 or F16). When the file stores
  // that dtype, the file is memory-mapped and the data is 2-byte aligned (always, for Hugging
  // Face's writer), the matrix is a view of the mapping (no copy; the mapping stays alive while
  // the matrix does) unless `allow_view` is false; otherwise the numbers are copied, or converted
  // in chunks (F32 / F64 / the other 16-bit type rounded to nearest even), never through a
  // float copy of the whole tensor. FormatError naming the file and tensor if it is not 2-D
  // floating point.
  HalfMatrix load_half(std::string_view name, Dtype dtype, bool allow_view = true) const {
    const TensorInfo& t = info(name);
    check<FormatError>(is_floating(t.dtype) && t.shape.size() == 2, path_, ": tensor '", name,
                       "' (", dtype_name(t.dtype), ", shape ", shape_str(t.shape),
                       ") cannot be held as a ", dtype_name(dtype),
                       " matrix: a 2-D floating-point tensor is needed");
    const Index rows = t.shape[0], cols = t.shape[1];
    const std::uint64_t offset = data_start_ + t.begin;
    if (mapping_ != nullptr) check_finite(t, mapping_->data + offset);
    if (t.dtype == dtype && allow_view && mapping_ != nullptr && offset % 2 == 0)
      return HalfMatrix::view(rows, cols, dtype,
                              reinterpret_cast<const std::uint16_t*>(mapping_->data + offset),
                              mapping_);
    HalfMatrix out(rows, cols, dtype);
    std::uint16_t* dst = out.mutable_data();
    const std::size_t n = static_cast<std::size_t>(t.numel()), size = dtype_size(t.dtype);
    if (t.dtype == dtype) {
      read_at(offset, reinterpret_cast<std::byte*>(dst), n * 2);
      if (mapping_ == nullptr) check_finite(t, reinterpret_cast<const std::byte*>(dst));
      return out;
    }
    constexpr std::size_t chunk = 1 << 16;  // elements converted at a time
    std::vector<std::byte> bytes(mapping_ != nullptr ? 0 : chunk * size);
    std::vector<float> values(chunk);
    for (std::size_t i = 0; i < n; i += chunk) {
      const std::size_t k = std::min(chunk, n - i);
      const std::byte* src = mapping_ != nullptr ? mapping_->data + offset + i * size : bytes.data();
      if (mapping_ == nullptr) {
        read_at(offset + i * size, bytes.data(), k * size);
        check_finite(t, bytes.data(), k, i);
      }
      detail::decode(t.dtype, src, values.data(), k);
      real_to_half(dtype, values.data(), dst + i, k);
    }
    return out;
  }
  // The raw little-endian bytes of one tensor.
  std::vector<std::byte> raw_bytes(std::string_view name) const {
    const TensorInfo& t = info(name);
    std::vector<std::byte> bytes(static_cast<std::size_t>(t.end - t.begin));
    read_at(data_start_ + t.begin, bytes.data(), bytes.size());
    return bytes;
  }

 private:
  void read_at(std::uint64_t offset, std::byte* dst, std::size_t n) const {
    if (n == 0) return;
    if (mapping_ != nullptr) {
      std::memcpy(dst, mapping_->data + offset, n);
      return;
    }
    stream_->clear();
    stream_->seekg(static_cast<std::streamoff>(offset));
    stream_->read(reinterpret_cast<char*>(dst), static_cast<std::streamsize>(n));
    if (static_cast<std::size_t>(stream_->gcount()) != n)
      throw IoError(str_cat("cannot read '", path_, "': ", n, " bytes at offset ", offset,
                            " (file changed while open?)"));
  }
  template <class T>
  void read_into(const TensorInfo& t, T* dst) const {
    const std::size_t n = static_cast<std::size_t>(t.numel());
    if (mapping_ != nullptr) {
      check_finite(t, mapping_->data + data_start_ + t.begin);
      detail::decode(t.dtype, mapping_->data + data_start_ + t.begin, dst, n);
      return;
    }
    std::vector<std::byte> bytes(static_cast<std::size_t>(t.end - t.begin));
    read_at(data_start_ + t.begin, bytes.data(), bytes.size());
    check_finite(t, bytes.data());
    detail::decode(t.dtype, bytes.data(), dst, n);
  }
  // FormatError naming the tensor and the element if a floating-point tensor holds NaN or an
  // infinity (unless input_limits().allow_nonfinite_weights). `src` holds elements
  // [first, first + count) of the tensor (count 0: all of it).
  void check_finite(const TensorInfo& t, const std::byte* src, std::size_t count = 0,
                    std::size_t first = 0) const {
    if (!is_floating(t.dtype) || input_limits().allow_nonfinite_weights) return;
    const std::size_t n = count != 0 ? count : static_cast<std::size_t>(t.numel());
    const std::size_t bad = detail::first_nonfinite(t.dtype, src, n);
    if (bad == n) return;
    fail("tensor '", t.name, "' (", dtype_name(t.dtype), ", shape ", shape_str(t.shape),
         ") holds NaN or infinity at element ", first + bad,
         "; refusing to load it (set FOURIERFT_ALLOW_NONFINITE=1 to accept)");
  }

  template <class... Parts>
  [[noreturn]] void fail(const Parts&... parts) const {
    throw FormatError(str_cat(path_, ": ", parts...));
  }

  void parse_header() {
    if (file_size_ < 8)
      fail("too short for a safetensors file (", file_size_, " bytes; the header length alone ",
           "takes 8)");
    std::byte length_bytes[8];
    read_at(0, length_bytes, 8);
    const std::uint64_t n = detail::read_u64_le(length_bytes);
    if (n > file_size_ - 8)
      fail("header length ", n, " runs past the end of the file (", file_size_,
           " bytes, so at most ", file_size_ - 8, ")");
    if (n > detail::max_header_bytes)
      fail("header length ", n, " exceeds the limit of ", detail::max_header_bytes, " bytes");
    std::string text(static_cast<std::size_t>(n), '\0');
    read_at(8, reinterpret_cast<std::byte*>(text.data()), text.size());
    data_start_ = 8 + n;
    const std::uint64_t data_size = file_size_ - data_start_;

    // A bounded pre-scan first (nesting depth), then one linear SAX parse (HeaderSax) that
    // records the top-level key order and catches a key given twice in any object (a JSON object
    // would silently keep the last): a tensor name, a field of a tensor entry, a metadata key.
    // (nlohmann's parse-with-callback is quadratic in the number of tensors: each closing brace
    // scans its parent object.) The objects are std::maps: 200k tensors parse in O(n log n).
    check_json_depth(text, path_ + " (safetensors header)");
    using Json = nlohmann::json;
    Json header;
    detail::HeaderSax sax(header);
    try {
      Json::sax_parse(text, &sax);
    } catch (const Json::parse_error& e) {
      std::string reason = e.what();
      if (const auto pos = reason.find("] "); pos != std::string::npos)
        reason = reason.substr(pos + 2);
      fail("header is not valid JSON (at header byte ", e.byte, "): ", reason);
    } catch (const Json::exception& e) {  // out_of_range.406: a number like 1e400 overflows
      std::string reason = e.what();
      if (const auto pos = reason.find("] "); pos != std::string::npos)
        reason = reason.substr(pos + 2);
      fail("header is not valid JSON: ", reason);
    }
    const std::vector<std::string>& order = sax.top_level_keys;
    const std::string& duplicate = sax.duplicate;
    const std::string& duplicate_in = sax.duplicate_in;
    if (!header.is_object()) fail("header is not a JSON object");
    if (!duplicate.empty() && duplicate_in.empty())
      fail("tensor '", duplicate, "' appears more than once in the header");
    if (!duplicate.empty())
      fail(duplicate_in == "__metadata__" ? std::string("__metadata__")
                                          : str_cat("tensor '", duplicate_in, "'"),
           ": key '", duplicate, "' appears more than once");

    tensors_.reserve(order.size());
    for (const std::string& name : order) {
      const Json& entry = header.find(name).value();
      if (name == "__metadata__") {
        if (!entry.is_object()) fail("__metadata__ should be an object of strings");
        for (const auto& [key, value] : entry.items()) {
          if (!value.is_string())
            fail("__metadata__ value of '", key, "' should be a string but is ",
                 json_excerpt(value));
          metadata_[key] = value.get<std::string>();
        }
        continue;
      }
      tensors_.push_back(parse_entry(name, entry, data_size));
    }

    // Offsets: the tensors, in data order, must tile [0, data_size) exactly.
    std::stable_sort(tensors_.begin(), tensors_.end(),
                     [](const TensorInfo& a, const TensorInfo& b) {
                       return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
                     });
    std::uint64_t position = 0;
    const TensorInfo* previous = nullptr;
    for (const TensorInfo& t : tensors_) {
      if (t.begin < position)
        fail("tensors '", previous->name, "' [", previous->begin, ", ", previous->end, ") and '",
             t.name, "' [", t.begin, ", ", t.end, ") overlap");
      if (t.begin > position)
        fail("data bytes [", position, ", ", t.begin, ") before tensor '", t.name,
             "' belong to no tensor");
      position = t.end;
      previous = &t;
    }
    if (position != data_size)
      fail("the data section has ", data_size, " bytes but the tensors end at byte ", position);
    for (std::size_t i = 0; i < tensors_.size(); ++i) {
      index_.emplace(tensors_[i].name, i);
      names_.push_back(tensors_[i].name);
    }
  }

  TensorInfo parse_entry(const std::string& name, const nlohmann::json& entry,
                         std::uint64_t data_size) const {
    TensorInfo t;
    t.name = name;
    if (!entry.is_object()) fail("tensor '", name, "': header entry should be an object");
    const auto dtype = entry.find("dtype");
    if (dtype == entry.end() || !dtype->is_string())
      fail("tensor '", name, "': 'dtype' is missing or not a string");
    const auto parsed = parse_dtype(dtype->get<std::string>());
    if (!parsed)
      fail("tensor '", name, "' has unknown dtype '", dtype->get<std::string>(),
           "' (supported: F64, F32, BF16, F16, I64, I32, I16, I8, U8, BOOL)");
    t.dtype = *parsed;
    const auto shape = entry.find("shape");
    if (shape == entry.end() || !shape->is_array())
      fail("tensor '", name, "': 'shape' is missing or not a list");
    std::uint64_t numel = 1;
    for (const auto& d : *shape) {
      if (!d.is_number_unsigned())
        fail("tensor '", name, "': shape ", json_excerpt(*shape),
             " should hold non-negative integers");
      const std::uint64_t v = d.get<std::uint64_t>();
      if (v != 0 && numel > (std::uint64_t(1) << 62) / v)
        fail("tensor '", name, "': shape ", json_excerpt(*shape), " is too large");
      numel *= v;
      t.shape.push_back(static_cast<Index>(v));
    }
    const auto offsets = entry.find("data_offsets");
    if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2 ||
        !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned())
      fail("tensor '", name, "': 'data_offsets' should be two non-negative integers [begin, end]");
    t.begin = (*offsets)[0].get<std::uint64_t>();
    t.end = (*offsets)[1].get<std::uint64_t>();
    if (t.end < t.begin)
      fail("tensor '", name, "': data_offsets [", t.begin, ", ", t.end, "] end before they begin");
    // numel × dtype size, checked: [2^62] F32 would wrap to 0 bytes.
    if (numel > std::numeric_limits<std::uint64_t>::max() / dtype_size(t.dtype))
      fail("tensor '", name, "' (", dtype_name(t.dtype), ", shape ", shape_str(t.shape),
           ") needs more than 2^64 bytes");
    const std::uint64_t need = numel * dtype_size(t.dtype);
    if (t.end - t.begin != need)
      fail("tensor '", name, "' (", dtype_name(t.dtype), ", shape ", shape_str(t.shape), ") needs ",
           need, " bytes but data_offsets [", t.begin, ", ", t.end, "] span ", t.end - t.begin);
    if (t.end > data_size)
      fail("tensor '", name, "': data_offsets [", t.begin, ", ", t.end,
           "] run past the end of the data section (", data_size, " bytes)");
    return t;
  }

  std::string path_;
  std::shared_ptr<const detail::Mapping> mapping_;  // null in stream mode
  std::shared_ptr<std::ifstream> stream_;           // stream mode only
  std::uint64_t file_size_ = 0;
  std::uint64_t data_start_ = 0;     // 8 + header length
  std::vector<TensorInfo> tensors_;  // file (data offset) order
  std::vector<std::string> names_;
  std::unordered_map<std::string, std::size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// ---------------------------------------------------------------------------
// SafetensorsWriter: collects named tensors (by reference: save() writes their values at that time)
// and metadata, then writes them atomically in Hugging Face's byte layout.
//   SafetensorsWriter w;
//   w.add("classifier.weight", weight);                // F32 by default
//   w.add("embeddings.weight", emb, Dtype::BF16);      // rounded to nearest even
//   w.set_metadata("format", "pt");
//   w.save("model.safetensors");
class SafetensorsWriter {
 public:
  // Floating-point tensors are stored as F32 (default), F64, F16 or BF16. A double tensor written
  // as F16/BF16 is rounded to float first (two roundings; rare ties can differ from torch by 1 ulp).
  template <class Real>
  requires std::is_floating_point_v<Real>
  void add(std::string name, const Tensor<Real>& tensor, Dtype dtype = Dtype::F32) {
    check(is_floating(dtype), "SafetensorsWriter::add: tensor '", name, "' holds floating-point ",
          "values; it can be written as F32, F64, F16 or BF16, not ", dtype_name(dtype));
    insert(std::move(name), dtype, tensor);
  }
  // A 16-bit matrix: its bits as they are when `dtype` is its own, else converted (F32, F64, or
  // the other 16-bit type, rounded) in chunks.
  void add(std::string name, const HalfMatrix& matrix, Dtype dtype) {
    check(is_floating(dtype), "SafetensorsWriter::add: matrix '", name, "' holds floating-point ",
          "values; it can be written as F32, F64, F16 or BF16, not ", dtype_name(dtype));
    insert(std::move(name), dtype, matrix);
  }
  // Integer tensors are stored as I64 (default) or I32 (values must fit).
  void add(std::string name, const Tensor<std::int64_t>& tensor, Dtype dtype = Dtype::I64) {
    check(dtype == Dtype::I64 || dtype == Dtype::I32, "SafetensorsWriter::add: integer tensor '",
          name, "' can be written as I64 or I32, not ", dtype_name(dtype));
    if (dtype == Dtype::I32)
      for (std::int64_t v : tensor.data())
        check(v >= INT32_MIN && v <= INT32_MAX, "SafetensorsWriter::add: tensor '", name,
              "' holds ", v, ", which does not fit I32");
    insert(std::move(name), dtype, tensor);
  }
  void set_metadata(std::string key, std::string value) {
    check(valid_utf8(key) && valid_utf8(value), "SafetensorsWriter::set_metadata: key '", key,
          "' or its value is not valid UTF-8");
    metadata_[std::move(key)] = std::move(value);
  }
  bool contains(const std::string& name) const { return names_.count(name) != 0; }
  std::size_t size() const { return entries_.size(); }

  // The header exactly as it will be written (without the 8-byte length), space-padded.
  std::string header() const {
    std::string out = "{";
    auto quoted = [](const std::string& s) { return nlohmann::json(s).dump(); };
    if (!metadata_.empty()) {
      out += "\"__metadata__\":{";
      bool first = true;
      for (const auto& [key, value] : metadata_) {
        if (!first) out += ',';
        out += str_cat(quoted(key), ':', quoted(value));
        first = false;
      }
      out += "}";
    }
    std::uint64_t offset = 0;
    for (const Entry* e : ordered()) {
      if (out.size() > 1) out += ",";
      const std::uint64_t bytes = static_cast<std::uint64_t>(numel(*e)) * dtype_size(e->dtype);
      out += str_cat(quoted(e->name), R"(:{"dtype":")", dtype_name(e->dtype), R"(","shape":[)");
      const Shape shape = std::visit([](const auto& t) -> Shape { return t.shape(); }, e->tensor);
      for (std::size_t i = 0; i < shape.size(); ++i) out += str_cat(i ? "," : "", shape[i]);
      out += str_cat(R"(],"data_offsets":[)", offset, ',', offset + bytes, "]}");
      offset += bytes;
    }
    out += "}";
    out.append((8 - out.size() % 8) % 8, ' ');  // the data starts 8-byte aligned
    return out;
  }

  // Writes the file atomically (temporary file, then rename). IoError if that fails.
  void save(const std::filesystem::path& path) const {
    const std::string head = header();
    util::write_file_atomically(path, [&](std::ostream& out) {
      const std::uint64_t n = head.size();
      char length[8];
      std::memcpy(length, &n, 8);
      out.write(length, 8);
      out.write(head.data(), static_cast<std::streamsize>(head.size()));
      for (const Entry* e : ordered())
        std::visit([&](const auto& t) {
          if constexpr (std::is_same_v<std::decay_t<decltype(t)>, HalfMatrix>)
            write_half(out, t, e->dtype);
          else
            write_data(out, t.data(), e->dtype);
        }, e->tensor);
    });
  }

 private:
  using AnyTensor = std::variant<Tensor<float>, Tensor<double>, Tensor<std::int64_t>, HalfMatrix>;
  struct Entry {
    std::string name;
    Dtype dtype;
    AnyTensor tensor;
  };
  static Index numel(const Entry& e) {
    return std::visit([](const auto& t) { return t.numel(); }, e.tensor);
  }
  static bool valid_utf8(const std::string& s) {
    try {
      (void)nlohmann::json(s).dump();
      return true;
    } catch (const nlohmann::json::type_error&) {
      return false;
    }
  }
  void insert(std::string name, Dtype dtype, AnyTensor tensor) {
    check(valid_utf8(name), "SafetensorsWriter::add: tensor name '", name, "' is not valid UTF-8");
    check(name != "__metadata__", "SafetensorsWriter::add: '__metadata__' is reserved, not a ",
          "tensor name");
    check(names_.insert(name).second, "SafetensorsWriter::add: tensor '", name,
          "' was already added");
    entries_.push_back(Entry{std::move(name), dtype, std::move(tensor)});
  }
  // Hugging Face's order: larger alignment first, then by name.
  std::vector<const Entry*> ordered() const {
    std::vector<const Entry*> out;
    for (const Entry& e : entries_) out.push_back(&e);
    std::sort(out.begin(), out.end(), [](const Entry* a, const Entry* b) {
      return a->dtype != b->dtype ? a->dtype > b->dtype : a->name < b->name;
    });
    return out;
  }
  static void write_half(std::ostream& out, const HalfMatrix& m, Dtype dtype) {
    if (dtype == m.dtype()) {
      out.write(reinterpret_cast<const char*>(m.data()), static_cast<std::streamsize>(m.bytes()));
      return;
    }
    const std::size_t chunk = 1 << 16, n = static_cast<std::size_t>(m.numel());
    std::vector<float> values(chunk);
    for (std::size_t i = 0; i < n; i += chunk) {
      const std::size_t k = std::min(chunk, n - i);
      half_to_real(m.dtype(), m.data() + i, values.data(), k);
      write_data(out, std::span<const float>(values.data(), k), dtype);
    }
  }
  // Converts and writes in chunks, so a large tensor needs no second full-size buffer.
  template <class T>
  static void write_data(std::ostream& out, std::span<const T> values, Dtype dtype) {
    auto write_as = [&](auto raw_tag, auto convert) {
      using Raw = decltype(raw_tag);
      if constexpr (std::is_same_v<Raw, T>) {  // already in the file's type: write as is
        out.write(reinterpret_cast<const char*>(values.data()),
                  static_cast<std::streamsize>(values.size() * sizeof(T)));
        return;
      }
      std::vector<Raw> chunk;
      const std::size_t chunk_size = 1 << 16;
      for (std::size_t i = 0; i < values.size(); i += chunk_size) {
        const std::size_t n = std::min(chunk_size, values.size() - i);
        chunk.resize(n);
        for (std::size_t k = 0; k < n; ++k) chunk[k] = convert(values[i + k]);
        out.write(reinterpret_cast<const char*>(chunk.data()),
                  static_cast<std::streamsize>(n * sizeof(Raw)));
      }
    };
    switch (dtype) {
      case Dtype::F32: write_as(float{}, [](T v) { return static_cast<float>(v); }); break;
      case Dtype::F64: write_as(double{}, [](T v) { return static_cast<double>(v); }); break;
      case Dtype::F16:
        write_as(std::uint16_t{}, [](T v) { return float_to_f16(static_cast<float>(v)); });
        break;
      case Dtype::BF16:
        write_as(std::uint16_t{}, [](T v) { return float_to_bf16(static_cast<float>(v)); });
        break;
      case Dtype::I64:
        write_as(std::int64_t{}, [](T v) { return static_cast<std::int64_t>(v); });
        break;
      case Dtype::I32:
        write_as(std::int32_t{}, [](T v) { return static_cast<std::int32_t>(v); });
        break;
      default:
        throw ValueError(str_cat("SafetensorsWriter: cannot write dtype ", dtype_name(dtype)));
    }
  }

  std::vector<Entry> entries_;
  std::set<std::string> names_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace fourierft::io
