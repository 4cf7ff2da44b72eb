// fourierft/models/pretrained.hpp — PretrainedModel<Derived, Config, Real>: the base every model
// derives from: from_pretrained / save_pretrained, the config checks, HF-style init as a tree walk.
#pragma once

// A model is `class M : public PretrainedModel<M<Real>, MConfig, Real>` holding its layers (named
// like HF's keys) and only what differs between architectures:
//   static constexpr std::string_view architecture = "GPT2LMHeadModel";  // config.architectures
//   static constexpr Task task = Task::causal_lm;          // what loss() computes
//   static constexpr InputKind inputs = InputKind::tokens; // what forward(tape, ModelInputs) reads
//   static void validate(const MConfig&);                  // throws naming the field
//   CheckpointLayout checkpoint_layout() const;            // base prefix, ignored keys, fresh head
//   void init_module(const std::string& name, nn::Module<Real>& m, Rng& rng);  // HF _init_weights
//   M(const MConfig&, std::uint64_t seed = 0, WeightInit = WeightInit::hf);   // calls finish_init
//   ModelOutput<Real> forward(Tape<Real>&, const ModelInputs<Real>&);
//   Var<Real> loss(Tape<Real>&, const ModelOutput<Real>&, const ModelInputs<Real>&);
// MConfig derives from io::HfCommonConfig; `parse_config(const io::JsonObject&, MConfig&)` and
// `to_json(const MConfig&)` are found by argument-dependent lookup (io/hf_config.hpp has GPT-2's,
// RoBERTa's and ViT's).
//
// Construction order fixes every random draw: the base sets `config` (validated) and `rng(seed)`
// before the derived class's members are built; each layer draws torch's default init from `rng`
// and each Dropout splits its stream off it, in member order; finish_init then redraws HF's init,
// walking named_modules() (registration order) and calling init_module on each.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "fourierft/core/random.hpp"
#include "fourierft/io/hf_config.hpp"
#include "fourierft/io/safetensors.hpp"
#include "fourierft/models/checkpoint.hpp"
#include "fourierft/models/common.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/nn/module.hpp"

namespace fourierft::models {

// Whether a model is built with Hugging Face's initialisation (`_init_weights`: N(0, 0.02) weights,
// zero biases, LayerNorm 1 / 0) or left with the layers' defaults because a checkpoint will
// overwrite every weight anyway (what from_pretrained uses: it skips drawing millions of normals).
enum class WeightInit { hf, skip };

template <class Derived, class Config, class Real>
class PretrainedModel : public nn::Module<Real> {
 public:
  using config_type = Config;
  Config config;
  Rng rng;  // initialisation, then the seeds of the dropout streams (built before the layers)

  // Reads config.json and the weights of a Hugging Face folder; evaluation mode. `report` (if
  // given) says what was loaded. IoError for missing files, FormatError for missing or misfit
  // weights.
  // With options.frozen_weight_dtype asking for 16 bits, the Linear weights are built as
  // placeholders (nn::HalfWeightsScope) and filled from the files in BF16 / F16, shard by shard,
  // so no float copy of them exists at any time (checkpoint.hpp: FrozenWeightDtype).
  static std::unique_ptr<Derived> from_pretrained(const std::filesystem::path& dir,
                                                  CheckpointReport* report = nullptr,
                                                  const CheckpointOptions& options = {}) {
    const CheckpointFiles files = find_checkpoint_files(dir);
    const std::optional<io::Dtype> half = frozen_half_dtype(files, options.frozen_weight_dtype);
    std::unique_ptr<Derived> model;
    {
      std::optional<nn::HalfWeightsScope> scope;
      if (half) scope.emplace(*half);
      model = std::make_unique<Derived>(io::read_config<Config>(dir), 0, WeightInit::skip);
    }
    if (half) settle_half_weights(*model, model->checkpoint_layout());
    CheckpointReport r =
        load_checkpoint_weights(*model, files, model->checkpoint_layout(), options);
    if (report != nullptr) *report = std::move(r);
    return model;
  }
  // from_pretrained(dir, {.frozen_weight_dtype = FrozenWeightDtype::keep_file})
  static std::unique_ptr<Derived> from_pretrained(const std::filesystem::path& dir,
                                                  const CheckpointOptions& options,
                                                  CheckpointReport* report = nullptr) {
    return from_pretrained(dir, report, options);
  }
  // config.json (architectures = {Derived::architecture}, torch_dtype) + model.safetensors as
  // transformers writes them (tied copies left out), atomically; every tensor in `dtype` (F32 or
  // BF16 / F16; 16-bit frozen weights are written as they are when dtype is theirs).
  void save_pretrained(const std::filesystem::path& dir, io::Dtype dtype = io::Dtype::F32) const {
    Config c = config;
    c.architectures = {std::string(Derived::architecture)};
    c.torch_dtype = torch_dtype_name(dtype);
    save_checkpoint(*this, to_json(c), dir, dtype);
  }

  // HF's _init_weights applied to every module: Derived::init_module(name, module, rng) for each
  // entry of named_modules(), in registration order (which fixes the order of the draws).
  void init_weights(Rng& init_rng) {
    for (auto& [name, module] : this->named_modules())
      static_cast<Derived&>(*this).init_module(name, *module, init_rng);
  }

 protected:
  PretrainedModel(const Config& cfg, std::uint64_t seed) : config(validated(cfg)), rng(seed) {}
  // The last step of Derived's constructor, after its modules are registered.
  void finish_init(WeightInit init) {
    if (init == WeightInit::hf) init_weights(rng);
  }

 private:
  static const Config& validated(const Config& c) {
    Derived::validate(c);
    return c;
  }
};

}  // namespace fourierft::models
