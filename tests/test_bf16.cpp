// Tests of the BF16 compute mode: detail/bf16_gemm.hpp (each kernel against the FP32 GEMM on
// BF16-rounded operands), ops::half_linear with HalfCompute::bf16, nn::to_bf16_compute on models.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <span>
#include <string>
#include <vector>

#include "fourierft/core/half.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/detail/bf16_gemm.hpp"
#include "fourierft/detail/gemm.hpp"
#include "fourierft/models/gpt2.hpp"
#include "fourierft/models/roberta.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/ops/elementwise.hpp"
#include "fourierft/ops/linalg.hpp"
#include "fourierft/ops/reduce.hpp"
#include "fourierft/peft/fourierft.hpp"
#include "fourierft/peft/registry.hpp"
#include "gradcheck.hpp"

using namespace fourierft;
using detail::Bf16Kernel;

namespace {

Tensor<float> rounded_to_bf16(const Tensor<float>& t) {
  Tensor<float> out(t.shape());
  for (Index i = 0; i < t.numel(); ++i) out[i] = bf16_to_float(float_to_bf16(t[i]));
  return out;
}

// The FP32 GEMM on the rounded operands in double, and the bound a float sum of the same products
// may stray from it: for C[m, n] = alpha·Σ_k a_k·b_k + beta·c, every product of two BF16 numbers
// is exact in float, so only the K float additions round: |error| <= K·2^-24·Σ_k |a_k·b_k| (plus
// the final scaling). Returns the largest |got - exact| / bound over C (<= 1 passes).
double worst_error_over_bound(bool trans_b, Index M, Index N, Index K, float alpha,
                              const Tensor<float>& a, const Tensor<float>& b, float beta,
                              const Tensor<float>& c0, const Tensor<float>& got) {
  double worst = 0;
  for (Index m = 0; m < M; ++m)
    for (Index n = 0; n < N; ++n) {
      double exact = 0, magnitude = 0;
      for (Index k = 0; k < K; ++k) {
        const double p = double(a[m * K + k]) * double(trans_b ? b[n * K + k] : b[k * N + n]);
        exact += p;
        magnitude += std::abs(p);
      }
      exact = alpha * exact + beta * double(c0[m * N + n]);
      const double bound = (double(K) + 4) * 0x1p-24 *
                               (std::abs(alpha) * magnitude + std::abs(beta * c0[m * N + n])) +
                           1e-30;
      worst = std::max(worst, std::abs(double(got[m * N + n]) - exact) / bound);
    }
  return worst;
}

std::vector<Bf16Kernel> available_kernels() {
  std::vector<Bf16Kernel> kernels;
  for (Bf16Kernel k : {Bf16Kernel::avx512bf16, Bf16Kernel::sbgemm, Bf16Kernel::float_tiles}) {
    if (detail::bf16_kernel_available(k))
      kernels.push_back(k);
    else
      MESSAGE((std::string("bf16 kernel ") + detail::bf16_kernel_name(k) + " is not available here: not tested"));
  }
  return kernels;
}

}  // namespace

TEST_CASE("bf16_gemm: every kernel equals the FP32 GEMM on BF16-rounded operands") {
  // Shapes cross the AVX-512 kernel's edges: rows not a multiple of 12, columns not of 32, odd K,
  // K past one 1024-wide pass (odd K there too), more panels of columns than one pass takes, and
  // a single row.
  struct Case { Index M, N, K; };
  Rng rng(61);
  for (const Bf16Kernel kernel : available_kernels())
    for (const Case c : {Case{37, 45, 67}, Case{13, 33, 600}, Case{5, 40, 2101}, Case{1, 70, 9}, Case{25, 530, 40},
                         Case{12, 32, 2}})
      for (const bool trans_b : {true, false})
        for (const float beta : {0.0f, 0.5f}) {
          INFO(detail::bf16_kernel_name(kernel) << " M " << c.M << " N " << c.N << " K " << c.K
                                                << " trans_b " << trans_b << " beta " << beta);
          const Tensor<float> a = randn<float>({c.M, c.K}, rng);
          const Tensor<float> w = randn<float>(trans_b ? Shape{c.N, c.K} : Shape{c.K, c.N}, rng);
          const HalfMatrix half =
              HalfMatrix::from_values<float>(w.data(), w.size(0), w.size(1), io::Dtype::BF16);
          const Tensor<float> c0 = randn<float>({c.M, c.N}, rng);
          Tensor<float> got = c0.clone();
          if (beta == 0.0f) std::fill(got.ptr(), got.ptr() + got.numel(), std::nanf(""));  // not read
          detail::bf16_gemm(trans_b, c.M, c.N, c.K, 0.75f, a.ptr(), c.K, half, beta, got.ptr(),
                            c.N, kernel);
          const double worst = worst_error_over_bound(trans_b, c.M, c.N, c.K, 0.75f,
                                                      rounded_to_bf16(a), half.to_tensor<float>(),
                                                      beta, c0, got);
          CHECK(worst <= 1.0);
        }
}

TEST_CASE("bf16_gemm: the activations are rounded (not only the weight), and rows in a wider A") {
  // A = 1 + 2^-10: BF16 keeps 7 mantissa bits, so it rounds to 1; the weight is exactly 1. A float
  // GEMM on the unrounded A would give K·(1 + 2^-10).
  const Index M = 3, N = 40, K = 8, lda = 11;  // A's rows are lda apart: the tail is ignored
  std::vector<float> a(M * lda, 7.0f);
  for (Index m = 0; m < M; ++m)
    for (Index k = 0; k < K; ++k) a[m * lda + k] = 1.0f + 0x1p-10f;
  const std::vector<float> ones(N * K, 1.0f);
  const HalfMatrix w = HalfMatrix::from_values<float>(ones, N, K, io::Dtype::BF16);
  for (const Bf16Kernel kernel : available_kernels()) {
    INFO(detail::bf16_kernel_name(kernel));
    std::vector<float> c(M * N, -1.0f);
    detail::bf16_gemm(true, M, N, K, 1.0f, a.data(), lda, w, 0.0f, c.data(), N, kernel);
    for (float v : c) CHECK(v == float(K));
  }
  // The automatic choice is one of the available kernels.
  CHECK(detail::bf16_kernel_available(detail::bf16_automatic_kernel()));
  const std::vector<float> f16_values(N * K, 1.0f);
  const HalfMatrix f16 = HalfMatrix::from_values<float>(f16_values, N, K, io::Dtype::F16);
  std::vector<float> c(M * N);
  CHECK_THROWS_AS(detail::bf16_gemm(true, M, N, K, 1.0f, a.data(), lda, f16, 0.0f, c.data(), N),
                  ShapeError);
}

TEST_CASE("half_linear with HalfCompute::bf16: forward and dx are BF16 GEMMs of x and dy") {
  Rng rng(62);
  for (const auto layout : {ops::WeightLayout::out_in, ops::WeightLayout::in_out}) {
    const Index d_in = 48, d_out = 36;
    const bool out_in = layout == ops::WeightLayout::out_in;
    const Tensor<float> w = randn<float>(out_in ? Shape{d_out, d_in} : Shape{d_in, d_out}, rng);
    const HalfMatrix half = HalfMatrix::from_values<float>(w.data(), w.size(0), w.size(1), io::Dtype::BF16);
    const Tensor<float> w_rounded = half.to_tensor<float>();
    Var<float> b = Var<float>::parameter(randn<float>({d_out}, rng));
    Var<float> x = Var<float>::parameter(randn<float>({2, 5, d_in}, rng));
    const Tensor<float> dy = randn<float>({2, 5, d_out}, rng);
    Tape<float> tape;
    Var<float> y = ops::half_linear(tape, x, half, b, layout, HalfCompute::bf16);
    tape.backward(ops::sum(tape, ops::mul(tape, y, dy)));
    // Reference: FP32 linear on the rounded x and W (forward), the rounded dy (backward).
    Tape<float> ref_tape;
    Var<float> x_r = Var<float>::parameter(rounded_to_bf16(x.value()));
    Var<float> w_r(w_rounded, false);
    Var<float> b_r = Var<float>::parameter(b.value().clone());
    Var<float> y_r = ops::linear(ref_tape, x_r, w_r, b_r, layout);
    ref_tape.backward(ops::sum(ref_tape, ops::mul(ref_tape, y_r, rounded_to_bf16(dy))));
    for (Index i = 0; i < y.numel(); ++i) CHECK(y.value()[i] == doctest::Approx(y_r.value()[i]).epsilon(1e-5));
    for (Index i = 0; i < x.numel(); ++i) CHECK(x.grad()[i] == doctest::Approx(x_r.grad()[i]).epsilon(1e-5));
    // db sums the float dy, not its rounding.
    Tensor<float> db({d_out});
    for (Index i = 0; i < 10; ++i)
      for (Index j = 0; j < d_out; ++j) db[j] += dy[i * d_out + j];
    for (Index j = 0; j < d_out; ++j) CHECK(b.grad()[j] == doctest::Approx(db[j]).epsilon(1e-6));
  }
}

TEST_CASE("half_linear with HalfCompute::bf16 in double: gradients match central differences") {
  // The BF16 compute mode is for float; in double the product stays exact, so the op is smooth in
  // x and b and its gradients must match the difference quotients.
  Rng rng(63);
  for (const auto layout : {ops::WeightLayout::out_in, ops::WeightLayout::in_out}) {
    const bool out_in = layout == ops::WeightLayout::out_in;
    const Tensor<double> w = randn<double>(out_in ? Shape{6, 9} : Shape{9, 6}, rng);
    const HalfMatrix half = HalfMatrix::from_values<double>(w.data(), w.size(0), w.size(1), io::Dtype::BF16);
    auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
      return testing::project(t, ops::half_linear(t, in[0], half, in[1], layout, HalfCompute::bf16));
    };
    testing::GradcheckResult r =
        testing::gradcheck(loss, {randn<double>({3, 9}, rng), randn<double>({6}, rng)});
    INFO(r.report());
    CHECK(r.ok);
  }
}

namespace {
// A tiny RoBERTa classifier with FourierFT on query / value and a fully trained head.
struct TinyRoberta {
  io::RobertaConfig config;
  std::unique_ptr<models::RobertaForSequenceClassification<float>> model;
  explicit TinyRoberta(std::uint64_t seed) {
    config.vocab_size = 97;
    config.hidden_size = 64;
    config.num_hidden_layers = 2;
    config.num_attention_heads = 4;
    config.intermediate_size = 128;
    config.max_position_embeddings = 40;
    config.type_vocab_size = 1;
    config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0;
    model = std::make_unique<models::RobertaForSequenceClassification<float>>(config, seed);
    peft::AdapterSpec spec{.config = peft::method_config("fourierft"),
                           .modules_to_save = {"classifier"}};
    auto* f = spec.config.find<peft::FourierFTConfig>();
    f->n_frequency = 50;
    f->scaling = 20.0;
    f->target_modules = {{"query", "value"}, ""};
    Rng rng(5);
    peft::apply_adapter(*model, spec, rng);
  }
};
}  // namespace

namespace {
// A GPT-2 small enough for a unit test: V words, 2 heads of 16, 16 positions, no dropout.
io::Gpt2Config tiny_gpt2_config(Index vocab, Index layers) {
  io::Gpt2Config config;
  config.vocab_size = vocab;
  config.n_positions = 16;
  config.n_embd = 32;
  config.n_layer = layers;
  config.n_head = 2;
  config.resid_pdrop = config.embd_pdrop = config.attn_pdrop = 0.0;
  return config;
}
// <a, b> / (|a|·|b|), in double.
double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double dot = 0, na = 0, nb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    dot += double(a[i]) * b[i];
    na += double(a[i]) * a[i];
    nb += double(b[i]) * b[i];
  }
  return dot / std::sqrt(na * nb);
}
}  // namespace

TEST_CASE("to_bf16_compute: a tiny model's forward and gradients stay close to FP32") {
  TinyRoberta fp32(3), bf16(3);
  const std::vector<std::string> converted = nn::to_bf16_compute(*bf16.model);
  // Frozen Linear weights only: 2 layers x (query, key, value, attention output, intermediate,
  // output) = 12; the classifier trains and stays FP32.
  CHECK(converted.size() == 12);
  for (const std::string& name : converted) CHECK(name.find("classifier") == std::string::npos);
  CHECK(bf16.model->num_trainable_parameters() == fp32.model->num_trainable_parameters());
  for (auto& [name, p] : bf16.model->named_parameters())
    if (p.requires_grad()) CHECK(p.value().ptr() != nullptr);

  Rng rng(64);
  Tensor<std::int64_t> ids({3, 16});
  for (auto& v : ids.data()) v = 3 + static_cast<std::int64_t>(rng.uniform() * 90);
  Tensor<std::int64_t> labels({3});
  for (Index i = 0; i < 3; ++i) labels[i] = i % 2;
  auto run = [&](TinyRoberta& net, std::vector<float>& grads) {
    Tape<float> tape;
    const Var<float> logits = net.model->forward(tape, ids).logits;
    std::vector<float> out(logits.data().begin(), logits.data().end());
    tape.backward(net.model->loss(tape, logits, labels));
    for (auto& [name, p] : net.model->named_parameters())
      if (p.requires_grad())
        for (float g : p.grad().data()) grads.push_back(g);
    return out;
  };
  std::vector<float> g32, g16;
  const std::vector<float> y32 = run(fp32, g32), y16 = run(bf16, g16);
  REQUIRE(y32.size() == y16.size());
  REQUIRE(g32.size() == g16.size());
  double gap = 0, scale = 0;
  for (std::size_t i = 0; i < y32.size(); ++i) {
    gap = std::max(gap, double(std::abs(y32[i] - y16[i])));
    scale = std::max(scale, double(std::abs(y32[i])));
  }
  INFO("logits: max gap " << gap << ", max |logit| " << scale);
  CHECK(gap > 0);             // BF16 really changed the numbers
  CHECK(gap < 3e-2 * scale);  // ... by about BF16's precision (2^-8 relative per operand)
  // Gradients of the trainable parameters (spectra, head): cosine similarity close to 1.
  INFO("gradient cosine " << cosine(g32, g16));
  CHECK(cosine(g32, g16) > 0.999);
}


TEST_CASE("to_bf16_compute: tied and trainable weights stay FP32; GPT-2 LM head is tied") {
  models::GPT2LMHeadModel<float> model(tiny_gpt2_config(50, 1), 1);
  // Nothing frozen yet: every weight trains, so the BF16 compute mode converts nothing.
  CHECK(nn::to_bf16_compute(model).empty());
  for (auto& [name, p] : model.named_parameters()) p.set_requires_grad(false);
  const std::vector<std::string> converted = nn::to_bf16_compute(model);
  CHECK(converted.size() == 4);  // c_attn, attn.c_proj, c_fc, mlp.c_proj
  for (const std::string& name : converted) {
    auto* linear = model.find<nn::Linear<float>>(name.substr(0, name.size() - 7));
    REQUIRE(linear != nullptr);
    CHECK(linear->half_precision());
    CHECK(linear->half_compute() == HalfCompute::bf16);
    CHECK(linear->half_weight().dtype() == io::Dtype::BF16);
  }
}

TEST_CASE("GPT-2's tied head in BF16 (set_bf16_lm_head): loss and dx close to FP32, wte frozen") {
  const io::Gpt2Config config = tiny_gpt2_config(70, 2);
  models::GPT2LMHeadModel<float> fp32(config, 1), bf16(config, 1);
  CHECK_THROWS_WITH_AS(bf16.set_bf16_lm_head(true),
                       "GPT2LMHeadModel::set_bf16_lm_head: transformer.wte.weight trains; the BF16 "
                       "head needs it frozen",
                       Error);
  for (auto* model : {&fp32, &bf16})
    for (auto& [name, p] : model->named_parameters()) p.set_requires_grad(false);
  nn::to_bf16_compute(bf16);
  bf16.set_bf16_lm_head(true);
  CHECK(bf16.bf16_lm_head());

  Rng rng(65);
  Tensor<std::int64_t> ids({2, 12});
  for (auto& v : ids.data()) v = static_cast<std::int64_t>(rng.uniform() * 70);
  const std::vector<std::int64_t> targets = models::causal_lm_targets(models::causal_lm_labels(ids));
  auto run = [&](models::GPT2LMHeadModel<float>& model, std::vector<float>& dhidden) {
    Tape<float> tape;
    Var<float> hidden = model.transformer.forward(tape, ids);
    Var<float> leaf = Var<float>::parameter(hidden.value().clone());  // dL/dhidden of the head alone
    Var<float> loss = model.lm_loss(tape, leaf, targets);
    tape.backward(loss);
    dhidden.assign(leaf.grad().data().begin(), leaf.grad().data().end());
    return loss.item();
  };
  std::vector<float> d32, d16;
  const float l32 = run(fp32, d32), l16 = run(bf16, d16);
  INFO("loss fp32 " << l32 << " bf16 " << l16);
  CHECK(l16 != l32);
  CHECK(std::abs(l16 - l32) < 1e-2 * std::abs(l32));
  CHECK(cosine(d32, d16) > 0.999);
  bf16.set_bf16_lm_head(false);
  CHECK_FALSE(bf16.bf16_lm_head());
}

TEST_CASE("bf16_gemm: the packed weight is kept with the matrix and dropped when it changes") {
  if (!detail::bf16_kernel_available(Bf16Kernel::avx512bf16)) {
    MESSAGE("no AVX512-BF16 here: the packing cache is not used");
    return;
  }
  const Index M = 2, N = 3, K = 4;
  const std::vector<float> ones(N * K, 1.0f), x(M * K, 1.0f);
  HalfMatrix w = HalfMatrix::from_values<float>(ones, N, K, io::Dtype::BF16);
  const HalfMatrix copy = w;  // shares storage, hence the cache
  std::vector<float> y(M * N);
  CHECK_FALSE(w.has_cached(0));
  detail::bf16_gemm(true, M, N, K, 1.0f, x.data(), K, copy, 0.0f, y.data(), N, Bf16Kernel::avx512bf16);
  CHECK(w.has_cached(0));        // forward (x·Wᵀ) packing, seen through the other handle
  CHECK_FALSE(w.has_cached(1));  // dx's packing is made only when used
  CHECK(y[0] == 4.0f);
  w.mutable_data()[0] = float_to_bf16(3.0f);  // W[0, 0] = 3: row 0 of W sums to 6
  CHECK_FALSE(copy.has_cached(0));
  detail::bf16_gemm(true, M, N, K, 1.0f, x.data(), K, copy, 0.0f, y.data(), N, Bf16Kernel::avx512bf16);
  CHECK(y[0] == 6.0f);
  CHECK(y[1] == 4.0f);
}

TEST_CASE("bf16_gemm: packings kept within the memory cap; past it packed per call, same numbers") {
  if (!detail::bf16_kernel_available(Bf16Kernel::avx512bf16)) {
    MESSAGE("no AVX512-BF16 here: the packing cache is not used");
    return;
  }
  // Two 64 x 40 weights: each forward packing is 2 panels · 20 k-pairs · 32 words · 4 bytes.
  const Index M = 5, N = 64, K = 40;
  const std::size_t one_packing = 2 * 20 * 32 * 4;
  Rng rng(17);
  std::vector<float> a(M * K), w_values(N * K);
  for (float& v : a) v = static_cast<float>(rng.normal());
  for (float& v : w_values) v = static_cast<float>(rng.normal());
  std::atomic<std::size_t>& limit = detail::bf16_pack_cache_limit();
  const std::size_t saved_limit = limit.load();
  const std::size_t before = detail::bf16_packed_bytes().load();
  limit = before + one_packing;  // room for one packing
  std::vector<float> y_kept(M * N), y_per_call(M * N), y_again(M * N);
  {
    const HalfMatrix w1 = HalfMatrix::from_values<float>(w_values, N, K, io::Dtype::BF16);
    const HalfMatrix w2 = HalfMatrix::from_values<float>(w_values, N, K, io::Dtype::BF16);
    detail::bf16_gemm(true, M, N, K, 1.0f, a.data(), K, w1, 0.0f, y_kept.data(), N,
                      Bf16Kernel::avx512bf16);
    CHECK(detail::bf16_packed_bytes().load() == before + one_packing);
    detail::bf16_gemm(true, M, N, K, 1.0f, a.data(), K, w2, 0.0f, y_per_call.data(), N,
                      Bf16Kernel::avx512bf16);
    CHECK(detail::bf16_packed_bytes().load() == before + one_packing);  // w2 over the cap
    detail::bf16_gemm(true, M, N, K, 1.0f, a.data(), K, w2, 0.0f, y_again.data(), N,
                      Bf16Kernel::avx512bf16);
    CHECK(y_per_call == y_kept);  // the same packing, made again: the same sums
    CHECK(y_again == y_kept);
  }
  CHECK(detail::bf16_packed_bytes().load() == before);  // released with the matrices
  limit = saved_limit;
}
