// A downstream program: one linear layer forward and backward through the installed headers.
// Prints the loss and exits non-zero if the gradient is not what the math says.
#include <cmath>
#include <cstdio>

#include "fourierft/core/tape.hpp"
#include "fourierft/ops/linalg.hpp"
#include "fourierft/ops/reduce.hpp"

int main() {
  using namespace fourierft;
  Tape<float> tape;
  Var<float> x(Tensor<float>::from_data({2, 3}, {1, 2, 3, 4, 5, 6}));
  auto w = Var<float>::parameter(Tensor<float>::full({4, 3}, 0.5f));
  auto b = Var<float>::parameter(Tensor<float>::zeros({4}));
  Var<float> loss = ops::sum(tape, ops::linear(tape, x, w, b));  // sum(x·Wᵀ + b)
  tape.backward(loss);
  // loss = 0.5 · 4 · sum(x) = 42;  dL/dW[o, i] = sum_n x[n, i]: 5, 7, 9;  dL/db = 2
  const bool ok =
      std::abs(loss.item() - 42.0f) < 1e-4f && w.grad().at({3, 2}) == 9.0f && b.grad()[0] == 2.0f;
  std::printf("consumer: loss %.4f, dW[3,2] %.1f: %s\n", loss.item(), w.grad().at({3, 2}),
              ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
