// fourierft/optim/optimizer.hpp — Optimizer<Real>: parameter groups (each with its own lr and weight
// decay), zero_grad, learning-rate control for schedules, and state save/load for resuming.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/io/safetensors.hpp"

namespace fourierft::optim {

// What the caller hands an optimizer: parameters plus optional per-group settings (unset ones take
// the optimizer's defaults). FourierFT trains the spectrum and the classifier head at different lrs:
//   AdamW<float> opt({{.params = spectrum, .lr = 5e-2, .name = "spectrum"},
//                     {.params = head, .lr = 6e-3, .name = "head"}}, {.weight_decay = 0.0});
template <class Real>
struct ParamGroup {
  std::vector<Var<Real>> params{};
  std::optional<double> lr{};
  std::optional<double> weight_decay{};
  std::string name{};
};

template <class Real>
class Optimizer {
 public:
  // A group as the optimizer keeps it. `initial_lr` is what schedules scale (scale_lr).
  struct Group {
    std::string name;
    std::vector<Var<Real>> params;
    double lr = 0;
    double initial_lr = 0;
    double weight_decay = 0;
  };

  virtual ~Optimizer() = default;
  virtual const char* type_name() const = 0;
  // One update of every parameter that has a gradient; parameters without one are skipped.
  virtual void step() = 0;

  // Zeroes the gradients (keeping their memory; torch 1.x's zero_grad(set_to_none=False)).
  void zero_grad() {
    for (Group& g : groups_)
      for (Var<Real>& p : g.params) p.zero_grad();
  }
  std::size_t num_groups() const { return groups_.size(); }
  const Group& group(std::size_t i) const {
    check<IndexError>(i < groups_.size(), type_name(), ": group ", i, " out of range for ",
                      groups_.size(), " groups");
    return groups_[i];
  }
  double lr(std::size_t group_index = 0) const { return group(group_index).lr; }
  void set_lr(std::size_t group_index, double lr) {
    check(lr >= 0, type_name(), ": learning rate must be >= 0, got ", lr);
    group(group_index);  // range check
    groups_[group_index].lr = lr;
  }
  // Every group's lr = its initial lr × factor: apply a schedule with opt.scale_lr(schedule(step)).
  void scale_lr(double factor) {
    check(factor >= 0, type_name(), ": lr factor must be >= 0, got ", factor);
    for (Group& g : groups_) g.lr = g.initial_lr * factor;
  }
  // All parameters of all groups, in order (e.g. for clip_grad_norm).
  std::vector<Var<Real>> parameters() const {
    std::vector<Var<Real>> out;
    for (const Group& g : groups_) out.insert(out.end(), g.params.begin(), g.params.end());
    return out;
  }
  // Number of step() calls so far (restored by load_state).
  std::int64_t steps() const { return steps_; }

  // Saves the optimizer state (moments, step counts, lrs) to a safetensors file, atomically. The
  // keys are `state.<group>.<param>.<name>`: loading needs the same groups and parameter order.
  void save_state(const std::filesystem::path& path) const {
    io::SafetensorsWriter w;
    const io::Dtype dtype = std::is_same_v<Real, double> ? io::Dtype::F64 : io::Dtype::F32;
    for (std::size_t g = 0; g < groups_.size(); ++g)
      for (std::size_t i = 0; i < groups_[g].params.size(); ++i)
        for (auto& [name, tensor] : state_tensors(g, i))
          w.add(state_key(g, i, name), tensor, dtype);
    w.set_metadata("optimizer", type_name());
    w.set_metadata("steps", std::to_string(steps_));
    w.set_metadata("groups", std::to_string(groups_.size()));
    for (std::size_t g = 0; g < groups_.size(); ++g) {
      const std::string k = "group." + std::to_string(g) + ".";
      w.set_metadata(k + "params", std::to_string(groups_[g].params.size()));
      w.set_metadata(k + "lr", exact(groups_[g].lr));
      w.set_metadata(k + "initial_lr", exact(groups_[g].initial_lr));
      w.set_metadata(k + "weight_decay", exact(groups_[g].weight_decay));
    }
    w.save(path);
  }
  // Restores what save_state wrote. FormatError (naming the file and key) if it was saved by
  // another optimizer type or for other groups, parameters or shapes.
  void load_state(const std::filesystem::path& path) {
    const io::SafetensorsFile file(path);
    auto meta = [&](const std::string& key) -> std::string {
      const auto it = file.metadata().find(key);
      check<FormatError>(it != file.metadata().end(), file.path(), ": metadata key '", key,
                         "' is missing (not an optimizer state file?)");
      return it->second;
    };
    check<FormatError>(meta("optimizer") == type_name(), file.path(), ": holds ", meta("optimizer"),
                       " state, not ", type_name());
    check<FormatError>(meta("groups") == std::to_string(groups_.size()), file.path(), ": has ",
                       meta("groups"), " parameter groups but the optimizer has ", groups_.size());
    for (std::size_t g = 0; g < groups_.size(); ++g) {
      const std::string k = "group." + std::to_string(g) + ".";
      check<FormatError>(meta(k + "params") == std::to_string(groups_[g].params.size()),
                         file.path(), ": group ", g, " has ", meta(k + "params"),
                         " parameters but the optimizer's has ", groups_[g].params.size());
    }
    clear_state();
    for (std::size_t g = 0; g < groups_.size(); ++g) {
      const std::string k = "group." + std::to_string(g) + ".";
      groups_[g].lr = number(file, k + "lr", meta(k + "lr"));
      groups_[g].initial_lr = number(file, k + "initial_lr", meta(k + "initial_lr"));
      groups_[g].weight_decay = number(file, k + "weight_decay", meta(k + "weight_decay"));
      for (std::size_t i = 0; i < groups_[g].params.size(); ++i) {
        const Shape& shape = groups_[g].params[i].shape();
        std::vector<std::pair<std::string, Tensor<Real>>> loaded;
        for (const std::string& name : state_names()) {
          const std::string key = state_key(g, i, name);
          if (!file.contains(key)) continue;
          Tensor<Real> t = file.load<Real>(key);
          check<FormatError>(name == "step" || t.shape() == shape, file.path(), ": '", key,
                             "' has shape ", shape_str(t.shape()), " but the parameter has ",
                             shape_str(shape));
          loaded.emplace_back(name, std::move(t));
        }
        if (!loaded.empty()) set_state_tensors(g, i, loaded, file.path());
      }
    }
    steps_ = static_cast<std::int64_t>(number(file, "steps", meta("steps")));
  }

 protected:
  Optimizer(std::vector<ParamGroup<Real>> groups, double default_lr, double default_weight_decay) {
    for (std::size_t g = 0; g < groups.size(); ++g) {
      Group group;
      group.name = groups[g].name.empty() ? "group" + std::to_string(g) : groups[g].name;
      group.params = std::move(groups[g].params);
      group.lr = group.initial_lr = groups[g].lr.value_or(default_lr);
      group.weight_decay = groups[g].weight_decay.value_or(default_weight_decay);
      check(group.lr >= 0, "optimizer: group '", group.name, "' has lr ", group.lr, " < 0");
      check(group.weight_decay >= 0, "optimizer: group '", group.name, "' has weight_decay ",
            group.weight_decay, " < 0");
      for (const Var<Real>& p : group.params) {
        check(p.defined(), "optimizer: group '", group.name, "' holds an undefined Var");
        for (const Group& other : groups_)
          for (const Var<Real>& q : other.params)
            check(!p.same_as(q), "optimizer: a parameter appears in groups '", other.name,
                  "' and '", group.name, "'");
      }
      groups_.push_back(std::move(group));
    }
  }

  // Per-parameter state, for save/load: the names an optimizer keeps ("exp_avg", ...; "step" is
  // stored as a one-element tensor), the current tensors of parameter i of group g (empty before
  // its first update), and how to put loaded ones back.
  virtual std::vector<std::string> state_names() const = 0;
  virtual std::vector<std::pair<std::string, Tensor<Real>>> state_tensors(std::size_t g,
                                                                          std::size_t i) const = 0;
  virtual void set_state_tensors(std::size_t g, std::size_t i,
                                 const std::vector<std::pair<std::string, Tensor<Real>>>& state,
                                 const std::string& file) = 0;
  virtual void clear_state() = 0;

  // Parameters step() should update: with a gradient and requires_grad.
  static bool has_update(const Var<Real>& p) { return p.requires_grad() && p.has_grad(); }

  std::vector<Group> groups_;
  std::int64_t steps_ = 0;

 private:
  static std::string state_key(std::size_t g, std::size_t i, const std::string& name) {
    return "state." + std::to_string(g) + "." + std::to_string(i) + "." + name;
  }
  static std::string exact(double v) {
    char buffer[40];
    std::snprintf(buffer, sizeof buffer, "%.17g", v);
    return buffer;
  }
  static double number(const io::SafetensorsFile& file, const std::string& key,
                       const std::string& text) {
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    check<FormatError>(end != text.c_str() && *end == '\0', file.path(), ": metadata '", key,
                       "' should be a number but is '", text, "'");
    return v;
  }
};

}  // namespace fourierft::optim
