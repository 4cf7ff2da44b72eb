// fourierft/serve/request.hpp — the body of an OpenAI completions / chat completions request
// (untrusted JSON) parsed and checked into a CompletionRequest, without HTTP (fuzzed on its own).
#pragma once

// Fields (OpenAI's; others are ignored): "model", "prompt": text | [token ids] (completions) or
// "messages": [{"role", "content"}] through the model's chat template (chat), "max_tokens"
// ("max_completion_tokens" for chat), "temperature", "top_p", "seed", "n" (1 only), "stream",
// "return_token_ids" (ours). Every rejection is an ApiError 400 naming the field ("param").

#include <algorithm>
#include <cstdint>
#include <exception>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/io/hf_tokenizer.hpp"
#include "fourierft/io/jinja.hpp"
#include "fourierft/io/json.hpp"

namespace fourierft::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                 // 0: any free port (bind() says which)
  Index max_prompt_tokens = 1024;  // longer prompts: 400
  Index max_tokens = 256;          // the most a request may ask for
  Index default_max_tokens = 16;   // OpenAI's default for completions
  Index http_threads = 16;         // connections handled at once (others wait for a thread)
};

// An error answered as OpenAI does: HTTP status, message, type, param, code.
class ApiError : public Error {
 public:
  ApiError(int status, std::string message, std::string type, std::string param, std::string code)
      : Error(message), status(status), type(std::move(type)), param(std::move(param)),
        code(std::move(code)) {}
  int status;
  std::string type, param, code;

  io::Json body() const {
    return {{"error",
             {{"message", what()},
              {"type", type},
              {"param", param.empty() ? io::Json(nullptr) : io::Json(param)},
              {"code", code.empty() ? io::Json(nullptr) : io::Json(code)}}}};
  }
};

// A request once checked.
struct CompletionRequest {
  std::string model;
  bool chat = false;
  std::vector<std::int64_t> prompt;
  Index max_tokens = 16;
  double temperature = 1.0;  // OpenAI's default; 0: greedy
  double top_p = 1.0;
  std::uint64_t seed = 0;
  bool stream = false;
  bool return_token_ids = false;
};

namespace detail {

inline ApiError bad_request(std::string message, std::string param, std::string code = "") {
  return ApiError(400, std::move(message), "invalid_request_error", std::move(param), std::move(code));
}

// "prompt" of /v1/completions: a text (encoded as the model expects) or token ids in the vocabulary.
inline std::vector<std::int64_t> text_prompt(const io::Json& j, const io::HfTokenizer& tokenizer) {
  if (!j.contains("prompt")) throw bad_request("'prompt' is required", "prompt");
  const io::Json& p = j["prompt"];
  if (p.is_string()) return tokenizer.encode_for_model(p.get<std::string>());
  if (p.is_array() && !p.empty() &&
      std::all_of(p.begin(), p.end(), [](const io::Json& v) { return v.is_number_integer(); })) {
    std::vector<std::int64_t> ids;
    for (const io::Json& v : p) {
      const auto id = v.get<std::int64_t>();
      if (id < 0 || id >= tokenizer.vocab_size())
        throw bad_request(str_cat("token id ", id, " is outside the vocabulary [0, ",
                                  tokenizer.vocab_size(), ")"), "prompt");
      ids.push_back(id);
    }
    return ids;
  }
  throw bad_request("'prompt' should be a string or a non-empty array of token ids (one prompt per request)",
                    "prompt");
}

// "messages" of /v1/chat/completions rendered by the chat template, then encoded.
inline std::vector<std::int64_t> chat_prompt(const io::Json& j, const io::HfTokenizer& tokenizer,
                                             const io::ChatTemplate* chat_template) {
  if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty())
    throw bad_request("'messages' is required and should be a non-empty array", "messages");
  for (const io::Json& m : j["messages"])
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() || !m.contains("content") ||
        !m["content"].is_string())
      throw bad_request("each message should be {\"role\": string, \"content\": string}", "messages");
  if (!chat_template)
    throw bad_request("this model has no chat template (tokenizer_config.json); use /v1/completions",
                      "messages", "no_chat_template");
  std::string text;
  try {
    text = chat_template->render(j["messages"], true);
  } catch (const Error& e) {
    throw bad_request(str_cat("the chat template rejected the messages: ", e.what()), "messages");
  }
  return tokenizer.encode(text);  // apply_chat_template tokenizes without adding special tokens
}

}  // namespace detail

// Parses and checks a request body of /v1/chat/completions (chat) or /v1/completions; the limits
// come from `options`. ApiError (400) on any malformed or out-of-range field.
inline CompletionRequest parse_completion_request(const std::string& body, bool chat,
                                                  const io::HfTokenizer& tokenizer,
                                                  const io::ChatTemplate* chat_template,
                                                  const ServerOptions& options) {
  io::Json j;
  try {
    // Bounded nesting first: a message's extra fields go through the chat template's recursive
    // conversion (a 100k-deep one overflowed the stack).
    io::check_json_depth(body, "the body");
    j = io::Json::parse(body);
  } catch (const FormatError& e) {
    throw detail::bad_request(e.what(), "", "invalid_json");
  } catch (const std::exception& e) {
    throw detail::bad_request(str_cat("the body is not valid JSON: ", e.what()), "", "invalid_json");
  }
  if (!j.is_object()) throw detail::bad_request("the body should be a JSON object", "");
  CompletionRequest r;
  r.chat = chat;
  r.max_tokens = options.default_max_tokens;
  if (!j.contains("model") || !j["model"].is_string())
    throw detail::bad_request("'model' is required and should be a string", "model");
  r.model = j["model"].get<std::string>();
  auto number = [&](const char* key, double low, double high, double& out) {
    if (!j.contains(key) || j[key].is_null()) return;
    if (!j[key].is_number()) throw detail::bad_request(str_cat("'", key, "' should be a number"), key);
    out = j[key].get<double>();
    if (!(out >= low && out <= high))
      throw detail::bad_request(str_cat("'", key, "' = ", out, " should be in [", low, ", ", high, "]"), key);
  };
  auto integer = [&](const char* key, Index low, Index high) -> std::optional<Index> {
    if (!j.contains(key) || j[key].is_null()) return std::nullopt;
    if (!j[key].is_number_integer())
      throw detail::bad_request(str_cat("'", key, "' should be an integer"), key);
    const Index v = j[key].get<Index>();
    if (v < low || v > high)
      throw detail::bad_request(str_cat("'", key, "' = ", v, " should be in [", low, ", ", high, "]"), key);
    return v;
  };
  auto boolean = [&](const char* key) {
    if (!j.contains(key) || j[key].is_null()) return false;
    if (!j[key].is_boolean()) throw detail::bad_request(str_cat("'", key, "' should be a boolean"), key);
    return j[key].get<bool>();
  };
  if (auto v = integer("max_tokens", 1, options.max_tokens)) r.max_tokens = *v;
  if (chat)
    if (auto v = integer("max_completion_tokens", 1, options.max_tokens)) r.max_tokens = *v;
  number("temperature", 0.0, 2.0, r.temperature);
  number("top_p", 1e-9, 1.0, r.top_p);
  if (auto v = integer("seed", std::numeric_limits<Index>::min(), std::numeric_limits<Index>::max()))
    r.seed = static_cast<std::uint64_t>(*v);
  if (auto n = integer("n", 1, 1); n && *n != 1) throw detail::bad_request("only n = 1 is supported", "n");
  r.stream = boolean("stream");
  r.return_token_ids = boolean("return_token_ids");
  r.prompt = chat ? detail::chat_prompt(j, tokenizer, chat_template) : detail::text_prompt(j, tokenizer);
  if (r.prompt.empty())
    throw detail::bad_request("the prompt encodes to no tokens", chat ? "messages" : "prompt");
  if (static_cast<Index>(r.prompt.size()) > options.max_prompt_tokens)
    throw detail::bad_request(str_cat("the prompt has ", r.prompt.size(), " tokens; the limit is ",
                                      options.max_prompt_tokens),
                              chat ? "messages" : "prompt", "context_length_exceeded");
  return r;
}

}  // namespace fourierft::serve
