// finetune_instruct_demo — the paper's instruction-tuning experiment in miniature: a small LLaMA
// pre-trained here learns to follow Alpaca instructions with FourierFT, beside LoRA, from the same
// weights, data order and seed; then it answers a few Vicuna-bench questions.
//
// What it does. Loads examples/checkpoints/llama-tiny-qnli-e2e — a LlamaForCausalLM that
// examples/pretrain made from scratch (its README has the command, seed and numbers) — and
// instruction-tunes it on the first --train Alpaca records, holding out the next --held-out ones
// (Stanford Alpaca's template by default: prompt, then response + EOS, the loss on the response
// tokens only). Every method starts from the same weights with the same data order and seed:
//   fourierft  n spectral coefficients on q_proj and v_proj of every layer (Table 4's setup)
//   lora       rank-r factors on the same layers (Table 4's baseline, at a rank for this size)
// It prints, per method: trainable parameters, the size of the saved adapter file (PEFT format),
// the held-out response loss of the base model (before) and after training, seconds; then each
// method's answers to one Vicuna-bench question of each of the first --questions-count categories
// (FastChat's temperatures; written as model_answer files too).
// Last it reloads the FourierFT adapter into a fresh model and checks the held-out loss is the same.
//
// Data. Alpaca (CC BY-NC 4.0) is not in this repository: by default the demo reads the data pack's
// ../shared/data/instruct/alpaca/alpaca_data.derived.json (relative to the repository); --data takes
// any copy of Stanford Alpaca's alpaca_data.json (github.com/tatsu-lab/stanford_alpaca).
//
// Run:
//   ./build/examples/finetune_instruct_demo [--methods fourierft,lora] [--train 1000]
//       [--held-out 200] [--epochs 3] [--threads 2] [--out out/instruct-demo]
// Expect: the table in docs/examples/finetune_instruct.md (measured on 2 cores).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "fourierft/fourierft.hpp"
#include "fourierft/io/hf_tokenizer.hpp"
#include "fourierft/io/instruct.hpp"
#include "fourierft/models/llama.hpp"
#include "fourierft/train/log.hpp"
#include "fourierft/train/options.hpp"
#include "fourierft/train/seeds.hpp"
#include "instruct_lm.hpp"

using namespace fourierft;
namespace fs = std::filesystem;
using Model = examples::InstructModel;

namespace {

const char* const usage = R"(usage: finetune_instruct_demo [options]

Instruction-tunes the committed tiny LLaMA on an Alpaca subset with each method; prints a table and
answers to a few Vicuna-bench questions.
  --model DIR         LLaMA folder with tokenizer.json [examples/checkpoints/llama-tiny-qnli-e2e]
  --data FILE         Alpaca JSON          [../shared/data/instruct/alpaca/alpaca_data.derived.json]
  --questions FILE    FastChat question file       [examples/data/instruct/vicuna_bench/question.jsonl]
  --template T        alpaca | fourierft | chat                                             [alpaca]
  --methods LIST      comma-separated: fourierft, lora, bitfit, full               [fourierft,lora]
  --train K [1000]  --held-out M [200]   the first K records train, the next M are held out
  --epochs E [3]  --batch B [8]  --max-len T [256]  --warmup-ratio R [0.05]
  --n N [1000]  --scaling A [10]  --lr LR (spectrum) [0.2]
  --lora-r R [8]  --lora-alpha A [16]  --lora-lr LR [1e-2]  --full-lr LR [5e-4]
  --questions-count Q [3]  --max-new-tokens N [96]   answers per method
  --seed S [0]  --threads T [2]  --out DIR [out/instruct-demo]
)";

struct MethodResult {
  Index trainable = 0;
  std::uintmax_t adapter_bytes = 0;
  double loss_before = 0, loss_after = 0, seconds = 0;
  std::vector<io::ModelAnswer> answers;
};

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  try {
    // ---- options ---------------------------------------------------------------------------------
    util::Args args(argc, argv, {"--help"});
    if (args.has("--help")) {
      std::cout << usage;
      return 0;
    }
    const fs::path model_dir =
        fs::path(args.str("--model", FOURIERFT_EXAMPLES_DATA_DIR "/../checkpoints/llama-tiny-qnli-e2e"))
            .lexically_normal();
    const fs::path data_file =
        fs::path(args.str("--data", FOURIERFT_EXAMPLES_DATA_DIR
                          "/../../../shared/data/instruct/alpaca/alpaca_data.derived.json"))
            .lexically_normal();
    fs::path question_file = fs::path(FOURIERFT_EXAMPLES_DATA_DIR "/instruct/vicuna_bench/question.jsonl");
    if (!fs::exists(question_file))  // the data pack's copy of the same file
      question_file = FOURIERFT_EXAMPLES_DATA_DIR "/../../../shared/data/instruct/vicuna_bench/question.jsonl";
    question_file = fs::path(args.str("--questions", question_file.string())).lexically_normal();
    const io::PromptTemplate prompt_template = io::parse_prompt_template(args.str("--template", "alpaca"));
    std::vector<std::string> methods;
    {
      std::stringstream list(args.str("--methods", "fourierft,lora"));
      for (std::string m; std::getline(list, m, ',');) methods.push_back(m);
    }
    const Index train_count = args.integer("--train", 1000), held_out_count = args.integer("--held-out", 200);
    const int epochs = static_cast<int>(args.integer("--epochs", 3));
    const Index batch_size = args.integer("--batch", 8), max_len = args.integer("--max-len", 256);
    const double warmup_ratio = args.real("--warmup-ratio", 0.05);
    train::RunOptions opt;  // the fields train::adapter_spec and param_groups read
    opt.n = args.integer("--n", 1000);
    // ΔW = scaling / (d_out · d_in) · Re(IDFT2(F)): at 128 x 128 the paper's scaling 300 (set for
    // 4096 x 4096) would make steps ~1000x larger; 10 and a spectrum lr of 0.2 learn steadily here.
    opt.scaling = args.real("--scaling", 10);
    opt.lora_r = args.integer("--lora-r", 8);
    opt.lora_alpha = args.real("--lora-alpha", 16);
    const double spectrum_lr = args.real("--lr", 0.2), lora_lr = args.real("--lora-lr", 1e-2);
    const double full_lr = args.real("--full-lr", 5e-4);
    const Index question_count = args.integer("--questions-count", 3);
    const Index max_new_tokens = args.integer("--max-new-tokens", 96);
    opt.seed = static_cast<std::uint64_t>(args.integer("--seed", 0));
    const int threads = static_cast<int>(args.integer("--threads", 2));
    const fs::path out = args.str("--out", "out/instruct-demo");
    args.reject_unknown();
    check(epochs >= 1 && batch_size >= 1 && opt.n >= 1 && opt.lora_r >= 1 && threads >= 1 &&
              train_count >= 1 && held_out_count >= 1 && max_len >= 2 && max_new_tokens >= 1,
          "options --epochs, --batch, --n, --lora-r, --threads, --train, --held-out, "
          "--max-new-tokens must be >= 1 (--max-len >= 2)");
    for (const std::string& m : methods)
      check(peft::find_method(m) != nullptr && m != "head", "option --methods: '", m,
            "' is not one of fourierft, lora, bitfit, full");
    set_num_threads(threads);
    ops::spectral::reproducible_fft(true);
    const auto start = std::chrono::steady_clock::now();

    // ---- data, tokenizer, questions ----------------------------------------------------------------
    check<IoError>(fs::exists(data_file), data_file.string(), " not found. The demo trains on ",
                   "Stanford Alpaca's alpaca_data.json (CC BY-NC 4.0, research use only), which this ",
                   "repository does not carry: get it from https://github.com/tatsu-lab/stanford_alpaca ",
                   "(or use the data pack's alpaca/alpaca_data.derived.json) and pass --data FILE");
    check<IoError>(fs::exists(model_dir / "config.json"), model_dir.string(), ": no config.json. The ",
                   "demo starts from the tiny LLaMA that examples/pretrain made (examples/checkpoints/",
                   "llama-tiny-qnli-e2e); pass --model DIR for another LLaMA-family folder with tokenizer.json");
    io::InstructionData data = io::read_instruction_data(data_file);
    const auto available = static_cast<Index>(data.examples.size());
    check<FormatError>(available >= train_count + held_out_count, data_file.string(), " has ",
                       available, " records; --train ", train_count, " + --held-out ",
                       held_out_count, " need more");
    std::vector<Index> train_rows, held_out_rows;
    for (Index i = 0; i < train_count + held_out_count; ++i)
      (i < train_count ? train_rows : held_out_rows).push_back(i);
    const io::HfTokenizer tokenizer = io::HfTokenizer::load(model_dir);
    check(tokenizer.special_tokens().eos.has_value(), tokenizer.source(), ": no eos_token");
    const io::SpecialTokens& specials = tokenizer.special_tokens();
    const std::int64_t pad_id = specials.pad.value_or(specials.unk.value_or(*specials.eos));
    std::optional<io::ChatTemplate> chat;
    if (prompt_template == io::PromptTemplate::chat)
      chat = io::ChatTemplate::load(model_dir / "tokenizer_config.json");
    const io::PromptContext context{.eos_token = tokenizer.id_to_token(*specials.eos),
                                    .chat = chat ? &*chat : nullptr,
                                    .chat_variables = io::Json::object()};
    const examples::InstructExamples train_set = examples::tokenize_examples(
        data, train_rows, prompt_template, context, tokenizer, max_len);
    const examples::InstructExamples held_out = examples::tokenize_examples(
        data, held_out_rows, prompt_template, context, tokenizer, max_len);
    // One question of each of the first categories (Vicuna bench: generic, knowledge, roleplay, ...).
    std::vector<io::BenchQuestion> questions;
    {
      std::set<std::string> seen;
      for (const io::BenchQuestion& q : io::read_bench_questions(question_file))
        if (static_cast<Index>(questions.size()) < question_count && seen.insert(q.category).second)
          questions.push_back(q);
    }
    const io::LlamaConfig base_config = io::read_config<io::LlamaConfig>(model_dir);
    std::printf("pre-trained: %s (%s, %lld layers, hidden %lld, %lld heads / %lld kv, vocab %lld)\n",
                model_dir.string().c_str(), base_config.model_type.c_str(),
                static_cast<long long>(base_config.num_hidden_layers),
                static_cast<long long>(base_config.hidden_size),
                static_cast<long long>(base_config.num_attention_heads),
                static_cast<long long>(base_config.kv_heads()),
                static_cast<long long>(base_config.vocab_size));
    std::printf("data: %s: records 0-%lld train (%zu kept), %lld-%lld held out (%zu kept); template "
                "%s, %lld tokens at most; %d epoch(s) of batches of %lld, the same order for every "
                "method; %d threads\n\n", data_file.string().c_str(),
                static_cast<long long>(train_count - 1), train_set.items.size(),
                static_cast<long long>(train_count),
                static_cast<long long>(train_count + held_out_count - 1), held_out.items.size(),
                std::string(io::prompt_template_name(prompt_template)).c_str(),
                static_cast<long long>(max_len), epochs, static_cast<long long>(batch_size), threads);

    // ---- each method in turn, from the same start ----------------------------------------------
    const auto N = static_cast<Index>(train_set.items.size());
    const std::int64_t total_steps = train::steps_per_epoch(N, batch_size, 1) * epochs;
    std::vector<std::pair<std::string, MethodResult>> results;
    double fourierft_loss = NAN;
    for (const std::string& method : methods) {
      const auto method_start = std::chrono::steady_clock::now();
      std::unique_ptr<Model> model = Model::from_pretrained(model_dir);
      opt.method = method;
      const peft::MethodConfig config = peft::method_config(method);  // the lr by the method's kind
      const bool spectral = config.find<peft::FourierFTConfig>() != nullptr;
      opt.lr = spectral ? spectrum_lr : config.find<peft::LoraConfig>() ? lora_lr : full_lr;
      opt.head_lr = opt.lr;
      std::printf("---- %s (lr %g)\n", method.c_str(), opt.lr);
      MethodResult r;
      r.loss_before = examples::held_out_loss(*model, held_out.items, 8, pad_id);  // the base model
      const peft::AdapterSpec spec = train::attach_adapter(
          *model, opt,
          {.targets = examples::instruct_targets("q,v"), .modules_to_save = {},
           .task_type = "CAUSAL_LM", .fan_in_fan_out = false, .fused_slices = {},
           .base_model_name_or_path = model_dir.string()});
      for (const auto& [name, p] : model->named_parameters()) r.trainable += p.requires_grad() ? p.numel() : 0;

      optim::AdamW<float> optimizer(train::param_groups(*model, spec, opt), {.lr = opt.lr});
      const optim::Schedule schedule = optim::linear_warmup_decay(
          optim::warmup_steps_for_ratio(total_steps, warmup_ratio), total_steps);
      const std::vector<Var<float>> params = optimizer.parameters();
      Tape<float> tape;
      std::int64_t step = 0;
      double window = 0;
      for (int epoch = 0; epoch < epochs; ++epoch) {
        for (const std::vector<Index>& rows : train::epoch_batches(N, batch_size, opt.seed, epoch)) {
          optimizer.scale_lr(schedule(step));
          model->train();
          const examples::InstructBatch batch = examples::make_instruct_batch(train_set.items, rows, pad_id);
          const Var<float> loss = examples::response_loss(tape, *model, batch);
          check(std::isfinite(loss.item()), method, ": the training loss is ", loss.item(),
                " at step ", step + 1, " (lower --lr)");
          window += loss.item();
          tape.backward(loss);
          tape.clear();
          optim::clip_grad_norm(params, 1.0);
          optimizer.step();
          optimizer.zero_grad();
          if (++step % 25 == 0 || step == total_steps) {
            const std::int64_t in_window = step % 25 == 0 ? 25 : step % 25;
            std::printf("%s step %lld/%lld | loss %.4f | %s\n", method.c_str(),
                        static_cast<long long>(step), static_cast<long long>(total_steps),
                        window / static_cast<double>(in_window),
                        train::format_duration(train::seconds_since(method_start)).c_str());
            window = 0;
          }
        }
      }
      r.loss_after = examples::held_out_loss(*model, held_out.items, 8, pad_id);
      r.seconds = train::seconds_since(method_start);
      peft::save_adapter(*model, spec, out / method);
      r.adapter_bytes = fs::file_size(out / method / "adapter_model.safetensors");
      if (spectral) fourierft_loss = r.loss_after;
      const examples::AnswerSettings settings{.prompt_template = prompt_template, .context = &context,
                                              .model_id = "llama-tiny-" + method,
                                              .max_new_tokens = max_new_tokens, .limit = 0,
                                              .seed = opt.seed};
      r.answers = examples::answer_questions(*model, tokenizer, questions, settings,
                                             out / method / "vicuna_answers.jsonl");
      results.emplace_back(method, std::move(r));
    }

    // ---- the table, then the answers ------------------------------------------------------------
    std::printf("\n%-10s %10s %10s %12s %11s %8s\n", "method", "trainable", "adapter B", "loss before",
                "loss after", "seconds");
    for (const auto& [method, r] : results)
      std::printf("%-10s %10lld %10llu %12.4f %11.4f %8.1f\n", method.c_str(),
                  static_cast<long long>(r.trainable), static_cast<unsigned long long>(r.adapter_bytes),
                  r.loss_before, r.loss_after, r.seconds);
    std::printf("(held-out loss: mean cross-entropy per response token over %zu held-out records; "
                "before = the base model)\n", held_out.items.size());
    for (std::size_t q = 0; q < questions.size(); ++q) {
      std::printf("\nVicuna question %lld (%s): %s\n", static_cast<long long>(questions[q].question_id),
                  questions[q].category.c_str(), questions[q].turns[0].c_str());
      for (const auto& [method, r] : results)
        if (q < r.answers.size()) std::printf("  %s: %s\n", method.c_str(), r.answers[q].turns[0].c_str());
    }

    // ---- the saved FourierFT adapter alone reproduces its held-out loss -------------------------
    bool reproduced = true;
    if (!std::isnan(fourierft_loss)) {
      std::unique_ptr<Model> fresh = Model::from_pretrained(model_dir);
      peft::load_adapter(*fresh, out / "fourierft");
      const double reloaded = examples::held_out_loss(*fresh, held_out.items, 8, pad_id);
      reproduced = reloaded == fourierft_loss;
      std::printf("\nreloaded %s into a fresh model: held-out loss %.6f (%s)\n",
                  (out / "fourierft").string().c_str(), reloaded, reproduced ? "identical" : "DIFFERENT");
    }
    std::printf("done in %s; adapters and answers in %s/<method>/\n",
                train::format_duration(train::seconds_since(start)).c_str(), out.string().c_str());
    return reproduced ? 0 : 1;
  } catch (const std::exception& e) {  // fourierft::Error names the file, record, tensor or option
    return train::report_error("finetune_instruct_demo", e);
  }
}
