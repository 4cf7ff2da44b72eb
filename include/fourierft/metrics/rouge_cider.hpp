// fourierft/metrics/rouge_cider.hpp — the MS-COCO caption metrics as the E2E scorer runs them:
// its PTB-style tokenisation (lowercase, punctuation tokens dropped), ROUGE-L and CIDEr(-D).
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/metrics/text.hpp"

namespace fourierft::metrics {

// ---------------------------------------------------------------------------
// coco_tokenize: what pycocoevalcap's PTBTokenizer hands the scorers. The original runs Stanford
// CoreNLP 3.4.1's PTBTokenizer (-preserveLines -lowerCase), then drops the tokens
//   '' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ;
// This is a re-implementation of the PTB rules that E2E text exercises (CoreNLP itself is a Java
// jar we do not ship): punctuation is split off words; hyphenated words and numbers stay whole
// ("family-friendly", "20-25", "5.0", "1,000"); clitics split ("it's" -> it 's, "isn't" -> is n't,
// "cannot" -> can not, "Vaults'" -> vaults '); currency symbols are tokens of their own and "£"
// becomes "#" (CoreNLP's PTB3 currency normalisation); a word's internal apostrophe after
// d/o/l ("d'oeuvre", "o'clock") and acronyms ("u.s.") stay whole. Output: tokens joined by one space.
namespace detail {

inline bool coco_alnum(char32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  // Letters of the Latin, Greek and Cyrillic blocks, minus the two Latin-1 operators.
  return (c >= 0xC0 && c <= 0x24F && c != 0xD7 && c != 0xF7) || (c >= 0x370 && c <= 0x52F) ||
         (c >= 0x1E00 && c <= 0x1EFF);
}
inline bool coco_letter(char32_t c) { return coco_alnum(c) && !text::is_ascii_digit(c); }
inline bool coco_apostrophe(char32_t c) { return c == '\'' || c == 0x2019; }
inline bool coco_hyphen(char32_t c) { return c == '-' || c == 0x2010 || c == 0x2011; }

// Splits one whitespace-free chunk into PTB tokens (before lowercasing and filtering).
inline void coco_split_chunk(const std::u32string& s, std::vector<std::u32string>& out) {
  const std::size_t n = s.size();
  std::size_t i = 0;
  auto at = [&](std::size_t k) -> char32_t { return k < n ? s[k] : 0; };
  while (i < n) {
    const char32_t c = s[i];
    if (coco_alnum(c)) {
      // A word: alnum runs joined by hyphens, by [.,:] between digits, by "." in acronyms, and by
      // an apostrophe after a leading d/o/l ("d'oeuvre").
      std::size_t j = i;
      while (true) {
        while (j < n && coco_alnum(s[j])) ++j;
        const char32_t sep = at(j), next = at(j + 1);
        const bool digit_join = (sep == '.' || sep == ',' || sep == ':') && j > i &&
                                text::is_ascii_digit(s[j - 1]) && text::is_ascii_digit(next);
        const bool hyphen_join = coco_hyphen(sep) && coco_alnum(next);
        const bool elision = coco_apostrophe(sep) && j == i + 1 && coco_letter(next) &&
                             std::u32string_view(U"dDoOlL").find(s[i]) != std::u32string::npos;
        if (digit_join || hyphen_join || elision) {
          j += 1;
          continue;
        }
        break;
      }
      // Acronym: single letters each followed by a period ("u.s.", "e.g.").
      if (j == i + 1 && coco_letter(c) && at(j) == '.' && coco_letter(at(j + 1)) &&
          at(j + 2) == '.') {
        j = i;
        while (coco_letter(at(j)) && at(j + 1) == '.') j += 2;
        out.emplace_back(s.substr(i, j - i));
        i = j;
        continue;
      }
      std::u32string word = s.substr(i, j - i);
      // Clitics: n't, 's 'm 'd 'll 're 've (any case), and "cannot".
      if (coco_apostrophe(at(j))) {
        std::size_t k = j + 1;
        while (k < n && coco_letter(s[k])) ++k;
        std::u32string tail = text::to_lower(s.substr(j + 1, k - j - 1));
        const bool word_ends = k == n || !coco_alnum(at(k));
        if (word_ends && (tail == U"s" || tail == U"m" || tail == U"d" || tail == U"ll" ||
                          tail == U"re" || tail == U"ve")) {
          out.push_back(word);
          out.push_back(U"'" + s.substr(j + 1, k - j - 1));  // PTB3 writes ’ as '
          i = k;
          continue;
        }
        if (word_ends && tail == U"t" && word.size() >= 2 &&
            text::to_lower(word.back()) == U'n') {
          out.emplace_back(word.substr(0, word.size() - 1));
          out.push_back(word.back() + (U"'" + s.substr(j + 1, k - j - 1)));
          i = k;
          continue;
        }
      }
      if (text::to_lower(word) == U"cannot") {
        out.emplace_back(word.substr(0, 3));
        out.emplace_back(word.substr(3));
        i = j;
        continue;
      }
      out.push_back(word);
      i = j;
      continue;
    }
    if (c == '.' && at(i + 1) == '.' && at(i + 2) == '.') {  // ellipsis
      std::size_t j = i;
      while (at(j) == '.') ++j;
      out.emplace_back(U"...");
      i = j;
      continue;
    }
    if (coco_hyphen(c) && coco_hyphen(at(i + 1))) {  // -- dash
      std::size_t j = i;
      while (coco_hyphen(at(j))) ++j;
      out.emplace_back(U"--");
      i = j;
      continue;
    }
    if (c == 0x2013 || c == 0x2014) {  // en / em dash: PTB3 "--"
      out.emplace_back(U"--");
      ++i;
      continue;
    }
    if (c == '`' && at(i + 1) == '`') {
      out.emplace_back(U"``");
      i += 2;
      continue;
    }
    if (coco_apostrophe(c) && coco_apostrophe(at(i + 1))) {
      out.emplace_back(U"''");
      i += 2;
      continue;
    }
    // Every other character is a token of its own; brackets and quotes get their PTB names.
    switch (c) {
      case '(': out.emplace_back(U"-LRB-"); break;
      case ')': out.emplace_back(U"-RRB-"); break;
      case '[': out.emplace_back(U"-LSB-"); break;
      case ']': out.emplace_back(U"-RSB-"); break;
      case '{': out.emplace_back(U"-LCB-"); break;
      case '}': out.emplace_back(U"-RCB-"); break;
      case '"': case 0x201C: case 0x201D: out.emplace_back(U"''"); break;
      case 0x2018: case 0x2019: out.emplace_back(U"'"); break;
      case 0xA3: out.emplace_back(U"#"); break;  // £, PTB3 currency normalisation
      default: out.emplace_back(1, c);
    }
    ++i;
  }
}

}  // namespace detail

inline std::string coco_tokenize(std::string_view line) {
  static const std::set<std::u32string> dropped = {
      U"''", U"'", U"``", U"`", U"-LRB-", U"-RRB-", U"-LCB-", U"-RCB-",
      U".",  U"?", U"!",  U",", U":",     U"-",     U"--",    U"...",   U";"};
  std::u32string u = text::decode_utf8(line), chunk;
  std::vector<std::u32string> tokens;
  for (std::size_t i = 0; i <= u.size(); ++i) {
    if (i == u.size() || text::is_space(u[i])) {
      if (!chunk.empty()) detail::coco_split_chunk(chunk, tokens);
      chunk.clear();
    } else {
      chunk.push_back(u[i]);
    }
  }
  std::string out;
  for (const std::u32string& t : tokens) {
    if (dropped.count(t)) continue;
    if (!out.empty()) out += ' ';
    out += text::encode_utf8(text::to_lower(t));
  }
  return out;
}

namespace detail {

inline void check_corpus(const char* metric, std::size_t n_hyps, std::size_t n_groups) {
  check(n_hyps == n_groups, metric, ": ", n_hyps, " hypotheses but ", n_groups,
        " reference groups");
  check(n_hyps > 0, metric, ": no hypotheses");
}

// pycocoevalcap splits on single spaces: "" is one empty token.
inline std::vector<std::string> split_single_space(const std::string& s) {
  std::vector<std::string> out(1);
  for (char c : s) {
    if (c == ' ') out.emplace_back();
    else out.back() += c;
  }
  return out;
}

}  // namespace detail

// ---------------------------------------------------------------------------
// ROUGE-L as pycocoevalcap's Rouge (beta = 1.2), on tokenised text (coco_tokenize output).
// Per hypothesis h with references r_1..r_k (tokens split on single spaces):
//   P = max_j LCS(h, r_j) / |h|,  R = max_j LCS(h, r_j) / |r_j|   (maxima taken separately)
//   score = (1 + beta^2) P R / (R + beta^2 P), 0 if P or R is 0;   corpus = mean over hypotheses.
inline double rouge_l(const std::vector<std::string>& hyps,
                      const std::vector<std::vector<std::string>>& refs) {
  detail::check_corpus("rouge_l", hyps.size(), refs.size());
  const double beta = 1.2;
  double total = 0;
  for (std::size_t i = 0; i < hyps.size(); ++i) {
    check(!refs[i].empty(), "rouge_l: hypothesis ", i + 1, " has no references");
    const auto h = detail::split_single_space(hyps[i]);
    double p_max = 0, r_max = 0;
    for (const std::string& ref : refs[i]) {
      const auto r = detail::split_single_space(ref);
      // lcs[a][b] over prefixes; one rolling row is enough.
      std::vector<int> prev(h.size() + 1, 0), cur(h.size() + 1, 0);
      for (std::size_t a = 1; a <= r.size(); ++a) {
        for (std::size_t b = 1; b <= h.size(); ++b)
          cur[b] = r[a - 1] == h[b - 1] ? prev[b - 1] + 1 : std::max(prev[b], cur[b - 1]);
        std::swap(prev, cur);
      }
      const double lcs = prev[h.size()];
      p_max = std::max(p_max, lcs / static_cast<double>(h.size()));
      r_max = std::max(r_max, lcs / static_cast<double>(r.size()));
    }
    if (p_max != 0 && r_max != 0)
      total += (1 + beta * beta) * p_max * r_max / (r_max + beta * beta * p_max);
  }
  return total / static_cast<double>(hyps.size());
}

// ---------------------------------------------------------------------------
// CIDEr as pycocoevalcap's Cider/CiderScorer (that is CIDEr-D: clipped counts, Gaussian length
// penalty, sigma = 6, n = 1..4, times 10), on tokenised text (coco_tokenize output).
//   df(g) = number of hypotheses whose references contain n-gram g;  N = number of hypotheses
//   vec(s)[g] = count_s(g) * (log N - log max(1, df(g)))   (one vector per n)
//   sim_n(h, r) = sum_g min(vec_h[g], vec_r[g]) vec_r[g] / (|vec_h| |vec_r|)   (0 if a norm is 0)
//                 * exp(-(len_h - len_r)^2 / (2 sigma^2)),   len = number of bigrams (not words)
//   CIDEr(h) = 10 / k * sum_j mean_n sim_n(h, r_j);   corpus = mean over hypotheses.
inline double cider_d(const std::vector<std::string>& hyps,
                      const std::vector<std::vector<std::string>>& refs) {
  detail::check_corpus("cider_d", hyps.size(), refs.size());
  constexpr int max_n = 4;
  const double sigma = 6.0;
  using Counts = std::map<std::vector<std::string>, double>;
  auto cook = [](const std::string& s) {
    const auto words = text::split_whitespace(s);
    Counts counts;
    for (int k = 1; k <= max_n; ++k)
      for (std::size_t i = 0; i + k <= words.size(); ++i)
        counts[std::vector<std::string>(words.begin() + i, words.begin() + i + k)] += 1;
    return counts;
  };
  std::vector<Counts> test;
  std::vector<std::vector<Counts>> crefs;
  std::map<std::vector<std::string>, double> df;
  for (std::size_t i = 0; i < hyps.size(); ++i) {
    check(!refs[i].empty(), "cider_d: hypothesis ", i + 1, " has no references");
    test.push_back(cook(hyps[i]));
    crefs.emplace_back();
    std::set<std::vector<std::string>> seen;
    for (const std::string& r : refs[i]) {
      crefs.back().push_back(cook(r));
      for (const auto& [g, c] : crefs.back().back()) seen.insert(g);
    }
    for (const auto& g : seen) df[g] += 1;
  }
  const double log_n = std::log(static_cast<double>(hyps.size()));
  struct Vec {
    std::map<std::vector<std::string>, double> w;
    double norm[max_n] = {0, 0, 0, 0};
    double length = 0;  // pycocoevalcap counts bigrams here
  };
  auto to_vec = [&](const Counts& counts) {
    Vec v;
    for (const auto& [g, tf] : counts) {
      auto it = df.find(g);
      const double d = std::log(std::max(1.0, it == df.end() ? 0.0 : it->second));
      const double w = tf * (log_n - d);
      v.w[g] = w;
      v.norm[g.size() - 1] += w * w;
      if (g.size() == 2) v.length += tf;
    }
    for (double& x : v.norm) x = std::sqrt(x);
    return v;
  };
  double total = 0;
  for (std::size_t i = 0; i < hyps.size(); ++i) {
    const Vec h = to_vec(test[i]);
    double sum = 0;
    for (const Counts& rc : crefs[i]) {
      const Vec r = to_vec(rc);
      const double delta = h.length - r.length;
      const double penalty = std::exp(-(delta * delta) / (2 * sigma * sigma));
      double val[max_n] = {0, 0, 0, 0};
      for (const auto& [g, wh] : h.w) {
        auto it = r.w.find(g);
        const double wr = it == r.w.end() ? 0.0 : it->second;
        val[g.size() - 1] += std::min(wh, wr) * wr;
      }
      for (int n = 0; n < max_n; ++n) {
        if (h.norm[n] != 0 && r.norm[n] != 0) val[n] /= h.norm[n] * r.norm[n];
        sum += val[n] * penalty / max_n;
      }
    }
    total += sum / static_cast<double>(crefs[i].size()) * 10.0;
  }
  return total / static_cast<double>(hyps.size());
}

}  // namespace fourierft::metrics
