// fourierft/io/jinja/evaluator.hpp — runs a parsed template the way jinja2's sandbox does: scopes,
// loops with `loop`, macros, filters, tests, and the Python str / list / dict methods templates call.
#pragma once

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "fourierft/io/jinja/parser.hpp"
#include "fourierft/io/jinja/value.hpp"
#include "fourierft/io/limits.hpp"

namespace fourierft::io::jinja {

// Limits that turn a hostile template into an error: jinja2's sandbox caps range() at 100000 items.
inline constexpr std::int64_t max_range_length = 100000;
// (Loop iterations and expressions evaluated in one render: io::input_limits()'s
// template_max_loop_iterations and template_max_steps.)
inline constexpr std::size_t max_output_bytes = std::size_t(256) << 20;
inline constexpr int max_call_depth = 100;                          // nested macro calls

class Renderer {
 public:
  using Scope = std::map<std::string, Value>;

  Renderer(const SourceMap& map, Scope globals) : map_(map) {
    scopes_.push_back(new_scope(std::move(globals)));
    scopes_.push_back(new_scope());  // the template's own top-level `set`s
  }
  // A macro's closure holds the scopes it was defined in, one of which holds the macro: a cycle of
  // shared_ptrs. Emptying every scope still alive breaks them (strong references taken first, so
  // no scope is freed while it is being emptied).
  ~Renderer() {
    std::vector<std::shared_ptr<Scope>> alive;
    for (const auto& weak : created_)
      if (auto scope = weak.lock()) alive.push_back(std::move(scope));
    for (const auto& scope : alive) scope->clear();
  }
  Renderer(const Renderer&) = delete;
  Renderer& operator=(const Renderer&) = delete;

  std::string render(const Body& body) {
    std::string out;
    struct ReprBudget {  // printing containers draws on this render's steps (value.hpp)
      std::int64_t* saved = repr_steps_left;
      explicit ReprBudget(std::int64_t* left) { repr_steps_left = left; }
      ~ReprBudget() { repr_steps_left = saved; }
    } budget(&steps_left_);
    try {
      exec_body(body, out);
    } catch (const StepsExhausted&) {
      fail(0, steps_message());
    }
    return out;
  }

 private:
  enum class Flow { normal, break_, continue_ };
  const SourceMap& map_;
  std::vector<std::shared_ptr<Scope>> scopes_;
  std::vector<std::weak_ptr<Scope>> created_;  // every scope made (new_scope), for ~Renderer
  std::int64_t iterations_ = 0;
  const std::int64_t max_loop_iterations_ = input_limits().template_max_loop_iterations;
  // Evaluation steps (expressions evaluated, items repeated, elements printed) left in this render.
  const std::int64_t max_steps_ = input_limits().template_max_steps;
  mutable std::int64_t steps_left_ = max_steps_;  // (const evaluation helpers charge it too)
  std::string steps_message() const {
    return str_cat("more than ", max_steps_, " evaluation steps (FOURIERFT_TEMPLATE_MAX_STEPS)");
  }
  void charge(std::int64_t steps, std::size_t pos) const {
    steps_left_ -= steps;
    if (steps_left_ < 0) fail(pos, steps_message());
  }
  int call_depth_ = 0;
  int eval_depth_ = 0;

  [[noreturn]] void fail(std::size_t pos, const std::string& message) const { map_.fail(pos, message); }

  // ---------------------------------------------------------------------------------- scopes
  Value lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it)
      if (auto found = (*it)->find(name); found != (*it)->end()) return found->second;
    return Value::undefined(str_cat("'", name, "' is undefined"));
  }
  std::shared_ptr<Scope> new_scope(Scope values = {}) {
    auto scope = std::make_shared<Scope>(std::move(values));
    if (created_.size() >= 1024 && created_.size() == created_.capacity())  // drop the freed ones
      std::erase_if(created_, [](const std::weak_ptr<Scope>& w) { return w.expired(); });
    created_.push_back(scope);
    return scope;
  }
  void assign(const std::string& name, Value value) { (*scopes_.back())[name] = std::move(value); }

  // ------------------------------------------------------------------------------- statements
  Flow exec_body(const Body& body, std::string& out) {
    for (const auto& stmt : body) {
      const Flow flow = exec(*stmt, out);
      if (flow != Flow::normal) return flow;
      if (out.size() > max_output_bytes)
        fail(stmt->pos, str_cat("output longer than ", max_output_bytes, " bytes"));
    }
    return Flow::normal;
  }

  Flow exec(const Stmt& stmt, std::string& out) {
    switch (stmt.kind) {
      case Stmt::Kind::text: out += stmt.text; return Flow::normal;
      case Stmt::Kind::output: {
        const Value v = eval(*stmt.exprs[0]);
        if (v.kind == Value::Kind::function) fail(stmt.pos, "cannot print a function");
        out += python_str(v);
        return Flow::normal;
      }
      case Stmt::Kind::if_:
        for (std::size_t i = 0; i < stmt.exprs.size(); ++i)
          if (truthy(eval(*stmt.exprs[i]))) return exec_body(stmt.bodies[i], out);
        if (stmt.bodies.size() > stmt.exprs.size()) return exec_body(stmt.bodies.back(), out);
        return Flow::normal;
      case Stmt::Kind::for_: return exec_for(stmt, out);
      case Stmt::Kind::set: {
        Value value = eval(*stmt.exprs[0]);
        if (!stmt.text.empty()) {  // {% set ns.attr = value %}
          Value target = lookup(stmt.targets[0]);
          if (target.kind != Value::Kind::ns)
            fail(stmt.pos, str_cat("cannot assign attribute on non-namespace object '", stmt.targets[0], "'"));
          for (auto& [key, item] : *target.dict)
            if (key == stmt.text) { item = std::move(value); return Flow::normal; }
          target.dict->emplace_back(stmt.text, std::move(value));
        } else {
          assign_targets(stmt.targets, std::move(value), stmt.pos);
        }
        return Flow::normal;
      }
      case Stmt::Kind::set_block: {
        std::string captured;
        exec_body(stmt.bodies[0], captured);
        assign(stmt.targets[0], Value::from(std::move(captured)));
        return Flow::normal;
      }
      case Stmt::Kind::macro: assign(stmt.text, make_macro(stmt, nullptr)); return Flow::normal;
      case Stmt::Kind::call_block: {
        const Expr& call = *stmt.exprs[0];
        Value callee = eval(*call.args[0]);
        CallArgs args = eval_args(call);
        args.keyword.emplace_back("caller", make_macro(stmt, &stmt.bodies[0]));
        out += python_str(invoke(callee, args, call.pos));
        return Flow::normal;
      }
      case Stmt::Kind::filter_block: {
        std::string captured;
        exec_body(stmt.bodies[0], captured);
        scopes_.push_back(new_scope(Scope{{" filter body", Value::from(std::move(captured))}}));
        const Value v = eval(*stmt.exprs[0]);
        scopes_.pop_back();
        out += python_str(v);
        return Flow::normal;
      }
      case Stmt::Kind::break_: return Flow::break_;
      case Stmt::Kind::continue_: return Flow::continue_;
      case Stmt::Kind::generation: return exec_body(stmt.bodies[0], out);
    }
    return Flow::normal;
  }

  void assign_targets(const std::vector<std::string>& targets, Value value, std::size_t pos) {
    if (targets.size() == 1) { assign(targets[0], std::move(value)); return; }
    const List items = iterate(value, pos);
    if (items.size() != targets.size())
      fail(pos, str_cat("cannot unpack ", items.size(), " values into ", targets.size(), " names"));
    for (std::size_t i = 0; i < targets.size(); ++i) assign(targets[i], items[i]);
  }

  Flow exec_for(const Stmt& stmt, std::string& out) {
    const Value iterable = eval(*stmt.exprs[0]);
    List items = iterate(iterable, stmt.exprs[0]->pos);
    scopes_.push_back(new_scope());
    if (stmt.exprs[1]) {  // {% for x in xs if cond %}: filtered before loop.index counts
      List kept;
      for (auto& item : items) {
        assign_targets(stmt.targets, item, stmt.pos);
        if (truthy(eval(*stmt.exprs[1]))) kept.push_back(std::move(item));
      }
      items = std::move(kept);
    }
    const auto n = static_cast<std::int64_t>(items.size());
    for (std::int64_t i = 0; i < n; ++i) {
      if (++iterations_ > max_loop_iterations_)
        fail(stmt.pos, str_cat("more than ", max_loop_iterations_,
                               " loop iterations (FOURIERFT_TEMPLATE_MAX_LOOPS)"));
      charge(10, stmt.pos);  // an iteration's own work (its scope, `loop`) as ten steps
      assign_targets(stmt.targets, items[static_cast<std::size_t>(i)], stmt.pos);
      Dict loop = {
          {"index", Value::from(i + 1)}, {"index0", Value::from(i)},
          {"revindex", Value::from(n - i)}, {"revindex0", Value::from(n - i - 1)},
          {"first", Value::from(i == 0)}, {"last", Value::from(i == n - 1)},
          {"length", Value::from(n)}, {"depth", Value::from(std::int64_t(1))},
          {"depth0", Value::from(std::int64_t(0))},
          {"previtem", i > 0 ? items[static_cast<std::size_t>(i - 1)] : Value::undefined("there is no previous item")},
          {"nextitem", i + 1 < n ? items[static_cast<std::size_t>(i + 1)] : Value::undefined("there is no next item")},
      };
      const std::int64_t index0 = i;
      loop.emplace_back("cycle", Value::from(Function([index0](CallArgs& args) {
        if (args.positional.empty()) return Value::undefined("no items for cycling given");
        return args.positional[static_cast<std::size_t>(index0 % std::int64_t(args.positional.size()))];
      })));
      assign("loop", Value::from(std::move(loop)));
      const Flow flow = exec_body(stmt.bodies[0], out);
      if (flow == Flow::break_) break;
    }
    scopes_.pop_back();
    if (n == 0 && stmt.bodies.size() > 1) return exec_body(stmt.bodies[1], out);
    return Flow::normal;
  }

  // A macro: parameters with defaults, the template's globals visible, `caller` for call blocks.
  Value make_macro(const Stmt& stmt, const Body* caller_body) {
    const Body& body = caller_body ? *caller_body : stmt.bodies[0];
    const bool is_caller = caller_body != nullptr;
    auto closure = scopes_;  // what the macro sees besides its arguments
    return Value::from(Function([this, &stmt, &body, is_caller, closure](CallArgs& args) {
      if (++call_depth_ > max_call_depth) {
        --call_depth_;
        fail(stmt.pos, str_cat("macro calls nested deeper than ", max_call_depth));
      }
      auto saved = std::move(scopes_);
      scopes_ = closure;
      scopes_.push_back(new_scope());
      if (!is_caller) {
        const auto& params = stmt.targets;
        if (args.positional.size() > params.size())
          fail(stmt.pos, str_cat("macro '", stmt.text, "' takes ", params.size(), " arguments, got ", args.positional.size()));
        for (std::size_t i = 0; i < params.size(); ++i) {
          Value v = i < args.positional.size() ? args.positional[i] : Value::undefined(str_cat("'", params[i], "' is undefined"));
          for (auto& [key, kw] : args.keyword) if (key == params[i]) v = kw;
          if (v.is_undefined() && i >= args.positional.size() && stmt.exprs[i]) v = eval(*stmt.exprs[i]);
          assign(params[i], v);
        }
        for (auto& [key, kw] : args.keyword)
          if (key == "caller") assign("caller", kw);
          else if (std::find(params.begin(), params.end(), key) == params.end())
            fail(stmt.pos, str_cat("macro '", stmt.text, "' has no argument '", key, "'"));
      }
      std::string out;
      try {
        exec_body(body, out);
      } catch (...) {
        scopes_ = std::move(saved);
        --call_depth_;
        throw;
      }
      scopes_ = std::move(saved);
      --call_depth_;
      return Value::from(std::move(out));
    }));
  }

  // ------------------------------------------------------------------------------ expressions
  struct EvalGuard {
    Renderer& r;
    EvalGuard(Renderer& renderer, std::size_t pos) : r(renderer) {
      r.charge(1, pos);
      if (++r.eval_depth_ > 4 * max_nesting_depth) { --r.eval_depth_; r.fail(pos, "expression nested too deeply"); }
    }
    ~EvalGuard() { --r.eval_depth_; }
  };

  CallArgs eval_args(const Expr& call, std::size_t skip = 1) {
    CallArgs args;
    for (std::size_t i = skip; i < call.args.size(); ++i) args.positional.push_back(eval(*call.args[i]));
    for (const auto& [key, e] : call.kwargs) args.keyword.emplace_back(key, eval(*e));
    return args;
  }

  Value invoke(const Value& callee, CallArgs& args, std::size_t pos) {
    if (callee.is_undefined()) fail(pos, callee.string.empty() ? "call of an undefined value" : callee.string);
    if (callee.kind != Value::Kind::function) fail(pos, str_cat("'", type_name(callee), "' object is not callable"));
    try {
      return (*callee.function)(args);
    } catch (const std::invalid_argument& e) {  // a builtin's type error: name the call's position
      fail(pos, e.what());
    }
  }

  [[noreturn]] void undefined_error(const Value& v, std::size_t pos) const {
    fail(pos, v.string.empty() ? "undefined value" : v.string);
  }

  Value eval(const Expr& e) {
    EvalGuard guard(*this, e.pos);
    switch (e.kind) {
      case Expr::Kind::literal: return e.literal;
      case Expr::Kind::name: return lookup(e.name);
      case Expr::Kind::list: case Expr::Kind::tuple: {
        List items;
        for (const auto& item : e.args) items.push_back(eval(*item));
        return Value::from(std::move(items), e.kind == Expr::Kind::tuple);
      }
      case Expr::Kind::dict: {
        Dict items;
        for (std::size_t i = 0; i + 1 < e.args.size(); i += 2) {
          const Value key = eval(*e.args[i]);
          if (!key.is_string()) fail(e.args[i]->pos, "unsupported: dict keys other than strings");
          Value item = eval(*e.args[i + 1]);
          auto it = std::find_if(items.begin(), items.end(), [&](auto& p) { return p.first == key.string; });
          if (it != items.end()) it->second = std::move(item);
          else items.emplace_back(key.string, std::move(item));
        }
        return Value::from(std::move(items));
      }
      case Expr::Kind::attribute: return get_attribute(eval(*e.args[0]), e.name, e.pos);
      case Expr::Kind::subscript: return get_item(eval(*e.args[0]), eval(*e.args[1]), e.pos);
      case Expr::Kind::slice: return slice(e);
      case Expr::Kind::call: {
        Value callee = eval(*e.args[0]);
        CallArgs args = eval_args(e);
        return invoke(callee, args, e.pos);
      }
      case Expr::Kind::filter: return apply_filter(e);
      case Expr::Kind::test: return Value::from(apply_test(e) != e.negated);
      case Expr::Kind::unary: {
        const Value v = eval(*e.args[0]);
        if (!v.is_number()) fail(e.pos, str_cat("bad operand type for unary ", e.name, ": '", type_name(v), "'"));
        if (e.name == "+") return v.kind == Value::Kind::boolean ? Value::from(v.as_int()) : v;
        if (v.kind == Value::Kind::floating) return Value::from(-v.floating);
        const bool overflowed = v.as_int() == std::numeric_limits<std::int64_t>::min();
        return Value::from(checked_int(overflowed, overflowed ? 0 : -v.as_int(), "-", e.pos));
      }
      case Expr::Kind::binary: return binary(e.name, eval(*e.args[0]), eval(*e.args[1]), e.pos);
      case Expr::Kind::compare: {
        Value left = eval(*e.args[0]);
        for (std::size_t i = 0; i < e.ops.size(); ++i) {
          Value right = eval(*e.args[i + 1]);
          if (!compare(e.ops[i], left, right, e.pos)) return Value::from(false);
          left = std::move(right);
        }
        return Value::from(true);
      }
      // Python's and/or return an operand, not a bool.
      case Expr::Kind::logical_and: { Value a = eval(*e.args[0]); return truthy(a) ? eval(*e.args[1]) : a; }
      case Expr::Kind::logical_or: { Value a = eval(*e.args[0]); return truthy(a) ? a : eval(*e.args[1]); }
      case Expr::Kind::logical_not: return Value::from(!truthy(eval(*e.args[0])));
      case Expr::Kind::conditional:
        if (truthy(eval(*e.args[0]))) return eval(*e.args[1]);
        return e.args[2] ? eval(*e.args[2]) : Value::undefined("the inline if had no else");
    }
    return Value::undefined();
  }

  // Python's == across types: numbers by value (True == 1), containers element-wise.
  static bool equal(const Value& a, const Value& b) {
    if (a.is_number() && b.is_number()) {
      if (a.is_integral() && b.is_integral()) return a.as_int() == b.as_int();
      return a.as_double() == b.as_double();
    }
    if (a.kind != b.kind) return false;
    switch (a.kind) {
      case Value::Kind::undefined: case Value::Kind::none: return true;
      case Value::Kind::string: return a.string == b.string;
      case Value::Kind::list:
        if (a.is_tuple != b.is_tuple || a.list->size() != b.list->size()) return false;
        for (std::size_t i = 0; i < a.list->size(); ++i) if (!equal((*a.list)[i], (*b.list)[i])) return false;
        return true;
      case Value::Kind::dict: {
        if (a.dict->size() != b.dict->size()) return false;
        for (const auto& [key, item] : *a.dict) {
          const Value* other = b.find(key);
          if (!other || !equal(item, *other)) return false;
        }
        return true;
      }
      default: return a.dict == b.dict && a.function == b.function;
    }
  }

  // Python's < for numbers, strings (code point order = UTF-8 byte order) and lists.
  int order(const Value& a, const Value& b, const std::string& op, std::size_t pos) const {
    if (a.is_number() && b.is_number()) {
      if (a.is_integral() && b.is_integral()) return a.as_int() < b.as_int() ? -1 : a.as_int() > b.as_int();
      return a.as_double() < b.as_double() ? -1 : a.as_double() > b.as_double();
    }
    if (a.is_string() && b.is_string()) return a.string < b.string ? -1 : a.string > b.string;
    if (a.is_list() && b.is_list()) {
      for (std::size_t i = 0; i < std::min(a.list->size(), b.list->size()); ++i)
        if (!equal((*a.list)[i], (*b.list)[i])) return order((*a.list)[i], (*b.list)[i], op, pos);
      return a.list->size() < b.list->size() ? -1 : a.list->size() > b.list->size();
    }
    fail(pos, str_cat("'", op, "' not supported between instances of '", type_name(a), "' and '", type_name(b), "'"));
  }

  bool contains(const Value& container, const Value& item, std::size_t pos) const {
    switch (container.kind) {
      case Value::Kind::string:
        if (!item.is_string()) fail(pos, str_cat("'in <string>' requires string as left operand, not ", type_name(item)));
        return container.string.find(item.string) != std::string::npos;
      case Value::Kind::list:
        return std::any_of(container.list->begin(), container.list->end(), [&](const Value& v) { return equal(v, item); });
      case Value::Kind::dict: return item.is_string() && container.find(item.string) != nullptr;
      case Value::Kind::undefined: return false;
      default: fail(pos, str_cat("argument of type '", type_name(container), "' is not iterable"));
    }
  }

  bool compare(const std::string& op, const Value& a, const Value& b, std::size_t pos) const {
    if (op == "==") return equal(a, b);
    if (op == "!=") return !equal(a, b);
    if (op == "in") return contains(b, a, pos);
    if (op == "not in") return !contains(b, a, pos);
    const int c = order(a, b, op, pos);
    if (op == "<") return c < 0;
    if (op == ">") return c > 0;
    if (op == "<=") return c <= 0;
    return c >= 0;
  }

  // Integer arithmetic as Python's, within 64 bits: Python's integers are unbounded, a chat
  // template never needs one this large, so a result that does not fit is an error.
  std::int64_t checked_int(bool overflowed, std::int64_t result, const char* op, std::size_t pos) const {
    if (overflowed) fail(pos, str_cat("integer result of '", op, "' does not fit in 64 bits"));
    return result;
  }
  std::int64_t int_power(std::int64_t base, std::int64_t exponent, std::size_t pos) const {
    std::int64_t result = 1;  // by squaring: at most 63 steps
    bool overflowed = false;
    while (exponent > 0 && !overflowed) {
      if (exponent & 1) overflowed = __builtin_mul_overflow(result, base, &result);
      exponent >>= 1;
      if (exponent > 0 && !overflowed) overflowed = __builtin_mul_overflow(base, base, &base);
    }
    return checked_int(overflowed, result, "**", pos);
  }
  // The int filter on a float: NaN gives the default, as jinja2's do_int; beyond 64 bits, an error.
  static Value float_to_int(double f, const Value& fallback) {
    if (std::isnan(f)) return fallback;
    const double t = std::trunc(f);
    if (!(t >= -9223372036854775808.0 && t < 9223372036854775808.0))
      throw std::invalid_argument(str_cat("int(", f, ") does not fit in 64 bits"));
    return Value::from(static_cast<std::int64_t>(t));
  }
  // An indent of n spaces (n <= 0: none), at most the output cap.
  static std::string spaces(std::int64_t n) {
    if (n > static_cast<std::int64_t>(max_output_bytes)) throw std::invalid_argument("indent too large");
    return std::string(static_cast<std::size_t>(std::max<std::int64_t>(0, n)), ' ');
  }
  // a // b rounded towards minus infinity; b != 0, and not (min, -1), whose quotient overflows.
  static std::int64_t floor_div(std::int64_t a, std::int64_t b) {
    std::int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
  }

  Value binary(const std::string& op, const Value& a, const Value& b, std::size_t pos) const {
    if (op == "~") return Value::from(python_str(a) + python_str(b));
    if (a.is_undefined()) undefined_error(a, pos);
    if (b.is_undefined()) undefined_error(b, pos);
    const auto type_error = [&]() {
      fail(pos, str_cat("unsupported operand type(s) for ", op, ": '", type_name(a), "' and '", type_name(b), "'"));
    };
    if (a.is_number() && b.is_number()) {
      const bool ints = a.is_integral() && b.is_integral();
      const double x = a.as_double(), y = b.as_double();
      const std::int64_t i = a.as_int(), j = b.as_int();
      std::int64_t r = 0;
      if (op == "+" || op == "-" || op == "*") {
        if (!ints) return Value::from(op == "+" ? x + y : op == "-" ? x - y : x * y);
        const bool overflowed = op == "+" ? __builtin_add_overflow(i, j, &r)
                                : op == "-" ? __builtin_sub_overflow(i, j, &r)
                                            : __builtin_mul_overflow(i, j, &r);
        return Value::from(checked_int(overflowed, r, op.c_str(), pos));
      }
      if (op == "**") return ints && j >= 0 ? Value::from(int_power(i, j, pos)) : Value::from(std::pow(x, y));
      if (y == 0) fail(pos, ints && op != "/" ? "integer division or modulo by zero" : "division by zero");
      if (op == "/") return Value::from(x / y);
      if (ints && j == -1) {  // i // -1 = -i (overflows for the minimum); i % -1 = 0
        const bool overflowed = i == std::numeric_limits<std::int64_t>::min();
        if (op == "//") return Value::from(checked_int(overflowed, overflowed ? 0 : -i, "//", pos));
        if (op == "%") return Value::from(std::int64_t(0));
      }
      if (op == "//") return ints ? Value::from(floor_div(i, j)) : Value::from(std::floor(x / y));
      if (op == "%") {
        if (ints) return Value::from(i - j * floor_div(i, j));
        double r = std::fmod(x, y);
        if (r != 0 && ((r < 0) != (y < 0))) r += y;
        return Value::from(r);
      }
    }
    if (op == "+" && a.is_string() && b.is_string()) return Value::from(a.string + b.string);
    if (op == "+" && a.is_list() && b.is_list()) {
      List items = *a.list;
      items.insert(items.end(), b.list->begin(), b.list->end());
      return Value::from(std::move(items), a.is_tuple);
    }
    if (op == "*" && (a.is_string() || a.is_list()) && b.is_integral()) return repeat(a, b.as_int(), pos);
    if (op == "*" && (b.is_string() || b.is_list()) && a.is_integral()) return repeat(b, a.as_int(), pos);
    type_error();
    return {};
  }

  Value repeat(const Value& v, std::int64_t times, std::size_t pos) const {
    const std::size_t unit = v.is_string() ? v.string.size() : v.list->size();
    // Strings up to the output cap; lists up to range()'s cap in items (each item is a Value of
    // tens of bytes, and every item is walked when printed).
    const std::size_t cap = v.is_string() ? max_output_bytes : static_cast<std::size_t>(max_range_length);
    if (times > 0 && unit > 0 && static_cast<std::size_t>(times) > cap / unit)
      fail(pos, str_cat("repetition too large: over ", cap, v.is_string() ? " bytes" : " items"));
    if (times <= 0 || unit == 0)  // empty at once: [] * 10**9 took 10**9 steps
      return v.is_string() ? Value::from(std::string()) : Value::from(List{}, v.is_tuple);
    // Each item made is a step; a string's bytes are cheap, 64 to a step.
    charge(static_cast<std::int64_t>(v.is_string() ? unit * static_cast<std::size_t>(times) / 64
                                                   : unit * static_cast<std::size_t>(times)), pos);
    if (v.is_string()) {
      std::string out;
      for (std::int64_t i = 0; i < times; ++i) out += v.string;
      return Value::from(std::move(out));
    }
    List items;
    for (std::int64_t i = 0; i < times; ++i) items.insert(items.end(), v.list->begin(), v.list->end());
    return Value::from(std::move(items), v.is_tuple);
  }

  // What a for loop walks: list items, dict keys, string characters; Undefined is empty.
  List iterate(const Value& v, std::size_t pos) const {
    switch (v.kind) {
      case Value::Kind::list: return *v.list;
      case Value::Kind::dict: {
        List keys;
        for (const auto& item : *v.dict) keys.push_back(Value::from(item.first));
        return keys;
      }
      case Value::Kind::string: {
        List chars;
        for (char32_t c : utf8_decode(v.string)) { std::string s; utf8_append(s, c); chars.push_back(Value::from(std::move(s))); }
        return chars;
      }
      case Value::Kind::undefined: return {};
      default: fail(pos, str_cat("'", type_name(v), "' object is not iterable"));
    }
  }

  // jinja2's getattr: a method first, then the item; a missing member is Undefined (printing
  // nothing), but any member of Undefined is an error.
  Value get_attribute(const Value& obj, const std::string& name, std::size_t pos) {
    if (obj.is_undefined()) undefined_error(obj, pos);
    if (obj.kind == Value::Kind::ns) {
      if (const Value* v = obj.find(name)) return *v;
      return Value::undefined(str_cat("'Namespace' object has no attribute '", name, "'"));
    }
    if (Value method = bound_method(obj, name, pos); !method.is_undefined()) return method;
    if (obj.is_dict()) {
      if (const Value* v = obj.find(name)) return *v;
      return Value::undefined(str_cat("'dict object' has no attribute '", name, "'"));
    }
    return Value::undefined(str_cat("'", type_name(obj), " object' has no attribute '", name, "'"));
  }

  // jinja2's getitem: the item first, then an attribute of that name.
  Value get_item(const Value& obj, const Value& key, std::size_t pos) {
    if (obj.is_undefined()) undefined_error(obj, pos);
    if ((obj.is_dict() || obj.kind == Value::Kind::ns) && key.is_string()) {
      if (const Value* v = obj.find(key.string)) return *v;
      if (obj.is_dict()) {
        if (Value method = bound_method(obj, key.string, pos); !method.is_undefined()) return method;
      }
      return Value::undefined(str_cat("'dict object' has no attribute '", key.string, "'"));
    }
    if ((obj.is_list() || obj.is_string()) && key.is_integral()) {
      std::int64_t i = key.as_int();
      if (obj.is_list()) {
        const auto n = static_cast<std::int64_t>(obj.list->size());
        if (i < 0) i += n;
        if (i < 0 || i >= n) return Value::undefined(str_cat("list index out of range"));
        return (*obj.list)[static_cast<std::size_t>(i)];
      }
      const auto cps = utf8_decode(obj.string);
      const auto n = static_cast<std::int64_t>(cps.size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) return Value::undefined("string index out of range");
      return Value::from(utf8_encode(cps, static_cast<std::size_t>(i), static_cast<std::size_t>(i + 1)));
    }
    if (key.is_string()) return get_attribute(obj, key.string, pos);
    return Value::undefined(str_cat("'", type_name(obj), " object' has no item ", python_repr(key)));
  }

  // Python's slice indices for a sequence of length n.
  static std::vector<std::size_t> slice_indices(std::int64_t n, const Value& start_v, const Value& stop_v,
                                                const Value& step_v) {
    const std::int64_t step = step_v.is_integral() ? step_v.as_int() : 1;
    const auto clamp = [&](const Value& v, std::int64_t fallback) {
      if (!v.is_integral()) return fallback;
      std::int64_t i = v.as_int();
      if (i < 0) i += n;
      if (step > 0) return std::clamp<std::int64_t>(i, 0, n);
      return std::clamp<std::int64_t>(i, -1, n - 1);
    };
    const std::int64_t start = clamp(start_v, step > 0 ? 0 : n - 1);
    const std::int64_t stop = clamp(stop_v, step > 0 ? n : -1);
    std::vector<std::size_t> out;
    for (std::int64_t i = start; step > 0 ? i < stop : i > stop;) {
      out.push_back(static_cast<std::size_t>(i));
      // The next index would pass stop: end here, before i + step can overflow. (For step < 0,
      // (i - stop) + step <= 0 is i - stop <= -step without negating the minimum.)
      if (step > 0 ? stop - i <= step : (i - stop) + step <= 0) break;
      i += step;
    }
    return out;
  }

  Value slice(const Expr& e) {
    const Value obj = eval(*e.args[0]);
    Value parts[3];
    for (int k = 0; k < 3; ++k) {
      if (!e.args[1 + k]) continue;
      parts[k] = eval(*e.args[1 + k]);
      if (!parts[k].is_integral() && !parts[k].is_none())
        fail(e.pos, "slice indices must be integers or None");
    }
    if (parts[2].is_integral() && parts[2].as_int() == 0) fail(e.pos, "slice step cannot be zero");
    if (obj.is_list()) {
      List items;
      for (std::size_t i : slice_indices(std::int64_t(obj.list->size()), parts[0], parts[1], parts[2])) items.push_back((*obj.list)[i]);
      return Value::from(std::move(items), obj.is_tuple);
    }
    if (obj.is_string()) {
      const auto cps = utf8_decode(obj.string);
      std::string out;
      for (std::size_t i : slice_indices(std::int64_t(cps.size()), parts[0], parts[1], parts[2])) utf8_append(out, cps[i]);
      return Value::from(std::move(out));
    }
    if (obj.is_undefined()) undefined_error(obj, e.pos);
    fail(e.pos, str_cat("'", type_name(obj), "' object is not subscriptable"));
  }

  // ------------------------------------------------------------------------ methods and helpers
  static std::int64_t length_of(const Value& v) {
    switch (v.kind) {
      case Value::Kind::string: return std::int64_t(utf8_decode(v.string).size());
      case Value::Kind::list: return std::int64_t(v.list->size());
      case Value::Kind::dict: case Value::Kind::ns: return std::int64_t(v.dict->size());
      case Value::Kind::undefined: return 0;
      default: throw std::invalid_argument(str_cat("object of type '", type_name(v), "' has no len()"));
    }
  }

  static const Value* argument(CallArgs& args, std::size_t index, std::string_view name) {
    for (auto& [key, v] : args.keyword) if (key == name) return &v;
    return index < args.positional.size() ? &args.positional[index] : nullptr;
  }
  static std::string string_argument(CallArgs& args, std::size_t index, std::string_view name,
                                     std::string_view method) {
    const Value* v = argument(args, index, name);
    if (!v || !v->is_string())
      throw std::invalid_argument(str_cat(method, "() argument '", name, "' must be str"));
    return v->string;
  }

  // Python's strip / lstrip / rstrip: whitespace, or any of `chars`.
  static std::string strip(const std::string& s, const Value* chars, bool left, bool right) {
    const auto cps = utf8_decode(s);
    std::vector<char32_t> set;
    const bool whitespace = !chars || chars->is_none() || chars->is_undefined();
    if (!whitespace) {
      if (!chars->is_string()) throw std::invalid_argument("strip arg must be None or str");
      set = utf8_decode(chars->string);
    }
    const auto strippable = [&](char32_t c) {
      return whitespace ? py_isspace(c) : std::find(set.begin(), set.end(), c) != set.end();
    };
    std::size_t begin = 0, end = cps.size();
    if (left) while (begin < end && strippable(cps[begin])) ++begin;
    if (right) while (end > begin && strippable(cps[end - 1])) --end;
    return utf8_encode(cps, begin, end);
  }

  // Python's split(sep=None, maxsplit=-1) (rsplit when from_right).
  static List split(const std::string& s, const Value* sep, std::int64_t maxsplit, bool from_right) {
    List out;
    if (!sep || sep->is_none()) {
      const auto cps = utf8_decode(s);
      std::vector<std::pair<std::size_t, std::size_t>> words;
      for (std::size_t i = 0; i < cps.size();) {
        while (i < cps.size() && py_isspace(cps[i])) ++i;
        if (i >= cps.size()) break;
        std::size_t j = i;
        while (j < cps.size() && !py_isspace(cps[j])) ++j;
        words.emplace_back(i, j);
        i = j;
      }
      if (maxsplit >= 0 && std::int64_t(words.size()) > maxsplit + 1) {
        if (from_right) {
          const std::size_t keep = words.size() - std::size_t(maxsplit);
          std::size_t begin = 0;
          while (begin < cps.size() && py_isspace(cps[begin])) ++begin;
          words[keep - 1] = {begin, words[keep - 1].second};
          words.erase(words.begin(), words.begin() + std::ptrdiff_t(keep - 1));
        } else {
          std::size_t end = cps.size();
          while (end > 0 && py_isspace(cps[end - 1])) --end;
          words[std::size_t(maxsplit)].second = end;
          words.resize(std::size_t(maxsplit) + 1);
        }
      }
      for (auto [b, e] : words) out.push_back(Value::from(utf8_encode(cps, b, e)));
      return out;
    }
    if (!sep->is_string()) throw std::invalid_argument("must be str or None");
    const std::string& d = sep->string;
    if (d.empty()) throw std::invalid_argument("empty separator");
    std::vector<std::string> parts;
    if (!from_right) {
      std::size_t start = 0;
      while (true) {
        const std::size_t at = s.find(d, start);
        if (at == std::string::npos || (maxsplit >= 0 && std::int64_t(parts.size()) >= maxsplit)) {
          parts.push_back(s.substr(start));
          break;
        }
        parts.push_back(s.substr(start, at - start));
        start = at + d.size();
      }
    } else {
      std::size_t end = s.size();
      while (true) {
        const std::size_t at = end >= d.size() ? s.rfind(d, end - d.size()) : std::string::npos;
        if (at == std::string::npos || (maxsplit >= 0 && std::int64_t(parts.size()) >= maxsplit)) {
          parts.push_back(s.substr(0, end));
          break;
        }
        parts.push_back(s.substr(at + d.size(), end - at - d.size()));
        end = at;
      }
      std::reverse(parts.begin(), parts.end());
    }
    for (auto& p : parts) out.push_back(Value::from(std::move(p)));
    return out;
  }

  static std::string ascii_case(std::string s, bool upper) {
    for (char& c : s) c = static_cast<char>(upper ? std::toupper(static_cast<unsigned char>(c)) : std::tolower(static_cast<unsigned char>(c)));
    return s;
  }
  // Python's str.capitalize / str.title (ASCII letters change case; others pass through).
  static std::string capitalize(const std::string& s) {
    std::string out = ascii_case(s, false);
    if (!out.empty()) out[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[0])));
    return out;
  }
  static std::string python_title(const std::string& s) {
    std::string out = s;
    bool previous_cased = false;
    for (char& c : out) {
      const auto u = static_cast<unsigned char>(c);
      const bool cased = std::isalpha(u);
      if (cased) c = static_cast<char>(previous_cased ? std::tolower(u) : std::toupper(u));
      previous_cased = cased || u >= 0x80;
    }
    return out;
  }

  static std::string replace(const std::string& s, const std::string& old, const std::string& with, std::int64_t count) {
    std::string out;
    if (old.empty()) {  // Python inserts `with` between every character
      const auto cps = utf8_decode(s);
      std::int64_t done = 0;
      for (std::size_t i = 0; i <= cps.size(); ++i) {
        if (count < 0 || done < count) { out += with; ++done; }
        if (i < cps.size()) utf8_append(out, cps[i]);
      }
      return out;
    }
    std::size_t start = 0;
    std::int64_t done = 0;
    while (count < 0 || done < count) {
      const std::size_t at = s.find(old, start);
      if (at == std::string::npos) break;
      out += s.substr(start, at - start) + with;
      start = at + old.size();
      ++done;
    }
    return out + s.substr(start);
  }

  // obj.name as a callable when `name` is a str / dict / list method; Undefined otherwise.
  Value bound_method(const Value& obj, const std::string& name, std::size_t pos) {
    (void)pos;
    if (obj.is_string()) {
      const std::string s = obj.string;
      static const std::set<std::string> names = {
          "strip", "lstrip", "rstrip", "startswith", "endswith", "split", "rsplit", "upper", "lower",
          "title", "capitalize", "replace", "find", "rfind", "count", "join", "isdigit", "isspace",
          "isalpha", "isalnum", "islower", "isupper", "splitlines", "removeprefix", "removesuffix"};
      if (!names.count(name)) return Value::undefined();
      return Value::from(Function([s, name](CallArgs& args) -> Value {
        if (name == "strip" || name == "lstrip" || name == "rstrip")
          return Value::from(strip(s, argument(args, 0, "chars"), name != "rstrip", name != "lstrip"));
        if (name == "startswith" || name == "endswith") {
          const Value* prefix = argument(args, 0, "prefix");
          if (!prefix) throw std::invalid_argument(str_cat(name, "() takes at least 1 argument (0 given)"));
          List options = prefix->is_list() ? *prefix->list : List{*prefix};
          for (const auto& option : options) {
            if (!option.is_string())
              throw std::invalid_argument(str_cat(name, " first arg must be str or a tuple of str, not ", type_name(option)));
            const auto& p = option.string;
            if (p.size() <= s.size() && (name == "startswith" ? s.compare(0, p.size(), p) == 0
                                                              : s.compare(s.size() - p.size(), p.size(), p) == 0))
              return Value::from(true);
          }
          return Value::from(false);
        }
        if (name == "split" || name == "rsplit") {
          const Value* max = argument(args, 1, "maxsplit");
          return Value::from(split(s, argument(args, 0, "sep"), max && max->is_integral() ? max->as_int() : -1, name == "rsplit"));
        }
        if (name == "upper" || name == "lower") return Value::from(ascii_case(s, name == "upper"));
        if (name == "title") return Value::from(python_title(s));
        if (name == "capitalize") return Value::from(capitalize(s));
        if (name == "replace") {
          const Value* count = argument(args, 2, "count");
          return Value::from(replace(s, string_argument(args, 0, "old", name), string_argument(args, 1, "new", name),
                                     count && count->is_integral() ? count->as_int() : -1));
        }
        if (name == "find" || name == "rfind") {
          const std::string sub = string_argument(args, 0, "sub", name);
          const std::size_t at = name == "find" ? s.find(sub) : s.rfind(sub);
          return Value::from(at == std::string::npos ? std::int64_t(-1) : std::int64_t(utf8_decode(s.substr(0, at)).size()));
        }
        if (name == "count") {
          const std::string sub = string_argument(args, 0, "sub", name);
          if (sub.empty()) return Value::from(std::int64_t(utf8_decode(s).size() + 1));
          std::int64_t n = 0;
          for (std::size_t at = s.find(sub); at != std::string::npos; at = s.find(sub, at + sub.size())) ++n;
          return Value::from(n);
        }
        if (name == "join") {
          const Value* items = argument(args, 0, "iterable");
          if (!items || !items->is_list()) throw std::invalid_argument("can only join a list");
          std::string out;
          for (std::size_t i = 0; i < items->list->size(); ++i) {
            const Value& item = (*items->list)[i];
            if (!item.is_string())
              throw std::invalid_argument(str_cat("sequence item ", i, ": expected str instance, ", type_name(item), " found"));
            out += (i ? s : "") + item.string;
          }
          return Value::from(std::move(out));
        }
        if (name == "removeprefix" || name == "removesuffix") {
          const std::string affix = string_argument(args, 0, "affix", name);
          if (name == "removeprefix" && s.compare(0, affix.size(), affix) == 0) return Value::from(s.substr(affix.size()));
          if (name == "removesuffix" && affix.size() <= s.size() && !affix.empty() &&
              s.compare(s.size() - affix.size(), affix.size(), affix) == 0)
            return Value::from(s.substr(0, s.size() - affix.size()));
          return Value::from(s);
        }
        if (name == "splitlines") {
          List lines;
          std::size_t start = 0;
          for (std::size_t i = 0; i < s.size(); ++i) {
            if (s[i] != '\n' && s[i] != '\r') continue;
            lines.push_back(Value::from(s.substr(start, i - start)));
            if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
            start = i + 1;
          }
          if (start < s.size()) lines.push_back(Value::from(s.substr(start)));
          return Value::from(std::move(lines));
        }
        // is* predicates (ASCII classes)
        if (s.empty()) return Value::from(false);
        const auto all = [&](auto pred) { return std::all_of(s.begin(), s.end(), [&](char c) { return pred(static_cast<unsigned char>(c)); }); };
        if (name == "isdigit") return Value::from(all([](unsigned char c) { return std::isdigit(c) != 0; }));
        if (name == "isspace") return Value::from(all([](unsigned char c) { return std::isspace(c) != 0; }));
        if (name == "isalpha") return Value::from(all([](unsigned char c) { return std::isalpha(c) != 0; }));
        if (name == "isalnum") return Value::from(all([](unsigned char c) { return std::isalnum(c) != 0; }));
        const bool has_cased = std::any_of(s.begin(), s.end(), [](char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; });
        if (name == "islower") return Value::from(has_cased && all([](unsigned char c) { return !std::isupper(c); }));
        return Value::from(has_cased && all([](unsigned char c) { return !std::islower(c); }));
      }));
    }
    if (obj.is_dict()) {
      if (name != "items" && name != "keys" && name != "values" && name != "get") {
        static const std::set<std::string> unsafe = {"pop", "popitem", "update", "setdefault", "clear"};
        if (unsafe.count(name) && !obj.find(name))
          return Value::from(Function([name](CallArgs&) -> Value {
            throw std::invalid_argument(str_cat("access to attribute '", name, "' of 'dict' object is unsafe (the sandbox is immutable)"));
          }));
        return Value::undefined();
      }
      const Value self = obj;
      return Value::from(Function([self, name](CallArgs& args) -> Value {
        if (name == "get") {
          const Value* key = argument(args, 0, "key");
          const Value* fallback = argument(args, 1, "default");
          if (key && key->is_string())
            if (const Value* v = self.find(key->string)) return *v;
          return fallback ? *fallback : Value::none();
        }
        List out;
        for (const auto& [key, v] : *self.dict) {
          if (name == "keys") out.push_back(Value::from(key));
          else if (name == "values") out.push_back(v);
          else out.push_back(Value::from(List{Value::from(key), v}, /*tuple=*/true));
        }
        return Value::from(std::move(out));
      }));
    }
    if (obj.is_list()) {
      static const std::set<std::string> unsafe = {"append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse"};
      if (unsafe.count(name))
        return Value::from(Function([name](CallArgs&) -> Value {
          throw std::invalid_argument(str_cat("access to attribute '", name, "' of 'list' object is unsafe (the sandbox is immutable)"));
        }));
      if (name == "index" || name == "count") {
        const Value self = obj;
        return Value::from(Function([self, name](CallArgs& args) -> Value {
          const Value* x = argument(args, 0, "value");
          if (!x) throw std::invalid_argument(str_cat(name, "() takes exactly one argument"));
          std::int64_t n = 0;
          for (std::size_t i = 0; i < self.list->size(); ++i) {
            if (!equal((*self.list)[i], *x)) continue;
            if (name == "index") return Value::from(std::int64_t(i));
            ++n;
          }
          if (name == "index") throw std::invalid_argument(str_cat(python_repr(*x), " is not in list"));
          return Value::from(n);
        }));
      }
    }
    return Value::undefined();
  }

  // --------------------------------------------------------------------------------- filters
  Value apply_filter(const Expr& e) {
    const Value value = eval(*e.args[0]);
    CallArgs args = eval_args(e);
    try {
      return run_filter(e.name, value, args, e.pos);
    } catch (const std::invalid_argument& error) {
      fail(e.pos, str_cat("filter '", e.name, "': ", error.what()));
    }
  }

  static std::string sort_key_string(const Value& v, bool case_sensitive) {
    return case_sensitive || !v.is_string() ? v.string : ascii_case(v.string, false);
  }

  // x.a.b for filters' attribute= arguments ("a.0" indexes lists).
  Value attribute_path(const Value& item, const std::string& path, std::size_t pos) {
    Value v = item;
    std::size_t start = 0;
    while (start <= path.size()) {
      const std::size_t dot = path.find('.', start);
      const std::string part = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      if (v.is_undefined()) return v;
      const bool numeric = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
      if (numeric && part.size() > 18) return Value::undefined("list index out of range");  // beyond any list
      v = numeric ? get_item(v, Value::from(std::int64_t(std::stoll(part))), pos) : get_item(v, Value::from(part), pos);
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    return v;
  }

  List sorted(List items, bool reverse, bool case_sensitive, const Value* attribute, std::size_t pos) {
    std::vector<std::pair<Value, Value>> keyed;
    for (auto& item : items) {
      Value key = attribute && attribute->is_string() ? attribute_path(item, attribute->string, pos) : item;
      if (key.is_string() && !case_sensitive) key.string = ascii_case(key.string, false);
      keyed.emplace_back(std::move(key), std::move(item));
    }
    std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
      return reverse ? order(b.first, a.first, "<", pos) < 0 : order(a.first, b.first, "<", pos) < 0;
    });
    List out;
    for (auto& [key, item] : keyed) out.push_back(std::move(item));
    return out;
  }

  static bool flag(CallArgs& args, std::size_t index, std::string_view name, bool fallback) {
    const Value* v = argument(args, index, name);
    return v ? truthy(*v) : fallback;
  }

  Value run_filter(const std::string& name, const Value& value, CallArgs& args, std::size_t pos) {
    const auto need_string = [&]() -> std::string {
      if (value.is_undefined()) return "";
      return python_str(value);
    };
    if (name == "safe" || name == "string") return Value::from(need_string());
    if (name == "trim") return Value::from(strip(need_string(), argument(args, 0, "chars"), true, true));
    if (name == "upper" || name == "lower") return Value::from(ascii_case(need_string(), name == "upper"));
    if (name == "capitalize") return Value::from(capitalize(need_string()));
    if (name == "title") {  // jinja2: a word starts after whitespace, '-', or an opening bracket
      std::string out = need_string();
      bool start = true;
      for (char& c : out) {
        const auto u = static_cast<unsigned char>(c);
        c = static_cast<char>(start ? std::toupper(u) : std::tolower(u));
        start = std::isspace(u) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
      }
      return Value::from(std::move(out));
    }
    if (name == "e" || name == "escape") {
      std::string out;
      for (char c : need_string()) {
        switch (c) {
          case '&': out += "&amp;"; break;
          case '<': out += "&lt;"; break;
          case '>': out += "&gt;"; break;
          case '"': out += "&#34;"; break;
          case '\'': out += "&#39;"; break;
          default: out += c;
        }
      }
      return Value::from(std::move(out));
    }
    if (name == "length" || name == "count") return Value::from(length_of(value));
    if (name == "tojson") {
      JsonDumpOptions options;
      if (const Value* indent = argument(args, 0, "indent"); indent && !indent->is_none()) {
        if (indent->is_integral()) options.indent = spaces(indent->as_int());
        else if (indent->is_string()) options.indent = indent->string;
        else throw std::invalid_argument("indent must be an int or a string");
        options.item_separator = ",";
      }
      if (const Value* separators = argument(args, 1, "separators"); separators && separators->is_list()) {
        if (separators->list->size() != 2) throw std::invalid_argument("separators must be a pair");
        options.item_separator = (*separators->list)[0].string;
        options.key_separator = (*separators->list)[1].string;
      }
      options.sort_keys = flag(args, 2, "sort_keys", false);
      std::string out;
      json_dump(out, value, options, 0);
      return Value::from(std::move(out));
    }
    if (name == "join") {
      const std::string separator = argument(args, 0, "d") ? python_str(*argument(args, 0, "d")) : "";
      const Value* attribute = argument(args, 1, "attribute");
      std::string out;
      bool first = true;
      for (const auto& item : iterate(value, pos)) {
        out += (first ? "" : separator) + python_str(attribute ? attribute_path(item, python_str(*attribute), pos) : item);
        first = false;
      }
      return Value::from(std::move(out));
    }
    if (name == "first" || name == "last") {
      const List items = iterate(value, pos);
      if (items.empty()) return Value::undefined(str_cat("no ", name, " item, sequence was empty"));
      return name == "first" ? items.front() : items.back();
    }
    if (name == "default" || name == "d") {
      const Value* fallback = argument(args, 0, "default_value");
      const bool boolean = flag(args, 1, "boolean", false);
      if (value.is_undefined() || (boolean && !truthy(value))) return fallback ? *fallback : Value::from(std::string());
      return value;
    }
    if (name == "items") {
      if (value.is_undefined()) return Value::from(List{});
      if (!value.is_dict()) throw std::invalid_argument(str_cat("can only get item pairs from a mapping, not ", type_name(value)));
      List out;
      for (const auto& [key, v] : *value.dict) out.push_back(Value::from(List{Value::from(key), v}, true));
      return Value::from(std::move(out));
    }
    if (name == "dictsort") {
      if (!value.is_dict()) throw std::invalid_argument("dictsort needs a mapping");
      const bool case_sensitive = flag(args, 0, "case_sensitive", false);
      const Value* by = argument(args, 1, "by");
      const bool by_value = by && by->is_string() && by->string == "value";
      const bool reverse = flag(args, 2, "reverse", false);
      List pairs;
      for (const auto& [key, v] : *value.dict) pairs.push_back(Value::from(List{Value::from(key), v}, true));
      const Value index = Value::from(std::string(by_value ? "1" : "0"));
      return Value::from(sorted(std::move(pairs), reverse, case_sensitive, &index, pos));
    }
    if (name == "list") return Value::from(iterate(value, pos));
    if (name == "reverse") {
      if (value.is_string()) {
        auto cps = utf8_decode(value.string);
        std::reverse(cps.begin(), cps.end());
        return Value::from(utf8_encode(cps));
      }
      List items = iterate(value, pos);
      std::reverse(items.begin(), items.end());
      return Value::from(std::move(items));
    }
    if (name == "sort") {
      return Value::from(sorted(iterate(value, pos), flag(args, 0, "reverse", false), flag(args, 1, "case_sensitive", false),
                                argument(args, 2, "attribute"), pos));
    }
    if (name == "unique") {
      const bool case_sensitive = flag(args, 0, "case_sensitive", false);
      const Value* attribute = argument(args, 1, "attribute");
      List out, seen;
      for (const auto& item : iterate(value, pos)) {
        Value key = attribute && attribute->is_string() ? attribute_path(item, attribute->string, pos) : item;
        if (key.is_string() && !case_sensitive) key.string = ascii_case(key.string, false);
        if (std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return equal(s, key); })) continue;
        seen.push_back(key);
        out.push_back(item);
      }
      return Value::from(std::move(out));
    }
    if (name == "min" || name == "max") {
      const List items = sorted(iterate(value, pos), name == "max", flag(args, 0, "case_sensitive", false),
                                argument(args, 1, "attribute"), pos);
      if (items.empty()) return Value::undefined(str_cat("no ", name, " item, sequence was empty"));
      return items.front();
    }
    if (name == "sum") {
      const Value* attribute = argument(args, 0, "attribute");
      Value total = argument(args, 1, "start") ? *argument(args, 1, "start") : Value::from(std::int64_t(0));
      for (const auto& item : iterate(value, pos))
        total = binary("+", total, attribute ? attribute_path(item, python_str(*attribute), pos) : item, pos);
      return total;
    }
    if (name == "int") {
      const Value fallback = argument(args, 0, "default") ? *argument(args, 0, "default") : Value::from(std::int64_t(0));
      if (value.is_integral()) return Value::from(value.as_int());
      if (value.kind == Value::Kind::floating) return float_to_int(value.floating, fallback);
      if (value.is_string()) {
        const std::string text = strip(value.string, nullptr, true, true);
        std::size_t used = 0;
        try {
          const std::int64_t i = std::stoll(text, &used);
          if (used == text.size()) return Value::from(i);
        } catch (const std::out_of_range&) {
          throw std::invalid_argument(str_cat("int('", text, "') does not fit in 64 bits"));
        } catch (const std::invalid_argument&) {}
        double f = 0;
        try {
          f = std::stod(text, &used);
        } catch (const std::exception&) {
          used = 0;
        }
        if (used > 0 && used == text.size()) return float_to_int(f, fallback);
      }
      return fallback;
    }
    if (name == "float") {
      const Value fallback = argument(args, 0, "default") ? *argument(args, 0, "default") : Value::from(0.0);
      if (value.is_number()) return Value::from(value.as_double());
      if (value.is_string()) {
        const std::string text = strip(value.string, nullptr, true, true);
        try {
          std::size_t used = 0;
          const double f = std::stod(text, &used);
          if (used == text.size()) return Value::from(f);
        } catch (const std::exception&) {}
      }
      return fallback;
    }
    if (name == "abs") {
      if (!value.is_number()) throw std::invalid_argument(str_cat("bad operand type for abs(): '", type_name(value), "'"));
      if (value.kind == Value::Kind::floating) return Value::from(std::fabs(value.floating));
      if (value.as_int() == std::numeric_limits<std::int64_t>::min())
        throw std::invalid_argument("integer result of abs() does not fit in 64 bits");
      return Value::from(static_cast<std::int64_t>(std::llabs(value.as_int())));
    }
    if (name == "round") {
      if (!value.is_number()) throw std::invalid_argument("round needs a number");
      const Value* p = argument(args, 0, "precision");
      const int precision = p && p->is_integral() ? int(p->as_int()) : 0;
      const Value* m = argument(args, 1, "method");
      const std::string method = m && m->is_string() ? m->string : "common";
      const double x = value.as_double(), scale = std::pow(10.0, precision);
      if (method == "floor") return Value::from(std::floor(x * scale) / scale);
      if (method == "ceil") return Value::from(std::ceil(x * scale) / scale);
      if (method != "common") throw std::invalid_argument("method must be common, ceil or floor");
      char buffer[512];  // Python's round(x, n): correctly rounded, half to even
      std::snprintf(buffer, sizeof buffer, "%.*f", std::clamp(precision, 0, 300), x);
      return Value::from(std::strtod(buffer, nullptr));
    }
    if (name == "replace") {
      const Value* count = argument(args, 2, "count");
      return Value::from(replace(need_string(), python_str(*argument(args, 0, "old")), python_str(*argument(args, 1, "new")),
                                 count && count->is_integral() ? count->as_int() : -1));
    }
    if (name == "indent") {
      const Value* width = argument(args, 0, "width");
      const std::string pad = !width ? "    " : width->is_string() ? width->string : spaces(width->as_int());
      const bool first = flag(args, 1, "first", false), blank = flag(args, 2, "blank", false);
      const std::string text = need_string();
      std::string out;
      std::size_t start = 0;
      bool is_first = true;
      while (start <= text.size()) {
        const std::size_t nl = text.find('\n', start);
        const std::string line = text.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
        if ((is_first ? first : true) && (blank || !line.empty()) ) out += pad;
        out += line;
        if (nl == std::string::npos) break;
        out += '\n';
        start = nl + 1;
        is_first = false;
      }
      return Value::from(std::move(out));
    }
    if (name == "map") {
      List out;
      if (const Value* attribute = argument(args, 99, "attribute")) {
        const Value* fallback = argument(args, 99, "default");
        for (const auto& item : iterate(value, pos)) {
          Value v = attribute_path(item, python_str(*attribute), pos);
          out.push_back(v.is_undefined() && fallback ? *fallback : v);
        }
        return Value::from(std::move(out));
      }
      if (args.positional.empty() || !args.positional[0].is_string()) throw std::invalid_argument("map needs a filter name or attribute=");
      const std::string filter = args.positional[0].string;
      CallArgs rest{{args.positional.begin() + 1, args.positional.end()}, {}};
      for (const auto& item : iterate(value, pos)) {
        CallArgs copy = rest;
        out.push_back(run_filter(filter, item, copy, pos));
      }
      return Value::from(std::move(out));
    }
    if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
      const bool by_attribute = name.ends_with("attr");
      const bool keep_if = name.starts_with("select");
      std::size_t next_arg = 0;
      std::string attribute;
      if (by_attribute) {
        if (args.positional.empty()) throw std::invalid_argument(str_cat(name, " needs an attribute name"));
        attribute = python_str(args.positional[next_arg++]);
      }
      std::string test;
      if (next_arg < args.positional.size()) test = python_str(args.positional[next_arg++]);
      List test_args(args.positional.begin() + std::ptrdiff_t(std::min(next_arg, args.positional.size())), args.positional.end());
      List out;
      for (const auto& item : iterate(value, pos)) {
        const Value subject = by_attribute ? attribute_path(item, attribute, pos) : item;
        const bool passed = test.empty() ? truthy(subject) : run_test(test, subject, test_args, pos);
        if (passed == keep_if) out.push_back(item);
      }
      return Value::from(std::move(out));
    }
    fail(pos, str_cat("unsupported filter '", name, "'"));
  }

  // ----------------------------------------------------------------------------------- tests
  bool apply_test(const Expr& e) {
    const Value value = eval(*e.args[0]);
    List args;
    for (std::size_t i = 1; i < e.args.size(); ++i) args.push_back(eval(*e.args[i]));
    return run_test(e.name, value, args, e.pos);
  }

  bool run_test(const std::string& name, const Value& v, const List& args, std::size_t pos) {
    const auto arg = [&]() -> const Value& {
      if (args.empty()) fail(pos, str_cat("test '", name, "' needs an argument"));
      return args[0];
    };
    using K = Value::Kind;
    if (name == "defined") return !v.is_undefined();
    if (name == "undefined") return v.is_undefined();
    if (name == "none") return v.is_none();
    if (name == "boolean") return v.kind == K::boolean;
    if (name == "true") return v.kind == K::boolean && v.boolean;
    if (name == "false") return v.kind == K::boolean && !v.boolean;
    if (name == "integer") return v.kind == K::integer;
    if (name == "float") return v.kind == K::floating;
    if (name == "number") return v.is_number();
    if (name == "string") return v.is_string();
    if (name == "mapping") return v.is_dict();
    if (name == "sequence") return v.is_string() || v.is_list() || v.is_dict();
    if (name == "iterable") return v.is_string() || v.is_list() || v.is_dict();
    if (name == "callable") return v.kind == K::function;
    if (name == "lower") return v.is_string() && ascii_case(v.string, false) == v.string;
    if (name == "upper") return v.is_string() && ascii_case(v.string, true) == v.string;
    if (name == "odd" || name == "even" || name == "divisibleby") {
      if (!v.is_integral()) fail(pos, str_cat("test '", name, "' needs an integer, got '", type_name(v), "'"));
      if (name == "divisibleby") {
        const Value& d = arg();
        if (!d.is_integral() || d.as_int() == 0) fail(pos, "divisibleby needs a non-zero integer");
        return d.as_int() == -1 || v.as_int() % d.as_int() == 0;  // (min % -1 overflows)
      }
      return ((v.as_int() & 1) == 1) == (name == "odd");
    }
    if (name == "eq" || name == "equalto" || name == "==") return equal(v, arg());
    if (name == "ne" || name == "!=") return !equal(v, arg());
    if (name == "lt" || name == "lessthan" || name == "<") return order(v, arg(), "<", pos) < 0;
    if (name == "le" || name == "<=") return order(v, arg(), "<=", pos) <= 0;
    if (name == "gt" || name == "greaterthan" || name == ">") return order(v, arg(), ">", pos) > 0;
    if (name == "ge" || name == ">=") return order(v, arg(), ">=", pos) >= 0;
    if (name == "in") return contains(arg(), v, pos);
    if (name == "sameas") {
      const Value& other = arg();
      if (v.kind != other.kind) return false;
      if (v.is_list()) return v.list == other.list;
      if (v.is_dict() || v.kind == K::ns) return v.dict == other.dict;
      return equal(v, other);
    }
    fail(pos, str_cat("unsupported test '", name, "'"));
  }
};

}  // namespace fourierft::io::jinja
