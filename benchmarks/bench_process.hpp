// benchmarks/bench_process.hpp — what the bench_* programs share around their cases: each case in a
// forked child (its own peak RSS), the median of timed runs, and reading an option's value.
#pragma once

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

namespace fourierft::bench {

// Runs `body` (which prints the case's row) in a forked child: a fresh heap, so the peak RSS is the
// case's own. A thrown exception prints "<program> <name>: <what>" and fails the case; a normal end
// runs exit(0), so static destructors run (FOURIERFT_PROFILE prints its table there).
template <class Body>
bool run_forked(const char* program, const std::string& name, Body&& body) {
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    try {
      body();
      std::fflush(stdout);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s %s: %s\n", program, name.c_str(), e.what());
      std::fflush(stderr);
      std::_Exit(1);
    }
    std::exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// Peak resident memory of this process so far, in MiB.
inline double peak_rss_mb() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

// The median of timed runs (the mean of the middle two for an even count).
inline double median(std::vector<double> ms) {
  std::sort(ms.begin(), ms.end());
  return ms.size() % 2 ? ms[ms.size() / 2] : 0.5 * (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]);
}

// The value after option argv[i] (advancing i); a missing one prints "<program>: <option> needs a
// value" and exits with status 2.
inline std::string option_value(const char* program, int argc, char** argv, int& i) {
  if (i + 1 >= argc) {
    std::fprintf(stderr, "%s: %s needs a value\n", program, argv[i]);
    std::exit(2);
  }
  return argv[++i];
}

}  // namespace fourierft::bench
