// fourierft/io/hf_config.hpp — Hugging Face config.json for the model types fourierft runs (gpt2,
// roberta, vit, llama / mistral / qwen2 / qwen3): typed structs with HF's defaults, readers, writers.
#pragma once

// What is read, per transformers' configuration_utils.py (PretrainedConfig) and configuration_gpt2.py,
// configuration_roberta.py (BertConfig's fields, pad/bos/eos 1/0/2), configuration_vit.py:
// - An absent or null field takes HF's default, except the sizes that fix the tensor shapes
//   (vocabulary, width, depth, heads, positions, image and patch size): those are required. HF would
//   silently fall back to the base model's sizes and then fail on every tensor; we fail on the key.
// - GPT-2 also accepts the generic names HF maps onto its own (attribute_map): hidden_size -> n_embd,
//   max_position_embeddings -> n_positions, num_attention_heads -> n_head, num_hidden_layers -> n_layer.
// - Labels: id2label {"0": "neg", "1": "pos"} gives num_labels and the names; without it, `num_labels`
//   (a constructor argument some hand-written configs carry) or HF's default of 2 ("LABEL_0", ...).
//   num_labels == 1 with no problem_type means regression (MSE), as in HF's sequence classifiers.
// - The dtype is `torch_dtype` (transformers < 4.56) or `dtype` (>= 4.56; wins if both are present).
// - Unknown keys are kept (`extra`) and written back, as save_pretrained keeps unknown attributes.
// Errors: FormatError "<path>: key 'n_embd' is missing" / "... should be an integer but is a string
// ("768")" / "<path>: model_type 'bert' is not supported (fourierft runs gpt2, roberta, ...)"; a file
// that cannot be read is an IoError, malformed JSON a FormatError with the byte offset (io/json.hpp).

#include <algorithm>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <initializer_list>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/io/limits.hpp"
#include "fourierft/ops/rotary.hpp"

namespace fourierft::io {

// ---------------------------------------------------------------------------
// Fields of every PretrainedConfig that fourierft uses.
struct HfCommonConfig {
  std::string model_type;
  std::vector<std::string> architectures;  // {"GPT2LMHeadModel"}; empty when absent
  std::string torch_dtype;                 // "float32" / "float16" / "bfloat16"; "" when absent
  std::string transformers_version;        // "" when absent (old hub configs)
  std::string name_or_path;                // "_name_or_path"
  std::vector<std::string> id2label = {"LABEL_0", "LABEL_1"};  // index = label id
  std::string problem_type;  // "" (infer), "regression", "single_label_classification",
                             // "multi_label_classification"
  std::optional<Index> pad_token_id, bos_token_id, eos_token_id;
  bool tie_word_embeddings = true;
  Json extra = Json::object();  // the object as read; unknown keys survive read -> to_json

  Index num_labels() const { return static_cast<Index>(id2label.size()); }
  // HF's sequence classifiers: problem_type, else regression iff exactly one label.
  bool is_regression() const {
    return problem_type == "regression" || (problem_type.empty() && num_labels() == 1);
  }
};

// GPT2LMHeadModel. Conv1D weights are stored (in, out).
struct Gpt2Config : HfCommonConfig {
  Index vocab_size = 50257;
  Index n_positions = 1024;
  Index n_embd = 768;
  Index n_layer = 12;
  Index n_head = 12;
  std::optional<Index> n_inner;  // null: 4 * n_embd
  std::string activation_function = "gelu_new";
  double resid_pdrop = 0.1;  // after c_proj of attention and MLP
  double embd_pdrop = 0.1;   // after wte + wpe
  double attn_pdrop = 0.1;   // on attention probabilities
  double layer_norm_epsilon = 1e-5;
  double initializer_range = 0.02;
  bool scale_attn_weights = true;                // divide scores by sqrt(head dim)
  bool scale_attn_by_inverse_layer_idx = false;  // also by (layer index + 1)
  bool reorder_and_upcast_attn = false;

  Gpt2Config() {
    model_type = "gpt2";
    bos_token_id = 50256;
    eos_token_id = 50256;
  }
  Index inner_dim() const { return n_inner ? *n_inner : 4 * n_embd; }
  Index head_dim() const { return n_embd / n_head; }
};

// RobertaForSequenceClassification / RobertaForMaskedLM (BertConfig fields).
struct RobertaConfig : HfCommonConfig {
  Index vocab_size = 50265;
  Index hidden_size = 768;
  Index num_hidden_layers = 12;
  Index num_attention_heads = 12;
  Index intermediate_size = 3072;
  Index max_position_embeddings = 512;  // real checkpoints: 514 = 512 + padding_idx + 1
  Index type_vocab_size = 2;            // real checkpoints: 1
  std::string hidden_act = "gelu";
  double hidden_dropout_prob = 0.1;
  double attention_probs_dropout_prob = 0.1;
  std::optional<double> classifier_dropout;  // null: hidden_dropout_prob
  double layer_norm_eps = 1e-12;             // real checkpoints: 1e-5
  double initializer_range = 0.02;
  std::string position_embedding_type = "absolute";

  RobertaConfig() {
    model_type = "roberta";
    pad_token_id = 1;
    bos_token_id = 0;
    eos_token_id = 2;
  }
  Index head_dim() const { return hidden_size / num_attention_heads; }
  double classifier_dropout_prob() const {
    return classifier_dropout ? *classifier_dropout : hidden_dropout_prob;
  }
};

// ViTForImageClassification.
struct VitConfig : HfCommonConfig {
  Index hidden_size = 768;
  Index num_hidden_layers = 12;
  Index num_attention_heads = 12;
  Index intermediate_size = 3072;
  Index image_size = 224;  // square images only
  Index patch_size = 16;
  Index num_channels = 3;
  Index encoder_stride = 16;
  std::string hidden_act = "gelu";
  double hidden_dropout_prob = 0.0;
  double attention_probs_dropout_prob = 0.0;
  double layer_norm_eps = 1e-12;
  double initializer_range = 0.02;
  bool qkv_bias = true;

  VitConfig() { model_type = "vit"; }
  Index head_dim() const { return hidden_size / num_attention_heads; }
  Index num_patches() const { return (image_size / patch_size) * (image_size / patch_size); }
};


// LlamaForCausalLM and the decoders built the same way: MistralForCausalLM, Qwen2ForCausalLM,
// Qwen3ForCausalLM (configuration_llama.py, _mistral.py, _qwen2.py, _qwen3.py). One struct for the
// four model_types; what differs between them is read from model_type:
//   q/k/v biases   llama, qwen3: attention_bias (o_proj too); qwen2: q, k, v always, o_proj never;
//                  mistral: none
//   q_norm/k_norm  qwen3 only (RMSNorm over head_dim of each head, before RoPE)
//   sliding window mistral: every layer when sliding_window is set; qwen2 / qwen3: only with
//                  use_sliding_window, on layers i >= max_window_layers (or as layer_types says)
// Defaults: the class defaults of the file's model_type (tie_word_embeddings false for all four).
struct LlamaConfig : HfCommonConfig {
  static constexpr std::string_view architecture = "LlamaForCausalLM";
  Index vocab_size = 32000;
  Index hidden_size = 4096;
  Index intermediate_size = 11008;
  Index num_hidden_layers = 32;
  Index num_attention_heads = 32;
  std::optional<Index> num_key_value_heads;  // null: num_attention_heads (multi-head attention)
  std::optional<Index> head_dim;             // null: hidden_size / num_attention_heads
  std::string hidden_act = "silu";
  Index max_position_embeddings = 2048;
  double initializer_range = 0.02;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  ops::RopeScaling rope_scaling;  // type none when config.json has no rope_scaling
  bool attention_bias = false;
  bool mlp_bias = false;
  double attention_dropout = 0.0;
  std::optional<Index> sliding_window;  // as written in the file (see window_of_layer)
  bool use_sliding_window = false;      // qwen2 / qwen3
  Index max_window_layers = 28;         // qwen2 / qwen3
  std::vector<std::string> layer_types;  // "full_attention" / "sliding_attention"; empty: derived
  std::vector<Index> eos_token_ids;      // all of a list-valued eos_token_id (eos_token_id: first)

  LlamaConfig() {
    model_type = "llama";
    bos_token_id = 1;
    eos_token_id = 2;
    tie_word_embeddings = false;
  }
  Index kv_heads() const { return num_key_value_heads.value_or(num_attention_heads); }
  Index head_size() const { return head_dim.value_or(hidden_size / num_attention_heads); }
  Index q_width() const { return num_attention_heads * head_size(); }
  Index kv_width() const { return kv_heads() * head_size(); }
  bool qkv_bias() const {
    return model_type == "qwen2" || (model_type != "mistral" && attention_bias);
  }
  bool o_bias() const { return model_type != "qwen2" && model_type != "mistral" && attention_bias; }
  bool qk_norm() const { return model_type == "qwen3"; }
  // The sliding window layer i attends with, or none (full causal attention), as HF reads it.
  std::optional<Index> window_of_layer(Index i) const {
    if (model_type == "mistral") return sliding_window;
    if (model_type != "qwen2" && model_type != "qwen3") return std::nullopt;
    if (!use_sliding_window || !sliding_window) return std::nullopt;
    if (!layer_types.empty())
      return layer_types.at(static_cast<std::size_t>(i)) == "sliding_attention" ? sliding_window
                                                                                : std::nullopt;
    return i >= max_window_layers ? sliding_window : std::nullopt;
  }
};
struct MistralConfig : LlamaConfig {
  static constexpr std::string_view architecture = "MistralForCausalLM";
  MistralConfig() {
    model_type = "mistral";
    max_position_embeddings = 4096 * 32;
    sliding_window = 4096;
  }
};
struct Qwen2Config : LlamaConfig {
  static constexpr std::string_view architecture = "Qwen2ForCausalLM";
  Qwen2Config() {
    model_type = "qwen2";
    vocab_size = 151936;
    max_position_embeddings = 32768;
    bos_token_id = std::nullopt;
    eos_token_id = std::nullopt;
    sliding_window = 4096;
  }
};
struct Qwen3Config : LlamaConfig {
  static constexpr std::string_view architecture = "Qwen3ForCausalLM";
  Qwen3Config() {
    model_type = "qwen3";
    vocab_size = 151936;
    max_position_embeddings = 32768;
    head_dim = 128;
    bos_token_id = std::nullopt;
    eos_token_id = std::nullopt;
    sliding_window = 4096;
  }
};

// ---------------------------------------------------------------------------
namespace detail {

inline constexpr std::string_view supported_model_types[] = {"gpt2",    "roberta", "vit",  "llama",
                                                              "mistral", "qwen2",   "qwen3"};

// The size keys without which a checkpoint cannot be laid out (see the top of this file).
template <class Int>
Int required_positive(const JsonObject& j, std::string_view key) {
  const Int v = j.get<Int>(key);
  check<FormatError>(v > 0, j.source(), ": key '", key, "' should be positive but is ", v);
  return v;
}

// image_size / patch_size: an integer, or [h, w] with h == w.
inline Index square_size(const JsonObject& j, std::string_view key) {
  if (j.has(key) && j.json().at(std::string(key)).is_array()) {
    const auto hw = j.get<std::vector<Index>>(key);
    check<FormatError>(hw.size() == 2 && hw[0] == hw[1] && hw[0] > 0, j.source(), ": key '", key,
                       "' should be a positive integer or [n, n] (square images only) but is ",
                       json_excerpt(j.json().at(std::string(key))));
    return hw[0];
  }
  return required_positive<Index>(j, key);
}

inline void check_divisible(const JsonObject& j, std::string_view width_key, Index width,
                            std::string_view heads_key, Index heads) {
  check<FormatError>(width % heads == 0, j.source(), ": key '", width_key, "' (", width,
                     ") should be a multiple of '", heads_key, "' (", heads, ")");
}

// The model the sizes describe must fit input_limits().max_model_parameters (default 1e11) before
// anything is allocated: n_layer 10^9 or hidden 2^62 is a FormatError naming the file and sizes.
// `parameters` is a double, so the estimate itself cannot overflow; `sizes` lists the keys.
// Each layer also counts as at least 10^6 parameters: its objects cost memory even when tiny, so
// n_layer 10^9 with n_embd 1 is refused too.
inline void check_model_size(const JsonObject& j, double layers, double parameters,
                             const std::string& sizes) {
  const double cap = input_limits().max_model_parameters;
  parameters = std::max(parameters, layers * 1e6);
  if (parameters <= cap) return;
  std::ostringstream count;
  count.precision(3);
  count << parameters;
  throw FormatError(str_cat(j.source(), ": the sizes (", sizes, ") describe a model of about ",
                            count.str(), " parameters, above the limit of ", cap,
                            " (set FOURIERFT_MAX_PARAMETERS to raise it)"));
}

inline void read_common(const JsonObject& j, HfCommonConfig& c) {
  c.extra = j.json();
  c.model_type = j.get<std::string>("model_type");
  c.architectures = j.get_or<std::vector<std::string>>("architectures", {});
  if (j.has("dtype"))
    c.torch_dtype = j.get<std::string>("dtype");
  else
    c.torch_dtype = j.get_or<std::string>("torch_dtype", "");
  c.transformers_version = j.get_or<std::string>("transformers_version", "");
  c.name_or_path = j.get_or<std::string>("_name_or_path", "");
  if (j.has("id2label")) {
    const auto map = j.get<std::map<std::string, std::string>>("id2label");
    c.id2label.assign(map.size(), "");
    std::vector<bool> seen(map.size(), false);
    for (const auto& [key, name] : map) {
      std::size_t id = map.size();
      try {
        std::size_t used = 0;
        const long long v = std::stoll(key, &used);
        if (used == key.size() && v >= 0) id = static_cast<std::size_t>(v);
      } catch (const std::exception&) {
      }
      check<FormatError>(id < map.size() && !seen[id], j.source(), ": key 'id2label' should map the ids 0..",
                         map.size() - 1, " (as strings) to names but has the key \"", key, "\"");
      seen[id] = true;
      c.id2label[id] = name;
    }
    check<FormatError>(!c.id2label.empty(), j.source(), ": key 'id2label' is empty");
  } else if (j.has("num_labels")) {
    const auto n = required_positive<Index>(j, "num_labels");
    c.id2label.clear();
    for (Index i = 0; i < n; ++i) c.id2label.push_back(str_cat("LABEL_", i));
  }
  c.problem_type = j.get_or<std::string>("problem_type", "");
  check<FormatError>(c.problem_type.empty() || c.problem_type == "regression" ||
                         c.problem_type == "single_label_classification" ||
                         c.problem_type == "multi_label_classification",
                     j.source(), ": key 'problem_type' should be \"regression\", ",
                     "\"single_label_classification\" or \"multi_label_classification\" but is \"",
                     c.problem_type, "\"");
  // Token ids: a class default (set by the struct) unless the file says otherwise; null clears it.
  auto token = [&](std::string_view key, std::optional<Index>& id) {
    const auto it = j.json().find(key);
    if (it == j.json().end()) return;
    id = it->is_null() ? std::nullopt : std::optional<Index>(j.get<Index>(key));
  };
  token("pad_token_id", c.pad_token_id);
  token("bos_token_id", c.bos_token_id);
  token("eos_token_id", c.eos_token_id);
  c.tie_word_embeddings = j.get_or<bool>("tie_word_embeddings", true);
}

inline void expect_model_type(const JsonObject& j, std::string_view expected) {
  const auto type = j.get<std::string>("model_type");
  check<FormatError>(type == expected, j.source(), ": model_type is '", type, "' but a ", expected,
                     " config was expected");
}

// GPT-2's attribute_map: a generic name, if present, stands for GPT-2's own key.
inline std::string_view gpt2_key(const JsonObject& j, std::string_view own, std::string_view generic) {
  return !j.has(own) && j.has(generic) ? generic : own;
}

// Common fields into `out` (already holding the class fields), HF's way: fields that equal the
// PretrainedConfig default are left out, like save_pretrained's diff against the base class.
inline void write_common(const HfCommonConfig& c, Json& out) {
  out["model_type"] = c.model_type;
  if (!c.architectures.empty()) out["architectures"] = c.architectures;
  else out.erase("architectures");
  out.erase("dtype");
  if (!c.torch_dtype.empty()) out["torch_dtype"] = c.torch_dtype;
  else out.erase("torch_dtype");
  if (!c.transformers_version.empty()) out["transformers_version"] = c.transformers_version;
  else out.erase("transformers_version");
  if (!c.name_or_path.empty()) out["_name_or_path"] = c.name_or_path;
  else out.erase("_name_or_path");
  out.erase("num_labels");
  const bool default_labels =
      c.id2label == std::vector<std::string>{"LABEL_0", "LABEL_1"};
  if (default_labels) {
    out.erase("id2label");
    out.erase("label2id");
  } else {
    Json id2label = Json::object(), label2id = Json::object();
    for (std::size_t i = 0; i < c.id2label.size(); ++i) {
      id2label[std::to_string(i)] = c.id2label[i];
      label2id[c.id2label[i]] = static_cast<Index>(i);
    }
    out["id2label"] = id2label;
    out["label2id"] = label2id;
  }
  if (!c.problem_type.empty()) out["problem_type"] = c.problem_type;
  else out.erase("problem_type");
  auto token = [&](const char* key, const std::optional<Index>& id) {
    if (id) out[key] = *id;
    else out.erase(key);
  };
  token("pad_token_id", c.pad_token_id);
  token("bos_token_id", c.bos_token_id);
  token("eos_token_id", c.eos_token_id);
  if (!c.tie_word_embeddings) out["tie_word_embeddings"] = false;
  else out.erase("tie_word_embeddings");
}

// Class fields fourierft does not model but save_pretrained always writes: kept as read, else HF's
// default (so a config read from an old file is written back the way current HF writes it).
inline void fill_defaults(Json& out, std::initializer_list<std::pair<const char*, Json>> fields) {
  for (const auto& [key, value] : fields)
    if (!out.contains(key)) out[key] = value;
}

inline Json start_object(const HfCommonConfig& c) {
  return c.extra.is_object() ? c.extra : Json::object();
}

}  // namespace detail

// ---------------------------------------------------------------------------
// `dir_or_file` is a checkpoint folder (its config.json is read) or the path of a JSON file.
inline std::filesystem::path config_path(const std::filesystem::path& dir_or_file) {
  return std::filesystem::is_directory(dir_or_file) ? dir_or_file / "config.json" : dir_or_file;
}

inline bool is_supported_model_type(std::string_view type) {
  for (auto t : detail::supported_model_types)
    if (t == type) return true;
  return false;
}

// The model_type of a config.json; FormatError if it is missing or not one fourierft runs.
inline std::string model_type_of(const JsonObject& j) {
  const auto type = j.get<std::string>("model_type");
  check<FormatError>(is_supported_model_type(type), j.source(), ": model_type '", type,
                     "' is not supported (fourierft runs gpt2, roberta, vit, llama, mistral, ",
                     "qwen2, qwen3)");
  return type;
}
inline std::string read_model_type(const std::filesystem::path& dir_or_file) {
  return model_type_of(JsonObject::read(config_path(dir_or_file)));
}

// ---------------------------------------------------------------------------
// Parsers from an already-read object (source() names the file in errors), and file readers.
inline Gpt2Config parse_gpt2_config(const JsonObject& j) {
  detail::expect_model_type(j, "gpt2");
  Gpt2Config c;
  detail::read_common(j, c);
  using detail::gpt2_key;
  c.vocab_size = detail::required_positive<Index>(j, "vocab_size");
  c.n_embd = detail::required_positive<Index>(j, gpt2_key(j, "n_embd", "hidden_size"));
  c.n_layer = detail::required_positive<Index>(j, gpt2_key(j, "n_layer", "num_hidden_layers"));
  c.n_head = detail::required_positive<Index>(j, gpt2_key(j, "n_head", "num_attention_heads"));
  c.n_positions =
      detail::required_positive<Index>(j, gpt2_key(j, "n_positions", "max_position_embeddings"));
  detail::check_divisible(j, gpt2_key(j, "n_embd", "hidden_size"), c.n_embd,
                          gpt2_key(j, "n_head", "num_attention_heads"), c.n_head);
  if (j.has("n_inner")) c.n_inner = detail::required_positive<Index>(j, "n_inner");
  c.activation_function = j.get_or<std::string>("activation_function", c.activation_function);
  c.resid_pdrop = j.get_or<double>("resid_pdrop", c.resid_pdrop);
  c.embd_pdrop = j.get_or<double>("embd_pdrop", c.embd_pdrop);
  c.attn_pdrop = j.get_or<double>("attn_pdrop", c.attn_pdrop);
  c.layer_norm_epsilon = j.get_or<double>("layer_norm_epsilon", c.layer_norm_epsilon);
  c.initializer_range = j.get_or<double>("initializer_range", c.initializer_range);
  c.scale_attn_weights = j.get_or<bool>("scale_attn_weights", c.scale_attn_weights);
  c.scale_attn_by_inverse_layer_idx =
      j.get_or<bool>("scale_attn_by_inverse_layer_idx", c.scale_attn_by_inverse_layer_idx);
  c.reorder_and_upcast_attn = j.get_or<bool>("reorder_and_upcast_attn", c.reorder_and_upcast_attn);
  {
    const double C = double(c.n_embd), inner = c.n_inner ? double(*c.n_inner) : 4 * C;
    detail::check_model_size(
        j, double(c.n_layer), (double(c.vocab_size) + double(c.n_positions)) * C + double(c.n_layer) * (4 * C * C + 2 * C * inner),
        str_cat("vocab_size ", c.vocab_size, ", n_embd ", c.n_embd, ", n_layer ", c.n_layer,
                ", n_positions ", c.n_positions, ", n_inner ", inner));
  }
  return c;
}

inline RobertaConfig parse_roberta_config(const JsonObject& j) {
  detail::expect_model_type(j, "roberta");
  RobertaConfig c;
  detail::read_common(j, c);
  c.vocab_size = detail::required_positive<Index>(j, "vocab_size");
  c.hidden_size = detail::required_positive<Index>(j, "hidden_size");
  c.num_hidden_layers = detail::required_positive<Index>(j, "num_hidden_layers");
  c.num_attention_heads = detail::required_positive<Index>(j, "num_attention_heads");
  c.intermediate_size = detail::required_positive<Index>(j, "intermediate_size");
  c.max_position_embeddings = detail::required_positive<Index>(j, "max_position_embeddings");
  detail::check_divisible(j, "hidden_size", c.hidden_size, "num_attention_heads",
                          c.num_attention_heads);
  if (j.has("type_vocab_size"))
    c.type_vocab_size = detail::required_positive<Index>(j, "type_vocab_size");
  c.hidden_act = j.get_or<std::string>("hidden_act", c.hidden_act);
  c.hidden_dropout_prob = j.get_or<double>("hidden_dropout_prob", c.hidden_dropout_prob);
  c.attention_probs_dropout_prob =
      j.get_or<double>("attention_probs_dropout_prob", c.attention_probs_dropout_prob);
  c.classifier_dropout = j.get_optional<double>("classifier_dropout");
  c.layer_norm_eps = j.get_or<double>("layer_norm_eps", c.layer_norm_eps);
  c.initializer_range = j.get_or<double>("initializer_range", c.initializer_range);
  c.position_embedding_type =
      j.get_or<std::string>("position_embedding_type", c.position_embedding_type);
  {
    const double C = double(c.hidden_size);
    detail::check_model_size(
        j, double(c.num_hidden_layers), (double(c.vocab_size) + double(c.max_position_embeddings) + double(c.type_vocab_size)) * C +
               double(c.num_hidden_layers) * (4 * C * C + 2 * C * double(c.intermediate_size)),
        str_cat("vocab_size ", c.vocab_size, ", hidden_size ", c.hidden_size,
                ", num_hidden_layers ", c.num_hidden_layers, ", intermediate_size ",
                c.intermediate_size, ", max_position_embeddings ", c.max_position_embeddings));
  }
  return c;
}

inline VitConfig parse_vit_config(const JsonObject& j) {
  detail::expect_model_type(j, "vit");
  VitConfig c;
  detail::read_common(j, c);
  c.hidden_size = detail::required_positive<Index>(j, "hidden_size");
  c.num_hidden_layers = detail::required_positive<Index>(j, "num_hidden_layers");
  c.num_attention_heads = detail::required_positive<Index>(j, "num_attention_heads");
  c.intermediate_size = detail::required_positive<Index>(j, "intermediate_size");
  c.image_size = detail::square_size(j, "image_size");
  c.patch_size = detail::square_size(j, "patch_size");
  detail::check_divisible(j, "hidden_size", c.hidden_size, "num_attention_heads",
                          c.num_attention_heads);
  check<FormatError>(c.patch_size <= c.image_size, j.source(), ": key 'patch_size' (", c.patch_size,
                     ") should not exceed 'image_size' (", c.image_size, ")");
  if (j.has("num_channels")) c.num_channels = detail::required_positive<Index>(j, "num_channels");
  c.encoder_stride = j.get_or<Index>("encoder_stride", c.encoder_stride);
  c.hidden_act = j.get_or<std::string>("hidden_act", c.hidden_act);
  c.hidden_dropout_prob = j.get_or<double>("hidden_dropout_prob", c.hidden_dropout_prob);
  c.attention_probs_dropout_prob =
      j.get_or<double>("attention_probs_dropout_prob", c.attention_probs_dropout_prob);
  c.layer_norm_eps = j.get_or<double>("layer_norm_eps", c.layer_norm_eps);
  c.initializer_range = j.get_or<double>("initializer_range", c.initializer_range);
  c.qkv_bias = j.get_or<bool>("qkv_bias", c.qkv_bias);
  {
    const double C = double(c.hidden_size), side = double(c.image_size) / double(c.patch_size);
    detail::check_model_size(
        j, double(c.num_hidden_layers), (side * side + double(c.patch_size) * double(c.patch_size) * double(c.num_channels)) * C +
               double(c.num_hidden_layers) * (4 * C * C + 2 * C * double(c.intermediate_size)),
        str_cat("hidden_size ", c.hidden_size, ", num_hidden_layers ", c.num_hidden_layers,
                ", intermediate_size ", c.intermediate_size, ", image_size ", c.image_size,
                ", patch_size ", c.patch_size));
  }
  return c;
}

// The LLaMA family (model_type llama, mistral, qwen2, qwen3; see LlamaConfig). Errors name the file
// and key: hidden_size not a multiple of num_attention_heads (without head_dim), kv heads not
// dividing heads, an unknown rope_scaling type, a hidden_act other than silu.
inline LlamaConfig parse_llama_config(const JsonObject& file) {
  const auto type = file.get<std::string>("model_type");
  check<FormatError>(type == "llama" || type == "mistral" || type == "qwen2" || type == "qwen3",
                     file.source(), ": model_type is '", type,
                     "' but a llama, mistral, qwen2 or qwen3 config was expected");
  LlamaConfig c;  // the class defaults of the file's model_type
  if (type == "mistral") c = MistralConfig();
  if (type == "qwen2") c = Qwen2Config();
  if (type == "qwen3") c = Qwen3Config();
  // Llama 3 lists several eos ids: the first is the one generation stops at, all are kept.
  Json json = file.json();
  if (const auto it = json.find("eos_token_id"); it != json.end() && it->is_array()) {
    c.eos_token_ids = file.get<std::vector<Index>>("eos_token_id");
    json["eos_token_id"] = c.eos_token_ids.empty() ? Json(nullptr) : Json(c.eos_token_ids[0]);
  }
  const JsonObject j(json, file.source());
  detail::read_common(j, c);
  c.extra = file.json();
  c.tie_word_embeddings = j.get_or<bool>("tie_word_embeddings", false);
  c.vocab_size = detail::required_positive<Index>(j, "vocab_size");
  c.hidden_size = detail::required_positive<Index>(j, "hidden_size");
  c.intermediate_size = detail::required_positive<Index>(j, "intermediate_size");
  c.num_hidden_layers = detail::required_positive<Index>(j, "num_hidden_layers");
  c.num_attention_heads = detail::required_positive<Index>(j, "num_attention_heads");
  if (j.has("num_key_value_heads"))
    c.num_key_value_heads = detail::required_positive<Index>(j, "num_key_value_heads");
  if (j.has("head_dim")) c.head_dim = detail::required_positive<Index>(j, "head_dim");
  if (!c.head_dim)
    detail::check_divisible(j, "hidden_size", c.hidden_size, "num_attention_heads",
                            c.num_attention_heads);
  check<FormatError>(c.num_attention_heads % c.kv_heads() == 0, j.source(),
                     ": key 'num_key_value_heads' (", c.kv_heads(),
                     ") should divide 'num_attention_heads' (", c.num_attention_heads, ")");
  check<FormatError>(c.head_size() % 2 == 0, j.source(), ": the head dimension (",
                     c.head_dim ? "key 'head_dim'" : "hidden_size / num_attention_heads", " = ",
                     c.head_size(), ") should be even for rotary embeddings");
  c.hidden_act = j.get_or<std::string>("hidden_act", c.hidden_act);
  check<FormatError>(c.hidden_act == "silu", j.source(), ": key 'hidden_act' is \"", c.hidden_act,
                     "\" but the LLaMA family's MLP is implemented with \"silu\" only");
  c.max_position_embeddings =
      j.get_or<Index>("max_position_embeddings", c.max_position_embeddings);
  c.initializer_range = j.get_or<double>("initializer_range", c.initializer_range);
  c.rms_norm_eps = j.get_or<double>("rms_norm_eps", c.rms_norm_eps);
  c.attention_bias = j.get_or<bool>("attention_bias", c.attention_bias);
  c.mlp_bias = j.get_or<bool>("mlp_bias", c.mlp_bias);
  c.attention_dropout = j.get_or<double>("attention_dropout", c.attention_dropout);
  const auto window_key = j.json().find("sliding_window");
  if (window_key != j.json().end()) {  // null disables it
    c.sliding_window = std::nullopt;
    if (!window_key->is_null())
      c.sliding_window = detail::required_positive<Index>(j, "sliding_window");
  }
  c.use_sliding_window = j.get_or<bool>("use_sliding_window", c.use_sliding_window);
  c.max_window_layers = j.get_or<Index>("max_window_layers", c.max_window_layers);
  c.layer_types = j.get_or<std::vector<std::string>>("layer_types", {});
  check<FormatError>(c.layer_types.empty() ||
                         static_cast<Index>(c.layer_types.size()) == c.num_hidden_layers,
                     j.source(), ": key 'layer_types' has ", c.layer_types.size(),
                     " entries for num_hidden_layers = ", c.num_hidden_layers);
  for (std::size_t i = 0; i < c.layer_types.size(); ++i)
    check<FormatError>(c.layer_types[i] == "full_attention" ||
                           c.layer_types[i] == "sliding_attention",
                       j.source(), ": key 'layer_types[", i, "]' should be \"full_attention\" or ",
                       "\"sliding_attention\" but is \"", c.layer_types[i], "\"");

  // RoPE: rope_theta + rope_scaling (transformers 4.x), or rope_parameters (5.x) holding both.
  c.rope_theta = j.get_or<double>("rope_theta", c.rope_theta);
  std::optional<JsonObject> rope;
  std::string rope_key = "rope_scaling";
  if (j.has("rope_parameters")) {
    rope_key = "rope_parameters";
    rope = j.get<JsonObject>("rope_parameters");
    c.rope_theta = rope->get_or<double>("rope_theta", c.rope_theta);
  } else if (j.has("rope_scaling")) {
    rope = j.get<JsonObject>("rope_scaling");
  }
  if (rope) {
    const std::string kind = rope->has("rope_type") ? rope->get<std::string>("rope_type")
                                                    : rope->get_or<std::string>("type", "default");
    ops::RopeScaling& r = c.rope_scaling;
    if (kind == "default") {
      r.type = ops::RopeScalingType::none;
    } else if (kind == "linear" || kind == "dynamic" || kind == "llama3") {
      r.type = kind == "linear"    ? ops::RopeScalingType::linear
               : kind == "dynamic" ? ops::RopeScalingType::dynamic
                                   : ops::RopeScalingType::llama3;
      r.factor = rope->get<double>("factor");
      check<FormatError>(r.factor > 0, j.source(), ": key '", rope_key, ".factor' should be ",
                         "positive but is ", r.factor);
      if (r.type == ops::RopeScalingType::llama3) {
        r.low_freq_factor = rope->get<double>("low_freq_factor");
        r.high_freq_factor = rope->get<double>("high_freq_factor");
        r.original_max_position_embeddings =
            rope->get<Index>("original_max_position_embeddings");
        check<FormatError>(r.high_freq_factor > r.low_freq_factor, j.source(), ": key '",
                           rope_key, ".high_freq_factor' (", r.high_freq_factor,
                           ") should exceed low_freq_factor (", r.low_freq_factor, ")");
      }
    } else {
      throw FormatError(str_cat(j.source(), ": key '", rope_key, ".",
                                rope->has("rope_type") ? "rope_type" : "type", "' is \"", kind,
                                "\"; supported: default, linear, dynamic, llama3"));
    }
  }
  {
    const double C = double(c.hidden_size), heads = double(c.num_attention_heads);
    const double head = c.head_dim ? double(*c.head_dim) : C / heads;
    const double kv = c.num_key_value_heads ? double(*c.num_key_value_heads) : heads;
    detail::check_model_size(
        j, double(c.num_hidden_layers), double(c.vocab_size) * C * (c.tie_word_embeddings ? 1 : 2) +
               double(c.max_position_embeddings) * head +
               double(c.num_hidden_layers) *
                   (2 * C * heads * head + 2 * C * kv * head + 3 * C * double(c.intermediate_size)),
        str_cat("vocab_size ", c.vocab_size, ", hidden_size ", c.hidden_size,
                ", num_hidden_layers ", c.num_hidden_layers, ", intermediate_size ",
                c.intermediate_size, ", num_attention_heads ", c.num_attention_heads,
                ", max_position_embeddings ", c.max_position_embeddings));
  }
  return c;
}

inline Gpt2Config read_gpt2_config(const std::filesystem::path& dir_or_file) {
  return parse_gpt2_config(JsonObject::read(config_path(dir_or_file)));
}
inline RobertaConfig read_roberta_config(const std::filesystem::path& dir_or_file) {
  return parse_roberta_config(JsonObject::read(config_path(dir_or_file)));
}
inline VitConfig read_vit_config(const std::filesystem::path& dir_or_file) {
  return parse_vit_config(JsonObject::read(config_path(dir_or_file)));
}

// The same by type, for generic code (models/pretrained.hpp): `parse_config(j, c)` is found by
// argument-dependent lookup, so a model's own config struct brings its parser along with it.
inline void parse_config(const JsonObject& j, Gpt2Config& c) { c = parse_gpt2_config(j); }
inline void parse_config(const JsonObject& j, RobertaConfig& c) { c = parse_roberta_config(j); }
inline void parse_config(const JsonObject& j, VitConfig& c) { c = parse_vit_config(j); }
// MistralConfig, Qwen2Config, Qwen3Config too: the file's model_type decides the defaults.
inline void parse_config(const JsonObject& j, LlamaConfig& c) { c = parse_llama_config(j); }
template <class Config>
Config read_config(const std::filesystem::path& dir_or_file) {
  Config c;
  parse_config(JsonObject::read(config_path(dir_or_file)), c);
  return c;
}

// The PretrainedConfig fields of every config, for the parser / writer of a new model's config.
using detail::read_common;
using detail::write_common;
using detail::start_object;

// ---------------------------------------------------------------------------
// Writers: the config.json save_pretrained would write for the struct (sorted keys; class fields
// always, base fields only where they differ from PretrainedConfig's defaults; unknown keys kept).
inline Json to_json(const Gpt2Config& c) {
  Json out = detail::start_object(c);
  for (const char* alias : {"hidden_size", "max_position_embeddings", "num_attention_heads",
                            "num_hidden_layers"})
    out.erase(alias);  // HF stores them under GPT-2's own names
  out["vocab_size"] = c.vocab_size;
  out["n_positions"] = c.n_positions;
  out["n_embd"] = c.n_embd;
  out["n_layer"] = c.n_layer;
  out["n_head"] = c.n_head;
  out["n_inner"] = c.n_inner ? Json(*c.n_inner) : Json(nullptr);
  out["activation_function"] = c.activation_function;
  out["resid_pdrop"] = c.resid_pdrop;
  out["embd_pdrop"] = c.embd_pdrop;
  out["attn_pdrop"] = c.attn_pdrop;
  out["layer_norm_epsilon"] = c.layer_norm_epsilon;
  out["initializer_range"] = c.initializer_range;
  out["scale_attn_weights"] = c.scale_attn_weights;
  out["scale_attn_by_inverse_layer_idx"] = c.scale_attn_by_inverse_layer_idx;
  out["reorder_and_upcast_attn"] = c.reorder_and_upcast_attn;
  detail::fill_defaults(out, {{"summary_type", "cls_index"},
                              {"summary_use_proj", true},
                              {"summary_activation", nullptr},
                              {"summary_proj_to_labels", true},
                              {"summary_first_dropout", 0.1},
                              {"use_cache", true}});
  detail::write_common(c, out);
  return out;
}

inline Json to_json(const RobertaConfig& c) {
  Json out = detail::start_object(c);
  out["vocab_size"] = c.vocab_size;
  out["hidden_size"] = c.hidden_size;
  out["num_hidden_layers"] = c.num_hidden_layers;
  out["num_attention_heads"] = c.num_attention_heads;
  out["intermediate_size"] = c.intermediate_size;
  out["max_position_embeddings"] = c.max_position_embeddings;
  out["type_vocab_size"] = c.type_vocab_size;
  out["hidden_act"] = c.hidden_act;
  out["hidden_dropout_prob"] = c.hidden_dropout_prob;
  out["attention_probs_dropout_prob"] = c.attention_probs_dropout_prob;
  out["classifier_dropout"] = c.classifier_dropout ? Json(*c.classifier_dropout) : Json(nullptr);
  out["layer_norm_eps"] = c.layer_norm_eps;
  out["initializer_range"] = c.initializer_range;
  out["position_embedding_type"] = c.position_embedding_type;
  detail::fill_defaults(out, {{"use_cache", true}});
  detail::write_common(c, out);
  return out;
}

inline Json to_json(const VitConfig& c) {
  Json out = detail::start_object(c);
  out["hidden_size"] = c.hidden_size;
  out["num_hidden_layers"] = c.num_hidden_layers;
  out["num_attention_heads"] = c.num_attention_heads;
  out["intermediate_size"] = c.intermediate_size;
  out["image_size"] = c.image_size;
  out["patch_size"] = c.patch_size;
  out["num_channels"] = c.num_channels;
  out["encoder_stride"] = c.encoder_stride;
  out["hidden_act"] = c.hidden_act;
  out["hidden_dropout_prob"] = c.hidden_dropout_prob;
  out["attention_probs_dropout_prob"] = c.attention_probs_dropout_prob;
  out["layer_norm_eps"] = c.layer_norm_eps;
  out["initializer_range"] = c.initializer_range;
  out["qkv_bias"] = c.qkv_bias;
  detail::write_common(c, out);
  return out;
}

// The LLaMA family: HF's class fields for the config's model_type; rope_scaling as read (or built
// from the struct), tie_word_embeddings always written (these classes default it to false).
inline Json to_json(const LlamaConfig& c) {
  Json out = detail::start_object(c);
  out["vocab_size"] = c.vocab_size;
  out["hidden_size"] = c.hidden_size;
  out["intermediate_size"] = c.intermediate_size;
  out["num_hidden_layers"] = c.num_hidden_layers;
  out["num_attention_heads"] = c.num_attention_heads;
  out["num_key_value_heads"] = c.kv_heads();
  if (c.head_dim) out["head_dim"] = *c.head_dim;
  out["hidden_act"] = c.hidden_act;
  out["max_position_embeddings"] = c.max_position_embeddings;
  out["initializer_range"] = c.initializer_range;
  out["rms_norm_eps"] = c.rms_norm_eps;
  out["attention_dropout"] = c.attention_dropout;
  if (c.model_type == "llama" || c.model_type == "qwen3") out["attention_bias"] = c.attention_bias;
  if (c.model_type == "llama") out["mlp_bias"] = c.mlp_bias;
  if (c.model_type != "llama")
    out["sliding_window"] = c.sliding_window ? Json(*c.sliding_window) : Json(nullptr);
  if (c.model_type == "qwen2" || c.model_type == "qwen3") {
    out["use_sliding_window"] = c.use_sliding_window;
    out["max_window_layers"] = c.max_window_layers;
  }
  if (!c.layer_types.empty()) out["layer_types"] = c.layer_types;
  // RoPE under the key the file used (rope_parameters or rope_theta + rope_scaling).
  const ops::RopeScaling& r = c.rope_scaling;
  const bool parameters = out.contains("rope_parameters") && out["rope_parameters"].is_object();
  Json rope = parameters ? out["rope_parameters"]
              : out.contains("rope_scaling") && out["rope_scaling"].is_object()
                  ? out["rope_scaling"]
                  : Json::object();
  const char* kind = r.type == ops::RopeScalingType::linear    ? "linear"
                     : r.type == ops::RopeScalingType::dynamic ? "dynamic"
                     : r.type == ops::RopeScalingType::llama3  ? "llama3"
                                                               : "default";
  rope["rope_type"] = kind;
  if (rope.contains("type")) rope["type"] = kind;
  if (r.type != ops::RopeScalingType::none) rope["factor"] = r.factor;
  if (r.type == ops::RopeScalingType::llama3) {
    rope["low_freq_factor"] = r.low_freq_factor;
    rope["high_freq_factor"] = r.high_freq_factor;
    rope["original_max_position_embeddings"] = r.original_max_position_embeddings;
  }
  if (parameters) {
    rope["rope_theta"] = c.rope_theta;
    out["rope_parameters"] = rope;
  } else {
    out["rope_theta"] = c.rope_theta;
    out["rope_scaling"] = r.type == ops::RopeScalingType::none ? Json(nullptr) : rope;
  }
  detail::fill_defaults(out, {{"use_cache", true}});
  detail::write_common(c, out);
  out["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.eos_token_ids.size() > 1) out["eos_token_id"] = c.eos_token_ids;
  return out;
}

// Writes <dir>/config.json (or the given .json path) atomically, formatted as HF writes it.
template <class Config>
void write_config(const std::filesystem::path& dir_or_file, const Config& config) {
  write_json(config_path(dir_or_file), to_json(config));
}

}  // namespace fourierft::io
