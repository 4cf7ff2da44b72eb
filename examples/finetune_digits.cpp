// finetune_digits — FourierFT vs LoRA vs head-only vs full fine-tuning, on real data, in seconds.
//
// What it does. A small MLP is pre-trained on the handwritten digits 0–4 (scikit-learn's 8×8
// digits, bundled in examples/data/digits). It is then adapted to a *new task*, the digits 5–9,
// with a fresh classifier head and each fine-tuning method in turn, from the same pre-trained
// weights and with the same data, steps and seed:
//   head      only the new head trains (linear probing)
//   fourierft n spectral coefficients per hidden weight + the head        (this library's reason)
//   lora      rank-r factors per hidden weight + the head                 (LoRA baseline)
//   full      every weight trains                                         (the upper bound)
// It prints, per method: trainable parameters, adapter file bytes (PEFT format), and test accuracy
// on 5–9 before and after. FourierFT reaches full fine-tuning's accuracy with a fraction of LoRA's
// parameters. (The README's main job is finetune_cifar5_demo: the same comparison on a pre-trained ViT.)
//
// Run:   ./build/examples/finetune_digits [--data examples/data/digits/digits.csv] [--out out/digits]
//        [--n 96] [--r 2] [--epochs 30] [--seed 0] [--threads 2] [--save-every N] [--resume]
// Expect (2 cores, ~5 s; measured with the defaults):
//   pre-trained MLP 64-128-128-128-5 (41989 params): accuracy on 0-4 = 0.991
//   method      trainable    adapter B acc before  acc after
//   head              645         2772      0.196      0.777
//   fourierft         933         4220      0.196      0.991     (n = 96 on fc1..fc3 + the head)
//   lora             2053         8980      0.196      0.991     (r = 2)
//   full            41989       168692      0.196      0.978
// Adapters are written to --out/<method>/ (PEFT format) and the FourierFT one is reloaded into a
// fresh model to check that it reproduces the accuracy exactly.
// Crash safety (one process): Ctrl-C or SIGTERM saves the running phase's state (pre-training or one
// method) to --out/state/<phase> after the current step and exits 130 / 143; --save-every N also
// saves every N steps; the same command plus --resume skips the finished phases (their
// results.json) and continues the running one, to the same table and adapters, bit for bit.
// Under `mpirun -np P` every batch of 32 is split over P processes and the gradients summed
// (docs/scaling.md): the same table up to float rounding; rank 0 prints and writes --out.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "fourierft/dist/world.hpp"
#include "fourierft/fourierft.hpp"
#include "fourierft/train/checkpoint.hpp"
#include "fourierft/train/signals.hpp"

using namespace fourierft;
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------
// The model: 64 pixels -> 3 hidden layers of width H (GELU) -> classes.
struct Mlp : nn::Module<float> {
  nn::Linear<float> fc1, fc2, fc3, classifier;
  Mlp(Index hidden, Index classes, Rng& rng)
      : fc1(64, hidden, rng), fc2(hidden, hidden, rng), fc3(hidden, hidden, rng),
        classifier(hidden, classes, rng) {
    register_module("fc1", fc1);
    register_module("fc2", fc2);
    register_module("fc3", fc3);
    register_module("classifier", classifier);
  }
  // x: (B, 64) -> logits (B, classes)
  Var<float> forward(Tape<float>& tape, const Var<float>& x) const {
    Var<float> h = ops::gelu(tape, fc1.forward(tape, x));
    h = ops::gelu(tape, fc2.forward(tape, h));
    h = ops::gelu(tape, fc3.forward(tape, h));
    return classifier.forward(tape, h);
  }
};

// ---------------------------------------------------------------------------
// Data: digits.csv rows are 64 pixel values (0..16) and the label.
struct Split {
  std::vector<std::vector<float>> pixels;
  std::vector<std::int64_t> labels;
};

std::vector<std::pair<std::vector<float>, int>> read_digits(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw IoError(str_cat("cannot open '", path.string(), "' (the bundled digits data)"));
  std::vector<std::pair<std::vector<float>, int>> rows;
  std::string line;
  for (int line_no = 1; std::getline(in, line); ++line_no) {
    if (line.empty() || line == "\r") continue;
    std::stringstream fields(line);
    std::vector<float> values;
    for (std::string f; std::getline(fields, f, ',');) {
      char* end = nullptr;
      const float v = std::strtof(f.c_str(), &end);
      check<FormatError>(end != f.c_str(), path.string(), ":", line_no, ": '", f, "' is not a number");
      values.push_back(v);
    }
    check<FormatError>(values.size() == 65, path.string(), ":", line_no, ": expected 65 values ",
                       "(64 pixels and a label), found ", values.size());
    const int label = static_cast<int>(values.back());
    values.pop_back();
    for (float& v : values) v /= 16.0f;
    rows.emplace_back(std::move(values), label);
  }
  check<FormatError>(!rows.empty(), path.string(), ": no rows");
  return rows;
}

// Rows whose label is in [first, first + 5), relabelled 0..4; every 4th of them goes to test.
void split_task(const std::vector<std::pair<std::vector<float>, int>>& rows, int first, Split& train,
                Split& test) {
  int k = 0;
  for (const auto& [pixels, label] : rows) {
    if (label < first || label >= first + 5) continue;
    Split& s = (k++ % 4 == 3) ? test : train;
    s.pixels.push_back(pixels);
    s.labels.push_back(label - first);
  }
}

Var<float> batch_pixels(const Split& s, std::span<const std::size_t> idx) {
  Tensor<float> x({static_cast<Index>(idx.size()), 64});
  for (std::size_t i = 0; i < idx.size(); ++i)
    std::copy(s.pixels[idx[i]].begin(), s.pixels[idx[i]].end(), x.ptr() + i * 64);
  return Var<float>(x);
}

double accuracy(const Mlp& model, const Split& s) {
  std::vector<std::size_t> all(s.labels.size());
  std::iota(all.begin(), all.end(), 0);
  Tape<float> tape;
  NoGradScope<float> no_grad(tape);
  const Var<float> logits = model.forward(tape, batch_pixels(s, all));
  std::vector<std::int64_t> pred(s.labels.size());
  const Index C = logits.size(-1);
  for (std::size_t i = 0; i < pred.size(); ++i) {
    const float* row = logits.data().data() + i * C;
    pred[i] = std::max_element(row, row + C) - row;
  }
  return metrics::accuracy(pred, s.labels);
}

// ---------------------------------------------------------------------------
// Saving one training phase (pre-training, or one method): where, how often, and the stop request.
struct PhaseSaving {
  fs::path dir;                                  // <out>/state/<phase>; empty: never (mpirun)
  std::int64_t save_every = 0;                   // > 0: after every that many steps too
  const train::InterruptFlag* interrupt = nullptr;  // Ctrl-C / SIGTERM: save and stop
  io::Json settings;                             // checked on resume
};
struct TrainOutcome {
  double last_epoch_loss = 0;
  std::int64_t step = 0;
  int signal = 0;  // non-zero: stopped by that signal, its state saved
};

// Trains `model`'s trainable parameters with AdamW: `spectral_lr` for parameters whose name
// contains "fourierft_spectrum", `lr` for the rest; linear decay; returns the last epoch's mean loss.
// Data-parallel over `comm`: each rank forwards its shard of every batch, weighted by its share.
// `rng` shuffles the data each epoch (in place, cumulatively). With a state in saving.dir (a
// resume), the trainable tensors and optimizer are restored and the shuffles replayed up to it.
TrainOutcome train_mlp(Mlp& model, const Split& data, int epochs, double lr, double spectral_lr,
                   Rng& rng, dist::Communicator& comm, const PhaseSaving& saving) {
  std::vector<Var<float>> spectra, others;
  for (auto& [name, p] : model.named_parameters())
    if (p.requires_grad()) (name.find("fourierft_spectrum") != std::string::npos ? spectra : others).push_back(p);
  std::vector<Var<float>> trainable = others;
  trainable.insert(trainable.end(), spectra.begin(), spectra.end());
  std::vector<optim::ParamGroup<float>> groups = {{.params = others, .lr = lr, .name = "weights"}};
  if (!spectra.empty()) groups.push_back({.params = spectra, .lr = spectral_lr, .name = "spectrum"});
  optim::AdamW<float> opt(groups, {.lr = lr, .weight_decay = 0.0});
  const std::size_t batch = 32, steps_per_epoch = (data.labels.size() + batch - 1) / batch;
  const auto schedule = optim::linear_warmup_decay(0, static_cast<std::int64_t>(epochs * steps_per_epoch));
  std::vector<std::size_t> order(data.labels.size());
  std::iota(order.begin(), order.end(), 0);
  Tape<float> tape;
  double epoch_loss = 0;
  std::int64_t step = 0;
  train::TrainState resumed;  // epoch 0, batch 0 unless a state is found
  const auto found = saving.dir.empty() ? std::nullopt : train::find_train_state(saving.dir);
  if (found) {
    resumed = train::load_train_state(*found, model, opt, saving.settings);
    step = resumed.step;
    epoch_loss = resumed.record.at("epoch_loss").get<double>();
  }
  for (int epoch = 0; epoch < epochs; ++epoch) {
    for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
    if (epoch < resumed.epoch) continue;  // replayed for the order and rng
    const bool continued = found && epoch == resumed.epoch;
    if (!continued) epoch_loss = 0;
    const std::size_t first = continued ? static_cast<std::size_t>(resumed.next_batch) * batch : 0;
    for (std::size_t start = first; start < order.size(); start += batch) {
      const std::span<const std::size_t> whole(order.data() + start, std::min(batch, order.size() - start));
      const std::span<const std::size_t> idx = dist::shard(whole, comm.rank(), comm.size());
      float weighted_loss = 0;  // this shard's part of the batch's mean loss
      if (!idx.empty()) {
        std::vector<std::int64_t> labels;
        for (std::size_t i : idx) labels.push_back(data.labels[i]);
        Var<float> loss = ops::cross_entropy(tape, model.forward(tape, batch_pixels(data, idx)), labels);
        check(std::isfinite(loss.item()), "loss is ", loss.item(), " at step ", step);
        const float share = static_cast<float>(idx.size()) / static_cast<float>(whole.size());
        tape.backward(loss, Tensor<float>::full({}, share));
        weighted_loss = share * loss.item();
      }
      dist::all_reduce_gradients(comm, trainable, std::span<float>(&weighted_loss, 1));
      opt.scale_lr(schedule(step++));
      opt.step();
      opt.zero_grad();
      tape.clear();
      epoch_loss += weighted_loss / double(steps_per_epoch);
      const int signal = saving.interrupt != nullptr ? saving.interrupt->requested() : 0;
      if (!saving.dir.empty() &&
          (signal != 0 || (saving.save_every > 0 && step % saving.save_every == 0))) {
        train::TrainState state;
        state.step = step;
        state.epoch = epoch;
        state.next_batch = static_cast<std::int64_t>(start / batch + 1);
        state.record = {{"epoch_loss", epoch_loss}};
        train::save_train_state(saving.dir, model, opt, state, saving.settings);
      }
      if (signal != 0) return {epoch_loss, step, signal};
    }
  }
  return {epoch_loss, step, 0};
}


int main(int argc, char** argv) {
  dist::World world = dist::world(argc, argv);  // one process, or this one's rank under mpirun
  try {
    dist::Communicator& comm = world.comm();
    // ---- options -------------------------------------------------------------------------
    util::Args args(argc, argv, {"--help", "--resume"});
    if (args.has("--help")) {
      std::printf("usage: finetune_digits [--data CSV] [--out DIR] [--n N] [--r R] [--epochs E] "
                  "[--seed S] [--threads T] [--save-every N] [--resume]\n(see the comment at the "
                  "top of finetune_digits.cpp)\n");
      return 0;
    }
    const fs::path data_path = args.str("--data", FOURIERFT_EXAMPLES_DATA_DIR "/digits/digits.csv");
    const fs::path out_arg = args.str("--out", "out/digits");
    // Rank 0 writes --out; the others keep their (identical) files in a private folder.
    const fs::path out = comm.is_root() ? out_arg
        : fs::temp_directory_path() / str_cat("fourierft-digits-", ::getpid(), "-rank", comm.rank());
    const Index n = args.integer("--n", 96), r = args.integer("--r", 2), hidden = 128;
    const int epochs = static_cast<int>(args.integer("--epochs", 30));
    const std::uint64_t seed = static_cast<std::uint64_t>(args.integer("--seed", 0));
    set_num_threads(static_cast<int>(args.integer("--threads", 2)));
    // FFTW plans without timing: a run is bit-identical to the last (and to a resumed one).
    ops::spectral::reproducible_fft(true);
    const bool resume = args.has("--resume");
    const std::int64_t save_every = args.integer("--save-every", 0);
    args.reject_unknown();
    check(save_every >= 0, "option --save-every must be >= 0 (0: no periodic saves), got ", save_every);
    check(comm.size() == 1 || (!resume && save_every == 0), "options --resume and --save-every ",
          "work in one process, not under mpirun (", comm.size(), " processes)");
    const auto start = std::chrono::steady_clock::now();
    const std::vector<std::string> methods = {"head", "fourierft", "lora", "full"};

    // ---- the run's state: <out>/state/ while it is unfinished (one process) --------------------
    std::optional<train::InterruptFlag> interrupt;  // Ctrl-C / SIGTERM: save, then stop
    const fs::path state_root = out / "state";
    const io::Json settings = {{"program", "finetune_digits"}, {"n", n}, {"r", r},
                               {"epochs", epochs}, {"seed", seed}};
    if (comm.size() == 1) {
      interrupt.emplace();
      std::vector<fs::path> finished = {out / "pretrained.safetensors"};  // phases' done-markers
      for (const std::string& method : methods) finished.push_back(out / method / "results.json");
      train::start_or_resume_phases(out, resume, settings, finished);
    }
    auto phase = [&](const std::string& name) {
      return PhaseSaving{.dir = comm.size() == 1 ? state_root / name : fs::path(),
                         .save_every = save_every,
                         .interrupt = interrupt ? &*interrupt : nullptr,
                         .settings = settings};
    };
    auto stopped = [&](const TrainOutcome& o, const std::string& name) {
      std::printf("interrupted in %s at step %lld: state saved to %s; continue with the same "
                  "command plus --resume\n", name.c_str(), static_cast<long long>(o.step),
                  (state_root / name).string().c_str());
      return 128 + o.signal;
    };

    // ---- data: pre-train on 0–4, fine-tune on 5–9 -------------------------------------------
    const auto rows = read_digits(data_path);
    Split source_train, source_test, target_train, target_test;
    split_task(rows, 0, source_train, source_test);
    split_task(rows, 5, target_train, target_test);
    std::printf("digits: %zu images; pre-train on 0-4 (%zu train / %zu test), fine-tune on 5-9 "
                "(%zu train / %zu test)\n", rows.size(), source_train.labels.size(),
                source_test.labels.size(), target_train.labels.size(), target_test.labels.size());

    // ---- pre-training (full) -----------------------------------------------------------------
    Rng rng(seed);
    {
      Mlp base(hidden, 5, rng);
      check(32 % comm.size() == 0, "finetune_digits splits every batch of 32 over the MPI ",
            "processes: use -np 1, 2, 4, 8, 16 or 32, not ", comm.size());
      const bool done = resume && fs::exists(out / "pretrained.safetensors");
      if (done) {
        base.load_safetensors(out / "pretrained.safetensors").require_complete();
      } else {
        const TrainOutcome o = train_mlp(base, source_train, epochs, 3e-3, 0, rng, comm, phase("pretrain"));
        if (o.signal != 0) return stopped(o, "pretrain");
      }
      std::printf("pre-trained MLP 64-%lld-%lld-%lld-5 (%lld params): accuracy on 0-4 = %.3f\n",
                  (long long)hidden, (long long)hidden, (long long)hidden,
                  (long long)base.num_parameters(), accuracy(base, source_test));
      if (!done) {
        fs::create_directories(out);
        base.save_safetensors(out / "pretrained.safetensors");
      }
      if (comm.size() == 1) train::remove_train_state(state_root / "pretrain");
    }

    // ---- fine-tuning on 5–9 with each method ---------------------------------------------------
    const std::vector<std::string> targets = {"fc1", "fc2", "fc3"};
    std::printf("\n%-10s %10s %12s %10s %10s %8s\n", "method", "trainable", "adapter B",
                "acc before", "acc after", "seconds");
    double fourierft_accuracy = 0;
    for (const std::string& method : methods) {
      // A resumed run's finished methods: their row as they printed it.
      const fs::path result_file = out / method / "results.json";
      if (resume && fs::exists(result_file)) {
        const io::Json row = io::read_json(result_file);
        std::printf("%-10s %10lld %12llu %10.3f %10.3f %8.1f\n", method.c_str(),
                    row.at("trainable").get<long long>(), row.at("adapter_bytes").get<unsigned long long>(),
                    row.at("accuracy_before").get<double>(), row.at("accuracy_after").get<double>(),
                    row.at("seconds").get<double>());
        if (method == "fourierft") fourierft_accuracy = row.at("accuracy_after").get<double>();
        continue;
      }
      const auto t0 = std::chrono::steady_clock::now();
      Rng method_rng(seed + 1);  // same head init and data order for every method
      Mlp model(hidden, 5, method_rng);
      model.load_safetensors(out / "pretrained.safetensors")  // the head's shape differs: re-init
          .require_complete();
      model.classifier.weight.value() = nn::Linear<float>(hidden, 5, method_rng).weight.value();
      peft::AdapterSpec spec{.config = peft::method_config(method)};  // its defaults, then:
      spec.modules_to_save = {"classifier"};
      spec.task_type = "SEQ_CLS";
      if (auto* fourierft = spec.config.find<peft::FourierFTConfig>()) {
        fourierft->n_frequency = n;
        fourierft->scaling = 300;
        fourierft->init_weights = true;  // zeros: start exactly at the pre-trained model
        fourierft->target_modules = {targets, ""};
      }
      if (auto* lora = spec.config.find<peft::LoraConfig>()) {
        lora->r = r;
        lora->lora_alpha = 2 * r;
        lora->target_modules = {targets, ""};
      }
      const auto applied = peft::apply_adapter(model, spec, method_rng);
      const double before = accuracy(model, target_test);
      const TrainOutcome o =
          train_mlp(model, target_train, epochs, 3e-3, 5e-2, method_rng, comm, phase(method));
      if (o.signal != 0) return stopped(o, method);
      const double after = accuracy(model, target_test);
      peft::save_adapter(model, spec, out / method);
      const auto bytes = fs::file_size(out / method / "adapter_model.safetensors");
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("%-10s %10lld %12llu %10.3f %10.3f %8.1f\n", method.c_str(),
                  (long long)applied.params.trainable, (unsigned long long)bytes, before, after,
                  seconds);
      if (comm.size() == 1) {  // the phase is done: its row, then its state goes
        io::write_json(result_file, {{"method", method}, {"trainable", applied.params.trainable},
                                     {"adapter_bytes", bytes}, {"accuracy_before", before},
                                     {"accuracy_after", after}, {"seconds", seconds}});
        train::remove_train_state(state_root / method);
      }
      if (method == "fourierft") fourierft_accuracy = after;
    }

    // ---- the saved FourierFT adapter reproduces its accuracy in a fresh model --------------------
    Rng fresh_rng(seed + 1);
    Mlp fresh(hidden, 5, fresh_rng);
    fresh.load_safetensors(out / "pretrained.safetensors").require_complete();
    peft::load_adapter(fresh, out / "fourierft");
    const double reloaded = accuracy(fresh, target_test);
    std::printf("\nreloaded %s: accuracy %.3f (%s)\n", (out / "fourierft").c_str(), reloaded,
                reloaded == fourierft_accuracy ? "identical" : "DIFFERENT");
    std::printf("done in %.1f s\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    if (!comm.is_root()) fs::remove_all(out);
    if (comm.size() == 1) fs::remove_all(state_root);  // the run is complete
    return reloaded == fourierft_accuracy ? 0 : 1;
  } catch (const Error& e) {
    std::fprintf(stderr, "finetune_digits: %s\n", e.what());
    return world.fail(1);
  }
}
