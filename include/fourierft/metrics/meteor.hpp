// fourierft/metrics/meteor.hpp — METEOR 1.5 as the E2E scorer calls it (-l en -norm, task 'rank'),
// with the exact and stem modules: normaliser, beam-search aligner, function-word-weighted score.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <set>
#include <unordered_map>
#include <string>
#include <string_view>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/metrics/snowball_english.hpp"
#include "fourierft/metrics/text.hpp"

namespace fourierft::metrics {

// English 'rank' parameters of METEOR 1.5 and its module weights (exact 1.0, stem 0.6). The
// synonym (WordNet, 0.8) and paraphrase (0.6) modules need METEOR's data files and are not
// included, so scores can be lower than the official jar's wherever those would have matched.
// function_words: METEOR weighs them by 1 - delta and content words by delta; its English list
// (resources/function/english.words) is not shipped here, so by default every word is content.
struct MeteorOptions {
  double alpha = 0.85, beta = 0.20, gamma = 0.60, delta = 0.75;
  double exact_weight = 1.0, stem_weight = 0.6;
  bool stem = true;
  int beam_size = 40;
  // At most this many candidate matches per module are tried per reference word: those nearest
  // its position. Only a word repeated more often than this in one hypothesis (never in E2E
  // text) is affected; it bounds the aligner's time on adversarial lines (docs/reliability.md).
  int max_candidates_per_word = 128;
  std::set<std::string> function_words;
};

namespace detail {

// Character classes of METEOR's Normalizer (Java regex, no UNICODE_CHARACTER_CLASS flag).
inline bool meteor_alpha(char32_t c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == 0x160 || c == 0x17D ||
         c == 0x161 || c == 0x17E || c == 0x178 || (c >= 0xC0 && c <= 0xD6) ||
         (c >= 0xD8 && c <= 0xF6) || (c >= 0xF8 && c <= 0x17E) || (c >= 0x400 && c <= 0x4FF) ||
         (c >= 0x500 && c <= 0x527) || (c >= 0xA640 && c <= 0xA66E) ||
         (c >= 0xA67E && c <= 0xA697) || (c >= 0x1D00 && c <= 0x1D7F);
}
inline bool meteor_digit(char32_t c) { return c >= '0' && c <= '9'; }
inline bool meteor_alnum(char32_t c) { return meteor_alpha(c) || meteor_digit(c); }
inline bool java_space(char32_t c) { return c == ' ' || (c >= 0x09 && c <= 0x0D); }  // \s
inline bool java_tokenizer_delim(char32_t c) {  // StringTokenizer's " \t\n\r\f"
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}
inline bool meteor_white(char32_t c) {
  return c == ' ' || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// Java Matcher.replaceAll for a pattern "(A)m(C)" of three single characters: left to right,
// non-overlapping, the third character is consumed too.
template <class A, class M, class C, class Emit>
std::u32string java_triple_rule(const std::u32string& s, A a, M m, C c, Emit emit) {
  std::u32string out;
  for (std::size_t i = 0; i < s.size();) {
    if (i + 2 < s.size() && a(s[i]) && m(s[i + 1]) && c(s[i + 2])) {
      emit(out, s[i], s[i + 2]);
      i += 3;
    } else {
      out += s[i++];
    }
  }
  return out;
}

inline std::u32string java_replace(std::u32string s, std::u32string_view from, std::u32string_view to) {
  std::u32string out;
  std::size_t i = 0;
  for (std::size_t p = s.find(from); p != std::u32string::npos; p = s.find(from, i)) {
    out.append(s, i, p - i);
    out += to;
    i = p + from.size();
  }
  out.append(s, i, std::u32string::npos);
  return out;
}

inline std::vector<std::u32string> java_tokens(const std::u32string& s) {
  std::vector<std::u32string> out;
  std::u32string cur;
  for (char32_t c : s) {
    if (java_tokenizer_delim(c)) {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

}  // namespace detail

// ---------------------------------------------------------------------------
// meteor_normalize: METEOR 1.5's Normalizer.normalizeLine for English keeping punctuation (-norm),
// then lowercase. In order: space out symbols other than . ' ` , - (and ‘ ’); protect "..";
// split commas not inside numbers; ` ‘ ’ -> '; “ ” '' -> "; – and -- -> -; a hyphen between two
// alphanumerics becomes a space; split contractions to the right ("it's" -> it 's, "'s" -> ' s);
// split a word-final period unless the next word starts lowercase (no nonbreaking-prefix list).
inline std::string meteor_normalize(std::string_view line) {
  using namespace detail;
  auto is = [](char32_t x) { return [x](char32_t c) { return c == x; }; };
  auto not_digit = [](char32_t c) { return !meteor_digit(c); };
  auto not_alpha = [](char32_t c) { return !meteor_alpha(c); };
  auto keep3 = [](const char* mid) {  // "$1 <mid> $2"
    return [mid](std::u32string& o, char32_t a, char32_t c) {
      o += a;
      for (const char* p = mid; *p; ++p) o += static_cast<char32_t>(*p);
      o += c;
    };
  };
  std::u32string s = U" " + text::decode_utf8(line) + U" ";
  std::u32string t;
  for (char32_t c : s) {  // r_sep_other
    const bool special = meteor_alnum(c) || java_space(c) || c == '.' || c == '\'' || c == '`' ||
                         c == ',' || c == '-' || c == 0x2018 || c == 0x2019;
    if (special) {
      t += c;
    } else {
      t += U' ';
      t += c;
      t += U' ';
    }
  }
  s.clear();
  for (std::size_t i = 0; i < t.size();) {  // r_multi_dot: \.([\.]+) -> " DOTMULTI$1"
    if (t[i] == '.' && i + 1 < t.size() && t[i + 1] == '.') {
      s += U" DOTMULTI";
      ++i;
      while (i < t.size() && t[i] == '.') s += t[i++];
    } else {
      s += t[i++];
    }
  }
  while (s.find(U"DOTMULTI.") != std::u32string::npos) {
    std::u32string u;  // r_multi_dot2: DOTMULTI\.([^\.]) -> "DOTDOTMULTI $1"
    for (std::size_t i = 0; i < s.size();) {
      if (s.compare(i, 9, U"DOTMULTI.") == 0 && i + 9 < s.size() && s[i + 9] != '.') {
        u += U"DOTDOTMULTI ";
        u += s[i + 9];
        i += 10;
      } else {
        u += s[i++];
      }
    }
    s = java_replace(u, U"DOTMULTI.", U"DOTDOTMULTI");
  }
  s = java_triple_rule(s, not_digit, is(','), not_digit, keep3(" , "));
  s = java_triple_rule(s, meteor_digit, is(','), not_digit, keep3(" , "));
  s = java_triple_rule(s, not_digit, is(','), meteor_digit, keep3(" , "));
  for (char32_t& c : s)
    if (c == '`' || c == 0x2018 || c == 0x2019) c = '\'';
  t.clear();
  for (std::size_t i = 0; i < s.size();) {  // ([“”]|'') -> " \" "
    if (s[i] == 0x201C || s[i] == 0x201D) {
      t += U" \" ";
      ++i;
    } else if (s[i] == '\'' && i + 1 < s.size() && s[i + 1] == '\'') {
      t += U" \" ";
      i += 2;
    } else {
      t += s[i++];
    }
  }
  s = java_replace(java_replace(t, U"\u2013", U"-"), U"--", U"-");
  s = java_triple_rule(s, [](char32_t c) { return meteor_alnum(c) || c == '.'; }, is('-'),
                       meteor_alnum, keep3(" "));
  s = java_triple_rule(s, not_alpha, is('\''), not_alpha, keep3(" ' "));
  s = java_triple_rule(s, [](char32_t c) { return !meteor_alpha(c) && !meteor_digit(c); },
                       is('\''), meteor_alpha, keep3(" ' "));
  s = java_triple_rule(s, meteor_alpha, is('\''), not_alpha, keep3(" ' "));
  s = java_triple_rule(s, meteor_alpha, is('\''), meteor_alpha, keep3(" '"));
  s = java_triple_rule(s, meteor_digit, is('\''), is('s'), keep3(" '"));
  // Word-final periods (the nonbreaking-prefix dictionary is empty here).
  const auto words = java_tokens(s);
  s.clear();
  for (std::size_t i = 0; i < words.size(); ++i) {
    const std::u32string& w = words[i];
    if (w.size() > 1 && w.back() == '.') {
      const std::u32string pre = w.substr(0, w.size() - 1);
      const bool mixed = pre.find(U'.') != std::u32string::npos &&
                         std::any_of(pre.begin(), pre.end(), meteor_alpha);
      if (mixed) {
        for (char32_t c : w)
          if (c != '.') s += c;
      } else if (i + 1 < words.size() && words[i + 1][0] >= 'a' && words[i + 1][0] <= 'z') {
        s += w;
      } else {
        s += pre + U" .";
      }
    } else {
      s += w;
    }
    s += U' ';
  }
  while (s.find(U"DOTDOTMULTI") != std::u32string::npos) s = java_replace(s, U"DOTDOTMULTI", U"DOTMULTI.");
  s = java_replace(s, U"DOTMULTI", U".");
  t.clear();
  for (char32_t c : s) {  // r_white, then trim()
    if (meteor_white(c)) {
      if (t.empty() || t.back() != U' ') t += U' ';
    } else {
      t += c;
    }
  }
  std::size_t b = 0, e = t.size();
  while (b < e && t[b] <= 0x20) ++b;
  while (e > b && t[e - 1] <= 0x20) --e;
  return text::encode_utf8(text::to_lower(t.substr(b, e - b)));
}

// Sufficient statistics of one hypothesis / reference alignment (METEOR's MeteorStats), per
// module m (0 exact, 1 stem): matched content / function words on each side.
struct MeteorStats {
  double test_length = 0, ref_length = 0, test_function = 0, ref_function = 0;
  double test_content_matches[2] = {0, 0}, ref_content_matches[2] = {0, 0};
  double test_function_matches[2] = {0, 0}, ref_function_matches[2] = {0, 0};
  double chunks = 0, test_word_matches = 0, ref_word_matches = 0;

  double test_total() const {
    return test_content_matches[0] + test_content_matches[1] + test_function_matches[0] +
           test_function_matches[1];
  }
  double ref_total() const {
    return ref_content_matches[0] + ref_content_matches[1] + ref_function_matches[0] +
           ref_function_matches[1];
  }
  // MeteorStats.addStats: a perfect segment (all words matched, one chunk) adds no chunk.
  void add(const MeteorStats& s) {
    test_length += s.test_length;
    ref_length += s.ref_length;
    test_function += s.test_function;
    ref_function += s.ref_function;
    for (int m = 0; m < 2; ++m) {
      test_content_matches[m] += s.test_content_matches[m];
      ref_content_matches[m] += s.ref_content_matches[m];
      test_function_matches[m] += s.test_function_matches[m];
      ref_function_matches[m] += s.ref_function_matches[m];
    }
    if (!(s.test_total() == s.test_length && s.ref_total() == s.ref_length && s.chunks == 1))
      chunks += s.chunks;
    test_word_matches += s.test_word_matches;
    ref_word_matches += s.ref_word_matches;
  }
};

// MeteorScorer.computeMetrics, delta-weighted with w = (exact_weight, stem_weight):
//   P = sum_m w_m (delta c_m^test + (1-delta) f_m^test) / (delta |content_test| + (1-delta) |function_test|)
//   R = the same on the reference side;  Fmean = P R / (alpha P + (1-alpha) R)
//   frag = chunks / ((matches_test + matches_ref) / 2), 0 for a perfect match
//   score = max(0, Fmean (1 - gamma frag^beta)), 0 when undefined (e.g. an empty hypothesis)
inline double meteor_score(const MeteorStats& s, const MeteorOptions& o) {
  const double w[2] = {o.exact_weight, o.stem ? o.stem_weight : 0.0};
  const double test_len = o.delta * (s.test_length - s.test_function) + (1 - o.delta) * s.test_function;
  const double ref_len = o.delta * (s.ref_length - s.ref_function) + (1 - o.delta) * s.ref_function;
  double test_matches = 0, ref_matches = 0;
  for (int m = 0; m < 2; ++m) {
    test_matches += w[m] * (o.delta * s.test_content_matches[m] + (1 - o.delta) * s.test_function_matches[m]);
    ref_matches += w[m] * (o.delta * s.ref_content_matches[m] + (1 - o.delta) * s.ref_function_matches[m]);
  }
  const double precision = test_matches / test_len, recall = ref_matches / ref_len;
  const double fmean = 1.0 / ((1.0 - o.alpha) / precision + o.alpha / recall);
  const bool perfect = s.test_total() == s.test_length && s.ref_total() == s.ref_length && s.chunks == 1;
  const double frag = perfect ? 0.0 : s.chunks / ((s.test_word_matches + s.ref_word_matches) / 2);
  const double score = fmean * (1.0 - o.gamma * std::pow(frag, o.beta));
  return std::isnan(score) ? 0.0 : std::max(score, 0.0);
}

namespace detail {

struct MeteorMatch {
  int module = 0, start = 0, match_start = 0;  // one word each side: length 1
};

// One beam-search state (METEOR's PartialAlignment). matches1/matches2 are Java ints: adding a
// weighted length truncates, so with the aligner's weights (exact 1, stem 0.5) a stem match adds 0.
// Java copies the whole state (match arrays, used flags) for every extension, which costs
// O(words) per candidate and gigabytes on long lines; here a path shares its history: the matches
// it chose are a chain of records (newest first, one per reference position at most), and its
// used-hypothesis-word flags a bitset copied only when a surviving extension sets one.
struct MeteorChoice {
  mutable std::shared_ptr<const MeteorChoice> previous;
  int position = 0, k = 0;  // reference position, index into its candidate list
  MeteorMatch m;
  // Frees the chain iteratively: a 20k-word alignment must not recurse 20k destructors deep.
  ~MeteorChoice() {
    std::shared_ptr<const MeteorChoice> p = std::move(previous);
    while (p != nullptr && p.use_count() == 1) p = std::move(p->previous);
  }
};
// The counters of a path (and of a path not yet built); the beam is sorted by them.
struct MeteorCounts {
  int matches1 = 0, matches2 = 0, chunks = 0, idx = 0, last_match_end = -1, distance = 0;
};
struct MeteorPath : MeteorCounts {
  std::shared_ptr<const MeteorChoice> chosen;           // newest first
  std::shared_ptr<const std::vector<std::uint64_t>> used1;  // hypothesis words matched
  bool uses1(int i) const {
    return ((*used1)[static_cast<std::size_t>(i) / 64] >> (static_cast<unsigned>(i) % 64)) & 1u;
  }
};
// A path of the next beam before it is built: the parent (rank in the current beam), what it
// does (see meteor_align), and the fields the beam is sorted by.
struct MeteorStep : MeteorCounts {
  enum Kind { carry, extend } kind = carry;
  int parent = 0, k = 0;
  MeteorMatch m;
};

// Aligner.align + resolve: words1 = hypothesis, words2 = reference. The beam search of METEOR 1.5,
// step for step; each step keeps only the beam_size best of the candidate paths (ties in creation
// order, as Java's stable sort) and builds only those.
inline MeteorStats meteor_align(const std::vector<std::string>& words1,
                                const std::vector<std::string>& words2, const MeteorOptions& o) {
  const int n1 = static_cast<int>(words1.size()), n2 = static_cast<int>(words2.size());
  // Candidate matches per reference position, exact first then stem, hypothesis order. A list
  // longer than max_candidates_per_word keeps the candidates nearest the reference position (so
  // identical long lines still align on the diagonal); cover counts every candidate.
  std::vector<std::vector<MeteorMatch>> cand(n2);
  std::vector<int> cover1(n1, 0), cover2(n2, 0);
  const std::size_t max_candidates =
      static_cast<std::size_t>(std::max(1, o.max_candidates_per_word));
  // word -> its positions (increasing): no words1 x words2 comparison loop.
  auto positions = [](const std::vector<std::string>& words) {
    std::unordered_map<std::string_view, std::vector<int>> at;
    for (int i = 0; i < static_cast<int>(words.size()); ++i) at[words[i]].push_back(i);
    return at;
  };
  // Adds the candidates of reference position j among the sorted hypothesis positions `at` that
  // `accept`: all of them, or the max_candidates nearest j (ties: the earlier), in order.
  auto add_nearest = [&](int module, int j, const std::vector<int>& at, auto accept) {
    std::size_t r = static_cast<std::size_t>(std::lower_bound(at.begin(), at.end(), j) - at.begin());
    std::size_t l = r, taken = 0;  // the window [l, r)
    while (taken < max_candidates && (l > 0 || r < at.size())) {
      const bool left = l > 0 && (r == at.size() || j - at[l - 1] <= at[r] - j);
      const int i = left ? at[--l] : at[r++];
      if (accept(i)) ++taken;
    }
    for (std::size_t k = l; k < r; ++k)
      if (accept(at[k])) cand[j].push_back({module, j, at[k]});
  };
  const auto exact_at = positions(words1);
  for (int j = 0; j < n2; ++j)
    if (const auto it = exact_at.find(words2[j]); it != exact_at.end())
      add_nearest(0, j, it->second, [](int) { return true; });
  const bool identical = words1 == words2;  // then only the exact module runs
  const bool stem = o.stem && !identical;
  std::vector<std::string> stems1, stems2;
  if (stem) {
    stems1.resize(n1);
    stems2.resize(n2);
    for (int i = 0; i < n1; ++i) stems1[i] = snowball_english_stem(words1[i]);
    for (int j = 0; j < n2; ++j) stems2[j] = snowball_english_stem(words2[j]);
    const auto stem_at = positions(stems1);
    for (int j = 0; j < n2; ++j)
      if (const auto it = stem_at.find(stems2[j]); it != stem_at.end())
        add_nearest(1, j, it->second, [&](int i) { return words1[i] != words2[j]; });
  }
  {  // cover: with stems, every pair with equal stems (equal words have equal stems); else words
    const std::vector<std::string>& keys1 = stem ? stems1 : words1;
    const std::vector<std::string>& keys2 = stem ? stems2 : words2;
    std::unordered_map<std::string_view, int> count1, count2;
    for (const std::string& k : keys1) ++count1[k];
    for (const std::string& k : keys2) ++count2[k];
    for (int i = 0; i < n1; ++i)
      if (const auto it = count2.find(keys1[i]); it != count2.end()) cover1[i] = it->second;
    for (int j = 0; j < n2; ++j)
      if (const auto it = count1.find(keys2[j]); it != count1.end()) cover2[j] = it->second;
  }
  const double aligner_weight[2] = {1.0, 0.5};

  // One-to-one, non-overlapping matches are fixed before the search (shared by all paths).
  std::vector<int> fixed_match(n2, -1);
  std::vector<MeteorMatch> fixed_chosen(n2);
  std::vector<char> used2(n2, 0);  // only fixed matches: an extension at step j marks j, read no more
  auto used1 = std::make_shared<std::vector<std::uint64_t>>((static_cast<std::size_t>(n1) + 63) / 64);
  for (int j = 0; j < n2; ++j) {
    if (cand[j].size() != 1) continue;
    const MeteorMatch& m = cand[j][0];
    if (cover2[j] != 1 || cover1[m.match_start] != 1) continue;
    fixed_match[j] = 0;
    fixed_chosen[j] = m;
    used2[j] = 1;
    (*used1)[static_cast<std::size_t>(m.match_start) / 64] |=
        std::uint64_t{1} << (static_cast<unsigned>(m.match_start) % 64);
  }
  // match[j] / chosen[j] of a path: its own choice at j, else the fixed one.
  auto match_at = [&](const MeteorPath& p, int j, MeteorMatch* m) {
    for (const MeteorChoice* c = p.chosen.get(); c != nullptr && c->position >= j;
         c = c->previous.get())
      if (c->position == j) {
        *m = c->m;
        return c->k;
      }
    *m = fixed_chosen[j];
    return fixed_match[j];
  };
  auto take = [&](MeteorStep& p, const MeteorMatch& m) {
    p.matches1 = static_cast<int>(p.matches1 + 1 * aligner_weight[m.module]);
    p.matches2 = static_cast<int>(p.matches2 + 1 * aligner_weight[m.module]);
    if (p.last_match_end != -1 && m.match_start != p.last_match_end) ++p.chunks;
    p.idx = m.start + 1;
    p.last_match_end = m.match_start + 1;
  };
  // Constants.PARTIAL_COMPARE_TOTAL: more weighted matches, then fewer chunks, then less distance;
  // then creation order (the stable sort).
  auto better = [](const MeteorStep& x, const MeteorStep& y, std::size_t x_order,
                   std::size_t y_order) {
    const int a = x.matches1 + x.matches2, b = y.matches1 + y.matches2;
    if (a != b) return a > b;
    if (x.chunks != y.chunks) return x.chunks < y.chunks;
    if (x.distance != y.distance) return x.distance < y.distance;
    return x_order < y_order;
  };
  auto step_of = [](const MeteorPath& p, int parent) {
    MeteorStep s;
    static_cast<MeteorCounts&>(s) = p;
    s.parent = parent;
    return s;
  };

  MeteorPath start;
  start.used1 = used1;
  std::vector<MeteorPath> paths{start};  // the beam, best first
  std::vector<MeteorStep> steps;
  std::vector<std::size_t> order;
  const std::size_t beam = static_cast<std::size_t>(std::max(0, o.beam_size));
  for (int current = 0; current <= n2; ++current) {
    steps.clear();
    for (std::size_t rank = 0; rank < beam && rank < paths.size(); ++rank) {
      const MeteorPath& path = paths[rank];
      MeteorStep base = step_of(path, static_cast<int>(rank));
      if (current == n2) {
        if (base.last_match_end != -1) ++base.chunks;
        steps.push_back(base);
        continue;
      }
      if (used2[current]) {
        MeteorMatch m;
        if (current < base.idx) {
          steps.push_back(base);
        } else if (match_at(path, base.idx, &m) != -1) {  // a fixed match
          take(base, m);
          base.distance += std::abs(m.start - m.match_start);
          steps.push_back(base);
        }
        continue;
      }
      for (std::size_t k = 0; k < cand[current].size(); ++k) {
        const MeteorMatch& m = cand[current][k];
        if (path.uses1(m.match_start)) continue;  // (m.start == current is not used: see above)
        MeteorStep extended = base;
        extended.kind = MeteorStep::extend;
        extended.k = static_cast<int>(k);
        extended.m = m;
        take(extended, m);
        base.distance += std::abs(m.start - m.match_start);  // sic: METEOR 1.5 adds it to `path`
        steps.push_back(extended);
      }
      if (base.last_match_end != -1) {  // skip this reference word
        ++base.chunks;
        base.last_match_end = -1;
      }
      ++base.idx;
      steps.push_back(base);
    }
    std::vector<MeteorPath> next;
    if (steps.empty()) {
      next.push_back(paths[0]);
    } else {
      order.resize(steps.size());
      for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
      const std::size_t keep = std::min(std::max<std::size_t>(beam, 1), order.size());
      std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep),
                        order.end(), [&](std::size_t a, std::size_t b) {
                          return better(steps[a], steps[b], a, b);
                        });
      for (std::size_t r = 0; r < keep; ++r) {
        const MeteorStep& st = steps[order[r]];
        const MeteorPath& parent = paths[static_cast<std::size_t>(st.parent)];
        MeteorPath p;
        p.chosen = parent.chosen;
        p.used1 = parent.used1;
        if (st.kind == MeteorStep::extend) {
          p.chosen = std::make_shared<const MeteorChoice>(
              MeteorChoice{parent.chosen, current, st.k, st.m});
          auto bits = std::make_shared<std::vector<std::uint64_t>>(*parent.used1);
          (*bits)[static_cast<std::size_t>(st.m.match_start) / 64] |=
              std::uint64_t{1} << (static_cast<unsigned>(st.m.match_start) % 64);
          p.used1 = std::move(bits);
        }
        static_cast<MeteorCounts&>(p) = st;
        next.push_back(std::move(p));
      }
    }
    paths = std::move(next);
  }
  const MeteorPath& best_path = paths[0];
  struct {
    std::vector<int> match;
    std::vector<MeteorMatch> chosen;
  } best{fixed_match, fixed_chosen};
  for (const MeteorChoice* c = best_path.chosen.get(); c != nullptr; c = c->previous.get()) {
    best.match[c->position] = c->k;
    best.chosen[c->position] = c->m;
  }

  MeteorStats s;
  s.test_length = n1;
  s.ref_length = n2;
  std::vector<char> function1(n1, 0), function2(n2, 0);
  for (int i = 0; i < n1; ++i) s.test_function += function1[i] = o.function_words.count(words1[i]) > 0;
  for (int j = 0; j < n2; ++j) s.ref_function += function2[j] = o.function_words.count(words2[j]) > 0;
  int last_end = -1;
  for (int j = 0; j < n2; ++j) {  // match totals and chunks of the final alignment
    if (best.match[j] == -1) {
      if (last_end != -1) {
        ++s.chunks;
        last_end = -1;
      }
      continue;
    }
    const MeteorMatch& m = best.chosen[j];
    (function1[m.match_start] ? s.test_function_matches : s.test_content_matches)[m.module] += 1;
    (function2[m.start] ? s.ref_function_matches : s.ref_content_matches)[m.module] += 1;
    if (last_end != -1 && m.match_start != last_end) ++s.chunks;
    last_end = m.match_start + 1;
  }
  if (last_end != -1) ++s.chunks;
  s.test_word_matches = s.test_total();
  s.ref_word_matches = s.ref_total();
  return s;
}

}  // namespace detail

// ---------------------------------------------------------------------------
// Corpus METEOR as pycocoevalcap's Meteor: each hypothesis is scored against every reference
// (both normalised), the best-scoring reference's statistics are kept, and the corpus score is
// computed once from the summed statistics (not an average of segment scores).
// Inputs are what the E2E scorer passes on: coco_tokenize output.
inline double meteor(const std::vector<std::string>& hyps,
                     const std::vector<std::vector<std::string>>& refs,
                     const MeteorOptions& options = {}) {
  check(hyps.size() == refs.size(), "meteor: ", hyps.size(), " hypotheses but ", refs.size(),
        " reference groups");
  check(!hyps.empty(), "meteor: no hypotheses");
  auto words = [](const std::string& line) {
    std::vector<std::string> w;
    for (const auto& t : detail::java_tokens(text::decode_utf8(meteor_normalize(line))))
      w.push_back(text::encode_utf8(t));
    return w;
  };
  MeteorStats total;
  for (std::size_t i = 0; i < hyps.size(); ++i) {
    check(!refs[i].empty(), "meteor: hypothesis ", i + 1, " has no references");
    // pycocoevalcap: hypothesis.replace('|||', '').replace('  ', ' ')
    std::string h = hyps[i];
    for (std::size_t p; (p = h.find("|||")) != std::string::npos;) h.erase(p, 3);
    for (std::size_t p = h.find("  "); p != std::string::npos; p = h.find("  ", p + 1)) h.erase(p, 1);
    const auto test = words(h);
    MeteorStats best;
    double best_score = -1;
    for (const std::string& r : refs[i]) {
      const MeteorStats s = detail::meteor_align(test, words(r), options);
      const double score = meteor_score(s, options);
      if (score > best_score) {
        best = s;
        best_score = score;
      }
    }
    total.add(best);
  }
  return meteor_score(total, options);
}

}  // namespace fourierft::metrics
