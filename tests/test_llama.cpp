// Tests of include/fourierft/models/llama.hpp and the ops it brought (ops::rms_norm, silu / swiglu,
// ops/rotary.hpp, grouped-query / sliding-window attention): the tiny checkpoints of
// tests/fixtures/models/{llama-*,mistral-swa,qwen2-bias,qwen3-qknorm} (make_llama_fixtures.py)
// through the real loader, and the real-size key/shape listings of tests/fixtures/models/real-shapes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "fourierft/io/json.hpp"
#include "fourierft/io/safetensors.hpp"
#include "fourierft/models/generation.hpp"
#include "fourierft/models/llama.hpp"
#include "fourierft/models/registry.hpp"
#include "fourierft/ops/attention.hpp"
#include "fourierft/ops/elementwise.hpp"
#include "fourierft/ops/norm.hpp"
#include "fourierft/ops/reduce.hpp"
#include "fourierft/ops/rotary.hpp"
#include "fourierft/peft/adapter.hpp"
#include "fourierft/peft/adapter_io.hpp"
#include "fourierft/peft/lora.hpp"
#include "fourierft/peft/registry.hpp"
#include "gradcheck.hpp"

using namespace fourierft;
using namespace fourierft::models;
using fourierft::testing::gradcheck;
using fourierft::testing::GradcheckResult;
using fourierft::testing::project;
namespace fs = std::filesystem;

namespace {

fs::path model_dir(const std::string& name) {
  return fs::path(FOURIERFT_FIXTURES_DIR) / "models" / name;
}
fs::path scratch(const std::string& name) {
  const fs::path dir = fs::path(FOURIERFT_BINARY_DIR) / "test_llama" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}
bool have_fixture(const std::string& name) {
  return fs::exists(model_dir(name) / "reference.safetensors");
}

// max |a - b| over the rows r (of the (rows, width) view) with keep[r] true (all if keep is empty).
template <class A, class B>
double max_abs_diff(const Tensor<A>& a, const Tensor<B>& b, const std::vector<bool>& keep = {}) {
  REQUIRE(a.shape() == b.shape());
  const Index width = a.size(-1), rows = a.numel() / width;
  double worst = 0;
  for (Index r = 0; r < rows; ++r) {
    if (!keep.empty() && !keep[static_cast<std::size_t>(r)]) continue;
    for (Index c = 0; c < width; ++c)
      worst = std::max(worst, std::abs(double(a[r * width + c]) - double(b[r * width + c])));
  }
  return worst;
}
double max_abs(const Tensor<float>& a) {
  double m = 0;
  for (float v : a.data()) m = std::max(m, double(std::abs(v)));
  return m;
}
std::vector<bool> real_rows(const Tensor<std::int64_t>& mask) {
  std::vector<bool> keep;
  for (std::int64_t m : mask.data()) keep.push_back(m != 0);
  return keep;
}

// ---------------------------------------------------------------------------
// Naive references for the fused kernels (double, plain loops).

// HF's rotate-half RoPE on one (rows, heads·D) tensor with per-row positions.
Tensor<double> naive_rope(const Tensor<double>& x, const std::vector<std::int64_t>& pos,
                          const std::vector<float>& inv_freq) {
  const Index D = 2 * static_cast<Index>(inv_freq.size()), h = D / 2, W = x.size(-1),
              N = x.numel() / W;
  Tensor<double> y(x.shape());
  for (Index n = 0; n < N; ++n)
    for (Index head = 0; head < W / D; ++head)
      for (Index d = 0; d < D; ++d) {
        const double angle = double(float(pos[n]) * inv_freq[d % h]);
        const double xd = x[n * W + head * D + d];
        const double rot = d < h ? -x[n * W + head * D + d + h] : x[n * W + head * D + d - h];
        y[n * W + head * D + d] = xd * std::cos(angle) + rot * std::sin(angle);
      }
  return y;
}

// Grouped-query attention, HF's eager way: K and V repeated per head, -inf masks, causal + window
// + key padding; a row that sees nothing outputs 0 (our convention).
Tensor<double> naive_attention(const Tensor<double>& q, const Tensor<double>& k,
                               const Tensor<double>& v, Index NH, Index NKV,
                               const std::vector<std::int64_t>& key_mask, Index window) {
  const Index B = q.size(0), Tq = q.size(1), C = q.size(2), Tk = k.size(1), HS = C / NH,
              Ckv = NKV * HS;
  Tensor<double> y(q.shape());
  for (Index b = 0; b < B; ++b)
    for (Index h = 0; h < NH; ++h) {
      const Index g = h / (NH / NKV);
      for (Index i = 0; i < Tq; ++i) {
        const Index abs_i = i + Tk - Tq;
        std::vector<double> s(static_cast<std::size_t>(Tk), -INFINITY);
        double max = -INFINITY;
        for (Index j = 0; j < Tk; ++j) {
          const bool visible = j <= abs_i && (window == 0 || j > abs_i - window) &&
                               (key_mask.empty() || key_mask[b * Tk + j] != 0);
          if (!visible) continue;
          double dot = 0;
          for (Index d = 0; d < HS; ++d)
            dot += q[(b * Tq + i) * C + h * HS + d] * k[(b * Tk + j) * Ckv + g * HS + d];
          s[j] = dot / std::sqrt(double(HS));
          max = std::max(max, s[j]);
        }
        if (max == -INFINITY) continue;
        double sum = 0;
        for (double& e : s) sum += (e = std::exp(e - max));
        for (Index j = 0; j < Tk; ++j)
          for (Index d = 0; d < HS; ++d)
            y[(b * Tq + i) * C + h * HS + d] += s[j] / sum * v[(b * Tk + j) * Ckv + g * HS + d];
      }
    }
  return y;
}

// ---------------------------------------------------------------------------
// One fixture folder against its reference: logits, hidden states, logits_nopos, loss, gradients.
struct FixtureCheck {
  double logits = 0, nopos = 0, hidden = 0, loss = 0, grad = 0;
  std::string worst_grad;
};

template <class Model>
FixtureCheck check_fixture(Model& model, const io::SafetensorsFile& ref) {
  FixtureCheck c;
  const auto ids = ref.load_int("input_ids");
  const auto mask = ref.load_int("attention_mask");
  const auto positions = ref.load_int("position_ids");
  const auto keep = real_rows(mask);
  const double scale = std::max(1.0, max_abs(ref.load<float>("logits")));
  model.zero_grad();
  {
    Tape<float> tape;
    std::vector<Var<float>> hidden;
    const ModelOutput<float> out = model.forward(tape, ids, mask, nullptr, positions, &hidden);
    c.logits = max_abs_diff(out.logits.value(), ref.load<float>("logits"), keep) / scale;
    REQUIRE(hidden.size() == static_cast<std::size_t>(model.config.num_hidden_layers + 1));
    for (std::size_t k = 0; k < hidden.size(); ++k) {
      const auto expected = ref.load<float>("hidden_states." + std::to_string(k));
      c.hidden = std::max(c.hidden, max_abs_diff(hidden[k].value(), expected, keep) /
                                        std::max(1.0, max_abs(expected)));
    }
    const Var<float> loss = causal_lm_loss(tape, out.logits, ref.load_int("labels"));
    c.loss = std::abs(double(loss.item()) - double(ref.load<float>("loss").item()));
    tape.backward(loss);
  }
  for (const auto& [name, p] : model.named_parameters()) {
    REQUIRE_MESSAGE(ref.contains("grad." + name), "reference lacks grad." << name);
    const auto expected = ref.load<float>("grad." + name);
    const double e = max_abs_diff(p.grad(), expected) / std::max(1e-3, max_abs(expected));
    if (e > c.grad) c.grad = e, c.worst_grad = name;
  }
  Tape<float> tape;
  NoGradScope<float> no_grad(tape);
  const ModelOutput<float> plain = model.forward(tape, ids);
  c.nopos = max_abs_diff(plain.logits.value(), ref.load<float>("logits_nopos")) / scale;
  return c;
}

const char* const fixtures[] = {"llama-gqa",   "llama-tied",  "llama3-rope",  "llama-dynamic",
                                "mistral-swa", "qwen2-bias", "qwen3-qknorm", "llama-gqa-bf16"};

}  // namespace

// ===========================================================================
// Ops: rms_norm, silu, swiglu, rotary, grouped-query / sliding-window attention
TEST_CASE_TEMPLATE("rms_norm: y = w·x / sqrt(mean(x²) + eps) per row", Real, float, double) {
  Rng rng(5);
  const auto x = randn<Real>({3, 2, 6}, rng), w = randn<Real>({6}, rng);
  Tape<Real> tape;
  const Var<Real> y = ops::rms_norm(tape, Var<Real>(x), Var<Real>(w), Real(1e-5));
  for (Index n = 0; n < 6; ++n) {
    double ms = 0;
    for (Index c = 0; c < 6; ++c) ms += double(x[n * 6 + c]) * x[n * 6 + c];
    const double r = 1.0 / std::sqrt(ms / 6 + 1e-5);
    for (Index c = 0; c < 6; ++c)
      CHECK(double(y.value()[n * 6 + c]) == doctest::Approx(w[c] * x[n * 6 + c] * r).epsilon(1e-5));
  }
  CHECK_THROWS_AS(ops::rms_norm(tape, Var<Real>(x), Var<Real>(randn<Real>({5}, rng))), ShapeError);
}

TEST_CASE("rms_norm: gradients match central differences") {
  Rng rng(6);
  auto loss = [](Tape<double>& t, std::span<const Var<double>> in) {
    return project(t, ops::rms_norm(t, in[0], in[1], 1e-6));
  };
  const GradcheckResult r = gradcheck(loss, {randn<double>({2, 3, 8}, rng), randn<double>({8}, rng)},
                                      {.eps = 1e-6, .rtol = 1e-6});
  INFO(r.report());
  CHECK(r.ok);
}

TEST_CASE_TEMPLATE("silu and swiglu: x·σ(x), silu(gate)·up", Real, float, double) {
  Rng rng(7);
  const auto g = randn<Real>({4, 5}, rng), u = randn<Real>({4, 5}, rng);
  Tape<Real> tape;
  const Var<Real> s = ops::silu(tape, Var<Real>(g));
  const Var<Real> y = ops::swiglu(tape, Var<Real>(g), Var<Real>(u));
  for (Index i = 0; i < 20; ++i) {
    const double silu = double(g[i]) / (1.0 + std::exp(-double(g[i])));
    CHECK(double(s.value()[i]) == doctest::Approx(silu).epsilon(1e-5));
    CHECK(double(y.value()[i]) == doctest::Approx(silu * u[i]).epsilon(1e-5));
  }
  CHECK_THROWS_AS(ops::swiglu(tape, Var<Real>(g), Var<Real>(randn<Real>({5, 4}, rng))), ShapeError);
}

TEST_CASE("silu and swiglu: gradients match central differences") {
  Rng rng(8);
  auto silu = [](Tape<double>& t, std::span<const Var<double>> in) {
    return project(t, ops::silu(t, in[0]));
  };
  auto swiglu = [](Tape<double>& t, std::span<const Var<double>> in) {
    return project(t, ops::swiglu(t, in[0], in[1]));
  };
  const GradcheckResult a = gradcheck(silu, {randn<double>({3, 7}, rng)});
  const GradcheckResult b =
      gradcheck(swiglu, {randn<double>({3, 7}, rng), randn<double>({3, 7}, rng)});
  INFO(a.report() << "\n" << b.report());
  CHECK(a.ok);
  CHECK(b.ok);
}

TEST_CASE("rope_inv_freq: plain, linear, dynamic and llama3 as HF's rope init functions") {
  const ops::RopeScaling none;
  const auto plain = ops::rope_inv_freq(8, 10000.0, none, 64, 0);
  REQUIRE(plain.size() == 4);
  for (int j = 0; j < 4; ++j)
    CHECK(plain[j] == doctest::Approx(std::pow(10000.0, -2.0 * j / 8)).epsilon(1e-6));
  const auto linear =
      ops::rope_inv_freq(8, 10000.0, {.type = ops::RopeScalingType::linear, .factor = 2.0}, 64, 0);
  for (int j = 0; j < 4; ++j) CHECK(linear[j] == doctest::Approx(plain[j] / 2).epsilon(1e-6));
  // Dynamic: unchanged up to max_position_embeddings, a larger base beyond it.
  const ops::RopeScaling dynamic{.type = ops::RopeScalingType::dynamic, .factor = 2.0};
  CHECK(ops::rope_inv_freq(8, 10000.0, dynamic, 6, 6) == plain);
  const auto stretched = ops::rope_inv_freq(8, 10000.0, dynamic, 6, 8);
  const double base = 10000.0 * std::pow(2.0 * 8 / 6 - 1.0, 8.0 / 6.0);
  for (int j = 0; j < 4; ++j)
    CHECK(stretched[j] == doctest::Approx(std::pow(base, -2.0 * j / 8)).epsilon(1e-5));
  // llama3 with original 128, low 1, high 4: wavelengths 6.3 (kept), 62.8 (smoothed), 628 and
  // 6283 (divided by factor 8).
  const ops::RopeScaling llama3{.type = ops::RopeScalingType::llama3,
                                .factor = 8.0,
                                .low_freq_factor = 1.0,
                                .high_freq_factor = 4.0,
                                .original_max_position_embeddings = 128};
  const auto l3 = ops::rope_inv_freq(8, 10000.0, llama3, 256, 0);
  CHECK(l3[0] == plain[0]);
  const double smooth = (128 / (2 * M_PI / plain[1]) - 1.0) / 3.0;
  CHECK(l3[1] == doctest::Approx((1 - smooth) * plain[1] / 8 + smooth * plain[1]).epsilon(1e-6));
  CHECK(l3[2] == doctest::Approx(plain[2] / 8).epsilon(1e-6));
  CHECK(l3[3] == doctest::Approx(plain[3] / 8).epsilon(1e-6));
}

TEST_CASE("rotary: HF's rotate-half at per-row positions; in place equals out of place") {
  Rng rng(9);
  const auto inv_freq = ops::rope_inv_freq(8, 10000.0, {}, 64, 0);
  const std::vector<std::int64_t> pos = {1, 0, 2, 7, 3, 1};  // B = 2, T = 3, left padding style
  const auto table = ops::rotary_table<double>(pos, inv_freq);
  const auto x = randn<double>({2, 3, 3 * 8}, rng);  // 3 heads of D = 8
  Tape<double> tape;
  const Var<double> y = ops::rotary(tape, Var<double>(x), table);
  CHECK(max_abs_diff(y.value(), naive_rope(x, pos, inv_freq)) < 1e-6);
  Var<double> copy(x.clone());
  const Var<double> z = ops::rotary_inplace(tape, copy, table);
  CHECK(z.value().ptr() == copy.value().ptr());  // no new storage
  CHECK(max_abs_diff(z.value(), y.value()) == 0.0);
  CHECK_THROWS_AS(ops::rotary(tape, Var<double>(randn<double>({2, 3, 20}, rng)), table), ShapeError);
}

TEST_CASE("rotary: gradients match central differences (both forms)") {
  Rng rng(10);
  const auto table = ops::rotary_table<double>(std::vector<std::int64_t>{4, 0, 9, 2},
                                               ops::rope_inv_freq(6, 500.0, {}, 64, 0));
  auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
    return project(t, ops::rotary(t, ops::scale(t, in[0], 1.0), table));
  };
  auto loss_inplace = [&](Tape<double>& t, std::span<const Var<double>> in) {
    // scale makes a fresh buffer, which the in-place rotation may overwrite
    return project(t, ops::rotary_inplace(t, ops::scale(t, in[0], 1.0), table));
  };
  const GradcheckResult a = gradcheck(loss, {randn<double>({2, 2, 12}, rng)});
  const GradcheckResult b = gradcheck(loss_inplace, {randn<double>({2, 2, 12}, rng)});
  INFO(a.report() << "\n" << b.report());
  CHECK(a.ok);
  CHECK(b.ok);
}

TEST_CASE_TEMPLATE("attention: grouped-query heads, sliding window, padding against a naive loop",
                   Real, float, double) {
  Rng rng(11);
  const Index B = 2, Tq = 5, Tk = 7, NH = 6, NKV = 2, HS = 4;
  const auto q = randn<double>({B, Tq, NH * HS}, rng), k = randn<double>({B, Tk, NKV * HS}, rng),
             v = randn<double>({B, Tk, NKV * HS}, rng);
  const std::vector<std::int64_t> mask = {0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1};
  auto cast = [](const Tensor<double>& t) {
    Tensor<Real> out(t.shape());
    for (Index i = 0; i < t.numel(); ++i) out[i] = static_cast<Real>(t[i]);
    return out;
  };
  for (const Index window : {Index(0), Index(3)}) {
    CAPTURE(window);
    ops::AttentionOptions options;
    options.causal = true;
    options.num_kv_heads = NKV;
    if (window > 0) options.sliding_window = window;
    options.key_padding_mask = std::span<const std::int64_t>(mask);
    Tape<Real> tape;
    const Var<Real> y =
        ops::attention(tape, Var<Real>(cast(q)), Var<Real>(cast(k)), Var<Real>(cast(v)), NH, options);
    CHECK(max_abs_diff(y.value(), naive_attention(q, k, v, NH, NKV, mask, window)) < 1e-5);
  }
  Tape<Real> tape;
  ops::AttentionOptions bad;
  bad.num_kv_heads = 4;  // does not divide 6
  CHECK_THROWS_WITH_AS(ops::attention(tape, Var<Real>(cast(q)), Var<Real>(cast(k)),
                                      Var<Real>(cast(v)), NH, bad),
                       "attention: num_kv_heads = 4 must divide num_heads = 6", Error);
}

TEST_CASE("attention: grouped-query + window + padding gradients match central differences") {
  Rng rng(12);
  const std::vector<std::int64_t> mask = {0, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  ops::AttentionOptions options;
  options.causal = true;
  options.num_kv_heads = 2;
  options.sliding_window = 2;
  options.key_padding_mask = std::span<const std::int64_t>(mask);
  auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
    return project(t, ops::attention(t, in[0], in[1], in[2], 4, options));
  };
  const GradcheckResult r = gradcheck(
      loss, {randn<double>({2, 3, 12}, rng), randn<double>({2, 5, 6}, rng),
             randn<double>({2, 5, 6}, rng)});
  INFO(r.report());
  CHECK(r.ok);
}

// ===========================================================================
// Config
TEST_CASE("LlamaConfig: the fixtures' config.json, model_type defaults, write-back") {
  REQUIRE(have_fixture("qwen3-qknorm"));
  const auto q3 = io::read_config<io::LlamaConfig>(model_dir("qwen3-qknorm"));
  CHECK(q3.model_type == "qwen3");
  CHECK(q3.head_size() == 16);  // explicit head_dim != hidden / heads = 8
  CHECK(q3.kv_heads() == 2);
  CHECK(q3.qk_norm());
  CHECK_FALSE(q3.qkv_bias());
  CHECK(q3.tie_word_embeddings);
  CHECK_FALSE(q3.window_of_layer(1));  // use_sliding_window false
  const auto q2 = io::read_config<io::LlamaConfig>(model_dir("qwen2-bias"));
  CHECK(q2.qkv_bias());
  CHECK_FALSE(q2.o_bias());
  const auto mistral = io::read_config<io::LlamaConfig>(model_dir("mistral-swa"));
  CHECK(mistral.window_of_layer(0) == 3);
  const auto tied = io::read_config<io::LlamaConfig>(model_dir("llama-tied"));
  CHECK(tied.rope_scaling.type == ops::RopeScalingType::linear);
  CHECK(tied.rope_scaling.factor == 2.0);
  const auto l3 = io::read_config<io::LlamaConfig>(model_dir("llama3-rope"));
  CHECK(l3.rope_scaling.type == ops::RopeScalingType::llama3);
  CHECK(l3.rope_scaling.original_max_position_embeddings == 128);

  // Qwen2's use_sliding_window / max_window_layers as HF reads them.
  io::LlamaConfig c = io::Qwen2Config();
  c.num_hidden_layers = 4;
  c.sliding_window = 5;
  c.max_window_layers = 2;
  CHECK_FALSE(c.window_of_layer(3));
  c.use_sliding_window = true;
  CHECK_FALSE(c.window_of_layer(1));
  CHECK(c.window_of_layer(2) == 5);

  // Write-back: the tied flag is explicit (these classes default it to false), rope_scaling kept.
  const fs::path dir = scratch("config");
  io::write_config(dir, tied);
  const io::JsonObject back = io::JsonObject::read(dir / "config.json");
  CHECK(back.get<bool>("tie_word_embeddings"));
  CHECK(back.get<io::JsonObject>("rope_scaling").get<std::string>("rope_type") == "linear");
  const auto again = io::read_config<io::LlamaConfig>(dir);
  CHECK(again.rope_scaling.factor == 2.0);
  CHECK(again.num_attention_heads == tied.num_attention_heads);
}

TEST_CASE("LlamaConfig: bad fields are errors naming the file and the key") {
  REQUIRE(have_fixture("llama-gqa"));
  const fs::path dir = scratch("bad-config");
  const io::Json good = io::read_json(model_dir("llama-gqa") / "config.json");
  auto expect = [&](const char* what, io::Json json, const std::string& message) {
    CAPTURE(what);
    const fs::path file = dir / (std::string(what) + ".json");
    io::write_json(file, json);
    CHECK_THROWS_WITH_AS(io::read_config<io::LlamaConfig>(file),
                         doctest::Contains((file.string() + ": " + message).c_str()), FormatError);
  };
  io::Json j = good;
  j.erase("head_dim");
  j["hidden_size"] = 30;
  expect("hidden", j, "key 'hidden_size' (30) should be a multiple of 'num_attention_heads' (4)");
  j = good;
  j["num_key_value_heads"] = 3;
  expect("kv", j, "key 'num_key_value_heads' (3) should divide 'num_attention_heads' (4)");
  j = good;
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 2.0}};
  expect("rope", j, "key 'rope_scaling.rope_type' is \"yarn\"");
  j = good;
  j["rope_scaling"] = {{"type", "su"}, {"factor", 2.0}};
  expect("rope-type", j, "key 'rope_scaling.type' is \"su\"");
  j = good;
  j["hidden_act"] = "gelu";
  expect("act", j, "key 'hidden_act' is \"gelu\"");
  j = good;
  j["model_type"] = "gemma";
  expect("type", j, "model_type is 'gemma'");
  // A config built in code goes through validate().
  io::LlamaConfig c;
  c.vocab_size = 10, c.hidden_size = 8, c.intermediate_size = 8, c.num_hidden_layers = 1;
  c.num_attention_heads = 4, c.num_key_value_heads = 3;
  CHECK_THROWS_WITH_AS(std::make_unique<LlamaForCausalLM<float>>(c), doctest::Contains("num_key_value_heads = 3"),
                       Error);
}

// ===========================================================================
// The fixtures
TEST_CASE("LLaMA family fixtures: logits, hidden states, logits_nopos, loss, every gradient") {
  for (const char* name : fixtures) {
    CAPTURE(name);
    REQUIRE_MESSAGE(have_fixture(name), "missing fixture " << name);
    CheckpointReport report;
    auto model = LlamaForCausalLM<float>::from_pretrained(model_dir(name), &report);
    CHECK(report.unexpected.empty());
    CHECK(report.initialized.empty());
    const FixtureCheck c = check_fixture(*model, io::SafetensorsFile(model_dir(name) /
                                                                     "reference.safetensors"));
    CHECK(c.logits < 2e-5);
    CHECK(c.hidden < 2e-5);
    CHECK(c.nopos < 2e-5);
    CHECK(c.loss < 2e-5);
    INFO("worst gradient: " << c.worst_grad);
    CHECK(c.grad < 2e-4);
  }
}

TEST_CASE("LLaMA family fixtures: greedy generation with left padding, cached and uncached") {
  for (const char* name : fixtures) {
    CAPTURE(name);
    REQUIRE(have_fixture(name));
    auto model = LlamaForCausalLM<float>::from_pretrained(model_dir(name));
    const io::SafetensorsFile ref(model_dir(name) / "reference.safetensors");
    const auto ids = ref.load_int("generate.input_ids"), mask = ref.load_int("generate.attention_mask");
    const auto expected = ref.load_int("generate.greedy");
    const Index B = ids.size(0), T0 = ids.size(1), new_tokens = expected.size(1) - T0;
    GenerationConfig config;
    config.max_new_tokens = new_tokens;
    config.eos_token_id = -1;  // the reference runs to the end
    for (const bool use_cache : {true, false}) {
      CAPTURE(use_cache);
      // Dynamic NTK: HF's cached keys keep the frequencies of their step; recomputing the prefix
      // (no cache) rotates them by the final ones, so only the cached run is HF's generate.
      if (!use_cache && std::string(name) == "llama-dynamic") continue;
      config.use_cache = use_cache;
      const auto out = generate(*model, ids, mask, config);
      for (Index b = 0; b < B; ++b) {
        REQUIRE(out[b].tokens.size() == static_cast<std::size_t>(new_tokens));
        for (Index t = 0; t < new_tokens; ++t)
          CHECK(out[b].tokens[t] == expected[b * (T0 + new_tokens) + T0 + t]);
      }
    }
  }
}

TEST_CASE("LlamaForCausalLM: cached decoding steps give the uncached logits (GQA, window)") {
  for (const char* name : {"llama-gqa", "mistral-swa", "qwen3-qknorm"}) {
    CAPTURE(name);
    auto model = LlamaForCausalLM<float>::from_pretrained(model_dir(name));
    const io::SafetensorsFile ref(model_dir(name) / "reference.safetensors");
    const auto ids = ref.load_int("generate.input_ids"), mask = ref.load_int("generate.attention_mask");
    LmDecoder<LlamaForCausalLM<float>> cached(*model, true, 4), uncached(*model, false);
    // Logits up to ~8: float rounding differs between the paths' GEMM / GEMV kernels (up to
    // 1.8e-5 with OpenBLAS's Haswell kernels on an AMD Zen 5); a wrong cache slot is off by ~1.
    const double tolerance = 5e-5;
    auto a = cached.start(ids, mask), b = uncached.start(ids, mask);
    CHECK(max_abs_diff(a, b) < tolerance);
    for (std::int64_t step = 0; step < 4; ++step) {
      const std::vector<std::int64_t> tokens = {5 + step, 9 + 2 * step};
      a = cached.next(tokens);
      b = uncached.next(tokens);
      CHECK(max_abs_diff(a, b) < tolerance);
    }
    // Beam reordering through the slot table.
    const std::vector<Index> rows = {1, 0};
    cached.select_rows(rows);
    uncached.select_rows(rows);
    CHECK(max_abs_diff(cached.next(std::vector<std::int64_t>{3, 4}),
                       uncached.next(std::vector<std::int64_t>{3, 4})) < tolerance);
  }
}

TEST_CASE("LlamaForCausalLM: sampling and beam search run through generate") {
  auto model = LlamaForCausalLM<float>::from_pretrained(model_dir("qwen2-bias"));
  const std::vector<std::vector<std::int64_t>> prompts = {{5, 6, 7, 8}, {9, 10}};
  GenerationConfig sample;
  sample.do_sample = true;
  sample.temperature = 0.8;
  sample.top_p = 0.9;
  sample.top_k = 20;
  sample.max_new_tokens = 5;
  sample.eos_token_id = -1;
  sample.pad_token_id = 0;  // left-pads the shorter prompt
  sample.seed = 3;
  const auto a = generate(*model, prompts, sample), b = generate(*model, prompts, sample);
  REQUIRE(a.size() == 2);
  CHECK(a[0].tokens.size() == 5);
  CHECK(a[0].tokens == b[0].tokens);  // seeded
  GenerationConfig beams;
  beams.num_beams = 3;
  beams.max_new_tokens = 4;
  beams.eos_token_id = -1;
  beams.pad_token_id = 0;
  const auto c = generate(*model, prompts, beams);
  CHECK(c[1].tokens.size() == 4);
  for (std::int64_t t : c[1].tokens) CHECK((t >= 0 && t < model->config.vocab_size));
}

TEST_CASE("LlamaForCausalLM: ModelInputs.position_ids, gradient checkpointing, registry, save") {
  const io::SafetensorsFile ref(model_dir("mistral-swa") / "reference.safetensors");
  auto model = LlamaForCausalLM<float>::from_pretrained(model_dir("mistral-swa"));
  ModelInputs<float> in;
  in.input_ids = ref.load_int("input_ids");
  in.attention_mask = ref.load_int("attention_mask");
  in.position_ids = ref.load_int("position_ids");
  in.labels = ref.load_int("labels");
  const auto keep = real_rows(in.attention_mask);
  std::map<std::string, Tensor<float>> grads;
  for (const bool checkpointing : {false, true}) {
    model->set_gradient_checkpointing(checkpointing);
    model->zero_grad();
    Tape<float> tape;
    const ModelOutput<float> out = model->forward(tape, in);
    // PyTorch's logits (up to 8.4) to float rounding: 3.3e-5 with OpenBLAS's Haswell kernels on an
    // AMD Zen 5, under 2e-5 with its AVX-512 ones.
    CHECK(max_abs_diff(out.logits.value(), ref.load<float>("logits"), keep) < 5e-5);
    tape.backward(model->loss(tape, out, in));
    for (const auto& [name, p] : model->named_parameters()) {
      if (!checkpointing) {
        grads[name] = p.grad().clone();
      } else {
        CAPTURE(name);
        CHECK(max_abs_diff(p.grad(), grads[name]) <= 1e-6 * std::max(1.0, max_abs(grads[name])));
      }
    }
  }
  model->set_gradient_checkpointing(false);

  // The registry picks the class by architectures / model_type.
  auto& registry = model_registry<float>();
  CHECK(registry.resolve(model_dir("qwen3-qknorm")).architecture == "Qwen3ForCausalLM");
  CHECK(registry.for_model_type("mistral").architecture == "MistralForCausalLM");
  CHECK(registry.for_model_type("llama").task == Task::causal_lm);
  auto any = registry.from_pretrained(model_dir("qwen2-bias"));
  CHECK(any->architecture() == "Qwen2ForCausalLM");

  // save_pretrained -> from_pretrained: the architecture of the model_type, identical logits.
  const fs::path dir = scratch("saved-qwen3");
  auto qwen3 = LlamaForCausalLM<float>::from_pretrained(model_dir("qwen3-qknorm"));
  qwen3->save_pretrained(dir);
  const io::JsonObject cfg = io::JsonObject::read(dir / "config.json");
  CHECK(cfg.get<std::vector<std::string>>("architectures") ==
        std::vector<std::string>{"Qwen3ForCausalLM"});
  CHECK_FALSE(io::SafetensorsFile(dir / "model.safetensors").contains("lm_head.weight"));  // tied
  auto reloaded = Qwen3ForCausalLM<float>::from_pretrained(dir);
  Tape<float> tape;
  const auto ids = ref.load_int("input_ids");
  CHECK(max_abs_diff(reloaded->forward(tape, ids).logits.value(),
                     qwen3->forward(tape, ids).logits.value()) == 0.0);
}

TEST_CASE("LlamaForCausalLM: a checkpoint missing a layer or holding a wrong shape is an error") {
  const fs::path src = model_dir("llama-gqa");
  const io::SafetensorsFile file(src / "model.safetensors");
  auto write_without = [&](const fs::path& dir, const std::string& drop, const std::string& reshape) {
    fs::copy_file(src / "config.json", dir / "config.json", fs::copy_options::overwrite_existing);
    io::SafetensorsWriter writer;
    for (const std::string& key : file.names()) {
      if (key == drop) continue;
      Tensor<float> t = file.load<float>(key);
      if (key == reshape) t = Tensor<float>({t.size(0) / 2, t.size(1)});
      writer.add(key, t, io::Dtype::F32);
    }
    writer.save(dir / "model.safetensors");
  };
  const fs::path missing = scratch("missing-layer");
  write_without(missing, "model.layers.1.mlp.down_proj.weight", "");
  CHECK_THROWS_WITH_AS(LlamaForCausalLM<float>::from_pretrained(missing),
                       doctest::Contains("lacks 1 required weight: model.layers.1.mlp.down_proj.weight"),
                       FormatError);
  const fs::path wrong = scratch("wrong-shape");
  write_without(wrong, "", "model.layers.0.self_attn.k_proj.weight");
  CHECK_THROWS_WITH_AS(LlamaForCausalLM<float>::from_pretrained(wrong),
                       doctest::Contains("'model.layers.0.self_attn.k_proj.weight' is (8, 32)"),
                       FormatError);
}

// ===========================================================================
// Real sizes: the published checkpoints' keys and shapes.
TEST_CASE("LlamaForCausalLM: parameter keys and shapes equal the real checkpoints' listings") {
  const fs::path listings = model_dir("real-shapes");
  REQUIRE(fs::exists(listings));
  for (const auto& entry : fs::directory_iterator(listings)) {
    const std::string name = entry.path().stem().string();
    CAPTURE(name);
    const io::Json json = io::read_json(entry.path());
    const io::JsonObject config_json(json.at("config"), entry.path().string() + ":config");
    io::LlamaConfig config = io::parse_llama_config(config_json);
    std::map<std::string, Shape> listed;
    for (const auto& [key, shape] : json.at("tensors").items())
      listed[key] = shape.get<std::vector<Index>>();
    // The listing holds exactly L layers of identical key sets.
    std::map<Index, std::set<std::string>> layer_keys;
    for (const auto& [key, shape] : listed)
      if (key.rfind("model.layers.", 0) == 0) {
        const auto dot = key.find('.', 13);
        layer_keys[std::stoll(key.substr(13, dot - 13))].insert(key.substr(dot));
      }
    CHECK(static_cast<Index>(layer_keys.size()) == config.num_hidden_layers);
    CHECK(layer_keys.rbegin()->first == config.num_hidden_layers - 1);
    for (const auto& [layer, keys] : layer_keys) CHECK(keys == layer_keys.begin()->second);
    // The model at 2 layers (all of them for SmolLM2-135M): keys and shapes.
    const Index layers = name.find("SmolLM2") != std::string::npos ? config.num_hidden_layers : 2;
    config.num_hidden_layers = layers;
    LlamaForCausalLM<float> model(config, 0, WeightInit::skip);
    std::map<std::string, Shape> ours;
    for (const auto& [key, p] : model.named_parameters()) ours[key] = p.shape();
    // Expected: the listing's keys of layers < 2, but the buffers the loader drops by design
    // (Llama-2's rotary_emb.inv_freq).
    const CheckpointLayout layout = model.checkpoint_layout();
    std::map<std::string, Shape> expected;
    for (const auto& [key, shape] : listed) {
      if (key.rfind("model.layers.", 0) == 0 && std::stoll(key.substr(13)) >= layers) continue;
      if (std::any_of(layout.ignored.begin(), layout.ignored.end(),
                      [&](const std::string& g) { return nn::glob_match(g, key); }))
        continue;
      expected[key] = shape;
    }
    CHECK(ours == expected);
  }
}

// ===========================================================================
// PEFT on the family: PEFT's adapter folders (FourierFT on q_proj / v_proj, v_proj non-square under
// GQA; LoRA on every linear layer), gradients against the fixture, merge / unmerge, merged folders.
TEST_CASE("PEFT on LLaMA: PEFT folders load; spectra gradients, merge, unmerge, merged BF16 folder") {
  const auto ref = io::SafetensorsFile(model_dir("llama-gqa") / "reference.safetensors");
  const auto keep = real_rows(ref.load_int("attention_mask"));
  ModelInputs<float> in;
  in.input_ids = ref.load_int("input_ids");
  in.attention_mask = ref.load_int("attention_mask");
  in.position_ids = ref.load_int("position_ids");
  in.labels = ref.load_int("labels");

  auto model = LlamaForCausalLM<float>::from_pretrained(model_dir("llama-gqa"));
  const peft::AdapterSpec spec = peft::load_adapter(*model, model_dir("llama-gqa") / "fourierft-adapter");
  CHECK(spec.method() == "fourierft");
  CHECK(peft::adapted_layers(*model) == 4);  // q_proj and v_proj of 2 layers
  const auto& v_proj = model->model.layers[0].self_attn.v_proj;
  CHECK(v_proj.d_out() == model->config.kv_width());
  CHECK(v_proj.d_out() != v_proj.d_in());  // GQA: (kv_heads·head_dim, hidden)

  // Training: only the spectra need gradients; theirs are PEFT's.
  model->zero_grad();
  Tape<float> tape;
  const Var<float> loss = model->loss(tape, model->forward(tape, in), in);
  tape.backward(loss);
  CHECK(loss.item() == doctest::Approx(ref.load<float>("peft.loss").item()).epsilon(1e-5));
  std::size_t spectra = 0;
  for (const auto& [name, p] : model->named_parameters()) {
    if (!p.requires_grad()) continue;
    CAPTURE(name);
    REQUIRE(name.find("fourierft_spectrum") != std::string::npos);
    const Tensor<float> expected = ref.load<float>("peft.grad." + peft::detail::peft_prefix + name);
    CHECK(max_abs_diff(p.grad(), expected) < 1e-4 * (1 + max_abs(expected)));
    ++spectra;
  }
  CHECK(spectra == 4);

  // Merge folds ΔW into q_proj / v_proj; unmerge takes it out again.
  Tape<float> t0;
  NoGradScope<float> ng0(t0);
  const Tensor<float> adapted = model->forward(t0, in).logits.value();
  CHECK(max_abs_diff(adapted, ref.load<float>("peft.logits"), keep) < 1e-4);
  peft::merge_adapters(*model);
  Tape<float> t1;
  NoGradScope<float> ng1(t1);
  CHECK(max_abs_diff(model->forward(t1, in).logits.value(), adapted, keep) < 1e-4);

  // The merged model saved as an HF folder (F32 and BF16) reloads as a plain model.
  const fs::path f32_dir = scratch("merged-f32"), bf16_dir = scratch("merged-bf16");
  model->save_pretrained(f32_dir);
  model->save_pretrained(bf16_dir, io::Dtype::BF16);
  CHECK(io::SafetensorsFile(bf16_dir / "model.safetensors")
            .info("model.layers.0.self_attn.q_proj.weight")
            .dtype == io::Dtype::BF16);
  auto merged = LlamaForCausalLM<float>::from_pretrained(f32_dir);
  Tape<float> t2;
  NoGradScope<float> ng2(t2);
  CHECK(max_abs_diff(merged->forward(t2, in).logits.value(), adapted, keep) < 1e-4);
  auto merged_bf16 = LlamaForCausalLM<float>::from_pretrained(bf16_dir);
  Tape<float> t3;
  NoGradScope<float> ng3(t3);
  const double bf16_error = max_abs_diff(merged_bf16->forward(t3, in).logits.value(), adapted, keep);
  CHECK(bf16_error < 0.1 * (1 + max_abs(adapted)));  // BF16 keeps 8 bits of mantissa
  CHECK(bf16_error > 0);

  peft::unmerge_adapters(*model);
  auto base = LlamaForCausalLM<float>::from_pretrained(model_dir("llama-gqa"));
  for (const auto& [name, p] : base->named_parameters()) {
    CAPTURE(name);
    const auto mine = model->named_parameters();
    for (const auto& [n2, p2] : mine)
      if (n2 == name) CHECK(max_abs_diff(p2.value(), p.value()) < 1e-5);
  }

  // LoRA on every linear layer but lm_head (PEFT's "all-linear"), and PEFT's LoRA folder.
  auto lora_model = LlamaForCausalLM<float>::from_pretrained(model_dir("llama-gqa"));
  peft::LoraConfig lora;
  lora.r = 2;
  lora.target_modules = {{}, std::string(peft::all_linear)};
  Rng rng(3);
  peft::apply_adapter(*lora_model, peft::AdapterSpec{.config = lora}, rng);
  CHECK(peft::adapted_layers(*lora_model) == 14);  // 7 per layer, lm_head excluded
  auto loaded = LlamaForCausalLM<float>::from_pretrained(model_dir("llama-gqa"));
  peft::load_adapter(*loaded, model_dir("llama-gqa") / "lora-adapter");
  CHECK(peft::adapted_layers(*loaded) == 14);
  Tape<float> t4;
  NoGradScope<float> ng4(t4);
  CHECK(max_abs_diff(loaded->forward(t4, in).logits.value(), ref.load<float>("lora.logits"), keep) <
        1e-4);
}

TEST_CASE("BF16 frozen weights: LLaMA logits, FourierFT / LoRA adapters equal FP32 on the rounded weights") {
  const auto ref = io::SafetensorsFile(model_dir("llama-gqa-bf16") / "reference.safetensors");
  const auto keep = real_rows(ref.load_int("attention_mask"));
  ModelInputs<float> in;
  in.input_ids = ref.load_int("input_ids");
  in.attention_mask = ref.load_int("attention_mask");
  in.position_ids = ref.load_int("position_ids");
  in.labels = ref.load_int("labels");
  for (const char* adapter : {"", "fourierft-adapter", "lora-adapter"}) {
    CAPTURE(adapter);
    auto half = LlamaForCausalLM<float>::from_pretrained(
        model_dir("llama-gqa-bf16"), {.frozen_weight_dtype = FrozenWeightDtype::keep_file});
    auto full = LlamaForCausalLM<float>::from_pretrained(model_dir("llama-gqa-bf16"));
    CHECK(half->model.layers[0].self_attn.q_proj.half_precision());
    CHECK(half->model.layers[1].mlp.down_proj.half_precision());
    CHECK_FALSE(full->model.layers[0].self_attn.q_proj.half_precision());
    if (*adapter != '\0') {  // the llama-gqa adapters fit the same shapes
      peft::load_adapter(*half, model_dir("llama-gqa") / adapter);
      peft::load_adapter(*full, model_dir("llama-gqa") / adapter);
      half->train(), full->train();
    }
    half->zero_grad(), full->zero_grad();
    Tape<float> t1, t2;
    const ModelOutput<float> a = half->forward(t1, in), b = full->forward(t2, in);
    CHECK(max_abs_diff(a.logits.value(), b.logits.value(), keep) < 2e-5);
    if (*adapter == '\0') {
      CHECK(max_abs_diff(a.logits.value(), ref.load<float>("logits"), keep) < 2e-5);
      continue;
    }
    const Var<float> la = half->loss(t1, a, in), lb = full->loss(t2, b, in);
    CHECK(la.item() == doctest::Approx(lb.item()).epsilon(1e-5));
    t1.backward(la), t2.backward(lb);
    const auto pa = half->trainable_parameters(), pb = full->trainable_parameters();
    REQUIRE(pa.size() == pb.size());
    REQUIRE(!pa.empty());
    for (std::size_t i = 0; i < pa.size(); ++i)
      CHECK(max_abs_diff(pa[i].grad(), pb[i].grad()) < 1e-4 * (1 + max_abs(pb[i].grad())));
  }
}
