// fourierft/models/registry.hpp — the model registry: config.json's model_type / architectures ->
// the class, and AnyModel, the one interface programs (the CLI) drive every model through.
#pragma once

// Adding a model: its own header (a PretrainedModel, see models/pretrained.hpp) plus one line,
// either in register_builtin_models below or, from a program or test, before first use:
//   models::register_model<MyModel>();        // MyModel<float> and MyModel<double>
// Then `model_registry<float>().from_pretrained(dir)` loads any registered folder:
//   auto model = models::model_registry<float>().from_pretrained(dir, &report);
//   models::ModelOutput<float> out = model->forward(tape, inputs);   // inputs by model->inputs()

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/io/hf_config.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/io/safetensors.hpp"
#include "fourierft/models/checkpoint.hpp"
#include "fourierft/models/common.hpp"
#include "fourierft/models/generation.hpp"
#include "fourierft/models/gpt2.hpp"
#include "fourierft/models/llama.hpp"
#include "fourierft/models/roberta.hpp"
#include "fourierft/models/vit.hpp"
#include "fourierft/nn/module.hpp"

namespace fourierft::models {

// A model of any registered class. module() is the model itself: parameters, train / eval,
// adapters (peft::load_adapter(model->module(), dir)).
template <class Real>
class AnyModel {
 public:
  virtual ~AnyModel() = default;
  virtual nn::Module<Real>& module() = 0;
  virtual const io::HfCommonConfig& config() const = 0;
  virtual std::string_view architecture() const = 0;
  virtual Task task() const = 0;
  virtual InputKind inputs() const = 0;
  // The fields of `in` that inputs() names -> logits and last_hidden_state.
  virtual ModelOutput<Real> forward(Tape<Real>& tape, const ModelInputs<Real>& in) = 0;
  // The task's loss (Task): labels in in.labels (or in.targets for a regressor); a causal LM
  // derives them from in.input_ids when in.labels is empty.
  virtual Var<Real> loss(Tape<Real>& tape, const ModelOutput<Real>& out,
                         const ModelInputs<Real>& in) = 0;
  virtual void save_pretrained(const std::filesystem::path& dir,
                               io::Dtype dtype = io::Dtype::F32) const = 0;
  // A causal LM's continuations of token-id prompts (models/generation.hpp's generate, KV cache
  // and all); ValueError for a model that cannot generate.
  virtual std::vector<Generated> generate(const std::vector<std::vector<std::int64_t>>& prompts,
                                          const GenerationConfig& config) = 0;
};

// AnyModel over a concrete class; get() is the class itself.
template <class Model>
class ModelHandle final : public AnyModel<typename Model::real_type> {
  using Real = typename Model::real_type;

 public:
  explicit ModelHandle(std::unique_ptr<Model> model) : model_(std::move(model)) {}
  Model& get() { return *model_; }
  nn::Module<Real>& module() override { return *model_; }
  const io::HfCommonConfig& config() const override { return model_->config; }
  std::string_view architecture() const override { return Model::architecture; }
  Task task() const override { return Model::task; }
  InputKind inputs() const override { return Model::inputs; }
  ModelOutput<Real> forward(Tape<Real>& tape, const ModelInputs<Real>& in) override {
    return model_->forward(tape, in);
  }
  Var<Real> loss(Tape<Real>& tape, const ModelOutput<Real>& out,
                 const ModelInputs<Real>& in) override {
    return model_->loss(tape, out, in);
  }
  void save_pretrained(const std::filesystem::path& dir, io::Dtype dtype) const override {
    model_->save_pretrained(dir, dtype);
  }
  std::vector<Generated> generate(const std::vector<std::vector<std::int64_t>>& prompts,
                                  const GenerationConfig& config) override {
    if constexpr (DecodableLm<Model>) {
      return models::generate(*model_, prompts, config);
    } else {
      throw ValueError(str_cat(Model::architecture, " cannot generate text (not a causal LM)"));
    }
  }

 private:
  std::unique_ptr<Model> model_;
};

template <class Real>
class ModelRegistry {
 public:
  struct Entry {
    std::string model_type;    // config.json's model_type: "gpt2"
    std::string architecture;  // config.json's architectures[0]: "GPT2LMHeadModel"
    Task task;
    InputKind inputs;
    std::function<std::unique_ptr<AnyModel<Real>>(const std::filesystem::path&,
                                                  CheckpointReport*, const CheckpointOptions&)>
        from_pretrained;
  };

  // Registers Model (a PretrainedModel); the first class of a model_type is that type's default.
  // Registering an architecture again replaces it.
  template <class Model>
  void add() {
    Entry entry{typename Model::config_type().model_type, std::string(Model::architecture),
                Model::task, Model::inputs,
                [](const std::filesystem::path& dir, CheckpointReport* report,
                   const CheckpointOptions& options) -> std::unique_ptr<AnyModel<Real>> {
                  return std::make_unique<ModelHandle<Model>>(
                      Model::from_pretrained(dir, report, options));
                }};
    for (Entry& e : entries_)
      if (e.architecture == entry.architecture) return void(e = std::move(entry));
    entries_.push_back(std::move(entry));
  }

  const std::vector<Entry>& entries() const { return entries_; }
  // The default class of a model_type; FormatError naming `source` if none is registered:
  // "<source>: model_type 'bert' is not supported (fourierft runs gpt2, roberta, vit)".
  const Entry& for_model_type(std::string_view type, std::string_view source = "config") const {
    for (const Entry& e : entries_)
      if (e.model_type == type) return e;
    std::vector<std::string> known;
    for (const Entry& e : entries_)
      if (std::find(known.begin(), known.end(), e.model_type) == known.end())
        known.push_back(e.model_type);
    std::string list;
    for (const std::string& t : known) list += (list.empty() ? "" : ", ") + t;
    throw FormatError(str_cat(source, ": model_type '", type,
                              "' is not supported (fourierft runs ", list, ")"));
  }
  // The default class of a checkpoint folder's (or config file's) model_type.
  const Entry& for_config(const std::filesystem::path& dir_or_file) const {
    const io::JsonObject j = io::JsonObject::read(io::config_path(dir_or_file));
    return for_model_type(j.get<std::string>("model_type"), j.source());
  }
  const Entry* for_architecture(std::string_view architecture) const {
    for (const Entry& e : entries_)
      if (e.architecture == architecture) return &e;
    return nullptr;
  }
  // The class a checkpoint folder's config.json asks for: its architectures[0] when that class
  // is registered for its model_type, else the model_type's default.
  const Entry& resolve(const std::filesystem::path& dir_or_file) const {
    const io::JsonObject j = io::JsonObject::read(io::config_path(dir_or_file));
    const std::string type = j.get<std::string>("model_type");
    const auto architectures = j.get_or<std::vector<std::string>>("architectures", {});
    if (!architectures.empty())
      if (const Entry* e = for_architecture(architectures.front()); e && e->model_type == type)
        return *e;
    return for_model_type(type, j.source());
  }
  // from_pretrained of the class resolve(dir) picks.
  std::unique_ptr<AnyModel<Real>> from_pretrained(const std::filesystem::path& dir,
                                                  CheckpointReport* report = nullptr,
                                                  const CheckpointOptions& options = {}) const {
    return resolve(dir).from_pretrained(dir, report, options);
  }

 private:
  std::vector<Entry> entries_;
};

// The models fourierft ships, one line each (the first of a model_type is its default).
template <class Real>
void register_builtin_models(ModelRegistry<Real>& registry) {
  registry.template add<GPT2LMHeadModel<Real>>();
  registry.template add<RobertaForSequenceClassification<Real>>();
  registry.template add<RobertaForMaskedLM<Real>>();
  registry.template add<ViTForImageClassification<Real>>();
  registry.template add<LlamaForCausalLM<Real>>();  // + MistralForCausalLM, Qwen2/Qwen3ForCausalLM
  registry.template add<MistralForCausalLM<Real>>();
  registry.template add<Qwen2ForCausalLM<Real>>();
  registry.template add<Qwen3ForCausalLM<Real>>();
}

// The process-wide registry for Real, holding the built-in models from first use on.
template <class Real>
ModelRegistry<Real>& model_registry() {
  static ModelRegistry<Real> registry = [] {
    ModelRegistry<Real> r;
    register_builtin_models(r);
    return r;
  }();
  return registry;
}

// Registers Model<float> and Model<double>.
template <template <class> class Model>
void register_model() {
  model_registry<float>().template add<Model<float>>();
  model_registry<double>().template add<Model<double>>();
}

}  // namespace fourierft::models
