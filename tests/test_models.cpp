// Tests of include/fourierft/models/{gpt2,roberta,vit,checkpoint}.hpp, nn/{embedding,layer_norm}:
// the tiny Hugging Face checkpoints of tests/fixtures/models, read through the real folder loader,
// against the logits, hidden states, losses and gradients PyTorch computed (make_fixtures.py).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "../examples/cli/cmd_forward.hpp"
#include "../examples/cli/cmd_generate.hpp"
#include "../examples/cli/cmd_lm_grad.hpp"
#include "fourierft/io/safetensors.hpp"
#include "fourierft/models/checkpoint.hpp"
#include "fourierft/models/gpt2.hpp"
#include "fourierft/models/llama.hpp"
#include "fourierft/io/hf_tokenizer.hpp"
#include "fourierft/models/registry.hpp"
#include "fourierft/models/roberta.hpp"
#include "fourierft/models/vit.hpp"
#include "fourierft/nn/embedding.hpp"
#include "fourierft/nn/layer_norm.hpp"
#include "fourierft/ops/reduce.hpp"
#include "fourierft/peft/adapter_io.hpp"
#include "fourierft/train/seeds.hpp"
#include "gradcheck.hpp"
#include "toy_model.hpp"

using namespace fourierft;
using namespace fourierft::models;
namespace fs = std::filesystem;

namespace {

fs::path model_dir(const std::string& name) {
  return fs::path(FOURIERFT_FIXTURES_DIR) / "models" / name;
}
io::SafetensorsFile reference(const std::string& name) {
  return io::SafetensorsFile(model_dir(name) / "reference.safetensors");
}
std::string testing_read(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}
fs::path scratch(const std::string& name) {
  const fs::path dir = fs::path(FOURIERFT_BINARY_DIR) / "test_models" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// max |a - b| over the entries where `keep` (if given) is true for the row: keep_rows[n] for row n
// of the (rows, width) view.
double max_abs_diff(const Tensor<float>& a, const Tensor<float>& b,
                    const std::vector<bool>& keep_rows = {}) {
  REQUIRE(a.shape() == b.shape());
  const Index width = a.size(-1), rows = a.numel() / width;
  double worst = 0;
  for (Index r = 0; r < rows; ++r) {
    if (!keep_rows.empty() && !keep_rows[static_cast<std::size_t>(r)]) continue;
    for (Index c = 0; c < width; ++c)
      worst = std::max(worst, std::abs(double(a[r * width + c]) - double(b[r * width + c])));
  }
  return worst;
}
// ‖a − b‖ (Frobenius, in double).
double norm_diff(const Tensor<float>& a, const Tensor<float>& b) {
  REQUIRE(a.shape() == b.shape());
  double sum = 0;
  for (Index i = 0; i < a.numel(); ++i)
    sum += (double(a[i]) - double(b[i])) * (double(a[i]) - double(b[i]));
  return std::sqrt(sum);
}
double norm(const Tensor<float>& a) { return norm_diff(a, Tensor<float>(a.shape())); }
std::vector<bool> mask_rows(const Tensor<std::int64_t>& mask) {
  std::vector<bool> keep;
  for (std::int64_t m : mask.data()) keep.push_back(m != 0);
  return keep;
}

// Every parameter's gradient against `grad.<name>` of the reference; returns the worst relative
// error ‖a − b‖ / ‖b‖. The attention key biases are the exception: softmax ignores a constant
// added to a query's scores, and q·b_k is one, so their exact gradient is 0 and both sides hold
// float rounding noise (‖b‖ ~ 1e-7): for a reference below 1e-5 the absolute ‖a − b‖ is taken.
template <class Model>
double worst_grad_error(const Model& model, const io::SafetensorsFile& ref, std::string* which) {
  double worst = 0;
  int compared = 0;
  for (const auto& [name, p] : model.named_parameters()) {
    REQUIRE_MESSAGE(ref.contains("grad." + name), "reference lacks grad." << name);
    const Tensor<float> expected = ref.load<float>("grad." + name);
    const double scale = norm(expected);
    const double e = norm_diff(p.grad(), expected) / (scale < 1e-5 ? 1.0 : scale);
    if (e > worst) {
      worst = e;
      *which = name;
    }
    ++compared;
  }
  CHECK(compared == static_cast<int>(model.named_parameters().size()));
  return worst;
}

}  // namespace

// ===========================================================================
// nn::Embedding, nn::LayerNorm
TEST_CASE("Embedding: padding_idx row gets no gradient; others scatter-add") {
  Rng rng(3);
  nn::Embedding<double> table(5, 4, rng, 1);
  CHECK(table.weight.value().at({1, 2}) == 0.0);  // the padding row starts at zero, as in torch
  Tape<double> tape;
  const auto ids = Tensor<std::int64_t>::from_data({2, 3}, {1, 3, 1, 3, 0, 1});
  Var<double> y = table.forward(tape, ids);
  CHECK(y.shape() == Shape{2, 3, 4});
  CHECK(y.value().at({0, 1, 2}) == table.weight.value().at({3, 2}));
  tape.backward(ops::sum(tape, y));
  for (Index c = 0; c < 4; ++c) {
    CHECK(table.weight.grad().at({1, c}) == 0.0);
    CHECK(table.weight.grad().at({3, c}) == 2.0);
    CHECK(table.weight.grad().at({0, c}) == 1.0);
    CHECK(table.weight.grad().at({2, c}) == 0.0);
  }
  Tape<double> t2;
  CHECK_THROWS_AS(table.forward(t2, Tensor<std::int64_t>::from_data({1, 1}, {5})), IndexError);
}

TEST_CASE("LayerNorm module: ones / zeros init, eps passed through, gradients") {
  nn::LayerNorm<double> ln(6, 1e-12);
  CHECK(ln.eps() == 1e-12);
  CHECK(ln.weight.value()[0] == 1.0);
  CHECK(ln.bias.value()[5] == 0.0);
  Rng rng(5);
  auto x = randn<double>({3, 6}, rng), probe = randn<double>({3, 6}, rng);
  ln.weight.value() = randn<double>({6}, rng);
  auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
    return ops::sum(t, ops::mul(t, ops::layer_norm(t, in[0], in[1], in[2], 1e-5), probe));
  };
  testing::GradcheckResult r = testing::gradcheck(loss, {x, ln.weight.value(), ln.bias.value()},
                                                  {.eps = 1e-6, .rtol = 1e-5});
  INFO(r.report());
  CHECK(r.ok);
}

// ===========================================================================
// GPT-2
namespace {
struct Gpt2Check {
  double logits = 0, hidden = 0, loss = 0, grad = 0;
  std::string worst_grad;
};
Gpt2Check run_gpt2(GPT2LMHeadModel<float>& model, const io::SafetensorsFile& ref, bool grads) {
  const auto ids = ref.load_int("input_ids");
  const auto mask = ref.load_int("attention_mask");
  model.zero_grad();
  Tape<float> tape;
  const ModelOutput<float> out = model.forward(tape, ids, mask);
  const Tensor<std::int64_t> labels = causal_lm_labels(ids, mask);
  CHECK(std::equal(labels.data().begin(), labels.data().end(),
                   ref.load_int("labels").data().begin()));
  Var<float> loss = causal_lm_loss(tape, out.logits, labels);
  Gpt2Check c;
  const auto keep = mask_rows(mask);  // padded positions are not defined across HF versions
  c.logits = max_abs_diff(out.logits.value(), ref.load<float>("logits"), keep);
  c.hidden =
      max_abs_diff(out.last_hidden_state.value(), ref.load<float>("last_hidden_state"), keep);
  c.loss = std::abs(double(loss.item()) - double(ref.load<float>("loss").item()));
  if (grads) {
    tape.backward(loss);
    c.grad = worst_grad_error(model, ref, &c.worst_grad);
  }
  return c;
}
}  // namespace

TEST_CASE("GPT-2: logits, hidden states, loss and every gradient match PyTorch (left padding)") {
  CheckpointReport report;
  auto model = GPT2LMHeadModel<float>::from_pretrained(model_dir("gpt2"), &report);
  INFO(report.summary());
  CHECK(report.prefixed);
  CHECK(report.initialized.empty());
  CHECK(report.unexpected.empty());
  CHECK(report.loaded.size() == model->named_parameters().size());
  CHECK_FALSE(model->is_training());  // from_pretrained leaves eval mode, as HF does
  const Gpt2Check c = run_gpt2(*model, reference("gpt2"), true);
  MESSAGE("gpt2: logits ", c.logits, " hidden ", c.hidden, " loss ", c.loss, " grad ", c.grad, " (",
          c.worst_grad, ")");
  CHECK(c.logits < 1e-4);
  CHECK(c.hidden < 1e-4);
  CHECK(c.loss < 1e-5);
  CHECK(c.grad < 1e-4);
}

TEST_CASE("GPT-2 lm_loss (fused LM head + cross-entropy) matches the PyTorch loss and gradients") {
  auto model = GPT2LMHeadModel<float>::from_pretrained(model_dir("gpt2"));
  const io::SafetensorsFile ref = reference("gpt2");
  const auto ids = ref.load_int("input_ids");
  const auto mask = ref.load_int("attention_mask");
  Tape<float> tape;
  const Var<float> hidden = model->transformer.forward(tape, ids, mask);
  Var<float> loss = model->lm_loss(tape, hidden, causal_lm_targets(causal_lm_labels(ids, mask)));
  CHECK(std::abs(double(loss.item()) - double(ref.load<float>("loss").item())) < 1e-5);
  tape.backward(loss);
  std::string worst;
  const double grad = worst_grad_error(*model, ref, &worst);
  INFO("worst gradient error ", grad, " (", worst, ")");
  CHECK(grad < 1e-4);
}

// ===========================================================================
// RoBERTa
namespace {
struct ClsCheck {
  double logits = 0, hidden = 0, loss = 0, grad = 0;
  std::string worst_grad;
};
template <class Labels>
ClsCheck run_roberta(RobertaForSequenceClassification<float>& model, const io::SafetensorsFile& ref,
                     const Labels& labels, bool grads) {
  const auto ids = ref.load_int("input_ids");
  const auto mask = ref.load_int("attention_mask");
  const auto positions = roberta_position_ids(ids, 1);
  CHECK(std::equal(positions.data().begin(), positions.data().end(),
                   ref.load_int("position_ids").data().begin()));
  model.zero_grad();
  Tape<float> tape;
  const ModelOutput<float> out = model.forward(tape, ids, mask);
  Var<float> loss = model.loss(tape, out.logits, labels);
  ClsCheck c;
  c.logits = max_abs_diff(out.logits.value(), ref.load<float>("logits"));
  c.hidden = max_abs_diff(out.last_hidden_state.value(), ref.load<float>("last_hidden_state"));
  c.loss = std::abs(double(loss.item()) - double(ref.load<float>("loss").item()));
  if (grads) {
    tape.backward(loss);
    c.grad = worst_grad_error(model, ref, &c.worst_grad);
  }
  return c;
}
}  // namespace

TEST_CASE("RoBERTa classifier: logits, hidden states, loss and every gradient match PyTorch") {
  CheckpointReport report;
  auto model =
      RobertaForSequenceClassification<float>::from_pretrained(model_dir("roberta-cls"), &report);
  INFO(report.summary());
  CHECK(report.unexpected.empty());
  CHECK(report.initialized.empty());
  CHECK(model->num_labels() == 3);
  CHECK_FALSE(model->is_regression());
  const auto ref = reference("roberta-cls");
  const ClsCheck c = run_roberta(*model, ref, ref.load_int("labels"), true);
  MESSAGE("roberta-cls: logits ", c.logits, " hidden ", c.hidden, " loss ", c.loss, " grad ",
          c.grad, " (", c.worst_grad, ")");
  CHECK(c.logits < 1e-4);
  CHECK(c.hidden < 1e-4);
  CHECK(c.loss < 1e-5);
  CHECK(c.grad < 1e-4);
  // padding_idx: row 1 of the word and position tables gets exactly no gradient (pads read it).
  for (const char* table : {"roberta.embeddings.word_embeddings.weight",
                            "roberta.embeddings.position_embeddings.weight"})
    for (Index col = 0; col < 48; ++col) CHECK(model->parameter(table).grad().at({1, col}) == 0.0f);
}

TEST_CASE("RoBERTa regression head (num_labels 1): MSE loss and gradients match PyTorch") {
  auto model = RobertaForSequenceClassification<float>::from_pretrained(model_dir("roberta-reg"));
  CHECK(model->is_regression());
  const auto ref = reference("roberta-reg");
  const ClsCheck c = run_roberta(*model, ref, ref.load<float>("labels"), true);
  MESSAGE("roberta-reg: logits ", c.logits, " hidden ", c.hidden, " loss ", c.loss, " grad ",
          c.grad, " (", c.worst_grad, ")");
  CHECK(c.logits < 1e-4);
  CHECK(c.hidden < 1e-4);
  CHECK(c.loss < 1e-5);
  CHECK(c.grad < 1e-4);
  Tape<float> tape;
  const auto out = model->forward(tape, ref.load_int("input_ids"), ref.load_int("attention_mask"));
  CHECK_THROWS_WITH_AS(model->loss(tape, out.logits, ref.load_int("input_ids")),
                       doctest::Contains("is a regressor"), ValueError);
}

TEST_CASE(
    "RoBERTa: a RobertaForMaskedLM checkpoint loads the encoder; the head is fresh, seeded, "
    "reported") {
  CheckpointReport report;
  auto model = RobertaForSequenceClassification<float>::from_pretrained(model_dir("roberta-mlm"),
                                                                        &report, {.head_seed = 7});
  MESSAGE(report.summary());
  CHECK(report.initialized ==
        std::vector<std::string>{"classifier.dense.weight", "classifier.dense.bias",
                                 "classifier.out_proj.weight", "classifier.out_proj.bias"});
  CHECK(report.unexpected.size() ==
        6);  // lm_head.{dense.weight, dense.bias, layer_norm.*, bias, decoder.weight}
  for (const std::string& key : report.unexpected) CHECK(key.rfind("lm_head.", 0) == 0);
  CHECK(
      report.summary().find("newly initialised (seed 7; not in the checkpoint, train before use): "
                            "classifier.dense.weight") != std::string::npos);
  CHECK(model->num_labels() == 2);
  // HF's _init_weights: N(0, 0.02) weights, zero biases.
  const Tensor<float>& w = model->classifier.dense.weight.value();
  double sq = 0;
  for (float v : w.data()) sq += double(v) * v;
  CHECK(std::sqrt(sq / double(w.numel())) == doctest::Approx(0.02).epsilon(0.1));
  CHECK(model->classifier.out_proj.bias.value()[1] == 0.0f);
  // The encoder is the checkpoint's: last_hidden_state matches the MLM reference.
  const auto ref = reference("roberta-mlm");
  Tape<float> tape;
  NoGradScope<float> no_grad(tape);
  const auto out = model->forward(tape, ref.load_int("input_ids"), ref.load_int("attention_mask"));
  const double hidden =
      max_abs_diff(out.last_hidden_state.value(), ref.load<float>("last_hidden_state"));
  MESSAGE("roberta-mlm encoder: hidden ", hidden);
  CHECK(hidden < 1e-4);
  // Seeded: the same seed gives the same head, another seed another.
  auto again = RobertaForSequenceClassification<float>::from_pretrained(model_dir("roberta-mlm"),
                                                                        nullptr, {.head_seed = 7});
  auto other = RobertaForSequenceClassification<float>::from_pretrained(model_dir("roberta-mlm"),
                                                                        nullptr, {.head_seed = 8});
  CHECK(again->classifier.dense.weight.value()[5] == w[5]);
  CHECK(other->classifier.dense.weight.value()[5] != w[5]);
}

// ===========================================================================
// ViT
TEST_CASE("ViT: patch embedding, logits, hidden states, loss and every gradient match PyTorch") {
  CheckpointReport report;
  auto model = ViTForImageClassification<float>::from_pretrained(model_dir("vit"), &report);
  INFO(report.summary());
  CHECK(report.unexpected.empty());
  CHECK(model->vit.embeddings.patch_embeddings.projection.weight.shape() == Shape{40, 3, 4, 4});
  CHECK(model->config.layer_norm_eps == 1e-12);
  const auto ref = reference("vit");
  model->zero_grad();
  Tape<float> tape;
  const auto out = model->forward(tape, ref.load<float>("pixel_values"));
  Var<float> loss = model->loss(tape, out.logits, ref.load_int("labels"));
  const double logits = max_abs_diff(out.logits.value(), ref.load<float>("logits"));
  const double hidden =
      max_abs_diff(out.last_hidden_state.value(), ref.load<float>("last_hidden_state"));
  const double loss_err = std::abs(double(loss.item()) - double(ref.load<float>("loss").item()));
  tape.backward(loss);
  std::string which;
  const double grad = worst_grad_error(*model, ref, &which);
  MESSAGE("vit: logits ", logits, " hidden ", hidden, " loss ", loss_err, " grad ", grad, " (",
          which, ")");
  CHECK(logits < 1e-4);
  CHECK(hidden < 1e-4);
  CHECK(loss_err < 1e-5);
  CHECK(grad < 1e-4);

  Tape<float> t2;
  CHECK_THROWS_WITH_AS(model->forward(t2, Tensor<float>({1, 3, 32, 32})),
                       "ViTModel.forward: pixel_values has shape (1, 3, 32, 32) but the model "
                       "expects (B, 3, 16, 16) (num_channels, image_size); resize in the processor",
                       ShapeError);
}

// ===========================================================================
// Checkpoint layouts and dtypes
TEST_CASE("GPT-2 from F16 and BF16 files: upcast to float, references matched") {
  for (const char* name : {"gpt2-f16", "gpt2-bf16"}) {
    CAPTURE(name);
    auto model = GPT2LMHeadModel<float>::from_pretrained(model_dir(name));
    const Gpt2Check c = run_gpt2(*model, reference(name), false);
    MESSAGE(std::string(name), ": logits ", c.logits, " hidden ", c.hidden, " loss ", c.loss);
    CHECK(c.logits < 1e-4);
    CHECK(c.hidden < 1e-4);
    CHECK(c.loss < 1e-5);
  }
  // The weights are exactly the 16-bit values widened (f16: a value that is exactly representable).
  const io::SafetensorsFile f16(model_dir("gpt2-f16") / "model.safetensors");
  auto model = GPT2LMHeadModel<float>::from_pretrained(model_dir("gpt2-f16"));
  CHECK(f16.info("transformer.wte.weight").dtype == io::Dtype::F16);
  const Tensor<float> wte = f16.load<float>("transformer.wte.weight");
  CHECK(std::equal(wte.data().begin(), wte.data().end(),
                   model->transformer.wte.weight.value().data().begin()));
  CHECK(model->config.torch_dtype == "float16");
  CHECK(GPT2LMHeadModel<float>::from_pretrained(model_dir("gpt2-bf16"))->config.torch_dtype ==
        "bfloat16");
}

TEST_CASE("GPT-2 legacy layout: no transformer. prefix, mask buffers ignored, same numbers") {
  CheckpointReport report;
  auto model = GPT2LMHeadModel<float>::from_pretrained(model_dir("gpt2-legacy"), &report);
  INFO(report.summary());
  CHECK_FALSE(report.prefixed);
  CHECK(report.unexpected.empty());
  CHECK(report.ignored == std::vector<std::string>{"h.0.attn.bias", "h.0.attn.masked_bias",
                                                   "h.1.attn.bias", "h.1.attn.masked_bias"});
  CHECK(report.loaded.front() == "transformer.wte.weight");  // reported under the HF names
  const Gpt2Check c = run_gpt2(*model, reference("gpt2-legacy"), false);
  MESSAGE("gpt2-legacy: logits ", c.logits, " hidden ", c.hidden, " loss ", c.loss);
  CHECK(c.logits < 1e-4);
  CHECK(c.hidden < 1e-4);
  CHECK(c.loss < 1e-5);
}

TEST_CASE("GPT-2 sharded checkpoint: index + two shards load as the single file does") {
  CheckpointReport report;
  auto sharded = GPT2LMHeadModel<float>::from_pretrained(model_dir("gpt2-sharded"), &report);
  CHECK(report.files.size() == 2);
  CHECK(report.loaded.size() == sharded->named_parameters().size());
  auto single = GPT2LMHeadModel<float>::from_pretrained(model_dir("gpt2"));
  for (const auto& [name, p] : single->named_parameters()) {
    CAPTURE(name);
    const Tensor<float>& q = sharded->parameter(name).value();
    CHECK(std::equal(p.data().begin(), p.data().end(), q.data().begin()));
  }
  const Gpt2Check c = run_gpt2(*sharded, reference("gpt2"), false);
  CHECK(c.logits < 1e-4);

  // A shard the index names but the folder lacks: IoError naming the path.
  const fs::path dir = scratch("sharded-missing");
  for (const char* f :
       {"config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors"})
    fs::copy_file(model_dir("gpt2-sharded") / f, dir / f);
  CHECK_THROWS_WITH_AS(
      GPT2LMHeadModel<float>::from_pretrained(dir),
      ("'" + (dir / "model-00002-of-00002.safetensors").string() + "' does not exist (" +
       (dir / "model.safetensors.index.json").string() + " maps weights to it)")
          .c_str(),
      IoError);
}

TEST_CASE("Loading errors name the folder or file, the key, expected vs actual") {
  const fs::path corrupt = model_dir("corrupt");
  // Broken safetensors files, each placed as a folder's model.safetensors beside a valid config.
  struct Case {
    const char* file;
    const char* message;
  };
  for (const Case& c : {Case{"truncated",
                             "tensor 'transformer.wte.weight': data_offsets [4064, 4416] run past "
                             "the end of the data section (4316 bytes)"},
                        Case{"wrong_shape",
                             "tensor 'transformer.wpe.weight' (F32, shape (16, 9)) needs 576 "
                             "bytes but data_offsets [3552, 4064] span 512"},
                        Case{"header_too_long",
                             "header length 5840 runs past the end of the file (5840 bytes, "
                             "so at most 5832)"},
                        Case{"bad_header_json", "header is not valid JSON (at header byte 73)"}}) {
    CAPTURE(c.file);
    const fs::path dir = scratch(c.file);
    fs::copy_file(corrupt / "micro" / "config.json", dir / "config.json");
    fs::copy_file(corrupt / (std::string(c.file) + ".safetensors"), dir / "model.safetensors");
    const std::string message = (dir / "model.safetensors").string() + ": " + c.message;
    CHECK_THROWS_WITH_AS(GPT2LMHeadModel<float>::from_pretrained(dir),
                         doctest::Contains(message.c_str()), FormatError);
  }
  CHECK_NOTHROW(GPT2LMHeadModel<float>::from_pretrained(corrupt / "micro"));
  CHECK_THROWS_WITH_AS(GPT2LMHeadModel<float>::from_pretrained(corrupt / "missing_key"),
                       ((corrupt / "missing_key").string() +
                        ": the checkpoint lacks 1 required weight: transformer.h.0.mlp.c_fc.bias "
                        "(loaded 15 of 16)")
                           .c_str(),
                       FormatError);
  CHECK_THROWS_WITH_AS(GPT2LMHeadModel<float>::from_pretrained(corrupt / "config_shape_mismatch"),
                       ((corrupt / "config_shape_mismatch").string() +
                        ": 1 weight does not fit config.json: 'transformer.wte.weight' is (12, 8) "
                        "in model.safetensors but the model needs (11, 8)")
                           .c_str(),
                       FormatError);
  // ignore_mismatched_sizes re-initialises the misfit instead (HF's option), and reports it.
  CheckpointReport report;
  GPT2LMHeadModel<float>::from_pretrained(corrupt / "config_shape_mismatch", &report,
                                          {.ignore_mismatched_sizes = true});
  REQUIRE(report.reinitialized.size() == 1);
  CHECK(report.reinitialized[0].actual == Shape{12, 8});
  CHECK(report.summary().find("re-initialised (checkpoint shape (12, 8), model (11, 8)): "
                              "transformer.wte.weight") != std::string::npos);

  // Missing folder, config.json, weights.
  CHECK_THROWS_WITH_AS(
      GPT2LMHeadModel<float>::from_pretrained(corrupt / "nowhere"),
      ("'" + (corrupt / "nowhere").string() + "' is not a checkpoint folder: no such directory")
          .c_str(),
      IoError);
  const fs::path no_config = scratch("no-config");
  fs::copy_file(corrupt / "micro" / "model.safetensors", no_config / "model.safetensors");
  CHECK_THROWS_WITH_AS(GPT2LMHeadModel<float>::from_pretrained(no_config),
                       ("'" + (no_config / "config.json").string() +
                        "' does not exist: a checkpoint "
                        "folder needs config.json next to its weights")
                           .c_str(),
                       IoError);
  const fs::path no_weights = scratch("no-weights");
  fs::copy_file(corrupt / "micro" / "config.json", no_weights / "config.json");
  CHECK_THROWS_WITH_AS(GPT2LMHeadModel<float>::from_pretrained(no_weights),
                       ("'" + (no_weights / "model.safetensors").string() +
                        "' does not exist (nor model.safetensors.index.json)")
                           .c_str(),
                       IoError);
  // A folder of another architecture: its config.json says so.
  CHECK_THROWS_WITH_AS(RobertaForSequenceClassification<float>::from_pretrained(corrupt / "micro"),
                       doctest::Contains("model_type is 'gpt2' but a roberta config was expected"),
                       FormatError);
}

// ===========================================================================
// Saving
TEST_CASE("save_pretrained -> from_pretrained round-trips every weight bit for bit") {
  SUBCASE("gpt2: no lm_head.weight, transformer.* keys, config as HF writes it") {
    auto model = GPT2LMHeadModel<float>::from_pretrained(model_dir("gpt2-legacy"));
    const fs::path dir = scratch("saved-gpt2");
    model->save_pretrained(dir);
    const io::SafetensorsFile file(dir / "model.safetensors");
    CHECK_FALSE(file.contains("lm_head.weight"));
    CHECK(file.contains("transformer.h.1.mlp.c_proj.weight"));
    CHECK(file.size() == model->named_parameters().size());
    CHECK(file.metadata().at("format") == "pt");
    const io::Json config = io::read_json(dir / "config.json");
    CHECK(config.at("architectures") == io::Json::array({"GPT2LMHeadModel"}));
    CHECK(config.at("torch_dtype") == "float32");
    CHECK(config.at("n_ctx") == 64);  // unknown keys of the old config survive
    CheckpointReport report;
    auto back = GPT2LMHeadModel<float>::from_pretrained(dir, &report);
    CHECK(report.prefixed);
    CHECK(report.ignored.empty());
    for (const auto& [name, p] : model->named_parameters()) {
      CAPTURE(name);
      const Tensor<float>& q = back->parameter(name).value();
      CHECK(std::memcmp(p.data().data(), q.data().data(), sizeof(float) * p.numel()) == 0);
    }
  }
  SUBCASE("roberta from an MLM checkpoint: the fresh head is saved, lm_head is not") {
    auto model = RobertaForSequenceClassification<float>::from_pretrained(model_dir("roberta-mlm"));
    const fs::path dir = scratch("saved-roberta");
    model->save_pretrained(dir);
    CheckpointReport report;
    auto back = RobertaForSequenceClassification<float>::from_pretrained(dir, &report);
    CHECK(report.initialized.empty());
    CHECK(report.unexpected.empty());
    CHECK(io::read_json(dir / "config.json").at("architectures") ==
          io::Json::array({"RobertaForSequenceClassification"}));
    for (const auto& [name, p] : model->named_parameters()) {
      CAPTURE(name);
      CHECK(std::memcmp(p.data().data(), back->parameter(name).value().data().data(),
                        sizeof(float) * p.numel()) == 0);
    }
  }
  SUBCASE("vit, and BF16 output") {
    auto model = ViTForImageClassification<float>::from_pretrained(model_dir("vit"));
    const fs::path dir = scratch("saved-vit");
    model->save_pretrained(dir);
    auto back = ViTForImageClassification<float>::from_pretrained(dir);
    for (const auto& [name, p] : model->named_parameters())
      CHECK(std::memcmp(p.data().data(), back->parameter(name).value().data().data(),
                        sizeof(float) * p.numel()) == 0);
    CHECK(back->config.id2label == model->config.id2label);
    const fs::path bf16 = scratch("saved-vit-bf16");
    model->save_pretrained(bf16, io::Dtype::BF16);
    CHECK(io::SafetensorsFile(bf16 / "model.safetensors").info("classifier.weight").dtype ==
          io::Dtype::BF16);
    CHECK(io::read_json(bf16 / "config.json").at("torch_dtype") == "bfloat16");
  }
}

namespace {
// A Linear adapter with one parameter that changes nothing; merge() only flips the flag.
struct NoopAdapter : nn::LinearAdapter<float> {
  Var<float> extra = Var<float>::parameter(Tensor<float>({3}));
  NoopAdapter() { this->register_parameter("noop_extra", extra); }
  Var<float> forward(Tape<float>& tape, const nn::Linear<float>& base,
                     const Var<float>& x) override {
    return base.base_forward(tape, x);
  }
  void merge(nn::Linear<float>&) override { merged_ = true; }
  void unmerge(nn::Linear<float>&) override { merged_ = false; }
};
}  // namespace

TEST_CASE(
    "save_pretrained: an unmerged adapter is refused; a merged one's parameters are left out") {
  auto model = GPT2LMHeadModel<float>::from_pretrained(model_dir("gpt2"));
  auto adapter = std::make_shared<NoopAdapter>();
  model->transformer.h[1].attn.c_attn.attach("", adapter);
  CHECK(model->named_parameters().size() == 29);
  CHECK_THROWS_WITH_AS(model->save_pretrained(scratch("adapter-attached")),
                       doctest::Contains("save_pretrained: 'transformer.h.1.attn.c_attn' has an "
                                         "adapter that is not merged"),
                       ValueError);
  adapter->merge(model->transformer.h[1].attn.c_attn);
  const fs::path dir = scratch("adapter-merged");
  model->save_pretrained(dir);
  const io::SafetensorsFile file(dir / "model.safetensors");
  CHECK(file.size() == 28);
  CHECK_FALSE(file.contains("transformer.h.1.attn.c_attn.noop_extra"));
}

// ===========================================================================
// Masks, positions, cache, dropout
TEST_CASE("GPT-2: a left-padded row's real positions equal the unpadded row with positions 3..8") {
  auto model = GPT2LMHeadModel<float>::from_pretrained(model_dir("gpt2"));
  const auto ref = reference("gpt2");
  const auto ids = ref.load_int("input_ids");  // row 1: 3 pads, then 6 tokens
  Tensor<std::int64_t> alone({1, 6}), positions({1, 6});
  for (Index t = 0; t < 6; ++t) {
    alone[t] = ids.at({1, t + 3});
    positions[t] = t + 3;
  }
  Tape<float> tape;
  NoGradScope<float> no_grad(tape);
  const auto out = model->forward(tape, alone, {}, nullptr, positions);
  const Tensor<float> logits = ref.load<float>("logits");
  double worst = 0;
  for (Index t = 0; t < 6; ++t)
    for (Index v = 0; v < 101; ++v)
      worst = std::max(worst, std::abs(double(out.logits.value().at({0, t, v})) -
                                       double(logits.at({1, t + 3, v}))));
  CHECK(worst < 1e-4);
}

TEST_CASE("GPT-2 KV cache: prompt then one token at a time gives the full sequence's logits") {
  auto model = GPT2LMHeadModel<float>::from_pretrained(model_dir("gpt2"));
  const auto ref = reference("gpt2");
  const auto ids = ref.load_int("input_ids"), mask = ref.load_int("attention_mask");
  Tape<float> tape;
  NoGradScope<float> no_grad(tape);
  const Tensor<float> full = model->forward(tape, ids, mask).logits.value();  // (2, 9, V)
  KvCache<float> cache;
  Tensor<std::int64_t> prompt({2, 5}), prompt_mask({2, 5});
  for (Index b = 0; b < 2; ++b)
    for (Index t = 0; t < 5; ++t) {
      prompt[b * 5 + t] = ids.at({b, t});
      prompt_mask[b * 5 + t] = mask.at({b, t});
    }
  const Tensor<float> first = model->forward(tape, prompt, prompt_mask, &cache).logits.value();
  CHECK(cache.length() == 5);
  CHECK(cache.key.size() == 2);
  double worst = 0;
  auto compare = [&](const Tensor<float>& part, Index t0) {
    for (Index b = 0; b < 2; ++b)
      for (Index t = 0; t < part.size(1); ++t)
        if (mask.at({b, t0 + t}) == 1)
          for (Index v = 0; v < 101; ++v)
            worst = std::max(
                worst, std::abs(double(part.at({b, t, v})) - double(full.at({b, t0 + t, v}))));
  };
  compare(first, 0);
  for (Index t = 5; t < 9; ++t) {
    const auto step = Tensor<std::int64_t>::from_data({2, 1}, {ids.at({0, t}), ids.at({1, t})});
    compare(model->forward(tape, step, {}, &cache).logits.value(), t);
  }
  CHECK(cache.length() == 9);
  MESSAGE("cache vs full: ", worst);
  CHECK(worst < 1e-5);
}

TEST_CASE("Eager attention (the training path with dropout) equals the fused op at p = 0") {
  Rng rng(9);
  const Index B = 2, Tq = 3, Tk = 5, C = 8, NH = 2;
  auto q = Var<double>::parameter(randn<double>({B, Tq, C}, rng));
  auto k = Var<double>::parameter(randn<double>({B, Tk, C}, rng));
  auto v = Var<double>::parameter(randn<double>({B, Tk, C}, rng));
  const auto mask = Tensor<std::int64_t>::from_data({B, Tk}, {0, 1, 1, 1, 1, 1, 1, 1, 1, 1});
  auto probe = randn<double>({B, Tq, C}, rng);
  ops::AttentionOptions options;
  options.causal = true;
  options.key_padding_mask = mask.data();
  std::vector<Tensor<double>> grads[2];
  Tensor<double> outputs[2];
  for (int path = 0; path < 2; ++path) {
    for (auto* p : {&q, &k, &v}) p->zero_grad();
    Tape<double> tape;
    Var<double> y = path == 0 ? ops::attention(tape, q, k, v, NH, options)
                              : eager_attention(tape, q, k, v, NH, options, 0.0, rng);
    outputs[path] = y.value().clone();
    tape.backward(ops::sum(tape, ops::mul(tape, y, probe)));
    for (auto* p : {&q, &k, &v}) grads[path].push_back(p->grad().clone());
  }
  for (Index i = 0; i < outputs[0].numel(); ++i)
    CHECK(outputs[1][i] == doctest::Approx(outputs[0][i]).epsilon(1e-12));
  for (int g = 0; g < 3; ++g)
    for (Index i = 0; i < grads[0][g].numel(); ++i)
      CHECK(grads[1][g][i] == doctest::Approx(grads[0][g][i]).epsilon(1e-10));
}

TEST_CASE("Dropout acts in training mode only, seeded and reproducible") {
  const auto ref = reference("roberta-cls");
  const auto ids = ref.load_int("input_ids"), mask = ref.load_int("attention_mask");
  auto logits_of = [&](RobertaForSequenceClassification<float>& m) {
    Tape<float> tape;
    NoGradScope<float> no_grad(tape);
    return m.forward(tape, ids, mask).logits.value();
  };
  auto a = RobertaForSequenceClassification<float>::from_pretrained(model_dir("roberta-cls"));
  const Tensor<float> eval = logits_of(*a);
  CHECK(max_abs_diff(eval, ref.load<float>("logits")) < 1e-4);
  a->train();
  const Tensor<float> train1 = logits_of(*a);
  CHECK(max_abs_diff(train1, eval) > 1e-3);  // dropout 0.1 on hidden states and probabilities
  auto b = RobertaForSequenceClassification<float>::from_pretrained(model_dir("roberta-cls"));
  b->train();
  CHECK(max_abs_diff(logits_of(*b), train1) == 0.0);  // same seeds, same masks
  a->eval();
  CHECK(max_abs_diff(logits_of(*a), eval) == 0.0);
}

TEST_CASE("Models built from a config: HF initialisation, shapes, training step runs") {
  io::Gpt2Config config;
  config.vocab_size = 50;
  config.n_positions = 16;
  config.n_embd = 16;
  config.n_layer = 2;
  config.n_head = 2;
  GPT2LMHeadModel<float> model(config, 123);
  CHECK(model.is_training());
  CHECK(model.num_parameters() ==
        50 * 16 + 16 * 16 +
            2 * (4 * 16 + 16 * 48 + 48 + 16 * 16 + 16 + 16 * 64 + 64 + 64 * 16 + 16) + 2 * 16);
  CHECK(model.transformer.h[0].attn.c_attn.weight.shape() == Shape{16, 48});  // Conv1D: in x out
  CHECK(model.transformer.h[0].attn.c_attn.bias.value()[3] == 0.0f);
  double sq = 0;
  for (float x : model.transformer.h[0].mlp.c_proj.weight.data()) sq += double(x) * x;
  CHECK(std::sqrt(sq / (64.0 * 16)) == doctest::Approx(0.02 / 2.0).epsilon(0.15));  // 0.02/sqrt(2L)
  const auto ids = Tensor<std::int64_t>::from_data({1, 4}, {1, 2, 3, 4});
  Tape<float> tape;
  const auto out = model.forward(tape, ids);
  Var<float> loss = causal_lm_loss(tape, out.logits, causal_lm_labels(ids));
  CHECK(loss.item() == doctest::Approx(std::log(50.0)).epsilon(0.05));  // near-uniform at init
  tape.backward(loss);
  CHECK(model.transformer.wte.weight.has_grad());

  io::Gpt2Config bad = config;
  bad.activation_function = "swish";
  CHECK_THROWS_WITH_AS(
      [&] { GPT2LMHeadModel<float> m(bad); }(),
      "config activation_function = 'swish' is not supported (fourierft implements "
      "gelu, gelu_new, gelu_pytorch_tanh, relu)",
      ValueError);
  Tape<float> t2;
  CHECK_THROWS_WITH_AS(model.forward(t2, Tensor<std::int64_t>({1, 17})),
                       "GPT2Model.forward: position 16 is beyond n_positions = 16 (past 0 + 17 new "
                       "tokens)",
                       IndexError);
  CHECK_THROWS_WITH_AS(
      model.forward(t2, ids, Tensor<std::int64_t>({1, 3})),
      "GPT2Model.forward: attention_mask has shape (1, 3) but input_ids has (1, 4)", ShapeError);
}

// ===========================================================================
// The CLI: the functions `fourierft forward` / `lm-grad` call, and one run of the built program.
TEST_CASE("CLI forward and lm-grad compute the references") {
  for (const char* name : {"gpt2", "roberta-cls", "roberta-reg", "vit"}) {
    CAPTURE(name);
    const auto ref = reference(name);
    const cli::ForwardResult r =
        cli::run_forward(model_dir(name), model_dir(name) / "reference.safetensors");
    std::vector<bool> keep;
    if (std::string(name) == "gpt2") keep = mask_rows(ref.load_int("attention_mask"));
    CHECK(max_abs_diff(r.logits, ref.load<float>("logits"), keep) < 1e-4);
    CHECK(max_abs_diff(r.last_hidden_state, ref.load<float>("last_hidden_state"), keep) < 1e-4);
  }
  const auto ref = reference("gpt2");
  const cli::LmGradResult g =
      cli::run_lm_grad(model_dir("gpt2"), model_dir("gpt2") / "reference.safetensors");
  CHECK(g.loss == doctest::Approx(ref.load<float>("loss").item()).epsilon(1e-5));
  CHECK(g.grads.size() == 28);
  for (const auto& [name, grad] : g.grads) {
    CAPTURE(name);
    CHECK(norm_diff(grad, ref.load<float>("grad." + name)) <=
          1e-4 * norm(ref.load<float>("grad." + name)));
  }
  CHECK_THROWS_WITH_AS(
      cli::run_lm_grad(model_dir("vit"), model_dir("vit") / "reference.safetensors"),
      doctest::Contains("holds a vit model; lm-grad computes the causal-LM loss of a "
                        "causal LM (gpt2, llama, mistral, qwen2, qwen3)"),
      ValueError);
  CHECK_THROWS_WITH_AS(
      cli::run_forward(model_dir("vit"), model_dir("gpt2") / "reference.safetensors"),
      ((model_dir("gpt2") / "reference.safetensors").string() +
       ": no tensor 'pixel_values' (a vit model reads pixel_values F32 (B, 3, H, W))")
          .c_str(),
      FormatError);
}

TEST_CASE("CLI forward --adapter: a saved FourierFT adapter folder is applied before the forward") {
  const fs::path inputs = model_dir("roberta-cls") / "reference.safetensors";
  auto model = RobertaForSequenceClassification<float>::from_pretrained(model_dir("roberta-cls"));
  peft::FourierFTConfig config;
  config.n_frequency = 20;
  config.target_modules = {{"query", "value"}, ""};
  const peft::AdapterSpec spec{.config = config, .modules_to_save = {"classifier"}};
  Rng rng(5);
  peft::apply_adapter(*model, spec, rng);  // coefficients ~ N(0, 1): the outputs move
  const fs::path dir = scratch("adapter");
  peft::save_adapter(*model, spec, dir);
  const io::SafetensorsFile in(inputs);
  Tape<float> tape;
  NoGradScope<float> no_grad(tape);
  model->eval();
  const Tensor<float> expected =
      model->forward(tape, in.load_int("input_ids"), in.load_int("attention_mask")).logits.value();
  const cli::ForwardResult with = cli::run_forward(model_dir("roberta-cls"), inputs, dir.string());
  const cli::ForwardResult without = cli::run_forward(model_dir("roberta-cls"), inputs);
  CHECK(max_abs_diff(with.logits, expected) < 1e-5);
  CHECK(max_abs_diff(without.logits, expected) > 1e-3);
  CHECK_THROWS_AS(cli::run_forward(model_dir("roberta-cls"), inputs, (dir / "nowhere").string()),
                  IoError);
}

#ifdef FOURIERFT_CLI_PATH
TEST_CASE("CLI smoke run: fourierft forward / lm-grad write what the references hold") {
  const fs::path dir = scratch("cli");
  const std::string cli = FOURIERFT_CLI_PATH;
  const std::string inputs = (model_dir("gpt2") / "reference.safetensors").string();
  const std::string forward = "\"" + cli + "\" forward --model \"" + model_dir("gpt2").string() +
                              "\" --inputs \"" + inputs + "\" --out \"" +
                              (dir / "fwd.safetensors").string() + "\" > \"" +
                              (dir / "fwd.log").string() + "\" 2>&1";
  REQUIRE(std::system(forward.c_str()) == 0);
  const std::string grad = "\"" + cli + "\" lm-grad --model \"" +
                           model_dir("gpt2-sharded").string() + "\" --inputs \"" + inputs +
                           "\" --out \"" + (dir / "grad.safetensors").string() + "\" > \"" +
                           (dir / "grad.log").string() + "\" 2>&1";
  REQUIRE(std::system(grad.c_str()) == 0);
  const auto ref = reference("gpt2");
  const io::SafetensorsFile fwd(dir / "fwd.safetensors"), g(dir / "grad.safetensors");
  CHECK(fwd.info("logits").dtype == io::Dtype::F32);
  CHECK(max_abs_diff(fwd.load<float>("logits"), ref.load<float>("logits"),
                     mask_rows(ref.load_int("attention_mask"))) < 1e-4);
  CHECK(g.info("loss").shape == Shape{});
  CHECK(g.load<float>("loss").item() ==
        doctest::Approx(ref.load<float>("loss").item()).epsilon(1e-5));
  CHECK(g.size() == 29);
  CHECK(norm_diff(g.load<float>("grad.transformer.wte.weight"),
                  ref.load<float>("grad.transformer.wte.weight")) <
        1e-4 * norm(ref.load<float>("grad.transformer.wte.weight")));
  // An error: one line on stderr, exit status non-zero.
  const std::string bad = "\"" + cli + "\" lm-grad --model \"" + model_dir("vit").string() +
                          "\" --inputs \"" + inputs + "\" --out \"" +
                          (dir / "x.safetensors").string() + "\" 2> \"" +
                          (dir / "err.log").string() + "\"";
  CHECK(std::system(bad.c_str()) != 0);
  std::ifstream err(dir / "err.log");
  std::string line;
  std::getline(err, line);
  CHECK(line.find("fourierft lm-grad: ") == 0);
  CHECK_FALSE(fs::exists(dir / "x.safetensors"));
}
#endif

TEST_CASE("CLI forward / lm-grad on LLaMA-family folders: position_ids, labels, adapters") {
  for (const char* name : {"llama-gqa", "llama-gqa-bf16", "mistral-swa", "qwen2-bias",
                           "qwen3-qknorm"}) {
    CAPTURE(name);
    const auto ref = reference(name);
    const fs::path inputs = model_dir(name) / "reference.safetensors";
    const cli::ForwardResult r = cli::run_forward(model_dir(name), inputs);
    const auto keep = mask_rows(ref.load_int("attention_mask"));
    CHECK(max_abs_diff(r.logits, ref.load<float>("logits"), keep) < 1e-4);
    const cli::LmGradResult g = cli::run_lm_grad(model_dir(name), inputs);  // the file's labels
    CHECK(g.loss == doctest::Approx(ref.load<float>("loss").item()).epsilon(1e-5));
    for (const auto& [key, grad] : g.grads) {
      CAPTURE(key);
      CHECK(norm_diff(grad, ref.load<float>("grad." + key)) <=
            1e-4 * norm(ref.load<float>("grad." + key)) + 1e-7);
    }
  }
  // Without position_ids the positions are 0..T-1: a left-padded row then differs from HF
  // generate's positions (logits_nopos is HF's forward without a mask or positions).
  const fs::path dir = scratch("cli-llama");
  const auto ref = reference("llama-gqa");
  io::SafetensorsWriter ids_only;
  ids_only.add("input_ids", ref.load_int("input_ids"));
  ids_only.save(dir / "ids.safetensors");
  const cli::ForwardResult nopos = cli::run_forward(model_dir("llama-gqa"), dir / "ids.safetensors");
  CHECK(max_abs_diff(nopos.logits, ref.load<float>("logits_nopos")) < 1e-4);
  // A PEFT FourierFT adapter folder (PEFT's key names) applied by --adapter.
  const cli::ForwardResult peft = cli::run_forward(
      model_dir("llama-gqa"), model_dir("llama-gqa") / "reference.safetensors",
      (model_dir("llama-gqa") / "fourierft-adapter").string());
  CHECK(max_abs_diff(peft.logits, ref.load<float>("peft.logits"),
                     mask_rows(ref.load_int("attention_mask"))) < 1e-4);
  const cli::ForwardResult lora = cli::run_forward(
      model_dir("llama-gqa"), model_dir("llama-gqa") / "reference.safetensors",
      (model_dir("llama-gqa") / "lora-adapter").string());
  CHECK(max_abs_diff(lora.logits, ref.load<float>("lora.logits"),
                     mask_rows(ref.load_int("attention_mask"))) < 1e-4);
  // position_ids of the wrong shape: named.
  io::SafetensorsWriter bad;
  bad.add("input_ids", ref.load_int("input_ids"));
  bad.add("position_ids", Tensor<std::int64_t>({1, 3}));
  bad.save(dir / "bad.safetensors");
  CHECK_THROWS_WITH_AS(cli::run_forward(model_dir("llama-gqa"), dir / "bad.safetensors"),
                       doctest::Contains("position_ids has shape (1, 3)"), ShapeError);
}

// ===========================================================================
// fourierft generate: the tiny GPT-2 fixture with a byte-level vocabulary of its 101 ids written
// beside it (ids 0..93 the printable bytes '!'..'~', 94 'Ġ' (space), 95..99 merges, 100 eos;
// the other bytes get ids past the model's vocabulary, which an ASCII prompt never uses).
namespace {
fs::path gpt2_with_tokenizer() {
  const fs::path dir = scratch("gpt2-tokenizer");
  for (const auto& f : fs::directory_iterator(model_dir("gpt2")))
    fs::copy_file(f.path(), dir / f.path().filename());
  io::Json vocab = io::Json::object();
  std::int64_t id = 0;
  auto symbol = [](unsigned char byte) {
    std::string s;
    io::detail::append_utf8(s, io::detail::byte_to_unicode()[byte]);
    return s;
  };
  for (int b = '!'; b <= '~'; ++b) vocab[symbol(static_cast<unsigned char>(b))] = id++;
  vocab[symbol(' ')] = id++;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"}, {"l", "l"}, {"Ġ", "w"}, {"o", "r"}, {"he", "ll"}};
  for (const auto& [a, b] : merges) vocab[a + b] = id++;
  vocab["<|endoftext|>"] = id++;
  REQUIRE(id == 101);
  for (int b = 0; b < 256; ++b)  // the other bytes, beyond the model's ids: never in the prompt
    if (!vocab.contains(symbol(static_cast<unsigned char>(b))))
      vocab[symbol(static_cast<unsigned char>(b))] = id++;
  std::ofstream(dir / "vocab.json") << vocab.dump();
  std::ofstream m(dir / "merges.txt");
  m << "#version: 0.2\n";
  for (const auto& [a, b] : merges) m << a << " " << b << "\n";
  return dir;
}
fs::path llama_with_tokenizer() {  // Mistral-style tokenizer.json over the fixture's 64 ids
  const fs::path dir = scratch("llama-tokenizer");
  for (const auto& f : fs::directory_iterator(model_dir("llama-gqa")))
    if (f.is_regular_file()) fs::copy_file(f.path(), dir / f.path().filename());
  io::Json vocab = io::Json::object();
  std::int64_t id = 0;
  for (const char* t : {"<unk>", "<s>", "</s>", "\u2581"}) vocab[t] = id++;
  for (char c = 'a'; c <= 'z'; ++c) vocab[std::string(1, c)] = id++;
  for (const char* t : {"\u2581h", "ll", "\u2581he"}) vocab[t] = id++;
  for (char c = 'A'; id < 64; ++c) vocab[std::string(1, c)] = id++;  // all 64 model ids decode
  io::Json tokenizer = {
      {"version", "1.0"},
      {"added_tokens",
       io::Json::array({{{"id", 0}, {"content", "<unk>"}, {"special", true}},
                        {{"id", 1}, {"content", "<s>"}, {"special", true}},
                        {{"id", 2}, {"content", "</s>"}, {"special", true}}})},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers", io::Json::array({{{"type", "Prepend"}, {"prepend", "\u2581"}},
                                         {{"type", "Replace"},
                                          {"pattern", {{"String", " "}}},
                                          {"content", "\u2581"}}})}}},
      {"pre_tokenizer", nullptr},
      {"post_processor", nullptr},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders", io::Json::array({{{"type", "Replace"},
                                       {"pattern", {{"String", "\u2581"}}},
                                       {"content", " "}},
                                      {{"type", "Fuse"}},
                                      {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}}},
      {"model",
       {{"type", "BPE"}, {"unk_token", "<unk>"}, {"fuse_unk", true}, {"byte_fallback", false},
        {"vocab", vocab},
        {"merges", io::Json::array({"\u2581 h", "l l", "\u2581h e"})}}}};
  std::ofstream(dir / "tokenizer.json") << tokenizer.dump();
  std::ofstream(dir / "tokenizer_config.json")
      << io::Json{{"add_bos_token", true}, {"add_eos_token", false}, {"bos_token", "<s>"},
                  {"eos_token", "</s>"}, {"unk_token", "<unk>"}}.dump();
  return dir;
}
}  // namespace

TEST_CASE("generate on a LLaMA folder with tokenizer.json: BOS added, text streamed") {
  const fs::path dir = llama_with_tokenizer();
  const io::HfTokenizer tokenizer = io::HfTokenizer::load(dir);
  const std::vector<std::int64_t> prompt = tokenizer.encode_for_model("hello world");
  CHECK(prompt.front() == 1);  // <s>, as add_bos_token says
  CHECK(prompt[1] == tokenizer.token_id("\u2581he"));
  auto model = LlamaForCausalLM<float>::from_pretrained(dir);
  cli::GenerateOptions options{.model_dir = dir, .prompt = "hello world"};
  options.generation.max_new_tokens = 10;
  std::ostringstream out;
  const auto tokens = cli::run_generate(options, out);
  GenerationConfig config;
  config.max_new_tokens = 10;
  config.eos_token_id = 2;
  auto expected = generate(*model, {prompt}, config)[0].tokens;
  std::erase(expected, std::int64_t(2));
  CHECK(tokens == expected);
  CHECK(out.str() == tokenizer.decode(expected, true) + "\n");
}

TEST_CASE("generate: streamed text is the decoded tokens of models::generate; options map to HF's") {
  const fs::path dir = gpt2_with_tokenizer();
  const io::BpeTokenizer tokenizer = io::BpeTokenizer::load(dir);
  const std::vector<std::int64_t> prompt = tokenizer.encode("hello world");
  CHECK(prompt.size() < std::string("hello world").size());  // the merges applied
  auto model = GPT2LMHeadModel<float>::from_pretrained(dir);

  cli::GenerateOptions options{.model_dir = dir, .prompt = "hello world"};
  options.generation.max_new_tokens = 12;
  std::ostringstream greedy_out;
  const auto greedy = cli::run_generate(options, greedy_out);
  GenerationConfig expected_config;
  expected_config.max_new_tokens = 12;
  expected_config.eos_token_id = 100;
  const auto expected = generate(*model, {prompt}, expected_config)[0].tokens;
  std::vector<std::int64_t> expected_text_ids;
  for (std::int64_t t : expected)
    if (t != 100) expected_text_ids.push_back(t);
  CHECK(greedy == expected_text_ids);
  CHECK(greedy_out.str() == tokenizer.decode(expected_text_ids, true) + "\n");

  // Sampling: the seed decides; beam search prints its best row at the end.
  options.generation.do_sample = true;
  options.generation.temperature = 1.5;
  options.generation.seed = 7;
  std::ostringstream a, b, c;
  const auto sample_a = cli::run_generate(options, a);
  CHECK(sample_a == cli::run_generate(options, b));
  options.generation.seed = 8;
  CHECK(sample_a != cli::run_generate(options, c));
  options.generation.do_sample = false;
  options.generation.temperature = 1.0;
  options.generation.num_beams = 3;
  std::ostringstream beams_out;
  const auto beams = cli::run_generate(options, beams_out);
  expected_config.num_beams = 3;
  auto expected_beam = generate(*model, {prompt}, expected_config)[0].tokens;
  std::erase(expected_beam, std::int64_t(100));
  CHECK(beams == expected_beam);

  // Not a causal LM; an empty prompt.
  std::ostringstream sink;
  CHECK_THROWS_WITH_AS(cli::run_generate({.model_dir = model_dir("vit"), .prompt = "x"}, sink),
                       doctest::Contains("needs a causal LM"), Error);
  CHECK_THROWS_WITH_AS(cli::run_generate({.model_dir = dir, .prompt = ""}, sink),
                       doctest::Contains("no tokens"), Error);
}

#ifdef FOURIERFT_CLI_PATH
TEST_CASE("CLI: fourierft generate streams to stdout; a bad option is one line on stderr") {
  const fs::path dir = gpt2_with_tokenizer(), out = scratch("cli-generate");
  const std::string cli = FOURIERFT_CLI_PATH;
  const std::string run = "\"" + cli + "\" generate --model \"" + dir.string() +
                          "\" --prompt 'hello world' --max-new-tokens 5 > \"" +
                          (out / "out.txt").string() + "\" 2>&1";
  REQUIRE(std::system(run.c_str()) == 0);
  std::ostringstream expected;
  cli::GenerateOptions options{.model_dir = dir, .prompt = "hello world"};
  options.generation.max_new_tokens = 5;
  cli::run_generate(options, expected);
  CHECK(testing_read(out / "out.txt") == expected.str());
  const std::string bad = "\"" + cli + "\" generate --model \"" + dir.string() +
                          "\" --prompt x --temperature -1 2> \"" + (out / "err.txt").string() +
                          "\"";
  CHECK(std::system(bad.c_str()) != 0);
  CHECK(testing_read(out / "err.txt").find("fourierft generate: --temperature") == 0);
}
#endif

#ifdef FOURIERFT_CLI_PATH
TEST_CASE("CLI: fourierft param-table pairs the paper's rows; --config reads a LLaMA folder") {
  const fs::path out = scratch("cli-param-table");
  const std::string cli = FOURIERFT_CLI_PATH;
  REQUIRE(std::system(("\"" + cli + "\" param-table > \"" + (out / "table.txt").string() + "\"")
                          .c_str()) == 0);
  const std::string table = testing_read(out / "table.txt");
  for (const char* row : {"RoBERTa-base        24    768 |    4      147K",
                          "LLaMA-2 7B          64   4096 |   16     8.39M",
                          "LLaMA-2 13B         80   5120 |   16     13.1M",
                          "TinyLlama-1.1B      44   2048 |   16     2.25M"})
    CHECK_MESSAGE(table.find(row) != std::string::npos, row);
  // llama-gqa: 2 layers, hidden 32, 4 heads of 8, 2 kv heads: q_proj 32 x 32, v_proj 16 x 32, so
  // LoRA r 8 trains 8·(32 + 32) + 8·(32 + 16) = 896 per layer, FourierFT 2·n.
  REQUIRE(std::system(("\"" + cli + "\" param-table --config \"" +
                       model_dir("llama-gqa").string() + "\" --n 12 > \"" +
                       (out / "llama.txt").string() + "\"")
                          .c_str()) == 0);
  const std::string llama = testing_read(out / "llama.txt");
  CHECK(llama.find("llama-gqa (llama)     4     32 |    8     1.79K") != std::string::npos);
  CHECK(llama.find("|     12        48") != std::string::npos);
}
#endif

// ===========================================================================
// The module tree as the single source of truth: Dropout sites, the registry, a toy plug-in model.
namespace {
// The names of the model's Dropout modules, in named_modules() order.
template <class Real>
std::vector<std::string> dropout_names(nn::Module<Real>& model) {
  std::vector<std::string> names;
  for (auto& [name, m] : model.named_modules())
    if (dynamic_cast<nn::Dropout<Real>*>(m) != nullptr) names.push_back(name);
  return names;
}
}  // namespace

TEST_CASE("Dropout sites are modules under HF's names, reseeded k = 0, 1, ... in tree order") {
  io::Gpt2Config g;
  g.vocab_size = 20, g.n_positions = 8, g.n_embd = 8, g.n_layer = 2, g.n_head = 2;
  GPT2LMHeadModel<float> gpt2(g, 1);
  CHECK(dropout_names(gpt2) ==
        std::vector<std::string>{"transformer.drop", "transformer.h.0.attn.attn_dropout",
                                 "transformer.h.0.attn.resid_dropout", "transformer.h.0.mlp.dropout",
                                 "transformer.h.1.attn.attn_dropout",
                                 "transformer.h.1.attn.resid_dropout",
                                 "transformer.h.1.mlp.dropout"});
  io::RobertaConfig r;
  r.vocab_size = 20, r.hidden_size = 8, r.num_hidden_layers = 1, r.num_attention_heads = 2;
  r.intermediate_size = 16, r.max_position_embeddings = 12;
  RobertaForSequenceClassification<float> roberta(r, 1);
  CHECK(dropout_names(roberta) ==
        std::vector<std::string>{"roberta.embeddings.dropout",
                                 "roberta.encoder.layer.0.attention.self.dropout",
                                 "roberta.encoder.layer.0.attention.output.dropout",
                                 "roberta.encoder.layer.0.output.dropout", "classifier.dropout"});
  io::VitConfig v;
  v.hidden_size = 8, v.num_hidden_layers = 1, v.num_attention_heads = 2, v.intermediate_size = 16;
  v.image_size = 4, v.patch_size = 2;
  ViTForImageClassification<float> vit(v, 1);
  CHECK(dropout_names(vit) == std::vector<std::string>{
                                  "vit.embeddings.dropout",
                                  "vit.encoder.layer.0.attention.attention.dropout",
                                  "vit.encoder.layer.0.attention.output.dropout",
                                  "vit.encoder.layer.0.output.dropout"});
  // No checkpoint key comes from them: LayerNorm only where HF has one (RoBERTa's outputs).
  for (const auto& [name, p] : vit.named_parameters())
    CHECK(name.find("output.LayerNorm") == std::string::npos);
  CHECK(roberta.find_module("roberta.encoder.layer.0.output.LayerNorm") != nullptr);

  train::reseed_dropout(roberta, 7, 3);
  std::uint64_t k = 0;
  for (auto& [name, m] : roberta.named_modules())
    if (auto* site = dynamic_cast<nn::Dropout<float>*>(m)) {
      CAPTURE(name);
      Rng expected(train::mix_seed(
          train::mix_seed(7, static_cast<std::uint64_t>(train::Stream::dropout), 3), k++));
      CHECK(site->rng.normal() == expected.normal());
    }
  CHECK(k == 5);
}

TEST_CASE("Model registry: model_type's default class, architectures, unknown types") {
  auto& registry = model_registry<float>();
  CHECK(registry.for_model_type("gpt2").architecture == "GPT2LMHeadModel");
  CHECK(registry.for_model_type("roberta").architecture == "RobertaForSequenceClassification");
  CHECK(registry.for_model_type("vit").inputs == InputKind::pixels);
  CHECK(registry.resolve(model_dir("roberta-mlm")).architecture == "RobertaForMaskedLM");
  CHECK(registry.resolve(model_dir("roberta-reg")).task == Task::sequence_classification);
  CHECK_THROWS_WITH_AS(registry.for_model_type("bert", "x/config.json"),
                       doctest::Contains("x/config.json: model_type 'bert' is not supported "
                                         "(fourierft runs gpt2, roberta, vit"),
                       FormatError);
  // A loaded model through the interface: the reference logits, and the MLM's loss.
  const auto ref = reference("roberta-mlm");
  auto mlm = registry.from_pretrained(model_dir("roberta-mlm"));
  CHECK(mlm->architecture() == "RobertaForMaskedLM");
  ModelInputs<float> in;
  in.input_ids = ref.load_int("input_ids");
  in.attention_mask = ref.load_int("attention_mask");
  Tape<float> tape;
  const ModelOutput<float> out = mlm->forward(tape, in);
  CHECK(out.logits.shape() == Shape{in.input_ids.size(0), in.input_ids.size(1),
                                    mlm->module().parameter("roberta.embeddings.word_embeddings."
                                                            "weight").size(0)});
  in.labels = Tensor<std::int64_t>(in.input_ids.shape());
  in.labels.fill(-100);
  in.labels[1] = in.input_ids[1];
  CHECK(std::isfinite(mlm->loss(tape, out, in).item()));
}

TEST_CASE("Adding a model: the toy MLP, registered with one line, saved and loaded back") {
  register_model<toy::ToyMlpClassifier>();  // the one registry line
  toy::ToyMlpConfig config;
  config.num_features = 12, config.hidden_size = 8, config.id2label = {"a", "b", "c"};
  toy::ToyMlpClassifier<float> model(config, 3);
  CHECK(model.fc1.bias.value()[0] == 0.0f);  // HF-style init through init_module
  CHECK(dropout_names(model) == std::vector<std::string>{"dropout"});
  const fs::path dir = scratch("toy");
  model.save_pretrained(dir);
  CHECK(io::read_config<toy::ToyMlpConfig>(dir).architectures ==
        std::vector<std::string>{"ToyMlpClassifier"});

  CheckpointReport report;
  auto loaded = model_registry<float>().from_pretrained(dir, &report);
  CHECK(report.loaded.size() == 4);
  CHECK(loaded->architecture() == "ToyMlpClassifier");
  CHECK(loaded->inputs() == InputKind::pixels);
  CHECK(loaded->config().num_labels() == 3);
  CHECK_FALSE(loaded->module().is_training());

  Rng rng(4);
  ModelInputs<float> in;
  in.pixel_values = randn<float>({2, 3, 2, 2}, rng);
  in.labels = Tensor<std::int64_t>::from_data({2}, {0, 2});
  model.eval();
  Tape<float> tape;
  const ModelOutput<float> expected = model.forward(tape, in);
  const ModelOutput<float> out = loaded->forward(tape, in);
  CHECK(out.logits.shape() == Shape{2, 3});
  CHECK(max_abs_diff(out.logits.value(), expected.logits.value()) == 0.0);
  const Var<float> loss = loaded->loss(tape, out, in);
  CHECK(loss.item() == doctest::Approx(std::log(3.0)).epsilon(0.05));  // near-uniform at init
  tape.backward(loss);
  CHECK(loaded->module().parameter("fc2.weight").has_grad());
  // The CLI runs it too: the registry, not a list of types, decides what `forward` accepts.
  io::SafetensorsWriter inputs;
  inputs.add("pixel_values", in.pixel_values);
  inputs.save(dir / "inputs.safetensors");
  const cli::ForwardResult r = cli::run_forward(dir, dir / "inputs.safetensors");
  CHECK(max_abs_diff(r.logits, expected.logits.value()) == 0.0);
}
