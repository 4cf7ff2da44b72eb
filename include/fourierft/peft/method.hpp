// fourierft/peft/method.hpp — the PEFT method interface (the PeftMethod concept), MethodConfig (any
// method's typed settings) and AdapterSpec (what to fine-tune: a method's config plus the head).
#pragma once

// A PEFT method is one type M; FourierFTMethod (peft/fourierft.hpp), LoraMethod (peft/lora.hpp),
// BitFitMethod, FullMethod and HeadOnlyMethod (peft/bitfit.hpp) are the built-in ones. It has
//   using Config = ...;   its settings, named as adapter_config.json's fields, with
//                         `using Method = M;` inside Config (so a Config alone names its method)
//   name, peft_type       "lora" (--method, AdapterSpec::method()) and "LORA" (adapter_config.json)
//   attaches_adapters     true: it trains LinearAdapter modules it attaches (FourierFT, LoRA), whose
//                         parameters are "the adapter's"; false: it trains the body's own
//                         parameters (BitFit, full; head-only: none of them)
//   apply(model, config, modules_to_save, rng)   freezes the model, attaches / unfreezes what
//                         trains, unfreezes modules_to_save; returns AppliedAdapters
//   write_config(config, json), read_config(json)   its fields of adapter_config.json
//   describe(model, config)   the "method: ..." line train::parameter_report prints
// and optionally
//   save_tensors(model, config, writer)   tensors besides the trainable parameters (FourierFT's
//                         frequency-biased entries)
//   load(model, config, modules_to_save, file, used)   apply, rebuilding what save_tensors wrote
//                         (adds the keys it read to `used`); without it, apply with Rng(0)
// Merge / unmerge belong to the LinearAdapter it attaches (peft/adapter.hpp: merge_adapters).
// Registering it by name is one line: peft::register_method<M>() (peft/registry.hpp).

#include <concepts>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/io/safetensors.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/peft/adapter.hpp"
#include "fourierft/peft/targets.hpp"

namespace fourierft::peft {

template <class M>
concept PeftMethod = requires(const typename M::Config& config, io::Json& json,
                              const io::JsonObject& object, nn::Module<float>& model,
                              const std::vector<std::string>& modules_to_save, Rng& rng) {
  requires std::same_as<typename M::Config::Method, M>;
  { M::name } -> std::convertible_to<std::string_view>;
  { M::peft_type } -> std::convertible_to<std::string_view>;
  { M::attaches_adapters } -> std::convertible_to<bool>;
  { M::apply(model, config, modules_to_save, rng) } -> std::same_as<AppliedAdapters>;
  M::write_config(config, json);
  { M::read_config(object) } -> std::same_as<typename M::Config>;
  { M::describe(model, config) } -> std::convertible_to<std::string>;
};

// Any method's config, held by value with typed access:
//   MethodConfig c = LoraConfig{.r = 4};  c.name() == "lora";  c.find<LoraConfig>()->r = 8;
// and the method's operations for float and double models, dispatched on the config's type.
class MethodConfig {
 public:
  MethodConfig() = default;  // no method yet
  template <class Config>
    requires PeftMethod<typename Config::Method>
  MethodConfig(Config config)  // NOLINT: implicit, so `{.config = fourierft_config}` reads well
      : held_(std::make_unique<Held<Config>>(std::move(config))) {}
  MethodConfig(const MethodConfig& other) : held_(other.held_ ? other.held_->clone() : nullptr) {}
  MethodConfig& operator=(const MethodConfig& other) {
    if (this != &other) held_ = other.held_ ? other.held_->clone() : nullptr;
    return *this;
  }
  MethodConfig(MethodConfig&&) noexcept = default;
  MethodConfig& operator=(MethodConfig&&) noexcept = default;

  bool empty() const { return held_ == nullptr; }
  std::string_view name() const { return held_ ? held_->name() : std::string_view(); }
  std::string_view peft_type() const { return held().peft_type(); }
  bool attaches_adapters() const { return held().attaches_adapters(); }

  // The config if it is a `Config`, else nullptr.
  template <class Config>
  Config* find() {
    auto* h = dynamic_cast<Held<Config>*>(held_.get());
    return h ? &h->config : nullptr;
  }
  template <class Config>
  const Config* find() const {
    return const_cast<MethodConfig*>(this)->find<Config>();
  }
  // The config as a `Config`; ValueError naming both methods if it is another one.
  template <class Config>
  Config& get() {
    Config* c = find<Config>();
    check(c != nullptr, "MethodConfig: the config is ", empty() ? "empty" : "for method ",
          name(), ", not for method ", Config::Method::name);
    return *c;
  }
  template <class Config>
  const Config& get() const {
    return const_cast<MethodConfig*>(this)->get<Config>();
  }

  template <class Real>
  AppliedAdapters apply(nn::Module<Real>& model, const std::vector<std::string>& modules_to_save,
                        Rng& rng) const {
    return held().apply(model, modules_to_save, rng);
  }
  template <class Real>
  AppliedAdapters load(nn::Module<Real>& model, const std::vector<std::string>& modules_to_save,
                       const io::SafetensorsFile& file, std::set<std::string>& used) const {
    return held().load(model, modules_to_save, file, used);
  }
  template <class Real>
  void save_tensors(const nn::Module<Real>& model, io::SafetensorsWriter& writer) const {
    held().save_tensors(model, writer);
  }
  template <class Real>
  std::string describe(nn::Module<Real>& model) const {
    return held().describe(model);
  }
  void write_config(io::Json& json) const { held().write_config(json); }

 private:
  struct Base {
    virtual ~Base() = default;
    virtual std::unique_ptr<Base> clone() const = 0;
    virtual std::string_view name() const = 0;
    virtual std::string_view peft_type() const = 0;
    virtual bool attaches_adapters() const = 0;
    virtual void write_config(io::Json& json) const = 0;
    virtual AppliedAdapters apply(nn::Module<float>&, const std::vector<std::string>&, Rng&) const = 0;
    virtual AppliedAdapters apply(nn::Module<double>&, const std::vector<std::string>&, Rng&) const = 0;
    virtual AppliedAdapters load(nn::Module<float>&, const std::vector<std::string>&,
                                 const io::SafetensorsFile&, std::set<std::string>&) const = 0;
    virtual AppliedAdapters load(nn::Module<double>&, const std::vector<std::string>&,
                                 const io::SafetensorsFile&, std::set<std::string>&) const = 0;
    virtual void save_tensors(const nn::Module<float>&, io::SafetensorsWriter&) const = 0;
    virtual void save_tensors(const nn::Module<double>&, io::SafetensorsWriter&) const = 0;
    virtual std::string describe(nn::Module<float>&) const = 0;
    virtual std::string describe(nn::Module<double>&) const = 0;
  };

  template <class Config>
  struct Held final : Base {
    using M = typename Config::Method;
    Config config;
    explicit Held(Config c) : config(std::move(c)) {}
    std::unique_ptr<Base> clone() const override { return std::make_unique<Held>(config); }
    std::string_view name() const override { return M::name; }
    std::string_view peft_type() const override { return M::peft_type; }
    bool attaches_adapters() const override { return M::attaches_adapters; }
    void write_config(io::Json& json) const override { M::write_config(config, json); }
    AppliedAdapters apply(nn::Module<float>& m, const std::vector<std::string>& s, Rng& r) const override {
      return M::apply(m, config, s, r);
    }
    AppliedAdapters apply(nn::Module<double>& m, const std::vector<std::string>& s, Rng& r) const override {
      return M::apply(m, config, s, r);
    }
    AppliedAdapters load(nn::Module<float>& m, const std::vector<std::string>& s,
                         const io::SafetensorsFile& f, std::set<std::string>& used) const override {
      return load_as(m, s, f, used);
    }
    AppliedAdapters load(nn::Module<double>& m, const std::vector<std::string>& s,
                         const io::SafetensorsFile& f, std::set<std::string>& used) const override {
      return load_as(m, s, f, used);
    }
    void save_tensors(const nn::Module<float>& m, io::SafetensorsWriter& w) const override {
      save_as(m, w);
    }
    void save_tensors(const nn::Module<double>& m, io::SafetensorsWriter& w) const override {
      save_as(m, w);
    }
    std::string describe(nn::Module<float>& m) const override { return M::describe(m, config); }
    std::string describe(nn::Module<double>& m) const override { return M::describe(m, config); }

    template <class Real>
    AppliedAdapters load_as(nn::Module<Real>& m, const std::vector<std::string>& s,
                            const io::SafetensorsFile& f, std::set<std::string>& used) const {
      if constexpr (requires { M::load(m, config, s, f, used); }) {
        return M::load(m, config, s, f, used);
      } else {
        Rng rng(0);  // whatever apply draws, the file's tensors overwrite
        return M::apply(m, config, s, rng);
      }
    }
    template <class Real>
    void save_as(const nn::Module<Real>& m, io::SafetensorsWriter& w) const {
      if constexpr (requires { M::save_tensors(m, config, w); }) M::save_tensors(m, config, w);
    }
  };

  const Base& held() const {
    check(held_ != nullptr, "AdapterSpec: no fine-tuning method given (set .config, e.g. to a ",
          "peft::FourierFTConfig)");
    return *held_;
  }

  std::unique_ptr<Base> held_;
};

// The fine-tuning method with its settings, and what every method shares.
//   peft::AdapterSpec spec{.config = fourierft_config, .modules_to_save = {"classifier"}};
struct AdapterSpec {
  MethodConfig config;                       // FourierFTConfig, LoraConfig, BitFitConfig, ...
  std::vector<std::string> modules_to_save;  // used by every method (trained fully, saved)
  std::string task_type = "SEQ_CLS";         // PEFT's task type: SEQ_CLS, CAUSAL_LM, ...
  std::string base_model_name_or_path;
  bool fan_in_fan_out = false;               // true for GPT-2's Conv1D layers

  std::string method() const { return std::string(config.name()); }  // "fourierft", "lora", ...
};

// Freezes / attaches as the spec says; returns what trains.
template <class Real>
AppliedAdapters apply_adapter(nn::Module<Real>& model, const AdapterSpec& spec, Rng& rng) {
  return spec.config.apply(model, spec.modules_to_save, rng);
}

// Dotted names of the trainable parameters that are the adapter's (trained at --lr) rather than
// the head's (--head-lr), by a walk over the module tree: for a method that attaches adapters, the
// parameters of its LinearAdapter modules (other trainable ones — modules_to_save, biases unfrozen
// beside the adapter — are the head's); for one that trains the body (BitFit, full), every
// trainable parameter outside the modules_to_save.
template <class Real>
std::set<std::string> adapter_parameters(const nn::Module<Real>& model, const AdapterSpec& spec) {
  std::set<std::string> names;
  if (spec.config.attaches_adapters()) {
    const std::set<std::string> owned = linear_adapter_parameters(model);
    for (const auto& [name, p] : model.named_parameters())
      if (p.requires_grad() && owned.count(name)) names.insert(name);
    return names;
  }
  std::set<std::string> head;
  for (const auto& [mname, module] : model.named_modules())
    for (const std::string& target : spec.modules_to_save)
      if (name_matches(mname, target))
        for (const auto& [pname, p] : module->named_parameters())
          head.insert(mname.empty() ? pname : mname + "." + pname);
  for (const auto& [name, p] : model.named_parameters())
    if (p.requires_grad() && !head.count(name)) names.insert(name);
  return names;
}

}  // namespace fourierft::peft
