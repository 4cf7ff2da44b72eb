// fourierft generate — text continuation by a causal-LM checkpoint folder (gpt2, llama, mistral,
// qwen2, qwen3), optionally with a PEFT adapter, streamed to stdout as it is generated.
//
//   fourierft generate --model DIR [--adapter DIR] --prompt TEXT [--max-new-tokens N]
//       [--temperature T] [--top-p P] [--top-k K] [--beams B] [--seed S] [--tokenizer PATH]
//
// The prompt is encoded with the folder's tokenizer (tokenizer.json, or vocab.json + merges.txt),
// with the special tokens tokenizer_config.json asks for (Llama's BOS). --temperature 0 (the
// default) is greedy search; T > 0 samples from softmax(logits / T) after top-k then top-p
// filtering (HF's warper order); --beams B > 1 is beam search (printed when it ends).
// Generation stops at the config's eos token or after N new tokens (default 64).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <iostream>
#include <string>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/io/bpe_tokenizer.hpp"
#include "fourierft/io/hf_tokenizer.hpp"
#include "fourierft/models/generation.hpp"
#include "fourierft/models/registry.hpp"
#include "fourierft/peft/adapter_io.hpp"
#include "fourierft/util/args.hpp"

namespace fourierft::cli {

struct GenerateOptions {
  std::filesystem::path model_dir, adapter_dir, tokenizer_path;
  std::string prompt;
  models::GenerationConfig generation;
};

// Streams decoded text: each call decodes every token so far and writes what is new, holding
// back an incomplete UTF-8 sequence (a byte-level token may end mid-character).
class TextStream {
 public:
  explicit TextStream(std::ostream& out) : out_(out) {}
  template <class Decode>
  void update(const std::vector<std::int64_t>& tokens, Decode&& decode) {
    const std::string text = decode(tokens);
    std::size_t complete = text.size();
    // Back off over a trailing partial UTF-8 sequence.
    for (std::size_t back = 1; back <= 3 && back <= text.size(); ++back) {
      const auto c = static_cast<unsigned char>(text[text.size() - back]);
      if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
      const std::size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
      if (need > back) complete = text.size() - back;
      break;
    }
    if (complete > printed_ && text.compare(0, printed_, printed_text_) == 0) {
      out_ << text.substr(printed_, complete - printed_) << std::flush;
      printed_text_ = text.substr(0, complete);
      printed_ = complete;
    }
  }

 private:
  std::ostream& out_;
  std::string printed_text_;
  std::size_t printed_ = 0;
};

// The folder's tokenizer as two functions: text -> prompt ids (with the special tokens the
// tokenizer's config adds: Llama's BOS) and ids -> text (special tokens skipped).
struct PromptCodec {
  std::function<std::vector<std::int64_t>(const std::string&)> encode;
  std::function<std::string(const std::vector<std::int64_t>&)> decode;
};
// tokenizer.json (a file, or a folder holding one) if there is one, else vocab.json + merges.txt.
inline PromptCodec prompt_codec(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  const bool hf = fs::is_directory(path) ? fs::exists(path / "tokenizer.json")
                                         : path.extension() == ".json";
  if (hf) {
    auto t = std::make_shared<const io::HfTokenizer>(io::HfTokenizer::load(path));
    return {[t](const std::string& text) { return t->encode_for_model(text); },
            [t](const std::vector<std::int64_t>& ids) { return t->decode(ids, true); }};
  }
  auto t = std::make_shared<const io::BpeTokenizer>(io::BpeTokenizer::load(path));
  return {[t](const std::string& text) { return t->encode(text); },
          [t](const std::vector<std::int64_t>& ids) { return t->decode(ids, true); }};
}

// What `fourierft generate` does, writing the continuation to `out`; returns the new token ids.
inline std::vector<std::int64_t> run_generate(const GenerateOptions& options, std::ostream& out) {
  const auto& entry = models::model_registry<float>().resolve(options.model_dir);
  check(entry.task == models::Task::causal_lm, "'", options.model_dir.string(), "' holds a ",
        entry.model_type, " model (", entry.architecture,
        "); generate needs a causal LM (gpt2, llama, mistral, qwen2, qwen3)");
  const PromptCodec tokenizer =
      prompt_codec(options.tokenizer_path.empty() ? options.model_dir : options.tokenizer_path);
  auto model = entry.from_pretrained(options.model_dir, nullptr, {});
  if (!options.adapter_dir.empty()) {
    peft::load_adapter(model->module(), options.adapter_dir);
    model->module().eval();
  }
  const std::vector<std::int64_t> prompt = tokenizer.encode(options.prompt);
  check(!prompt.empty(), "generate: the prompt encodes to no tokens");

  models::GenerationConfig config = options.generation;
  std::vector<std::int64_t> generated;
  TextStream stream(out);
  config.on_token = [&](Index, std::int64_t token) {
    if (config.eos_token_id && token == *config.eos_token_id) return;
    generated.push_back(token);
    stream.update(generated, tokenizer.decode);
  };
  if (!config.eos_token_id) config.eos_token_id = model->config().eos_token_id;
  model->generate({prompt}, config);
  out << "\n";
  return generated;
}

inline int cmd_generate(const std::vector<std::string>& argv) {
  util::Args args(argv, {"--help"});
  if (args.has("--help")) {
    std::cout
        << "usage: fourierft generate --model DIR [--adapter DIR] --prompt TEXT\n"
           "         [--max-new-tokens N] [--temperature T] [--top-p P] [--top-k K] [--beams B]\n"
           "         [--seed S] [--tokenizer FILE]\n"
           "  Continues TEXT with a causal-LM checkpoint folder, streaming to stdout.\n"
           "  --temperature 0 (default) is greedy; T > 0 samples (top-k default 50, top-p 1);\n"
           "  --beams B > 1 is beam search. --max-new-tokens defaults to 64.\n";
    return 0;
  }
  GenerateOptions options;
  options.model_dir = args.str("--model");
  options.adapter_dir = args.str("--adapter", "");
  options.tokenizer_path = args.str("--tokenizer", "");
  options.prompt = args.str("--prompt");
  models::GenerationConfig& g = options.generation;
  g.max_new_tokens = args.integer("--max-new-tokens", 64);
  g.temperature = args.real("--temperature", 0.0);
  check(g.temperature >= 0.0, "--temperature = ", g.temperature, " must be >= 0 (0 = greedy)");
  g.do_sample = g.temperature > 0.0;
  if (!g.do_sample) g.temperature = 1.0;
  g.top_p = args.real("--top-p", 1.0);
  g.top_k = args.integer("--top-k", 50);
  g.num_beams = args.integer("--beams", 1);
  g.seed = static_cast<std::uint64_t>(args.integer("--seed", 0));
  check(!(g.do_sample && g.num_beams > 1),
        "--beams > 1 with --temperature > 0 (beam sampling) is not supported");
  args.reject_unknown();
  check(args.positional().empty(), "unexpected argument '",
        args.positional().empty() ? "" : args.positional().front(), "'");
  run_generate(options, std::cout);
  return 0;
}

}  // namespace fourierft::cli
