// fourierft/peft/bitfit.hpp — the methods that train the model's own parameters instead of attaching
// adapters: BitFit (biases only), full fine-tuning and head-only (linear probing).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "fourierft/core/random.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/peft/method.hpp"
#include "fourierft/peft/targets.hpp"

namespace fourierft::peft {

struct BitFitMethod;
struct FullMethod;
struct HeadOnlyMethod;

// BitFit (Ben Zaken et al., 2022): only the bias terms train (plus modules_to_save).
template <class Real>
AppliedAdapters apply_bitfit(nn::Module<Real>& model, const std::vector<std::string>& modules_to_save) {
  model.freeze_all();
  unfreeze_biases(model);
  unfreeze_modules(model, modules_to_save);
  return {{}, parameter_summary(model)};
}

// Full fine-tuning: every parameter trains.
template <class Real>
AppliedAdapters apply_full(nn::Module<Real>& model) {
  model.unfreeze_all();
  return {{}, parameter_summary(model)};
}

// Head only (linear probing): just modules_to_save train.
template <class Real>
AppliedAdapters apply_head_only(nn::Module<Real>& model, const std::vector<std::string>& modules_to_save) {
  model.freeze_all();
  unfreeze_modules(model, modules_to_save);
  return {{}, parameter_summary(model)};
}

// ---------------------------------------------------------------------------
// The three behind the PEFT method interface (peft/method.hpp). They are not PEFT adapter types:
// adapter_config.json names them with fourierft's own peft_types.

// The settings-free methods: their configs are empty, their behaviour is their name.
struct BitFitConfig {
  using Method = BitFitMethod;
};
struct FullConfig {
  using Method = FullMethod;
};
struct HeadOnlyConfig {
  using Method = HeadOnlyMethod;
};

// What the three share: no fields in adapter_config.json besides peft_type, no adapters.
template <class Derived, class ConfigType>
struct BodyMethod {
  using Config = ConfigType;
  static constexpr bool attaches_adapters = false;
  static void write_config(const Config&, io::Json&) {}
  static Config read_config(const io::JsonObject&) { return {}; }
  template <class Real>
  static std::string describe(nn::Module<Real>&, const Config&) {
    return std::string(Derived::description);
  }
};

struct BitFitMethod : BodyMethod<BitFitMethod, BitFitConfig> {
  static constexpr std::string_view name = "bitfit";
  static constexpr std::string_view peft_type = "BITFIT";
  static constexpr std::string_view description =
      "BitFit: every bias, at --lr (the presets' --lr is FourierFT's spectrum rate: set it)";
  template <class Real>
  static AppliedAdapters apply(nn::Module<Real>& model, const Config&,
                               const std::vector<std::string>& modules_to_save, Rng&) {
    return apply_bitfit(model, modules_to_save);
  }
};

struct FullMethod : BodyMethod<FullMethod, FullConfig> {
  static constexpr std::string_view name = "full";
  static constexpr std::string_view peft_type = "FULL";
  static constexpr std::string_view description =
      "full fine-tuning: every weight, at --lr (the presets' --lr is FourierFT's spectrum rate: "
      "set it, e.g. --lr 2e-5)";
  template <class Real>
  static AppliedAdapters apply(nn::Module<Real>& model, const Config&,
                               const std::vector<std::string>&, Rng&) {
    return apply_full(model);
  }
};

struct HeadOnlyMethod : BodyMethod<HeadOnlyMethod, HeadOnlyConfig> {
  static constexpr std::string_view name = "head";
  static constexpr std::string_view peft_type = "HEAD";
  static constexpr std::string_view description = "head only";
  template <class Real>
  static AppliedAdapters apply(nn::Module<Real>& model, const Config&,
                               const std::vector<std::string>& modules_to_save, Rng&) {
    return apply_head_only(model, modules_to_save);
  }
};

}  // namespace fourierft::peft
