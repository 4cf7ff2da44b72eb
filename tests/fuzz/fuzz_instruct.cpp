// libFuzzer harness: instruction data — Alpaca JSON (an array of records), JSON lines, chat
// conversations — and FastChat bench question files, from the same bytes.
#include <cstdint>

#include "fourierft/io/instruct.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto text = fuzz::as_text(data, size);
  const auto json = fuzz::write_file("data.json", text);
  const auto jsonl = fuzz::write_file("data.jsonl", text);
  FOURIERFT_FUZZ_GUARD((void)fourierft::io::read_instruction_data(json));
  FOURIERFT_FUZZ_GUARD((void)fourierft::io::read_instruction_data(jsonl));
  FOURIERFT_FUZZ_GUARD((void)fourierft::io::read_bench_questions(jsonl));
  return 0;
}
