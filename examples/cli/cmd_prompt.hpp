// fourierft prompt — the exact text a model is trained or prompted on: an instruction record under
// Stanford Alpaca's or FourierFT's template, or a conversation through a model's Jinja chat template.
//
//   fourierft prompt --template alpaca --data alpaca_data.json --index 0
//   fourierft prompt --template alpaca --data alpaca_data.json --index 0 --with-target
//       --tokenizer-config llama2/tokenizer_config.json         (prompt + output + "</s>")
//   fourierft prompt --chat-template qwen3/tokenizer_config.json --messages chat.json
//       --add-generation-prompt --var enable_thinking=false
//
// The text is printed byte for byte with nothing added (no final newline), so `| xxd` or a file
// comparison shows every space. Templates and file formats: docs/data.md, "Instruction data and
// prompt templates".
#pragma once

#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/io/instruct.hpp"
#include "fourierft/io/jinja.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/util/args.hpp"

namespace fourierft::cli {

namespace detail {

// Removes every "--var name=value" / "--var=name=value" from args (util::Args keeps one value per
// option) and returns the "name=value" parts in order.
inline std::vector<std::string> take_var_options(std::vector<std::string>& args) {
  std::vector<std::string> specs, rest;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--var") {
      check(i + 1 < args.size(), "option --var needs a value name=value");
      specs.push_back(args[++i]);
    } else if (args[i].rfind("--var=", 0) == 0) {
      specs.push_back(args[i].substr(6));
    } else {
      rest.push_back(args[i]);
    }
  }
  args = std::move(rest);
  return specs;
}

// "name=value": the value is JSON when it parses as JSON (false, 3, "x", [1,2]), else the string
// itself (enable_thinking=false is the boolean, name=Ada the string "Ada").
inline void add_template_variable(io::Json& variables, const std::string& spec) {
  const auto eq = spec.find('=');
  check(eq != std::string::npos && eq > 0, "--var expects name=value, got '", spec, "'");
  const std::string value = spec.substr(eq + 1);
  io::Json parsed = io::Json::parse(value, nullptr, /*allow_exceptions=*/false);
  variables[spec.substr(0, eq)] = parsed.is_discarded() ? io::Json(value) : std::move(parsed);
}

}  // namespace detail

// Writes the text to `out` (the test calls it with a string stream).
inline int prompt(std::vector<std::string> args, std::ostream& out) {
  io::Json variables = io::Json::object();
  for (const std::string& spec : detail::take_var_options(args))
    detail::add_template_variable(variables, spec);
  util::Args options(args, {"--help", "--with-target", "--add-generation-prompt"});
  if (options.has("--help")) {
    out << "usage: fourierft prompt --template alpaca|fourierft --data FILE --index N\n"
           "                        [--with-target --tokenizer-config tokenizer_config.json]\n"
           "       fourierft prompt --template chat --chat-template T --data FILE --index N\n"
           "                        [--with-target] [--var name=value ...]\n"
           "       fourierft prompt --chat-template T --messages FILE [--add-generation-prompt]\n"
           "                        [--var name=value ...]\n"
           "Prints a prompt byte for byte, with nothing added (no final newline).\n"
           "  --template     alpaca: Stanford Alpaca's PROMPT_DICT (prompt_input if the input is\n"
           "                 not \"\", else prompt_no_input); fourierft: the FourierFT SFT.py\n"
           "                 template (always with ### Input:); chat: the --chat-template\n"
           "  --data         instruction data: an Alpaca JSON array, or JSON lines of\n"
           "                 {\"messages\": [...]} or Alpaca objects\n"
           "  --index        which record, from 0\n"
           "  --with-target  the whole training text: prompt + target (alpaca: output + the\n"
           "                 eos_token of --tokenizer-config; fourierft: \"### Response:\\n\" +\n"
           "                 output, no EOS)\n"
           "  --chat-template a tokenizer_config.json (its chat_template, bos_token, eos_token)\n"
           "                 or a .jinja file (the template text)\n"
           "  --messages     a JSON list of {\"role\", \"content\"} (or {\"messages\": [...]}),\n"
           "                 rendered as transformers' apply_chat_template(tokenize=False)\n"
           "  --add-generation-prompt  end with the assistant's header, ready for its answer\n"
           "  --var          an extra template variable (repeatable); the value is JSON if it\n"
           "                 parses (enable_thinking=false, n=3, s=\"x\"), else a string\n";
    return 0;
  }
  check(options.positional().empty(), "unexpected argument '",
        options.positional().empty() ? "" : options.positional().front(), "' (see --help)");

  // A conversation through a chat template.
  if (options.has("--messages")) {
    const std::string template_file = options.str("--chat-template"),
                      messages_file = options.str("--messages");
    const bool add_generation_prompt = options.has("--add-generation-prompt");
    options.reject_unknown();
    const io::ChatTemplate chat = io::ChatTemplate::load(template_file);
    io::Json messages = io::read_json(messages_file);
    if (messages.is_object() && messages.contains("messages")) messages = messages.at("messages");
    check<FormatError>(messages.is_array(), messages_file, ": should be a JSON list of messages ",
                       "{\"role\", \"content\"} (or an object with \"messages\")");
    out << chat.render(messages, add_generation_prompt, variables);
    out.flush();
    return 0;
  }

  // One record of instruction data under a template.
  const io::PromptTemplate kind = io::parse_prompt_template(options.str("--template"));
  const std::string data_file = options.str("--data");
  const long long index = options.integer("--index");
  const bool with_target = options.has("--with-target");
  const std::string config_file = options.str("--tokenizer-config", "");
  const std::string template_file =
      kind == io::PromptTemplate::chat ? options.str("--chat-template") : "";
  check(kind == io::PromptTemplate::chat || variables.empty(),
        "--var sets chat template variables; it needs --template chat");
  options.reject_unknown();

  const io::InstructionData data = io::read_instruction_data(data_file);
  const auto count = static_cast<long long>(data.examples.size());
  check<IndexError>(index >= 0 && index < count, "--index ", index, " is out of range: ",
                    data_file, " has ", count, " records",
                    count > 0 ? str_cat(" (0 to ", count - 1, ")") : std::string());
  const io::InstructionExample& example = data.examples[static_cast<std::size_t>(index)];

  io::PromptContext context;
  // The Alpaca template needs the EOS text for the target, and inside the prompt of a multi-turn
  // conversation (after each earlier answer).
  const bool prompt_has_eos = example.is_conversation() && example.messages.size() > 2;
  if (kind == io::PromptTemplate::alpaca && (with_target || prompt_has_eos)) {
    check(!config_file.empty(), "the alpaca template ends ",
          with_target ? "the target" : "each earlier answer", " with the EOS token: give ",
          "--tokenizer-config tokenizer_config.json (its eos_token)");
  }
  context.eos_token = !config_file.empty() ? io::read_special_token(config_file, "eos_token")
                                           : std::string("</s>");  // not printed (checked above)
  std::optional<io::ChatTemplate> chat;
  if (kind == io::PromptTemplate::chat) {
    chat.emplace(io::ChatTemplate::load(template_file));
    context.chat = &*chat;
    context.chat_variables = variables;
  }
  const io::PromptText text = io::format_example(example, kind, context);
  out << text.prompt;
  if (with_target) out << text.target;
  out.flush();
  return 0;
}

inline int cmd_prompt(const std::vector<std::string>& args) {
  return prompt(args, std::cout);
}

}  // namespace fourierft::cli
