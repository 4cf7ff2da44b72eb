// fourierft/models/generation.hpp — text generation with GPT-2 as Hugging Face's generate() does
// it: greedy, temperature / top-k / top-p sampling (seeded), and beam search, with the KV cache.
#pragma once

// The pieces:
//   GenerationConfig   HF's generation options that matter here (max_new_tokens, num_beams, ...)
//   Gpt2Decoder        drives GPT2LMHeadModel one token at a time: the prompts once, then each new
//                      token against the KV cache (or, with use_cache = false, the whole sequence
//                      again: slow, but the reference the cache must reproduce)
//   StepCache          that cache: keys and values appended in place, beams reordered through a
//                      table of slots, so neither moves a key (ops::step_attention_forward, in
//                      ops/attention.hpp, reads through it)
//   greedy_search / sample / beam_search   work on any decoder with the same three calls, so tests
//                      can hand them a toy model whose probabilities are known
//   generate           left-pads a batch of prompts and picks the search from the config
// Batched prompts are left-padded (pad = eos, GPT-2 has none), with attention_mask 0 on the pads
// and positions counted over real tokens only (HF: cumsum(mask) - 1, pads at 1), so a padded prompt
// generates what it would alone.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <span>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/parallel.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/models/gpt2.hpp"
#include "fourierft/ops/attention.hpp"
#include "fourierft/ops/indexing.hpp"

namespace fourierft::models {

// HF's early_stopping: heuristic (False, the default) stops a prompt's beam search once no open
// beam can beat the worst of num_beams finished ones if it ended now; always (True) stops as soon
// as num_beams hypotheses are finished; never ("never") only when none can win even at max length.
enum class EarlyStopping { heuristic, always, never };

struct GenerationConfig {
  Index max_new_tokens = 20;
  Index num_beams = 1;       // > 1: beam search
  bool do_sample = false;    // num_beams = 1: sample instead of taking the most likely token
  double temperature = 1.0;  // sampling: logits / temperature
  Index top_k = 50;          // sampling: keep the k most likely tokens (HF's default 50; 0 = all)
  double top_p = 1.0;        // sampling: keep the smallest set with probability >= top_p
  double length_penalty = 1.0;  // beam search: score = sum log p / generated_length^length_penalty
  Index no_repeat_ngram_size = 0;  // > 0: a token that would repeat an n-gram of the row is banned
  EarlyStopping early_stopping = EarlyStopping::heuristic;
  std::optional<std::int64_t> eos_token_id;  // default: the model config's
  std::optional<std::int64_t> pad_token_id;  // default: eos (fills finished rows, prompt padding)
  std::uint64_t seed = 0;                     // sampling
  bool use_cache = true;
};

// One prompt's result.
struct Generated {
  std::vector<std::int64_t> tokens;  // the new tokens only; ends with eos if one was generated
  double score = 0;  // beam search: sum log p / len^length_penalty (HF's sequences_scores);
                     // greedy / sampling: sum of the chosen tokens' log-probabilities
};

// ---------------------------------------------------------------------------
// Logits processing, one row (V scores) at a time, in HF's order: processors (n-gram ban) on the
// raw scores, then the sampling warpers (temperature, top-k, top-p).
namespace generation {

inline constexpr double minus_inf = -std::numeric_limits<double>::infinity();

// NoRepeatNGramLogitsProcessor: with n-grams of size n, a token t is banned after `row` if
// (row's last n-1 tokens, t) already occurs in row (prompt and padding included, as HF does).
inline void ban_repeated_ngrams(std::span<double> scores, const std::vector<std::int64_t>& row,
                                Index n) {
  const Index L = static_cast<Index>(row.size());
  if (n <= 0 || L + 1 < n) return;
  const Index start = L - (n - 1);  // the prefix the next token would complete
  for (Index i = 0; i + n <= L; ++i) {
    bool same = true;
    for (Index j = 0; j < n - 1 && same; ++j) same = row[i + j] == row[start + j];
    if (same) scores[static_cast<std::size_t>(row[i + n - 1])] = minus_inf;
  }
}

// log_softmax in place: s_v - log sum_u exp(s_u) (max-subtracted).
inline void log_softmax(std::span<double> s) {
  const double max = *std::max_element(s.begin(), s.end());
  double sum = 0;
  for (double v : s) sum += std::exp(v - max);
  const double lse = max + std::log(sum);
  for (double& v : s) v -= lse;
}

inline std::size_t argmax(std::span<const double> s) {  // first maximum, as torch.argmax
  return static_cast<std::size_t>(std::max_element(s.begin(), s.end()) - s.begin());
}

// TemperatureLogitsWarper, TopKLogitsWarper (ties with the k-th score are kept), TopPLogitsWarper
// (drops the least likely tokens whose cumulative probability stays <= 1 - top_p; keeps >= 1).
inline void warp(std::span<double> s, const GenerationConfig& c) {
  if (c.temperature != 1.0)
    for (double& v : s) v /= c.temperature;
  const Index V = static_cast<Index>(s.size());
  if (c.top_k > 0 && c.top_k < V) {
    std::vector<double> sorted(s.begin(), s.end());
    std::nth_element(sorted.begin(), sorted.begin() + (c.top_k - 1), sorted.end(),
                     std::greater<>());
    const double kth = sorted[static_cast<std::size_t>(c.top_k - 1)];
    for (double& v : s)
      if (v < kth) v = minus_inf;
  }
  if (c.top_p < 1.0) {
    std::vector<std::size_t> order(s.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](std::size_t a, std::size_t b) { return s[a] < s[b]; });
    std::vector<double> p(s.begin(), s.end());
    log_softmax(p);
    double cumulative = 0;
    for (std::size_t i = 0; i + 1 < order.size(); ++i) {  // ascending; the most likely always stays
      cumulative += std::exp(p[order[i]]);
      if (cumulative <= 1.0 - c.top_p)
        s[order[i]] = minus_inf;
      else
        break;
    }
  }
}

// A draw from softmax(s) (torch.multinomial's role), by inverting the cumulative distribution.
inline std::size_t draw(std::span<const double> s, Rng& rng) {
  std::vector<double> p(s.begin(), s.end());
  log_softmax(p);
  const double u = rng.uniform();
  double cumulative = 0;
  std::size_t last = 0;
  for (std::size_t v = 0; v < p.size(); ++v) {
    if (p[v] == minus_inf) continue;
    cumulative += std::exp(p[v]);
    last = v;
    if (u < cumulative) return v;
  }
  return last;  // u beyond the rounded total
}

// HF's BeamHypotheses: the num_beams best finished hypotheses of one prompt.
struct BeamHypotheses {
  struct Hypothesis {
    double score;
    std::vector<std::int64_t> row;  // prompt + generated, without the eos
    bool ended_by_eos;
  };
  Index num_beams;
  double length_penalty;
  EarlyStopping early_stopping;
  Index max_new_tokens;
  std::vector<Hypothesis> beams;
  double worst_score = 1e9;

  // score = sum_logprobs / generated_len^length_penalty; kept if among the num_beams best.
  void add(std::vector<std::int64_t> row, double sum_logprobs, Index generated_len, bool eos) {
    const double score =
        sum_logprobs / std::pow(static_cast<double>(generated_len), length_penalty);
    if (static_cast<Index>(beams.size()) < num_beams || score > worst_score) {
      beams.push_back({score, std::move(row), eos});
      if (static_cast<Index>(beams.size()) > num_beams) {
        // Drop the worst (the first of equal scores, as Python's sorted); the next is the worst.
        std::vector<std::size_t> order(beams.size());
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
          return beams[a].score < beams[b].score;
        });
        worst_score = beams[order[1]].score;
        beams.erase(beams.begin() + static_cast<std::ptrdiff_t>(order[0]));
      } else {
        worst_score = std::min(score, worst_score);
      }
    }
  }
  // Whether no open beam can do better; best_sum_logprobs is the best candidate's running sum.
  bool is_done(double best_sum_logprobs, Index generated_len) const {
    if (static_cast<Index>(beams.size()) < num_beams) return false;
    if (early_stopping == EarlyStopping::always) return true;
    Index len = generated_len;
    if (early_stopping == EarlyStopping::never && length_penalty > 0.0) len = max_new_tokens;
    return worst_score >= best_sum_logprobs / std::pow(static_cast<double>(len), length_penalty);
  }
  // The best (the last of equal scores, as sorted(...).pop() picks).
  const Hypothesis& best() const {
    std::size_t b = 0;
    for (std::size_t i = 1; i < beams.size(); ++i)
      if (beams[i].score >= beams[b].score) b = i;
    return beams[b];
  }
};

// A row of a (N, V) logits tensor as doubles.
template <class Real>
std::vector<double> row_of(const Tensor<Real>& logits, Index n) {
  const Index V = logits.size(1);
  return std::vector<double>(logits.ptr() + n * V, logits.ptr() + (n + 1) * V);
}

inline void check_config(const GenerationConfig& c) {
  check(c.max_new_tokens >= 1, "generate: max_new_tokens = ", c.max_new_tokens, " must be >= 1");
  check(c.num_beams >= 1, "generate: num_beams = ", c.num_beams, " must be >= 1");
  check(!(c.do_sample && c.num_beams > 1),
        "generate: beam sampling (do_sample with num_beams > 1) ", "is not supported");
  check(c.temperature > 0.0, "generate: temperature = ", c.temperature, " must be > 0");
  check(c.top_k >= 0, "generate: top_k = ", c.top_k, " must be >= 0");
  check(c.top_p > 0.0 && c.top_p <= 1.0, "generate: top_p = ", c.top_p, " must be in (0, 1]");
  check(c.no_repeat_ngram_size >= 0, "generate: no_repeat_ngram_size must be >= 0");
}

}  // namespace generation

// ---------------------------------------------------------------------------
// StepCache: the keys and values Gpt2Decoder's one-token steps attend to, stored so that neither
// appending a token nor reordering rows (beam search) moves a key or a value.
//   key[l], value[l]: layer l, (slots, capacity, C): slot (p, t) holds position t of the row that
//                     was row p when position t was appended
//   source: (rows, capacity): row n's position t is in slot (source[n·capacity + t], t)
// Appending position t writes slot (n, t) for every row n, and every row appends the same t, so no
// slot is written twice. select_rows copies rows·length ints of `source` and no key: continuing
// beam i from parent r[i] shares the parent's slots. (The model-level KvCache::select_rows, like HF's
// _reorder_cache, gathers every layer's (N, T, C) keys and values instead: at GPT-2 small, 40 beams
// of 96 tokens, that moved 280 MB per step, and appending through the model concatenated them
// again.) Storage is allocated for prompt + max_new_tokens positions up front, uninitialised, so
// only the slots written are ever touched; it grows (by copying) only if a caller goes past it.
template <class Real>
struct StepCache {
  Index rows = 0, slots = 0, capacity = 0, length = 0, width = 0;  // width = C
  std::vector<std::unique_ptr<Real[]>> key, value;                  // per layer
  std::vector<std::int32_t> source;                                 // (rows, capacity)

  // From the prompt pass through the model: cache.key[l], cache.value[l] are (N, T, C).
  void reset(const KvCache<Real>& cache, Index reserve_positions) {
    const Index N = cache.key.at(0).size(0), T = cache.key[0].size(1);
    width = cache.key[0].size(2);
    rows = slots = N;
    length = T;
    capacity = std::max(T + reserve_positions, T + 1);
    key.clear();
    value.clear();
    for (std::size_t l = 0; l < cache.key.size(); ++l) {
      key.push_back(allocate(slots, capacity));
      value.push_back(allocate(slots, capacity));
      for (Index n = 0; n < N; ++n) {
        std::copy_n(cache.key[l].ptr() + n * T * width, T * width, at(key[l], n, 0));
        std::copy_n(cache.value[l].ptr() + n * T * width, T * width, at(value[l], n, 0));
      }
    }
    source.assign(static_cast<std::size_t>(rows * capacity), 0);
    for (Index n = 0; n < N; ++n)
      std::fill_n(source.begin() + n * capacity, T, static_cast<std::int32_t>(n));
  }

  // Row i continues old row r[i] (beam reordering; B prompts -> B * num_beams rows).
  void select_rows(std::span<const Index> r) {
    for (Index i : r)
      check<IndexError>(i >= 0 && i < rows, "StepCache::select_rows: row ", i,
                        " out of range for ", rows, " rows");
    const Index N = static_cast<Index>(r.size());
    std::vector<std::int32_t> next(static_cast<std::size_t>(N * capacity), 0);
    for (Index n = 0; n < N; ++n)
      std::copy_n(source.begin() + r[n] * capacity, length, next.begin() + n * capacity);
    source = std::move(next);
    rows = N;
    if (rows > slots) resize(rows, capacity);  // row n appends into slot row n
  }

  // Room for one more position; the new position's slots are row n's own.
  void open_position() {
    if (length == capacity) resize(slots, 2 * capacity);
    for (Index n = 0; n < rows; ++n)
      source[static_cast<std::size_t>(n * capacity + length)] = static_cast<std::int32_t>(n);
  }

  Real* at(const std::unique_ptr<Real[]>& storage, Index slot, Index t) const {
    return storage.get() + (slot * capacity + t) * width;
  }
  // Layer l as ops::step_attention_forward reads it.
  ops::SlottedKvView<Real> layer_view(Index l) const {
    return {key[static_cast<std::size_t>(l)].get(), value[static_cast<std::size_t>(l)].get(),
            source.data(), rows, capacity, length, width};
  }

 private:
  std::unique_ptr<Real[]> allocate(Index s, Index c) const {
    return std::make_unique_for_overwrite<Real[]>(static_cast<std::size_t>(s * c * width));
  }
  void resize(Index new_slots, Index new_capacity) {
    auto move_layer = [&](std::unique_ptr<Real[]>& storage) {
      auto grown = allocate(new_slots, new_capacity);
      for (Index p = 0; p < slots; ++p)
        std::copy_n(at(storage, p, 0), length * width,
                    grown.get() + p * new_capacity * width);
      storage = std::move(grown);
    };
    for (auto& s : key) move_layer(s);
    for (auto& s : value) move_layer(s);
    if (new_capacity != capacity) {
      std::vector<std::int32_t> wider(static_cast<std::size_t>(rows * new_capacity), 0);
      for (Index n = 0; n < rows; ++n)
        std::copy_n(source.begin() + n * capacity, length, wider.begin() + n * new_capacity);
      source = std::move(wider);
    }
    slots = new_slots;
    capacity = new_capacity;
  }
};

// ---------------------------------------------------------------------------
// Gpt2Decoder: the calls the searches make, on a GPT2LMHeadModel, without gradients.
//   start(ids, mask) -> (N, V) next-token logits after the left-padded prompts (N, T)
//   next(tokens)     -> (N, V) logits after appending tokens[n] to row n
//   select_rows(r)   -> row i continues old row r[i] (beam reordering, expanding prompts to beams)
// With the cache, the prompts run through the model (GPT2Model::forward with a KvCache); each new
// token then runs the blocks' own layers (ln_1, c_attn, c_proj, mlp, ln_2: adapters included) with
// the attention against a StepCache, so a step appends in place and a beam reorder moves no keys.
// The one exception is a model in training mode with attn_pdrop > 0 (dropout on the attention
// probabilities): its steps go through GPT2Model::forward and the KvCache, as the model defines.
// max_new_tokens (optional) sizes the cache up front.
template <class Real>
class Gpt2Decoder {
 public:
  using real_type = Real;

  Gpt2Decoder(GPT2LMHeadModel<Real>& model, bool use_cache, Index max_new_tokens = 0)
      : model_(model),
        use_cache_(use_cache),
        steps_in_place_(use_cache &&
                        !(model.transformer.is_training() && model.config.attn_pdrop > 0.0)),
        reserve_(max_new_tokens) {}

  Tensor<Real> start(const Tensor<std::int64_t>& ids, const Tensor<std::int64_t>& mask) {
    const Index N = ids.size(0), T = ids.size(1);
    rows_.assign(static_cast<std::size_t>(N), {});
    masks_.assign(static_cast<std::size_t>(N), {});
    for (Index n = 0; n < N; ++n) {
      rows_[n].assign(ids.ptr() + n * T, ids.ptr() + (n + 1) * T);
      masks_[n].assign(mask.ptr() + n * T, mask.ptr() + (n + 1) * T);
    }
    cache_.clear();
    Tensor<Real> logits = run(ids, mask, positions_from_mask(mask));
    if (steps_in_place_) {
      steps_.reset(cache_, reserve_);
      cache_.clear();
    }
    return logits;
  }

  Tensor<Real> next(std::span<const std::int64_t> tokens) {
    const Index N = static_cast<Index>(rows_.size());
    check<ShapeError>(static_cast<Index>(tokens.size()) == N, "Gpt2Decoder::next: ", tokens.size(),
                      " tokens for ", N, " rows");
    for (Index n = 0; n < N; ++n) {
      rows_[n].push_back(tokens[n]);
      masks_[n].push_back(1);
    }
    if (!use_cache_) {  // the whole sequence again
      const Tensor<std::int64_t> ids = stack(rows_), mask = stack(masks_);
      return run(ids, mask, positions_from_mask(mask));
    }
    Tensor<std::int64_t> ids({N, 1}), positions({N, 1});
    for (Index n = 0; n < N; ++n) {
      ids[n] = tokens[n];
      positions[n] = std::accumulate(masks_[n].begin(), masks_[n].end(), std::int64_t(0)) - 1;
    }
    if (steps_in_place_) return step(ids, positions);
    return run(ids, Tensor<std::int64_t>::ones({N, 1}), positions);
  }

  void select_rows(std::span<const Index> rows) {
    std::vector<std::vector<std::int64_t>> r, m;
    for (Index i : rows) {
      r.push_back(rows_.at(static_cast<std::size_t>(i)));
      m.push_back(masks_.at(static_cast<std::size_t>(i)));
    }
    rows_ = std::move(r);
    masks_ = std::move(m);
    if (steps_in_place_ && steps_.rows > 0) steps_.select_rows(rows);
    else if (use_cache_) cache_.select_rows(rows);
  }

  // HF's generate: position_ids = cumsum(mask) - 1, and 1 where mask is 0.
  static Tensor<std::int64_t> positions_from_mask(const Tensor<std::int64_t>& mask) {
    const Index N = mask.size(0), T = mask.size(1);
    Tensor<std::int64_t> positions(mask.shape());
    for (Index n = 0; n < N; ++n) {
      std::int64_t count = 0;
      for (Index t = 0; t < T; ++t) {
        count += mask[n * T + t];
        positions[n * T + t] = mask[n * T + t] == 0 ? 1 : count - 1;
      }
    }
    return positions;
  }

 private:
  static Tensor<std::int64_t> stack(const std::vector<std::vector<std::int64_t>>& rows) {
    const Index N = static_cast<Index>(rows.size()), T = static_cast<Index>(rows[0].size());
    Tensor<std::int64_t> out({N, T});
    for (Index n = 0; n < N; ++n) std::copy(rows[n].begin(), rows[n].end(), out.ptr() + n * T);
    return out;
  }
  // Logits of the last position only: the (N, C) hidden states times wteᵀ, not all T positions.
  Tensor<Real> run(const Tensor<std::int64_t>& ids, const Tensor<std::int64_t>& mask,
                   const Tensor<std::int64_t>& positions) {
    Tape<Real> tape;
    NoGradScope<Real> no_grad(tape);
    const Var<Real> hidden =
        model_.transformer.forward(tape, ids, mask, use_cache_ ? &cache_ : nullptr, positions);
    return model_.lm_head(tape, ops::select(tape, hidden, 1, -1)).value();
  }
  // One token per row against the StepCache: GPT2Model::forward's blocks for T = 1, with
  // GPT2Attention's q·k / softmax / ·v done by ops::step_attention_forward.
  // ids, positions: (N, 1).
  Tensor<Real> step(const Tensor<std::int64_t>& ids, const Tensor<std::int64_t>& positions) {
    auto& tr = model_.transformer;
    const io::Gpt2Config& config = model_.config;
    const Index N = ids.size(0), C = config.n_embd;
    check<ShapeError>(N == steps_.rows, "Gpt2Decoder::next: ", N, " rows but the cache holds ",
                      steps_.rows);
    for (std::int64_t p : positions.data())
      check<IndexError>(p >= 0 && p < tr.wpe.num_embeddings(), "Gpt2Decoder::next: position ", p,
                        " is beyond n_positions = ", tr.wpe.num_embeddings());
    steps_.open_position();
    Tape<Real> tape;
    NoGradScope<Real> no_grad(tape);
    Var<Real> x = ops::add(tape, tr.wte.forward(tape, ids), tr.wpe.forward(tape, positions));
    x = tr.drop.forward(tape, x, tr.is_training());
    for (std::size_t l = 0; l < tr.h.size(); ++l) {
      auto& block = tr.h[l];
      const Var<Real> qkv = block.attn.c_attn.forward(tape, block.ln_1.forward(tape, x));
      const Real* packed = qkv.value().ptr();  // (N, 1, 3C): [q | k | v]
      for (Index n = 0; n < N; ++n) {
        std::copy_n(packed + n * 3 * C + C, C, steps_.at(steps_.key[l], n, steps_.length));
        std::copy_n(packed + n * 3 * C + 2 * C, C, steps_.at(steps_.value[l], n, steps_.length));
      }
      // GPT2Attention's scale: 1 / sqrt(HS) if scale_attn_weights, / (layer + 1) if
      // scale_attn_by_inverse_layer_idx.
      double scale = config.scale_attn_weights
                         ? 1.0 / std::sqrt(static_cast<double>(config.head_dim()))
                         : 1.0;
      if (config.scale_attn_by_inverse_layer_idx) scale /= static_cast<double>(l + 1);
      Tensor<Real> y({N, 1, C});
      ops::step_attention_forward<Real>(y.data(), qkv.value().data(),
                                        steps_.layer_view(static_cast<Index>(l)), masks_,
                                        config.n_head, static_cast<Real>(scale));
      const Var<Real> a = block.attn.resid_dropout.forward(
          tape, block.attn.c_proj.forward(tape, Var<Real>(y)), block.attn.is_training());
      x = ops::add(tape, x, a);
      x = ops::add(tape, x, block.mlp.forward(tape, block.ln_2.forward(tape, x)));
    }
    ++steps_.length;
    const Var<Real> hidden = tr.ln_f.forward(tape, x);
    return model_.lm_head(tape, ops::select(tape, hidden, 1, -1)).value();
  }

  GPT2LMHeadModel<Real>& model_;
  bool use_cache_;
  bool steps_in_place_;  // new tokens through step() and steps_ (else run() and cache_)
  Index reserve_;        // positions to reserve beyond the prompt
  KvCache<Real> cache_;  // the prompt pass (and every pass when !steps_in_place_)
  StepCache<Real> steps_;
  std::vector<std::vector<std::int64_t>> rows_, masks_;  // per row: every token so far, its mask
};

// ---------------------------------------------------------------------------
// Greedy search and sampling (HF's _sample; greedy when !config.do_sample). Each step the row's
// scores go through the n-gram ban, then (sampling) the warpers; finished rows receive pad.
// ids, mask: (B, T) left-padded prompts; eos: required to stop early (else max_new_tokens).
template <class Decoder>
std::vector<Generated> greedy_or_sample(Decoder& decoder, const Tensor<std::int64_t>& ids,
                                        const Tensor<std::int64_t>& mask,
                                        const GenerationConfig& config) {
  using namespace generation;
  check_config(config);
  const Index B = ids.size(0), T = ids.size(1);
  const std::int64_t eos = config.eos_token_id.value_or(-1);
  const std::int64_t pad = config.pad_token_id.value_or(eos);
  std::vector<std::vector<std::int64_t>> rows(static_cast<std::size_t>(B));
  for (Index b = 0; b < B; ++b) rows[b].assign(ids.ptr() + b * T, ids.ptr() + (b + 1) * T);
  std::vector<Generated> out(static_cast<std::size_t>(B));
  std::vector<bool> finished(static_cast<std::size_t>(B), false);
  Rng rng(config.seed);

  auto logits = decoder.start(ids, mask);
  for (Index step = 0; step < config.max_new_tokens; ++step) {
    std::vector<std::int64_t> tokens(static_cast<std::size_t>(B), pad);
    for (Index b = 0; b < B; ++b) {
      if (finished[b]) {
        rows[b].push_back(pad);
        continue;
      }
      std::vector<double> s = row_of(logits, b);
      ban_repeated_ngrams(s, rows[b], config.no_repeat_ngram_size);
      std::size_t token;
      if (config.do_sample) {
        warp(s, config);
        token = draw(s, rng);
      } else {
        token = argmax(s);
      }
      log_softmax(s);
      out[b].score += s[token];
      tokens[b] = static_cast<std::int64_t>(token);
      out[b].tokens.push_back(tokens[b]);
      rows[b].push_back(tokens[b]);
      if (tokens[b] == eos) finished[b] = true;
    }
    if (std::all_of(finished.begin(), finished.end(), [](bool f) { return f; }) ||
        step + 1 == config.max_new_tokens)
      break;
    logits = decoder.next(tokens);
  }
  return out;
}

// ---------------------------------------------------------------------------
// Beam search as HF's BeamSearchScorer: per prompt, num_beams open beams (all but the first start
// at -1e9 so the first step branches from one). Each step, for every open beam, log_softmax of its
// logits (after the n-gram ban) plus the beam's running sum; the 2·num_beams best (beam, token)
// pairs of the prompt in order: an eos among the first num_beams closes that beam into a hypothesis
// with score sum / generated_len^length_penalty (generated_len counts the eos); other tokens fill
// the num_beams new beams. A prompt is done when early_stopping says so; at max_new_tokens the open
// beams become hypotheses too (their length without an eos). The best hypothesis is returned.
template <class Decoder>
std::vector<Generated> beam_search(Decoder& decoder, const Tensor<std::int64_t>& ids,
                                   const Tensor<std::int64_t>& mask,
                                   const GenerationConfig& config) {
  using namespace generation;
  check_config(config);
  const Index B = ids.size(0), T = ids.size(1), K = config.num_beams, N = B * K;
  const std::int64_t eos = config.eos_token_id.value_or(-1);
  const std::int64_t pad = config.pad_token_id.value_or(eos);

  // Expand every prompt to K rows: row b·K + k is beam k of prompt b.
  std::vector<Index> expand;
  std::vector<std::vector<std::int64_t>> rows;
  for (Index b = 0; b < B; ++b)
    for (Index k = 0; k < K; ++k) {
      expand.push_back(b);
      rows.emplace_back(ids.ptr() + b * T, ids.ptr() + (b + 1) * T);
    }
  const auto first = decoder.start(ids, mask);  // (B, V): the prompts once
  const Index V = first.size(1);
  check(V >= 2, "beam_search: needs at least 2 tokens in the vocabulary, got ", V);
  decoder.select_rows(expand);
  std::vector<std::vector<double>> logits;
  for (Index b : expand) logits.push_back(row_of(first, b));

  std::vector<double> beam_scores(static_cast<std::size_t>(N), 0.0);
  for (Index n = 0; n < N; ++n)
    if (n % K != 0) beam_scores[n] = -1e9;
  std::vector<BeamHypotheses> hyps(
      static_cast<std::size_t>(B),
      BeamHypotheses{K, config.length_penalty, config.early_stopping, config.max_new_tokens, {}});
  std::vector<bool> done(static_cast<std::size_t>(B), false);

  for (Index generated = 1;; ++generated) {  // length of the rows' new part after this step
    std::vector<std::vector<double>> scores(static_cast<std::size_t>(N));
    for (Index n = 0; n < N; ++n) {
      scores[n] = std::move(logits[n]);
      log_softmax(scores[n]);
      ban_repeated_ngrams(scores[n], rows[n], config.no_repeat_ngram_size);
      for (double& s : scores[n]) s += beam_scores[n];
    }
    std::vector<double> next_scores(static_cast<std::size_t>(N), 0.0);
    std::vector<std::int64_t> next_tokens(static_cast<std::size_t>(N), pad);
    std::vector<Index> parents(static_cast<std::size_t>(N));
    std::iota(parents.begin(), parents.end(), Index(0));
    for (Index b = 0; b < B; ++b) {
      if (done[b]) continue;  // its rows keep padding
      // The 2K best (beam, token) pairs c = k·V + token of this prompt: higher score first, then
      // lower c. One pass over the K·V scores keeps them in a heap topped by the worst kept; pairs
      // come in increasing c, so one with a score equal to the worst's loses and only a strictly
      // higher score gets in (a single comparison for nearly every pair).
      auto score_of = [&](Index c) {
        return scores[b * K + c / V][static_cast<std::size_t>(c % V)];
      };
      auto better = [&](Index x, Index y) {
        const double sx = score_of(x), sy = score_of(y);
        return sx != sy ? sx > sy : x < y;
      };
      const Index top = std::min<Index>(2 * K, K * V);
      std::vector<Index> candidates;
      candidates.reserve(static_cast<std::size_t>(top));
      for (Index k = 0; k < K; ++k) {
        const std::vector<double>& s = scores[b * K + k];
        for (Index v = 0; v < V; ++v) {
          if (static_cast<Index>(candidates.size()) < top) {
            candidates.push_back(k * V + v);
            std::push_heap(candidates.begin(), candidates.end(), better);
          } else if (s[static_cast<std::size_t>(v)] > score_of(candidates.front())) {
            std::pop_heap(candidates.begin(), candidates.end(), better);
            candidates.back() = k * V + v;
            std::push_heap(candidates.begin(), candidates.end(), better);
          }
        }
      }
      std::sort_heap(candidates.begin(), candidates.end(), better);  // best first
      Index filled = 0;
      for (Index rank = 0; rank < top && filled < K; ++rank) {
        const Index c = candidates[rank], row = b * K + c / V;
        const std::int64_t token = c % V;
        if (token == eos) {
          if (rank >= K) continue;  // an eos outside the K best does not end a hypothesis
          hyps[b].add(rows[row], score_of(c), generated, true);
        } else {
          next_scores[b * K + filled] = score_of(c);
          next_tokens[b * K + filled] = token;
          parents[b * K + filled] = row;
          ++filled;
        }
      }
      check(filled == K, "beam_search: fewer than num_beams = ", K,
            " continuations that are not eos");
      done[b] = hyps[b].is_done(score_of(candidates[0]), generated);
    }
    // The new beams: each parent's row plus its token.
    std::vector<std::vector<std::int64_t>> next_rows;
    for (Index n = 0; n < N; ++n) {
      next_rows.push_back(rows[parents[n]]);
      next_rows.back().push_back(next_tokens[n]);
    }
    rows = std::move(next_rows);
    beam_scores = next_scores;
    if (std::all_of(done.begin(), done.end(), [](bool d) { return d; }) ||
        generated == config.max_new_tokens) {
      // Open beams of unfinished prompts become hypotheses (HF's finalize).
      for (Index b = 0; b < B; ++b)
        if (!done[b])
          for (Index k = 0; k < K; ++k)
            hyps[b].add(rows[b * K + k], beam_scores[b * K + k], generated, false);
      break;
    }
    decoder.select_rows(parents);
    const auto step_logits = decoder.next(next_tokens);
    for (Index n = 0; n < N; ++n) logits[n] = row_of(step_logits, n);
  }

  std::vector<Generated> out(static_cast<std::size_t>(B));
  for (Index b = 0; b < B; ++b) {
    const auto& best = hyps[b].best();
    out[b].tokens.assign(best.row.begin() + T, best.row.end());
    if (best.ended_by_eos) out[b].tokens.push_back(eos);
    out[b].score = best.score;
  }
  return out;
}

// ---------------------------------------------------------------------------
// generate: GPT-2 on left-padded prompts (B, T) with attention_mask (B, T) (empty: no padding).
template <class Real>
std::vector<Generated> generate(GPT2LMHeadModel<Real>& model, const Tensor<std::int64_t>& input_ids,
                                const Tensor<std::int64_t>& attention_mask,
                                GenerationConfig config) {
  check_ids("generate", "input_ids", input_ids);
  const Tensor<std::int64_t> mask =
      attention_mask.empty() ? Tensor<std::int64_t>::ones(input_ids.shape()) : attention_mask;
  check_mask("generate", mask, input_ids);
  const Index B = input_ids.size(0), T = input_ids.size(1);
  for (Index b = 0; b < B; ++b) {
    check(mask[b * T + T - 1] == 1, "generate: prompt ", b, " ends with padding; pad on the left");
    Index real = 0;
    for (Index t = 0; t < T; ++t) real += mask[b * T + t];
    check(real + config.max_new_tokens <= model.config.n_positions, "generate: prompt ", b, " has ",
          real, " tokens; with max_new_tokens = ", config.max_new_tokens,
          " that exceeds n_positions = ", model.config.n_positions);
  }
  if (!config.eos_token_id) config.eos_token_id = model.config.eos_token_id;
  Gpt2Decoder<Real> decoder(model, config.use_cache, config.max_new_tokens);
  return config.num_beams > 1 ? beam_search(decoder, input_ids, mask, config)
                              : greedy_or_sample(decoder, input_ids, mask, config);
}

// The same for prompts of different lengths, left-padded here with pad_token_id (default eos).
template <class Real>
std::vector<Generated> generate(GPT2LMHeadModel<Real>& model,
                                const std::vector<std::vector<std::int64_t>>& prompts,
                                const GenerationConfig& config) {
  check(!prompts.empty(), "generate: no prompts");
  std::size_t T = 0;
  for (const auto& p : prompts) {
    check(!p.empty(), "generate: an empty prompt (GPT-2 needs at least one token, e.g. eos)");
    T = std::max(T, p.size());
  }
  const std::int64_t pad = config.pad_token_id.value_or(
      config.eos_token_id.value_or(model.config.eos_token_id.value_or(0)));
  const Index B = static_cast<Index>(prompts.size());
  Tensor<std::int64_t> ids({B, static_cast<Index>(T)}), mask({B, static_cast<Index>(T)});
  for (Index b = 0; b < B; ++b) {
    const auto& p = prompts[static_cast<std::size_t>(b)];
    const std::size_t offset = T - p.size();
    for (std::size_t t = 0; t < T; ++t) {
      ids[b * Index(T) + Index(t)] = t < offset ? pad : p[t - offset];
      mask[b * Index(T) + Index(t)] = t < offset ? 0 : 1;
    }
  }
  return generate(model, ids, mask, config);
}

}  // namespace fourierft::models
