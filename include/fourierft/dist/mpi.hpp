// fourierft/dist/mpi.hpp — MpiCommunicator: dist::Communicator over MPI_COMM_WORLD (Open MPI, MPICH).
// Including it needs <mpi.h> and linking MPI: CMake target fourierft::mpi (FOURIERFT_WITH_MPI).
#pragma once

// Usage (dist/world.hpp does this for the example programs when they run under mpirun):
//   dist::MpiCommunicator comm(argc, argv);     // MPI_Init_thread; MPI_Finalize in the destructor
//   dist::all_reduce_gradients(comm, params);   // one MPI_Allreduce of every trainable gradient
// Errors: MPI_COMM_WORLD keeps MPI's default handler MPI_ERRORS_ARE_FATAL, so a failed collective
// (a rank that died) ends every process; mpirun then names the rank that exited. A C++ exception on
// one rank goes through abort(): MPI_Abort ends the others instead of leaving them in a collective.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include <mpi.h>

#include "fourierft/core/error.hpp"
#include "fourierft/dist/comm.hpp"

namespace fourierft::dist {

class MpiCommunicator final : public Communicator {
 public:
  // MPI_THREAD_FUNNELED: only the main thread calls MPI (OpenMP workers never do).
  MpiCommunicator(int& argc, char**& argv) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      check(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) == MPI_SUCCESS,
            "MPI_Init_thread failed");
      owns_mpi_ = true;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  // Finalizes MPI when it initialized it. During an exception's unwinding the other ranks may be
  // waiting in a collective that this one will never join, so it aborts them instead.
  ~MpiCommunicator() override {
    if (!owns_mpi_) return;
    if (std::uncaught_exceptions() > 0 && size_ > 1) MPI_Abort(MPI_COMM_WORLD, 1);
    MPI_Finalize();
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void barrier() override { MPI_Barrier(MPI_COMM_WORLD); }
  void all_reduce_sum(std::span<float> data) override { reduce(data.data(), data.size(), MPI_FLOAT); }
  void all_reduce_sum(std::span<double> data) override {
    reduce(data.data(), data.size(), MPI_DOUBLE);
  }
  int all_reduce_max(int value) override {
    int out = 0;
    MPI_Allreduce(&value, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return out;
  }
  std::vector<std::uint64_t> all_gather(std::uint64_t value) override {
    std::vector<std::uint64_t> out(static_cast<std::size_t>(size_));
    MPI_Allgather(&value, 1, MPI_UINT64_T, out.data(), 1, MPI_UINT64_T, MPI_COMM_WORLD);
    return out;
  }
  void broadcast(std::string& bytes) override {
    std::uint64_t n = bytes.size();
    MPI_Bcast(&n, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    bytes.resize(static_cast<std::size_t>(n));
    for (std::uint64_t at = 0; at < n; at += chunk) {  // MPI counts are int
      const int count = static_cast<int>(std::min<std::uint64_t>(chunk, n - at));
      MPI_Bcast(bytes.data() + at, count, MPI_BYTE, 0, MPI_COMM_WORLD);
    }
  }
  void broadcast(std::span<float> data) override {
    for (std::size_t at = 0; at < data.size(); at += chunk) {
      const int count = static_cast<int>(std::min<std::size_t>(chunk, data.size() - at));
      MPI_Bcast(data.data() + at, count, MPI_FLOAT, 0, MPI_COMM_WORLD);
    }
  }
  void abort(int code) override {
    if (size_ > 1) MPI_Abort(MPI_COMM_WORLD, code);
  }

 private:
  static constexpr std::size_t chunk = std::size_t{1} << 30;  // elements per call, < INT_MAX
  void reduce(void* data, std::size_t n, MPI_Datatype type) {
    const std::size_t bytes = type == MPI_FLOAT ? sizeof(float) : sizeof(double);
    for (std::size_t at = 0; at < n; at += chunk) {
      const int count = static_cast<int>(std::min(chunk, n - at));
      MPI_Allreduce(MPI_IN_PLACE, static_cast<char*>(data) + at * bytes, count, type, MPI_SUM,
                    MPI_COMM_WORLD);
    }
  }

  int rank_ = 0, size_ = 1;
  bool owns_mpi_ = false;
};

}  // namespace fourierft::dist
