// Tests of include/fourierft/nn/{module,linear}.hpp and include/fourierft/optim: hierarchical names,
// freezing, checkpoints with load reports, adapters on Linear, and AdamW / SGD / clipping / schedules
// against trajectories computed with torch 1.13; and include/fourierft/train's saved state as a
// resume after a crash uses it (the log cut back, the loss window, stale temporaries, state.old).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include "fourierft/detail/half_gemm.hpp"
#include "fourierft/nn/embedding.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/ops/elementwise.hpp"
#include "fourierft/ops/reduce.hpp"
#include "fourierft/optim/adamw.hpp"
#include "fourierft/optim/clip.hpp"
#include "fourierft/optim/schedule.hpp"
#include "fourierft/optim/sgd.hpp"
#include "fourierft/train/checkpoint.hpp"
#include "fourierft/train/log.hpp"
#include "fourierft/train/progress.hpp"
#include "gradcheck.hpp"

using namespace fourierft;
using nn::Linear;
using nn::Module;
namespace fs = std::filesystem;

namespace {

fs::path scratch(const std::string& name) {
  const fs::path dir = fs::path(FOURIERFT_BINARY_DIR) / "test_nn_optim" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// A RoBERTa-shaped toy: encoder.layer.{i}.attention.self.{query,key,value} + classifier.
template <class Real>
struct SelfAttention : Module<Real> {
  Linear<Real> query, key, value;
  SelfAttention(Index C, Rng& rng) : query(C, C, rng), key(C, C, rng), value(C, C, rng) {
    this->register_module("query", query);
    this->register_module("key", key);
    this->register_module("value", value);
  }
};
template <class Real>
struct Attention : Module<Real> {
  SelfAttention<Real> self_attention;
  Attention(Index C, Rng& rng) : self_attention(C, rng) {
    this->register_module("self", self_attention);
  }
};
template <class Real>
struct Layer : Module<Real> {
  Attention<Real> attention;
  Layer(Index C, Rng& rng) : attention(C, rng) { this->register_module("attention", attention); }
};
template <class Real>
struct Encoder : Module<Real> {
  nn::ModuleList<Layer<Real>> layer;
  Encoder(Index C, Index L, Rng& rng) {
    for (Index i = 0; i < L; ++i) layer.emplace_back(C, rng);
    this->register_module("layer", layer);
  }
};
template <class Real>
struct TinyModel : Module<Real> {
  Encoder<Real> encoder;
  Linear<Real> classifier;
  TinyModel(Index C, Index L, Index labels, Rng& rng)
      : encoder(C, L, rng), classifier(C, labels, rng) {
    this->register_module("encoder", encoder);
    this->register_module("classifier", classifier);
  }
};

// A toy adapter: base(x) + x·A (A: (d_in, d_out), zero-initialised), spliced into the layer it
// adapts; merging adds Aᵀ into the (d_out, d_in) weight.
template <class Real>
struct AddAdapter : nn::LinearAdapter<Real> {
  Var<Real> delta;
  AddAdapter(Index d_in, Index d_out) : delta(Var<Real>::parameter(Tensor<Real>({d_in, d_out}))) {
    this->register_parameter("toy_delta", delta);
  }
  Var<Real> forward(Tape<Real>& tape, const Linear<Real>& base, const Var<Real>& x) override {
    return ops::add(tape, base.base_forward(tape, x),
                    ops::linear(tape, x, delta, Var<Real>(), ops::WeightLayout::in_out));
  }
  void merge(Linear<Real>& base) override { add_into(base, Real(1)), this->merged_ = true; }
  void unmerge(Linear<Real>& base) override { add_into(base, Real(-1)), this->merged_ = false; }
  void add_into(Linear<Real>& base, Real sign) {
    for (Index i = 0; i < base.d_in(); ++i)
      for (Index o = 0; o < base.d_out(); ++o)
        base.weight.value().at({o, i}) += sign * delta.value().at({i, o});
  }
};

}  // namespace

// ---------------------------------------------------------------------------
// Module

TEST_CASE("Module: dotted names in a stable order, lookups, counts") {
  Rng rng(1);
  TinyModel<float> model(4, 2, 3, rng);
  const auto named = model.named_parameters();
  REQUIRE(named.size() == 2 * 3 * 2 + 2);
  CHECK(named[0].first == "encoder.layer.0.attention.self.query.weight");
  CHECK(named[1].first == "encoder.layer.0.attention.self.query.bias");
  CHECK(named[2].first == "encoder.layer.0.attention.self.key.weight");
  CHECK(named[6].first == "encoder.layer.1.attention.self.query.weight");
  CHECK(named.back().first == "classifier.bias");
  CHECK(model.num_parameters() == 2 * 3 * (16 + 4) + 12 + 3);
  CHECK(model.num_trainable_parameters() == model.num_parameters());

  auto* query = model.find<Linear<float>>("encoder.layer.1.attention.self.query");
  REQUIRE(query != nullptr);
  CHECK(query == &model.encoder.layer[1].attention.self_attention.query);
  CHECK(model.find_module("") == &model);
  CHECK(model.find_module("encoder.layer.7") == nullptr);
  CHECK(model.find<Linear<float>>("encoder.layer.1") == nullptr);  // exists, but not a Linear
  CHECK(model.parameter("classifier.weight").same_as(model.classifier.weight));
  CHECK_THROWS_WITH_AS(model.parameter("classifier.kernel"),
                       "no parameter named 'classifier.kernel'", IndexError);

  const auto modules = model.named_modules();
  CHECK(modules[0].first == "");
  CHECK(modules[1].first == "encoder");
  CHECK(modules[2].first == "encoder.layer");
  CHECK(modules[3].first == "encoder.layer.0");
  Index linears = 0;
  for (auto& [name, m] : modules) linears += dynamic_cast<Linear<float>*>(m) != nullptr;
  CHECK(linears == 7);

  Index layers = 0;
  for (auto& layer : model.encoder.layer) layers += layer.attention.self_attention.query.d_in();
  CHECK(layers == 8);
}

TEST_CASE("Module: registration errors, tied weights listed once") {
  Rng rng(2);
  struct Tied : Module<double> {
    Linear<double> a, b;
    Tied(Rng& rng) : a(3, 3, rng), b(3, 3, rng) {
      b.weight = a.weight;  // tied: b's registered member now holds a's Var
      register_module("a", a);
      register_module("b", b);
    }
  } tied(rng);
  const auto named = tied.named_parameters();
  REQUIRE(named.size() == 3);
  CHECK(named[0].first == "a.weight");
  CHECK(named[2].first == "b.bias");
  CHECK(tied.num_parameters() == 9 + 3 + 3);

  struct Bad : Module<float> {
    Var<float> w = Var<float>::parameter(Tensor<float>({2}));
  } bad;
  CHECK_THROWS_WITH_AS(bad.register_parameter("w.x", bad.w),
                       "register_parameter: name 'w.x' must be non-empty and contain no '.'",
                       ValueError);
  bad.register_parameter("w", bad.w);
  CHECK_THROWS_WITH_AS(bad.register_parameter("w", bad.w),
                       "register_parameter: 'w' is already a parameter of this module", ValueError);
}

TEST_CASE("Module: train/eval recurse, freeze/unfreeze by glob, zero_grad") {
  Rng rng(3);
  TinyModel<float> model(4, 2, 3, rng);
  model.eval();
  CHECK(!model.is_training());
  CHECK(!model.encoder.layer[1].attention.self_attention.value.is_training());
  model.train();
  CHECK(model.encoder.layer[0].is_training());

  model.freeze_all();
  CHECK(model.num_trainable_parameters() == 0);
  CHECK(model.unfreeze("*.query.*") == 4);  // weight and bias of 2 layers
  CHECK(model.unfreeze("classifier.*") == 2);
  CHECK(model.num_trainable_parameters() == 2 * 20 + 15);
  CHECK(model.freeze("encoder.layer.?.attention.self.query.bias") == 2);
  CHECK(model.freeze("*.nonexistent.*") == 0);
  CHECK(nn::glob_match("*.query.*", "encoder.layer.0.attention.self.query.weight"));
  CHECK(!nn::glob_match("*.query.*", "encoder.layer.0.attention.self.query"));
  CHECK(nn::glob_match("a*b*c", "a.xb.yc"));
  CHECK(!nn::glob_match("a?c", "abbc"));

  auto w = model.classifier.weight;
  w.grad().fill(1.0f);
  model.zero_grad();
  CHECK(w.grad()[0] == 0.0f);
}

TEST_CASE("Module: save and load by name, with missing / unexpected / mismatched reported") {
  const fs::path dir = scratch("checkpoint");
  Rng rng(4);
  TinyModel<float> a(4, 1, 3, rng);
  a.save_safetensors(dir / "model.safetensors");
  {
    io::SafetensorsFile f(dir / "model.safetensors");
    CHECK(f.size() == 8);
    CHECK(f.metadata().at("format") == "pt");
    CHECK(f.contains("encoder.layer.0.attention.self.value.bias"));
  }

  // Same architecture: everything loads into the existing storage.
  Rng other(99);
  TinyModel<double> b(4, 1, 3, other);
  const Var<double> kept = b.classifier.weight;
  const nn::LoadReport full = b.load_safetensors(dir / "model.safetensors");
  CHECK(full.complete());
  CHECK(full.loaded.size() == 8);
  CHECK(kept.same_as(b.classifier.weight));
  CHECK(b.classifier.weight.value()[5] == static_cast<double>(a.classifier.weight.value()[5]));

  // A different head (5 labels) and a model with 2 layers: a shape mismatch, missing and
  // unexpected keys, each reported; the mismatched head keeps its own values.
  TinyModel<float> c(4, 2, 5, other);
  const float head_before = c.classifier.weight.value()[0];
  nn::LoadReport r = c.load_safetensors(dir / "model.safetensors");
  CHECK(!r.complete());
  CHECK(r.loaded.size() == 6);
  CHECK(r.missing.size() == 6);
  CHECK(r.missing[0] == "encoder.layer.1.attention.self.query.weight");
  REQUIRE(r.mismatched.size() == 2);
  CHECK(r.mismatched[0].name == "classifier.weight");
  CHECK(r.mismatched[0].expected == Shape{5, 4});
  CHECK(r.mismatched[0].actual == Shape{3, 4});
  CHECK(r.unexpected.empty());
  CHECK(c.classifier.weight.value()[0] == head_before);
  CHECK(r.summary(1) == (dir / "model.safetensors").string() +
                            ": loaded 6, missing 6 (encoder.layer.1.attention.self.query.weight, "
                            "... 5 more), unexpected 0, shape mismatch 2 (classifier.weight: "
                            "module (5, 4), file (3, 4))");
  CHECK_THROWS_AS(r.require_complete(), FormatError);

  // Adapter-style files: only trainable parameters, under a prefix, loaded back with it.
  a.freeze_all();
  a.unfreeze("classifier.*");
  a.save_safetensors(
      dir / "adapter.safetensors",
      {.prefix = "base_model.model.", .trainable_only = true, .dtype = io::Dtype::BF16});
  io::SafetensorsFile adapter(dir / "adapter.safetensors");
  CHECK(adapter.sorted_names() == std::vector<std::string>{"base_model.model.classifier.bias",
                                                           "base_model.model.classifier.weight"});
  CHECK(adapter.info("base_model.model.classifier.weight").dtype == io::Dtype::BF16);
  TinyModel<float> d(4, 1, 3, other);
  nn::LoadReport ar = d.load_safetensors(adapter, {.prefix = "base_model.model."});
  CHECK(ar.loaded == std::vector<std::string>{"classifier.weight", "classifier.bias"});
  CHECK(ar.missing.size() == 6);
  CHECK(std::abs(d.classifier.weight.value()[1] - a.classifier.weight.value()[1]) <=
        std::abs(a.classifier.weight.value()[1]) * 0x1p-8f);
  // The unexpected keys are the file's.
  nn::LoadReport unprefixed = d.load_safetensors(adapter);
  CHECK(unprefixed.loaded.empty());
  CHECK(unprefixed.unexpected.size() == 2);
}

// ---------------------------------------------------------------------------
// Linear

TEST_CASE_TEMPLATE("Linear: torch's init bounds, forward equals ops::linear in both layouts", Real,
                   float, double) {
  Rng rng(5);
  Linear<Real> lin(64, 32, rng);
  const Real bound = Real(1) / std::sqrt(Real(64));
  Real lo = 1, hi = -1;
  for (Real v : lin.weight.data()) lo = std::min(lo, v), hi = std::max(hi, v);
  CHECK(lo >= -bound);
  CHECK(hi <= bound);
  CHECK(hi - lo > Real(1.9) * bound);  // 2048 draws fill the interval
  for (Real v : lin.bias.data()) CHECK(std::abs(v) <= bound);
  CHECK(lin.weight.shape() == Shape{32, 64});

  Linear<Real> conv1d(64, 32, rng, /*with_bias=*/false, nn::WeightLayout::in_out);
  CHECK(conv1d.weight.shape() == Shape{64, 32});
  CHECK(!conv1d.has_bias());
  CHECK(conv1d.named_parameters().size() == 1);

  Tape<Real> tape;
  Var<Real> x(randn<Real>({2, 3, 64}, rng));
  Var<Real> y = lin.forward(tape, x), ref = ops::linear(tape, x, lin.weight, lin.bias);
  REQUIRE(y.shape() == Shape{2, 3, 32});
  for (Index i = 0; i < y.numel(); ++i) CHECK(y.value()[i] == ref.value()[i]);
  Var<Real> z = conv1d.forward(tape, x);
  CHECK(z.shape() == Shape{2, 3, 32});
}

// ---------------------------------------------------------------------------
// Frozen 16-bit weights: the half GEMM and Linear::to_half_precision.

namespace {
// max |a - b| / max(1, max |b|): float GEMMs that sum in another order agree to ~1e-6.
template <class Real>
double relative_gap(std::span<const Real> a, std::span<const Real> b) {
  double gap = 0, scale = 1;
  for (std::size_t i = 0; i < a.size(); ++i) {
    gap = std::max(gap, std::abs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::abs(double(b[i])));
  }
  return gap / scale;
}
}  // namespace

TEST_CASE("half_gemm equals gemm on the weight converted to float: shapes, transposes, tiles") {
  Rng rng(21);
  struct Case {
    Index M, N, K;
    Index tile;  // 0 = the default tile size; small ones force many tiles and ragged edges
  };
  for (const Case c : {Case{1, 37, 53, 0}, Case{5, 37, 53, 64}, Case{33, 130, 70, 300},
                       Case{96, 256, 512, 0}, Case{3, 1, 9, 0}, Case{7, 19, 1, 16}}) {
    for (const bool trans_b : {true, false})
      for (const io::Dtype dtype : {io::Dtype::BF16, io::Dtype::F16})
        for (const float beta : {0.0f, 1.0f}) {
          INFO("M " << c.M << " N " << c.N << " K " << c.K << " tile " << c.tile << " trans_b "
                    << trans_b << " " << io::dtype_name(dtype) << " beta " << beta);
          const Tensor<float> a = randn<float>({c.M, c.K}, rng);
          const Tensor<float> w = randn<float>(trans_b ? Shape{c.N, c.K} : Shape{c.K, c.N}, rng);
          const HalfMatrix half = HalfMatrix::from_values<float>(w.data(), w.size(0), w.size(1), dtype);
          const Tensor<float> rounded = half.to_tensor<float>();
          const Tensor<float> c0 = randn<float>({c.M, c.N}, rng);
          Tensor<float> got = c0.clone(), want = c0.clone();
          fourierft::detail::half_gemm<float>(trans_b, c.M, c.N, c.K, 0.5f, a.ptr(), c.K, half,
                                              beta, got.ptr(), c.N, c.tile);
          fourierft::detail::gemm<float>(false, trans_b, c.M, c.N, c.K, 0.5f, a.ptr(), c.K,
                                         rounded.ptr(), w.size(1), beta, want.ptr(), c.N);
          CHECK(relative_gap<float>(got.data(), want.data()) < 2e-6);
        }
  }
}

TEST_CASE("half_gemm with few rows and a BF16 weight (the decoding path): values, every ISA level") {
  // M <= half_gemv_max_rows skips the tiles: B widened in registers, 16-lane sums. Rows of A in
  // groups of 4 (M = 5, 7 leave short groups), rows of B in fours (N = 37), 64-column blocks with
  // a ragged last one (N = 130), K not a multiple of 16 and a wider row stride for A; beta = 0
  // must overwrite a NaN. Where every ISA level takes this path, they must give the same bits.
  Rng rng(24);
  for (const Index M : {1, 2, 3, 4, 5, 7, 16, 64})
    for (const Index N : {37, 130})
      for (const Index K : {5, 53})
        for (const bool trans_b : {true, false})
          for (const float beta : {0.0f, 0.5f}) {
            INFO("M " << M << " N " << N << " K " << K << " trans_b " << trans_b << " beta " << beta);
            const Index lda = K + 3;
            const Tensor<float> a = randn<float>({M, lda}, rng);
            const Tensor<float> w = randn<float>(trans_b ? Shape{N, K} : Shape{K, N}, rng);
            const HalfMatrix half =
                HalfMatrix::from_values<float>(w.data(), w.size(0), w.size(1), io::Dtype::BF16);
            const Tensor<float> rounded = half.to_tensor<float>();
            const Tensor<float> c0 = randn<float>({M, N}, rng);
            Tensor<float> want = c0.clone();
            fourierft::detail::gemm<float>(false, trans_b, M, N, K, 1.5f, a.ptr(), lda,
                                           rounded.ptr(), w.size(1), beta, want.ptr(), N);
            std::vector<Tensor<float>> per_level;
            for (const auto level : {fourierft::detail::Isa::baseline, fourierft::detail::Isa::avx2,
                                     fourierft::detail::Isa::avx512}) {
              const auto old = fourierft::detail::set_active_isa(level);
              Tensor<float> got = c0.clone();
              if (beta == 0.0f) got[M * N - 1] = std::numeric_limits<float>::quiet_NaN();
              fourierft::detail::half_gemm<float>(trans_b, M, N, K, 1.5f, a.ptr(), lda, half, beta,
                                                  got.ptr(), N);
              fourierft::detail::set_active_isa(old);
              CHECK(relative_gap<float>(got.data(), want.data()) < 2e-6);
              per_level.push_back(std::move(got));
            }
            const bool direct_at_every_level = M <= (trans_b ? 16 : 1);
            if (direct_at_every_level)
              for (const Tensor<float>& got : per_level)
                CHECK(std::memcmp(got.ptr(), per_level[0].ptr(), sizeof(float) * M * N) == 0);
          }
}

TEST_CASE("gemm with few rows of C (the matrix-vector path) equals Eigen's product") {
  // M <= 8 against a B of >= 2^18 numbers goes to one sgemv per row under OpenBLAS; A and B with
  // row strides wider than their rows; beta = 0 must overwrite C even where it holds NaN.
  Rng rng(23);
  const Index N = 613, K = 509, pad = 3;
  for (const Index M : {1, 3, 8, 9})
    for (const bool trans_b : {false, true})
      for (const float beta : {0.0f, 0.5f}) {
        CAPTURE(M);
        CAPTURE(trans_b);
        CAPTURE(beta);
        const Index rows = trans_b ? N : K, cols = trans_b ? K : N, ldb = cols + pad, lda = K + pad;
        const Tensor<float> a = randn<float>({M, lda}, rng), b = randn<float>({rows, ldb}, rng);
        Tensor<float> got = randn<float>({M, N}, rng), want = got.clone();
        if (beta == 0.0f) got[3] = std::numeric_limits<float>::quiet_NaN();
        fourierft::detail::gemm<float>(false, trans_b, M, N, K, 1.5f, a.ptr(), lda, b.ptr(), ldb,
                                       beta, got.ptr(), N);
        fourierft::detail::eigen_gemm<float>(false, trans_b, M, N, K, 1.5f, a.ptr(), lda, b.ptr(),
                                             ldb, beta, want.ptr(), N);
        CHECK(relative_gap<float>(got.data(), want.data()) < 1e-5);
      }
}

TEST_CASE_TEMPLATE("Linear in half precision: forward and dx equal float on the rounded weight",
                   Real, float, double) {
  Rng rng(22);
  for (const auto layout : {nn::WeightLayout::out_in, nn::WeightLayout::in_out})
    for (const bool with_bias : {true, false}) {
      Linear<Real> half(48, 20, rng, with_bias, layout), ref(48, 20, rng, with_bias, layout);
      half.to_half_precision(io::Dtype::BF16);
      CHECK(half.half_precision());
      CHECK_FALSE(half.weight.defined());
      CHECK(half.half_weight().shape() == ref.weight_shape());
      ref.weight.value() = half.half_weight().template to_tensor<Real>();  // the rounded weight, in Real
      if (with_bias) ref.bias.value() = half.bias.value().clone();
      // The Module tree: no `weight` parameter, a frozen tensor `weight`; counts unchanged.
      CHECK(half.named_parameters().size() == (with_bias ? 1u : 0u));
      REQUIRE(half.named_frozen_tensors().size() == 1);
      CHECK(half.named_frozen_tensors()[0].first == "weight");
      CHECK(half.num_parameters() == ref.num_parameters());
      CHECK(half.num_trainable_parameters() == (with_bias ? 20 : 0));

      Tape<Real> tape;
      Var<Real> x = Var<Real>::parameter(randn<Real>({2, 5, 48}, rng));
      Var<Real> x_ref = Var<Real>::parameter(x.value().clone());
      const Tensor<Real> probe = randn<Real>({2, 5, 20}, rng);
      Var<Real> y = half.forward(tape, x), y_ref = ref.forward(tape, x_ref);
      const double tol = std::is_same_v<Real, float> ? 2e-6 : 1e-14;
      CHECK(relative_gap<Real>(y.data(), y_ref.data()) < tol);
      tape.backward(ops::sum(tape, ops::mul(tape, ops::add(tape, y, y_ref), probe)));
      CHECK(relative_gap<Real>(x.grad().data(), x_ref.grad().data()) < tol);
      if (with_bias) CHECK(relative_gap<Real>(half.bias.grad().data(), ref.bias.grad().data()) < tol);
    }
  Linear<Real> back(8, 4, rng);
  const Tensor<Real> before = back.weight.value().clone();
  back.to_half_precision(io::Dtype::F16);
  back.to_full_precision();
  REQUIRE(back.weight.defined());
  CHECK_FALSE(back.half_precision());
  CHECK(back.weight.value()[3] == Real(f16_to_float(float_to_f16(float(before[3])))));
}

TEST_CASE("half_linear: gradients of x and bias match central differences (double)") {
  // x ↦ x·Wᵀ + b with W fixed (the 16-bit weight, converted exactly to double): the analytic
  // dx = dy·W and db = sum dy must match the difference quotients of the same double function.
  Rng rng(23);
  for (const auto layout : {nn::WeightLayout::out_in, nn::WeightLayout::in_out}) {
    const Tensor<double> w = randn<double>(layout == nn::WeightLayout::out_in ? Shape{6, 9} : Shape{9, 6}, rng);
    const HalfMatrix half = HalfMatrix::from_values<double>(w.data(), w.size(0), w.size(1), io::Dtype::BF16);
    auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
      return testing::project(t, ops::half_linear(t, in[0], half, in[1], layout));
    };
    testing::GradcheckResult r =
        testing::gradcheck(loss, {randn<double>({3, 9}, rng), randn<double>({6}, rng)});
    INFO(r.report());
    CHECK(r.ok);
  }
}

TEST_CASE("nn::to_half_precision: every Linear but tied and kept ones; save and load in BF16") {
  // lm_head shares embed's table (tied, as an LM head on the embeddings): it stays a float Var.
  struct Tied : Module<float> {
    nn::Embedding<float> embed;
    Linear<float> proj, head, lm_head;
    explicit Tied(Rng& rng) : embed(11, 6, rng), proj(6, 6, rng), head(6, 2, rng), lm_head(6, 11, rng, false) {
      lm_head.weight = embed.weight;
      this->register_module("embed", embed);
      this->register_module("proj", proj);
      this->register_module("head", head);
      this->register_module("lm_head", lm_head);
    }
  };
  Rng rng(24);
  Tied model(rng);
  const Index total = model.num_parameters();
  const auto converted = nn::to_half_precision<float>(model, io::Dtype::BF16, {"head.*"});
  CHECK(converted == std::vector<std::string>{"proj.weight"});
  CHECK(model.proj.half_precision());
  CHECK_FALSE(model.head.half_precision());
  CHECK(model.lm_head.weight.same_as(model.embed.weight));
  CHECK(model.num_parameters() == total);

  const fs::path dir = fs::path(FOURIERFT_BINARY_DIR) / "test_nn_optim" / "half";
  fs::create_directories(dir);
  model.save_safetensors(dir / "m.safetensors", {.dtype = io::Dtype::BF16});
  const io::SafetensorsFile file(dir / "m.safetensors");
  CHECK(file.info("proj.weight").dtype == io::Dtype::BF16);
  const std::vector<std::byte> bytes = file.raw_bytes("proj.weight");
  CHECK(std::memcmp(bytes.data(), model.proj.half_weight().data(), bytes.size()) == 0);

  Tied loaded(rng);
  nn::to_half_precision<float>(loaded, io::Dtype::BF16, {"head.*"});
  const nn::LoadReport report = loaded.load_safetensors(file);
  CHECK(report.complete());
  CHECK(std::count(report.loaded.begin(), report.loaded.end(), "proj.weight") == 1);
  CHECK(loaded.proj.half_weight().memory_mapped());
  for (Index i = 0; i < 36; ++i) CHECK(loaded.proj.half_weight().data()[i] == model.proj.half_weight().data()[i]);
  // A wrong shape is reported, naming the tensor.
  Linear<float> wrong(5, 6, rng);
  wrong.to_half_precision(io::Dtype::BF16);
  CHECK_THROWS_WITH_AS(nn::load_parameters(wrong, file, {.prefix = "proj."}, /*strict=*/true),
                       (file.path() + ": tensor 'proj.weight' has shape (6, 6) but the model's frozen "
                                      "weight has shape (6, 5)").c_str(),
                       FormatError);
}

TEST_CASE("Linear: an attached adapter changes the output and trains; its name is PEFT-style") {
  Rng rng(6);
  TinyModel<double> model(4, 1, 2, rng);
  model.freeze_all();
  auto* query = model.find<Linear<double>>("encoder.layer.0.attention.self.query");
  REQUIRE(query != nullptr);
  auto adapter = std::make_shared<AddAdapter<double>>(4, 4);
  query->attach("", adapter);
  CHECK(model.num_trainable_parameters() == 16);
  CHECK(model.parameter("encoder.layer.0.attention.self.query.toy_delta").same_as(adapter->delta));

  Tape<double> tape;
  Var<double> x(randn<double>({3, 4}, rng));
  Var<double> y0 = query->forward(tape, x);  // delta = 0: same as the base layer
  Var<double> base = query->base_forward(tape, x);
  for (Index i = 0; i < y0.numel(); ++i) CHECK(y0.value()[i] == base.value()[i]);
  tape.clear();

  Var<double> loss = ops::sum(tape, query->forward(tape, x));
  tape.backward(loss);
  CHECK(adapter->delta.has_grad());
  CHECK(!query->weight.has_grad());  // frozen base: no dW computed
  // d/dA sum(x·A) = column sums of x, repeated for every output.
  double col0 = 0;
  for (Index n = 0; n < 3; ++n) col0 += x.value().at({n, 0});
  CHECK(adapter->delta.grad().at({0, 2}) == doctest::Approx(col0).epsilon(1e-12));

  // Merged, the layer is a plain Linear computing the same thing.
  adapter->delta.value().fill(0.25);
  tape.clear();
  Var<double> unmerged = query->forward(tape, x);
  adapter->merge(*query);
  Var<double> merged = query->forward(tape, x);
  for (Index i = 0; i < merged.numel(); ++i)
    CHECK(merged.value()[i] == doctest::Approx(unmerged.value()[i]).epsilon(1e-12));
  adapter->unmerge(*query);
  CHECK_THROWS_AS(query->attach("second", std::make_shared<AddAdapter<double>>(4, 4)), ValueError);

  query->detach("");
  CHECK(model.num_trainable_parameters() == 0);
  CHECK(query->adapters().empty());
}

// ---------------------------------------------------------------------------
// Optimizers against torch 1.13 (float64). The reference, run once:
//   import torch; torch.set_default_dtype(torch.float64)
//   x = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5], [-2.0, 1.0, 0.75], [0.1, 0.2, 0.3]])
//   t = torch.tensor([[1.0, -1.0], [0.5, 2.0], [-1.5, 0.0], [0.25, 0.75]])
//   def run(make_opt, steps=5):
//       w = torch.tensor([[0.2, -0.3, 0.1], [0.4, 0.05, -0.2]], requires_grad=True)
//       b = torch.tensor([0.1, -0.1], requires_grad=True)
//       opt = make_opt(w, b); out = []
//       for _ in range(steps):
//           opt.zero_grad(); ((x @ w.T + b - t) ** 2).mean().backward(); opt.step()
//           out.append(w.detach().flatten().tolist() + b.detach().tolist())
//       return out
//   run(lambda w, b: torch.optim.AdamW([{"params": [w], "lr": 0.1, "weight_decay": 0.1},
//                                       {"params": [b], "lr": 0.05, "weight_decay": 0.0}]))
//   run(lambda w, b: torch.optim.SGD([{"params": [w], "lr": 0.1, "weight_decay": 0.01},
//                                     {"params": [b], "lr": 0.05}],
//                                    lr=0.1, momentum=0.9, dampening=0.1))
//   run(lambda w, b: torch.optim.SGD([w, b], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01))
// Each row: w (2x3, row-major) then b (2) after steps 1..5.
namespace {

// clang-format off
const double adamw_reference[5][8] = {
    {0.297999998369676, -0.3969999966294503, -0.00099997956577684, 0.29600002535657044, 0.1494999981557259, -0.2979999959421762, 0.050000006896550785, -0.050000000769971124},
    {0.390951092547291, -0.4912536773539133, 0.03807737928557598, 0.34812252023697765, 0.24604237893018452, -0.39153702414589897, 0.04371726519894383, 7.542856929013131e-06},
    {0.4747692185911918, -0.5772924912959336, 0.09340801478723204, 0.41298169608335067, 0.33998321567198103, -0.46775735874892627, 0.052487456469861846, 0.05001065753602378},
    {0.5433832616878649, -0.646494901820183, 0.12969722984969417, 0.46694617421312595, 0.4312286874587083, -0.5098500073192446, 0.060728953175338614, 0.09996699228921666},
    {0.5906149157851532, -0.6909455063976188, 0.1305302177254272, 0.495796185730535, 0.5195725229929414, -0.5158884063712892, 0.061542731348463414, 0.14975826791260272},
};
const double sgd_reference[5][8] = {
    {0.2611375, -0.32936875, 0.09500625, 0.39565625000000004, 0.10417187500000001, -0.22444375, 0.096375, -0.06753125},
    {0.360654961328125, -0.37803216730468747, 0.0875900970703125, 0.3902993399609375, 0.19781212064453127, -0.26610352234375, 0.0902362828125, -0.0101167220703125},
    {0.47755341960198877, -0.43715877947428, 0.0804626384132307, 0.38798235319938695, 0.3203922075163051, -0.3192955126912034, 0.08245861472296874, 0.06789243973858766},
    {0.589888331683089, -0.49744752633800066, 0.07629332029946476, 0.39291282192693744, 0.46063562611662046, -0.3778637560904849, 0.07392817256441377, 0.16183434990078965},
    {0.6786100144620507, -0.550592426722332, 0.07703921706481501, 0.40846258410023834, 0.6075649035578617, -0.43586259610003864, 0.06540254595916742, 0.2668529950221985},
};
const double nesterov_reference[5][8] = {
    {0.31616125, -0.355800625, 0.090511875, 0.391746875, 0.15292656250000003, -0.246443125, 0.086035, 0.023571249999999978},
    {0.4396403380078125, -0.4183906547929687, 0.08414393626953126, 0.38955609315234374, 0.28289013764257814, -0.31079907893750003, 0.0705866050625, 0.1795741227109375},
    {0.5447253352903861, -0.4764949142326916, 0.08380242245228972, 0.39748905441813115, 0.42436523470219106, -0.38796642269812626, 0.05617293627977187, 0.3494475685464608},
    {0.6161022476117464, -0.5226883485134559, 0.09003893704221436, 0.416571547837496, 0.5639975229262308, -0.47181813403403783, 0.04411517905717357, 0.51729018889704},
    {0.6489504642409322, -0.5535908207090284, 0.1014125828712215, 0.44502556845161917, 0.6912912834897916, -0.5557409960133952, 0.034702911113673345, 0.6706416283956848},
};
// clang-format on

// The reference problem: loss = mean((x·wᵀ + b - t)²).
template <class Real>
struct Problem {
  Var<Real> w =
      Var<Real>::parameter(Tensor<Real>::from_data({2, 3}, {0.2, -0.3, 0.1, 0.4, 0.05, -0.2}));
  Var<Real> b = Var<Real>::parameter(Tensor<Real>::from_data({2}, {0.1, -0.1}));
  Var<Real> x{Tensor<Real>::from_data(
      {4, 3}, {0.5, -1.0, 2.0, 1.5, 0.25, -0.5, -2.0, 1.0, 0.75, 0.1, 0.2, 0.3})};
  Var<Real> t{Tensor<Real>::from_data({4, 2}, {1.0, -1.0, 0.5, 2.0, -1.5, 0.0, 0.25, 0.75})};

  void backward() {
    Tape<Real> tape;
    Var<Real> d = ops::sub(tape, ops::linear(tape, x, w, b), t);
    tape.backward(ops::mean(tape, ops::mul(tape, d, d)));
  }
  // Runs `steps` optimizer steps and compares w, b after each with reference[first + k].
  void run(optim::Optimizer<Real>& opt, const double (*reference)[8], int first, int steps,
           double tol) {
    for (int s = first; s < first + steps; ++s) {
      opt.zero_grad();
      backward();
      opt.step();
      for (int i = 0; i < 8; ++i) {
        const double got = i < 6 ? w.value()[i] : b.value()[i - 6];
        INFO("step " << s + 1 << " value " << i);
        CHECK(got == doctest::Approx(reference[s][i]).epsilon(tol));
      }
    }
  }
};

template <class Real>
double tolerance() {
  return std::is_same_v<Real, double> ? 1e-12 : 2e-5;
}

}  // namespace

TEST_CASE_TEMPLATE("AdamW: two groups with their own lr and weight decay follow torch", Real, float,
                   double) {
  Problem<Real> p;
  optim::AdamW<Real> opt({{.params = {p.w}, .lr = 0.1, .weight_decay = 0.1, .name = "weights"},
                          {.params = {p.b}, .lr = 0.05, .weight_decay = 0.0}});
  CHECK(opt.group(0).name == "weights");
  CHECK(opt.group(1).name == "group1");
  CHECK(opt.options().eps == 1e-8);
  p.run(opt, adamw_reference, 0, 5, tolerance<Real>());
  CHECK(opt.steps() == 5);
}

TEST_CASE_TEMPLATE("SGD: momentum with dampening, and Nesterov, follow torch", Real, float,
                   double) {
  Problem<Real> p;
  optim::SGD<Real> opt(
      {{.params = {p.w}, .lr = 0.1, .weight_decay = 0.01}, {.params = {p.b}, .lr = 0.05}},
      {.lr = 0.1, .momentum = 0.9, .dampening = 0.1});
  p.run(opt, sgd_reference, 0, 5, tolerance<Real>());

  Problem<Real> q;
  optim::SGD<Real> nesterov({q.w, q.b},
                            {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = true});
  q.run(nesterov, nesterov_reference, 0, 5, tolerance<Real>());
  CHECK_THROWS_AS(optim::SGD<Real>({q.w}, {.dampening = 0.5, .nesterov = true}), ValueError);
}

TEST_CASE_TEMPLATE("optimizers: state saved after 2 steps resumes into the same trajectory", Real,
                   float, double) {
  const fs::path dir = scratch(std::is_same_v<Real, float> ? "state_f" : "state_d");
  Problem<Real> p;
  {
    optim::AdamW<Real> opt({{.params = {p.w}, .lr = 0.1, .weight_decay = 0.1},
                            {.params = {p.b}, .lr = 0.05, .weight_decay = 0.0}});
    p.run(opt, adamw_reference, 0, 2, tolerance<Real>());
    opt.save_state(dir / "adamw.safetensors");
  }
  optim::AdamW<Real> resumed({{.params = {p.w}, .lr = 0.5}, {.params = {p.b}, .lr = 0.5}});
  resumed.load_state(dir / "adamw.safetensors");
  CHECK(resumed.lr(1) == 0.05);
  CHECK(resumed.group(0).weight_decay == 0.1);
  CHECK(resumed.steps() == 2);
  p.run(resumed, adamw_reference, 2, 3, tolerance<Real>());

  Problem<Real> q;
  optim::SGD<Real> sgd(
      {{.params = {q.w}, .lr = 0.1, .weight_decay = 0.01}, {.params = {q.b}, .lr = 0.05}},
      {.lr = 0.1, .momentum = 0.9, .dampening = 0.1});
  q.run(sgd, sgd_reference, 0, 3, tolerance<Real>());
  sgd.save_state(dir / "sgd.safetensors");
  optim::SGD<Real> sgd2({{.params = {q.w}}, {.params = {q.b}}},
                        {.momentum = 0.9, .dampening = 0.1});
  sgd2.load_state(dir / "sgd.safetensors");
  q.run(sgd2, sgd_reference, 3, 2, tolerance<Real>());

  // A state file for another optimizer or another layout is rejected, naming the file.
  const std::string file = (dir / "sgd.safetensors").string();
  CHECK_THROWS_WITH_AS(resumed.load_state(dir / "sgd.safetensors"),
                       (file + ": holds SGD state, not AdamW").c_str(), FormatError);
  optim::SGD<Real> one_group({q.w, q.b}, {.momentum = 0.9});
  CHECK_THROWS_WITH_AS(one_group.load_state(dir / "sgd.safetensors"),
                       (file + ": has 2 parameter groups but the optimizer has 1").c_str(),
                       FormatError);
}

TEST_CASE("optimizers: parameters without a gradient or frozen are skipped; groups are checked") {
  auto a = Var<double>::parameter(Tensor<double>::full({2}, 1.0));
  auto b = Var<double>::parameter(Tensor<double>::full({2}, 1.0));
  auto c = Var<double>::parameter(Tensor<double>::full({2}, 1.0));
  optim::AdamW<double> opt({a, b, c}, {.lr = 0.1, .weight_decay = 0.5});
  a.grad().fill(1.0);
  c.grad().fill(1.0);
  c.set_requires_grad(false);
  opt.step();
  CHECK(a.value()[0] < 1.0);
  CHECK(b.value()[0] == 1.0);  // no gradient: not even weight decay
  CHECK(c.value()[0] == 1.0);  // frozen
  CHECK_THROWS_WITH_AS(
      optim::AdamW<double>({{.params = {a}, .name = "x"}, {.params = {a}, .name = "y"}}),
      "optimizer: a parameter appears in groups 'x' and 'y'", ValueError);

  opt.scale_lr(0.5);
  CHECK(opt.lr() == 0.05);
  opt.set_lr(0, 0.2);
  CHECK(opt.lr(0) == 0.2);
  CHECK_THROWS_AS(opt.set_lr(3, 0.1), IndexError);
}

TEST_CASE("clip_grad_norm: torch's semantics, the 1e-6 included") {
  auto a = Var<double>::parameter(Tensor<double>::from_data({2}, {3.0, 0.0}));
  auto b = Var<double>::parameter(Tensor<double>::from_data({1}, {0.0}));
  auto none = Var<double>::parameter(Tensor<double>({3}));  // no gradient: ignored
  a.grad()[0] = 3.0;
  b.grad()[0] = 4.0;
  const double total = optim::clip_grad_norm<double>({a, b, none}, 1.0);
  CHECK(total == doctest::Approx(5.0).epsilon(1e-15));
  CHECK(a.grad()[0] == doctest::Approx(3.0 / (5.0 + 1e-6)).epsilon(1e-15));
  CHECK(b.grad()[0] == doctest::Approx(4.0 / (5.0 + 1e-6)).epsilon(1e-15));
  CHECK(!none.has_grad());
  // Below the limit: untouched.
  const double small = optim::clip_grad_norm<double>({a, b}, 10.0);
  CHECK(small == doctest::Approx(5.0 / (5.0 + 1e-6)).epsilon(1e-12));
  CHECK(b.grad()[0] == doctest::Approx(4.0 / (5.0 + 1e-6)).epsilon(1e-15));
  b.grad()[0] = NAN;
  CHECK_THROWS_AS(optim::clip_grad_norm<double>({a, b}, 1.0, /*error_if_nonfinite=*/true),
                  ValueError);
}

TEST_CASE("schedules: Hugging Face's linear warmup + decay, constant, warmup ratio") {
  // get_linear_schedule_with_warmup(opt, 2, 10): factors for steps 0..11.
  const double expected[] = {0.0, 0.5, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0, 0.0};
  const optim::Schedule linear = optim::linear_warmup_decay(2, 10);
  for (int s = 0; s < 12; ++s) CHECK(linear(s) == doctest::Approx(expected[s]).epsilon(1e-15));
  CHECK(optim::linear_warmup_decay(0, 4)(0) == 1.0);
  CHECK(optim::constant_schedule()(123) == 1.0);
  CHECK(optim::constant_with_warmup(4)(1) == 0.25);
  CHECK(optim::constant_with_warmup(4)(9) == 1.0);
  CHECK(optim::warmup_steps_for_ratio(1000, 0.06) == 60);
  CHECK(optim::warmup_steps_for_ratio(101, 0.06) == 7);  // ceil(6.06)

  auto p = Var<float>::parameter(Tensor<float>({1}));
  optim::AdamW<float> opt({{.params = {p}, .lr = 0.1}});
  opt.scale_lr(linear(1));
  CHECK(opt.lr() == doctest::Approx(0.05).epsilon(1e-15));
}

// ---------------------------------------------------------------------------------------------------
// train/checkpoint.hpp, log.hpp, progress.hpp: what a resume after a crash relies on.

TEST_CASE("training state: a resume cuts the log back to the save and reopens the loss window") {
  const fs::path out = scratch("resume_log");
  Rng rng(5);
  Linear<float> model(3, 2, rng);
  optim::AdamW<float> opt(model.parameters(), {.lr = 0.1});
  train::Progress progress(10, 0, 4, "ex", /*tty=*/false);
  train::JsonlLog log(out / "log.jsonl");
  log.write({{"event", "start"}});
  const double losses[] = {0.5, 0.25, 0.125, 1.0 / 3, 0.2, 0.7};
  for (int s = 1; s <= 3; ++s) progress.step(s, losses[s - 1], 0.1, 0.0, 1);  // window: 1..3
  train::TrainState state;
  state.step = 3;
  state.log_bytes = log.sync();
  state.window_loss_sum = progress.loss_window().loss_sum;
  state.window_steps = progress.loss_window().steps;
  state.files["fftw_wisdom"] = "(fftw-3.3 fftwf_wisdom)";
  CHECK(state.log_bytes == static_cast<std::int64_t>(fs::file_size(out / "log.jsonl")));
  CHECK(state.window_steps == 3);
  train::save_train_state(out / "state", model, opt, state, {{"n", 1}});
  // The run goes on past the save, then dies: one whole record and a torn one after it.
  log.write({{"event", "step"}, {"step", 4}});
  { std::ofstream torn(out / "log.jsonl", std::ios::app); torn << "{\"event\":\"st"; }

  Linear<float> model2(3, 2, rng);
  optim::AdamW<float> opt2(model2.parameters(), {.lr = 0.1});
  const train::TrainState resumed =
      train::start_or_resume(out, true, model2, opt2, {{"n", 1}}, io::Json::object());
  CHECK(resumed.step == 3);
  CHECK(static_cast<std::int64_t>(fs::file_size(out / "log.jsonl")) == state.log_bytes);
  CHECK(resumed.files.at("fftw_wisdom") == "(fftw-3.3 fftwf_wisdom)");
  CHECK(model2.weight.value()[0] == model.weight.value()[0]);

  // Step 4 closes the window: the mean over steps 1..4, as without the interruption.
  train::Progress after(10, 3, 4, "ex", false);
  after.restore_loss_window({resumed.window_loss_sum, resumed.window_steps});
  const auto window = after.step(4, losses[3], 0.1, 0.0, 1);
  REQUIRE(window.has_value());
  CHECK(window->loss == (((losses[0] + losses[1]) + losses[2]) + losses[3]) / 4);
  // Other settings are refused, naming the option.
  CHECK_THROWS_WITH_AS(train::start_or_resume(out, true, model2, opt2, {{"n", 2}}, io::Json::object()),
                       doctest::Contains("saved with n = 1 but this run has n = 2"), Error);
}

TEST_CASE("training state: a killed run's temporaries are removed, live and other files kept") {
  const fs::path out = scratch("stale");
  fs::create_directories(out / "state.new");
  fs::create_directories(out / "adapter");
  // A pid that is surely gone: above the kernel's maximum (4194304 on 64-bit Linux).
  const std::string dead = ".tmp.99999999", live = ".tmp." + std::to_string(::getppid());
  for (const fs::path& f : {out / "state.new" / "state.json", out / ("results.json" + dead),
                            out / "adapter" / ("adapter_model.safetensors" + dead),
                            out / ("log.jsonl" + live), out / "results.json", out / "notes.tmp.txt"})
    std::ofstream(f) << "x";
  CHECK(train::clean_stale_temporaries(out) == 3);
  CHECK_FALSE(fs::exists(out / "state.new"));
  CHECK_FALSE(fs::exists(out / ("results.json" + dead)));
  CHECK_FALSE(fs::exists(out / "adapter" / ("adapter_model.safetensors" + dead)));
  CHECK(fs::exists(out / ("log.jsonl" + live)));  // its writer (our parent) is alive
  CHECK(fs::exists(out / "results.json"));
  CHECK(fs::exists(out / "notes.tmp.txt"));
  CHECK(train::clean_stale_temporaries(out / "missing") == 0);
}

TEST_CASE("training state: a crash between the folder renames resumes from state.old") {
  const fs::path out = scratch("swap");
  Rng rng(6);
  Linear<float> model(2, 2, rng);
  optim::AdamW<float> opt(model.parameters(), {.lr = 0.1});
  train::TrainState state;
  state.step = 7;
  train::save_train_state(out / "state", model, opt, state, io::Json::object());
  fs::rename(out / "state", out / "state.old");  // the first rename done, the second not
  fs::create_directories(out / "state.new");     // and a half-written new folder
  REQUIRE(train::find_train_state(out / "state") == out / "state.old");
  Linear<float> model2(2, 2, rng);
  optim::AdamW<float> opt2(model2.parameters(), {.lr = 0.1});
  CHECK(train::start_or_resume(out, true, model2, opt2, io::Json::object(), io::Json::object()).step == 7);
  CHECK_FALSE(fs::exists(out / "state.new"));
  state.step = 8;  // the next save replaces both
  train::save_train_state(out / "state", model2, opt2, state, io::Json::object());
  CHECK(train::find_train_state(out / "state") == out / "state");
  CHECK_FALSE(fs::exists(out / "state.old"));
}
