// fourierft/train/seeds.hpp — every random draw of a training run as a function of (seed, epoch,
// step): data order, augmentation, dropout. That is what lets --resume continue a run exactly.
#pragma once

// A generator's internal state is not saved with a checkpoint; instead each consumer is re-seeded
// from (run seed, what, epoch or step) before use:
//   epoch_order(n, seed, epoch)        the shuffled example order of an epoch
//   step_rng(seed, stream, step)       e.g. the crops and flips of a step's images
//   reseed_dropout(model, seed, step)  every nn::Dropout of the model's tree, before a step
//   step_rng(seed, Stream::masking, step)   the masked-LM positions of a pretraining step
// so a run resumed at step s draws exactly what the uninterrupted run drew from step s on.
// Floating-point results must repeat too: ops::spectral::reproducible_fft() makes FFTW choose its
// algorithms by estimate instead of by timing (FFTW_MEASURE can pick another algorithm in another
// process, which changes the last bits of ΔW). BLAS and OpenMP loops repeat for a fixed thread
// count.

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include "fourierft/core/random.hpp"
#include "fourierft/nn/dropout.hpp"
#include "fourierft/nn/module.hpp"

namespace fourierft::train {

// splitmix64 of the combined words: well-spread seeds from small, related numbers.
inline std::uint64_t mix_seed(std::uint64_t a, std::uint64_t b, std::uint64_t c = 0) {
  std::uint64_t z = a * 0x9E3779B97F4A7C15ull ^ (b + 0x632BE59BD9B4E019ull) * 0xBF58476D1CE4E5B9ull ^
                    (c + 0x94D049BB133111EBull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Streams of step_rng, so two consumers of the same step never share draws.
// (masking: the masked-LM positions and replacements of pretraining.)
enum class Stream : std::uint64_t { order = 1, dropout = 2, augment = 3, masking = 4 };

inline Rng step_rng(std::uint64_t seed, Stream stream, std::uint64_t step) {
  return Rng(mix_seed(seed, static_cast<std::uint64_t>(stream), step));
}

// The order of n examples in `epoch`: a Fisher-Yates shuffle seeded from (seed, epoch).
inline std::vector<Index> epoch_order(Index n, std::uint64_t seed, int epoch) {
  std::vector<Index> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), Index(0));
  Rng rng = step_rng(seed, Stream::order, static_cast<std::uint64_t>(epoch));
  for (std::size_t i = order.size(); i > 1; --i)
    std::swap(order[i - 1], order[rng.below(i)]);
  return order;
}

// The micro-batches of `epoch`: epoch_order(n) cut into runs of `batch` (the last may be shorter).
inline std::vector<std::vector<Index>> epoch_batches(Index n, Index batch, std::uint64_t seed,
                                                     int epoch) {
  const std::vector<Index> order = epoch_order(n, seed, epoch);
  std::vector<std::vector<Index>> batches;
  for (Index start = 0; start < n; start += batch)
    batches.emplace_back(order.begin() + start, order.begin() + std::min(n, start + batch));
  return batches;
}

// Optimizer steps per epoch when each step takes `accum` micro-batches of `batch` examples.
inline std::int64_t steps_per_epoch(Index n, Index batch, Index accum) {
  const Index batches = (n + batch - 1) / batch;
  return (batches + accum - 1) / accum;
}

// Re-seeds every dropout site of the model for optimizer step `step` (call before its forward):
// the k-th nn::Dropout of named_modules() (registration order, k = 0, 1, 2, ...) gets the stream
// mix_seed(mix_seed(seed, dropout, step), k). GPT-2: transformer.drop, then per block
// attn.attn_dropout, attn.resid_dropout, mlp.dropout; RoBERTa: embeddings.dropout, per layer
// attention.self.dropout, attention.output.dropout, output.dropout, then classifier.dropout; ViT
// alike (attention.attention.dropout).
template <class Real>
void reseed_dropout(nn::Module<Real>& model, std::uint64_t seed, std::uint64_t step) {
  const std::uint64_t step_seed = mix_seed(seed, static_cast<std::uint64_t>(Stream::dropout), step);
  std::uint64_t k = 0;
  for (auto& [name, module] : model.named_modules())
    if (auto* site = dynamic_cast<nn::Dropout<Real>*>(module))
      site->rng = Rng(mix_seed(step_seed, k++));
}

}  // namespace fourierft::train
