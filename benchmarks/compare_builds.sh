#!/usr/bin/env bash
# compare_builds.sh — the same training steps (bench_step) from two builds of fourierft, run in
# alternating pairs so that load changes hit both alike: round r runs A then B when r is odd, B
# then A when even (whichever runs second in a pair tends to be slower on these VMs). Prints each
# pair and, per case, both medians and the ratio B / A of ms per step (> 1: B is slower).
#
#   benchmarks/compare_builds.sh OLD_BUILD NEW_BUILD [--rounds 10] [-- bench_step args]
#   benchmarks/compare_builds.sh build-0773595 build -- --case gpt2/fourierft --steps 3
#
# Threads: FOURIERFT_NUM_THREADS (default 2) for both.
set -euo pipefail
[[ $# -ge 2 ]] || { echo "usage: $0 OLD_BUILD NEW_BUILD [--rounds N] [-- bench_step args]" >&2; exit 2; }
old="$1/benchmarks/bench_step"
new="$2/benchmarks/bench_step"
shift 2
rounds=10
if [[ $# -gt 0 && "$1" == "--rounds" ]]; then rounds="$2"; shift 2; fi
[[ $# -gt 0 && "$1" == "--" ]] && shift
for bench in "$old" "$new"; do
  [[ -x "$bench" ]] || { echo "compare_builds.sh: $bench not found (build the bench_step target)" >&2; exit 1; }
done
export FOURIERFT_NUM_THREADS="${FOURIERFT_NUM_THREADS:-2}"

# The cases: the --case arguments given, else bench_step's defaults.
cases=()
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --case) cases+=("$2"); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
[[ ${#cases[@]} -gt 0 ]] || cases=(gpt2/fourierft roberta/fourierft gpt2/lora roberta/lora)

echo "# $(lscpu | sed -n 's/^Model name: *//p'), $FOURIERFT_NUM_THREADS threads, $rounds rounds"
echo -e "round\tcase\tA_ms\tB_ms\tB/A"
results="$(mktemp)"
trap 'rm -f "$results"' EXIT
ms_of() {  # bench_step's ms_per_step column for one case
  "$1" --case "$2" --no-header "${args[@]}" | tail -1 | cut -f7
}
for ((r = 1; r <= rounds; ++r)); do
  for c in "${cases[@]}"; do
    if ((r % 2)); then a=$(ms_of "$old" "$c"); b=$(ms_of "$new" "$c")
    else b=$(ms_of "$new" "$c"); a=$(ms_of "$old" "$c"); fi
    echo -e "$c\t$a\t$b" >> "$results"
    awk -v r="$r" -v c="$c" -v a="$a" -v b="$b" 'BEGIN { printf "%d\t%s\t%s\t%s\t%.3f\n", r, c, a, b, b / a }'
  done
done
echo -e "\ncase\tmedian_A_ms\tmedian_B_ms\tratio"
for c in "${cases[@]}"; do
  awk -F'\t' -v c="$c" 'BEGIN { n = 0 } $1 == c { a[n] = $2 + 0; b[n] = $3 + 0; ++n }
    function median(v, k,   i, j, t) {
      for (i = 0; i < k; ++i) for (j = i + 1; j < k; ++j) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
      return k % 2 ? v[int(k / 2)] : (v[k / 2 - 1] + v[k / 2]) / 2
    }
    END { ma = median(a, n); mb = median(b, n); printf "%s\t%.1f\t%.1f\t%.3f\n", c, ma, mb, mb / ma }' "$results"
done
