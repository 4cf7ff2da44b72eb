// fourierft/train/loop.hpp — the pieces of a training loop every example program shares: one
// optimizer step over accumulated micro-batches, its log record, and stopping with a saved state.
#pragma once

// A program's loop then reads (finetune_glue.cpp):
//   for (Index b = first; b < num_batches; b += opt.grad_accum) {
//     const Index end = std::min(num_batches, b + opt.grad_accum);
//     const train::StepResult r = train::optimizer_step(tape, optimizer, schedule, opt.clip, step,
//         epoch, sizes_of(b, end), [&](Tape<float>& t, Index m) { return loss_of(t, b + m); });
//     ++step;
//     train::log_step(progress, log, optimizer, step, epoch, r, "examples_per_s");
//     if (auto code = train::stop_requested(...)) return *code;
//   }

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <span>

#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/optim/clip.hpp"
#include "fourierft/optim/optimizer.hpp"
#include "fourierft/train/checkpoint.hpp"
#include "fourierft/train/log.hpp"
#include "fourierft/train/progress.hpp"
#include "fourierft/train/signals.hpp"

namespace fourierft::train {

struct StepResult {
  double loss = 0;       // mean over the step's examples
  Index examples = 0;    // examples (or images) the step consumed
  double seconds = 0;    // wall time of the step
};

// One optimizer step over micro-batches m = 0 .. sizes.size()-1 (gradient accumulation):
//   loss = Σ_m (sizes[m] / Σ sizes) · loss_m,   so the accumulated gradient is that of the mean
//   over all the step's examples; then clip (clip > 0: global norm), lr = base · schedule(step),
//   AdamW step, zero the gradients.
// micro_loss(tape, m) records micro-batch m's forward pass and returns its mean loss; each is
// back-propagated (seeded with its weight) and cleared before the next, so only one micro-batch's
// activations are alive at a time. A NaN/Inf loss throws before any update, naming the step.
// `step` is the number of steps done so far (the new one is step + 1).
template <class Schedule, class MicroLoss>
StepResult optimizer_step(Tape<float>& tape, optim::Optimizer<float>& optimizer,
                          const Schedule& schedule, double clip, std::int64_t step, int epoch,
                          std::span<const Index> sizes, MicroLoss&& micro_loss) {
  const auto start = std::chrono::steady_clock::now();
  StepResult r;
  for (Index s : sizes) r.examples += s;
  for (std::size_t m = 0; m < sizes.size(); ++m) {
    const Var<float> loss = micro_loss(tape, static_cast<Index>(m));
    check_finite_loss(loss.item(), step + 1, epoch + 1);
    const double weight = static_cast<double>(sizes[m]) / static_cast<double>(r.examples);
    r.loss += weight * loss.item();
    tape.backward(loss, Tensor<float>::full({}, static_cast<float>(weight)));
    tape.clear();
  }
  if (clip > 0) {
    std::vector<Var<float>> params = optimizer.parameters();
    optim::clip_grad_norm(params, clip);
  }
  optimizer.scale_lr(schedule(step));
  optimizer.step();
  optimizer.zero_grad();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

// Shows step `step` (1-based) on the progress bar / log line and, on logged steps, appends its
// JSONL record {"event": "step", step, epoch, loss, lr (one per group), ms, <rate_key>}.
inline void log_step(Progress& progress, JsonlLog& log, const optim::Optimizer<float>& optimizer,
                     std::int64_t step, int epoch, const StepResult& r, const char* rate_key) {
  const auto window = progress.step(step, r.loss, optimizer.lr(0), r.seconds, r.examples);
  if (!window) return;
  io::Json lrs = io::Json::array();
  for (std::size_t g = 0; g < optimizer.num_groups(); ++g) lrs.push_back(optimizer.lr(g));
  log.write({{"event", "step"}, {"step", step}, {"epoch", epoch + 1}, {"loss", window->loss},
             {"lr", lrs}, {"ms", window->ms}, {rate_key, window->items_per_s}});
}

// At a step boundary: if Ctrl-C / SIGTERM arrived or `stop_after` (> 0) steps are done, saves the
// state so that --resume continues with batch `next_batch` of epoch `epoch`, logs it, and returns
// the exit status (128 + signal, or 130 for --stop-after); otherwise nullopt.
inline std::optional<int> stop_requested(const InterruptFlag& interrupt, std::int64_t stop_after,
                                         const std::filesystem::path& state_dir,
                                         const nn::Module<float>& model,
                                         const optim::Optimizer<float>& optimizer,
                                         TrainState& state, const io::Json& settings,
                                         JsonlLog& log, Progress& progress, std::int64_t step,
                                         int epoch, std::int64_t next_batch) {
  if (!interrupt.requested() && !(stop_after > 0 && step == stop_after)) return std::nullopt;
  state.step = step;
  state.epoch = epoch;
  state.next_batch = next_batch;
  save_train_state(state_dir, model, optimizer, state, settings);
  log.write({{"event", "interrupt"}, {"step", step}, {"epoch", epoch + 1},
             {"signal", interrupt.requested()}});
  progress.finish();
  std::printf("%s at step %lld: state saved to %s; continue with the same command plus --resume\n",
              interrupt.requested() ? "interrupted" : "stopped (--stop-after)",
              static_cast<long long>(step), state_dir.string().c_str());
  return interrupt.requested() ? interrupt.exit_code() : 130;
}

}  // namespace fourierft::train
