// fourierft/peft/name_pattern.hpp — the regular expressions of adapter configs (target_modules as a
// string, n_frequency_pattern keys) matched in linear time: a Thompson NFA, no backtracking.
#pragma once

// PEFT matches module names with Python's re.fullmatch / re.match; std::regex backtracks (a pattern
// like (.*.*)*X takes exponential time) and compiles recursively (20,000 nested groups overflow
// the stack). NamePattern accepts the part of the syntax module-name patterns use and rejects the
// rest with an error naming the pattern:
//   literals, '.', escapes \d \D \w \W \s \S \t \n \r \f \v and escaped punctuation, classes
//   [a-z_\d] and [^...], groups (...) and (?:...), alternation |, quantifiers * + ? {n} {n,}
//   {n,m} (a trailing ? for laziness is accepted: it cannot change whether a name matches),
//   anchors ^ and $.
// Not supported: back-references, look-around, \b. Matching is a set simulation of the NFA over
// the bytes of the name: O(pattern size × name length) time, O(pattern size) memory. The
// pattern's length and group nesting are capped (io::input_limits()), so compiling cannot recurse
// without bound either.

#include <bitset>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/io/limits.hpp"

namespace fourierft::peft {

class NamePattern {
 public:
  NamePattern() = default;
  // Compiles `pattern`; FormatError "<where>: regex '<pattern>': <reason> at character i" if it is
  // malformed, uses something unsupported, or exceeds the limits. `where` names the file and key.
  NamePattern(std::string_view pattern, std::string_view where)
      : pattern_(pattern), where_(where) {
    const auto& limits = io::input_limits();
    if (static_cast<std::int64_t>(pattern.size()) > limits.pattern_max_length)
      fail(str_cat("is ", pattern.size(), " characters long; the limit is ",
                   limits.pattern_max_length));
    const int root = parse_alternation(0);
    if (pos_ != pattern_.size()) fail_at("unmatched ')'");
    Fragment f = compile(root);
    const int match = add_state({Op::match});
    patch(f.outs, match);
    start_ = f.start;
    nodes_.clear();
    nodes_.shrink_to_fit();
  }

  const std::string& pattern() const { return pattern_; }

  // Whether the whole of `text` matches (Python's re.fullmatch, std::regex_match).
  bool full_match(std::string_view text) const {
    if (states_.empty()) return false;
    std::vector<int> current, next, stack;
    std::vector<std::size_t> mark(states_.size(), SIZE_MAX);
    std::size_t generation = 0;
    auto add = [&](int s, std::size_t at, std::vector<int>& list) {
      stack.assign(1, s);
      while (!stack.empty()) {
        const int x = stack.back();
        stack.pop_back();
        if (x < 0 || mark[static_cast<std::size_t>(x)] == generation) continue;
        mark[static_cast<std::size_t>(x)] = generation;
        const State& st = states_[static_cast<std::size_t>(x)];
        switch (st.op) {
          case Op::split: stack.push_back(st.out1); stack.push_back(st.out); break;
          case Op::jump: stack.push_back(st.out); break;
          case Op::begin: if (at == 0) stack.push_back(st.out); break;
          case Op::end: if (at == text.size()) stack.push_back(st.out); break;
          case Op::bytes:
          case Op::match: list.push_back(x); break;
        }
      }
    };
    add(start_, 0, current);
    for (std::size_t i = 0; i < text.size() && !current.empty(); ++i) {
      ++generation;
      next.clear();
      const auto c = static_cast<unsigned char>(text[i]);
      for (int x : current) {
        const State& st = states_[static_cast<std::size_t>(x)];
        if (st.op == Op::bytes && sets_[static_cast<std::size_t>(st.set)][c])
          add(st.out, i + 1, next);
      }
      std::swap(current, next);
    }
    for (int x : current)
      if (states_[static_cast<std::size_t>(x)].op == Op::match) return true;
    return false;
  }

 private:
  using ByteSet = std::bitset<256>;
  static constexpr int unbounded = -1;
  static constexpr int max_count = 1000;       // largest n, m in {n,m}
  static constexpr std::size_t max_states = 100000;

  // Syntax tree (built by the parser, compiled, then dropped).
  enum class Kind { bytes, empty, concat, alternation, repeat, begin, end };
  struct Node {
    Kind kind = Kind::empty;
    ByteSet set;
    std::vector<int> children;
    int min = 0, max = 0;  // repeat
  };
  // NFA states: `bytes` consumes one byte of set; split / jump / begin / end are epsilon moves.
  enum class Op : std::uint8_t { bytes, split, jump, begin, end, match };
  struct State {
    Op op = Op::match;
    int set = -1, out = -1, out1 = -1;
  };
  // A compiled piece: its entry state and the dangling exits (state, 0: out / 1: out1).
  struct Fragment {
    int start = -1;
    std::vector<std::pair<int, int>> outs;
  };

  [[noreturn]] void fail(const std::string& reason) const {
    throw FormatError(str_cat(where_, ": regex '", pattern_.size() > 80
                                                       ? pattern_.substr(0, 77) + "..."
                                                       : pattern_,
                              "' ", reason));
  }
  [[noreturn]] void fail_at(const std::string& reason) const {
    fail(str_cat("cannot be used: ", reason, " at character ", pos_));
  }

  int add_node(Node n) {
    nodes_.push_back(std::move(n));
    return static_cast<int>(nodes_.size()) - 1;
  }
  bool at_end() const { return pos_ >= pattern_.size(); }
  char peek() const { return pattern_[pos_]; }

  int parse_alternation(int depth) {
    if (depth > io::input_limits().pattern_max_nesting)
      fail_at(str_cat("groups nested deeper than ", io::input_limits().pattern_max_nesting));
    std::vector<int> branches{parse_concatenation(depth)};
    while (!at_end() && peek() == '|') {
      ++pos_;
      branches.push_back(parse_concatenation(depth));
    }
    if (branches.size() == 1) return branches[0];
    Node n;
    n.kind = Kind::alternation;
    n.children = std::move(branches);
    return add_node(std::move(n));
  }
  int parse_concatenation(int depth) {
    Node n;
    n.kind = Kind::concat;
    while (!at_end() && peek() != '|' && peek() != ')') n.children.push_back(parse_repeat(depth));
    if (n.children.empty()) return add_node(Node{});
    if (n.children.size() == 1) return n.children[0];
    return add_node(std::move(n));
  }
  int parse_repeat(int depth) {
    const std::size_t atom_pos = pos_;
    const int atom = parse_atom(depth);
    if (at_end()) return atom;
    int min = 0, max = 0;
    const char c = peek();
    if (c == '*') {
      min = 0, max = unbounded, ++pos_;
    } else if (c == '+') {
      min = 1, max = unbounded, ++pos_;
    } else if (c == '?') {
      min = 0, max = 1, ++pos_;
    } else if (c == '{') {
      ++pos_;
      min = parse_count();
      max = min;
      if (!at_end() && peek() == ',') {
        ++pos_;
        max = !at_end() && peek() == '}' ? unbounded : parse_count();
      }
      if (at_end() || peek() != '}') fail_at("'{' without a matching '}'");
      ++pos_;
      if (max != unbounded && max < min) fail_at("a count {n,m} with m < n");
    } else {
      return atom;
    }
    const Kind k = nodes_[static_cast<std::size_t>(atom)].kind;
    if (k == Kind::begin || k == Kind::end) {
      pos_ = atom_pos;
      fail_at("nothing to repeat");
    }
    if (!at_end() && peek() == '?') ++pos_;  // lazy: the same names match
    if (!at_end() && (peek() == '*' || peek() == '+' || peek() == '?' || peek() == '{'))
      fail_at("a quantifier after a quantifier");
    Node n;
    n.kind = Kind::repeat;
    n.children = {atom};
    n.min = min;
    n.max = max;
    return add_node(std::move(n));
  }
  int parse_count() {
    int v = 0;
    const std::size_t begin = pos_;
    while (!at_end() && peek() >= '0' && peek() <= '9') {
      v = v * 10 + (peek() - '0');
      if (v > max_count) fail_at(str_cat("a repetition count above ", max_count));
      ++pos_;
    }
    if (pos_ == begin) fail_at("'{' not followed by a count");
    return v;
  }
  int parse_atom(int depth) {
    const char c = peek();
    Node n;
    switch (c) {
      case '(': {
        ++pos_;
        if (!at_end() && peek() == '?') {
          if (pos_ + 1 < pattern_.size() && pattern_[pos_ + 1] == ':')
            pos_ += 2;
          else
            fail_at("'(?' other than '(?:' (look-around, named groups, flags)");
        }
        const int inner = parse_alternation(depth + 1);
        if (at_end() || peek() != ')') fail_at("'(' without a matching ')'");
        ++pos_;
        return inner;
      }
      case ')': fail_at("unmatched ')'");
      case '*': case '+': case '?': case '{': fail_at("nothing to repeat");
      case '^': ++pos_; n.kind = Kind::begin; return add_node(n);
      case '$': ++pos_; n.kind = Kind::end; return add_node(n);
      case '.':
        ++pos_;
        n.kind = Kind::bytes;
        n.set.set();
        n.set.reset('\n');
        n.set.reset('\r');
        return add_node(n);
      case '[': n.kind = Kind::bytes; n.set = parse_class(); return add_node(n);
      case '\\': n.kind = Kind::bytes; n.set = parse_escape(); return add_node(n);
      default:
        ++pos_;
        n.kind = Kind::bytes;
        n.set.set(static_cast<unsigned char>(c));
        return add_node(n);
    }
  }
  static ByteSet class_of(char letter) {
    ByteSet s;
    const char lower = static_cast<char>(letter | 0x20);
    for (int b = 0; b < 256; ++b) {
      const bool digit = b >= '0' && b <= '9';
      const bool word = digit || (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || b == '_';
      const bool space = b == ' ' || (b >= '\t' && b <= '\r');
      s[static_cast<std::size_t>(b)] = lower == 'd' ? digit : lower == 'w' ? word : space;
    }
    return letter >= 'A' && letter <= 'Z' ? ~s : s;
  }
  // After a backslash: a class (\d ...), a control character, or an escaped punctuation mark.
  ByteSet parse_escape() {
    ++pos_;
    if (at_end()) fail_at("a trailing backslash");
    const char c = peek();
    ++pos_;
    ByteSet s;
    switch (c) {
      case 'd': case 'D': case 'w': case 'W': case 's': case 'S': return class_of(c);
      case 't': s.set('\t'); return s;
      case 'n': s.set('\n'); return s;
      case 'r': s.set('\r'); return s;
      case 'f': s.set('\f'); return s;
      case 'v': s.set('\v'); return s;
      default: break;
    }
    const auto u = static_cast<unsigned char>(c);
    if ((u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z')) {
      --pos_;
      fail_at(str_cat("the escape '\\", c, "' (back-references, \\b and the like)"));
    }
    s.set(u);
    return s;
  }
  ByteSet parse_class() {
    ++pos_;  // '['
    bool negate = false;
    if (!at_end() && peek() == '^') negate = true, ++pos_;
    ByteSet s;
    while (true) {
      if (at_end()) fail_at("'[' without a matching ']'");
      if (peek() == ']') break;
      ByteSet item;
      int low = -1;
      if (peek() == '\\') {
        item = parse_escape();
        if (item.count() == 1)
          for (int b = 0; b < 256; ++b)
            if (item[static_cast<std::size_t>(b)]) low = b;
      } else {
        low = static_cast<unsigned char>(peek());
        item.set(static_cast<std::size_t>(low));
        ++pos_;
      }
      if (low >= 0 && pos_ + 1 < pattern_.size() && peek() == '-' && pattern_[pos_ + 1] != ']') {
        ++pos_;
        int high;
        if (peek() == '\\') {
          const ByteSet h = parse_escape();
          if (h.count() != 1) fail_at("a range ending in a class");
          high = 0;
          while (!h[static_cast<std::size_t>(high)]) ++high;
        } else {
          high = static_cast<unsigned char>(peek());
          ++pos_;
        }
        if (high < low) fail_at("a range out of order");
        for (int b = low; b <= high; ++b) item.set(static_cast<std::size_t>(b));
      }
      s |= item;
    }
    ++pos_;  // ']'
    return negate ? ~s : s;
  }

  int add_state(State s) {
    if (states_.size() >= max_states)
      fail(str_cat("needs more than ", max_states, " automaton states (counted repetitions?)"));
    states_.push_back(s);
    return static_cast<int>(states_.size()) - 1;
  }
  void patch(const std::vector<std::pair<int, int>>& outs, int target) {
    for (const auto& [state, which] : outs)
      (which == 0 ? states_[static_cast<std::size_t>(state)].out
                  : states_[static_cast<std::size_t>(state)].out1) = target;
  }
  // Thompson's construction. Recursion follows group nesting only (capped by the parser).
  Fragment compile(int index) {
    const Node& n = nodes_[static_cast<std::size_t>(index)];
    switch (n.kind) {
      case Kind::bytes: {
        sets_.push_back(n.set);
        const int s = add_state({Op::bytes, static_cast<int>(sets_.size()) - 1});
        return {s, {{s, 0}}};
      }
      case Kind::empty: {
        const int s = add_state({Op::jump});
        return {s, {{s, 0}}};
      }
      case Kind::begin:
      case Kind::end: {
        const int s = add_state({n.kind == Kind::begin ? Op::begin : Op::end});
        return {s, {{s, 0}}};
      }
      case Kind::concat: {
        const std::vector<int> children = n.children;
        Fragment f = compile(children[0]);
        for (std::size_t i = 1; i < children.size(); ++i) {
          Fragment g = compile(children[i]);
          patch(f.outs, g.start);
          f.outs = std::move(g.outs);
        }
        return f;
      }
      case Kind::alternation: {
        const std::vector<int> children = n.children;
        Fragment f = compile(children[0]);
        for (std::size_t i = 1; i < children.size(); ++i) {
          Fragment g = compile(children[i]);
          const int s = add_state({Op::split, -1, f.start, g.start});
          f.start = s;
          f.outs.insert(f.outs.end(), g.outs.begin(), g.outs.end());
        }
        return f;
      }
      case Kind::repeat: {
        const int child = n.children[0], min = n.min, max = n.max;
        Fragment f;
        auto append = [&](Fragment g) {
          if (f.start < 0) {
            f = std::move(g);
          } else {
            patch(f.outs, g.start);
            f.outs = std::move(g.outs);
          }
        };
        for (int i = 0; i < min; ++i) append(compile(child));
        if (max == unbounded) {  // x*: split -> x -> back to split
          Fragment g = compile(child);
          const int s = add_state({Op::split, -1, g.start, -1});
          patch(g.outs, s);
          append(Fragment{s, {{s, 1}}});
        } else {
          for (int i = min; i < max; ++i) {  // x?: split -> x | skip
            Fragment g = compile(child);
            const int s = add_state({Op::split, -1, g.start, -1});
            g.outs.emplace_back(s, 1);
            append(Fragment{s, std::move(g.outs)});
          }
        }
        if (f.start < 0) {  // x{0}
          const int s = add_state({Op::jump});
          f = {s, {{s, 0}}};
        }
        return f;
      }
    }
    return {};
  }

  std::string pattern_, where_;
  std::size_t pos_ = 0;
  std::vector<Node> nodes_;
  std::vector<State> states_;
  std::vector<ByteSet> sets_;
  int start_ = -1;
};

}  // namespace fourierft::peft
