// fourierft/models/checkpoint.hpp — Hugging Face checkpoint folders, shared by GPT-2, RoBERTa, ViT:
// finding the weight files (one file or shards), loading them by HF key with a report, saving.
#pragma once

// A folder as `save_pretrained` writes it (and the hub serves it):
//   config.json                       the architecture (io/hf_config.hpp reads it)
//   model.safetensors                 every weight under its HF key, F32 / F16 / BF16
// or, for large models,
//   model.safetensors.index.json      {"metadata": {...}, "weight_map": {key: shard file name}}
//   model-0000k-of-0000n.safetensors  the shards
// Keys are the module paths of the HF class: `transformer.h.0.attn.c_attn.weight`. Older files of
// the base model lack the base prefix (`h.0.attn.c_attn.weight`); the loader detects which layout
// a file uses. Legacy buffers (GPT-2's `attn.bias` / `attn.masked_bias` causal masks,
// `position_ids`) and tied copies (`lm_head.weight` = `wte`) are dropped; other unused keys (an MLM
// head) are reported; a missing task head (`classifier.*`) is initialised fresh, seeded, and
// reported; any other missing weight, or a shape that does not fit config.json, is a FormatError.

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/half.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/io/safetensors.hpp"
#include "fourierft/models/common.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/nn/module.hpp"

namespace fourierft::models {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------
// The weight files of a checkpoint folder.
struct CheckpointFiles {
  fs::path dir;
  std::vector<fs::path> files;                    // model.safetensors, or the shards (sorted)
  fs::path index;                                 // model.safetensors.index.json; empty if one file
  std::map<std::string, std::string> weight_map;  // the index's key -> shard file name
};

// IoError if the folder, config.json, or its weight files are missing (naming the path);
// FormatError if the index is malformed.
inline CheckpointFiles find_checkpoint_files(const fs::path& dir) {
  std::error_code ec;
  check<IoError>(fs::is_directory(dir, ec), "'", dir.string(),
                 "' is not a checkpoint folder: no such directory");
  check<IoError>(fs::exists(dir / "config.json", ec), "'", (dir / "config.json").string(),
                 "' does not exist: a checkpoint folder needs config.json next to its weights");
  CheckpointFiles out;
  out.dir = dir;
  if (fs::exists(dir / "model.safetensors", ec)) {
    out.files.push_back(dir / "model.safetensors");
    return out;
  }
  out.index = dir / "model.safetensors.index.json";
  if (!fs::exists(out.index, ec)) {
    const bool torch_bin = fs::exists(dir / "pytorch_model.bin", ec) ||
                           fs::exists(dir / "pytorch_model.bin.index.json", ec);
    throw IoError(str_cat("'", (dir / "model.safetensors").string(), "' does not exist (nor ",
                          "model.safetensors.index.json)",
                          torch_bin ? "; the folder has pytorch_model.bin: convert it with "
                                      "scripts/convert_pytorch_bin.py"
                                    : ""));
  }
  const io::JsonObject index = io::JsonObject::read(out.index);
  out.weight_map = index.get<std::map<std::string, std::string>>("weight_map");
  check<FormatError>(!out.weight_map.empty(), out.index.string(), ": key 'weight_map' is empty");
  std::set<std::string> shards;
  for (const auto& [key, file] : out.weight_map) {
    check<FormatError>(!file.empty() && fs::path(file).filename() == fs::path(file),
                       out.index.string(), ": key 'weight_map.", key,
                       "' should name a file in the ", "folder but is \"", file, "\"");
    shards.insert(file);
  }
  for (const std::string& file : shards) {
    check<IoError>(fs::exists(dir / file, ec), "'", (dir / file).string(), "' does not exist (",
                   out.index.string(), " maps weights to it)");
    out.files.push_back(dir / file);
  }
  return out;
}

// ---------------------------------------------------------------------------
// What an architecture tells the loader about its keys.
struct CheckpointLayout {
  std::string base;                  // the base model's child: "transformer", "roberta", "vit";
                                     // "" if the model has none (its keys are its own names)
  std::vector<std::string> ignored;  // globs of file keys dropped without a report line
  std::vector<std::string> head;     // globs of parameter names that may be missing (initialised)
  double initializer_range = 0.02;   // std of a fresh head's weights (HF's _init_weights)
  bool truncated_init = false;       // ViT draws them with trunc_normal_
};

// In what precision from_pretrained holds the weights of the model's Linear layers (docs/models.md,
// "Frozen weights in BF16"). Embeddings, norms, biases and heads (CheckpointLayout::head) stay
// float whatever is asked, and so do tied weights.
enum class FrozenWeightDtype {
  f32,        // float (Real) Vars, as before: 16-bit files are upcast
  keep_file,  // 16-bit Linear weights when the checkpoint stores BF16 / F16, else float
  bf16,       // BF16 whatever the file holds (F32 / F16 rounded to nearest even)
  f16,        // F16 likewise
};

struct CheckpointOptions {
  FrozenWeightDtype frozen_weight_dtype = FrozenWeightDtype::f32;
  std::uint64_t head_seed = 0;           // seeds a freshly initialised head
  bool ignore_mismatched_sizes = false;  // HF's option: re-initialise a weight whose shape differs
                                         // (a classifier with another number of labels) instead of
                                         // failing
};

// What loading a folder did.
struct CheckpointReport {
  std::string dir;
  std::vector<std::string> files;        // the safetensors files read
  bool prefixed = true;                  // keys carry the base prefix ("transformer.h.0...")
  std::vector<std::string> loaded;       // parameter names filled from the files
  std::vector<std::string> initialized;  // parameters the files lack, freshly initialised (seeded)
  std::uint64_t head_seed = 0;           // the seed they were drawn with
  std::vector<std::string> ignored;     // file keys dropped by design (legacy buffers, tied copies)
  std::vector<std::string> unexpected;  // other file keys no parameter asked for (an MLM head)
  std::vector<nn::LoadReport::Mismatch> reinitialized;  // shape differed (ignore_mismatched_sizes)

  // One line per non-empty category, e.g.
  //   roberta-mlm: loaded 37 weights from model.safetensors
  //   newly initialised (seed 0; not in the checkpoint, train before use): classifier.dense...
  std::string summary() const {
    auto names = [](const std::vector<std::string>& list) {
      std::string out;
      for (std::size_t i = 0; i < list.size(); ++i) out += (i ? ", " : "") + list[i];
      return out;
    };
    std::vector<std::string> file_names;
    for (const std::string& f : files) file_names.push_back(fs::path(f).filename().string());
    std::string out = str_cat(dir, ": loaded ", loaded.size(), " weights from ", names(file_names),
                              prefixed ? "" : " (old layout without the base-model prefix)");
    if (!initialized.empty())
      out += str_cat("\nnewly initialised (seed ", head_seed,
                     "; not in the checkpoint, train before ", "use): ", names(initialized));
    for (const auto& m : reinitialized)
      out += str_cat("\nre-initialised (checkpoint shape ", shape_str(m.actual), ", model ",
                     shape_str(m.expected), "): ", m.name);
    if (!unexpected.empty())
      out += str_cat("\nunused weights of the checkpoint: ", names(unexpected));
    if (!ignored.empty()) out += str_cat("\nignored (buffers, tied copies): ", names(ignored));
    return out;
  }
};

namespace detail {
inline bool matches_any(const std::vector<std::string>& globs, const std::string& name) {
  return std::any_of(globs.begin(), globs.end(),
                     [&](const std::string& g) { return nn::glob_match(g, name); });
}
// "a, b, c, ... 12 more"
inline std::string name_list(const std::vector<std::string>& names, std::size_t max = 8) {
  std::string out;
  for (std::size_t i = 0; i < names.size() && i < max; ++i) out += (i ? ", " : "") + names[i];
  if (names.size() > max) out += str_cat(", ... ", names.size() - max, " more");
  return out;
}
}  // namespace detail

// ---------------------------------------------------------------------------
// The 16-bit dtype the model's Linear weights are held in for `choice`, or none (float): for
// keep_file, the dtype most of the checkpoint's 2-D floating-point tensors have (read from the
// headers only), when that is BF16 or F16.
inline std::optional<io::Dtype> frozen_half_dtype(const CheckpointFiles& files,
                                                  FrozenWeightDtype choice) {
  switch (choice) {
    case FrozenWeightDtype::f32: return std::nullopt;
    case FrozenWeightDtype::bf16: return io::Dtype::BF16;
    case FrozenWeightDtype::f16: return io::Dtype::F16;
    case FrozenWeightDtype::keep_file: break;
  }
  std::map<io::Dtype, Index> elements;
  for (const fs::path& f : files.files) {
    const io::SafetensorsFile file(f);  // the header only
    for (const io::TensorInfo& t : file.tensors())
      if (io::is_floating(t.dtype) && t.shape.size() == 2) elements[t.dtype] += t.numel();
  }
  if (elements.empty()) return std::nullopt;
  const io::Dtype most = std::max_element(elements.begin(), elements.end(), [](auto& a, auto& b) {
                           return a.second < b.second;
                         })->first;
  return is_half_dtype(most) ? std::optional<io::Dtype>(most) : std::nullopt;
}

// After building a model under nn::HalfWeightsScope: a Linear whose weight was tied to another
// module's Var after construction keeps that float Var, and heads (layout.head globs: they may be
// fresh and are usually trained) get a float weight; every other Linear keeps its placeholder.
template <class Real>
void settle_half_weights(nn::Module<Real>& model, const CheckpointLayout& layout) {
  for (auto& [path, module] : model.named_modules())
    if (auto* linear = dynamic_cast<nn::Linear<Real>*>(module); linear && linear->half_precision()) {
      const std::string name = path.empty() ? "weight" : path + ".weight";
      if (linear->weight.defined() || detail::matches_any(layout.head, name))
        linear->to_full_precision(/*requires_grad=*/true);
    }
}

// ---------------------------------------------------------------------------
// Fills `model`'s parameters from the folder's files, matching HF keys to parameter names; leaves
// the model in evaluation mode, as from_pretrained does. See the top of this file for the rules.
template <class Real>
CheckpointReport load_checkpoint_weights(nn::Module<Real>& model, const CheckpointFiles& files,
                                         const CheckpointLayout& layout,
                                         const CheckpointOptions& options = {}) {
  CheckpointReport report;
  report.dir = files.dir.string();
  report.head_seed = options.head_seed;
  std::vector<io::SafetensorsFile> shards;
  for (const fs::path& f : files.files) {
    shards.emplace_back(f);  // throws FormatError naming the file on a malformed header
    report.files.push_back(f.string());
  }
  for (const auto& [key, file] : files.weight_map) {
    const auto shard = std::find_if(
        shards.begin(), shards.end(),
        [&](const io::SafetensorsFile& s) { return fs::path(s.path()).filename() == file; });
    check<FormatError>(shard != shards.end() && shard->contains(key), files.index.string(), ": '",
                       key, "' is mapped to '", file, "' but that file does not hold it");
  }

  // Which layout: keys with the base prefix, or the old base-model file without it.
  const std::string prefix = layout.base + ".";
  report.prefixed = layout.base.empty();  // no base model: keys are the parameter names
  for (const io::SafetensorsFile& s : shards)
    for (const std::string& key : s.names())
      if (key.rfind(prefix, 0) == 0) report.prefixed = true;
  nn::Module<Real>* target = report.prefixed ? &model : model.find_module(layout.base);
  check(target != nullptr, "load_checkpoint_weights: the model has no child '", layout.base, "'");
  const std::string name_prefix = report.prefixed ? "" : prefix;  // target name -> model name

  std::set<std::string> loaded;
  struct Misfit {
    nn::LoadReport::Mismatch mismatch;  // name = the file key
    std::string file;
  };
  std::map<std::string, Misfit> misfits;  // by model name
  for (const io::SafetensorsFile& s : shards) {
    const nn::LoadReport r = target->load_safetensors(s);
    for (const std::string& n : r.loaded) loaded.insert(name_prefix + n);
    for (const auto& m : r.mismatched) misfits[name_prefix + m.name] = {m, s.path()};
    for (const std::string& key : r.unexpected)
      (detail::matches_any(layout.ignored, key) ? report.ignored : report.unexpected)
          .push_back(key);
  }

  std::vector<std::string> missing, required;
  for (const auto& [name, p] : model.named_parameters()) {
    if (loaded.count(name))
      report.loaded.push_back(name);
    else if (!misfits.count(name))
      missing.push_back(name);
  }
  // Frozen 16-bit weights are never initialised here: missing or misfit, they are errors.
  Index frozen_count = 0;
  for (const auto& [name, t] : model.named_frozen_tensors()) {
    ++frozen_count;
    if (const auto m = misfits.find(name); m != misfits.end())  // even with ignore_mismatched_sizes
      throw FormatError(str_cat(files.dir.string(), ": '", m->second.mismatch.name, "' is ",
                                shape_str(m->second.mismatch.actual), " in ",
                                fs::path(m->second.file).filename().string(),
                                " but the model's frozen weight needs ", shape_str(t->shape())));
    if (loaded.count(name))
      report.loaded.push_back(name);
    else
      required.push_back(name);
  }
  if (!misfits.empty() && !options.ignore_mismatched_sizes) {
    std::string list;
    for (const auto& [name, m] : misfits)
      list += str_cat(list.empty() ? "" : "; ", "'", m.mismatch.name, "' is ",
                      shape_str(m.mismatch.actual), " in ", fs::path(m.file).filename().string(),
                      " but the model needs ", shape_str(m.mismatch.expected));
    throw FormatError(str_cat(files.dir.string(), ": ", misfits.size(),
                              misfits.size() == 1 ? " weight does" : " weights do",
                              " not fit config.json: ", list));
  }
  for (const std::string& name : missing)
    if (!detail::matches_any(layout.head, name)) required.push_back(name);
  if (!required.empty())
    throw FormatError(str_cat(files.dir.string(), ": the checkpoint lacks ", required.size(),
                              " required weight", required.size() == 1 ? "" : "s", ": ",
                              detail::name_list(required), " (loaded ", report.loaded.size(),
                              " of ", model.named_parameters().size() + frozen_count, ")"));

  // A fresh head, as HF's _init_weights draws it: weights N(0, initializer_range), biases 0.
  Rng rng(options.head_seed);
  for (auto& [name, p] : model.named_parameters()) {
    const bool fresh = std::find(missing.begin(), missing.end(), name) != missing.end();
    const auto misfit = misfits.find(name);
    if (!fresh && misfit == misfits.end()) continue;
    const bool is_bias = name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
    if (is_bias)
      p.value().fill(Real(0));
    else if (p.dim() == 1)
      p.value().fill(Real(1));  // a norm's scale
    else
      init_normal(p, rng, layout.initializer_range, layout.truncated_init);
    if (fresh)
      report.initialized.push_back(name);
    else
      report.reinitialized.push_back(
          {name, misfit->second.mismatch.expected, misfit->second.mismatch.actual});
  }
  model.eval();
  return report;
}

// ---------------------------------------------------------------------------
// The names of the parameters that belong to adapters attached to the model's Linear layers
// (`...query.fourierft_spectrum`), i.e. not to the Hugging Face architecture. ValueError if an
// adapter is attached and not merged: a checkpoint for transformers must hold plain weights.
template <class Real>
std::set<std::string> merged_adapter_parameters(const nn::Module<Real>& model) {
  std::set<std::string> names;
  for (auto& [path, module] : const_cast<nn::Module<Real>&>(model).named_modules()) {
    const auto* linear = dynamic_cast<const nn::Linear<Real>*>(module);
    if (linear == nullptr) continue;
    for (const auto& [name, adapter] : linear->adapters()) {
      check(adapter->merged(), "save_pretrained: '", path, "' has an adapter that is not merged; ",
            "merge it into the weight first (transformers cannot load adapter keys from ",
            "model.safetensors), or save the adapter on its own");
      const std::string prefix = path + "." + (name.empty() ? "" : name + ".");
      for (const auto& [local, p] : adapter->named_parameters()) names.insert(prefix + local);
    }
  }
  return names;
}

// Writes `dir`/model.safetensors (every parameter of the architecture under its HF key, in `dtype`,
// metadata {"format": "pt"}; merged adapters' own parameters left out) and `dir`/config.json, each
// atomically; creates `dir` if needed.
template <class Real>
void save_checkpoint(const nn::Module<Real>& model, const io::Json& config, const fs::path& dir,
                     io::Dtype dtype = io::Dtype::F32) {
  const std::set<std::string> skip = merged_adapter_parameters(model);
  std::error_code ec;
  fs::create_directories(dir, ec);
  check<IoError>(!ec && fs::is_directory(dir), "cannot create the folder '", dir.string(),
                 "': ", ec.message());
  io::SafetensorsWriter writer;
  for (const auto& [name, p] : model.named_parameters())
    if (!skip.count(name)) writer.add(name, p.value(), dtype);
  for (const auto& [name, t] : model.named_frozen_tensors()) writer.add(name, *t, dtype);
  writer.set_metadata("format", "pt");
  writer.save(dir / "model.safetensors");
  io::write_json(dir / "config.json", config);
}

// The torch_dtype string a config records for the dtype its weights were saved in.
inline std::string torch_dtype_name(io::Dtype dtype) {
  switch (dtype) {
    case io::Dtype::F16:
      return "float16";
    case io::Dtype::BF16:
      return "bfloat16";
    case io::Dtype::F64:
      return "float64";
    default:
      return "float32";
  }
}

}  // namespace fourierft::models
