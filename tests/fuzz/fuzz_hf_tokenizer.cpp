// libFuzzer harness: tokenizer.json (Hugging Face `tokenizers`: BPE with normalizers,
// pre-tokenizers, post-processors, decoders) and a text to encode, separated by "\n#--\n"; read
// by HfTokenizer and by BpeTokenizer's tokenizer.json reader (byte-level BPE).
#include <cstdint>

#include "fourierft/io/bpe_tokenizer.hpp"
#include "fourierft/io/hf_tokenizer.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto parts = fuzz::split_parts(fuzz::as_text(data, size), 2);
  const auto path = fuzz::write_file("tokenizer.json", parts[0]);
  FOURIERFT_FUZZ_GUARD({
    const auto tokenizer = fourierft::io::HfTokenizer::from_file(path);
    const auto ids = tokenizer.encode(parts[1]);
    (void)tokenizer.decode(ids);
    (void)tokenizer.encode_for_model(parts[1]);
  });
  FOURIERFT_FUZZ_GUARD({
    const auto tokenizer = fourierft::io::BpeTokenizer::from_tokenizer_json(path);
    (void)tokenizer.decode(tokenizer.encode(parts[1]));
  });
  return 0;
}
