// fourierft/serve/http.hpp — the OpenAI-compatible HTTP layer of `fourierft serve` on cpp-httplib:
// /v1/completions, /v1/chat/completions (JSON or server-sent events), /v1/models, /health.
#pragma once

// The only header of the library that needs cpp-httplib (Debian: libcpp-httplib-dev; header-only,
// threads). Requests (OpenAI's fields; others are ignored):
//   POST /v1/completions       {"model", "prompt": text | [token ids], "max_tokens", "temperature",
//                               "top_p", "seed", "stream", "return_token_ids" (ours)}
//   POST /v1/chat/completions  the same with "messages": [{"role", "content"}] through the model's
//                               chat template (tokenizer_config.json) instead of "prompt"
//   GET  /v1/models            "base" and every adapter folder (rescanned)
//   GET  /health               {"status": "ok", ...}
// `model` names an adapter folder under --adapters, or "base". temperature 0 is greedy. Errors are
// OpenAI's {"error": {"message", "type", "param", "code"}}: 400 malformed JSON, wrong types, prompt
// over the limit, max_tokens over the limit; 404 unknown model; 429 too many concurrent requests;
// 503 shutting down; 500 an adapter folder that does not fit the model, or a failed step.
// Streaming writes `data: {chunk}\n\n` per new piece of text, then a chunk with finish_reason, then
// `data: [DONE]\n\n`; a client that goes away cancels its sequence (it leaves the batch).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <system_error>
#include <cstdint>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fourierft/core/error.hpp"
#include "fourierft/io/hf_tokenizer.hpp"
#include "fourierft/io/jinja.hpp"
#include "fourierft/io/json.hpp"
#include "fourierft/serve/adapter_store.hpp"
#include "fourierft/serve/request.hpp"
#include "fourierft/serve/scheduler.hpp"

// After every Eigen header: httplib pulls in <resolv.h>, whose `_res` macro breaks Eigen's
// parameter names if Eigen is parsed after it.
#ifndef CPPHTTPLIB_LISTEN_BACKLOG
#define CPPHTTPLIB_LISTEN_BACKLOG 128  // bursts of connections (header-only builds of httplib;
                                       // Debian's compiled libcpp-httplib keeps its 5)
#endif
#include <httplib.h>

namespace fourierft::serve {

namespace detail {

// The length of the longest prefix of `text` that does not end inside a UTF-8 sequence.
inline std::size_t complete_utf8_prefix(const std::string& text) {
  for (std::size_t back = 1; back <= 3 && back <= text.size(); ++back) {
    const auto c = static_cast<unsigned char>(text[text.size() - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further back for the lead
    const std::size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return need > back ? text.size() - back : text.size();
  }
  return text.size();
}

}  // namespace detail

template <class Model>
class HttpServer {
 public:
  HttpServer(AdapterStore& store, Scheduler<Model>& scheduler, const io::HfTokenizer& tokenizer,
             std::optional<io::ChatTemplate> chat_template, ServerOptions options)
      : store_(store), scheduler_(scheduler), tokenizer_(tokenizer),
        chat_template_(std::move(chat_template)), options_(std::move(options)) {
    const Index threads = options_.http_threads;
    server_.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<std::size_t>(threads)); };
    server_.set_keep_alive_max_count(1);  // a connection holds a thread only for its request
    server_.set_payload_max_length(std::size_t(1) << 20);
    server_.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      reply(res, 200, {{"status", stopping_ ? "stopping" : "ok"},
                       {"running", scheduler_.running()},
                       {"active", scheduler_.active()},
                       {"adapters_registered", store_.names().size()},
                       {"adapters_loaded", store_.loaded_count()}});
    });
    server_.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      store_.scan();
      io::Json data = io::Json::array();
      data.push_back({{"id", base_model_name}, {"object", "model"}, {"owned_by", "fourierft"}});
      for (const std::string& name : store_.names())
        data.push_back({{"id", name}, {"object", "model"}, {"owned_by", "fourierft"},
                        {"parent", base_model_name}});
      reply(res, 200, {{"object", "list"}, {"data", data}});
    });
    server_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      handle(req, res, false);
    });
    server_.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
      handle(req, res, true);
    });
    server_.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      const std::string code = res.status == 404 ? "not_found" : "";
      reply(res, res.status,
            ApiError(res.status, str_cat(req.method, " ", req.path, ": HTTP ", res.status, res.status == 404 ? " (no such endpoint)" : ""),
                     "invalid_request_error", "", code).body());
    });
    server_.set_exception_handler([this](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string message = "internal error";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        message = e.what();
      }
      reply(res, 500, ApiError(500, message, "server_error", "", "").body());
    });
  }

  // Binds host:port (port 0: a free one); returns the port. IoError if it cannot.
  int bind() {
    if (options_.port == 0) {
      port_ = server_.bind_to_any_port(options_.host);
    } else {
      port_ = server_.bind_to_port(options_.host, options_.port) ? options_.port : -1;
    }
    check<IoError>(port_ > 0, "serve: cannot listen on ", options_.host, ":", options_.port);
    widen_backlog(port_);
    return port_;
  }
  // Serves until stop() (from another thread or a signal watcher).
  void run() { server_.listen_after_bind(); }
  // Refuses new requests (503), stops listening, and returns once the handlers in flight are done
  // (run() returns too); the scheduler keeps decoding them meanwhile.
  void stop() {
    stopping_ = true;
    scheduler_.refuse_new();
    server_.stop();
  }
  int port() const { return port_; }
  bool is_running() const { return server_.is_running(); }
  void wait_until_ready() const {
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }

  // Parses and checks a request body (public for tests).
  CompletionRequest parse(const std::string& body, bool chat) const {
    return parse_completion_request(body, chat, tokenizer_, chat_template_ ? &*chat_template_ : nullptr,
                                    options_);
  }

 private:
  // Debian's compiled cpp-httplib listens with a backlog of 5, so a burst of connections overflows
  // it and the kernel drops some (measured: 13 of 100 concurrent clients got no answer on a loaded
  // machine). Calling listen() again on the bound socket raises the backlog (Linux allows it); the
  // socket is found among this process's descriptors by its port. Best effort: nothing if not found.
  static void widen_backlog(int port) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
      int fd = -1;
      try {
        fd = std::stoi(entry.path().filename().string());
      } catch (const std::exception&) {
        continue;
      }
      int listening = 0;
      socklen_t length = sizeof listening;
      if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) != 0 || !listening) continue;
      sockaddr_storage address{};
      socklen_t address_length = sizeof address;
      if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &address_length) != 0) continue;
      int bound = -1;
      if (address.ss_family == AF_INET) bound = ntohs(reinterpret_cast<sockaddr_in*>(&address)->sin_port);
      if (address.ss_family == AF_INET6) bound = ntohs(reinterpret_cast<sockaddr_in6*>(&address)->sin6_port);
      if (bound == port) ::listen(fd, 1024);
    }
  }

  static void reply(httplib::Response& res, int status, const io::Json& body) {
    res.status = status;
    res.set_content(body.dump(), "application/json");
  }

  void handle(const httplib::Request& req, httplib::Response& res, bool chat) {
    try {
      if (stopping_) throw ApiError(503, "the server is shutting down", "server_error", "", "shutting_down");
      const CompletionRequest r = parse(req.body, chat);
      SequenceRequest s;
      s.prompt = r.prompt;
      s.max_tokens = r.max_tokens;
      s.temperature = r.temperature;
      s.top_p = r.top_p;
      s.seed = r.seed;
      if (r.model != base_model_name) {
        try {
          s.adapter = store_.get(r.model);
        } catch (const AdapterNotFound& e) {
          throw ApiError(404, e.what(), "invalid_request_error", "model", "model_not_found");
        } catch (const Error& e) {
          throw ApiError(500, str_cat("adapter '", r.model, "' cannot be served: ", e.what()),
                         "server_error", "model", "adapter_invalid");
        }
      }
      std::shared_ptr<Sequence> sequence;
      try {
        sequence = scheduler_.submit(std::move(s));
      } catch (const Busy& e) {
        throw ApiError(429, e.what(), "rate_limit_error", "", "rate_limit_exceeded");
      } catch (const ShuttingDown& e) {
        throw ApiError(503, e.what(), "server_error", "", "shutting_down");
      }
      const std::string id = str_cat(chat ? "chatcmpl-" : "cmpl-", ++counter_);
      if (r.stream) stream(res, sequence, r, id);
      else complete(res, sequence, r, id);
    } catch (const ApiError& e) {
      reply(res, e.status, e.body());
    }
  }

  // The generated text: the tokens before an eos, special tokens skipped.
  std::string text_of(const std::vector<std::int64_t>& tokens, bool finished_by_eos) const {
    std::vector<std::int64_t> ids = tokens;
    if (finished_by_eos && !ids.empty()) ids.pop_back();
    return tokenizer_.decode(ids, true);
  }

  io::Json usage(const CompletionRequest& r, std::size_t completion) const {
    return {{"prompt_tokens", r.prompt.size()},
            {"completion_tokens", completion},
            {"total_tokens", r.prompt.size() + completion}};
  }

  void complete(httplib::Response& res, const std::shared_ptr<Sequence>& sequence,
                const CompletionRequest& r, const std::string& id) {
    std::vector<std::int64_t> tokens;
    for (bool finished = false; !finished;)
      std::tie(tokens, finished) = sequence->wait(tokens.size(), std::chrono::milliseconds(200));
    const std::string reason = sequence->finish_reason();
    if (reason.starts_with("error"))
      throw ApiError(500, reason, "server_error", "", "generation_failed");
    const std::string text = text_of(tokens, reason == "stop");
    io::Json choice = {{"index", 0}, {"finish_reason", reason}};
    if (r.chat) {
      choice["message"] = {{"role", "assistant"}, {"content", text}};
    } else {
      choice["text"] = text;
      choice["logprobs"] = nullptr;
    }
    if (r.return_token_ids) choice["token_ids"] = tokens;
    reply(res, 200, {{"id", id},
                     {"object", r.chat ? "chat.completion" : "text_completion"},
                     {"created", static_cast<std::int64_t>(std::time(nullptr))},
                     {"model", r.model},
                     {"choices", io::Json::array({choice})},
                     {"usage", usage(r, tokens.size())}});
  }

  // Server-sent events: one chunk per new piece of text, a last chunk with the finish reason,
  // then [DONE]. A failed write (the client went away) cancels the sequence.
  void stream(httplib::Response& res, const std::shared_ptr<Sequence>& sequence,
              const CompletionRequest& r, const std::string& id) {
    struct State {
      std::size_t seen = 0;       // tokens handled
      std::string sent;           // text sent so far
      bool role_sent = false, done = false;
    };
    auto state = std::make_shared<State>();
    const std::int64_t created = static_cast<std::int64_t>(std::time(nullptr));
    auto chunk = [this, r, id, created](const std::string& text, const io::Json& reason,
                                        const std::vector<std::int64_t>& ids, bool role) {
      io::Json choice = {{"index", 0}, {"finish_reason", reason}};
      if (r.chat) {
        choice["delta"] = io::Json::object();
        if (role) choice["delta"]["role"] = "assistant";
        if (!text.empty() || !role) choice["delta"]["content"] = text;
      } else {
        choice["text"] = text;
        choice["logprobs"] = nullptr;
      }
      if (r.return_token_ids) choice["token_ids"] = ids;
      io::Json c = {{"id", id},
                    {"object", r.chat ? "chat.completion.chunk" : "text_completion"},
                    {"created", created},
                    {"model", r.model},
                    {"choices", io::Json::array({choice})}};
      return "data: " + c.dump() + "\n\n";
    };
    res.status = 200;
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, sequence, state, chunk, r](std::size_t, httplib::DataSink& sink) {
          auto send = [&](const std::string& data) {
            if (sink.write(data.data(), data.size())) return true;
            sequence->cancel();
            return false;
          };
          if (r.chat && !state->role_sent) {
            state->role_sent = true;
            if (!send(chunk("", nullptr, {}, true))) return false;
          }
          auto [tokens, finished] = sequence->wait(state->seen, std::chrono::milliseconds(100));
          if (tokens.size() == state->seen && !finished) {
            if (!sink.is_writable()) {
              sequence->cancel();
              return false;
            }
            return true;  // nothing new yet: called again
          }
          const std::string reason = finished ? sequence->finish_reason() : std::string();
          const bool eos = reason == "stop";
          std::string text = text_of(tokens, eos);
          if (!finished) text.resize(detail::complete_utf8_prefix(text));
          if (text.size() > state->sent.size() && text.compare(0, state->sent.size(), state->sent) == 0) {
            const std::vector<std::int64_t> ids(tokens.begin() + static_cast<std::ptrdiff_t>(state->seen),
                                                tokens.end());
            if (!send(chunk(text.substr(state->sent.size()), nullptr, ids, false))) return false;
            state->sent = text;
          }
          state->seen = tokens.size();
          if (finished) {
            if (reason.starts_with("error")) {
              const std::string e = "data: " + ApiError(500, reason, "server_error", "", "generation_failed").body().dump() + "\n\n";
              if (!send(e)) return false;
            } else if (!send(chunk("", reason, {}, false))) {
              return false;
            }
            if (!send("data: [DONE]\n\n")) return false;
            state->done = true;
            sink.done();
          }
          return true;
        },
        [sequence](bool success) {
          if (!success) sequence->cancel();  // the connection ended before [DONE]
        });
  }

  AdapterStore& store_;
  Scheduler<Model>& scheduler_;
  const io::HfTokenizer& tokenizer_;
  std::optional<io::ChatTemplate> chat_template_;
  ServerOptions options_;
  httplib::Server server_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> counter_{0};
  int port_ = -1;
};

}  // namespace fourierft::serve
