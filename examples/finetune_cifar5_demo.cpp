// finetune_cifar5_demo — the README's main job: a small Vision Transformer pre-trained here on five
// CIFAR-10 classes learns five new ones with FourierFT, beside LoRA and head-only fine-tuning.
//
// What it does. Loads examples/checkpoints/vit-tiny-cifar5 — a 4-layer ViT (hidden 128, patch 4,
// 32 x 32 images) that examples/pretrain made from scratch on airplane, automobile, bird, cat, deer
// (its README has the command, seed and accuracy) — and adapts it to dog, frog, horse, ship, truck
// (examples/data/cifar5-target: 500 training and 100 test images per class). Every method starts
// from the same weights with the same fresh classifier, data order, augmentation (random resized
// crop of 35-100% of the area, horizontal flip), number of steps and seed:
//   head       only the new classifier trains (linear probing)
//   fourierft  n spectral coefficients on query and value of every layer + the classifier
//   lora       rank-r factors on query and value of every layer + the classifier
//   full       every weight (with --methods ...,full; the upper bound, at 1,000 x the parameters)
// It prints, per method: trainable parameters, the size of the saved adapter file (PEFT format,
// adapter_model.safetensors) and the test accuracy on the new classes before and after; then it
// reloads the FourierFT adapter into a fresh model and checks it reproduces the accuracy exactly.
//
// Run (scripts/demo.sh builds it and runs it with the defaults):
//   ./build/examples/finetune_cifar5_demo [--methods head,fourierft,lora] [--epochs 2]
//       [--n 256] [--lora-r 4] [--threads 2] [--out out/cifar5]
// Expect: the table in README.md (measured on 2 cores; about two minutes for the three runs).
// Crash safety: Ctrl-C or SIGTERM saves the running method's state to --out/state/<method> after the
// current step and exits 130 / 143; --save-every N also saves every N steps; the same command plus
// --resume skips the finished methods (their --out/<method>/results.json) and continues the
// running one: the same table (but for seconds) and adapters, bit for bit.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "fourierft/fourierft.hpp"
#include "fourierft/io/image_batches.hpp"
#include "fourierft/models/vit.hpp"
#include "fourierft/train/log.hpp"
#include "fourierft/train/options.hpp"
#include "fourierft/train/seeds.hpp"
#include "vit_transfer.hpp"

using namespace fourierft;
namespace fs = std::filesystem;

namespace {

const char* const usage = R"(usage: finetune_cifar5_demo [options]

Fine-tunes the committed tiny ViT on five new CIFAR-10 classes with each method; prints a table.
  --model DIR         ViT checkpoint folder          [examples/checkpoints/vit-tiny-cifar5]
  --data DIR          train/ and test/ class folders [examples/data/cifar5-target]
  --methods LIST      comma-separated: head, fourierft, lora, bitfit, full [head,fourierft,lora]
  --epochs E [2]  --batch B [50]  --limit-train N (images, spread over the classes; 0 = all) [0]
  --n N [256]  --scaling A [100]  --lr LR (spectrum) [0.05]
  --lora-r R [4]  --lora-alpha A [8]  --lora-lr LR [5e-3]  --full-lr LR [5e-4]
  --head-lr LR [5e-3]  --seed S [0]  --threads T [2]  --out DIR [out/cifar5]
  --save-every N      also save the running method's state every N steps        [on Ctrl-C only]
  --resume            continue an interrupted run (Ctrl-C, SIGTERM, a crash) in --out
)";


}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  try {
    // ---- options ---------------------------------------------------------------------------------
    util::Args args(argc, argv, {"--help", "--resume"});
    if (args.has("--help")) {
      std::cout << usage;
      return 0;
    }
    const fs::path model_dir =
        fs::path(args.str("--model", FOURIERFT_EXAMPLES_DATA_DIR "/../checkpoints/vit-tiny-cifar5"))
            .lexically_normal();
    const fs::path data_dir =
        fs::path(args.str("--data", FOURIERFT_EXAMPLES_DATA_DIR "/cifar5-target")).lexically_normal();
    std::vector<std::string> methods;
    {
      std::stringstream list(args.str("--methods", "head,fourierft,lora"));
      for (std::string m; std::getline(list, m, ',');) methods.push_back(m);
    }
    const int epochs = static_cast<int>(args.integer("--epochs", 2));
    const Index batch_size = args.integer("--batch", 50);
    const Index limit_train = args.integer("--limit-train", 0);
    train::RunOptions opt;  // the fields train::adapter_spec and param_groups read
    opt.n = args.integer("--n", 256);
    opt.scaling = args.real("--scaling", 100);
    opt.lora_r = args.integer("--lora-r", 4);
    opt.lora_alpha = args.real("--lora-alpha", 8);
    const double spectrum_lr = args.real("--lr", 0.05), lora_lr = args.real("--lora-lr", 5e-3);
    const double full_lr = args.real("--full-lr", 5e-4);
    opt.head_lr = args.real("--head-lr", 5e-3);
    opt.seed = static_cast<std::uint64_t>(args.integer("--seed", 0));
    const int threads = static_cast<int>(args.integer("--threads", 2));
    const fs::path out = args.str("--out", "out/cifar5");
    const bool resume = args.has("--resume");
    const std::int64_t save_every = args.integer("--save-every", 0);
    args.reject_unknown();
    check(save_every >= 0, "option --save-every must be >= 0 (0: on Ctrl-C only), got ", save_every);
    check(epochs >= 1 && batch_size >= 1 && opt.n >= 1 && opt.lora_r >= 1 && threads >= 1,
          "options --epochs, --batch, --n, --lora-r, --threads must be >= 1");
    for (const std::string& m : methods)
      check(peft::find_method(m) != nullptr, "option --methods: '", m, "' is not one of ",
            peft::method_names(", "));
    set_num_threads(threads);
    ops::spectral::reproducible_fft(true);
    const auto start = std::chrono::steady_clock::now();

    // ---- the run's state: <out>/state/<method> while it is unfinished ---------------------------
    train::InterruptFlag interrupt;  // Ctrl-C / SIGTERM: save the running method's state, stop
    const fs::path state_root = out / "state";
    {
      std::vector<fs::path> finished;  // a method is done once its results.json is written
      for (const std::string& m : methods) finished.push_back(out / m / "results.json");
      train::start_or_resume_phases(
          out, resume,
          {{"program", "finetune_cifar5_demo"}, {"methods", methods}, {"limit_train", limit_train},
           {"data", data_dir.string()}, {"model", model_dir.string()}, {"epochs", epochs},
           {"batch", batch_size}, {"n", opt.n}, {"scaling", opt.scaling}, {"lora_r", opt.lora_r},
           {"lora_alpha", opt.lora_alpha}, {"lr", spectrum_lr}, {"lora_lr", lora_lr},
           {"full_lr", full_lr}, {"head_lr", opt.head_lr}, {"seed", opt.seed}},
          finished);
    }

    // ---- data and the pre-trained checkpoint ---------------------------------------------------
    const io::DecodedImageFolder train_set(data_dir / "train"), test_set(data_dir / "test");
    check<FormatError>(train_set.classes() == test_set.classes(), "'", (data_dir / "test").string(),
                       "' has other classes than '", (data_dir / "train").string(), "'");
    const std::vector<Index> train_items = examples::pick_balanced(train_set, limit_train);
    const io::ImageProcessor processor =
        io::ImageProcessor::from_json(model_dir / "preprocessor_config.json");
    const io::VitConfig base_config = io::read_vit_config(model_dir);
    auto joined = [](const std::vector<std::string>& names) {  // "a, b, c"
      std::string out;
      for (const std::string& n : names) out.append(out.empty() ? "" : ", ").append(n);
      return out;
    };
    const std::string old_classes = joined(base_config.id2label);
    const std::string new_classes = joined(train_set.classes());
    std::printf("pre-trained: %s (ViT, %lld layers, hidden %lld, patch %lld, %lld x %lld images) on "
                "%s\n", model_dir.string().c_str(), static_cast<long long>(base_config.num_hidden_layers),
                static_cast<long long>(base_config.hidden_size),
                static_cast<long long>(base_config.patch_size),
                static_cast<long long>(base_config.image_size),
                static_cast<long long>(base_config.image_size), old_classes.c_str());
    if (fs::exists(model_dir / "pretrain.json")) {
      const io::Json record = io::read_json(model_dir / "pretrain.json");
      const io::Json& eval = record.at("eval_of_saved_weights");
      std::printf("             its test accuracy on those classes: %.4f (%lld/%lld)\n",
                  eval.at("accuracy").get<double>(), eval.at("correct").get<long long>(),
                  eval.at("images").get<long long>());
    }
    std::printf("new task: %s: %zu training images, %lld test; %d epochs of batches of %lld, same "
                "order, crops and flips for every method; %d threads\n\n", new_classes.c_str(),
                train_items.size(), static_cast<long long>(test_set.size()), epochs,
                static_cast<long long>(batch_size), threads);

    // ---- each method in turn, from the same start ----------------------------------------------
    std::printf("%-10s %10s %10s %11s %10s %8s\n", "method", "trainable", "adapter B", "acc before",
                "acc after", "seconds");
    double fourierft_accuracy = -1;
    for (const std::string& method : methods) {  // examples/vit_transfer.hpp: load, adapt, train
      examples::TransferSettings settings{.opt = opt, .epochs = epochs, .batch_size = batch_size,
                                          .state_dir = state_root / method,
                                          .save_every = save_every, .interrupt = &interrupt};
      settings.opt.method = method;
      const peft::MethodConfig config = peft::method_config(method);  // the lr by the method's kind
      const bool spectral = config.find<peft::FourierFTConfig>() != nullptr;
      settings.lr = spectral ? spectrum_lr : config.find<peft::LoraConfig>() ? lora_lr : full_lr;
      const fs::path result_file = out / method / "results.json";
      io::Json row;
      if (resume && fs::exists(result_file)) {  // finished before the interruption
        row = io::read_json(result_file);
      } else {
        const examples::TransferResult r = examples::run_transfer(
            model_dir, train_set, train_items, test_set, processor, settings, out / method);
        if (r.signal != 0) {
          std::printf("interrupted in %s at step %lld: state saved to %s; continue with the same "
                      "command plus --resume\n", method.c_str(), static_cast<long long>(r.steps),
                      settings.state_dir.string().c_str());
          return 128 + r.signal;
        }
        row = {{"method", method}, {"trainable", r.trainable},
               {"adapter_bytes", fs::file_size(out / method / "adapter_model.safetensors")},
               {"accuracy_before", r.accuracy_before}, {"accuracy_after", r.accuracy_after},
               {"seconds", r.seconds}};
        io::write_json(result_file, row);
        train::remove_train_state(settings.state_dir);
      }
      std::printf("%-10s %10lld %10llu %11.4f %10.4f %8.1f\n", method.c_str(),
                  row.at("trainable").get<long long>(), row.at("adapter_bytes").get<unsigned long long>(),
                  row.at("accuracy_before").get<double>(), row.at("accuracy_after").get<double>(),
                  row.at("seconds").get<double>());
      if (spectral) fourierft_accuracy = row.at("accuracy_after").get<double>();
    }

    // ---- the saved FourierFT adapter alone reproduces its accuracy ------------------------------
    bool reproduced = true;
    if (fourierft_accuracy >= 0) {
      std::unique_ptr<examples::VitModel> fresh =
          examples::load_with_fresh_head(model_dir, train_set.classes(), opt.seed + 1);
      peft::load_adapter(*fresh, out / "fourierft");  // restores the spectra and the classifier
      const double reloaded = examples::test_accuracy(*fresh, test_set, processor);
      reproduced = reloaded == fourierft_accuracy;
      std::printf("\nreloaded %s into a fresh model: accuracy %.4f (%s)\n",
                  (out / "fourierft").string().c_str(), reloaded,
                  reproduced ? "identical" : "DIFFERENT");
    }
    std::printf("done in %s; adapters in %s/<method>/ (PEFT format)\n",
                train::format_duration(train::seconds_since(start)).c_str(), out.string().c_str());
    std::error_code ec;
    fs::remove_all(state_root, ec);  // the run is complete
    return reproduced ? 0 : 1;
  } catch (const std::exception& e) {  // fourierft::Error names the file, tensor or option
    return train::report_error("finetune_cifar5_demo", e);
  }
}
