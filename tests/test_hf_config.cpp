// Tests of include/fourierft/io/hf_config.hpp: the generated fixture configs (tests/fixtures/models),
// HF's defaults for absent fields, the errors for broken files, and the writers' round trip.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

#include "fourierft/io/hf_config.hpp"

using namespace fourierft;
using namespace fourierft::io;
namespace fs = std::filesystem;

namespace {

const fs::path models = fs::path(FOURIERFT_FIXTURES_DIR) / "models";

// A fresh directory under the build tree for hand-written configs; removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::path(FOURIERFT_BINARY_DIR) / ("test_hf_config." + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  // Writes `text` as <path>/<name> and returns that file's path.
  fs::path write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name, std::ios::binary) << text;
    return path / name;
  }
};

std::string slurp(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_CASE("hf_config: read_model_type of every fixture") {
  CHECK(read_model_type(models / "gpt2") == "gpt2");
  CHECK(read_model_type(models / "gpt2-legacy") == "gpt2");
  CHECK(read_model_type(models / "roberta-cls" / "config.json") == "roberta");
  CHECK(read_model_type(models / "vit") == "vit");
  CHECK(read_model_type(models / "llama-gqa") == "llama");
  CHECK(read_model_type(models / "qwen3-qknorm") == "qwen3");
  CHECK(is_supported_model_type("roberta"));
  CHECK_FALSE(is_supported_model_type("bert"));
}

TEST_CASE("hf_config: GPT-2 fixture (modern save_pretrained layout)") {
  const Gpt2Config c = read_gpt2_config(models / "gpt2");
  CHECK(c.model_type == "gpt2");
  CHECK(c.architectures == std::vector<std::string>{"GPT2LMHeadModel"});
  CHECK(c.vocab_size == 101);
  CHECK(c.n_embd == 32);
  CHECK(c.n_layer == 2);
  CHECK(c.n_head == 4);
  CHECK(c.head_dim() == 8);
  CHECK(c.n_positions == 64);
  CHECK_FALSE(c.n_inner.has_value());  // null in the file
  CHECK(c.inner_dim() == 128);
  CHECK(c.activation_function == "gelu_new");
  CHECK(c.layer_norm_epsilon == doctest::Approx(1e-5).epsilon(1e-12));
  CHECK(c.resid_pdrop == doctest::Approx(0.1));
  CHECK(c.embd_pdrop == doctest::Approx(0.1));
  CHECK(c.attn_pdrop == doctest::Approx(0.1));
  CHECK(c.scale_attn_weights);
  CHECK_FALSE(c.scale_attn_by_inverse_layer_idx);
  CHECK_FALSE(c.reorder_and_upcast_attn);
  CHECK(c.bos_token_id == 100);
  CHECK(c.eos_token_id == 100);
  CHECK_FALSE(c.pad_token_id.has_value());
  CHECK(c.tie_word_embeddings);
  CHECK(c.torch_dtype == "float32");
  CHECK(c.transformers_version == "4.46.3");
  CHECK(c.num_labels() == 2);  // HF's default when id2label is absent
}

TEST_CASE("hf_config: GPT-2 legacy, half-precision and sharded fixtures") {
  const Gpt2Config legacy = read_gpt2_config(models / "gpt2-legacy");
  CHECK(legacy.n_positions == 64);  // n_ctx is ignored, as HF ignores it
  CHECK(legacy.torch_dtype.empty());
  CHECK(legacy.transformers_version.empty());
  CHECK(legacy.scale_attn_weights);  // absent: HF's default
  CHECK(legacy.extra.contains("task_specific_params"));
  CHECK(read_gpt2_config(models / "gpt2-f16").torch_dtype == "float16");
  const Gpt2Config bf16 = read_gpt2_config(models / "gpt2-bf16");  // transformers >= 4.56: "dtype"
  CHECK(bf16.torch_dtype == "bfloat16");
  CHECK(bf16.transformers_version == "4.56.2");
  CHECK(read_gpt2_config(models / "gpt2-sharded").n_embd == 32);
}

TEST_CASE("hf_config: RoBERTa classification, regression and masked-LM fixtures") {
  const RobertaConfig cls = read_roberta_config(models / "roberta-cls");
  CHECK(cls.architectures == std::vector<std::string>{"RobertaForSequenceClassification"});
  CHECK(cls.vocab_size == 150);
  CHECK(cls.hidden_size == 48);
  CHECK(cls.num_hidden_layers == 2);
  CHECK(cls.num_attention_heads == 4);
  CHECK(cls.head_dim() == 12);
  CHECK(cls.intermediate_size == 80);
  CHECK(cls.max_position_embeddings == 66);
  CHECK(cls.type_vocab_size == 1);
  CHECK(cls.hidden_act == "gelu");
  CHECK(cls.layer_norm_eps == doctest::Approx(1e-5).epsilon(1e-12));
  CHECK(cls.hidden_dropout_prob == doctest::Approx(0.1));
  CHECK(cls.attention_probs_dropout_prob == doctest::Approx(0.1));
  CHECK_FALSE(cls.classifier_dropout.has_value());  // null: falls back to hidden_dropout_prob
  CHECK(cls.classifier_dropout_prob() == doctest::Approx(0.1));
  CHECK(cls.pad_token_id == 1);
  CHECK(cls.bos_token_id == 0);
  CHECK(cls.eos_token_id == 2);
  CHECK(cls.position_embedding_type == "absolute");
  CHECK(cls.num_labels() == 3);
  CHECK(cls.id2label == std::vector<std::string>{"negative", "neutral", "positive"});
  CHECK(cls.problem_type.empty());
  CHECK_FALSE(cls.is_regression());
  CHECK(cls.name_or_path == "roberta-base");

  const RobertaConfig reg = read_roberta_config(models / "roberta-reg");
  CHECK(reg.num_labels() == 1);
  CHECK(reg.problem_type == "regression");
  CHECK(reg.is_regression());

  const RobertaConfig mlm = read_roberta_config(models / "roberta-mlm");
  CHECK(mlm.architectures == std::vector<std::string>{"RobertaForMaskedLM"});
  CHECK(mlm.num_labels() == 2);
  CHECK(mlm.id2label == std::vector<std::string>{"LABEL_0", "LABEL_1"});
}

TEST_CASE("hf_config: ViT fixture") {
  const VitConfig c = read_vit_config(models / "vit");
  CHECK(c.architectures == std::vector<std::string>{"ViTForImageClassification"});
  CHECK(c.hidden_size == 40);
  CHECK(c.num_hidden_layers == 2);
  CHECK(c.num_attention_heads == 4);
  CHECK(c.head_dim() == 10);
  CHECK(c.intermediate_size == 72);
  CHECK(c.image_size == 16);
  CHECK(c.patch_size == 4);
  CHECK(c.num_patches() == 16);
  CHECK(c.num_channels == 3);
  CHECK(c.qkv_bias);
  CHECK(c.hidden_act == "gelu");
  CHECK(c.layer_norm_eps == doctest::Approx(1e-12).epsilon(1e-12));
  CHECK(c.hidden_dropout_prob == 0.0);
  CHECK(c.attention_probs_dropout_prob == 0.0);
  CHECK(c.num_labels() == 5);
  CHECK(c.id2label[2] == "cat");
  CHECK(c.torch_dtype == "float32");
}

TEST_CASE("hf_config: absent fields take Hugging Face's defaults; aliases and null token ids") {
  TempDir dir;
  const Gpt2Config g = read_gpt2_config(dir.write(
      "gpt2.json",
      R"({"model_type": "gpt2", "vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 1,
          "num_attention_heads": 2, "max_position_embeddings": 8, "eos_token_id": null})"));
  CHECK(g.n_embd == 16);  // GPT-2's attribute_map
  CHECK(g.n_layer == 1);
  CHECK(g.n_head == 2);
  CHECK(g.n_positions == 8);
  CHECK(g.activation_function == "gelu_new");
  CHECK(g.layer_norm_epsilon == doctest::Approx(1e-5).epsilon(1e-12));
  CHECK(g.bos_token_id == 50256);  // GPT2Config's default
  CHECK_FALSE(g.eos_token_id.has_value());  // explicitly null
  CHECK(g.inner_dim() == 64);
  CHECK(g.torch_dtype.empty());
  CHECK(to_json(g).contains("n_embd"));
  CHECK_FALSE(to_json(g).contains("hidden_size"));

  const RobertaConfig r = read_roberta_config(dir.write(
      "roberta.json",
      R"({"model_type": "roberta", "vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 1,
          "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 10,
          "num_labels": 4})"));
  CHECK(r.type_vocab_size == 2);
  CHECK(r.layer_norm_eps == doctest::Approx(1e-12).epsilon(1e-12));  // BertConfig's default
  CHECK(r.pad_token_id == 1);
  CHECK(r.bos_token_id == 0);
  CHECK(r.eos_token_id == 2);
  CHECK(r.hidden_act == "gelu");
  CHECK(r.num_labels() == 4);  // from num_labels when there is no id2label
  CHECK(r.id2label[3] == "LABEL_3");

  const VitConfig v = read_vit_config(dir.write(
      "vit.json",
      R"({"model_type": "vit", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
          "intermediate_size": 32, "image_size": [32, 32], "patch_size": 8})"));
  CHECK(v.image_size == 32);
  CHECK(v.num_channels == 3);
  CHECK(v.qkv_bias);
  CHECK(v.hidden_dropout_prob == 0.0);
  CHECK(v.layer_norm_eps == doctest::Approx(1e-12).epsilon(1e-12));
  CHECK(v.num_labels() == 2);
}

TEST_CASE("hf_config: errors name the file, the key, expected vs actual") {
  TempDir dir;
  const std::string d = dir.path.string();

  dir.write("broken.json", "{\"model_type\": \"gpt2\",\n \"n_embd\": 32,,}");
  CHECK_THROWS_AS(read_model_type(dir.path / "broken.json"), FormatError);
  try {
    read_gpt2_config(dir.path / "broken.json");
    FAIL("malformed JSON was accepted");
  } catch (const FormatError& e) {
    const std::string what = e.what();
    CHECK(what.find(d + "/broken.json: invalid JSON at byte") == 0);
  }

  dir.write("bert.json", R"({"model_type": "bert", "hidden_size": 8})");
  CHECK_THROWS_WITH_AS(read_model_type(dir.path / "bert.json"),
                       (d + "/bert.json: model_type 'bert' is not supported (fourierft runs gpt2, "
                            "roberta, vit, llama, mistral, qwen2, qwen3)").c_str(),
                       FormatError);
  CHECK_THROWS_WITH_AS(read_gpt2_config(dir.path / "bert.json"),
                       (d + "/bert.json: model_type is 'bert' but a gpt2 config was expected").c_str(),
                       FormatError);

  dir.write("no_type.json", R"({"n_embd": 8})");
  CHECK_THROWS_WITH_AS(read_model_type(dir.path / "no_type.json"),
                       (d + "/no_type.json: key 'model_type' is missing").c_str(), FormatError);

  // A checkpoint folder whose config.json lacks a required size.
  fs::create_directories(dir.path / "ckpt");
  dir.write("ckpt/config.json",
            R"({"model_type": "gpt2", "vocab_size": 11, "n_layer": 1, "n_head": 2, "n_positions": 16})");
  CHECK_THROWS_WITH_AS(read_gpt2_config(dir.path / "ckpt"),
                       (d + "/ckpt/config.json: key 'n_embd' is missing").c_str(), FormatError);

  dir.write("typed.json", R"({"model_type": "roberta", "vocab_size": 50, "hidden_size": "48",
      "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 8,
      "max_position_embeddings": 10})");
  CHECK_THROWS_WITH_AS(
      read_roberta_config(dir.path / "typed.json"),
      (d + "/typed.json: key 'hidden_size' should be an integer but is a string (\"48\")").c_str(),
      FormatError);

  dir.write("heads.json", R"({"model_type": "vit", "hidden_size": 10, "num_hidden_layers": 1,
      "num_attention_heads": 4, "intermediate_size": 8, "image_size": 16, "patch_size": 4})");
  CHECK_THROWS_WITH_AS(read_vit_config(dir.path / "heads.json"),
                       (d + "/heads.json: key 'hidden_size' (10) should be a multiple of "
                            "'num_attention_heads' (4)").c_str(),
                       FormatError);

  dir.write("zero.json", R"({"model_type": "gpt2", "vocab_size": 0, "n_embd": 8, "n_layer": 1,
      "n_head": 2, "n_positions": 16})");
  CHECK_THROWS_WITH_AS(read_gpt2_config(dir.path / "zero.json"),
                       (d + "/zero.json: key 'vocab_size' should be positive but is 0").c_str(),
                       FormatError);

  dir.write("labels.json", R"({"model_type": "vit", "hidden_size": 8, "num_hidden_layers": 1,
      "num_attention_heads": 2, "intermediate_size": 8, "image_size": 16, "patch_size": 4,
      "id2label": {"0": "a", "2": "c"}})");
  CHECK_THROWS_WITH_AS(read_vit_config(dir.path / "labels.json"),
                       (d + "/labels.json: key 'id2label' should map the ids 0..1 (as strings) to "
                            "names but has the key \"2\"").c_str(),
                       FormatError);

  dir.write("problem.json", R"({"model_type": "roberta", "vocab_size": 50, "hidden_size": 8,
      "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 8,
      "max_position_embeddings": 10, "problem_type": "ranking"})");
  CHECK_THROWS_WITH_AS(read_roberta_config(dir.path / "problem.json"),
                       (d + "/problem.json: key 'problem_type' should be \"regression\", "
                            "\"single_label_classification\" or \"multi_label_classification\" "
                            "but is \"ranking\"").c_str(),
                       FormatError);

  dir.write("array.json", "[1, 2]");
  CHECK_THROWS_WITH_AS(read_model_type(dir.path / "array.json"),
                       (d + "/array.json: the top level should be an object but is an array ([1,2])")
                           .c_str(),
                       FormatError);

  CHECK_THROWS_AS(read_gpt2_config(dir.path / "missing"), IoError);
}

TEST_CASE("hf_config: to_json reproduces save_pretrained's config.json and round-trips") {
  // The modern fixtures were written the way save_pretrained writes them: byte-identical output.
  CHECK(to_json(read_gpt2_config(models / "gpt2")).dump(2) + "\n" == slurp(models / "gpt2" / "config.json"));
  CHECK(to_json(read_roberta_config(models / "roberta-cls")).dump(2) + "\n" ==
        slurp(models / "roberta-cls" / "config.json"));
  CHECK(to_json(read_roberta_config(models / "roberta-reg")).dump(2) + "\n" ==
        slurp(models / "roberta-reg" / "config.json"));
  CHECK(to_json(read_vit_config(models / "vit")).dump(2) + "\n" == slurp(models / "vit" / "config.json"));

  TempDir dir;
  // Legacy GPT-2 config written back the modern way, and read again unchanged.
  Gpt2Config legacy = read_gpt2_config(models / "gpt2-legacy");
  const Json out = to_json(legacy);
  CHECK(out["n_inner"].is_null());
  CHECK(out["use_cache"] == true);
  CHECK(out["n_ctx"] == 64);  // unknown keys are kept
  CHECK(out.contains("task_specific_params"));

  // bf16 fixture: "dtype" is written back as "torch_dtype" (read by every transformers version).
  const Json bf16 = to_json(read_gpt2_config(models / "gpt2-bf16"));
  CHECK(bf16["torch_dtype"] == "bfloat16");
  CHECK_FALSE(bf16.contains("dtype"));

  // A modified config survives write_config -> read.
  RobertaConfig r = read_roberta_config(models / "roberta-cls");
  r.id2label = {"LABEL_0", "LABEL_1"};  // HF's default
  r.problem_type = "single_label_classification";
  r.classifier_dropout = 0.25;
  r.pad_token_id.reset();
  fs::create_directories(dir.path / "saved");
  write_config(dir.path / "saved", r);
  const Json written = read_json(dir.path / "saved" / "config.json");
  CHECK_FALSE(written.contains("id2label"));  // the 2-label default is not written, as in HF
  CHECK_FALSE(written.contains("pad_token_id"));
  const RobertaConfig back = read_roberta_config(dir.path / "saved");
  CHECK(back.id2label == std::vector<std::string>{"LABEL_0", "LABEL_1"});
  CHECK(back.problem_type == "single_label_classification");
  CHECK(back.classifier_dropout_prob() == doctest::Approx(0.25));
  CHECK(back.pad_token_id == 1);  // absent from the file: RobertaConfig's default again
  CHECK(back.hidden_size == r.hidden_size);
  CHECK(back.name_or_path == "roberta-base");

  VitConfig v = read_vit_config(models / "vit");
  v.id2label = {"x", "y", "z"};
  write_config(dir.path / "vit.json", v);
  const VitConfig vb = read_vit_config(dir.path / "vit.json");
  CHECK(vb.id2label == v.id2label);
  CHECK(vb.extra["label2id"]["z"] == 2);
  CHECK(vb.extra["pooler_act"] == "tanh");  // kept from the fixture
}

TEST_CASE("hf_config: read_config<Config> is the typed reader, by type") {
  CHECK(to_json(read_config<Gpt2Config>(models / "gpt2")) ==
        to_json(read_gpt2_config(models / "gpt2")));
  CHECK(to_json(read_config<RobertaConfig>(models / "roberta-cls")) ==
        to_json(read_roberta_config(models / "roberta-cls")));
  CHECK(read_config<VitConfig>(models / "vit").num_labels() ==
        read_vit_config(models / "vit").num_labels());
  CHECK_THROWS_AS(read_config<VitConfig>(models / "gpt2"), FormatError);  // model_type differs
}
