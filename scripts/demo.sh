#!/usr/bin/env bash
# The README's main job: installs the dependencies, builds the demo, and fine-tunes the committed
# tiny ViT (examples/checkpoints/vit-tiny-cifar5, pre-trained here on five CIFAR-10 classes) on the
# five other classes with FourierFT beside head-only and LoRA fine-tuning (same steps and seed).
# The smaller MLP demo is still there: build and run the finetune_digits target.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build=${FOURIERFT_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" --target finetune_cifar5_demo -j "$(nproc)"
"$build/examples/finetune_cifar5_demo" --out out/cifar5 "$@"
