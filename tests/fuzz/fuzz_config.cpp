// libFuzzer harness: config.json of every model type (gpt2, roberta, vit, llama / mistral / qwen2
// / qwen3), parsed from one input. Seeds: the fixtures' config.json files.
#include <cstdint>

#include "fourierft/io/hf_config.hpp"
#include "fourierft/io/json.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace fourierft::io;
  FOURIERFT_FUZZ_GUARD({
    const JsonObject j(parse_json(fuzz::as_text(data, size), "config.json"), "config.json");
    FOURIERFT_FUZZ_GUARD((void)to_json(parse_gpt2_config(j)));
    FOURIERFT_FUZZ_GUARD((void)to_json(parse_roberta_config(j)));
    FOURIERFT_FUZZ_GUARD((void)to_json(parse_vit_config(j)));
    FOURIERFT_FUZZ_GUARD((void)to_json(parse_llama_config(j)));
  });
  return 0;
}
