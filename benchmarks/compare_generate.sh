#!/usr/bin/env bash
# compare_generate.sh — GPT-2 small generation in fourierft (bench_generate: KV cache) and in plain
# PyTorch with its KV cache as HF's use_cache=True (pytorch_reference.py --generate; run alone with
# --no-cache it decodes without one), each run with default OpenMP waiting
# and with OMP_WAIT_POLICY=PASSIVE (the faster counts, for both), then one line per case with the
# ratio PyTorch ms / fourierft ms (> 1: fourierft is faster; both generate the same number of
# tokens, so it is also the tokens/s ratio). Runs alternate between the implementations so that
# load changes hit both alike.
#
#   benchmarks/compare_generate.sh [build-dir] [-- args for both, e.g. --new-tokens 16]
#   benchmarks/compare_generate.sh build -- --case beam/1 --case greedy/4
#   benchmarks/compare_generate.sh build -- --all        also beam/4 (slow in PyTorch: minutes)
#
# Cases are mode/batch: greedy/1 greedy/4 beam/1 by default (beam = 10 beams, length penalty 0.8,
# no-repeat 4-grams), prompts of --prompt-len 32 tokens, --new-tokens 64. Needs /usr/bin/python3
# with torch (Debian's python3-torch) and a build with FOURIERFT_BUILD_BENCHMARKS=ON. Threads:
# FOURIERFT_NUM_THREADS (default 2) for both sides.
set -euo pipefail
program=bench_generate
source "$(dirname "$0")/compare_common.sh"

parse_cases "--prompt-len --new-tokens --beams" "$@"
if [[ ${#cases[@]} -eq 0 ]]; then
  cases=(greedy/1 greedy/4 beam/1)
  [[ $all -eq 1 ]] && cases+=(beam/4)
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
print_run_header
for c in "${cases[@]}"; do
  run_side fourierft default "$bench" --no-header --case "$c" "${args[@]}"
  run_side pytorch default "$python" "$here/pytorch_reference.py" --generate --no-header --case "$c" "${args[@]}"
  run_side fourierft passive "$bench" --no-header --case "$c" "${args[@]}"
  run_side pytorch passive "$python" "$here/pytorch_reference.py" --generate --no-header --case "$c" "${args[@]}"
  echo "# load: $(cut -d' ' -f1-3 /proc/loadavg)"
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf 'mode\tbatch\tprompt_len\tnew_tokens\tfourierft_ms\tfourierft_policy\tpytorch_ms\tpytorch_policy\tspeedup\tfourierft_tokens_per_s\tpytorch_tokens_per_s\tfourierft_rss_mb\tpytorch_rss_mb\n'
# Best (lowest ms) row per case of each implementation, then the ratio.
awk -F'\t' '
  { split($1, impl, "_"); key = $2 "/" $3; side = impl[1]
    if (!((side, key) in ms) || $7 < ms[side, key]) { ms[side, key] = $7; pol[side, key] = impl[2]; tps[side, key] = $6; rss[side, key] = $8; len[side, key] = $4; gen[side, key] = $5 }
    if (side == "fourierft" && !(key in seen)) { seen[key] = 1; order[++n] = key } }
  END { for (i = 1; i <= n; ++i) { k = order[i]; split(k, mb, "/")
          if (!(("pytorch", k) in ms)) continue
          if (gen["fourierft", k] != gen["pytorch", k]) printf "# %s: fourierft generated %s tokens, PyTorch %s\n", k, gen["fourierft", k], gen["pytorch", k]
          printf "%s\t%s\t%s\t%s\t%.0f\t%s\t%.0f\t%s\t%.2f\t%s\t%s\t%s\t%s\n", mb[1], mb[2], len["fourierft", k], gen["fourierft", k],
                 ms["fourierft", k], pol["fourierft", k], ms["pytorch", k], pol["pytorch", k], ms["pytorch", k] / ms["fourierft", k],
                 tps["fourierft", k], tps["pytorch", k], rss["fourierft", k], rss["pytorch", k] } }
' "$out/fourierft.tsv" "$out/pytorch.tsv"
