// fourierft — the command-line program. Each subcommand lives in examples/cli/cmd_<name>.hpp as
//   int cmd_<name>(const std::vector<std::string>& args)   (args exclude the subcommand name)
// and is listed in the table below. Names, options and file formats are a stable interface: users'
// scripts depend on them. Errors print one line to stderr and exit non-zero.
#include <cstdio>
#include <exception>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/version.hpp"
#include "cmd_forward.hpp"
#include "cmd_generate.hpp"
#include "cmd_inspect.hpp"
#include "cmd_lm_grad.hpp"
#include "cmd_param_table.hpp"
#include "cmd_prompt.hpp"
#include "cmd_score_e2e.hpp"
#include "cmd_serve.hpp"
#include "cmd_tokenize.hpp"

namespace {

struct Subcommand {
  const char* name;
  const char* summary;
  std::function<int(const std::vector<std::string>&)> run;
};

const std::vector<Subcommand>& subcommands() {
  static const std::vector<Subcommand> table = {
      // {"name", "one-line summary", cmd_name},
      {"forward", "logits and last_hidden_state of a checkpoint folder (gpt2, llama family, roberta, vit)",
       fourierft::cli::cmd_forward},
      {"lm-grad", "causal-LM loss and every parameter's gradient on saved token ids",
       fourierft::cli::cmd_lm_grad},
      {"generate", "continue a text prompt with a causal-LM folder (+ adapter), streamed to stdout",
       fourierft::cli::cmd_generate},
      {"inspect", "tensor names, dtypes, shapes, metadata and parameter count of a .safetensors file",
       fourierft::cli::cmd_inspect},
      {"param-table", "the paper's Table 1: LoRA vs FourierFT trainable parameters and adapter bytes",
       fourierft::cli::cmd_param_table},
      {"prompt", "the text an instruction record or a conversation becomes (Alpaca, FourierFT, chat template)",
       fourierft::cli::cmd_prompt},
      {"score-e2e", "E2E NLG metrics (BLEU, NIST, METEOR, ROUGE-L, CIDEr) of outputs vs references",
       fourierft::cli::cmd_score_e2e},
      {"serve", "OpenAI-compatible HTTP server: one base model, many FourierFT/LoRA adapters per batch",
       fourierft::cli::cmd_serve},
      {"tokenize", "token ids of each stdin line (vocab.json + merges.txt, or a tokenizer.json)",
       fourierft::cli::cmd_tokenize},
  };
  return table;
}

void print_usage(std::ostream& out) {
  out << "usage: fourierft <subcommand> [options]     (fourierft --version: the version)\n\nsubcommands:\n";
  for (const Subcommand& s : subcommands()) out << "  " << s.name << "  " << s.summary << "\n";
  out << "\nRun 'fourierft <subcommand> --help' for its options.\n";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    print_usage(argc < 2 ? std::cerr : std::cout);
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  if (name == "--version") {
    std::cout << "fourierft " << fourierft::version_string << "\n";
    return 0;
  }
  const std::vector<std::string> args(argv + 2, argv + argc);
  for (const Subcommand& s : subcommands()) {
    if (name != s.name) continue;
    try {
      return s.run(args);
    } catch (const fourierft::Error& e) {
      std::cerr << "fourierft " << name << ": " << e.what() << "\n";
      return 1;
    } catch (const std::exception& e) {
      std::cerr << "fourierft " << name << ": unexpected error: " << e.what() << "\n";
      return 1;
    }
  }
  std::cerr << "fourierft: unknown subcommand '" << name << "'\n";
  print_usage(std::cerr);
  return 2;
}
