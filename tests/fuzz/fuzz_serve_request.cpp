// libFuzzer harness: the JSON body of an OpenAI /v1/completions and /v1/chat/completions request
// (fourierft serve) parsed into a CompletionRequest: fields, token ids, messages through chat templates.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "fourierft/io/hf_tokenizer.hpp"
#include "fourierft/io/jinja.hpp"
#include "fourierft/serve/request.hpp"
#include "fuzz_common.hpp"

namespace {

const std::filesystem::path source_dir = FOURIERFT_SOURCE_DIR;
const std::filesystem::path tiny_llama = source_dir / "examples/checkpoints/llama-tiny-qnli-e2e";

// The tiny LLaMA checkpoint's tokenizer.json, as `fourierft serve` loads it.
const fourierft::io::HfTokenizer& tokenizer() {
  static const auto loaded = fourierft::io::HfTokenizer::load(tiny_llama);
  return loaded;
}

// Chat templates the messages go through: the checkpoint's own (tokenizer_config.json) and two
// real ones that raise exceptions on unexpected roles or orders (Llama 2, Gemma 2).
const std::vector<fourierft::io::ChatTemplate>& chat_templates() {
  static const std::vector<fourierft::io::ChatTemplate> loaded = {
      fourierft::io::ChatTemplate::load(tiny_llama / "tokenizer_config.json"),
      fourierft::io::ChatTemplate::load(source_dir / "tests/fixtures/chat_templates/llama2_chat.jinja"),
      fourierft::io::ChatTemplate::load(source_dir / "tests/fixtures/chat_templates/gemma2.jinja"),
  };
  return loaded;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string body(fuzz::as_text(data, size));
  const fourierft::serve::ServerOptions options;
  FOURIERFT_FUZZ_GUARD(
      (void)fourierft::serve::parse_completion_request(body, false, tokenizer(), nullptr, options));
  FOURIERFT_FUZZ_GUARD(
      (void)fourierft::serve::parse_completion_request(body, true, tokenizer(), nullptr, options));
  for (const auto& chat_template : chat_templates())
    FOURIERFT_FUZZ_GUARD(
        (void)fourierft::serve::parse_completion_request(body, true, tokenizer(), &chat_template, options));
  return 0;
}
