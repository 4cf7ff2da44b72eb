// fourierft/serve/adapter_store.hpp — the adapters a server holds: PEFT FourierFT (and LoRA) folders
// under one directory, loaded on first use, checked against the base model, kept as spectra.
#pragma once

// The pieces:
//   ServedLayers   the base model's Linear layers an adapter may update, by index (every Linear
//                  but lm_head); the mixed-batch hook sits on each (serve/mixed_linear.hpp)
//   LayerUpdate    one adapted weight of one adapter: FourierFT's n coefficients and shared entries
//                  (ΔW = α·Re(IDFT2(F)), never stored), or LoRA's factors A (r, d_in), B (d_out, r)
//   ServedAdapter  one loaded adapter: its updates by layer index, and a uid unique to this load
//   DeltaCache     an LRU of materialised ΔW (d_out, d_in) per (adapter, layer) under a byte budget
//   AdapterStore   the directory: scan() registers the folders holding adapter_config.json, get(name)
//                  loads one lazily (validated: method, targets, shapes, n, seed), remove(name) drops it;
//                  sequences already running keep their shared_ptr, so removal never pulls a
//                  running adapter from under them.
// Memory per registered-but-unused adapter: its name and path. Per loaded FourierFT adapter:
// n·L·4 bytes of coefficients (the entries are shared by every adapter with the same seed and shape).

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/detail/gemm.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/io/safetensors.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/peft/entries.hpp"
#include "fourierft/peft/fourierft.hpp"
#include "fourierft/peft/fourierft_op.hpp"
#include "fourierft/peft/lora.hpp"

namespace fourierft::serve {

// A request named an adapter the store does not have (the HTTP layer answers 404).
class AdapterNotFound : public Error {
 public:
  using Error::Error;
};

// The name requests use for the base model without any adapter.
inline constexpr std::string_view base_model_name = "base";

// ---------------------------------------------------------------------------
// The Linear layers of the base model adapters may update: every Linear but lm_head, in the
// order of named_modules(); an adapter's updates are indexed by position in this list.
struct ServedLayers {
  std::vector<std::string> names;             // "model.layers.0.self_attn.q_proj"
  std::vector<nn::Linear<float>*> linears;

  explicit ServedLayers(nn::Module<float>& model) {
    for (auto& [name, module] : model.named_modules())
      if (auto* linear = dynamic_cast<nn::Linear<float>*>(module); linear && name != "lm_head") {
        names.push_back(name);
        linears.push_back(linear);
      }
  }
  Index size() const { return static_cast<Index>(names.size()); }
  std::optional<Index> find(const std::string& name) const {
    const auto it = std::find(names.begin(), names.end(), name);
    if (it == names.end()) return std::nullopt;
    return static_cast<Index>(it - names.begin());
  }
};

// One adapted weight of one adapter.
struct LayerUpdate {
  Index d_out = 0, d_in = 0;
  std::vector<peft::SpectralBlock<float>> spectral;  // FourierFT: one block (n coefficients)
  Tensor<float> lora_A, lora_B;                      // LoRA: (r, d_in), (d_out, r)
  float lora_scale = 0;                              // lora_alpha / r

  bool is_lora() const { return !lora_A.empty(); }
  std::size_t bytes() const {
    std::size_t b = (lora_A.numel() + lora_B.numel()) * sizeof(float);
    for (const auto& s : spectral) b += static_cast<std::size_t>(s.coeffs.numel()) * sizeof(float);
    return b;
  }
  // ΔW: (d_out, d_in) in (out, in) layout — FourierFT's c2r of the spectrum, or s·B·A.
  Tensor<float> delta_weight() const {
    Tensor<float> dW({d_out, d_in});
    if (is_lora()) {
      const Index r = lora_A.size(0);
      fourierft::detail::gemm<float>(false, false, d_out, d_in, r, lora_scale, lora_B.ptr(), r,
                                     lora_A.ptr(), d_in, 0.0f, dW.ptr(), d_in);
      return dW;
    }
    for (const auto& s : spectral) {
      check<ShapeError>(s.out_offset == 0 && s.entries->d_out == d_out && s.entries->d_in == d_in,
                        "LayerUpdate::delta_weight: a block of shape (", s.entries->d_out, ", ",
                        s.entries->d_in, ") for a (", d_out, ", ", d_in, ") weight");
      Tensor<float> block({d_out, d_in});
      peft::fourierft_delta_forward<float>(block.data(), s.coeffs.data(), *s.entries, s.scale);
      for (Index i = 0; i < dW.numel(); ++i) dW[i] += block[i];
    }
    return dW;
  }
};

// One loaded adapter.
struct ServedAdapter {
  std::string name;     // its folder's name: the API's `model`
  std::string method;   // "fourierft" | "lora"
  std::uint64_t uid = 0;  // unique per load (a folder loaded again gets a new one)
  std::vector<std::optional<LayerUpdate>> layers;  // by ServedLayers index; nullopt: not adapted

  std::size_t bytes() const {
    std::size_t b = 0;
    for (const auto& l : layers)
      if (l) b += l->bytes();
    return b;
  }
  const LayerUpdate* layer(Index i) const {
    const auto& l = layers[static_cast<std::size_t>(i)];
    return l ? &*l : nullptr;
  }
};

// ---------------------------------------------------------------------------
// DeltaCache: materialised ΔW per (adapter uid, layer), least recently used evicted first once the
// total exceeds the budget. A ΔW handed out stays valid (shared_ptr) even if evicted meanwhile.
class DeltaCache {
 public:
  explicit DeltaCache(std::size_t budget_bytes) : budget_(budget_bytes) {}

  // ΔW of the adapter's layer, built (outside the lock) on a miss.
  std::shared_ptr<const Tensor<float>> get(const ServedAdapter& adapter, Index layer) {
    const Key key{adapter.uid, layer};
    {
      std::lock_guard lock(mutex_);
      if (auto hit = lookup(key)) return hit;
    }
    const LayerUpdate* update = adapter.layer(layer);
    check(update != nullptr, "DeltaCache: adapter '", adapter.name, "' does not adapt layer ", layer);
    auto built = std::make_shared<const Tensor<float>>(update->delta_weight());
    ++builds_;
    std::lock_guard lock(mutex_);
    if (auto hit = lookup(key)) return hit;  // another thread built it meanwhile
    const std::size_t size = static_cast<std::size_t>(built->numel()) * sizeof(float);
    if (size > budget_) return built;  // never fits: used once, not kept
    order_.push_front(key);
    entries_[key] = {built, order_.begin(), size};
    bytes_ += size;
    while (bytes_ > budget_) {
      const Key last = order_.back();
      bytes_ -= entries_[last].size;
      entries_.erase(last);
      order_.pop_back();
    }
    return built;
  }
  // The cached ΔW, or null (nothing is built).
  std::shared_ptr<const Tensor<float>> find(std::uint64_t uid, Index layer) {
    std::lock_guard lock(mutex_);
    return lookup({uid, layer});
  }
  // Drops every ΔW of one adapter (it was removed or reloaded).
  void forget(std::uint64_t uid) {
    std::lock_guard lock(mutex_);
    for (auto it = order_.begin(); it != order_.end();) {
      if (it->first == uid) {
        bytes_ -= entries_[*it].size;
        entries_.erase(*it);
        it = order_.erase(it);
      } else {
        ++it;
      }
    }
  }
  std::size_t bytes() const {
    std::lock_guard lock(mutex_);
    return bytes_;
  }
  std::size_t budget() const { return budget_; }
  std::size_t builds() const { return builds_; }

 private:
  using Key = std::pair<std::uint64_t, Index>;
  struct Entry {
    std::shared_ptr<const Tensor<float>> dW;
    std::list<Key>::iterator position;
    std::size_t size = 0;
  };
  std::shared_ptr<const Tensor<float>> lookup(const Key& key) {
    const auto it = entries_.find(key);
    if (it == entries_.end()) return nullptr;
    order_.splice(order_.begin(), order_, it->second.position);  // most recently used first
    return it->second.dW;
  }
  std::size_t budget_;
  mutable std::mutex mutex_;
  std::list<Key> order_;
  std::map<Key, Entry> entries_;
  std::size_t bytes_ = 0;
  std::atomic<std::size_t> builds_{0};
};

// ---------------------------------------------------------------------------
// AdapterStore: the adapter folders of one directory (each holding adapter_config.json and
// adapter_model.safetensors in PEFT's format), registered by scan(), loaded by get().
class AdapterStore {
 public:
  struct Options {
    std::size_t delta_cache_bytes = std::size_t(256) << 20;  // budget of materialised ΔW
  };

  AdapterStore(nn::Module<float>& model, std::filesystem::path directory, Options options)
      : layers_(model), directory_(std::move(directory)), deltas_(options.delta_cache_bytes) {
    if (!directory_.empty())
      check<IoError>(std::filesystem::is_directory(directory_), "adapter directory '",
                     directory_.string(), "' does not exist or is not a directory");
    scan();
  }
  AdapterStore(nn::Module<float>& model, std::filesystem::path directory)
      : AdapterStore(model, std::move(directory), Options{}) {}

  const ServedLayers& layers() const { return layers_; }
  DeltaCache& deltas() { return deltas_; }

  // Registers the folders added since the last scan and forgets those removed (a removed adapter's
  // running sequences finish with it). Folder names are the API's model names.
  void scan() {
    if (directory_.empty()) return;
    std::set<std::string> present;
    for (const auto& entry : std::filesystem::directory_iterator(directory_))
      if (entry.is_directory() && std::filesystem::exists(entry.path() / "adapter_config.json") &&
          entry.path().filename() != base_model_name)
        present.insert(entry.path().filename().string());
    std::lock_guard lock(mutex_);
    for (auto it = registered_.begin(); it != registered_.end();) {
      if (!present.count(it->first) && it->second.path.parent_path() == directory_) {
        if (it->second.loaded) deltas_.forget(it->second.loaded->uid);
        it = registered_.erase(it);
      } else {
        ++it;
      }
    }
    for (const std::string& name : present)
      if (!registered_.count(name)) registered_[name] = Slot{directory_ / name, nullptr};
  }
  // Registers a folder under a name of its own (it need not be under the directory).
  void add(const std::string& name, const std::filesystem::path& folder) {
    check(name != base_model_name && !name.empty(), "AdapterStore::add: '", name,
          "' is not a usable adapter name");
    check<IoError>(std::filesystem::exists(folder / "adapter_config.json"), "AdapterStore::add: '",
                   folder.string(), "' has no adapter_config.json");
    std::lock_guard lock(mutex_);
    if (auto it = registered_.find(name); it != registered_.end() && it->second.loaded)
      deltas_.forget(it->second.loaded->uid);
    registered_[name] = Slot{folder, nullptr};
  }
  void remove(const std::string& name) {
    std::lock_guard lock(mutex_);
    const auto it = registered_.find(name);
    if (it == registered_.end()) return;
    if (it->second.loaded) deltas_.forget(it->second.loaded->uid);
    registered_.erase(it);
  }

  std::vector<std::string> names() const {
    std::lock_guard lock(mutex_);
    std::vector<std::string> out;
    for (const auto& [name, slot] : registered_) out.push_back(name);
    return out;
  }
  bool contains(const std::string& name) const {
    std::lock_guard lock(mutex_);
    return registered_.count(name) > 0;
  }
  Index loaded_count() const {
    std::lock_guard lock(mutex_);
    Index n = 0;
    for (const auto& [name, slot] : registered_) n += slot.loaded != nullptr;
    return n;
  }
  // Bytes of the coefficients / factors of every loaded adapter.
  std::size_t loaded_bytes() const {
    std::lock_guard lock(mutex_);
    std::size_t b = 0;
    for (const auto& [name, slot] : registered_)
      if (slot.loaded) b += slot.loaded->bytes();
    return b;
  }

  // The adapter, loaded from its folder on first use. AdapterNotFound if the name is not registered
  // (after a rescan); FormatError / IoError naming the file if the folder does not fit the model.
  std::shared_ptr<const ServedAdapter> get(const std::string& name) {
    std::filesystem::path folder;
    for (int attempt = 0; folder.empty(); ++attempt) {
      if (attempt == 1) scan();  // added since the last scan?
      std::lock_guard lock(mutex_);
      const auto it = registered_.find(name);
      if (it != registered_.end()) {
        if (it->second.loaded) return it->second.loaded;
        folder = it->second.path;
      } else if (attempt == 1) {
        throw AdapterNotFound(str_cat("the model '", name, "' does not exist (", registered_.size(),
                                      " adapters under '", directory_.string(), "', and '",
                                      base_model_name, "')"));
      }
    }
    auto loaded = load(name, folder);  // outside the lock: other adapters stay available
    std::lock_guard lock(mutex_);
    auto it = registered_.find(name);
    if (it == registered_.end() || it->second.path != folder) return loaded;  // removed meanwhile
    if (!it->second.loaded) it->second.loaded = loaded;
    return it->second.loaded;
  }

  // Reads and validates one PEFT adapter folder against the base model's layers.
  std::shared_ptr<const ServedAdapter> load(const std::string& name,
                                            const std::filesystem::path& folder) {
    const auto config_path = folder / "adapter_config.json";
    const io::JsonObject config = io::JsonObject::read(config_path);
    const std::string type = config.get<std::string>("peft_type");
    const io::SafetensorsFile file(folder / "adapter_model.safetensors");
    auto adapter = std::make_shared<ServedAdapter>();
    adapter->name = name;
    adapter->uid = next_uid_++;
    adapter->layers.resize(static_cast<std::size_t>(layers_.size()));
    std::set<std::string> used;
    if (type == "FOURIERFT")
      load_fourierft(config, file, *adapter, used);
    else if (type == "LORA")
      load_lora(config, file, *adapter, used);
    else
      throw FormatError(str_cat(config_path.string(), ": peft_type '", type,
                                "' cannot be served (FOURIERFT or LORA)"));
    for (const std::string& key : file.names())
      check<FormatError>(used.count(key) > 0, file.path(), ": tensor '", key,
                         "' matches no adapted layer of the base model (another model or targets?",
                         key.find("modules_to_save") != std::string::npos || key.find("classifier") != std::string::npos
                             ? " modules_to_save cannot be served per request"
                             : "",
                         ")");
    return adapter;
  }

 private:
  struct Slot {
    std::filesystem::path path;
    std::shared_ptr<const ServedAdapter> loaded;
  };

  // The base-model layers the config's target_modules name; none is a FormatError.
  std::vector<Index> targets(const peft::TargetSpec& spec, const std::string& source) const {
    std::vector<Index> found;
    for (Index i = 0; i < layers_.size(); ++i)
      if (spec.matches(layers_.names[static_cast<std::size_t>(i)])) found.push_back(i);
    check<FormatError>(!found.empty(), source, ": target_modules match no Linear layer of the base model");
    return found;
  }
  static Tensor<float> load_checked(const io::SafetensorsFile& file, const std::string& key,
                                    const Shape& shape, std::set<std::string>& used) {
    const auto& names = file.names();
    check<FormatError>(std::find(names.begin(), names.end(), key) != names.end(), file.path(),
                       ": tensor '", key, "' is missing (the adapter does not fit this base model)");
    Tensor<float> t = file.load<float>(key);
    check<FormatError>(t.shape() == shape, file.path(), ": tensor '", key, "' has shape ",
                       shape_str(t.shape()), " but the base model needs ", shape_str(shape));
    used.insert(key);
    return t;
  }

  void load_fourierft(const io::JsonObject& json, const io::SafetensorsFile& file,
                      ServedAdapter& adapter, std::set<std::string>& used) {
    adapter.method = "fourierft";
    const peft::FourierFTConfig c = peft::FourierFTMethod::read_config(json);
    check<FormatError>(!c.frequency_bias && c.fused_slices.empty(), json.source(),
                       ": frequency-biased entries and fused slices are not served (uniform ",
                       "entries from random_loc_seed only)");
    check<FormatError>(c.n_frequency > 0 && c.scaling == c.scaling, json.source(),
                       ": n_frequency = ", c.n_frequency, " must be positive");
    for (Index i : targets(c.target_modules, json.source())) {
      const std::string& name = layers_.names[static_cast<std::size_t>(i)];
      const nn::Linear<float>& linear = *layers_.linears[static_cast<std::size_t>(i)];
      const Index n = peft::fourierft_n_for(c, name);
      LayerUpdate u;
      u.d_out = linear.d_out();
      u.d_in = linear.d_in();
      check<FormatError>(n <= u.d_out * u.d_in, json.source(), ": n = ", n, " exceeds the ",
                         u.d_out, " x ", u.d_in, " entries of ", name);
      Tensor<float> coeffs = load_checked(file, str_cat("base_model.model.", name, ".fourierft_spectrum"),
                                          {n}, used);
      u.spectral.push_back({Var<float>(coeffs), entries(c.random_loc_seed, u.d_out, u.d_in, n),
                            static_cast<float>(c.scaling), 0});
      adapter.layers[static_cast<std::size_t>(i)] = std::move(u);
    }
  }

  void load_lora(const io::JsonObject& json, const io::SafetensorsFile& file, ServedAdapter& adapter,
                 std::set<std::string>& used) {
    adapter.method = "lora";
    const peft::LoraConfig c = peft::LoraMethod::read_config(json);
    check<FormatError>(c.r > 0, json.source(), ": r = ", c.r, " must be positive");
    check<FormatError>(!json.get_or<bool>("use_rslora", false), json.source(),
                       ": use_rslora is not served");
    for (Index i : targets(c.target_modules, json.source())) {
      const std::string& name = layers_.names[static_cast<std::size_t>(i)];
      const nn::Linear<float>& linear = *layers_.linears[static_cast<std::size_t>(i)];
      LayerUpdate u;
      u.d_out = linear.d_out();
      u.d_in = linear.d_in();
      u.lora_A = load_checked(file, str_cat("base_model.model.", name, ".lora_A.weight"), {c.r, u.d_in}, used);
      u.lora_B = load_checked(file, str_cat("base_model.model.", name, ".lora_B.weight"), {u.d_out, c.r}, used);
      u.lora_scale = static_cast<float>(c.lora_alpha / static_cast<double>(c.r));
      adapter.layers[static_cast<std::size_t>(i)] = std::move(u);
    }
  }

  // The shared entries of one (seed, shape, n): made once, used by every adapter that has them.
  std::shared_ptr<const peft::SpectralEntries> entries(std::uint64_t seed, Index d_out, Index d_in,
                                                       Index n) {
    std::lock_guard lock(entries_mutex_);
    auto& slot = entries_[{seed, d_out, d_in, n}];
    if (!slot)
      slot = std::make_shared<const peft::SpectralEntries>(peft::uniform_entries(d_out, d_in, n, seed));
    return slot;
  }

  ServedLayers layers_;
  std::filesystem::path directory_;
  DeltaCache deltas_;
  mutable std::mutex mutex_;
  std::map<std::string, Slot> registered_;
  std::mutex entries_mutex_;
  std::map<std::tuple<std::uint64_t, Index, Index, Index>, std::shared_ptr<const peft::SpectralEntries>>
      entries_;
  std::atomic<std::uint64_t> next_uid_{1};
};

}  // namespace fourierft::serve
