// finetune_glue — fine-tunes RoBERTa on a GLUE task with FourierFT (or LoRA, BitFit, full, head).
//
// What it does. Loads a Hugging Face RoBERTa checkpoint folder (config.json + model.safetensors, and
// the tokenizer's vocab.json + merges.txt), attaches FourierFT to the query and value projections of
// every layer, trains the spectra and a fresh classifier head with AdamW on the task's train.tsv,
// evaluates on dev.tsv after every epoch with the task's metric, and keeps the best epoch. Batches
// are padded to their longest row (dynamic padding).
//
// Paper setting. The GLUE rows of Table 2 (Gao et al., ICML 2024) with the hyper-parameters of
// Table 9: n = 1000, per-task scaling, spectrum and head learning rates, epochs, max length and batch
// (`--preset roberta-base-sst2` etc., or the base preset of --task by default); AdamW, weight decay
// 0, linear schedule with 6% warmup; the best dev epoch is the result (the paper: median of 5 seeds).
//
// Run (docs/examples/finetune_glue.md has the real-checkpoint walkthrough):
//   finetune_glue --model roberta-base --task sst2 --data ../shared/data/glue/sst2 --out out/sst2
//   finetune_glue --model tests/fixtures/models/roberta-bytes --task sst2
//       --data tests/fixtures/data/glue/sst2 --n 64 --epochs 3 --batch 16 --max-len 64 --out out/tiny
// Options: --help. Ctrl-C saves the state; the same command with --resume continues.
// Data-parallel: `mpirun -np 4 finetune_glue ...` splits every batch over 4 processes with the same
// result (docs/scaling.md); rank 0 prints and writes --out.
//
// Output. At start: the settings, the checkpoint report, trainable / total parameters and the
// adapter's bytes. Then one line per logged step ("step 120 | loss 0.4132 | lr 5.0e-02 | 83 ms",
// a progress bar on a terminal) and one per epoch ("epoch 3 | dev accuracy 0.9048 | best ...").
// In --out: log.jsonl (every logged step and evaluation), adapter/ (the last epoch, PEFT format),
// best_adapter/ (the best epoch), dev_predictions.tsv, results.json, merged/ with --save-merged.
// With roberta-base on SST-2 expect dev accuracy ~0.94 (paper: 94.2); each run here is CPU-bound,
// see the walkthrough for measured step times.
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
#include "fourierft/models/roberta.hpp"
#include "fourierft/train/log.hpp"
#include "fourierft/train/options.hpp"
#include "fourierft/train/presets.hpp"
#include "fourierft/train/run.hpp"
#include "fourierft/train/seeds.hpp"
#include "fourierft/train/signals.hpp"

using namespace fourierft;
namespace fs = std::filesystem;
using Model = models::RobertaForSequenceClassification<float>;

namespace {

const char* const usage = R"(usage: finetune_glue --model DIR --task TASK --data DIR [options]

Fine-tunes RoBERTa on a GLUE task (cola, sst2, mrpc, stsb, qnli, rte, mnli) with FourierFT.
  --model DIR         Hugging Face checkpoint folder (config.json, model.safetensors)
  --tokenizer DIR     vocab.json + merges.txt (or tokenizer.json)                 [--model DIR]
  --task TASK         GLUE task; also picks the default preset roberta-base-<task>
  --preset NAME       roberta-{base,large}-{stsb,rte,mrpc,cola,sst2,qnli}: the paper's Table 9
  --data DIR          folder with train.tsv and dev.tsv (mnli: dev_matched.tsv)
  --train FILE, --dev FILE     override the files in --data
  --max-len T         tokens per example, <s> and </s> included
  --eval-batch B      examples per evaluation batch                                  [64]
  --limit-train N, --limit-dev N   use only the first N examples (quick runs)
)";

// A GLUE file, tokenized: <s> A </s> or <s> A </s></s> B </s>, truncated to max_len (longest first).
struct Split {
  io::GlueDataset data;
  std::vector<std::vector<std::int64_t>> ids;
};

Split read_split(const fs::path& path, io::GlueTask task, const io::BpeTokenizer& tokenizer,
                 Index max_len, Index limit) {
  Split s{io::read_glue(path, task), {}};
  check<FormatError>(s.data.labelled, path.string(), ": has no labels (", s.data.layout,
                     "); training and evaluation need labelled rows");
  check<FormatError>(!s.data.examples.empty(), path.string(), ": has no examples");
  if (limit > 0 && static_cast<Index>(s.data.examples.size()) > limit) s.data.examples.resize(limit);
  std::vector<std::string> a, b;
  for (const io::GlueExample& ex : s.data.examples) {
    a.push_back(ex.text_a);
    if (ex.text_b) b.push_back(*ex.text_b);
  }
  io::EncodeOptions options;
  options.max_length = max_len;
  s.ids = tokenizer.encode_many(a, b, options);
  return s;
}

// A batch padded to its longest row, with the labels (classification) or scores (STS-B).
struct Batch {
  io::TokenBatch tokens;
  Tensor<std::int64_t> labels;
  Tensor<float> scores;
};

Batch make_batch(const Split& split, std::span<const Index> rows, std::int64_t pad) {
  std::vector<std::vector<std::int64_t>> ids;
  const auto B = static_cast<Index>(rows.size());
  Batch batch{{}, Tensor<std::int64_t>({B}), Tensor<float>({B})};
  for (Index i = 0; i < B; ++i) {
    const io::GlueExample& ex = split.data.examples[static_cast<std::size_t>(rows[i])];
    ids.push_back(split.ids[static_cast<std::size_t>(rows[i])]);
    if (ex.label) batch.labels[i] = *ex.label;
    if (ex.score) batch.scores[i] = *ex.score;
  }
  batch.tokens = io::pad_batch(ids, pad);
  return batch;
}

// Cross-entropy (classification) or mean squared error (STS-B), as RobertaForSequenceClassification.
Var<float> batch_loss(Tape<float>& tape, Model& model, const Batch& batch) {
  const auto out = model.forward(tape, batch.tokens.input_ids, batch.tokens.attention_mask);
  return model.is_regression() ? model.loss(tape, out.logits, batch.scores)
                               : model.loss(tape, out.logits, batch.labels);
}

// The task's metric on a split: its primary value (higher is better) and every score.
struct Evaluation {
  std::string metric;
  double value = 0;
  io::Json scores;
  std::vector<double> predictions;  // class ids, or STS-B scores
};

Evaluation evaluate(Model& model, const Split& split, Index batch_size, std::int64_t pad) {
  model.eval();
  const auto N = static_cast<Index>(split.ids.size());
  Evaluation e;
  std::vector<std::int64_t> pred, label;
  std::vector<double> score_pred, score_label;
  Tape<float> tape;
  NoGradScope<float> no_grad(tape);
  for (Index start = 0; start < N; start += batch_size) {
    std::vector<Index> rows;
    for (Index i = start; i < std::min(N, start + batch_size); ++i) rows.push_back(i);
    const Batch batch = make_batch(split, rows, pad);
    const Var<float> logits =
        model.forward(tape, batch.tokens.input_ids, batch.tokens.attention_mask).logits;
    const Index L = logits.size(1);
    for (Index i = 0; i < static_cast<Index>(rows.size()); ++i) {
      const float* row = logits.data().data() + i * L;
      if (model.is_regression()) {
        score_pred.push_back(row[0]);
        score_label.push_back(batch.scores[i]);
        e.predictions.push_back(row[0]);
      } else {
        pred.push_back(std::max_element(row, row + L) - row);
        label.push_back(batch.labels[i]);
        e.predictions.push_back(static_cast<double>(pred.back()));
      }
    }
    tape.clear();
  }
  e.metric = split.data.metric;
  if (e.metric == "matthews_correlation") {
    e.value = metrics::matthews_corrcoef(pred, label);
    e.scores = {{"matthews_correlation", e.value}, {"accuracy", metrics::accuracy(pred, label)}};
  } else if (e.metric == "accuracy_f1") {
    e.metric = "accuracy";
    e.value = metrics::accuracy(pred, label);
    e.scores = {{"accuracy", e.value}, {"f1", metrics::f1_binary(pred, label)}};
  } else if (e.metric == "pearson_spearman") {
    e.metric = "pearson";
    e.value = metrics::pearson(score_pred, score_label);
    e.scores = {{"pearson", train::json_number(e.value)},
                {"spearman", train::json_number(metrics::spearman(score_pred, score_label))}};
  } else {
    e.value = metrics::accuracy(pred, label);
    e.scores = {{"accuracy", e.value}};
  }
  return e;
}

// dev_predictions.tsv: index, prediction, label (written atomically).
void write_predictions(const fs::path& path, const Split& split, const Evaluation& e) {
  util::write_file_atomically(path, [&](std::ostream& out) {
    out << "index\tprediction\tlabel\n";
    char line[128];
    for (std::size_t i = 0; i < e.predictions.size(); ++i) {
      const io::GlueExample& ex = split.data.examples[i];
      if (ex.score)
        std::snprintf(line, sizeof line, "%zu\t%.9g\t%.9g\n", i, e.predictions[i], *ex.score);
      else
        std::snprintf(line, sizeof line, "%zu\t%d\t%lld\n", i, static_cast<int>(e.predictions[i]),
                      static_cast<long long>(*ex.label));
      out << line;
    }
  });
}

std::string format_eval(const Evaluation& e) {
  std::string out;
  for (const auto& [name, value] : e.scores.items()) {
    char buffer[64];
    if (value.is_number())
      std::snprintf(buffer, sizeof buffer, "%s%s %.4f", out.empty() ? "" : ", ", name.c_str(),
                    value.get<double>());
    else
      std::snprintf(buffer, sizeof buffer, "%s%s %s", out.empty() ? "" : ", ", name.c_str(),
                    value.get<std::string>().c_str());
    out += buffer;
  }
  return out;
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
    // --preset fixes the task; --task alone takes roberta-base-<task> (MNLI, which the paper does
    // not report, takes SST-2's settings).
    const train::GluePreset* preset = nullptr;
    if (args.has("--preset")) preset = &train::find_preset(train::glue_presets(), args.str("--preset"));
    const io::GlueTask task =
        io::glue_task_from_name(preset && !args.has("--task") ? std::string(preset->task)
                                                              : args.str("--task"));
    const std::string task_key = io::glue_task_spec(task).name;
    if (preset == nullptr)
      preset = &train::find_preset(train::glue_presets(),
                                   "roberta-base-" + (task == io::GlueTask::mnli ? "sst2" : task_key));
    check(task_key == preset->task || (task == io::GlueTask::mnli && !args.has("--preset")),
          "--preset ", preset->name, " is for task ", preset->task, " but --task is ", task_key);
    const train::RunOptions opt = train::run_options(*preset, args, "out/glue-" + task_key);
    const fs::path model_dir = args.str("--model");
    const fs::path tokenizer_dir = args.str("--tokenizer", model_dir.string());
    const fs::path data_dir = args.str("--data", "");
    const fs::path train_file = args.str("--train", (data_dir / "train.tsv").string());
    const fs::path dev_file = args.str(
        "--dev", (data_dir / (task == io::GlueTask::mnli ? "dev_matched.tsv" : "dev.tsv")).string());
    const Index max_len = args.integer("--max-len", preset->max_len);
    const Index eval_batch = args.integer("--eval-batch", 64);
    const Index limit_train = args.integer("--limit-train", 0);
    const Index limit_dev = args.integer("--limit-dev", 0);
    args.reject_unknown();
    check(args.positional().empty(), "unexpected argument '",
          args.positional().empty() ? "" : args.positional()[0], "' (options start with --)");
    check(data_dir.empty() == false || (args.has("--train") && args.has("--dev")) || opt.eval_only,
          "missing required option --data (a folder with train.tsv and dev.tsv)");
    check(max_len >= 4, "option --max-len must be >= 4, got ", max_len);
    check(eval_batch >= 1, "option --eval-batch must be >= 1, got ", eval_batch);
    if (opt.threads > 0) set_num_threads(opt.threads);
    reuse_freed_memory();  // keep freed activations for the next step (core/memory.hpp)
    ops::spectral::reproducible_fft(!opt.fast_fft);
    std::printf("finetune_glue: task %s, preset %s (flags override it), %d threads\n",
                task_key.c_str(), preset->name, num_threads());

    // ---- model and tokenizer --------------------------------------------------------------------
    io::BpeTokenizer tokenizer = io::BpeTokenizer::load(tokenizer_dir);
    check(tokenizer.template_kind() == io::Template::roberta, tokenizer_dir.string(),
          ": not a RoBERTa tokenizer (its vocabulary has no <s> and </s>)");
    io::RobertaConfig config = io::read_roberta_config(model_dir);
    const io::GlueTaskSpec& spec_of_task = io::glue_task_spec(task);
    if (spec_of_task.label_names.empty()) {  // STS-B: one output, mean squared error
      config.id2label = {"LABEL_0"};
      config.problem_type = "regression";
    } else {
      config.id2label = spec_of_task.label_names;
      config.problem_type = "single_label_classification";
    }
    check(tokenizer.vocab_size() <= config.vocab_size, tokenizer_dir.string(),
          ": the tokenizer has ids up to ", tokenizer.vocab_size() - 1, " but the model's vocab_size ",
          "is ", config.vocab_size, " (a tokenizer of another model?)");
    const Index pad = config.pad_token_id.value_or(1);
    check(max_len <= config.max_position_embeddings - pad - 1, "option --max-len ", max_len,
          " exceeds what the model's positions allow (max_position_embeddings ",
          config.max_position_embeddings, " - padding_idx ", pad, " - 1 = ",
          config.max_position_embeddings - pad - 1, ")");
    auto model = std::make_unique<Model>(config, opt.seed,
                                         opt.random_init ? models::WeightInit::hf
                                                         : models::WeightInit::skip);
    if (opt.random_init) {
      std::printf("model: %s/config.json with random weights (--random-init)\n",
                  model_dir.string().c_str());
    } else {
      const models::CheckpointReport report = models::load_checkpoint_weights(
          *model, models::find_checkpoint_files(model_dir), model->checkpoint_layout(),
          {.head_seed = opt.seed, .ignore_mismatched_sizes = true});
      std::printf("%s\n", report.summary().c_str());
    }

    // ---- adapters: FourierFT on query and value; the classifier head trains fully ----------------
    const peft::AdapterSpec spec = train::attach_adapter(
        *model, opt,
        {.targets = {{"query", "value"}, ""},
         .modules_to_save = {"classifier"},
         .task_type = "SEQ_CLS",
         .base_model_name_or_path =
             config.name_or_path.empty() ? model_dir.filename().string() : config.name_or_path});

    // ---- data ------------------------------------------------------------------------------------
    const Split dev = read_split(dev_file, task, tokenizer, max_len, limit_dev);
    fs::create_directories(opt.out);
    if (opt.eval_only) {
      const Evaluation e = evaluate(*model, dev, eval_batch, pad);
      write_predictions(opt.out / "dev_predictions.tsv", dev, e);
      io::write_json(opt.out / "eval.json", {{"task", task_key}, {"adapter", opt.adapter.string()},
                                             {"examples", dev.ids.size()}, {"metric", e.metric},
                                             {"value", train::json_number(e.value)},
                                             {"scores", e.scores}});
      std::printf("dev (%zu examples): %s\n", dev.ids.size(), format_eval(e).c_str());
      return 0;
    }
    const Split train_split = read_split(train_file, task, tokenizer, max_len, limit_train);
    const auto N = static_cast<Index>(train_split.ids.size());
    std::printf("data: train %lld examples (%s), dev %zu (%s), max_len %lld, dynamic padding\n",
                static_cast<long long>(N), train_file.string().c_str(), dev.ids.size(),
                dev_file.string().c_str(), static_cast<long long>(max_len));

    // ---- optimizer, schedule, state --------------------------------------------------------------
    optim::AdamW<float> optimizer(train::param_groups(*model, spec, opt),
                                  {.lr = opt.lr, .weight_decay = opt.weight_decay});
    const std::int64_t steps_per_epoch = train::steps_per_epoch(N, opt.batch, opt.grad_accum);
    const std::int64_t total_steps = steps_per_epoch * opt.epochs;
    const std::int64_t warmup = optim::warmup_steps_for_ratio(total_steps, opt.warmup_ratio);
    const optim::Schedule schedule = optim::linear_warmup_decay(warmup, total_steps);
    std::printf("optim: AdamW lr %g (adapter) / %g (head), weight decay %g, clip %g, %d epochs x "
                "%lld steps of %lld x %lld examples, linear schedule, warmup %lld steps\n",
                opt.lr, opt.head_lr, opt.weight_decay, opt.clip, opt.epochs,
                static_cast<long long>(steps_per_epoch), static_cast<long long>(opt.batch),
                static_cast<long long>(opt.grad_accum), static_cast<long long>(warmup));

    io::Json settings = train::resume_settings(opt);
    settings.update({{"task", task_key}, {"max_len", max_len}, {"train_examples", N},
                     {"model", model_dir.string()}});
    train::InterruptFlag interrupt;  // Ctrl-C: save the state at the next step boundary and stop
    train::Run run(opt, *model, optimizer, interrupt,
                   {.program = "finetune_glue", .settings = settings, .total_steps = total_steps,
                    .start_fields = {{"preset", preset->name}}, .keeps_best = true,
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
          const Batch batch = make_batch(train_split, rows, pad);
          const Var<float> loss = batch_loss(tape, *model, batch);
          tape.backward(loss, run.accumulate(step, loss, rows.size()));
          tape.clear();
        }
        run.reduce_gradients();  // Σ over MPI ranks
        if (opt.clip > 0) optim::clip_grad_norm(params, opt.clip);
        optimizer.step();
        optimizer.zero_grad();
        if (const auto code = run.end_step(step)) return *code;  // Ctrl-C or --stop-after
      }

      // ---- evaluate on dev after every epoch; keep the best ----------------------------------
      const Evaluation e = evaluate(*model, dev, eval_batch, pad);
      const io::Json entry = {{"metric", e.metric}, {"value", train::json_number(e.value)},
                              {"scores", e.scores}};
      const bool best = run.record_epoch(epoch, entry, e.value);
      if (run.is_root()) {  // every rank evaluates (same weights, same result); rank 0 writes
        if (best) peft::save_adapter(*model, spec, opt.out / "best_adapter");
        peft::save_adapter(*model, spec, opt.out / "adapter");
        write_predictions(opt.out / "dev_predictions.tsv", dev, e);
      }
      run.log({{"event", "eval"}, {"step", run.step()}, {"epoch", epoch + 1}, {"split", "dev"},
               {"metric", e.metric}, {"value", train::json_number(e.value)}, {"scores", e.scores},
               {"best_epoch", run.best_epoch()}});
      char line[256];
      std::snprintf(line, sizeof line, "epoch %d | dev %s | best %s %.4f at epoch %d | %s", epoch + 1,
                    format_eval(e).c_str(), e.metric.c_str(), run.best_value(), run.best_epoch(),
                    train::format_duration(run.epoch_seconds()).c_str());
      run.end_epoch(epoch, line);
    }
    run.end_loop();

    // ---- save: results, the merged model on request; the run is complete, so its state goes ----
    const io::Json& last = run.history().back();
    run.write_results({{"task", task_key}, {"preset", preset->name}, {"method", spec.method()},
                       {"metric", last["metric"]}, {"last_value", last["value"]}});
    if (opt.save_merged && run.is_root()) {
      peft::merge_adapters(*model);
      model->save_pretrained(opt.out / "merged");
      for (const char* f : {"vocab.json", "merges.txt", "tokenizer.json"})
        if (fs::exists(tokenizer_dir / f))
          util::copy_file_atomically(tokenizer_dir / f, opt.out / "merged" / f);
      std::printf("merged model: %s\n", (opt.out / "merged").string().c_str());
    }
    run.finish();
    std::printf("done: best dev %s %.4f at epoch %d; adapter in %s, best in %s\n",
                last["metric"].get<std::string>().c_str(), run.best_value(), run.best_epoch(),
                (opt.out / "adapter").string().c_str(),
                (opt.out / "best_adapter").string().c_str());
    return 0;
  } catch (const std::exception& e) {  // fourierft::Error names the file, tensor or option
    return world.fail(train::report_error("finetune_glue", e));
  }
}
