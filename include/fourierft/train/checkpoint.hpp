// fourierft/train/checkpoint.hpp — resumable training state: the trainable tensors, the optimizer's
// moments, the position in the data (epoch, batch) and the settings, saved as one folder atomically.
#pragma once

// <out>/state/ holds
//   trainable.safetensors   every trainable parameter under its model name (adapter spectra, head)
//   optimizer.safetensors   Optimizer::save_state (AdamW moments and step counts, group lrs)
//   state.json              {"step", "epoch", "next_batch", "settings", "record", "log"}, written last
//   fftw_wisdom             (--fast-fft runs) the FFTW plans' wisdom, so a resume plans the same way
// A save writes <out>/state.new/ (each file to a temporary, fsynced, renamed; then the folder
// fsynced), then swaps it in (state -> state.old, state.new -> state, remove state.old) and fsyncs
// <out>: a crash or SIGKILL at any point leaves a complete state — the old one or the new one, never
// a mix (state.old, which find_train_state falls back to, when the crash hit between the renames).
// "log" is {"bytes": the length of log.jsonl at the save, "loss_sum", "loss_steps": the open
// logging window}: a resume cuts log.jsonl back to those bytes (dropping records of steps redone)
// and reopens the window, so the log after a resume is the uninterrupted run's. Restoring needs
// the same model, method and optimizer groups; `settings` are the options that must not change
// across a resume (a different --n or --batch is an error naming the option). Data order and
// dropout are functions of (seed, epoch, step) in the example programs, so state + settings
// determine the rest of the run exactly: a resumed run matches an uninterrupted one.

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include <signal.h>
#include <unistd.h>

#include "fourierft/core/error.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/io/safetensors.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/optim/optimizer.hpp"
#include "fourierft/util/atomic_file.hpp"

namespace fourierft::train {

namespace fs = std::filesystem;

struct TrainState {
  std::int64_t step = 0;        // optimizer steps done
  int epoch = 0;                // the epoch the next batch belongs to (0-based)
  std::int64_t next_batch = 0;  // index of the next micro-batch within that epoch
  io::Json record = io::Json::object();  // the program's own bookkeeping (best epoch, ...)
  // The log at the save (train::Run): log.jsonl's length in bytes (-1: unknown, nothing cut on
  // resume) and the logging window still open (Σ step losses, steps), so logged means continue.
  std::int64_t log_bytes = -1;
  double window_loss_sum = 0;
  std::int64_t window_steps = 0;
  // Extra files of the state folder: name -> bytes (fftw_wisdom); on load, those found.
  std::map<std::string, std::string> files;
};

// Removes what a killed run leaves in its output folder `out`: out/state.new (an unfinished save)
// and every `<name>.tmp.<pid>` of util::write_file_atomically whose process is gone, in `out` and
// its subfolders (two levels: adapter/, best_adapter/, state/). Returns how many it removed.
inline int clean_stale_temporaries(const fs::path& out) {
  std::error_code ec;
  int removed = 0;
  fs::path fresh = out / "state";
  fresh += ".new";
  if (fs::exists(fresh, ec)) removed += fs::remove_all(fresh, ec) > 0;
  auto dead_temporary = [](const std::string& name) {
    const auto at = name.rfind(".tmp.");
    if (at == std::string::npos || at + 5 >= name.size()) return false;
    char* end = nullptr;
    const long pid = std::strtol(name.c_str() + at + 5, &end, 10);
    if (*end != '\0' || pid <= 0) return false;
    return pid != ::getpid() && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
  };
  std::vector<fs::path> stale;
  for (auto it = fs::recursive_directory_iterator(out, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (it.depth() >= 2) it.disable_recursion_pending();
    if (dead_temporary(it->path().filename().string())) stale.push_back(it->path());
  }
  for (const fs::path& p : stale) removed += fs::remove_all(p, ec) > 0;
  return removed;
}

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
  for (const auto& [name, bytes] : state.files) util::write_file_atomically(fresh / name, bytes);
  io::write_json(fresh / "state.json",
                 io::Json{{"step", state.step},
                          {"epoch", state.epoch},
                          {"next_batch", state.next_batch},
                          {"settings", settings},
                          {"record", state.record},
                          {"log", {{"bytes", state.log_bytes},
                                   {"loss_sum", state.window_loss_sum},
                                   {"loss_steps", state.window_steps}}}});
  // Every file's data is on disk (write_file_atomically fsyncs each); now the folder's entries.
  const fs::path parent = dir.has_parent_path() ? dir.parent_path() : fs::path(".");
  if (const int err = util::detail::fsync_path(fresh, true); err != 0)
    throw IoError(str_cat("cannot save the training state: fsync of '", fresh.string(),
                          "' failed: ", std::strerror(err)));

  if (fs::exists(dir, ec)) {
    fs::remove_all(old, ec);
    fs::rename(dir, old, ec);
    check<IoError>(!ec, "cannot move '", dir.string(), "' aside to '", old.string(),
                   "': ", ec.message());
  }
  fs::rename(fresh, dir, ec);
  check<IoError>(!ec, "cannot rename '", fresh.string(), "' to '", dir.string(), "': ",
                 ec.message());
  (void)util::detail::fsync_path(parent, true);  // the swap is durable before state.old goes
  fs::remove_all(old, ec);
}

// The bytes of `path`; IoError naming it if it cannot be read.
inline std::string read_state_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  check<IoError>(static_cast<bool>(in), "cannot read '", path.string(), "'");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// ValueError naming the first option whose value in `saved` (the settings of the state in `dir`)
// differs from this run's `settings`.
inline void check_same_settings(const fs::path& dir, const io::Json& saved, const io::Json& settings) {
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
}

// Restores what save_train_state wrote into `model` (already built with the same adapters) and
// `optimizer`; returns the position to continue from. FormatError naming the file if a tensor is
// missing or misfits; ValueError naming the option if `settings` differ from the saved ones.
template <class Real>
TrainState load_train_state(const fs::path& dir, nn::Module<Real>& model,
                            optim::Optimizer<Real>& optimizer, const io::Json& settings) {
  const io::JsonObject json = io::JsonObject::read(dir / "state.json");
  check_same_settings(dir, json.json().contains("settings") ? json.json().at("settings")
                                                            : io::Json::object(),
                      settings);

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
  if (json.has("log")) {  // states saved before the log was kept in them have none
    const io::Json& log = json.json().at("log");
    check<FormatError>(log.is_object() && log.value("bytes", io::Json()).is_number_integer() &&
                           log.value("loss_sum", io::Json()).is_number() &&
                           log.value("loss_steps", io::Json()).is_number_integer(),
                       json.source(), ": \"log\" must hold the integers \"bytes\", ",
                       "\"loss_steps\" and the number \"loss_sum\"");
    state.log_bytes = log.at("bytes").get<std::int64_t>();
    state.window_loss_sum = log.at("loss_sum").get<double>();
    state.window_steps = log.at("loss_steps").get<std::int64_t>();
    check<FormatError>(state.window_steps >= 0, json.source(), ": log.loss_steps must be >= 0");
  }
  std::error_code ec;
  if (fs::exists(dir / "fftw_wisdom", ec))
    state.files["fftw_wisdom"] = read_state_file(dir / "fftw_wisdom");
  return state;
}

// The start of every example program's run in folder `out`: a fresh start (an unfinished run's
// state already in out/state is an error: --resume it or choose another --out; an old log.jsonl is
// removed) or, with `resume`, the state saved in out/state restored into `model` and `optimizer`
// (load_train_state above: same settings required). `record` seeds TrainState::record of a fresh
// start (the program's bookkeeping: history, best epoch, ...). Either way, the temporaries a killed
// run left in `out` are removed first (clean_stale_temporaries), and on resume out/log.jsonl is cut
// back to its length at the save (TrainState::log_bytes): records of the steps redone go.
template <class Real>
TrainState start_or_resume(const fs::path& out, bool resume, nn::Module<Real>& model,
                           optim::Optimizer<Real>& optimizer, const io::Json& settings,
                           io::Json record) {
  const fs::path state_dir = out / "state";
  clean_stale_temporaries(out);
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
  const fs::path log = out / "log.jsonl";
  std::error_code ec;
  const auto log_size = fs::file_size(log, ec);
  if (!ec && state.log_bytes >= 0 && log_size > static_cast<std::uintmax_t>(state.log_bytes)) {
    fs::resize_file(log, static_cast<std::uintmax_t>(state.log_bytes), ec);
    check<IoError>(!ec, "cannot cut the log '", log.string(), "' back to the saved step: ",
                   ec.message());
  }
  std::printf("resumed from %s at step %lld (epoch %d, batch %lld)\n", found->string().c_str(),
              static_cast<long long>(state.step), state.epoch + 1,
              static_cast<long long>(state.next_batch));
  return state;
}

// The start of a program that trains in phases (the README's demos: pre-training, then one run per
// method), each saving its own state in out/state/<phase> with save_train_state; out/state/ lives
// until the whole run is done. A fresh start refuses an unfinished run's folder, removes
// `finished_markers` (the files by which the phases of an earlier run said they were done) and
// writes out/state/settings.json; `resume` requires that file and the same `settings`. Either way
// the temporaries of a killed run go first (clean_stale_temporaries).
inline void start_or_resume_phases(const fs::path& out, bool resume, const io::Json& settings,
                                   const std::vector<fs::path>& finished_markers) {
  const fs::path state_root = out / "state";
  clean_stale_temporaries(out);
  std::error_code ec;
  if (resume) {
    check(fs::exists(state_root / "settings.json", ec), "--resume: no saved state in '",
          state_root.string(), "' (nothing to resume; run without --resume)");
    check_same_settings(state_root, io::read_json(state_root / "settings.json"), settings);
    return;
  }
  check(!fs::exists(state_root, ec), "'", state_root.string(), "' holds the state of an ",
        "unfinished run: pass --resume to continue it, or choose another --out");
  for (const fs::path& marker : finished_markers) fs::remove(marker, ec);
  fs::create_directories(state_root, ec);
  check<IoError>(!ec, "cannot create the state folder '", state_root.string(), "': ", ec.message());
  io::write_json(state_root / "settings.json", settings);
}

// Removes a finished phase's state folder `dir` (and the .old / .new a crash mid-save leaves).
inline void remove_train_state(const fs::path& dir) {
  std::error_code ec;
  for (const char* suffix : {"", ".old", ".new"}) fs::remove_all(fs::path(dir.string() + suffix), ec);
}

}  // namespace fourierft::train
