// libFuzzer harness: a PEFT adapter folder — adapter_config.json, then "\n#--\n", then
// adapter_model.safetensors — loaded onto a small model with query / value / c_attn layers.
#include <cstdint>

#include "fourierft/core/random.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/peft/adapter_io.hpp"
#include "fourierft/peft/fourierft.hpp"
#include "fourierft/peft/lora.hpp"
#include "fuzz_common.hpp"

namespace {
struct Net : fourierft::nn::Module<float> {
  fourierft::nn::Linear<float> query, value, c_attn, classifier;
  explicit Net(fourierft::Rng& rng)
      : query(6, 6, rng), value(6, 6, rng), c_attn(6, 18, rng), classifier(6, 3, rng) {
    register_module("query", query);
    register_module("value", value);
    register_module("c_attn", c_attn);
    register_module("classifier", classifier);
  }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto parts = fuzz::split_parts(fuzz::as_text(data, size), 2);
  fuzz::write_file("adapter_config.json", parts[0]);
  fuzz::write_file("adapter_model.safetensors", parts[1]);
  fourierft::Rng rng(1);
  Net net(rng);
  FOURIERFT_FUZZ_GUARD((void)fourierft::peft::load_adapter(net, fuzz::scratch_dir()));
  return 0;
}
