// fourierft/peft/adapter_io.hpp — one description of "what to fine-tune" for every method, and
// adapter folders in PEFT's format (adapter_model.safetensors + adapter_config.json).
#pragma once

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "fourierft/io/json.hpp"
#include "fourierft/io/safetensors.hpp"
#include "fourierft/peft/fourierft.hpp"
#include "fourierft/peft/lora.hpp"

namespace fourierft::peft {

// The fine-tuning method and its settings. `method` is one of fourierft, lora, bitfit, full, head.
struct AdapterSpec {
  std::string method = "fourierft";
  FourierFTConfig fourierft;
  LoraConfig lora;
  std::vector<std::string> modules_to_save;  // used by every method (copied into the configs)
  std::string task_type = "SEQ_CLS";         // PEFT's task type: SEQ_CLS, CAUSAL_LM, ...
  std::string base_model_name_or_path;
  bool fan_in_fan_out = false;               // true for GPT-2's Conv1D layers
};

// Freezes / attaches as the spec says; returns what trains.
template <class Real>
AppliedAdapters apply_adapter(nn::Module<Real>& model, const AdapterSpec& spec, Rng& rng,
                              EntryBank* bank = nullptr) {
  if (spec.method == "fourierft") {
    FourierFTConfig config = spec.fourierft;
    config.modules_to_save = spec.modules_to_save;
    return apply_fourierft(model, config, rng, bank);
  }
  if (spec.method == "lora") {
    LoraConfig config = spec.lora;
    config.modules_to_save = spec.modules_to_save;
    return apply_lora(model, config, rng);
  }
  if (spec.method == "bitfit") return apply_bitfit(model, spec.modules_to_save);
  if (spec.method == "full") return apply_full(model);
  if (spec.method == "head") return apply_head_only(model, spec.modules_to_save);
  throw ValueError(str_cat("unknown fine-tuning method '", spec.method,
                           "' (expected fourierft, lora, bitfit, full or head)"));
}

namespace detail {
// PEFT writes every tensor of a saved adapter as `base_model.model.<name in the model>`.
inline const std::string peft_prefix = "base_model.model.";

inline io::Json targets_json(const TargetSpec& t) {
  if (!t.regex.empty()) return t.regex;
  return t.names;
}
inline TargetSpec targets_from(const io::JsonObject& config) {
  const io::Json& j = config.json().at("target_modules");
  if (j.is_string()) return {{}, j.get<std::string>()};
  return {config.get<std::vector<std::string>>("target_modules"), ""};
}
inline io::Json nullable_list(const std::vector<std::string>& v) {
  return v.empty() ? io::Json(nullptr) : io::Json(v);
}
inline std::string entries_key(const SpectralEntries& e) {
  return str_cat("fourierft_entries.", e.d_out, "x", e.d_in, ".n", e.n());
}
}  // namespace detail

// adapter_config.json for the spec, with PEFT's field names and defaults.
inline io::Json adapter_config_json(const AdapterSpec& spec) {
  io::Json j = {{"task_type", spec.task_type},
                {"base_model_name_or_path", spec.base_model_name_or_path},
                {"modules_to_save", detail::nullable_list(spec.modules_to_save)},
                {"fan_in_fan_out", spec.fan_in_fan_out},
                {"inference_mode", true},
                {"revision", nullptr},
                {"layers_to_transform", nullptr},
                {"layers_pattern", nullptr}};
  if (spec.method == "fourierft") {
    const FourierFTConfig& c = spec.fourierft;
    io::Json pattern = io::Json::object();
    for (const auto& [k, n] : c.n_frequency_pattern) pattern[k] = n;
    j.update({{"peft_type", "FOURIERFT"}, {"n_frequency", c.n_frequency}, {"scaling", c.scaling},
              {"random_loc_seed", c.random_loc_seed}, {"init_weights", c.init_weights},
              {"target_modules", detail::targets_json(c.target_modules)}, {"bias", c.bias},
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
  } else if (spec.method == "lora") {
    const LoraConfig& c = spec.lora;
    j.update({{"peft_type", "LORA"}, {"r", c.r}, {"lora_alpha", c.lora_alpha},
              {"lora_dropout", c.lora_dropout}, {"target_modules", detail::targets_json(c.target_modules)},
              {"bias", c.bias}, {"init_lora_weights", true}, {"rank_pattern", io::Json::object()},
              {"alpha_pattern", io::Json::object()}, {"use_rslora", false}, {"use_dora", false}});
  } else {
    // Not PEFT methods: fourierft's own type names, so load_adapter can rebuild them.
    j["peft_type"] = spec.method == "bitfit" ? "BITFIT" : spec.method == "full" ? "FULL" : "HEAD";
  }
  return j;
}

// Parses adapter_config.json back into a spec.
inline AdapterSpec adapter_spec_from_json(const io::JsonObject& c) {
  AdapterSpec spec;
  const std::string type = c.get<std::string>("peft_type");
  spec.task_type = c.get_or<std::string>("task_type", "");
  spec.base_model_name_or_path = c.get_or<std::string>("base_model_name_or_path", "");
  spec.modules_to_save = c.get_or<std::vector<std::string>>("modules_to_save", {});
  spec.fan_in_fan_out = c.get_or<bool>("fan_in_fan_out", false);
  if (type == "FOURIERFT") {
    spec.method = "fourierft";
    FourierFTConfig& f = spec.fourierft;
    f.n_frequency = c.get_or<Index>("n_frequency", 1000);
    f.scaling = c.get_or<double>("scaling", 150.0);
    f.random_loc_seed = c.get_or<std::uint64_t>("random_loc_seed", 777);
    f.init_weights = c.get_or<bool>("init_weights", false);
    f.target_modules = detail::targets_from(c);
    f.bias = c.get_or<std::string>("bias", "none");
    for (const auto& [k, n] : c.get_or<std::map<std::string, Index>>("n_frequency_pattern", {}))
      f.n_frequency_pattern.emplace_back(k, n);
    if (c.has("fourierft_frequency_bias")) {
      const io::JsonObject b = c.get<io::JsonObject>("fourierft_frequency_bias");
      f.frequency_bias = FrequencyBias{b.get<double>("fc"), b.get<double>("W")};
    }
    if (c.has("fourierft_fused_slices")) {
      for (const io::Json& s : c.json().at("fourierft_fused_slices")) {
        const io::JsonObject o(s, c.source(), "fourierft_fused_slices[]");
        FusedSlices fused{o.get<std::string>("module"), o.get<Index>("num_blocks"), {}};
        for (const auto& [name, index] : o.get<std::map<std::string, Index>>("slices"))
          fused.slices.emplace_back(name, index);
        f.fused_slices.push_back(fused);
      }
    }
  } else if (type == "LORA") {
    spec.method = "lora";
    LoraConfig& l = spec.lora;
    l.r = c.get<Index>("r");
    l.lora_alpha = c.get_or<double>("lora_alpha", 8.0);
    l.lora_dropout = c.get_or<double>("lora_dropout", 0.0);
    l.target_modules = detail::targets_from(c);
    l.bias = c.get_or<std::string>("bias", "none");
  } else if (type == "BITFIT" || type == "FULL" || type == "HEAD") {
    spec.method = type == "BITFIT" ? "bitfit" : type == "FULL" ? "full" : "head";
  } else {
    throw FormatError(str_cat(c.source(), ": peft_type '", type,
                              "' is not supported (FOURIERFT, LORA, BITFIT, FULL, HEAD)"));
  }
  return spec;
}

// Writes <dir>/adapter_model.safetensors (every trainable parameter as base_model.model.<name>,
// F32; frequency-biased entries as fourierft_entries.<d_out>x<d_in>.n<n>, I64 [2, n]) and
// <dir>/adapter_config.json, each atomically.
template <class Real>
void save_adapter(const nn::Module<Real>& model, const AdapterSpec& spec,
                  const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  io::SafetensorsWriter writer;
  for (const auto& [name, p] : model.named_parameters())
    if (p.requires_grad()) writer.add(detail::peft_prefix + name, p.value());
  if (spec.method == "fourierft" && spec.fourierft.frequency_bias) {
    std::set<std::string> written;
    for (const auto& [name, module] : const_cast<nn::Module<Real>&>(model).named_modules())
      if (auto* adapter = dynamic_cast<const FourierFTAdapter<Real>*>(module))
        for (const auto& block : adapter->blocks()) {
          const SpectralEntries& e = *block.entries;
          if (!written.insert(detail::entries_key(e)).second) continue;
          Tensor<std::int64_t> rc({2, e.n()});
          for (Index l = 0; l < e.n(); ++l) {
            rc[l] = e.rows[l];
            rc[e.n() + l] = e.cols[l];
          }
          writer.add(detail::entries_key(e), rc);
        }
  }
  writer.save(dir / "adapter_model.safetensors");
  io::write_json(dir / "adapter_config.json", adapter_config_json(spec));
}

// Reads <dir>/adapter_config.json, applies that method to `model` (which must be the base model,
// without adapters), and loads the adapter's tensors. Every trainable parameter must be in the file
// with the right shape, and every tensor of the file must be used: anything else is a FormatError
// naming the file and the tensor (an adapter for another model, another n, or other targets).
template <class Real>
AdapterSpec load_adapter(nn::Module<Real>& model, const std::filesystem::path& dir) {
  const AdapterSpec spec = adapter_spec_from_json(io::JsonObject::read(dir / "adapter_config.json"));
  const io::SafetensorsFile file(dir / "adapter_model.safetensors");
  EntryBank bank(spec.fourierft.random_loc_seed, spec.fourierft.frequency_bias);
  std::set<std::string> used;
  for (const std::string& key : file.names()) {
    if (!key.starts_with("fourierft_entries.")) continue;
    const Tensor<std::int64_t> rc = file.load_int(key);
    check<FormatError>(rc.dim() == 2 && rc.size(0) == 2, file.path(), ": tensor '", key,
                       "' should have shape (2, n) but has ", shape_str(rc.shape()));
    Index d_out = 0, d_in = 0, n = 0;
    check<FormatError>(std::sscanf(key.c_str(), "fourierft_entries.%lldx%lld.n%lld",
                                   reinterpret_cast<long long*>(&d_out),
                                   reinterpret_cast<long long*>(&d_in),
                                   reinterpret_cast<long long*>(&n)) == 3 && n == rc.size(1),
                       file.path(), ": cannot read the entry shape from tensor name '", key, "'");
    std::vector<std::int64_t> rows(rc.data().begin(), rc.data().begin() + n),
        cols(rc.data().begin() + n, rc.data().end());
    bank.put(std::make_shared<const SpectralEntries>(explicit_entries(d_out, d_in, rows, cols)));
    used.insert(key);
  }
  Rng rng(0);
  apply_adapter(model, spec, rng, &bank);
  for (auto& [name, p] : model.named_parameters()) {
    if (!p.requires_grad()) continue;
    const std::string key = detail::peft_prefix + name;
    check<FormatError>(file.contains(key), file.path(), ": the adapter has no tensor '", key,
                       "' for the model's trainable parameter ", name);
    const Tensor<Real> value = file.load<Real>(key);
    check<FormatError>(value.shape() == p.shape(), file.path(), ": tensor '", key, "' has shape ",
                       shape_str(value.shape()), " but the model's parameter has shape ",
                       shape_str(p.shape()));
    std::copy(value.data().begin(), value.data().end(), p.value().data().begin());
    used.insert(key);
  }
  for (const std::string& key : file.names())
    check<FormatError>(used.count(key), file.path(), ": tensor '", key,
                       "' matches no trainable parameter of the model (another model or targets?)");
  return spec;
}

}  // namespace fourierft::peft
