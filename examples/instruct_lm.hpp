// examples/instruct_lm.hpp — instruction tuning of a LLaMA-family causal LM: the seeded train /
// held-out split, right-padded batches, the response loss, and FastChat-style answers to bench questions.
// Shared by finetune_instruct and finetune_instruct_demo.
#pragma once

// The data side (records, prompt templates, tokenized examples with labels -100 over the prompt,
// bench questions, answer lines) is io/instruct.hpp; this file puts it through the model:
//   split_examples        the official code's random 80/20 split, seeded
//   tokenize_examples     template + tokenizer + max_len -> input_ids / labels per example
//   make_instruct_batch   right padding (Stanford Alpaca's collator), targets shifted as HF's loss
//   response_loss         mean cross-entropy over the response tokens of a batch
//   held_out_loss         the same over a whole set, weighted by response tokens
//   answer_questions      FastChat's gen_model_answer.py: each turn generated after the earlier
//                         answers, per-category temperature, stop strings, cleanup, answer lines

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/io/hf_tokenizer.hpp"
#include "fourierft/io/instruct.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/metrics/text.hpp"
#include "fourierft/models/generation.hpp"
#include "fourierft/models/gpt2.hpp"  // causal_lm_targets
#include "fourierft/models/llama.hpp"
#include "fourierft/peft/targets.hpp"
#include "fourierft/train/log.hpp"
#include "fourierft/train/seeds.hpp"
#include "fourierft/train/signals.hpp"
#include "fourierft/util/atomic_file.hpp"

namespace fourierft::examples {

namespace fs = std::filesystem;
using InstructModel = models::LlamaForCausalLM<float>;

// ---- split --------------------------------------------------------------------------------------
// Row indices of the examples used for training and for the held-out loss.
struct InstructSplit {
  std::vector<Index> train, held_out;
};

// The official code's `train_test_split(train_size=0.8)` with a seed: 0..n-1 shuffled by
// split_seed (its own stream, independent of the training order), the first ceil(eval_fraction · n)
// held out, the rest trained on (both in shuffled order; the epochs reshuffle the training rows).
inline InstructSplit split_examples(Index n, double eval_fraction, std::uint64_t split_seed) {
  check(eval_fraction >= 0 && eval_fraction < 1, "option --eval-split must be in [0, 1), got ",
        eval_fraction);
  const std::vector<Index> order = train::epoch_order(n, train::mix_seed(split_seed, 0x5B117), 0);
  const auto held = static_cast<Index>(std::ceil(eval_fraction * static_cast<double>(n) - 1e-9));
  InstructSplit split;
  split.held_out.assign(order.begin(), order.begin() + held);
  split.train.assign(order.begin() + held, order.end());
  return split;
}

// ---- tokenized examples -------------------------------------------------------------------------
struct InstructExamples {
  std::vector<io::TokenizedExample> items;
  Index at_max_len = 0;  // examples cut to max_len tokens
  Index dropped = 0;     // examples left without a response token after the cut (no loss to take)
};

// Response tokens of an example: the positions t >= 1 whose label is kept (position 0 predicts
// nothing after HF's shift).
inline Index response_tokens(const io::TokenizedExample& e) {
  Index n = 0;
  for (std::size_t t = 1; t < e.labels.size(); ++t) n += e.labels[t] != -100;
  return n;
}

// The examples `rows` of `data` through the template and the tokenizer (Stanford Alpaca's
// tokenization, io::tokenize_example), cut to max_len tokens.
inline InstructExamples tokenize_examples(const io::InstructionData& data,
                                          const std::vector<Index>& rows,
                                          io::PromptTemplate prompt_template,
                                          const io::PromptContext& context,
                                          const io::HfTokenizer& tokenizer, Index max_len) {
  InstructExamples out;
  for (Index r : rows) {
    const io::InstructionExample& example = data.examples[static_cast<std::size_t>(r)];
    io::TokenizedExample t = io::tokenize_example(
        io::format_example(example, prompt_template, context), tokenizer, max_len);
    out.at_max_len += static_cast<Index>(t.input_ids.size()) >= max_len;
    if (response_tokens(t) == 0) {
      ++out.dropped;
      continue;
    }
    out.items.push_back(std::move(t));
  }
  return out;
}

// ---- batches and the loss -----------------------------------------------------------------------
// B examples right-padded to the longest, T tokens:
//   input_ids: (B, T), pad_id after each example's end
//   targets:   (B·T), targets[b·T + t] = labels[b][t + 1]  (-100 over prompts, pads and the last t)
struct InstructBatch {
  Tensor<std::int64_t> input_ids;
  std::vector<std::int64_t> targets;
  Index rows = 0;
  Index tokens = 0;           // real (unpadded) tokens
  Index response_tokens = 0;  // targets kept
};

inline InstructBatch make_instruct_batch(const std::vector<io::TokenizedExample>& examples,
                                         std::span<const Index> rows, std::int64_t pad_id) {
  Index T = 1;
  for (Index r : rows)
    T = std::max(T, static_cast<Index>(examples[static_cast<std::size_t>(r)].input_ids.size()));
  const auto B = static_cast<Index>(rows.size());
  InstructBatch batch;
  batch.rows = B;
  batch.input_ids = Tensor<std::int64_t>::full({B, T}, pad_id);
  Tensor<std::int64_t> labels = Tensor<std::int64_t>::full({B, T}, -100);
  for (Index b = 0; b < B; ++b) {
    const io::TokenizedExample& e = examples[static_cast<std::size_t>(rows[b])];
    std::copy(e.input_ids.begin(), e.input_ids.end(), batch.input_ids.ptr() + b * T);
    std::copy(e.labels.begin(), e.labels.end(), labels.ptr() + b * T);
    batch.tokens += static_cast<Index>(e.input_ids.size());
  }
  batch.targets = models::causal_lm_targets(labels);
  for (std::int64_t t : batch.targets) batch.response_tokens += t != -100;
  return batch;
}

// HF's causal-LM loss of the batch: the mean cross-entropy over its response tokens. Right padding
// needs no attention mask (a causal query never sees the pads after it); the head and the
// cross-entropy run fused, a chunk of rows at a time (LlamaForCausalLM::lm_loss).
inline Var<float> response_loss(Tape<float>& tape, InstructModel& model, const InstructBatch& batch) {
  const Var<float> hidden = model.model.forward(tape, batch.input_ids);
  return model.lm_loss(tape, hidden, batch.targets, {.ignore_index = -100});
}

// The mean response-token loss over `examples` (no gradients), in batches of batch_size in order:
// Σ batch loss · its response tokens / Σ response tokens.
inline double held_out_loss(InstructModel& model, const std::vector<io::TokenizedExample>& examples,
                            Index batch_size, std::int64_t pad_id) {
  model.eval();
  Tape<float> tape;
  NoGradScope<float> no_grad(tape);
  double sum = 0, tokens = 0;
  const auto N = static_cast<Index>(examples.size());
  for (Index start = 0; start < N; start += batch_size) {
    std::vector<Index> rows;
    for (Index i = start; i < std::min(N, start + batch_size); ++i) rows.push_back(i);
    const InstructBatch batch = make_instruct_batch(examples, rows, pad_id);
    sum += response_loss(tape, model, batch).item() * static_cast<double>(batch.response_tokens);
    tokens += static_cast<double>(batch.response_tokens);
    tape.clear();
  }
  return tokens > 0 ? sum / tokens : NAN;
}

// ---- adapter targets ----------------------------------------------------------------------------
// "q,v" -> q_proj, v_proj; the LLaMA projections by their short names (q k v o gate up down) or in
// full; "all-linear": every Linear but lm_head (PEFT's shorthand, Table 4's † LoRA rows).
inline peft::TargetSpec instruct_targets(const std::string& list) {
  if (list == peft::all_linear) return {{}, std::string(peft::all_linear)};
  peft::TargetSpec spec;
  std::stringstream in(list);
  for (std::string name; std::getline(in, name, ',');) {
    check(!name.empty(), "option --lora-targets: an empty name in '", list, "'");
    const bool short_name = name == "q" || name == "k" || name == "v" || name == "o" ||
                            name == "gate" || name == "up" || name == "down";
    spec.names.push_back(short_name ? name + "_proj" : name);
  }
  check(!spec.names.empty(), "option --lora-targets expects a list such as q,v or all-linear");
  return spec;
}

// ---- answers ------------------------------------------------------------------------------------
// FastChat's conversation stop_str for the prompt templates: generation ends at EOS, or when the
// model starts a new section of the Alpaca layout (it was trained on one response per prompt; the
// fourierft template has no EOS in its targets, so this is its only stop). Chat templates end at
// EOS (their end-of-turn token is the tokenizer's eos_token).
inline std::vector<std::string> template_stop_strings(io::PromptTemplate prompt_template) {
  if (prompt_template == io::PromptTemplate::chat) return {};
  return {"### Instruction:", "### Input:", "### Response:",
          "Below is an instruction that describes a task"};
}

struct AnswerSettings {
  io::PromptTemplate prompt_template = io::PromptTemplate::alpaca;
  const io::PromptContext* context = nullptr;
  std::string model_id;
  Index max_new_tokens = 1024;  // FastChat's --max-new-token
  Index limit = 0;              // answer the first `limit` questions only (0: all)
  std::uint64_t seed = 0;       // sampling and answer ids
};

namespace detail {
struct StopAtText {};  // thrown from on_token to end a generation at a stop string
}  // namespace detail

// One model turn as FastChat's get_model_answers makes it: the prompt encoded with the tokenizer's
// BOS rule (plain text), or as it is (a chat template's text writes its own special tokens:
// special_tokens_written); greedy below temperature 1e-4, else sampling (HF's defaults top-k 50, top-p 1); cut at
// the first EOS, decoded with special tokens, cut at the first stop string found after position 0,
// every special-token string removed, stripped.
inline std::string generate_answer(InstructModel& model, const io::HfTokenizer& tokenizer,
                                   const std::string& prompt, double temperature,
                                   const std::vector<std::string>& stop_strings,
                                   Index max_new_tokens, std::uint64_t seed,
                                   bool special_tokens_written = false) {
  const std::int64_t eos = *tokenizer.special_tokens().eos;
  models::GenerationConfig config;
  config.max_new_tokens = max_new_tokens;
  config.do_sample = temperature >= 1e-4;
  config.temperature = config.do_sample ? temperature : 1.0;
  config.eos_token_id = config.pad_token_id = eos;
  config.seed = seed;
  auto first_stop = [&](const std::string& text) {
    std::size_t cut = std::string::npos;
    for (const std::string& s : stop_strings)
      if (const std::size_t at = text.find(s); at != std::string::npos && at > 0) cut = std::min(cut, at);
    return cut;
  };
  std::vector<std::int64_t> tokens;
  config.on_token = [&](Index, std::int64_t token) {
    tokens.push_back(token);
    // Stop generating once a stop string is complete: the rest would be cut anyway.
    if (token != eos && !stop_strings.empty() &&
        first_stop(tokenizer.decode(tokens)) != std::string::npos)
      throw detail::StopAtText{};
  };
  model.eval();
  try {
    models::generate(model, {special_tokens_written ? tokenizer.encode(prompt)
                                                    : tokenizer.encode_for_model(prompt)},
                     config);
  } catch (const detail::StopAtText&) {
  }
  if (const auto at = std::find(tokens.begin(), tokens.end(), eos); at != tokens.end())
    tokens.erase(at, tokens.end());
  std::string text = tokenizer.decode(tokens);
  if (const std::size_t cut = first_stop(text); cut != std::string::npos) text.resize(cut);
  const io::SpecialTokens& specials = tokenizer.special_tokens();
  for (const auto& id : {specials.bos, specials.eos, specials.unk, specials.pad}) {
    if (!id) continue;
    const std::string& special = tokenizer.id_to_token(*id);
    for (std::size_t at; !special.empty() && (at = text.find(special)) != std::string::npos;)
      text.erase(at, special.size());
  }
  return metrics::text::strip(text);
}

// Answers every question (or the first settings.limit) turn by turn, each turn's prompt the
// template's conversation of the earlier turns and answers; temperature by category
// (io::fastchat_temperature). After each question `out_file` is rewritten atomically with the
// answers so far (one FastChat model_answer line each), so an interrupted run keeps them; a
// Ctrl-C stops between questions. Prints one line per question. Returns the answers.
inline std::vector<io::ModelAnswer> answer_questions(
    InstructModel& model, const io::HfTokenizer& tokenizer,
    const std::vector<io::BenchQuestion>& questions, const AnswerSettings& settings,
    const fs::path& out_file, const train::InterruptFlag* interrupt = nullptr) {
  check(settings.context != nullptr, "answer_questions: no prompt context");
  if (out_file.has_parent_path()) fs::create_directories(out_file.parent_path());
  const std::vector<std::string> stops = template_stop_strings(settings.prompt_template);
  const std::size_t count = settings.limit > 0 ? std::min(questions.size(),
                                                          static_cast<std::size_t>(settings.limit))
                                               : questions.size();
  std::vector<io::ModelAnswer> answers;
  const auto start = std::chrono::steady_clock::now();
  for (std::size_t q = 0; q < count; ++q) {
    if (interrupt != nullptr && interrupt->requested()) break;
    const io::BenchQuestion& question = questions[q];
    const double temperature = io::fastchat_temperature(question.category);
    io::ModelAnswer answer{.question_id = question.question_id, .answer_id = {},
                           .model_id = settings.model_id, .turns = {}, .tstamp = 0};
    std::vector<std::string> user_turns;
    for (std::size_t turn = 0; turn < question.turns.size(); ++turn) {
      user_turns.push_back(question.turns[turn]);
      const std::string prompt = io::conversation_prompt(settings.prompt_template, user_turns,
                                                         answer.turns, *settings.context);
      answer.turns.push_back(generate_answer(
          model, tokenizer, prompt, temperature, stops, settings.max_new_tokens,
          train::mix_seed(settings.seed, static_cast<std::uint64_t>(question.question_id), turn),
          io::template_writes_special_tokens(settings.prompt_template)));
    }
    answer.answer_id = io::random_answer_id(train::mix_seed(
        settings.seed, static_cast<std::uint64_t>(question.question_id),
        std::hash<std::string>{}(settings.model_id)));
    answer.tstamp = std::chrono::duration<double>(
                        std::chrono::system_clock::now().time_since_epoch()).count();
    answers.push_back(std::move(answer));
    util::write_file_atomically(out_file, [&](std::ostream& out) {
      for (const io::ModelAnswer& a : answers) out << io::model_answer_line(a);
    });
    const double elapsed = train::seconds_since(start);
    std::printf("answered %zu/%zu | question %lld (%s, temperature %.1f, %zu turns) | %.1f s per "
                "question | ETA %s\n", answers.size(), count,
                static_cast<long long>(question.question_id), question.category.c_str(), temperature,
                question.turns.size(), elapsed / static_cast<double>(answers.size()),
                train::format_duration(elapsed / static_cast<double>(answers.size()) *
                                       static_cast<double>(count - answers.size())).c_str());
    std::fflush(stdout);
  }
  return answers;
}

}  // namespace fourierft::examples
