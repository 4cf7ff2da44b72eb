// study_efficiency — parameter efficiency, like the paper's Figure 1: test accuracy against the
// number of trainable adapter parameters, FourierFT at several n beside LoRA at several ranks r,
// on a real transfer task, from a small pre-trained checkpoint.
//
// What it does. Takes the committed tiny ViT (examples/checkpoints/vit-tiny-cifar5, pre-trained
// here on airplane, automobile, bird, cat, deer) to five new CIFAR-10 classes (dog, frog, horse,
// ship, truck; examples/data/cifar5-target) with examples/vit_transfer.hpp's run_transfer: the same
// start, fresh classifier, data order, augmentation and step count for every point. Adapters sit
// on query and value of every layer (4 layers of 128 x 128 here):
//   FourierFT  n coefficients per adapted matrix:   n per layer-matrix,   2·L·n in all
//   LoRA       rank r:                             2·d·r per layer-matrix, 2·L·2·d·r in all
//   head       only the classifier trains (the x = 0 reference line)
// The classifier (d·classes + classes) trains in every run and is not counted on the x axis.
//
// Run:   ./build/examples/study_efficiency [--out docs/figures] [--epochs 3] [--limit-train 1000]
//          [--n-list 8,32,128,512,2048] [--r-list 1,2,4,8] [--threads 2]
// Output (in --out): efficiency.csv (method, setting, adapter_params, trainable, acc_before,
//   acc_after, seconds) and efficiency.png (accuracy vs adapter parameters, log x).
// The defaults take ~10 runs of 1-3 minutes on 2 cores. Learning rates: the demo's (FourierFT 0.05
// with scaling 100, LoRA 5e-3 with alpha = 2r, head 5e-3): one setting per method for every size,
// as the paper's figure does.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "fourierft/fourierft.hpp"
#include "fourierft/util/args.hpp"
#include "fourierft/util/atomic_file.hpp"
#include "fourierft/util/plot.hpp"
#include "vit_transfer.hpp"

using namespace fourierft;
namespace fs = std::filesystem;

namespace {

const char* const usage = R"(usage: study_efficiency [options]

Accuracy vs trainable adapter parameters: FourierFT at several n, LoRA at several r, head only.
  --model DIR        [examples/checkpoints/vit-tiny-cifar5]
  --data DIR         train/ and test/ class folders   [examples/data/cifar5-target]
  --n-list LIST      FourierFT n per matrix            [8,32,128,512,2048]
  --r-list LIST      LoRA ranks                        [1,2,4,8]
  --epochs E [3]  --batch B [50]  --limit-train N (0 = all) [1000]  --seed S [0]
  --threads T [2]  --out DIR [out/study_efficiency]
  --small            a seconds-long run (100 images, 1 epoch, n 8,64, r 1): the CTest
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

struct Point {
  std::string method;
  Index setting = 0;         // n or r (0 for head)
  Index adapter_params = 0;  // trainable minus the classifier
  examples::TransferResult result;
};

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  try {
    util::Args args(argc, argv, {"--help", "--small"});
    if (args.has("--help")) {
      std::cout << usage;
      return 0;
    }
    const fs::path model_dir =
        args.str("--model", FOURIERFT_EXAMPLES_DATA_DIR "/../checkpoints/vit-tiny-cifar5");
    const fs::path data_dir = args.str("--data", FOURIERFT_EXAMPLES_DATA_DIR "/cifar5-target");
    const bool small = args.has("--small");  // the CTest's seconds-long run
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
    const int threads = static_cast<int>(args.integer("--threads", 2));
    const fs::path out = args.str("--out", "out/study_efficiency");
    args.reject_unknown();
    check(base.epochs >= 1 && base.batch_size >= 1 && threads >= 1,
          "options --epochs, --batch, --threads must be >= 1");
    set_num_threads(threads);
    reuse_freed_memory();
    train::reproducible_fft(true);

    const train::DecodedImageFolder train_set(data_dir / "train"), test_set(data_dir / "test");
    const std::vector<Index> items = examples::pick_balanced(train_set, limit_train);
    const io::ImageProcessor processor =
        io::ImageProcessor::from_json(model_dir / "preprocessor_config.json");
    std::printf("study_efficiency: %s -> %zu training / %lld test images of %zu new classes, %d "
                "epochs, %d threads\n", model_dir.string().c_str(), items.size(),
                static_cast<long long>(test_set.size()), train_set.classes().size(), base.epochs,
                threads);
    std::printf("%-10s %8s %14s %10s %10s %9s %8s\n", "method", "setting", "adapter params",
                "trainable", "acc before", "acc after", "seconds");

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
      Point p{method, setting, 0, examples::run_transfer(model_dir, train_set, items, test_set, processor, s)};
      p.adapter_params = p.result.trainable - p.result.classifier;
      std::printf("%-10s %8lld %14lld %10lld %10.4f %9.4f %8.1f\n", method.c_str(),
                  static_cast<long long>(setting), static_cast<long long>(p.adapter_params),
                  static_cast<long long>(p.result.trainable), p.result.accuracy_before,
                  p.result.accuracy_after, p.result.seconds);
      points.push_back(p);
    };
    run("head", 0, 5e-3);
    for (Index n : n_list) run("fourierft", n, 0.05);
    for (Index r : r_list) run("lora", r, 5e-3);
    // Zero-initialised spectra and LoRA B: every run must start exactly at the head-only model.
    for (const Point& p : points)
      check(p.result.accuracy_before == points.front().result.accuracy_before, p.method, " ",
            p.setting, " starts at accuracy ", p.result.accuracy_before, ", not at the pre-trained ",
            "model's ", points.front().result.accuracy_before, ": the adapter changed the model at init");

    // ---- CSV and figure ------------------------------------------------------------------------
    std::ostringstream csv;
    csv << "method,setting,adapter_params,trainable,acc_before,acc_after,seconds\n";
    for (const Point& p : points)
      csv << p.method << ',' << p.setting << ',' << p.adapter_params << ',' << p.result.trainable
          << ',' << p.result.accuracy_before << ',' << p.result.accuracy_after << ','
          << p.result.seconds << '\n';
    fs::create_directories(out);
    util::write_file_atomically(out / "efficiency.csv", csv.str());

    util::plot::Series fourier{.label = "FourierFT (n per matrix)"}, lora{.label = "LoRA (rank r)"},
        head{.label = "head only"};
    double x_min = 1e300, x_max = 0;
    for (const Point& p : points)
      if (p.method != "head") {
        x_min = std::min(x_min, double(p.adapter_params));
        x_max = std::max(x_max, double(p.adapter_params));
      }
    for (const Point& p : points) {
      if (p.method == "fourierft") fourier.x.push_back(double(p.adapter_params)), fourier.y.push_back(p.result.accuracy_after);
      if (p.method == "lora") lora.x.push_back(double(p.adapter_params)), lora.y.push_back(p.result.accuracy_after);
      if (p.method == "head") head.x = {x_min, x_max}, head.y = {p.result.accuracy_after, p.result.accuracy_after};
    }
    util::plot::write_png(out / "efficiency.png",
                    util::plot::line_chart({fourier, lora, head},
                                     {.title = "Transfer to 5 new CIFAR-10 classes (tiny ViT)",
                                      .x_label = "trainable adapter parameters (classifier excluded)",
                                      .y_label = "test accuracy", .log_x = true}));
    std::printf("wrote %s and %s\n", (out / "efficiency.csv").string().c_str(),
                (out / "efficiency.png").string().c_str());
    return 0;
  } catch (const Error& e) {
    std::fprintf(stderr, "study_efficiency: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "study_efficiency: unexpected error: %s\n", e.what());
    return 1;
  }
}
