#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz, clang with ASan + UBSan) and runs each for
# SECONDS seconds (default 60) on its seed corpus (tests/fuzz/corpus/<harness>) and dictionary.
#   bash scripts/fuzz.sh            # every harness, 60 s each
#   bash scripts/fuzz.sh 600        # 10 minutes each (the issue's bar)
#   bash scripts/fuzz.sh 60 fuzz_safetensors fuzz_config    # some harnesses
# New inputs go to build-fuzz/corpus/<harness> (the committed seeds stay as they are); a crash,
# leak, timeout (> 1 s per input) or out-of-memory (> 2 GB) stops that harness and leaves
# build-fuzz/findings/<harness>/crash-* to reproduce with: build-fuzz/tests/fuzz/<harness> FILE.
# Needs clang-14 and libclang-rt-14-dev (Debian); prints a summary line per harness with the
# executions, the seconds and the CPU seconds the fuzzer got (user + system; on a busy machine
# run it under `nice -n 19` and rerun a harness marked STARVED: under 2/3 of SECONDS on the CPU).
# The summary lines also go to build-fuzz/findings/summary.txt. libFuzzer's -timeout counts wall
# seconds: on a starved machine FOURIERFT_FUZZ_TIMEOUT=3 (default 1) keeps stalls from counting as
# hangs (replay a reported timeout under `time` to see its CPU seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
timeout=${FOURIERFT_FUZZ_TIMEOUT:-1}
shift || true
build=${FOURIERFT_FUZZ_BUILD_DIR:-build-fuzz}
cxx=${FOURIERFT_FUZZ_CXX:-$(command -v clang++-14 || command -v clang++ || true)}
if [[ -z "$cxx" ]]; then
  echo "fuzz.sh: clang++ not found (Debian: apt-get install clang-14 libclang-rt-14-dev)" >&2
  exit 1
fi
harnesses=("$@")
if [[ ${#harnesses[@]} -eq 0 ]]; then
  for f in tests/fuzz/fuzz_*.cpp; do harnesses+=("$(basename "$f" .cpp)"); done
fi
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$cxx" \
  -DFOURIERFT_FUZZ=ON -DFOURIERFT_BUILD_TESTS=OFF -DFOURIERFT_BUILD_EXAMPLES=OFF \
  -DFOURIERFT_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target "${harnesses[@]}"

status=0
for h in "${harnesses[@]}"; do
  corpus="$build/corpus/$h"
  findings="$build/findings/$h"
  mkdir -p "$corpus" "$findings"
  dict=()
  [[ -f "tests/fuzz/$h.dict" ]] && dict=(-dict="tests/fuzz/$h.dict")
  seeds=()
  [[ -d "tests/fuzz/corpus/$h" ]] && seeds=("tests/fuzz/corpus/$h")
  log="$findings/fuzz.log"
  cpu_file="$findings/cpu_seconds"
  set +e
  # bash's `time` keyword reports the wall seconds and the user + system CPU seconds of the fuzzer.
  { TIMEFORMAT='%R %U %S'; time ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
    UBSAN_OPTIONS=print_stacktrace=1 FOURIERFT_NUM_THREADS=1 OMP_NUM_THREADS=1 \
    "$build/tests/fuzz/$h" "$corpus" "${seeds[@]}" "${dict[@]}" -max_total_time="$seconds" \
    -timeout="$timeout" -rss_limit_mb=2048 -max_len=262144 -artifact_prefix="$findings/" \
    -print_final_stats=1 >"$log" 2>&1; } 2>"$cpu_file"
  rc=$?
  set -e
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  wall=$(awk 'NF == 3 { printf "%.0f", $1 }' "$cpu_file")
  cpu=$(awk 'NF == 3 { printf "%.0f", $2 + $3 }' "$cpu_file")
  corpus_size=$(find "$corpus" -type f | wc -l)
  when=$(date -u +%Y-%m-%dT%H:%MZ)
  measured="$runs executions, ${wall:-?} s, ${cpu:-?} CPU s, corpus $corpus_size files, timeout $timeout s ($when)"
  if [[ $rc -ne 0 ]]; then
    line="fuzz: $h FOUND A PROBLEM (exit $rc): $measured; see $log and $findings/"
    status=1
  elif [[ -n "$cpu" && $((cpu * 3)) -lt $((seconds * 2)) ]]; then
    line="fuzz: $h ok but STARVED (run it again): $measured"
  else
    line="fuzz: $h ok: $measured"
  fi
  echo "$line"
  echo "$line" >>"$build/findings/summary.txt"
done
exit $status
