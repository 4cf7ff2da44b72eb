// Tests of include/fourierft/models/generation.hpp: greedy, sampling and beam search on a toy model
// whose probabilities are written down (so results can be checked by hand), then on the GPT-2
// fixture: the KV cache against recomputing the sequence, beam 1 against greedy, batches against
// single prompts, and beam scores against the model's own log-probabilities; then decoding through
// the model's KvCache (steps in place, beams reordered through a slot table) against recomputing
// every sequence from scratch, and the single-token attention kernel against ops::attention_forward.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <vector>

#include "fourierft/models/generation.hpp"

using namespace fourierft;
using namespace fourierft::models;
namespace fs = std::filesystem;

namespace {

// A "language model" whose next-token distribution depends on the last token only:
// p(next | last) = probs[last][next]. Tokens 0, 1, 2, and 3 = eos.
struct MarkovDecoder {
  using real_type = double;
  std::vector<std::vector<double>> probs;
  std::vector<std::int64_t> last;  // per row

  Tensor<double> logits() const {
    const Index N = static_cast<Index>(last.size()), V = static_cast<Index>(probs.size());
    Tensor<double> out({N, V});
    for (Index n = 0; n < N; ++n)
      for (Index v = 0; v < V; ++v) out[n * V + v] = std::log(probs[last[n]][v]);  // log 0 = -inf
    return out;
  }
  Tensor<double> start(const Tensor<std::int64_t>& ids, const Tensor<std::int64_t>&) {
    last.clear();
    for (Index n = 0; n < ids.size(0); ++n) last.push_back(ids.at({n, ids.size(1) - 1}));
    return logits();
  }
  Tensor<double> next(std::span<const std::int64_t> tokens) {
    last.assign(tokens.begin(), tokens.end());
    return logits();
  }
  void select_rows(std::span<const Index> rows) {
    std::vector<std::int64_t> picked;
    for (Index r : rows) picked.push_back(last[r]);
    last = picked;
  }
};

// From 0: 1 is likelier than 2, but after 1 nothing is sure, while 2 is nearly always followed by
// eos.
MarkovDecoder toy() {
  return {{{0.0, 0.5, 0.4, 0.1},    // after 0
           {0.0, 0.4, 0.25, 0.35},  // after 1
           {0.0, 0.05, 0.05, 0.9},  // after 2
           {0.25, 0.25, 0.25, 0.25}},
          {}};
}
const auto prompt = Tensor<std::int64_t>::from_data({1, 1}, {0});
const auto prompt_mask = Tensor<std::int64_t>::ones({1, 1});

GenerationConfig toy_config() {
  GenerationConfig c;
  c.max_new_tokens = 3;
  c.eos_token_id = 3;
  return c;
}

fs::path gpt2_dir() { return fs::path(FOURIERFT_FIXTURES_DIR) / "models" / "gpt2"; }

// Sum of log p(token) of `tokens` after `prompt`, by running the whole sequence through the model.
double sequence_logprob(GPT2LMHeadModel<float>& model, const std::vector<std::int64_t>& prompt_ids,
                        const std::vector<std::int64_t>& tokens) {
  std::vector<std::int64_t> all = prompt_ids;
  all.insert(all.end(), tokens.begin(), tokens.end());
  const Index T = static_cast<Index>(all.size());
  Tape<float> tape;
  NoGradScope<float> no_grad(tape);
  const Tensor<float> logits =
      model.forward(tape, Tensor<std::int64_t>::from_data({1, T}, all)).logits.value();
  const Index V = logits.size(2);
  double total = 0;
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const Index t = static_cast<Index>(prompt_ids.size() + i) - 1;  // predicts position t + 1
    std::vector<double> row(logits.ptr() + t * V, logits.ptr() + (t + 1) * V);
    generation::log_softmax(row);
    total += row[static_cast<std::size_t>(tokens[i])];
  }
  return total;
}

}  // namespace

// ===========================================================================
// By hand, on the toy model (prompt [0], eos 3, at most 3 new tokens).
TEST_CASE("greedy: the most likely token each step; the n-gram ban changes the third") {
  MarkovDecoder d = toy();
  // 0 -> 1 (.5) -> 1 (.4) -> 1 (.4): no eos within 3 tokens.
  auto out = greedy_or_sample(d, prompt, prompt_mask, toy_config());
  CHECK(out[0].tokens == std::vector<std::int64_t>{1, 1, 1});
  CHECK(out[0].score == doctest::Approx(std::log(0.5 * 0.4 * 0.4)));
  // no_repeat_ngram_size 2: after [0, 1, 1] the bigram (1, 1) exists, so 1 is banned: 3 (.35) wins.
  GenerationConfig c = toy_config();
  c.no_repeat_ngram_size = 2;
  out = greedy_or_sample(d, prompt, prompt_mask, c);
  CHECK(out[0].tokens == std::vector<std::int64_t>{1, 1, 3});
}

TEST_CASE("beam search by hand: 2 beams, length penalty 1 and 2") {
  // Step 1: beams [1] (ln .5) and [2] (ln .4).
  // Step 2: the best pair is [2] -> eos (ln .4 + ln .9 = -1.022): hypothesis [2] with score
  //   -1.022 / 2^lp (2 generated tokens, eos counted); beams [1, 1] (ln .5 + ln .4 = -1.609) and,
  //   since [1] -> eos (-1.743) ranks 3rd (outside the 2 best) and is skipped, [1, 2] (-2.079).
  // Step 3: [1, 2] -> eos (-2.184) ranks first: hypothesis [1, 2], score -2.184 / 3^lp.
  //   lp = 1: -0.511 vs -0.728: [2, eos] wins, and the search is done (-0.728 cannot beat -0.728).
  //   lp = 2: -0.2555 vs -0.2427: [1, 2, eos] wins (the longer one is penalised less).
  MarkovDecoder d = toy();
  GenerationConfig c = toy_config();
  c.num_beams = 2;
  auto out = beam_search(d, prompt, prompt_mask, c);
  CHECK(out[0].tokens == std::vector<std::int64_t>{2, 3});
  CHECK(out[0].score == doctest::Approx((std::log(0.4) + std::log(0.9)) / 2).epsilon(1e-12));
  c.length_penalty = 2.0;
  out = beam_search(d, prompt, prompt_mask, c);
  CHECK(out[0].tokens == std::vector<std::int64_t>{1, 2, 3});
  CHECK(out[0].score ==
        doctest::Approx((std::log(0.5) + std::log(0.25) + std::log(0.9)) / 9).epsilon(1e-12));
  // length_penalty 0: raw sums, -1.022 vs -2.184.
  c.length_penalty = 0.0;
  out = beam_search(d, prompt, prompt_mask, c);
  CHECK(out[0].tokens == std::vector<std::int64_t>{2, 3});
  // One beam is greedy.
  c = toy_config();
  c.num_beams = 1;
  CHECK(beam_search(d, prompt, prompt_mask, c)[0].tokens == std::vector<std::int64_t>{1, 1, 1});
}

TEST_CASE("beam hypotheses keep the num_beams best; early_stopping variants") {
  generation::BeamHypotheses h{2, 1.0, EarlyStopping::heuristic, 10, {}};
  h.add({5}, -2.0, 2, true);  // score -1
  h.add({6}, -1.0, 2, true);  // score -0.5
  CHECK(h.worst_score == -1.0);
  h.add({7}, -6.0, 2, true);  // -3: not better than the worst, not kept
  CHECK(h.beams.size() == 2);
  h.add({8}, -0.5, 1, true);  // -0.5 replaces -1
  CHECK(h.worst_score == -0.5);
  CHECK(h.best().row == std::vector<std::int64_t>{8});  // the last of equal scores
  CHECK(h.is_done(-1.2, 2));                            // best reachable -0.6 <= worst -0.5
  CHECK_FALSE(h.is_done(-0.8, 2));                      // -0.4 could still win
  h.early_stopping = EarlyStopping::always;
  CHECK(h.is_done(-0.8, 2));
  h.early_stopping = EarlyStopping::never;
  CHECK_FALSE(h.is_done(-4.0, 2));  // -4 / 10 (max length) = -0.4 could still win
  CHECK(h.is_done(-6.0, 2));
}

TEST_CASE("sampling: seeded, restricted by top-k / top-p, distributed as the model says") {
  MarkovDecoder d = toy();
  GenerationConfig c = toy_config();
  c.do_sample = true;
  c.max_new_tokens = 1;
  std::map<std::int64_t, int> counts;
  for (std::uint64_t seed = 0; seed < 4000; ++seed) {
    c.seed = seed;
    ++counts[greedy_or_sample(d, prompt, prompt_mask, c)[0].tokens[0]];
  }
  CHECK(counts[1] / 4000.0 == doctest::Approx(0.5).epsilon(0.06));
  CHECK(counts[2] / 4000.0 == doctest::Approx(0.4).epsilon(0.06));
  CHECK(counts[3] / 4000.0 == doctest::Approx(0.1).epsilon(0.2));
  CHECK(counts[0] == 0);  // probability 0
  // Same seed, same tokens.
  c.max_new_tokens = 3;
  c.seed = 42;
  CHECK(greedy_or_sample(d, prompt, prompt_mask, c)[0].tokens ==
        greedy_or_sample(d, prompt, prompt_mask, c)[0].tokens);
  // top_k 1 is greedy; top_k 2 never draws eos (.1) first; top_p 0.5 keeps only token 1
  // (ascending cumulative .1, .5 <= 1 - 0.5 drop eos and 2).
  c.max_new_tokens = 1;
  for (std::uint64_t seed = 0; seed < 200; ++seed) {
    c.seed = seed;
    c.top_k = 2;
    CHECK(greedy_or_sample(d, prompt, prompt_mask, c)[0].tokens[0] != 3);
    c.top_k = 0;
    c.top_p = 0.5;
    CHECK(greedy_or_sample(d, prompt, prompt_mask, c)[0].tokens[0] == 1);
    c.top_p = 1.0;
  }
  std::vector<double> s = {std::log(0.5), std::log(0.3), std::log(0.2)};
  c.temperature = 0.5;  // p^2 renormalised: .25/.38, .09/.38, .04/.38
  c.top_k = 0;
  generation::warp(s, c);
  generation::log_softmax(s);
  CHECK(std::exp(s[0]) == doctest::Approx(0.25 / 0.38));
}

// ===========================================================================
// GPT-2 fixture
TEST_CASE("GPT-2 greedy: the KV cache gives what recomputing the whole sequence gives") {
  auto model = GPT2LMHeadModel<float>::from_pretrained(gpt2_dir());
  const std::vector<std::vector<std::int64_t>> prompts = {{5, 17, 42, 8, 99, 3}, {7, 7}, {64}};
  GenerationConfig c;
  c.max_new_tokens = 12;
  c.eos_token_id = 100;
  const auto cached = generate(*model, prompts, c);
  c.use_cache = false;
  const auto full = generate(*model, prompts, c);
  for (std::size_t b = 0; b < prompts.size(); ++b) {
    CAPTURE(b);
    CHECK(cached[b].tokens == full[b].tokens);
    CHECK(cached[b].score == doctest::Approx(full[b].score).epsilon(1e-5));
    // The sum of log-probabilities is the model's own, recomputed from scratch.
    CHECK(cached[b].score ==
          doctest::Approx(sequence_logprob(*model, prompts[b], cached[b].tokens)).epsilon(1e-4));
  }
  // Left padding changes nothing: each prompt alone generates the same.
  for (std::size_t b = 0; b < prompts.size(); ++b)
    CHECK(generate(*model, std::vector<std::vector<std::int64_t>>{prompts[b]}, c)[0].tokens ==
          cached[b].tokens);
}

TEST_CASE("GPT-2 beam search: beam 1 is greedy; beam scores are the model's log-probabilities") {
  auto model = GPT2LMHeadModel<float>::from_pretrained(gpt2_dir());
  const std::vector<std::vector<std::int64_t>> prompts = {{5, 17, 42, 8}, {12, 30}};
  GenerationConfig c;
  c.max_new_tokens = 10;
  const auto greedy = generate(*model, prompts, c);
  c.num_beams = 1;
  // generate() takes the greedy path for one beam; call beam_search itself.
  LmDecoder decoder(*model, true);
  Tensor<std::int64_t> ids({2, 4}), mask({2, 4});
  for (Index t = 0; t < 4; ++t) {
    ids[t] = prompts[0][t];
    mask[t] = 1;
    ids[4 + t] = t < 2 ? 100 : prompts[1][t - 2];
    mask[4 + t] = t < 2 ? 0 : 1;
  }
  c.eos_token_id = 100;
  const auto beam1 = beam_search(decoder, ids, mask, c);
  for (std::size_t b = 0; b < 2; ++b) CHECK(beam1[b].tokens == greedy[b].tokens);

  c.num_beams = 4;
  c.length_penalty = 0.8;
  c.no_repeat_ngram_size = 3;
  const auto beams = generate(*model, prompts, c);
  c.use_cache = false;
  const auto beams_full = generate(*model, prompts, c);
  for (std::size_t b = 0; b < 2; ++b) {
    CAPTURE(b);
    CHECK(beams[b].tokens == beams_full[b].tokens);
    const auto& tokens = beams[b].tokens;
    REQUIRE_FALSE(tokens.empty());
    // score = sum log p / len^0.8, recomputed by a plain forward pass over prompt + tokens.
    const double expected = sequence_logprob(*model, prompts[b], tokens) /
                            std::pow(static_cast<double>(tokens.size()), 0.8);
    CHECK(beams[b].score == doctest::Approx(expected).epsilon(1e-4));
    // No trigram of the whole row repeats.
    std::vector<std::int64_t> row = prompts[b];
    row.insert(row.end(), tokens.begin(), tokens.end());
    for (std::size_t i = 0; i + 3 <= row.size(); ++i)
      for (std::size_t j = i + 1; j + 3 <= row.size(); ++j)
        CHECK_FALSE((row[i] == row[j] && row[i + 1] == row[j + 1] && row[i + 2] == row[j + 2]));
  }
}

TEST_CASE("generate: bad prompts and options are errors that say what to do") {
  auto model = GPT2LMHeadModel<float>::from_pretrained(gpt2_dir());
  GenerationConfig c;
  const auto ids = Tensor<std::int64_t>::from_data({1, 3}, {4, 5, 6});
  CHECK_THROWS_WITH_AS(generate(*model, ids, Tensor<std::int64_t>::from_data({1, 3}, {1, 1, 0}), c),
                       "generate: prompt 0 ends with padding; pad on the left", ValueError);
  c.max_new_tokens = 62;
  CHECK_THROWS_WITH_AS(generate(*model, ids, {}, c),
                       "generate: prompt 0 has 3 tokens; with max_new_tokens = 62 that exceeds "
                       "n_positions = 64",
                       ValueError);
  c.max_new_tokens = 0;
  CHECK_THROWS_WITH_AS(generate(*model, ids, {}, c), "generate: max_new_tokens = 0 must be >= 1",
                       ValueError);
  c.max_new_tokens = 4;
  c.num_beams = 2;
  c.do_sample = true;
  CHECK_THROWS_AS(generate(*model, ids, {}, c), ValueError);
  CHECK_THROWS_WITH_AS(
      generate(*model, std::vector<std::vector<std::int64_t>>{{}}, GenerationConfig{}),
      doctest::Contains("an empty prompt"), ValueError);
}

// ===========================================================================
// Decoding with the KvCache (each token a T = 1 pass through the model's blocks, keys appended in
// place, beams reordered through a slot table) against use_cache = false, which runs every row's
// whole sequence through the model again at each step. (These tests compared the slotted cache
// against the model's former concatenating KvCache; that type is gone, so the reference is now the
// full recomputation, with the same assertions and tolerances.)
namespace {

double max_abs_diff(const Tensor<float>& a, const Tensor<float>& b) {
  REQUIRE(a.shape() == b.shape());
  double worst = 0;
  for (Index i = 0; i < a.numel(); ++i) worst = std::max(worst, std::abs(double(a[i]) - double(b[i])));
  return worst;
}

}  // namespace

TEST_CASE("KvCache: logits through expansions, reorders and growth match recomputing everything") {
  auto model = GPT2LMHeadModel<float>::from_pretrained(gpt2_dir());
  // Two left-padded prompts; no size hint, so the cache starts one position past the prompt
  // and grows (by copying) several times.
  const auto ids = Tensor<std::int64_t>::from_data({2, 5}, {5, 17, 42, 8, 99, 100, 100, 12, 30, 7});
  const auto mask = Tensor<std::int64_t>::from_data({2, 5}, {1, 1, 1, 1, 1, 0, 0, 1, 1, 1});
  LmDecoder decoder(*model, true);
  LmDecoder reference(*model, false);
  double worst = max_abs_diff(decoder.start(ids, mask), reference.start(ids, mask));
  // Expand to 3 rows per prompt, then each step reorder by a fixed pseudo-random parent list
  // (rows may repeat or vanish, as in beam search) and append a token per row.
  const std::vector<Index> expand = {0, 0, 0, 1, 1, 1};
  decoder.select_rows(expand);
  reference.select_rows(expand);
  Rng rng(11);
  for (int step = 0; step < 20; ++step) {
    std::vector<Index> parents(6);
    std::vector<std::int64_t> tokens(6);
    for (Index n = 0; n < 6; ++n) {
      parents[n] = (n / 3) * 3 + static_cast<Index>(rng.uniform() * 3.0);  // within its prompt
      tokens[n] = static_cast<std::int64_t>(rng.uniform() * 100.0);
    }
    decoder.select_rows(parents);
    reference.select_rows(parents);
    worst = std::max(worst, max_abs_diff(decoder.next(tokens), reference.next(tokens)));
  }
  MESSAGE("KvCache vs full recomputation logits: ", worst);
  CHECK(worst < 1e-5);
}

TEST_CASE("GPT-2 beam search with the KvCache returns what recomputing everything returns") {
  auto model = GPT2LMHeadModel<float>::from_pretrained(gpt2_dir());
  const std::vector<std::vector<std::int64_t>> prompts = {{5, 17, 42, 8, 99, 3}, {7, 7}, {64}};
  Tensor<std::int64_t> ids({3, 6}), mask({3, 6});
  for (Index b = 0; b < 3; ++b) {
    const auto& p = prompts[static_cast<std::size_t>(b)];
    const Index offset = 6 - static_cast<Index>(p.size());
    for (Index t = 0; t < 6; ++t) {
      ids[b * 6 + t] = t < offset ? 100 : p[static_cast<std::size_t>(t - offset)];
      mask[b * 6 + t] = t < offset ? 0 : 1;
    }
  }
  struct Case {
    Index beams;
    double length_penalty;
    Index ngram;
    std::optional<std::int64_t> eos;
  };
  for (const Case& k : {Case{10, 0.8, 4, 100}, Case{4, 1.0, 3, 100}, Case{10, 0.8, 4, -1},
                        Case{3, 2.0, 0, 100}}) {
    CAPTURE(k.beams);
    CAPTURE(k.ngram);
    GenerationConfig c;
    c.max_new_tokens = 24;
    c.num_beams = k.beams;
    c.length_penalty = k.length_penalty;
    c.no_repeat_ngram_size = k.ngram;
    c.eos_token_id = k.eos;
    LmDecoder decoder(*model, true, c.max_new_tokens);
    LmDecoder reference(*model, false);
    const auto now = beam_search(decoder, ids, mask, c);
    const auto before = beam_search(reference, ids, mask, c);
    for (std::size_t b = 0; b < 3; ++b) {
      CAPTURE(b);
      CHECK(now[b].tokens == before[b].tokens);
      CHECK(now[b].score == doctest::Approx(before[b].score).epsilon(1e-6));
    }
    // Greedy the same way.
    c.num_beams = 1;
    const auto greedy_now = greedy_or_sample(decoder, ids, mask, c);
    const auto greedy_before = greedy_or_sample(reference, ids, mask, c);
    for (std::size_t b = 0; b < 3; ++b) CHECK(greedy_now[b].tokens == greedy_before[b].tokens);
  }
}

TEST_CASE("step_attention through a reordered KvCache equals ops::attention on gathered rows") {
  // Large enough for the threaded branch (N·NH·T·HS >= 2^18), with padding in the prompts.
  const Index N = 16, T0 = 299, C = 64, NH = 4, L = 2;
  Rng rng(5);
  std::vector<Tensor<float>> prompt_keys, prompt_values;  // per layer: (N, T0, C)
  for (Index l = 0; l < L; ++l) {
    prompt_keys.push_back(randn<float>({N, T0, C}, rng));
    prompt_values.push_back(randn<float>({N, T0, C}, rng));
  }
  std::vector<std::vector<std::int64_t>> masks(static_cast<std::size_t>(N));
  Tensor<std::int64_t> prompt_mask({N, T0});
  for (Index n = 0; n < N; ++n)
    for (Index t = 0; t < T0; ++t) {
      masks[n].push_back(t < n ? 0 : 1);  // row n: n pads
      prompt_mask[n * T0 + t] = masks[n].back();
    }
  KvCache<float> cache;
  cache.append(prompt_mask, L, C);  // capacity T0 + 1: the second position below grows it
  for (Index l = 0; l < L; ++l) cache.store(l, prompt_keys[l].ptr(), prompt_values[l].ptr(), C);
  // Full contiguous copies of every row's keys / values, reordered the same way.
  std::vector<std::vector<std::vector<float>>> keys(static_cast<std::size_t>(L)),
      values(static_cast<std::size_t>(L));  // [layer][row]: (T, C)
  for (Index l = 0; l < L; ++l)
    for (Index n = 0; n < N; ++n) {
      keys[l].emplace_back(prompt_keys[l].ptr() + n * T0 * C,
                           prompt_keys[l].ptr() + (n + 1) * T0 * C);
      values[l].emplace_back(prompt_values[l].ptr() + n * T0 * C,
                             prompt_values[l].ptr() + (n + 1) * T0 * C);
    }
  double worst = 0;
  for (int step = 0; step < 3; ++step) {
    std::vector<Index> parents(static_cast<std::size_t>(N));
    for (Index n = 0; n < N; ++n) parents[n] = static_cast<Index>(rng.uniform() * double(N));
    cache.select_rows(parents);
    std::vector<std::vector<std::int64_t>> m;
    for (Index p : parents) m.push_back(masks[p]);
    masks = m;
    for (Index l = 0; l < L; ++l) {
      std::vector<std::vector<float>> k, v;
      for (Index p : parents) {
        k.push_back(keys[l][p]);
        v.push_back(values[l][p]);
      }
      keys[l] = k;
      values[l] = v;
    }
    cache.append(Tensor<std::int64_t>::ones({N, 1}), L, C);
    const Index T = cache.length();
    for (auto& row : masks) row.push_back(1);
    for (Index l = 0; l < L; ++l) {
      const Tensor<float> qkv = randn<float>({N, 1, 3 * C}, rng);
      cache.store(l, qkv.ptr() + C, qkv.ptr() + 2 * C, 3 * C);
      for (Index n = 0; n < N; ++n) {
        keys[l][n].insert(keys[l][n].end(), qkv.ptr() + n * 3 * C + C, qkv.ptr() + n * 3 * C + 2 * C);
        values[l][n].insert(values[l][n].end(), qkv.ptr() + n * 3 * C + 2 * C,
                            qkv.ptr() + n * 3 * C + 3 * C);
      }
      Tensor<float> y({N, 1, C});
      ops::step_attention_forward<float>(y.data(), qkv.data(), cache.layer_view(l), NH, 0.125f);
      // Reference: the fused op's kernel on contiguous (N, T, C) keys and values.
      Tensor<float> q({N, 1, C}), k({N, T, C}), v({N, T, C}), expected({N, 1, C});
      Tensor<std::int64_t> key_mask({N, T});
      for (Index n = 0; n < N; ++n) {
        std::copy_n(qkv.ptr() + n * 3 * C, C, q.ptr() + n * C);
        std::copy(keys[l][n].begin(), keys[l][n].end(), k.ptr() + n * T * C);
        std::copy(values[l][n].begin(), values[l][n].end(), v.ptr() + n * T * C);
        std::copy(masks[n].begin(), masks[n].end(), key_mask.ptr() + n * T);
      }
      ops::attention_forward<float>(expected.data(), {}, q.data(), k.data(), v.data(),
                                    key_mask.data(), N, 1, T, C, NH, true, 0.125f);
      worst = std::max(worst, max_abs_diff(y, expected));
      // The gathered form the model's multi-token path reads equals the contiguous copies.
      CHECK(max_abs_diff(cache.past_keys(l, T), k) == 0.0);
      CHECK(max_abs_diff(cache.past_values(l, T), v) == 0.0);
      const Tensor<std::int64_t> cached_mask = cache.key_padding_mask();
      CHECK(std::equal(cached_mask.data().begin(), cached_mask.data().end(),
                       key_mask.data().begin()));
    }
  }
  CHECK(cache.capacity() > T0 + 1);  // it grew
  MESSAGE("step_attention vs attention_forward: ", worst);
  CHECK(worst < 1e-5);
}
