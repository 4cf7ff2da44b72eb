// fourierft/metrics/generation.hpp — the E2E NLG challenge scorer (tuetschek/e2e-metrics): BLEU,
// NIST, METEOR, ROUGE-L and CIDEr of system outputs against grouped references, and its file format.
#pragma once

#include <string>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/metrics/bleu_nist.hpp"
#include "fourierft/metrics/meteor.hpp"
#include "fourierft/metrics/rouge_cider.hpp"
#include "fourierft/metrics/text.hpp"

namespace fourierft::metrics {

// The five numbers measure_scores.py prints. BLEU is in 0..1 (the challenge reports it x100).
struct E2EScores {
  double bleu = 0, nist = 0, meteor = 0, rouge_l = 0, cider = 0;
};

// Scores hyps[i] against the reference group refs[i], as measure_scores.py does: BLEU and NIST by
// mteval-v13a on the raw text; METEOR (exact + stem, see MeteorOptions), ROUGE-L and CIDEr-D by the
// COCO caption code on coco_tokenize'd text. Lines are used as given (the file readers strip them).
inline E2EScores score_e2e(const std::vector<std::string>& hyps,
                           const std::vector<std::vector<std::string>>& refs,
                           const MeteorOptions& meteor_options = {}) {
  check(hyps.size() == refs.size(), "score_e2e: ", hyps.size(), " hypotheses but ", refs.size(),
        " reference groups");
  check(!hyps.empty(), "score_e2e: no hypotheses");
  for (std::size_t i = 0; i < refs.size(); ++i)
    check(!refs[i].empty(), "score_e2e: hypothesis ", i + 1, " has no references");
  E2EScores s;
  const BleuNist bn = mteval_bleu_nist(hyps, refs);
  s.bleu = bn.bleu;
  s.nist = bn.nist;
  std::vector<std::string> hyp_tok;
  std::vector<std::vector<std::string>> ref_tok(refs.size());
  for (const std::string& h : hyps) hyp_tok.push_back(coco_tokenize(h));
  for (std::size_t i = 0; i < refs.size(); ++i)
    for (const std::string& r : refs[i]) ref_tok[i].push_back(coco_tokenize(r));
  s.meteor = meteor(hyp_tok, ref_tok, meteor_options);
  s.rouge_l = rouge_l(hyp_tok, ref_tok);
  s.cider = cider_d(hyp_tok, ref_tok);
  return s;
}

// System outputs, one per line (each stripped of surrounding whitespace; empty lines are outputs).
inline std::vector<std::string> read_hypotheses(const std::string& path) {
  std::vector<std::string> out;
  for (const std::string& line : text::read_lines(path)) out.push_back(text::strip(line));
  return out;
}

// The E2E scorer's plain-text references: one reference per line, groups separated by one empty
// line, group i for hypothesis i; blank lines at the end are ignored. As in measure_scores.py, a
// file without any empty line is single-reference: every line is its own group.
inline std::vector<std::vector<std::string>> read_reference_groups(const std::string& path) {
  std::vector<std::vector<std::string>> groups(1);
  const auto lines = text::read_lines(path);
  std::size_t stray_blank = 0;  // a blank line that closes no group: 1-based line number
  for (std::size_t i = 0; i < lines.size(); ++i) {
    std::string line = text::strip(lines[i]);
    if (line.empty()) {
      if (!groups.back().empty()) groups.emplace_back();
      else if (!stray_blank) stray_blank = i + 1;
      continue;
    }
    check<FormatError>(!stray_blank, path, ":", stray_blank,
                       ": empty reference group (blank line at the start or two in a row)");
    groups.back().push_back(std::move(line));
  }
  if (groups.back().empty()) groups.pop_back();
  check<FormatError>(!groups.empty(), path, ": no references");
  if (groups.size() == 1 && groups[0].size() > 1) {
    std::vector<std::vector<std::string>> single;
    for (const std::string& r : groups[0]) single.push_back({r});
    return single;
  }
  return groups;
}

}  // namespace fourierft::metrics
