// study_efficiency — parameter efficiency, like the paper's Figure 1: a held-out metric against
// the number of trainable adapter parameters, FourierFT at several n beside LoRA at several ranks
// r, on a real transfer task, from a small pre-trained checkpoint.
//
// What it does (--task e2e, the default). Takes the committed tiny GPT-2
// (examples/checkpoints/gpt2-tiny-glue: 2 layers of width 128, pre-trained here as a causal LM on
// general English sentences from GLUE, never on restaurant text) to E2E NLG data-to-text in the
// restaurant domain (examples/data/e2e-slice: 1,491 references of 200 meaning representations to
// train on, 661 references of 80 other MRs held out). Each example is finetune_e2e's
// "MR <|endoftext|> reference <|endoftext|>" with the loss on the reference tokens only
// (examples/e2e_lm.hpp, shared with finetune_e2e). Every point starts from the same weights and
// sees the same data order, dropout masks and step count; the metric is the teacher-forced loss on
// the held-out references (nats per reference token; perplexity = e^loss), a smooth quantity:
//   zero-shot  no training: the x = 0 reference line
//   FourierFT  n coefficients on the q and v slices of every block's c_attn (as finetune_e2e),
//              scaling alpha = 300·(128·128)/(768·768) = 8.33: the paper's alpha/(M·N)
//              (docs/fourierft.md §4);                     2·L·n adapter parameters
//   LoRA       rank r on every block's c_attn (q, k, v, as finetune_e2e), alpha = 2r;
//                                                           L·r·(C + 3C) adapter parameters
//   full       every weight trains: the top reference line
// One learning rate per method for every size (as the paper's figure), chosen by short trials
// (docs/peft.md): FourierFT 1.0, LoRA 2e-2, full 1e-3. 1 epoch of 94 steps of 16 examples, AdamW,
// linear decay, no label smoothing (the metric is the unsmoothed loss).
//
// --task vit keeps the earlier experiment: the committed tiny ViT (examples/checkpoints/
// vit-tiny-cifar5) on five new CIFAR-10 classes, test accuracy against adapter parameters
// (examples/vit_transfer.hpp). That checkpoint cannot separate the methods (every run lands at
// 0.50-0.52, noise ±0.022): kept for comparison, not the figure in the docs.
//
// Run:   ./build/examples/study_efficiency --out docs/figures          (about 5 minutes, 2 cores)
//        ./build/examples/study_efficiency --small                     (seconds: the CTest)
//        ./build/examples/study_efficiency --task vit --out out/study_efficiency_vit
// Output (in --out): efficiency.csv and efficiency.png (the metric vs adapter parameters, log x).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "fourierft/fourierft.hpp"
#include "fourierft/models/gpt2.hpp"
#include "fourierft/train/log.hpp"
#include "fourierft/train/options.hpp"
#include "fourierft/train/seeds.hpp"
#include "fourierft/util/args.hpp"
#include "fourierft/util/atomic_file.hpp"
#include "e2e_lm.hpp"
#include "plot.hpp"
#include "vit_transfer.hpp"

using namespace fourierft;
namespace fs = std::filesystem;

namespace {

const char* const usage = R"(usage: study_efficiency [options]

A held-out metric vs trainable adapter parameters: FourierFT at several n, LoRA at several r.
  --task e2e|vit     e2e: tiny GPT-2 -> E2E, held-out loss; vit: tiny ViT -> new classes   [e2e]
  --model DIR        [e2e: examples/checkpoints/gpt2-tiny-glue; vit: .../vit-tiny-cifar5]
  --data DIR         [e2e: examples/data/e2e-slice (devset.csv, testset_w_refs.csv);
                      vit: examples/data/cifar5-target (train/, test/ class folders)]
  --n-list LIST      FourierFT n per matrix      [e2e: 16,64,256,1024,4096; vit: 8,32,128,512,2048]
  --r-list LIST      LoRA ranks                                                       [1,2,4,8]
  --epochs E         [e2e 1, vit 3]   --batch B [e2e 16, vit 50]   --seed S [0]
  --limit-train N    training examples, 0 = all                     [e2e 0 (1,491), vit 1000]
  --threads T [2]  --out DIR [out/study_efficiency]
  --small            a seconds-long run (few examples, 1 epoch, n 16,64, r 1): the CTest
e2e only:
  --limit-test N     held-out references, 0 = all (661)                                   [0]
  --max-len T        tokens per example                                                 [128]
  --scaling A        FourierFT alpha                                                   [8.33]
  --lr-fourierft LR, --lr-lora LR, --lr-full LR                          [1, 2e-2, 1e-3]
  --no-full          skip full fine-tuning
)";

std::vector<Index> parse_list(const std::string& option, const std::string& text) {
  std::vector<Index> values;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    check(end != item.c_str() && *end == '\0' && v >= 1, "option ", option, ": '", item,
          "' is not a whole number >= 1");
    values.push_back(static_cast<Index>(v));
  }
  check(!values.empty(), "option ", option, " is empty");
  return values;
}

// One point of the figure.
struct Point {
  std::string method;        // zero-shot | head | fourierft | lora | full
  Index setting = 0;         // n or r (0 otherwise)
  Index adapter_params = 0;  // what the method trains (vit: minus the classifier)
  Index trainable = 0;
  double lr = 0;
  double before = 0, after = 0;  // e2e: held-out loss; vit: test accuracy
  double seconds = 0;
};

// The chart: the adapter curves, and flat reference lines for the points without a size
// (zero-shot, head only) or far beyond the adapters' (full fine-tuning). The y range leaves room
// below the lowest line for the legend.
void write_chart(const fs::path& file, const std::vector<Point>& points, bool e2e,
                 const std::string& title, const std::string& y_label) {
  double x_min = 1e300, x_max = 0, y_lo = 1e300, y_hi = -1e300;
  for (const Point& p : points) {
    y_lo = std::min(y_lo, p.after);
    y_hi = std::max(y_hi, p.after);
    if (p.method == "fourierft" || p.method == "lora") {
      x_min = std::min(x_min, double(p.adapter_params));
      x_max = std::max(x_max, double(p.adapter_params));
    }
  }
  if (x_max <= 0) x_min = 1, x_max = 10;
  const double pad = y_hi > y_lo ? y_hi - y_lo : 1.0;
  std::vector<examples::plot::Series> series;
  examples::plot::Series fourier{.label = "FourierFT (n per matrix)"}, lora{.label = "LoRA (rank r)"};
  for (const Point& p : points) {
    if (p.method == "fourierft") fourier.x.push_back(double(p.adapter_params)), fourier.y.push_back(p.after);
    if (p.method == "lora") lora.x.push_back(double(p.adapter_params)), lora.y.push_back(p.after);
  }
  series.push_back(fourier);
  series.push_back(lora);
  for (const Point& p : points)
    if (p.method == "zero-shot" || p.method == "head" || p.method == "full") {
      const std::string label =
          p.method == "full" ? str_cat("full fine-tuning (", train::with_commas(p.adapter_params), ")")
                             : p.method == "head" ? std::string("head only") : std::string("no adaptation");
      series.push_back({.label = label, .x = {x_min, x_max}, .y = {p.after, p.after},
                        .marker = examples::plot::Marker::none, .dashed = true});
    }
  examples::plot::write_png(
      file, examples::plot::line_chart(
                series, {.title = title,
                         .x_label = e2e ? "trainable adapter parameters"
                                        : "trainable adapter parameters (classifier excluded)",
                         .y_label = y_label, .log_x = true,
                         .y_min = e2e ? std::optional<double>(y_lo - 0.45 * pad) : std::nullopt,
                         .y_max = e2e ? std::optional<double>(y_hi + 0.05 * pad) : std::nullopt,
                         .legend = e2e ? examples::plot::Legend::bottom_left : examples::plot::Legend::top_right}));
}

// ===========================================================================================
// --task e2e: the tiny GPT-2 to E2E data-to-text, held-out loss on the references
// ===========================================================================================

struct E2ESettings {
  fs::path model_dir;
  int epochs = 1;
  Index batch = 16;
  Index max_len = 128;
  Index eval_batch = 32;
  std::uint64_t seed = 0;
  double scaling = 300.0 * (128.0 * 128.0) / (768.0 * 768.0);
};

struct E2EData {
  std::vector<io::LmExample> train, test;
};

// One method at one size: the checkpoint, the adapter (zero spectra, LoRA B = 0: the start is
// exactly the pre-trained model, checked on the first held-out batch against `probe_loss`), AdamW
// with linear decay to 0 (no warm-up, no weight decay, clip 1), then the held-out loss.
Point run_e2e(const std::string& method, Index setting, double lr, const E2EData& data,
              const E2ESettings& s, double probe_loss) {
  const auto start = std::chrono::steady_clock::now();
  std::unique_ptr<examples::Gpt2Model> model = examples::Gpt2Model::from_pretrained(s.model_dir);
  train::RunOptions opt;
  opt.method = method;
  opt.lr = opt.head_lr = lr;
  opt.seed = s.seed;
  opt.n = setting;
  opt.scaling = s.scaling;
  opt.lora_r = setting;
  opt.lora_alpha = 2.0 * static_cast<double>(setting);
  peft::AdapterSpec spec =
      train::adapter_spec(opt, examples::e2e_adapter_targets(s.model_dir.filename().string()));
  if (auto* f = spec.config.find<peft::FourierFTConfig>()) f->init_weights = true;  // zero spectra
  Rng init_rng(train::mix_seed(s.seed, 0xADA));
  const peft::AppliedAdapters applied = peft::apply_adapter(*model, spec, init_rng);
  Point p{method, setting, applied.params.trainable, applied.params.trainable, lr, 0, 0, 0};

  const std::vector<io::LmExample> probe(
      data.test.begin(), data.test.begin() + std::min<std::ptrdiff_t>(s.eval_batch, std::ssize(data.test)));
  p.before = examples::e2e_eval_loss(*model, probe, s.eval_batch, s.max_len);
  check(std::abs(p.before - probe_loss) <= 1e-5 * std::abs(probe_loss), method, " ", setting,
        " starts at held-out loss ", p.before, ", not at the pre-trained model's ", probe_loss,
        ": the adapter changed the model at init");

  optim::AdamW<float> optimizer(train::param_groups(*model, spec, opt), {.lr = lr});
  const auto N = static_cast<Index>(data.train.size());
  const std::int64_t total_steps = train::steps_per_epoch(N, s.batch, 1) * s.epochs;
  const optim::Schedule schedule = optim::linear_warmup_decay(0, total_steps);
  const std::vector<Var<float>> params = optimizer.parameters();
  Tape<float> tape;
  std::int64_t step = 0;
  for (int epoch = 0; epoch < s.epochs; ++epoch)
    for (const std::vector<Index>& batch : train::epoch_batches(N, s.batch, s.seed, epoch)) {
      model->train();
      train::reseed_dropout(*model, s.seed, static_cast<std::uint64_t>(step));
      const io::LmBatch lm_batch = examples::e2e_make_batch(data.train, batch, s.max_len);
      const Var<float> loss = examples::e2e_batch_loss(tape, *model, lm_batch, 0.0);
      train::check_finite_loss(loss.item(), step + 1, epoch + 1);
      tape.backward(loss);
      tape.clear();
      optim::clip_grad_norm(params, 1.0);  // global norm 1
      optimizer.scale_lr(schedule(step++));
      optimizer.step();
      optimizer.zero_grad();
    }
  p.after = examples::e2e_eval_loss(*model, data.test, s.eval_batch, s.max_len);
  p.seconds = train::seconds_since(start);
  return p;
}

int study_e2e(util::Args& args, bool small, const fs::path& out, int threads) {
  E2ESettings s;
  s.model_dir = args.str("--model", FOURIERFT_EXAMPLES_DATA_DIR "/../checkpoints/gpt2-tiny-glue");
  const fs::path data_dir = args.str("--data", FOURIERFT_EXAMPLES_DATA_DIR "/e2e-slice");
  const std::vector<Index> n_list =
      parse_list("--n-list", args.str("--n-list", small ? "16,64" : "16,64,256,1024,4096"));
  const std::vector<Index> r_list = parse_list("--r-list", args.str("--r-list", small ? "1" : "1,2,4,8"));
  s.epochs = static_cast<int>(args.integer("--epochs", 1));
  s.batch = args.integer("--batch", 16);
  s.max_len = args.integer("--max-len", 128);
  s.seed = static_cast<std::uint64_t>(args.integer("--seed", 0));
  s.scaling = args.real("--scaling", s.scaling);
  const Index limit_train = args.integer("--limit-train", small ? 64 : 0);
  const Index limit_test = args.integer("--limit-test", small ? 32 : 0);
  const double lr_fourierft = args.real("--lr-fourierft", 1.0);
  const double lr_lora = args.real("--lr-lora", 2e-2);
  const double lr_full = args.real("--lr-full", 1e-3);
  const bool full = !args.has("--no-full");
  args.reject_unknown();
  check(s.epochs >= 1 && s.batch >= 1, "options --epochs and --batch must be >= 1");
  check(s.max_len >= 2, "option --max-len must be >= 2, got ", s.max_len);
  check(limit_train >= 0 && limit_test >= 0, "options --limit-train and --limit-test must be >= 0");
  check(s.scaling > 0 && lr_fourierft > 0 && lr_lora > 0 && lr_full > 0,
        "options --scaling and --lr-* must be > 0");
  check<IoError>(fs::is_directory(s.model_dir), "--model ", s.model_dir.string(),
                 ": no such checkpoint folder (config.json, model.safetensors, vocab.json, merges.txt)");

  const io::BpeTokenizer tokenizer = io::BpeTokenizer::load(s.model_dir);
  check(tokenizer.special_tokens().eos.has_value(), s.model_dir.string(),
        ": the tokenizer has no <|endoftext|> token (not a GPT-2 vocabulary)");
  E2EData data;
  const io::E2EDataset train_set = examples::read_e2e(data_dir, "csv", false);
  const io::E2EDataset test_set = examples::read_e2e(data_dir, "csv", true);
  data.train = examples::tokenize_e2e(tokenizer, train_set, limit_train);
  data.test = examples::tokenize_e2e(tokenizer, test_set, limit_test);

  // The zero-shot point: the checkpoint as it is.
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_ptr<examples::Gpt2Model> base = examples::Gpt2Model::from_pretrained(s.model_dir);
  check(s.max_len <= base->config.n_positions, "option --max-len ", s.max_len, " exceeds the model's ",
        "n_positions = ", base->config.n_positions);
  const Index total_params = base->num_parameters();
  const std::vector<io::LmExample> probe(
      data.test.begin(), data.test.begin() + std::min<std::ptrdiff_t>(s.eval_batch, std::ssize(data.test)));
  const double probe_loss = examples::e2e_eval_loss(*base, probe, s.eval_batch, s.max_len);
  const double zero_shot = examples::e2e_eval_loss(*base, data.test, s.eval_batch, s.max_len);
  base.reset();
  std::printf("study_efficiency (e2e): %s (%s parameters) -> %zu training references of %s, %zu "
              "held out (%s); %d epochs x %lld steps of %lld, %d threads\n",
              s.model_dir.string().c_str(), train::with_commas(total_params).c_str(),
              data.train.size(), train_set.path.c_str(), data.test.size(), test_set.path.c_str(),
              s.epochs, static_cast<long long>(train::steps_per_epoch(static_cast<Index>(data.train.size()), s.batch, 1)),
              static_cast<long long>(s.batch), threads);
  std::printf("%-10s %8s %14s %9s %10s %10s %8s\n", "method", "setting", "adapter params", "lr",
              "test loss", "perplexity", "seconds");
  std::vector<Point> points;
  auto report = [&](const Point& p) {
    std::printf("%-10s %8lld %14lld %9.1e %10.4f %10.3f %8.1f\n", p.method.c_str(),
                static_cast<long long>(p.setting), static_cast<long long>(p.adapter_params), p.lr,
                p.after, std::exp(p.after), p.seconds);
    points.push_back(p);
  };
  report({"zero-shot", 0, 0, 0, 0, zero_shot, zero_shot, train::seconds_since(t0)});
  for (Index n : n_list) report(run_e2e("fourierft", n, lr_fourierft, data, s, probe_loss));
  for (Index r : r_list) report(run_e2e("lora", r, lr_lora, data, s, probe_loss));
  if (full) report(run_e2e("full", 0, lr_full, data, s, probe_loss));

  std::ostringstream csv;
  csv << "method,setting,adapter_params,lr,test_loss,test_perplexity,seconds\n";
  for (const Point& p : points)
    csv << p.method << ',' << p.setting << ',' << p.adapter_params << ',' << p.lr << ',' << p.after
        << ',' << std::exp(p.after) << ',' << p.seconds << '\n';
  fs::create_directories(out);
  util::write_file_atomically(out / "efficiency.csv", csv.str());
  write_chart(out / "efficiency.png", points, true,
              "Tiny GPT-2 (pre-trained on GLUE text) -> E2E restaurant descriptions",
              "held-out loss on the references (nats per token)");
  std::printf("wrote %s and %s\n", (out / "efficiency.csv").string().c_str(),
              (out / "efficiency.png").string().c_str());
  return 0;
}

// ===========================================================================================
// --task vit: the tiny ViT to five new CIFAR-10 classes, test accuracy
// ===========================================================================================

int study_vit(util::Args& args, bool small, const fs::path& out, int threads) {
  const fs::path model_dir =
      args.str("--model", FOURIERFT_EXAMPLES_DATA_DIR "/../checkpoints/vit-tiny-cifar5");
  const fs::path data_dir = args.str("--data", FOURIERFT_EXAMPLES_DATA_DIR "/cifar5-target");
  const std::vector<Index> n_list =
      parse_list("--n-list", args.str("--n-list", small ? "8,64" : "8,32,128,512,2048"));
  const std::vector<Index> r_list = parse_list("--r-list", args.str("--r-list", small ? "1" : "1,2,4,8"));
  examples::TransferSettings base;
  base.epochs = static_cast<int>(args.integer("--epochs", small ? 1 : 3));
  base.batch_size = args.integer("--batch", 50);
  const Index limit_train = args.integer("--limit-train", small ? 100 : 1000);
  base.opt.seed = static_cast<std::uint64_t>(args.integer("--seed", 0));
  base.opt.scaling = 100;
  base.opt.head_lr = 5e-3;
  args.reject_unknown();
  check(base.epochs >= 1 && base.batch_size >= 1, "options --epochs and --batch must be >= 1");

  const io::DecodedImageFolder train_set(data_dir / "train"), test_set(data_dir / "test");
  const std::vector<Index> items = examples::pick_balanced(train_set, limit_train);
  const io::ImageProcessor processor =
      io::ImageProcessor::from_json(model_dir / "preprocessor_config.json");
  std::printf("study_efficiency (vit): %s -> %zu training / %lld test images of %zu new classes, "
              "%d epochs, %d threads\n", model_dir.string().c_str(), items.size(),
              static_cast<long long>(test_set.size()), train_set.classes().size(), base.epochs,
              threads);
  std::printf("%-10s %8s %14s %10s %10s %9s %8s\n", "method", "setting", "adapter params",
              "trainable", "acc before", "acc after", "seconds");

  // Learning rates: the README demo's (FourierFT 0.05 with scaling 100, LoRA 5e-3 with alpha = 2r,
  // head 5e-3).
  std::vector<Point> points;
  auto run = [&](const std::string& method, Index setting, double lr) {
    examples::TransferSettings s = base;
    s.opt.method = method;
    s.lr = lr;
    if (method == "fourierft") s.opt.n = setting;
    if (method == "lora") {
      s.opt.lora_r = setting;
      s.opt.lora_alpha = 2.0 * static_cast<double>(setting);
    }
    const examples::TransferResult r =
        examples::run_transfer(model_dir, train_set, items, test_set, processor, s);
    Point p{method, setting, r.trainable - r.classifier, r.trainable, lr,
            r.accuracy_before, r.accuracy_after, r.seconds};
    std::printf("%-10s %8lld %14lld %10lld %10.4f %9.4f %8.1f\n", method.c_str(),
                static_cast<long long>(setting), static_cast<long long>(p.adapter_params),
                static_cast<long long>(p.trainable), p.before, p.after, p.seconds);
    points.push_back(p);
  };
  run("head", 0, 5e-3);
  for (Index n : n_list) run("fourierft", n, 0.05);
  for (Index r : r_list) run("lora", r, 5e-3);
  // Zero-initialised spectra and LoRA B: every run must start exactly at the head-only model.
  for (const Point& p : points)
    check(p.before == points.front().before, p.method, " ", p.setting, " starts at accuracy ",
          p.before, ", not at the pre-trained model's ", points.front().before,
          ": the adapter changed the model at init");

  std::ostringstream csv;
  csv << "method,setting,adapter_params,trainable,acc_before,acc_after,seconds\n";
  for (const Point& p : points)
    csv << p.method << ',' << p.setting << ',' << p.adapter_params << ',' << p.trainable << ','
        << p.before << ',' << p.after << ',' << p.seconds << '\n';
  fs::create_directories(out);
  util::write_file_atomically(out / "efficiency.csv", csv.str());
  write_chart(out / "efficiency.png", points, false, "Transfer to 5 new CIFAR-10 classes (tiny ViT)",
              "test accuracy");
  std::printf("wrote %s and %s\n", (out / "efficiency.csv").string().c_str(),
              (out / "efficiency.png").string().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  try {
    util::Args args(argc, argv, {"--help", "--small", "--no-full"});
    if (args.has("--help")) {
      std::cout << usage;
      return 0;
    }
    const std::string task = args.str("--task", "e2e");
    check(task == "e2e" || task == "vit", "option --task expects e2e or vit, got '", task, "'");
    const bool small = args.has("--small");  // the CTest's seconds-long run
    const int threads = static_cast<int>(args.integer("--threads", 2));
    const fs::path out = args.str("--out", "out/study_efficiency");
    check(threads >= 1, "option --threads must be >= 1");
    check(args.positional().empty(), "unexpected argument '",
          args.positional().empty() ? "" : args.positional()[0], "' (options start with --)");
    set_num_threads(threads);
    reuse_freed_memory();
    ops::spectral::reproducible_fft(true);
    return task == "e2e" ? study_e2e(args, small, out, threads) : study_vit(args, small, out, threads);
  } catch (const std::exception& e) {  // fourierft::Error names the file, tensor or option
    return train::report_error("study_efficiency", e);
  }
}
