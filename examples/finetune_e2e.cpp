// finetune_e2e — fine-tunes GPT-2 on E2E NLG (restaurant meaning representation -> sentence) with
// FourierFT on the q and v slices of every block's fused c_attn, then decodes the test MRs with
// beam search and scores them with the E2E challenge's metrics.
//
// What it does. Loads a Hugging Face GPT-2 checkpoint folder (config.json, model.safetensors, and
// vocab.json + merges.txt) and trains, with AdamW, two d x d FourierFT adapters per block (the q and
// v column blocks of attn.c_attn; k and everything else frozen) on "context <|endoftext|> reference
// <|endoftext|>" sequences, the loss (with label smoothing) only on the reference tokens, as the
// LoRA E2E code the paper follows. After every epoch it reports the teacher-forced loss on the test
// references; after the last it decodes every test MR with beam search and computes BLEU, NIST,
// METEOR, ROUGE-L and CIDEr against the grouped references (the official scorer's definitions).
//
// Paper setting. Table 3's E2E rows (Gao et al., ICML 2024) with Table 10's hyper-parameters:
// `--preset gpt2-medium-e2e` (default) or `gpt2-large-e2e`: n = 1000, scaling 300, spectrum lr
// 2e-2 / 5e-2, weight decay 0.01 / 0.03, batch 128 (here 8 x 16 accumulation), 5 epochs, label
// smoothing 0.1, linear schedule; decoding beam 10, length penalty 0.8, no-repeat n-gram 4, 64 new
// tokens; the last epoch is the result. DATA CAVEAT: the official E2E training split is not in the
// data pack, so this trains on the development set (devset.csv / LoRA's valid.txt, 4,672 examples,
// a ninth of the 42,061 training rows) and evaluates on the test set: expect lower scores than the
// paper's Table 3.
//
// Run (docs/examples/finetune_e2e.md has the real-checkpoint walkthrough):
//   finetune_e2e --model gpt2-medium --data ../shared/data/e2e --out out/e2e
//   finetune_e2e --model tests/fixtures/models/gpt2-bytes --data tests/fixtures/data/e2e --n 64
//       --batch 8 --grad-accum 1 --epochs 1 --max-len 256 --limit-test 4 --beam 2 --out out/tiny
// Options: --help. Ctrl-C saves the state; the same command with --resume continues.
//
// Output. At start: settings, checkpoint report, trainable / total parameters, adapter bytes. Then
// step lines ("step 120 | loss 2.4132 | lr 2.0e-02 | 830 ms", a bar on a terminal), an eval-loss line
// per epoch, decoding progress and the five scores. In --out: log.jsonl, adapter/ (PEFT format),
// predictions.txt (one line per test MR), references.txt (the MRs' references, groups separated by
// an empty line: the official scorer's multi-reference format), results.json, merged/ on request.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "fourierft/dist/world.hpp"
#include "fourierft/fourierft.hpp"
#include "fourierft/models/generation.hpp"
#include "fourierft/models/gpt2.hpp"
#include "fourierft/train/log.hpp"
#include "fourierft/train/options.hpp"
#include "fourierft/train/presets.hpp"
#include "fourierft/train/run.hpp"
#include "fourierft/train/seeds.hpp"
#include "fourierft/train/signals.hpp"
#include "e2e_lm.hpp"

using namespace fourierft;
namespace fs = std::filesystem;
using Model = models::GPT2LMHeadModel<float>;
using examples::e2e_eval_loss;
using examples::read_e2e;
using examples::tokenize_e2e;

namespace {

const char* const usage = R"(usage: finetune_e2e --model DIR --data DIR [options]

Fine-tunes GPT-2 on E2E NLG with FourierFT on the q and v slices of c_attn, then decodes and scores.
  --model DIR         Hugging Face GPT-2 checkpoint folder (config.json, model.safetensors)
  --tokenizer DIR     vocab.json + merges.txt (or tokenizer.json)                 [--model DIR]
  --preset NAME       gpt2-medium-e2e | gpt2-large-e2e: the paper's Table 10       [gpt2-medium-e2e]
  --data DIR          the E2E folder: lora_format/{valid,test}.txt, or devset.csv + testset_w_refs.csv
  --format F          lora: LoRA's files (the paper's pipeline) | csv: the official CSVs     [lora]
  --max-len T         context + reference tokens per training example                       [512]
  --label-smoothing E                                                                        [0.1]
  --beam K, --length-penalty P, --no-repeat-ngram N, --max-new-tokens M  decoding [10, 0.8, 4, 64]
  --decode-batch B    test MRs decoded together                                                [4]
  --eval-batch B      examples per evaluation-loss batch                                       [8]
  --limit-train N     train on the first N examples only (quick runs)
  --limit-test N      evaluate on the first N test MRs only (decoding all 630 takes hours here)
The E2E training split is not in the data pack: this trains on the development set and evaluates
on the test set (see docs/examples/finetune_e2e.md).
)";

// Beam-search outputs for the first `limit` test MRs, decoded and stripped.
std::vector<std::string> decode_test(Model& model, const io::BpeTokenizer& tokenizer,
                                     const std::vector<io::E2EGroup>& groups,
                                     const models::GenerationConfig& config, Index decode_batch,
                                     const train::InterruptFlag& interrupt) {
  model.eval();
  const std::int64_t eos = *tokenizer.special_tokens().eos;
  std::vector<std::string> outputs;
  const auto start = std::chrono::steady_clock::now();
  for (std::size_t first = 0; first < groups.size(); first += static_cast<std::size_t>(decode_batch)) {
    check(!interrupt.requested(), "interrupted while decoding (", outputs.size(), " of ",
          groups.size(), " MRs done); the training state of the last epoch is saved: the same ",
          "command plus --resume decodes again");
    std::vector<std::vector<std::int64_t>> prompts;
    for (std::size_t g = first; g < std::min(groups.size(), first + decode_batch); ++g)
      prompts.push_back(io::e2e_lm_example(tokenizer, groups[g].mr, "").context);  // context + eos
    for (const models::Generated& out : models::generate(model, prompts, config)) {
      std::vector<std::int64_t> tokens = out.tokens;
      if (!tokens.empty() && tokens.back() == eos) tokens.pop_back();
      outputs.push_back(metrics::text::strip(tokenizer.decode(tokens, true)));
    }
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("decoded %zu/%zu test MRs | %.2f s per MR | ETA %s\n", outputs.size(), groups.size(),
                elapsed / outputs.size(),
                train::format_duration(elapsed / outputs.size() * (groups.size() - outputs.size())).c_str());
    std::fflush(stdout);
  }
  return outputs;
}


}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // whole lines, also into a file or a pipe
  dist::World world = dist::world(argc, argv);  // one process, or this one's rank under mpirun
  try {
    // ---- options: the preset first, then every flag given overrides it --------------------------
    util::Args args(argc, argv, train::common_flags());
    if (args.has("--help")) {
      std::cout << usage << "\n" << train::common_usage();
      return 0;
    }
    const train::E2EPreset& preset =
        train::find_preset(train::e2e_presets(), args.str("--preset", "gpt2-medium-e2e"));
    // Micro-batches of 8, 16 per step: the paper's 128 examples per update.
    const train::RunOptions opt = train::run_options(preset, args, "out/e2e");
    const fs::path model_dir = args.str("--model");
    const fs::path tokenizer_dir = args.str("--tokenizer", model_dir.string());
    const fs::path data_dir = args.str("--data");
    const std::string format = args.str("--format", "lora");
    const Index max_len = args.integer("--max-len", preset.max_len);
    const double smoothing = args.real("--label-smoothing", preset.label_smoothing);
    models::GenerationConfig generation;
    generation.num_beams = args.integer("--beam", preset.beam);
    generation.length_penalty = args.real("--length-penalty", preset.length_penalty);
    generation.no_repeat_ngram_size = args.integer("--no-repeat-ngram", preset.no_repeat_ngram);
    generation.max_new_tokens = args.integer("--max-new-tokens", preset.max_new_tokens);
    const Index decode_batch = args.integer("--decode-batch", 4);
    const Index eval_batch = args.integer("--eval-batch", 8);
    const Index limit_train = args.integer("--limit-train", 0);
    const Index limit_test = args.integer("--limit-test", 0);
    args.reject_unknown();
    check(args.positional().empty(), "unexpected argument '",
          args.positional().empty() ? "" : args.positional()[0], "' (options start with --)");
    check(format == "lora" || format == "csv", "option --format expects lora or csv, got '", format, "'");
    check(max_len >= 2, "option --max-len must be >= 2, got ", max_len);
    check(smoothing >= 0 && smoothing < 1, "option --label-smoothing must be in [0, 1), got ", smoothing);
    check(decode_batch >= 1 && eval_batch >= 1, "options --decode-batch and --eval-batch must be >= 1");
    check(limit_train >= 0 && limit_test >= 0, "options --limit-train and --limit-test must be >= 0");
    if (opt.threads > 0) set_num_threads(opt.threads);
    reuse_freed_memory();  // keep freed activations for the next step (core/memory.hpp)
    ops::spectral::reproducible_fft(!opt.fast_fft);
    std::printf("finetune_e2e: preset %s (flags override it), %d threads\n", preset.name,
                num_threads());

    // ---- model and tokenizer --------------------------------------------------------------------
    io::BpeTokenizer tokenizer = io::BpeTokenizer::load(tokenizer_dir);
    check(tokenizer.special_tokens().eos.has_value(), tokenizer_dir.string(),
          ": the tokenizer has no <|endoftext|> token (not a GPT-2 vocabulary)");
    std::unique_ptr<Model> model;
    if (opt.random_init) {
      model = std::make_unique<Model>(io::read_gpt2_config(model_dir), opt.seed);
      std::printf("model: %s/config.json with random weights (--random-init)\n",
                  model_dir.string().c_str());
    } else {
      models::CheckpointReport report;
      model = Model::from_pretrained(model_dir, &report);
      std::printf("%s\n", report.summary().c_str());
    }
    const io::Gpt2Config& config = model->config;
    check(tokenizer.vocab_size() <= config.vocab_size, tokenizer_dir.string(),
          ": the tokenizer has ids up to ", tokenizer.vocab_size() - 1, " but the model's vocab_size ",
          "is ", config.vocab_size, " (a tokenizer of another model?)");
    check(max_len <= config.n_positions, "option --max-len ", max_len, " exceeds the model's ",
          "n_positions = ", config.n_positions);
    generation.eos_token_id = generation.pad_token_id = *tokenizer.special_tokens().eos;

    // ---- adapters: FourierFT on the q and v slices of c_attn (two d x d adapters per block) ------
    const train::AdapterTargets targets = examples::e2e_adapter_targets(
        config.name_or_path.empty() ? model_dir.filename().string() : config.name_or_path);
    const peft::AdapterSpec spec = train::attach_adapter(*model, opt, targets);
    if (opt.bf16 && !model->transformer.wte.weight.requires_grad())
      model->set_bf16_lm_head(true);  // --bf16: the tied LM head's GEMMs in BF16 too

    // ---- data: train on the development set, evaluate on the test set ----------------------------
    const io::E2EDataset test_set = read_e2e(data_dir, format, true);
    std::vector<io::E2EGroup> test_groups = test_set.groups;
    if (limit_test > 0 && static_cast<Index>(test_groups.size()) > limit_test) test_groups.resize(limit_test);
    io::E2EDataset test_refs;  // the examples of the kept MRs, for the evaluation loss
    for (const io::E2EGroup& g : test_groups)
      for (const std::string& ref : g.refs) test_refs.examples.push_back({g.mr, ref, 0});
    const std::vector<io::LmExample> test_examples = tokenize_e2e(tokenizer, test_refs, 0);
    fs::create_directories(opt.out);

    train::InterruptFlag interrupt;  // Ctrl-C: save the state at the next step boundary and stop

    // Decoding and scoring, after training or on its own (--eval-only).
    auto decode_and_score = [&] {
      const auto t0 = std::chrono::steady_clock::now();
      const std::vector<std::string> hyps =
          decode_test(*model, tokenizer, test_groups, generation, decode_batch, interrupt);
      std::vector<std::vector<std::string>> refs;
      for (const io::E2EGroup& g : test_groups) refs.push_back(g.refs);
      const metrics::E2EScores s = metrics::score_e2e(hyps, refs);
      util::write_file_atomically(opt.out / "predictions.txt", [&](std::ostream& out) {
        for (const std::string& h : hyps) out << h << "\n";
      });
      util::write_file_atomically(opt.out / "references.txt", [&](std::ostream& out) {
        for (std::size_t g = 0; g < refs.size(); ++g) {
          if (g > 0) out << "\n";
          for (const std::string& r : refs[g]) out << r << "\n";
        }
      });
      const io::Json scores = {{"BLEU", s.bleu}, {"NIST", s.nist}, {"METEOR", s.meteor},
                               {"ROUGE_L", s.rouge_l}, {"CIDEr", s.cider}};
      std::printf("test (%zu MRs, %s): BLEU %.4f | NIST %.4f | METEOR %.4f | ROUGE-L %.4f | CIDEr "
                  "%.4f\n", test_groups.size(), train::format_duration(train::seconds_since(t0)).c_str(),
                  s.bleu, s.nist, s.meteor, s.rouge_l, s.cider);
      return scores;
    };
    if (opt.eval_only) {
      const double loss = e2e_eval_loss(*model, test_examples, eval_batch, max_len);
      std::printf("test loss %.6f over %zu references\n", loss, test_examples.size());
      const io::Json scores = decode_and_score();
      io::write_json(opt.out / "eval.json", {{"adapter", opt.adapter.string()}, {"test_loss", loss},
                                             {"mrs", test_groups.size()}, {"scores", scores}});
      return 0;
    }
    const io::E2EDataset train_set = read_e2e(data_dir, format, false);
    const std::vector<io::LmExample> train_examples = tokenize_e2e(tokenizer, train_set, limit_train);
    const auto N = static_cast<Index>(train_examples.size());
    std::printf("data: train %lld examples of %s (the development set: E2E's training split is not "
                "in the data pack), test %zu MRs / %zu references of %s\n",
                static_cast<long long>(N), train_set.path.c_str(), test_groups.size(),
                test_examples.size(), test_set.path.c_str());

    // ---- optimizer, schedule, state --------------------------------------------------------------
    optim::AdamW<float> optimizer(train::param_groups(*model, spec, opt),
                                  {.lr = opt.lr, .weight_decay = opt.weight_decay});
    const std::int64_t steps_per_epoch = train::steps_per_epoch(N, opt.batch, opt.grad_accum);
    const std::int64_t total_steps = steps_per_epoch * opt.epochs;
    const std::int64_t warmup = optim::warmup_steps_for_ratio(total_steps, opt.warmup_ratio);
    const optim::Schedule schedule = optim::linear_warmup_decay(warmup, total_steps);
    std::printf("optim: AdamW lr %g (adapter) / %g (other), weight decay %g, clip %g, label smoothing "
                "%g, %d epochs x %lld steps of %lld x %lld examples, linear schedule, warmup %lld\n",
                opt.lr, opt.head_lr, opt.weight_decay, opt.clip, smoothing, opt.epochs,
                static_cast<long long>(steps_per_epoch), static_cast<long long>(opt.batch),
                static_cast<long long>(opt.grad_accum), static_cast<long long>(warmup));

    io::Json settings = train::resume_settings(opt);
    settings.update({{"format", format}, {"max_len", max_len}, {"label_smoothing", smoothing},
                     {"train_examples", N}, {"model", model_dir.string()}});
    train::Run run(opt, *model, optimizer, interrupt,
                   {.program = "finetune_e2e", .settings = settings, .total_steps = total_steps,
                    .start_fields = {{"preset", preset.name}}, .save_after_last_epoch = true,
                    .comm = &world.comm()});

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
        for (Index m = step.begin; m < step.end; ++m) {
          const std::span<const Index> rows = run.shard(batches[m]);  // all of it in one process
          if (rows.empty()) continue;
          const io::LmBatch batch = examples::e2e_make_batch(train_examples, rows, max_len);
          const Var<float> loss = examples::e2e_batch_loss(tape, *model, batch, smoothing);
          std::size_t micro_batch_examples = batch.lengths.size();
          double share = 1.0;
          if (rows.size() != batches[m].size()) {  // an MPI shard: the loss is a mean over
            const auto reference_tokens = [](const io::LmBatch& b) {  // reference tokens, so
              double n = 0;                                           // it carries its share
              for (const float v : b.mask.data()) n += v;
              return n;
            };
            const io::LmBatch whole = examples::e2e_make_batch(train_examples, batches[m], max_len);
            micro_batch_examples = whole.lengths.size();
            share = reference_tokens(batch) / reference_tokens(whole);
          }
          tape.backward(loss, run.accumulate(step, loss, micro_batch_examples, share));
          tape.clear();
        }
        run.reduce_gradients();  // Σ over MPI ranks
        if (opt.clip > 0) optim::clip_grad_norm(params, opt.clip);
        optimizer.step();
        optimizer.zero_grad();
        if (const auto code = run.end_step(step)) return *code;  // Ctrl-C or --stop-after
      }

      // ---- after every epoch: the teacher-forced loss on the test references -------------------
      const double loss = e2e_eval_loss(*model, test_examples, eval_batch, max_len);
      run.record_epoch(epoch, {{"test_loss", loss}});
      if (run.is_root()) peft::save_adapter(*model, spec, opt.out / "adapter");
      run.log({{"event", "eval"}, {"step", run.step()}, {"epoch", epoch + 1}, {"split", "test"},
               {"metric", "loss"}, {"value", train::json_number(loss)}});
      char line[160];
      std::snprintf(line, sizeof line, "epoch %d | test loss %.4f (perplexity %.2f) | %s", epoch + 1,
                    loss, std::exp(loss), train::format_duration(run.epoch_seconds()).c_str());
      run.end_epoch(epoch, line);  // the state stays until decoding is done: --resume decodes again
    }
    run.end_loop();
    if (!run.is_root()) return 0;  // decoding, scoring and saving: rank 0 alone

    // ---- evaluate: beam search on the test MRs, then the E2E metrics ------------------------------
    const io::Json scores = decode_and_score();
    run.log({{"event", "eval"}, {"step", run.step()}, {"split", "test"}, {"metric", "BLEU"},
             {"value", scores["BLEU"]}, {"scores", scores}, {"mrs", test_groups.size()}});

    // ---- save: results, the merged model on request; the run is complete, so its state goes ----
    run.write_results({{"preset", preset.name}, {"method", spec.method()}, {"format", format},
                       {"train", train_set.path}, {"test", test_set.path},
                       {"test_mrs", test_groups.size()}, {"scores", scores},
                       {"decoding", {{"beam", generation.num_beams},
                                     {"length_penalty", generation.length_penalty},
                                     {"no_repeat_ngram", generation.no_repeat_ngram_size},
                                     {"max_new_tokens", generation.max_new_tokens}}}});
    if (opt.save_merged) {
      peft::merge_adapters(*model);
      model->save_pretrained(opt.out / "merged");
      for (const char* f : {"vocab.json", "merges.txt", "tokenizer.json"})
        if (fs::exists(tokenizer_dir / f))
          util::copy_file_atomically(tokenizer_dir / f, opt.out / "merged" / f);
      std::printf("merged model: %s\n", (opt.out / "merged").string().c_str());
    }
    run.finish({{"scores", scores}});
    std::printf("done: adapter in %s, predictions in %s\n", (opt.out / "adapter").string().c_str(),
                (opt.out / "predictions.txt").string().c_str());
    return 0;
  } catch (const std::exception& e) {  // fourierft::Error names the file, tensor or option
    return world.fail(train::report_error("finetune_e2e", e));
  }
}
