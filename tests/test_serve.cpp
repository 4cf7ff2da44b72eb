// Tests of include/fourierft/serve/: mixed-adapter batches against each adapter alone, the adapter
// store, continuous batching against offline greedy generation, and the HTTP server on loopback
// talked to by a real HTTP client (cpp-httplib's): concurrency, streaming, bad requests,
// disconnects, 100 connections at once, shutdown.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "fourierft/core/random.hpp"
#include "fourierft/io/hf_tokenizer.hpp"
#include "fourierft/io/jinja.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/models/generation.hpp"
#include "fourierft/models/llama.hpp"
#include "fourierft/peft/adapter_io.hpp"
#include "fourierft/peft/fourierft.hpp"
#include "fourierft/peft/lora.hpp"
#include "fourierft/serve/adapter_store.hpp"
#include "fourierft/serve/mixed_linear.hpp"
#include "fourierft/serve/scheduler.hpp"
#include "../examples/cli/cmd_generate.hpp"  // cli::run_generate: `fourierft generate --adapter`
#include "fourierft/serve/http.hpp"

using namespace fourierft;
namespace fs = std::filesystem;
using Llama = models::LlamaForCausalLM<float>;

namespace {

const fs::path tiny_llama = fs::path(FOURIERFT_SOURCE_DIR) / "examples/checkpoints/llama-tiny-qnli-e2e";

std::unique_ptr<Llama> load_tiny() {
  auto model = Llama::from_pretrained(tiny_llama);
  model->eval();
  return model;
}

// A fresh directory under the system's temporary one, removed at the end of the test.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag) {
    path = fs::temp_directory_path() / ("fourierft_serve_" + tag + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

// Saves a FourierFT adapter on q_proj and v_proj (random N(0, 1) spectra drawn from `seed`), in
// PEFT's format, made by the library as a user would.
void make_fourierft_adapter(const fs::path& dir, std::uint64_t seed, Index n = 300,
                            double scaling = 300.0) {
  auto model = load_tiny();
  peft::FourierFTConfig config;
  config.n_frequency = n;
  config.scaling = scaling;
  config.target_modules = {{"q_proj", "v_proj"}, ""};
  const peft::AdapterSpec spec{.config = config, .modules_to_save = {}, .task_type = "CAUSAL_LM"};
  Rng rng(seed);
  peft::apply_adapter(*model, spec, rng);
  peft::save_adapter(*model, spec, dir);
}
// A LoRA adapter (r = 4 on q_proj, o_proj) with B random too, so it changes the outputs.
void make_lora_adapter(const fs::path& dir, std::uint64_t seed) {
  auto model = load_tiny();
  peft::LoraConfig config;
  config.r = 4;
  config.lora_alpha = 8;
  config.target_modules = {{"q_proj", "o_proj"}, ""};
  const peft::AdapterSpec spec{.config = config, .modules_to_save = {}, .task_type = "CAUSAL_LM"};
  Rng rng(seed);
  peft::apply_adapter(*model, spec, rng);
  for (auto& [name, p] : model->named_parameters())
    if (name.find("lora_B") != std::string::npos)
      for (float& v : p.data()) v = 0.2f * static_cast<float>(rng.normal());
  peft::save_adapter(*model, spec, dir);
}

// The base model with one adapter folder loaded the library's usual way (nullptr: none).
std::unique_ptr<Llama> reference_model(const fs::path* adapter) {
  auto model = load_tiny();
  if (adapter) {
    peft::load_adapter(*model, *adapter);
    model->eval();
  }
  return model;
}

// Logits (B, T, V) of a plain forward.
Tensor<float> logits_of(Llama& model, const Tensor<std::int64_t>& ids) {
  Tape<float> tape;
  NoGradScope<float> no_grad(tape);
  return model.forward(tape, ids).logits.value();
}

double max_abs_diff(const float* a, const float* b, Index n) {
  double worst = 0;
  for (Index i = 0; i < n; ++i) worst = std::max(worst, std::abs(double(a[i]) - double(b[i])));
  return worst;
}
double max_abs(const float* a, Index n) {
  double worst = 0;
  for (Index i = 0; i < n; ++i) worst = std::max(worst, std::abs(double(a[i])));
  return worst;
}

// Three adapters in one directory: two FourierFT, one LoRA.
struct AdapterDir {
  TempDir dir{"adapters"};
  AdapterDir() {
    make_fourierft_adapter(dir.path / "alpha", 1);
    make_fourierft_adapter(dir.path / "beta", 2);
    make_lora_adapter(dir.path / "gamma", 3);
  }
};

}  // namespace

// ---------------------------------------------------------------------------
TEST_CASE("mixed batch: every row equals its adapter alone, on each correction path") {
  AdapterDir adapters;
  auto model = load_tiny();
  serve::AdapterStore store(*model, adapters.dir.path);
  serve::BatchAdapters batch;
  serve::attach_mixed_adapters(store, batch);

  const Index T = 6, V = model->config.vocab_size;
  Rng rng(9);
  Tensor<std::int64_t> ids({4, T});
  for (Index i = 0; i < ids.numel(); ++i) ids[i] = static_cast<std::int64_t>(rng.uniform() * 4000);
  const std::vector<std::string> names = {"alpha", "", "gamma", "beta"};  // "" = base

  // References: each row through a model carrying that adapter alone (peft::load_adapter).
  std::vector<Tensor<float>> expected;
  for (Index b = 0; b < 4; ++b) {
    const fs::path folder = adapters.dir.path / names[b];
    auto ref = reference_model(names[b].empty() ? nullptr : &folder);
    Tensor<std::int64_t> row({1, T});
    std::copy_n(ids.ptr() + b * T, T, row.ptr());
    expected.push_back(logits_of(*ref, row));
  }
  // The adapters change the outputs (else this test could not fail).
  CHECK(max_abs_diff(expected[0].ptr(), expected[1].ptr(), T * V) > 1e-2);
  CHECK(max_abs_diff(expected[2].ptr(), expected[1].ptr(), T * V) > 1e-2);
  CHECK(max_abs_diff(expected[0].ptr(), expected[3].ptr(), T * V) > 1e-2);

  for (auto path : {serve::CorrectionPath::spectral, serve::CorrectionPath::dense,
                    serve::CorrectionPath::automatic}) {
    CAPTURE(static_cast<int>(path));
    batch.path = path;
    batch.rows.clear();
    for (const auto& name : names) batch.rows.push_back(name.empty() ? nullptr : store.get(name).get());
    const Tensor<float> mixed = logits_of(*model, ids);
    for (Index b = 0; b < 4; ++b) {
      CAPTURE(b);
      const double scale = max_abs(expected[b].ptr(), T * V);
      CHECK(max_abs_diff(mixed.ptr() + b * T * V, expected[b].ptr(), T * V) <= 2e-5 * scale + 1e-5);
    }
  }
  // One adapter on every row: the merged weights (W0 + ΔW, base weights untouched).
  batch.path = serve::CorrectionPath::merged;
  batch.rows.assign(4, store.get("beta").get());
  const fs::path beta = adapters.dir.path / "beta";
  const Tensor<float> merged = logits_of(*model, ids);
  const Tensor<float> alone = logits_of(*reference_model(&beta), ids);
  CHECK(max_abs_diff(merged.ptr(), alone.ptr(), merged.numel()) <= 2e-5 * max_abs(alone.ptr(), alone.numel()) + 1e-5);
  auto* hook = dynamic_cast<serve::MixedAdapterLinear*>(
      store.layers().linears[*store.layers().find("model.layers.0.self_attn.q_proj")]->adapters()[0].second.get());
  REQUIRE(hook != nullptr);
  CHECK(hook->last_path() == 'm');
  // And back to the base model: no row names an adapter, the frozen weights are unchanged.
  batch.rows.assign(4, nullptr);
  const Tensor<float> base = logits_of(*model, ids);
  const Tensor<float> base_ref = logits_of(*reference_model(nullptr), ids);
  CHECK(max_abs_diff(base.ptr(), base_ref.ptr(), base.numel()) == 0.0);
}

TEST_CASE("adapter store: lazy loading, validation against the base model, ΔW cache budget, add / remove") {
  AdapterDir adapters;
  auto model = load_tiny();
  serve::AdapterStore store(*model, adapters.dir.path,
                            {.delta_cache_bytes = 3 * 128 * 128 * sizeof(float)});
  CHECK(store.names() == std::vector<std::string>{"alpha", "beta", "gamma"});
  CHECK(store.loaded_count() == 0);  // registered, nothing read yet
  const auto alpha = store.get("alpha");
  CHECK(store.loaded_count() == 1);
  CHECK(alpha->method == "fourierft");
  CHECK(alpha->bytes() == 8 * 300 * sizeof(float));  // n · L · 4 bytes: 4 layers x (q, v)
  CHECK(store.get("alpha") == alpha);                  // loaded once
  CHECK(store.get("gamma")->method == "lora");
  CHECK_THROWS_AS(store.get("delta"), serve::AdapterNotFound);

  // ΔW from the cache equals the library's FourierFTAdapter::delta_weight.
  const Index q0 = *store.layers().find("model.layers.0.self_attn.q_proj");
  const auto dW = store.deltas().get(*alpha, q0);
  {
    const fs::path folder = adapters.dir.path / "alpha";
    auto ref = reference_model(&folder);
    auto* adapter = dynamic_cast<peft::FourierFTAdapter<float>*>(
        ref->model.layers[0].self_attn.q_proj.adapters()[0].second.get());
    REQUIRE(adapter != nullptr);
    const Tensor<float> expected = adapter->delta_weight();
    CHECK(max_abs_diff(dW->ptr(), expected.ptr(), expected.numel()) <= 1e-6 * max_abs(expected.ptr(), expected.numel()));
  }
  // The budget holds 3 q_proj-sized ΔW: the fourth evicts the least recently used.
  for (Index layer = 1; layer < 5; ++layer) (void)store.deltas().get(*alpha, *store.layers().find(str_cat("model.layers.", (layer % 4), ".self_attn.", layer < 4 ? "q_proj" : "v_proj")));
  CHECK(store.deltas().bytes() <= store.deltas().budget());
  CHECK(store.deltas().find(alpha->uid, q0) == nullptr);

  // An adapter for another shape: named error with the file and the tensor.
  TempDir bad("bad");
  make_fourierft_adapter(bad.path / "wrong_n", 4, 300);
  {  // the config says n = 200 but the file holds 300 coefficients per layer
    io::Json config = io::read_json(bad.path / "wrong_n/adapter_config.json");
    config["n_frequency"] = 200;
    io::write_json(bad.path / "wrong_n/adapter_config.json", config);
  }
  store.add("wrong_n", bad.path / "wrong_n");
  CHECK_THROWS_WITH_AS(store.get("wrong_n"),
                       doctest::Contains("fourierft_spectrum' has shape (300) but the base model needs (200)"),
                       FormatError);
  // Added and removed while running: a new folder appears on the next lookup.
  make_fourierft_adapter(adapters.dir.path / "delta", 5);
  CHECK(store.get("delta")->name == "delta");
  store.remove("delta");
  fs::remove_all(adapters.dir.path / "delta");
  CHECK_THROWS_AS(store.get("delta"), serve::AdapterNotFound);
}

// ---------------------------------------------------------------------------
namespace {

// The offline reference: `fourierft generate --model tiny [--adapter DIR] --prompt TEXT` (greedy).
std::vector<std::int64_t> offline_greedy(const std::string& prompt, const fs::path& adapter,
                                         Index max_new_tokens) {
  cli::GenerateOptions options;
  options.model_dir = tiny_llama;
  options.adapter_dir = adapter;
  options.prompt = prompt;
  options.generation.max_new_tokens = max_new_tokens;
  std::ostringstream sink;
  return cli::run_generate(options, sink);
}

struct Served {
  std::unique_ptr<Llama> model = load_tiny();
  io::HfTokenizer tokenizer = io::HfTokenizer::load(tiny_llama);
  serve::AdapterStore store;
  serve::BatchAdapters batch;
  serve::Scheduler<Llama> scheduler;
  serve::HttpServer<Llama> server;
  std::thread thread;
  int port = 0;

  Served(const fs::path& adapters, serve::SchedulerOptions scheduler_options = {},
         serve::ServerOptions server_options = {.port = 0})
      : store(*model, adapters),
        scheduler(*model, batch, model->config.eos_token_id, scheduler_options),
        server(store, scheduler, tokenizer,
               io::ChatTemplate::load(tiny_llama / "tokenizer_config.json"), server_options) {
    serve::attach_mixed_adapters(store, batch);
    scheduler.start();
    port = server.bind();
    thread = std::thread([this] { server.run(); });
    server.wait_until_ready();
  }
  ~Served() {
    server.stop();
    thread.join();
    scheduler.stop();
  }
  httplib::Client client(int timeout_seconds = 60) const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(timeout_seconds, 0);
    c.set_connection_timeout(60, 0);  // a loaded machine may drop SYNs (listen backlog 5 in Debian's library)
    return c;
  }
};

io::Json post(const Served& s, const std::string& path, const io::Json& body, int* status = nullptr) {
  auto client = s.client();
  auto res = client.Post(path.c_str(), body.dump(), "application/json");
  REQUIRE(res);
  if (status) *status = res->status;
  return io::Json::parse(res->body);
}

std::vector<std::int64_t> without_eos(std::vector<std::int64_t> tokens, const Llama& model) {
  if (!tokens.empty() && model.config.eos_token_id && tokens.back() == *model.config.eos_token_id)
    tokens.pop_back();
  return tokens;
}

}  // namespace

TEST_CASE("scheduler: sequences joining a running batch generate what each prompt gives alone") {
  AdapterDir adapters;
  auto model = load_tiny();
  serve::AdapterStore store(*model, adapters.dir.path);
  serve::BatchAdapters batch;
  serve::attach_mixed_adapters(store, batch);
  serve::Scheduler<Llama> scheduler(*model, batch, model->config.eos_token_id, {.max_batch = 3});
  const io::HfTokenizer tokenizer = io::HfTokenizer::load(tiny_llama);
  const std::vector<std::pair<std::string, std::string>> jobs = {
      {"alpha", "The restaurant near the river"}, {"", "Is the sky blue?"},
      {"beta", "name[The Eagle], food[French]"}, {"gamma", "Hello"}, {"alpha", "Where is"}};
  scheduler.start();
  std::vector<std::shared_ptr<serve::Sequence>> sequences;
  for (const auto& [adapter, prompt] : jobs) {  // five for a batch of three: two wait, then join
    serve::SequenceRequest r;
    r.prompt = tokenizer.encode_for_model(prompt);
    r.adapter = adapter.empty() ? nullptr : store.get(adapter);
    r.max_tokens = 12;
    sequences.push_back(scheduler.submit(r));
  }
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    CAPTURE(i);
    std::vector<std::int64_t> tokens;
    for (bool done = false; !done;)
      std::tie(tokens, done) = sequences[i]->wait(tokens.size(), std::chrono::milliseconds(500));
    const fs::path folder = jobs[i].first.empty() ? fs::path() : adapters.dir.path / jobs[i].first;
    CHECK(without_eos(tokens, *model) == offline_greedy(jobs[i].second, folder, 12));
  }
  scheduler.stop();
  CHECK(scheduler.active() == 0);
  CHECK(scheduler.steps() > 0);
}

TEST_CASE("http: two adapters and the base concurrently, each equal to `fourierft generate --adapter`") {
  AdapterDir adapters;
  Served s(adapters.dir.path);
  const std::vector<std::pair<std::string, std::string>> jobs = {
      {"alpha", "The restaurant near the river"}, {"base", "The restaurant near the river"},
      {"beta", "The restaurant near the river"}, {"alpha", "Is it good?"}, {"beta", "food[Italian]"},
      {"base", "Where"}};
  std::vector<io::Json> replies(jobs.size());
  std::vector<int> statuses(jobs.size());
  std::vector<std::thread> clients;
  for (std::size_t i = 0; i < jobs.size(); ++i)
    clients.emplace_back([&, i] {
      auto client = s.client();
      io::Json body = {{"model", jobs[i].first}, {"prompt", jobs[i].second}, {"max_tokens", 10},
                       {"temperature", 0}, {"return_token_ids", true}};
      auto res = client.Post("/v1/completions", body.dump(), "application/json");
      statuses[i] = res ? res->status : -1;
      if (res) replies[i] = io::Json::parse(res->body);
    });
  for (auto& c : clients) c.join();
  std::vector<std::vector<std::int64_t>> outputs;
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    CAPTURE(i);
    REQUIRE(statuses[i] == 200);
    const io::Json& choice = replies[i]["choices"][0];
    const auto tokens = choice["token_ids"].get<std::vector<std::int64_t>>();
    const fs::path folder = jobs[i].first == "base" ? fs::path() : adapters.dir.path / jobs[i].first;
    const auto expected = offline_greedy(jobs[i].second, folder, 10);
    CHECK(without_eos(tokens, *s.model) == expected);
    CHECK(choice["text"].get<std::string>() == s.tokenizer.decode(expected, true));
    CHECK(choice["finish_reason"] == (tokens.size() < 10 ? "stop" : "length"));
    CHECK(replies[i]["usage"]["completion_tokens"] == tokens.size());
    CHECK(replies[i]["model"] == jobs[i].first);
    outputs.push_back(tokens);
  }
  // The same prompt under alpha, base and beta: the adapters matter.
  CHECK((outputs[0] != outputs[1] || outputs[2] != outputs[1]));

  // Prompt as token ids, and chat through the model's template.
  const auto ids = s.tokenizer.encode_for_model("Is it good?");
  io::Json by_ids = post(s, "/v1/completions", {{"model", "alpha"}, {"prompt", ids}, {"max_tokens", 10},
                                                {"temperature", 0}, {"return_token_ids", true}});
  CHECK(by_ids["choices"][0]["token_ids"] == replies[3]["choices"][0]["token_ids"]);
  int status = 0;
  io::Json chat = post(s, "/v1/chat/completions",
                       {{"model", "beta"}, {"messages", {{{"role", "user"}, {"content", "Hi"}}}},
                        {"max_tokens", 8}, {"temperature", 0}, {"return_token_ids", true}},
                       &status);
  CHECK(status == 200);
  CHECK(chat["object"] == "chat.completion");
  CHECK(chat["choices"][0]["message"]["role"] == "assistant");
  {
    const io::ChatTemplate t = io::ChatTemplate::load(tiny_llama / "tokenizer_config.json");
    const std::string rendered = t.render(io::Json::array({{{"role", "user"}, {"content", "Hi"}}}), true);
    CHECK(chat["usage"]["prompt_tokens"] == s.tokenizer.encode(rendered).size());
  }
  // GET /v1/models lists base and the three folders; /health answers.
  auto client = s.client();
  auto models = client.Get("/v1/models");
  REQUIRE(models);
  const io::Json list = io::Json::parse(models->body);
  std::vector<std::string> names;
  for (const auto& m : list["data"]) names.push_back(m["id"].get<std::string>());
  CHECK(names == std::vector<std::string>{"base", "alpha", "beta", "gamma"});
  auto health = client.Get("/health");
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(io::Json::parse(health->body)["status"] == "ok");
}

TEST_CASE("http: streaming sends the same text as server-sent events, then [DONE]") {
  AdapterDir adapters;
  Served s(adapters.dir.path);
  const io::Json body = {{"model", "alpha"}, {"prompt", "The restaurant near the river"},
                         {"max_tokens", 12}, {"temperature", 0}};
  const io::Json whole = post(s, "/v1/completions", body);
  for (const char* path : {"/v1/completions", "/v1/chat/completions"}) {
    CAPTURE(path);
    const bool chat = std::string(path).find("chat") != std::string::npos;
    io::Json b = body;
    b["stream"] = true;
    if (chat) {
      b.erase("prompt");
      b["messages"] = io::Json::array({{{"role", "user"}, {"content", "Hi"}}});
    }
    auto client = s.client();
    auto res = client.Post(path, b.dump(), "application/json");
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(res->get_header_value("Content-Type") == "text/event-stream");
    std::string text, finish;
    std::size_t events = 0;
    bool done = false;
    std::istringstream lines(res->body);
    for (std::string line; std::getline(lines, line);) {
      if (line.empty()) continue;
      REQUIRE(line.starts_with("data: "));
      CHECK(!done);  // nothing after [DONE]
      const std::string data = line.substr(6);
      if (data == "[DONE]") {
        done = true;
        continue;
      }
      const io::Json chunk = io::Json::parse(data);
      ++events;
      const io::Json& choice = chunk["choices"][0];
      if (chat) {
        CHECK(chunk["object"] == "chat.completion.chunk");
        if (choice["delta"].contains("content")) text += choice["delta"]["content"].get<std::string>();
      } else {
        text += choice["text"].get<std::string>();
      }
      if (!choice["finish_reason"].is_null()) finish = choice["finish_reason"].get<std::string>();
    }
    CHECK(done);
    CHECK(events >= 3);  // several pieces, not one
    CHECK((finish == "stop" || finish == "length"));
    if (!chat) CHECK(text == whole["choices"][0]["text"].get<std::string>());
    if (chat) {
      const io::Json whole_chat = post(s, path, {{"model", "alpha"}, {"messages", b["messages"]},
                                                 {"max_tokens", 12}, {"temperature", 0}});
      CHECK(text == whole_chat["choices"][0]["message"]["content"].get<std::string>());
    }
  }
}

TEST_CASE("http: bad requests get OpenAI-style errors") {
  AdapterDir adapters;
  Served s(adapters.dir.path, {}, {.port = 0, .max_prompt_tokens = 32, .max_tokens = 64});
  auto expect_error = [&](const std::string& path, const std::string& body, int status,
                          const std::string& param, const std::string& fragment) {
    CAPTURE(body);
    auto client = s.client();
    auto res = client.Post(path.c_str(), body, "application/json");
    REQUIRE(res);
    CHECK(res->status == status);
    const io::Json j = io::Json::parse(res->body);
    REQUIRE(j.contains("error"));
    CHECK(j["error"]["message"].get<std::string>().find(fragment) != std::string::npos);
    CHECK(j["error"]["type"].is_string());
    CHECK(j["error"].contains("code"));
    if (param.empty()) CHECK(j["error"]["param"].is_null());
    else CHECK(j["error"]["param"] == param);
  };
  const std::string c = "/v1/completions";
  expect_error(c, R"({"model": "nope", "prompt": "hi"})", 404, "model", "'nope' does not exist");
  expect_error(c, R"({"model": "alpha", "prompt": "hi")", 400, "", "not valid JSON");
  expect_error(c, R"([1, 2])", 400, "", "JSON object");
  expect_error(c, R"({"prompt": "hi"})", 400, "model", "'model' is required");
  expect_error(c, R"({"model": 3, "prompt": "hi"})", 400, "model", "should be a string");
  expect_error(c, R"({"model": "alpha", "prompt": "hi", "max_tokens": "ten"})", 400, "max_tokens", "integer");
  expect_error(c, R"({"model": "alpha", "prompt": "hi", "max_tokens": 65})", 400, "max_tokens", "[1, 64]");
  expect_error(c, R"({"model": "alpha", "prompt": "hi", "temperature": "hot"})", 400, "temperature", "number");
  expect_error(c, R"({"model": "alpha", "prompt": "hi", "stream": 1})", 400, "stream", "boolean");
  expect_error(c, R"({"model": "alpha", "prompt": {"a": 1}})", 400, "prompt", "string or a non-empty array");
  expect_error(c, R"({"model": "alpha", "prompt": [1, 99999]})", 400, "prompt", "outside the vocabulary");
  expect_error(c, R"({"model": "alpha"})", 400, "prompt", "'prompt' is required");
  std::string long_prompt;
  for (int i = 0; i < 60; ++i) long_prompt += "river bank ";
  expect_error(c, io::Json({{"model", "alpha"}, {"prompt", long_prompt}}).dump(), 400, "prompt",
               "the limit is 32");
  expect_error("/v1/chat/completions", R"({"model": "alpha", "messages": [{"role": "user"}]})", 400,
               "messages", "each message");
  expect_error("/v1/chat/completions", R"({"model": "alpha", "messages": []})", 400, "messages",
               "non-empty array");
  // An adapter folder that does not fit the model: 500 naming the tensor.
  make_fourierft_adapter(adapters.dir.path / "broken", 6);
  fs::resize_file(adapters.dir.path / "broken/adapter_model.safetensors", 16);
  auto client = s.client();
  auto res = client.Post("/v1/completions", R"({"model": "broken", "prompt": "hi"})", "application/json");
  REQUIRE(res);
  CHECK(res->status == 500);
  CHECK(io::Json::parse(res->body)["error"]["code"] == "adapter_invalid");
  // Unknown endpoint: 404 as JSON too.
  auto missing = client.Get("/v2/nothing");
  REQUIRE(missing);
  CHECK(missing->status == 404);
  CHECK(io::Json::parse(missing->body).contains("error"));
  // The server is still fine.
  int status = 0;
  post(s, c, {{"model", "alpha"}, {"prompt", "hi"}, {"max_tokens", 2}}, &status);
  CHECK(status == 200);
}

TEST_CASE("http: a client that disconnects mid-stream leaves the batch; nothing leaks") {
  AdapterDir adapters;
  Served s(adapters.dir.path, {}, {.port = 0, .max_tokens = 200});
  auto client = s.client();
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.set_header("Content-Type", "application/json");
  // eos never ends it early: with temperature 2 the sampled sequence is long (max_tokens 200).
  req.body = io::Json({{"model", "beta"}, {"prompt", "The"}, {"max_tokens", 200}, {"stream", true},
                       {"temperature", 2.0}, {"seed", 3}})
                 .dump();
  std::size_t received = 0;
  req.content_receiver = [&](const char*, std::size_t length, std::uint64_t, std::uint64_t) {
    received += length;
    return false;  // hang up after the first chunk
  };
  auto res = client.send(req);
  CHECK(received > 0);
  // The sequence is cancelled and leaves: no running or waiting sequence within a few seconds.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (s.scheduler.active() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(s.scheduler.active() == 0);
  CHECK(s.scheduler.running() == 0);
  CHECK(s.scheduler.tokens() < 200);  // it did not run to max_tokens
  int status = 0;
  post(s, "/v1/completions", {{"model", "alpha"}, {"prompt", "hi"}, {"max_tokens", 2}}, &status);
  CHECK(status == 200);
}

TEST_CASE("http: 100 concurrent connections are all served or cleanly refused (429)") {
  AdapterDir adapters;
  Served s(adapters.dir.path, {.max_batch = 8, .max_active = 12}, {.port = 0, .http_threads = 24});
  constexpr int connections = 100;
  std::vector<int> statuses(connections, -1);
  std::vector<std::string> bodies(connections);
  std::vector<std::thread> clients;
  const std::vector<std::string> models = {"alpha", "beta", "gamma", "base"};
  for (int i = 0; i < connections; ++i)
    clients.emplace_back([&, i] {
      auto client = s.client(120);
      io::Json body = {{"model", models[i % 4]}, {"prompt", "Tell me"}, {"max_tokens", 4}};
      auto res = client.Post("/v1/completions", body.dump(), "application/json");
      if (res) {
        statuses[i] = res->status;
        bodies[i] = res->body;
      } else {
        bodies[i] = "no response: " + httplib::to_string(res.error());
      }
    });
  for (auto& c : clients) c.join();
  int served = 0, refused = 0;
  for (int i = 0; i < connections; ++i) {
    CAPTURE(i);
    CAPTURE(bodies[i]);
    CHECK((statuses[i] == 200 || statuses[i] == 429));  // no dropped connection, no 500
    if (statuses[i] < 0) continue;
    const io::Json j = io::Json::parse(bodies[i]);
    if (statuses[i] == 200) {
      ++served;
      CHECK(j["usage"]["completion_tokens"].get<int>() >= 1);
    } else if (statuses[i] == 429) {
      ++refused;
      CHECK(j["error"]["code"] == "rate_limit_exceeded");
    }
  }
  MESSAGE("served ", served, ", refused ", refused);
  CHECK(served + refused == connections);
  CHECK(served >= 12);
  // A reply is sent when its sequence finishes; the scheduler releases the slot just after.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (s.scheduler.active() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(s.scheduler.active() == 0);
}

TEST_CASE("http: stop() finishes the requests in flight and refuses new ones") {
  AdapterDir adapters;
  auto s = std::make_unique<Served>(adapters.dir.path);
  std::atomic<int> status{0};
  std::thread in_flight([&] {
    auto client = s->client();
    auto res = client.Post("/v1/completions",
                           io::Json({{"model", "alpha"}, {"prompt", "The"}, {"max_tokens", 40},
                                     {"temperature", 2.0}, {"seed", 1}}).dump(),
                           "application/json");
    status = res ? res->status : -1;
  });
  while (s->scheduler.active() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  s->server.stop();
  in_flight.join();
  CHECK(status == 200);
  CHECK_THROWS_AS(s->scheduler.submit({.prompt = {1, 2}, .adapter = nullptr}), serve::ShuttingDown);
}
