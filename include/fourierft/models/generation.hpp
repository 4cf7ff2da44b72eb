// fourierft/models/generation.hpp — text generation as Hugging Face's generate() does it (GPT-2, or
// any causal LM with a KV cache): greedy, temperature / top-k / top-p sampling (seeded), beam search.
#pragma once

// The pieces:
//   GenerationConfig   HF's generation options that matter here (max_new_tokens, num_beams, ...)
//   LmDecoder          drives a model (DecodableLm: GPT2LMHeadModel) one token at a time: the
//                      prompts once, then each new token as a T = 1 pass through the model's own
//                      blocks against its KvCache (models/kv_cache.hpp: keys appended in place,
//                      beams reordered through a slot table); with use_cache = false the whole
//                      sequence again (slow, but the reference the cache must reproduce)
//   greedy_or_sample / beam_search   work on any decoder with the same three calls (start,
//                      next, select_rows), so tests can hand them a toy model with known
//                      probabilities
//   generate           left-pads a batch of prompts and picks the search from the config
// Batched prompts are left-padded (pad = eos, GPT-2 has none), with attention_mask 0 on the pads
// and positions counted over real tokens only (HF: cumsum(mask) - 1, pads at 1), so a padded prompt
// generates what it would alone.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <numeric>
#include <optional>
#include <span>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/models/gpt2.hpp"
#include "fourierft/models/kv_cache.hpp"

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
  // Called with (prompt index, token) as each new token is chosen, for streaming output
  // (greedy / sampling; beam search knows its tokens only at the end and calls it then).
  std::function<void(Index, std::int64_t)> on_token;
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
// A model LmDecoder can drive: the next-token logits (N, V) after appending ids (N, T) with their
// attention_mask and position_ids to a KvCache (null: no cache, the whole sequence). Its blocks
// own the cached forward (GPT2LMHeadModel::last_token_logits).
template <class Model>
concept DecodableLm = requires(Model& model, Tape<typename Model::real_type>& tape,
                               const Tensor<std::int64_t>& ids,
                               KvCache<typename Model::real_type>* cache) {
  { model.last_token_logits(tape, ids, ids, cache, ids) };
};

// LmDecoder: the calls the searches make, on any DecodableLm, without gradients.
//   start(ids, mask) -> (N, V) next-token logits after the left-padded prompts (N, T)
//   next(tokens)     -> (N, V) logits after appending tokens[n] to row n
//   select_rows(r)   -> row i continues old row r[i] (beam reordering, expanding prompts to beams)
// With the cache, the prompts run through the model once, filling the KvCache; each new token is
// then a T = 1 pass through the model's own blocks against it (adapters included), appending in
// place, and a beam reorder moves no keys. With use_cache = false every call runs the whole
// sequence again: slow, but the reference the cache must reproduce. Positions count real tokens
// only (positions_from_mask). max_new_tokens (optional) sizes the cache up front.
template <DecodableLm Model>
class LmDecoder {
 public:
  using real_type = typename Model::real_type;

  LmDecoder(Model& model, bool use_cache, Index max_new_tokens = 0)
      : model_(model), use_cache_(use_cache) {
    cache_.reserve(max_new_tokens);
  }

  Tensor<real_type> start(const Tensor<std::int64_t>& ids, const Tensor<std::int64_t>& mask) {
    const Index N = ids.size(0), T = ids.size(1);
    rows_.assign(static_cast<std::size_t>(N), {});
    masks_.assign(static_cast<std::size_t>(N), {});
    counts_.assign(static_cast<std::size_t>(N), 0);
    for (Index n = 0; n < N; ++n) {
      if (!use_cache_) {
        rows_[n].assign(ids.ptr() + n * T, ids.ptr() + (n + 1) * T);
        masks_[n].assign(mask.ptr() + n * T, mask.ptr() + (n + 1) * T);
      }
      counts_[n] = std::accumulate(mask.ptr() + n * T, mask.ptr() + (n + 1) * T, std::int64_t(0));
    }
    cache_.clear();
    return run(ids, mask, positions_from_mask(mask));
  }

  Tensor<real_type> next(std::span<const std::int64_t> tokens) {
    const Index N = static_cast<Index>(counts_.size());
    check<ShapeError>(static_cast<Index>(tokens.size()) == N, "LmDecoder::next: ", tokens.size(),
                      " tokens for ", N, " rows");
    if (!use_cache_) {  // the whole sequence again
      for (Index n = 0; n < N; ++n) {
        rows_[n].push_back(tokens[n]);
        masks_[n].push_back(1);
      }
      const Tensor<std::int64_t> ids = stack(rows_), mask = stack(masks_);
      return run(ids, mask, positions_from_mask(mask));
    }
    Tensor<std::int64_t> ids({N, 1}), positions({N, 1});
    for (Index n = 0; n < N; ++n) {
      ids[n] = tokens[n];
      positions[n] = counts_[n]++;  // real tokens before it
    }
    return run(ids, Tensor<std::int64_t>::ones({N, 1}), positions);
  }

  void select_rows(std::span<const Index> rows) {
    std::vector<std::int64_t> counts;
    for (Index i : rows) counts.push_back(counts_.at(static_cast<std::size_t>(i)));
    counts_ = std::move(counts);
    if (use_cache_) {
      cache_.select_rows(rows);
      return;
    }
    std::vector<std::vector<std::int64_t>> r, m;
    for (Index i : rows) {
      r.push_back(rows_[static_cast<std::size_t>(i)]);
      m.push_back(masks_[static_cast<std::size_t>(i)]);
    }
    rows_ = std::move(r);
    masks_ = std::move(m);
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
  Tensor<real_type> run(const Tensor<std::int64_t>& ids, const Tensor<std::int64_t>& mask,
                        const Tensor<std::int64_t>& positions) {
    Tape<real_type> tape;
    NoGradScope<real_type> no_grad(tape);
    return model_.last_token_logits(tape, ids, mask, use_cache_ ? &cache_ : nullptr, positions)
        .value();
  }

  Model& model_;
  bool use_cache_;
  KvCache<real_type> cache_;
  std::vector<std::int64_t> counts_;  // per row: real tokens so far
  std::vector<std::vector<std::int64_t>> rows_, masks_;  // use_cache = false: every token, mask
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
      if (config.on_token) config.on_token(b, tokens[b]);
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
    if (config.on_token)
      for (std::int64_t token : out[b].tokens) config.on_token(b, token);
  }
  return out;
}

// ---------------------------------------------------------------------------
// generate: a causal LM (GPT2LMHeadModel) on left-padded prompts (B, T) with attention_mask (B, T)
// (empty: no padding). The model also provides max_positions() (named max_positions_key) and
// config.eos_token_id.
template <DecodableLm Model>
std::vector<Generated> generate(Model& model, const Tensor<std::int64_t>& input_ids,
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
    check(real + config.max_new_tokens <= model.max_positions(), "generate: prompt ", b, " has ",
          real, " tokens; with max_new_tokens = ", config.max_new_tokens, " that exceeds ",
          Model::max_positions_key, " = ", model.max_positions());
  }
  if (!config.eos_token_id) config.eos_token_id = model.config.eos_token_id;
  LmDecoder<Model> decoder(model, config.use_cache, config.max_new_tokens);
  return config.num_beams > 1 ? beam_search(decoder, input_ids, mask, config)
                              : greedy_or_sample(decoder, input_ids, mask, config);
}

// The same for prompts of different lengths, left-padded here with pad_token_id (default eos).
template <DecodableLm Model>
std::vector<Generated> generate(Model& model, const std::vector<std::vector<std::int64_t>>& prompts,
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
