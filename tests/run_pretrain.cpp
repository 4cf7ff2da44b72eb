// Tests of pretraining (examples/pretrain.cpp, models::RobertaForMaskedLM) and of the committed tiny
// ViT (examples/checkpoints/vit-tiny-cifar5), run as CTest cases "pretrain/<case>".
//
//   pretrain/mlm-model      RobertaForMaskedLM matches the PyTorch reference of the roberta-mlm
//                           fixture (logits, loss), its gradients match central differences, and
//                           save_pretrained writes HF's keys (no tied decoder copy)
//   pretrain/mlm, /clm, /image   each mode runs a few steps on bundled slices, writes a checkpoint
//                           folder, and the matching fine-tuning program loads it and trains on it;
//                           image also checks --stop-after + --resume gives the same weights
//   pretrain/clm-llama      LlamaForCausalLM pretraining end to end: the folder HF reads (config,
//                           BF16 weights, tokenizer.json + ChatML tokenizer_config.json) loads
//                           through the registry, the tokenizer encodes as the training one, and
//                           --stop-after + --resume gives the same weights
//   pretrain/errors         bad options and inputs: one clear error, non-zero exit
//   pretrain/vit-tiny-cifar5  the committed checkpoint reproduces its recorded test accuracy exactly
//   pretrain/llama-tiny-qnli  the committed LLaMA checkpoint loads and reproduces its recorded
//                           held-out loss on the QNLI blocks (needs ../shared/data; else skipped)
//   pretrain/cifar5-demo    the README's main job, shortened: runs and reloads its adapter exactly
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "fourierft/io/e2e.hpp"
#include "fourierft/io/glue.hpp"
#include "fourierft/io/hf_tokenizer.hpp"
#include "fourierft/io/image.hpp"
#include "fourierft/io/image_batches.hpp"
#include "fourierft/io/image_folder.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/io/safetensors.hpp"
#include "fourierft/models/gpt2.hpp"
#include "fourierft/models/llama.hpp"
#include "fourierft/models/registry.hpp"
#include "fourierft/models/roberta.hpp"
#include "fourierft/models/vit.hpp"
#include "../examples/vit_transfer.hpp"
#include "gradcheck.hpp"
#include "process.hpp"

using namespace fourierft;
using namespace fourierft::testing;
namespace fs = std::filesystem;

namespace {

const fs::path fixtures = FOURIERFT_FIXTURES_DIR;
const fs::path source_dir = FOURIERFT_SOURCE_DIR;
const fs::path shared_data = FOURIERFT_SHARED_DATA_DIR;
const bool no_shared_data = !fs::is_directory(shared_data / "glue/qnli");

fs::path fresh_dir(const std::string& name) {
  return testing::fresh_dir(fs::path(FOURIERFT_BINARY_DIR) / "run_pretrain", name);
}

std::vector<std::string> safetensors_keys(const fs::path& path) {
  const io::SafetensorsFile f(path);
  std::vector<std::string> keys(f.names().begin(), f.names().end());
  std::sort(keys.begin(), keys.end());
  return keys;
}

// What every pretraining run leaves: a complete checkpoint folder, its log, no state.
void check_pretrain_run(const Run& r, const fs::path& out, const std::vector<std::string>& files) {
  INFO(r.output);
  REQUIRE(r.status == 0);
  CHECK(r.output.find("step 1 | loss ") != std::string::npos);
  CHECK(r.output.find("saved ") != std::string::npos);
  for (const std::string& f : files) {
    INFO(f);
    CHECK(fs::exists(out / "model" / f));
  }
  CHECK(fs::exists(out / "model" / "pretrain.json"));
  CHECK_FALSE(fs::exists(out / "model.tmp"));
  CHECK_FALSE(fs::exists(out / "state"));
  CHECK(events(out / "log.jsonl", "done").size() == 1);
  CHECK(events(out / "log.jsonl", "eval").size() >= 1);
}

void check_error(const Run& r, const std::string& expected) {
  INFO(r.output);
  CHECK(r.status == 1);
  CHECK(r.output.find("pretrain: ") != std::string::npos);
  CHECK(r.output.find(expected) != std::string::npos);
}

// The id lists one after another.
std::vector<std::int64_t> concat_ids(const std::vector<std::vector<std::int64_t>>& parts) {
  std::vector<std::int64_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

double max_abs_diff(const Tensor<float>& a, const Tensor<float>& b) {
  REQUIRE(a.shape() == b.shape());
  double worst = 0;
  for (Index i = 0; i < a.numel(); ++i) worst = std::max(worst, double(std::abs(a[i] - b[i])));
  return worst;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
TEST_CASE("pretrain/mlm-model: RobertaForMaskedLM matches PyTorch, its gradients, HF's saved keys") {
  // 1. The fixture (RobertaForMaskedLM written by tests/fixtures/make_fixtures.py with torch 1.13,
  //    holding the tied lm_head.decoder.weight as old files do) against its reference outputs.
  models::CheckpointReport report;
  auto model = models::RobertaForMaskedLM<float>::from_pretrained(fixtures / "models/roberta-mlm",
                                                                  &report);
  INFO(report.summary());
  CHECK(report.initialized.empty());
  CHECK(report.unexpected.empty());
  CHECK(report.loaded.size() == model->named_parameters().size());
  CHECK(std::find(report.ignored.begin(), report.ignored.end(), "lm_head.decoder.weight") !=
        report.ignored.end());
  const io::SafetensorsFile file(fixtures / "models/roberta-mlm/model.safetensors");
  CHECK(max_abs_diff(file.load<float>("lm_head.decoder.weight"),
                     model->roberta.embeddings.word_embeddings.weight.value()) == 0.0);
  const io::SafetensorsFile ref(fixtures / "models/roberta-mlm/reference.safetensors");
  const auto ids = ref.load_int("input_ids"), mask = ref.load_int("attention_mask");
  const auto labels = ref.load_int("labels");
  Tape<float> tape;
  const models::ModelOutput<float> out = model->forward(tape, ids, mask);
  // Logits of the real tokens (padded positions are not defined across HF versions).
  const Tensor<float> want = ref.load<float>("logits");
  const Index T = ids.size(1), V = want.size(2);
  double worst = 0;
  for (Index n = 0; n < ids.numel(); ++n)
    if (mask[n] == 1)
      for (Index v = 0; v < V; ++v)
        worst = std::max(worst, double(std::abs(out.logits.value()[n * V + v] - want[n * V + v])));
  MESSAGE("roberta-mlm: worst logit difference ", worst, " over ", T, "-token rows");
  CHECK(worst < 1e-4);
  const Var<float> loss = model->loss(tape, out.last_hidden_state, labels);
  CHECK(std::abs(double(loss.item()) - double(ref.load<float>("loss").item())) < 1e-5);

  // 2. Gradients of the masked-LM loss (scored rows gathered, tied decoder, lm_head.bias) against
  //    central differences, in double, along random directions of every parameter.
  io::RobertaConfig c;
  c.vocab_size = 23;
  c.hidden_size = 8;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.intermediate_size = 12;
  c.max_position_embeddings = 10;
  c.type_vocab_size = 1;
  c.layer_norm_eps = 1e-5;
  c.hidden_dropout_prob = c.attention_probs_dropout_prob = 0.0;
  c.initializer_range = 0.3;  // large weights: the head's non-linearities matter
  models::RobertaForMaskedLM<double> tiny(c, 7);
  Rng rng(3);
  for (double& b : tiny.lm_head.bias.data()) b = 0.1 * rng.normal();
  Tensor<std::int64_t> x({2, 6}), y = Tensor<std::int64_t>::full({2, 6}, -100);
  for (Index n = 0; n < 12; ++n) x[n] = 2 + static_cast<std::int64_t>(rng.below(21));
  x[0] = 0;
  y[1] = 5;  // three scored positions, one of them twice the same target
  y[4] = 17;
  y[9] = 5;
  auto loss_of = [&](Tape<double>& t) {
    return tiny.loss(t, tiny.roberta.forward(t, x), y);
  };
  Tape<double> t;
  tiny.zero_grad();
  t.backward(loss_of(t));
  t.clear();
  int checked = 0;
  for (auto& [name, p] : tiny.named_parameters()) {
    const Tensor<double> v = randn<double>(p.shape(), rng);
    double analytic = 0;
    for (Index i = 0; i < p.numel(); ++i) analytic += p.grad()[i] * v[i];
    const Tensor<double> saved = p.value().clone();
    const double eps = 1e-6;
    auto at = [&](double s) {
      for (Index i = 0; i < p.numel(); ++i) p.value()[i] = saved[i] + s * eps * v[i];
      Tape<double> t2;
      NoGradScope<double> no_grad(t2);
      return loss_of(t2).item();
    };
    const double numeric = (at(1) - at(-1)) / (2 * eps);
    std::copy(saved.data().begin(), saved.data().end(), p.value().data().begin());
    INFO(name, ": analytic ", analytic, " numeric ", numeric);
    CHECK(std::abs(analytic - numeric) <= 1e-6 + 1e-5 * std::abs(numeric));
    ++checked;
  }
  CHECK(checked == static_cast<int>(tiny.named_parameters().size()));

  // 3. save_pretrained: HF's keys (no decoder copy), RobertaForMaskedLM config; loads back exactly.
  const fs::path dir = fresh_dir("mlm-model");
  model->save_pretrained(dir / "saved");
  const std::vector<std::string> keys = safetensors_keys(dir / "saved/model.safetensors");
  for (const char* key : {"lm_head.bias", "lm_head.dense.weight", "lm_head.dense.bias",
                          "lm_head.layer_norm.weight", "lm_head.layer_norm.bias",
                          "roberta.embeddings.word_embeddings.weight"})
    CHECK(std::find(keys.begin(), keys.end(), key) != keys.end());
  for (const std::string& key : keys) {
    INFO(key);
    CHECK(key.find("decoder") == std::string::npos);
    CHECK((key.rfind("roberta.", 0) == 0 || key.rfind("lm_head.", 0) == 0));
  }
  CHECK(io::read_json(dir / "saved/config.json").at("architectures") ==
        io::Json(std::vector<std::string>{"RobertaForMaskedLM"}));
  auto again = models::RobertaForMaskedLM<float>::from_pretrained(dir / "saved", &report);
  CHECK(report.unexpected.empty());
  CHECK(report.ignored.empty());
  Tape<float> tape2;
  CHECK(max_abs_diff(again->forward(tape2, ids, mask).logits.value(), out.logits.value()) == 0.0);
}

// ---------------------------------------------------------------------------------------------------
TEST_CASE("pretrain/mlm: a few steps on SST-2 sentences; finetune_glue loads the checkpoint") {
  const fs::path dir = fresh_dir("mlm"), out = dir / "pt";
  const Run r = run(PRETRAIN,
                    {"--mode", "mlm", "--text", (fixtures / "data/glue/sst2/train.tsv").string(),
                     "--tokenizer", (fixtures / "models/roberta-bytes").string(), "--layers", "2",
                     "--hidden", "32", "--heads", "4", "--max-len", "64", "--batch", "16",
                     "--epochs", "2", "--log-every", "1", "--dtype", "f16", "--seed", "1",
                     "--out", out.string()},
                    dir / "pt.log");
  check_pretrain_run(r, out, {"config.json", "model.safetensors", "vocab.json", "merges.txt",
                              "tokenizer_config.json"});
  const io::Json config = io::read_json(out / "model/config.json");
  CHECK(config.at("architectures") == io::Json(std::vector<std::string>{"RobertaForMaskedLM"}));
  CHECK(config.at("max_position_embeddings") == 66);  // max_len + 2
  CHECK(config.at("type_vocab_size") == 1);
  CHECK(config.at("vocab_size") == 276);
  CHECK(config.at("torch_dtype") == "float16");
  CHECK(read_file(out / "model/vocab.json") == read_file(fixtures / "models/roberta-bytes/vocab.json"));
  const auto keys = safetensors_keys(out / "model/model.safetensors");
  CHECK(std::find(keys.begin(), keys.end(), "lm_head.bias") != keys.end());
  CHECK(std::find(keys.begin(), keys.end(), "lm_head.decoder.weight") == keys.end());
  // The masked-LM loss falls from ln(276) = 5.62.
  const auto steps = events(out / "log.jsonl", "step");
  REQUIRE(steps.size() >= 4);
  CHECK(steps.back().at("loss").get<double>() < steps.front().at("loss").get<double>());

  const Run ft = run(FINETUNE_GLUE,
                     {"--model", (out / "model").string(), "--task", "sst2", "--data",
                      (fixtures / "data/glue/sst2").string(), "--limit-train", "32", "--limit-dev",
                      "16", "--n", "16", "--epochs", "1", "--batch", "8", "--max-len", "48",
                      "--out", (dir / "ft").string()},
                     dir / "ft.log");
  INFO(ft.output);
  CHECK(ft.status == 0);
  CHECK(ft.output.find("newly initialised") != std::string::npos);  // the classifier
  CHECK(ft.output.find("unused weights of the checkpoint: lm_head.bias") != std::string::npos);
  CHECK(fs::exists(dir / "ft/adapter/adapter_model.safetensors"));
}

TEST_CASE("pretrain/clm: a few steps on E2E references + SST-2; finetune_e2e loads the checkpoint") {
  const fs::path dir = fresh_dir("clm"), out = dir / "pt";
  const Run r = run(PRETRAIN,
                    {"--mode", "clm", "--text",
                     (fixtures / "data/e2e/devset.csv").string() + "," +
                         (fixtures / "data/glue/sst2/train.tsv").string(),
                     "--tokenizer", (fixtures / "models/gpt2-bytes").string(), "--layers", "2",
                     "--hidden", "32", "--heads", "4", "--max-len", "192", "--batch", "8",
                     "--epochs", "1", "--lr", "3e-3", "--log-every", "1", "--seed", "2",
                     "--out", out.string()},
                    dir / "pt.log");
  check_pretrain_run(r, out, {"config.json", "model.safetensors", "vocab.json", "merges.txt"});
  const io::Json config = io::read_json(out / "model/config.json");
  CHECK(config.at("architectures") == io::Json(std::vector<std::string>{"GPT2LMHeadModel"}));
  CHECK(config.at("n_positions") == 192);
  CHECK(config.at("eos_token_id") == 271);
  const auto keys = safetensors_keys(out / "model/model.safetensors");
  CHECK(std::find(keys.begin(), keys.end(), "lm_head.weight") == keys.end());  // tied to wte
  const auto steps = events(out / "log.jsonl", "step");
  REQUIRE(steps.size() >= 4);
  CHECK(steps.back().at("loss").get<double>() < steps.front().at("loss").get<double>() - 0.5);

  const Run ft = run(FINETUNE_E2E,
                     {"--model", (out / "model").string(), "--data",
                      (fixtures / "data/e2e").string(), "--limit-train", "16", "--limit-test", "2",
                      "--n", "16", "--epochs", "1", "--batch", "8", "--grad-accum", "1",
                      "--max-len", "160", "--beam", "2", "--max-new-tokens", "8",
                      "--out", (dir / "ft").string()},
                     dir / "ft.log");
  INFO(ft.output);
  CHECK(ft.status == 0);
  CHECK(ft.output.find("BLEU ") != std::string::npos);
  CHECK(fs::exists(dir / "ft/adapter/adapter_model.safetensors"));
}

TEST_CASE("pretrain/image: ViT on CIFAR-10 images, resume is exact; finetune_vit loads it") {
  const fs::path dir = fresh_dir("image");
  const std::vector<std::string> common = {
      "--mode", "image", "--data", (fixtures / "data/cifar10-mini").string(), "--layers", "2",
      "--hidden", "32", "--heads", "4", "--image-size", "16", "--patch", "4", "--epochs", "2",
      "--batch", "10", "--log-every", "1", "--seed", "4"};
  const fs::path a = dir / "a", b = dir / "b";
  const Run r = run(PRETRAIN, concat(common, {"--out", a.string()}), dir / "a.log");
  check_pretrain_run(r, a, {"config.json", "model.safetensors", "preprocessor_config.json"});
  const io::Json config = io::read_json(a / "model/config.json");
  CHECK(config.at("architectures") == io::Json(std::vector<std::string>{"ViTForImageClassification"}));
  CHECK(config.at("image_size") == 16);
  CHECK(config.at("patch_size") == 4);
  CHECK(config.at("id2label").at("2") == "ship");
  CHECK(config.at("label2id").at("cat") == 1);
  const io::ImageProcessor p = io::ImageProcessor::from_json(a / "model/preprocessor_config.json");
  CHECK(p.height == 16);
  CHECK(p.width == 16);

  // Stopped after 3 steps and resumed: the same weights, byte for byte.
  const Run stopped = run(PRETRAIN, concat(common, {"--out", b.string(), "--stop-after", "3"}),
                          dir / "b1.log");
  INFO(stopped.output);
  CHECK(stopped.status == 130);
  CHECK(fs::exists(b / "state/state.json"));
  const Run refused = run(PRETRAIN, concat(common, {"--out", b.string(), "--resume", "--layers", "3"}),
                          dir / "b2.log");
  CHECK(refused.status == 1);
  CHECK(refused.output.find("but this run has layers = 3") != std::string::npos);
  const Run resumed = run(PRETRAIN, concat(common, {"--out", b.string(), "--resume"}), dir / "b3.log");
  INFO(resumed.output);
  REQUIRE(resumed.status == 0);
  CHECK(read_file(a / "model/model.safetensors") == read_file(b / "model/model.safetensors"));
  CHECK(io::read_json(a / "results.json").at("history") == io::read_json(b / "results.json").at("history"));

  const Run ft = run(FINETUNE_VIT,
                     {"--model", (a / "model").string(), "--data",
                      (fixtures / "data/cifar10-mini").string(), "--n", "32", "--epochs", "1",
                      "--batch", "10", "--grad-accum", "1", "--out", (dir / "ft").string()},
                     dir / "ft.log");
  INFO(ft.output);
  CHECK(ft.status == 0);
  CHECK(ft.output.find("images: 16 x 16") != std::string::npos);  // the saved processor is used
  CHECK(fs::exists(dir / "ft/adapter/adapter_model.safetensors"));
}

TEST_CASE("pretrain/clm-llama: a LLaMA folder HF reads, its tokenizer round-trips, resume is exact") {
  const fs::path dir = fresh_dir("clm-llama"), a = dir / "a", b = dir / "b";
  const fs::path tokenizer_dir = fixtures / "models/gpt2-bytes";  // 256 bytes + 15 merges + eot
  const std::vector<std::string> common = {
      "--mode", "clm-llama", "--text", (fixtures / "data/glue/qnli/dev.tsv").string(),
      "--unique-lines", "--tokenizer", tokenizer_dir.string(), "--layers", "2", "--hidden", "32",
      "--heads", "4", "--kv-heads", "2", "--intermediate", "48", "--rope-theta", "500",
      "--max-len", "128", "--batch", "16", "--epochs", "2", "--lr", "3e-3", "--log-every", "1",
      "--dtype", "bf16", "--seed", "5"};
  const Run r = run(PRETRAIN, concat(common, {"--out", a.string()}), dir / "a.log");
  CHECK(r.output.find("repeated lines dropped (--unique-lines)") != std::string::npos);
  check_pretrain_run(r, a, {"config.json", "model.safetensors", "tokenizer.json",
                            "tokenizer_config.json", "generation_config.json"});
  const fs::path saved = a / "model";

  // config.json as LlamaForCausalLM.from_pretrained reads it. Ids: 272 BPE tokens with
  // <|endoftext|> = 271 last, then <|im_start|> = 272, <|im_end|> = 273.
  const io::Json config = io::read_json(saved / "config.json");
  CHECK(config.at("architectures") == io::Json(std::vector<std::string>{"LlamaForCausalLM"}));
  CHECK(config.at("model_type") == "llama");
  CHECK(config.at("torch_dtype") == "bfloat16");
  CHECK(config.at("vocab_size") == 274);
  CHECK(config.at("num_key_value_heads") == 2);
  CHECK(config.at("intermediate_size") == 48);
  CHECK(config.at("rope_theta") == 500.0);
  CHECK(config.at("tie_word_embeddings") == true);
  CHECK(config.at("bos_token_id") == 271);
  CHECK(config.at("eos_token_id") == io::Json::array({273, 271}));
  const io::SafetensorsFile weights(saved / "model.safetensors");
  CHECK(weights.names().size() == 1 + 2 * 9 + 1);  // embed, 2 x (4 proj + 3 mlp + 2 norms), norm
  for (const std::string& name : weights.names()) {
    INFO(name);
    CHECK(weights.info(name).dtype == io::Dtype::BF16);
    CHECK(name != "lm_head.weight");  // tied
  }
  CHECK(weights.info("model.layers.0.self_attn.k_proj.weight").shape == Shape{16, 32});
  const auto steps = events(a / "log.jsonl", "step");
  REQUIRE(steps.size() >= 4);
  CHECK(steps.back().at("loss").get<double>() < steps.front().at("loss").get<double>() - 0.5);

  // The library's loader, through the registry (config.json's architectures), reproduces the
  // held-out loss the program recorded for the saved weights.
  models::CheckpointReport report;
  auto model = models::model_registry<float>().from_pretrained(saved, &report);
  INFO(report.summary());
  CHECK(model->architecture() == "LlamaForCausalLM");
  CHECK(report.initialized.empty());
  CHECK(report.unexpected.empty());

  // tokenizer.json: HfTokenizer encodes as the BPE files the model was trained with, decodes back;
  // tokenizer_config.json: ChatML, no BOS, EOS <|im_end|>, pad <|endoftext|>.
  const io::HfTokenizer hf = io::HfTokenizer::load(saved);
  const io::BpeTokenizer bpe = io::BpeTokenizer::from_files(tokenizer_dir / "vocab.json",
                                                            tokenizer_dir / "merges.txt");
  for (const std::string text : {"The Eagle is a coffee shop near Burger King.",
                                 "  two  spaces,\ttab and\nnew line\n\n", "It's 3.14 -- isn't it?",
                                 "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80 end"}) {
    INFO(text);
    CHECK(hf.encode(text) == bpe.encode(text));
    CHECK(hf.decode(hf.encode(text)) == text);
  }
  CHECK(hf.vocab_size() == 274);
  CHECK(hf.token_id("<|endoftext|>") == 271);
  CHECK(hf.encode("<|im_start|>user\nhi<|im_end|>\n").front() == 272);
  CHECK(hf.encode("<|im_start|>user\nhi<|im_end|>\n") ==
        concat_ids({{272}, bpe.encode("user\nhi"), {273}, bpe.encode("\n")}));
  CHECK(hf.special_tokens().eos == 273);
  CHECK(hf.special_tokens().pad == 271);
  CHECK_FALSE(hf.special_tokens().bos.has_value());
  CHECK(hf.encode_for_model("hi") == hf.encode("hi"));  // nothing added
  const io::Json tc = io::read_json(saved / "tokenizer_config.json");
  CHECK(tc.at("chat_template") ==
        "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
        "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
        "{{ '<|im_start|>assistant\\n' }}{% endif %}");
  CHECK(hf.chat_template() == tc.at("chat_template").get<std::string>());
  CHECK(tc.at("bos_token").is_null());
  CHECK(tc.at("add_bos_token") == false);

  // Stopped after 3 steps and resumed: the same weights, byte for byte.
  const Run stopped = run(PRETRAIN, concat(common, {"--out", b.string(), "--stop-after", "3"}),
                          dir / "b1.log");
  INFO(stopped.output);
  CHECK(stopped.status == 130);
  const Run refused = run(PRETRAIN, concat(common, {"--out", b.string(), "--resume",
                                                    "--kv-heads", "4"}), dir / "b2.log");
  CHECK(refused.status == 1);
  CHECK(refused.output.find("but this run has kv_heads = 4") != std::string::npos);
  const Run resumed = run(PRETRAIN, concat(common, {"--out", b.string(), "--resume"}), dir / "b3.log");
  INFO(resumed.output);
  REQUIRE(resumed.status == 0);
  CHECK(read_file(a / "model/model.safetensors") == read_file(b / "model/model.safetensors"));
  CHECK(read_file(a / "model/tokenizer.json") == read_file(b / "model/tokenizer.json"));
  CHECK(io::read_json(a / "results.json").at("history") == io::read_json(b / "results.json").at("history"));

  const std::vector<std::string> minimal = {
      "--mode", "clm-llama", "--text", (fixtures / "data/glue/qnli/dev.tsv").string(),
      "--tokenizer", tokenizer_dir.string(), "--out", (dir / "e").string()};
  check_error(run(PRETRAIN, concat(minimal, {"--heads", "4", "--kv-heads", "3"}), dir / "e1.log"),
              "option --kv-heads (3) must divide --heads (4)");
  check_error(run(PRETRAIN, concat(minimal, {"--dropout", "0.1"}), dir / "e2.log"),
              "--mode clm-llama has no dropout");
  check_error(run(PRETRAIN, concat(minimal, {"--tie-embeddings", "maybe"}), dir / "e3.log"),
              "option --tie-embeddings expects yes or no, got 'maybe'");
}

TEST_CASE("pretrain/errors: one clear message, non-zero exit") {
  const fs::path dir = fresh_dir("errors");
  check_error(run(PRETRAIN, {"--mode", "bert"}, dir / "1.log"),
              "option --mode expects mlm, clm or image, got 'bert'");
  check_error(run(PRETRAIN, {"--mode", "mlm", "--text", "x.txt"}, dir / "2.log"),
              "missing required option --tokenizer");
  check_error(run(PRETRAIN, {"--mode", "clm", "--text", (fixtures / "data/glue/sst2/train.tsv").string(),
                             "--tokenizer", (fixtures / "models/roberta-bytes").string(),
                             "--out", (dir / "o3").string()}, dir / "3.log"),
              "--mode clm needs a GPT-2 vocabulary");
  check_error(run(PRETRAIN, {"--mode", "mlm", "--text", (dir / "missing.txt").string(),
                             "--tokenizer", (fixtures / "models/roberta-bytes").string(),
                             "--out", (dir / "o4").string()}, dir / "4.log"),
              "missing.txt");
  check_error(run(PRETRAIN, {"--mode", "image", "--data", (fixtures / "data/cifar10-mini").string(),
                             "--hidden", "30", "--heads", "4"}, dir / "5.log"),
              "option --hidden (30) must be a multiple of --heads (4)");
  check_error(run(PRETRAIN, {"--mode", "image", "--data", (fixtures / "data/cifar10-mini").string(),
                             "--image-size", "30", "--patch", "4"}, dir / "6.log"),
              "option --image-size (30) must be a positive multiple of --patch (4)");
  check_error(run(PRETRAIN, {"--mode", "mlm", "--text", (fixtures / "data/glue/sst2/dev.tsv").string(),
                             "--tokenizer", (fixtures / "models/roberta-bytes").string(),
                             "--max-len", "100000", "--out", (dir / "o7").string()}, dir / "7.log"),
              "too few to train");
}

// ---------------------------------------------------------------------------------------------------
// The committed checkpoint: its README and pretrain.json record the test accuracy of exactly these
// weights on examples/data/cifar5-pretrain/test; evaluation is deterministic, so it must reproduce.
TEST_CASE("pretrain/vit-tiny-cifar5: the committed checkpoint reproduces its recorded accuracy") {
  const fs::path ckpt = source_dir / "examples/checkpoints/vit-tiny-cifar5";
  const fs::path test_dir = source_dir / "examples/data/cifar5-pretrain/test";
  models::CheckpointReport report;
  auto model = models::ViTForImageClassification<float>::from_pretrained(ckpt, &report);
  INFO(report.summary());
  CHECK(report.initialized.empty());
  CHECK(report.unexpected.empty());
  CHECK(io::read_json(ckpt / "config.json").at("torch_dtype") == "float16");
  const io::Json recorded = io::read_json(ckpt / "pretrain.json").at("eval_of_saved_weights");
  const io::DecodedImageFolder test(test_dir);
  CHECK(test.classes() == model->config.id2label);
  const io::ImageProcessor processor = io::ImageProcessor::from_json(ckpt / "preprocessor_config.json");
  // The demo's own evaluation (examples/vit_transfer.hpp), as a count of correct images.
  const double accuracy = examples::test_accuracy(*model, test, processor);
  const Index correct = std::llround(accuracy * static_cast<double>(test.size()));
  MESSAGE("vit-tiny-cifar5: ", correct, "/", test.size(), " correct");
  CHECK(test.size() == recorded.at("images").get<Index>());
  CHECK(correct == recorded.at("correct").get<Index>());
  // The README states the same number.
  char text[64];
  std::snprintf(text, sizeof text, "%.4f (%lld/%lld)", recorded.at("accuracy").get<double>(),
                static_cast<long long>(correct), static_cast<long long>(test.size()));
  CHECK(read_file(ckpt / "README.md").find(text) != std::string::npos);
}

TEST_CASE("pretrain/cifar5-demo: the main job, shortened, runs and reloads its adapter exactly") {
  const fs::path dir = fresh_dir("demo");
  const Run r = run(FINETUNE_CIFAR5_DEMO,
                    {"--limit-train", "100", "--epochs", "1", "--methods", "head,fourierft",
                     "--out", (dir / "out").string()},
                    dir / "demo.log");
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(r.output.find("(identical)") != std::string::npos);
  CHECK(fs::exists(dir / "out/fourierft/adapter_model.safetensors"));
  CHECK(fs::exists(dir / "out/head/adapter_model.safetensors"));
}

// The committed LLaMA checkpoint (the base of the instruction-tuning demo): it loads through the
// registry with every weight, and its held-out LM loss — recorded by the program in pretrain.json
// and in the README — is reproduced: the corpus of its command is rebuilt here from the data pack
// and tokenized with the committed tokenizer.json (lines deduplicated, each followed by
// <|endoftext|>, cut into blocks of max_position_embeddings tokens, the last 2% held out).
TEST_CASE("pretrain/llama-tiny-qnli-e2e: the committed checkpoint reproduces its held-out loss" *
          doctest::skip(no_shared_data)) {
  const fs::path ckpt = source_dir / "examples/checkpoints/llama-tiny-qnli-e2e";
  models::CheckpointReport report;
  auto model = models::model_registry<float>().from_pretrained(ckpt, &report);
  INFO(report.summary());
  CHECK(model->architecture() == "LlamaForCausalLM");
  CHECK(report.initialized.empty());
  CHECK(report.unexpected.empty());
  const io::Json config = io::read_json(ckpt / "config.json");
  CHECK(config.at("torch_dtype") == "bfloat16");
  const io::Json record = io::read_json(ckpt / "pretrain.json");
  const io::Json recorded = record.at("eval_of_saved_weights");
  const std::string command = record.at("command").get<std::string>();
  CHECK(command.find("--unique-lines") != std::string::npos);
  CHECK(command.find("--eval-fraction") == std::string::npos);  // the default 2%

  std::vector<std::string> lines;
  for (const char* f : {"e2e/devset.csv", "e2e/testset_w_refs.csv"}) {
    CHECK(command.find(f) != std::string::npos);
    for (const io::E2EExample& e : io::read_e2e_csv(shared_data / f).examples) lines.push_back(e.ref);
  }
  for (const char* f : {"glue/qnli/dev.tsv", "glue/qnli/test.tsv"}) {
    CHECK(command.find(f) != std::string::npos);
    for (const io::GlueExample& e : io::read_glue(shared_data / f, "qnli").examples) {
      lines.push_back(e.text_a);
      if (e.text_b && !e.text_b->empty()) lines.push_back(*e.text_b);
    }
  }
  std::set<std::string> seen;
  std::erase_if(lines, [&](const std::string& line) { return !seen.insert(line).second; });
  const io::HfTokenizer tokenizer = io::HfTokenizer::load(ckpt);
  const std::int64_t eot = *tokenizer.token_id("<|endoftext|>");
  const Index T = config.at("max_position_embeddings").get<Index>();
  std::vector<std::int64_t> stream;
  for (const std::string& line : lines) {
    const auto ids = tokenizer.encode(line, io::SpecialText::plain);
    stream.insert(stream.end(), ids.begin(), ids.end());
    stream.push_back(eot);
  }
  const auto blocks = static_cast<Index>(stream.size()) / T;
  const Index held_out = std::max<Index>(1, static_cast<Index>(0.02 * static_cast<double>(blocks)));
  CHECK(held_out == recorded.at("eval_blocks").get<Index>());

  // Batches of 16 blocks as the program evaluates them: sum of (mean loss x predicted tokens).
  Tape<float> tape;
  NoGradScope<float> no_grad(tape);
  model->module().eval();
  double loss_sum = 0, scored = 0;
  for (Index first = blocks - held_out; first < blocks; first += 16) {
    const Index B = std::min<Index>(16, blocks - first);
    models::ModelInputs<float> in;
    in.input_ids = Tensor<std::int64_t>({B, T});
    std::copy_n(stream.begin() + first * T, B * T, in.input_ids.ptr());
    const double n = static_cast<double>(B * (T - 1));
    loss_sum += model->loss(tape, model->forward(tape, in), in).item() * n;
    scored += n;
    tape.clear();
  }
  const double loss = loss_sum / scored;
  MESSAGE("llama-tiny-qnli-e2e: held-out LM loss ", loss, " over ", held_out, " blocks");
  CHECK(scored == recorded.at("scored_tokens").get<double>());
  CHECK(std::abs(loss - recorded.at("lm_loss").get<double>()) < 1e-4);
  char text[32];
  std::snprintf(text, sizeof text, "%.4f", recorded.at("lm_loss").get<double>());
  CHECK(read_file(ckpt / "README.md").find(text) != std::string::npos);
}
