// fourierft/peft/fourierft.hpp — FourierFT as a PEFT method: the adapter a Linear layer carries
// (n trainable spectral coefficients, merge / unmerge), apply_fourierft() and FourierFTMethod.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "fourierft/core/random.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/io/safetensors.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/peft/adapter.hpp"
#include "fourierft/peft/entries.hpp"
#include "fourierft/peft/fourierft_op.hpp"
#include "fourierft/peft/method.hpp"
#include "fourierft/peft/name_pattern.hpp"
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

struct FourierFTMethod;

// The settings, named as in PEFT's FourierFTConfig (adapter_config.json) where PEFT has them.
struct FourierFTConfig {
  using Method = FourierFTMethod;
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
  std::string source;  // the adapter_config.json read (read_config); empty when built in code
};

// One shared entry matrix per weight shape (the paper's "shared across layers"), made on demand.
class EntryBank {
 public:
  EntryBank(std::uint64_t seed, std::optional<FrequencyBias> bias) : seed_(seed), bias_(bias) {}
  std::shared_ptr<const SpectralEntries> get(Index d_out, Index d_in, Index n) {
    requested_.insert(str_cat("fourierft_entries.", d_out, "x", d_in, ".n", n));
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
  // Whether get() asked for the entries saved under `key` (FourierFTMethod::entries_key).
  bool was_used(const std::string& key) const { return requested_.count(key) != 0; }

 private:
  std::set<std::string> requested_;
  std::uint64_t seed_;
  std::optional<FrequencyBias> bias_;
  std::map<std::tuple<Index, Index, Index>, std::shared_ptr<const SpectralEntries>> entries_;
};

// ---------------------------------------------------------------------------
// FourierFTAdapter: attached to a frozen Linear (weight W0). While unmerged, the layer computes
//   y = x·(W0 + ΔW)ᵀ + b,   ΔW = α·Re(IDFT2(F)),  F = c at the entries, 0 elsewhere
// in one GEMM (fourierft_linear), or as base(x) + x·ΔWᵀ with x·ΔWᵀ taken straight from the
// spectrum (fourierft_add_beside: half-precision base weights, few tokens; FourierFTPath).
// merge() adds ΔW into W0 for zero-overhead inference; unmerge() subtracts a recomputed ΔW.
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
    if (uses_beside(base, x, spectral))
      return fourierft_add_beside(tape, base.base_forward(tape, x), x, spectral);
    return fourierft_linear(tape, x, base.weight, base.bias, spectral, base.layout());
  }

  // How forward computes the layer while unmerged (FourierFTPath; automatic by default).
  void set_path(FourierFTPath path) { path_ = path; }
  FourierFTPath path() const { return path_; }
  // Whether forward(x) takes the beside product on this base: always for a half-precision base
  // weight (nn::Linear::half_precision(), once nn::Linear has it; merged is then an error), else
  // as path() says — automatic: fourierft_prefers_beside(T tokens, the blocks).
  bool uses_beside(const nn::Linear<Real>& base, const Var<Real>& x,
                   const std::vector<SpectralBlock<Real>>& spectral) const {
    if constexpr (requires { base.half_precision(); }) {
      if (base.half_precision()) {
        check(path_ != FourierFTPath::merged, "FourierFTAdapter: the merged path needs an FP32 ",
              "base weight, but this layer holds its frozen weight in half precision");
        return true;
      }
    }
    if (path_ != FourierFTPath::automatic) return path_ == FourierFTPath::beside;
    return fourierft_prefers_beside<Real>(x.numel() / base.d_in(), spectral);
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
  // W0 += sign·ΔW at each block's rows.
  void add_delta(nn::Linear<Real>& base, Real sign) {
    for (std::size_t k = 0; k < blocks_.size(); ++k)
      add_delta_weight<Real>(base, delta_weight(k).data(), blocks_[k].entries->d_out,
                             blocks_[k].out_offset, sign);
  }

  Real scaling_;
  std::vector<Block> blocks_;
  FourierFTPath path_ = FourierFTPath::automatic;
};

// Sets the path of every FourierFT adapter in `model`; returns how many there are.
template <class Real>
Index set_fourierft_path(nn::Module<Real>& model, FourierFTPath path) {
  Index count = 0;
  for (const auto& [name, module] : model.named_modules())
    if (auto* adapter = dynamic_cast<FourierFTAdapter<Real>*>(module)) {
      adapter->set_path(path);
      ++count;
    }
  return count;
}

// n for a module: the first n_frequency_pattern key k with re.match(".*\.k$", name), else the default.
// Linear-time matching (peft/name_pattern.hpp): a key cannot make this backtrack.
inline Index fourierft_n_for(const FourierFTConfig& config, const std::string& module_name) {
  for (const auto& [pattern, n] : config.n_frequency_pattern)
    if (module_name == pattern ||
        NamePattern(".*\\." + pattern, str_cat("n_frequency_pattern key '", pattern, "'"))
            .full_match(module_name))
      return n;
  return config.n_frequency;
}

// The adapter blocks of one target Linear: the whole weight, or the chosen slices of a fused one
// (each block: spectrum parameter name, shared entries, first output row).
using FourierFTBlockSpec = std::tuple<std::string, std::shared_ptr<const SpectralEntries>, Index>;
template <class Real>
std::vector<FourierFTBlockSpec> fourierft_blocks(const nn::Linear<Real>& linear, const std::string& name,
                                                 const FusedSlices* fused, Index n, EntryBank& entries) {
  std::vector<FourierFTBlockSpec> blocks;
  if (!fused) {
    blocks.emplace_back("fourierft_spectrum", entries.get(linear.d_out(), linear.d_in(), n), 0);
    return blocks;
  }
  check(fused->num_blocks > 0, "apply_fourierft: fused slices of '", fused->module,
        "' need num_blocks >= 1, got ", fused->num_blocks);
  check<ShapeError>(linear.d_out() % fused->num_blocks == 0, "apply_fourierft: ", name, " has ",
                    linear.d_out(), " outputs, not divisible into ", fused->num_blocks, " blocks");
  const Index block = linear.d_out() / fused->num_blocks;
  for (const auto& [suffix, index] : fused->slices) {
    check(index >= 0 && index < fused->num_blocks, "apply_fourierft: slice '", suffix, "' of ",
          name, " has block index ", index, " outside [0, ", fused->num_blocks, ")");
    blocks.emplace_back("fourierft_spectrum_" + suffix, entries.get(block, linear.d_in(), n),
                        index * block);
  }
  return blocks;
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
    const FusedSlices* fused = nullptr;
    for (const FusedSlices& f : config.fused_slices)
      if (name_matches(name, f.module)) fused = &f;
    // A config read from a file whose sizes do not fit this layer: the error names file and key.
    const auto misfit = [&](const Error& e, const std::string& layer) {
      const char* key = fused                      ? "fourierft_fused_slices"
                        : n != config.n_frequency  ? "n_frequency_pattern"
                        : config.frequency_bias    ? "n_frequency' / 'fourierft_frequency_bias"
                                                   : "n_frequency";
      return FormatError(str_cat(config.source, ": key '", key, "' does not fit layer '", layer,
                                 "' of the model: ", e.what()));
    };
    std::vector<FourierFTBlockSpec> blocks;
    try {
      blocks = fourierft_blocks(*linear, name, fused, n, entries);
    } catch (const ValueError& e) {
      if (config.source.empty()) throw;
      throw misfit(e, name);
    } catch (const ShapeError& e) {
      if (config.source.empty()) throw;
      throw misfit(e, name);
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

// ---------------------------------------------------------------------------
// FourierFTMethod: FourierFT behind the PEFT method interface (peft/method.hpp). adapter_config.json
// holds PEFT's FourierFTConfig fields; frequency-biased entries (not PEFT's) are saved as tensors
// fourierft_entries.<d_out>x<d_in>.n<n>, I64 (2, n): rows then cols.
struct FourierFTMethod {
  using Config = FourierFTConfig;
  static constexpr std::string_view name = "fourierft";
  static constexpr std::string_view peft_type = "FOURIERFT";
  static constexpr bool attaches_adapters = true;

  template <class Real>
  static AppliedAdapters apply(nn::Module<Real>& model, const Config& config,
                               const std::vector<std::string>& modules_to_save, Rng& rng,
                               EntryBank* bank = nullptr) {
    Config c = config;
    c.modules_to_save = modules_to_save;
    return apply_fourierft(model, c, rng, bank);
  }

  static void write_config(const Config& c, io::Json& j) {
    io::Json pattern = io::Json::object();
    for (const auto& [k, n] : c.n_frequency_pattern) pattern[k] = n;
    j.update({{"n_frequency", c.n_frequency}, {"scaling", c.scaling},
              {"random_loc_seed", c.random_loc_seed}, {"init_weights", c.init_weights},
              {"target_modules", targets_json(c.target_modules)}, {"bias", c.bias},
              {"n_frequency_pattern", pattern}, {"exclude_modules", nullptr}});
    // fourierft's own extensions, written only when used (PEFT cannot rebuild these adapters).
    if (c.frequency_bias)
      j["fourierft_frequency_bias"] = {{"fc", c.frequency_bias->fc}, {"W", c.frequency_bias->W}};
    if (!c.fused_slices.empty()) {
      io::Json slices = io::Json::array();
      for (const FusedSlices& f : c.fused_slices) {
        io::Json s = io::Json::object();
        for (const auto& [name, index] : f.slices) s[name] = index;
        slices.push_back({{"module", f.module}, {"num_blocks", f.num_blocks}, {"slices", s}});
      }
      j["fourierft_fused_slices"] = slices;
    }
  }

  // Every value is checked here, so an error names the file and the key (not apply_fourierft).
  static Config read_config(const io::JsonObject& c) {
    Config f;
    f.source = c.source();
    f.n_frequency = c.get_or<Index>("n_frequency", 1000);
    check<FormatError>(f.n_frequency >= 1, c.source(), ": key 'n_frequency' should be >= 1 but is ",
                       f.n_frequency);
    f.scaling = c.get_or<double>("scaling", 150.0);
    check<FormatError>(std::isfinite(f.scaling), c.source(),
                       ": key 'scaling' should be a finite number but is ", f.scaling);
    f.random_loc_seed = c.get_or<std::uint64_t>("random_loc_seed", 777);
    f.init_weights = c.get_or<bool>("init_weights", false);
    f.target_modules = targets_from_json(c);
    f.bias = c.get_or<std::string>("bias", "none");
    check<FormatError>(f.bias == "none" || f.bias == "all" || f.bias == "fourier_only", c.source(),
                       ": key 'bias' should be \"none\", \"all\" or \"fourier_only\" but is \"",
                       f.bias, "\"");
    for (const auto& [k, n] : c.get_or<std::map<std::string, Index>>("n_frequency_pattern", {})) {
      const std::string where = str_cat(c.source(), ": key 'n_frequency_pattern.", k, "'");
      check<FormatError>(n >= 1, where, " should be >= 1 but is ", n);
      NamePattern(k, where);  // compiles, or names the file, the key and the reason
      NamePattern(".*\\." + k, where);
      f.n_frequency_pattern.emplace_back(k, n);
    }
    if (c.has("fourierft_frequency_bias")) {
      const io::JsonObject b = c.get<io::JsonObject>("fourierft_frequency_bias");
      f.frequency_bias = FrequencyBias{b.get<double>("fc"), b.get<double>("W")};
      check<FormatError>(std::isfinite(f.frequency_bias->fc) && f.frequency_bias->fc >= 0 &&
                             std::isfinite(f.frequency_bias->W) && f.frequency_bias->W > 0,
                         c.source(), ": key 'fourierft_frequency_bias' needs fc >= 0 and W > 0, ",
                         "got fc ", f.frequency_bias->fc, ", W ", f.frequency_bias->W);
    }
    if (c.has("fourierft_fused_slices")) {
      const io::Json& slices = *c.json().find("fourierft_fused_slices");
      check<FormatError>(slices.is_array(), c.source(),
                         ": key 'fourierft_fused_slices' should be an array but is ",
                         io::json_excerpt(slices));
      for (std::size_t i = 0; i < slices.size(); ++i) {
        const std::string key = str_cat("fourierft_fused_slices[", i, "]");
        const io::JsonObject o(slices[i], c.source(), key);
        FusedSlices fused{o.get<std::string>("module"), o.get<Index>("num_blocks"), {}};
        check<FormatError>(fused.num_blocks >= 1, c.source(), ": key '", key,
                           ".num_blocks' should be >= 1 but is ", fused.num_blocks);
        for (const auto& [name, index] : o.get<std::map<std::string, Index>>("slices")) {
          check<FormatError>(index >= 0 && index < fused.num_blocks, c.source(), ": key '", key,
                             ".slices.", name, "' is block ", index, ", outside [0, ",
                             fused.num_blocks, ")");
          fused.slices.emplace_back(name, index);
        }
        f.fused_slices.push_back(fused);
      }
    }
    return f;
  }

  // "FourierFT on 24 weights, n = 1000 coefficients each, scaling 150, entries uniform (seed 777)"
  template <class Real>
  static std::string describe(nn::Module<Real>& model, const Config& c) {
    const Index layers = adapted_layers(model), blocks = adapted_blocks(model);
    return str_cat("FourierFT on ", blocks, " weights",
                   blocks != layers ? str_cat(" (slices of ", layers, " fused layers)")
                                    : std::string(),
                   ", n = ", c.n_frequency, " coefficients each, scaling ", c.scaling, ", entries ",
                   c.frequency_bias ? str_cat("eq. 5 band-pass (fc ", c.frequency_bias->fc, ", W ",
                                              c.frequency_bias->W, ")")
                                    : std::string("uniform"),
                   " (seed ", c.random_loc_seed, ")");
  }

  // Frequency-biased entries, one tensor per weight shape (uniform ones come from the seed).
  template <class Real>
  static void save_tensors(const nn::Module<Real>& model, const Config& c,
                           io::SafetensorsWriter& writer) {
    if (!c.frequency_bias) return;
    std::set<std::string> written;
    for (const auto& [name, module] : model.named_modules())
      if (auto* adapter = dynamic_cast<const FourierFTAdapter<Real>*>(module))
        for (const auto& block : adapter->blocks()) {
          const SpectralEntries& e = *block.entries;
          if (!written.insert(entries_key(e)).second) continue;
          Tensor<std::int64_t> rc({2, e.n()});
          for (Index l = 0; l < e.n(); ++l) {
            rc[l] = e.rows[l];
            rc[e.n() + l] = e.cols[l];
          }
          writer.add(entries_key(e), rc);
        }
  }

  // apply, with the entries the file stores (frequency-biased adapters) instead of drawn ones.
  template <class Real>
  static AppliedAdapters load(nn::Module<Real>& model, const Config& c,
                              const std::vector<std::string>& modules_to_save,
                              const io::SafetensorsFile& file, std::set<std::string>& used) {
    EntryBank bank(c.random_loc_seed, c.frequency_bias);
    std::vector<std::string> entry_keys;
    for (const std::string& key : file.names()) {
      if (!key.starts_with("fourierft_entries.")) continue;
      const io::TensorInfo& info = file.info(key);
      check<FormatError>(info.shape.size() == 2 && info.shape[0] == 2, file.path(), ": tensor '",
                         key, "' should have shape (2, n) but has ", shape_str(info.shape));
      // The name must be exactly fourierft_entries.<d_out>x<d_in>.n<n> with n the tensor's width.
      const auto [d_out, d_in, n] = parse_entries_key(key);
      check<FormatError>(d_out > 0 && d_in > 0 && n == info.shape[1], file.path(),
                         ": cannot read the entry shape from tensor name '", key,
                         "' (expected fourierft_entries.<d_out>x<d_in>.n<n>, n = ", info.shape[1],
                         ")");
      try {
        const Tensor<std::int64_t> rc = file.load_int(key);
        std::vector<std::int64_t> rows(rc.data().begin(), rc.data().begin() + n),
            cols(rc.data().begin() + n, rc.data().end());
        bank.put(std::make_shared<const SpectralEntries>(explicit_entries(d_out, d_in, rows, cols)));
      } catch (const ValueError& e) {  // explicit_entries: range, count, distinctness
        throw FormatError(str_cat(file.path(), ": tensor '", key, "': ", e.what()));
      } catch (const IndexError& e) {
        throw FormatError(str_cat(file.path(), ": tensor '", key, "': ", e.what()));
      }
      used.insert(key);
      entry_keys.push_back(key);
    }
    Rng rng(0);  // the spectra drawn here are overwritten by the file's
    AppliedAdapters applied = apply(model, c, modules_to_save, rng, &bank);
    for (const std::string& key : entry_keys)  // entries no adapted layer asked for
      check<FormatError>(bank.was_used(key), file.path(), ": tensor '",
                         key, "' holds entries for a weight shape no adapted layer has ",
                         "(another model or targets?)");
    return applied;
  }

  // The adapted weights: one per adapted layer, or one per slice of a fused layer (GPT-2's q, v).
  template <class Real>
  static Index adapted_blocks(const nn::Module<Real>& model) {
    Index count = 0;
    for (const auto& [name, module] : model.named_modules())
      if (auto* adapter = dynamic_cast<const FourierFTAdapter<Real>*>(module))
        count += static_cast<Index>(adapter->blocks().size());
    return count;
  }
  // (d_out, d_in, n) from "fourierft_entries.<d_out>x<d_in>.n<n>"; zeros unless the name is
  // exactly that, with decimal numbers that fit an Index.
  static std::tuple<Index, Index, Index> parse_entries_key(std::string_view key) {
    constexpr std::string_view prefix = "fourierft_entries.";
    if (!key.starts_with(prefix)) return {0, 0, 0};
    const char* p = key.data() + prefix.size();
    const char* const end = key.data() + key.size();
    Index v[3] = {0, 0, 0};
    const std::string_view separators[3] = {"x", ".n", ""};
    for (int i = 0; i < 3; ++i) {
      if (p == end || *p < '0' || *p > '9') return {0, 0, 0};
      const auto [next, error] = std::from_chars(p, end, v[i]);
      if (error != std::errc()) return {0, 0, 0};
      p = next;
      if (std::string_view(p, static_cast<std::size_t>(end - p)).substr(0, separators[i].size()) !=
          separators[i])
        return {0, 0, 0};
      p += separators[i].size();
    }
    if (p != end) return {0, 0, 0};
    return {v[0], v[1], v[2]};
  }
  static std::string entries_key(const SpectralEntries& e) {
    return str_cat("fourierft_entries.", e.d_out, "x", e.d_in, ".n", e.n());
  }
};

}  // namespace fourierft::peft
