// fourierft/core/memory.hpp — reuse_freed_memory(): keep freed activation memory in the process, so
// a training step does not page-fault its activations in again every step.
#pragma once

// A training step allocates and frees the same large buffers every time (activations, their
// gradients, GEMM outputs). glibc's malloc gives freed memory back to the kernel — blocks above
// its mmap threshold with munmap, and the top of the heap once more than M_TRIM_THRESHOLD is free
// — so the next step touches fresh pages and takes a page fault per 4 KiB. GPT-2 small at 8 × 128
// tokens took ~280k minor faults per step that way; on the 2-core VM of docs/performance.md that
// was ~20% of the step. reuse_freed_memory() fixes the mmap threshold at glibc's maximum (32 MiB:
// larger blocks are still mmap'd) and turns trimming off (-1, mallopt(3)), so freed blocks are
// reused. (A 1 GiB trim threshold was not enough: a LoRA step on GPT-2 frees more than that at
// its end, the heap was trimmed, and the next step took 262k faults again.) The price: the
// process keeps its peak heap size until it exits (what PyTorch's caching allocator does too).
// Process-wide; call once at start (the example programs and benchmarks do). No-op without glibc.

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace fourierft {

// Returns whether the allocator settings were applied.
inline bool reuse_freed_memory() {
#if defined(__GLIBC__)
  const int mmap_ok = mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
  const int trim_ok = mallopt(M_TRIM_THRESHOLD, -1);  // -1: never give the heap's top back
  return mmap_ok == 1 && trim_ok == 1;
#else
  return false;
#endif
}

}  // namespace fourierft
