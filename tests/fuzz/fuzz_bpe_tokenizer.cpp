// libFuzzer harness: vocab.json, merges.txt and a text to encode (parts separated by "\n#--\n"):
// GPT-2 / RoBERTa byte-level BPE loading, encoding and decoding.
#include <cstdint>

#include "fourierft/io/bpe_tokenizer.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto parts = fuzz::split_parts(fuzz::as_text(data, size), 3);
  const auto vocab = fuzz::write_file("vocab.json", parts[0]);
  const auto merges = fuzz::write_file("merges.txt", parts[1]);
  FOURIERFT_FUZZ_GUARD({
    const auto tokenizer = fourierft::io::BpeTokenizer::from_files(vocab, merges);
    const auto ids = tokenizer.encode(parts[2]);
    (void)tokenizer.decode(ids);
  });
  return 0;
}
