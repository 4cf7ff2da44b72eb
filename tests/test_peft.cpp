// Tests of include/fourierft/peft at the model level: applying FourierFT / LoRA / BitFit / full /
// head-only by target names, merge / unmerge, PEFT-format adapter files, and the PyTorch reference.
#include <doctest/doctest.h>

#include <filesystem>
#include <set>

#include "fourierft/io/safetensors.hpp"
#include "fourierft/models/gpt2.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/nn/module.hpp"
#include "fourierft/ops/elementwise.hpp"
#include "fourierft/ops/reduce.hpp"
#include "fourierft/ops/softmax.hpp"
#include "fourierft/optim/adamw.hpp"
#include "fourierft/peft/adapter_io.hpp"
#include "fourierft/peft/fourierft.hpp"
#include "fourierft/peft/bitfit.hpp"
#include "fourierft/peft/lora.hpp"
#include "fourierft/peft/method.hpp"
#include "fourierft/peft/registry.hpp"
#include "fourierft/train/options.hpp"
#include "gradcheck.hpp"
#include "toy_method.hpp"

using namespace fourierft;
namespace fs = std::filesystem;

namespace {
// A two-block encoder with RoBERTa-like names: layer.{i}.attention.self.{query,value}, a GPT-2-like
// fused projection (Conv1D layout), and a classifier head.
template <class Real>
struct Block : nn::Module<Real> {
  nn::Linear<Real> query, value, c_attn;
  Block(Index C, Rng& rng)
      : query(C, C, rng), value(C, C, rng), c_attn(C, 3 * C, rng, true, ops::WeightLayout::in_out) {
    this->register_module("query", query);
    this->register_module("value", value);
    this->register_module("c_attn", c_attn);
  }
  Var<Real> forward(Tape<Real>& t, const Var<Real>& x) const {
    Var<Real> h = ops::add(t, query.forward(t, x), value.forward(t, x));
    Var<Real> qkv = c_attn.forward(t, ops::tanh(t, h));  // (N, 3C)
    return ops::tanh(t, qkv);
  }
};
template <class Real>
struct TinyNet : nn::Module<Real> {
  nn::ModuleList<Block<Real>> layer;
  nn::Linear<Real> mix, classifier;
  TinyNet(Index C, Rng& rng) : mix(3 * C, C, rng), classifier(C, 3, rng) {
    layer.emplace_back(C, rng);
    layer.emplace_back(C, rng);
    this->register_module("layer", layer);
    this->register_module("mix", mix);
    this->register_module("classifier", classifier);
  }
  // x: (N, C) -> logits (N, 3)
  Var<Real> forward(Tape<Real>& t, const Var<Real>& x) const {
    Var<Real> h = x;
    for (const auto& block : layer) h = mix.forward(t, block.forward(t, h));
    return classifier.forward(t, h);
  }
};

template <class Real>
std::vector<Real> outputs(const TinyNet<Real>& net, const Var<Real>& x) {
  Tape<Real> t;
  NoGradScope<Real> no_grad(t);
  const auto y = net.forward(t, x);
  return {y.data().begin(), y.data().end()};
}

fs::path temp_dir(const std::string& name) {
  const fs::path dir = fs::path(FOURIERFT_BINARY_DIR) / "test_peft" / name;
  fs::remove_all(dir);
  return dir;
}

peft::AdapterSpec fourierft_spec(Index n) {
  peft::FourierFTConfig config;
  config.n_frequency = n;
  config.scaling = 40;
  config.target_modules = {{"query", "value"}, ""};
  return {.config = config, .modules_to_save = {"classifier"}};
}
}  // namespace

TEST_CASE("apply_fourierft: targets by PEFT's name rule, shared entries, PEFT parameter names") {
  Rng rng(1);
  TinyNet<float> net(6, rng);
  const Index total = net.num_parameters();
  peft::FourierFTConfig config;
  config.n_frequency = 10;
  config.target_modules = {{"query", "value"}, ""};
  config.modules_to_save = {"classifier"};
  const auto applied = peft::apply_fourierft(net, config, rng);
  CHECK(applied.adapted == std::vector<std::string>{"layer.0.query", "layer.0.value",
                                                    "layer.1.query", "layer.1.value"});
  CHECK(applied.params.trainable == 4 * 10 + 6 * 3 + 3);
  CHECK(applied.params.total == total + 40);
  CHECK(net.parameter("layer.1.value.fourierft_spectrum").shape() == Shape{10});
  CHECK_FALSE(net.parameter("layer.0.query.weight").requires_grad());
  CHECK(net.parameter("classifier.weight").requires_grad());
  // Every layer of the same shape shares one entry matrix (the paper's shared entries).
  auto* q0 = peft::attached_adapter<peft::FourierFTAdapter<float>>(net.layer[0].query);
  auto* v1 = peft::attached_adapter<peft::FourierFTAdapter<float>>(net.layer[1].value);
  REQUIRE(q0 != nullptr);
  REQUIRE(v1 != nullptr);
  CHECK(q0->blocks()[0].entries.get() == v1->blocks()[0].entries.get());
  CHECK(*q0->blocks()[0].entries == peft::uniform_entries(6, 6, 10, 777));

  TinyNet<float> other(6, rng);
  peft::FourierFTConfig typo = config;
  typo.target_modules = {{"qeury"}, ""};
  CHECK_THROWS_WITH_AS(peft::apply_fourierft(other, typo, rng),
                       "apply_fourierft: no Linear module matches the targets [qeury]", ValueError);
  peft::FourierFTConfig regex = config;
  regex.target_modules = {{}, "layer\\.1\\.(query|value)"};
  CHECK(peft::apply_fourierft(other, regex, rng).adapted.size() == 2);
}

TEST_CASE("FourierFT adapters: merged and unmerged outputs agree; unmerge restores W0") {
  Rng rng(2);
  TinyNet<float> net(8, rng);
  Var<float> x(randn<float>({5, 8}, rng));
  const auto base = outputs(net, x);
  const Tensor<float> w0 = net.layer[0].query.weight.value().clone();
  peft::FourierFTConfig config;
  config.n_frequency = 12;
  config.scaling = 64;
  config.target_modules = {{"query", "value", "c_attn"}, ""};
  peft::apply_fourierft(net, config, rng);  // N(0,1) coefficients: ΔW ≠ 0 at step 0, as in PEFT
  const auto adapted = outputs(net, x);
  double change = 0;
  for (std::size_t i = 0; i < base.size(); ++i) change += std::abs(adapted[i] - base[i]);
  CHECK(change > 1e-3);
  peft::merge_adapters(net);
  const auto merged = outputs(net, x);
  for (std::size_t i = 0; i < merged.size(); ++i) CHECK(merged[i] == doctest::Approx(adapted[i]).epsilon(1e-5));
  peft::merge_adapters(net, false);
  for (Index i = 0; i < w0.numel(); ++i)
    CHECK(net.layer[0].query.weight.value()[i] == doctest::Approx(w0[i]).epsilon(1e-6));
  const auto unmerged = outputs(net, x);
  for (std::size_t i = 0; i < merged.size(); ++i) CHECK(unmerged[i] == doctest::Approx(adapted[i]).epsilon(1e-5));
}

TEST_CASE("FourierFT on GPT-2's fused c_attn: q and v slices, k untouched; gradients") {
  Rng rng(3);
  TinyNet<double> net(4, rng);
  peft::FourierFTConfig config;
  config.n_frequency = 5;
  config.scaling = 8;
  config.target_modules = {{"c_attn"}, ""};
  config.fused_slices = {{"c_attn", 3, {{"q", 0}, {"v", 2}}}};
  const auto applied = peft::apply_fourierft(net, config, rng);
  CHECK(applied.params.trainable == 2 * 2 * 5);
  Var<double> q = net.parameter("layer.0.c_attn.fourierft_spectrum_q");  // handles to the model's
  Var<double> v = net.parameter("layer.1.c_attn.fourierft_spectrum_v");  // own parameters
  Var<double> x(randn<double>({3, 4}, rng));
  const Tensor<double> probe = randn<double>({3, 3}, rng);
  auto loss = [&](Tape<double>& t) { return ops::sum(t, ops::mul(t, net.forward(t, x), probe)); };
  Tape<double> tape;
  tape.backward(loss(tape));
  for (Var<double>* p : {&q, &v})
    for (Index l = 0; l < 5; ++l) {  // central differences through the whole net
      const double saved = p->value()[l];
      auto eval = [&](double value) {
        p->value()[l] = value;
        Tape<double> t;
        NoGradScope<double> no_grad(t);
        return loss(t).item();
      };
      const double numeric = (eval(saved + 1e-6) - eval(saved - 1e-6)) / 2e-6;
      p->value()[l] = saved;
      CHECK(p->grad()[l] == doctest::Approx(numeric).epsilon(1e-6));
    }
  // The k block of c_attn's outputs is untouched: zero the spectra and compare with the base.
  auto* c_attn = &net.layer[0].c_attn;
  const Tensor<double> w_before = c_attn->weight.value().clone();
  c_attn->adapters()[0].second->merge(*c_attn);
  for (Index i = 0; i < 4; ++i)
    for (Index j = 4; j < 8; ++j) CHECK(c_attn->weight.value().at({i, j}) == w_before.at({i, j}));
}

TEST_CASE("LoRA, BitFit, full and head-only: what trains, merge, PEFT names") {
  Rng rng(4);
  {
    TinyNet<float> net(8, rng);
    peft::LoraConfig config;
    config.r = 2;
    config.lora_alpha = 4;
    config.target_modules = {{"query", "value"}, ""};
    config.modules_to_save = {"classifier"};
    const auto applied = peft::apply_lora(net, config, rng);
    CHECK(applied.params.trainable == 4 * 2 * (8 * 2) + 8 * 3 + 3);
    CHECK(net.parameter("layer.0.query.lora_A.weight").shape() == Shape{2, 8});
    CHECK(net.parameter("layer.0.query.lora_B.weight").shape() == Shape{8, 2});
    Var<float> x(randn<float>({4, 8}, rng));
    const auto before = outputs(net, x);
    // B = 0 at start: LoRA begins exactly at the base model. Make B non-zero, then merge.
    for (auto& [name, p] : net.named_parameters())
      if (name.ends_with("lora_B.weight")) p.value() = randn<float>(p.shape(), rng);
    const auto adapted = outputs(net, x);
    peft::merge_adapters(net);
    const auto merged = outputs(net, x);
    for (std::size_t i = 0; i < merged.size(); ++i) CHECK(merged[i] == doctest::Approx(adapted[i]).epsilon(1e-4));
    CHECK(before != adapted);
  }
  {
    TinyNet<float> net(8, rng);
    const auto applied = peft::apply_bitfit(net, std::vector<std::string>{"classifier"});
    Index biases = 0;
    for (auto& [name, p] : net.named_parameters()) {
      if (name.ends_with(".bias")) biases += p.numel();
      CHECK(p.requires_grad() == (name.ends_with(".bias") || name.starts_with("classifier.")));
    }
    CHECK(applied.params.trainable == biases + 8 * 3);
  }
  {
    TinyNet<float> net(8, rng);
    CHECK(peft::apply_full(net).params.trainable == net.num_parameters());
    CHECK(peft::apply_head_only(net, std::vector<std::string>{"classifier"}).params.trainable == 8 * 3 + 3);
  }
}

TEST_CASE("lora_linear: y = x·Wᵀ + b + s·(h·Aᵀ)·Bᵀ, both layouts; gradients of x, h, W, b, A, B") {
  using Layout = ops::WeightLayout;
  using testing::gradcheck;
  using testing::project;
  for (Layout layout : {Layout::out_in, Layout::in_out})
    for (bool separate_h : {false, true}) {
      Rng rng(layout == Layout::out_in ? 11 : 12);
      const Index N = 5, d_in = 6, d_out = 7, r = 3;
      const double s = 1.75;
      auto x = randn<double>({N, d_in}, rng), h = randn<double>({N, d_in}, rng);
      auto w = randn<double>(layout == Layout::out_in ? Shape{d_out, d_in} : Shape{d_in, d_out}, rng);
      auto b = randn<double>({d_out}, rng), a = randn<double>({r, d_in}, rng);
      auto bb = randn<double>({d_out, r}, rng);
      // in: x, h, W, b, A, B (h unused, and x used for both, unless separate_h)
      auto forward = [&](Tape<double>& t, std::span<const Var<double>> in) {
        return peft::lora_linear(t, in[0], separate_h ? in[1] : in[0], in[2], in[3], layout, in[4],
                                 in[5], s);
      };
      Tape<double> tape;
      std::vector<Var<double>> vars = {Var<double>(x), Var<double>(h), Var<double>(w),
                                       Var<double>(b), Var<double>(a), Var<double>(bb)};
      const Var<double> y = forward(tape, vars);
      const auto& hx = separate_h ? h : x;
      for (Index i = 0; i < N; ++i)
        for (Index p = 0; p < d_out; ++p) {
          double ref = b[p];
          for (Index q = 0; q < d_in; ++q) {
            ref += x[i * d_in + q] * (layout == Layout::out_in ? w[p * d_in + q] : w[q * d_out + p]);
            for (Index k = 0; k < r; ++k) ref += s * hx[i * d_in + q] * a[k * d_in + q] * bb[p * r + k];
          }
          CHECK(y.value()[i * d_out + p] == doctest::Approx(ref).epsilon(1e-12).scale(1.0));
        }
      const auto r_all = gradcheck([&](Tape<double>& t, std::span<const Var<double>> in) {
        return project(t, forward(t, in));
      }, {x, h, w, b, a, bb}, {.atol = 1e-7});  // |L| ~ 30: central differences round off ~1e-9
      INFO("layout ", int(layout), " separate h ", separate_h, ": ", r_all.report());
      CHECK(r_all.ok);
    }
  // Frozen base weight (LoRA's case): no weight gradient is made, A and B still get theirs.
  Rng rng(13);
  Var<float> x(randn<float>({4, 6}, rng), true), w(randn<float>({5, 6}, rng));
  Var<float> a(randn<float>({2, 6}, rng), true), bb(randn<float>({5, 2}, rng), true);
  Tape<float> tape;
  tape.backward(ops::sum(tape, peft::lora_linear(tape, x, x, w, Var<float>(), ops::WeightLayout::out_in, a, bb, 2.0f)));
  CHECK(!w.has_grad());
  CHECK(a.has_grad());
  CHECK(bb.has_grad());
  CHECK_THROWS_WITH_AS(peft::lora_linear(tape, x, x, w, Var<float>(), ops::WeightLayout::out_in, bb, a, 2.0f),
                       doctest::Contains("do not fit"), ShapeError);
}

TEST_CASE("Adapter files: PEFT layout, train -> save -> load into a fresh model reproduces outputs") {
  for (const std::string method : {"fourierft", "fourierft-biased", "lora", "bitfit", "head"}) {
    INFO("method ", method);
    Rng rng(5);
    TinyNet<float> net(8, rng);
    peft::AdapterSpec spec = fourierft_spec(12);
    if (method == "fourierft-biased")
      spec.config.get<peft::FourierFTConfig>().frequency_bias = peft::FrequencyBias{2.0, 3.0};
    if (method == "lora")
      spec.config = peft::LoraConfig{.r = 2, .lora_alpha = 4, .target_modules = {{"query", "value"}, ""}};
    if (method == "bitfit") spec.config = peft::BitFitConfig{};
    if (method == "head") spec.config = peft::HeadOnlyConfig{};
    peft::apply_adapter(net, spec, rng);
    // A few AdamW steps on a toy objective, so every trainable tensor moves.
    optim::AdamW<float> opt(net.trainable_parameters(), {.lr = 1e-2, .weight_decay = 0});
    Var<float> x(randn<float>({6, 8}, rng));
    const std::vector<std::int64_t> labels = {0, 1, 2, 0, 1, 2};
    for (int step = 0; step < 3; ++step) {
      Tape<float> tape;
      tape.backward(ops::cross_entropy(tape, net.forward(tape, x), labels));
      opt.step();
      opt.zero_grad();
    }
    const fs::path dir = temp_dir(method);
    peft::save_adapter(net, spec, dir);
    REQUIRE(fs::exists(dir / "adapter_model.safetensors"));
    REQUIRE(fs::exists(dir / "adapter_config.json"));
    const io::SafetensorsFile file(dir / "adapter_model.safetensors");
    if (method == "fourierft") {
      CHECK(file.contains("base_model.model.layer.0.query.fourierft_spectrum"));
      CHECK(file.contains("base_model.model.classifier.weight"));
      CHECK(file.size() == 4 + 2);  // spectra + head; no indices (rebuilt from the seed)
      const auto config = io::read_json(dir / "adapter_config.json");
      CHECK(config.at("peft_type") == "FOURIERFT");
      CHECK(config.at("n_frequency") == 12);
      CHECK(config.at("random_loc_seed") == 777);
    }
    if (method == "fourierft-biased") CHECK(file.contains("fourierft_entries.8x8.n12"));
    if (method == "lora") CHECK(file.contains("base_model.model.layer.1.value.lora_B.weight"));

    Rng other_rng(99);  // a different seed: everything must come from the files
    TinyNet<float> fresh(8, other_rng);
    for (auto& [name, p] : fresh.named_parameters())
      p.value() = net.parameter(name).value().clone();  // the same base model...
    if (method == "bitfit" || method == "head")  // ...whose trained tensors the file restores
      for (auto& [name, p] : fresh.named_parameters())
        if (net.parameter(name).requires_grad()) p.value().fill(0);
    const auto loaded = peft::load_adapter(fresh, dir);
    CHECK(loaded.method() == spec.method());
    const auto a = outputs(net, x), b = outputs(fresh, x);
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(b[i] == a[i]);
  }
}

TEST_CASE("Adapter files: an adapter that does not fit the model is a clear error") {
  Rng rng(6);
  TinyNet<float> net(8, rng);
  peft::AdapterSpec spec = fourierft_spec(12);
  peft::apply_adapter(net, spec, rng);
  const fs::path dir = temp_dir("mismatch");
  peft::save_adapter(net, spec, dir);
  TinyNet<float> wider(10, rng);  // another model: shapes differ
  CHECK_THROWS_WITH_AS(peft::load_adapter(wider, dir),
                       doctest::Contains("tensor 'base_model.model.classifier.weight' has shape (3, 8) but the "
                                         "model's parameter has shape (3, 10)"), FormatError);
  // Other targets than the model has.
  peft::AdapterSpec other = fourierft_spec(12);
  other.config.get<peft::FourierFTConfig>().target_modules = {{"out_proj"}, ""};
  io::write_json(dir / "adapter_config.json", peft::adapter_config_json(other));
  TinyNet<float> fresh(8, rng);
  const std::string no_match = (dir / "adapter_config.json").string() +
                               ": apply_fourierft: no Linear module matches the targets [out_proj]";
  CHECK_THROWS_WITH_AS(peft::load_adapter(fresh, dir), no_match.c_str(), ValueError);
  CHECK_THROWS_AS(peft::load_adapter(fresh, temp_dir("missing")), IoError);
}

TEST_CASE("FourierFT linear matches PEFT computed by PyTorch (tests/fixtures/fourierft)") {
  const io::SafetensorsFile ref(fs::path(FOURIERFT_FIXTURES_DIR) / "fourierft/reference.safetensors");
  const double scaling = ref.load<double>("scaling").item();
  for (const std::string name : {"d8x12_n10", "d7x5_n10", "d16x16_n10", "d8x12_n1", "d7x5_n1", "d16x16_n1"}) {
    INFO(name);
    const auto indices = ref.load_int(name + ".indices");  // (n): randperm(M·N)[:n], row-major
    const auto w0 = ref.load<double>(name + ".w0");
    const Index M = w0.size(0), N = w0.size(1), n = indices.numel();
    auto entries = std::make_shared<const peft::SpectralEntries>(peft::uniform_entries(M, N, n, 777));
    for (Index l = 0; l < n; ++l) {
      CHECK(entries->rows[l] == indices[l] / N);
      CHECK(entries->cols[l] == indices[l] % N);
    }
    Var<double> x = Var<double>::parameter(ref.load<double>(name + ".x"));
    Var<double> c = Var<double>::parameter(ref.load<double>(name + ".coeffs"));
    Var<double> b(ref.load<double>(name + ".bias"));
    Tape<double> tape;
    std::vector<peft::SpectralBlock<double>> blocks = {{c, entries, scaling, 0}};
    Var<double> y = peft::fourierft_linear(tape, x, Var<double>(w0), b, blocks);
    const auto y_ref = ref.load<double>(name + ".y");
    for (Index i = 0; i < y.numel(); ++i) CHECK(y.value()[i] == doctest::Approx(y_ref[i]).epsilon(1e-12));
    tape.backward(ops::sum(tape, ops::mul(tape, y, ref.load<double>(name + ".probe"))));
    const auto dc = ref.load<double>(name + ".grad_coeffs"), dx = ref.load<double>(name + ".grad_x");
    for (Index l = 0; l < n; ++l) CHECK(c.grad()[l] == doctest::Approx(dc[l]).epsilon(1e-10));
    for (Index i = 0; i < dx.numel(); ++i) CHECK(x.grad()[i] == doctest::Approx(dx[i]).epsilon(1e-10));
    std::vector<double> delta(static_cast<std::size_t>(M * N));
    peft::fourierft_delta_forward<double>(delta, c.data(), *entries, scaling);
    const auto delta_ref = ref.load<double>(name + ".delta_w");
    for (Index i = 0; i < M * N; ++i) CHECK(delta[i] == doctest::Approx(delta_ref[i]).epsilon(1e-12).scale(1.0));
  }
}

// ---------------------------------------------------------------------------
// The worked example of docs/architecture.md ("Adding a PEFT method"): a method defined outside the
// library (tests/toy_method.hpp), registered with one line, goes through the same calls as the
// built-ins.

TEST_CASE("toy scale method: scale_linear's gradients match central differences, both layouts") {
  for (const auto layout : {ops::WeightLayout::out_in, ops::WeightLayout::in_out}) {
    Rng rng(21);
    const Shape w_shape = layout == ops::WeightLayout::out_in ? Shape{5, 6} : Shape{6, 5};
    auto loss = [&](Tape<double>& t, std::span<const Var<double>> in) {
      return testing::project(t, toy::scale_linear(t, in[0], in[1], in[2], layout, in[3]));
    };
    testing::GradcheckResult r =
        testing::gradcheck(loss, {randn<double>({2, 4, 6}, rng), randn<double>(w_shape, rng),
                                  randn<double>({5}, rng), randn<double>({5}, rng)},
                           {.eps = 1e-6, .rtol = 1e-6});
    INFO(r.report());
    CHECK(r.ok);
  }
}

TEST_CASE("toy scale method: registered by name and peft_type; apply, train, save, reload, merge") {
  REQUIRE(peft::find_method("scale") != nullptr);
  CHECK(peft::methods().find_peft_type("TOY_SCALE")->name == "scale");
  CHECK(peft::method_config("scale").name() == "scale");

  Rng rng(7);
  TinyNet<float> net(8, rng);
  const Tensor<float> w0 = net.layer[1].c_attn.weight.value().clone();
  Var<float> x(randn<float>({6, 8}, rng));
  const auto base = outputs(net, x);
  const peft::AdapterSpec spec{.config = toy::ScaleConfig{{{"query", "c_attn"}, ""}},
                               .modules_to_save = {"classifier"}};
  const peft::AppliedAdapters applied = peft::apply_adapter(net, spec, rng);
  CHECK(applied.adapted == std::vector<std::string>{"layer.0.query", "layer.0.c_attn",
                                                    "layer.1.query", "layer.1.c_attn"});
  CHECK(outputs(net, x) == base);  // s = 0: the pre-trained model
  CHECK(peft::adapter_parameters(net, spec) ==
        std::set<std::string>{"layer.0.c_attn.toy_scale", "layer.0.query.toy_scale",
                              "layer.1.c_attn.toy_scale", "layer.1.query.toy_scale"});
  CHECK(train::parameter_report(net, spec).starts_with(
      "method: scale on 4 weights\ntrainable params: 91 of 1,011 (9.0010%): adapter 64 + head 27"));

  optim::AdamW<float> opt(net.trainable_parameters(), {.lr = 1e-2, .weight_decay = 0});
  const std::vector<std::int64_t> labels = {0, 1, 2, 0, 1, 2};
  for (int step = 0; step < 2; ++step) {
    Tape<float> tape;
    tape.backward(ops::cross_entropy(tape, net.forward(tape, x), labels));
    opt.step();
    opt.zero_grad();
  }
  CHECK(net.parameter("layer.1.c_attn.toy_scale").value()[0] != 0.0f);
  const auto adapted = outputs(net, x);

  const fs::path dir = temp_dir("toy_scale");
  peft::save_adapter(net, spec, dir);
  const io::SafetensorsFile file(dir / "adapter_model.safetensors");
  CHECK(file.contains("base_model.model.layer.0.query.toy_scale"));
  CHECK(file.size() == 4 + 2);
  const auto config = io::read_json(dir / "adapter_config.json");
  CHECK(config.at("peft_type") == "TOY_SCALE");
  CHECK(config.at("target_modules") == io::Json({"query", "c_attn"}));

  Rng other_rng(99);
  TinyNet<float> fresh(8, other_rng);
  for (auto& [name, p] : fresh.named_parameters()) p.value() = net.parameter(name).value().clone();
  const peft::AdapterSpec loaded = peft::load_adapter(fresh, dir);
  CHECK(loaded.method() == "scale");
  CHECK(loaded.config.get<toy::ScaleConfig>().target_modules.names ==
        std::vector<std::string>{"query", "c_attn"});
  CHECK(outputs(fresh, x) == adapted);

  peft::merge_adapters(net);  // W0 <- diag(1 + s)·W0: a plain Linear again
  const auto merged = outputs(net, x);
  for (std::size_t i = 0; i < merged.size(); ++i)
    CHECK(merged[i] == doctest::Approx(adapted[i]).epsilon(1e-5));
  peft::unmerge_adapters(net);
  for (Index i = 0; i < w0.numel(); ++i)
    CHECK(net.layer[1].c_attn.weight.value()[i] == doctest::Approx(w0[i]).epsilon(1e-6));
}

TEST_CASE("Method registry: built-in names and peft_types; unknown ones are clear errors") {
  CHECK(peft::method_names() == "fourierft, lora, bitfit, full, head or scale");
  for (const char* name : {"fourierft", "lora", "bitfit", "full", "head"})
    CHECK(peft::method_config(name).name() == name);
  CHECK(peft::method_config("lora").find<peft::LoraConfig>() != nullptr);
  CHECK(peft::method_config("lora").find<peft::FourierFTConfig>() == nullptr);
  CHECK_THROWS_WITH_AS(peft::method_config("dora"),
                       doctest::Contains("unknown fine-tuning method 'dora' (expected fourierft, "
                                         "lora, bitfit, full, head or scale)"),
                       ValueError);
  const fs::path dir = temp_dir("unknown_type");
  fs::create_directories(dir);
  io::write_json(dir / "adapter_config.json", io::Json{{"peft_type", "IA3"}});
  CHECK_THROWS_WITH_AS(peft::adapter_spec_from_json(io::JsonObject::read(dir / "adapter_config.json")),
                       doctest::Contains("peft_type 'IA3' is not supported (FOURIERFT, LORA, BITFIT, "
                                         "FULL, HEAD, TOY_SCALE)"),
                       FormatError);
  peft::AdapterSpec empty;
  Rng rng(1);
  TinyNet<float> net(4, rng);
  CHECK_THROWS_WITH_AS(peft::apply_adapter(net, empty, rng),
                       doctest::Contains("no fine-tuning method given"), ValueError);
}

TEST_CASE("Adapter and head parameters: decided by the module tree, not by names") {
  Rng rng(3);
  TinyNet<float> net(4, rng);
  peft::FourierFTConfig config;
  config.n_frequency = 5;
  config.target_modules = {{"query"}, ""};
  config.bias = "all";  // every bias trains too: the head's group, as before
  const peft::AdapterSpec spec{.config = config, .modules_to_save = {"classifier"}};
  peft::apply_adapter(net, spec, rng);
  CHECK(peft::adapter_parameters(net, spec) ==
        std::set<std::string>{"layer.0.query.fourierft_spectrum", "layer.1.query.fourierft_spectrum"});
  const peft::AdapterSpec bitfit{.config = peft::BitFitConfig{}, .modules_to_save = {"classifier"}};
  TinyNet<float> body(4, rng);
  peft::apply_adapter(body, bitfit, rng);
  const auto names = peft::adapter_parameters(body, bitfit);
  CHECK(names.count("layer.0.query.bias") == 1);
  CHECK(names.count("classifier.bias") == 0);  // the head's
  CHECK(names.size() == 7);  // 2 blocks x 3 biases + mix.bias
}

// ---------------------------------------------------------------------------
// PEFT on frozen 16-bit weights (nn::Linear::to_half_precision, from_pretrained's
// frozen_weight_dtype): LoRA beside the half GEMM, merge / unmerge into BF16, GPT-2 from BF16.

namespace {
// Rounds every Linear of `half` but the classifier to BF16 and gives `ref` the same numbers in
// float (ref is built from the same seed): the FP32 model on rounded weights.
void round_pair(TinyNet<float>& half, TinyNet<float>& ref) {
  nn::to_half_precision<float>(half, io::Dtype::BF16, {"classifier.*"});
  for (auto& [name, module] : half.named_modules())
    if (auto* linear = dynamic_cast<nn::Linear<float>*>(module); linear && linear->half_precision())
      ref.find<nn::Linear<float>>(name)->weight.value() = linear->half_weight().to_tensor<float>();
}
double max_gap(const std::vector<float>& a, const std::vector<float>& b) {
  double gap = 0;
  for (std::size_t i = 0; i < a.size(); ++i) gap = std::max(gap, std::abs(double(a[i]) - b[i]));
  return gap;
}
}  // namespace

TEST_CASE("LoRA on a BF16 base: forward and gradients equal float on the rounded weights; merge") {
  Rng rng_half(31), rng_ref(31);
  TinyNet<float> half(8, rng_half), ref(8, rng_ref);
  round_pair(half, ref);
  CHECK(half.layer[0].c_attn.half_precision());
  CHECK(half.num_parameters() == ref.num_parameters());
  peft::LoraConfig config;
  config.r = 2;
  config.lora_alpha = 4;
  config.target_modules = {{"query", "c_attn"}, ""};
  config.modules_to_save = {"mix"};  // a 16-bit weight to train: back to float first
  peft::apply_lora(half, config, rng_half);
  peft::apply_lora(ref, config, rng_ref);
  CHECK_FALSE(half.mix.half_precision());
  CHECK(half.mix.weight.requires_grad());
  Rng values(32);
  for (auto& [name, p] : half.named_parameters())
    if (name.ends_with("lora_B.weight")) {
      p.value() = randn<float>(p.shape(), values);
      ref.parameter(name).value() = p.value().clone();
    }
  CHECK(half.num_trainable_parameters() == ref.num_trainable_parameters());
  Var<float> x(randn<float>({4, 8}, values));
  const auto adapted = outputs(half, x);
  CHECK(max_gap(adapted, outputs(ref, x)) < 1e-5);
  for (TinyNet<float>* net : {&half, &ref}) {
    Tape<float> t;
    t.backward(ops::sum(t, net->forward(t, x)));
  }
  for (auto& [name, p] : half.named_parameters())
    if (p.requires_grad()) {
      CAPTURE(name);
      const Tensor<float>& g_ref = ref.parameter(name).grad();
      for (Index i = 0; i < p.numel(); ++i) CHECK(p.grad()[i] == doctest::Approx(g_ref[i]).epsilon(1e-5));
    }

  // Merge: each touched BF16 entry is round(w + ΔW) computed in float; in_out (Conv1D) included.
  auto* lora = peft::attached_adapter<peft::LoraAdapter<float>>(half.layer[1].c_attn);
  const Tensor<float> w0 = half.layer[1].c_attn.half_weight().to_tensor<float>();  // (8, 24) in_out
  const Tensor<float> dW = lora->delta_weight();                                    // (24, 8)
  peft::merge_adapters(half);
  const HalfMatrix& merged = half.layer[1].c_attn.half_weight();
  Index exact = 0;
  for (Index i = 0; i < 8; ++i)
    for (Index o = 0; o < 24; ++o)
      exact += merged.data()[i * 24 + o] == float_to_bf16(w0[i * 24 + o] + dW[o * 8 + i]);
  CHECK(exact == 8 * 24);
  CHECK(max_gap(outputs(half, x), adapted) < 0.05);  // merged weights are rounded to BF16
  // Unmerge is not bit-exact on BF16 (two roundings): within BF16's resolution of W0.
  peft::unmerge_adapters(half);
  const Tensor<float> w1 = half.layer[1].c_attn.half_weight().to_tensor<float>();
  // Each rounding moves an entry by at most half an ulp: 2^-9 of |w0 + d| and of the result.
  Index within = 0, changed = 0;
  for (Index i = 0; i < 8; ++i)
    for (Index o = 0; o < 24; ++o) {
      const float w = w0[i * 24 + o], d = dW[o * 8 + i];
      within += std::abs(w1[i * 24 + o] - w) <= 0x1p-8f * (std::abs(w) + std::abs(d));
      changed += w1[i * 24 + o] != w;
    }
  CHECK(within == 8 * 24);
  MESSAGE("BF16 merge + unmerge changed ", changed, " of 192 entries of W0 by a rounding");
}

TEST_CASE("FourierFT merge into a BF16 weight: round(W0 + ΔW), both layouts") {
  Rng rng(33);
  TinyNet<float> net(8, rng);
  nn::to_half_precision<float>(net, io::Dtype::BF16, {"classifier.*"});
  peft::FourierFTConfig config;
  config.n_frequency = 12;
  config.scaling = 64;
  config.target_modules = {{"query", "c_attn"}, ""};
  peft::apply_fourierft(net, config, rng);
  const Tensor<float> q0 = net.layer[0].query.half_weight().to_tensor<float>();   // (8, 8)
  const Tensor<float> c0 = net.layer[0].c_attn.half_weight().to_tensor<float>();  // (8, 24)
  auto* q = peft::attached_adapter<peft::FourierFTAdapter<float>>(net.layer[0].query);
  auto* c = peft::attached_adapter<peft::FourierFTAdapter<float>>(net.layer[0].c_attn);
  const Tensor<float> dq = q->delta_weight(), dc = c->delta_weight();
  peft::merge_adapters(net);
  const HalfMatrix& qm = net.layer[0].query.half_weight();
  const HalfMatrix& cm = net.layer[0].c_attn.half_weight();
  Index exact = 0;
  for (Index o = 0; o < 8; ++o)
    for (Index i = 0; i < 8; ++i) exact += qm.data()[o * 8 + i] == float_to_bf16(q0[o * 8 + i] + dq[o * 8 + i]);
  for (Index i = 0; i < 8; ++i)
    for (Index o = 0; o < 24; ++o) exact += cm.data()[i * 24 + o] == float_to_bf16(c0[i * 24 + o] + dc[o * 8 + i]);
  CHECK(exact == 64 + 192);
}

TEST_CASE("GPT-2 from a BF16 folder with 16-bit frozen weights: same logits, LoRA, save round trip") {
  using models::FrozenWeightDtype;
  using models::GPT2LMHeadModel;
  const fs::path dir = fs::path(FOURIERFT_FIXTURES_DIR) / "models/gpt2-bf16";
  const io::SafetensorsFile ref(fs::path(FOURIERFT_FIXTURES_DIR) / "models/gpt2/reference.safetensors");
  const auto ids = ref.load_int("input_ids");
  const auto mask = ref.load_int("attention_mask");
  auto logits = [&](GPT2LMHeadModel<float>& m) {
    Tape<float> t;
    NoGradScope<float> no_grad(t);
    const Tensor<float> y = m.forward(t, ids, mask).logits.value();
    return std::vector<float>(y.data().begin(), y.data().end());
  };
  models::CheckpointReport report;
  auto half = GPT2LMHeadModel<float>::from_pretrained(dir, {.frozen_weight_dtype = FrozenWeightDtype::keep_file}, &report);
  auto full = GPT2LMHeadModel<float>::from_pretrained(dir);  // F32 Vars holding the BF16 values
  auto& c_attn = half->transformer.h[0].attn.c_attn;
  CHECK(c_attn.half_precision());
  CHECK(c_attn.half_weight().dtype() == io::Dtype::BF16);
  CHECK(c_attn.half_weight().memory_mapped());
  CHECK_FALSE(half->transformer.h[0].attn.c_attn.weight.defined());
  CHECK(half->num_parameters() == full->num_parameters());
  CHECK(report.loaded.size() == full->named_parameters().size());
  const auto y_full = logits(*full);
  CHECK(max_gap(logits(*half), y_full) < 1e-5);

  // LoRA on every Conv1D of the half model: the same as on the float model.
  peft::LoraConfig config;
  config.r = 2;
  config.lora_alpha = 4;
  config.target_modules = {{"c_attn", "c_proj", "c_fc"}, ""};
  Rng rng_half(34), rng_full(34);
  peft::apply_lora(*half, config, rng_half);
  peft::apply_lora(*full, config, rng_full);
  Rng values(35);
  for (auto& [name, p] : half->named_parameters())
    if (name.ends_with("lora_B.weight")) {
      p.value() = randn<float>(p.shape(), values);
      full->parameter(name).value() = p.value().clone();
    }
  const auto adapted = logits(*full);
  CHECK(max_gap(logits(*half), adapted) < 1e-5);
  peft::merge_adapters(*half);
  CHECK(max_gap(logits(*half), adapted) < 0.05);  // merged weights rounded to BF16

  // save_pretrained in BF16 writes the 16-bit weights bit for bit; loading it back gives the same.
  auto plain = GPT2LMHeadModel<float>::from_pretrained(dir, {.frozen_weight_dtype = FrozenWeightDtype::keep_file});
  const fs::path saved = temp_dir("gpt2-bf16-half");
  plain->save_pretrained(saved, io::Dtype::BF16);
  const io::SafetensorsFile original(dir / "model.safetensors"), written(saved / "model.safetensors");
  CHECK(written.names().size() == original.names().size());
  for (const std::string& key : original.names()) {
    CAPTURE(key);
    CHECK(written.info(key).dtype == io::Dtype::BF16);
    CHECK(written.raw_bytes(key) == original.raw_bytes(key));
  }
  auto again = GPT2LMHeadModel<float>::from_pretrained(saved, {.frozen_weight_dtype = FrozenWeightDtype::keep_file});
  CHECK(logits(*again) == logits(*plain));
  // F32 out of a half model: the values widened.
  const fs::path saved32 = temp_dir("gpt2-bf16-half-f32");
  plain->save_pretrained(saved32);
  const Tensor<float> c_attn32 = io::SafetensorsFile(saved32 / "model.safetensors").load<float>("transformer.h.0.attn.c_attn.weight");
  CHECK(c_attn32.data()[5] == bf16_to_float(plain->transformer.h[0].attn.c_attn.half_weight().data()[5]));
}

TEST_CASE("from_pretrained: F32 folders rounded to BF16 on request, sharded ones shard by shard") {
  using models::FrozenWeightDtype;
  using models::GPT2LMHeadModel;
  const fs::path models_dir = fs::path(FOURIERFT_FIXTURES_DIR) / "models";
  auto keep = GPT2LMHeadModel<float>::from_pretrained(models_dir / "gpt2", {.frozen_weight_dtype = FrozenWeightDtype::keep_file});
  CHECK_FALSE(keep->transformer.h[0].mlp.c_fc.half_precision());  // the file is F32
  auto sharded = GPT2LMHeadModel<float>::from_pretrained(models_dir / "gpt2-sharded", {.frozen_weight_dtype = FrozenWeightDtype::bf16});
  const io::SafetensorsFile file(models_dir / "gpt2/model.safetensors");
  const Tensor<float> w = file.load<float>("transformer.h.1.mlp.c_fc.weight");
  const HalfMatrix& h = sharded->transformer.h[1].mlp.c_fc.half_weight();
  CHECK_FALSE(h.memory_mapped());  // converted, not viewed
  Index exact = 0;
  for (Index i = 0; i < w.numel(); ++i) exact += h.data()[i] == float_to_bf16(w[i]);
  CHECK(exact == w.numel());
  auto f16 = GPT2LMHeadModel<float>::from_pretrained(models_dir / "gpt2", {.frozen_weight_dtype = FrozenWeightDtype::f16});
  CHECK(f16->transformer.h[0].attn.c_proj.half_weight().dtype() == io::Dtype::F16);
}
