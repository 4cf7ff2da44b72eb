// libFuzzer harness: a GLUE TSV file read as each task (header row, label columns, quoting).
#include <cstdint>

#include "fourierft/io/glue.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = fuzz::write_file("dev.tsv", fuzz::as_text(data, size));
  for (const char* task : {"cola", "sst2", "mrpc", "stsb", "qnli", "rte", "mnli"})
    FOURIERFT_FUZZ_GUARD((void)fourierft::io::read_glue(path, task));
  return 0;
}
