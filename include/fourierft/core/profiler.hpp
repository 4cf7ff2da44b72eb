// fourierft/core/profiler.hpp — the optional per-op profile (FOURIERFT_PROFILE=1): a process-wide
// table of forward / backward milliseconds per op name, filled by Tape, printed to stderr at exit.
#pragma once

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace fourierft {

// Optional per-op profile: with FOURIERFT_PROFILE=1 in the environment, every tape adds the time of
// each op to a process-wide table printed to stderr at exit (ms per op name, forward and backward,
// sorted by total). Forward time is the time since the previous recorded op (or since the tape was
// made or cleared), so unrecorded work in between (ops on frozen inputs) counts towards the next
// recorded op; backward time is the closure's own. Off (one branch per op) unless the variable is set.
namespace detail {
class OpProfile {
 public:
  static OpProfile& instance() {
    static OpProfile profile;
    return profile;
  }
  bool enabled() const { return enabled_; }
  // Forgets what was recorded so far (benchmarks call it after their warm-up step).
  void reset() {
    std::lock_guard<std::mutex> lock(mutex_);
    table_.clear();
  }
  void add(const char* op, double forward_ms, double backward_ms) {
    std::lock_guard<std::mutex> lock(mutex_);
    Entry& e = table_[op];
    e.forward_ms += forward_ms;
    e.backward_ms += backward_ms;
    if (forward_ms > 0 || backward_ms == 0) ++e.calls;
  }
  ~OpProfile() {
    if (!enabled_ || table_.empty()) return;
    std::vector<std::pair<std::string, Entry>> rows(table_.begin(), table_.end());
    std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
      return a.second.forward_ms + a.second.backward_ms > b.second.forward_ms + b.second.backward_ms;
    });
    double total = 0;
    for (const auto& [name, e] : rows) total += e.forward_ms + e.backward_ms;
    std::fprintf(stderr, "op\tcalls\tforward_ms\tbackward_ms\ttotal_ms\tshare\n");
    for (const auto& [name, e] : rows)
      std::fprintf(stderr, "%s\t%lld\t%.1f\t%.1f\t%.1f\t%.1f%%\n", name.c_str(),
                   static_cast<long long>(e.calls), e.forward_ms, e.backward_ms,
                   e.forward_ms + e.backward_ms, 100.0 * (e.forward_ms + e.backward_ms) / total);
  }

 private:
  struct Entry {
    long long calls = 0;
    double forward_ms = 0, backward_ms = 0;
  };
  OpProfile() {
    const char* env = std::getenv("FOURIERFT_PROFILE");
    enabled_ = env != nullptr && *env != '\0' && std::string(env) != "0";
  }
  bool enabled_ = false;
  std::mutex mutex_;
  std::map<std::string, Entry> table_;
};
}  // namespace detail

}  // namespace fourierft
