// fourierft tokenize — token ids of each line of stdin, with a GPT-2 / RoBERTa vocabulary
// (vocab.json + merges.txt) or a Hugging Face tokenizer.json: one output line of space-separated
// ids per input line (or, with --decode, the text of each line of ids).
//
//   echo "Hello world" | fourierft tokenize --vocab vocab.json --merges merges.txt
//   15496 995                                        (GPT-2; plain encode, no special tokens)
//   printf 'A man sleeps.\tA person rests.\n' | fourierft tokenize --pair --vocab v.json ...
//   0 250 313 36831 4 2 2 250 621 24859 4 2          (RoBERTa: <s> A </s></s> B </s>)
//   echo "Hello world" | fourierft tokenize --tokenizer mistral/tokenizer.json --add-special-tokens
//   1 22557 1526                                     (<s> from tokenizer_config.json's add_bos_token)
#pragma once

#include <algorithm>
#include <cstdint>
#include <iostream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/io/bpe_tokenizer.hpp"
#include "fourierft/io/hf_tokenizer.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/util/args.hpp"

namespace fourierft::cli {

namespace detail {

inline void write_ids(std::ostream& out, const std::vector<std::int64_t>& ids, std::string& text) {
  text.clear();
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) text += ' ';
    text += std::to_string(ids[i]);
  }
  text += '\n';
  out << text;
}

// --tokenizer tokenizer.json: HfTokenizer on each line (a JSON string per line with --jsonl).
inline int tokenize_hf(util::Args& options, std::istream& in, std::ostream& out) {
  const std::string path = options.str("--tokenizer");
  const bool add_special = options.has("--add-special-tokens"), jsonl = options.has("--jsonl");
  const bool split_special = options.has("--split-special-tokens");
  const bool decode = options.has("--decode"), skip_special = options.has("--skip-special-tokens");
  options.reject_unknown();
  check(options.positional().empty(), "tokenize: unexpected argument '",
        options.positional().empty() ? "" : options.positional().front(), "' (see --help)");
  check(!decode || !(add_special || split_special), "tokenize: --decode takes no ",
        "--add-special-tokens or --split-special-tokens");
  check(decode || !skip_special, "tokenize: --skip-special-tokens needs --decode");
  const io::HfTokenizer tokenizer = io::HfTokenizer::load(path);
  const io::SpecialText special = split_special ? io::SpecialText::plain : io::SpecialText::parse;
  std::string line, text;
  for (Index n = 1; std::getline(in, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (decode) {
      std::vector<std::int64_t> ids;
      std::istringstream fields(line);
      for (std::string field; fields >> field;) {
        std::size_t used = 0;
        long long id = -1;
        try {
          id = std::stoll(field, &used);
        } catch (const std::exception&) {
        }
        check<FormatError>(used == field.size() && id >= 0, "stdin:", n, ": '", field,
                           "' is not a token id");
        ids.push_back(id);
      }
      const std::string decoded = tokenizer.decode(ids, skip_special);
      out << (jsonl ? io::Json(decoded).dump() : decoded) << '\n';
      continue;
    }
    std::string value = line;
    if (jsonl) {
      const io::Json j = io::parse_json(line, str_cat("stdin:", n));
      check<FormatError>(j.is_string(), "stdin:", n, ": --jsonl expects a JSON string per line");
      value = j.get<std::string>();
    }
    write_ids(out, add_special ? tokenizer.encode_for_model(value, special)
                               : tokenizer.encode(value, special),
              text);
  }
  check<IoError>(!in.bad(), "tokenize: reading stdin failed");
  out.flush();
  return 0;
}

}  // namespace detail

// Reads `in`, writes `out` (the test calls it with string streams).
inline int tokenize(const std::vector<std::string>& args, std::istream& in, std::ostream& out) {
  util::Args options(args, {"--help", "--pair", "--add-special-tokens", "--jsonl",
                            "--split-special-tokens", "--decode", "--skip-special-tokens"});
  if (options.has("--help")) {
    out << "usage: fourierft tokenize --vocab vocab.json --merges merges.txt [--pair]\n"
           "       fourierft tokenize --tokenizer tokenizer.json [--add-special-tokens] [--jsonl]\n"
           "                          [--split-special-tokens] [--decode [--skip-special-tokens]]\n"
           "Reads lines from stdin and prints the token ids of each, space-separated, one line\n"
           "per input line (a CR before the line end is dropped; every other byte is text).\n"
           "  single mode  plain encode: no special tokens are added, and special-token strings\n"
           "               such as <s> or <|endoftext|> in the text are encoded as text\n"
           "  --pair       each line is two texts separated by one tab; prints RoBERTa's pair\n"
           "               template <s> A </s></s> B </s> (needs a vocabulary with <s> and </s>)\n"
           "  --tokenizer  a Hugging Face tokenizer.json (or its folder); tokenizer_config.json\n"
           "               beside it gives bos/eos and add_bos_token. Added and special tokens\n"
           "               written in the text become their single id, as Hugging Face does\n"
           "  --add-special-tokens   add BOS/EOS as the template says (default: none)\n"
           "  --jsonl      each input line is a JSON string (so a text may hold newlines)\n"
           "  --split-special-tokens encode special-token strings as text (untrusted input)\n"
           "  --decode     each input line is space-separated ids; prints their text (a JSON\n"
           "               string with --jsonl); --skip-special-tokens drops special tokens\n";
    return 0;
  }
  if (options.has("--tokenizer")) return detail::tokenize_hf(options, in, out);
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
    detail::write_ids(out, ids, text);
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
