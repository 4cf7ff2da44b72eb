// Tests of include/fourierft/ops/shape.hpp and ops/indexing.hpp: reshape, transpose, permute,
// embedding, narrow, select, concat. Forward values (float and double), gradient checks (double),
// and the error messages for bad dims, indices and ids.
#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "fourierft/ops/elementwise.hpp"
#include "fourierft/ops/indexing.hpp"
#include "fourierft/ops/reduce.hpp"
#include "fourierft/ops/shape.hpp"
#include "gradcheck.hpp"

using namespace fourierft;
using fourierft::testing::gradcheck;
using fourierft::testing::project;
using fourierft::testing::GradcheckResult;

namespace {
template <class Real>
Tensor<Real> iota(Shape shape) {  // 0, 1, 2, ... in row-major order
  Tensor<Real> t(std::move(shape));
  for (Index i = 0; i < t.numel(); ++i) t[i] = static_cast<Real>(i);
  return t;
}
}  // namespace

// ---------------------------------------------------------------------------
// reshape

TEST_CASE_TEMPLATE("reshape: a view of the same storage; -1 is inferred", Real, float, double) {
  Tape<Real> tape;
  Var<Real> x(iota<Real>({2, 3, 4}));
  Var<Real> y = ops::reshape(tape, x, {6, -1});
  CHECK(y.shape() == Shape{6, 4});
  CHECK(y.value().shares_storage_with(x.value()));
  CHECK(y.value().at({5, 3}) == Real(23));
  CHECK_THROWS_WITH_AS(ops::reshape(tape, x, {5, 5}),
                       "reshape: cannot view shape (2, 3, 4) (24 elements) as (5, 5)", ShapeError);
}

TEST_CASE("reshape: the gradient passes through unchanged") {
  Rng rng(11);
  auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
    return project(t, ops::reshape(t, in[0], {3, -1, 2}));
  };
  GradcheckResult r = gradcheck(loss, {randn<double>({2, 3, 4}, rng)});
  INFO(r.report());
  CHECK(r.ok);
}

// ---------------------------------------------------------------------------
// transpose, permute

TEST_CASE_TEMPLATE("transpose and permute move every element to its permuted index", Real, float,
                   double) {
  Tape<Real> tape;
  Var<Real> x(iota<Real>({2, 3, 4, 5}));                // (B, T, NH, HS)
  Var<Real> y = ops::permute(tape, x, {0, 2, 1, 3});    // (B, NH, T, HS)
  Var<Real> z = ops::transpose(tape, x, -1, 1);         // (B, HS, NH, T)
  Var<Real> w = ops::permute(tape, x, {-1, 0, -2, 1});  // (HS, B, NH, T)
  REQUIRE(y.shape() == Shape{2, 4, 3, 5});
  REQUIRE(z.shape() == Shape{2, 5, 4, 3});
  REQUIRE(w.shape() == Shape{5, 2, 4, 3});
  for (Index b = 0; b < 2; ++b)
    for (Index t = 0; t < 3; ++t)
      for (Index h = 0; h < 4; ++h)
        for (Index s = 0; s < 5; ++s) {
          const Real v = x.value().at({b, t, h, s});
          CHECK(y.value().at({b, h, t, s}) == v);
          CHECK(z.value().at({b, s, h, t}) == v);
          CHECK(w.value().at({s, b, h, t}) == v);
        }
  // A matrix transpose, and the identity permutation of a scalar.
  Var<Real> m(Tensor<Real>::from_data({2, 3}, {1, 2, 3, 4, 5, 6}));
  Var<Real> mt = ops::transpose(tape, m, 0, 1);
  CHECK(std::vector<Real>(mt.data().begin(), mt.data().end()) ==
        std::vector<Real>{1, 4, 2, 5, 3, 6});
  Var<Real> s(Tensor<Real>::scalar(7));
  CHECK(ops::permute(tape, s, std::span<const Index>()).item() == Real(7));
}

TEST_CASE("transpose and permute: gradients are the inverse permutation") {
  Rng rng(12);
  auto x = randn<double>({2, 3, 4}, rng);
  auto loss_t = [&](Tape<double>& t, std::span<const Var<double>> in) {
    return project(t, ops::transpose(t, in[0], 0, -1));
  };
  GradcheckResult r = gradcheck(loss_t, {x});
  INFO(r.report());
  CHECK(r.ok);
  // A 3-cycle (not its own inverse), on a tensor large enough for the parallel path.
  auto big = randn<double>({40, 50, 36}, rng);
  auto loss_p = [&](Tape<double>& t, std::span<const Var<double>> in) {
    return project(t, ops::permute(t, in[0], {2, 0, 1}));
  };
  GradcheckResult r2 = gradcheck(loss_p, {big});
  INFO(r2.report());
  CHECK(r2.ok);
  GradcheckResult r3 = gradcheck(loss_p, {x});
  INFO(r3.report());
  CHECK(r3.ok);
}

TEST_CASE("transpose and permute: bad dims name the op, the argument and the shape") {
  Tape<float> tape;
  Var<float> x(Tensor<float>({2, 3, 4}));
  CHECK_THROWS_WITH_AS(ops::transpose(tape, x, 0, 3),
                       "transpose: dim1 = 3 is out of range for shape (2, 3, 4) (expected -3 <= "
                       "dim1 < 3)",
                       IndexError);
  CHECK_THROWS_WITH_AS(ops::transpose(tape, x, -4, 1),
                       "transpose: dim0 = -4 is out of range for shape (2, 3, 4) (expected -3 <= "
                       "dim0 < 3)",
                       IndexError);
  CHECK_THROWS_WITH_AS(ops::permute(tape, x, {0, 1}),
                       "permute: dims has 2 entries but the input has shape (2, 3, 4) with 3 dims",
                       ShapeError);
  CHECK_THROWS_WITH_AS(ops::permute(tape, x, {0, 2, -1}),
                       "permute: dims is not a permutation: dim 2 appears twice (shape (2, 3, 4))",
                       ShapeError);
  CHECK_THROWS_AS(ops::permute(tape, x, {0, 1, 5}), IndexError);
}

TEST_CASE("permute: empty tensors keep their permuted shape") {
  Tape<double> tape;
  Var<double> x = Var<double>::parameter(Tensor<double>({0, 3, 2}));
  Var<double> y = ops::permute(tape, x, {2, 0, 1});
  CHECK(y.shape() == Shape{2, 0, 3});
  tape.backward(ops::sum(tape, y));
  CHECK(x.grad().shape() == Shape{0, 3, 2});
}

// ---------------------------------------------------------------------------
// embedding

TEST_CASE_TEMPLATE("embedding: rows of the table by id, in the ids' shape", Real, float, double) {
  Tape<Real> tape;
  Var<Real> wte(iota<Real>({5, 3}));  // row v is (3v, 3v+1, 3v+2)
  const std::vector<std::int64_t> ids = {4, 0, 2, 2, 1, 4};
  Var<Real> y = ops::embedding(tape, wte, ids, {2, 3});
  REQUIRE(y.shape() == Shape{2, 3, 3});
  for (Index n = 0; n < 6; ++n)
    for (Index c = 0; c < 3; ++c)
      CHECK(y.value()[n * 3 + c] == static_cast<Real>(3 * ids[static_cast<std::size_t>(n)] + c));
  // The Tensor overload, and no ids at all.
  Var<Real> y2 = ops::embedding(tape, wte, Tensor<std::int64_t>::from_data({3}, {1, 1, 0}));
  CHECK(y2.shape() == Shape{3, 3});
  CHECK(y2.value().at({1, 2}) == Real(5));
  CHECK(ops::embedding(tape, wte, std::span<const std::int64_t>(), {0}).shape() == Shape{0, 3});
}

TEST_CASE("embedding: scatter-add gradient with repeated ids matches central differences") {
  Rng rng(13);
  const std::vector<std::int64_t> ids = {3, 1, 3, 0, 3, 1};  // id 3 three times, id 2 never
  auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
    return project(t, ops::embedding(t, in[0], ids, {3, 2}));
  };
  GradcheckResult r = gradcheck(loss, {randn<double>({4, 5}, rng)});
  INFO(r.report());
  CHECK(r.ok);
}

TEST_CASE("embedding: the parallel backward (columns split over threads) sums every repeat") {
  // N·C > 65536 takes the parallel path; C = 300 is not a multiple of the 64-column blocks.
  const Index V = 7, C = 300, N = 400;
  std::vector<std::int64_t> ids(static_cast<std::size_t>(N));
  for (Index n = 0; n < N; ++n) ids[static_cast<std::size_t>(n)] = (n * n) % V;
  Tape<double> tape;
  Var<double> wte = Var<double>::parameter(Tensor<double>({V, C}));
  Var<double> y = ops::embedding(tape, wte, ids, {N});
  Tensor<double> seed({N, C});
  for (Index n = 0; n < N; ++n)
    for (Index c = 0; c < C; ++c) seed.at({n, c}) = static_cast<double>(n + 1) + 0.001 * c;
  tape.backward(y, seed);
  for (Index v = 0; v < V; ++v)
    for (Index c : {Index(0), Index(63), Index(64), Index(299)}) {
      double expected = 0;
      for (Index n = 0; n < N; ++n)
        if (ids[static_cast<std::size_t>(n)] == v) expected += seed.at({n, c});
      CHECK(wte.grad().at({v, c}) == doctest::Approx(expected).epsilon(1e-12));
    }
}

TEST_CASE("embedding: an out-of-range id names its position, its value and V") {
  Tape<float> tape;
  Var<float> wte(Tensor<float>({50, 4}));
  const std::vector<std::int64_t> ids = {1, 2, 3, 4, 50, 6};
  CHECK_THROWS_WITH_AS(ops::embedding(tape, wte, ids, {2, 3}),
                       "embedding: id 50 at position (1, 1) of ids (2, 3) is out of range for "
                       "weight (50, 4) (V = 50)",
                       IndexError);
  const std::vector<std::int64_t> negative = {-1};
  CHECK_THROWS_WITH_AS(ops::embedding(tape, wte, negative, {1}),
                       "embedding: id -1 at position (0) of ids (1) is out of range for weight "
                       "(50, 4) (V = 50)",
                       IndexError);
  CHECK_THROWS_WITH_AS(ops::embedding(tape, wte, ids, {4}),
                       "embedding: ids_shape (4) holds 4 ids but 6 were given", ShapeError);
  Var<float> flat(Tensor<float>({50}));
  CHECK_THROWS_WITH_AS(ops::embedding(tape, flat, ids, {6}),
                       "embedding: weight must be 2-D (V, C), got shape (50)", ShapeError);
}

// ---------------------------------------------------------------------------
// narrow, select

TEST_CASE_TEMPLATE("narrow takes a slice of one dim; select takes one index and drops the dim",
                   Real, float, double) {
  Tape<Real> tape;
  Var<Real> x(iota<Real>({2, 4, 3}));  // (B, T, C)
  Var<Real> mid = ops::narrow(tape, x, 1, 1, 2);
  REQUIRE(mid.shape() == Shape{2, 2, 3});
  Var<Real> last_two = ops::narrow(tape, x, -2, -2, 2);  // negative dim and start
  REQUIRE(last_two.shape() == Shape{2, 2, 3});
  Var<Real> cls = ops::select(tape, x, 1, 0);  // CLS token: (B, T, C) -> (B, C)
  REQUIRE(cls.shape() == Shape{2, 3});
  Var<Real> last = ops::select(tape, x, 1, -1);
  Var<Real> channel = ops::select(tape, x, -1, 2);  // (B, T)
  REQUIRE(channel.shape() == Shape{2, 4});
  for (Index b = 0; b < 2; ++b) {
    for (Index c = 0; c < 3; ++c) {
      for (Index t = 0; t < 2; ++t) {
        CHECK(mid.value().at({b, t, c}) == x.value().at({b, t + 1, c}));
        CHECK(last_two.value().at({b, t, c}) == x.value().at({b, t + 2, c}));
      }
      CHECK(cls.value().at({b, c}) == x.value().at({b, 0, c}));
      CHECK(last.value().at({b, c}) == x.value().at({b, 3, c}));
    }
    for (Index t = 0; t < 4; ++t) CHECK(channel.value().at({b, t}) == x.value().at({b, t, 2}));
  }
  CHECK(ops::narrow(tape, x, 0, 2, 0).shape() == Shape{0, 4, 3});  // an empty slice is fine
}

TEST_CASE("narrow and select: gradients land on the picked entries only") {
  Rng rng(14);
  auto x = randn<double>({3, 4, 2}, rng);
  for (Index dim : {0, 1, 2}) {
    auto loss_n = [&](Tape<double>& t, std::span<const Var<double>> in) {
      return project(t, ops::narrow(t, in[0], dim, 1, 1));
    };
    auto loss_s = [&](Tape<double>& t, std::span<const Var<double>> in) {
      return project(t, ops::select(t, in[0], dim, -1));
    };
    GradcheckResult r = gradcheck(loss_n, {x});
    INFO("dim ", dim, ": ", r.report());
    CHECK(r.ok);
    GradcheckResult r2 = gradcheck(loss_s, {x});
    INFO("dim ", dim, ": ", r2.report());
    CHECK(r2.ok);
  }
}

TEST_CASE("narrow and select: out-of-range arguments name the dim, its size and the shape") {
  Tape<float> tape;
  Var<float> x(Tensor<float>({2, 5, 3}));
  CHECK_THROWS_WITH_AS(ops::narrow(tape, x, 1, 3, 4),
                       "narrow: start 3 + length 4 exceeds size 5 of dim 1 (shape (2, 5, 3))",
                       IndexError);
  CHECK_THROWS_WITH_AS(ops::narrow(tape, x, 1, 6, 0),
                       "narrow: start = 6 is out of range for dim 1 of size 5 (shape (2, 5, 3))",
                       IndexError);
  CHECK_THROWS_WITH_AS(
      ops::narrow(tape, x, 3, 0, 1),
      "narrow: dim = 3 is out of range for shape (2, 5, 3) (expected -3 <= dim < 3)", IndexError);
  CHECK_THROWS_WITH_AS(ops::select(tape, x, -2, 5),
                       "select: index 5 is out of range for dim 1 of size 5 (shape (2, 5, 3))",
                       IndexError);
  Var<float> empty(Tensor<float>({2, 0, 3}));
  CHECK_THROWS_WITH_AS(ops::select(tape, empty, 1, 0),
                       "select: index 0 is out of range for dim 1 of size 0 (shape (2, 0, 3))",
                       IndexError);
}

// ---------------------------------------------------------------------------
// concat

TEST_CASE_TEMPLATE("concat joins along any dim, empty inputs included", Real, float, double) {
  Tape<Real> tape;
  Var<Real> a(iota<Real>({2, 2, 3})), b(iota<Real>({2, 1, 3})), none(Tensor<Real>({2, 0, 3}));
  Var<Real> y = ops::concat(tape, {a, none, b}, 1);
  REQUIRE(y.shape() == Shape{2, 3, 3});
  for (Index i = 0; i < 2; ++i)
    for (Index c = 0; c < 3; ++c) {
      CHECK(y.value().at({i, 0, c}) == a.value().at({i, 0, c}));
      CHECK(y.value().at({i, 1, c}) == a.value().at({i, 1, c}));
      CHECK(y.value().at({i, 2, c}) == b.value().at({i, 0, c}));
    }
  Var<Real> rows = ops::concat(tape, {a, a}, 0);
  CHECK(rows.shape() == Shape{4, 2, 3});
  CHECK(rows.value().at({3, 1, 2}) == a.value().at({1, 1, 2}));
  Var<Real> cols = ops::concat(tape, {a, b, b}, 1);
  CHECK(cols.shape() == Shape{2, 4, 3});
  Var<Real> last = ops::concat(tape, {a, ops::narrow(tape, a, -1, 0, 1)}, -1);
  CHECK(last.shape() == Shape{2, 2, 4});
  CHECK(last.value().at({1, 1, 3}) == a.value().at({1, 1, 0}));
}

TEST_CASE("concat: gradients split back to each input; frozen inputs get none") {
  Rng rng(15);
  auto a = randn<double>({2, 3, 2}, rng), b = randn<double>({2, 3, 1}, rng);
  auto c = randn<double>({2, 3, 3}, rng);
  auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
    return project(t, ops::concat(t, {in[0], in[1], in[2]}, -1));
  };
  GradcheckResult r = gradcheck(loss, {a, b, c});
  INFO(r.report());
  CHECK(r.ok);
  auto loss0 = [&](Tape<double>& t, std::span<const Var<double>> in) {
    return project(t, ops::concat(t, {in[0], in[1]}, 0));
  };
  GradcheckResult r2 = gradcheck(loss0, {a, randn<double>({1, 3, 2}, rng)});
  INFO(r2.report());
  CHECK(r2.ok);

  // The same input twice (ViT repeats its CLS token B times): both slices add into one gradient.
  auto loss_twice = [&](Tape<double>& t, std::span<const Var<double>> in) {
    return project(t, ops::concat(t, {in[0], in[1], in[0]}, 1));
  };
  GradcheckResult r3 = gradcheck(loss_twice, {a, randn<double>({2, 1, 2}, rng)});
  INFO(r3.report());
  CHECK(r3.ok);

  Tape<double> tape;
  Var<double> frozen(a), trained = Var<double>::parameter(b);
  tape.backward(ops::sum(tape, ops::concat(tape, {frozen, trained}, 2)));
  CHECK_FALSE(frozen.has_grad());
  CHECK(trained.grad().at({1, 2, 0}) == 1.0);
}

TEST_CASE("concat: mismatched shapes and an empty list are rejected with the shapes named") {
  Tape<float> tape;
  Var<float> a(Tensor<float>({2, 3})), b(Tensor<float>({3, 3})), c(Tensor<float>({2, 3, 1}));
  CHECK_THROWS_WITH_AS(ops::concat(tape, {a, b}, 1),
                       "concat: input 1 has shape (3, 3) but input 0 has (2, 3); they may differ "
                       "only in dim 1",
                       ShapeError);
  CHECK_THROWS_WITH_AS(
      ops::concat(tape, {a, c}, 0),
      "concat: input 1 has shape (2, 3, 1) but input 0 has (2, 3); they may differ "
      "only in dim 0",
      ShapeError);
  CHECK_THROWS_WITH_AS(ops::concat(tape, {}, 0), "concat: needs at least one input, got none",
                       ValueError);
  CHECK_THROWS_AS(ops::concat(tape, {a, a}, 2), IndexError);
}
