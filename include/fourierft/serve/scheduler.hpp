// fourierft/serve/scheduler.hpp — continuous batching: sequences join and leave one running batch
// between decoding steps, each with its own adapter, on one causal LM with a shared KV cache.
#pragma once

// One thread (Scheduler::run, started by start()) owns the model. Each turn it
//   1. admits waiting sequences (up to max_batch running): each prompt runs alone through the model
//      with its adapter (prefill, T = prompt length) into a KvCache of its own, giving its first
//      token; the newcomers' caches and the running batch's are then rebuilt into one cache whose
//      rows hold each sequence's real positions, left-padded to the longest (join_caches);
//   2. drops sequences that were cancelled (a client that went away) or finished: the cache keeps
//      the other rows (KvCache::select_rows);
//   3. runs one decoding step for the whole batch: every row's last token, its own position and
//      its own adapter (BatchAdapters, read by the MixedAdapterLinear hooks) in one T = 1 forward.
// Greedy rows take the first maximum of the logits, as models::greedy_or_sample does, so a sequence
// generates what models::generate gives its prompt alone (up to FP32 rounding of the batched
// products). Sampling rows use their own seeded stream with HF's temperature / top-p warpers.
// A join copies the cached keys of the running rows (O(rows · length · layers · width)); a paged
// cache would avoid it and is not implemented.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/models/generation.hpp"
#include "fourierft/models/kv_cache.hpp"
#include "fourierft/serve/adapter_store.hpp"
#include "fourierft/serve/mixed_linear.hpp"

namespace fourierft::serve {

// The scheduler refused a sequence: too many at once (HTTP 429) or shutting down (503).
class Busy : public Error {
 public:
  using Error::Error;
};
class ShuttingDown : public Error {
 public:
  using Error::Error;
};

struct SequenceRequest {
  std::vector<std::int64_t> prompt;             // token ids, not empty
  std::shared_ptr<const ServedAdapter> adapter;  // null: the base model
  Index max_tokens = 16;
  double temperature = 0;  // 0: greedy
  double top_p = 1.0;
  std::uint64_t seed = 0;
};

// A sequence as its client sees it: tokens appear as they are generated, then it finishes.
class Sequence {
 public:
  explicit Sequence(SequenceRequest request) : request_(std::move(request)) {}
  const SequenceRequest& request() const { return request_; }

  // Waits until there are more than `seen` tokens or the sequence finished (or `timeout` passed);
  // returns the tokens so far and whether it finished.
  std::pair<std::vector<std::int64_t>, bool> wait(std::size_t seen,
                                                  std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, timeout, [&] { return tokens_.size() > seen || finished_; });
    return {tokens_, finished_};
  }
  // The client went away: the sequence leaves the batch before the next step.
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }
  // "stop" (eos), "length" (max_tokens), "cancelled", or "error: ..." once finished.
  std::string finish_reason() const {
    std::lock_guard lock(mutex_);
    return finish_reason_;
  }
  bool finished() const {
    std::lock_guard lock(mutex_);
    return finished_;
  }

  // ---- the scheduler's side ----
  void push(std::int64_t token) {
    {
      std::lock_guard lock(mutex_);
      tokens_.push_back(token);
    }
    changed_.notify_all();
  }
  void finish(std::string reason) {
    {
      std::lock_guard lock(mutex_);
      if (finished_) return;
      finished_ = true;
      finish_reason_ = std::move(reason);
    }
    changed_.notify_all();
  }

 private:
  SequenceRequest request_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::int64_t> tokens_;  // generated (the eos included, if one was)
  bool finished_ = false;
  std::string finish_reason_;
  std::atomic<bool> cancelled_{false};
};

// Rebuilds caches into one: the rows of each part in order, each row's real (unmasked) positions
// kept in order and left-padded to the longest. reserve: room for that many more positions.
template <class Real>
models::KvCache<Real> join_caches(const std::vector<const models::KvCache<Real>*>& parts,
                                  Index reserve) {
  Index rows = 0, length = 0, layers = 0, width = 0;
  std::vector<std::vector<std::vector<Index>>> real;  // part -> row -> real positions
  for (const auto* c : parts) {
    const Tensor<std::int64_t> mask = c->key_padding_mask();
    std::vector<std::vector<Index>> part_rows(static_cast<std::size_t>(c->rows()));
    for (Index n = 0; n < c->rows(); ++n) {
      for (Index t = 0; t < c->length(); ++t)
        if (mask[n * c->length() + t]) part_rows[static_cast<std::size_t>(n)].push_back(t);
      length = std::max(length, static_cast<Index>(part_rows[static_cast<std::size_t>(n)].size()));
    }
    real.push_back(std::move(part_rows));
    rows += c->rows();
    layers = c->layers();
    width = c->width();
  }
  models::KvCache<Real> joined;
  joined.reserve(reserve);
  if (rows == 0) return joined;
  Tensor<std::int64_t> mask({rows, length});
  {
    Index row = 0;
    for (const auto& part : real)
      for (const auto& positions : part) {
        const Index pad = length - static_cast<Index>(positions.size());
        for (Index t = pad; t < length; ++t) mask[row * length + t] = 1;
        ++row;
      }
  }
  joined.append(mask, layers, width);
  Tensor<Real> keys({rows, length, width}), values({rows, length, width});
  for (Index l = 0; l < layers; ++l) {
    Index row = 0;
    for (std::size_t p = 0; p < parts.size(); ++p) {
      const Tensor<Real> k = parts[p]->past_keys(l, parts[p]->length());
      const Tensor<Real> v = parts[p]->past_values(l, parts[p]->length());
      const Index L = parts[p]->length();
      for (Index n = 0; n < parts[p]->rows(); ++n, ++row) {
        const auto& positions = real[p][static_cast<std::size_t>(n)];
        const Index pad = length - static_cast<Index>(positions.size());
        for (std::size_t i = 0; i < positions.size(); ++i) {
          const Index src = (n * L + positions[i]) * width;
          const Index dst = (row * length + pad + static_cast<Index>(i)) * width;
          std::copy_n(k.ptr() + src, width, keys.ptr() + dst);
          std::copy_n(v.ptr() + src, width, values.ptr() + dst);
        }
      }
    }
    joined.store(l, keys.ptr(), values.ptr(), width);
  }
  return joined;
}

struct SchedulerOptions {
  Index max_batch = 8;        // sequences decoded together
  Index max_active = 64;      // running + waiting; beyond: Busy
  Index reserve_tokens = 64;  // cache room added at each join
};

// Model: a causal LM with last_token_logits(tape, ids, mask, cache, positions) (models::DecodableLm).
template <class Model>
class Scheduler {
 public:
  using Real = typename Model::real_type;

  Scheduler(Model& model, BatchAdapters& batch, std::optional<std::int64_t> eos,
            SchedulerOptions options)
      : model_(model), batch_(batch), eos_(eos), options_(options) {
    check(options.max_batch >= 1 && options.max_active >= 1, "Scheduler: max_batch = ",
          options.max_batch, " and max_active = ", options.max_active, " must be >= 1");
  }
  ~Scheduler() { stop(); }

  // Queues a sequence; Busy when max_active are already queued or running, ShuttingDown after stop.
  std::shared_ptr<Sequence> submit(SequenceRequest request) {
    check(!request.prompt.empty(), "Scheduler::submit: an empty prompt");
    check(request.max_tokens >= 1, "Scheduler::submit: max_tokens = ", request.max_tokens,
          " must be >= 1");
    auto sequence = std::make_shared<Sequence>(std::move(request));
    {
      std::lock_guard lock(mutex_);
      if (stopping_) throw ShuttingDown("the server is shutting down");
      if (active_ >= options_.max_active)
        throw Busy(str_cat("too many concurrent requests (", active_, " of at most ",
                           options_.max_active, ")"));
      ++active_;
      waiting_.push_back(sequence);
    }
    wake_.notify_all();
    return sequence;
  }

  void start() {
    std::lock_guard lock(mutex_);
    if (thread_.joinable()) return;
    thread_ = std::thread([this] { run(); });
  }
  // Stops admitting (submit throws ShuttingDown), lets every queued and running sequence finish,
  // and joins the thread.
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable() && std::this_thread::get_id() != thread_.get_id()) thread_.join();
  }
  void refuse_new() {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }

  Index active() const {
    std::lock_guard lock(mutex_);
    return active_;
  }
  Index running() const { return running_count_; }
  std::uint64_t steps() const { return steps_; }
  std::uint64_t tokens() const { return tokens_; }

 private:
  struct Row {
    std::shared_ptr<Sequence> sequence;
    std::int64_t last = 0;       // the token to feed next
    std::int64_t position = 0;   // its position (real tokens before it)
    Index generated = 0;
    Rng rng{0};
  };

  void run() {
    for (;;) {
      std::vector<std::shared_ptr<Sequence>> admitted;
      {
        std::unique_lock lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || !waiting_.empty() || !rows_.empty(); });
        if (stopping_ && waiting_.empty() && rows_.empty()) break;
        while (!waiting_.empty() &&
               static_cast<Index>(rows_.size() + admitted.size()) < options_.max_batch) {
          admitted.push_back(waiting_.front());
          waiting_.pop_front();
        }
      }
      try {
        admit(admitted);
        drop_finished();
        if (!rows_.empty()) step();
        drop_finished();
      } catch (const std::exception& e) {  // a failed step ends every running sequence
        for (Row& r : rows_) r.sequence->finish(str_cat("error: ", e.what()));
        drop_finished();
      }
      running_count_ = static_cast<Index>(rows_.size());
    }
  }

  void release(Index n) {
    std::lock_guard lock(mutex_);
    active_ -= std::min(n, active_);
  }

  // Chooses the next token of a row from its logits (one row of (N, V)).
  std::int64_t choose(const Tensor<Real>& logits, Index n, Row& row) {
    std::vector<double> s = models::generation::row_of(logits, n);
    const SequenceRequest& r = row.sequence->request();
    if (r.temperature <= 0) return static_cast<std::int64_t>(models::generation::argmax(s));
    models::GenerationConfig c;
    c.do_sample = true;
    c.temperature = r.temperature;
    c.top_k = 0;
    c.top_p = r.top_p;
    models::generation::warp(s, c);
    return static_cast<std::int64_t>(models::generation::draw(s, row.rng));
  }
  // Records a chosen token; returns whether the row goes on.
  bool emit(Row& row, std::int64_t token) {
    row.sequence->push(token);
    ++tokens_;
    ++row.generated;
    row.last = token;
    if (eos_ && token == *eos_) {
      row.sequence->finish("stop");
      return false;
    }
    if (row.generated >= row.sequence->request().max_tokens) {
      row.sequence->finish("length");
      return false;
    }
    return true;
  }

  Tensor<Real> forward(const Tensor<std::int64_t>& ids, const Tensor<std::int64_t>& positions,
                       models::KvCache<Real>& cache, std::vector<const ServedAdapter*> adapters) {
    batch_.rows = std::move(adapters);
    Tape<Real> tape;
    NoGradScope<Real> no_grad(tape);
    Tensor<Real> logits = model_.last_token_logits(tape, ids, Tensor<std::int64_t>::ones(ids.shape()),
                                                   &cache, positions)
                              .value();
    batch_.rows.clear();
    return logits;
  }

  // Prefill of each admitted sequence alone, then one cache for all.
  void admit(std::vector<std::shared_ptr<Sequence>>& admitted) {
    if (admitted.empty()) return;
    std::vector<Row> joining;
    std::vector<models::KvCache<Real>> caches;
    caches.reserve(admitted.size());
    for (auto& sequence : admitted) {
      if (sequence->cancelled()) {
        sequence->finish("cancelled");
        release(1);
        continue;
      }
      const auto& prompt = sequence->request().prompt;
      const Index P = static_cast<Index>(prompt.size());
      Tensor<std::int64_t> ids({1, P}), positions({1, P});
      for (Index t = 0; t < P; ++t) {
        ids[t] = prompt[static_cast<std::size_t>(t)];
        positions[t] = t;
      }
      models::KvCache<Real> cache;
      Row row{sequence, 0, P, 0, Rng(sequence->request().seed)};
      try {
        const Tensor<Real> logits = forward(ids, positions, cache, {sequence->request().adapter.get()});
        if (!emit(row, choose(logits, 0, row))) {
          release(1);
          continue;
        }
      } catch (const std::exception& e) {  // this prompt failed: the others go on
        sequence->finish(str_cat("error: ", e.what()));
        release(1);
        continue;
      }
      joining.push_back(std::move(row));
      caches.push_back(std::move(cache));
    }
    admitted.clear();
    if (joining.empty()) return;
    std::vector<const models::KvCache<Real>*> parts;
    if (!rows_.empty()) parts.push_back(&cache_);
    for (const auto& c : caches) parts.push_back(&c);
    models::KvCache<Real> joined = join_caches<Real>(parts, options_.reserve_tokens);
    cache_ = std::move(joined);
    for (Row& r : joining) rows_.push_back(std::move(r));
  }

  // Removes finished and cancelled rows (their cache rows too).
  void drop_finished() {
    std::vector<Index> keep;
    for (Index n = 0; n < static_cast<Index>(rows_.size()); ++n) {
      Row& r = rows_[static_cast<std::size_t>(n)];
      if (r.sequence->cancelled()) r.sequence->finish("cancelled");
      if (!r.sequence->finished()) keep.push_back(n);
    }
    if (static_cast<Index>(keep.size()) == static_cast<Index>(rows_.size())) return;
    release(static_cast<Index>(rows_.size() - keep.size()));
    std::vector<Row> kept;
    for (Index n : keep) kept.push_back(std::move(rows_[static_cast<std::size_t>(n)]));
    rows_ = std::move(kept);
    if (rows_.empty()) cache_.clear();
    else cache_.select_rows(keep);
  }

  void step() {
    const Index N = static_cast<Index>(rows_.size());
    Tensor<std::int64_t> ids({N, 1}), positions({N, 1});
    std::vector<const ServedAdapter*> adapters;
    for (Index n = 0; n < N; ++n) {
      Row& r = rows_[static_cast<std::size_t>(n)];
      ids[n] = r.last;
      positions[n] = r.position++;
      adapters.push_back(r.sequence->request().adapter.get());
    }
    const Tensor<Real> logits = forward(ids, positions, cache_, std::move(adapters));
    ++steps_;
    for (Index n = 0; n < N; ++n) {
      Row& r = rows_[static_cast<std::size_t>(n)];
      emit(r, choose(logits, n, r));
    }
  }

  Model& model_;
  BatchAdapters& batch_;
  std::optional<std::int64_t> eos_;
  SchedulerOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Sequence>> waiting_;
  Index active_ = 0;
  bool stopping_ = false;
  std::thread thread_;
  // The scheduler thread's own:
  std::vector<Row> rows_;
  models::KvCache<Real> cache_;
  std::atomic<Index> running_count_{0};
  std::atomic<std::uint64_t> steps_{0}, tokens_{0};
};

}  // namespace fourierft::serve
