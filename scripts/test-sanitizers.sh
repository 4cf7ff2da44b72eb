#!/usr/bin/env bash
# The sanitizer stage of scripts/test.sh (and so of CI): builds the tests of the code that reads
# untrusted input with GCC's AddressSanitizer + UndefinedBehaviorSanitizer (-O1, its own build
# directory) and runs them, stopping at the first report (-fno-sanitize-recover=all: any UBSan
# finding aborts like an ASan one) or the first failing test. Seven test files: on an idle
# 2-core machine they should compile in under 10 minutes (not yet timed end to end).
#   bash scripts/test-sanitizers.sh                      # the default subset below
#   bash scripts/test-sanitizers.sh test_core test_ops   # other test targets
# Covered by default: file formats and limits (test_safetensors, test_untrusted_input,
# test_hf_config), tokenizers (test_tokenizer), PEFT adapters and their files (test_peft),
# templates (test_jinja), metrics (test_metrics). The numeric kernels (test_ops*, test_models ...)
# run only in the Release suite: under ASan they would take most of CI's time budget.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${FOURIERFT_SANITIZER_BUILD_DIR:-build-sanitize}
tests=("$@")
if [[ ${#tests[@]} -eq 0 ]]; then
  tests=(test_safetensors test_untrusted_input test_hf_config test_tokenizer test_peft test_jinja
         test_metrics)
fi
flags="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" \
  -DCMAKE_CXX_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" -DFOURIERFT_BUILD_EXAMPLES=OFF \
  -DFOURIERFT_BUILD_BENCHMARKS=OFF "-DFOURIERFT_SANITIZER_TESTS=$(IFS=';'; echo "${tests[*]}")" \
  >/dev/null
# One aggregate target: several --target arguments would be built one after another.
cmake --build "$build" -j "$(nproc)" --target fourierft_sanitizer_tests
regex="^($(IFS='|'; echo "${tests[*]}"))\$"
ASAN_OPTIONS=halt_on_error=1:detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --test-dir "$build" -R "$regex" --output-on-failure --stop-on-failure -j "$(nproc)"
