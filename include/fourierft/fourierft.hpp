// fourierft/fourierft.hpp — the umbrella header for programs: everything in one include.
// Libraries and tests include the individual headers (each compiles on its own).
#pragma once

#include "fourierft/core/error.hpp"
#include "fourierft/core/memory.hpp"
#include "fourierft/core/parallel.hpp"
#include "fourierft/core/profiler.hpp"
#include "fourierft/core/random.hpp"
#include "fourierft/core/tape.hpp"
#include "fourierft/core/tensor.hpp"

#include "fourierft/ops/attention.hpp"
#include "fourierft/ops/elementwise.hpp"
#include "fourierft/ops/indexing.hpp"
#include "fourierft/ops/linalg.hpp"
#include "fourierft/ops/norm.hpp"
#include "fourierft/ops/reduce.hpp"
#include "fourierft/ops/shape.hpp"
#include "fourierft/ops/softmax.hpp"
#include "fourierft/ops/spectral.hpp"

#include "fourierft/nn/dropout.hpp"
#include "fourierft/nn/embedding.hpp"
#include "fourierft/nn/layer_norm.hpp"
#include "fourierft/nn/linear.hpp"
#include "fourierft/nn/module.hpp"

#include "fourierft/optim/adamw.hpp"
#include "fourierft/optim/clip.hpp"
#include "fourierft/optim/schedule.hpp"
#include "fourierft/optim/sgd.hpp"

#include "fourierft/peft/adapter_io.hpp"
#include "fourierft/peft/entries.hpp"
#include "fourierft/peft/fourierft.hpp"
#include "fourierft/peft/fourierft_op.hpp"
#include "fourierft/peft/bitfit.hpp"
#include "fourierft/peft/lora.hpp"

#include "fourierft/io/bpe_tokenizer.hpp"
#include "fourierft/io/e2e.hpp"
#include "fourierft/io/glue.hpp"
#include "fourierft/io/hf_config.hpp"
#include "fourierft/io/image.hpp"
#include "fourierft/io/image_batches.hpp"
#include "fourierft/io/image_folder.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/io/safetensors.hpp"

#include "fourierft/models/checkpoint.hpp"
#include "fourierft/models/generation.hpp"
#include "fourierft/models/gpt2.hpp"
#include "fourierft/models/pretrained.hpp"
#include "fourierft/models/registry.hpp"
#include "fourierft/models/roberta.hpp"
#include "fourierft/models/transformer.hpp"
#include "fourierft/models/vit.hpp"

#include "fourierft/metrics/classification.hpp"
#include "fourierft/metrics/generation.hpp"

#include "fourierft/util/args.hpp"
#include "fourierft/util/atomic_file.hpp"
