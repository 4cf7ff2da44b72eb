// fourierft/peft/fourierft.hpp — FourierFT as a PEFT method: the adapter a Linear layer carries
// (n trainable spectral coefficients, merge / unmerge) and apply_fourierft() over a whole model.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <tuple>
#include <vector>

#include "fourierft/core/random.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/peft/entries.hpp"
#include "fourierft/peft/fourierft_op.hpp"
#include "fourierft/peft/targets.hpp"

namespace fourierft::peft {

// Paper eq. 5's band-pass: favoured central frequency f_c and band width W.
struct FrequencyBias {
  double fc = 0;
  double W = 200;
};

// A fused projection whose output rows hold several weights (GPT-2's c_attn = q | k | v): adapt
// only some of the equal blocks, each with its own coefficients. The paper's E2E setting is
// {"c_attn", 3, {{"q", 0}, {"v", 2}}}: two d×d adapters per block, parameters
// `c_attn.fourierft_spectrum_q` and `c_attn.fourierft_spectrum_v`.
struct FusedSlices {
  std::string module;  // PEFT name rule (suffix after a dot)
  Index num_blocks = 3;
  std::vector<std::pair<std::string, Index>> slices;  // (suffix, block index)
};

// The settings, named as in PEFT's FourierFTConfig (adapter_config.json) where PEFT has them.
struct FourierFTConfig {
  Index n_frequency = 1000;           // n: coefficients per adapted weight
  double scaling = 150.0;             // the paper's α (PEFT's `scaling`; ΔW carries 1/(d_out·d_in))
  std::uint64_t random_loc_seed = 777;
  bool init_weights = false;          // false: c ~ N(0, 1) (PEFT's default); true: zeros
  TargetSpec target_modules;          // e.g. {{"query", "value"}}
  std::vector<std::pair<std::string, Index>> n_frequency_pattern;  // (regex, n): PEFT re.match(".*\.key$")
  std::vector<std::string> modules_to_save;  // trained fully and saved, e.g. {"classifier"}
  std::string bias = "none";          // "none" | "all" (every bias trains) | "fourier_only"
  std::optional<FrequencyBias> frequency_bias;  // none: uniform entries (PEFT's); else eq. 5
  std::vector<FusedSlices> fused_slices;        // adapt blocks of fused projections
};

// One shared entry matrix per weight shape (the paper's "shared across layers"), made on demand.
class EntryBank {
 public:
  EntryBank(std::uint64_t seed, std::optional<FrequencyBias> bias) : seed_(seed), bias_(bias) {}
  std::shared_ptr<const SpectralEntries> get(Index d_out, Index d_in, Index n) {
    auto& slot = entries_[{d_out, d_in, n}];
    if (!slot) {
      slot = std::make_shared<const SpectralEntries>(
          bias_ ? frequency_biased_entries(d_out, d_in, n, bias_->fc, bias_->W, seed_)
                : uniform_entries(d_out, d_in, n, seed_));
    }
    return slot;
  }
  // Registers entries read from a file (frequency-biased adapters store theirs).
  void put(std::shared_ptr<const SpectralEntries> e) { entries_[{e->d_out, e->d_in, e->n()}] = std::move(e); }

 private:
  std::uint64_t seed_;
  std::optional<FrequencyBias> bias_;
  std::map<std::tuple<Index, Index, Index>, std::shared_ptr<const SpectralEntries>> entries_;
};

// ---------------------------------------------------------------------------
// FourierFTAdapter: attached to a frozen Linear (weight W0). While unmerged, the layer computes
//   y = x·(W0 + ΔW)ᵀ + b,   ΔW = α·Re(IDFT2(F)),  F = c at the entries, 0 elsewhere
// in one GEMM (peft/fourierft_op.hpp). merge() adds ΔW into W0 for zero-overhead inference;
// unmerge() subtracts a recomputed ΔW.
template <class Real>
class FourierFTAdapter : public nn::LinearAdapter<Real> {
 public:
  struct Block {
    std::string param_name;  // "fourierft_spectrum", or "fourierft_spectrum_q" for a slice
    Var<Real> spectrum;      // (n)
    std::shared_ptr<const SpectralEntries> entries;
    Index out_offset = 0;
  };

  // `blocks` gives (param_name, entries, out_offset) per adapted block; coefficients start as
  // N(0, 1) draws from `rng`, or zeros when init_zeros.
  FourierFTAdapter(
      Real scaling,
      const std::vector<std::tuple<std::string, std::shared_ptr<const SpectralEntries>, Index>>& blocks,
      Rng& rng, bool init_zeros)
      : scaling_(scaling), blocks_(blocks.size()) {
    for (std::size_t k = 0; k < blocks.size(); ++k) {
      auto& [name, entries, offset] = blocks[k];
      Block& b = blocks_[k];
      b.param_name = name;
      b.entries = entries;
      b.out_offset = offset;
      b.spectrum = Var<Real>::parameter(init_zeros ? Tensor<Real>({entries->n()})
                                                   : randn<Real>({entries->n()}, rng));
      this->register_parameter(b.param_name, b.spectrum);
    }
  }

  Var<Real> forward(Tape<Real>& tape, const nn::Linear<Real>& base, const Var<Real>& x) override {
    std::vector<SpectralBlock<Real>> spectral;
    for (const Block& b : blocks_) spectral.push_back({b.spectrum, b.entries, scaling_, b.out_offset});
    return fourierft_linear(tape, x, base.weight, base.bias, spectral, base.layout());
  }

  void merge(nn::Linear<Real>& base) override {
    check(!this->merged_, "FourierFTAdapter::merge: already merged");
    add_delta(base, Real(1));
    this->merged_ = true;
  }
  void unmerge(nn::Linear<Real>& base) override {
    check(this->merged_, "FourierFTAdapter::unmerge: not merged");
    add_delta(base, Real(-1));
    this->merged_ = false;
  }

  // ΔW of block k: (d_out_block, d_in) in (out, in) layout.
  Tensor<Real> delta_weight(std::size_t k = 0) const {
    const Block& b = blocks_.at(k);
    Tensor<Real> dW({b.entries->d_out, b.entries->d_in});
    fourierft_delta_forward<Real>(dW.data(), b.spectrum.data(), *b.entries, scaling_);
    return dW;
  }
  const std::vector<Block>& blocks() const { return blocks_; }
  Real scaling() const { return scaling_; }

 private:
  // W0 += sign·ΔW at the block's rows (transposed for Conv1D's (in, out) layout).
  void add_delta(nn::Linear<Real>& base, Real sign) {
    const bool out_in = base.layout() == ops::WeightLayout::out_in;
    const Index d_in = base.d_in(), d_out = base.d_out();
    Tensor<Real>& w = base.weight.value();
    for (std::size_t k = 0; k < blocks_.size(); ++k) {
      const Tensor<Real> dW = delta_weight(k);
      const Block& b = blocks_[k];
      for (Index p = 0; p < b.entries->d_out; ++p)
        for (Index q = 0; q < d_in; ++q) {
          const Index row = b.out_offset + p;
          w[out_in ? row * d_in + q : q * d_out + row] += sign * dW[p * d_in + q];
        }
    }
  }

  Real scaling_;
  std::vector<Block> blocks_;
};

// n for a module: the first n_frequency_pattern key k with re.match(".*\.k$", name), else the default.
inline Index fourierft_n_for(const FourierFTConfig& config, const std::string& module_name) {
  for (const auto& [pattern, n] : config.n_frequency_pattern)
    if (std::regex_match(module_name, std::regex(".*\\." + pattern)) || module_name == pattern) return n;
  return config.n_frequency;
}

// Freezes the model, attaches a FourierFTAdapter to every target Linear (shared entries per shape),
// and unfreezes modules_to_save and biases as `bias` says. Entries come from `bank` when given
// (loading an adapter with stored entries), else from the config's seed and bias.
template <class Real>
AppliedAdapters apply_fourierft(nn::Module<Real>& model, const FourierFTConfig& config, Rng& rng,
                                EntryBank* bank = nullptr) {
  check(config.bias == "none" || config.bias == "all" || config.bias == "fourier_only",
        "apply_fourierft: bias must be 'none', 'all' or 'fourier_only', got '", config.bias, "'");
  EntryBank own_bank(config.random_loc_seed, config.frequency_bias);
  EntryBank& entries = bank ? *bank : own_bank;
  model.freeze_all();
  AppliedAdapters applied;
  for (auto& [name, linear] : find_target_linears(model, config.target_modules, "apply_fourierft")) {
    const Index n = fourierft_n_for(config, name);
    std::vector<std::tuple<std::string, std::shared_ptr<const SpectralEntries>, Index>> blocks;
    const FusedSlices* fused = nullptr;
    for (const FusedSlices& f : config.fused_slices)
      if (name_matches(name, f.module)) fused = &f;
    if (fused) {
      check<ShapeError>(linear->d_out() % fused->num_blocks == 0, "apply_fourierft: ", name,
                        " has ", linear->d_out(), " outputs, not divisible into ",
                        fused->num_blocks, " blocks");
      const Index block = linear->d_out() / fused->num_blocks;
      for (const auto& [suffix, index] : fused->slices) {
        check(index >= 0 && index < fused->num_blocks, "apply_fourierft: slice '", suffix,
              "' of ", name, " has block index ", index, " outside [0, ", fused->num_blocks, ")");
        blocks.emplace_back("fourierft_spectrum_" + suffix, entries.get(block, linear->d_in(), n),
                            index * block);
      }
    } else {
      blocks.emplace_back("fourierft_spectrum", entries.get(linear->d_out(), linear->d_in(), n), 0);
    }
    linear->attach("", std::make_shared<FourierFTAdapter<Real>>(Real(config.scaling), blocks, rng,
                                                                config.init_weights));
    if (config.bias == "fourier_only" && linear->has_bias()) linear->bias.set_requires_grad(true);
    applied.adapted.push_back(name);
  }
  if (config.bias == "all") unfreeze_biases(model);
  unfreeze_modules(model, config.modules_to_save);
  applied.params = parameter_summary(model);
  return applied;
}

// Merges (or unmerges) every attached adapter of the model into its base weights.
template <class Real>
void merge_adapters(nn::Module<Real>& model, bool merge = true) {
  for (auto& [name, module] : model.named_modules())
    if (auto* linear = dynamic_cast<nn::Linear<Real>*>(module))
      for (auto& [aname, adapter] : linear->adapters()) {
        if (merge && !adapter->merged()) adapter->merge(*linear);
        if (!merge && adapter->merged()) adapter->unmerge(*linear);
      }
}

}  // namespace fourierft::peft
