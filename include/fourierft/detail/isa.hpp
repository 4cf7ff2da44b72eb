// fourierft/detail/isa.hpp — run-time ISA dispatch for fourierft's own loops: one kernel body
// built for plain x86-64, AVX2 and AVX-512, the level picked once by the CPU (or FOURIERFT_ISA).
#pragma once

// How: run_dispatched(kernel) calls kernel() from one of three wrappers, each [[gnu::flatten]] so
// the kernel and everything it calls are inlined into it and compiled for the wrapper's target
// (like GCC's target_clones, but with the level chosen by us, so tests can run every level in one
// process). Every wrapper is built with fp-contract=off: AVX-512F has its own FMA instructions, and
// a contracted a·b + c rounds once instead of twice. No wrapper reassociates (no -ffast-math), so
// each level does the same IEEE operations in the same order and results are bit-identical across
// levels; only the vector width changes. OpenMP regions inside a kernel are outlined before
// inlining and so stay baseline: call run_dispatched inside the parallel loop, around a row or a
// block, never around the loop.

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace fourierft::detail {

enum class Isa { baseline = 0, avx2 = 1, avx512 = 2 };

inline const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    default: return "baseline";
  }
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define FOURIERFT_ISA_DISPATCH 1
#endif

// The highest level this CPU runs: avx512 needs AVX-512 F, BW, VL and DQ (x86-64-v4's set).
inline Isa detected_isa() {
#ifdef FOURIERFT_ISA_DISPATCH
  static const Isa detected = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
      return Isa::avx512;
    if (__builtin_cpu_supports("avx2")) return Isa::avx2;
    return Isa::baseline;
  }();
  return detected;
#else
  return Isa::baseline;
#endif
}

// The level in use. Starts at detected_isa(), lowered by the environment variable
// FOURIERFT_ISA=baseline|avx2|avx512 (read once). A level above the CPU's, or an unknown value,
// is reported on stderr and ignored (an exception here could fire inside an OpenMP region).
inline Isa& active_isa_slot() {
  static Isa active = [] {
    const Isa detected = detected_isa();
    const char* env = std::getenv("FOURIERFT_ISA");
    if (env == nullptr || *env == '\0') return detected;
    const std::string_view value(env);
    Isa wanted = detected;
    if (value == "baseline") wanted = Isa::baseline;
    else if (value == "avx2") wanted = Isa::avx2;
    else if (value == "avx512") wanted = Isa::avx512;
    else {
      std::fprintf(stderr, "fourierft: FOURIERFT_ISA=%s is not baseline, avx2 or avx512; using %s\n",
                   env, isa_name(detected));
      return detected;
    }
    if (wanted > detected) {
      std::fprintf(stderr, "fourierft: FOURIERFT_ISA=%s but this CPU supports up to %s; using %s\n",
                   env, isa_name(detected), isa_name(detected));
      return detected;
    }
    return wanted;
  }();
  return active;
}

inline Isa active_isa() { return active_isa_slot(); }

// For tests and benchmarks: use `isa` from now on (clamped to detected_isa()); returns the old level.
// Not thread-safe: call it outside parallel regions.
inline Isa set_active_isa(Isa isa) {
  const Isa old = active_isa_slot();
  active_isa_slot() = isa > detected_isa() ? detected_isa() : isa;
  return old;
}

#ifdef FOURIERFT_ISA_DISPATCH
template <class Kernel>
[[gnu::flatten, gnu::optimize("fp-contract=off")]] void run_baseline(Kernel& kernel) {
  kernel();
}
template <class Kernel>
[[gnu::target("avx2"), gnu::flatten, gnu::optimize("fp-contract=off")]] void run_avx2(
    Kernel& kernel) {
  kernel();
}
template <class Kernel>
[[gnu::target("avx512f,avx512bw,avx512vl,avx512dq,prefer-vector-width=512"), gnu::flatten,
  gnu::optimize("fp-contract=off")]] void
run_avx512(Kernel& kernel) {
  kernel();
}
#endif

// kernel() (no arguments, returns nothing; capture by reference) built for the active level.
template <class Kernel>
inline void run_dispatched(Kernel&& kernel) {
#ifdef FOURIERFT_ISA_DISPATCH
  switch (active_isa()) {
    case Isa::avx512: run_avx512(kernel); return;
    case Isa::avx2: run_avx2(kernel); return;
    default: run_baseline(kernel); return;
  }
#else
  kernel();
#endif
}

}  // namespace fourierft::detail
