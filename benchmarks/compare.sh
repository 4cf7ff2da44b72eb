#!/usr/bin/env bash
# compare.sh — the same training steps in fourierft (bench_step) and in PyTorch
# (pytorch_reference.py), each run with default OpenMP waiting and with OMP_WAIT_POLICY=PASSIVE
# (the faster counts, for both), then one line per case with the ratio PyTorch ms / fourierft ms
# (> 1: fourierft is faster). Cases alternate between the implementations so that load changes hit both alike.
#
#   benchmarks/compare.sh [build-dir] [-- bench args, e.g. --all --steps 3]
#   BUILD=build-perf benchmarks/compare.sh -- --case gpt2/fourierft
#   POLICIES=default benchmarks/compare.sh -- --case tinyllama/fourierft --steps 1   (one policy:
#       the LLaMA-family steps take minutes each)
#   benchmarks/compare.sh -- --bf16 --case gpt2/fourierft --case roberta/fourierft   the BF16
#       compute mode (bench_step --bf16) beside PyTorch's autocast(dtype=torch.bfloat16)
#       (pytorch_reference.py --bf16); both print the method as "fourierft+bf16"
#
# Needs /usr/bin/python3 with torch (Debian's python3-torch) and a build with
# FOURIERFT_BUILD_BENCHMARKS=ON. Threads: FOURIERFT_NUM_THREADS (default 2) for both sides.
set -euo pipefail
program=bench_step
source "$(dirname "$0")/compare_common.sh"

# The case list: --case arguments, else the defaults (plus --all's); other arguments go to both.
parse_cases "" "$@"
if [[ ${#cases[@]} -eq 0 ]]; then
  models=(gpt2 roberta)
  [[ $all -eq 1 ]] && models+=(gpt2-medium vit)
  for m in "${models[@]}"; do for k in fourierft lora full; do cases+=("$m/$k"); done; done
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
print_run_header
policies=(${POLICIES:-default passive})
for c in "${cases[@]}"; do
  for p in "${policies[@]}"; do
    run_side fourierft "$p" "$bench" --no-header --case "$c" "${args[@]}"
    run_side pytorch "$p" "$python" "$here/pytorch_reference.py" --no-header --case "$c" "${args[@]}"
  done
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf 'model\tmethod\tfourierft_ms\tfourierft_policy\tpytorch_ms\tpytorch_policy\tspeedup\tfourierft_rss_mb\tpytorch_rss_mb\tfourierft_gflop_per_s\tgemm_floor_ms\tfloor_ratio\n'
# Best (lowest ms) row per case of each implementation, then the ratio.
awk -F'\t' '
  { split($1, impl, "_"); key = $2 "/" $3; side = impl[1]
    if (!((side, key) in ms) || $7 < ms[side, key]) { ms[side, key] = $7; pol[side, key] = impl[2]; rss[side, key] = $8; gf[side, key] = $11; fl[side, key] = $12; fr[side, key] = $13 }
    if (side == "fourierft" && !(key in seen)) { seen[key] = 1; order[++n] = key } }
  END { for (i = 1; i <= n; ++i) { k = order[i]; split(k, mm, "/")
          if (!(("pytorch", k) in ms)) continue
          printf "%s\t%s\t%.0f\t%s\t%.0f\t%s\t%.2f\t%s\t%s\t%s\t%s\t%s\n", mm[1], mm[2], ms["fourierft", k], pol["fourierft", k],
                 ms["pytorch", k], pol["pytorch", k], ms["pytorch", k] / ms["fourierft", k], rss["fourierft", k], rss["pytorch", k], gf["fourierft", k],
                 fl["fourierft", k], fr["fourierft", k] } }
' "$out/fourierft.tsv" "$out/pytorch.tsv"
