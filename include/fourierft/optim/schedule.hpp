// fourierft/optim/schedule.hpp — learning-rate schedules as functions step -> factor of the base lr:
// constant, constant with warmup, and Hugging Face's linear warmup + linear decay.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>

#include "fourierft/core/error.hpp"

namespace fourierft::optim {

// factor(step) multiplies each group's initial lr: optimizer.scale_lr(schedule(step)). As in
// Hugging Face's Trainer, step counts optimizer steps from 0 and the factor for step s is used for
// the (s+1)-th update, so with warmup the first update has lr 0.
using Schedule = std::function<double(std::int64_t step)>;

inline Schedule constant_schedule() {
  return [](std::int64_t) { return 1.0; };
}

// 0 -> 1 linearly over `warmup_steps`, then 1.
inline Schedule constant_with_warmup(std::int64_t warmup_steps) {
  check(warmup_steps >= 0, "constant_with_warmup: warmup_steps must be >= 0, got ", warmup_steps);
  return [=](std::int64_t step) {
    if (step < warmup_steps) return static_cast<double>(step) / static_cast<double>(warmup_steps);
    return 1.0;
  };
}

// get_linear_schedule_with_warmup:
//   step < warmup:  step / max(1, warmup)
//   otherwise:      max(0, (total - step) / max(1, total - warmup))
inline Schedule linear_warmup_decay(std::int64_t warmup_steps, std::int64_t total_steps) {
  check(warmup_steps >= 0 && total_steps >= 0, "linear_warmup_decay: steps must be >= 0, got ",
        "warmup ", warmup_steps, " and total ", total_steps);
  return [=](std::int64_t step) {
    if (step < warmup_steps)
      return static_cast<double>(step) /
             static_cast<double>(std::max<std::int64_t>(1, warmup_steps));
    return std::max(0.0,
                    static_cast<double>(total_steps - step) /
                        static_cast<double>(std::max<std::int64_t>(1, total_steps - warmup_steps)));
  };
}

// The Trainer's warmup_ratio: ceil(total_steps · ratio) warmup steps (FourierFT's GLUE runs: 0.06).
inline std::int64_t warmup_steps_for_ratio(std::int64_t total_steps, double ratio) {
  check(ratio >= 0 && ratio <= 1, "warmup_steps_for_ratio: ratio must be in [0, 1], got ", ratio);
  return static_cast<std::int64_t>(std::ceil(static_cast<double>(total_steps) * ratio));
}

}  // namespace fourierft::optim
