// fourierft/io/jinja.hpp — chat templates (tokenizer_config.json "chat_template") rendered byte for
// byte as transformers' apply_chat_template does, by a Jinja subset interpreter (io/jinja/*.hpp).
#pragma once

#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fourierft/io/jinja/evaluator.hpp"
#include "fourierft/io/jinja/parser.hpp"
#include "fourierft/io/jinja/value.hpp"
#include "fourierft/io/json.hpp"

namespace fourierft::io {

// A chat template as transformers renders it: jinja2's ImmutableSandboxedEnvironment with
// trim_blocks and lstrip_blocks, the loopcontrols and {% generation %} extensions, tojson as
// json.dumps(ensure_ascii=False), and the globals raise_exception and strftime_now.
// The variables a render sees: messages, tools (None), documents (None), add_generation_prompt,
// the tokenizer's special tokens (bos_token, eos_token, ... as strings, only those that are set),
// then `variables`, which override all of these.
class ChatTemplate {
 public:
  // Parses template text; `origin` names it in errors ("<origin>:3:14: unsupported filter 'x'").
  static ChatTemplate parse(std::string text, std::string origin) {
    // jinja2's lexer: every newline sequence becomes "\n" and one trailing newline is dropped.
    std::string normalized;
    normalized.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '\r') {
        normalized += '\n';
        if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
      } else {
        normalized += text[i];
      }
    }
    if (!normalized.empty() && normalized.back() == '\n') normalized.pop_back();
    ChatTemplate result;
    result.source_ = std::make_shared<jinja::SourceMap>(std::move(origin), normalized);
    const auto segments = jinja::lex(normalized, *result.source_);
    jinja::Parser parser(segments, *result.source_);
    result.body_ = std::make_shared<const jinja::Body>(parser.parse_template());
    return result;
  }

  // Reads a template: a .json file is a tokenizer_config.json (its "chat_template": a string, or a
  // list of {"name", "template"} from which `name` is taken; the special tokens come along); any
  // other file is the template text itself (.jinja).
  static ChatTemplate load(const std::filesystem::path& file, const std::string& name = "default") {
    if (file.extension() != ".json") {
      std::ifstream in(file, std::ios::binary);
      if (!in) throw IoError(str_cat("cannot open '", file.string(), "' for reading"));
      std::ostringstream text;
      text << in.rdbuf();
      return parse(text.str(), file.string());
    }
    const Json config = read_json(file);
    if (!config.is_object()) throw TemplateError(str_cat(file.string(), ": expected a JSON object"));
    const auto field = config.find("chat_template");
    if (field == config.end() || field->is_null())
      throw TemplateError(str_cat(file.string(), ": no \"chat_template\" (this tokenizer has no chat template; "
                                                 "pass a .jinja file instead)"));
    std::string text, origin = file.string() + ": chat_template";
    if (field->is_string()) {
      text = field->get<std::string>();
    } else if (field->is_array()) {
      std::string names;
      bool found = false;
      for (const auto& entry : *field) {
        if (!entry.is_object() || !entry.contains("name") || !entry["name"].is_string() ||
            !entry.contains("template") || !entry["template"].is_string())
          throw TemplateError(str_cat(file.string(), ": chat_template entries should be {\"name\", \"template\"}"));
        const std::string entry_name = entry["name"].get<std::string>();
        names += (names.empty() ? "" : ", ") + entry_name;
        if (entry_name == name) {
          text = entry["template"].get<std::string>();
          found = true;
        }
      }
      if (!found)
        throw TemplateError(str_cat(file.string(), ": no chat template named '", name, "' (it has: ", names, ")"));
      if (name != "default") origin += "[" + name + "]";
    } else {
      throw TemplateError(str_cat(file.string(), ": chat_template should be a string or a list"));
    }
    ChatTemplate result = parse(std::move(text), std::move(origin));
    // transformers' special_tokens_map: the tokens that are set, as strings.
    for (const char* key : {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}) {
      const std::string token = token_content(config, key);
      if (!token.empty()) result.special_tokens_[key] = token;
    }
    if (const auto extra = config.find("additional_special_tokens"); extra != config.end() && extra->is_array()) {
      for (const auto& token : *extra) {
        if (token.is_string()) result.additional_special_tokens_.push_back(token.get<std::string>());
        else if (token.is_object() && token.contains("content") && token["content"].is_string())
          result.additional_special_tokens_.push_back(token["content"].get<std::string>());
      }
    }
    return result;
  }

  // Renders `messages` (a JSON array of {"role", "content", ...}) exactly as
  // tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=...) does.
  // `variables` adds/overrides template variables (e.g. {"enable_thinking": false}).
  // Errors: TemplateError naming the position; TemplateRaisedError for raise_exception().
  std::string render(const Json& messages, bool add_generation_prompt,
                     const Json& variables = Json::object()) const {
    if (!body_) throw TemplateError("ChatTemplate: render() on an empty template");
    if (!variables.is_object()) throw TemplateError(str_cat(origin(), ": template variables should be a JSON object"));
    jinja::Renderer::Scope scope = globals();
    scope["messages"] = jinja::from_json(messages);
    scope["tools"] = jinja::Value::none();
    scope["documents"] = jinja::Value::none();
    scope["add_generation_prompt"] = jinja::Value::from(add_generation_prompt);
    for (const auto& [key, token] : special_tokens_) scope[key] = jinja::Value::from(token);
    if (!additional_special_tokens_.empty()) {
      jinja::List tokens;
      for (const auto& token : additional_special_tokens_) tokens.push_back(jinja::Value::from(token));
      scope["additional_special_tokens"] = jinja::Value::from(std::move(tokens));
    }
    for (const auto& [key, value] : variables.items()) scope[key] = jinja::from_json(value);
    jinja::Renderer renderer(*source_, std::move(scope));
    return renderer.render(*body_);
  }

  // The special-token variables taken from the config ("bos_token" -> "<s>", ...).
  const std::map<std::string, std::string>& special_tokens() const { return special_tokens_; }
  const std::string& origin() const {
    static const std::string none = "<no template>";
    return source_ ? source_->origin() : none;
  }

 private:
  std::shared_ptr<const jinja::SourceMap> source_;
  std::shared_ptr<const jinja::Body> body_;
  std::map<std::string, std::string> special_tokens_;
  std::vector<std::string> additional_special_tokens_;

  // A special token in tokenizer_config.json: a string or an AddedToken object's "content".
  static std::string token_content(const Json& config, const char* key) {
    const auto it = config.find(key);
    if (it == config.end()) return {};
    if (it->is_string()) return it->get<std::string>();
    if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
      return (*it)["content"].get<std::string>();
    return {};
  }

  // The environment's globals: range, namespace, dict, raise_exception, strftime_now.
  jinja::Renderer::Scope globals() const {
    using jinja::CallArgs;
    using jinja::Value;
    jinja::Renderer::Scope scope;
    scope["range"] = Value::from(jinja::Function([](CallArgs& args) -> Value {
      std::int64_t bounds[3] = {0, 0, 1};
      const auto n = args.positional.size();
      if (n == 0 || n > 3 || !args.keyword.empty()) throw std::invalid_argument("range expected 1 to 3 integer arguments");
      for (const auto& a : args.positional)
        if (!a.is_integral()) throw std::invalid_argument(str_cat("'", jinja::type_name(a), "' object cannot be interpreted as an integer"));
      if (n == 1) bounds[1] = args.positional[0].as_int();
      else for (std::size_t i = 0; i < n; ++i) bounds[i] = args.positional[i].as_int();
      const std::int64_t start = bounds[0], stop = bounds[1], step = bounds[2];
      if (step == 0) throw std::invalid_argument("range() arg 3 must not be zero");
      const long double count = step > 0 ? (static_cast<long double>(stop) - start + step - 1) / step
                                          : (static_cast<long double>(start) - stop - step - 1) / -step;
      if (count > jinja::max_range_length)
        throw std::invalid_argument(str_cat("range too big: the sandbox allows at most ", jinja::max_range_length, " items"));
      jinja::List items;
      for (std::int64_t i = start; step > 0 ? i < stop : i > stop; i += step) items.push_back(Value::from(i));
      return Value::from(std::move(items));
    }));
    const auto keyword_dict = [](CallArgs& args) {
      jinja::Dict items;
      const auto put = [&](const std::string& key, const Value& v) {
        for (auto& item : items) if (item.first == key) { item.second = v; return; }
        items.emplace_back(key, v);
      };
      for (const auto& a : args.positional) {
        if (!a.is_dict()) throw std::invalid_argument("expected a mapping as positional argument");
        for (const auto& [key, v] : *a.dict) put(key, v);
      }
      for (const auto& [key, v] : args.keyword) put(key, v);
      return items;
    };
    scope["namespace"] = Value::from(jinja::Function([keyword_dict](CallArgs& args) { return Value::namespace_of(keyword_dict(args)); }));
    scope["dict"] = Value::from(jinja::Function([keyword_dict](CallArgs& args) { return Value::from(keyword_dict(args)); }));
    const std::string where = origin();
    scope["raise_exception"] = Value::from(jinja::Function([where](CallArgs& args) -> Value {
      const std::string message = args.positional.empty() ? "" : jinja::python_str(args.positional[0]);
      throw TemplateRaisedError(str_cat(where, ": ", message));
    }));
    scope["strftime_now"] = Value::from(jinja::Function([](CallArgs& args) -> Value {
      if (args.positional.empty() || !args.positional[0].is_string()) throw std::invalid_argument("strftime_now needs a format string");
      const std::time_t now = std::time(nullptr);
      std::tm local{};
      localtime_r(&now, &local);
      char buffer[512];
      const std::size_t n = std::strftime(buffer, sizeof buffer, args.positional[0].string.c_str(), &local);
      return Value::from(std::string(buffer, n));
    }));
    return scope;
  }
};

}  // namespace fourierft::io
