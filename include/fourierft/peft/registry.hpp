// fourierft/peft/registry.hpp — PEFT methods by name ("lora", --method) and by PEFT's peft_type
// ("LORA", adapter_config.json): the built-in five, and any method registered with one line.
#pragma once

// Registering a method defined outside the library (tests/toy_method.hpp does this):
//   inline const bool scale_method_registered = peft::register_method<ScaleMethod>();

#include <string>
#include <string_view>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/peft/fourierft.hpp"
#include "fourierft/peft/bitfit.hpp"
#include "fourierft/peft/lora.hpp"
#include "fourierft/peft/method.hpp"

namespace fourierft::peft {

// A registered method: its names and how to make its config (defaults, or adapter_config.json's).
struct MethodEntry {
  std::string name, peft_type;
  MethodConfig (*default_config)();
  MethodConfig (*read_config)(const io::JsonObject& config);
};

class MethodRegistry {
 public:
  template <PeftMethod M>
  bool add() {
    check(find(M::name) == nullptr && find_peft_type(M::peft_type) == nullptr,
          "register_method: a method named '", M::name, "' or of peft_type '", M::peft_type,
          "' is already registered");
    entries_.push_back({std::string(M::name), std::string(M::peft_type),
                        [] { return MethodConfig(typename M::Config{}); },
                        [](const io::JsonObject& c) { return MethodConfig(M::read_config(c)); }});
    return true;
  }
  const MethodEntry* find(std::string_view name) const {
    for (const MethodEntry& e : entries_)
      if (e.name == name) return &e;
    return nullptr;
  }
  const MethodEntry* find_peft_type(std::string_view peft_type) const {
    for (const MethodEntry& e : entries_)
      if (e.peft_type == peft_type) return &e;
    return nullptr;
  }
  const std::vector<MethodEntry>& entries() const { return entries_; }

 private:
  std::vector<MethodEntry> entries_;
};

// Every registered method, the built-in ones first (in this order, which messages list).
inline MethodRegistry& methods() {
  static MethodRegistry registry = [] {
    MethodRegistry r;
    r.add<FourierFTMethod>();
    r.add<LoraMethod>();
    r.add<BitFitMethod>();
    r.add<FullMethod>();
    r.add<HeadOnlyMethod>();
    return r;
  }();
  return registry;
}

// Registers M by its name and peft_type; returns true (so it can initialise an inline variable).
template <PeftMethod M>
bool register_method() {
  return methods().add<M>();
}

// The registered methods' names (or peft_types): "fourierft, lora, bitfit, full or head" with
// last_separator " or ", "FOURIERFT, LORA, BITFIT, FULL, HEAD" with ", ".
inline std::string method_names(std::string_view last_separator = " or ", bool peft_types = false) {
  const std::vector<MethodEntry>& all = methods().entries();
  std::string out;
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (i > 0) out += i + 1 == all.size() ? std::string(last_separator) : std::string(", ");
    out += peft_types ? all[i].peft_type : all[i].name;
  }
  return out;
}

// The method called `name` (nullptr if none is).
inline const MethodEntry* find_method(std::string_view name) { return methods().find(name); }

// The default config of the method called `name`; ValueError listing the known ones.
inline MethodConfig method_config(std::string_view name) {
  const MethodEntry* e = find_method(name);
  check(e != nullptr, "unknown fine-tuning method '", name, "' (expected ", method_names(), ")");
  return e->default_config();
}

}  // namespace fourierft::peft
