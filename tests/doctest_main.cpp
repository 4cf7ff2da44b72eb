// The doctest main shared by every test executable (compiled once).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "fourierft/core/tape.hpp"

int main(int argc, char** argv) {
  // Every gradient buffer made to be written rather than added to (Var::grad_to_fill) starts as
  // NaN here, so a backward that adds into one, or leaves part of it unwritten, fails each gradient
  // check and reference comparison it passes through.
  fourierft::detail::poison_fresh_gradients() = true;
  doctest::Context context;
  context.applyCommandLine(argc, argv);
  return context.run();
}
