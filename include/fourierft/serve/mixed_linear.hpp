// fourierft/serve/mixed_linear.hpp — mixed-adapter batches: every sequence of a batch names its own
// adapter (or none); the frozen GEMM runs once, each adapter's correction is added to its rows.
#pragma once

// A MixedAdapterLinear is attached (as an nn::LinearAdapter) to every layer of ServedLayers. Before
// each forward the caller fills BatchAdapters: which adapter each batch row b uses (null = base).
// The layer then computes, for x: (B, T, d_in),
//   y = x·W0ᵀ + b                                   one GEMM for the whole batch (W0 frozen)
//   y[rows of a] += x[rows of a]·ΔW_aᵀ              for each adapter a present, by one of
//     spectral   x·ΔWᵀ = α/(M·N)·Re(IDFT_M(gather(DFT_N(x))))   (peft::fourierft_beside_forward;
//                LoRA: s·(x·Aᵀ)·Bᵀ), ΔW never formed: T·(2.5·N·log2 N + 2.5·M·log2 M + 8n) flops
//     dense      a cached ΔW (DeltaCache, one c2r per layer on a miss), one GEMM: 2·T·M·N flops
// and, when every row uses the same adapter, the merged weight instead of both:
//     merged     y = x·(W0 + ΔW_a)ᵀ + b, W0 + ΔW_a built once into a per-layer buffer (W0 untouched)
//                and reused while the batch keeps that one adapter.
// "Automatic" picks by measured cost: the first time a layer shape is seen, each path is timed on
// 1 and 16 random tokens (PathCosts, per (d_out, d_in, n)); a group of G tokens then takes the
// cheaper of G·spectral and dense(G) = fixed + G·per token (+ the ΔW build if not cached) — the
// dense product reads all of ΔW whatever G, so one decoding token pays nearly the cost of 16 —
// and the merged buffer is built once the
// single-adapter steps so far would have paid for it (build + merge <= steps·G·spectral).
// Exactness: every row gets its own adapter's x·(W0 + ΔW)ᵀ up to FP32 rounding (tests compare
// with the adapter alone). Inference only: nothing here records a gradient.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/parallel.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/detail/gemm.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/ops/linalg.hpp"
#include "fourierft/peft/fourierft_op.hpp"
#include "fourierft/serve/adapter_store.hpp"

namespace fourierft::serve {

enum class CorrectionPath {
  automatic,  // by measured cost (above)
  spectral,   // always from the spectrum (LoRA: its factors)
  dense,      // always a cached ΔW
  merged,     // W0 + ΔW when the batch has one adapter; spectral otherwise
};

// Which adapter each batch row of the next forward uses; filled by the caller (the scheduler).
struct BatchAdapters {
  std::vector<const ServedAdapter*> rows;  // (B); null: the base model
  CorrectionPath path = CorrectionPath::automatic;
  bool allow_merged = true;  // merged buffers cost one copy of each adapted weight
};

// Measured per-token costs of one layer shape (nanoseconds).
struct PathCosts {
  double spectral_per_token = 0;  // the correction from the spectrum
  double dense_fixed = 0;         // x·ΔWᵀ with ΔW at hand: fixed + G·dense_per_token per group
  double dense_per_token = 0;     //   (reading ΔW is the fixed part: a GEMV costs most of a GEMM)
  double delta_build = 0;         // one ΔW from the spectrum
  double merge = 0;               // W0 + ΔW into the buffer (besides the build)
};

namespace detail {

inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// y (G, d_out) += the adapter's correction of x (G, d_in) from its spectrum / factors.
inline void add_correction_spectral(float* y, const float* x, Index G, const LayerUpdate& u) {
  if (u.is_lora()) {
    const Index r = u.lora_A.size(0);
    Tensor<float> h({G, r});  // x·Aᵀ
    fourierft::detail::gemm<float>(false, true, G, r, u.d_in, 1.0f, x, u.d_in, u.lora_A.ptr(),
                                   u.d_in, 0.0f, h.ptr(), r);
    fourierft::detail::gemm<float>(false, true, G, u.d_out, r, u.lora_scale, h.ptr(), r,
                                   u.lora_B.ptr(), r, 1.0f, y, u.d_out);
    return;
  }
  peft::fourierft_beside_forward<float>(y, u.d_out, x, G, u.d_in, u.spectral);
}
// y (G, d_out) += x (G, d_in)·ΔWᵀ.
inline void add_correction_dense(float* y, const float* x, Index G, const Tensor<float>& dW,
                                 Index d_out, Index d_in) {
  fourierft::detail::gemm<float>(false, true, G, d_out, d_in, 1.0f, x, d_in, dW.ptr(), d_in, 1.0f,
                                 y, d_out);
}

// The costs of one shape, measured once per process (first use) on random data.
inline PathCosts measured_costs(const LayerUpdate& u) {
  static std::mutex mutex;
  static std::map<std::tuple<Index, Index, Index, bool>, PathCosts> table;
  const Index n = u.is_lora() ? u.lora_A.size(0) : u.spectral.front().coeffs.numel();
  const auto key = std::make_tuple(u.d_out, u.d_in, n, u.is_lora());
  {
    std::lock_guard lock(mutex);
    if (const auto it = table.find(key); it != table.end()) return it->second;
  }
  constexpr Index G = 16;
  Rng rng(5);
  const Tensor<float> x = randn<float>({G, u.d_in}, rng);
  Tensor<float> y({G, u.d_out});
  PathCosts c;
  auto best_of = [](int reps, auto&& run) {
    double best = 1e30;
    for (int i = 0; i < reps; ++i) {
      const auto start = std::chrono::steady_clock::now();
      run();
      best = std::min(best, seconds_since(start));
    }
    return best * 1e9;
  };
  add_correction_spectral(y.ptr(), x.ptr(), G, u);  // warm-up: FFTW plans
  c.spectral_per_token = best_of(3, [&] { add_correction_spectral(y.ptr(), x.ptr(), G, u); }) / G;
  Tensor<float> dW;
  c.delta_build = best_of(2, [&] { dW = u.delta_weight(); });
  const double dense_one = best_of(3, [&] { add_correction_dense(y.ptr(), x.ptr(), 1, dW, u.d_out, u.d_in); });
  const double dense_all = best_of(3, [&] { add_correction_dense(y.ptr(), x.ptr(), G, dW, u.d_out, u.d_in); });
  c.dense_per_token = std::max(0.0, (dense_all - dense_one) / static_cast<double>(G - 1));
  c.dense_fixed = std::max(0.0, dense_one - c.dense_per_token);
  Tensor<float> w = dW.clone();
  c.merge = best_of(2, [&] {
    for (Index i = 0; i < w.numel(); ++i) w[i] += dW[i];
  });
  std::lock_guard lock(mutex);
  table.emplace(key, c);
  return c;
}

}  // namespace detail

// ---------------------------------------------------------------------------
// The hook on one served layer (index `layer` of ServedLayers).
class MixedAdapterLinear : public nn::LinearAdapter<float> {
 public:
  MixedAdapterLinear(Index layer, const BatchAdapters* batch, DeltaCache* deltas)
      : layer_(layer), batch_(batch), deltas_(deltas) {}

  // x: (B, T, d_in) or (B·T, d_in) with B = batch.rows.size()  ->  (…, d_out)
  Var<float> forward(Tape<float>& tape, const nn::Linear<float>& base, const Var<float>& x) override {
    check(!tape.grad_enabled() || !x.requires_grad(), "MixedAdapterLinear: inference only");
    const Index d_in = base.d_in(), d_out = base.d_out(), N = x.numel() / d_in;
    const auto& rows = batch_->rows;
    const Index B = static_cast<Index>(rows.size());
    // Adapters present, each with its batch rows, in order of first appearance.
    std::vector<std::pair<const ServedAdapter*, std::vector<Index>>> groups;
    for (Index b = 0; b < B; ++b) {
      const ServedAdapter* a = rows[static_cast<std::size_t>(b)];
      if (a == nullptr || a->layer(layer_) == nullptr) continue;
      auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == a; });
      if (it == groups.end()) groups.push_back({a, {b}});
      else it->second.push_back(b);
    }
    if (groups.empty()) {
      streak_ = 0;
      return base.base_forward(tape, x);
    }
    check<ShapeError>(B > 0 && N % B == 0, "MixedAdapterLinear: ", N, " tokens for ", B,
                      " batch rows (", base.d_in(), " inputs each)");
    const Index T = N / B;
    const bool single = groups.size() == 1 && static_cast<Index>(groups[0].second.size()) == B;
    if (single && use_merged(base, *groups[0].first, N))
      return ops::linear(tape, x, Var<float>(merged_weight_), base.bias, base.layout());
    if (!single) streak_ = 0;

    Var<float> y = base.base_forward(tape, x);
    float* yd = y.data().data();
    const float* xd = x.data().data();
    for (const auto& [adapter, members] : groups) {
      const LayerUpdate& u = *adapter->layer(layer_);
      const Index G = static_cast<Index>(members.size()) * T;
      // The group's rows contiguous (gathered unless they already are).
      const bool contiguous = members.back() - members.front() + 1 == static_cast<Index>(members.size());
      Tensor<float> xg, yg({G, d_out});
      const float* xs = xd + members.front() * T * d_in;
      if (!contiguous) {
        xg = Tensor<float>::uninitialized({G, d_in});
        for (std::size_t k = 0; k < members.size(); ++k)
          std::copy_n(xd + members[k] * T * d_in, T * d_in, xg.ptr() + static_cast<Index>(k) * T * d_in);
        xs = xg.ptr();
      }
      if (choose_dense(*adapter, u, G)) {
        const auto dW = deltas_->get(*adapter, layer_);
        detail::add_correction_dense(yg.ptr(), xs, G, *dW, d_out, d_in);
      } else {
        detail::add_correction_spectral(yg.ptr(), xs, G, u);
      }
      for (std::size_t k = 0; k < members.size(); ++k) {
        float* dst = yd + members[k] * T * d_out;
        const float* src = yg.ptr() + static_cast<Index>(k) * T * d_out;
        for (Index i = 0; i < T * d_out; ++i) dst[i] += src[i];
      }
    }
    return y;
  }

  void merge(nn::Linear<float>&) override {
    throw ValueError("MixedAdapterLinear: a served layer is never merged (adapters vary per row)");
  }
  void unmerge(nn::Linear<float>&) override {
    throw ValueError("MixedAdapterLinear: a served layer is never merged (adapters vary per row)");
  }
  // Which path the last group took (tests, benchmarks): 's', 'd' or 'm'.
  char last_path() const { return last_path_; }
  std::size_t merged_bytes() const { return static_cast<std::size_t>(merged_weight_.numel()) * sizeof(float); }

 private:
  bool choose_dense(const ServedAdapter& a, const LayerUpdate& u, Index G) {
    CorrectionPath path = batch_->path;
    bool dense = false;
    if (path == CorrectionPath::dense) {
      dense = true;
    } else if (path == CorrectionPath::automatic) {
      const PathCosts c = detail::measured_costs(u);
      const bool cached = deltas_->find(a.uid, layer_) != nullptr;
      dense = c.dense_fixed + G * c.dense_per_token + (cached ? 0.0 : c.delta_build) <
              G * c.spectral_per_token;
    }
    last_path_ = dense ? 'd' : 's';
    return dense;
  }
  // Whether to run the batch (all rows on adapter a) on W0 + ΔW_a; builds the buffer if so.
  bool use_merged(const nn::Linear<float>& base, const ServedAdapter& a, Index N) {
    if (!batch_->allow_merged || base.half_precision()) return false;
    const CorrectionPath path = batch_->path;
    if (path == CorrectionPath::spectral || path == CorrectionPath::dense) return false;
    streak_ = streak_uid_ == a.uid ? streak_ + N : N;
    streak_uid_ = a.uid;
    if (merged_uid_ != a.uid) {
      if (path == CorrectionPath::automatic) {
        const PathCosts c = detail::measured_costs(*a.layer(layer_));
        if (static_cast<double>(streak_) * c.spectral_per_token < c.delta_build + c.merge) return false;
      }
      const auto dW = deltas_->get(a, layer_);
      const Index d_out = base.d_out(), d_in = base.d_in();
      if (merged_weight_.empty()) merged_weight_ = Tensor<float>::uninitialized(base.weight_shape());
      const float* w0 = base.weight.data().data();
      float* w = merged_weight_.ptr();
      for (Index p = 0; p < d_out; ++p)
        for (Index q = 0; q < d_in; ++q) {
          const Index at = base.weight_index(p, q);
          w[at] = w0[at] + (*dW)[p * d_in + q];
        }
      merged_uid_ = a.uid;
    }
    last_path_ = 'm';
    return true;
  }

  Index layer_;
  const BatchAdapters* batch_;
  DeltaCache* deltas_;
  Tensor<float> merged_weight_;      // W0 + ΔW of merged_uid_'s adapter, base layout
  std::uint64_t merged_uid_ = 0;     // 0: none
  std::uint64_t streak_uid_ = 0;
  Index streak_ = 0;                 // tokens run in a row with one single adapter
  char last_path_ = '-';
};

// Attaches a MixedAdapterLinear to every layer of the store (named "serve", no parameters).
// The model must carry no other adapter.
inline void attach_mixed_adapters(AdapterStore& store, const BatchAdapters& batch) {
  const ServedLayers& layers = store.layers();
  for (Index i = 0; i < layers.size(); ++i)
    layers.linears[static_cast<std::size_t>(i)]->attach(
        "serve", std::make_shared<MixedAdapterLinear>(i, &batch, &store.deltas()));
}

}  // namespace fourierft::serve
