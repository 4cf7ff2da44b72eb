#!/usr/bin/env bash
# The README's main job: installs the dependencies, builds the demo, and fine-tunes a pre-trained
# MLP on bundled real data (8x8 digits) with FourierFT beside head-only, LoRA and full fine-tuning.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build=${FOURIERFT_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" --target finetune_digits -j "$(nproc)"
"$build/examples/finetune_digits" --out out/digits "$@"
