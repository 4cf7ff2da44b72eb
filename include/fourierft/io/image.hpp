// fourierft/io/image.hpp — 8-bit RGB images: PNG/JPEG decoding, Pillow's resize (exact), crops,
// flips, torchvision's RandomResizedCrop, and HF's ViTImageProcessor normalisation to (3, H, W).
#pragma once

// What a ViT fine-tuning run (HF's run_image_classification.py, which the FourierFT paper's ViT
// experiments follow) does to one image, and where it is here:
//   eval:  resize to (H, W) with PIL bilinear -> x / 255 -> (x - mean) / std   ImageProcessor::eval
//   train: RandomResizedCrop(scale=(0.08, 1), ratio=(3/4, 4/3)) to (H, W), RandomHorizontalFlip,
//          then the same scaling                                              ImageProcessor::train
// resize() is Pillow's ImagingResample for 8-bit images, bit for bit: a separable filter whose
// support widens by the scale factor when shrinking (so downscaling averages, i.e. antialiases),
// fixed-point weights with 22 fractional bits, horizontal pass first. Tests compare with Pillow.
// Decoding is Pillow's, bit for bit: JPEG through libjpeg-turbo (the library Pillow uses, with
// its settings), PNG through stb_image (lossless). 16-bit PNGs keep their high byte.

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <csetjmp>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/detail/stb_image.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/io/limits.hpp"

#include <jpeglib.h>  // after <cstdio>: it uses FILE and size_t
#include <jerror.h>   // the warning codes (JWRN_*)

namespace fourierft::io {

// An 8-bit RGB image: rows top to bottom, channels interleaved, pixels[(y * width + x) * 3 + c].
struct Image {
  Index height = 0, width = 0;
  std::vector<std::uint8_t> pixels;

  Image() = default;
  Image(Index h, Index w) : height(h), width(w), pixels(static_cast<std::size_t>(h * w * 3)) {
    check(h > 0 && w > 0, "Image: size must be positive, got ", h, " x ", w);
  }
  std::uint8_t& at(Index y, Index x, Index c) {
    return pixels[static_cast<std::size_t>((y * width + x) * 3 + c)];
  }
  std::uint8_t at(Index y, Index x, Index c) const {
    return pixels[static_cast<std::size_t>((y * width + x) * 3 + c)];
  }
  bool operator==(const Image&) const = default;
};

// ---- decoding -----------------------------------------------------------------------------------
namespace detail {

// JPEG through libjpeg-turbo, as Pillow (and so HF's image processors) decodes it: the same library
// with the same settings (islow IDCT, fancy upsampling), so pixels are Pillow's bit for bit.
// libjpeg reports a fatal error by calling error_exit, which must not return: it jumps back to
// decode_jpeg's setjmp with only libjpeg's C frames in between (nothing there needs destroying).
struct JpegErrorManager {
  jpeg_error_mgr base;  // first member: libjpeg's `cinfo->err` points here
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX] = {};
  bool corrupt = true;  // false: a well-formed file refused by a limit or an unsupported feature
  int max_scans = 500;
};
// Warnings that mean the compressed image data itself is corrupt or cut short: libjpeg would go
// on and fill the rest with grey or garbage; Pillow refuses a truncated file too. Other warnings
// (extraneous bytes between segments, an unknown JFIF revision, a bad ICC marker) leave the
// pixels intact and are ignored, as by Pillow.
inline bool jpeg_data_is_corrupt(int message_code) {
  return message_code == JWRN_JPEG_EOF || message_code == JWRN_HIT_MARKER ||
         message_code == JWRN_HUFF_BAD_CODE || message_code == JWRN_ARITH_BAD_CODE ||
         message_code == JWRN_MUST_RESYNC || message_code == JWRN_BOGUS_PROGRESSION;
}
inline void jpeg_error_exit(j_common_ptr cinfo) {
  auto* errors = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  errors->base.format_message(cinfo, errors->message);
  std::longjmp(errors->jump, 1);
}
inline void jpeg_emit_message(j_common_ptr cinfo, int level) {
  if (level < 0 && jpeg_data_is_corrupt(cinfo->err->msg_code)) jpeg_error_exit(cinfo);
}
// A progressive JPEG may hold any number of scans, each a pass over the whole image
// (input_limits().jpeg_max_scans): checked as libjpeg reports its progress.
inline void jpeg_limit_scans(j_common_ptr cinfo) {
  const auto* decompress = reinterpret_cast<j_decompress_ptr>(cinfo);
  auto* errors = reinterpret_cast<JpegErrorManager*>(cinfo->err);
  if (decompress->is_decompressor && decompress->input_scan_number > errors->max_scans) {
    std::snprintf(errors->message, sizeof errors->message,
                  "more than %d progressive scans, the limit (FOURIERFT_JPEG_MAX_SCANS)",
                  errors->max_scans);
    errors->corrupt = false;
    std::longjmp(errors->jump, 1);
  }
}

// Decodes into `pixels` (resized to h * w * 3) and returns true, or returns false with libjpeg's
// message in `errors`. No C++ object is created or resized between setjmp and a longjmp
// that could return to it except through `pixels`, which lives in the caller.
inline bool decode_jpeg_into(std::span<const std::uint8_t> bytes, JpegErrorManager& errors,
                             std::vector<std::uint8_t>& pixels, Index& height, Index& width,
                             double max_pixels) {
  jpeg_decompress_struct cinfo{};
  jpeg_progress_mgr progress{};
  cinfo.err = jpeg_std_error(&errors.base);
  errors.base.error_exit = jpeg_error_exit;
  errors.base.emit_message = jpeg_emit_message;
  if (setjmp(errors.jump)) {
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  jpeg_create_decompress(&cinfo);
  progress.progress_monitor = jpeg_limit_scans;
  cinfo.progress = &progress;
  jpeg_mem_src(&cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&cinfo, TRUE);
  // The declared size first: a small file may declare a huge image (input_limits()).
  if (double(cinfo.image_width) * double(cinfo.image_height) > max_pixels) {
    std::snprintf(errors.message, sizeof errors.message,
                  "%u x %u pixels is over the limit of %.0f (FOURIERFT_IMAGE_MAX_PIXELS)",
                  cinfo.image_width, cinfo.image_height, max_pixels);
    errors.corrupt = false;
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    std::snprintf(errors.message, sizeof errors.message,
                  "a CMYK JPEG, which is not supported (convert it to RGB)");
    errors.corrupt = false;
    jpeg_destroy_decompress(&cinfo);
    return false;
  }
  cinfo.out_color_space = JCS_RGB;  // grey is repeated, as Pillow's convert("RGB")
  jpeg_start_decompress(&cinfo);
  height = cinfo.output_height;
  width = cinfo.output_width;
  pixels.resize(std::size_t(cinfo.output_height) * cinfo.output_width * 3);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = pixels.data() + std::size_t(cinfo.output_scanline) * cinfo.output_width * 3;
    jpeg_read_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return true;
}

inline bool is_jpeg(std::span<const std::uint8_t> b) {
  return b.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF;  // SOI, then a marker
}
inline bool is_png(std::span<const std::uint8_t> b) {
  static constexpr std::array<std::uint8_t, 8> signature = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  return b.size() >= 8 && std::equal(signature.begin(), signature.end(), b.begin());
}

// A PNG's chunks as stb_image will read them, checked and cleaned first. Returns the PNG without
// zero-length IDAT chunks, or nothing when there is none to drop (then the bytes are decoded as
// they are). Refuses a chunk declaring more bytes than the file has left: stb_image 2.27 grows its
// IDAT buffer to the declared length before reading (a 122-byte PNG asked for 2 GB; found by
// tests/fuzz/fuzz_image). Zero-length IDATs: stb copies each IDAT into a buffer that is still null
// before the first one with data, memcpy(nullptr, p, 0), undefined behaviour (UBSan; also found by
// fuzz_image); they carry nothing.
inline std::vector<std::uint8_t> checked_png_chunks(std::span<const std::uint8_t> b,
                                                    const std::string& source) {
  std::vector<std::uint8_t> out;
  std::size_t kept_from = 0;  // b[kept_from, chunk) is still to be copied
  // Chunks: length (4 bytes, big-endian), type (4), data (length), CRC (4).
  for (std::size_t i = 8; i + 8 <= b.size();) {
    const std::size_t length = std::size_t(b[i]) << 24 | std::size_t(b[i + 1]) << 16 |
                               std::size_t(b[i + 2]) << 8 | b[i + 3];
    std::string type;
    for (std::size_t k = 4; k < 8; ++k)
      type += std::isalpha(b[i + k]) ? static_cast<char>(b[i + k]) : '?';
    if (length > b.size() - i - 8)
      throw FormatError(str_cat(source, ": corrupt PNG: chunk '", type, "' at byte ", i, " declares ",
                                length, " bytes, but the file has ", b.size() - i - 8, " left"));
    const std::size_t next = std::min(b.size(), i + 12 + length);
    if (length == 0 && type == "IDAT") {
      out.insert(out.end(), b.begin() + static_cast<std::ptrdiff_t>(kept_from),
                 b.begin() + static_cast<std::ptrdiff_t>(i));
      kept_from = next;
    }
    if (type == "IEND") break;
    i = next;
  }
  if (kept_from == 0) return {};
  out.insert(out.end(), b.begin() + static_cast<std::ptrdiff_t>(kept_from), b.end());
  return out;
}

// PNG through stb_image: lossless, so the pixels are Pillow's.
inline Image decode_png(std::span<const std::uint8_t> bytes, const std::string& source) {
  const std::vector<std::uint8_t> cleaned = checked_png_chunks(bytes, source);
  const std::span<const std::uint8_t> input = cleaned.empty() ? bytes : std::span(cleaned);
  int w = 0, h = 0, channels = 0;
  // The declared size first: a small file may declare a huge image (input_limits()).
  if (stbi_info_from_memory(input.data(), static_cast<int>(input.size()), &w, &h, &channels))
    check<FormatError>(double(w) * double(h) <= input_limits().image_max_pixels, source, ": ", w,
                       " x ", h, " pixels is over the limit of ",
                       static_cast<std::int64_t>(input_limits().image_max_pixels),
                       " (FOURIERFT_IMAGE_MAX_PIXELS)");
  stbi_uc* data =
      stbi_load_from_memory(input.data(), static_cast<int>(input.size()), &w, &h, &channels, 3);
  if (data == nullptr)
    throw FormatError(str_cat(source, ": corrupt PNG (", stbi_failure_reason(), ")"));
  Image image(h, w);
  std::copy(data, data + image.pixels.size(), image.pixels.begin());
  stbi_image_free(data);
  return image;
}

inline Image decode_jpeg(std::span<const std::uint8_t> bytes, const std::string& source) {
  JpegErrorManager errors;
  errors.max_scans = static_cast<int>(
      std::clamp<std::int64_t>(input_limits().jpeg_max_scans, 1, std::numeric_limits<int>::max()));
  Image image;
  if (!decode_jpeg_into(bytes, errors, image.pixels, image.height, image.width,
                        input_limits().image_max_pixels)) {
    if (!errors.corrupt) throw FormatError(str_cat(source, ": ", errors.message));
    throw FormatError(str_cat(source, ": corrupt JPEG (", errors.message, ")"));
  }
  return image;
}
}  // namespace detail

// PNG or JPEG bytes -> RGB (grey is repeated, alpha dropped, palettes expanded: Pillow's
// convert("RGB")). `source` names the data in errors.
inline Image decode_image(std::span<const std::uint8_t> bytes, const std::string& source) {
  check<FormatError>(!bytes.empty(), source, ": empty file, expected a PNG or JPEG image");
  check<FormatError>(bytes.size() <= 0x7FFFFFFF, source, ": ", bytes.size(), " bytes is too large");
  if (detail::is_jpeg(bytes)) return detail::decode_jpeg(bytes, source);
  if (detail::is_png(bytes)) return detail::decode_png(bytes, source);
  std::string first;
  for (std::size_t i = 0; i < std::min<std::size_t>(bytes.size(), 4); ++i) {
    static constexpr char hex[] = "0123456789abcdef";
    first += str_cat(i ? " " : "", hex[bytes[i] >> 4], hex[bytes[i] & 15]);
  }
  throw FormatError(str_cat(source, ": not a PNG or JPEG image (it starts with bytes ", first, ")"));
}

inline Image read_image(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(str_cat("cannot open '", path.string(), "' for reading"));
  std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                  std::istreambuf_iterator<char>());
  if (in.bad()) throw IoError(str_cat("cannot read '", path.string(), "'"));
  return decode_image(bytes, path.string());
}

// ---- geometry -----------------------------------------------------------------------------------
// PIL's filter numbers, as preprocessor_config.json writes them ("resample": 2).
enum class Resample { bilinear = 2, bicubic = 3 };

namespace detail {

// Pillow's precompute_coeffs for the full input range [0, in_size): output pixel i reads inputs
// [first[i], first[i] + count[i]) with fixed-point weights w[i * ksize + k] (22 fraction bits).
struct ResampleWeights {
  Index ksize = 0;
  std::vector<Index> first, count;
  std::vector<std::int32_t> w;
};
inline ResampleWeights resample_weights(Index in_size, Index out_size, Resample filter) {
  constexpr int precision_bits = 32 - 8 - 2;
  const double support_1 = filter == Resample::bilinear ? 1.0 : 2.0;
  auto kernel = [filter](double x) {
    x = std::abs(x);
    if (filter == Resample::bilinear) return x < 1.0 ? 1.0 - x : 0.0;
    constexpr double a = -0.5;  // Keys' cubic, as Pillow
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
  };
  const double scale = static_cast<double>(in_size) / static_cast<double>(out_size);
  const double filterscale = std::max(scale, 1.0);  // shrinking widens the filter: antialiasing
  const double support = support_1 * filterscale;
  ResampleWeights r;
  r.ksize = static_cast<Index>(std::ceil(support)) * 2 + 1;
  r.first.resize(static_cast<std::size_t>(out_size));
  r.count.resize(static_cast<std::size_t>(out_size));
  r.w.assign(static_cast<std::size_t>(out_size * r.ksize), 0);
  std::vector<double> k(static_cast<std::size_t>(r.ksize));
  for (Index i = 0; i < out_size; ++i) {
    const double center = (static_cast<double>(i) + 0.5) * scale;
    const Index lo = std::max<Index>(0, static_cast<Index>(center - support + 0.5));
    const Index hi = std::min<Index>(in_size, static_cast<Index>(center + support + 0.5));
    double total = 0.0;
    for (Index x = lo; x < hi; ++x) {
      k[static_cast<std::size_t>(x - lo)] =
          kernel((static_cast<double>(x) - center + 0.5) / filterscale);
      total += k[static_cast<std::size_t>(x - lo)];
    }
    for (Index x = lo; x < hi; ++x) {
      const double v = total != 0.0 ? k[static_cast<std::size_t>(x - lo)] / total
                                    : k[static_cast<std::size_t>(x - lo)];
      r.w[static_cast<std::size_t>(i * r.ksize + x - lo)] = static_cast<std::int32_t>(
          v < 0 ? -0.5 + v * (1 << precision_bits) : 0.5 + v * (1 << precision_bits));
    }
    r.first[static_cast<std::size_t>(i)] = lo;
    r.count[static_cast<std::size_t>(i)] = hi - lo;
  }
  return r;
}

// Round the fixed-point sum and clamp to 0..255 (Pillow's clip8).
inline std::uint8_t clip8(std::int32_t sum) {
  return static_cast<std::uint8_t>(std::clamp(sum >> 22, 0, 255));
}

}  // namespace detail

// Pillow's Image.resize((width, height), BILINEAR or BICUBIC) on an RGB image, bit-exact.
inline Image resize(const Image& in, Index height, Index width,
                    Resample filter = Resample::bilinear) {
  check(height > 0 && width > 0, "resize: output size must be positive, got ", height, " x ",
        width);
  if (height == in.height && width == in.width) return in;
  constexpr std::int32_t half = 1 << 21;
  const auto vert = detail::resample_weights(in.height, height, filter);
  // Only rows some output row reads go through the horizontal pass.
  const Index row0 = vert.first.front(), row1 = vert.first.back() + vert.count.back();
  Image tmp;
  const Image* src = &in;
  if (width != in.width) {
    const auto hor = detail::resample_weights(in.width, width, filter);
    tmp = Image(row1 - row0, width);
    for (Index y = 0; y < tmp.height; ++y)
      for (Index x = 0; x < width; ++x) {
        const std::int32_t* w = &hor.w[static_cast<std::size_t>(x * hor.ksize)];
        const Index x0 = hor.first[static_cast<std::size_t>(x)],
                    n = hor.count[static_cast<std::size_t>(x)];
        for (Index c = 0; c < 3; ++c) {
          std::int32_t sum = half;
          for (Index k = 0; k < n; ++k) sum += in.at(y + row0, x0 + k, c) * w[k];
          tmp.at(y, x, c) = detail::clip8(sum);
        }
      }
    src = &tmp;
  }
  if (height == in.height) return tmp;
  const Index shift = src == &tmp ? row0 : 0;  // tmp starts at input row row0
  Image out(height, width);
  for (Index y = 0; y < height; ++y) {
    const std::int32_t* w = &vert.w[static_cast<std::size_t>(y * vert.ksize)];
    const Index y0 = vert.first[static_cast<std::size_t>(y)] - shift,
                n = vert.count[static_cast<std::size_t>(y)];
    for (Index x = 0; x < width; ++x)
      for (Index c = 0; c < 3; ++c) {
        std::int32_t sum = half;
        for (Index k = 0; k < n; ++k) sum += src->at(y0 + k, x, c) * w[k];
        out.at(y, x, c) = detail::clip8(sum);
      }
  }
  return out;
}

// Rows [top, top + height), columns [left, left + width); the box must lie inside the image.
inline Image crop(const Image& in, Index top, Index left, Index height, Index width) {
  check(top >= 0 && left >= 0 && height > 0 && width > 0 && top + height <= in.height &&
            left + width <= in.width,
        "crop: box (top ", top, ", left ", left, ", height ", height, ", width ", width,
        ") does not fit a ", in.height, " x ", in.width, " image");
  Image out(height, width);
  for (Index y = 0; y < height; ++y)
    std::copy_n(&in.pixels[static_cast<std::size_t>(((top + y) * in.width + left) * 3)], width * 3,
                &out.pixels[static_cast<std::size_t>(y * width * 3)]);
  return out;
}

// torchvision's CenterCrop for an image at least as large as the crop.
inline Image center_crop(const Image& in, Index height, Index width) {
  const auto top =
      static_cast<Index>(std::nearbyint(static_cast<double>(in.height - height) / 2.0));
  const auto left = static_cast<Index>(std::nearbyint(static_cast<double>(in.width - width) / 2.0));
  return crop(in, top, left, height, width);
}

inline Image hflip(const Image& in) {
  Image out(in.height, in.width);
  for (Index y = 0; y < in.height; ++y)
    for (Index x = 0; x < in.width; ++x)
      for (Index c = 0; c < 3; ++c) out.at(y, x, c) = in.at(y, in.width - 1 - x, c);
  return out;
}

// ---- augmentation -------------------------------------------------------------------------------
struct CropBox {
  Index top = 0, left = 0, height = 0, width = 0;
  bool operator==(const CropBox&) const = default;
};
struct RandomResizedCropOptions {
  double scale_min = 0.08, scale_max = 1.0;             // fraction of the image area
  double ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;  // width / height, drawn log-uniformly
};

// torchvision's RandomResizedCrop.get_params, with fourierft's Rng for torch's generator: up to 10
// tries of (area fraction ~ U(scale), log aspect ~ U(log ratio)); w = round(sqrt(area * aspect)),
// h = round(sqrt(area / aspect)) (Python's round: halves to even); the first box that fits is
// placed uniformly. Else a centred box of the whole image, clamped to the ratio range.
inline CropBox random_resized_crop_box(Index height, Index width, Rng& rng,
                                       const RandomResizedCropOptions& o = {}) {
  check(o.scale_min > 0 && o.scale_min <= o.scale_max && o.ratio_min > 0 &&
            o.ratio_min <= o.ratio_max,
        "random_resized_crop_box: need 0 < scale_min <= scale_max and 0 < ratio_min <= ratio_max");
  const double area = static_cast<double>(height * width);
  const double log_lo = std::log(o.ratio_min), log_hi = std::log(o.ratio_max);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * (o.scale_min + (o.scale_max - o.scale_min) * rng.uniform());
    const double aspect = std::exp(log_lo + (log_hi - log_lo) * rng.uniform());
    const auto w = static_cast<Index>(std::nearbyint(std::sqrt(target * aspect)));
    const auto h = static_cast<Index>(std::nearbyint(std::sqrt(target / aspect)));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const auto top = static_cast<Index>(rng.below(static_cast<std::uint64_t>(height - h + 1)));
      const auto left = static_cast<Index>(rng.below(static_cast<std::uint64_t>(width - w + 1)));
      return {top, left, h, w};
    }
  }
  const double in_ratio = static_cast<double>(width) / static_cast<double>(height);
  Index w = width, h = height;
  if (in_ratio < o.ratio_min)
    h = static_cast<Index>(std::nearbyint(static_cast<double>(w) / o.ratio_min));
  else if (in_ratio > o.ratio_max)
    w = static_cast<Index>(std::nearbyint(static_cast<double>(h) * o.ratio_max));
  return {(height - h) / 2, (width - w) / 2, h, w};
}

// One image's training augmentation, drawn before any pixel work so batches can be processed in
// parallel and stay reproducible.
struct Augmentation {
  CropBox box;
  bool flip = false;
};
inline Augmentation draw_augmentation(Index height, Index width, Rng& rng,
                                      const RandomResizedCropOptions& o = {}, double flip_p = 0.5) {
  Augmentation a;
  a.box = random_resized_crop_box(height, width, rng, o);
  a.flip = rng.bernoulli(flip_p);
  return a;
}

// ---- normalisation ------------------------------------------------------------------------------
// HF's ViTImageProcessor settings (preprocessor_config.json); the defaults are google/vit-*'s.
struct ImageProcessor {
  Index height = 224, width = 224;
  Resample resample = Resample::bilinear;
  bool do_resize = true, do_rescale = true, do_normalize = true;
  double rescale_factor = 1.0 / 255.0;
  std::array<float, 3> image_mean{0.5f, 0.5f, 0.5f}, image_std{0.5f, 0.5f, 0.5f};

  // Reads size ({"height", "width"}, {"shortest_edge"} or a number), resample (2 or 3),
  // do_resize / do_rescale / do_normalize, rescale_factor, image_mean, image_std; absent keys keep
  // the defaults above.
  static ImageProcessor from_json(const std::filesystem::path& path) {
    const JsonObject json = JsonObject::read(path);
    const std::string source = path.string();
    ImageProcessor p;
    if (json.has("size")) {
      const Json& size = json.json().at("size");
      if (size.is_number_integer()) {
        p.height = p.width = json.get<Index>("size");
      } else {
        const auto s = json.get<JsonObject>("size");
        if (s.has("shortest_edge")) {
          p.height = p.width = s.get<Index>("shortest_edge");
        } else {
          p.height = s.get<Index>("height");
          p.width = s.get<Index>("width");
        }
      }
      check<FormatError>(p.height > 0 && p.width > 0, source, ": size must be positive, got ",
                         p.height, " x ", p.width);
    }
    const int resample = json.get_or<int>("resample", 2);
    check<FormatError>(resample == 2 || resample == 3, source, ": resample ", resample,
                       " is not supported (2 = bilinear, 3 = bicubic)");
    p.resample = static_cast<Resample>(resample);
    p.do_resize = json.get_or<bool>("do_resize", true);
    p.do_rescale = json.get_or<bool>("do_rescale", true);
    p.do_normalize = json.get_or<bool>("do_normalize", true);
    p.rescale_factor = json.get_or<double>("rescale_factor", 1.0 / 255.0);
    for (const char* key : {"image_mean", "image_std"}) {
      if (!json.has(key)) continue;
      const auto v = json.get<std::vector<float>>(key);
      check<FormatError>(v.size() == 3, source, ": key '", key, "' should have 3 values, got ",
                         v.size());
      std::copy(v.begin(), v.end(),
                (std::string_view(key) == "image_mean" ? p.image_mean : p.image_std).begin());
    }
    for (float s : p.image_std) check<FormatError>(s > 0, source, ": image_std must be positive");
    return p;
  }

  // (3, H, W) floats from an image already at the target size: x * rescale, (x - mean) / std.
  void normalize(const Image& sized, std::span<float> out) const {
    check<ShapeError>(static_cast<Index>(out.size()) == 3 * sized.height * sized.width,
                      "ImageProcessor::normalize: output holds ", out.size(), " floats, need 3 x ",
                      sized.height, " x ", sized.width);
    const Index hw = sized.height * sized.width;
    for (Index c = 0; c < 3; ++c) {
      const float scale = do_rescale ? static_cast<float>(rescale_factor) : 1.0f;
      const float mean = do_normalize ? image_mean[static_cast<std::size_t>(c)] : 0.0f;
      const float inv_std = do_normalize ? 1.0f / image_std[static_cast<std::size_t>(c)] : 1.0f;
      for (Index i = 0; i < hw; ++i)
        out[static_cast<std::size_t>(c * hw + i)] =
            (static_cast<float>(sized.pixels[static_cast<std::size_t>(i * 3 + c)]) * scale - mean) *
            inv_std;
    }
  }
  // Evaluation: resize to (height, width), normalise.
  void eval(const Image& image, std::span<float> out) const {
    normalize(do_resize ? resize(image, height, width, resample) : image, out);
  }
  // Training: the drawn crop resized to (height, width) (torchvision resizes the crop with PIL),
  // flipped if drawn so, normalised.
  void train(const Image& image, const Augmentation& a, std::span<float> out) const {
    Image sized = resize(crop(image, a.box.top, a.box.left, a.box.height, a.box.width), height,
                         width, resample);
    normalize(a.flip ? hflip(sized) : sized, out);
  }
  Tensor<float> eval(const Image& image) const {
    const Image sized = do_resize ? resize(image, height, width, resample) : image;
    Tensor<float> t({3, sized.height, sized.width});
    normalize(sized, t.data());
    return t;
  }
};

}  // namespace fourierft::io
