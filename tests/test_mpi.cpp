// tests/test_mpi.cpp — data-parallel training (include/fourierft/dist/): sharding, the settings
// hash, the one-buffer gradient all-reduce, and, with MPI, real runs under `mpirun -np 2 / 4`.
//
// Three kinds of test case:
//   - plain ones (no MPI needed): the helpers of dist/comm.hpp, with a stand-in communicator;
//   - "mpi ranks: ..." ones, which do their work only when started by mpirun (CTest's mpi_np2 /
//     mpi_np4 run this executable that way) and return at once otherwise;
//   - "mpirun: ..." ones, which start mpirun themselves (finetune_glue on the tiny RoBERTa, this
//     executable's rank cases) and compare what the runs wrote. Built without MPI, or without
//     mpirun on PATH, they report that they are skipped and pass.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fourierft/dist/comm.hpp"
#include "fourierft/dist/world.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/io/safetensors.hpp"
#include "process.hpp"

using namespace fourierft;
namespace fs = std::filesystem;

namespace {

// Stands in for P identical ranks: a sum all-reduce multiplies by P; records the buffer it saw.
struct IdenticalRanks final : dist::Communicator {
  int ranks = 3;
  std::vector<float> seen;
  int rank() const override { return 0; }
  int size() const override { return ranks; }
  void barrier() override {}
  void all_reduce_sum(std::span<float> data) override {
    seen.assign(data.begin(), data.end());
    for (float& v : data) v *= static_cast<float>(ranks);
  }
  void all_reduce_sum(std::span<double> data) override {
    for (double& v : data) v *= ranks;
  }
  int all_reduce_max(int value) override { return value; }
  std::vector<std::uint64_t> all_gather(std::uint64_t value) override {
    return std::vector<std::uint64_t>(static_cast<std::size_t>(ranks), value);
  }
  void broadcast(std::string&) override {}
  void broadcast(std::span<float>) override {}
  void abort(int) override {}
};

}  // namespace

TEST_CASE("shard: the ranks' slices are the micro-batch, in order, as even as its size allows") {
  for (int size : {1, 2, 3, 4}) {
    for (int m : {0, 1, 2, 7, 8, 32}) {
      std::vector<Index> batch(static_cast<std::size_t>(m));
      for (int i = 0; i < m; ++i) batch[static_cast<std::size_t>(i)] = 100 + i;
      std::vector<Index> joined;
      std::size_t smallest = batch.size(), largest = 0;
      for (int r = 0; r < size; ++r) {
        const std::span<const Index> part = dist::shard(std::span<const Index>(batch), r, size);
        joined.insert(joined.end(), part.begin(), part.end());
        smallest = std::min(smallest, part.size());
        largest = std::max(largest, part.size());
      }
      INFO("size ", size, ", m ", m);
      CHECK(joined == batch);
      CHECK(largest - smallest <= 1);
      if (m % size == 0) CHECK(smallest == static_cast<std::size_t>(m / size));
    }
  }
}

TEST_CASE("check_batch_divisible: names the batch, the process count and the fix") {
  CHECK_NOTHROW(dist::check_batch_divisible(8, 4));
  CHECK_THROWS_WITH_AS(dist::check_batch_divisible(6, 4),
                       doctest::Contains("option --batch 6 is not divisible by the 4 MPI processes"),
                       ValueError);
}

TEST_CASE("settings hash: equal text, equal hash; one changed option changes it") {
  const io::Json a = {{"lr", 0.05}, {"batch", 8}}, b = {{"lr", 0.06}, {"batch", 8}};
  CHECK(dist::settings_hash(a.dump()) == dist::settings_hash(io::Json(a).dump()));
  CHECK(dist::settings_hash(a.dump()) != dist::settings_hash(b.dump()));
  IdenticalRanks ranks;
  CHECK_NOTHROW(dist::check_same_settings(ranks, a));
}

TEST_CASE("all_reduce_gradients: one buffer in parameter order, flags, extra; absent grads stay absent") {
  Var<float> a = Var<float>::parameter(Tensor<float>({2})), b = Var<float>::parameter(Tensor<float>({3}));
  Var<float> unused = Var<float>::parameter(Tensor<float>({2}));
  a.grad().data()[0] = 1;
  a.grad().data()[1] = 2;
  for (int i = 0; i < 3; ++i) b.grad().data()[static_cast<std::size_t>(i)] = 10.0f + i;
  std::vector<Var<float>> params = {a, unused, b};
  float loss = 0.5f;
  IdenticalRanks ranks;
  dist::all_reduce_gradients(ranks, params, std::span<float>(&loss, 1));
  // [a | unused (zeros) | b | flags a, unused, b | loss]
  const std::vector<float> expected = {1, 2, 0, 0, 10, 11, 12, 1, 0, 1, 0.5f};
  CHECK(ranks.seen == expected);
  CHECK(a.grad().data()[1] == 6.0f);
  CHECK(b.grad().data()[2] == 36.0f);
  CHECK_FALSE(unused.has_grad());  // no rank had one: the optimizer skips it, as in one process
  CHECK(loss == 1.5f);
}

TEST_CASE("world: without an MPI launcher it is one quiet-free process") {
  if (dist::launcher_size() > 0) return;  // under mpirun: the rank cases below cover it
  int argc = 1;
  char name[] = "test_mpi";
  char* args[] = {name, nullptr};
  char** argv = args;
  dist::World world = dist::world(argc, argv);
  CHECK(world.size() == 1);
  CHECK(world.comm().is_root());
}

#if defined(FOURIERFT_WITH_MPI) && FOURIERFT_WITH_MPI

// ---------------------------------------------------------------------------
// Run by mpirun (CTest mpi_np2, mpi_np4): the collectives on real ranks. One MPI session per
// process, so one test case does all of it.
TEST_CASE("mpi ranks: collectives, sharded gradients, broadcast, settings check") {
  if (dist::launcher_size() == 0) return;  // plain run: nothing to do
  int argc = 1;
  char name[] = "test_mpi";
  char* args[] = {name, nullptr};
  char** argv = args;
  dist::World world = dist::world(argc, argv);
  dist::Communicator& comm = world.comm();
  const int P = comm.size(), r = comm.rank();
  REQUIRE(P == dist::launcher_size());

  // Sum and max.
  std::vector<double> x = {1.0 * r, 1.0};
  comm.all_reduce_sum(x);
  CHECK(x[0] == P * (P - 1) / 2.0);
  CHECK(x[1] == P);
  CHECK(comm.all_reduce_max(r == P - 1 ? 7 : r) == std::max(7, P - 2));

  // A gradient computed on shards adds up to the one-process gradient of the mean loss:
  // loss(w) = mean_i (w · x_i)^2 over a micro-batch of 8 rows, x_i = (i, 1); dL/dw = mean 2 (w·x) x.
  const std::vector<Index> batch = {0, 1, 2, 3, 4, 5, 6, 7};
  const float w0 = 0.25f, w1 = -1.0f;
  Var<float> w = Var<float>::parameter(Tensor<float>({2}));
  w.value().data()[0] = r == 0 ? w0 : 99.0f;  // only rank 0's start counts: broadcast below
  w.value().data()[1] = r == 0 ? w1 : 99.0f;
  std::vector<Var<float>> params = {w};
  dist::broadcast_values(comm, params);
  CHECK(w.value().data()[0] == w0);
  CHECK(w.value().data()[1] == w1);
  double expected0 = 0, expected1 = 0;
  for (Index i : batch) {
    const double z = w0 * double(i) + w1;
    expected0 += 2 * z * double(i) / 8;
    expected1 += 2 * z / 8;
  }
  for (Index i : dist::shard(std::span<const Index>(batch), r, P)) {  // weight 1/8 per row
    const float z = w0 * float(i) + w1;
    w.grad().data()[0] += 2 * z * float(i) / 8;
    w.grad().data()[1] += 2 * z / 8;
  }
  dist::all_reduce_gradients(comm, params);
  CHECK(w.grad().data()[0] == doctest::Approx(expected0).epsilon(1e-6));
  CHECK(w.grad().data()[1] == doctest::Approx(expected1).epsilon(1e-6));

  // Broadcast of bytes longer than this rank's string.
  std::string bytes = r == 0 ? std::string(1000, 'x') + "end" : "short";
  comm.broadcast(bytes);
  CHECK(bytes.size() == 1003);
  CHECK(bytes.substr(1000) == "end");

  // Settings: equal everywhere passes; one rank's other value is an error on every rank.
  CHECK_NOTHROW(dist::check_same_settings(comm, {{"lr", 0.05}}));
  if (P > 1)
    CHECK_THROWS_WITH_AS(dist::check_same_settings(comm, {{"lr", r == P - 1 ? 0.5 : 0.05}}),
                         doctest::Contains(str_cat("MPI ranks ", P - 1, " were started with other settings").c_str()),
                         ValueError);
  comm.barrier();
}

// Run by "mpirun: a rank that dies ...": rank 1 exits at once; rank 0 waits in an all-reduce that
// can never complete. The job must end (mpirun notices the exit), not hang.
TEST_CASE("mpi ranks: one rank dies") {
  if (dist::launcher_size() == 0 || std::getenv("FOURIERFT_TEST_DIE") == nullptr) return;
  int argc = 1;
  char name[] = "test_mpi";
  char* args[] = {name, nullptr};
  char** argv = args;
  dist::World world = dist::world(argc, argv);
  if (world.rank() == 1) _exit(3);
  std::vector<float> x(4, 1.0f);
  world.comm().all_reduce_sum(x);
  FAIL("the all-reduce completed although rank 1 had died");
}

// ---------------------------------------------------------------------------
// Runs started from here.
namespace {

const fs::path fixtures = FOURIERFT_FIXTURES_DIR;
const fs::path work = fs::path(FOURIERFT_BINARY_DIR) / "test_mpi";

bool have_mpirun() {
  static const bool found = std::system("'" MPIEXEC "' --version > /dev/null 2>&1") == 0;
  return found;
}

std::vector<std::string> mpirun_args(int np, std::vector<std::string> rest) {
  std::vector<std::string> a = {"--allow-run-as-root", "--oversubscribe", "--bind-to", "none",
                                "-np", std::to_string(np)};
  a.insert(a.end(), rest.begin(), rest.end());
  return a;
}

// mpirun `args`, ended by `timeout` after 60 s if it hangs (status 124 or 137: the case fails,
// the suite goes on).
testing::Run mpirun(const std::vector<std::string>& args, const fs::path& log) {
  return testing::run("timeout", testing::concat({"-k", "5", "60", MPIEXEC}, args), log);
}

// A fixture model with dropout off: masks are drawn per batch, so with dropout a sharded batch
// would draw other masks than one process (docs/scaling.md); without, the runs must agree.
fs::path without_dropout(const std::string& model, const std::vector<std::string>& keys) {
  const fs::path dir = work / (model + "-no-dropout");
  if (!fs::exists(dir / "config.json")) {
    fs::create_directories(dir);
    fs::copy(fixtures / "models" / model, dir, fs::copy_options::recursive |
                                                   fs::copy_options::overwrite_existing);
    io::Json config = io::read_json(dir / "config.json");
    for (const std::string& key : keys) config[key] = 0.0;
    std::ofstream(dir / "config.json") << config.dump(2);
  }
  return dir;
}
fs::path model_without_dropout() {
  return without_dropout("roberta-bytes", {"hidden_dropout_prob", "attention_probs_dropout_prob"});
}

std::vector<std::string> glue_args(const fs::path& out) {
  return {FINETUNE_GLUE, "--model", model_without_dropout().string(), "--task", "sst2",
          "--data", (fixtures / "data/glue/sst2").string(), "--limit-train", "42",
          "--limit-dev", "16", "--n", "32", "--epochs", "2", "--batch", "8", "--grad-accum", "2",
          "--max-len", "48", "--log-every", "1", "--seed", "3", "--threads", "1",
          "--out", out.string()};
}

// `program args` with `np` processes (0: started directly, no mpirun); output in out + ".log".
testing::Run launch(int np, std::vector<std::string> args, const fs::path& out) {
  if (np == 0) {
    const std::string program = args.front();
    args.erase(args.begin());
    return testing::run(program, args, out.string() + ".log");
  }
  return mpirun(mpirun_args(np, args), out.string() + ".log");
}
// finetune_glue with `np` processes.
testing::Run glue(int np, const fs::path& out, std::vector<std::string> more = {}) {
  return launch(np, testing::concat(glue_args(out), more), out);
}

std::vector<double> step_losses(const fs::path& out) {
  std::vector<double> losses;
  for (const io::Json& e : testing::events(out / "log.jsonl", "step"))
    losses.push_back(e.at("loss").get<double>());
  return losses;
}

// Every tensor of a safetensors file, in name order, as one list of floats.
std::vector<float> file_values(const fs::path& path) {
  const io::SafetensorsFile file(path);
  std::vector<float> values;
  for (const std::string& name : file.sorted_names()) {
    const Tensor<float> t = file.load<float>(name);
    values.insert(values.end(), t.data().begin(), t.data().end());
  }
  return values;
}
std::vector<float> adapter_values(const fs::path& out) {
  return file_values(out / "adapter" / "adapter_model.safetensors");
}

// Floating-point tolerance of data-parallel vs one process (docs/scaling.md): the same sums in
// another order (per-shard partial sums, then the all-reduce), through 6 AdamW steps.
constexpr double loss_tolerance = 1e-6;     // relative, per logged step loss (measured: <= 1e-7)
constexpr double adapter_tolerance = 1e-5;  // absolute, per adapter value (|values| <= 3.3; measured: <= 5e-7)

void check_close(const fs::path& a, const fs::path& b, std::size_t steps = 6) {
  const std::vector<double> la = step_losses(a), lb = step_losses(b);
  REQUIRE(la.size() == lb.size());
  REQUIRE(la.size() == steps);
  for (std::size_t i = 0; i < la.size(); ++i) {
    INFO("step ", i + 1, ": ", la[i], " vs ", lb[i]);
    CHECK(std::abs(la[i] - lb[i]) <= loss_tolerance * std::abs(la[i]));
  }
  const std::vector<float> va = adapter_values(a), vb = adapter_values(b);
  REQUIRE(va.size() == vb.size());
  REQUIRE(!va.empty());
  double worst = 0;
  for (std::size_t i = 0; i < va.size(); ++i) worst = std::max(worst, double(std::abs(va[i] - vb[i])));
  INFO("largest adapter difference ", worst, " between ", a.string(), " and ", b.string());
  CHECK(worst <= adapter_tolerance);
}

}  // namespace

TEST_CASE("mpirun: 1, 2 and 4 processes train the same adapter; the same count twice, bit for bit") {
  if (!have_mpirun()) {
    MESSAGE("skipped: " MPIEXEC " not found");
    return;
  }
  const fs::path dir = testing::fresh_dir(work, "equivalence");
  const testing::Run one = glue(0, dir / "one");
  INFO(one.output);
  REQUIRE(one.status == 0);
  for (const int np : {2, 4}) {
    const fs::path out = dir / ("np" + std::to_string(np));
    const testing::Run r = glue(np, out);
    INFO(r.output);
    REQUIRE(r.status == 0);
    CHECK(testing::events(out / "log.jsonl", "start").at(0).at("processes") == np);
    check_close(dir / "one", out);
  }
  const testing::Run again = glue(2, dir / "np2-again");
  INFO(again.output);
  REQUIRE(again.status == 0);
  CHECK(step_losses(dir / "np2") == step_losses(dir / "np2-again"));
  CHECK(testing::read_file(dir / "np2/adapter/adapter_model.safetensors") ==
        testing::read_file(dir / "np2-again/adapter/adapter_model.safetensors"));
}

TEST_CASE("mpirun: finetune_e2e (token-mean loss) and finetune_vit (augmentation) agree with 1 process") {
  if (!have_mpirun()) {
    MESSAGE("skipped: " MPIEXEC " not found");
    return;
  }
  const fs::path dir = testing::fresh_dir(work, "e2e-vit");
  // E2E: 30 examples in micro-batches of 4 (the last holds 2), so shards differ in token counts.
  const fs::path gpt2 = without_dropout("gpt2-bytes", {"embd_pdrop", "resid_pdrop", "attn_pdrop"});
  auto e2e = [&](const fs::path& out) {
    return std::vector<std::string>{
        FINETUNE_E2E, "--model", gpt2.string(), "--data", (fixtures / "data/e2e").string(),
        "--limit-train", "30", "--limit-test", "1", "--n", "32", "--epochs", "1", "--batch", "4",
        "--grad-accum", "2", "--max-len", "160", "--beam", "1", "--max-new-tokens", "2",
        "--log-every", "1", "--seed", "5", "--threads", "1", "--out", out.string()};
  };
  for (const int np : {0, 2}) {
    const fs::path out = dir / ("e2e-np" + std::to_string(np));
    const testing::Run r = launch(np, e2e(out), out);
    INFO(r.output);
    REQUIRE(r.status == 0);
  }
  check_close(dir / "e2e-np0", dir / "e2e-np2", 4);
  // ViT: random crops and flips per micro-batch (the fixture has no dropout).
  auto vit = [&](const fs::path& out) {
    return std::vector<std::string>{
        FINETUNE_VIT, "--model", (fixtures / "models/vit").string(), "--data",
        (fixtures / "data/cifar10-mini").string(), "--limit-train", "24", "--limit-test", "6",
        "--n", "100", "--epochs", "1", "--batch", "6", "--grad-accum", "2", "--log-every", "1",
        "--seed", "11", "--threads", "1", "--out", out.string()};
  };
  for (const int np : {0, 2}) {
    const fs::path out = dir / ("vit-np" + std::to_string(np));
    const testing::Run r = launch(np, vit(out), out);
    INFO(r.output);
    REQUIRE(r.status == 0);
  }
  check_close(dir / "vit-np0", dir / "vit-np2", 2);
}

TEST_CASE("mpirun: pretrain (masked LM, causal LM, images) agrees with 1 process") {
  if (!have_mpirun()) {
    MESSAGE("skipped: " MPIEXEC " not found");
    return;
  }
  const fs::path dir = testing::fresh_dir(work, "pretrain");
  // Every weight trains here (AdamW, 2-5 steps): reduction-order differences of ~1e-7 in a
  // gradient can move an update by up to lr where a gradient is near 0, so weights get a looser
  // tolerance than adapters (measured: largest difference 6e-8 mlm, 2.2e-7 clm, 5.3e-7 image).
  const std::vector<std::string> text = {"--text", (fixtures / "data/glue/sst2/train.tsv").string(),
                                         "--layers", "1", "--hidden", "32", "--heads", "4",
                                         "--batch", "8", "--grad-accum", "2", "--epochs", "1",
                                         "--dropout", "0", "--lr", "1e-3", "--log-every", "1",
                                         "--seed", "6", "--threads", "1"};
  const std::vector<std::vector<std::string>> modes = {
      testing::concat({PRETRAIN, "--mode", "mlm", "--tokenizer",
                       (fixtures / "models/roberta-bytes").string(), "--max-len", "64"}, text),
      testing::concat({PRETRAIN, "--mode", "clm", "--tokenizer",
                       (fixtures / "models/gpt2-bytes").string(), "--max-len", "64"}, text),
      {PRETRAIN, "--mode", "image", "--data", (fixtures / "data/cifar10-mini").string(),
       "--layers", "1", "--hidden", "32", "--heads", "4", "--image-size", "16", "--patch", "4",
       "--batch", "6", "--grad-accum", "2", "--epochs", "1", "--lr", "1e-3", "--log-every", "1",
       "--seed", "6", "--threads", "1"}};
  for (std::size_t k = 0; k < modes.size(); ++k) {
    const fs::path one = dir / ("mode" + std::to_string(k) + "-np0"),
                   two = dir / ("mode" + std::to_string(k) + "-np2");
    for (const auto& [np, out] : {std::pair{0, one}, std::pair{2, two}}) {
      const testing::Run r = launch(np, testing::concat(modes[k], {"--out", out.string()}), out);
      INFO(r.output);
      REQUIRE(r.status == 0);
    }
    const std::vector<double> la = step_losses(one), lb = step_losses(two);
    REQUIRE(la.size() >= 2);
    REQUIRE(la.size() == lb.size());
    for (std::size_t i = 0; i < la.size(); ++i) {
      INFO(modes[k][2], " step ", i + 1, ": ", la[i], " vs ", lb[i]);
      CHECK(std::abs(la[i] - lb[i]) <= 1e-5 * std::abs(la[i]));
    }
    const std::vector<float> wa = file_values(one / "model/model.safetensors"),
                             wb = file_values(two / "model/model.safetensors");
    REQUIRE(wa.size() == wb.size());
    double worst = 0;
    for (std::size_t i = 0; i < wa.size(); ++i) worst = std::max(worst, double(std::abs(wa[i] - wb[i])));
    INFO(modes[k][2], ": largest weight difference ", worst);
    CHECK(worst <= 1e-5);
  }
}

TEST_CASE("mpirun: a state saved by 2 processes resumes in 1, and one saved by 1 resumes in 4") {
  if (!have_mpirun()) {
    MESSAGE("skipped: " MPIEXEC " not found");
    return;
  }
  const fs::path dir = testing::fresh_dir(work, "resume");
  const testing::Run whole = glue(0, dir / "whole");
  REQUIRE(whole.status == 0);
  // 2 processes stop after step 2, one process finishes.
  const testing::Run first = glue(2, dir / "a", {"--stop-after", "2"});
  INFO(first.output);
  CHECK(first.status == 130);
  CHECK(fs::exists(dir / "a/state/state.json"));
  const testing::Run rest = glue(0, dir / "a", {"--resume"});
  INFO(rest.output);
  REQUIRE(rest.status == 0);
  check_close(dir / "whole", dir / "a");
  // One process stops after step 3 (mid-epoch), 4 processes finish.
  REQUIRE(glue(0, dir / "b", {"--stop-after", "3"}).status == 130);
  const testing::Run rest4 = glue(4, dir / "b", {"--resume"});
  INFO(rest4.output);
  REQUIRE(rest4.status == 0);
  check_close(dir / "whole", dir / "b");
}

TEST_CASE("mpirun: Ctrl-C (SIGINT to mpirun) stops every rank after one step; --resume is bit-identical") {
  if (!have_mpirun()) {
    MESSAGE("skipped: " MPIEXEC " not found");
    return;
  }
  const fs::path dir = testing::fresh_dir(work, "interrupt");
  // 450 steps (150 epochs of 3), so the signal lands mid-run.
  const std::vector<std::string> more = {"--epochs", "150", "--log-every", "1"};
  const testing::Run whole = glue(2, dir / "whole", more);
  INFO(whole.output);
  REQUIRE(whole.status == 0);

  // mpirun started in the background; SIGINT once rank 0 has logged a step.
  const fs::path out = dir / "cut";
  std::vector<std::string> args = testing::concat({MPIEXEC}, mpirun_args(2, testing::concat(glue_args(out), more)));
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t files;
  posix_spawn_file_actions_init(&files);
  const std::string log = (dir / "cut.log").string();
  posix_spawn_file_actions_addopen(&files, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&files, 1, 2);
  pid_t pid = 0;
  REQUIRE(posix_spawnp(&pid, argv[0], &files, nullptr, argv.data(), environ) == 0);
  posix_spawn_file_actions_destroy(&files);
  const auto start = std::chrono::steady_clock::now();
  bool stepped = false;
  while (!stepped && std::chrono::steady_clock::now() - start < std::chrono::seconds(60)) {
    stepped = fs::exists(out / "log.jsonl") &&
              testing::read_file(out / "log.jsonl").find("\"event\":\"step\"") != std::string::npos;
    if (!stepped) ::usleep(2000);
  }
  REQUIRE(stepped);
  ::kill(pid, SIGINT);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  INFO(testing::read_file(log));
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) != 0);  // rank 0's 128 + signal
  const auto stops = testing::events(out / "log.jsonl", "interrupt");
  REQUIRE(stops.size() == 1);
  const auto stopped_at = stops[0].at("step").get<std::int64_t>();
  CHECK(stopped_at < 450);
  CHECK(fs::exists(out / "state" / "state.json"));

  const testing::Run rest = glue(2, out, testing::concat(more, {"--resume"}));
  INFO(rest.output);
  REQUIRE(rest.status == 0);
  CHECK(step_losses(out) == step_losses(dir / "whole"));
  CHECK(testing::read_file(out / "adapter/adapter_model.safetensors") ==
        testing::read_file(dir / "whole/adapter/adapter_model.safetensors"));
}

TEST_CASE("mpirun: finetune_digits with 2 processes trains, saves and reloads its adapters") {
  if (!have_mpirun()) {
    MESSAGE("skipped: " MPIEXEC " not found");
    return;
  }
  const fs::path dir = testing::fresh_dir(work, "digits");
  const testing::Run r = mpirun(
      mpirun_args(2, {FINETUNE_DIGITS, "--epochs", "2", "--threads", "1", "--out",
                               (dir / "out").string()}), dir / "digits.log");
  INFO(r.output);
  CHECK(r.status == 0);
  CHECK(r.output.find("(identical)") != std::string::npos);
  CHECK(fs::exists(dir / "out/fourierft/adapter_model.safetensors"));
}

TEST_CASE("mpirun: bad input — batch not divisible, ranks with other arguments, a rank that dies") {
  if (!have_mpirun()) {
    MESSAGE("skipped: " MPIEXEC " not found");
    return;
  }
  const fs::path dir = testing::fresh_dir(work, "errors");
  const testing::Run odd = glue(4, dir / "odd", {"--batch", "6"});
  CHECK(odd.status != 0);
  CHECK(odd.output.find("option --batch 6 is not divisible by the 4 MPI processes") !=
        std::string::npos);

  // MPMD: rank 1 gets another --lr.
  std::vector<std::string> a = glue_args(dir / "mixed"), b = a;
  b.insert(b.end(), {"--lr", "0.5"});
  std::vector<std::string> args = {"--allow-run-as-root", "--oversubscribe", "-np", "1"};
  args.insert(args.end(), a.begin(), a.end());
  args.insert(args.end(), {":", "-np", "1"});
  args.insert(args.end(), b.begin(), b.end());
  const testing::Run mixed = mpirun(args, dir / "mixed.log");
  INFO(mixed.output);
  CHECK(mixed.status != 0);
  CHECK(mixed.output.find("MPI ranks 1 were started with other settings than rank 0") !=
        std::string::npos);

  // Rank 1 dies while rank 0 waits in an all-reduce: mpirun ends the job and says which rank.
  const auto start = std::chrono::steady_clock::now();
  const testing::Run died = testing::run(
      "env", {"FOURIERFT_TEST_DIE=1", "timeout", "60", MPIEXEC, "--allow-run-as-root",
              "--oversubscribe", "-np", "2", TEST_MPI, "-tc=mpi ranks: one rank dies"},
      dir / "died.log");
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  INFO(died.output);
  CHECK(died.status != 0);
  CHECK(died.status != 124);  // not ended by `timeout`
  CHECK(seconds < 30);
  CHECK(died.output.find("exited with non-zero status") != std::string::npos);
  CHECK(died.output.find(",1]") != std::string::npos);  // Open MPI names it: [[job,1],1]
}

#else

TEST_CASE("mpirun: skipped") {
  MESSAGE("skipped: built without MPI (FOURIERFT_WITH_MPI=OFF or no libopenmpi-dev)");
}

#endif
