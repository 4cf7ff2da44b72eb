// finetune_instruct — instruction-tunes any LLaMA-family checkpoint (Llama 1/2/3, TinyLlama, Mistral,
// Qwen2/3) on Alpaca-format data with FourierFT, LoRA or the other methods, reports the held-out
// response loss, and writes answers to MT-Bench / Vicuna questions in FastChat's format for judging.
//
// What it does. Loads a Hugging Face folder (config.json, model.safetensors shards, tokenizer.json +
// tokenizer_config.json; BF16 files stay BF16 in memory: --frozen-dtype), reads the data (an Alpaca
// JSON array, or JSON lines of {"messages": [...]} or Alpaca objects), holds out a seeded 20% (the
// official code's 80/20 split), turns each record into prompt + response with --template (Stanford
// Alpaca's PROMPT_DICT, the FourierFT code's QUESTION_PROMPT, or the model's own chat template) and
// trains the adapter with AdamW on the response tokens only (labels -100 over the prompt, right
// padding, HF's causal-LM loss = the mean over the response tokens of a batch). It reports the
// held-out loss before training and after each epoch, and saves the adapter in PEFT's format.
// With --answer it then answers a FastChat question file: each turn generated after the earlier
// answers through the same template, FastChat's per-category temperature, 1024 new tokens at most,
// stopped at EOS (and the template's stop strings), decoded and stripped.
//
// Paper setting. Table 4 of Gao et al. (ICML 2024): LLaMA-1/2 7B/13B on Alpaca, FourierFT n = 1000
// on q_proj and v_proj, scaling 300. --preset llama2-7b-alpaca (default) / llama2-13b-alpaca /
// llama1-7b-alpaca / llama1-13b-alpaca are the official run scripts (batch 1, 5% warmup, linear
// schedule, clip 1, max length 512); the *-lora64 and *-lora64-all presets are the LoRA r = 64
// baselines on q,v and on every linear layer (train/presets.hpp says which values are assumed).
//
// Run (docs/examples/finetune_instruct.md has the real-checkpoint walkthrough and the judging):
//   finetune_instruct --model Llama-2-7b-hf --data alpaca_data.json --template fourierft
//       --checkpointing --out out/llama2-7b --answer mt_bench/question.jsonl
//   finetune_instruct --model DIR --adapter out/llama2-7b/adapter --eval-only --data FILE
//       --answer vicuna_bench/question.jsonl --answers-out model_answer/fourierft.jsonl
// Options: --help. Ctrl-C saves the state; the same command with --resume continues.
//
// Output. Settings, the checkpoint report, trainable / total parameters and adapter bytes, the data
// split, step lines ("step 120 | loss 1.2132 | lr 5.0e-02 | 8300 ms"), a held-out loss line per
// epoch, one line per answered question. In --out: log.jsonl, adapter/ (PEFT format), results.json
// (held-out loss before / after, trainable parameters, adapter bytes, seconds), the answer file,
// merged/ on request; with --eval-only, eval.json.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "fourierft/dist/world.hpp"
#include "fourierft/fourierft.hpp"
#include "fourierft/io/hf_tokenizer.hpp"
#include "fourierft/io/instruct.hpp"
#include "fourierft/models/llama.hpp"
#include "fourierft/train/log.hpp"
#include "fourierft/train/options.hpp"
#include "fourierft/train/presets.hpp"
#include "fourierft/train/run.hpp"
#include "fourierft/train/seeds.hpp"
#include "fourierft/train/signals.hpp"
#include "instruct_lm.hpp"

using namespace fourierft;
namespace fs = std::filesystem;
using Model = examples::InstructModel;

namespace {

const char* const usage = R"(usage: finetune_instruct --model DIR --data FILE [options]

Instruction-tunes a LLaMA-family checkpoint on Alpaca-format data; optionally answers FastChat questions.
  --model DIR          Hugging Face folder: config.json, *.safetensors, tokenizer.json
  --tokenizer PATH     tokenizer.json or its folder                                    [--model DIR]
  --preset NAME        llama2-7b-alpaca | llama2-13b-alpaca | llama1-7b-alpaca | llama1-13b-alpaca,
                       or a LoRA r = 64 baseline: <one of those>-lora64 (q,v) | -lora64-all
                                                                               [llama2-7b-alpaca]
  --data FILE          .json: an Alpaca array; .jsonl: {"messages": [...]} or Alpaca objects
  --skip-bad-records   skip (and count) malformed records instead of stopping at the first
  --limit N            use the first N records only (quick runs)                        [0 = all]
  --template T         alpaca (Stanford Alpaca's PROMPT_DICT, EOS after the response) | fourierft
                       (the official FourierFT SFT.py prompt) | chat (the model's chat template)
                                                                                         [alpaca]
  --chat-template FILE tokenizer_config.json or a .jinja file          [DIR/tokenizer_config.json]
  --lora-targets LIST  the adapted Linear layers: q,v | q,k,v,o,gate,up,down | all-linear   [q,v]
  --max-len T          prompt + response tokens per example (longer ones are cut)             [512]
  --checkpointing      activation checkpointing: each decoder layer recomputed in backward
  --frozen-dtype D     keep (the file's BF16 / F16 stays 16-bit) | f32 | bf16 | f16          [keep]
  --eval-split F       held-out fraction of the records (the official 80/20 split)            [0.2]
  --split-seed S       seed of that split                                                       [0]
  --eval-batch B       examples per held-out loss batch                                         [8]
  --eval-limit N       held-out loss on the first N held-out examples only             [0 = all]
  --no-adapter         evaluate / answer with the base model alone (no training)
answers (FastChat's llm_judge format; after training, or alone with --adapter --eval-only):
  --answer FILE        a FastChat question.jsonl (MT-Bench: 2 turns, Vicuna bench: 1)
  --answers-out FILE   the model_answer file to write          [OUT/model_answer/<model-id>.jsonl]
  --model-id NAME      the answers' model_id                              [<model folder>-<method>]
  --max-new-tokens N   per turn (FastChat's --max-new-token)                                  [1024]
  --answer-limit K     answer the first K questions only                               [0 = all]
)";

models::FrozenWeightDtype parse_frozen_dtype(const std::string& name) {
  if (name == "keep") return models::FrozenWeightDtype::keep_file;
  if (name == "f32") return models::FrozenWeightDtype::f32;
  if (name == "bf16") return models::FrozenWeightDtype::bf16;
  if (name == "f16") return models::FrozenWeightDtype::f16;
  throw ValueError(str_cat("option --frozen-dtype expects keep, f32, bf16 or f16, got '", name, "'"));
}

// Whether any Linear weight of the model is held in 16 bits (then merged/ is written in BF16).
bool has_half_weights(Model& model) {
  for (auto& [name, module] : model.named_modules())
    if (auto* linear = dynamic_cast<nn::Linear<float>*>(module); linear && linear->half_precision())
      return true;
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // whole lines, also into a file or a pipe
  const auto process_start = std::chrono::steady_clock::now();
  dist::World world = dist::world(argc, argv);  // one process, or this one's rank under mpirun
  try {
    // ---- options: the preset first, then every flag given overrides it --------------------------
    std::set<std::string> flags = train::common_flags();
    flags.insert({"--checkpointing", "--skip-bad-records", "--no-adapter"});
    util::Args args(argc, argv, flags);
    if (args.has("--help")) {
      std::cout << usage << "\n" << train::common_usage();
      return 0;
    }
    const train::InstructPreset& preset =
        train::find_preset(train::instruct_presets(), args.str("--preset", "llama2-7b-alpaca"));
    train::RunOptions opt = train::run_options(preset, args, "out/instruct");
    const fs::path model_dir = args.str("--model");
    const fs::path tokenizer_path = args.str("--tokenizer", model_dir.string());
    const bool no_adapter = args.has("--no-adapter");
    const bool evaluate_only = opt.eval_only || no_adapter;
    std::optional<std::string> no_data;  // --data is required to train
    if (evaluate_only) no_data = "";
    const fs::path data_file = args.str("--data", no_data);
    const bool skip_bad = args.has("--skip-bad-records");
    const Index limit = args.integer("--limit", 0);
    const io::PromptTemplate prompt_template = io::parse_prompt_template(args.str("--template", "alpaca"));
    const fs::path chat_template_file =
        args.str("--chat-template", (model_dir / "tokenizer_config.json").string());
    const std::string target_list = args.str("--lora-targets", preset.targets);
    const Index max_len = args.integer("--max-len", preset.max_len);
    const bool checkpointing = args.has("--checkpointing");
    const models::FrozenWeightDtype frozen_dtype = parse_frozen_dtype(args.str("--frozen-dtype", "keep"));
    const double eval_split = args.real("--eval-split", 0.2);
    const auto split_seed = static_cast<std::uint64_t>(args.integer("--split-seed", 0));
    const Index eval_batch = args.integer("--eval-batch", 8);
    const Index eval_limit = args.integer("--eval-limit", 0);
    const fs::path question_file = args.str("--answer", "");
    const std::string model_name = (model_dir / "").parent_path().filename().string();  // "a/b/" -> b
    const std::string model_id =
        args.str("--model-id", model_name + "-" + (no_adapter ? "base" : opt.method));
    const fs::path answers_out =
        args.str("--answers-out", (opt.out / "model_answer" / (model_id + ".jsonl")).string());
    const Index max_new_tokens = args.integer("--max-new-tokens", 1024);
    const Index answer_limit = args.integer("--answer-limit", 0);
    args.reject_unknown();
    check(args.positional().empty(), "unexpected argument '",
          args.positional().empty() ? "" : args.positional()[0], "' (options start with --)");
    check(max_len >= 2, "option --max-len must be >= 2, got ", max_len);
    check(eval_batch >= 1, "option --eval-batch must be >= 1, got ", eval_batch);
    check(limit >= 0 && eval_limit >= 0 && answer_limit >= 0,
          "options --limit, --eval-limit and --answer-limit must be >= 0");
    check(max_new_tokens >= 1, "option --max-new-tokens must be >= 1, got ", max_new_tokens);
    check(!(no_adapter && !opt.adapter.empty()), "options --no-adapter and --adapter exclude each other");
    check(!evaluate_only || !data_file.empty() || !question_file.empty(),
          "nothing to do: evaluating needs --data FILE (the held-out loss) or --answer FILE");
    if (opt.threads > 0) set_num_threads(opt.threads);
    reuse_freed_memory();  // keep freed activations for the next step (core/memory.hpp)
    ops::spectral::reproducible_fft(!opt.fast_fft);
    std::printf("finetune_instruct: preset %s (flags override it), template %s, %d threads\n",
                preset.name, std::string(io::prompt_template_name(prompt_template)).c_str(),
                num_threads());

    // ---- model and tokenizer --------------------------------------------------------------------
    const io::HfTokenizer tokenizer = io::HfTokenizer::load(tokenizer_path);
    check(tokenizer.special_tokens().eos.has_value(), tokenizer.source(),
          ": the tokenizer names no eos_token (tokenizer_config.json), which the responses end with");
    std::unique_ptr<Model> model;
    if (opt.random_init) {
      model = std::make_unique<Model>(io::read_config<io::LlamaConfig>(model_dir), opt.seed);
      std::printf("model: %s/config.json with random weights (--random-init)\n",
                  model_dir.string().c_str());
    } else {
      models::CheckpointReport report;
      model = Model::from_pretrained(model_dir, &report, {.frozen_weight_dtype = frozen_dtype});
      std::printf("%s\n", report.summary().c_str());
    }
    check(tokenizer.vocab_size() <= model->config.vocab_size, tokenizer.source(),
          ": the tokenizer has ids up to ", tokenizer.vocab_size() - 1, " but the model's vocab_size ",
          "is ", model->config.vocab_size, " (a tokenizer of another model?)");
    model->set_gradient_checkpointing(checkpointing);
    const io::SpecialTokens& specials = tokenizer.special_tokens();
    // Stanford Alpaca pads with the tokenizer's pad token, adding "<unk>" when there is none: any id
    // does, the pads are after each example and outside the loss.
    const std::int64_t pad_id = specials.pad.value_or(specials.unk.value_or(*specials.eos));

    // ---- adapter --------------------------------------------------------------------------------
    const train::AdapterTargets targets{
        .targets = examples::instruct_targets(target_list),
        .modules_to_save = opt.method == "head" ? std::vector<std::string>{"lm_head"}
                                                : std::vector<std::string>{},
        .task_type = "CAUSAL_LM",
        .fan_in_fan_out = false,
        .fused_slices = {},
        .base_model_name_or_path = model->config.name_or_path.empty() ? model_dir.string()
                                                                      : model->config.name_or_path};
    std::optional<peft::AdapterSpec> spec;
    if (no_adapter)
      std::printf("no adapter: the base model alone\n");
    else
      spec = train::attach_adapter(*model, opt, targets);

    // ---- prompts: the template and what it needs ------------------------------------------------
    std::optional<io::ChatTemplate> chat;
    if (prompt_template == io::PromptTemplate::chat) chat = io::ChatTemplate::load(chat_template_file);
    const io::PromptContext context{.eos_token = tokenizer.id_to_token(*specials.eos),
                                    .chat = chat ? &*chat : nullptr,
                                    .chat_variables = io::Json::object()};

    // ---- data: the seeded split, tokenized ------------------------------------------------------
    io::InstructionData data;
    examples::InstructExamples train_set, held_out;
    if (!data_file.empty()) {
      data = io::read_instruction_data(data_file, {.skip_bad_records = skip_bad});
      if (limit > 0 && static_cast<Index>(data.examples.size()) > limit) data.examples.resize(limit);
      const auto N = static_cast<Index>(data.examples.size());
      check<FormatError>(N >= 1, data_file.string(), ": no records");
      examples::InstructSplit split = examples::split_examples(N, eval_split, split_seed);
      if (eval_limit > 0 && static_cast<Index>(split.held_out.size()) > eval_limit)
        split.held_out.resize(eval_limit);
      train_set = examples::tokenize_examples(data, split.train, prompt_template, context, tokenizer, max_len);
      held_out = examples::tokenize_examples(data, split.held_out, prompt_template, context, tokenizer, max_len);
      std::printf("data: %s: %lld records%s; train %zu, held out %zu (split %.2f, seed %llu); %lld "
                  "reach --max-len %lld, %lld without a response token after the cut are left out\n",
                  data_file.string().c_str(), static_cast<long long>(N),
                  data.skipped ? str_cat(" (", data.skipped, " bad ones skipped)").c_str() : "",
                  train_set.items.size(), held_out.items.size(), eval_split,
                  static_cast<unsigned long long>(split_seed),
                  static_cast<long long>(train_set.at_max_len + held_out.at_max_len),
                  static_cast<long long>(max_len),
                  static_cast<long long>(train_set.dropped + held_out.dropped));
    }
    const bool has_held_out = !held_out.items.empty();
    fs::create_directories(opt.out);
    train::InterruptFlag interrupt;  // Ctrl-C: save the state at the next step boundary and stop

    // Answers to the question file, after training or on their own.
    auto answer = [&]() -> io::Json {
      if (question_file.empty()) return nullptr;
      const std::vector<io::BenchQuestion> questions = io::read_bench_questions(question_file);
      const examples::AnswerSettings settings{.prompt_template = prompt_template, .context = &context,
                                              .model_id = model_id, .max_new_tokens = max_new_tokens,
                                              .limit = answer_limit, .seed = opt.seed};
      const auto answers =
          examples::answer_questions(*model, tokenizer, questions, settings, answers_out, &interrupt);
      check(!interrupt.requested(), "interrupted while answering (", answers.size(), " questions ",
            "done, in ", answers_out.string(), ")");
      std::printf("answers: %zu questions of %s in %s (model_id %s)\n", answers.size(),
                  question_file.string().c_str(), answers_out.string().c_str(), model_id.c_str());
      return {{"questions", question_file.string()}, {"file", answers_out.string()},
              {"answered", answers.size()}, {"model_id", model_id}};
    };
    auto evaluate = [&] { return examples::held_out_loss(*model, held_out.items, eval_batch, pad_id); };

    if (evaluate_only) {
      io::Json record = {{"adapter", opt.adapter.string()}, {"template", io::prompt_template_name(prompt_template)}};
      if (has_held_out) {
        const double loss = evaluate();
        std::printf("held-out loss %.6f over %zu examples\n", loss, held_out.items.size());
        record["eval_loss"] = train::json_number(loss);
        record["held_out_examples"] = held_out.items.size();
      }
      record["answers"] = answer();
      io::write_json(opt.out / "eval.json", record);
      return 0;
    }
    check<FormatError>(!train_set.items.empty(), data_file.string(), ": no training examples left ",
                       "after holding out ", eval_split, " of them and leaving out ",
                       train_set.dropped + held_out.dropped, " cut before their response at --max-len ",
                       max_len);

    // ---- optimizer, schedule, state --------------------------------------------------------------
    optim::AdamW<float> optimizer(train::param_groups(*model, *spec, opt),
                                  {.lr = opt.lr, .weight_decay = opt.weight_decay});
    const auto N = static_cast<Index>(train_set.items.size());
    const std::int64_t steps_per_epoch = train::steps_per_epoch(N, opt.batch, opt.grad_accum);
    const std::int64_t total_steps = steps_per_epoch * opt.epochs;
    const std::int64_t warmup = optim::warmup_steps_for_ratio(total_steps, opt.warmup_ratio);
    const optim::Schedule schedule = optim::linear_warmup_decay(warmup, total_steps);
    std::printf("optim: AdamW lr %g, weight decay %g, clip %g, %d epochs x %lld steps of %lld x %lld "
                "examples, linear schedule, warmup %lld%s\n", opt.lr, opt.weight_decay, opt.clip,
                opt.epochs, static_cast<long long>(steps_per_epoch), static_cast<long long>(opt.batch),
                static_cast<long long>(opt.grad_accum), static_cast<long long>(warmup),
                checkpointing ? ", activation checkpointing" : "");

    io::Json settings = train::resume_settings(opt);
    settings.update({{"template", io::prompt_template_name(prompt_template)}, {"targets", target_list},
                     {"max_len", max_len}, {"eval_split", eval_split}, {"split_seed", split_seed},
                     {"limit", limit}, {"train_examples", N}, {"model", model_dir.string()},
                     {"data", data_file.string()}});
    train::Run run(opt, *model, optimizer, interrupt,
                   {.program = "finetune_instruct", .settings = settings, .total_steps = total_steps,
                    .start_fields = {{"preset", preset.name}}, .unit = "tok",
                    .rate_key = "tokens_per_s", .save_after_last_epoch = !question_file.empty(),
                    .comm = &world.comm()});

    // The held-out loss before training (kept in the state's history, so --resume has it too).
    if (run.history().empty() && has_held_out) {
      const double before = evaluate();
      run.record_epoch(-1, {{"eval_loss", train::json_number(before)}});
      run.log({{"event", "eval"}, {"step", 0}, {"epoch", 0}, {"split", "held_out"},
               {"metric", "loss"}, {"value", train::json_number(before)}});
      std::printf("before training | held-out loss %.4f (perplexity %.2f)\n", before, std::exp(before));
    }

    // ---- the loop: forward, backward, clip, step, clear ------------------------------------------
    const std::vector<Var<float>> params = optimizer.parameters();
    Tape<float> tape;
    for (int epoch = run.epoch(); epoch < opt.epochs; ++epoch) {
      const auto batches = train::epoch_batches(N, opt.batch, opt.seed, epoch);
      for (const train::Step& step : run.steps(epoch, batches)) {
        optimizer.scale_lr(schedule(step.index));  // lr of this step
        model->train();
        train::reseed_dropout(*model, opt.seed, static_cast<std::uint64_t>(step.index));
        // Gradient accumulation: micro-batch m's backward is seeded with its share of the step's
        // examples, so the gradients add up to the mean loss's (a NaN loss stops before updates).
        Index tokens = 0;
        for (Index m = step.begin; m < step.end; ++m) {
          Index micro_batch_responses = 0;  // the loss is a mean over response tokens
          for (Index i : batches[m]) {
            const auto& e = train_set.items[static_cast<std::size_t>(i)];
            micro_batch_responses += examples::response_tokens(e);
            tokens += static_cast<Index>(e.input_ids.size());
          }
          const std::span<const Index> rows = run.shard(batches[m]);  // all of it in one process
          if (rows.empty()) continue;
          const examples::InstructBatch batch =
              examples::make_instruct_batch(train_set.items, rows, pad_id);
          const Var<float> loss = examples::response_loss(tape, *model, batch);
          const double share = static_cast<double>(batch.response_tokens) /
                               static_cast<double>(micro_batch_responses);  // 1 in one process
          tape.backward(loss, run.accumulate(step, loss, batches[m].size(), share));
          tape.clear();
        }
        run.reduce_gradients();  // Σ over MPI ranks
        if (opt.clip > 0) optim::clip_grad_norm(params, opt.clip);
        optimizer.step();
        optimizer.zero_grad();
        if (const auto code = run.end_step(step, tokens)) return *code;  // Ctrl-C or --stop-after
      }

      // ---- after every epoch: the held-out response loss, the adapter ---------------------------
      io::Json entry = io::Json::object();
      std::string line = str_cat("epoch ", epoch + 1);
      if (has_held_out) {
        const double loss = evaluate();
        entry["eval_loss"] = train::json_number(loss);
        run.log({{"event", "eval"}, {"step", run.step()}, {"epoch", epoch + 1}, {"split", "held_out"},
                 {"metric", "loss"}, {"value", train::json_number(loss)}});
        char text[96];
        std::snprintf(text, sizeof text, " | held-out loss %.4f (perplexity %.2f)", loss, std::exp(loss));
        line += text;
      }
      run.record_epoch(epoch, entry);
      if (run.is_root()) peft::save_adapter(*model, *spec, opt.out / "adapter");
      run.end_epoch(epoch, line + " | " + train::format_duration(run.epoch_seconds()));
    }
    run.end_loop();
    if (!run.is_root()) return 0;  // answers, results and saving: rank 0 alone

    // ---- answers, results, the merged model on request; the run is complete --------------------
    const io::Json answers = answer();
    const io::Json& history = run.history();
    Index trainable = 0;
    for (const auto& [name, p] : model->named_parameters()) trainable += p.requires_grad() ? p.numel() : 0;
    const auto adapter_bytes = fs::file_size(opt.out / "adapter" / "adapter_model.safetensors");
    const double seconds = train::seconds_since(process_start);
    io::Json results = {{"preset", preset.name}, {"method", spec->method()},
                        {"template", io::prompt_template_name(prompt_template)},
                        {"targets", target_list}, {"data", data_file.string()},
                        {"train_examples", N}, {"held_out_examples", held_out.items.size()},
                        {"trainable_params", trainable}, {"adapter_bytes", adapter_bytes},
                        {"seconds", seconds}, {"answers", answers}};
    if (has_held_out) {
      results["eval_loss_before"] = history.front().at("eval_loss");
      results["eval_loss_after"] = history.back().at("eval_loss");
    }
    run.write_results(results);
    if (opt.save_merged) {
      peft::merge_adapters(*model);
      model->save_pretrained(opt.out / "merged", has_half_weights(*model) ? io::Dtype::BF16 : io::Dtype::F32);
      const fs::path tokenizer_dir = fs::is_directory(tokenizer_path) ? tokenizer_path : tokenizer_path.parent_path();
      for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                            "tokenizer.model", "generation_config.json"})
        if (fs::exists(tokenizer_dir / f))
          util::copy_file_atomically(tokenizer_dir / f, opt.out / "merged" / f);
      std::printf("merged model: %s\n", (opt.out / "merged").string().c_str());
    }
    run.finish(has_held_out ? io::Json{{"eval_loss", history.back().at("eval_loss")}} : io::Json::object());
    std::printf("done in %s: adapter in %s (%llu bytes)\n", train::format_duration(seconds).c_str(),
                (opt.out / "adapter").string().c_str(), static_cast<unsigned long long>(adapter_bytes));
    return 0;
  } catch (const std::exception& e) {  // fourierft::Error names the file, record, tensor or option
    return world.fail(train::report_error("finetune_instruct", e));
  }
}
