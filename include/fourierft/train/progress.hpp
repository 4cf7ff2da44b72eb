// fourierft/train/progress.hpp — Progress: the console view of a training loop. On a terminal, one
// bar redrawn in place (step, loss, lr, throughput, ETA); otherwise a plain line per logged step.
#pragma once

// Terminal:   [##########..........]  120/900 | loss 0.4132 | lr 5.0e-02 | 83 ms | 385 ex/s | ETA 1m05s
// Not a TTY:  step 120 | loss 0.4132 | lr 5.0e-02 | 83 ms        (every log_every steps, and the last)
// The loss and time shown are means over the steps since the last logged one. step() returns the
// logged window so the caller can write it to the JSON-lines log too. print() writes a line of its
// own (an evaluation result) without tearing the bar.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include <unistd.h>

#include "fourierft/train/log.hpp"

namespace fourierft::train {

class Progress {
 public:
  // The mean over one logging window.
  struct Window {
    std::int64_t step = 0;   // the last step of the window
    double loss = 0;         // mean training loss
    double ms = 0;           // mean milliseconds per optimizer step
    double items_per_s = 0;  // examples (or images) per second
  };

  // total_steps: optimizer steps of the whole run; first_step: where this run starts (resume).
  Progress(std::int64_t total_steps, std::int64_t first_step, std::int64_t log_every,
           std::string unit = "ex", std::optional<bool> tty = std::nullopt)
      : total_(total_steps), first_(first_step), log_every_(std::max<std::int64_t>(1, log_every)),
        unit_(std::move(unit)), tty_(tty ? *tty : ::isatty(STDOUT_FILENO) == 1),
        start_(Clock::now()) {}

  // Records optimizer step `step` (1-based): its loss, the lr shown, its wall time and how many
  // examples it consumed. Returns the window when this step is a logged one.
  std::optional<Window> step(std::int64_t step, double loss, double lr, double seconds,
                             std::int64_t items) {
    loss_sum_ += loss;
    seconds_sum_ += seconds;
    items_sum_ += items;
    ++count_;
    ++timed_;
    lr_ = lr;
    const bool logged = step % log_every_ == 0 || step == total_;
    std::optional<Window> window;
    if (logged) {
      window = Window{step, loss_sum_ / count_, 1000.0 * seconds_sum_ / timed_,
                      seconds_sum_ > 0 ? static_cast<double>(items_sum_) / seconds_sum_ : 0.0};
      loss_sum_ = seconds_sum_ = 0;
      items_sum_ = 0;
      count_ = timed_ = 0;
    }
    if (tty_) {
      const Window shown = window ? *window
                                  : Window{step, loss_sum_ / count_, 1000.0 * seconds_sum_ / timed_,
                                           seconds_sum_ > 0 ? items_sum_ / seconds_sum_ : 0.0};
      draw_bar(shown, step);
    } else if (window) {
      std::printf("%s\n", step_line(window->step, window->loss, lr_, window->ms).c_str());
      std::fflush(stdout);
    }
    return window;
  }

  // The logging window still open: Σ of its steps' losses and how many (saved with the training
  // state), and its restoration on resume, so the next logged mean is the uninterrupted run's.
  struct LossWindow {
    double loss_sum = 0;
    std::int64_t steps = 0;
  };
  LossWindow loss_window() const { return {loss_sum_, count_}; }
  void restore_loss_window(LossWindow w) {
    loss_sum_ = w.loss_sum;
    count_ = w.steps;
  }

  // A line of its own (evaluations, notices), printed above the bar.
  void print(const std::string& line) {
    if (tty_ && bar_shown_) std::printf("\r\033[K");
    std::printf("%s\n", line.c_str());
    if (tty_ && bar_shown_) std::printf("%s", last_bar_.c_str());
    std::fflush(stdout);
  }
  // Ends the bar's line (call before printing the final summary).
  void finish() {
    if (tty_ && bar_shown_) std::printf("\n");
    bar_shown_ = false;
    std::fflush(stdout);
  }
  bool tty() const { return tty_; }

 private:
  using Clock = std::chrono::steady_clock;

  void draw_bar(const Window& w, std::int64_t step) {
    const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
    const std::int64_t done = step - first_;
    const double eta = done > 0 ? elapsed / static_cast<double>(done) *
                                      static_cast<double>(total_ - step)
                                : -1.0;
    constexpr int width = 20;
    const int filled = total_ > 0 ? static_cast<int>(width * std::min<double>(1.0, double(step) / double(total_))) : 0;
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.append(static_cast<std::size_t>(width - filled), '.');
    char line[256];
    std::snprintf(line, sizeof line, "\r\033[K[%s] %lld/%lld | loss %.4f | lr %.1e | %.0f ms | %.1f %s/s | ETA %s",
                  bar.c_str(), static_cast<long long>(step), static_cast<long long>(total_), w.loss,
                  lr_, w.ms, w.items_per_s, unit_.c_str(), format_duration(eta).c_str());
    last_bar_ = line;
    std::printf("%s", line);
    std::fflush(stdout);
    bar_shown_ = true;
  }

  std::int64_t total_, first_, log_every_;
  std::string unit_;
  bool tty_;
  Clock::time_point start_;
  double loss_sum_ = 0, seconds_sum_ = 0, lr_ = 0;
  double items_sum_ = 0;
  std::int64_t count_ = 0;  // steps in the loss window (restored on resume)
  std::int64_t timed_ = 0;  // of which timed by this process (the ms and rate means)
  bool bar_shown_ = false;
  std::string last_bar_;
};

}  // namespace fourierft::train
