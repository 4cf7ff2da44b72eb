// Tests of include/fourierft/ops: forward values (float and double) and gradient checks (double).
#include <doctest/doctest.h>

#include "fourierft/ops/elementwise.hpp"
#include "fourierft/ops/linalg.hpp"
#include "fourierft/ops/reduce.hpp"
#include "gradcheck.hpp"

using namespace fourierft;
using fourierft::testing::gradcheck;
using fourierft::testing::project;
using fourierft::testing::GradcheckResult;

TEST_CASE_TEMPLATE("add/sub/mul/div broadcast a trailing bias and a scalar", Real, float, double) {
  Tape<Real> tape;
  Var<Real> a(Tensor<Real>::from_data({2, 3}, {1, 2, 3, 4, 5, 6}));
  Var<Real> bias(Tensor<Real>::from_data({3}, {10, 20, 30}));
  Var<Real> two(Tensor<Real>::scalar(2));
  CHECK(ops::add(tape, a, bias).value()[4] == doctest::Approx(25));
  CHECK(ops::sub(tape, bias, a).value()[0] == doctest::Approx(9));
  CHECK(ops::mul(tape, a, two).value()[5] == doctest::Approx(12));
  CHECK(ops::div(tape, a, two).value()[1] == doctest::Approx(1));
  CHECK_THROWS_AS(ops::add(tape, a, Var<Real>(Tensor<Real>({2}))), ShapeError);
}

TEST_CASE("elementwise: gradients match central differences (same shape, bias, scalar)") {
  Rng rng(1);
  auto a = randn<double>({2, 3, 4}, rng), b = randn<double>({4}, rng), s = randn<double>({1}, rng);
  for (auto op : {ops::BinaryOp::add, ops::BinaryOp::sub, ops::BinaryOp::mul, ops::BinaryOp::div}) {
    auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
      auto y = ops::binary(t, op, "op", in[0], in[1]);
      return project(t, ops::binary(t, op, "op", y, in[2]));
    };
    auto b_away_from_zero = b.clone();
    for (double& v : b_away_from_zero.data()) v += v >= 0 ? 1.0 : -1.0;
    GradcheckResult r = gradcheck(loss, {a, b_away_from_zero, Tensor<double>::full({1}, 1.5)});
    INFO(r.report());
    CHECK(r.ok);
    // The broadcast operand first: bias (op) x, scalar (op) (bias (op) x).
    auto loss_swapped = [&](Tape<double>& t, std::span<const Var<double>> in) {
      auto y = ops::binary(t, op, "op", in[1], in[0]);
      return project(t, ops::binary(t, op, "op", in[2], y));
    };
    auto a_away_from_zero = a.clone();
    for (double& v : a_away_from_zero.data()) v += v >= 0 ? 1.0 : -1.0;
    GradcheckResult r2 = gradcheck(loss_swapped, {a_away_from_zero, b_away_from_zero, Tensor<double>::full({1}, 1.5)});
    INFO(r2.report());
    CHECK(r2.ok);
  }
  (void)s;
}

TEST_CASE("elementwise: large operands (threaded loops) match a plain loop, forward and backward") {
  // 300 x 512 > 65536 elements: the parallel same-shape, bias-repeat and broadcast-first paths.
  Rng rng(8);
  const Index rows = 300, cols = 512;
  auto a = randn<double>({rows, cols}, rng), b = randn<double>({rows, cols}, rng);
  auto bias = randn<double>({cols}, rng), dy = randn<double>({rows, cols}, rng);
  for (auto op : {ops::BinaryOp::add, ops::BinaryOp::sub, ops::BinaryOp::mul}) {
    const double sb = op == ops::BinaryOp::sub ? -1.0 : 1.0;
    for (int form = 0; form < 3; ++form) {  // full (op) full, full (op) bias, bias (op) full
      Tape<double> tape;
      Var<double> left = Var<double>::parameter(form == 2 ? bias : a);
      Var<double> right = Var<double>::parameter(form == 0 ? b : form == 1 ? bias : b);
      Var<double> y = ops::binary(tape, op, "op", left, right);
      tape.backward(y, dy);
      std::vector<double> d_left(left.value().numel(), 0.0), d_right(right.value().numel(), 0.0);
      bool values_ok = true;
      for (Index i = 0; i < rows * cols; ++i) {
        const Index il = i % left.value().numel(), ir = i % right.value().numel();
        const double u = left.value()[il], v = right.value()[ir];
        const double expected = op == ops::BinaryOp::mul ? u * v : u + sb * v;
        values_ok = values_ok && std::abs(y.value()[i] - expected) < 1e-12;
        d_left[il] += dy[i] * (op == ops::BinaryOp::mul ? v : 1.0);
        d_right[ir] += dy[i] * (op == ops::BinaryOp::mul ? u : sb);
      }
      INFO("op ", int(op), " form ", form);
      CHECK(values_ok);
      for (Index i = 0; i < left.value().numel(); ++i)
        REQUIRE(left.grad()[i] == doctest::Approx(d_left[i]).epsilon(1e-10));
      for (Index i = 0; i < right.value().numel(); ++i)
        REQUIRE(right.grad()[i] == doctest::Approx(d_right[i]).epsilon(1e-10));
    }
  }
}

TEST_CASE_TEMPLATE("linear: both weight layouts give x·Wᵀ + b", Real, float, double) {
  Rng rng(3);
  Tape<Real> tape;
  Var<Real> x(randn<Real>({2, 3, 4}, rng)), w(randn<Real>({5, 4}, rng)), b(randn<Real>({5}, rng));
  Var<Real> y = ops::linear(tape, x, w, b);
  REQUIRE(y.shape() == Shape{2, 3, 5});
  // Conv1D layout stores Wᵀ: the same product.
  Tensor<Real> wt({4, 5});
  for (Index i = 0; i < 5; ++i)
    for (Index j = 0; j < 4; ++j) wt.at({j, i}) = w.value().at({i, j});
  Var<Real> y2 = ops::linear(tape, x, Var<Real>(wt), b, ops::WeightLayout::in_out);
  for (Index n = 0; n < 6; ++n)
    for (Index o = 0; o < 5; ++o) {
      double ref = b.value()[o];
      for (Index i = 0; i < 4; ++i) ref += double(x.value()[n * 4 + i]) * w.value().at({o, i});
      CHECK(y.value()[n * 5 + o] == doctest::Approx(ref).epsilon(1e-5));
      CHECK(y2.value()[n * 5 + o] == doctest::Approx(ref).epsilon(1e-5));
    }
}

TEST_CASE("linear: gradients match central differences in both layouts") {
  Rng rng(4);
  auto x = randn<double>({3, 2, 4}, rng), w = randn<double>({5, 4}, rng), b = randn<double>({5}, rng);
  auto w_in_out = randn<double>({4, 5}, rng);
  auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
    return project(t, ops::linear(t, in[0], in[1], in[2]));
  };
  GradcheckResult r = gradcheck(loss, {x, w, b});
  INFO(r.report());
  CHECK(r.ok);
  auto loss_conv1d = [&](Tape<double>& t, std::span<const Var<double>> in) {
    return project(t, ops::linear(t, in[0], in[1], in[2], ops::WeightLayout::in_out));
  };
  GradcheckResult r2 = gradcheck(loss_conv1d, {x, w_in_out, b});
  INFO(r2.report());
  CHECK(r2.ok);
}

TEST_CASE("linear: a frozen weight gets no gradient and a width mismatch names both shapes") {
  Rng rng(5);
  Tape<float> tape;
  Var<float> x = Var<float>::parameter(randn<float>({4, 7}, rng));
  Var<float> w(randn<float>({3, 7}, rng));  // frozen
  tape.backward(ops::sum(tape, ops::linear(tape, x, w)));
  CHECK(x.has_grad());
  CHECK_FALSE(w.has_grad());
  Var<float> w_bad(randn<float>({3, 5}, rng));
  CHECK_THROWS_WITH_AS(ops::linear(tape, x, w_bad),
                       "linear: x has shape (4, 7) but weight (3, 5) expects last dim 5", ShapeError);
}

TEST_CASE("linear at a size that runs threaded: y = b + x·Wᵀ, and the bias gradient sums rows in order") {
  // Large enough for the bias rows and sum_rows_into to run over threads (N·d_out > 65536, more
  // than one 256-column block), with a frozen weight and a trainable bias.
  Rng rng(15);
  const Index N = 150, d_in = 9, d_out = 700;
  Tape<float> tape;
  Var<float> x(randn<float>({N, d_in}, rng)), w(randn<float>({d_out, d_in}, rng));
  Var<float> b = Var<float>::parameter(randn<float>({d_out}, rng));
  Var<float> y = ops::linear(tape, x, w, b);
  for (Index n : {Index(0), Index(77), N - 1})
    for (Index o : {Index(0), Index(255), Index(256), d_out - 1}) {
      double ref = b.value()[o];
      for (Index i = 0; i < d_in; ++i) ref += double(x.value()[n * d_in + i]) * w.value().at({o, i});
      CHECK(y.value()[n * d_out + o] == doctest::Approx(ref).epsilon(1e-5));
    }
  const Tensor<float> dy = randn<float>({N, d_out}, rng);
  tape.backward(y, dy);
  for (Index o = 0; o < d_out; ++o) {
    float serial = 0;  // the same additions in the same order: the same bits
    for (Index n = 0; n < N; ++n) serial += dy[n * d_out + o];
    REQUIRE(b.grad()[o] == serial);
  }
}

TEST_CASE("matmul: batched with transposes and a shared right operand; gradients") {
  Rng rng(6);
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      auto a = randn<double>(ta ? Shape{2, 4, 3} : Shape{2, 3, 4}, rng);
      auto b = randn<double>(tb ? Shape{2, 5, 4} : Shape{2, 4, 5}, rng);
      auto b2 = randn<double>(tb ? Shape{5, 4} : Shape{4, 5}, rng);
      auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
        return project(t, ops::matmul(t, in[0], in[1], ta, tb));
      };
      GradcheckResult r = gradcheck(loss, {a, b});
      INFO("ta=", ta, " tb=", tb, " ", r.report());
      CHECK(r.ok);
      GradcheckResult r2 = gradcheck(loss, {a, b2});
      INFO("shared b: ", r2.report());
      CHECK(r2.ok);
    }
  Tape<double> tape;
  Var<double> a(Tensor<double>::from_data({2, 2}, {1, 2, 3, 4}));
  Var<double> y = ops::matmul(tape, a, a, false, true);  // a·aᵀ
  CHECK(y.value()[1] == doctest::Approx(11));
}
