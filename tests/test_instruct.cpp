// Tests of include/fourierft/io/instruct.hpp (instruction data, prompt templates, masked
// tokenization, FastChat questions and answers) and of `fourierft prompt`, end to end.
//
// Expected prompts are written out here from the sources' own text (Stanford Alpaca train.py's
// PROMPT_DICT, FourierFT SFT.py's QUESTION_PROMPT / ANSWER_PROMPT, FastChat's files), never taken
// from this code's output. Alpaca-format rows are made up (tests/fixtures/instruct/alpaca_quirks.json):
// Alpaca's text is CC BY-NC; the real file is read from ../shared/data when present.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "fourierft/io/hf_tokenizer.hpp"
#include "fourierft/io/instruct.hpp"
#include "fourierft/io/jinja.hpp"
#include "fourierft/io/json.hpp"
#include "process.hpp"

using namespace fourierft;
using namespace fourierft::io;
namespace fs = std::filesystem;

namespace {

const fs::path fixtures = fs::path(FOURIERFT_FIXTURES_DIR) / "instruct";
const fs::path shared = fs::path(FOURIERFT_SHARED_DATA_DIR) / "instruct";
const fs::path alpaca_file = shared / "alpaca" / "alpaca_data.derived.json";
const fs::path bench_dir = fs::path(FOURIERFT_SOURCE_DIR) / "examples" / "data" / "instruct";
const fs::path mistral_dir = fs::path(FOURIERFT_FIXTURES_DIR) / "tokenizer" / "mistral";

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::path(FOURIERFT_BINARY_DIR) / "test_instruct_tmp" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}
fs::path write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

// Stanford Alpaca train.py, PROMPT_DICT, as its source writes the string pieces.
const std::string prompt_input =
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:";
const std::string prompt_no_input =
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:";
// FourierFT experiments/Instruction_Tuning/SFT.py.
const std::string question_prompt =
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n### Instruction:\n"
    "{instruction}\n\n### Input:\n{input}\n\n";
const std::string answer_prompt = "### Response:\n";

// Python's str.format with {instruction} and {input} (values are not re-scanned).
std::string python_format(const std::string& pattern, const std::string& instruction,
                          const std::string& input) {
  std::string out;
  for (std::size_t i = 0; i < pattern.size();) {
    if (pattern.compare(i, 13, "{instruction}") == 0) {
      out += instruction;
      i += 13;
    } else if (pattern.compare(i, 7, "{input}") == 0) {
      out += input;
      i += 7;
    } else {
      out += pattern[i++];
    }
  }
  return out;
}

InstructionExample alpaca_row(std::string instruction, std::string input, std::string output) {
  InstructionExample ex;
  ex.instruction = std::move(instruction);
  ex.input = std::move(input);
  ex.output = std::move(output);
  return ex;
}

// The decoded text of tests/fixtures/instruct/alpaca_quirks.json, as UTF-8 bytes.
const std::vector<InstructionExample> quirk_rows = {
    alpaca_row("Give three tips for keeping a houseplant alive.", "",
               "1. Water it when the top inch of soil is dry.\n2. Give it bright, indirect "
               "light.\n3. Repot it every two years."),
    alpaca_row("Translate the sentence into French.",
               "The caf\xC3\xA9 is open at 20\xC2\xB0"
               "C \xE2\x80\x93 come in.",
               "Le caf\xC3\xA9 est ouvert \xC3\xA0 20\xC2\xB0"
               "C \xE2\x80\x93 entrez."),
    alpaca_row("Describe what this emoji shows: \xF0\x9F\x98\x80", "",
               "A grinning face \xF0\x9F\x98\x80; sometimes paired with a rocket \xF0\x9F\x9A\x80."),
    alpaca_row("Remove the stray characters from the text.",
               "a\x01"
               "b\x02"
               "c\x03"
               "d\x04"
               "e\x05"
               "f\x06"
               "g\x07"
               "h",
               "abcdefgh"),
    alpaca_row("Split the line at the vertical tab.", "left\x0Bright", "left\nright"),
    alpaca_row("Reply with nothing at all.", "", ""),
    alpaca_row("Play the attached song.", "",
               "<nooutput> This instruction needs audio, which a text model cannot play."),
    alpaca_row("Double the number.", " 12", "\nThe answer is 24. "),
    alpaca_row("Is the input empty?", "\"\"", "No: it holds two quote characters."),
    alpaca_row("Write a function that returns its argument.", "N/A", "def identity(x):\n\treturn x"),
    alpaca_row("Say nothing about nothing.", "", ""),
};

std::vector<std::int64_t> concat_ids(std::vector<std::int64_t> a, const std::vector<std::int64_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

// ---- reading ------------------------------------------------------------------------------------

TEST_CASE("read_instruction_data: an Alpaca array with every quirk of alpaca_data.json") {
  const fs::path file = fixtures / "alpaca_quirks.json";
  const std::string bytes = testing::read_file(file);
  REQUIRE(!bytes.empty());
  CHECK(bytes.back() == ']');  // no final newline, like the real file
  CHECK(bytes.find("\\ud83d\\ude00") != std::string::npos);  // written as a surrogate pair
  CHECK(bytes.find("\\u000b") != std::string::npos);
  CHECK(std::all_of(bytes.begin(), bytes.end(), [](char c) { return c > 0 && c < 0x7F; }));

  const InstructionData data = read_instruction_data(file);
  CHECK(data.source == file.string());
  CHECK(data.skipped == 0);
  REQUIRE(data.examples.size() == quirk_rows.size());
  for (std::size_t i = 0; i < quirk_rows.size(); ++i) {
    CAPTURE(i);
    CHECK(data.examples[i].instruction == quirk_rows[i].instruction);
    CHECK(data.examples[i].input == quirk_rows[i].input);
    CHECK(data.examples[i].output == quirk_rows[i].output);
    CHECK(!data.examples[i].is_conversation());
  }
  CHECK(data.examples[3].input.size() == 15);  // a..h with the 7 control characters between
  CHECK(data.examples[8].input.size() == 2);   // the literal "" of two quote characters
}

TEST_CASE("read_instruction_data: JSON lines of conversations and Alpaca objects") {
  const fs::path file = fixtures / "conversations.jsonl";
  const InstructionData data = read_instruction_data(file);
  REQUIRE(data.examples.size() == 4);  // 6 lines, one blank and one of spaces
  const auto& a = data.examples[0];
  REQUIRE(a.is_conversation());
  REQUIRE(a.messages.size() == 3);
  CHECK(a.messages[0].at("role") == "system");
  CHECK(a.messages[2].at("content") == "Air scatters blue light more than red light.");
  CHECK(!data.examples[1].is_conversation());  // {"instruction", "input", "output"} ending in CR
  CHECK(data.examples[1].instruction == "Name a prime number.");
  CHECK(data.examples[1].output == "Seven.");
  REQUIRE(data.examples[2].messages.size() == 4);
  CHECK(data.examples[2].messages[2].at("content") ==
        "Now a na\xC3\xAFve fruit \xF0\x9F\x8D\x8F.");  // raw UTF-8 in the file
  CHECK(data.examples[3].input == "2, 3");  // the last line has no newline

  // A missing "input" is "" (Alpaca's example.get("input", "")); other keys are ignored.
  const fs::path dir = scratch("no-input");
  const auto d = read_instruction_data(write_file(
      dir / "x.json", "[{\"instruction\": \"Hi\", \"output\": \"Yo\", \"id\": 7}]\n"));
  REQUIRE(d.examples.size() == 1);
  CHECK(d.examples[0].input.empty());
  CHECK(read_instruction_data(write_file(dir / "empty.jsonl", "\n  \n")).examples.empty());
}

TEST_CASE("read_instruction_data: a bad record names the file and the record or line") {
  const fs::path dir = scratch("errors");
  struct Case {
    const char* name;
    const char* content;
    const char* message;  // after "<file>"
  };
  const Case cases[] = {
      {"a.json", R"([{"instruction": "a", "input": "", "output": "b"},
 {"instruction": "c", "input": "", "output": "d"},
 {"instruction": "e", "input": "", "output": 3}])",
       ": record 2: field 'output' should be a string but is a number (3)"},
      {"b.json", R"([{"instruction": "a", "input": null, "output": "b"}])",
       ": record 0: field 'input' should be a string but is null"},
      {"c.json", R"([{"instruction": "a", "input": ""}])", ": record 0: field 'output' is missing"},
      {"d.json", R"([{"prompt": "a", "completion": "b"}])",
       ": record 0: has neither 'instruction' (an Alpaca record) nor 'messages' (a conversation)"},
      {"e.json", R"([["a", "b"]])", ": record 0: should be an object but is an array ([\"a\",\"b\"])"},
      {"f.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, "
                  "{\"role\": \"assistant\", \"content\": \"a\"}]}\n\n"
                  "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, "
                  "{\"role\": \"bot\", \"content\": \"a\"}]}\n",
       ":3: messages[1]: role 'bot' is not one of system, user, assistant, tool"},
      {"g.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}]}",
       ":1: the last message should be the assistant's answer (the training target) but its role "
       "is 'user'"},
      {"h.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": 5}, {\"role\": \"assistant\", "
                  "\"content\": \"a\"}]}",
       ":1: messages[0]: field 'content' should be a string but is a number (5)"},
      {"i.jsonl", "{\"messages\": []}", ":1: field 'messages' should be a non-empty array but is an "
                                        "array ([])"},
      {"j.jsonl", "{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": "
                  "\"assistant\", \"content\": \"a\"}]}",
       ":1: the conversation has no user turn"},
  };
  for (const Case& c : cases) {
    CAPTURE(c.name);
    const fs::path file = write_file(dir / c.name, c.content);
    CHECK_THROWS_WITH_AS(read_instruction_data(file), (file.string() + c.message).c_str(),
                         FormatError);
  }
  // A line that is not JSON: the file and line, then the parser's byte offset.
  const fs::path bad = write_file(dir / "k.jsonl", "{\"instruction\": \"a\", \"output\": \"b\"}\n"
                                                   "{\"instruction\": \"a\", \"output\": }\n");
  try {
    read_instruction_data(bad);
    FAIL("no error");
  } catch (const FormatError& e) {
    CHECK(std::string(e.what()).rfind(bad.string() + ":2: invalid JSON at byte", 0) == 0);
  }
  CHECK_THROWS_WITH_AS(read_instruction_data(dir / "missing.json"),
                       ("cannot open '" + (dir / "missing.json").string() + "' for reading").c_str(),
                       IoError);

  // skip_bad_records counts them instead; good records stay in order.
  const fs::path mixed = write_file(
      dir / "mixed.jsonl",
      "{\"instruction\": \"one\", \"output\": \"1\"}\n{\"instruction\": 2, \"output\": \"2\"}\n"
      "not json\n{\"instruction\": \"four\", \"output\": \"4\"}\n");
  const InstructionData kept = read_instruction_data(mixed, {.skip_bad_records = true});
  CHECK(kept.skipped == 2);
  REQUIRE(kept.examples.size() == 2);
  CHECK(kept.examples[1].instruction == "four");
  const InstructionData kept_array =
      read_instruction_data(dir / "a.json", {.skip_bad_records = true});
  CHECK(kept_array.skipped == 1);
  CHECK(kept_array.examples.size() == 2);
}

TEST_CASE("read_instruction_data: ../shared/data's alpaca_data.derived.json, with the README's counts" *
          doctest::skip(!fs::exists(alpaca_file))) {
  const InstructionData data = read_instruction_data(alpaca_file);
  REQUIRE(data.examples.size() == 52002);
  Index empty_inputs = 0, empty_outputs = 0, nooutput = 0, quote_inputs = 0, astral_rows = 0,
        astral_chars = 0;
  std::set<std::string> instructions;
  for (const InstructionExample& ex : data.examples) {
    empty_inputs += ex.input.empty();
    empty_outputs += ex.output.empty();
    nooutput += ex.output.find("<nooutput>") != std::string::npos;
    quote_inputs += ex.input == "\"\"";
    Index astral = 0;  // characters above U+FFFF: 4-byte UTF-8 sequences (lead bytes F0..F4)
    for (const std::string* s : {&ex.instruction, &ex.input, &ex.output})
      astral += std::count_if(s->begin(), s->end(),
                              [](char c) { return (static_cast<unsigned char>(c) & 0xF8) == 0xF0; });
    astral_rows += astral > 0;
    astral_chars += astral;
    instructions.insert(ex.instruction);
  }
  CHECK(empty_inputs == 31928);
  CHECK(empty_outputs == 49);
  CHECK(nooutput == 28);
  CHECK(quote_inputs == 14);
  CHECK(astral_rows == 21);
  CHECK(astral_chars == 39);  // 39 surrogate pairs in the file
  CHECK(instructions.size() == 52002);
  const InstructionExample& controls = data.examples[29819];
  const std::string all = controls.instruction + controls.input + controls.output;
  // The README's "stray U+0001 to U+0007": U+0001..U+0004 and U+0007 (not 5 and 6).
  for (char c = 1; c <= 7; ++c) CHECK((all.find(c) != std::string::npos) == (c <= 4 || c == 7));
  const InstructionExample& vt = data.examples[38224];
  CHECK((vt.instruction + vt.input + vt.output).find('\x0B') != std::string::npos);
  CHECK(data.examples[3913].input == " 8");
  CHECK(data.examples[1842].output.front() == '\n');
}

// ---- templates ----------------------------------------------------------------------------------

TEST_CASE("format_example: Stanford Alpaca's PROMPT_DICT, target = output + EOS, no separator") {
  const PromptContext context{.eos_token = "</s>"};
  const auto t = PromptTemplate::alpaca;
  const PromptText no_input = format_example(quirk_rows[0], t, context);
  CHECK(no_input.prompt == python_format(prompt_no_input, quirk_rows[0].instruction, ""));
  CHECK(no_input.target == quirk_rows[0].output + "</s>");
  // What the model reads: "### Response:" then the output at once.
  CHECK((no_input.prompt + no_input.target).find("### Response:1. Water it") != std::string::npos);
  for (std::size_t i : {1, 7, 8, 9}) {  // input != "": " 12", the two quotes and "N/A" count
    CAPTURE(i);
    const PromptText text = format_example(quirk_rows[i], t, context);
    CHECK(text.prompt == python_format(prompt_input, quirk_rows[i].instruction, quirk_rows[i].input));
    CHECK(text.target == quirk_rows[i].output + "</s>");
  }
  CHECK(format_example(quirk_rows[5], t, context).target == "</s>");  // empty output
  CHECK(format_example(alpaca_row("Use {input} and {0}", "", "x"), t, context).prompt ==
        python_format(prompt_no_input, "Use {input} and {0}", ""));  // braces are text
  CHECK_THROWS_WITH_AS(format_example(quirk_rows[0], t, PromptContext{}),
                       "format_example: the alpaca template appends the EOS token to the target; "
                       "PromptContext::eos_token is empty",
                       ValueError);
}

TEST_CASE("format_example: FourierFT SFT.py's template, always with ### Input:, no EOS") {
  const PromptContext context{.eos_token = "</s>"};  // not used by this template
  for (std::size_t i : {0, 1, 5, 8}) {
    CAPTURE(i);
    const PromptText text = format_example(quirk_rows[i], PromptTemplate::fourierft, context);
    CHECK(text.prompt ==
          python_format(question_prompt, quirk_rows[i].instruction, quirk_rows[i].input));
    CHECK(text.target == answer_prompt + quirk_rows[i].output);
  }
  const PromptText empty_input = format_example(quirk_rows[0], PromptTemplate::fourierft, {});
  CHECK(empty_input.prompt.ends_with("### Input:\n\n\n"));
  CHECK(parse_prompt_template("fourierft") == PromptTemplate::fourierft);
  CHECK(prompt_template_name(PromptTemplate::chat) == "chat");
  CHECK_THROWS_WITH_AS(parse_prompt_template("vicuna"),
                       "unknown prompt template 'vicuna' (expected alpaca, fourierft or chat)",
                       ValueError);
}

TEST_CASE("conversation_prompt: multi-turn alpaca / fourierft joined as FastChat's alpaca conversation") {
  const PromptContext context{.eos_token = "</s>"};
  const std::vector<std::string> one = {"What is 2+2?"}, two = {"What is 2+2?", "And 3+3?"};
  // One turn: the generation prompt of {instruction: question, input: ""}.
  CHECK(conversation_prompt(PromptTemplate::alpaca, one, {}, {}) ==
        python_format(prompt_no_input, "What is 2+2?", ""));
  CHECK(conversation_prompt(PromptTemplate::fourierft, one, {}, {}) ==
        python_format(question_prompt, "What is 2+2?", "") + answer_prompt);
  // Two turns (FastChat conversation.py, "alpaca": the system text once, each answer followed by
  // sep2 = "</s>", the next instruction section right after it).
  CHECK(conversation_prompt(PromptTemplate::alpaca, two, {"4"}, context) ==
        python_format(prompt_no_input, "What is 2+2?", "") + "4</s>" +
            "### Instruction:\nAnd 3+3?\n\n### Response:");
  CHECK(conversation_prompt(PromptTemplate::fourierft, two, {"4"}, context) ==
        python_format(question_prompt, "What is 2+2?", "") + answer_prompt + "4\n\n" +
            "### Instruction:\nAnd 3+3?\n\n### Input:\n\n\n" + answer_prompt);
  CHECK_THROWS_WITH_AS(conversation_prompt(PromptTemplate::alpaca, two, {}, context),
                       "conversation_prompt: needs one answer fewer than user turns, got 2 user "
                       "turns and 0 answers",
                       ValueError);
  CHECK_THROWS_AS(conversation_prompt(PromptTemplate::alpaca, two, {"4"}, {}), ValueError);
  CHECK_THROWS_AS(conversation_prompt(PromptTemplate::chat, one, {}, context), ValueError);

  // Conversation records under these templates: the earlier turns as above, the last answer is
  // the target; a system turn has no place in them.
  const InstructionData data = read_instruction_data(fixtures / "conversations.jsonl");
  const InstructionExample& multi = data.examples[2];
  const PromptText a = format_example(multi, PromptTemplate::alpaca, context);
  CHECK(a.prompt == python_format(prompt_no_input, "Pick a colour.", "") + "Green.</s>" +
                        "### Instruction:\nNow a na\xC3\xAFve fruit \xF0\x9F\x8D\x8F.\n\n" +
                        "### Response:");
  CHECK(a.target == "A green apple.</s>");
  const PromptText f = format_example(multi, PromptTemplate::fourierft, context);
  CHECK(f.prompt == python_format(question_prompt, "Pick a colour.", "") + answer_prompt +
                        "Green.\n\n### Instruction:\nNow a na\xC3\xAFve fruit \xF0\x9F\x8D\x8F." +
                        "\n\n### Input:\n\n\n");
  CHECK(f.target == answer_prompt + "A green apple.");
  CHECK_THROWS_WITH_AS(format_example(data.examples[0], PromptTemplate::alpaca, context),
                       "the alpaca template takes user and assistant turns alternating from the "
                       "user's; message 0 is a 'system' turn (use the chat template for this "
                       "conversation)",
                       FormatError);
  // A single user/assistant pair is the Alpaca record {user, "", assistant}.
  InstructionExample pair;
  pair.messages = Json::parse(R"([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}])");
  for (PromptTemplate t : {PromptTemplate::alpaca, PromptTemplate::fourierft}) {
    const PromptText x = format_example(pair, t, context);
    const PromptText y = format_example(alpaca_row("Hi", "", "Yo"), t, context);
    CHECK(x.prompt == y.prompt);
    CHECK(x.target == y.target);
  }
}

TEST_CASE("format_example / conversation_prompt: the model's chat template (ChatML)") {
  const ChatTemplate chatml = ChatTemplate::load(fixtures / "chatml.jinja");
  const PromptContext context{.chat = &chatml};
  // An Alpaca record: the user turn is instruction + "\n\n" + input.
  const PromptText text = format_example(quirk_rows[1], PromptTemplate::chat, context);
  CHECK(text.prompt == "<|im_start|>user\n" + quirk_rows[1].instruction + "\n\n" +
                           quirk_rows[1].input + "<|im_end|>\n<|im_start|>assistant\n");
  CHECK(text.target == quirk_rows[1].output + "<|im_end|>\n");
  CHECK(format_example(quirk_rows[0], PromptTemplate::chat, context).prompt ==
        "<|im_start|>user\n" + quirk_rows[0].instruction + "<|im_end|>\n<|im_start|>assistant\n");
  // A conversation with a system turn; only the last answer is the target.
  const InstructionData data = read_instruction_data(fixtures / "conversations.jsonl");
  const PromptText sys = format_example(data.examples[0], PromptTemplate::chat, context);
  CHECK(sys.prompt ==
        "<|im_start|>system\nYou answer in one sentence.<|im_end|>\n<|im_start|>user\nWhy is the "
        "sky blue?<|im_end|>\n<|im_start|>assistant\n");
  CHECK(sys.target == "Air scatters blue light more than red light.<|im_end|>\n");
  CHECK(conversation_prompt(PromptTemplate::chat, {"Hi", "Again"}, {"Yo"}, context) ==
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n"
        "<|im_start|>user\nAgain<|im_end|>\n<|im_start|>assistant\n");
  CHECK_THROWS_AS(format_example(quirk_rows[0], PromptTemplate::chat, {}), ValueError);

  // A template whose generation prompt is not a prefix of the rendered answer.
  const ChatTemplate odd = ChatTemplate::parse(
      "{% for m in messages %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}>>{% endif %}",
      "odd.jinja");
  const PromptContext odd_context{.chat = &odd};
  CHECK_THROWS_WITH_AS(format_example(quirk_rows[6], PromptTemplate::chat, odd_context),
                       "odd.jinja: the conversation rendered without its last assistant turn (with "
                       "add_generation_prompt) is not a prefix of the whole conversation rendered, "
                       "so the answer cannot be split from the prompt",
                       FormatError);
}

TEST_CASE("format_example: Qwen3's chat template with enable_thinking=false" *
          doctest::skip(!fs::exists(fs::path(FOURIERFT_SHARED_DATA_DIR) / "tokenizers/qwen3"))) {
  const ChatTemplate qwen3 =
      ChatTemplate::load(fs::path(FOURIERFT_SHARED_DATA_DIR) / "tokenizers/qwen3/tokenizer_config.json");
  const PromptContext context{.chat = &qwen3, .chat_variables = {{"enable_thinking", false}}};
  const PromptText text = format_example(alpaca_row("Name a colour.", "", "Blue."),
                                         PromptTemplate::chat, context);
  // Qwen3's template: the generation prompt opens an empty <think> block when thinking is off, and
  // the last assistant turn after the user's query is written with the same (empty) block.
  CHECK(text.prompt == "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"
                       "<think>\n\n</think>\n\n");
  CHECK(text.target == "Blue.<|im_end|>\n");
}

// ---- tokenization ---------------------------------------------------------------------------------

TEST_CASE("tokenize_example: Alpaca's masks on the Mistral tokenizer (BOS added, prompt masked)") {
  const HfTokenizer tokenizer = HfTokenizer::load(mistral_dir);
  const PromptContext context{.eos_token = "</s>"};
  for (PromptTemplate t : {PromptTemplate::alpaca, PromptTemplate::fourierft}) {
    for (std::size_t i : {0, 1, 2, 3, 5, 7}) {
      CAPTURE(i);
      const PromptText text = format_example(quirk_rows[i], t, context);
      const TokenizedExample ex = tokenize_example(text, tokenizer, 512);
      const auto full = tokenizer.encode_for_model(text.prompt + text.target);
      const auto prompt = tokenizer.encode_for_model(text.prompt);
      CHECK(ex.input_ids == full);
      REQUIRE(ex.labels.size() == ex.input_ids.size());
      CHECK(ex.input_ids.front() == 1);  // <s> from add_bos_token
      const auto masked = std::count(ex.labels.begin(), ex.labels.end(), ignore_index);
      CHECK(masked == static_cast<std::ptrdiff_t>(prompt.size()));
      for (std::size_t k = 0; k < ex.labels.size(); ++k) {
        if (k < prompt.size()) CHECK(ex.labels[k] == -100);
        else CHECK(ex.labels[k] == ex.input_ids[k]);
      }
      // The Alpaca target ends with </s> as one special id; FourierFT's has no EOS.
      CHECK((ex.input_ids.back() == 2) == (t == PromptTemplate::alpaca));
    }
  }
}

TEST_CASE("tokenize_example: truncation to max_len keeps the BOS and cuts from the end") {
  const HfTokenizer tokenizer = HfTokenizer::load(mistral_dir);
  const PromptText text = format_example(quirk_rows[1], PromptTemplate::alpaca, {.eos_token = "</s>"});
  const auto full = tokenizer.encode_for_model(text.prompt + text.target);
  const auto prompt_len = static_cast<Index>(tokenizer.encode_for_model(text.prompt).size());
  REQUIRE(static_cast<Index>(full.size()) > prompt_len + 3);
  const TokenizedExample cut = tokenize_example(text, tokenizer, prompt_len + 3);
  CHECK(cut.input_ids == std::vector<std::int64_t>(full.begin(), full.begin() + prompt_len + 3));
  CHECK(std::count(cut.labels.begin(), cut.labels.end(), ignore_index) == prompt_len);
  // A prompt longer than max_len: every label masked, as model_max_length leaves it.
  const TokenizedExample none = tokenize_example(text, tokenizer, 5);
  CHECK(none.input_ids.size() == 5);
  CHECK(none.input_ids.front() == 1);
  CHECK(std::all_of(none.labels.begin(), none.labels.end(), [](auto l) { return l == -100; }));
  CHECK_THROWS_AS(tokenize_example(text, tokenizer, 0), ValueError);
  // encode_for_model here is BOS + encode (add_bos_token true, add_eos_token false).
  CHECK(concat_ids({1}, tokenizer.encode(text.prompt + text.target)) == full);
}

TEST_CASE("tokenize_example: a chat template's text gets no second BOS (apply_chat_template's rule)") {
  const HfTokenizer tokenizer = HfTokenizer::load(mistral_dir);
  // The template writes "<s>" itself, as Llama 2's and Mistral's do with {{ bos_token }}.
  const ChatTemplate chat = ChatTemplate::parse(
      "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} "
      "[/INST]{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}",
      "inst.jinja");
  const PromptContext context{.chat = &chat,
                              .chat_variables = {{"bos_token", "<s>"}, {"eos_token", "</s>"}}};
  const PromptText text = format_example(alpaca_row("Hi", "", "Hello."), PromptTemplate::chat, context);
  CHECK(text.prompt == "<s>[INST] Hi [/INST]");
  CHECK(text.target == "Hello.</s>");
  CHECK(!text.add_special_tokens);
  CHECK(template_writes_special_tokens(PromptTemplate::chat));
  CHECK(!template_writes_special_tokens(PromptTemplate::alpaca));
  const TokenizedExample ex = tokenize_example(text, tokenizer, 512);
  CHECK(ex.input_ids == tokenizer.encode(text.prompt + text.target));
  CHECK(std::count(ex.input_ids.begin(), ex.input_ids.end(), 1) == 1);  // one <s>
  CHECK(ex.input_ids.back() == 2);
  CHECK(std::count(ex.labels.begin(), ex.labels.end(), ignore_index) ==
        static_cast<std::ptrdiff_t>(tokenizer.encode(text.prompt).size()));
}

// ---- FastChat questions and answers ----------------------------------------------------------------

TEST_CASE("read_bench_questions: FastChat's MT-Bench (2 turns) and Vicuna (1 turn) files") {
  const auto mt = read_bench_questions(bench_dir / "mt_bench" / "question.jsonl");
  REQUIRE(mt.size() == 80);
  const char* blocks[] = {"writing", "roleplay", "reasoning", "math",
                          "coding",  "extraction", "stem",    "humanities"};
  for (std::size_t i = 0; i < mt.size(); ++i) {
    CAPTURE(i);
    CHECK(mt[i].question_id == static_cast<std::int64_t>(81 + i));
    CHECK(mt[i].category == blocks[i / 10]);
    CHECK(mt[i].turns.size() == 2);
  }
  CHECK(mt[0].turns[0] == "Compose an engaging travel blog post about a recent trip to Hawaii, "
                          "highlighting cultural experiences and must-see attractions.");
  CHECK(mt[0].turns[1] == "Rewrite your previous response. Start every sentence with the letter A.");
  const auto vicuna = read_bench_questions(bench_dir / "vicuna_bench" / "question.jsonl");
  REQUIRE(vicuna.size() == 80);
  std::map<std::string, int> per_category;
  for (const BenchQuestion& q : vicuna) {
    CHECK(q.turns.size() == 1);
    ++per_category[q.category];
  }
  CHECK(vicuna[0].turns[0] == "How can I improve my time management skills?");
  CHECK(per_category.size() == 9);
  CHECK(per_category["coding"] == 7);
  CHECK(per_category["math"] == 3);
  CHECK(testing::read_file(bench_dir / "mt_bench" / "question.jsonl").size() == 48929);
  CHECK(testing::read_file(bench_dir / "vicuna_bench" / "question.jsonl").size() == 13125);

  const fs::path dir = scratch("bench");
  struct Case {
    const char* content;
    const char* message;
  };
  const Case cases[] = {
      {"{\"question_id\": 1, \"category\": \"x\"}\n", ":1: field 'turns' is missing"},
      {"\n{\"question_id\": \"1\", \"category\": \"x\", \"turns\": [\"q\"]}\n",
       ":2: field 'question_id' should be an integer but is a string (\"1\")"},
      {"{\"question_id\": 1, \"category\": \"x\", \"turns\": []}\n",
       ":1: field 'turns' should be a non-empty array of strings but is an array ([])"},
      {"{\"question_id\": 1, \"category\": \"x\", \"turns\": [\"q\", 2]}\n",
       ":1: turns[1] should be a string but is a number (2)"},
      {"{\"question_id\": 5, \"category\": \"x\", \"turns\": [\"q\"]}\n"
       "{\"question_id\": 5, \"category\": \"y\", \"turns\": [\"r\"]}\n",
       ":2: question_id 5 repeats line 1"},
  };
  for (const Case& c : cases) {
    const fs::path file = write_file(dir / "q.jsonl", c.content);
    CHECK_THROWS_WITH_AS(read_bench_questions(file), (file.string() + c.message).c_str(),
                         FormatError);
  }
}

TEST_CASE("fastchat_temperature: common.py's temperature_config, 0.7 otherwise") {
  const std::map<std::string, double> expected = {
      {"writing", 0.7}, {"roleplay", 0.7}, {"extraction", 0.0}, {"math", 0.0},
      {"coding", 0.0},  {"reasoning", 0.0}, {"stem", 0.1},      {"humanities", 0.1},
      {"arena-hard-200", 0.0}, {"generic", 0.7}, {"fermi", 0.7}, {"common-sense", 0.7}};
  for (const auto& [category, t] : expected) {
    CAPTURE(category);
    CHECK(fastchat_temperature(category) == t);
  }
}

TEST_CASE("model_answer_line: json.dumps of FastChat's ans_json, keys in its order") {
  const ModelAnswer answer{.question_id = 81,
                           .answer_id = "x",
                           .model_id = "m",
                           .turns = {"caf\xC3\xA9 \xF0\x9F\x98\x80", "line\nbreak \"q\" \x7F"},
                           .tstamp = 1700000000.5};
  // Python: json.dumps({"question_id": 81, "answer_id": "x", "model_id": "m", "choices":
  //   [{"index": 0, "turns": ["café 😀", 'line\nbreak "q" \x7f']}], "tstamp": 1700000000.5})
  CHECK(model_answer_line(answer) ==
        "{\"question_id\": 81, \"answer_id\": \"x\", \"model_id\": \"m\", \"choices\": "
        "[{\"index\": 0, \"turns\": [\"caf\\u00e9 \\ud83d\\ude00\", \"line\\nbreak \\\"q\\\" "
        "\\u007f\"]}], \"tstamp\": 1700000000.5}\n");
  // Parsed back: the schema of FastChat's model_answer files (as reference_answer/gpt-4.jsonl).
  const Json j = parse_json(model_answer_line(answer), "answer");
  CHECK(j.size() == 5);
  CHECK(j.at("question_id").is_number_integer());
  CHECK(j.at("answer_id").is_string());
  CHECK(j.at("model_id") == "m");
  REQUIRE(j.at("choices").is_array());
  REQUIRE(j.at("choices").size() == 1);
  CHECK(j.at("choices")[0].size() == 2);
  CHECK(j.at("choices")[0].at("index") == 0);
  CHECK(j.at("choices")[0].at("turns") == Json(answer.turns));
  CHECK(j.at("tstamp").is_number_float());
  const OrderedJson ordered = model_answer_json(answer);
  std::vector<std::string> keys;
  for (const auto& item : ordered.items()) keys.push_back(item.key());
  CHECK(keys == std::vector<std::string>{"question_id", "answer_id", "model_id", "choices", "tstamp"});
  CHECK(Json(ordered) == j);
}

TEST_CASE("random_answer_id: 22 characters of shortuuid's alphabet encoding a version-4 UUID") {
  const std::string alphabet = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
  REQUIRE(alphabet.size() == 57);
  std::set<std::string> seen;
  for (std::uint64_t seed = 0; seed < 200; ++seed) {
    const std::string id = random_answer_id(seed);
    REQUIRE(id.size() == 22);
    unsigned __int128 number = 0;
    for (char c : id) {
      const auto digit = alphabet.find(c);
      REQUIRE(digit != std::string::npos);
      number = number * 57 + digit;  // most significant digit first
    }
    const auto high = static_cast<std::uint64_t>(number >> 64), low = static_cast<std::uint64_t>(number);
    CHECK(((high >> 12) & 0xF) == 4);  // uuid4's version nibble
    CHECK((low >> 62) == 2);           // RFC 4122 variant
    seen.insert(id);
  }
  CHECK(seen.size() == 200);
  CHECK(random_answer_id(7) == random_answer_id(7));
}

TEST_CASE("read_special_token: a string or an AddedToken object, else an error naming the file") {
  CHECK(read_special_token(mistral_dir / "tokenizer_config.json", "eos_token") == "</s>");
  CHECK(read_special_token(mistral_dir, "bos_token") == "<s>");
  CHECK(read_special_token(fixtures / "tokenizer_config.json", "eos_token") == "</s>");
  CHECK_THROWS_WITH_AS(read_special_token(mistral_dir / "tokenizer_config.json", "pad_token"),
                       ((mistral_dir / "tokenizer_config.json").string() +
                        ": key 'pad_token' is missing or null")
                           .c_str(),
                       FormatError);
}

// ---- the CLI --------------------------------------------------------------------------------------

#ifdef FOURIERFT_CLI_PATH
TEST_CASE("CLI: fourierft prompt prints a record's prompt or a rendered conversation, byte for byte") {
  const fs::path dir = scratch("cli");
  const std::string cli = FOURIERFT_CLI_PATH;
  const std::string data = (fixtures / "alpaca_quirks.json").string();
  const auto run = [&](const std::vector<std::string>& args) {
    return testing::run(cli, testing::concat({"prompt"}, args), dir / "out.txt");
  };

  testing::Run r = run({"--template", "alpaca", "--data", data, "--index", "1"});
  CHECK(r.status == 0);
  CHECK(r.output == python_format(prompt_input, quirk_rows[1].instruction, quirk_rows[1].input));
  r = run({"--template", "alpaca", "--data", data, "--index", "1", "--with-target",
           "--tokenizer-config", (mistral_dir / "tokenizer_config.json").string()});
  CHECK(r.status == 0);
  CHECK(r.output == python_format(prompt_input, quirk_rows[1].instruction, quirk_rows[1].input) +
                        quirk_rows[1].output + "</s>");
  r = run({"--template", "alpaca", "--data", data, "--index", "5", "--with-target",
           "--tokenizer-config", (fixtures / "tokenizer_config.json").string()});
  CHECK(r.output == python_format(prompt_no_input, quirk_rows[5].instruction, "") + "</s>");
  r = run({"--template", "fourierft", "--data", data, "--index", "0", "--with-target"});
  CHECK(r.status == 0);
  CHECK(r.output == python_format(question_prompt, quirk_rows[0].instruction, "") + answer_prompt +
                        quirk_rows[0].output);
  r = run({"--template", "chat", "--chat-template", (fixtures / "chatml.jinja").string(), "--data",
           (fixtures / "conversations.jsonl").string(), "--index", "1", "--with-target"});
  CHECK(r.status == 0);
  CHECK(r.output == "<|im_start|>user\nName a prime number.<|im_end|>\n<|im_start|>assistant\n"
                    "Seven.<|im_end|>\n");

  // A conversation through a tokenizer_config.json's template: its bos/eos, extra variables
  // (JSON when they parse: false, 3; else strings).
  const std::string messages = (fixtures / "messages.json").string(),
                    config = (fixtures / "tokenizer_config.json").string();
  r = run({"--chat-template", config, "--messages", messages, "--add-generation-prompt", "--var",
           "greeting=Hello", "--var", "count=3", "--var=verbose=false"});
  CHECK(r.status == 0);
  CHECK(r.output == "<s>[system] Be brief.\n[user] Hi there\n[assistant] Hello x4 (brief)");
  r = run({"--chat-template", config, "--messages", messages, "--add-generation-prompt", "--var",
           "verbose=true", "--var", "greeting=\"3\""});
  CHECK(r.output == "<s>[system] Be brief.\n[user] Hi there\n[assistant] 3");
  r = run({"--chat-template", config, "--messages", messages});
  CHECK(r.output == "<s>[system] Be brief.\n[user] Hi there\n");
  r = run({"--chat-template", (fixtures / "chatml.jinja").string(), "--messages", messages,
           "--add-generation-prompt"});
  CHECK(r.output == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi "
                    "there<|im_end|>\n<|im_start|>assistant\n");

  // Errors: one line naming the file, the count, the missing option; non-zero exit.
  r = run({"--template", "alpaca", "--data", data, "--index", "11"});
  CHECK(r.status == 1);
  CHECK(r.output == "fourierft prompt: --index 11 is out of range: " + data +
                        " has 11 records (0 to 10)\n");
  r = run({"--template", "alpaca", "--data", (dir / "none.json").string(), "--index", "0"});
  CHECK(r.status == 1);
  CHECK(r.output.find("cannot open '" + (dir / "none.json").string() + "'") != std::string::npos);
  r = run({"--template", "alpaca", "--data", data, "--index", "0", "--with-target"});
  CHECK(r.status == 1);
  CHECK(r.output.find("--tokenizer-config") != std::string::npos);
  r = run({"--chat-template", (dir / "none.jinja").string(), "--messages", messages});
  CHECK(r.status == 1);
  CHECK(r.output.find((dir / "none.jinja").string()) != std::string::npos);
  r = run({"--template", "alpaca", "--data", data, "--index", "0", "--bogus", "1"});
  CHECK(r.status == 1);
  CHECK(r.output.find("unknown option --bogus") != std::string::npos);
  r = run({"--help"});
  CHECK(r.status == 0);
  CHECK(r.output.find("--chat-template") != std::string::npos);
}
#endif
