#!/usr/bin/env bash
# Installs the dependencies, builds everything (Release) and runs the whole test suite, then the
# sanitizer stage (scripts/test-sanitizers.sh: the input-reading tests under ASan + UBSan;
# FOURIERFT_SANITIZERS=0 skips it). This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build=${FOURIERFT_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$(nproc)"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)"
if [[ "${FOURIERFT_SANITIZERS:-1}" != 0 ]]; then
  bash scripts/test-sanitizers.sh
fi
