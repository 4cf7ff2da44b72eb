// fourierft/metrics/bleu_nist.hpp — corpus BLEU and NIST exactly as NIST's mteval-v13a.pl computes
// them for the E2E scorer: its tokenisation, multi-reference statistics and smoothing.
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/metrics/text.hpp"

namespace fourierft::metrics {

namespace detail {

// Perl's \s on a Unicode string (no U+001C..U+001F, unlike Python's str.isspace).
inline bool perl_space(char32_t c) { return text::is_space(c) && !(c >= 0x1C && c <= 0x1F); }

// One pass of a Perl s/(A)(B)/.../g with single-character A and B: left to right, non-overlapping.
template <class First, class Second, class Emit>
std::u32string perl_pair_rule(const std::u32string& s, First first, Second second, Emit emit) {
  std::u32string out;
  out.reserve(s.size() + s.size() / 2);
  for (std::size_t i = 0; i < s.size();) {
    if (i + 1 < s.size() && first(s[i]) && second(s[i + 1])) {
      emit(out, s[i], s[i + 1]);
      i += 2;
    } else {
      out += s[i++];
    }
  }
  return out;
}

inline std::u32string replace_all(std::u32string s, std::u32string_view from, std::u32string_view to) {
  for (std::size_t p = s.find(from); p != std::u32string::npos; p = s.find(from, p + to.size()))
    s.replace(p, from.size(), to);
  return s;
}

}  // namespace detail

// ---------------------------------------------------------------------------
// mteval_tokenize: sub tokenization of mteval-v13a.pl (the default, non-international one), applied
// to one segment after the SGML reader has turned every whitespace run into one space:
//   strip <skipped>; &quot; &amp; &lt; &gt; -> " & < >; lowercase ASCII A-Z only;
//   space out { | } ~ [ \ ] ^ _ ` space ! " # $ % & ( ) * + : ; < = > ? @ /;
//   split . and , unless between digits; split - after a digit; collapse and trim spaces.
inline std::string mteval_tokenize(std::string_view segment) {
  using detail::perl_pair_rule;
  std::u32string s;
  for (char32_t c : text::decode_utf8(segment)) {  // the reader's s/[\s\n\r]+/ /g
    if (detail::perl_space(c)) {
      if (s.empty() || s.back() != U' ') s += U' ';
    } else {
      s += c;
    }
  }
  s = detail::replace_all(s, U"<skipped>", U"");
  s = detail::replace_all(s, U"&quot;", U"\"");
  s = detail::replace_all(s, U"&amp;", U"&");
  s = detail::replace_all(s, U"&lt;", U"<");
  s = detail::replace_all(s, U"&gt;", U">");
  s = U" " + s + U" ";
  for (char32_t& c : s)
    if (c >= 'A' && c <= 'Z') c += 32;
  std::u32string spaced;
  for (char32_t c : s) {
    const bool punct = (c >= 0x7B && c <= 0x7E) || (c >= 0x5B && c <= 0x60) ||
                       (c >= 0x20 && c <= 0x26) || (c >= 0x28 && c <= 0x2B) ||
                       (c >= 0x3A && c <= 0x40) || c == '/';
    if (punct) {
      spaced += U' ';
      spaced += c;
      spaced += U' ';
    } else {
      spaced += c;
    }
  }
  auto digit = [](char32_t c) { return text::is_ascii_digit(c); };
  auto not_digit = [](char32_t c) { return !text::is_ascii_digit(c); };
  auto dot_comma = [](char32_t c) { return c == '.' || c == ','; };
  auto dash = [](char32_t c) { return c == '-'; };
  // s/([^0-9])([\.,])/$1 $2 /g;  s/([\.,])([^0-9])/ $1 $2/g;  s/([0-9])(-)/$1 $2 /g
  s = perl_pair_rule(spaced, not_digit, dot_comma, [](std::u32string& o, char32_t a, char32_t b) {
    o += a; o += U' '; o += b; o += U' ';
  });
  s = perl_pair_rule(s, dot_comma, not_digit, [](std::u32string& o, char32_t a, char32_t b) {
    o += U' '; o += a; o += U' '; o += b;
  });
  s = perl_pair_rule(s, digit, dash, [](std::u32string& o, char32_t a, char32_t b) {
    o += a; o += U' '; o += b; o += U' ';
  });
  std::u32string out;
  for (char32_t c : s) {
    if (detail::perl_space(c)) {
      if (!out.empty() && out.back() != U' ') out += U' ';
    } else {
      out += c;
    }
  }
  if (!out.empty() && out.back() == U' ') out.pop_back();
  return text::encode_utf8(out);
}

struct BleuNist {
  double bleu = 0;  // 0..1, as the E2E scorer reports it
  double nist = 0;
};

// ---------------------------------------------------------------------------
// Corpus BLEU (4-gram, "closest" brevity penalty, mteval's smoothing) and NIST (5-gram), one
// document, hypotheses hyps[i] against the reference group refs[i] (raw text; groups may differ in
// size: mteval then sees empty references, which count for nothing).
//   words: mteval_tokenize(...) split on spaces;  clip(g) = min(count_h(g), max_j count_rj(g))
//   BLEU = BP * exp(mean_{n=1..4} log p_n),  p_n = sum_i clip_n / sum_i (|h_i| - n + 1);
//          a p_n with no match becomes 1 / (2^k * total_n) for the k-th such n (smoothing);
//          BP = exp(min(0, 1 - r / c)), r = sum_i of the reference length closest to |h_i|
//          (ties: the shorter), c = sum_i |h_i|.
//   info(g) = log2(count(g[0..n-2]) / count(g)) over all reference words (unigrams: total words)
//   NIST = sum_{n=1..5} sum_i clip_n(g) info(g) / sum_i (|h_i| - n + 1)   times
//          exp(-beta log^2 min(1, c / rbar)),  rbar = (sum of reference words) / (mean number of
//          non-empty references per segment),  beta = -ln 0.5 / ln^2 1.5.
inline BleuNist mteval_bleu_nist(const std::vector<std::string>& hyps,
                                 const std::vector<std::vector<std::string>>& refs) {
  check(hyps.size() == refs.size(), "mteval_bleu_nist: ", hyps.size(), " hypotheses but ",
        refs.size(), " reference groups");
  check(!hyps.empty(), "mteval_bleu_nist: no hypotheses");
  constexpr int bleu_n = 4, nist_n = 5;
  using Gram = std::vector<std::string>;
  auto words_of = [](const std::string& raw) {
    std::vector<std::string> w;
    std::string cur;
    for (char c : mteval_tokenize(raw)) {
      if (c == ' ') {
        w.push_back(cur);
        cur.clear();
      } else {
        cur += c;
      }
    }
    if (!cur.empty()) w.push_back(cur);
    return w;
  };
  auto grams = [](const std::vector<std::string>& w, int max_n) {
    std::map<Gram, double> c;
    for (std::size_t i = 0; i < w.size(); ++i)
      for (int n = 1; n <= max_n && i + n <= w.size(); ++n) c[Gram(w.begin() + i, w.begin() + i + n)] += 1;
    return c;
  };
  std::vector<std::vector<std::vector<std::string>>> ref_words(refs.size());
  std::map<Gram, double> ref_counts;  // over every reference of every segment
  double total_ref_words = 0;
  for (std::size_t i = 0; i < refs.size(); ++i) {
    check(!refs[i].empty(), "mteval_bleu_nist: hypothesis ", i + 1, " has no references");
    for (const std::string& r : refs[i]) {
      ref_words[i].push_back(words_of(r));
      total_ref_words += static_cast<double>(ref_words[i].back().size());
      for (const auto& [g, c] : grams(ref_words[i].back(), nist_n)) ref_counts[g] += c;
    }
  }
  auto info = [&](const Gram& g) {
    const double count = ref_counts.at(g);
    const double context = g.size() == 1 ? total_ref_words
                                          : ref_counts.at(Gram(g.begin(), g.end() - 1));
    return -std::log(count / context) / std::log(2.0);
  };

  double ref_length = 0, ref_segments = 0, ref_unigrams = 0;
  double match[nist_n + 1] = {}, tst[nist_n + 1] = {}, tst_info[nist_n + 1] = {};
  for (std::size_t i = 0; i < hyps.size(); ++i) {
    const auto h = words_of(hyps[i]);
    const double c = static_cast<double>(h.size());
    for (int n = 1; n <= nist_n; ++n) tst[n] += std::max(0.0, c - n + 1);
    // mteval visits the references as sets "ref", "ref_1", "ref_10", "ref_11", ..., "ref_2", ...
    std::vector<std::size_t> order(ref_words[i].size());
    for (std::size_t k = 0; k < order.size(); ++k) order[k] = k;
    std::sort(order.begin() + (order.empty() ? 0 : 1), order.end(),
              [](std::size_t a, std::size_t b) { return std::to_string(a) < std::to_string(b); });
    std::map<Gram, double> max_ref;
    double closest = -1;
    for (std::size_t k : order) {
      const auto& r = ref_words[i][k];
      const double len = static_cast<double>(r.size());
      if (len > 0) ref_segments += 1;
      ref_unigrams += len;
      for (const auto& [g, cnt] : grams(r, nist_n)) max_ref[g] = std::max(max_ref[g], cnt);
      if (closest < 0) {
        closest = len;
      } else if (len > 0) {  // brevity_penalty_closest: nearer wins, a tie goes to the shorter
        const double d_new = std::abs(c - len), d_cur = std::abs(c - closest);
        if (d_new < d_cur || (d_new == d_cur && closest > len)) closest = len;
      }
    }
    ref_length += closest;
    for (const auto& [g, cnt] : grams(h, nist_n)) {
      auto it = max_ref.find(g);
      if (it == max_ref.end()) continue;
      const double clipped = std::min(cnt, it->second);
      match[g.size()] += clipped;
      tst_info[g.size()] += info(g) * clipped;
    }
  }

  BleuNist out;
  // bleu_score (smoothed), system level.
  const double bp = tst[1] > 0 ? std::exp(std::min(0.0, 1 - ref_length / tst[1])) : 0.0;
  double log_sum = 0, smooth = 1;
  for (int n = 1; n <= bleu_n; ++n) {
    if (tst[n] == 0) continue;  // log(1)
    if (match[n] == 0) {
      smooth *= 2;
      log_sum += std::log(1 / (smooth * tst[n]));
    } else {
      log_sum += std::log(match[n] / tst[n]);
    }
  }
  out.bleu = std::exp(log_sum / bleu_n) * bp;
  // nist_score, system level: nsys = non-empty references per segment.
  check(ref_unigrams > 0, "mteval_bleu_nist: every reference is empty");
  const double nsys = ref_segments / static_cast<double>(hyps.size());
  double score = 0;
  for (int n = 1; n <= nist_n; ++n) score += tst_info[n] / std::max(tst[n], 1.0);
  const double ratio = tst[1] / (ref_unigrams / nsys);
  const double beta = -std::log(0.5) / std::log(1.5) / std::log(1.5);
  const double penalty = ratio >= 1 ? 1.0 : ratio <= 0 ? 0.0
                                         : std::exp(-beta * std::log(ratio) * std::log(ratio));
  out.nist = score * penalty;
  return out;
}

}  // namespace fourierft::metrics
