// fourierft/nn/embedding.hpp — Embedding<Real>: a (V, C) table looked up by integer ids (token,
// position and token-type embeddings), with torch's padding_idx (that row receives no gradient).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/ops/indexing.hpp"

namespace fourierft::nn {

// ---------------------------------------------------------------------------
// The backward of an embedding whose `padding_idx` row is frozen (torch's padding_idx):
//   dweight[ids[n], :] += dy[n, :]   for every n with ids[n] != padding_idx
// RoBERTa pads with id 1 in both its word and position tables, so row 1 of both gradients stays
// exactly zero although the forward reads that row for every pad. Same thread split as
// ops::embedding_backward: each thread owns a block of columns, so repeated ids need no atomics.
template <class Real>
void embedding_backward_skip(std::span<Real> dweight, std::span<const Real> dy,
                             std::span<const std::int64_t> ids, Index C, std::int64_t padding_idx) {
  if (dweight.empty()) return;
  const Index N = static_cast<Index>(ids.size());
  constexpr Index block = 64;
  const Index blocks = (C + block - 1) / block;
#pragma omp parallel for schedule(static) if (N * C > 65536)
  for (Index cb = 0; cb < blocks; ++cb) {
    const Index c0 = cb * block, c1 = std::min(C, c0 + block);
    for (Index n = 0; n < N; ++n) {
      const std::int64_t id = ids[static_cast<std::size_t>(n)];
      if (id == padding_idx) continue;
      Real* row = dweight.data() + id * C;
      const Real* g = dy.data() + n * C;
      for (Index c = c0; c < c1; ++c) row[c] += g[c];
    }
  }
}

// ---------------------------------------------------------------------------
// Embedding: y[..., :] = weight[ids[...], :].   weight: (V, C)   ids: any shape   ->   (ids..., C)
// Initialised like torch's nn.Embedding: N(0, 1), the padding row zero; or, without an Rng, zeros.
template <class Real>
class Embedding : public Module<Real> {
 public:
  Var<Real> weight;  // (V, C)

  Embedding(Index V, Index C, Rng& rng, std::optional<Index> padding_idx = std::nullopt)
      : Embedding(V, C, padding_idx) {
    Tensor<Real>& w = weight.value();
    for (Real& x : w.data()) x = static_cast<Real>(rng.normal());
    if (padding_idx) std::fill_n(w.ptr() + *padding_idx * C, C, Real(0));
  }
  // All zeros: for a table that a checkpoint (or a model's init_weights) fills anyway, which
  // spares drawing V·C normals (GPT-2's wte alone has 38.6 million).
  Embedding(Index V, Index C, std::optional<Index> padding_idx = std::nullopt)
      : padding_idx_(padding_idx) {
    check(V > 0 && C > 0, "Embedding: V and C must be positive, got ", V, " and ", C);
    check(!padding_idx || (*padding_idx >= 0 && *padding_idx < V), "Embedding: padding_idx ",
          padding_idx.value_or(0), " is outside [0, V = ", V, ")");
    weight = Var<Real>::parameter(Tensor<Real>({V, C}));
    this->register_parameter("weight", weight);
  }

  Index num_embeddings() const { return weight.size(0); }
  Index embedding_dim() const { return weight.size(1); }
  std::optional<Index> padding_idx() const { return padding_idx_; }

  // ids: integers in [0, V) of any shape -> (ids.shape()..., C). An id out of range is an
  // IndexError naming its position (ops::embedding checks).
  Var<Real> forward(Tape<Real>& tape, const Tensor<std::int64_t>& ids) const {
    if (!padding_idx_) return ops::embedding(tape, weight, ids);
    Var<Real> y;
    {
      NoGradScope<Real> lookup_only(tape);  // the same forward (and checks); our own backward below
      y = ops::embedding(tape, weight, ids);
    }
    const std::vector<std::int64_t> saved(ids.data().begin(), ids.data().end());
    const Index C = embedding_dim();
    const std::int64_t pad = *padding_idx_;
    tape.record("embedding", {weight}, y, [=, w = weight](std::span<const Real> dy) {
      embedding_backward_skip<Real>(grad_if_needed(w), dy, saved, C, pad);
    });
    return y;
  }

 private:
  std::optional<Index> padding_idx_;
};

}  // namespace fourierft::nn
