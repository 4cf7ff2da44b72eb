// fourierft/peft/adapter_io.hpp — adapter folders in PEFT's format (adapter_model.safetensors +
// adapter_config.json) for any registered method, and AdapterSpec <-> adapter_config.json.
#pragma once

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "fourierft/io/json.hpp"
#include "fourierft/io/safetensors.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/peft/method.hpp"
#include "fourierft/peft/registry.hpp"
#include "fourierft/peft/targets.hpp"

namespace fourierft::peft {

namespace detail {
// PEFT writes every tensor of a saved adapter as `base_model.model.<name in the model>`.
inline const std::string peft_prefix = "base_model.model.";

inline io::Json nullable_list(const std::vector<std::string>& v) {
  return v.empty() ? io::Json(nullptr) : io::Json(v);
}
}  // namespace detail

// adapter_config.json for the spec, with PEFT's field names and defaults: the fields every method
// shares, its peft_type, then the method's own (MethodConfig::write_config).
inline io::Json adapter_config_json(const AdapterSpec& spec) {
  io::Json j = {{"task_type", spec.task_type},
                {"base_model_name_or_path", spec.base_model_name_or_path},
                {"modules_to_save", detail::nullable_list(spec.modules_to_save)},
                {"fan_in_fan_out", spec.fan_in_fan_out},
                {"inference_mode", true},
                {"revision", nullptr},
                {"layers_to_transform", nullptr},
                {"layers_pattern", nullptr}};
  j["peft_type"] = std::string(spec.config.peft_type());
  spec.config.write_config(j);
  return j;
}

// Parses adapter_config.json back into a spec (the method found by its peft_type).
inline AdapterSpec adapter_spec_from_json(const io::JsonObject& c) {
  AdapterSpec spec;
  const std::string type = c.get<std::string>("peft_type");
  spec.task_type = c.get_or<std::string>("task_type", "");
  spec.base_model_name_or_path = c.get_or<std::string>("base_model_name_or_path", "");
  spec.modules_to_save = c.get_or<std::vector<std::string>>("modules_to_save", {});
  spec.fan_in_fan_out = c.get_or<bool>("fan_in_fan_out", false);
  const MethodEntry* method = methods().find_peft_type(type);
  check<FormatError>(method != nullptr, c.source(), ": peft_type '", type, "' is not supported (",
                     method_names(", ", /*peft_types=*/true), ")");
  spec.config = method->read_config(c);
  return spec;
}

// Writes <dir>/adapter_model.safetensors (every trainable parameter as base_model.model.<name>,
// F32, then the method's own tensors, e.g. FourierFT's frequency-biased entries) and
// <dir>/adapter_config.json, each atomically.
template <class Real>
void save_adapter(const nn::Module<Real>& model, const AdapterSpec& spec,
                  const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  io::SafetensorsWriter writer;
  for (const auto& [name, p] : model.named_parameters())
    if (p.requires_grad()) writer.add(detail::peft_prefix + name, p.value());
  spec.config.save_tensors(model, writer);
  writer.save(dir / "adapter_model.safetensors");
  io::write_json(dir / "adapter_config.json", adapter_config_json(spec));
}

// Reads <dir>/adapter_config.json, applies that method to `model` (which must be the base model,
// without adapters), and loads the adapter's tensors. Every trainable parameter must be in the file
// with the right shape, and every tensor of the file must be used: anything else is a FormatError
// naming the file and the tensor (an adapter for another model, another n, or other targets).
template <class Real>
AdapterSpec load_adapter(nn::Module<Real>& model, const std::filesystem::path& dir) {
  const std::filesystem::path config_file = dir / "adapter_config.json";
  const AdapterSpec spec = adapter_spec_from_json(io::JsonObject::read(config_file));
  for (const std::string& target : spec.modules_to_save) {  // PEFT's name rule, as unfreeze_modules
    bool found = false;
    for (auto& [name, module] : model.named_modules()) found = found || name_matches(name, target);
    check<FormatError>(found, config_file.string(), ": key 'modules_to_save' names '", target,
                       "', which is no module of the model");
  }
  const io::SafetensorsFile file(dir / "adapter_model.safetensors");
  std::set<std::string> read_by_method;
  try {  // the method's own checks (targets that match no layer ...) name the config file too
    spec.config.load(model, spec.modules_to_save, file, read_by_method);
  } catch (const ValueError& e) {
    throw ValueError(str_cat(config_file.string(), ": ", e.what()));
  }
  nn::load_parameters(model, file,
                      {.prefix = detail::peft_prefix, .trainable_only = true,
                       .read_elsewhere = read_by_method},
                      /*strict=*/true, "another model or targets?");
  return spec;
}

}  // namespace fourierft::peft
