// fourierft tokenize — byte-level BPE token ids of each line of stdin, with a GPT-2 or RoBERTa
// vocabulary: one output line of space-separated ids per input line.
//
//   echo "Hello world" | fourierft tokenize --vocab vocab.json --merges merges.txt
//   15496 995                                        (GPT-2; plain encode, no special tokens)
//   printf 'A man sleeps.\tA person rests.\n' | fourierft tokenize --pair --vocab v.json ...
//   0 250 313 36831 4 2 2 250 621 24859 4 2          (RoBERTa: <s> A </s></s> B </s>)
#pragma once

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/io/bpe_tokenizer.hpp"
#include "fourierft/util/args.hpp"

namespace fourierft::cli {

// Reads `in`, writes `out` (the test calls it with string streams).
inline int tokenize(const std::vector<std::string>& args, std::istream& in, std::ostream& out) {
  util::Args options(args, {"--help", "--pair"});
  if (options.has("--help")) {
    out << "usage: fourierft tokenize --vocab vocab.json --merges merges.txt [--pair]\n"
           "Reads lines from stdin and prints the token ids of each, space-separated, one line\n"
           "per input line (a CR before the line end is dropped; every other byte is text).\n"
           "  single mode  plain encode: no special tokens are added, and special-token strings\n"
           "               such as <s> or <|endoftext|> in the text are encoded as text\n"
           "  --pair       each line is two texts separated by one tab; prints RoBERTa's pair\n"
           "               template <s> A </s></s> B </s> (needs a vocabulary with <s> and </s>)\n";
    return 0;
  }
  const std::string vocab = options.str("--vocab"), merges = options.str("--merges");
  const bool pair = options.has("--pair");
  options.reject_unknown();
  check(options.positional().empty(), "tokenize: unexpected argument '",
        options.positional().empty() ? "" : options.positional().front(), "' (see --help)");

  const io::BpeTokenizer tokenizer = io::BpeTokenizer::from_files(vocab, merges);
  check(!pair || tokenizer.template_kind() == io::Template::roberta, "tokenize: --pair needs a ",
        "vocabulary with <s> and </s> (RoBERTa's); ", vocab, " has none");
  std::string line, text;
  for (Index n = 1; std::getline(in, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::vector<std::int64_t> ids;
    if (pair) {
      const auto tab = line.find('\t');
      check<FormatError>(tab != std::string::npos && line.find('\t', tab + 1) == std::string::npos,
                         "stdin:", n, ": --pair expects two texts separated by one tab, found ",
                         std::count(line.begin(), line.end(), '\t') + 1, " fields");
      ids = tokenizer.encode_for_model(std::string_view(line).substr(0, tab),
                                       std::string_view(line).substr(tab + 1));
    } else {
      ids = tokenizer.encode(line);
    }
    text.clear();
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (i > 0) text += ' ';
      text += std::to_string(ids[i]);
    }
    text += '\n';
    out << text;
  }
  check<IoError>(!in.bad(), "tokenize: reading stdin failed");
  out.flush();
  return 0;
}

inline int cmd_tokenize(const std::vector<std::string>& args) {
  std::ios::sync_with_stdio(false);
  return tokenize(args, std::cin, std::cout);
}

}  // namespace fourierft::cli
