// libFuzzer harness: a safetensors file (header + data layout), every tensor loaded as float,
// int64 and a BF16 matrix as the model loaders do. Seeds: tests/fuzz/corpus/fuzz_safetensors.
#include <cstdint>

#include "fourierft/io/safetensors.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = fuzz::write_file("model.safetensors", fuzz::as_text(data, size));
  for (const auto mode : {fourierft::io::ReadMode::map, fourierft::io::ReadMode::stream}) {
    FOURIERFT_FUZZ_GUARD({
      const fourierft::io::SafetensorsFile file(path, mode);
      (void)file.num_elements();
      for (const auto& t : file.tensors()) {
        if (t.numel() > (1 << 20)) continue;  // a valid file may be big; the fuzzer's are not
        FOURIERFT_FUZZ_GUARD((void)file.load<float>(t.name));
        FOURIERFT_FUZZ_GUARD((void)file.load_int(t.name));
        FOURIERFT_FUZZ_GUARD((void)file.load_half(t.name, fourierft::io::Dtype::BF16));
        FOURIERFT_FUZZ_GUARD((void)file.raw_bytes(t.name));
      }
    });
  }
  return 0;
}
