// Tests of include/fourierft/core: tensors, the tape, recompute, random numbers, threads, errors.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "fourierft/core/parallel.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/core/recompute.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/ops/attention.hpp"
#include "fourierft/ops/elementwise.hpp"
#include "fourierft/ops/linalg.hpp"
#include "fourierft/ops/norm.hpp"
#include "fourierft/ops/reduce.hpp"
#include "gradcheck.hpp"

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

TEST_CASE("slice_rows: a copy of rows [begin, begin + count) of the first dimension") {
  Tensor<float> t({4, 2, 3});
  for (Index i = 0; i < t.numel(); ++i) t[i] = static_cast<float>(i);
  const Tensor<float> middle = slice_rows(t, 1, 2);
  CHECK(middle.shape() == Shape{2, 2, 3});
  for (Index i = 0; i < middle.numel(); ++i) CHECK(middle[i] == static_cast<float>(i + 6));
  CHECK(slice_rows(t, 4, 0).shape() == Shape{0, 2, 3});
  t[6] = -1.0f;  // a copy, not a view
  CHECK(middle[0] == 6.0f);
  CHECK_THROWS_WITH_AS(slice_rows(t, 3, 2), "slice_rows: rows [3, 5) of (4, 2, 3)", ShapeError);
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

TEST_CASE("Tape: same-shape add and sub make their operands' gradients on first use, then add") {
  // accumulate_grad writes ±dy into a fresh gradient (no zeros first) and adds into an existing
  // one: x + x, x − x, a residual whose input also feeds another op, and a gradient left from an
  // earlier backward (accumulation across passes) must all come out as with zeros-then-add.
  Tape<double> tape;
  Var<double> x = Var<double>::parameter(Tensor<double>::from_data({2}, {1, 2}));
  Var<double> w = Var<double>::parameter(Tensor<double>::from_data({2}, {3, 5}));
  const auto seed = Tensor<double>::from_data({2}, {0.5, -2});
  tape.backward(ops::add(tape, x, x), seed);
  CHECK(x.grad()[0] == 1.0);
  CHECK(x.grad()[1] == -4.0);
  tape.clear();
  x.drop_grad();
  tape.backward(ops::sub(tape, x, x), seed);
  CHECK(x.grad()[0] == 0.0);
  CHECK(x.grad()[1] == 0.0);
  tape.clear();
  x.drop_grad();
  // r = x + x·w (the residual is recorded last, so its backward runs first and makes x's
  // gradient; the mul's backward then adds to it): dr/dx = 1 + w, dr/dw = x.
  Var<double> r = ops::add(tape, x, ops::mul(tape, x, w));
  tape.backward(r, seed);
  CHECK(x.grad()[0] == doctest::Approx(0.5 * 4));
  CHECK(x.grad()[1] == doctest::Approx(-2 * 6));
  CHECK(w.grad()[1] == doctest::Approx(-2 * 2));
  tape.clear();
  // A second pass adds to the gradients already there; b − x gives x −seed.
  Var<double> b = Var<double>::parameter(Tensor<double>::from_data({2}, {0, 0}));
  tape.backward(ops::sub(tape, b, x), seed);
  CHECK(x.grad()[0] == doctest::Approx(2 - 0.5));
  CHECK(x.grad()[1] == doctest::Approx(-12 + 2));
  CHECK(b.grad()[0] == 0.5);
}

TEST_CASE("Tests run with fresh gradients poisoned: grad_to_fill's new buffers hold NaN") {
  // Set by tests/doctest_main.cpp, so every op's "write, don't add" backward path is checked by
  // each gradient test it runs in: an element left unwritten stays NaN.
  REQUIRE(fourierft::detail::poison_fresh_gradients());
  Var<float> x = Var<float>::parameter(Tensor<float>::ones({3}));
  bool fresh = false;
  const auto g = x.grad_to_fill(fresh);
  CHECK(fresh);
  CHECK(std::isnan(g[2]));
  x.grad_to_fill(fresh);
  CHECK_FALSE(fresh);
}

TEST_CASE("Tape: an input that needs no gradient gets none") {
  Tape<float> tape;
  Var<float> w(Tensor<float>::ones({4}));  // frozen
  Var<float> x = Var<float>::parameter(Tensor<float>::ones({4}));
  tape.backward(ops::sum(tape, ops::mul(tape, x, w)));
  CHECK(x.has_grad());
  CHECK_FALSE(w.has_grad());
}

// ---------------------------------------------------------------------------
// recompute (activation checkpointing). ToyBlock: a pre-LN transformer layer with parameters,
//   a = h + attention(LN(h)·Wqᵀ, LN(h)·Wkᵀ, LN(h)·Wvᵀ) (causal, 2 heads),  y = a + W2·gelu(W1·LN(a) + b1)
//   h, y: (B, T, C)
namespace {

template <class Real>
struct ToyBlock {
  Var<Real> gamma, beta, wq, wk, wv, w1, b1, w2;  // (C) (C) (C,C)x3 (2C,C) (2C) (C,2C)
  ToyBlock() = default;
  ToyBlock(Index C, Rng& rng) {
    auto param = [&](Shape s, double sd) {
      Tensor<Real> t = randn<Real>(std::move(s), rng);
      for (Real& v : t.data()) v = static_cast<Real>(sd * double(v));
      return Var<Real>::parameter(t);
    };
    gamma = param({C}, 1.0), beta = param({C}, 0.1);
    wq = param({C, C}, 0.4), wk = param({C, C}, 0.4), wv = param({C, C}, 0.4);
    w1 = param({2 * C, C}, 0.4), b1 = param({2 * C}, 0.1), w2 = param({C, 2 * C}, 0.4);
  }
  std::vector<Var<Real>> params() const { return {gamma, beta, wq, wk, wv, w1, b1, w2}; }
  Var<Real> forward(Tape<Real>& t, const Var<Real>& h) const {
    const Var<Real> n = ops::layer_norm(t, h, gamma, beta);
    ops::AttentionOptions causal;
    causal.causal = true;
    const Var<Real> att = ops::attention(t, ops::linear(t, n, wq), ops::linear(t, n, wk),
                                         ops::linear(t, n, wv), 2, causal);
    const Var<Real> a = ops::add(t, h, att);
    const Var<Real> m = ops::gelu(t, ops::linear(t, ops::layer_norm(t, a, gamma, beta), w1, b1));
    return ops::add(t, a, ops::linear(t, m, w2));
  }
};

template <class Real>
bool same_bits(const Tensor<Real>& a, const Tensor<Real>& b) {
  return a.shape() == b.shape() &&
         std::memcmp(a.ptr(), b.ptr(), sizeof(Real) * static_cast<std::size_t>(a.numel())) == 0;
}

// Loss, dL/dx and every parameter gradient of a 3-layer stack; layer 1 is z = s + block(s) with
// s = in / 2 and, when checkpointed, block(s) checkpointed again inside it (nested use).
template <class Real>
struct StackRun {
  Tensor<Real> loss, dx;
  std::vector<Tensor<Real>> grads;
  std::size_t nodes = 0;  // outer tape nodes after the forward
};

template <class Real>
StackRun<Real> run_stack(bool checkpointed, bool x_needs_grad) {
  Rng rng(11);
  std::vector<ToyBlock<Real>> blocks;
  for (int i = 0; i < 3; ++i) blocks.emplace_back(8, rng);
  const Tensor<Real> x0 = randn<Real>({2, 5, 8}, rng), probe = randn<Real>({2, 5, 8}, rng);
  auto layer = [&](std::size_t i) {
    const ToyBlock<Real>& b = blocks[i];
    return [&b, i, checkpointed](Tape<Real>& t, const Var<Real>& in) {
      if (i != 1) return b.forward(t, in);
      const Var<Real> s = ops::scale(t, in, Real(0.5));
      auto inner = [&b](Tape<Real>& u, const Var<Real>& z) { return b.forward(u, z); };
      return ops::add(t, s, checkpointed ? recompute(t, s, inner) : inner(t, s));
    };
  };
  Var<Real> x(x0.clone(), x_needs_grad);
  Tape<Real> tape;
  Var<Real> h = x;
  for (std::size_t i = 0; i < blocks.size(); ++i)
    h = checkpointed ? recompute(tape, h, layer(i)) : layer(i)(tape, h);
  StackRun<Real> out;
  out.nodes = tape.size();
  const Var<Real> loss = ops::sum(tape, ops::mul(tape, h, probe));
  tape.backward(loss);
  out.loss = loss.value().clone();
  if (x_needs_grad) out.dx = x.grad().clone();
  for (const auto& b : blocks)
    for (Var<Real> p : b.params()) out.grads.push_back(p.grad().clone());
  return out;
}

}  // namespace

TEST_CASE_TEMPLATE("recompute: loss and every gradient bit-identical to the plain run", Real,
                   float, double) {
  for (bool x_needs_grad : {true, false}) {  // false: the first layer (input from an embedding)
    CAPTURE(x_needs_grad);
    const StackRun<Real> plain = run_stack<Real>(false, x_needs_grad);
    const StackRun<Real> ckpt = run_stack<Real>(true, x_needs_grad);
    CHECK(ckpt.nodes == 3);  // one node per checkpointed layer
    CHECK(plain.nodes > 30);
    CHECK(same_bits(plain.loss, ckpt.loss));
    if (x_needs_grad) {
      CHECK(same_bits(plain.dx, ckpt.dx));
      CHECK(plain.dx.numel() == 80);
    }
    REQUIRE(plain.grads.size() == ckpt.grads.size());
    for (std::size_t i = 0; i < plain.grads.size(); ++i) {
      CAPTURE(i);
      CHECK(same_bits(plain.grads[i], ckpt.grads[i]));
    }
    double norm = 0;  // the gradients are not trivially zero
    for (Real v : ckpt.grads[2].data()) norm += double(v) * double(v);
    CHECK(norm > 1e-6);
  }
}

TEST_CASE("recompute: gradients match central differences (x and the block's parameters)") {
  Rng rng(5);
  const Index C = 6;
  ToyBlock<double> shapes(C, rng);
  std::vector<Tensor<double>> inputs = {randn<double>({2, 4, C}, rng)};
  for (const Var<double>& p : shapes.params()) inputs.push_back(p.value().clone());
  auto loss = [](Tape<double>& t, std::span<const Var<double>> in) {
    ToyBlock<double> b;
    b.gamma = in[1], b.beta = in[2], b.wq = in[3], b.wk = in[4], b.wv = in[5];
    b.w1 = in[6], b.b1 = in[7], b.w2 = in[8];
    const Var<double> y = recompute(t, in[0], [b](Tape<double>& u, const Var<double>& h) {
      return b.forward(u, ops::scale(u, h, 1.5));
    });
    return testing::project(t, y);
  };
  testing::GradcheckResult r = testing::gradcheck(loss, inputs, {.eps = 1e-6, .rtol = 1e-5});
  INFO(r.report());
  CHECK(r.ok);
  CHECK(r.checks > 9);
}

TEST_CASE("recompute: the outer tape keeps one node and none of the block's activations") {
  Tape<double> tape;
  Var<double> w = Var<double>::parameter(Tensor<double>::full({4}, 2.0));
  Var<double> x(Tensor<double>::from_data({4}, {1, 2, 3, 4}));  // needs no gradient
  std::weak_ptr<int> saved;  // lives as long as the closure of the block's probe op
  auto block = [&](Tape<double>& t, const Var<double>& h) {
    const Var<double> a = ops::mul(t, h, w);
    Var<double> b = t.output(a.shape());
    for (Index i = 0; i < 4; ++i) b.value()[i] = 3 * a.value()[i];
    auto token = std::make_shared<int>(0);
    saved = token;
    t.record("probe", {a}, b, [a, token](std::span<const double> dy) {
      const std::span<double> da = grad_if_needed(a);
      for (std::size_t i = 0; i < da.size(); ++i) da[i] += 3 * dy[i];
    });
    return ops::tanh(t, b);
  };
  {  // plain: the tape holds the block's closures (and what they captured) until clear()
    const Var<double> y = block(tape, x);
    CHECK(tape.size() == 3);
    CHECK_FALSE(saved.expired());
    tape.clear();
    CHECK(saved.expired());
  }
  const Var<double> y = recompute(tape, x, block);
  CHECK(tape.size() == 1);
  CHECK(tape.op_names() == std::vector<std::string>{"recompute"});
  CHECK(saved.expired());  // the forward's local tape is gone
  CHECK(y.requires_grad());  // through w, although x needs none
  tape.backward(ops::sum(tape, y));
  CHECK(saved.expired());  // the re-run's local tape is gone too
  for (Index i = 0; i < 4; ++i)  // d/dw sum(tanh(3·x·w)) = 3·x·(1 - tanh²)
    CHECK(w.grad()[i] == doctest::Approx(3 * x.value()[i] *
                                         (1 - std::pow(std::tanh(6 * x.value()[i]), 2))));
  CHECK_FALSE(x.has_grad());
  tape.clear();

  // Nothing needs a gradient: nothing is recorded, as in the plain run.
  w.set_requires_grad(false);
  CHECK_FALSE(recompute(tape, x, block).requires_grad());
  CHECK(tape.size() == 0);
  // Under NoGradScope the block simply runs on the tape (nothing recorded either).
  w.set_requires_grad(true);
  {
    NoGradScope<double> no_grad(tape);
    CHECK(recompute(tape, x, block).value()[0] == doctest::Approx(std::tanh(6.0)));
    CHECK(tape.size() == 0);
  }
}

TEST_CASE("recompute: dropout is replayed from its streams; without them backward says why") {
  const Tensor<double> x0 = Tensor<double>::from_data({8}, {1, 2, 3, 4, 5, 6, 7, 8});
  auto run = [&](int mode) {  // 0 plain, 1 checkpointed with the stream, 2 without it
    Var<double> w = Var<double>::parameter(Tensor<double>::full({8}, 0.5));
    Rng dropout_rng(2024);
    auto block = [&w, &dropout_rng](Tape<double>& t, const Var<double>& h) {
      return ops::mul(t, ops::dropout(t, h, 0.5, dropout_rng), w);
    };
    Tape<double> tape;
    const Var<double> x(x0);
    const Var<double> y = mode == 0 ? block(tape, x)
                          : mode == 1 ? recompute(tape, x, block, {&dropout_rng})
                                      : recompute(tape, x, block);
    Rng after_forward = dropout_rng;
    tape.backward(ops::sum(tape, ops::mul(tape, y, y)));
    CHECK(dropout_rng.next_u64() == after_forward.next_u64());  // the stream is where it was
    return std::make_pair(y.value().clone(), w.grad().clone());
  };
  const auto [y_plain, dw_plain] = run(0);
  const auto [y_ckpt, dw_ckpt] = run(1);
  CHECK(same_bits(y_plain, y_ckpt));
  CHECK(same_bits(dw_plain, dw_ckpt));
  int dropped = 0;
  for (double v : y_plain.data()) dropped += v == 0;
  CHECK(dropped > 0);
  CHECK(dropped < 8);
  try {
    run(2);
    FAIL("backward re-drew the dropout mask without an error");
  } catch (const ValueError& e) {
    const std::string what = e.what();
    CHECK(what.find("recompute: re-running the block in backward gave a different output") !=
          std::string::npos);
    CHECK(what.find("random streams") != std::string::npos);
  }
}

TEST_CASE("threads: one knob") {
  set_num_threads(1);
  CHECK(num_threads() == 1);
  set_num_threads(2);
  CHECK(num_threads() == 2);
  CHECK_THROWS_AS(set_num_threads(0), ValueError);
}
