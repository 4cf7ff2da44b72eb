// fourierft/io/jinja/parser.hpp — template text to syntax tree: jinja2's lexer (whitespace control,
// trim_blocks, lstrip_blocks, one trailing newline dropped) and a parser for the chat-template subset.
#pragma once

#include <cctype>
#include <cstddef>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fourierft/io/jinja/value.hpp"

namespace fourierft::io::jinja {

// Limits that keep a hostile template from exhausting the stack.
inline constexpr int max_nesting_depth = 200;

// Maps byte offsets of the template to "origin:line:col" for messages.
class SourceMap {
 public:
  SourceMap(std::string origin, const std::string& text) : origin_(std::move(origin)) {
    line_starts_.push_back(0);
    for (std::size_t i = 0; i < text.size(); ++i) if (text[i] == '\n') line_starts_.push_back(i + 1);
  }
  std::string where(std::size_t offset) const {
    std::size_t line = 0;
    while (line + 1 < line_starts_.size() && line_starts_[line + 1] <= offset) ++line;
    return str_cat(origin_, ":", line + 1, ":", offset - line_starts_[line] + 1);
  }
  [[noreturn]] void fail(std::size_t offset, const std::string& message) const {
    throw TemplateError(str_cat(where(offset), ": ", message));
  }
  const std::string& origin() const { return origin_; }

 private:
  std::string origin_;
  std::vector<std::size_t> line_starts_;
};

// ---------------------------------------------------------------------------------------------
// Lexer. The template becomes segments: text, {{ expression }} or {% statement %}; comments vanish.
struct Token {
  enum class Kind { name, string, integer, floating, op, end };
  Kind kind;
  std::string text;  // name, operator, or the unescaped string literal
  std::int64_t integer = 0;
  double floating = 0.0;
  std::size_t pos = 0;
};

struct Segment {
  enum class Kind { text, output, statement };
  Kind kind;
  std::string text;           // for text
  std::vector<Token> tokens;  // for output / statement, ending with Token::Kind::end
  std::size_t pos = 0;
};

namespace detail {

inline bool is_name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
inline bool is_name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// Python's str.rstrip() on UTF-8 text.
inline std::string rstrip_whitespace(const std::string& s) {
  auto cps = utf8_decode(s);
  std::size_t end = cps.size();
  while (end > 0 && py_isspace(cps[end - 1])) --end;
  return utf8_encode(cps, 0, end);
}

// A string literal body with Python's unicode-escape rules (\n \t \xhh \uXXXX \UXXXXXXXX \ooo;
// an unknown escape keeps its backslash).
inline std::string unescape_literal(std::string_view body) {
  std::string out;
  for (std::size_t i = 0; i < body.size(); ++i) {
    if (body[i] != '\\' || i + 1 >= body.size()) { out += body[i]; continue; }
    const char c = body[++i];
    const auto hex = [&](int digits) {
      char32_t cp = 0;
      int k = 0;
      for (; k < digits && i + 1 < body.size() && std::isxdigit(static_cast<unsigned char>(body[i + 1])); ++k)
        cp = cp * 16 + static_cast<char32_t>(std::stoi(std::string(1, body[++i]), nullptr, 16));
      utf8_append(out, cp);
    };
    switch (c) {
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'v': out += '\v'; break;
      case '\n': break;
      case 'x': hex(2); break;
      case 'u': hex(4); break;
      case 'U': hex(8); break;
      default:
        if (c >= '0' && c <= '7') {
          char32_t cp = static_cast<char32_t>(c - '0');
          for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7'; ++k)
            cp = cp * 8 + static_cast<char32_t>(body[++i] - '0');
          utf8_append(out, cp);
        } else {
          out += '\\';
          out += c;
        }
    }
  }
  return out;
}

}  // namespace detail

// Splits `source` (newlines already normalised) into segments, applying jinja2's whitespace rules:
// "{%-"/"-%}" strip all whitespace on that side; with trim_blocks the first newline after "%}" or
// "#}" goes; with lstrip_blocks spaces and tabs between a line start and "{%"/"{#" go ("{%+" keeps).
inline std::vector<Segment> lex(const std::string& source, const SourceMap& map) {
  std::vector<Segment> segments;
  std::size_t pos = 0;
  bool line_starting = true;
  bool strip_next_text = false;
  while (pos <= source.size()) {
    std::size_t start = pos;
    while (true) {
      start = source.find('{', start);
      if (start == std::string::npos || start + 1 >= source.size()) { start = std::string::npos; break; }
      const char next = source[start + 1];
      if (next == '{' || next == '%' || next == '#') break;
      ++start;
    }
    std::string text = source.substr(pos, start == std::string::npos ? std::string::npos : start - pos);
    if (strip_next_text) {
      auto cps = utf8_decode(text);
      std::size_t begin = 0;
      while (begin < cps.size() && py_isspace(cps[begin])) ++begin;
      text = utf8_encode(cps, begin);
      strip_next_text = false;
    }
    if (start == std::string::npos) {
      if (!text.empty()) segments.push_back({Segment::Kind::text, text, {}, pos});
      break;
    }
    const char kind = source[start + 1];
    const char sign = start + 2 < source.size() ? source[start + 2] : '\0';
    if (sign == '-') {
      text = detail::rstrip_whitespace(text);
    } else if (sign != '+' && kind != '{') {
      const std::size_t line_begin = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
      if ((line_begin > 0 || line_starting) &&
          text.find_first_not_of(" \t", line_begin) == std::string::npos)
        text.resize(line_begin);
    }
    if (!text.empty()) segments.push_back({Segment::Kind::text, text, {}, pos});
    std::size_t cursor = start + 2 + ((sign == '-' || sign == '+') ? 1 : 0);

    if (kind == '#') {
      const std::size_t close = source.find("#}", cursor);
      if (close == std::string::npos) map.fail(start, "unclosed comment: missing '#}'");
      pos = close + 2;
      const char before = close > cursor ? source[close - 1] : '\0';
      if (before == '-') strip_next_text = true;
      else if (before != '+' && pos < source.size() && source[pos] == '\n') ++pos;
      line_starting = source[pos - 1] == '\n';
      continue;
    }

    // Expression tokens up to "}}" or "%}".
    Segment segment{kind == '{' ? Segment::Kind::output : Segment::Kind::statement, {}, {}, start};
    const std::string closer = kind == '{' ? "}}" : "%}";
    int brackets = 0;
    bool closed = false;
    while (cursor < source.size()) {
      const char c = source[cursor];
      if (std::isspace(static_cast<unsigned char>(c))) { ++cursor; continue; }
      // The closer, possibly with its whitespace sign ("-%}", "+%}"); inside brackets "}}" is two braces.
      const bool signed_close = (c == '-' || c == '+') && source.compare(cursor + 1, 2, closer) == 0;
      if ((brackets == 0 || kind == '%') && (source.compare(cursor, 2, closer) == 0 || signed_close)) {
        if (signed_close && c == '+' && kind == '{') map.fail(cursor, "unexpected '+'");
        pos = cursor + 2 + (signed_close ? 1 : 0);
        if (signed_close && c == '-') strip_next_text = true;
        else if (!signed_close && kind == '%' && pos < source.size() && source[pos] == '\n') ++pos;
        line_starting = source[pos - 1] == '\n';
        closed = true;
        break;
      }
      Token token{Token::Kind::op, {}, 0, 0.0, cursor};
      if (detail::is_name_start(c)) {
        std::size_t end = cursor;
        while (end < source.size() && detail::is_name_char(source[end])) ++end;
        token.kind = Token::Kind::name;
        token.text = source.substr(cursor, end - cursor);
        cursor = end;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        std::size_t end = cursor;
        bool is_float = false;
        while (end < source.size() && (std::isdigit(static_cast<unsigned char>(source[end])) || source[end] == '_')) ++end;
        if (end + 1 < source.size() && source[end] == '.' && std::isdigit(static_cast<unsigned char>(source[end + 1]))) {
          is_float = true;
          ++end;
          while (end < source.size() && (std::isdigit(static_cast<unsigned char>(source[end])) || source[end] == '_')) ++end;
        }
        if (end < source.size() && (source[end] == 'e' || source[end] == 'E')) {
          std::size_t e = end + 1;
          if (e < source.size() && (source[e] == '+' || source[e] == '-')) ++e;
          if (e < source.size() && std::isdigit(static_cast<unsigned char>(source[e]))) {
            is_float = true;
            end = e;
            while (end < source.size() && std::isdigit(static_cast<unsigned char>(source[end]))) ++end;
          }
        }
        std::string digits;
        for (std::size_t i = cursor; i < end; ++i) if (source[i] != '_') digits += source[i];
        token.kind = is_float ? Token::Kind::floating : Token::Kind::integer;
        try {
          if (is_float) token.floating = std::stod(digits);
          else token.integer = std::stoll(digits);
        } catch (const std::exception&) {
          map.fail(cursor, str_cat("number out of range: ", digits));
        }
        cursor = end;
      } else if (c == '\'' || c == '"') {
        std::size_t end = cursor + 1;
        while (end < source.size() && source[end] != c) end += source[end] == '\\' ? 2 : 1;
        if (end >= source.size()) map.fail(cursor, "unterminated string literal");
        token.kind = Token::Kind::string;
        token.text = detail::unescape_literal(std::string_view(source).substr(cursor + 1, end - cursor - 1));
        cursor = end + 1;
      } else {
        static const char* const two_char_ops[] = {"**", "//", "==", "!=", "<=", ">="};
        token.text = std::string(1, c);
        for (const char* op : two_char_ops)
          if (source.compare(cursor, 2, op) == 0) token.text = op;
        if (std::string_view("+-*/%~<>=()[]{}.,:|").find(c) == std::string_view::npos && token.text.size() == 1)
          map.fail(cursor, str_cat("unexpected character '", token.text, "'"));
        if (c == '(' || c == '[' || c == '{') ++brackets;
        if (c == ')' || c == ']' || c == '}') --brackets;
        cursor += token.text.size();
      }
      segment.tokens.push_back(std::move(token));
    }
    if (!closed) map.fail(start, str_cat("unclosed tag: missing '", closer, "'"));
    segment.tokens.push_back({Token::Kind::end, {}, 0, 0.0, pos - 2});
    segments.push_back(std::move(segment));
  }
  return segments;
}

// ---------------------------------------------------------------------------------------------
// Syntax tree.
struct Expr;
using ExprPtr = std::shared_ptr<const Expr>;
struct Expr {
  enum class Kind {
    literal, name, list, tuple, dict, attribute, subscript, slice, call, filter, test,
    unary, binary, compare, logical_and, logical_or, logical_not, conditional
  };
  Kind kind;
  std::size_t pos = 0;
  std::string name;                 // name, attribute, filter, test, operator
  Value literal;
  std::vector<ExprPtr> args;        // operands, positional arguments, items (dict: key, value, ...)
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::string> ops;     // compare: one operator per pair of operands
  bool negated = false;             // test: "is not"
};

struct Stmt;
using Body = std::vector<std::shared_ptr<const Stmt>>;
struct Stmt {
  enum class Kind { text, output, if_, for_, set, set_block, macro, call_block, break_, continue_,
                    generation, filter_block };
  Kind kind;
  std::size_t pos = 0;
  std::string text;                   // text; macro name; set: namespace attribute
  std::vector<std::string> targets;   // for / set names; macro parameters
  std::vector<ExprPtr> exprs;         // if: conditions; for: iterable, filter; set: value; macro: defaults
  std::vector<Body> bodies;           // if: branches (+ else); for: body, else; others: body
};

// Parses the segments into a body; `map` names positions in errors.
class Parser {
 public:
  Parser(const std::vector<Segment>& segments, const SourceMap& map) : segments_(segments), map_(map) {}

  Body parse_template() {
    std::string end_tag;
    Body body = parse_body({}, end_tag);
    return body;
  }

 private:
  const std::vector<Segment>& segments_;
  const SourceMap& map_;
  std::size_t segment_ = 0;
  const std::vector<Token>* tokens_ = nullptr;
  std::size_t token_ = 0;
  int depth_ = 0;

  struct DepthGuard {
    Parser& parser;
    DepthGuard(Parser& p, std::size_t pos) : parser(p) {
      if (++parser.depth_ > max_nesting_depth)
        parser.map_.fail(pos, str_cat("template nested deeper than ", max_nesting_depth, " levels"));
    }
    ~DepthGuard() { --parser.depth_; }
  };

  const Token& peek(std::size_t ahead = 0) const {
    const std::size_t i = std::min(token_ + ahead, tokens_->size() - 1);
    return (*tokens_)[i];
  }
  const Token& next() { const Token& t = peek(); if (token_ + 1 < tokens_->size()) ++token_; return t; }
  bool at_op(std::string_view op) const { return peek().kind == Token::Kind::op && peek().text == op; }
  bool at_name(std::string_view name) const { return peek().kind == Token::Kind::name && peek().text == name; }
  bool accept_op(std::string_view op) { if (at_op(op)) { next(); return true; } return false; }
  bool accept_name(std::string_view name) { if (at_name(name)) { next(); return true; } return false; }
  [[noreturn]] void unexpected(std::string_view expected) const {
    const Token& t = peek();
    const std::string got = t.kind == Token::Kind::end ? "end of tag" : str_cat("'", t.text.empty() ? "literal" : t.text, "'");
    map_.fail(t.pos, str_cat("expected ", expected, ", got ", got));
  }
  void expect_op(std::string_view op) { if (!accept_op(op)) unexpected(str_cat("'", op, "'")); }
  std::string expect_name() {
    if (peek().kind != Token::Kind::name) unexpected("a name");
    return next().text;
  }
  void expect_end() { if (peek().kind != Token::Kind::end) unexpected("end of tag"); }

  // Statements until one of `end_tags` ({% endfor %}, {% else %} ...), whose name goes to `found`.
  Body parse_body(const std::set<std::string>& end_tags, std::string& found) {
    Body body;
    while (segment_ < segments_.size()) {
      const Segment& segment = segments_[segment_++];
      if (segment.kind == Segment::Kind::text) {
        auto stmt = std::make_shared<Stmt>(Stmt{Stmt::Kind::text, segment.pos, segment.text, {}, {}, {}});
        body.push_back(stmt);
        continue;
      }
      tokens_ = &segment.tokens;
      token_ = 0;
      if (segment.kind == Segment::Kind::output) {
        auto stmt = std::make_shared<Stmt>(Stmt{Stmt::Kind::output, segment.pos, {}, {}, {}, {}});
        stmt->exprs.push_back(parse_tuple_or_expression());
        expect_end();
        body.push_back(stmt);
        continue;
      }
      if (peek().kind != Token::Kind::name) unexpected("a statement name");
      const std::string tag = peek().text;
      if (end_tags.count(tag)) {
        next();
        found = tag;
        return body;
      }
      body.push_back(parse_statement(segment.pos));
    }
    found.clear();
    return body;
  }

  Body parse_block_until(const std::set<std::string>& end_tags, std::string& found, std::string_view opener,
                         std::size_t opened_at) {
    Body body = parse_body(end_tags, found);
    if (found.empty()) {
      std::string expected;
      for (const auto& tag : end_tags) expected += (expected.empty() ? "'" : " or '") + tag + "'";
      map_.fail(opened_at, str_cat("unclosed '", opener, "' block: expected ", expected, " before the end"));
    }
    return body;
  }

  std::shared_ptr<Stmt> parse_statement(std::size_t pos) {
    DepthGuard guard(*this, pos);
    const std::string tag = next().text;
    auto stmt = std::make_shared<Stmt>(Stmt{Stmt::Kind::text, pos, {}, {}, {}, {}});
    std::string found;
    if (tag == "if") {
      stmt->kind = Stmt::Kind::if_;
      stmt->exprs.push_back(parse_expression());
      expect_end();
      while (true) {
        stmt->bodies.push_back(parse_block_until({"elif", "else", "endif"}, found, "if", pos));
        if (found == "elif") { stmt->exprs.push_back(parse_expression()); expect_end(); continue; }
        if (found == "else") { expect_end(); stmt->bodies.push_back(parse_block_until({"endif"}, found, "if", pos)); }
        break;
      }
      expect_end();
    } else if (tag == "for") {
      stmt->kind = Stmt::Kind::for_;
      do stmt->targets.push_back(expect_name()); while (accept_op(","));
      if (!accept_name("in")) unexpected("'in'");
      stmt->exprs.push_back(parse_expression(/*allow_conditional=*/false));
      stmt->exprs.push_back(accept_name("if") ? parse_expression() : nullptr);
      if (at_name("recursive")) map_.fail(peek().pos, "unsupported: recursive loops");
      expect_end();
      stmt->bodies.push_back(parse_block_until({"else", "endfor"}, found, "for", pos));
      if (found == "else") { expect_end(); stmt->bodies.push_back(parse_block_until({"endfor"}, found, "for", pos)); }
      expect_end();
    } else if (tag == "set") {
      const std::string first = expect_name();
      if (accept_op(".")) {
        stmt->kind = Stmt::Kind::set;
        stmt->targets.push_back(first);
        stmt->text = expect_name();
      } else {
        stmt->targets.push_back(first);
        while (accept_op(",")) stmt->targets.push_back(expect_name());
        if (stmt->targets.size() == 1 && peek().kind == Token::Kind::end) {
          next();
          stmt->kind = Stmt::Kind::set_block;
          stmt->bodies.push_back(parse_block_until({"endset"}, found, "set", pos));
          expect_end();
          return stmt;
        }
        stmt->kind = Stmt::Kind::set;
      }
      expect_op("=");
      stmt->exprs.push_back(parse_tuple_or_expression());
      expect_end();
    } else if (tag == "macro") {
      stmt->kind = Stmt::Kind::macro;
      stmt->text = expect_name();
      expect_op("(");
      while (!accept_op(")")) {
        stmt->targets.push_back(expect_name());
        stmt->exprs.push_back(accept_op("=") ? parse_expression() : nullptr);
        if (!at_op(")")) expect_op(",");
      }
      expect_end();
      stmt->bodies.push_back(parse_block_until({"endmacro"}, found, "macro", pos));
      expect_end();
    } else if (tag == "call") {
      stmt->kind = Stmt::Kind::call_block;
      if (at_op("(")) map_.fail(peek().pos, "unsupported: call blocks with caller arguments");
      stmt->exprs.push_back(parse_expression());
      if (stmt->exprs[0]->kind != Expr::Kind::call) map_.fail(pos, "expected a call after 'call'");
      expect_end();
      stmt->bodies.push_back(parse_block_until({"endcall"}, found, "call", pos));
      expect_end();
    } else if (tag == "filter") {
      stmt->kind = Stmt::Kind::filter_block;
      // The filter chain is applied to a placeholder name that the evaluator binds to the body.
      auto placeholder = std::make_shared<Expr>(Expr{Expr::Kind::name, pos, " filter body", {}, {}, {}, {}, false});
      stmt->exprs.push_back(parse_filter_chain(placeholder, /*first_without_pipe=*/true));
      expect_end();
      stmt->bodies.push_back(parse_block_until({"endfilter"}, found, "filter", pos));
      expect_end();
    } else if (tag == "break" || tag == "continue") {
      stmt->kind = tag == "break" ? Stmt::Kind::break_ : Stmt::Kind::continue_;
      expect_end();
    } else if (tag == "generation") {
      stmt->kind = Stmt::Kind::generation;
      expect_end();
      stmt->bodies.push_back(parse_block_until({"endgeneration"}, found, "generation", pos));
      expect_end();
    } else {
      static const std::set<std::string> closers = {"endif", "endfor", "endset", "endmacro", "endcall",
                                                    "endfilter", "endgeneration", "elif", "else"};
      if (closers.count(tag)) map_.fail(pos, str_cat("unexpected '", tag, "': no open block it closes"));
      map_.fail(pos, str_cat("unsupported statement '", tag, "'"));
    }
    return stmt;
  }

  // ------------------------------------------------------------------------------- expressions
  std::shared_ptr<Expr> make(Expr::Kind kind, std::size_t pos, std::string name = {}) {
    auto e = std::make_shared<Expr>();
    e->kind = kind;
    e->pos = pos;
    e->name = std::move(name);
    return e;
  }

  // "a, b" without parentheses is a tuple in {{ }} and set.
  ExprPtr parse_tuple_or_expression() {
    const std::size_t pos = peek().pos;
    ExprPtr first = parse_expression();
    if (!at_op(",")) return first;
    auto tuple = std::make_shared<Expr>(Expr{Expr::Kind::tuple, pos, {}, {}, {first}, {}, {}, false});
    while (accept_op(",")) {
      if (peek().kind == Token::Kind::end) break;
      tuple->args.push_back(parse_expression());
    }
    return tuple;
  }

  ExprPtr parse_expression(bool allow_conditional = true) {
    DepthGuard guard(*this, peek().pos);
    ExprPtr value = parse_or();
    while (allow_conditional && at_name("if")) {
      const std::size_t pos = next().pos;
      auto e = make(Expr::Kind::conditional, pos);
      e->args.push_back(parse_or());  // condition
      e->args.push_back(value);
      e->args.push_back(accept_name("else") ? parse_expression() : nullptr);
      value = e;
    }
    return value;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (at_name("or")) {
      auto e = make(Expr::Kind::logical_or, next().pos);
      e->args = {left, parse_and()};
      left = e;
    }
    return left;
  }
  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (at_name("and")) {
      auto e = make(Expr::Kind::logical_and, next().pos);
      e->args = {left, parse_not()};
      left = e;
    }
    return left;
  }
  ExprPtr parse_not() {
    if (at_name("not")) {
      DepthGuard guard(*this, peek().pos);
      auto e = make(Expr::Kind::logical_not, next().pos);
      e->args = {parse_not()};
      return e;
    }
    return parse_compare();
  }
  ExprPtr parse_compare() {
    const std::size_t pos = peek().pos;
    ExprPtr first = parse_math1();
    std::shared_ptr<Expr> compare;
    while (true) {
      std::string op;
      if (peek().kind == Token::Kind::op &&
          (at_op("==") || at_op("!=") || at_op("<") || at_op(">") || at_op("<=") || at_op(">="))) {
        op = next().text;
      } else if (at_name("in")) {
        next();
        op = "in";
      } else if (at_name("not") && peek(1).kind == Token::Kind::name && peek(1).text == "in") {
        next();
        next();
        op = "not in";
      } else {
        break;
      }
      if (!compare) compare = std::make_shared<Expr>(Expr{Expr::Kind::compare, pos, {}, {}, {first}, {}, {}, false});
      compare->ops.push_back(op);
      compare->args.push_back(parse_math1());
    }
    return compare ? ExprPtr(compare) : first;
  }
  ExprPtr binary(std::string op, std::size_t pos, ExprPtr left, ExprPtr right) {
    auto e = make(Expr::Kind::binary, pos, std::move(op));
    e->args = {std::move(left), std::move(right)};
    return e;
  }
  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (at_op("+") || at_op("-")) {
      const Token& op = next();
      left = binary(op.text, op.pos, left, parse_concat());
    }
    return left;
  }
  ExprPtr parse_concat() {
    ExprPtr left = parse_math2();
    while (at_op("~")) {
      const Token& op = next();
      left = binary("~", op.pos, left, parse_math2());
    }
    return left;
  }
  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (at_op("*") || at_op("/") || at_op("//") || at_op("%")) {
      const Token& op = next();
      left = binary(op.text, op.pos, left, parse_pow());
    }
    return left;
  }
  ExprPtr parse_pow() {
    ExprPtr left = parse_unary();
    while (at_op("**")) {
      const Token& op = next();
      left = binary("**", op.pos, left, parse_unary());
    }
    return left;
  }
  ExprPtr parse_unary(bool with_filter = true) {
    DepthGuard guard(*this, peek().pos);
    ExprPtr node;
    if (at_op("-") || at_op("+")) {
      const Token& op = next();
      node = make(Expr::Kind::unary, op.pos, op.text);
      std::const_pointer_cast<Expr>(node)->args = {parse_unary(false)};
    } else {
      node = parse_primary();
    }
    node = parse_postfix(node);
    if (with_filter) node = parse_filter_chain(node, false);
    return node;
  }

  ExprPtr parse_primary() {
    const Token& t = peek();
    const std::size_t pos = t.pos;
    switch (t.kind) {
      case Token::Kind::name: {
        next();
        auto e = make(Expr::Kind::literal, pos);
        if (t.text == "true" || t.text == "True") e->literal = Value::from(true);
        else if (t.text == "false" || t.text == "False") e->literal = Value::from(false);
        else if (t.text == "none" || t.text == "None") e->literal = Value::none();
        else { e->kind = Expr::Kind::name; e->name = t.text; }
        return e;
      }
      case Token::Kind::string: {
        std::string text = next().text;
        while (peek().kind == Token::Kind::string) text += next().text;  // "a" "b" == "ab"
        auto e = make(Expr::Kind::literal, pos);
        e->literal = Value::from(std::move(text));
        return e;
      }
      case Token::Kind::integer: { auto e = make(Expr::Kind::literal, pos); e->literal = Value::from(next().integer); return e; }
      case Token::Kind::floating: { auto e = make(Expr::Kind::literal, pos); e->literal = Value::from(next().floating); return e; }
      case Token::Kind::op:
        if (accept_op("(")) {
          if (accept_op(")")) return make(Expr::Kind::tuple, pos);
          ExprPtr first = parse_expression();
          if (accept_op(")")) return first;
          auto tuple = make(Expr::Kind::tuple, pos);
          tuple->args.push_back(first);
          while (accept_op(",")) {
            if (at_op(")")) break;
            tuple->args.push_back(parse_expression());
          }
          expect_op(")");
          return tuple;
        }
        if (accept_op("[")) {
          auto list = make(Expr::Kind::list, pos);
          while (!accept_op("]")) {
            list->args.push_back(parse_expression());
            if (!at_op("]")) expect_op(",");
          }
          return list;
        }
        if (accept_op("{")) {
          auto dict = make(Expr::Kind::dict, pos);
          while (!accept_op("}")) {
            dict->args.push_back(parse_expression());
            expect_op(":");
            dict->args.push_back(parse_expression());
            if (!at_op("}")) expect_op(",");
          }
          return dict;
        }
        break;
      case Token::Kind::end: break;
    }
    unexpected("an expression");
  }

  void parse_call_args(Expr& call) {
    while (!accept_op(")")) {
      if (peek().kind == Token::Kind::name && peek(1).kind == Token::Kind::op && peek(1).text == "=") {
        std::string key = next().text;
        next();
        call.kwargs.emplace_back(std::move(key), parse_expression());
      } else {
        if (at_op("*") || at_op("**")) map_.fail(peek().pos, "unsupported: *args / **kwargs in calls");
        call.args.push_back(parse_expression());
      }
      if (!at_op(")")) expect_op(",");
    }
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      if (at_op(".")) {
        const std::size_t pos = next().pos;
        auto e = make(Expr::Kind::attribute, pos);
        if (peek().kind == Token::Kind::integer) {  // x.0 is x[0]
          e->kind = Expr::Kind::subscript;
          auto index = make(Expr::Kind::literal, peek().pos);
          index->literal = Value::from(next().integer);
          e->args = {node, index};
        } else {
          e->name = expect_name();
          e->args = {node};
        }
        node = e;
      } else if (at_op("[")) {
        const std::size_t pos = next().pos;
        ExprPtr parts[3];
        int colons = 0;
        while (!at_op("]")) {
          if (accept_op(":")) {
            if (++colons > 2) unexpected("']'");
            continue;
          }
          if (parts[colons]) unexpected("':' or ']'");
          parts[colons] = parse_expression();
        }
        next();
        auto e = make(colons ? Expr::Kind::slice : Expr::Kind::subscript, pos);
        if (colons) e->args = {node, parts[0], parts[1], parts[2]};
        else if (!parts[0]) map_.fail(pos, "empty subscript");
        else e->args = {node, parts[0]};
        node = e;
      } else if (at_op("(")) {
        const std::size_t pos = next().pos;
        auto e = make(Expr::Kind::call, pos);
        e->args.push_back(node);
        parse_call_args(*e);
        node = e;
      } else {
        return node;
      }
    }
  }

  // "| name(args)" filters and "is [not] name args" tests after a value.
  ExprPtr parse_filter_chain(ExprPtr node, bool first_without_pipe) {
    while (true) {
      if (first_without_pipe || at_op("|")) {
        const std::size_t pos = first_without_pipe ? peek().pos : next().pos;
        first_without_pipe = false;
        std::string name = expect_name();
        while (accept_op(".")) name += "." + expect_name();
        auto e = make(Expr::Kind::filter, pos, name);
        e->args.push_back(node);
        if (accept_op("(")) parse_call_args(*e);
        node = e;
      } else if (at_name("is")) {
        const std::size_t pos = next().pos;
        const bool negated = accept_name("not");
        std::string name = expect_name();
        auto e = make(Expr::Kind::test, pos, name);
        e->negated = negated;
        e->args.push_back(node);
        if (accept_op("(")) {
          parse_call_args(*e);
        } else if ((peek().kind == Token::Kind::string || peek().kind == Token::Kind::integer ||
                    peek().kind == Token::Kind::floating || at_op("[") || at_op("{") ||
                    (peek().kind == Token::Kind::name && !at_name("else") && !at_name("or") &&
                     !at_name("and") && !at_name("if") && !at_name("is") && !at_name("in") &&
                     !at_name("not")))) {
          // "x is divisibleby 3", "x is sameas none": one argument without parentheses.
          e->args.push_back(parse_postfix(parse_primary()));
        }
        node = e;
      } else {
        return node;
      }
    }
  }
};

}  // namespace fourierft::io::jinja
