// examples/vit_transfer.hpp — transfer of a small pre-trained ViT to new image classes with one
// fine-tuning method: the routine the README's demo (finetune_cifar5_demo) and the parameter-
// efficiency study (study_efficiency) share. Every run starts from the same weights, the same
// fresh classifier, data order, augmentation and seed, so methods differ only in what trains.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "fourierft/fourierft.hpp"
#include "fourierft/io/image_batches.hpp"
#include "fourierft/models/vit.hpp"
#include "fourierft/train/checkpoint.hpp"
#include "fourierft/train/log.hpp"
#include "fourierft/train/options.hpp"
#include "fourierft/train/seeds.hpp"
#include "fourierft/train/signals.hpp"

namespace fourierft::examples {

namespace fs = std::filesystem;
using VitModel = models::ViTForImageClassification<float>;

// The first `limit` items in round-robin class order (every class equally), or all (limit <= 0).
inline std::vector<Index> pick_balanced(const io::DecodedImageFolder& folder, Index limit) {
  std::vector<std::vector<Index>> by_class(folder.classes().size());
  for (Index i = 0; i < folder.size(); ++i)
    by_class[static_cast<std::size_t>(folder.label(i))].push_back(i);
  std::vector<Index> out;
  const auto wanted = limit <= 0 ? static_cast<std::size_t>(folder.size())
                                 : std::min(static_cast<std::size_t>(limit),
                                            static_cast<std::size_t>(folder.size()));
  for (std::size_t k = 0; out.size() < wanted; ++k)
    for (const auto& c : by_class)
      if (k < c.size() && out.size() < wanted) out.push_back(c[k]);
  std::sort(out.begin(), out.end());
  return out;
}

// Test accuracy with the evaluation transform (resize, normalise): deterministic.
inline double test_accuracy(VitModel& model, const io::DecodedImageFolder& test,
                            const io::ImageProcessor& processor) {
  model.eval();
  Tape<float> tape;
  NoGradScope<float> no_grad(tape);
  Index correct = 0;
  for (Index start = 0; start < test.size(); start += 100) {
    std::vector<Index> rows;
    for (Index i = start; i < std::min(test.size(), start + 100); ++i) rows.push_back(i);
    const io::ImageBatch batch = test.batch(rows, processor);
    const Var<float> logits = model.forward(tape, batch.pixels).logits;  // (B, classes)
    const Index L = logits.size(1);
    for (std::size_t b = 0; b < rows.size(); ++b) {
      const float* row = logits.data().data() + static_cast<Index>(b) * L;
      correct += (std::max_element(row, row + L) - row) == batch.labels[static_cast<Index>(b)];
    }
    tape.clear();
  }
  return static_cast<double>(correct) / static_cast<double>(test.size());
}

// The checkpoint with a fresh classifier for `classes`: HF's initialisation (truncated normal,
// std = initializer_range) drawn from `seed`, so every method starts from the same head.
inline std::unique_ptr<VitModel> load_with_fresh_head(const fs::path& dir,
                                                      const std::vector<std::string>& classes,
                                                      std::uint64_t seed) {
  io::VitConfig config = io::read_vit_config(dir);
  config.id2label = classes;
  config.problem_type = "single_label_classification";
  auto model = std::make_unique<VitModel>(config, seed, models::WeightInit::skip);
  models::load_checkpoint_weights(*model, models::find_checkpoint_files(dir),
                                  model->checkpoint_layout(), {.ignore_mismatched_sizes = true});
  Rng head_rng(train::mix_seed(seed, 0x4EAD));
  models::init_linear(model->classifier, head_rng, config.initializer_range, true);
  return model;
}

// What one method's run needs besides the data. opt carries method, n, scaling, lora_r,
// lora_alpha, head_lr and seed (the fields train::adapter_spec and train::param_groups read).
struct TransferSettings {
  train::RunOptions opt;
  double lr = 0.3;          // the adapter's (spectrum, LoRA factors, or every weight for full)
  int epochs = 3;
  Index batch_size = 50;
  double clip = 1.0;        // global gradient norm
  double crop_scale_min = 0.35;  // random resized crop: 35-100% of the area, and h-flips
  // Crash safety (finetune_cifar5_demo): with state_dir set, a state found there is resumed, the
  // state is saved there every save_every steps, and a signal in *interrupt saves it and stops.
  fs::path state_dir;
  std::int64_t save_every = 0;
  const train::InterruptFlag* interrupt = nullptr;
};

struct TransferResult {
  Index trainable = 0;        // every trainable parameter, classifier included
  Index classifier = 0;       // of which the classifier's
  double accuracy_before = 0, accuracy_after = 0;
  double seconds = 0;
  std::int64_t steps = 0;  // optimizer steps done
  int signal = 0;          // non-zero: stopped by this signal after saving its state (no adapter)
};

// Loads `model_dir` with a fresh head for the train set's classes, attaches the method to query
// and value of every layer (FourierFT with zero spectra, LoRA with B = 0: the start is exactly the
// pre-trained model), trains with AdamW (linear decay, no warmup) and measures test accuracy
// before and after. With save_dir non-empty, the adapter is saved there (PEFT format). Data order,
// augmentation and dropout are functions of (seed, epoch, step), so a state (trainable tensors,
// optimizer, position) resumes the run exactly.
inline TransferResult run_transfer(const fs::path& model_dir,
                                   const io::DecodedImageFolder& train_set,
                                   const std::vector<Index>& train_items,
                                   const io::DecodedImageFolder& test_set,
                                   const io::ImageProcessor& processor, TransferSettings s,
                                   const fs::path& save_dir = {}) {
  const auto start = std::chrono::steady_clock::now();
  std::unique_ptr<VitModel> model = load_with_fresh_head(model_dir, train_set.classes(), s.opt.seed);
  s.opt.lr = s.lr;
  peft::AdapterSpec spec = train::adapter_spec(
      s.opt, {.targets = {{"query", "value"}, ""}, .modules_to_save = {"classifier"},
              .task_type = "", .base_model_name_or_path = model_dir.filename().string()});
  if (auto* f = spec.config.find<peft::FourierFTConfig>()) f->init_weights = true;  // zero spectra
  Rng init_rng(train::mix_seed(s.opt.seed, 0xADA));
  const peft::AppliedAdapters applied = peft::apply_adapter(*model, spec, init_rng);
  TransferResult r;
  r.trainable = applied.params.trainable;
  r.classifier = model->classifier.weight.numel() + model->classifier.bias.numel();
  r.accuracy_before = test_accuracy(*model, test_set, processor);

  optim::AdamW<float> optimizer(train::param_groups(*model, spec, s.opt), {.lr = s.opt.lr});
  const auto N = static_cast<Index>(train_items.size());
  const std::int64_t total_steps = train::steps_per_epoch(N, s.batch_size, 1) * s.epochs;
  const optim::Schedule schedule = optim::linear_warmup_decay(0, total_steps);
  std::vector<Var<float>> params = optimizer.parameters();
  Tape<float> tape;
  const io::Json settings = {{"method", s.opt.method}, {"n", s.opt.n}, {"scaling", s.opt.scaling},
                             {"lora_r", s.opt.lora_r}, {"lora_alpha", s.opt.lora_alpha},
                             {"lr", s.lr}, {"head_lr", s.opt.head_lr}, {"epochs", s.epochs},
                             {"batch", s.batch_size}, {"train_images", N}, {"seed", s.opt.seed}};
  train::TrainState resumed;  // the start unless a state is found
  if (!s.state_dir.empty())
    if (const auto found = train::find_train_state(s.state_dir))
      resumed = train::load_train_state(*found, *model, optimizer, settings);
  std::int64_t step = resumed.step;
  for (int epoch = resumed.epoch; epoch < s.epochs; ++epoch) {
    const auto batches = train::epoch_batches(N, s.batch_size, s.opt.seed, epoch);
    for (std::size_t m = epoch == resumed.epoch ? static_cast<std::size_t>(resumed.next_batch) : 0;
         m < batches.size(); ++m) {
      const std::vector<Index>& batch = batches[m];
      model->train();
      train::reseed_dropout(*model, s.opt.seed, static_cast<std::uint64_t>(step));
      std::vector<Index> rows;
      for (Index i : batch) rows.push_back(train_items[static_cast<std::size_t>(i)]);
      Rng augment = train::step_rng(s.opt.seed, train::Stream::augment, static_cast<std::uint64_t>(step));
      const io::ImageBatch b = train_set.batch(rows, processor, &augment, {.scale_min = s.crop_scale_min});
      const Var<float> loss = model->loss(tape, model->forward(tape, b.pixels).logits, b.labels);
      train::check_finite_loss(loss.item(), step + 1, epoch + 1);
      tape.backward(loss);
      if (s.clip > 0) optim::clip_grad_norm(params, s.clip);
      optimizer.scale_lr(schedule(step));
      optimizer.step();
      optimizer.zero_grad();
      tape.clear();
      ++step;
      r.signal = s.interrupt != nullptr ? s.interrupt->requested() : 0;
      if (!s.state_dir.empty() &&
          (r.signal != 0 || (s.save_every > 0 && step % s.save_every == 0)))
        train::save_train_state(s.state_dir, *model, optimizer, {.step = step, .epoch = epoch,
                                .next_batch = static_cast<std::int64_t>(m + 1)}, settings);
      if (r.signal != 0) {
        r.steps = step;
        return r;
      }
    }
  }
  r.steps = step;
  r.accuracy_after = test_accuracy(*model, test_set, processor);
  if (!save_dir.empty()) peft::save_adapter(*model, spec, save_dir);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace fourierft::examples
