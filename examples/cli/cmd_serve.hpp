// fourierft serve — an OpenAI-compatible HTTP server for one LLaMA-family base model and any number of
// FourierFT (or LoRA) adapters, each request naming its adapter; mixed-adapter continuous batching.
//
//   fourierft serve --model DIR --adapters DIR [--host 127.0.0.1] [--port 8080]
//       [--max-batch 8] [--max-concurrent 64] [--max-prompt-tokens 1024] [--max-tokens 256]
//       [--delta-cache-mb 256] [--path automatic|spectral|dense|merged] [--http-threads 16]
//
// Every folder under --adapters holding adapter_config.json (PEFT's format) is a model name for the
// API; "base" is the model alone. Folders added or removed while the server runs are picked up.
// SIGTERM / SIGINT: stop accepting, finish the requests in flight, exit 0. See docs/serving.md.
#pragma once

#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/util/args.hpp"

#ifdef FOURIERFT_WITH_HTTPLIB  // set by examples/CMakeLists.txt when cpp-httplib is found
#include <pthread.h>

#include "fourierft/io/hf_tokenizer.hpp"
#include "fourierft/io/jinja.hpp"
#include "fourierft/models/llama.hpp"
#include "fourierft/serve/adapter_store.hpp"
#include "fourierft/serve/mixed_linear.hpp"
#include "fourierft/serve/scheduler.hpp"
#include "fourierft/serve/http.hpp"
#define FOURIERFT_CLI_HAS_SERVE 1
#endif

namespace fourierft::cli {

inline int cmd_serve(const std::vector<std::string>& argv) {
  util::Args args(argv, {"--help"});
  if (args.has("--help")) {
    std::cout
        << "usage: fourierft serve --model DIR --adapters DIR [--host 127.0.0.1] [--port 8080]\n"
           "         [--max-batch 8] [--max-concurrent 64] [--max-prompt-tokens 1024]\n"
           "         [--max-tokens 256] [--delta-cache-mb 256] [--http-threads 16]\n"
           "         [--path automatic|spectral|dense|merged]\n"
           "  OpenAI-compatible server (POST /v1/completions, /v1/chat/completions, GET /v1/models,\n"
           "  /health) for a LLaMA-family checkpoint folder; `model` in a request names an adapter\n"
           "  folder under --adapters (PEFT FourierFT or LoRA) or \"base\". Sequences with different\n"
           "  adapters share each decoding step. --port 0 picks a free port (printed). SIGTERM stops\n"
           "  gracefully. See docs/serving.md.\n";
    return 0;
  }
#ifndef FOURIERFT_CLI_HAS_SERVE
  throw Error("serve: this fourierft was built without cpp-httplib (Debian: libcpp-httplib-dev); "
              "install it and configure again");
#else
  const std::filesystem::path model_dir = args.str("--model"), adapters_dir = args.str("--adapters");
  serve::ServerOptions server_options;
  server_options.host = args.str("--host", "127.0.0.1");
  server_options.port = static_cast<int>(args.integer("--port", 8080));
  server_options.max_prompt_tokens = args.integer("--max-prompt-tokens", 1024);
  server_options.max_tokens = args.integer("--max-tokens", 256);
  server_options.http_threads = args.integer("--http-threads", 16);
  serve::SchedulerOptions scheduler_options;
  scheduler_options.max_batch = args.integer("--max-batch", 8);
  scheduler_options.max_active = args.integer("--max-concurrent", 64);
  const Index cache_mb = args.integer("--delta-cache-mb", 256);
  const std::string path = args.str("--path", "automatic");
  args.reject_unknown();
  check(args.positional().empty(), "unexpected argument '",
        args.positional().empty() ? "" : args.positional().front(), "'");
  check(server_options.port >= 0 && server_options.port < 65536, "--port ", server_options.port,
        " is not a port number");
  check(cache_mb >= 0, "--delta-cache-mb must be >= 0");
  serve::BatchAdapters batch;
  if (path == "automatic") batch.path = serve::CorrectionPath::automatic;
  else if (path == "spectral") batch.path = serve::CorrectionPath::spectral;
  else if (path == "dense") batch.path = serve::CorrectionPath::dense;
  else if (path == "merged") batch.path = serve::CorrectionPath::merged;
  else throw ValueError(str_cat("--path '", path, "' is not one of automatic, spectral, dense, merged"));

  // SIGTERM / SIGINT are taken by one watcher thread (blocked everywhere else, before any thread
  // starts, so every thread inherits the mask).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGUSR1);  // main's "done" to the watcher
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto model = models::LlamaForCausalLM<float>::from_pretrained(model_dir);
  model->eval();
  const io::HfTokenizer tokenizer = io::HfTokenizer::load(model_dir);
  std::optional<io::ChatTemplate> chat;
  if (std::filesystem::exists(model_dir / "tokenizer_config.json")) {
    try {
      chat = io::ChatTemplate::load(model_dir / "tokenizer_config.json");
    } catch (const io::TemplateError&) {  // no chat template: /v1/chat/completions answers 400
    }
  }
  serve::AdapterStore store(*model, adapters_dir,
                            {.delta_cache_bytes = static_cast<std::size_t>(cache_mb) << 20});
  serve::attach_mixed_adapters(store, batch);
  serve::Scheduler<models::LlamaForCausalLM<float>> scheduler(
      *model, batch,
      model->config.eos_token_id ? std::optional<std::int64_t>(*model->config.eos_token_id)
                                 : std::nullopt,
      scheduler_options);
  scheduler.start();
  serve::HttpServer<models::LlamaForCausalLM<float>> server(store, scheduler, tokenizer, chat,
                                                            server_options);
  const int port = server.bind();
  std::printf("fourierft serve: %s (%s) with %zu adapters under %s, listening on http://%s:%d\n",
              model_dir.string().c_str(), model->config.model_type.c_str(), store.names().size(),
              adapters_dir.string().c_str(), server_options.host.c_str(), port);
  std::fflush(stdout);

  std::atomic<bool> watcher_done{false};
  std::thread watcher([&] {
    int signal = 0;
    sigwait(&signals, &signal);
    watcher_done = true;
    if (signal == SIGUSR1) return;  // main is done: nothing to stop
    std::printf("fourierft serve: %s, finishing the requests in flight\n",
                signal == SIGTERM ? "SIGTERM" : "SIGINT");
    std::fflush(stdout);
    server.stop();
  });
  server.run();  // until the watcher stops it
  scheduler.stop();
  if (!watcher_done) pthread_kill(watcher.native_handle(), SIGUSR1);  // run() ended on its own
  watcher.join();
  std::printf("fourierft serve: stopped after %llu decoding steps, %llu tokens\n",
              static_cast<unsigned long long>(scheduler.steps()),
              static_cast<unsigned long long>(scheduler.tokens()));
  return 0;
#endif
}

}  // namespace fourierft::cli
