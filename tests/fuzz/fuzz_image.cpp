// libFuzzer harness: image decoding (PNG through stb_image, compiled here and so instrumented;
// JPEG through the system's libjpeg-turbo, which is not: the harness exercises fourierft's side,
// the error jumps and limits, while libjpeg-turbo's decoder is fuzzed upstream by OSS-Fuzz) and the
// resize / crop a ViT processor applies.
#include <cstdint>
#include <span>

#include "fourierft/io/image.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Decoding time grows with the pixels an image declares (about 0.15 CPU s per megapixel for
  // stb under ASan; a 1 KB JPEG may declare 71 megapixels): fuzz with a 2-megapixel cap, so each input stays
  // under the 1 s bar and the cap's check (io::InputLimits::image_max_pixels) is what a bomb meets.
  static const bool capped = [] {
    fourierft::io::input_limits().image_max_pixels = 1 << 21;
    return true;
  }();
  (void)capped;
  FOURIERFT_FUZZ_GUARD({
    const auto image = fourierft::io::decode_image(std::span<const std::uint8_t>(data, size), "input");
    if (image.height <= 4096 && image.width <= 4096) {
      const auto small = fourierft::io::resize(image, 8, 8);
      (void)fourierft::io::center_crop(small, 4, 4);
    }
  });
  return 0;
}
