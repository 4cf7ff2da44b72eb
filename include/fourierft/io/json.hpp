// fourierft/io/json.hpp — JSON files (config.json, adapter_config.json, tokenizer files) through
// nlohmann_json: reading with errors that name the file, typed field getters, atomic pretty writes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "fourierft/core/error.hpp"
#include "fourierft/io/limits.hpp"
#include "fourierft/util/atomic_file.hpp"

namespace fourierft::io {

using Json = nlohmann::json;  // objects keep their keys sorted, as HF's save_pretrained writes them

// Rejects nesting deeper than `max_depth` levels of [ and { before any parser sees the text (a
// deep document would overflow the stack of recursive copies, dumps and destructors). One pass,
// strings skipped. FormatError "<source>: JSON nested deeper than N levels at byte B ...".
inline void check_json_depth(std::string_view text, const std::string& source,
                             std::int64_t max_depth = input_limits().json_max_depth) {
  std::int64_t depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth)
        throw FormatError(str_cat(source, ": JSON nested deeper than ", max_depth,
                                  " levels at byte ", i,
                                  " (the limit is FOURIERFT_JSON_MAX_DEPTH)"));
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
}

// At most `max_chars` characters of `value` as compact JSON, "..." when cut: error messages quote
// a value this way, never a whole document. Stops as soon as the budget is spent.
inline std::string json_excerpt(const Json& value, std::size_t max_chars = 40) {
  std::string out;
  auto emit = [&](auto&& self, const Json& v) -> void {
    if (out.size() > max_chars) return;
    if (v.is_object()) {
      out += '{';
      bool first = true;
      for (auto it = v.begin(); it != v.end() && out.size() <= max_chars; ++it) {
        if (!first) out += ',';
        first = false;
        out += Json(it.key()).dump(-1, ' ', true, Json::error_handler_t::replace) + ':';
        self(self, it.value());
      }
      out += '}';
    } else if (v.is_array()) {
      out += '[';
      bool first = true;
      for (auto it = v.begin(); it != v.end() && out.size() <= max_chars; ++it) {
        if (!first) out += ',';
        first = false;
        self(self, *it);
      }
      out += ']';
    } else {
      out += v.dump(-1, ' ', true, Json::error_handler_t::replace);
    }
  };
  emit(emit, value);
  if (out.size() > max_chars) out = out.substr(0, max_chars - 3) + "...";
  return out;
}

// Parses `text`; a syntax error is a FormatError "<source>: invalid JSON at byte N: <reason>".
// Nesting beyond input_limits().json_max_depth is a FormatError too (check_json_depth).
inline Json parse_json(std::string_view text, const std::string& source) {
  check_json_depth(text, source);
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const Json::parse_error& e) {
    std::string reason = e.what();  // "[json.exception.parse_error.101] parse error at ..."
    if (const auto pos = reason.find("] "); pos != std::string::npos)
      reason = reason.substr(pos + 2);
    throw FormatError(str_cat(source, ": invalid JSON at byte ", e.byte, ": ", reason));
  } catch (const Json::exception& e) {  // out_of_range.406: a number like 1e400 overflows
    std::string reason = e.what();
    if (const auto pos = reason.find("] "); pos != std::string::npos)
      reason = reason.substr(pos + 2);
    throw FormatError(str_cat(source, ": invalid JSON: ", reason));
  }
}

// Reads and parses a whole file. IoError if it cannot be read, FormatError if it is not JSON.
inline Json read_json(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IoError(str_cat("cannot open '", path.string(), "' for reading"));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw IoError(str_cat("cannot read '", path.string(), "'"));
  return parse_json(text.str(), path.string());
}

// Writes `json` atomically, pretty-printed with a 2-space indent and sorted keys (like
// Hugging Face's `json.dumps(..., indent=2, sort_keys=True)`), non-ASCII escaped, newline-terminated.
inline void write_json(const std::filesystem::path& path, const Json& json) {
  util::write_file_atomically(path, json.dump(2, ' ', /*ensure_ascii=*/true) + "\n");
}

// JsonObject: a JSON object plus where it came from ("config.json", and the key path inside it), so a
// missing or mistyped field is reported as  config.json: key 'n_embd' should be an integer but is a
// string ("768").  Getters accept: bool, integers (range-checked), float/double (integers too),
// std::string, std::vector<T>, std::map<std::string, T>, and JsonObject for nested objects.
class JsonObject {
 public:
  JsonObject(Json json, std::string source, std::string path = "")
      : json_(std::move(json)), source_(std::move(source)), path_(std::move(path)) {
    if (!json_.is_object())  // describe() only on failure: it reads the value
      throw FormatError(
          str_cat(source_, ": ", where(), " should be an object but is ", describe(json_)));
  }
  static JsonObject read(const std::filesystem::path& file) {
    return JsonObject(read_json(file), file.string());
  }

  const Json& json() const { return json_; }
  const std::string& source() const { return source_; }
  // True if the key is present and not null (HF writes absent options as null).
  bool has(std::string_view key) const {
    const auto it = json_.find(key);
    return it != json_.end() && !it->is_null();
  }
  std::vector<std::string> keys() const {
    std::vector<std::string> out;
    for (const auto& item : json_.items()) out.push_back(item.key());
    return out;
  }

  // The value of a required key: FormatError if it is missing, null or of another type.
  template <class T>
  T get(std::string_view key) const {
    const auto it = json_.find(key);
    check<FormatError>(it != json_.end(), source_, ": key '", full_key(key), "' is missing");
    return convert<T>(*it, full_key(key));
  }
  // The value of an optional key: `fallback` if it is missing or null.
  template <class T>
  T get_or(std::string_view key, T fallback) const {
    return has(key) ? get<T>(key) : fallback;
  }
  template <class T>
  std::optional<T> get_optional(std::string_view key) const {
    if (!has(key)) return std::nullopt;
    return get<T>(key);
  }

 private:
  template <class T>
  struct is_vector : std::false_type {};
  template <class U>
  struct is_vector<std::vector<U>> : std::true_type {};
  template <class T>
  struct is_string_map : std::false_type {};
  template <class U>
  struct is_string_map<std::map<std::string, U>> : std::true_type {};

  static std::string describe(const Json& value) {
    const std::string text = json_excerpt(value, 40);
    return str_cat(value.is_number()    ? "a number"
                   : value.is_boolean() ? "a boolean"
                   : value.is_string()  ? "a string"
                   : value.is_null()    ? "null"
                   : value.is_array()   ? "an array"
                                        : "an object",
                   value.is_null() ? "" : " (" + text + ")");
  }
  std::string where() const {
    return path_.empty() ? std::string("the top level") : "key '" + path_ + "'";
  }
  std::string full_key(std::string_view key) const {
    return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  }
  [[noreturn]] void wrong_type(const Json& value, const std::string& key, const char* want) const {
    throw FormatError(
        str_cat(source_, ": key '", key, "' should be ", want, " but is ", describe(value)));
  }

  template <class T>
  T convert(const Json& value, const std::string& key) const {
    if constexpr (std::is_same_v<T, bool>) {
      if (!value.is_boolean()) wrong_type(value, key, "a boolean");
      return value.get<bool>();
    } else if constexpr (std::is_integral_v<T>) {
      if (!value.is_number_integer()) wrong_type(value, key, "an integer");
      if (value.is_number_unsigned()) {
        const auto v = value.get<std::uint64_t>();
        if (v > static_cast<std::uint64_t>(std::numeric_limits<T>::max()))
          wrong_type(value, key, "an integer in range");
        return static_cast<T>(v);
      }
      const auto v = value.get<std::int64_t>();
      if (v < static_cast<std::int64_t>(std::numeric_limits<T>::min()) ||
          (v > 0 && static_cast<std::uint64_t>(v) > std::numeric_limits<T>::max()))
        wrong_type(value, key, "an integer in range");
      return static_cast<T>(v);
    } else if constexpr (std::is_floating_point_v<T>) {
      if (!value.is_number()) wrong_type(value, key, "a number");
      return value.get<T>();
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (!value.is_string()) wrong_type(value, key, "a string");
      return value.get<std::string>();
    } else if constexpr (std::is_same_v<T, JsonObject>) {
      if (!value.is_object()) wrong_type(value, key, "an object");
      return JsonObject(value, source_, key);
    } else if constexpr (is_vector<T>::value) {
      if (!value.is_array()) wrong_type(value, key, "an array");
      T out;
      for (std::size_t i = 0; i < value.size(); ++i)
        out.push_back(convert<typename T::value_type>(value[i], str_cat(key, "[", i, "]")));
      return out;
    } else if constexpr (is_string_map<T>::value) {
      if (!value.is_object()) wrong_type(value, key, "an object");
      T out;
      for (const auto& item : value.items())
        out.emplace(item.key(),
                    convert<typename T::mapped_type>(item.value(), key + "." + item.key()));
      return out;
    } else {
      static_assert(sizeof(T) == 0, "JsonObject::get: unsupported type");
    }
  }

  Json json_;
  std::string source_;
  std::string path_;  // dotted key of this object inside the file ("" for the top level)
};

}  // namespace fourierft::io
