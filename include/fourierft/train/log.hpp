// fourierft/train/log.hpp — what a training run records: a JSON-lines log of every logged step and
// every evaluation (<out>/log.jsonl), the step line printed to the console, and the NaN/Inf check.
#pragma once

// log.jsonl holds one JSON object per line, each with an "event":
//   {"event":"start","time":...,"settings":{...}}                       once per run (and resume)
//   {"event":"step","step":120,"epoch":1,"loss":0.4132,"lr":[0.05,0.006],"ms":83.1,...}
//   {"event":"eval","step":900,"epoch":3,"metric":"accuracy","value":0.8812,"scores":{...}}
//   {"event":"interrupt","step":57,...}   {"event":"done",...}
// Each line is written whole and flushed, so `tail -f` sees complete lines; sync() (train::Run
// calls it at every state save) also fsyncs the file. A resumed run first cuts the file back to its
// length at the save it resumes from (train::start_or_resume), then appends: a SIGKILL's torn last
// line and the records of steps redone are gone.

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>

#include "fourierft/core/error.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/util/atomic_file.hpp"

namespace fourierft::train {

class JsonlLog {
 public:
  JsonlLog() = default;
  // Opens `path` for appending (creating its folder); IoError naming the path if it cannot.
  explicit JsonlLog(const std::filesystem::path& path) : path_(path) {
    std::error_code ec;
    if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
    out_.open(path, std::ios::app | std::ios::binary);
    check<IoError>(static_cast<bool>(out_), "cannot open the log '", path.string(),
                   "' for appending");
  }
  // Writes `record` as one line, with "time" (seconds since the epoch) added.
  void write(io::Json record) {
    if (!out_.is_open()) return;
    record["time"] = static_cast<double>(std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count()) /
                     1000.0;
    out_ << record.dump(-1, ' ', true, io::Json::error_handler_t::replace) << '\n';
    out_.flush();
    check<IoError>(static_cast<bool>(out_), "writing the log '", path_.string(), "' failed");
  }
  // Flushes and fsyncs the file (IoError naming it if that fails); returns its length in bytes,
  // or -1 for a log that writes nothing (ranks other than 0).
  std::int64_t sync() {
    if (!out_.is_open()) return -1;
    out_.flush();
    check<IoError>(static_cast<bool>(out_), "writing the log '", path_.string(), "' failed");
    if (const int err = util::detail::fsync_path(path_, false); err != 0)
      throw IoError(str_cat("fsync of the log '", path_.string(), "' failed: ", std::strerror(err)));
    return static_cast<std::int64_t>(std::filesystem::file_size(path_));
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::ofstream out_;
};

// JSON has no NaN or infinity: non-finite numbers are written as strings ("nan", "inf").
inline io::Json json_number(double v) {
  if (std::isfinite(v)) return v;
  return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf");
}

// The console line of a logged step, STYLE.md's format: "step 120 | loss 0.4132 | lr 5.0e-02 | 83 ms".
inline std::string step_line(std::int64_t step, double loss, double lr, double ms) {
  char buffer[128];
  std::snprintf(buffer, sizeof buffer, "step %lld | loss %.4f | lr %.1e | %.0f ms",
                static_cast<long long>(step), loss, lr, ms);
  return buffer;
}

// Stops training on a NaN or infinite loss, naming the step and what usually causes it.
inline void check_finite_loss(double loss, std::int64_t step, int epoch) {
  check(std::isfinite(loss), "the training loss is ", loss, " at step ", step, " (epoch ", epoch,
        "); the run stopped there. Lower --lr / --head-lr or --scaling, or check the data; the ",
        "last saved state (if any) is untouched");
}

// The line a program prints when an exception ends its main, and the exit status (1):
// "<program>: <what>" for a fourierft::Error (its message names the file, tensor or option),
// "<program>: unexpected error: <what>" for any other exception.
inline int report_error(const char* program, const std::exception& e) {
  const bool ours = dynamic_cast<const Error*>(&e) != nullptr;
  std::fprintf(stderr, "%s: %s%s\n", program, ours ? "" : "unexpected error: ", e.what());
  return 1;
}

// Wall-clock seconds since `start`.
inline double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// "1h02m", "3m05s", "12s".
inline std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<long long>(seconds + 0.5);
  char buffer[32];
  if (s >= 3600)
    std::snprintf(buffer, sizeof buffer, "%lldh%02lldm", s / 3600, (s % 3600) / 60);
  else if (s >= 60)
    std::snprintf(buffer, sizeof buffer, "%lldm%02llds", s / 60, s % 60);
  else
    std::snprintf(buffer, sizeof buffer, "%llds", s);
  return buffer;
}

}  // namespace fourierft::train
