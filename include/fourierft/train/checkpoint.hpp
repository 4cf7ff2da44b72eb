// fourierft/train/checkpoint.hpp — resumable training state: the trainable tensors, the optimizer's
// moments, the position in the data (epoch, batch) and the settings, saved as one folder atomically.
#pragma once

// <out>/state/ holds
//   trainable.safetensors   every trainable parameter under its model name (adapter spectra, head)
//   optimizer.safetensors   Optimizer::save_state (AdamW moments and step counts, group lrs)
//   state.json              {"step", "epoch", "next_batch", "settings", "record"}
// A save writes <out>/state.new/, then swaps it in (state -> state.old, state.new -> state, remove
// state.old): a crash at any point leaves a complete state (or state.old, which find_train_state
// falls back to). Restoring needs the same model, method and optimizer groups; `settings` are the
// options that must not change across a resume (a different --n or --batch is an error naming the
// option). Data order and dropout are functions of (seed, epoch, step) in the example programs, so
// state + settings determine the rest of the run exactly: a resumed run matches an uninterrupted one.

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <type_traits>

#include "fourierft/core/error.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/io/safetensors.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/optim/optimizer.hpp"

namespace fourierft::train {

namespace fs = std::filesystem;

struct TrainState {
  std::int64_t step = 0;        // optimizer steps done
  int epoch = 0;                // the epoch the next batch belongs to (0-based)
  std::int64_t next_batch = 0;  // index of the next micro-batch within that epoch
  io::Json record = io::Json::object();  // the program's own bookkeeping (best epoch, ...)
};

// The folder holding the latest complete state under `dir` (dir itself, or dir.old after a crash
// mid-swap), or nullopt when there is none.
inline std::optional<fs::path> find_train_state(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir / "state.json", ec)) return dir;
  fs::path old = dir;
  old += ".old";
  if (fs::exists(old / "state.json", ec)) return old;
  return std::nullopt;
}

template <class Real>
void save_train_state(const fs::path& dir, const nn::Module<Real>& model,
                      const optim::Optimizer<Real>& optimizer, const TrainState& state,
                      const io::Json& settings) {
  fs::path fresh = dir, old = dir;
  fresh += ".new";
  old += ".old";
  std::error_code ec;
  fs::remove_all(fresh, ec);
  fs::create_directories(fresh, ec);
  check<IoError>(!ec, "cannot create the state folder '", fresh.string(), "': ", ec.message());

  io::SafetensorsWriter writer;
  const io::Dtype dtype = std::is_same_v<Real, double> ? io::Dtype::F64 : io::Dtype::F32;
  for (const auto& [name, p] : model.named_parameters())
    if (p.requires_grad()) writer.add(name, p.value(), dtype);
  writer.set_metadata("format", "fourierft-train-state");
  writer.save(fresh / "trainable.safetensors");
  optimizer.save_state(fresh / "optimizer.safetensors");
  io::write_json(fresh / "state.json", io::Json{{"step", state.step},
                                                {"epoch", state.epoch},
                                                {"next_batch", state.next_batch},
                                                {"settings", settings},
                                                {"record", state.record}});

  if (fs::exists(dir, ec)) {
    fs::remove_all(old, ec);
    fs::rename(dir, old, ec);
    check<IoError>(!ec, "cannot move '", dir.string(), "' aside to '", old.string(),
                   "': ", ec.message());
  }
  fs::rename(fresh, dir, ec);
  check<IoError>(!ec, "cannot rename '", fresh.string(), "' to '", dir.string(), "': ",
                 ec.message());
  fs::remove_all(old, ec);
}

// Restores what save_train_state wrote into `model` (already built with the same adapters) and
// `optimizer`; returns the position to continue from. FormatError naming the file if a tensor is
// missing or misfits; ValueError naming the option if `settings` differ from the saved ones.
template <class Real>
TrainState load_train_state(const fs::path& dir, nn::Module<Real>& model,
                            optim::Optimizer<Real>& optimizer, const io::Json& settings) {
  const io::JsonObject json = io::JsonObject::read(dir / "state.json");
  const io::Json saved = json.json().contains("settings") ? json.json().at("settings")
                                                          : io::Json::object();
  std::set<std::string> keys;
  for (const auto& item : saved.items()) keys.insert(item.key());
  for (const auto& item : settings.items()) keys.insert(item.key());
  for (const std::string& key : keys) {
    const io::Json a = saved.contains(key) ? saved.at(key) : io::Json();
    const io::Json b = settings.contains(key) ? settings.at(key) : io::Json();
    check(a == b, "cannot resume from '", dir.string(), "': it was saved with ", key, " = ",
          a.dump(), " but this run has ", key, " = ", b.dump(),
          " (use the same options, or a new --out folder)");
  }

  nn::load_parameters(model, io::SafetensorsFile(dir / "trainable.safetensors"),
                      {.trainable_only = true}, /*strict=*/true, "another method?");
  optimizer.load_state(dir / "optimizer.safetensors");

  TrainState state;
  state.step = json.get<std::int64_t>("step");
  state.epoch = json.get<int>("epoch");
  state.next_batch = json.get<std::int64_t>("next_batch");
  if (json.has("record")) state.record = json.json().at("record");
  check<FormatError>(state.step >= 0 && state.epoch >= 0 && state.next_batch >= 0, json.source(),
                     ": step, epoch and next_batch must be >= 0");
  return state;
}

// The start of every example program's run in folder `out`: a fresh start (an unfinished run's
// state already in out/state is an error: --resume it or choose another --out; an old log.jsonl is
// removed) or, with `resume`, the state saved in out/state restored into `model` and `optimizer`
// (load_train_state above: same settings required). `record` seeds TrainState::record of a fresh
// start (the program's bookkeeping: history, best epoch, ...).
template <class Real>
TrainState start_or_resume(const fs::path& out, bool resume, nn::Module<Real>& model,
                           optim::Optimizer<Real>& optimizer, const io::Json& settings,
                           io::Json record) {
  const fs::path state_dir = out / "state";
  if (!resume) {
    check(!find_train_state(state_dir), "'", state_dir.string(), "' holds the state of an ",
          "unfinished run: pass --resume to continue it, or choose another --out");
    fs::remove(out / "log.jsonl");
    TrainState state;
    state.record = std::move(record);
    return state;
  }
  const auto found = find_train_state(state_dir);
  check(found.has_value(), "--resume: no saved state in '", state_dir.string(),
        "' (nothing to resume; run without --resume)");
  TrainState state = load_train_state(*found, model, optimizer, settings);
  std::printf("resumed from %s at step %lld (epoch %d, batch %lld)\n", found->string().c_str(),
              static_cast<long long>(state.step), state.epoch + 1,
              static_cast<long long>(state.next_batch));
  return state;
}

}  // namespace fourierft::train
