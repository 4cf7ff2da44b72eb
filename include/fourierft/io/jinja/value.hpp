// fourierft/io/jinja/value.hpp — the values a chat template computes with (Python's None, bool, int,
// float, str, list, dict, jinja2's Undefined and namespace) and how Python prints and json-dumps them.
#pragma once

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/io/json.hpp"

namespace fourierft::io {

// Thrown for a template that cannot be parsed or uses an unsupported construct; what() names the
// origin and position: "tokenizer_config.json: chat_template:3:14: unsupported filter 'wordwrap'".
struct TemplateError : FormatError {
  using FormatError::FormatError;
};
// Thrown when the template calls raise_exception('...'); what() = "<origin>: " + the message.
struct TemplateRaisedError : TemplateError {
  using TemplateError::TemplateError;
};

namespace jinja {

struct Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;  // keys in insertion order, as Python's dict

// Positional and keyword arguments of a call: f(1, x=2).
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};
using Function = std::function<Value(CallArgs&)>;

// One dynamically typed template value. Lists, dicts and namespaces are shared like Python objects.
struct Value {
  enum class Kind { undefined, none, boolean, integer, floating, string, list, dict, ns, function };
  Kind kind = Kind::undefined;
  bool boolean = false;
  std::int64_t integer = 0;
  double floating = 0.0;
  std::string string;                // also: what an undefined value stands for ("'x' is undefined")
  std::shared_ptr<List> list;        // list (tuple when is_tuple)
  std::shared_ptr<Dict> dict;        // dict or namespace attributes
  std::shared_ptr<Function> function;
  bool is_tuple = false;

  static Value undefined(std::string hint = {}) { Value v; v.string = std::move(hint); return v; }
  static Value none() { Value v; v.kind = Kind::none; return v; }
  static Value from(bool b) { Value v; v.kind = Kind::boolean; v.boolean = b; return v; }
  static Value from(std::int64_t i) { Value v; v.kind = Kind::integer; v.integer = i; return v; }
  static Value from(double f) { Value v; v.kind = Kind::floating; v.floating = f; return v; }
  static Value from(std::string s) { Value v; v.kind = Kind::string; v.string = std::move(s); return v; }
  static Value from(List items, bool tuple = false) {
    Value v; v.kind = Kind::list; v.list = std::make_shared<List>(std::move(items)); v.is_tuple = tuple;
    return v;
  }
  static Value from(Dict items) {
    Value v; v.kind = Kind::dict; v.dict = std::make_shared<Dict>(std::move(items)); return v;
  }
  static Value namespace_of(Dict items) { Value v = from(std::move(items)); v.kind = Kind::ns; return v; }
  static Value from(Function f) {
    Value v; v.kind = Kind::function; v.function = std::make_shared<Function>(std::move(f)); return v;
  }

  bool is_undefined() const { return kind == Kind::undefined; }
  bool is_none() const { return kind == Kind::none; }
  bool is_string() const { return kind == Kind::string; }
  bool is_list() const { return kind == Kind::list; }
  bool is_dict() const { return kind == Kind::dict; }
  // Python's numbers: bool counts as int (True + 1 == 2).
  bool is_integral() const { return kind == Kind::integer || kind == Kind::boolean; }
  bool is_number() const { return is_integral() || kind == Kind::floating; }
  std::int64_t as_int() const { return kind == Kind::boolean ? boolean : integer; }
  double as_double() const { return kind == Kind::floating ? floating : double(as_int()); }

  // A dict or namespace member; nullptr when absent.
  const Value* find(std::string_view key) const {
    if (!dict) return nullptr;
    for (const auto& [k, v] : *dict) if (k == key) return &v;
    return nullptr;
  }
};

// Python's type names, for error messages ("unsupported operand type(s) for +: 'int' and 'str'").
inline std::string_view type_name(const Value& v) {
  switch (v.kind) {
    case Value::Kind::undefined: return "Undefined";
    case Value::Kind::none: return "NoneType";
    case Value::Kind::boolean: return "bool";
    case Value::Kind::integer: return "int";
    case Value::Kind::floating: return "float";
    case Value::Kind::string: return "str";
    case Value::Kind::list: return v.is_tuple ? "tuple" : "list";
    case Value::Kind::dict: return "dict";
    case Value::Kind::ns: return "Namespace";
    case Value::Kind::function: return "function";
  }
  return "?";
}

// Python truthiness; Undefined is false.
inline bool truthy(const Value& v) {
  switch (v.kind) {
    case Value::Kind::undefined: case Value::Kind::none: return false;
    case Value::Kind::boolean: return v.boolean;
    case Value::Kind::integer: return v.integer != 0;
    case Value::Kind::floating: return v.floating != 0.0;
    case Value::Kind::string: return !v.string.empty();
    case Value::Kind::list: return !v.list->empty();
    case Value::Kind::dict: return !v.dict->empty();
    default: return true;
  }
}

// ---------------------------------------------------------------------------------------------
// UTF-8: Python strings index code points, so length, slicing and strip work on those.
inline std::vector<char32_t> utf8_decode(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const int extra = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
    if (extra == 0) { out.push_back(c); ++i; continue; }
    if (extra < 0 || i + extra >= s.size()) {  // an invalid byte survives as a lone surrogate
      out.push_back(0xDC00 + c);
      ++i;
      continue;
    }
    char32_t cp = c & (0x3F >> extra);
    bool ok = true;
    for (int k = 1; k <= extra; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) { ok = false; break; }
      cp = (cp << 6) | (d & 0x3F);
    }
    if (!ok) { out.push_back(0xDC00 + c); ++i; continue; }
    out.push_back(cp);
    i += extra + 1;
  }
  return out;
}

inline void utf8_append(std::string& out, char32_t cp) {
  if (cp >= 0xDC80 && cp <= 0xDCFF) { out.push_back(static_cast<char>(cp - 0xDC00)); return; }
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

inline std::string utf8_encode(const std::vector<char32_t>& cps, std::size_t begin = 0,
                               std::size_t end = std::string::npos) {
  std::string out;
  end = std::min(end, cps.size());
  for (std::size_t i = begin; i < end; ++i) utf8_append(out, cps[i]);
  return out;
}

// Python's str.isspace(): Unicode White_Space plus the separators \x1c-\x1f.
inline bool py_isspace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

// ---------------------------------------------------------------------------------------------
// Python's repr(float): the shortest round-trip digits, fixed notation for 1e-4 <= |x| < 1e16
// ("0.1", "1.0", "123456.0"), else scientific with a signed two-digit exponent ("1e-05", "1e+16").
inline std::string python_float_repr(double x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, x, std::chars_format::scientific);
  std::string sci(buffer, result.ptr);  // "-1.2345e+02"
  const std::size_t e = sci.find('e');
  const int exponent = std::stoi(sci.substr(e + 1));
  if (exponent < -4 || exponent >= 16) return sci;
  std::string mantissa = sci.substr(0, e), sign;
  if (mantissa[0] == '-') { sign = "-"; mantissa.erase(0, 1); }
  std::string digits;
  for (char c : mantissa) if (c != '.') digits.push_back(c);
  std::string fixed;
  if (exponent < 0) {
    fixed = "0." + std::string(static_cast<std::size_t>(-exponent - 1), '0') + digits;
  } else if (static_cast<int>(digits.size()) <= exponent + 1) {
    fixed = digits + std::string(static_cast<std::size_t>(exponent + 1 - int(digits.size())), '0') + ".0";
  } else {
    fixed = digits.substr(0, static_cast<std::size_t>(exponent + 1)) + "." +
            digits.substr(static_cast<std::size_t>(exponent + 1));
  }
  return sign + fixed;
}

// Python's repr(str): single quotes unless the text holds ' and no ", escapes for \ and controls.
inline std::string python_string_repr(const std::string& s) {
  const bool has_single = s.find('\'') != std::string::npos;
  const bool has_double = s.find('"') != std::string::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  for (char32_t c : utf8_decode(s)) {
    if (c == '\\') out += "\\\\";
    else if (c == static_cast<char32_t>(quote)) { out += '\\'; out += quote; }
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7F || (c >= 0x80 && c < 0xA0) || (c >= 0xDC80 && c <= 0xDCFF)) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", static_cast<unsigned>(c >= 0xDC80 ? c - 0xDC00 : c));
      out += hex;
    } else {
      utf8_append(out, c);
    }
  }
  out += quote;
  return out;
}

inline std::string python_repr(const Value& v);

// Printing a list or dict walks every element, and one template line can make a list of 100,000
// message dicts: while a Renderer renders, each element printed costs one of its evaluation steps
// (io::InputLimits::template_max_steps). Running out throws StepsExhausted, which the Renderer turns
// into its step-cap error. Null outside a render: unbounded.
struct StepsExhausted {};
inline thread_local std::int64_t* repr_steps_left = nullptr;
inline void charge_repr_step() {
  if (repr_steps_left != nullptr && --*repr_steps_left < 0) throw StepsExhausted{};
}

// Python's str(): what {{ value }} prints. Undefined prints nothing, None "None", True "True".
inline std::string python_str(const Value& v) {
  switch (v.kind) {
    case Value::Kind::undefined: return "";
    case Value::Kind::string: return v.string;
    default: return python_repr(v);
  }
}

inline std::string python_repr(const Value& v) {
  switch (v.kind) {
    case Value::Kind::undefined: return "";
    case Value::Kind::none: return "None";
    case Value::Kind::boolean: return v.boolean ? "True" : "False";
    case Value::Kind::integer: return std::to_string(v.integer);
    case Value::Kind::floating: return python_float_repr(v.floating);
    case Value::Kind::string: return python_string_repr(v.string);
    case Value::Kind::list: {
      std::string out = v.is_tuple ? "(" : "[";
      for (std::size_t i = 0; i < v.list->size(); ++i) {
        charge_repr_step();
        out += (i ? ", " : "") + python_repr((*v.list)[i]);
      }
      if (v.is_tuple && v.list->size() == 1) out += ",";
      return out + (v.is_tuple ? ")" : "]");
    }
    case Value::Kind::dict: case Value::Kind::ns: {
      std::string out = v.kind == Value::Kind::ns ? "<Namespace {" : "{";
      for (std::size_t i = 0; i < v.dict->size(); ++i) {
        charge_repr_step();
        out += (i ? ", " : "") + python_string_repr((*v.dict)[i].first) + ": " +
               python_repr((*v.dict)[i].second);
      }
      return out + (v.kind == Value::Kind::ns ? "}>" : "}");
    }
    case Value::Kind::function: return "<function>";
  }
  return "";
}

// ---------------------------------------------------------------------------------------------
// Python's json.dumps(value, ensure_ascii=False, indent, separators, sort_keys), the tojson that
// transformers installs. Throws std::invalid_argument naming the unserialisable type.
struct JsonDumpOptions {
  std::optional<std::string> indent;  // None: one line
  std::string item_separator = ", ", key_separator = ": ";
  bool sort_keys = false;
};

inline void json_dump_string(std::string& out, const std::string& s) {
  out += '"';
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (u < 0x20) {
          char hex[8];
          std::snprintf(hex, sizeof hex, "\\u%04x", u);
          out += hex;
        } else {
          out += c;
        }
    }
  }
  out += '"';
}

inline void json_dump(std::string& out, const Value& v, const JsonDumpOptions& options, int level) {
  const auto newline = [&](int depth) {
    out += '\n';
    for (int i = 0; i < depth; ++i) out += *options.indent;
  };
  switch (v.kind) {
    case Value::Kind::none: out += "null"; return;
    case Value::Kind::boolean: out += v.boolean ? "true" : "false"; return;
    case Value::Kind::integer: out += std::to_string(v.integer); return;
    case Value::Kind::floating:
      if (std::isnan(v.floating)) out += "NaN";
      else if (std::isinf(v.floating)) out += v.floating > 0 ? "Infinity" : "-Infinity";
      else out += python_float_repr(v.floating);
      return;
    case Value::Kind::string: json_dump_string(out, v.string); return;
    case Value::Kind::list: {
      if (v.list->empty()) { out += "[]"; return; }
      out += '[';
      for (std::size_t i = 0; i < v.list->size(); ++i) {
        if (i) out += options.item_separator;
        if (options.indent) newline(level + 1);
        json_dump(out, (*v.list)[i], options, level + 1);
      }
      if (options.indent) newline(level);
      out += ']';
      return;
    }
    case Value::Kind::dict: {
      if (v.dict->empty()) { out += "{}"; return; }
      std::vector<const std::pair<std::string, Value>*> items;
      for (const auto& item : *v.dict) items.push_back(&item);
      if (options.sort_keys)
        std::stable_sort(items.begin(), items.end(), [](auto* a, auto* b) { return a->first < b->first; });
      out += '{';
      for (std::size_t i = 0; i < items.size(); ++i) {
        if (i) out += options.item_separator;
        if (options.indent) newline(level + 1);
        json_dump_string(out, items[i]->first);
        out += options.key_separator;
        json_dump(out, items[i]->second, options, level + 1);
      }
      if (options.indent) newline(level);
      out += '}';
      return;
    }
    default:
      throw std::invalid_argument(str_cat("Object of type ", type_name(v), " is not JSON serializable"));
  }
}

// A JSON document as template values (objects keep the Json's key order).
inline Value from_json(const Json& json) {
  switch (json.type()) {
    case Json::value_t::null: return Value::none();
    case Json::value_t::boolean: return Value::from(json.get<bool>());
    case Json::value_t::number_integer: return Value::from(json.get<std::int64_t>());
    case Json::value_t::number_unsigned: return Value::from(static_cast<std::int64_t>(json.get<std::uint64_t>()));
    case Json::value_t::number_float: return Value::from(json.get<double>());
    case Json::value_t::string: return Value::from(json.get<std::string>());
    case Json::value_t::array: {
      List items;
      for (const auto& item : json) items.push_back(from_json(item));
      return Value::from(std::move(items));
    }
    case Json::value_t::object: {
      Dict items;
      for (const auto& [key, item] : json.items()) items.emplace_back(key, from_json(item));
      return Value::from(std::move(items));
    }
    default: return Value::none();
  }
}

}  // namespace jinja
}  // namespace fourierft::io
