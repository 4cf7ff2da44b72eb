// End-to-end tests of the example programs finetune_glue, finetune_e2e, finetune_vit and
// finetune_instruct: each is run
// as a user would, on tiny checkpoints and the bundled data slices, and its files are checked.
//
// Per program, "<program>/end-to-end": a short training run (a few steps, an evaluation per epoch,
// --save-merged); the same run interrupted by --stop-after and continued with --resume, which must
// give byte-identical adapters; the saved adapter reloaded with --eval-only, which must reproduce the
// evaluation exactly; the merged checkpoint, which must compute what base + adapter computes; and
// bad inputs, each one clear error and a non-zero exit. "<program>/learns": on a separable task the
// training loss falls. CTest runs each case as its own test (tests/CMakeLists.txt).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "fourierft/io/bpe_tokenizer.hpp"
#include "fourierft/io/image_folder.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/models/gpt2.hpp"
#include "fourierft/models/llama.hpp"
#include "fourierft/models/roberta.hpp"
#include "fourierft/models/vit.hpp"
#include "fourierft/peft/adapter_io.hpp"
#include "process.hpp"

using namespace fourierft;
using namespace fourierft::testing;
namespace fs = std::filesystem;

namespace {

const fs::path fixtures = FOURIERFT_FIXTURES_DIR;

fs::path fresh_dir(const std::string& name) {
  return testing::fresh_dir(fs::path(FOURIERFT_BINARY_DIR) / "run_examples", name);
}

// The training loss of the first logged window, and the mean of the last `k` windows.
std::pair<double, double> first_and_last_loss(const fs::path& log, std::size_t k) {
  const auto steps = events(log, "step");
  REQUIRE(steps.size() >= k + 1);
  double last = 0;
  for (std::size_t i = 0; i < k; ++i) last += steps[steps.size() - 1 - i].at("loss").get<double>() / k;
  return {steps.front().at("loss").get<double>(), last};
}

// What every program must do on its own run folder `a` after a complete run.
void check_complete_run(const Run& r, const fs::path& a, std::size_t steps, std::size_t evals) {
  INFO(r.output);
  REQUIRE(r.status == 0);
  CHECK(r.output.find("trainable params:") != std::string::npos);
  CHECK(r.output.find("adapter size:") != std::string::npos);
  CHECK(r.output.find("step 1 | loss ") != std::string::npos);  // plain lines: not a terminal
  CHECK(events(a / "log.jsonl", "start").size() == 1);
  CHECK(events(a / "log.jsonl", "step").size() == steps);
  CHECK(events(a / "log.jsonl", "eval").size() == evals);
  CHECK(events(a / "log.jsonl", "done").size() == 1);
  CHECK(fs::exists(a / "adapter" / "adapter_model.safetensors"));
  CHECK(fs::exists(a / "adapter" / "adapter_config.json"));
  CHECK(fs::exists(a / "results.json"));
  CHECK_FALSE(fs::exists(a / "state"));  // a finished run leaves no state behind
}

// --stop-after, then --resume: the same adapter, byte for byte, as the uninterrupted run `a`.
void check_resume(const std::string& program, const std::vector<std::string>& common,
                  const fs::path& a, const fs::path& b, int stop_after,
                  const std::vector<std::string>& same_files) {
  const Run stopped = run(program, concat(common, {"--out", b.string(), "--stop-after",
                                                   std::to_string(stop_after)}), b.string() + ".1.log");
  INFO(stopped.output);
  CHECK(stopped.status == 130);
  CHECK(stopped.output.find("stopped (--stop-after) at step " + std::to_string(stop_after)) != std::string::npos);
  REQUIRE(fs::exists(b / "state" / "state.json"));
  // A fresh run must not overwrite the unfinished one.
  const Run refused = run(program, concat(common, {"--out", b.string()}), b.string() + ".2.log");
  CHECK(refused.status == 1);
  CHECK(refused.output.find("holds the state of an unfinished run: pass --resume") != std::string::npos);
  // Resuming with other settings is refused, naming the option.
  const Run changed = run(program, concat(common, {"--out", b.string(), "--resume", "--seed", "99"}),
                          b.string() + ".5.log");
  CHECK(changed.status == 1);
  CHECK(changed.output.find("but this run has seed = 99") != std::string::npos);
  const Run resumed = run(program, concat(common, {"--out", b.string(), "--resume"}), b.string() + ".3.log");
  INFO(resumed.output);
  REQUIRE(resumed.status == 0);
  CHECK(resumed.output.find("resumed from") != std::string::npos);
  CHECK(events(b / "log.jsonl", "resume").size() == 1);
  for (const std::string& f : same_files) {
    INFO(f);
    CHECK(read_file(a / f) == read_file(b / f));
  }
  CHECK(io::read_json(a / "results.json").at("history") == io::read_json(b / "results.json").at("history"));
  // Nothing left to resume.
  const Run again = run(program, concat(common, {"--out", b.string(), "--resume"}), b.string() + ".4.log");
  CHECK(again.status == 1);
  CHECK(again.output.find("--resume: no saved state in") != std::string::npos);
}

// A failing run: status 1 and one line "program: message" containing `expected`.
void check_error(const Run& r, const std::string& program, const std::string& expected) {
  INFO(r.output);
  CHECK(r.status == 1);
  CHECK(r.output.find(program + ": ") != std::string::npos);
  CHECK(r.output.find(expected) != std::string::npos);
}

// The merged checkpoint's forward equals base + adapter (loaded with load_adapter).
template <class Model, class Input>
void check_merged(const fs::path& base, const fs::path& merged, const fs::path& adapter,
                  const Input& input, double tolerance) {
  models::CheckpointReport report;
  auto m = Model::from_pretrained(merged, &report);
  CHECK(report.initialized.empty());
  CHECK(report.unexpected.empty());
  // The base model with the merged model's head shape (its config), plus the adapter.
  auto with_adapter = std::make_unique<Model>(m->config, 0, models::WeightInit::skip);
  models::load_checkpoint_weights(*with_adapter, models::find_checkpoint_files(base),
                                  with_adapter->checkpoint_layout(), {.ignore_mismatched_sizes = true});
  peft::load_adapter(*with_adapter, adapter);
  with_adapter->eval();
  Tape<float> tape;
  NoGradScope<float> no_grad(tape);
  const Tensor<float> x = input(tape, *m).value();
  const Tensor<float> y = input(tape, *with_adapter).value();
  REQUIRE(x.shape() == y.shape());
  double worst = 0;
  for (Index i = 0; i < x.numel(); ++i) worst = std::max(worst, double(std::abs(x[i] - y[i])));
  CHECK(worst < tolerance);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
TEST_CASE("finetune_glue/end-to-end: train, resume, reload, merge, errors") {
  const fs::path dir = fresh_dir("glue");
  const fs::path model = fixtures / "models/roberta-bytes", data = fixtures / "data/glue/sst2";
  const std::vector<std::string> common = {
      "--model", model.string(), "--task", "sst2", "--data", data.string(), "--limit-train", "48",
      "--limit-dev", "40", "--n", "32", "--epochs", "2", "--batch", "8", "--grad-accum", "2",
      "--max-len", "48", "--log-every", "1", "--seed", "3"};
  const fs::path a = dir / "a";
  const Run r = run(FINETUNE_GLUE, concat(common, {"--out", a.string(), "--save-merged"}), dir / "a.log");
  check_complete_run(r, a, 6, 2);
  CHECK(r.output.find("newly initialised") != std::string::npos);  // the hub-style fresh head
  CHECK(fs::exists(a / "best_adapter" / "adapter_model.safetensors"));
  const io::Json results = io::read_json(a / "results.json");
  CHECK(results.at("metric") == "accuracy");
  CHECK(results.at("history").size() == 2);

  check_resume(FINETUNE_GLUE, common, a, dir / "b", 4,
               {"adapter/adapter_model.safetensors", "dev_predictions.tsv"});

  // The saved adapter alone reproduces the last evaluation exactly.
  const fs::path c = dir / "c";
  const Run e = run(FINETUNE_GLUE, {"--model", model.string(), "--task", "sst2", "--data", data.string(),
                                    "--limit-dev", "40", "--max-len", "48", "--adapter",
                                    (a / "adapter").string(), "--eval-only", "--out", c.string()},
                    dir / "c.log");
  INFO(e.output);
  REQUIRE(e.status == 0);
  CHECK(io::read_json(c / "eval.json").at("value").get<double>() ==
        results.at("last_value").get<double>());
  CHECK(read_file(c / "dev_predictions.tsv") == read_file(a / "dev_predictions.tsv"));

  // --save-merged: a plain RobertaForSequenceClassification folder computing base + adapter.
  const io::BpeTokenizer tokenizer = io::BpeTokenizer::load(a / "merged");
  const io::TokenBatch batch = tokenizer.encode_batch(
      std::vector<std::string>{"a gripping , funny film", "it never takes off ."});
  check_merged<models::RobertaForSequenceClassification<float>>(
      model, a / "merged", a / "adapter",
      [&](Tape<float>& t, auto& m) { return m.forward(t, batch.input_ids, batch.attention_mask).logits; },
      1e-4);

  // Bad inputs: one clear error each, exit status 1.
  check_error(run(FINETUNE_GLUE, concat(common, {"--out", (dir / "x").string(), "--model", "/nonexistent/roberta"}),
                  dir / "x1.log"), "finetune_glue", "/nonexistent/roberta");
  check_error(run(FINETUNE_GLUE, {"--model", model.string(), "--task", "sst2", "--data", data.string(),
                                  "--epoch", "3"}, dir / "x2.log"), "finetune_glue", "unknown option --epoch");
  check_error(run(FINETUNE_GLUE, {"--model", model.string(), "--task", "sst5", "--data", data.string()},
                  dir / "x3.log"), "finetune_glue", "unknown GLUE task 'sst5'");
  check_error(run(FINETUNE_GLUE, {"--model", model.string(), "--preset", "roberta-huge-sst2"}, dir / "x4.log"),
              "finetune_glue", "unknown preset 'roberta-huge-sst2'");
  fs::create_directories(dir / "bad");
  std::ofstream(dir / "bad" / "train.tsv") << "label\tsentence\n1\tfine\n0\tbad\textra field\n";
  fs::copy_file(data / "dev.tsv", dir / "bad" / "dev.tsv");
  check_error(run(FINETUNE_GLUE, concat(common, {"--out", (dir / "x").string(), "--data", (dir / "bad").string()}),
                  dir / "x5.log"), "finetune_glue", "train.tsv:3: expected 2 tab-separated fields");
  check_error(run(FINETUNE_GLUE, concat(common, {"--out", (dir / "x").string(), "--max-len", "999"}),
                  dir / "x6.log"), "finetune_glue", "option --max-len 999 exceeds");
  check_error(run(FINETUNE_GLUE, concat(common, {"--out", (dir / "x").string(), "--freq-bias", "200"}),
                  dir / "x7.log"), "finetune_glue", "option --freq-bias expects 'fc,W'");
  // A diverging run stops on the first non-finite loss and names the step.
  const Run nan = run(FINETUNE_GLUE, concat(common, {"--out", (dir / "nan").string(), "--scaling", "1e30"}),
                      dir / "x8.log");
  check_error(nan, "finetune_glue", "the training loss is");
  CHECK(nan.output.find("at step ") != std::string::npos);
}

TEST_CASE("finetune_glue/learns: the loss falls on a separable task") {
  // SST-2 sentences, each led by a word that gives its label away.
  const fs::path dir = fresh_dir("glue-learns"), data = dir / "data";
  fs::create_directories(data);
  std::istringstream rows(read_file(fixtures / "data/glue/sst2/train.tsv"));
  std::ofstream train(data / "train.tsv"), dev(data / "dev.tsv");
  train << "label\tsentence\n";
  dev << "label\tsentence\n";
  std::string line;
  std::getline(rows, line);  // header
  for (int i = 0; std::getline(rows, line); ++i) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::string label = line.substr(0, line.find('\t')), text = line.substr(line.find('\t') + 1);
    (i < 160 ? train : dev) << label << '\t' << (label == "1" ? "great ! " : "awful . ") << text << '\n';
  }
  train.close();
  dev.close();
  const Run r = run(FINETUNE_GLUE, {"--model", (fixtures / "models/roberta-bytes").string(), "--task",
                                    "sst2", "--data", data.string(), "--n", "200", "--epochs", "4",
                                    "--batch", "16", "--max-len", "64", "--log-every", "5", "--out",
                                    (dir / "out").string()}, dir / "run.log");
  INFO(r.output);
  REQUIRE(r.status == 0);
  const auto [first, last] = first_and_last_loss(dir / "out" / "log.jsonl", 1);
  CHECK(last < first - 0.05);
  const io::Json results = io::read_json(dir / "out" / "results.json");
  CHECK(results.at("best_value").get<double>() > results.at("history")[0].at("value").get<double>());
}

// ---------------------------------------------------------------------------------------------------
TEST_CASE("finetune_e2e/end-to-end: train, resume, decode, reload, merge, errors") {
  const fs::path dir = fresh_dir("e2e");
  const fs::path model = fixtures / "models/gpt2-bytes", data = fixtures / "data/e2e";
  const std::vector<std::string> common = {
      "--model", model.string(), "--data", data.string(), "--limit-train", "32", "--limit-test", "3",
      "--n", "32", "--epochs", "2", "--batch", "8", "--grad-accum", "2", "--max-len", "160",
      "--beam", "3", "--max-new-tokens", "12", "--decode-batch", "2", "--log-every", "1", "--seed", "5"};
  const fs::path a = dir / "a";
  const Run r = run(FINETUNE_E2E, concat(common, {"--out", a.string(), "--save-merged"}), dir / "a.log");
  check_complete_run(r, a, 4, 3);  // 2 test losses + the decoded scores
  CHECK(r.output.find("the development set") != std::string::npos);  // the data caveat is stated
  CHECK(r.output.find("BLEU ") != std::string::npos);
  const io::Json results = io::read_json(a / "results.json");
  CHECK(results.at("test_mrs") == 3);
  for (const char* metric : {"BLEU", "NIST", "METEOR", "ROUGE_L", "CIDEr"})
    CHECK(results.at("scores").contains(metric));
  // One prediction per MR; references grouped by MR, groups separated by an empty line.
  std::istringstream predictions(read_file(a / "predictions.txt"));
  int lines = 0;
  for (std::string line; std::getline(predictions, line);) ++lines;
  CHECK(lines == 3);
  const std::string refs = read_file(a / "references.txt");
  CHECK(std::count(refs.begin(), refs.end(), '\n') > 3);
  const auto config = io::read_json(a / "adapter" / "adapter_config.json");
  CHECK(config.at("peft_type") == "FOURIERFT");
  CHECK(config.at("fan_in_fan_out") == true);
  CHECK(config.contains("fourierft_fused_slices"));

  check_resume(FINETUNE_E2E, common, a, dir / "b", 1,
               {"adapter/adapter_model.safetensors", "predictions.txt"});

  const fs::path c = dir / "c";
  const Run e = run(FINETUNE_E2E, concat(common, {"--adapter", (a / "adapter").string(), "--eval-only",
                                                  "--out", c.string()}), dir / "c.log");
  INFO(e.output);
  REQUIRE(e.status == 0);
  CHECK(read_file(c / "predictions.txt") == read_file(a / "predictions.txt"));
  CHECK(io::read_json(c / "eval.json").at("scores") == results.at("scores"));
  CHECK(io::read_json(c / "eval.json").at("test_loss").get<double>() ==
        results.at("history")[1].at("test_loss").get<double>());

  const Tensor<std::int64_t> ids = Tensor<std::int64_t>::from_data({1, 6}, {40, 71, 85, 256, 3, 12});
  check_merged<models::GPT2LMHeadModel<float>>(
      model, a / "merged", a / "adapter", [&](Tape<float>& t, auto& m) { return m.forward(t, ids).logits; },
      1e-4);

  check_error(run(FINETUNE_E2E, concat(common, {"--out", (dir / "x").string(), "--format", "tsv"}),
                  dir / "x1.log"), "finetune_e2e", "option --format expects lora or csv");
  check_error(run(FINETUNE_E2E, concat(common, {"--out", (dir / "x").string(), "--data", dir.string()}),
                  dir / "x2.log"), "finetune_e2e", "lora_format/test.txt");
  check_error(run(FINETUNE_E2E, concat(common, {"--out", (dir / "x").string(), "--max-len", "400"}),
                  dir / "x3.log"), "finetune_e2e", "exceeds the model's n_positions = 320");
  check_error(run(FINETUNE_E2E, concat(common, {"--out", (dir / "x").string(), "--tokenizer",
                                                (fixtures / "models/roberta-bytes").string()}),
                  dir / "x4.log"), "finetune_e2e", "ids up to 275 but the model's vocab_size is 272");
  // The official CSVs work too (the MRs are respelled as LoRA's contexts).
  const Run csv = run(FINETUNE_E2E, concat(common, {"--out", (dir / "csv").string(), "--format", "csv",
                                                    "--epochs", "1"}), dir / "csv.log");
  INFO(csv.output);
  CHECK(csv.status == 0);
}

TEST_CASE("finetune_e2e/learns: the loss on the references falls") {
  const fs::path dir = fresh_dir("e2e-learns");
  const Run r = run(FINETUNE_E2E, {"--model", (fixtures / "models/gpt2-bytes").string(), "--data",
                                   (fixtures / "data/e2e").string(), "--limit-train", "128",
                                   "--limit-test", "2", "--n", "200", "--epochs", "2", "--batch", "8",
                                   "--grad-accum", "1", "--max-len", "160", "--beam", "2",
                                   "--max-new-tokens", "8", "--log-every", "4", "--out",
                                   (dir / "out").string()}, dir / "run.log");
  INFO(r.output);
  REQUIRE(r.status == 0);
  const auto [first, last] = first_and_last_loss(dir / "out" / "log.jsonl", 1);
  CHECK(last < first - 0.3);
  const auto evals = events(dir / "out" / "log.jsonl", "eval");
  REQUIRE(evals.size() == 3);
  CHECK(evals[1].at("value").get<double>() < evals[0].at("value").get<double>());
}

// ---------------------------------------------------------------------------------------------------
TEST_CASE("finetune_vit/end-to-end: train, resume, reload, merge, errors") {
  const fs::path dir = fresh_dir("vit");
  const fs::path model = fixtures / "models/vit", data = fixtures / "data/cifar10-mini";
  const std::vector<std::string> common = {
      "--model", model.string(), "--data", data.string(), "--limit-train", "24", "--limit-test", "12",
      "--n", "100", "--epochs", "2", "--batch", "6", "--grad-accum", "2", "--log-every", "1",
      "--seed", "11"};
  const fs::path a = dir / "a";
  const Run r = run(FINETUNE_VIT, concat(common, {"--out", a.string(), "--save-merged"}), dir / "a.log");
  check_complete_run(r, a, 4, 2);
  CHECK(r.output.find("re-initialised") != std::string::npos);  // 5 labels in the file, 3 classes here
  CHECK(io::read_json(a / "results.json").at("classes") ==
        io::Json(std::vector<std::string>{"airplane", "cat", "ship"}));

  check_resume(FINETUNE_VIT, common, a, dir / "b", 3,
               {"adapter/adapter_model.safetensors", "test_predictions.tsv"});

  const fs::path c = dir / "c";
  const Run e = run(FINETUNE_VIT, concat(common, {"--adapter", (a / "adapter").string(), "--eval-only",
                                                  "--out", c.string()}), dir / "c.log");
  INFO(e.output);
  REQUIRE(e.status == 0);
  CHECK(io::read_json(c / "eval.json").at("value").get<double>() ==
        io::read_json(a / "results.json").at("last_value").get<double>());
  CHECK(read_file(c / "test_predictions.tsv") == read_file(a / "test_predictions.tsv"));

  const io::ImageFolder folder(data / "test");
  const io::ImageProcessor processor = io::ImageProcessor::from_json(a / "merged" / "preprocessor_config.json");
  const std::vector<Index> rows = {0, 15, 29};
  const io::ImageBatch batch = folder.batch(rows, processor);
  check_merged<models::ViTForImageClassification<float>>(
      model, a / "merged", a / "adapter", [&](Tape<float>& t, auto& m) { return m.forward(t, batch.pixels).logits; },
      1e-4);

  check_error(run(FINETUNE_VIT, concat(common, {"--out", (dir / "x").string(), "--data", (data / "train").string()}),
                  dir / "x1.log"), "finetune_vit", "train/train' is not a folder");
  check_error(run(FINETUNE_VIT, concat(common, {"--out", (dir / "x").string(), "--method", "dora"}),
                  dir / "x2.log"), "finetune_vit", "option --method expects fourierft, lora, bitfit, full or head");
  check_error(run(FINETUNE_VIT, concat(common, {"--out", (dir / "x").string(), "--n", "99999"}),
                  dir / "x3.log"), "finetune_vit", "n = 99999 spectral coefficients do not fit");
  // The other methods run through the same program.
  for (const char* method : {"lora", "bitfit", "head", "full"}) {
    const Run m = run(FINETUNE_VIT, concat(common, {"--out", (dir / method).string(), "--method", method,
                                                    "--epochs", "1"}), dir / (std::string(method) + ".log"));
    INFO(m.output);
    CHECK(m.status == 0);
  }
}

TEST_CASE("finetune_vit/learns: the loss falls on CIFAR-10 images") {
  const fs::path dir = fresh_dir("vit-learns");
  const Run r = run(FINETUNE_VIT, {"--model", (fixtures / "models/vit").string(), "--data",
                                   (fixtures / "data/cifar10-mini").string(), "--n", "200", "--epochs",
                                   "20", "--batch", "10", "--grad-accum", "1", "--head-lr", "3e-2",
                                   "--log-every", "10", "--out", (dir / "out").string()},
                    dir / "run.log");
  INFO(r.output);
  REQUIRE(r.status == 0);
  const auto [first, last] = first_and_last_loss(dir / "out" / "log.jsonl", 3);  // crops: noisy
  CHECK(last < first - 0.1);
}

// ---------------------------------------------------------------------------------------------------
namespace {

// tests/fixtures/models/llama-gqa (64 ids) plus a tokenizer.json over them: <unk> <s> </s>, "▁",
// a-z, some punctuation, the digits and A-Q (anything else is <unk>); BOS added, as Llama's.
fs::path llama_instruct_folder(const fs::path& dir) {
  const fs::path folder = dir / "llama";
  fs::create_directories(folder);
  for (const auto& f : fs::directory_iterator(fixtures / "models/llama-gqa"))
    if (f.is_regular_file()) fs::copy_file(f.path(), folder / f.path().filename());
  io::Json vocab = io::Json::object();
  std::int64_t id = 0;
  for (const char* t : {"<unk>", "<s>", "</s>", "\u2581"}) vocab[t] = id++;
  for (char c = 'a'; c <= 'z'; ++c) vocab[std::string(1, c)] = id++;
  for (char c : std::string("#:\n.,?!")) vocab[std::string(1, c)] = id++;
  for (char c = '0'; c <= '9'; ++c) vocab[std::string(1, c)] = id++;
  for (char c = 'A'; id < 64; ++c) vocab[std::string(1, c)] = id++;
  const io::Json tokenizer = {
      {"version", "1.0"},
      {"added_tokens", io::Json::array({{{"id", 0}, {"content", "<unk>"}, {"special", true}},
                                        {{"id", 1}, {"content", "<s>"}, {"special", true}},
                                        {{"id", 2}, {"content", "</s>"}, {"special", true}}})},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers", io::Json::array({{{"type", "Prepend"}, {"prepend", "\u2581"}},
                                         {{"type", "Replace"}, {"pattern", {{"String", " "}}},
                                          {"content", "\u2581"}}})}}},
      {"pre_tokenizer", nullptr},
      {"post_processor", nullptr},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders", io::Json::array({{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}},
                                       {"content", " "}},
                                      {{"type", "Fuse"}},
                                      {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}}},
      {"model", {{"type", "BPE"}, {"unk_token", "<unk>"}, {"fuse_unk", true}, {"byte_fallback", false},
                 {"vocab", vocab}, {"merges", io::Json::array()}}}};
  std::ofstream(folder / "tokenizer.json") << tokenizer.dump();
  // A ChatML chat template (its markers are <unk>s of this vocabulary: only the layout matters).
  const std::string chatml =
      "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] "
      "+ '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' "
      "}}{% endif %}";
  std::ofstream(folder / "tokenizer_config.json")
      << io::Json{{"add_bos_token", true}, {"add_eos_token", false}, {"bos_token", "<s>"},
                  {"eos_token", "</s>"}, {"unk_token", "<unk>"}, {"chat_template", chatml}}.dump();
  return folder;
}

// Made-up records in Alpaca's format and layout (indent 4, \u escapes, no final newline): some with
// an input, some without, an empty output, a surrogate pair. `answer(i)` gives record i's output.
template <class Answer>
fs::path write_alpaca_rows(const fs::path& file, int count, Answer answer) {
  io::Json rows = io::Json::array();
  const char* subjects[] = {"cats", "rivers", "bread", "clocks", "maps", "boats"};
  for (int i = 0; i < count; ++i) {
    const std::string subject = subjects[i % 6];
    rows.push_back({{"instruction", "Name a fact about " + subject + " number " + std::to_string(i) + "."},
                    {"input", i % 3 == 0 ? "Keep it short, caf\u00e9 style \U0001F600." : ""},
                    {"output", answer(i)}});
  }
  std::ofstream(file, std::ios::binary) << rows.dump(4, ' ', true);
  return file;
}

// FastChat question lines: two MT-Bench-style (2 turns) and one Vicuna-style (1 turn), made up.
fs::path write_questions(const fs::path& file) {
  std::ofstream out(file);
  out << R"({"question_id": 81, "category": "writing", "turns": ["Write a note about cats.", "Now make it shorter."]})" "\n"
      << R"({"question_id": 111, "category": "math", "turns": ["What is 2 plus 2?", "And 3 plus 3?"]})" "\n"
      << R"({"question_id": 7, "category": "generic", "turns": ["How do boats float?"]})" "\n";
  return file;
}

}  // namespace

TEST_CASE("finetune_instruct/end-to-end: train, resume, reload, answers, merge, errors") {
  const fs::path dir = fresh_dir("instruct");
  const fs::path model = llama_instruct_folder(dir);
  const fs::path data = write_alpaca_rows(dir / "rows.json", 40, [](int i) {
    return i == 5 ? std::string() : "It is a fact about number " + std::to_string(i) + ".";
  });
  const fs::path questions = write_questions(dir / "question.jsonl");
  // 40 records: 10 held out, 30 trained on in 8 micro-batches of 4 -> 4 steps of 2 per epoch.
  const std::vector<std::string> common = {
      "--model", model.string(), "--data", data.string(), "--n", "32", "--epochs", "2",
      "--batch", "4", "--grad-accum", "2", "--max-len", "320", "--eval-split", "0.25",
      "--split-seed", "1", "--eval-batch", "3", "--log-every", "1", "--seed", "3"};
  const std::vector<std::string> answering = {"--answer", questions.string(), "--max-new-tokens", "6",
                                              "--model-id", "tiny-fourierft"};
  const fs::path a = dir / "a";
  const Run r = run(FINETUNE_INSTRUCT, concat(concat(common, answering), {"--out", a.string(), "--save-merged"}),
                    dir / "a.log");
  check_complete_run(r, a, 8, 3);  // the held-out loss before training and after each epoch
  CHECK(r.output.find("train 30, held out 10") != std::string::npos);
  const io::Json results = io::read_json(a / "results.json");
  CHECK(results.at("train_examples") == 30);
  CHECK(results.at("held_out_examples") == 10);
  CHECK(results.at("trainable_params") == 2 * 2 * 32);  // q_proj and v_proj of 2 layers, n = 32
  CHECK(results.at("adapter_bytes").get<std::int64_t>() ==
        static_cast<std::int64_t>(fs::file_size(a / "adapter" / "adapter_model.safetensors")));
  REQUIRE(results.at("history").size() == 3);
  CHECK(results.at("eval_loss_before") == results.at("history")[0].at("eval_loss"));
  CHECK(results.at("eval_loss_after") == results.at("history")[2].at("eval_loss"));
  CHECK(results.at("eval_loss_before").get<double>() != results.at("eval_loss_after").get<double>());
  const io::Json config = io::read_json(a / "adapter" / "adapter_config.json");
  CHECK(config.at("peft_type") == "FOURIERFT");
  CHECK(config.at("task_type") == "CAUSAL_LM");
  CHECK(config.at("target_modules") == io::Json(std::vector<std::string>{"q_proj", "v_proj"}));

  // The answers: one FastChat model_answer line per question, the turns of its question.
  const fs::path answer_file = a / "model_answer" / "tiny-fourierft.jsonl";
  REQUIRE(fs::exists(answer_file));
  std::vector<io::Json> answers;
  {
    std::istringstream lines(read_file(answer_file));
    for (std::string line; std::getline(lines, line);) answers.push_back(io::parse_json(line, "answers"));
  }
  REQUIRE(answers.size() == 3);
  const std::vector<std::int64_t> ids = {81, 111, 7};
  const std::vector<std::size_t> turns = {2, 2, 1};
  for (std::size_t q = 0; q < answers.size(); ++q) {
    const io::Json& j = answers[q];
    INFO(j.dump());
    CHECK(j.size() == 5);
    CHECK(j.at("question_id").is_number_integer());
    CHECK(j.at("question_id") == ids[q]);
    CHECK(j.at("answer_id").is_string());
    CHECK(j.at("answer_id").get<std::string>().size() == 22);
    CHECK(j.at("model_id") == "tiny-fourierft");
    CHECK(j.at("tstamp").is_number());
    CHECK(j.at("tstamp").get<double>() > 1.6e9);
    REQUIRE(j.at("choices").is_array());
    REQUIRE(j.at("choices").size() == 1);
    CHECK(j.at("choices")[0].at("index") == 0);
    REQUIRE(j.at("choices")[0].at("turns").is_array());
    CHECK(j.at("choices")[0].at("turns").size() == turns[q]);
    for (const io::Json& t : j.at("choices")[0].at("turns")) {
      REQUIRE(t.is_string());
      const std::string text = t.get<std::string>();
      CHECK(text.find("</s>") == std::string::npos);  // special tokens removed
      CHECK(text.find("<unk>") == std::string::npos);
      CHECK((text.empty() || (text.front() != ' ' && text.back() != ' ')));  // stripped
    }
  }

  check_resume(FINETUNE_INSTRUCT, common, a, dir / "b", 3, {"adapter/adapter_model.safetensors"});

  // The saved adapter reloaded into the base model reproduces the held-out loss exactly, and
  // answers the questions with the same text (greedy turns and seeded sampling alike).
  const fs::path c = dir / "c";
  const Run e = run(FINETUNE_INSTRUCT, concat(concat(common, answering),
                                              {"--adapter", (a / "adapter").string(), "--eval-only",
                                               "--out", c.string()}), dir / "c.log");
  INFO(e.output);
  REQUIRE(e.status == 0);
  const io::Json eval = io::read_json(c / "eval.json");
  CHECK(eval.at("eval_loss").get<double>() == results.at("eval_loss_after").get<double>());
  CHECK(eval.at("held_out_examples") == 10);
  {
    std::istringstream lines(read_file(c / "model_answer" / "tiny-fourierft.jsonl"));
    std::size_t q = 0;
    for (std::string line; std::getline(lines, line); ++q) {
      REQUIRE(q < answers.size());
      CHECK(io::parse_json(line, "answers").at("choices") == answers[q].at("choices"));
    }
    CHECK(q == answers.size());
  }

  // --save-merged: a plain LlamaForCausalLM folder computing base + adapter.
  const Tensor<std::int64_t> tokens = Tensor<std::int64_t>::from_data({1, 6}, {1, 40, 12, 3, 9, 33});
  check_merged<models::LlamaForCausalLM<float>>(
      model, a / "merged", a / "adapter",
      [&](Tape<float>& t, auto& m) { return m.forward(t, tokens).logits; }, 1e-4);
  CHECK(fs::exists(a / "merged" / "tokenizer.json"));

  // LoRA on every linear layer but lm_head (Table 4's † rows) through the same program.
  const Run lora = run(FINETUNE_INSTRUCT, concat(common, {"--out", (dir / "lora").string(), "--method",
                                                          "lora", "--lora-targets", "all-linear", "--lora-r", "4",
                                                          "--lr", "1e-3", "--epochs", "1"}),
                       dir / "lora.log");
  INFO(lora.output);
  REQUIRE(lora.status == 0);
  CHECK(io::read_json(dir / "lora" / "adapter" / "adapter_config.json").at("target_modules") == "all-linear");
  CHECK(io::read_json(dir / "lora" / "results.json").at("trainable_params") ==
        2 * 4 * (2 * (32 + 32) + 2 * (32 + 16) + 3 * (32 + 80)));  // r = 4: q,k,v,o,gate,up,down

  // Activation checkpointing recomputes each layer in backward: the same adapter, byte for byte.
  const Run recomputed = run(FINETUNE_INSTRUCT, concat(common, {"--out", (dir / "ckpt").string(),
                                                                "--checkpointing"}), dir / "ckpt.log");
  INFO(recomputed.output);
  REQUIRE(recomputed.status == 0);
  CHECK(read_file(dir / "ckpt" / "adapter" / "adapter_model.safetensors") ==
        read_file(a / "adapter" / "adapter_model.safetensors"));
  // BF16 frozen weights (rounded from the F32 file): trains, and the loss still falls.
  const Run bf16 = run(FINETUNE_INSTRUCT, concat(common, {"--out", (dir / "bf16").string(),
                                                          "--frozen-dtype", "bf16"}), dir / "bf16.log");
  INFO(bf16.output);
  REQUIRE(bf16.status == 0);
  const io::Json bf16_results = io::read_json(dir / "bf16" / "results.json");
  CHECK(bf16_results.at("eval_loss_after").get<double>() < bf16_results.at("eval_loss_before").get<double>());

  // The other two templates, answers included (fourierft: no EOS in its targets, the stop strings
  // end its answers; chat: the folder's chat_template rendered by the Jinja interpreter).
  for (const char* prompt_template : {"fourierft", "chat"}) {
    const fs::path t = dir / prompt_template;
    const Run other = run(FINETUNE_INSTRUCT, concat(concat(common, answering),
                                                    {"--out", t.string(), "--template", prompt_template,
                                                     "--epochs", "1"}), dir / (std::string(prompt_template) + ".log"));
    INFO(other.output);
    REQUIRE(other.status == 0);
    CHECK(io::read_json(t / "results.json").at("template") == prompt_template);
    std::istringstream lines(read_file(t / "model_answer" / "tiny-fourierft.jsonl"));
    std::size_t count = 0;
    for (std::string line; std::getline(lines, line); ++count)
      CHECK(io::parse_json(line, "answers").at("choices")[0].at("turns").size() == (count == 2 ? 1u : 2u));
    CHECK(count == 3);
  }

  // Bad inputs: one clear error each, exit status 1.
  const fs::path x = dir / "x";
  check_error(run(FINETUNE_INSTRUCT, concat(common, {"--out", x.string(), "--data", (dir / "missing.json").string()}),
                  dir / "x1.log"), "finetune_instruct", "missing.json");
  check_error(run(FINETUNE_INSTRUCT, concat(common, {"--out", x.string(), "--template", "vicuna"}),
                  dir / "x2.log"), "finetune_instruct", "'vicuna'");
  std::ofstream(dir / "bad.json") << R"([{"instruction": "a", "input": "", "output": "b"},)"
                                     R"( {"instruction": "c", "input": "", "output": "d"},)"
                                     R"( {"instruction": "e", "input": "", "output": 5}])";
  check_error(run(FINETUNE_INSTRUCT, concat(common, {"--out", x.string(), "--data", (dir / "bad.json").string()}),
                  dir / "x3.log"), "finetune_instruct", "bad.json: record 2");
  check_error(run(FINETUNE_INSTRUCT, {"--model", model.string(), "--out", x.string()}, dir / "x4.log"),
              "finetune_instruct", "missing required option --data");
  check_error(run(FINETUNE_INSTRUCT, concat(common, {"--out", x.string(), "--preset", "llama3-70b-alpaca"}),
                  dir / "x5.log"), "finetune_instruct", "unknown preset 'llama3-70b-alpaca'");
  check_error(run(FINETUNE_INSTRUCT, concat(common, {"--out", x.string(), "--frozen-dtype", "fp8"}),
                  dir / "x6.log"), "finetune_instruct", "option --frozen-dtype expects keep, f32, bf16 or f16");
  // (RMSNorm rescales a huge ΔW away, so a huge --scaling stays finite here: a huge step does not.)
  const Run nan = run(FINETUNE_INSTRUCT, concat(common, {"--out", (dir / "nan").string(), "--lr", "1e38"}),
                      dir / "x7.log");
  check_error(nan, "finetune_instruct", "the training loss is");
  CHECK(nan.output.find("at step ") != std::string::npos);
}

TEST_CASE("finetune_instruct/learns: the held-out response loss falls") {
  // Every response is the same short sentence: the adapter only has to learn to say it.
  const fs::path dir = fresh_dir("instruct-learns");
  const fs::path model = llama_instruct_folder(dir);
  const fs::path data = write_alpaca_rows(dir / "rows.json", 60, [](int) { return std::string("it is good."); });
  const Run r = run(FINETUNE_INSTRUCT, {"--model", model.string(), "--data", data.string(), "--n", "200",
                                       "--epochs", "3", "--batch", "4", "--max-len", "320",
                                       "--log-every", "5", "--out", (dir / "out").string()},
                    dir / "run.log");
  INFO(r.output);
  REQUIRE(r.status == 0);
  const io::Json results = io::read_json(dir / "out" / "results.json");
  CHECK(results.at("eval_loss_after").get<double>() < results.at("eval_loss_before").get<double>() - 0.5);
  const auto [first, last] = first_and_last_loss(dir / "out" / "log.jsonl", 2);
  CHECK(last < first - 0.5);
}
