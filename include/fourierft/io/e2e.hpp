// fourierft/io/e2e.hpp — E2E NLG data (official CSV and LoRA's `mr||ref` lines), references
// grouped by meaning representation, and the GPT-2 prompt and batch layout of the LoRA E2E code.
#pragma once

// The prompt FourierFT's E2E experiments use is that of microsoft/LoRA examples/NLG, which they
// follow: format_converting_e2e.py splits a line at "||" into context and completion;
// gpt2_encode.py --add_bos --add_eos makes
//     context ids    = encode(context) + [50256]        (<|endoftext|> as the separator)
//     completion ids = encode(" " + completion) + [50256]
// and data_utils.py's FT_Dataset trains on input = context + completion, target = input shifted
// left by one, loss mask = 1 on the targets that are completion tokens (their eos included).
// The context is LoRA's spelling of the MR, "name : Alimentum | area : city centre"; made from the
// official "name[Alimentum], area[city centre]" by e2e_lora_context(), which reproduces every line
// of LoRA's valid.txt and test.txt (tests check this when the data is there).

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/io/bpe_tokenizer.hpp"

namespace fourierft::io {

struct E2EExample {
  std::string mr;   // meaning representation (official form, or LoRA's context)
  std::string ref;  // one human reference; empty for testset.csv (MRs only)
  Index line = 0;   // 1-based line where the row starts
};
struct E2EGroup {
  std::string mr;
  std::vector<std::string> refs;  // in file order
};
struct E2EDataset {
  std::string path;
  std::vector<E2EExample> examples;  // one per row, in file order
  std::vector<E2EGroup> groups;      // one per distinct MR, in order of first appearance
  bool has_refs = true;              // false for MR-only files (testset.csv)
};

namespace detail {

inline void group_by_mr(E2EDataset& data) {
  std::unordered_map<std::string, std::size_t> index;
  for (const E2EExample& ex : data.examples) {
    const auto [it, fresh] = index.try_emplace(ex.mr, data.groups.size());
    if (fresh) data.groups.push_back({ex.mr, {}});
    if (data.has_refs) data.groups[it->second].refs.push_back(ex.ref);
  }
}

}  // namespace detail

// The official CSV: header `mr,ref` (or `MR` alone, testset.csv), RFC 4180 fields: a quoted field
// may hold commas, line breaks and "" for a quote; rows end with LF or CRLF; the last needs no
// newline; a UTF-8 byte-order mark is skipped. Header names are matched case-insensitively.
inline E2EDataset read_e2e_csv(const std::filesystem::path& path) {
  E2EDataset data;
  data.path = path.string();
  std::string text = io::detail::read_text_file(path);
  if (text.starts_with("\xEF\xBB\xBF")) text.erase(0, 3);

  // RFC 4180 rows, each with the line it starts on.
  std::vector<std::pair<Index, std::vector<std::string>>> rows;
  const auto row_ends_at = [&](std::size_t k) {  // end of file, LF or CRLF
    return k == text.size() || text[k] == '\n' ||
           (text[k] == '\r' && k + 1 < text.size() && text[k + 1] == '\n');
  };
  Index line = 1;
  std::size_t i = 0;
  while (i < text.size()) {
    const Index row_line = line;
    std::vector<std::string> fields;
    for (;;) {  // one field per pass
      std::string field;
      if (i < text.size() && text[i] == '"') {
        const Index open_line = line;
        ++i;
        for (;;) {
          check<FormatError>(i < text.size(), data.path, ":", open_line,
                             ": quoted field not closed before the end of the file");
          if (text[i] == '"') {
            if (i + 1 < text.size() && text[i + 1] == '"') {
              field += '"';
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          if (text[i] == '\n') ++line;
          field += text[i++];
        }
        check<FormatError>(row_ends_at(i) || text[i] == ',', data.path, ":", line,
                           ": unexpected character '", text.substr(i, 1),
                           "' after a closing quote (expected a comma or the end of the row)");
      } else {
        while (!row_ends_at(i) && text[i] != ',') {
          check<FormatError>(text[i] != '"', data.path, ":", line,
                             ": a quote inside an unquoted field (quote the whole field and "
                             "double the quote)");
          field += text[i++];
        }
      }
      fields.push_back(std::move(field));
      if (i < text.size() && text[i] == ',') {
        ++i;
        continue;
      }
      if (i < text.size()) {  // end of row: LF or CRLF
        i += text[i] == '\r' ? 2u : 1u;
        ++line;
      }
      break;
    }
    rows.emplace_back(row_line, std::move(fields));
  }

  check<FormatError>(!rows.empty(), data.path, ": empty file, expected the header mr,ref");
  std::vector<std::string> header = rows.front().second;
  for (auto& h : header)
    std::transform(h.begin(), h.end(), h.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  data.has_refs = header == std::vector<std::string>{"mr", "ref"};
  check<FormatError>(data.has_refs || header == std::vector<std::string>{"mr"}, data.path,
                     ":1: expected the header mr,ref (or MR), got '",
                     text.substr(0, text.find_first_of("\r\n")), "'");
  const std::size_t n_fields = data.has_refs ? 2 : 1;
  for (std::size_t r = 1; r < rows.size(); ++r) {
    auto& [row_line, fields] = rows[r];
    check<FormatError>(fields.size() == n_fields, data.path, ":", row_line, ": expected ", n_fields,
                       n_fields == 1 ? " field" : " comma-separated fields",
                       " (as the header), found ", fields.size());
    check<FormatError>(!fields[0].empty(), data.path, ":", row_line, ": empty MR");
    data.examples.push_back(
        {std::move(fields[0]), n_fields == 2 ? std::move(fields[1]) : "", row_line});
  }
  detail::group_by_mr(data);
  return data;
}

// LoRA's format (examples/NLG/data/e2e/*.txt): one `context||reference` per line; each line is
// stripped of surrounding whitespace first, as format_converting_e2e.py does.
inline E2EDataset read_e2e_lora(const std::filesystem::path& path) {
  E2EDataset data;
  data.path = path.string();
  const std::string text = io::detail::read_text_file(path);
  std::size_t start = 0;
  for (Index line = 1; start < text.size(); ++line) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string_view row(text.data() + start, end - start);
    start = end + 1;
    const auto first = row.find_first_not_of(" \t\r\f\v");
    row = first == std::string_view::npos ? std::string_view() : row.substr(first);
    row = row.substr(0, row.find_last_not_of(" \t\r\f\v") + 1);
    const std::size_t sep = row.find("||");
    check<FormatError>(
        sep != std::string_view::npos && row.find("||", sep + 2) == std::string_view::npos,
        data.path, ":", line, ": expected one 'context||reference' separator, got '", row, "'");
    data.examples.push_back(
        {std::string(row.substr(0, sep)), std::string(row.substr(sep + 2)), line});
  }
  detail::group_by_mr(data);
  return data;
}

// "name[The Eagle], eatType[coffee shop], priceRange[£20-25]" ->
// "name : The Eagle | Type : coffee shop | price : £ 20 - 25": LoRA's slot names (eatType -> Type,
// priceRange -> price, familyFriendly -> family friendly; name, area, food, near and customer
// rating unchanged), and each value with spaces around every character that is neither a letter,
// a digit nor a space (the data's tokenisation). ValueError for an unknown slot or a broken MR.
inline std::string e2e_lora_context(std::string_view mr) {
  static const std::vector<std::pair<std::string_view, std::string_view>> slots = {
      {"name", "name"},        {"eatType", "Type"},
      {"priceRange", "price"}, {"customer rating", "customer rating"},
      {"near", "near"},        {"food", "food"},
      {"area", "area"},        {"familyFriendly", "family friendly"}};
  static const detail::Regex symbol(R"([^\s\p{L}\p{N}])");
  check(detail::first_invalid_utf8(mr) == std::string_view::npos, "e2e_lora_context: MR '", mr,
        "' is not valid UTF-8");
  std::string out;
  std::size_t pos = 0;
  while (pos < mr.size()) {
    const std::size_t open = mr.find('[', pos), close = mr.find(']', pos);
    check(open != std::string_view::npos && close != std::string_view::npos && open < close,
          "e2e_lora_context: expected slot[value] at offset ", pos, " of MR '", mr, "'");
    std::string_view slot = mr.substr(pos, open - pos);
    while (!slot.empty() && slot.front() == ' ') slot.remove_prefix(1);
    const auto it =
        std::find_if(slots.begin(), slots.end(), [&](const auto& s) { return s.first == slot; });
    check(it != slots.end(), "e2e_lora_context: unknown slot '", slot, "' in MR '", mr, "'");
    // Value: symbols spaced out, then runs of spaces collapsed and the ends trimmed.
    const std::string_view value = mr.substr(open + 1, close - open - 1);
    std::string spaced;
    std::size_t v = 0;
    while (const auto m = symbol.find(value, v)) {
      spaced.append(value, v, m->first - v);
      spaced += ' ';
      spaced.append(value, m->first, m->second - m->first);
      spaced += ' ';
      v = m->second;
    }
    spaced.append(value, v);
    std::string words;
    for (std::size_t k = 0; k < spaced.size(); ++k)
      if (spaced[k] != ' ' || (!words.empty() && words.back() != ' ')) words += spaced[k];
    if (!words.empty() && words.back() == ' ') words.pop_back();
    if (!out.empty()) out += " | ";
    out += std::string(it->second) + " : " + words;
    pos = close + 1;
    if (pos < mr.size()) {
      check(mr[pos] == ',', "e2e_lora_context: expected ',' after slot '", slot, "' in MR '", mr,
            "'");
      ++pos;
    }
  }
  return out;
}

// One example as LoRA's gpt2_encode.py writes it (see the top of the file).
struct LmExample {
  std::vector<std::int64_t> context;     // encode(context) + [eos]
  std::vector<std::int64_t> completion;  // encode(" " + completion) + [eos]
};
inline LmExample e2e_lm_example(const BpeTokenizer& gpt2, std::string_view context,
                                std::string_view completion) {
  const auto eos = gpt2.special_tokens().eos;
  check(eos.has_value(), "e2e_lm_example: the tokenizer has no <|endoftext|> token");
  std::string spaced(1, ' ');  // " " + completion (appended: GCC 12 warns on " " + string)
  spaced.append(completion);
  LmExample ex{gpt2.encode(context), gpt2.encode(spaced)};
  ex.context.push_back(*eos);
  ex.completion.push_back(*eos);
  return ex;
}

// FT_Dataset's training tensors, (B, T) each, T = the longest input in the batch capped at
// max_length (LoRA pads every row to max_length; with right padding and a causal model the loss is
// the same). Rows longer than max_length keep their head.
//   input[t] = (context + completion)[t], 0 after the end
//   target[t] = input[t + 1], 0 after the end
//   mask[t] = 1 where target[t] is a completion token (t >= len(context) - 1), else 0
struct LmBatch {
  Tensor<std::int64_t> input, target;
  Tensor<float> mask;
  std::vector<Index> lengths;  // input tokens per row
};
inline LmBatch e2e_lm_batch(std::span<const LmExample> examples, Index max_length) {
  check(max_length >= 2, "e2e_lm_batch: max_length must be >= 2, got ", max_length);
  Index T = 0;
  for (const LmExample& ex : examples)
    T = std::max(T, static_cast<Index>(ex.context.size() + ex.completion.size()));
  T = std::min(T, max_length);
  const auto B = static_cast<Index>(examples.size());
  LmBatch batch{
      Tensor<std::int64_t>({B, T}), Tensor<std::int64_t>({B, T}), Tensor<float>({B, T}), {}};
  for (Index b = 0; b < B; ++b) {
    const LmExample& ex = examples[static_cast<std::size_t>(b)];
    std::vector<std::int64_t> seq(ex.context);
    seq.insert(seq.end(), ex.completion.begin(), ex.completion.end());
    const Index n = std::min(static_cast<Index>(seq.size()), T);
    const auto c = static_cast<Index>(ex.context.size());
    for (Index t = 0; t < n; ++t) {
      batch.input[b * T + t] = seq[static_cast<std::size_t>(t)];
      if (t + 1 < n) {
        batch.target[b * T + t] = seq[static_cast<std::size_t>(t + 1)];
        batch.mask[b * T + t] = t >= c - 1 ? 1.0f : 0.0f;
      }
    }
    batch.lengths.push_back(n);
  }
  return batch;
}

}  // namespace fourierft::io
