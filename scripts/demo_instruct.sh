#!/usr/bin/env bash
# The instruction-tuning demo (README, beside the main job): installs the dependencies, builds
# finetune_instruct_demo, and instruction-tunes the committed tiny LLaMA
# (examples/checkpoints/llama-tiny-qnli-e2e, pre-trained here) on 1,000 Alpaca records with FourierFT
# and LoRA from the same weights; prints held-out response loss before / after, trainable numbers,
# adapter bytes, and answers to Vicuna questions. Alpaca (CC BY-NC 4.0) is not in the repository: it
# is read from ../shared/data/instruct (the data pack) or from --data FILE (Stanford Alpaca's
# alpaca_data.json, https://github.com/tatsu-lab/stanford_alpaca).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build=${FOURIERFT_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" --target finetune_instruct_demo -j "$(nproc)"
"$build/examples/finetune_instruct_demo" --out out/instruct-demo "$@"
