// fourierft/io/limits.hpp — the caps every reader of untrusted files checks before it allocates or
// recurses: JSON nesting depth, model size from a config, user regex size, image pixels
// (docs/reliability.md).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>

namespace fourierft::io {

// Process-wide limits. Defaults come from the environment on first use; programs and tests may
// change them through input_limits() (not thread-safe: set them before loading anything).
struct InputLimits {
  // Deepest [ / { nesting any JSON reader accepts. Hugging Face's files nest under 10 levels.
  // Environment: FOURIERFT_JSON_MAX_DEPTH.
  std::int64_t json_max_depth = 256;
  // Largest model (parameters, estimated from config.json's sizes) a config may describe before
  // anything is allocated. 1e11 is above every open checkpoint (Llama 3.1 405B is 4.05e11: raise
  // it). Environment: FOURIERFT_MAX_PARAMETERS.
  double max_model_parameters = 1e11;
  // Longest regular expression (target_modules, n_frequency_pattern) and deepest group nesting.
  std::int64_t pattern_max_length = 4096;
  std::int64_t pattern_max_nesting = 64;
  // Loaded floating-point weights must be finite (a NaN weight gives NaN logits without a word).
  // Environment: FOURIERFT_ALLOW_NONFINITE=1 accepts them.
  bool allow_nonfinite_weights = false;
  // Most pixels (width x height) a PNG / JPEG may declare before it is decoded: a 1 KB JPEG can
  // declare 1312 x 54560 pixels (215 MB decoded, seconds of work). 2^26 is 8192 x 8192; datasets
  // of photos stay far below. Environment: FOURIERFT_IMAGE_MAX_PIXELS.
  double image_max_pixels = 67108864;
  // Most scans a progressive JPEG may hold: each is a pass over the whole image, so a few KB of
  // scans can take minutes. 500 is libjpeg-turbo's own tools' limit; real files have about 10.
  // Environment: FOURIERFT_JPEG_MAX_SCANS.
  std::int64_t jpeg_max_scans = 500;
  // Most loop iterations one chat-template render may take (all its loops together). Real
  // templates loop a few times per message (Qwen3's twice over all of them, plus content parts and
  // tool calls): 200,000 is tens of thousands of messages, and stops nested loops over the messages
  // (2^20 iterations for 20 levels) after about 0.25 s. Environment: FOURIERFT_TEMPLATE_MAX_LOOPS.
  std::int64_t template_max_loop_iterations = 200000;
  // Most expressions one chat-template render may evaluate: bounds the work of any template, loops
  // or not. A real template evaluates tens of expressions per message; 5 million is about a
  // second in a Release build (0.2 us a step). Environment: FOURIERFT_TEMPLATE_MAX_STEPS.
  std::int64_t template_max_steps = 5000000;
};

namespace detail {
inline double env_number(const char* name, double fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return fallback;
  char* end = nullptr;
  const double v = std::strtod(text, &end);
  return (end != nullptr && *end == '\0' && v > 0) ? v : fallback;
}
}  // namespace detail

inline InputLimits& input_limits() {
  static InputLimits limits = [] {
    InputLimits l;
    l.json_max_depth = static_cast<std::int64_t>(
        detail::env_number("FOURIERFT_JSON_MAX_DEPTH", static_cast<double>(l.json_max_depth)));
    l.max_model_parameters = detail::env_number("FOURIERFT_MAX_PARAMETERS", l.max_model_parameters);
    l.image_max_pixels = detail::env_number("FOURIERFT_IMAGE_MAX_PIXELS", l.image_max_pixels);
    l.template_max_loop_iterations = static_cast<std::int64_t>(detail::env_number(
        "FOURIERFT_TEMPLATE_MAX_LOOPS", static_cast<double>(l.template_max_loop_iterations)));
    l.template_max_steps = static_cast<std::int64_t>(detail::env_number(
        "FOURIERFT_TEMPLATE_MAX_STEPS", static_cast<double>(l.template_max_steps)));
    l.jpeg_max_scans = static_cast<std::int64_t>(
        detail::env_number("FOURIERFT_JPEG_MAX_SCANS", static_cast<double>(l.jpeg_max_scans)));
    const char* nonfinite = std::getenv("FOURIERFT_ALLOW_NONFINITE");
    l.allow_nonfinite_weights = nonfinite != nullptr && std::string(nonfinite) == "1";
    return l;
  }();
  return limits;
}

}  // namespace fourierft::io
