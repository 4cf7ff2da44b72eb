// fourierft/dist/world.hpp — dist::world(): the example programs' communicator, MPI when the program
// was launched by mpirun / srun and built with FOURIERFT_WITH_MPI, else one process.
#pragma once

// Usage, first thing in main (before the try block, so that its catch can still abort the others):
//   dist::World world = dist::world(argc, argv);  // ranks != 0 print nothing on stdout from here
//   try { ... train::Run run(..., {..., .comm = &world.comm()}); ... }
//   catch (const std::exception& e) { return world.fail(train::report_error("prog", e)); }
// Without FOURIERFT_WITH_MPI this header needs no MPI; under mpirun such a program refuses to train
// (world.comm() throws: P independent copies would each train on all the data and overwrite each
// other's --out).

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "fourierft/core/error.hpp"
#include "fourierft/dist/comm.hpp"
#if defined(FOURIERFT_WITH_MPI) && FOURIERFT_WITH_MPI
#include "fourierft/dist/mpi.hpp"
#endif

namespace fourierft::dist {

// The process count an MPI launcher announced in the environment (Open MPI, PMI / MPICH, Slurm),
// or 0 when the program was started directly.
inline int launcher_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"})
    if (const char* value = std::getenv(name)) return std::atoi(value);
  return 0;
}

// The communicator and the exit path of a program's main.
class World {
 public:
  explicit World(std::unique_ptr<Communicator> comm, int launched_size = 0)
      : comm_(std::move(comm)), launched_size_(launched_size) {
    if (comm_->rank() != 0 && std::freopen("/dev/null", "w", stdout) == nullptr)
      std::fprintf(stderr, "rank %d: cannot silence stdout\n", comm_->rank());
  }
  // ValueError when mpirun started several processes but this build has no MPI.
  Communicator& comm() {
    check(launched_size_ <= 1 || comm_->size() > 1, "this program was started as one of ",
          launched_size_, " MPI processes but was built without MPI (configure with ",
          "-DFOURIERFT_WITH_MPI=ON, libopenmpi-dev installed), so every process would train alone ",
          "on all the data: run it without mpirun");
    return *comm_;
  }
  int rank() const { return comm_->rank(); }
  int size() const { return comm_->size(); }
  // The exit status `code` of a failed main: with several ranks, MPI_Abort ends them all (the
  // failing rank has printed why on stderr).
  int fail(int code) {
    if (comm_->size() > 1) {
      std::fprintf(stderr, "rank %d of %d failed: stopping every rank\n", comm_->rank(),
                   comm_->size());
      std::fflush(stderr);
      comm_->abort(code);
    }
    return code;
  }

 private:
  std::unique_ptr<Communicator> comm_;
  int launched_size_ = 0;
};

inline World world(int& argc, char**& argv) {
#if defined(FOURIERFT_WITH_MPI) && FOURIERFT_WITH_MPI
  if (launcher_size() > 0) return World(std::make_unique<MpiCommunicator>(argc, argv));
#else
  (void)argc;
  (void)argv;
#endif
  return World(std::make_unique<SingleProcess>(), launcher_size());
}

}  // namespace fourierft::dist
