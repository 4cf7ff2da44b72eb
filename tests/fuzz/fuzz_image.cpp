// libFuzzer harness: image decoding (PNG, JPEG through stb_image) and the resize /
// crop a ViT processor applies.
#include <cstdint>
#include <span>

#include "fourierft/io/image.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FOURIERFT_FUZZ_GUARD({
    const auto image = fourierft::io::decode_image(std::span<const std::uint8_t>(data, size), "input");
    if (image.height <= 4096 && image.width <= 4096) {
      const auto small = fourierft::io::resize(image, 8, 8);
      (void)fourierft::io::center_crop(small, 4, 4);
    }
  });
  return 0;
}
