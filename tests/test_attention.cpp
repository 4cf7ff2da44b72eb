// Tests of include/fourierft/ops/attention.hpp: the fused multi-head attention against a naive
// per-head reference (float and double), masks (causal, left / right padding, KV cache), fully
// masked rows, gradient checks for q, k, v in each of those cases, and the error messages; the
// packed entry point (q, k, v read as column blocks of one (B, T, 3C) tensor, GPT-2's c_attn)
// against narrow + attention, bit for bit, and its own gradient checks.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "fourierft/ops/attention.hpp"
#include "fourierft/ops/elementwise.hpp"
#include "fourierft/ops/indexing.hpp"
#include "fourierft/ops/reduce.hpp"
#include "gradcheck.hpp"

using namespace fourierft;
using fourierft::testing::gradcheck;
using fourierft::testing::project;
using fourierft::testing::GradcheckOptions;
using fourierft::testing::GradcheckResult;

namespace {
// One attention configuration. mask: (B, Tk) flattened, 1 = token, 0 = padding; empty = none.
struct Case {
  std::string name;
  Index B, Tq, Tk, C, NH;
  bool causal = false;
  std::vector<std::int64_t> mask;
  std::optional<double> scale;

  ops::AttentionOptions options() const {
    ops::AttentionOptions o{.causal = causal, .scale = scale};
    if (!mask.empty()) o.key_padding_mask = std::span<const std::int64_t>(mask);
    return o;
  }
};

// Small shapes covering every masking path; B = 2, C = 6 keeps each input <= 64 entries for
// entry-by-entry gradient checks (the cache case's k, v have 60).
std::vector<Case> cases() {
  return {
      {"no mask", 2, 4, 4, 6, 2},
      {"one head, custom scale", 2, 4, 4, 6, 1, false, {}, 0.7},
      {"three heads", 2, 4, 4, 6, 3},
      {"causal", 2, 4, 4, 6, 2, true},
      {"right padding", 2, 4, 4, 6, 2, false, {1, 1, 1, 0, 1, 1, 1, 1}},
      {"left padding", 2, 4, 4, 6, 2, false, {0, 0, 1, 1, 1, 1, 1, 1}},
      {"causal + right padding", 2, 4, 4, 6, 2, true, {1, 1, 0, 0, 1, 1, 1, 0}},
      // Batch 0's queries 0 and 1 see only padding: fully masked rows.
      {"causal + left padding", 2, 4, 4, 6, 2, true, {0, 0, 1, 1, 0, 1, 1, 1}},
      {"KV cache: Tq < Tk, causal", 2, 2, 5, 6, 2, true},
      {"KV cache + left padding", 2, 2, 5, 6, 2, true, {0, 0, 1, 1, 1, 0, 1, 1, 1, 1}},
      {"cross attention: Tq > Tk", 2, 5, 3, 6, 2, false, {1, 1, 0, 1, 0, 1}},
  };
}

// The definition, the slow obvious way, in double: for each batch, head and query, softmax over
// the visible keys of scale·q·k, then the weighted sum of v. No visible key -> zeros.
template <class Real>
std::vector<double> naive_attention(const Case& c, const Tensor<Real>& q, const Tensor<Real>& k,
                                    const Tensor<Real>& v) {
  const Index HS = c.C / c.NH;
  const double scale = c.scale ? *c.scale : 1.0 / std::sqrt(static_cast<double>(HS));
  // Entry (b, t, h·HS + d), by flat index (Tensor::at checks bounds: slow for the long cases).
  auto at = [&](const Tensor<Real>& x, Index T, Index b, Index t, Index h, Index d) {
    return static_cast<double>(x[(b * T + t) * c.C + h * HS + d]);
  };
  auto visible = [&](Index b, Index i, Index j) {
    const bool causal_ok = !c.causal || j <= i + (c.Tk - c.Tq);
    return causal_ok && (c.mask.empty() || c.mask[static_cast<std::size_t>(b * c.Tk + j)] == 1);
  };
  std::vector<double> y(static_cast<std::size_t>(c.B * c.Tq * c.C), 0.0);
  for (Index b = 0; b < c.B; ++b)
    for (Index h = 0; h < c.NH; ++h)
      for (Index i = 0; i < c.Tq; ++i) {
        std::vector<double> w(static_cast<std::size_t>(c.Tk), 0.0);  // scores, then exp(s - max)
        double max = -INFINITY, total = 0;
        for (Index j = 0; j < c.Tk; ++j) {
          if (!visible(b, i, j)) continue;
          for (Index d = 0; d < HS; ++d)
            w[j] += scale * at(q, c.Tq, b, i, h, d) * at(k, c.Tk, b, j, h, d);
          max = std::max(max, w[j]);
        }
        for (Index j = 0; j < c.Tk; ++j) {
          if (!visible(b, i, j)) continue;
          w[j] = std::exp(w[j] - max);
          total += w[j];
        }
        for (Index j = 0; j < c.Tk; ++j)
          if (visible(b, i, j))
            for (Index d = 0; d < HS; ++d)
              y[static_cast<std::size_t>((b * c.Tq + i) * c.C + h * HS + d)] +=
                  w[j] / total * at(v, c.Tk, b, j, h, d);
      }
  return y;
}

bool all_finite(const Tensor<double>& t) {
  for (double x : t.data())
    if (!std::isfinite(x)) return false;
  return true;
}
}  // namespace

TEST_CASE_TEMPLATE("attention equals the per-head reference in every masking case", Real, float,
                   double) {
  const double tol = std::is_same_v<Real, float> ? 2e-6 : 1e-13;
  Rng rng(21);
  for (const Case& c : cases()) {
    CAPTURE(c.name);
    const Tensor<Real> q = randn<Real>({c.B, c.Tq, c.C}, rng),
                       k = randn<Real>({c.B, c.Tk, c.C}, rng),
                       v = randn<Real>({c.B, c.Tk, c.C}, rng);
    Tape<Real> tape;
    Var<Real> y = ops::attention(tape, Var<Real>(q), Var<Real>(k), Var<Real>(v), c.NH, c.options());
    REQUIRE(y.shape() == Shape{c.B, c.Tq, c.C});
    const std::vector<double> ref = naive_attention(c, q, k, v);
    double worst = 0;
    for (Index n = 0; n < y.numel(); ++n)
      worst = std::max(worst, std::abs(double(y.value()[n]) - ref[static_cast<std::size_t>(n)]));
    CHECK(worst <= tol);
  }
}

TEST_CASE_TEMPLATE("attention: longer sequences with causal + left padding match the reference",
                   Real, float, double) {
  const double tol = std::is_same_v<Real, float> ? 2e-6 : 1e-13;
  Rng rng(22);
  Case c{"long", 1, 130, 140, 8, 2, true, std::vector<std::int64_t>(140, 1)};
  for (Index j = 0; j < 15; ++j) c.mask[static_cast<std::size_t>(j)] = 0;  // left padding
  const Tensor<Real> q = randn<Real>({1, 130, 8}, rng), k = randn<Real>({1, 140, 8}, rng),
                     v = randn<Real>({1, 140, 8}, rng);
  Tape<Real> tape;
  Var<Real> y = ops::attention(tape, Var<Real>(q), Var<Real>(k), Var<Real>(v), c.NH, c.options());
  const std::vector<double> ref = naive_attention(c, q, k, v);
  double worst = 0;
  for (Index n = 0; n < y.numel(); ++n)
    worst = std::max(worst, std::abs(double(y.value()[n]) - ref[static_cast<std::size_t>(n)]));
  CHECK(worst <= tol);
}

TEST_CASE("attention: gradients for q, k and v match central differences in every masking case") {
  Rng rng(23);
  for (const Case& c : cases()) {
    CAPTURE(c.name);
    auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
      return project(t, ops::attention(t, in[0], in[1], in[2], c.NH, c.options()));
    };
    GradcheckResult r =
        gradcheck(loss,
                  {randn<double>({c.B, c.Tq, c.C}, rng), randn<double>({c.B, c.Tk, c.C}, rng),
                   randn<double>({c.B, c.Tk, c.C}, rng)},
                  {.eps = 1e-6, .rtol = 1e-6, .atol = 1e-9});
    INFO(r.report());
    CHECK(r.ok);
  }
}

TEST_CASE("attention: gradients for longer sequences (random directions)") {
  Rng rng(24);
  Case c{"long", 1, 129, 131, 8, 2, true, std::vector<std::int64_t>(131, 1)};
  c.mask[0] = c.mask[1] = c.mask[2] = 0;
  auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
    return project(t, ops::attention(t, in[0], in[1], in[2], c.NH, c.options()));
  };
  GradcheckResult r = gradcheck(loss,
                                {randn<double>({1, 129, 8}, rng), randn<double>({1, 131, 8}, rng),
                                 randn<double>({1, 131, 8}, rng)},
                                {.eps = 1e-6, .rtol = 1e-6, .atol = 1e-8, .directions = 4});
  INFO(r.report());
  CHECK(r.ok);
}

TEST_CASE_TEMPLATE("attention: masked keys get exactly zero weight", Real, float, double) {
  // Changing the keys and values at padded positions to huge numbers changes nothing, bit for bit.
  Rng rng(25);
  for (bool causal : {false, true}) {
    Case c{"padding", 2, 4, 4, 6, 2, causal, {1, 1, 0, 0, 0, 1, 1, 1}};
    const Tensor<Real> q = randn<Real>({2, 4, 6}, rng), k = randn<Real>({2, 4, 6}, rng),
                       v = randn<Real>({2, 4, 6}, rng);
    Tensor<Real> k2 = k.clone(), v2 = v.clone();
    for (Index b = 0; b < 2; ++b)
      for (Index j = 0; j < 4; ++j)
        if (c.mask[static_cast<std::size_t>(b * 4 + j)] == 0)
          for (Index d = 0; d < 6; ++d) {
            k2.at({b, j, d}) = Real(1e30);
            v2.at({b, j, d}) = Real(-1e30);
          }
    Tape<Real> tape;
    Var<Real> y = ops::attention(tape, Var<Real>(q), Var<Real>(k), Var<Real>(v), 2, c.options());
    Var<Real> y2 = ops::attention(tape, Var<Real>(q), Var<Real>(k2), Var<Real>(v2), 2, c.options());
    for (Index n = 0; n < y.numel(); ++n) CHECK(y.value()[n] == y2.value()[n]);
  }
}

TEST_CASE("attention: a query that sees only padding outputs zeros and passes no gradient") {
  // Left padding with causal attention (batched GPT-2 prompts): in batch 0, queries 0 and 1 can
  // only see keys 0 and 1, which are padding.
  Rng rng(26);
  const std::vector<std::int64_t> mask = {0, 0, 1, 1, 1, 1, 1, 1};
  Tape<double> tape;
  Var<double> q = Var<double>::parameter(randn<double>({2, 4, 6}, rng));
  Var<double> k = Var<double>::parameter(randn<double>({2, 4, 6}, rng));
  Var<double> v = Var<double>::parameter(randn<double>({2, 4, 6}, rng));
  Var<double> y = ops::attention(tape, q, k, v, 2, {.causal = true, .key_padding_mask = mask});
  tape.backward(project(tape, y));
  CHECK(all_finite(y.value()));
  CHECK(all_finite(q.grad()));
  CHECK(all_finite(k.grad()));
  CHECK(all_finite(v.grad()));
  for (Index i : {0, 1})
    for (Index c = 0; c < 6; ++c) {
      CHECK(y.value().at({0, i, c}) == 0.0);
      CHECK(q.grad().at({0, i, c}) == 0.0);
    }
  // The padded keys themselves receive nothing either.
  for (Index j : {0, 1})
    for (Index c = 0; c < 6; ++c) {
      CHECK(k.grad().at({0, j, c}) == 0.0);
      CHECK(v.grad().at({0, j, c}) == 0.0);
    }
  CHECK(y.value().at({0, 2, 0}) != 0.0);

  // Every key masked, and no keys at all: zeros, not NaN.
  const std::vector<std::int64_t> nothing(8, 0);
  Tape<double> t2;
  Var<double> z = ops::attention(t2, q, k, v, 2, {.key_padding_mask = nothing});
  for (double x : z.data()) CHECK(x == 0.0);
  Var<double> none(Tensor<double>({2, 0, 6}));
  Var<double> z2 = ops::attention(t2, q, none, none, 2);
  REQUIRE(z2.shape() == Shape{2, 4, 6});
  for (double x : z2.data()) CHECK(x == 0.0);
}

TEST_CASE_TEMPLATE(
    "attention: with a KV cache, Tq < Tk gives the last rows of full causal attention", Real, float,
    double) {
  const double tol = std::is_same_v<Real, float> ? 2e-6 : 1e-13;
  Rng rng(27);
  const Index B = 2, T = 7, C = 8, NH = 2, Tq = 3;
  Tensor<Real> q = randn<Real>({B, T, C}, rng), k = randn<Real>({B, T, C}, rng),
               v = randn<Real>({B, T, C}, rng);
  Tape<Real> tape;
  Var<Real> full =
      ops::attention(tape, Var<Real>(q), Var<Real>(k), Var<Real>(v), NH, {.causal = true});
  Tensor<Real> q_last({B, Tq, C});  // the last Tq queries
  for (Index b = 0; b < B; ++b)
    for (Index i = 0; i < Tq; ++i)
      for (Index c = 0; c < C; ++c) q_last.at({b, i, c}) = q.at({b, T - Tq + i, c});
  Var<Real> cached =
      ops::attention(tape, Var<Real>(q_last), Var<Real>(k), Var<Real>(v), NH, {.causal = true});
  for (Index b = 0; b < B; ++b)
    for (Index i = 0; i < Tq; ++i)
      for (Index c = 0; c < C; ++c)
        CHECK(std::abs(double(cached.value().at({b, i, c})) -
                       double(full.value().at({b, T - Tq + i, c}))) <= tol);
}

TEST_CASE("attention: without gradients nothing is recorded and the result is the same") {
  Rng rng(28);
  Var<float> q = Var<float>::parameter(randn<float>({2, 5, 8}, rng));
  Var<float> k = Var<float>::parameter(randn<float>({2, 5, 8}, rng));
  Var<float> v = Var<float>::parameter(randn<float>({2, 5, 8}, rng));
  Tape<float> tape;
  Var<float> y = ops::attention(tape, q, k, v, 4, {.causal = true});
  CHECK(tape.size() == 1);
  Tape<float> eval;
  NoGradScope<float> no_grad(eval);
  Var<float> y2 = ops::attention(eval, q, k, v, 4, {.causal = true});
  CHECK(eval.size() == 0);
  CHECK_FALSE(y2.requires_grad());
  for (Index n = 0; n < y.numel(); ++n) CHECK(y.value()[n] == y2.value()[n]);
}

TEST_CASE("attention: bad shapes, heads and masks name the argument and both values") {
  Tape<float> tape;
  Var<float> q(Tensor<float>({2, 5, 8})), k(Tensor<float>({2, 3, 8})), v(Tensor<float>({2, 3, 8}));
  CHECK_THROWS_WITH_AS(ops::attention(tape, Var<float>(Tensor<float>({10, 8})), k, v, 2),
                       "attention: q must be (B, Tq, C), got shape (10, 8)", ShapeError);
  CHECK_THROWS_WITH_AS(ops::attention(tape, q, Var<float>(Tensor<float>({2, 3, 6})), v, 2),
                       "attention: k has shape (2, 3, 6) but q (2, 5, 8) needs (2, Tk, 8)",
                       ShapeError);
  CHECK_THROWS_WITH_AS(ops::attention(tape, q, k, Var<float>(Tensor<float>({2, 4, 8})), 2),
                       "attention: v has shape (2, 4, 8) but k has (2, 3, 8)", ShapeError);
  CHECK_THROWS_WITH_AS(ops::attention(tape, q, k, v, 3),
                       "attention: C = 8 is not divisible by num_heads = 3", ShapeError);
  CHECK_THROWS_WITH_AS(ops::attention(tape, q, k, v, 0), "attention: num_heads must be >= 1, got 0",
                       ValueError);
  CHECK_THROWS_WITH_AS(ops::attention(tape, q, k, v, 2, {.causal = true}),
                       "attention: causal needs Tk >= Tq (the first Tk - Tq keys are cached), got "
                       "Tq = 5 and Tk = 3",
                       ShapeError);
  const std::vector<std::int64_t> short_mask = {1, 1, 1};
  CHECK_THROWS_WITH_AS(ops::attention(tape, q, k, v, 2, {.key_padding_mask = short_mask}),
                       "attention: key_padding_mask has 3 entries but k (2, 3, 8) needs B * Tk = 6",
                       ShapeError);
  const std::vector<std::int64_t> bad_mask = {1, 1, 1, 1, 2, 1};
  CHECK_THROWS_WITH_AS(ops::attention(tape, q, k, v, 2, {.key_padding_mask = bad_mask}),
                       "attention: key_padding_mask[1, 1] = 2 must be 0 (padding) or 1 (token)",
                       ValueError);
}

// ---------------------------------------------------------------------------
// attention_packed_qkv: the self-attention cases (Tq = Tk) of cases(), on qkv: (B, T, 3C).
namespace {
std::vector<Case> self_attention_cases() {
  std::vector<Case> out;
  for (const Case& c : cases())
    if (c.Tq == c.Tk) out.push_back(c);
  // Bigger: 4 heads of 12, two batches, causal + left padding in batch 1.
  Case big{"bigger", 2, 33, 33, 48, 4, true, std::vector<std::int64_t>(66, 1)};
  for (Index j = 0; j < 5; ++j) big.mask[static_cast<std::size_t>(33 + j)] = 0;
  out.push_back(big);
  return out;
}
}  // namespace

TEST_CASE_TEMPLATE("attention_packed_qkv equals narrow + attention exactly, gradients included",
                   Real, float, double) {
  Rng rng(29);
  for (const Case& c : self_attention_cases()) {
    CAPTURE(c.name);
    const Tensor<Real> x = randn<Real>({c.B, c.Tq, 3 * c.C}, rng);
    const Tensor<Real> probe = randn<Real>({c.B, c.Tq, c.C}, rng);
    // loss = sum(y * probe), so dy = probe reaches every output entry.
    auto run = [&](bool packed) {
      Var<Real> qkv = Var<Real>::parameter(x.clone());
      Tape<Real> tape;
      Var<Real> y;
      if (packed) {
        y = ops::attention_packed_qkv(tape, qkv, c.NH, c.options());
      } else {
        y = ops::attention(tape, ops::narrow(tape, qkv, -1, 0, c.C),
                           ops::narrow(tape, qkv, -1, c.C, c.C),
                           ops::narrow(tape, qkv, -1, 2 * c.C, c.C), c.NH, c.options());
      }
      tape.backward(ops::sum(tape, ops::mul(tape, y, probe)));
      return std::pair{y.value().clone(), qkv.grad().clone()};
    };
    const auto [y_packed, dqkv_packed] = run(true);
    const auto [y_split, dqkv_split] = run(false);
    REQUIRE(y_packed.shape() == y_split.shape());
    Index value_diffs = 0, grad_diffs = 0;
    for (Index n = 0; n < y_packed.numel(); ++n) value_diffs += y_packed[n] != y_split[n];
    for (Index n = 0; n < dqkv_packed.numel(); ++n) grad_diffs += dqkv_packed[n] != dqkv_split[n];
    CHECK(value_diffs == 0);
    CHECK(grad_diffs == 0);
  }
}

TEST_CASE("attention_packed_qkv: gradients match central differences with causal, padding masks") {
  Rng rng(30);
  for (const Case& c : self_attention_cases()) {
    if (c.name == "bigger") continue;  // below, along random directions
    CAPTURE(c.name);
    auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
      return project(t, ops::attention_packed_qkv(t, in[0], c.NH, c.options()));
    };
    // qkv: (2, 4, 18), 144 entries, each checked.
    GradcheckResult r = gradcheck(loss, {randn<double>({c.B, c.Tq, 3 * c.C}, rng)},
                                  {.eps = 1e-6, .rtol = 1e-6, .atol = 1e-9, .max_entries = 144});
    INFO(r.report());
    CHECK(r.checks == 144);
    CHECK(r.ok);
  }
  const Case big = self_attention_cases().back();
  auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
    return project(t, ops::attention_packed_qkv(t, in[0], big.NH, big.options()));
  };
  GradcheckResult r = gradcheck(loss, {randn<double>({big.B, big.Tq, 3 * big.C}, rng)},
                                {.eps = 1e-6, .rtol = 1e-6, .atol = 1e-8, .directions = 6});
  INFO(r.report());
  CHECK(r.ok);
}

TEST_CASE("attention_packed_qkv: without gradients nothing is recorded, the result is the same") {
  Rng rng(31);
  Var<float> qkv = Var<float>::parameter(randn<float>({2, 5, 24}, rng));
  Tape<float> tape;
  Var<float> y = ops::attention_packed_qkv(tape, qkv, 4, {.causal = true});
  CHECK(tape.size() == 1);
  REQUIRE(y.shape() == Shape{2, 5, 8});
  Tape<float> eval;
  NoGradScope<float> no_grad(eval);
  Var<float> y2 = ops::attention_packed_qkv(eval, qkv, 4, {.causal = true});
  CHECK(eval.size() == 0);
  CHECK_FALSE(y2.requires_grad());
  for (Index n = 0; n < y.numel(); ++n) CHECK(y.value()[n] == y2.value()[n]);
  Var<float> empty(Tensor<float>({2, 0, 24}));
  CHECK(ops::attention_packed_qkv(tape, empty, 4).shape() == Shape{2, 0, 8});
}

TEST_CASE("attention_packed_qkv: bad shapes, heads and masks name the argument and the values") {
  Tape<float> tape;
  Var<float> qkv(Tensor<float>({2, 3, 24}));
  CHECK_THROWS_WITH_AS(ops::attention_packed_qkv(tape, Var<float>(Tensor<float>({2, 3, 8})), 2),
                       "attention_packed_qkv: qkv must be (B, T, 3C), got shape (2, 3, 8)",
                       ShapeError);
  CHECK_THROWS_WITH_AS(ops::attention_packed_qkv(tape, Var<float>(Tensor<float>({6, 24})), 2),
                       "attention_packed_qkv: qkv must be (B, T, 3C), got shape (6, 24)",
                       ShapeError);
  CHECK_THROWS_WITH_AS(ops::attention_packed_qkv(tape, qkv, 3),
                       "attention_packed_qkv: C = 8 is not divisible by num_heads = 3", ShapeError);
  CHECK_THROWS_WITH_AS(ops::attention_packed_qkv(tape, qkv, 0),
                       "attention_packed_qkv: num_heads must be >= 1, got 0", ValueError);
  const std::vector<std::int64_t> short_mask = {1, 1, 1};
  CHECK_THROWS_WITH_AS(
      ops::attention_packed_qkv(tape, qkv, 2, {.key_padding_mask = short_mask}),
      "attention_packed_qkv: key_padding_mask has 3 entries but qkv (2, 3, 24) needs B * Tk = 6",
      ShapeError);
  const std::vector<std::int64_t> bad_mask = {1, 1, 1, 1, 2, 1};
  CHECK_THROWS_WITH_AS(
      ops::attention_packed_qkv(tape, qkv, 2, {.key_padding_mask = bad_mask}),
      "attention_packed_qkv: key_padding_mask[1, 1] = 2 must be 0 (padding) or 1 (token)",
      ValueError);
}
