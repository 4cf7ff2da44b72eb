// fourierft/io/instruct.hpp — instruction tuning data: Alpaca JSON and JSON-lines conversations, the
// Alpaca / FourierFT / chat prompt templates, masked tokenization, FastChat bench questions and answers.
//
// Sources reproduced (facts, not code): Stanford Alpaca train.py (PROMPT_DICT, _tokenize_fn,
// preprocess), Chaos96/fourierft experiments/Instruction_Tuning/SFT.py (QUESTION_PROMPT,
// ANSWER_PROMPT), lm-sys/FastChat llm_judge (question / model_answer files, temperature_config) and
// fastchat/conversation.py (how the "alpaca" conversation joins turns). docs/data.md shows each
// template's text side by side.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/io/bpe_tokenizer.hpp"
#include "fourierft/io/hf_tokenizer.hpp"
#include "fourierft/io/jinja.hpp"
#include "fourierft/io/json.hpp"

namespace fourierft::io {

// Keeps keys in insertion order (Json sorts them): FastChat's answer files list keys as written.
using OrderedJson = nlohmann::ordered_json;

// ---- instruction data --------------------------------------------------------------------------

// One training example. Alpaca records fill instruction/input/output; conversation records
// ({"messages": [{"role","content"}...]}) fill `messages` (and leave the rest empty).
struct InstructionExample {
  std::string instruction, input, output;
  Json messages = Json::array();
  bool is_conversation() const { return !messages.empty(); }
};
struct InstructionReadOptions {
  bool skip_bad_records = false;  // count bad records in InstructionData::skipped instead of throwing
};
struct InstructionData {
  std::vector<InstructionExample> examples;
  Index skipped = 0;   // bad records skipped (only with skip_bad_records)
  std::string source;  // the file path
};

namespace detail {

// "a number (3)", "null", "an array ([1,2])": what a field holds, for error messages.
inline std::string describe_json(const Json& value) {
  std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  const char* kind = value.is_number()    ? "a number"
                     : value.is_boolean() ? "a boolean"
                     : value.is_string()  ? "a string"
                     : value.is_null()    ? "null"
                     : value.is_array()   ? "an array"
                                          : "an object";
  return value.is_null() ? std::string(kind) : str_cat(kind, " (", text, ")");
}

// record[key] as a string; a missing key is "" when `optional` (Alpaca's example.get("input", "")).
inline std::string string_field(const Json& record, const char* key, bool optional,
                                const std::string& where) {
  const auto it = record.find(key);
  if (it == record.end()) {
    check<FormatError>(optional, where, ": field '", key, "' is missing");
    return "";
  }
  check<FormatError>(it->is_string(), where, ": field '", key, "' should be a string but is ",
                     describe_json(*it));
  return it->get<std::string>();
}

inline bool is_chat_role(std::string_view role) {
  return role == "system" || role == "user" || role == "assistant" || role == "tool";
}

// A training conversation: a non-empty list of {role, content} with known roles, at least one user
// turn, ending with the assistant's answer (the target). Other keys of a message are kept.
inline Json checked_messages(const Json& messages, const std::string& where) {
  check<FormatError>(messages.is_array() && !messages.empty(), where,
                     ": field 'messages' should be a non-empty array but is ",
                     describe_json(messages));
  bool has_user = false;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const Json& m = messages[i];
    const std::string at = str_cat(where, ": messages[", i, "]");
    check<FormatError>(m.is_object(), at, " should be an object but is ", describe_json(m));
    const std::string role = string_field(m, "role", false, at);
    check<FormatError>(is_chat_role(role), at, ": role '", role,
                       "' is not one of system, user, assistant, tool");
    string_field(m, "content", false, at);
    has_user = has_user || role == "user";
  }
  check<FormatError>(has_user, where, ": the conversation has no user turn");
  const std::string last = messages.back().at("role").get<std::string>();
  check<FormatError>(last == "assistant", where, ": the last message should be the assistant's ",
                     "answer (the training target) but its role is '", last, "'");
  return messages;
}

// One record of either format: {"messages": [...]} or {"instruction", "input"?, "output"}.
inline InstructionExample parse_instruction_record(const Json& record, const std::string& where) {
  check<FormatError>(record.is_object(), where, ": should be an object but is ",
                     describe_json(record));
  InstructionExample ex;
  if (record.contains("messages")) {
    ex.messages = checked_messages(record.at("messages"), where);
    return ex;
  }
  check<FormatError>(record.contains("instruction"), where, ": has neither 'instruction' (an ",
                     "Alpaca record) nor 'messages' (a conversation)");
  ex.instruction = string_field(record, "instruction", false, where);
  ex.input = string_field(record, "input", true, where);
  ex.output = string_field(record, "output", false, where);
  return ex;
}

}  // namespace detail

// Reads instruction data. The layout is taken from the content, not the extension:
//   a JSON array (Alpaca's alpaca_data.json: [{"instruction", "input", "output"}, ...]), or
//   JSON lines, one record per line: {"messages": [{"role", "content"}, ...]} or an Alpaca object;
//   blank lines are ignored.
// Text is kept verbatim (\u escapes and surrogate pairs decoded to UTF-8, whitespace kept). A
// missing "input" is "" (Alpaca's example.get("input", "")); other keys are ignored. A conversation
// needs roles system/user/assistant/tool, a user turn, and must end with an assistant turn.
// A bad record throws FormatError "<file>: record 17: field 'output' should be a string but is ..."
// (0-based record index in an array) or "<file>:18: ..." (1-based line of JSON lines), unless
// options.skip_bad_records, which counts it in `skipped`. A JSON syntax error in an array file is
// always an error (the array cannot be split into records).
inline InstructionData read_instruction_data(const std::filesystem::path& file,
                                             const InstructionReadOptions& options = {}) {
  const std::string text = detail::read_text_file(file);
  InstructionData data;
  data.source = file.string();
  std::size_t start = text.rfind("\xEF\xBB\xBF", 0) == 0 ? 3 : 0;  // a UTF-8 BOM
  start = text.find_first_not_of(" \t\r\n", start);
  if (start == std::string::npos) return data;  // empty file: no records

  auto add = [&](const Json& record, const std::string& where) {
    try {
      data.examples.push_back(detail::parse_instruction_record(record, where));
    } catch (const FormatError&) {
      if (!options.skip_bad_records) throw;
      ++data.skipped;
    }
  };
  if (text[start] == '[') {
    const Json records = parse_json(std::string_view(text).substr(start), data.source);
    for (std::size_t i = 0; i < records.size(); ++i)
      add(records[i], str_cat(data.source, ": record ", i));
    return data;
  }
  std::size_t line_number = 0;
  for (std::size_t pos = 0; pos < text.size();) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line = std::string_view(text).substr(pos, end - pos);
    pos = end + 1;
    ++line_number;
    if (line_number == 1 && line.substr(0, 3) == "\xEF\xBB\xBF") line.remove_prefix(3);
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const std::string where = str_cat(data.source, ":", line_number);
    Json record;
    try {
      record = parse_json(line, where);
    } catch (const FormatError&) {
      if (!options.skip_bad_records) throw;
      ++data.skipped;
      continue;
    }
    add(record, where);
  }
  return data;
}

// ---- prompt templates --------------------------------------------------------------------------

enum class PromptTemplate { alpaca, fourierft, chat };

inline PromptTemplate parse_prompt_template(std::string_view name) {
  if (name == "alpaca") return PromptTemplate::alpaca;
  if (name == "fourierft") return PromptTemplate::fourierft;
  if (name == "chat") return PromptTemplate::chat;
  throw ValueError(str_cat("unknown prompt template '", name, "' (expected alpaca, fourierft or chat)"));
}
inline std::string_view prompt_template_name(PromptTemplate t) {
  switch (t) {
    case PromptTemplate::alpaca: return "alpaca";
    case PromptTemplate::fourierft: return "fourierft";
    case PromptTemplate::chat: return "chat";
  }
  return "?";
}

// What the template needs besides the example.
struct PromptContext {
  std::string eos_token;                 // appended to the Alpaca target ("</s>" for Llama 2)
  const ChatTemplate* chat = nullptr;    // required for PromptTemplate::chat
  Json chat_variables = Json::object();  // extra template variables ({"enable_thinking": false})
};
// prompt + target = the whole training text; the loss covers the target only.
struct PromptText {
  std::string prompt, target;
  // true: tokenize as the model sees plain text (the tokenizer's BOS rule, encode_for_model);
  // false for chat templates, which write their own special tokens ({{ bos_token }}), so they are
  // tokenized without adding any, as transformers' apply_chat_template(tokenize=True) does.
  bool add_special_tokens = true;
};
// Whether a template's text already holds its special tokens (chat), i.e. how to encode a
// conversation_prompt() for generation: encode() if so, else encode_for_model().
inline bool template_writes_special_tokens(PromptTemplate t) { return t == PromptTemplate::chat; }

namespace detail {

// Stanford Alpaca's PROMPT_DICT, split at the substitution points. The with-input header is also
// the first line of FourierFT's QUESTION_PROMPT.
inline constexpr std::string_view header_with_input =
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n";
inline constexpr std::string_view header_no_input =
    "Below is an instruction that describes a task. Write a response that appropriately completes "
    "the request.\n\n";
inline constexpr std::string_view fourierft_answer_prompt = "### Response:\n";  // ANSWER_PROMPT

// prompt_input (input != "") or prompt_no_input; ends in "### Response:" with nothing after it.
inline std::string alpaca_prompt(std::string_view instruction, std::string_view input) {
  if (input.empty())
    return str_cat(header_no_input, "### Instruction:\n", instruction, "\n\n### Response:");
  return str_cat(header_with_input, "### Instruction:\n", instruction, "\n\n### Input:\n", input,
                 "\n\n### Response:");
}
// SFT.py's QUESTION_PROMPT: always with the ### Input: section, even when input is "".
inline std::string fourierft_prompt(std::string_view instruction, std::string_view input) {
  return str_cat(header_with_input, "### Instruction:\n", instruction, "\n\n### Input:\n", input,
                 "\n\n");
}

// A conversation for the alpaca / fourierft templates: user and assistant turns alternating,
// starting with the user and ending with the assistant (these templates have no system or tool
// slot). Returns the user turns and the answers (same count).
inline void split_turns(const Json& messages, PromptTemplate t, std::vector<std::string>& users,
                        std::vector<std::string>& answers) {
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const std::string role = messages[i].at("role").get<std::string>();
    const char* want = i % 2 == 0 ? "user" : "assistant";
    check<FormatError>(role == want, "the ", prompt_template_name(t), " template takes user and ",
                       "assistant turns alternating from the user's; message ", i, " is a '", role,
                       "' turn (use the chat template for this conversation)");
    (i % 2 == 0 ? users : answers).push_back(messages[i].at("content").get<std::string>());
  }
  check<FormatError>(answers.size() == users.size() && !users.empty(), "the ",
                     prompt_template_name(t), " template needs the conversation to end with an ",
                     "assistant turn");
}

inline Json chat_messages(const std::vector<std::string>& users,
                          const std::vector<std::string>& answers) {
  Json messages = Json::array();
  for (std::size_t k = 0; k < users.size(); ++k) {
    messages.push_back({{"role", "user"}, {"content", users[k]}});
    if (k < answers.size()) messages.push_back({{"role", "assistant"}, {"content", answers[k]}});
  }
  return messages;
}

inline const ChatTemplate& require_chat(const PromptContext& context, const char* who) {
  check(context.chat != nullptr, who, ": the chat template needs PromptContext::chat (a ",
        "ChatTemplate, e.g. from the model's tokenizer_config.json)");
  return *context.chat;
}

}  // namespace detail

// Generation prompt for multi-turn answering: the user turns so far and the model's earlier answers
// (answers.size() == user_turns.size() - 1), ready for the next answer. One turn gives exactly the
// prompt format_example makes for {instruction: turn, input: ""}. Later turns, for templates that
// define none, follow FastChat's "alpaca" conversation (conversation.py, ADD_COLON_TWO: the header
// once, then each turn's instruction and response sections, an answer followed by sep2 = "</s>"):
//   alpaca:    prompt_no_input(q1) + a1 + eos + "### Instruction:\n" + q2 + "\n\n### Response:" ...
//   fourierft: QUESTION_PROMPT(q1, "") + "### Response:\n" + a1 + "\n\n"
//              + "### Instruction:\n" + q2 + "\n\n### Input:\n\n\n### Response:\n" ...
//              (FourierFT's target has no EOS, so its own section separator "\n\n" ends an answer)
//   chat:      render([user q1, assistant a1, user q2], add_generation_prompt = true)
inline std::string conversation_prompt(PromptTemplate t, const std::vector<std::string>& user_turns,
                                       const std::vector<std::string>& answers,
                                       const PromptContext& context) {
  check(!user_turns.empty() && answers.size() + 1 == user_turns.size(),
        "conversation_prompt: needs one answer fewer than user turns, got ", user_turns.size(),
        " user turns and ", answers.size(), " answers");
  std::string text;
  switch (t) {
    case PromptTemplate::alpaca:
      check(answers.empty() || !context.eos_token.empty(), "conversation_prompt: the alpaca ",
            "template ends each earlier answer with the EOS token; PromptContext::eos_token is empty");
      text = detail::header_no_input;
      for (std::size_t k = 0; k < user_turns.size(); ++k) {
        text += str_cat("### Instruction:\n", user_turns[k], "\n\n### Response:");
        if (k < answers.size()) text += answers[k] + context.eos_token;
      }
      return text;
    case PromptTemplate::fourierft:
      text = detail::header_with_input;
      for (std::size_t k = 0; k < user_turns.size(); ++k) {
        text += str_cat("### Instruction:\n", user_turns[k], "\n\n### Input:\n\n\n",
                        detail::fourierft_answer_prompt);
        if (k < answers.size()) text += answers[k] + "\n\n";
      }
      return text;
    case PromptTemplate::chat:
      return detail::require_chat(context, "conversation_prompt")
          .render(detail::chat_messages(user_turns, answers), true, context.chat_variables);
  }
  return text;
}

// The training text of one example, split where the loss starts:
//   alpaca:    PROMPT_DICT prompt (prompt_input if input != "", else prompt_no_input);
//              target = output + eos_token, no separator (the prompt ends in "### Response:")
//   fourierft: QUESTION_PROMPT (always with "### Input:"); target = "### Response:\n" + output
//   chat:      prompt = render(messages without the final assistant turn, add_generation_prompt),
//              target = render(all messages) minus that prefix (FormatError if it is not a prefix).
//              An Alpaca record becomes [{user: instruction (+ "\n\n" + input if input != "")},
//              {assistant: output}].
// A conversation under alpaca / fourierft: prompt = conversation_prompt(users, earlier answers)
// (without fourierft's trailing "### Response:\n"), target as above with the last answer.
inline PromptText format_example(const InstructionExample& example, PromptTemplate t,
                                 const PromptContext& context) {
  PromptText text;
  std::vector<std::string> users, answers;
  if (t != PromptTemplate::chat && example.is_conversation()) {
    detail::split_turns(example.messages, t, users, answers);
  }
  const std::string output = example.is_conversation() && t != PromptTemplate::chat
                                 ? answers.back()
                                 : example.output;
  switch (t) {
    case PromptTemplate::alpaca:
      check(!context.eos_token.empty(), "format_example: the alpaca template appends the EOS ",
            "token to the target; PromptContext::eos_token is empty");
      if (example.is_conversation()) {
        answers.pop_back();
        text.prompt = conversation_prompt(t, users, answers, context);
      } else {
        text.prompt = detail::alpaca_prompt(example.instruction, example.input);
      }
      text.target = output + context.eos_token;
      return text;
    case PromptTemplate::fourierft:
      if (example.is_conversation()) {
        answers.pop_back();
        text.prompt = conversation_prompt(t, users, answers, context);
        text.prompt.resize(text.prompt.size() - detail::fourierft_answer_prompt.size());
      } else {
        text.prompt = detail::fourierft_prompt(example.instruction, example.input);
      }
      text.target = str_cat(detail::fourierft_answer_prompt, output);
      return text;
    case PromptTemplate::chat: {
      const ChatTemplate& chat = detail::require_chat(context, "format_example");
      Json messages = example.messages;
      if (!example.is_conversation()) {
        const std::string user = example.input.empty()
                                     ? example.instruction
                                     : str_cat(example.instruction, "\n\n", example.input);
        messages = detail::chat_messages({user}, {example.output});
      }
      check<FormatError>(messages.back().value("role", "") == "assistant", chat.origin(),
                         ": format_example needs a conversation ending with an assistant turn");
      Json history = messages;
      history.erase(history.size() - 1);
      const std::string prompt = chat.render(history, true, context.chat_variables);
      const std::string full = chat.render(messages, false, context.chat_variables);
      check<FormatError>(full.compare(0, prompt.size(), prompt) == 0, chat.origin(),
                         ": the conversation rendered without its last assistant turn (with ",
                         "add_generation_prompt) is not a prefix of the whole conversation "
                         "rendered, so the answer cannot be split from the prompt");
      text.prompt = prompt;
      text.target = full.substr(prompt.size());
      text.add_special_tokens = false;
      return text;
    }
  }
  return text;
}

// ---- tokenization with the loss mask ----------------------------------------------------------

inline constexpr std::int64_t ignore_index = -100;  // labels the loss skips (PyTorch's default)

struct TokenizedExample {
  std::vector<std::int64_t> input_ids, labels;
};

namespace detail {

// tokenizer(text, max_length=max_len, truncation=True, add_special_tokens=...).input_ids: the
// template's special tokens (BOS for Llama) count toward max_len and stay; the text's ids are cut
// from the end.
inline std::vector<std::int64_t> encode_truncated(const HfTokenizer& tokenizer, std::string_view text,
                                                  Index max_len, bool add_special_tokens) {
  const std::vector<std::int64_t> prefix = add_special_tokens ? tokenizer.template_prefix()
                                                              : std::vector<std::int64_t>{},
                                  suffix = add_special_tokens ? tokenizer.template_suffix()
                                                              : std::vector<std::int64_t>{};
  std::vector<std::int64_t> content = tokenizer.encode(text);
  const Index room = max_len - static_cast<Index>(prefix.size() + suffix.size());
  if (static_cast<Index>(content.size()) > room)
    content.resize(static_cast<std::size_t>(std::max<Index>(room, 0)));
  std::vector<std::int64_t> ids = prefix;
  ids.insert(ids.end(), content.begin(), content.end());
  ids.insert(ids.end(), suffix.begin(), suffix.end());
  return ids;
}

}  // namespace detail

// Stanford Alpaca's _tokenize_fn + preprocess (FourierFT's SFT.py is the same): the whole text and
// the prompt alone are encoded separately, each as the model sees it (the tokenizer's own BOS rule,
// HfTokenizer::encode_for_model; plain encode() for a chat template's text, which holds its own:
// PromptText::add_special_tokens) and truncated to max_len (model_max_length, 512 in both sources);
//   input_ids = ids(prompt + target),   labels = input_ids with the first len(ids(prompt)) = -100.
// The prompt's ids need not be a prefix of the whole text's ids (a token may straddle the boundary);
// as in the sources only the count is used. A target cut off entirely leaves every label -100.
inline TokenizedExample tokenize_example(const PromptText& text, const HfTokenizer& tokenizer,
                                         Index max_len) {
  check(max_len > 0, "tokenize_example: max_len must be > 0, got ", max_len);
  TokenizedExample out;
  const bool specials = text.add_special_tokens;
  out.input_ids = detail::encode_truncated(tokenizer, text.prompt + text.target, max_len, specials);
  const std::size_t prompt_len =
      detail::encode_truncated(tokenizer, text.prompt, max_len, specials).size();
  out.labels = out.input_ids;
  for (std::size_t i = 0; i < prompt_len && i < out.labels.size(); ++i) out.labels[i] = ignore_index;
  return out;
}

// A special token's text from tokenizer_config.json (or its folder): "eos_token": "</s>" or an
// AddedToken object {"content": "</s>", ...}. FormatError naming the file if absent or null.
inline std::string read_special_token(const std::filesystem::path& tokenizer_config,
                                      std::string_view key) {
  const std::filesystem::path file = std::filesystem::is_directory(tokenizer_config)
                                         ? tokenizer_config / "tokenizer_config.json"
                                         : tokenizer_config;
  const Json config = read_json(file);
  check<FormatError>(config.is_object(), file.string(), ": should be a JSON object");
  const auto it = config.find(key);
  check<FormatError>(it != config.end() && !it->is_null(), file.string(), ": key '", key,
                     "' is missing or null");
  if (it->is_string()) return it->get<std::string>();
  check<FormatError>(it->is_object() && it->contains("content") && it->at("content").is_string(),
                     file.string(), ": key '", key, "' should be a string or an object with a ",
                     "string 'content' but is ", detail::describe_json(*it));
  return it->at("content").get<std::string>();
}

// ---- FastChat bench questions and answer files -------------------------------------------------

// One line of FastChat's mt_bench / vicuna_bench question.jsonl (MT-Bench: 2 turns, the second
// asked after the model's first answer; Vicuna: 1). An optional "reference" field is ignored.
struct BenchQuestion {
  std::int64_t question_id = 0;
  std::string category;
  std::vector<std::string> turns;
};

// Every question of the file in order; blank lines ignored. FormatError "<file>:<line>: ..." for a
// line that is not JSON, a missing or mistyped field, no turns, or a question_id seen before.
inline std::vector<BenchQuestion> read_bench_questions(const std::filesystem::path& file) {
  const std::string text = detail::read_text_file(file);
  std::vector<BenchQuestion> questions;
  std::map<std::int64_t, std::size_t> line_of_id;
  std::istringstream lines(text);
  std::size_t line_number = 0;
  for (std::string line; std::getline(lines, line);) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = str_cat(file.string(), ":", line_number);
    const Json j = parse_json(line, where);
    check<FormatError>(j.is_object(), where, ": should be an object but is ",
                       detail::describe_json(j));
    BenchQuestion q;
    const auto id = j.find("question_id");
    check<FormatError>(id != j.end(), where, ": field 'question_id' is missing");
    check<FormatError>(id->is_number_integer(), where,
                       ": field 'question_id' should be an integer but is ",
                       detail::describe_json(*id));
    q.question_id = id->get<std::int64_t>();
    q.category = detail::string_field(j, "category", false, where);
    const auto turns = j.find("turns");
    check<FormatError>(turns != j.end(), where, ": field 'turns' is missing");
    check<FormatError>(turns->is_array() && !turns->empty(), where,
                       ": field 'turns' should be a non-empty array of strings but is ",
                       detail::describe_json(*turns));
    for (std::size_t k = 0; k < turns->size(); ++k) {
      check<FormatError>((*turns)[k].is_string(), where, ": turns[", k,
                         "] should be a string but is ", detail::describe_json((*turns)[k]));
      q.turns.push_back((*turns)[k].get<std::string>());
    }
    const auto [seen, fresh] = line_of_id.emplace(q.question_id, line_number);
    check<FormatError>(fresh, where, ": question_id ", q.question_id, " repeats line ",
                       seen->second);
    questions.push_back(std::move(q));
  }
  return questions;
}

// FastChat's temperature_config (fastchat/llm_judge/common.py): writing / roleplay 0.7;
// extraction / math / coding / reasoning / arena-hard-200 0.0; stem / humanities 0.1; any other
// category 0.7 (gen_model_answer.py's default). Below 1e-4 FastChat decodes greedily.
inline double fastchat_temperature(std::string_view category) {
  static const std::map<std::string, double, std::less<>> table = {
      {"writing", 0.7}, {"roleplay", 0.7}, {"extraction", 0.0}, {"math", 0.0},
      {"coding", 0.0},  {"reasoning", 0.0}, {"stem", 0.1},      {"humanities", 0.1},
      {"arena-hard-200", 0.0}};
  const auto it = table.find(category);
  return it == table.end() ? 0.7 : it->second;
}
inline constexpr Index fastchat_max_new_tokens = 1024;  // gen_model_answer.py --max-new-token

// One line of FastChat's model_answer/<model-id>.jsonl (one choice, index 0, as --num-choices 1).
struct ModelAnswer {
  std::int64_t question_id = 0;
  std::string answer_id;  // 22 characters like shortuuid.uuid()
  std::string model_id;
  std::vector<std::string> turns;
  double tstamp = 0;  // seconds since the epoch (time.time())
};

// {"question_id", "answer_id", "model_id", "choices": [{"index": 0, "turns": [...]}], "tstamp"}, keys
// in that order (gen_model_answer.py's ans_json). Returned ordered: a Json (sorted keys) copy of it
// is the same object with its keys reordered.
inline OrderedJson model_answer_json(const ModelAnswer& answer) {
  OrderedJson j = OrderedJson::object();
  j["question_id"] = answer.question_id;
  j["answer_id"] = answer.answer_id;
  j["model_id"] = answer.model_id;
  OrderedJson choice = OrderedJson::object();
  choice["index"] = 0;
  choice["turns"] = answer.turns;
  j["choices"] = OrderedJson::array({choice});
  j["tstamp"] = answer.tstamp;
  return j;
}

namespace detail {
// Python's json.dumps(value) layout: ", " and ": " separators, ASCII with \uXXXX escapes.
inline void python_json_dump(const OrderedJson& value, std::string& out) {
  if (value.is_object()) {
    out += '{';
    bool first = true;
    for (const auto& item : value.items()) {
      if (!first) out += ", ";
      first = false;
      out += OrderedJson(item.key()).dump(-1, ' ', true);
      out += ": ";
      python_json_dump(item.value(), out);
    }
    out += '}';
  } else if (value.is_array()) {
    out += '[';
    for (std::size_t i = 0; i < value.size(); ++i) {
      if (i > 0) out += ", ";
      python_json_dump(value[i], out);
    }
    out += ']';
  } else {
    out += value.dump(-1, ' ', true);
  }
}
}  // namespace detail

// The answer as FastChat writes it: json.dumps(ans_json) + "\n".
inline std::string model_answer_line(const ModelAnswer& answer) {
  std::string line;
  detail::python_json_dump(model_answer_json(answer), line);
  return line + "\n";
}

// 22 characters of shortuuid's alphabet, as shortuuid.uuid() makes them: a version-4 UUID (here
// from `seed` through splitmix64, so runs are reproducible) written in base 57, most significant
// digit first, padded on the left with the alphabet's first character.
inline std::string random_answer_id(std::uint64_t seed) {
  constexpr std::string_view alphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
  auto splitmix64 = [&seed] {
    std::uint64_t z = (seed += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  std::uint64_t high = splitmix64(), low = splitmix64();
  high = (high & ~0xF000ull) | 0x4000ull;             // version 4 (uuid4)
  low = (low & ~(3ull << 62)) | (2ull << 62);          // RFC 4122 variant
  unsigned __int128 number = (static_cast<unsigned __int128>(high) << 64) | low;
  std::string digits;
  while (number != 0) {
    digits += alphabet[static_cast<std::size_t>(number % alphabet.size())];
    number /= alphabet.size();
  }
  digits.resize(22, alphabet[0]);  // ceil(128 / log2(57)) = 22 digits
  return std::string(digits.rbegin(), digits.rend());
}

}  // namespace fourierft::io
