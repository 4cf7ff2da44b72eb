// libFuzzer harness: the E2E NLG challenge's CSV (mr,ref with quoting) and LoRA's E2E format.
#include <cstdint>

#include "fourierft/io/e2e.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = fuzz::write_file("e2e.csv", fuzz::as_text(data, size));
  FOURIERFT_FUZZ_GUARD({
    const auto d = fourierft::io::read_e2e_csv(path);
    for (const auto& e : d.examples) (void)fourierft::io::e2e_lora_context(e.mr);
  });
  FOURIERFT_FUZZ_GUARD((void)fourierft::io::read_e2e_lora(path));
  return 0;
}
