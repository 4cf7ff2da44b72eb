// fourierft/train/run.hpp — train::Run, the bookkeeping of an example program's training: start or
// resume, log.jsonl and progress, step counter, data position, stop requests, best epoch, cleanup.
#pragma once

// The program writes the training step itself in main and calls Run at the step's and epoch's end:
//   train::Run run(opt, *model, optimizer, interrupt, {.program = "finetune_glue", ...});
//   for (int epoch = run.epoch(); epoch < opt.epochs; ++epoch) {
//     const auto batches = train::epoch_batches(N, opt.batch, opt.seed, epoch);
//     for (const train::Step& step : run.steps(epoch, batches)) {    // resumes mid-epoch
//       optimizer.scale_lr(schedule(step.index));
//       ...model->train(), reseed dropout for step.index...
//       for (Index m = step.begin; m < step.end; ++m) {               // gradient accumulation
//         const Var<float> loss = ...forward batches[m]...;
//         tape.backward(loss, run.accumulate(step, loss, batches[m].size()));
//         tape.clear();
//       }
//       ...clip, optimizer.step(), optimizer.zero_grad()...
//       if (const auto code = run.end_step(step)) return *code;       // Ctrl-C / --stop-after
//     }
//     ...evaluate...;  run.record_epoch(epoch, {...}, value);  ...;  run.end_epoch(epoch, line);
//   }
//   run.end_loop();  ...;  run.write_results({...});  run.finish({...});
// Files and events are those of train/checkpoint.hpp (state/) and train/log.hpp (log.jsonl).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/optim/optimizer.hpp"
#include "fourierft/train/checkpoint.hpp"
#include "fourierft/train/log.hpp"
#include "fourierft/train/options.hpp"
#include "fourierft/train/progress.hpp"
#include "fourierft/train/signals.hpp"

namespace fourierft::train {

// What differs between the programs' runs.
struct RunSetup {
  const char* program = "";              // the log's "program"
  io::Json settings;                     // the options --resume must find unchanged
  std::int64_t total_steps = 0;          // optimizer steps of the whole run
  io::Json start_fields = io::Json::object();  // more fields of the start / resume event
  const char* unit = "ex";               // the progress bar's unit: ex | img | tok
  const char* rate_key = "examples_per_s";  // the step event's throughput field
  bool keeps_best = false;               // track the best epoch (record_epoch's value; higher wins)
  bool save_after_last_epoch = false;    // keep a state after the last epoch (e2e decodes after)
  bool lr_per_group = true;              // the step event's "lr": one per group, or group 0's alone
};

// One optimizer step: micro-batches [begin, end) of the epoch's batches.
struct Step {
  std::int64_t index = 0;  // optimizer steps done before it (schedule, dropout and data seeds)
  int epoch = 0;           // 0-based
  Index begin = 0, end = 0;
  Index examples = 0;      // Σ of the micro-batches' sizes
};

class Run {
 public:
  // Starts in opt.out, or resumes from opt.out/state with --resume (train::start_or_resume:
  // the model's trainable tensors and the optimizer restored, the settings checked), and writes the
  // start / resume event to opt.out/log.jsonl.
  Run(const RunOptions& opt, nn::Module<float>& model, optim::Optimizer<float>& optimizer,
      const InterruptFlag& interrupt, RunSetup setup)
      : opt_(opt), model_(model), optimizer_(optimizer), interrupt_(interrupt),
        setup_(std::move(setup)),
        state_(start_or_resume(opt.out, opt.resume, model, optimizer, setup_.settings,
                               initial_record(setup_.keeps_best))),
        log_(opt.out / "log.jsonl"),
        progress_(setup_.total_steps, state_.step, opt.log_every, setup_.unit),
        step_(state_.step) {
    io::Json start = {{"event", opt.resume ? "resume" : "start"}, {"program", setup_.program},
                      {"step", state_.step}, {"settings", setup_.settings},
                      {"total_steps", setup_.total_steps}};
    start.update(setup_.start_fields);
    log_.write(start);
  }

  int epoch() const { return state_.epoch; }          // the epoch to continue with
  std::int64_t step() const { return step_; }         // optimizer steps done
  const io::Json& history() const { return state_.record["history"]; }
  int best_epoch() const { return state_.record["best_epoch"].get<int>(); }  // keeps_best; -1: none
  double best_value() const {                          // NAN before the first finite value
    const io::Json& v = state_.record["best_value"];
    return v.is_null() ? NAN : v.get<double>();
  }

  // The optimizer steps of `epoch` over its micro-batches `batches` (grad_accum per step), from the
  // resume position on; their indices continue the step counter.
  std::vector<Step> steps(int epoch, std::span<const std::vector<Index>> batches) {
    epoch_start_ = step_start_ = std::chrono::steady_clock::now();
    const auto num_batches = static_cast<Index>(batches.size());
    std::vector<Step> out;
    for (Index b = epoch == state_.epoch ? state_.next_batch : 0; b < num_batches;
         b += opt_.grad_accum) {
      Step s{step_ + static_cast<std::int64_t>(out.size()), epoch, b,
             std::min(num_batches, b + opt_.grad_accum), 0};
      for (Index m = s.begin; m < s.end; ++m) s.examples += static_cast<Index>(batches[m].size());
      out.push_back(s);
    }
    return out;
  }

  // Micro-batch of `examples` examples in `step`, its mean loss just recorded: stops on a NaN / Inf
  // loss before any update (naming the step), adds weight · loss to the step's loss and returns
  // the backward seed, weight = examples / step.examples, so the accumulated gradient is that of
  // the mean over all the step's examples.
  Tensor<float> accumulate(const Step& step, const Var<float>& loss, std::size_t examples) {
    check_finite_loss(loss.item(), step.index + 1, step.epoch + 1);
    const double weight = static_cast<double>(examples) / static_cast<double>(step.examples);
    step_loss_ += weight * loss.item();
    return Tensor<float>::full({}, static_cast<float>(weight));
  }

  // After the optimizer step: counts it, shows it on the progress bar and, on logged steps, writes
  // {"event": "step", step, epoch, loss, lr, ms, <rate_key>} (items: examples unless given, e.g.
  // tokens). Then, if Ctrl-C / SIGTERM arrived or --stop-after steps are done, saves the state so
  // that --resume continues after this step, logs it and returns the exit status (128 + signal, or
  // 130 for --stop-after); otherwise nullopt.
  std::optional<int> end_step(const Step& step, std::optional<std::int64_t> items = std::nullopt) {
    step_ = step.index + 1;
    const auto window = progress_.step(step_, step_loss_, optimizer_.lr(0),
                                       seconds_since(step_start_), items.value_or(step.examples));
    step_loss_ = 0;
    if (window) {
      io::Json lrs = io::Json::array();
      for (std::size_t g = 0; g < optimizer_.num_groups(); ++g) lrs.push_back(optimizer_.lr(g));
      log_.write({{"event", "step"}, {"step", step_}, {"epoch", step.epoch + 1},
                  {"loss", json_number(window->loss)},
                  {"lr", setup_.lr_per_group ? lrs : io::Json(optimizer_.lr(0))},
                  {"ms", window->ms}, {setup_.rate_key, window->items_per_s}});
    }
    step_start_ = std::chrono::steady_clock::now();
    if (!interrupt_.requested() && !(opt_.stop_after > 0 && step_ == opt_.stop_after))
      return std::nullopt;
    save_state(step.epoch, step.end);
    log_.write({{"event", "interrupt"}, {"step", step_}, {"epoch", step.epoch + 1},
                {"signal", interrupt_.requested()}});
    progress_.finish();
    std::printf("%s at step %lld: state saved to %s; continue with the same command plus "
                "--resume\n", interrupt_.requested() ? "interrupted" : "stopped (--stop-after)",
                static_cast<long long>(step_), state_dir().string().c_str());
    return interrupt_.requested() ? interrupt_.exit_code() : 130;
  }

  // After epoch `epoch`'s evaluation: appends `entry` + {epoch, step} to the history and, with
  // keeps_best, makes it the best when `value` is finite and higher than the best so far (returns
  // whether it did).
  bool record_epoch(int epoch, io::Json entry, double value = NAN) {
    io::Json& record = state_.record;
    bool best = false;
    if (setup_.keeps_best) {
      best = std::isfinite(value) &&
             (record["best_value"].is_null() || value > record["best_value"].get<double>());
      if (best) {
        record["best_value"] = value;
        record["best_epoch"] = epoch + 1;
      }
    }
    entry["epoch"] = epoch + 1;
    entry["step"] = step_;
    record["history"].push_back(std::move(entry));
    return best;
  }

  // A JSON-lines record of the program's own (an evaluation: {"event": "eval", ...}).
  void log(io::Json record) { log_.write(std::move(record)); }
  // Seconds since the epoch's steps began (steps()).
  double epoch_seconds() const { return seconds_since(epoch_start_); }

  // The end of epoch `epoch`: prints `line` (the evaluation) and saves the state, which continues
  // with the next epoch (not after the last one, unless save_after_last_epoch).
  void end_epoch(int epoch, const std::string& line) {
    progress_.print(line);
    if (epoch + 1 < opt_.epochs || setup_.save_after_last_epoch) save_state(epoch + 1, 0);
  }
  // After the loop: ends the progress bar's line.
  void end_loop() { progress_.finish(); }

  // opt.out/results.json: `fields` + {"steps", "history"} (+ {"best_epoch", "best_value"}).
  void write_results(io::Json fields) const {
    fields["steps"] = step_;
    fields["history"] = history();
    if (setup_.keeps_best) {
      fields["best_epoch"] = state_.record["best_epoch"];
      fields["best_value"] = state_.record["best_value"];
    }
    io::write_json(opt_.out / "results.json", fields);
  }
  // The run is complete: removes its state and logs {"event": "done", "step", (+ best) + fields}.
  void finish(io::Json fields = io::Json::object()) {
    std::error_code ec;
    std::filesystem::remove_all(state_dir(), ec);
    fields["event"] = "done";
    fields["step"] = step_;
    if (setup_.keeps_best) {
      fields["best_epoch"] = state_.record["best_epoch"];
      fields["best_value"] = state_.record["best_value"];
    }
    log_.write(std::move(fields));
  }

 private:
  static io::Json initial_record(bool keeps_best) {
    if (keeps_best)
      return {{"best_value", nullptr}, {"best_epoch", -1}, {"history", io::Json::array()}};
    return {{"history", io::Json::array()}};
  }
  std::filesystem::path state_dir() const { return opt_.out / "state"; }
  void save_state(int epoch, Index next_batch) {
    state_.step = step_;
    state_.epoch = epoch;
    state_.next_batch = next_batch;
    save_train_state(state_dir(), model_, optimizer_, state_, setup_.settings);
  }

  RunOptions opt_;
  nn::Module<float>& model_;
  optim::Optimizer<float>& optimizer_;
  const InterruptFlag& interrupt_;
  RunSetup setup_;
  TrainState state_;
  JsonlLog log_;
  Progress progress_;
  std::int64_t step_ = 0;
  double step_loss_ = 0;
  std::chrono::steady_clock::time_point epoch_start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point step_start_ = epoch_start_;
};

}  // namespace fourierft::train
