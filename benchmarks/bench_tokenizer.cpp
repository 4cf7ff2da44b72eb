// bench_tokenizer — byte-level BPE encoding speed on the SST-2 training sentences: the 67,349 of
// ../shared/data/glue/sst2/train.tsv when present, else the 200 of the committed slice.
// One TSV row per case; the baseline (pre-tokenisation alone) is measured in the same run.
//
//   ./build/benchmarks/bench_tokenizer [train.tsv] [tokenizer folder]
//
// Cases (GPT-2 vocabulary unless named; one thread unless named):
//   regex_only           GPT-2's pre-tokenisation regex alone (PCRE2, JIT): the floor of encode
//   encode_cold          encode() of every sentence by a fresh tokenizer: each new word runs BPE
//   encode_warm          the same again: words come from the cache
//   batch32_roberta      encode_batch() of 32 sentences at a time (a training step's worth) with
//                        RoBERTa's template, max_length 128, padding and masks; cache warm
//   many_roberta_threads encode_many() of all sentences at once, OpenMP threads, cache warm
//   hf_<name>_cold/_warm HfTokenizer::encode() with a real tokenizer.json: Llama 3's
//                        (../shared/data/tokenizers/llama3, byte-level BPE behind a Split regex)
//                        and Mistral's (committed; ▁ normalizers and byte fallback, no pre-split,
//                        so whole sentences run BPE); tokens are that tokenizer's own count
// Columns: case, sentences, tokens (BPE ids, template excluded), ms, tokens_per_s, ratio_to_regex.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "fourierft/core/parallel.hpp"
#include "fourierft/io/bpe_tokenizer.hpp"
#include "fourierft/io/glue.hpp"
#include "fourierft/io/hf_tokenizer.hpp"

#ifndef FOURIERFT_SOURCE_DIR
#define FOURIERFT_SOURCE_DIR "."
#endif

using namespace fourierft;
namespace fs = std::filesystem;

namespace {
template <class F>
double time_ms(F&& run) {
  const auto start = std::chrono::steady_clock::now();
  run();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}
}  // namespace

int main(int argc, char** argv) {
  try {
    const fs::path source = FOURIERFT_SOURCE_DIR;
    fs::path data = source / "../shared/data/glue/sst2/train.tsv";
    if (!fs::exists(data)) data = source / "tests/fixtures/data/glue/sst2/train.tsv";
    if (argc > 1) data = argv[1];
    const fs::path tokenizers = argc > 2 ? fs::path(argv[2]) : source / "tests/fixtures/tokenizer";

    std::vector<std::string> sentences;
    for (auto& ex : io::read_glue(data, io::GlueTask::sst2).examples)
      sentences.push_back(std::move(ex.text_a));
    std::fprintf(stderr, "bench_tokenizer: %zu sentences from %s, %d threads\n", sentences.size(),
                 data.string().c_str(), num_threads());

    std::printf("case\tsentences\ttokens\tms\ttokens_per_s\tratio_to_regex\n");
    Index tokens = 0;
    const auto gpt2 = io::BpeTokenizer::load(tokenizers / "gpt2");
    const double cold = time_ms([&] {
      for (const auto& s : sentences) tokens += static_cast<Index>(gpt2.encode(s).size());
    });
    const double warm = time_ms([&] {
      for (const auto& s : sentences) gpt2.encode(s);
    });
    // The same regex encode() runs, alone; the pieces are counted so the loop is not optimised out.
    const io::detail::Regex regex(
        R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)");
    Index pieces = 0;
    const double regex_ms = time_ms([&] {
      for (const auto& s : sentences)
        for (std::size_t pos = 0; pos < s.size(); ++pieces) pos = regex.find(s, pos)->second;
    });
    const auto roberta = io::BpeTokenizer::load(tokenizers / "roberta");
    for (const auto& s : sentences) roberta.encode(s);  // fills this thread's word cache
    roberta.encode_many(sentences);                      // and the other threads'
    const io::EncodeOptions options{.max_length = 128};
    const double batch32 = time_ms([&] {
      for (std::size_t i = 0; i < sentences.size(); i += 32)
        roberta.encode_batch(
            std::span(sentences).subspan(i, std::min<std::size_t>(32, sentences.size() - i)), {},
            options);
    });
    const double many = time_ms([&] { roberta.encode_many(sentences, {}, options); });

    const auto row = [&](const std::string& name, double ms, Index count) {
      std::printf("%s\t%zu\t%lld\t%.1f\t%.0f\t%.2f\n", name.c_str(), sentences.size(),
                  static_cast<long long>(count), ms, static_cast<double>(count) / (ms / 1000.0),
                  ms / regex_ms);
    };
    row("regex_only", regex_ms, tokens);
    row("encode_cold", cold, tokens);
    row("encode_warm", warm, tokens);
    row("batch32_roberta", batch32, tokens);
    row("many_roberta_threads", many, tokens);
    const std::pair<const char*, fs::path> hf_files[] = {
        {"llama3", source / "../shared/data/tokenizers/llama3"},
        {"mistral", source / "tests/fixtures/tokenizer/mistral"}};
    for (const auto& [name, dir] : hf_files) {
      if (!fs::exists(dir / "tokenizer.json")) {
        std::fprintf(stderr, "bench_tokenizer: %s absent, hf_%s skipped\n",
                     (dir / "tokenizer.json").string().c_str(), name);
        continue;
      }
      const auto hf = io::HfTokenizer::load(dir);
      Index hf_tokens = 0;
      const double hf_cold = time_ms([&] {
        for (const auto& s : sentences) hf_tokens += static_cast<Index>(hf.encode(s).size());
      });
      const double hf_warm = time_ms([&] {
        for (const auto& s : sentences) hf.encode(s);
      });
      row(std::string("hf_") + name + "_cold", hf_cold, hf_tokens);
      row(std::string("hf_") + name + "_warm", hf_warm, hf_tokens);
    }
    std::fprintf(stderr, "bench_tokenizer: %lld pre-tokens\n", static_cast<long long>(pieces));
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_tokenizer: %s\n", e.what());
    return 1;
  }
}
