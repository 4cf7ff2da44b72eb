// Tests of include/fourierft/core: tensors, the tape, random numbers, threads, errors.
#include <doctest/doctest.h>

#include <sstream>

#include "fourierft/core/parallel.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/ops/elementwise.hpp"
#include "fourierft/ops/reduce.hpp"

using namespace fourierft;

TEST_CASE_TEMPLATE("Tensor: construction, access, reshape, clone and sharing", Real, float, double) {
  auto t = Tensor<Real>::from_data({2, 3}, {1, 2, 3, 4, 5, 6});
  CHECK(t.numel() == 6);
  CHECK(t.size(-1) == 3);
  CHECK(t.at({1, 2}) == 6);
  CHECK_THROWS_AS(t.at({2, 0}), IndexError);
  auto view = t.reshape({3, -1});
  CHECK(view.shape() == Shape{3, 2});
  view[0] = 10;
  CHECK(t[0] == 10);  // views share storage
  auto copy = t.clone();
  copy[0] = 0;
  CHECK(t[0] == 10);
  CHECK_THROWS_WITH_AS(t.reshape({4, 2}), "reshape: cannot view shape (2, 3) (6 elements) as (4, 2)",
                       ShapeError);
  CHECK(Tensor<Real>::ones({2, 2})[3] == 1);
  CHECK(Tensor<Real>::full({2}, 7)[1] == 7);
  auto m = as_matrix(t);
  CHECK(m.rows() == 2);
  CHECK(m(1, 0) == 4);
  CHECK_THROWS_AS(Tensor<Real>::from_data({2, 2}, {1, 2, 3}), ShapeError);
}

TEST_CASE("Tensor: printing summarises long dims") {
  std::ostringstream out;
  out << Tensor<float>::from_data({2, 2}, {1, 2, 3, 4});
  CHECK(out.str() == "tensor([[1, 2], [3, 4]], shape=(2, 2))");
  std::ostringstream long_out;
  long_out << Tensor<float>({10});
  CHECK(long_out.str() == "tensor([0, 0, 0, ..., 0, 0, 0], shape=(10))");
}

TEST_CASE("Rng: seeded, reproducible, roughly standard normal") {
  Rng a(7), b(7);
  auto x = randn<double>({10000}, a), y = randn<double>({10000}, b);
  double mean = 0, var = 0;
  for (Index i = 0; i < x.numel(); ++i) {
    CHECK(x[i] == y[i]);
    mean += x[i];
  }
  mean /= x.numel();
  for (double v : x.data()) var += (v - mean) * (v - mean);
  var /= x.numel();
  CHECK(std::abs(mean) < 0.05);
  CHECK(std::abs(var - 1) < 0.05);
  auto u = uniform<float>({1000}, a, -2.f, 3.f);
  for (float v : u.data()) {
    CHECK(v >= -2.f);
    CHECK(v < 3.f);
  }
}

TEST_CASE("torch_randperm_prefix matches PyTorch's randperm (golden values, NOTES.md)") {
  const std::vector<std::int64_t> seed777_768x768 = {391271, 183699, 413551, 384200,
                                                     435559, 59955,  374469, 198662};
  CHECK(torch_randperm_prefix(768 * 768, 8, 777) == seed777_768x768);
  const std::vector<std::int64_t> seed777_768x2304 = {981095, 180561, 1590263, 381278,
                                                      1024179, 634334, 361077, 190234};
  CHECK(torch_randperm_prefix(768 * 2304, 8, 777) == seed777_768x2304);
  const std::vector<std::int64_t> seed2024 = {466568, 254852, 455206, 248204,
                                              53127,  314058, 4414,   29327};
  CHECK(torch_randperm_prefix(768 * 768, 8, 2024) == seed2024);
  auto all = torch_randperm_prefix(10, 10, 1);
  std::sort(all.begin(), all.end());
  for (int i = 0; i < 10; ++i) CHECK(all[i] == i);
  CHECK_THROWS_AS(torch_randperm_prefix(10, 11, 1), ValueError);
}

TEST_CASE("Tape: accumulation, seeds, no-grad scope, detach, freeing") {
  Tape<double> tape;
  Var<double> x = Var<double>::parameter(Tensor<double>::from_data({3}, {1, 2, 3}));
  // y = x*x + x, used twice: gradients from both uses add up.
  Var<double> y = ops::add(tape, ops::mul(tape, x, x), x);
  Var<double> l = ops::sum(tape, ops::add(tape, y, y));
  CHECK(tape.size() == 4);  // mul, add, add, sum
  tape.backward(l);
  CHECK(x.grad()[1] == doctest::Approx(2 * (2 * 2 + 1)));
  CHECK_THROWS_AS(tape.backward(l), ValueError);  // already run
  tape.clear();
  CHECK(tape.size() == 0);

  // Gradients accumulate across backward passes until zero_grad.
  tape.backward(ops::sum(tape, x));
  CHECK(x.grad()[0] == doctest::Approx(2 * 3 + 1));
  x.zero_grad();
  CHECK(x.grad()[0] == 0);
  tape.clear();

  // Non-scalar output: needs a seed.
  Var<double> v = ops::mul(tape, x, x);
  CHECK_THROWS_WITH_AS(tape.backward(v),
                       "backward: loss has shape (3); a non-scalar output needs a seed gradient: "
                       "backward(y, seed)",
                       ShapeError);
  tape.backward(v, Tensor<double>::from_data({3}, {1, 0, 0}));
  CHECK(x.grad()[0] == doctest::Approx(2));
  CHECK(x.grad()[1] == 0);
  tape.clear();

  {
    NoGradScope<double> no_grad(tape);
    Var<double> z = ops::mul(tape, x, x);
    CHECK_FALSE(z.requires_grad());
    CHECK(tape.size() == 0);
  }
  Var<double> d = x.detach();
  CHECK_FALSE(ops::mul(tape, d, d).requires_grad());
  CHECK(d.value().shares_storage_with(x.value()));
}

TEST_CASE("Tape: an input that needs no gradient gets none") {
  Tape<float> tape;
  Var<float> w(Tensor<float>::ones({4}));  // frozen
  Var<float> x = Var<float>::parameter(Tensor<float>::ones({4}));
  tape.backward(ops::sum(tape, ops::mul(tape, x, w)));
  CHECK(x.has_grad());
  CHECK_FALSE(w.has_grad());
}

TEST_CASE("threads: one knob") {
  set_num_threads(1);
  CHECK(num_threads() == 1);
  set_num_threads(2);
  CHECK(num_threads() == 2);
  CHECK_THROWS_AS(set_num_threads(0), ValueError);
}
