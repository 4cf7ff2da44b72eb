// fourierft/metrics/snowball_english.hpp — the Snowball "english" stemmer (Porter2), which METEOR
// 1.5's stem module runs; written from the Snowball algorithm, checked against Snowball 2.2.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "fourierft/metrics/text.hpp"

namespace fourierft::metrics {

namespace detail {

// Porter2 on a lowercase word held as code points. Letters outside a-z are consonants.
// Regions: R1 starts after the first non-vowel that follows a vowel (or after the prefixes
// gener/commun/arsen), R2 the same again inside R1.
class Porter2 {
 public:
  explicit Porter2(std::u32string w) : w_(std::move(w)) {}

  std::u32string run() {
    if (auto e = exception1()) return *e;
    if (w_.size() < 3) return w_;
    prelude();
    mark_regions();
    step_1a();
    if (!exception2()) {
      step_1b();
      step_1c();
      step_2();
      step_3();
      step_4();
      step_5();
    }
    for (char32_t& c : w_)
      if (c == 'Y') c = 'y';
    return w_;
  }

 private:
  std::u32string w_;
  std::size_t p1_ = 0, p2_ = 0;

  static bool vowel(char32_t c) {
    return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u' || c == 'y';
  }
  bool ends(std::u32string_view s) const {
    return w_.size() >= s.size() && std::u32string_view(w_).substr(w_.size() - s.size()) == s;
  }
  // Suffix of length n starts inside R1 / R2.
  bool r1(std::size_t n) const { return w_.size() - n >= p1_; }
  bool r2(std::size_t n) const { return w_.size() - n >= p2_; }
  void replace(std::size_t n, std::u32string_view by) {
    w_.replace(w_.size() - n, n, by);
  }
  // The longest suffix of `list` that the word ends with, or "".
  template <std::size_t N>
  std::u32string_view longest(const std::array<std::u32string_view, N>& list) const {
    std::u32string_view best;
    for (auto s : list)
      if (s.size() > best.size() && ends(s)) best = s;
    return best;
  }
  bool has_vowel(std::size_t from, std::size_t to) const {
    for (std::size_t i = from; i < to; ++i)
      if (vowel(w_[i])) return true;
    return false;
  }
  // Ends in a short syllable: non-vowel, vowel, non-vowel other than w x Y; or the whole word
  // is vowel + non-vowel.
  bool short_syllable() const {
    const std::size_t n = w_.size();
    if (n >= 3 && !vowel(w_[n - 3]) && vowel(w_[n - 2]) && !vowel(w_[n - 1]) && w_[n - 1] != 'w' &&
        w_[n - 1] != 'x' && w_[n - 1] != 'Y')
      return true;
    return n == 2 && vowel(w_[0]) && !vowel(w_[1]);
  }

  std::optional<std::u32string> exception1() const {
    static const std::array<std::pair<std::u32string_view, std::u32string_view>, 18> table = {{
        {U"skis", U"ski"},   {U"skies", U"sky"},   {U"dying", U"die"},  {U"lying", U"lie"},
        {U"tying", U"tie"},  {U"idly", U"idl"},    {U"gently", U"gentl"}, {U"ugly", U"ugli"},
        {U"early", U"earli"}, {U"only", U"onli"},  {U"singly", U"singl"}, {U"sky", U"sky"},
        {U"news", U"news"},  {U"howe", U"howe"},   {U"atlas", U"atlas"}, {U"cosmos", U"cosmos"},
        {U"bias", U"bias"},  {U"andes", U"andes"}}};
    for (const auto& [word, stem] : table)
      if (w_ == word) return std::u32string(stem);
    return std::nullopt;
  }
  bool exception2() const {
    for (std::u32string_view s : {U"inning", U"outing", U"canning", U"herring", U"earring",
                                  U"proceed", U"exceed", U"succeed"})
      if (w_ == s) return true;
    return false;
  }

  void prelude() {
    if (!w_.empty() && w_[0] == '\'') w_.erase(0, 1);
    if (!w_.empty() && w_[0] == 'y') w_[0] = 'Y';
    for (std::size_t i = 1; i < w_.size(); ++i)
      if (w_[i] == 'y' && vowel(w_[i - 1])) w_[i] = 'Y';
  }
  void mark_regions() {
    const std::size_t n = w_.size();
    p1_ = p2_ = n;
    auto after_vowel_consonant = [&](std::size_t from) {
      std::size_t i = from;
      while (i < n && !vowel(w_[i])) ++i;
      while (i < n && vowel(w_[i])) ++i;
      return i < n ? i + 1 : n;
    };
    std::size_t start = n + 1;
    for (std::u32string_view pre : {U"gener", U"commun", U"arsen"})
      if (w_.size() >= pre.size() && std::u32string_view(w_).substr(0, pre.size()) == pre) {
        start = pre.size();
        break;
      }
    p1_ = start <= n ? start : after_vowel_consonant(0);
    p2_ = after_vowel_consonant(p1_);
  }

  void step_1a() {
    if (ends(U"'s'")) replace(3, U"");
    else if (ends(U"'s")) replace(2, U"");
    else if (ends(U"'")) replace(1, U"");
    const std::array<std::u32string_view, 6> list = {U"sses", U"ied", U"ies", U"s", U"us", U"ss"};
    const auto s = longest(list);
    if (s == U"sses") {
      replace(4, U"ss");
    } else if (s == U"ied" || s == U"ies") {
      replace(3, w_.size() > 4 ? U"i" : U"ie");
    } else if (s == U"s") {
      // Delete if a vowel occurs before the letter just in front of the s.
      if (w_.size() >= 3 && has_vowel(0, w_.size() - 2)) replace(1, U"");
    }
  }
  void step_1b() {
    const std::array<std::u32string_view, 6> list = {U"eed", U"eedly", U"ed", U"edly", U"ing", U"ingly"};
    const auto s = longest(list);
    if (s.empty()) return;
    if (s == U"eed" || s == U"eedly") {
      if (r1(s.size())) replace(s.size(), U"ee");
      return;
    }
    if (!has_vowel(0, w_.size() - s.size())) return;
    replace(s.size(), U"");
    if (ends(U"at") || ends(U"bl") || ends(U"iz")) {
      w_ += U'e';
    } else if (w_.size() >= 2 && w_[w_.size() - 1] == w_[w_.size() - 2] &&
               std::u32string_view(U"bdfgmnprt").find(w_.back()) != std::u32string_view::npos) {
      w_.pop_back();
    } else if (p1_ == w_.size() && short_syllable()) {
      w_ += U'e';
    }
  }
  void step_1c() {
    const std::size_t n = w_.size();
    if (n >= 3 && (w_[n - 1] == 'y' || w_[n - 1] == 'Y') && !vowel(w_[n - 2])) w_[n - 1] = 'i';
  }
  void step_2() {
    static const std::array<std::u32string_view, 24> list = {
        U"tional", U"enci",   U"anci",    U"abli",    U"entli",   U"izer",
        U"ization", U"ational", U"ation", U"ator",    U"alism",   U"aliti",
        U"alli",   U"fulness", U"ousli",  U"ousness", U"iveness", U"iviti",
        U"biliti", U"bli",    U"ogi",     U"fulli",   U"lessli",  U"li"};
    const auto s = longest(list);
    if (s.empty() || !r1(s.size())) return;
    if (s == U"tional") replace(6, U"tion");
    else if (s == U"enci") replace(4, U"ence");
    else if (s == U"anci") replace(4, U"ance");
    else if (s == U"abli") replace(4, U"able");
    else if (s == U"entli") replace(5, U"ent");
    else if (s == U"izer" || s == U"ization") replace(s.size(), U"ize");
    else if (s == U"ational" || s == U"ation" || s == U"ator") replace(s.size(), U"ate");
    else if (s == U"alism" || s == U"aliti" || s == U"alli") replace(s.size(), U"al");
    else if (s == U"fulness") replace(7, U"ful");
    else if (s == U"ousli" || s == U"ousness") replace(s.size(), U"ous");
    else if (s == U"iveness" || s == U"iviti") replace(s.size(), U"ive");
    else if (s == U"biliti" || s == U"bli") replace(s.size(), U"ble");
    else if (s == U"ogi") {
      if (w_.size() >= 4 && w_[w_.size() - 4] == 'l') replace(3, U"og");
    } else if (s == U"fulli") replace(5, U"ful");
    else if (s == U"lessli") replace(6, U"less");
    else if (s == U"li") {
      if (w_.size() >= 3 &&
          std::u32string_view(U"cdeghkmnrt").find(w_[w_.size() - 3]) != std::u32string_view::npos)
        replace(2, U"");
    }
  }
  void step_3() {
    static const std::array<std::u32string_view, 9> list = {
        U"tional", U"ational", U"alize", U"icate", U"iciti", U"ical", U"ful", U"ness", U"ative"};
    const auto s = longest(list);
    if (s.empty() || !r1(s.size())) return;
    if (s == U"tional") replace(6, U"tion");
    else if (s == U"ational") replace(7, U"ate");
    else if (s == U"alize") replace(5, U"al");
    else if (s == U"icate" || s == U"iciti" || s == U"ical") replace(s.size(), U"ic");
    else if (s == U"ful" || s == U"ness") replace(s.size(), U"");
    else if (s == U"ative" && r2(5)) replace(5, U"");
  }
  void step_4() {
    static const std::array<std::u32string_view, 18> list = {
        U"al",  U"ance", U"ence", U"er",  U"ic",  U"able", U"ible", U"ant", U"ement",
        U"ment", U"ent", U"ism",  U"ate", U"iti", U"ous",  U"ive",  U"ize", U"ion"};
    const auto s = longest(list);
    if (s.empty() || !r2(s.size())) return;
    if (s == U"ion") {
      if (w_.size() >= 4 && (w_[w_.size() - 4] == 's' || w_[w_.size() - 4] == 't')) replace(3, U"");
    } else {
      replace(s.size(), U"");
    }
  }
  void step_5() {
    if (ends(U"e")) {
      if (r2(1)) {
        replace(1, U"");
      } else if (r1(1)) {
        w_.pop_back();
        const bool short_end = short_syllable();
        w_ += U'e';
        if (!short_end) w_.pop_back();
      }
    } else if (ends(U"l")) {
      if (r2(1) && w_.size() >= 2 && w_[w_.size() - 2] == 'l') replace(1, U"");
    }
  }
};

}  // namespace detail

// Stem of one lowercase word (UTF-8 in and out).
inline std::string snowball_english_stem(std::string_view word) {
  return text::encode_utf8(detail::Porter2(text::decode_utf8(word)).run());
}

}  // namespace fourierft::metrics
