// fourierft/nn/module.hpp — Module<Real>, the base of every layer and model: hierarchical parameter
// names (encoder.layer.0.attention.self.query.weight), train/eval, freezing by pattern, checkpoints.
#pragma once

// How a module is written (see nn/linear.hpp for a complete one):
//   template <class Real>
//   struct SelfAttention : Module<Real> {
//     Linear<Real> query, key, value;          // members own the parameters and submodules
//     SelfAttention(Index C, Rng& rng) : query(C, C, rng), key(C, C, rng), value(C, C, rng) {
//       this->register_module("query", query);  // names as in Hugging Face's checkpoints
//       ...
//     }
//   };
// Registration stores the *addresses* of members, so a Module can be neither copied nor moved:
// build it where it will live (`Model model(config);`, `std::make_unique<Model>(config)`, or a
// ModuleList). C++17's guaranteed copy elision still allows `Model make() { return Model(cfg); }`.

#include <algorithm>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/half.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/io/safetensors.hpp"

namespace fourierft::nn {

// Glob match over a whole dotted name: `*` matches any run of characters (dots included), `?` any
// one character; everything else matches itself. "*.query.*" matches every query weight and bias.
inline bool glob_match(std::string_view pattern, std::string_view text) {
  std::size_t p = 0, t = 0, star = std::string_view::npos, resume = 0;
  while (t < text.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == text[t])) {
      ++p, ++t;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++, resume = t;  // let `*` match nothing first, more on a later mismatch
    } else if (star != std::string_view::npos) {
      p = star + 1, t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

// What Module::load_safetensors did. The caller decides what is an error: a classifier head missing
// from a pre-trained checkpoint is expected, a missing encoder weight is not.
struct LoadReport {
  struct Mismatch {
    std::string name;
    Shape expected;  // the module's
    Shape actual;    // the file's
  };
  std::string file;
  std::vector<std::string> loaded;      // module names that were filled from the file
  std::vector<std::string> missing;     // module names the file does not have
  std::vector<std::string> unexpected;  // file keys no parameter asked for
  std::vector<Mismatch> mismatched;     // present in both, shapes differ: left untouched

  bool complete() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  // "model.safetensors: loaded 12, missing 2 (classifier.weight, classifier.bias), unexpected 0"
  std::string summary(std::size_t max_names = 8) const {
    auto list = [&](const std::vector<std::string>& names) {
      std::string out;
      for (std::size_t i = 0; i < names.size() && i < max_names; ++i)
        out += (i ? ", " : "") + names[i];
      if (names.size() > max_names) out += str_cat(", ... ", names.size() - max_names, " more");
      return names.empty() ? std::string() : " (" + out + ")";
    };
    std::string out = str_cat(file, ": loaded ", loaded.size(), ", missing ", missing.size(),
                              list(missing), ", unexpected ", unexpected.size(), list(unexpected));
    if (!mismatched.empty()) {
      out += str_cat(", shape mismatch ", mismatched.size(), " (");
      for (std::size_t i = 0; i < mismatched.size() && i < max_names; ++i)
        out +=
            str_cat(i ? ", " : "", mismatched[i].name, ": module ",
                    shape_str(mismatched[i].expected), ", file ", shape_str(mismatched[i].actual));
      out += ")";
    }
    return out;
  }
  // Throws FormatError with the summary unless every parameter was loaded and nothing was left over.
  void require_complete() const {
    check<FormatError>(complete(), "incomplete checkpoint: ", summary());
  }
};

struct LoadOptions {
  std::string prefix;  // file key = prefix + module name ("base_model.model.", "transformer.")
};
struct SaveOptions {
  std::string prefix;                // file key = prefix + module name
  bool trainable_only = false;       // only parameters with requires_grad (adapters)
  io::Dtype dtype = io::Dtype::F32;  // F32, F64, F16 or BF16
  std::map<std::string, std::string> metadata{{"format", "pt"}};  // as torch's save_file writes
};

// Which parameters load_parameters fills and how their file keys are formed.
struct ParameterSelection {
  std::string prefix;                   // file key = prefix + parameter name ("base_model.model.")
  bool trainable_only = false;          // only parameters with requires_grad (adapters, train state)
  std::set<std::string> read_elsewhere;  // file keys the caller reads itself: not leftovers
};

template <class Real>
class Module;
template <class Real>
LoadReport load_parameters(Module<Real>& model, const io::SafetensorsFile& file,
                           const ParameterSelection& select = {}, bool strict = false,
                           std::string_view leftover_hint = "");

template <class Real>
class Module {
 public:
  using real_type = Real;
  using NamedParameter = std::pair<std::string, Var<Real>>;

  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;
  Module(Module&&) = delete;
  Module& operator=(Module&&) = delete;
  virtual ~Module() = default;

  // ---- building the tree --------------------------------------------------------------------
  // Registers a member Var under `name` (no dots). Returns it, so members can be set up inline.
  Var<Real>& register_parameter(std::string name, Var<Real>& parameter) {
    check_new_name(name, "parameter");
    check(parameter.defined(), "register_parameter: '", name, "' is an undefined Var");
    params_.emplace_back(std::move(name), &parameter);
    return parameter;
  }
  // The same for a member that may be undefined now or later (Linear's `weight`, which is
  // undefined while the layer holds it as a 16-bit frozen matrix); walks skip it while undefined.
  Var<Real>& register_parameter_slot(std::string name, Var<Real>& parameter) {
    check_new_name(name, "parameter");
    params_.emplace_back(std::move(name), &parameter);
    return parameter;
  }
  // Registers a member frozen 16-bit matrix (a Linear's weight held in BF16 / F16, no gradient)
  // under `name`. Frozen tensors are a second registry beside the parameters: named_parameters()
  // lists Vars (FP32 / FP64, trainable or not), named_frozen_tensors() these; checkpoints load and
  // save both under their HF keys, num_parameters() counts both. The name may equal one of this
  // module's parameter names when at most one of the two is defined at any time (Linear's
  // `weight`: a Var, or after to_half_precision() a HalfMatrix); walks skip undefined entries.
  HalfMatrix& register_frozen_tensor(std::string name, HalfMatrix& tensor) {
    check(!name.empty() && name.find('.') == std::string::npos, "register_frozen_tensor: name '",
          name, "' must be non-empty and contain no '.'");
    for (const auto& [n, t] : frozen_)
      check(n != name, "register_frozen_tensor: '", name, "' is already registered");
    for (const auto& [n, c] : children_)
      check(n != name, "register_frozen_tensor: '", name, "' is already a child module");
    frozen_.emplace_back(std::move(name), &tensor);
    return tensor;
  }
  // Registers a member module under `name` (no dots). An empty name splices the child in: its
  // parameters and children are named as if they were the parent's own (PEFT's naming, where an
  // adapter's `fourierft_spectrum` sits beside the `weight` of the layer it adapts).
  template <class M>
  M& register_module(std::string name, M& child) {
    static_assert(std::is_base_of_v<Module<Real>, M>, "register_module: M must be a Module<Real>");
    if (!name.empty()) check_new_name(name, "module");
    check(static_cast<Module*>(&child) != this, "register_module: a module cannot contain itself");
    if (name.empty()) {
      std::set<std::string> mine;
      for (const auto& [n, p] : named_parameters()) mine.insert(n);
      for (const auto& [n, p] : child.named_parameters())
        check(!mine.count(n), "register_module: spliced-in child's parameter '", n,
              "' clashes with an existing one");
    }
    children_.emplace_back(std::move(name), &child);
    return child;
  }
  // Removes a child registered under `name` ("" removes the spliced-in `child`).
  void unregister_module(std::string_view name, const Module* child = nullptr) {
    const auto it = std::find_if(children_.begin(), children_.end(), [&](const auto& c) {
      return c.first == name && (child == nullptr || c.second == child);
    });
    check<IndexError>(it != children_.end(), "unregister_module: no child module named '", name,
                      "'");
    children_.erase(it);
  }

  // ---- walking the tree ---------------------------------------------------------------------
  // Parameters in a stable order: a module's own (in registration order), then each child's in
  // turn (depth first), like torch's named_parameters. A Var registered twice (tied weights) is
  // listed once, under its first name. Copies of Var share value and gradient.
  std::vector<NamedParameter> named_parameters() const {
    std::vector<NamedParameter> out;
    collect_parameters("", out);
    return out;
  }
  // The frozen 16-bit matrices (see register_frozen_tensor), in the same walk order; a matrix
  // registered twice (or two handles sharing storage) is listed once. Pointers to the members,
  // so a loader can fill them.
  std::vector<std::pair<std::string, HalfMatrix*>> named_frozen_tensors() const {
    std::vector<std::pair<std::string, HalfMatrix*>> out;
    collect_frozen("", out);
    return out;
  }
  // This module's own defined parameters, without its children's: a walk over every module's own
  // parameters sees a tied Var once per owner (named_parameters lists it once).
  std::vector<NamedParameter> own_parameters() const {
    std::vector<NamedParameter> out;
    for (const auto& [name, p] : params_)
      if (p->defined()) out.emplace_back(name, *p);
    return out;
  }
  std::vector<Var<Real>> parameters() const {
    std::vector<Var<Real>> out;
    for (auto& [name, p] : named_parameters()) out.push_back(p);
    return out;
  }
  std::vector<Var<Real>> trainable_parameters() const {
    std::vector<Var<Real>> out;
    for (auto& [name, p] : named_parameters())
      if (p.requires_grad()) out.push_back(p);
    return out;
  }
  // Every module of the tree, this one first (as ""), then depth first: ("encoder", ...),
  // ("encoder.layer", ...), ("encoder.layer.0", ...). A spliced-in child is listed among its
  // parent's children (in registration order) under the parent's name.
  std::vector<std::pair<std::string, Module*>> named_modules() {
    std::vector<std::pair<std::string, Module*>> out;
    collect_modules("", out);
    return out;
  }
  std::vector<std::pair<std::string, const Module*>> named_modules() const {
    std::vector<std::pair<std::string, const Module*>> out;
    for (auto& [name, m] : const_cast<Module*>(this)->named_modules()) out.emplace_back(name, m);
    return out;
  }
  std::vector<std::pair<std::string, Module*>> named_children() const { return children_; }
  // The module at a dotted path ("" is this one), or nullptr.
  Module* find_module(std::string_view dotted_name) {
    Module* m = this;
    while (m != nullptr && !dotted_name.empty()) {
      const auto dot = dotted_name.find('.');
      m = m->child(dotted_name.substr(0, dot));
      dotted_name =
          dot == std::string_view::npos ? std::string_view() : dotted_name.substr(dot + 1);
    }
    return m;
  }
  // The same, cast to a module type: find<Linear<float>>("encoder.layer.0.attention.self.query").
  template <class M>
  M* find(std::string_view dotted_name) {
    return dynamic_cast<M*>(find_module(dotted_name));
  }
  // The parameter with this dotted name; IndexError if there is none.
  Var<Real> parameter(std::string_view dotted_name) const {
    for (auto& [name, p] : named_parameters())
      if (name == dotted_name) return p;
    throw IndexError(str_cat("no parameter named '", dotted_name, "'"));
  }

  // ---- modes ---------------------------------------------------------------------------------
  // Training mode (dropout active) or evaluation mode, for this module and all below it.
  void train(bool on = true) {
    for (auto& [name, m] : named_modules()) m->training_ = on;
  }
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // ---- freezing ------------------------------------------------------------------------------
  // requires_grad = false for the parameters whose full dotted name matches the glob `pattern`
  // (see glob_match); returns how many matched, so a mistyped pattern can be caught.
  Index freeze(std::string_view pattern) { return set_requires_grad(pattern, false); }
  Index unfreeze(std::string_view pattern) { return set_requires_grad(pattern, true); }
  void freeze_all() { set_requires_grad("*", false); }
  void unfreeze_all() { set_requires_grad("*", true); }
  // Every number of the model: parameters and frozen 16-bit matrices.
  Index num_parameters() const {
    Index n = 0;
    for (auto& [name, p] : named_parameters()) n += p.numel();
    for (auto& [name, t] : named_frozen_tensors()) n += t->numel();
    return n;
  }
  Index num_trainable_parameters() const {
    Index n = 0;
    for (auto& [name, p] : named_parameters())
      if (p.requires_grad()) n += p.numel();
    return n;
  }
  // Zeroes every parameter's gradient (keeping its memory).
  void zero_grad() {
    for (auto& [name, p] : named_parameters()) p.zero_grad();
  }

  // ---- checkpoints ---------------------------------------------------------------------------
  // Copies every parameter whose key (prefix + name) is in the file into the parameter's storage
  // (so optimizers holding it see the new values). Nothing is thrown for missing, unexpected or
  // mismatched tensors: they are reported. An integer tensor where a parameter expects floats, or
  // a malformed file, throws FormatError. (load_parameters below, with everything selected.)
  LoadReport load_safetensors(const io::SafetensorsFile& file, const LoadOptions& options = {}) {
    return load_parameters(*this, file, {.prefix = options.prefix});
  }
  LoadReport load_safetensors(const std::filesystem::path& path, const LoadOptions& options = {}) {
    return load_safetensors(io::SafetensorsFile(path), options);
  }
  // Writes the parameters (all, or the trainable ones) as prefix + name, atomically; all also
  // means the frozen 16-bit matrices (converted when options.dtype is not their own).
  void save_safetensors(const std::filesystem::path& path, const SaveOptions& options = {}) const {
    io::SafetensorsWriter writer;
    for (auto& [name, p] : named_parameters())
      if (!options.trainable_only || p.requires_grad())
        writer.add(options.prefix + name, p.value(), options.dtype);
    if (!options.trainable_only)
      for (auto& [name, t] : named_frozen_tensors())
        writer.add(options.prefix + name, *t, options.dtype);
    for (const auto& [key, value] : options.metadata) writer.set_metadata(key, value);
    writer.save(path);
  }

 private:
  void check_new_name(const std::string& name, const char* what) const {
    check(!name.empty() && name.find('.') == std::string::npos, "register_", what, ": name '", name,
          "' must be non-empty and contain no '.'");
    for (const auto& [n, p] : params_)
      check(n != name, "register_", what, ": '", name, "' is already a parameter of this module");
    for (const auto& [n, c] : children_)
      check(n != name, "register_", what, ": '", name, "' is already a child module");
  }
  // A direct child by name, looking through spliced-in children.
  Module* child(std::string_view name) {
    for (auto& [n, c] : children_)
      if (!n.empty() && n == name) return c;
    for (auto& [n, c] : children_)
      if (n.empty())
        if (Module* m = c->child(name)) return m;
    return nullptr;
  }
  static std::string join(const std::string& prefix, const std::string& name) {
    return prefix.empty() ? name : name.empty() ? prefix : prefix + "." + name;
  }
  void collect_parameters(const std::string& prefix, std::vector<NamedParameter>& out) const {
    for (const auto& [name, p_ptr] : params_) {
      const auto& p = p_ptr;  // a plain reference: clang before 16 cannot capture a binding
      if (!p->defined()) continue;
      const bool seen = std::any_of(out.begin(), out.end(),
                                    [&](const NamedParameter& q) { return q.second.same_as(*p); });
      if (!seen) out.emplace_back(join(prefix, name), *p);
    }
    for (const auto& [name, c] : children_) c->collect_parameters(join(prefix, name), out);
  }
  void collect_frozen(const std::string& prefix,
                      std::vector<std::pair<std::string, HalfMatrix*>>& out) const {
    for (const auto& [name, t_ptr] : frozen_) {
      const auto& t = t_ptr;  // a plain reference: clang before 16 cannot capture a binding
      if (!t->defined()) continue;
      const bool seen = std::any_of(out.begin(), out.end(), [&](const auto& q) {
        return q.second == t || q.second->shares_storage_with(*t);
      });
      if (!seen) out.emplace_back(join(prefix, name), t);
    }
    for (const auto& [name, c] : children_) c->collect_frozen(join(prefix, name), out);
  }
  void collect_modules(const std::string& prefix,
                       std::vector<std::pair<std::string, Module*>>& out) {
    out.emplace_back(prefix, this);
    for (auto& [name, c] : children_) c->collect_modules(join(prefix, name), out);
  }
  Index set_requires_grad(std::string_view pattern, bool on) {
    Index matched = 0;
    for (auto& [name, p] : named_parameters())
      if (glob_match(pattern, name)) {
        p.set_requires_grad(on);
        ++matched;
      }
    return matched;
  }

  std::vector<std::pair<std::string, Var<Real>*>> params_;  // members of the derived class
  std::vector<std::pair<std::string, Module*>> children_;   // "" = spliced in
  std::vector<std::pair<std::string, HalfMatrix*>> frozen_;  // members: frozen 16-bit matrices
  bool training_ = true;
};

// ---------------------------------------------------------------------------
// load_parameters: the one loader behind model checkpoints (Module::load_safetensors), adapters
// (peft::load_adapter) and training state (train::load_train_state). For each selected parameter,
// in named_parameters() order, the tensor `prefix + name` is copied into the parameter's storage
// when present with the same shape. Not strict: missing, misfit and leftover tensors are reported
// (LoadReport). Strict: the first missing or misfit tensor, then the first leftover one (a file key
// neither loaded nor in read_elsewhere), throws FormatError naming the file and the tensor;
// `leftover_hint` says what a leftover suggests ("another method?").
template <class Real>
LoadReport load_parameters(Module<Real>& model, const io::SafetensorsFile& file,
                           const ParameterSelection& select, bool strict,
                           std::string_view leftover_hint) {
  const char* which = select.trainable_only ? "trainable parameter" : "parameter";
  LoadReport report;
  report.file = file.path();
  std::set<std::string> used = select.read_elsewhere;
  for (auto& [name, p] : model.named_parameters()) {
    if (select.trainable_only && !p.requires_grad()) continue;
    const std::string key = select.prefix + name;
    if (!file.contains(key)) {
      check<FormatError>(!strict, file.path(), ": no tensor '", key, "' for the model's ", which,
                         " ", name);
      report.missing.push_back(name);
      continue;
    }
    used.insert(key);
    const io::TensorInfo& info = file.info(key);
    if (info.shape != p.shape()) {
      check<FormatError>(!strict, file.path(), ": tensor '", key, "' has shape ",
                         shape_str(info.shape), " but the model's parameter has shape ",
                         shape_str(p.shape()));
      report.mismatched.push_back({name, p.shape(), info.shape});
      continue;
    }
    const Tensor<Real> value = file.load<Real>(key);
    std::copy(value.data().begin(), value.data().end(), p.value().data().begin());
    report.loaded.push_back(name);
  }
  // Frozen 16-bit matrices (a Linear's weight kept in BF16 / F16): filled in their own dtype,
  // viewing the file's mapping when it holds that dtype, else converting (F32 rounded).
  if (!select.trainable_only)
    for (auto& [name, t] : model.named_frozen_tensors()) {
      const std::string key = select.prefix + name;
      if (!file.contains(key)) {
        check<FormatError>(!strict, file.path(), ": no tensor '", key, "' for the model's frozen ",
                           io::dtype_name(t->dtype()), " weight ", name);
        report.missing.push_back(name);
        continue;
      }
      used.insert(key);
      const io::TensorInfo& info = file.info(key);
      if (info.shape != t->shape()) {
        check<FormatError>(!strict, file.path(), ": tensor '", key, "' has shape ",
                           shape_str(info.shape), " but the model's frozen weight has shape ",
                           shape_str(t->shape()));
        report.mismatched.push_back({name, t->shape(), info.shape});
        continue;
      }
      *t = file.load_half(key, t->dtype());
      report.loaded.push_back(name);
    }
  for (const std::string& key : file.names()) {
    if (used.count(key)) continue;
    check<FormatError>(!strict, file.path(), ": tensor '", key, "' matches no ", which,
                       " of the model", leftover_hint.empty() ? "" : " (", leftover_hint,
                       leftover_hint.empty() ? "" : ")");
    report.unexpected.push_back(key);
  }
  return report;
}

// ModuleList: numbered children ("0", "1", ...), like torch's nn.ModuleList — the `layer` in
// `encoder.layer.3.attention`. Items live on the heap, so adding one never moves the others.
template <class M>
class ModuleList : public Module<typename M::real_type> {
 public:
  template <class... Args>
  M& emplace_back(Args&&... args) {
    return push_back(std::make_unique<M>(std::forward<Args>(args)...));
  }
  M& push_back(std::unique_ptr<M> item) {
    items_.push_back(std::move(item));
    return this->register_module(std::to_string(items_.size() - 1), *items_.back());
  }
  std::size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  M& operator[](std::size_t i) { return at(i); }
  const M& operator[](std::size_t i) const { return const_cast<ModuleList*>(this)->at(i); }
  M& at(std::size_t i) {
    check<IndexError>(i < items_.size(), "ModuleList: index ", i, " out of range for ",
                      items_.size(), " items");
    return *items_[i];
  }

  // for (auto& layer : layers) ...
  template <class Base, class Item>
  struct Iterator {
    Base it;
    Item& operator*() const { return **it; }
    Iterator& operator++() { return ++it, *this; }
    bool operator!=(const Iterator& other) const { return it != other.it; }
  };
  auto begin() { return Iterator<decltype(items_.begin()), M>{items_.begin()}; }
  auto end() { return Iterator<decltype(items_.end()), M>{items_.end()}; }
  auto begin() const { return Iterator<decltype(items_.cbegin()), const M>{items_.cbegin()}; }
  auto end() const { return Iterator<decltype(items_.cend()), const M>{items_.cend()}; }

 private:
  std::vector<std::unique_ptr<M>> items_;
};

}  // namespace fourierft::nn
