// fourierft score-e2e — the E2E NLG challenge metrics of system outputs, like the official
// scorer's measure_scores.py: prints {"BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr"} as JSON.
//
//   fourierft score-e2e --refs testset_w_refs.csv --hyps outputs.txt
//   fourierft score-e2e --refs refs.txt --hyps outputs.txt
//
// --refs: the official CSV (header mr,ref; references grouped by MR in first-appearance order) or
// the scorer's plain text (one reference per line, groups separated by an empty line).
// --hyps: one output per line, line i for reference group i.
#pragma once

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/metrics/generation.hpp"
#include "fourierft/util/args.hpp"

namespace fourierft::cli {

namespace detail {

// RFC 4180 records: quoted fields may hold commas, newlines and "" for a quote. Returns each
// record with the 1-based line it starts on; `source` names the file in errors.
inline std::vector<std::pair<std::size_t, std::vector<std::string>>> parse_csv(
    std::string data, const std::string& source) {
  if (data.rfind("\xEF\xBB\xBF", 0) == 0) data.erase(0, 3);
  std::vector<std::pair<std::size_t, std::vector<std::string>>> rows;
  std::vector<std::string> row;
  std::string field;
  std::size_t line = 1, row_line = 1;
  bool quoted = false, started = false;  // started: the record has a field or a separator
  auto end_row = [&] {
    row.push_back(field);
    if (started || !field.empty()) rows.emplace_back(row_line, row);
    row.clear();
    field.clear();
    started = false;
  };
  for (std::size_t i = 0; i < data.size(); ++i) {
    const char c = data[i];
    if (quoted) {
      if (c == '"' && i + 1 < data.size() && data[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        line += c == '\n';
        field += c;
      }
    } else if (c == '"' && field.empty()) {
      quoted = started = true;
    } else if (c == ',') {
      row.push_back(field);
      field.clear();
      started = true;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < data.size() && data[i + 1] == '\n') ++i;
      end_row();
      row_line = ++line;
    } else {
      field += c;
      started = true;
    }
  }
  check<FormatError>(!quoted, source, ":", row_line, ": quoted field is not closed");
  if (started || !field.empty()) end_row();
  return rows;
}

inline std::vector<std::pair<std::size_t, std::vector<std::string>>> read_csv(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check<IoError>(in.good(), path, ": cannot open file");
  return parse_csv(std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()),
                   path);
}

// The official CSV's first line: mr,ref (quoted or not, any case).
inline bool is_csv_header(const std::string& line) {
  std::string key;
  for (char c : metrics::text::to_lower(metrics::text::strip(line)))
    if (c != '"' && c != ' ') key += c;
  return key == "mr,ref";
}

// References of the official CSV, grouped by MR in the order MRs first appear.
inline std::vector<std::vector<std::string>> read_csv_reference_groups(const std::string& path) {
  const auto rows = read_csv(path);
  std::vector<std::vector<std::string>> groups;
  std::map<std::string, std::size_t> group_of;
  for (std::size_t r = 1; r < rows.size(); ++r) {
    const auto& [line, fields] = rows[r];
    check<FormatError>(fields.size() == 2, path, ":", line, ": expected 2 fields (mr,ref), found ",
                       fields.size());
    auto [it, fresh] = group_of.emplace(fields[0], groups.size());
    if (fresh) groups.emplace_back();
    groups[it->second].push_back(metrics::text::strip(fields[1]));
  }
  check<FormatError>(!groups.empty(), path, ": no references after the header");
  return groups;
}

}  // namespace detail

// Reads REFS (CSV or plain text, told apart by the CSV's mr,ref header) and HYPS, checks that
// there is one output per reference group, and scores them. *format gets "CSV" or "plain-text".
inline metrics::E2EScores score_e2e_files(const std::string& refs_path, const std::string& hyps_path,
                                          std::string* format = nullptr) {
  const auto lines = metrics::text::read_lines(refs_path);
  const bool csv = !lines.empty() && detail::is_csv_header(lines[0]);
  const auto refs = csv ? detail::read_csv_reference_groups(refs_path)
                        : metrics::read_reference_groups(refs_path);
  const auto hyps = metrics::read_hypotheses(hyps_path);
  check(hyps.size() == refs.size(), refs_path, " has ", refs.size(), " reference groups but ",
        hyps_path, " has ", hyps.size(), " outputs (one output per group expected)");
  if (format) *format = csv ? "CSV" : "plain-text";
  return metrics::score_e2e(hyps, refs);
}

inline int cmd_score_e2e(const std::vector<std::string>& argv) {
  util::Args args(argv, {"--help"});
  if (args.has("--help")) {
    std::cout << "usage: fourierft score-e2e --refs REFS --hyps HYPS\n\n"
                 "E2E NLG metrics of system outputs, as the official e2e-metrics scorer computes "
                 "them.\n  --refs  official CSV (mr,ref) or plain text: references one per line,\n"
                 "          groups separated by an empty line\n"
                 "  --hyps  system outputs, one per line, in reference-group order\n"
                 "Prints a JSON object with BLEU, NIST, METEOR, ROUGE_L, CIDEr.\n"
                 "METEOR uses the exact and stem modules only (see docs/metrics.md).\n";
    return 0;
  }
  const std::string refs_path = args.str("--refs"), hyps_path = args.str("--hyps");
  args.reject_unknown();
  check(args.positional().empty(), "unexpected argument '",
        args.positional().empty() ? "" : args.positional()[0], "'");
  std::string format;
  const metrics::E2EScores s = score_e2e_files(refs_path, hyps_path, &format);
  std::cerr << "score-e2e: " << format << " references; METEOR with the exact and stem modules "
            << "only (no synonym/paraphrase modules, no function-word list)\n";
  std::printf("{\"BLEU\": %.10f, \"NIST\": %.10f, \"METEOR\": %.10f, \"ROUGE_L\": %.10f, "
              "\"CIDEr\": %.10f}\n",
              s.bleu, s.nist, s.meteor, s.rouge_l, s.cider);
  return 0;
}

}  // namespace fourierft::cli
