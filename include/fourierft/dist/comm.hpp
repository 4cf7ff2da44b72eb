// fourierft/dist/comm.hpp — data-parallel training without naming MPI: the Communicator interface
// (rank, size, sum / max all-reduce, broadcast), the single-process one, and what training builds on it.
#pragma once

// A data-parallel run is P processes (ranks) with identical model, optimizer and data order; each
// forwards its shard of every micro-batch, the trainable gradients are summed across ranks in one
// buffer, and every rank takes the same optimizer step (so the weights never drift apart):
//   gradient of the global mean loss = Σ_ranks Σ_shard-examples (1 / step.examples) · dloss_i
// because train::Run::accumulate already seeds each micro-batch with examples / step.examples.
// dist/mpi.hpp implements Communicator with MPI; dist/world.hpp picks it when run under mpirun.
// This header needs no MPI: train/run.hpp uses it in every build.

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"
#include "fourierft/io/json.hpp"

namespace fourierft::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  bool is_root() const { return rank() == 0; }
  virtual void barrier() = 0;
  // In place: data[i] = Σ_ranks data[i]. Same result on every rank; for a fixed rank count the
  // summation order is fixed, so a run repeats bit for bit.
  virtual void all_reduce_sum(std::span<float> data) = 0;
  virtual void all_reduce_sum(std::span<double> data) = 0;
  virtual int all_reduce_max(int value) = 0;
  // Every rank's `value`, indexed by rank.
  virtual std::vector<std::uint64_t> all_gather(std::uint64_t value) = 0;
  // Rank 0's bytes replace every other rank's `bytes` (sizes may differ beforehand).
  virtual void broadcast(std::string& bytes) = 0;
  virtual void broadcast(std::span<float> data) = 0;
  // Ends every rank's process with `code` (after an error on one rank: the others would wait in
  // their next collective forever). The single-process one does nothing (main returns the code).
  virtual void abort(int code) = 0;
};

// One process: every collective is the identity.
class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void barrier() override {}
  void all_reduce_sum(std::span<float>) override {}
  void all_reduce_sum(std::span<double>) override {}
  int all_reduce_max(int value) override { return value; }
  std::vector<std::uint64_t> all_gather(std::uint64_t value) override { return {value}; }
  void broadcast(std::string&) override {}
  void broadcast(std::span<float>) override {}
  void abort(int) override {}
};

// ---------------------------------------------------------------------------
// Sharding: rank r of P takes the contiguous slice [⌊m·r/P⌋, ⌊m·(r+1)/P⌋) of a micro-batch of m
// examples. With m a multiple of P every shard has m/P examples; a smaller last micro-batch (the
// epoch's remainder) is split as evenly as that allows, possibly leaving a rank none. The union
// over ranks is the micro-batch, in order: the global batch is the single-process run's.
template <class T>
std::span<const T> shard(std::span<const T> batch, int rank, int size) {
  const auto m = static_cast<std::int64_t>(batch.size());
  const std::int64_t begin = m * rank / size, end = m * (rank + 1) / size;
  return batch.subspan(static_cast<std::size_t>(begin), static_cast<std::size_t>(end - begin));
}

// --batch B must split into P equal shards: a clear error instead of silently uneven ranks.
inline void check_batch_divisible(std::int64_t batch, int size) {
  check(batch % size == 0, "option --batch ", batch, " is not divisible by the ", size,
        " MPI processes: every rank takes --batch / processes examples of each micro-batch; use "
        "a --batch that is a multiple of ", size, " (or -np that divides it)");
}

// ---------------------------------------------------------------------------
// Settings check: a 64-bit FNV-1a hash of the settings' JSON text, compared across ranks at start.
inline std::uint64_t settings_hash(const std::string& text) {
  std::uint64_t h = 14695981039346656037ull;
  for (const unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  return h;
}

// ValueError on every rank when some rank's `settings` differ from rank 0's, naming those ranks.
inline void check_same_settings(Communicator& comm, const io::Json& settings) {
  const std::vector<std::uint64_t> hashes = comm.all_gather(settings_hash(settings.dump()));
  std::string differing;
  for (std::size_t r = 1; r < hashes.size(); ++r)
    if (hashes[r] != hashes[0]) differing += (differing.empty() ? "" : ", ") + std::to_string(r);
  check(differing.empty(), "MPI ranks ", differing, " were started with other settings than rank 0 "
        "(the hash of their options differs): every process of a run needs the same arguments. ",
        "This rank's settings: ", settings.dump());
}

// ---------------------------------------------------------------------------
// Gradients: one contiguous buffer [grad of params[0] | params[1] | ... | has-grad flags | extra],
// in the caller's fixed order (the optimizer's parameters), summed in one all-reduce, copied back.
// A parameter without a gradient on this rank (an empty shard) contributes zeros and receives the
// sum; one without a gradient on every rank stays without (the optimizer skips it, as it would in
// one process). `extra` rides along (the step's loss), so a step costs exactly one collective.
inline void all_reduce_gradients(Communicator& comm, std::span<Var<float>> params,
                                 std::span<float> extra = {}) {
  if (comm.size() == 1) return;
  std::size_t numel = 0;
  for (const Var<float>& p : params) numel += static_cast<std::size_t>(p.numel());
  std::vector<float> buffer(numel + params.size() + extra.size(), 0.0f);
  float* const flags = buffer.data() + numel;
  std::size_t at = 0;
  for (std::size_t i = 0; i < params.size(); ++i) {
    Var<float>& p = params[i];
    if (p.has_grad()) {
      std::memcpy(buffer.data() + at, p.grad().ptr(), p.numel() * sizeof(float));
      flags[i] = 1.0f;
    }
    at += static_cast<std::size_t>(p.numel());
  }
  std::memcpy(flags + params.size(), extra.data(), extra.size() * sizeof(float));
  comm.all_reduce_sum(buffer);
  at = 0;
  for (std::size_t i = 0; i < params.size(); ++i) {
    Var<float>& p = params[i];
    if (flags[i] > 0.0f)
      std::memcpy(p.grad().ptr(), buffer.data() + at, p.numel() * sizeof(float));
    at += static_cast<std::size_t>(p.numel());
  }
  std::memcpy(extra.data(), flags + params.size(), extra.size() * sizeof(float));
}

// Rank 0's values of `params` on every rank (one buffer): the same starting point everywhere.
inline void broadcast_values(Communicator& comm, std::span<Var<float>> params) {
  if (comm.size() == 1) return;
  std::size_t total = 0;
  for (const Var<float>& p : params) total += static_cast<std::size_t>(p.numel());
  std::vector<float> buffer(total);
  std::size_t at = 0;
  for (Var<float>& p : params) {
    std::memcpy(buffer.data() + at, p.value().ptr(), p.numel() * sizeof(float));
    at += static_cast<std::size_t>(p.numel());
  }
  comm.broadcast(buffer);
  at = 0;
  for (Var<float>& p : params) {
    std::memcpy(p.value().ptr(), buffer.data() + at, p.numel() * sizeof(float));
    at += static_cast<std::size_t>(p.numel());
  }
}

}  // namespace fourierft::dist
