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
//         const auto rows = run.shard(batches[m]);                    // this rank's part (MPI)
//         if (rows.empty()) continue;
//         const Var<float> loss = ...forward rows...;
//         tape.backward(loss, run.accumulate(step, loss, rows.size()));
//         tape.clear();
//       }
//       run.reduce_gradients();                                       // Σ over ranks (MPI)
//       ...clip, optimizer.step(), optimizer.zero_grad()...
//       if (const auto code = run.end_step(step)) return *code;       // Ctrl-C / --stop-after
//     }
//     ...evaluate...;  run.record_epoch(epoch, {...}, value);  ...;  run.end_epoch(epoch, line);
//   }
//   run.end_loop();  ...;  run.write_results({...});  run.finish({...});
// Files and events are those of train/checkpoint.hpp (state/) and train/log.hpp (log.jsonl).
// Crash safety: the state is saved at epoch ends, every --save-every steps and on Ctrl-C/SIGTERM or
// --stop-after; each save first fsyncs log.jsonl and records its length and the open logging window
// in the state, so a --resume after any crash (SIGKILL included) cuts the log back and continues
// it: the final log holds the uninterrupted run's step and eval records (equal but for "time",
// "ms" and the rate field) plus one "resume" record per resume and one "interrupt" record per
// Ctrl-C / --stop-after (docs/reliability.md). With --fast-fft the FFTW wisdom is saved with the
// state and imported on resume, so the resumed process plans the transforms as the first did.
// Data-parallel (RunSetup::comm with several ranks, docs/scaling.md): rank 0 alone reads and writes
// state/, log.jsonl and results and shows progress; it broadcasts the trainable tensors (and, on
// --resume, the optimizer state and position) at start; shard() gives each rank its slice of a
// micro-batch, reduce_gradients() sums gradients and loss over ranks, and a stop request on any
// rank stops all of them after the same step. The saved state is the same for every rank count.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <fftw3.h>
#include <unistd.h>

#include "fourierft/core/error.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/dist/comm.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/ops/spectral.hpp"
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
  dist::Communicator* comm = nullptr;    // data-parallel ranks (dist/world.hpp); nullptr: one process
};

// One optimizer step: micro-batches [begin, end) of the epoch's batches.
struct Step {
  std::int64_t index = 0;  // optimizer steps done before it (schedule, dropout and data seeds)
  int epoch = 0;           // 0-based
  Index begin = 0, end = 0;
  Index examples = 0;      // Σ of the micro-batches' sizes (all ranks together)
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
        comm_(setup_.comm != nullptr ? *setup_.comm : single_process()),
        state_(start(opt, model, optimizer, comm_, setup_)),
        log_(comm_.is_root() ? JsonlLog(opt.out / "log.jsonl") : JsonlLog()),
        progress_(setup_.total_steps, state_.step, opt.log_every, setup_.unit),
        step_(state_.step) {
    progress_.restore_loss_window({state_.window_loss_sum, state_.window_steps});
    io::Json start = {{"event", opt.resume ? "resume" : "start"}, {"program", setup_.program},
                      {"step", state_.step}, {"settings", setup_.settings},
                      {"total_steps", setup_.total_steps}};
    start.update(setup_.start_fields);
    if (comm_.size() > 1) start["processes"] = comm_.size();
    log_.write(start);
  }

  bool is_root() const { return comm_.is_root(); }  // rank 0: the one that writes files
  dist::Communicator& comm() { return comm_; }

  // This rank's contiguous slice of micro-batch `rows` (dist::shard); all of it in one process.
  std::span<const Index> shard(std::span<const Index> rows) const {
    return dist::shard(rows, comm_.rank(), comm_.size());
  }

  // After a step's backward passes, before clipping: every trainable gradient and the step's loss
  // become their sums over ranks (one all-reduce, dist::all_reduce_gradients). Nothing in one process.
  void reduce_gradients() {
    if (comm_.size() == 1) return;
    std::vector<Var<float>> params = optimizer_.parameters();
    float loss = static_cast<float>(step_loss_);
    dist::all_reduce_gradients(comm_, params, std::span<float>(&loss, 1));
    step_loss_ = loss;
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

  // Micro-batch (shard) of `examples` examples in `step`, its mean loss just recorded: stops on a NaN / Inf
  // loss before any update (naming the step), adds weight · loss to the step's loss and returns
  // the backward seed, weight = examples / step.examples, so the accumulated gradient is that of
  // the mean over all the step's examples.
  Tensor<float> accumulate(const Step& step, const Var<float>& loss, std::size_t examples) {
    return accumulate(step, loss, examples, 1.0);
  }
  // A loss that is a mean over a micro-batch's tokens, of which this rank's shard holds the share
  // `share` = shard tokens / micro-batch tokens: weight = examples · share / step.examples, where
  // `examples` counts the whole micro-batch. Summed over ranks this is the one-process weight.
  Tensor<float> accumulate(const Step& step, const Var<float>& loss, std::size_t examples,
                           double share) {
    check_finite_loss(loss.item(), step.index + 1, step.epoch + 1);
    const double weight = static_cast<double>(examples) * share / static_cast<double>(step.examples);
    step_loss_ += weight * loss.item();
    return Tensor<float>::full({}, static_cast<float>(weight));
  }

  // After the optimizer step: counts it, shows it on the progress bar and, on logged steps, writes
  // {"event": "step", step, epoch, loss, lr, ms, <rate_key>} (items: examples unless given, e.g.
  // tokens). Then, if Ctrl-C / SIGTERM arrived or --stop-after steps are done, logs it and saves
  // the state so that --resume continues after this step, and returns the exit status (128 +
  // signal, or 130 for --stop-after; 0 on ranks other than 0); otherwise nullopt, after saving the
  // state when the step is a multiple of --save-every.
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
    // Every rank stops after the same step: the signal any of them got (Ctrl-C reaches rank 0).
    const int signal = comm_.size() > 1 ? comm_.all_reduce_max(interrupt_.requested())
                                        : interrupt_.requested();
    if (!signal && !(opt_.stop_after > 0 && step_ == opt_.stop_after)) {
      if (opt_.save_every > 0 && step_ % opt_.save_every == 0) save_state(step.epoch, step.end);
      return std::nullopt;
    }
    // Logged before the save, so the record survives the resume's cut of the log.
    log_.write({{"event", "interrupt"}, {"step", step_}, {"epoch", step.epoch + 1},
                {"signal", signal}});
    save_state(step.epoch, step.end);
    comm_.barrier();  // the state is saved before any rank exits (mpirun may then end the job)
    progress_.finish();
    std::printf("%s at step %lld: state saved to %s; continue with the same command plus "
                "--resume\n", signal ? "interrupted" : "stopped (--stop-after)",
                static_cast<long long>(step_), state_dir().string().c_str());
    // The status goes to rank 0 alone: other ranks exit 0 (Open MPI's mpirun can hang when several
    // processes exit non-zero after MPI_Finalize, open-mpi/ompi#3380; it reports rank 0's status).
    if (!comm_.is_root()) return 0;
    return signal ? 128 + signal : 130;
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
    if (comm_.is_root()) io::write_json(opt_.out / "results.json", fields);
  }
  // The run is complete: logs {"event": "done", "step", (+ best) + fields}, fsyncs the log, then
  // removes the state folders (a kill in between leaves a state whose resume redoes the end).
  void finish(io::Json fields = io::Json::object()) {
    fields["event"] = "done";
    fields["step"] = step_;
    if (setup_.keeps_best) {
      fields["best_epoch"] = state_.record["best_epoch"];
      fields["best_value"] = state_.record["best_value"];
    }
    log_.write(std::move(fields));
    log_.sync();
    // With state.old / state.new: a kill inside a save can leave them beside the state.
    if (comm_.is_root()) remove_train_state(state_dir());
  }

 private:
  static io::Json initial_record(bool keeps_best) {
    if (keeps_best)
      return {{"best_value", nullptr}, {"best_epoch", -1}, {"history", io::Json::array()}};
    return {{"history", io::Json::array()}};
  }
  std::filesystem::path state_dir() const { return opt_.out / "state"; }
  // The log first (fsynced, its length and open window recorded), then the state folder.
  void save_state(int epoch, Index next_batch) {
    state_.step = step_;
    state_.epoch = epoch;
    state_.next_batch = next_batch;
    if (!comm_.is_root()) return;
    state_.log_bytes = log_.sync();
    const Progress::LossWindow window = progress_.loss_window();
    state_.window_loss_sum = window.loss_sum;
    state_.window_steps = window.steps;
    state_.files.clear();
    if (opt_.fast_fft) state_.files["fftw_wisdom"] = fftw_wisdom();
    save_train_state(state_dir(), model_, optimizer_, state_, setup_.settings);
  }
  // FFTW's accumulated wisdom (single precision: the training transforms) as text.
  static std::string fftw_wisdom() {
    // FFTW's threads initialised first, as import_fftw_wisdom does: the wisdom's signature names
    // the registered solvers, and a run whose transforms all ran on LaneFft made no plan (and so
    // never initialised them) would otherwise save wisdom its resume cannot import.
    ops::spectral::PlanCache<float>::instance();
    char* text = fftwf_export_wisdom_to_string();
    std::string out = text != nullptr ? text : "";
    std::free(text);  // the caller frees it with free() (FFTW manual, "Wisdom Utilities")
    return out;
  }
  static dist::Communicator& single_process() {
    static dist::SingleProcess one;
    return one;
  }
  // start_or_resume on rank 0; with several ranks, first the checks (the same settings everywhere,
  // --batch divisible), then rank 0's trainable tensors, position and (on --resume) optimizer state
  // broadcast to the others, which never touch opt.out.
  static TrainState start(const RunOptions& opt, nn::Module<float>& model,
                          optim::Optimizer<float>& optimizer, dist::Communicator& comm,
                          const RunSetup& setup) {
    if (comm.size() == 1) {
      TrainState state = start_or_resume(opt.out, opt.resume, model, optimizer, setup.settings,
                                         initial_record(setup.keeps_best));
      import_fftw_wisdom(opt, state);
      return state;
    }
    dist::check_batch_divisible(opt.batch, comm.size());
    dist::check_same_settings(comm, {{"program", setup.program}, {"settings", setup.settings},
                                     {"resume", opt.resume}, {"stop_after", opt.stop_after}});
    TrainState state;
    std::string position, optimizer_bytes;
    if (comm.is_root()) {
      state = start_or_resume(opt.out, opt.resume, model, optimizer, setup.settings,
                              initial_record(setup.keeps_best));
      position = io::Json{{"step", state.step}, {"epoch", state.epoch},
                          {"next_batch", state.next_batch}, {"record", state.record}}.dump();
      if (opt.resume)
        optimizer_bytes = read_bytes(*find_train_state(opt.out / "state") / "optimizer.safetensors");
    }
    comm.broadcast(position);
    std::vector<Var<float>> trainable;
    for (const auto& [name, p] : model.named_parameters())
      if (p.requires_grad()) trainable.push_back(p);
    dist::broadcast_values(comm, trainable);
    if (opt.resume) {
      comm.broadcast(optimizer_bytes);
      if (!comm.is_root()) load_optimizer_bytes(optimizer, optimizer_bytes, comm.rank());
    }
    if (!comm.is_root()) {
      const io::Json j = io::Json::parse(position);
      state.step = j.at("step").get<std::int64_t>();
      state.epoch = j.at("epoch").get<int>();
      state.next_batch = j.at("next_batch").get<std::int64_t>();
      state.record = j.at("record");
    }
    return state;
  }
  // --fast-fft resumes: the saved wisdom makes FFTW_MEASURE plan as the interrupted process did
  // (plans already made, before the Run, are kept: programs make none before it).
  static void import_fftw_wisdom(const RunOptions& opt, const TrainState& state) {
    const auto it = state.files.find("fftw_wisdom");
    if (!opt.fast_fft || it == state.files.end() || it->second.empty()) return;
    // The wisdom names FFTW's threaded solvers: they exist once the plan cache has initialised
    // FFTW's threads (without them the import fails).
    ops::spectral::PlanCache<float>::instance();
    check<FormatError>(fftwf_import_wisdom_from_string(it->second.c_str()) != 0,
                       (opt.out / "state" / "fftw_wisdom").string(), ": not FFTW wisdom");
  }
  static std::string read_bytes(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    check<IoError>(static_cast<bool>(in), "cannot read '", path.string(), "'");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  // Optimizer::load_state reads a file: rank 0's bytes go through a private temporary one.
  static void load_optimizer_bytes(optim::Optimizer<float>& optimizer, const std::string& bytes,
                                   int rank) {
    const std::filesystem::path tmp =
        std::filesystem::temp_directory_path() /
        str_cat("fourierft-optimizer-", ::getpid(), "-rank", rank, ".safetensors");
    {
      std::ofstream out(tmp, std::ios::binary);
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      check<IoError>(static_cast<bool>(out), "cannot write '", tmp.string(), "'");
    }
    std::error_code ec;
    try {
      optimizer.load_state(tmp);
    } catch (...) {
      std::filesystem::remove(tmp, ec);
      throw;
    }
    std::filesystem::remove(tmp, ec);
  }

  RunOptions opt_;
  nn::Module<float>& model_;
  optim::Optimizer<float>& optimizer_;
  const InterruptFlag& interrupt_;
  RunSetup setup_;
  dist::Communicator& comm_;
  TrainState state_;
  JsonlLog log_;
  Progress progress_;
  std::int64_t step_ = 0;
  double step_loss_ = 0;
  std::chrono::steady_clock::time_point epoch_start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point step_start_ = epoch_start_;
};

}  // namespace fourierft::train
