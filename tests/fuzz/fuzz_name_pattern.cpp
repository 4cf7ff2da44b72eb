// libFuzzer harness: user regexes (target_modules, n_frequency_pattern) compiled by NamePattern
// and matched against a module name: part one the pattern, part two the name ("\n#--\n").
#include <cstdint>

#include "fourierft/peft/name_pattern.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto parts = fuzz::split_parts(fuzz::as_text(data, size), 2);
  FOURIERFT_FUZZ_GUARD({
    const fourierft::peft::NamePattern pattern(parts[0], "target_modules");
    (void)pattern.full_match(parts[1]);
    (void)pattern.full_match("roberta.encoder.layer.0.attention.self.query");
  });
  return 0;
}
