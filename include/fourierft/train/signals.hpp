// fourierft/train/signals.hpp — InterruptFlag: Ctrl-C (SIGINT) and SIGTERM ask a training loop to
// stop at the next optimizer-step boundary, save its state and exit; a second Ctrl-C quits at once.
#pragma once

// Usage (the example programs; train::Run::end_step checks the flag after every optimizer step):
//   train::InterruptFlag interrupt;              // installs the handlers; restored by the destructor
//   for (...) { ...one optimizer step...; if (interrupt.requested()) { save state; return 130; } }
// The handler only sets an atomic flag and writes one line with write(2) (async-signal-safe), then
// restores the default action, so a second Ctrl-C kills the process without waiting for the save.
// It also ignores SIGXFSZ while it lives: past a file-size limit (RLIMIT_FSIZE, `ulimit -f`) write(2)
// then fails with EFBIG, so a save ends in an IoError naming the file instead of a killed process.

#include <atomic>
#include <csignal>
#include <cstring>

#include <unistd.h>

namespace fourierft::train {

class InterruptFlag {
 public:
  InterruptFlag() {
    flag() = 0;
    struct sigaction action {};
    action.sa_handler = &InterruptFlag::handle;
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;
    sigaction(SIGINT, &action, &old_int_);
    sigaction(SIGTERM, &action, &old_term_);
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    sigaction(SIGXFSZ, &ignore, &old_xfsz_);
  }
  ~InterruptFlag() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
    sigaction(SIGXFSZ, &old_xfsz_, nullptr);
  }
  InterruptFlag(const InterruptFlag&) = delete;
  InterruptFlag& operator=(const InterruptFlag&) = delete;

  // The signal that arrived (SIGINT or SIGTERM), or 0.
  int requested() const { return flag(); }
  // The exit status a shell reports for a process killed by the signal: 128 + signal number.
  int exit_code() const {
    const int signal = flag().load();
    return 128 + (signal != 0 ? signal : SIGINT);
  }

 private:
  static std::atomic<int>& flag() {
    static std::atomic<int> value{0};
    return value;
  }
  static void handle(int signal) {
    flag() = signal;
    static const char message[] =
        "\ninterrupt: saving the training state after this step (press Ctrl-C again to quit "
        "without saving)\n";
    const ssize_t ignored = ::write(STDERR_FILENO, message, sizeof message - 1);
    (void)ignored;
    struct sigaction fallback {};
    fallback.sa_handler = SIG_DFL;
    sigemptyset(&fallback.sa_mask);
    sigaction(signal, &fallback, nullptr);  // the next one is not caught
  }
  static_assert(std::atomic<int>::is_always_lock_free, "a signal handler needs a lock-free flag");

  struct sigaction old_int_ {};
  struct sigaction old_term_ {};
  struct sigaction old_xfsz_ {};
};

}  // namespace fourierft::train
