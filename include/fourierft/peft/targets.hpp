// fourierft/peft/targets.hpp — which modules a PEFT method adapts, by PEFT's matching rules, and
// the trainable / total parameter summary every method reports.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/peft/name_pattern.hpp"

namespace fourierft::peft {

// PEFT's rule for a list of target names: a module matches a target if its dotted name equals the
// target or ends with "." + target ("query" matches "roberta.encoder.layer.0.attention.self.query").
inline bool name_matches(std::string_view module_name, std::string_view target) {
  if (module_name == target) return true;
  return module_name.size() > target.size() &&
         module_name.substr(module_name.size() - target.size()) == target &&
         module_name[module_name.size() - target.size() - 1] == '.';
}

// PEFT's `target_modules="all-linear"`: every Linear but the model's output layer (`lm_head`),
// e.g. q,k,v,o,gate,up,down in each LLaMA layer (the paper's Table 4 LoRA row).
inline constexpr std::string_view all_linear = "all-linear";

// Targets given as names (list) or, when `regex` is non-empty, as one regular expression that must
// match the whole dotted name (PEFT's `target_modules` as a string; the string "all-linear" is
// PEFT's shorthand above).
struct TargetSpec {
  std::vector<std::string> names;
  std::string regex;
  bool empty() const { return names.empty() && regex.empty(); }
  bool matches(std::string_view module_name) const {
    if (regex == all_linear)
      return module_name != "lm_head" && !name_matches(module_name, "lm_head");
    if (!regex.empty()) return NamePattern(regex, "target_modules").full_match(module_name);
    for (const std::string& t : names)
      if (name_matches(module_name, t)) return true;
    return false;
  }
  std::string describe() const {
    if (!regex.empty()) return "regex '" + regex + "'";
    std::string out = "[";
    for (std::size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + names[i];
    return out + "]";
  }
};

// target_modules in adapter_config.json: a list of names, or one regex string.
inline io::Json targets_json(const TargetSpec& t) {
  if (!t.regex.empty()) return t.regex;
  return t.names;
}
// A regex is compiled here once, so a malformed or oversized one is an error naming the file.
inline TargetSpec targets_from_json(const io::JsonObject& config) {
  const auto it = config.json().find("target_modules");
  check<FormatError>(it != config.json().end(), config.source(),
                     ": key 'target_modules' is missing");
  if (it->is_string()) {
    const std::string regex = it->get<std::string>();
    if (regex != all_linear) NamePattern(regex, config.source() + ": key 'target_modules'");
    return {{}, regex};
  }
  return {config.get<std::vector<std::string>>("target_modules"), ""};
}

// The Linear layers of `model` matching `targets`, with their dotted names, in model order.
// No match at all is an error: a typo in a target name must not silently train nothing.
template <class Real>
std::vector<std::pair<std::string, nn::Linear<Real>*>> find_target_linears(nn::Module<Real>& model,
                                                                           const TargetSpec& targets,
                                                                           const char* who) {
  check(!targets.empty(), who, ": no target modules given");
  std::vector<std::pair<std::string, nn::Linear<Real>*>> found;
  for (auto& [name, module] : model.named_modules())
    if (auto* linear = dynamic_cast<nn::Linear<Real>*>(module); linear && targets.matches(name))
      found.emplace_back(name, linear);
  check(!found.empty(), who, ": no Linear module matches the targets ", targets.describe());
  return found;
}

// Unfreezes every parameter of the modules named in `modules_to_save` (PEFT's name rule), e.g.
// the freshly initialised "classifier" head of a sequence-classification model. A Linear weight
// held in 16 bits there (models/checkpoint.hpp, FrozenWeightDtype) becomes a float Var first, so
// it trains.
template <class Real>
void unfreeze_modules(nn::Module<Real>& model, const std::vector<std::string>& modules_to_save) {
  for (const std::string& target : modules_to_save) {
    bool any = false;
    for (auto& [name, module] : model.named_modules()) {
      if (!name_matches(name, target)) continue;
      any = true;
      for (auto& [sub, m] : module->named_modules())
        if (auto* linear = dynamic_cast<nn::Linear<Real>*>(m)) linear->to_full_precision();
      for (auto& [pname, p] : module->named_parameters()) p.set_requires_grad(true);
    }
    check(any, "modules_to_save: no module is named '", target, "'");
  }
}

// What a method trains: printed by the examples at start.
struct ParameterSummary {
  Index trainable = 0, total = 0;
  double percent() const { return total ? 100.0 * double(trainable) / double(total) : 0.0; }
  std::string str() const {
    return str_cat("trainable params: ", trainable, " || all params: ", total,
                   " || trainable%: ", percent());
  }
};
template <class Real>
ParameterSummary parameter_summary(const nn::Module<Real>& model) {
  return {model.num_trainable_parameters(), model.num_parameters()};
}

// Unfreezes every parameter named `bias` or `*.bias`.
template <class Real>
void unfreeze_biases(nn::Module<Real>& model) {
  for (auto& [name, p] : model.named_parameters())
    if (name == "bias" || name.ends_with(".bias")) p.set_requires_grad(true);
}

// What apply_*() did, for printing and for saving the adapter.
struct AppliedAdapters {
  std::vector<std::string> adapted;  // dotted names of the adapted Linear modules
  ParameterSummary params;
};

}  // namespace fourierft::peft
