// fourierft/ops/attention.hpp — multi-head and grouped-query scaled-dot-product attention as one
// fused op, with causal, sliding-window and key-padding masks, and the one-query decoding step.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/parallel.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/detail/vector_math.hpp"
#include "fourierft/detail/gemm.hpp"
#include "fourierft/detail/isa.hpp"

namespace fourierft::ops {

struct AttentionOptions {
  // Query i sees keys j <= i + (Tk - Tq): a decoder (GPT-2). With Tk > Tq the queries are the last
  // Tq positions of a sequence whose first Tk - Tq keys come from a KV cache.
  bool causal = false;
  // (B, Tk) flattened, 1 = real token, 0 = padding (Hugging Face's attention_mask); keys marked 0
  // get exactly zero weight. The span is only read during the call.
  std::optional<std::span<const std::int64_t>> key_padding_mask;
  // Multiplies q·k; default 1 / sqrt(HS).
  std::optional<double> scale;
  // Grouped-query attention (LLaMA-2 70B, Mistral, Qwen): k and v hold num_kv_heads heads of HS
  // values (width num_kv_heads·HS), each shared by NH / num_kv_heads consecutive query heads
  // (HF's repeat_kv, read in place here: nothing is repeated). Unset: NH (multi-head attention).
  std::optional<Index> num_kv_heads;
  // With causal: query i (absolute position i + Tk - Tq) sees only keys j > i + Tk - Tq - W, the
  // last W positions including its own (HF's sliding_window_overlay, Mistral / Qwen2).
  std::optional<Index> sliding_window;
};

// ---------------------------------------------------------------------------
// Softmax of one row of scores s: (Tk), in place, over the visible keys: first <= j < limit (causal,
// sliding window) and key_mask[j] != 0 (key_mask: (Tk), or empty for none). Hidden keys get exactly 0; a row that sees
// no key becomes all zeros (not NaN), so padded queries output 0 and pass no gradient.
//   p_j = exp(s_j - max) / sum_visible exp(s_i - max)   (subtracting the max keeps exp <= 1)
// Vectorised: the max over 16 lanes, exp_fast over the row and an 8-lane sum (a scalar std::exp per
// score and one serial sum were most of a ViT-base attention forward).
template <class Real>
void masked_softmax_row(std::span<Real> s, Index limit, std::span<const std::int64_t> key_mask,
                        Index first = 0) {
  first = std::clamp<Index>(first, 0, limit);
  const bool any = key_mask.empty() ? limit > first
                                    : std::any_of(key_mask.begin() + first, key_mask.begin() + limit,
                                                  [](std::int64_t m) { return m != 0; });
  if (!any) {
    std::fill(s.begin(), s.end(), Real(0));
    return;
  }
  fourierft::detail::run_dispatched([&] {  // at the CPU's ISA level (detail/isa.hpp)
    Real* row = s.data() + first;
    const Index n = limit - first;
    const Real max =
        key_mask.empty()
            ? detail::max_lanes(row, n)
            : detail::max_lanes_of<Real>(n, [&, mask = key_mask.data() + first](std::ptrdiff_t j) {
                return mask[j] != 0 ? row[j] : -std::numeric_limits<Real>::infinity();
              });
    for (Index j = 0; j < n; ++j) row[j] = detail::exp_fast(row[j] - max);
    if (!key_mask.empty())
      for (Index j = first; j < limit; ++j)
        if (key_mask[j] == 0) s[j] = Real(0);
    const Real inv = Real(1) / detail::sum_lanes(row, n);
    for (Index j = 0; j < n; ++j) row[j] *= inv;
  });
  std::fill(s.begin(), s.begin() + first, Real(0));
  std::fill(s.begin() + limit, s.end(), Real(0));
}

// ---------------------------------------------------------------------------
// attention: heads split C into NH blocks of HS = C / NH columns (Hugging Face layout: head h uses
// columns h·HS .. (h+1)·HS of q, k, v and writes the same columns of y).
//   q: (B, Tq, C)   k, v: (B, Tk, C)   key_mask: (B, Tk) or empty   ->   y: (B, Tq, C)
//   per batch b and head h, with Q, K, V, O the head's (T, HS) column blocks (row stride C):
//     S = scale · Q·Kᵀ  (Tq, Tk);   P = masked row softmax(S);   O = P·V  (Tq, HS)
//   probs: (B, NH, Tq, Tk) receives P for backward (as PyTorch saves it); if empty, one (Tq, Tk)
//   scratch is used and nothing is kept (inference).
//   ldq, ldk, ldv: row strides of q, k, v (0 = contiguous); 3C reads the column blocks of one
//   packed (B, T, 3C) tensor [q | k | v] in place (GPT-2's c_attn). y is contiguous.
//   NKV: grouped-query attention, k and v (B, Tk, NKV·HS) with kv head g serving query heads
//   g·NH/NKV .. (g+1)·NH/NKV - 1 (0 = NH). window: causal sliding window W (0 = none), query i
//   sees keys i + Tk - Tq - W < j <= i + Tk - Tq.
// Work is split by (batch, kv head): the query heads of one group run one after another on the
// same thread, so in backward they add into their shared dK, dV blocks without a race (for
// multi-head attention a group is one head, as before).
//
// Threads. With a BLAS that runs serially inside an OpenMP region (OpenBLAS's OpenMP build, or
// Eigen; detail::gemm_is_serial_in_parallel_regions), the B·NH heads are shared out by one OpenMP
// loop, each head's GEMMs and softmax on one thread: one fork/join per call. With OpenBLAS's
// pthreads build, heads run one after another, each product one multi-threaded GEMM, and the row
// softmax on the calling thread between them, while S is still in cache (BLAS is never called
// inside an OpenMP region then: its pool would be oversubscribed). Measured before the OpenMP
// path existed, at B=8, T=128, C=768, NH=12, float, 2 threads, pthreads OpenBLAS: a GEMM per head
// 10.8 / 8.9 ms forward / backward against 14.1 / 21.6 ms for an OpenMP loop over heads with plain
// loops. With the OpenMP build, the per-head GEMMs each open a parallel region (2·B·NH per call),
// and on a loaded machine every one of them waits for a descheduled thread: one loop over heads
// avoids that. The GEMMs also compute the hidden upper triangle of a causal S; skipping it does
// not pay back the GEMM's speed.
namespace detail {
inline bool attention_heads_in_parallel(Index heads) {
  return heads > 1 && num_threads() > 1 && fourierft::detail::gemm_is_serial_in_parallel_regions();
}
}  // namespace detail

template <class Real>
void attention_forward(std::span<Real> y, std::span<Real> probs, std::span<const Real> q,
                       std::span<const Real> k, std::span<const Real> v,
                       std::span<const std::int64_t> key_mask, Index B, Index Tq, Index Tk, Index C,
                       Index NH, bool causal, Real scale, Index ldq = 0, Index ldk = 0,
                       Index ldv = 0, Index NKV = 0, Index window = 0) {
  const Index HS = C / NH;
  if (NKV == 0) NKV = NH;
  const Index group_size = NH / NKV;
  if (ldq == 0) ldq = C;
  if (ldk == 0) ldk = NKV * HS;
  if (ldv == 0) ldv = NKV * HS;
  // One group (b, g): its kv head and the query heads sharing it; scratch holds a head's (Tq, Tk)
  // scores when probs is not kept (inference).
  auto group = [&](Index bg, Real* scratch) {
    const Index b = bg / NKV, g = bg % NKV;
    const auto mask = key_mask.empty() ? key_mask
                                       : key_mask.subspan(static_cast<std::size_t>(b * Tk),
                                                          static_cast<std::size_t>(Tk));
    const Real* K = k.data() + b * Tk * ldk + g * HS;  // (Tk, HS), row stride ldk
    const Real* V = v.data() + b * Tk * ldv + g * HS;  // (Tk, HS), row stride ldv
    for (Index h = g * group_size; h < (g + 1) * group_size; ++h) {
      const Real* Q = q.data() + b * Tq * ldq + h * HS;  // (Tq, HS), row stride ldq
      Real* O = y.data() + b * Tq * C + h * HS;          // (Tq, HS), row stride C
      Real* P = probs.empty() ? scratch : probs.data() + (b * NH + h) * Tq * Tk;
      fourierft::detail::gemm<Real>(false, true, Tq, Tk, HS, scale, Q, ldq, K, ldk, Real(0), P,
                                    Tk);
      for (Index i = 0; i < Tq; ++i) {  // query i sees keys j <= i + (Tk - Tq) when causal
        const Index last = i + Tk - Tq;
        masked_softmax_row(std::span<Real>(P + i * Tk, static_cast<std::size_t>(Tk)),
                           causal ? std::min(Tk, last + 1) : Tk, mask,
                           causal && window > 0 ? last - window + 1 : 0);
      }
      fourierft::detail::gemm<Real>(false, false, Tq, HS, Tk, Real(1), P, Tk, V, ldv, Real(0), O,
                                    C);
    }
  };
  const std::size_t scratch_size = probs.empty() ? static_cast<std::size_t>(Tq * Tk) : 0;
  if (detail::attention_heads_in_parallel(B * NKV)) {
#pragma omp parallel
    {
      std::vector<Real> scratch(scratch_size);
#pragma omp for schedule(static)
      for (Index bg = 0; bg < B * NKV; ++bg) group(bg, scratch.data());
    }
  } else {
    std::vector<Real> scratch(scratch_size);
    for (Index bg = 0; bg < B * NKV; ++bg) group(bg, scratch.data());
  }
}

// With dO the head's block of dy and P saved by the forward pass (masks are inside P: a hidden
// key has P = 0, hence dS = 0):
//   dV += Pᵀ·dO     dP = dO·Vᵀ     dS = P ∘ (dP - rowsum(dP ∘ P))   (softmax backward)
//   dQ += scale · dS·K              dK += scale · dSᵀ·Q
// Heads are independent (each writes its own column blocks of dq, dk, dv) and are threaded as in
// the forward, by (batch, kv head) groups. Empty gradient spans are skipped. dq, dk, dv have the
// row strides of q, k, v (so with ld = 3C they are the column blocks of the packed tensor's
// gradient); dy is contiguous. NKV as attention_forward (the window is inside P).
// write_dq / write_dk / write_dv: that gradient is written (=), not added to (a gradient made by
// Var::grad_to_fill): its GEMMs run with beta = 0 — dK's and dV's for the first head of each group.
template <class Real>
void attention_backward(std::span<Real> dq, std::span<Real> dk, std::span<Real> dv,
                        std::span<const Real> dy, std::span<const Real> probs,
                        std::span<const Real> q, std::span<const Real> k, std::span<const Real> v,
                        Index B, Index Tq, Index Tk, Index C, Index NH, Real scale, Index ldq = 0,
                        Index ldk = 0, Index ldv = 0, Index NKV = 0, bool write_dq = false,
                        bool write_dk = false, bool write_dv = false) {
  const Index HS = C / NH;
  if (NKV == 0) NKV = NH;
  const Index group_size = NH / NKV;
  if (ldq == 0) ldq = C;
  if (ldk == 0) ldk = NKV * HS;
  if (ldv == 0) ldv = NKV * HS;
  const bool need_ds = !dq.empty() || !dk.empty();
  auto head = [&](Index bh, Real* ds) {  // ds: (Tq, Tk) scratch, dP and then dS in place
    const Index b = bh / NH, h = bh % NH, g = h / group_size;
    // The head's column block in each tensor (its group's in k and v).
    const Index q_at = b * Tq * ldq + h * HS, k_at = b * Tk * ldk + g * HS,
                v_at = b * Tk * ldv + g * HS, y_at = b * Tq * C + h * HS;
    const Real* P = probs.data() + bh * Tq * Tk;
    const Real* dO = dy.data() + y_at;
    const bool first_in_group = h % group_size == 0;
    const Real beta_dq = write_dq ? Real(0) : Real(1);
    const Real beta_dk = write_dk && first_in_group ? Real(0) : Real(1);
    const Real beta_dv = write_dv && first_in_group ? Real(0) : Real(1);
    if (!dv.empty())  // dV += Pᵀ·dO
      fourierft::detail::gemm<Real>(true, false, Tk, HS, Tq, Real(1), P, Tk, dO, C, beta_dv,
                                    dv.data() + v_at, ldv);
    if (!need_ds) return;
    fourierft::detail::gemm<Real>(false, true, Tq, Tk, HS, Real(1), dO, C, v.data() + v_at, ldv,
                                  Real(0), ds, Tk);  // dP = dO·Vᵀ
    fourierft::detail::run_dispatched([&] {  // dS = P ∘ (dP − rowsum(dP ∘ P)), row by row
      for (Index i = 0; i < Tq; ++i) {
        Real* row = ds + i * Tk;
        const Real* p = P + i * Tk;
        const Real dot = detail::dot_lanes(row, p, Tk);
        for (Index j = 0; j < Tk; ++j) row[j] = p[j] * (row[j] - dot);
      }
    });
    if (!dq.empty())  // dQ += scale·dS·K
      fourierft::detail::gemm<Real>(false, false, Tq, HS, Tk, scale, ds, Tk, k.data() + k_at, ldk,
                                    beta_dq, dq.data() + q_at, ldq);
    if (!dk.empty())  // dK += scale·dSᵀ·Q
      fourierft::detail::gemm<Real>(true, false, Tk, HS, Tq, scale, ds, Tk, q.data() + q_at, ldq,
                                    beta_dk, dk.data() + k_at, ldk);
  };
  // A group's heads one after another: they add into the same dK, dV blocks.
  auto group = [&](Index bg, Real* ds) {
    const Index b = bg / NKV, g = bg % NKV;
    for (Index h = g * group_size; h < (g + 1) * group_size; ++h) head(b * NH + h, ds);
  };
  const std::size_t scratch_size = need_ds ? static_cast<std::size_t>(Tq * Tk) : 0;
  if (detail::attention_heads_in_parallel(B * NKV)) {
#pragma omp parallel
    {
      std::vector<Real> ds(scratch_size);
#pragma omp for schedule(static)
      for (Index bg = 0; bg < B * NKV; ++bg) group(bg, ds.data());
    }
  } else {
    std::vector<Real> ds(scratch_size);
    for (Index bg = 0; bg < B * NKV; ++bg) group(bg, ds.data());
  }
}

// ---------------------------------------------------------------------------
// One layer's keys and values in a slotted cache (models::KvCache::layer_view makes one; a view:
// nothing owned or copied). A row's positions live in slots, so appending a token or reordering
// rows (beam search) moves no key:
//   key, value: (slots, capacity, C)   source, mask: (rows, capacity)
//   position t of row n is slot (source[n·capacity + t], t), its mask (1 token, 0 padding)
//   mask[n·capacity + t]; length positions are cached, the newest included
template <class Real>
struct SlottedKvView {
  const Real* key = nullptr;
  const Real* value = nullptr;
  const std::int32_t* source = nullptr;
  const std::int64_t* mask = nullptr;
  Index rows = 0, capacity = 0, length = 0, width = 0;  // width = C

  const Real* key_of(Index n, Index t) const { return key + offset(n, t); }
  const Real* value_of(Index n, Index t) const { return value + offset(n, t); }
  std::span<const std::int64_t> mask_of(Index n) const {
    return {mask + n * capacity, static_cast<std::size_t>(length)};
  }
  Index offset(Index n, Index t) const {
    return (static_cast<Index>(source[static_cast<std::size_t>(n * capacity + t)]) * capacity + t) *
           width;
  }
};

// step_attention: one new query per row against the row's cached positions 0..T-1 (T = kv.length,
// the new one already stored as the last), all heads: the Tq = 1 case of attention_forward,
// reading keys, values and the padding mask through the cache's slot table (incremental decoding).
//   q: (N, NH·HS), row stride ldq   kv: N = kv.rows rows of width NKV·HS   ->   y: (N, NH·HS)
//   per row n and head h (kv head g = h / (NH / NKV)):
//     s_j = scale · q_h·k_{g,j},  p = masked softmax(s),  y_h = sum_j p_j v_{g,j}
//   window W > 0: only the last W positions j >= T - W are seen (sliding window).
// The (row, head) pairs are threaded when there are enough of them: with 1 prompt the whole layer
// is ~70k multiply-adds, less than a fork/join costs on a busy machine.
template <class Real>
void step_attention_forward(std::span<Real> y, std::span<const Real> q, Index ldq,
                            const SlottedKvView<Real>& kv, Index NH, Index HS, Real scale,
                            Index window = 0) {
  const Index N = kv.rows, C = NH * HS, T = kv.length;
  check<ShapeError>(HS > 0 && kv.width % HS == 0 && NH % (kv.width / HS) == 0,
                    "step_attention: a cache of width ", kv.width, " does not hold whole kv ",
                    "heads of ", HS, " values shared by ", NH, " query heads");
  const Index group_size = NH / (kv.width / HS);
  check<ShapeError>(static_cast<Index>(y.size()) == N * C &&
                        static_cast<Index>(q.size()) >= (N - 1) * ldq + C,
                    "step_attention: y has ", y.size(), " and q ", q.size(), " values for ", N,
                    " rows of ", NH, " heads of ", HS, " (q row stride ", ldq, ")");
  const Index first = window > 0 ? std::max<Index>(0, T - window) : 0;
  auto head = [&](Index nh, Real* s) {
    const Index n = nh / NH, h = nh % NH, kv_at = (h / group_size) * HS;
    const std::span<const std::int64_t> mask = kv.mask_of(n);
    const Real* qh = q.data() + n * ldq + h * HS;
    for (Index j = first; j < T; ++j) {
      if (mask[j] == 0) continue;  // masked_softmax_row skips it
      const Real* k = kv.key_of(n, j) + kv_at;
      Real dot = 0;
#pragma omp simd reduction(+ : dot)
      for (Index i = 0; i < HS; ++i) dot += qh[i] * k[i];
      s[j] = scale * dot;
    }
    masked_softmax_row(std::span<Real>(s, static_cast<std::size_t>(T)), T, mask, first);
    Real* o = y.data() + n * C + h * HS;
    std::fill_n(o, HS, Real(0));
    for (Index j = first; j < T; ++j) {
      if (s[j] == Real(0)) continue;
      const Real* v = kv.value_of(n, j) + kv_at;
      const Real p = s[j];
#pragma omp simd
      for (Index i = 0; i < HS; ++i) o[i] += p * v[i];
    }
  };
  const bool threaded = num_threads() > 1 && N * NH * T * HS >= (Index(1) << 18);
#pragma omp parallel if (threaded)
  {
    std::vector<Real> s(static_cast<std::size_t>(T));
#pragma omp for schedule(static)
    for (Index nh = 0; nh < N * NH; ++nh) head(nh, s.data());
  }
}

// GPT-2's call: qkv (N, 1, 3C) packed [q | k | v], q in columns [0, C); cache width C.
template <class Real>
void step_attention_forward(std::span<Real> y, std::span<const Real> qkv,
                            const SlottedKvView<Real>& kv, Index NH, Real scale) {
  const Index N = kv.rows, C = kv.width;
  check<ShapeError>(static_cast<Index>(y.size()) == N * C &&
                        static_cast<Index>(qkv.size()) == N * 3 * C,
                    "step_attention: y has ", y.size(), " and qkv ", qkv.size(),
                    " values for a cache of ", N, " rows of width ", C);
  step_attention_forward(y, qkv, 3 * C, kv, NH, C / NH, scale);
}

namespace detail {
// The checked key-padding mask ((B, Tk) of 0 / 1, or empty) and the score scale (default
// 1 / sqrt(HS)) of an attention op; `what` names the tensor that fixes Tk in messages.
inline std::span<const std::int64_t> attention_mask(const char* op,
                                                    const AttentionOptions& options,
                                                    const char* what, const Shape& shape, Index B,
                                                    Index Tk) {
  if (!options.key_padding_mask) return {};
  const std::span<const std::int64_t> mask = *options.key_padding_mask;
  check<ShapeError>(static_cast<Index>(mask.size()) == B * Tk, op, ": key_padding_mask has ",
                    mask.size(), " entries but ", what, " ", shape_str(shape),
                    " needs B * Tk = ", B * Tk);
  for (Index n = 0; n < B * Tk; ++n) {
    const std::int64_t m = mask[static_cast<std::size_t>(n)];
    check(m == 0 || m == 1, op, ": key_padding_mask[", n / Tk, ", ", n % Tk, "] = ", m,
          " must be 0 (padding) or 1 (token)");
  }
  return mask;
}
template <class Real>
Real attention_scale(const AttentionOptions& options, Index HS) {
  return static_cast<Real>(options.scale
                               ? *options.scale
                               : 1.0 / std::sqrt(static_cast<double>(std::max<Index>(HS, 1))));
}
}  // namespace detail

// attention(tape, q, k, v, NH, {.causal = true, .key_padding_mask = mask}) -> (B, Tq, C).
// With options.num_kv_heads = NKV, k and v are (B, Tk, NKV·C/NH) (grouped-query attention).
template <class Real>
Var<Real> attention(Tape<Real>& tape, const Var<Real>& q, const Var<Real>& k, const Var<Real>& v,
                    Index num_heads, const AttentionOptions& options = {}) {
  check<ShapeError>(q.dim() == 3, "attention: q must be (B, Tq, C), got shape ",
                    shape_str(q.shape()));
  check<ShapeError>(k.dim() == 3, "attention: k must be (B, Tk, C), got shape ",
                    shape_str(k.shape()));
  const Index B = q.size(0), Tq = q.size(1), C = q.size(2), Tk = k.size(1);
  check(num_heads >= 1, "attention: num_heads must be >= 1, got ", num_heads);
  check<ShapeError>(C % num_heads == 0, "attention: C = ", C,
                    " is not divisible by num_heads = ", num_heads);
  const Index NH = num_heads, HS = C / NH, NKV = options.num_kv_heads.value_or(NH);
  check(NKV >= 1 && NH % NKV == 0, "attention: num_kv_heads = ", NKV,
        " must divide num_heads = ", NH);
  const Index Ckv = NKV * HS;
  check<ShapeError>(k.shape() == Shape{B, Tk, Ckv}, "attention: k has shape ",
                    shape_str(k.shape()), " but q ", shape_str(q.shape()), " needs (", B, ", Tk, ",
                    Ckv, ")");
  check<ShapeError>(v.shape() == k.shape(), "attention: v has shape ", shape_str(v.shape()),
                    " but k has ", shape_str(k.shape()));
  check<ShapeError>(!options.causal || Tk >= Tq, "attention: causal needs Tk >= Tq (the first ",
                    "Tk - Tq keys are cached), got Tq = ", Tq, " and Tk = ", Tk);
  const Index window = options.sliding_window.value_or(0);
  check(!options.sliding_window || (options.causal && window >= 1),
        "attention: sliding_window = ", window, " needs causal attention and a window >= 1");
  const auto mask = detail::attention_mask("attention", options, "k", k.shape(), B, Tk);
  const Real scale = detail::attention_scale<Real>(options, HS);

  // Keep P only if backward will run.
  const bool keep =
      tape.grad_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
  // Every element of P and y is written: scores by a GEMM (beta = 0) then the row softmax, each
  // head's output block by a GEMM, the heads' blocks covering all C columns.
  Tensor<Real> probs = Tensor<Real>::uninitialized(keep ? Shape{B, NH, Tq, Tk} : Shape{0});
  Var<Real> y = tape.output_uninitialized({B, Tq, C});
  attention_forward<Real>(y.data(), probs.data(), q.data(), k.data(), v.data(), mask, B, Tq, Tk, C,
                          NH, options.causal, scale, 0, 0, 0, NKV, window);
  tape.record("attention", {q, k, v}, y, [=](std::span<const Real> dy) {
    // First gradients are written, not zeroed and added to — unless q, k, v share a Var (then
    // one's writes would land on another's sums).
    const bool distinct = !q.same_as(k) && !q.same_as(v) && !k.same_as(v);
    bool fresh_q = false, fresh_k = false, fresh_v = false;
    const std::span<Real> dq = distinct ? grad_to_fill_if_needed(q, fresh_q) : grad_if_needed(q);
    const std::span<Real> dk = distinct ? grad_to_fill_if_needed(k, fresh_k) : grad_if_needed(k);
    const std::span<Real> dv = distinct ? grad_to_fill_if_needed(v, fresh_v) : grad_if_needed(v);
    attention_backward<Real>(dq, dk, dv, dy, probs.data(), q.data(), k.data(), v.data(), B, Tq,
                             Tk, C, NH, scale, 0, 0, 0, NKV, fresh_q, fresh_k, fresh_v);
  });
  return y;
}

// attention_packed_qkv(tape, qkv, NH, options) = attention(tape, q, k, v, NH, options) with
// [q | k | v] the column blocks of one projection (GPT-2's c_attn), read in place:
//   qkv: (B, T, 3C), row stride 3C   ->   y: (B, T, C);   Tq = Tk = T, key mask (B, T)
// Backward adds dq, dk, dv straight into the blocks of dqkv: no narrow copies either way.
template <class Real>
Var<Real> attention_packed_qkv(Tape<Real>& tape, const Var<Real>& qkv, Index num_heads,
                               const AttentionOptions& options = {}) {
  check<ShapeError>(qkv.dim() == 3 && qkv.size(2) % 3 == 0,
                    "attention_packed_qkv: qkv must be (B, T, 3C), got shape ",
                    shape_str(qkv.shape()));
  const Index B = qkv.size(0), T = qkv.size(1), C = qkv.size(2) / 3, ld = 3 * C;
  check(num_heads >= 1, "attention_packed_qkv: num_heads must be >= 1, got ", num_heads);
  check<ShapeError>(C % num_heads == 0, "attention_packed_qkv: C = ", C,
                    " is not divisible by num_heads = ", num_heads);
  const auto mask =
      detail::attention_mask("attention_packed_qkv", options, "qkv", qkv.shape(), B, T);
  const Index NH = num_heads, HS = C / NH;
  const Real scale = detail::attention_scale<Real>(options, HS);

  const bool keep = tape.grad_enabled() && qkv.requires_grad();
  Tensor<Real> probs = Tensor<Real>::uninitialized(keep ? Shape{B, NH, T, T} : Shape{0});
  Var<Real> y = tape.output_uninitialized({B, T, C});  // all written, as in attention()
  if (y.numel() == 0) return y;  // nothing to read (and the blocks' offsets would leave qkv)
  const std::span<const Real> x = qkv.data();  // q, k, v start at columns 0, C, 2C
  attention_forward<Real>(y.data(), probs.data(), x, x.subspan(C), x.subspan(2 * C), mask, B, T, T,
                          C, NH, options.causal, scale, ld, ld, ld);
  tape.record("attention", {qkv}, y, [=](std::span<const Real> dy) {
    const std::span<const Real> x = qkv.data();
    bool fresh = false;  // a first gradient: every column block is written by its heads' GEMMs
    const std::span<Real> dx = grad_to_fill_if_needed(qkv, fresh);
    if (dx.empty()) return;
    attention_backward<Real>(dx, dx.subspan(C), dx.subspan(2 * C), dy, probs.data(), x,
                             x.subspan(C), x.subspan(2 * C), B, T, T, C, NH, scale, ld, ld, ld, 0,
                             fresh, fresh, fresh);
  });
  return y;
}

}  // namespace fourierft::ops
