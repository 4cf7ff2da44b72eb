#!/usr/bin/env python3
"""pytorch_reference.py — the training steps bench_step times, in plain PyTorch, as the baseline.

Compact GPT-2 (small / medium), RoBERTa-base and ViT-base written in plain torch with Hugging Face's
shapes and random weights (no checkpoint), and three ways to train them:
  fourierft  PEFT-style FourierFT on q and v: base(x) + x·(α·Re(ifft2(F)))ᵀ, n = 1000, α = 150,
             entries from torch.randperm seeded 777 (PEFT's recipe); classifier heads train fully
  lora       LoRA r = 8, lora_alpha = 8 on q and v (B = 0 at start; heads train fully)
  full       every parameter trains
One step = forward, loss (causal-LM cross-entropy over the tied 50257-word head for GPT-2,
classification cross-entropy for RoBERTa / ViT), backward, AdamW step, zero_grad.
Dropout is 0 (bench_step does the same), so both run the fused / eager attention without masks.

  python3 benchmarks/pytorch_reference.py                 default cases (GPT-2 small, RoBERTa-base)
  python3 benchmarks/pytorch_reference.py --all           also GPT-2 medium and ViT-base
  python3 benchmarks/pytorch_reference.py --case gpt2/fourierft --steps 3
  OMP_WAIT_POLICY=PASSIVE python3 benchmarks/pytorch_reference.py   (often faster on few cores)
  python3 benchmarks/pytorch_reference.py --bf16 --case gpt2/fourierft
      forward and loss under torch.autocast("cpu", dtype=torch.bfloat16), as HF Trainer's
      bf16=True does on CPU: matmuls / linears (attention's too) in BF16, parameters, gradients and
      AdamW state FP32; the method is printed as "fourierft+bf16" (bench_step --bf16 prints the same)
  python3 benchmarks/pytorch_reference.py --llama         the LLaMA-family cases (issue 17) only

LLaMA family (cases tinyllama/fourierft and qwen3-0.6b/fourierft; lora also accepted): random
weights in the real shapes of TinyLlama-1.1B-Chat-v1.0 and Qwen3-0.6B, read from the published
configs in tests/fixtures/models/real-shapes/; the HF Llama/Qwen3 forward (RMSNorm, rotate-half RoPE
with rope_theta, GQA by repeat_kv, q/k RMSNorm for Qwen3, SwiGLU, eager causal attention, untied
lm_head for TinyLlama, tied for Qwen3), every base weight frozen (FP32), FourierFT n = 1000,
α = 150 on q_proj and v_proj (v_proj is (kv_heads·head_dim) x hidden under GQA), ΔW recomputed
every call as PEFT does; causal-LM loss over random ids; default batch 4 x 256 tokens. Memory:
TinyLlama's FP32 weights alone are 4.4 GB; measured peak RSS 15.0 GB (TinyLlama) and 11.3 GB
(Qwen3-0.6B, whose 151936 x 1024 tied head makes 0.6 GB logits), so run one case at a time.

Each case runs in its own process (so peak RSS is per case). Output, one TSV row per case:
  impl  model  method  batch  seq  tokens_per_s  ms_per_step  peak_rss_mb  trainable
Threads: torch.set_num_threads(FOURIERFT_NUM_THREADS, default 2) — the same knob bench_step reads.

--generate: the decoding bench_generate times, in plain PyTorch with a KV cache as HF's GPT-2
with use_cache=True (the prompt once, then each row's new token alone against the cached keys and
values, appended by torch.cat; beams reselect the cache rows; the tied LM head only on the last
position), or with --no-cache without one (each new token runs the whole prefix again). GPT-2 small as above (random weights, dropout 0),
eval mode, torch.no_grad(); prompts of random ids, prompt_len each, no padding; greedy, or beam
search as HF's BeamSearchScorer (prompts expanded to num_beams rows before the first pass, beams
2..K start at -1e9, log_softmax, then the no-repeat n-gram ban, then the running sums; the best
num_beams of the prompt's K·V continuations; score = sum log p / new_tokens^length_penalty).
eos is disabled on both sides (bench_generate sets eos -1), so every case generates exactly
new_tokens tokens and no hypothesis closes early. One warm-up generate of 2 tokens, then one
timed run.
  python3 benchmarks/pytorch_reference.py --generate [--case greedy/1 --case beam/4]
      [--prompt-len 32] [--new-tokens 64] [--beams 10]
  Output: impl  mode  batch  prompt_len  new_tokens  tokens_per_s  ms  peak_rss_mb
"""
import argparse
import math
import os
import resource
import statistics
import subprocess
import sys
import time

DEFAULT_CASES = ["gpt2/fourierft", "gpt2/lora", "gpt2/full",
                 "roberta/fourierft", "roberta/lora", "roberta/full"]
EXTRA_CASES = ["gpt2-medium/fourierft", "gpt2-medium/lora", "gpt2-medium/full",
               "vit/fourierft", "vit/lora", "vit/full"]

LLAMA_CASES = ["tinyllama/fourierft", "qwen3-0.6b/fourierft"]
LLAMA_MODELS = {  # case model name: the published config in tests/fixtures/models/real-shapes/
    "tinyllama": "TinyLlama-1.1B-Chat-v1.0",
    "qwen3-0.6b": "Qwen3-0.6B",
}
LLAMA_BATCH, LLAMA_SEQ = 4, 256

MODELS = {  # name: (layers, width, heads, vocab or classes, max positions)
    "gpt2": dict(L=12, C=768, NH=12, V=50257, P=1024),
    "gpt2-medium": dict(L=24, C=1024, NH=16, V=50257, P=1024),
    "roberta": dict(L=12, C=768, NH=12, V=50265, P=514, labels=2),
    "vit": dict(L=12, C=768, NH=12, labels=10, image=224, patch=16),
}


def adapter_classes(torch):
    """The two adapters on a frozen Linear (d_out x d_in), by method name."""
    import torch.nn as nn

    class FourierFT(nn.Module):  # PEFT's FourierFTLayer on a frozen Linear (d_out x d_in)
        def __init__(self, d_out, d_in, n=1000, scaling=150.0, seed=777):
            super().__init__()
            g = torch.Generator().manual_seed(seed)
            idx = torch.randperm(d_out * d_in, generator=g)[:n]
            self.register_buffer("indices", torch.stack([idx // d_in, idx % d_in]))
            self.spectrum = nn.Parameter(torch.randn(n))
            self.scaling, self.shape = scaling, (d_out, d_in)

        def delta(self):
            dense = torch.zeros(self.shape, dtype=self.spectrum.dtype)
            dense[self.indices[0], self.indices[1]] = self.spectrum
            return torch.fft.ifft2(dense).real * self.scaling

        def forward(self, x):
            return x @ self.delta().t()

    class Lora(nn.Module):
        def __init__(self, d_out, d_in, r=8, alpha=8.0):
            super().__init__()
            self.A = nn.Parameter(torch.empty(r, d_in).uniform_(-1 / math.sqrt(d_in), 1 / math.sqrt(d_in)))
            self.B = nn.Parameter(torch.zeros(d_out, r))
            self.s = alpha / r

        def forward(self, x):
            return (x @ self.A.t()) @ self.B.t() * self.s

    return {"fourierft": FourierFT, "lora": Lora}


def build(torch, model_name, method):
    import torch.nn as nn
    import torch.nn.functional as F
    cfg = MODELS[model_name]
    L, C, NH = cfg["L"], cfg["C"], cfg["NH"]
    HS = C // NH

    FourierFT, Lora = adapter_classes(torch).values()

    def adapter(d_out, d_in):
        if method == "fourierft":
            return FourierFT(d_out, d_in)
        if method == "lora":
            return Lora(d_out, d_in)
        return None

    def attention(q, k, v, causal):  # (B, T, C) each -> (B, T, C)
        B, T, _ = q.shape
        q, k, v = (t.view(B, T, NH, HS).transpose(1, 2) for t in (q, k, v))
        s = (q @ k.transpose(-1, -2)) / math.sqrt(HS)
        if causal:
            mask = torch.ones(T, T, dtype=torch.bool).tril()
            s = s.masked_fill(~mask, torch.finfo(s.dtype).min)
        o = s.softmax(-1) @ v
        return o.transpose(1, 2).reshape(B, T, C)

    class Block(nn.Module):
        def __init__(self, pre_ln, act, eps, causal):
            super().__init__()
            self.pre_ln, self.act, self.causal = pre_ln, act, causal
            self.q, self.k, self.v, self.o = (nn.Linear(C, C) for _ in range(4))
            self.aq, self.av = adapter(C, C), adapter(C, C)
            self.ln1, self.ln2 = nn.LayerNorm(C, eps=eps), nn.LayerNorm(C, eps=eps)
            self.fc, self.proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

        def attn(self, x):
            q, k, v = self.q(x), self.k(x), self.v(x)
            if self.aq is not None:
                q, v = q + self.aq(x), v + self.av(x)
            return self.o(attention(q, k, v, self.causal))

        def attn_cached(self, x, past):  # x: (B, t, C) new positions; past: (K, V) (B, NH, P, HS) or None
            B, t, _ = x.shape
            q, k, v = (m(x).view(B, t, NH, HS).transpose(1, 2) for m in (self.q, self.k, self.v))
            if past is not None:  # HF's GPT-2 with use_cache: the new keys / values appended
                k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
            s = (q @ k.transpose(-1, -2)) / math.sqrt(HS)
            if t > 1:  # the prompt pass: causal within the new positions (past is empty then)
                mask = torch.ones(t, k.shape[2], dtype=torch.bool).tril(k.shape[2] - t)
                s = s.masked_fill(~mask, torch.finfo(s.dtype).min)
            o = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, t, C)
            return self.o(o), (k, v)

        def forward_cached(self, x, past):  # GPT-2 (pre-LN) only
            a, present = self.attn_cached(self.ln1(x), past)
            x = x + a
            return x + self.mlp(self.ln2(x)), present

        def mlp(self, x):
            return self.proj(self.act(self.fc(x)))

        def forward(self, x):
            if self.pre_ln:
                x = x + self.attn(self.ln1(x))
                return x + self.mlp(self.ln2(x))
            x = self.ln1(x + self.attn(x))
            return self.ln2(x + self.mlp(x))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            if model_name.startswith("gpt2"):
                self.wte, self.wpe = nn.Embedding(cfg["V"], C), nn.Embedding(cfg["P"], C)
                act = lambda t: F.gelu(t, approximate="tanh")
                self.h = nn.ModuleList(Block(True, act, 1e-5, True) for _ in range(L))
                self.ln_f = nn.LayerNorm(C, eps=1e-5)
            elif model_name == "roberta":
                self.word, self.pos = nn.Embedding(cfg["V"], C), nn.Embedding(cfg["P"], C)
                self.tok_type = nn.Embedding(1, C)
                self.ln_e = nn.LayerNorm(C, eps=1e-5)
                self.h = nn.ModuleList(Block(False, F.gelu, 1e-5, False) for _ in range(L))
                self.classifier = nn.Sequential(nn.Linear(C, C), nn.Tanh(), nn.Linear(C, cfg["labels"]))
            else:
                P = cfg["patch"]
                self.patch = nn.Conv2d(3, C, P, stride=P)
                self.cls = nn.Parameter(torch.zeros(1, 1, C))
                self.pos = nn.Parameter(torch.randn(1, (cfg["image"] // P) ** 2 + 1, C) * 0.02)
                self.h = nn.ModuleList(Block(True, F.gelu, 1e-12, False) for _ in range(L))
                self.ln_f = nn.LayerNorm(C, eps=1e-12)
                self.classifier = nn.Linear(C, cfg["labels"])
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(m.weight, std=0.02)

        def gpt2_hidden(self, ids):  # (B, T) -> (B, T, C) after ln_f, positions 0..T-1
            x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
            for b in self.h:
                x = b(x)
            return self.ln_f(x)

        def gpt2_hidden_cached(self, ids, past):  # ids (B, t) at positions P..P+t-1 after `past`
            P = 0 if past is None else past[0][0].shape[2]
            x = self.wte(ids) + self.wpe(torch.arange(P, P + ids.shape[1]))
            presents = []
            for i, b in enumerate(self.h):
                x, present = b.forward_cached(x, None if past is None else past[i])
                presents.append(present)
            return self.ln_f(x), presents

        def loss(self, batch):
            if model_name.startswith("gpt2"):
                ids = batch
                logits = self.gpt2_hidden(ids) @ self.wte.weight.t()  # tied LM head
                return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                       ids[:, 1:].reshape(-1))
            if model_name == "roberta":
                ids, labels = batch
                T = ids.shape[1]
                x = self.word(ids) + self.pos(torch.arange(2, T + 2)) + self.tok_type.weight[0]
                x = self.ln_e(x)
                for b in self.h:
                    x = b(x)
                return F.cross_entropy(self.classifier(x[:, 0]), labels)
            pixels, labels = batch
            x = self.patch(pixels).flatten(2).transpose(1, 2)
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], 1) + self.pos
            for b in self.h:
                x = b(x)
            return F.cross_entropy(self.classifier(self.ln_f(x)[:, 0]), labels)

    model = Model()
    if method != "full":
        for name, p in model.named_parameters():
            p.requires_grad = (".aq." in name or ".av." in name or name.startswith("classifier"))
    return model


def llama_config(model_name):
    import json
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "tests", "fixtures", "models", "real-shapes", LLAMA_MODELS[model_name] + ".json")
    with open(path, encoding="utf-8") as f:
        return json.load(f)["config"]


def build_llama(torch, model_name, method):
    """LlamaForCausalLM / Qwen3ForCausalLM in HF's layout and math, frozen, adapters on q and v."""
    import torch.nn as nn
    import torch.nn.functional as F
    cfg = llama_config(model_name)
    C, L, V = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or C // H
    inter, eps, theta = cfg["intermediate_size"], cfg["rms_norm_eps"], cfg.get("rope_theta", 10000.0)
    qk_norm = cfg["model_type"] == "qwen3"
    tied = cfg.get("tie_word_embeddings", False)
    Adapter = adapter_classes(torch)[method]

    class RMSNorm(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(n))

        def forward(self, x):
            h = x.float()
            return self.weight * (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)

    def rotate_half(x):
        return torch.cat((-x[..., hd // 2:], x[..., : hd // 2]), dim=-1)

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.q_proj, self.k_proj = nn.Linear(C, H * hd, bias=False), nn.Linear(C, KV * hd, bias=False)
            self.v_proj, self.o_proj = nn.Linear(C, KV * hd, bias=False), nn.Linear(H * hd, C, bias=False)
            self.aq, self.av = Adapter(H * hd, C), Adapter(KV * hd, C)
            if qk_norm:
                self.q_norm, self.k_norm = RMSNorm(hd), RMSNorm(hd)
            self.gate_proj, self.up_proj = nn.Linear(C, inter, bias=False), nn.Linear(C, inter, bias=False)
            self.down_proj = nn.Linear(inter, C, bias=False)
            self.input_layernorm, self.post_attention_layernorm = RMSNorm(C), RMSNorm(C)

        def forward(self, x, cos, sin, mask):
            Bn, T, _ = x.shape
            h = self.input_layernorm(x)
            q = (self.q_proj(h) + self.aq(h)).view(Bn, T, H, hd)
            k = self.k_proj(h).view(Bn, T, KV, hd)
            v = (self.v_proj(h) + self.av(h)).view(Bn, T, KV, hd)
            if qk_norm:
                q, k = self.q_norm(q), self.k_norm(k)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
            k = k.repeat_interleave(H // KV, dim=1)  # repeat_kv
            v = v.repeat_interleave(H // KV, dim=1)
            s = (q @ k.transpose(2, 3)) * hd ** -0.5 + mask
            a = (s.softmax(-1) @ v).transpose(1, 2).reshape(Bn, T, H * hd)
            x = x + self.o_proj(a)
            h = self.post_attention_layernorm(x)
            return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = nn.Embedding(V, C)
            self.layers = nn.ModuleList(Layer() for _ in range(L))
            self.norm = RMSNorm(C)
            self.lm_head = None if tied else nn.Linear(C, V, bias=False)
            with torch.no_grad():
                for name, p in self.named_parameters():
                    if p.dim() == 2 and ".aq." not in name and ".av." not in name:
                        p.normal_(std=0.02)

        def loss(self, ids):
            T = ids.shape[1]
            inv_freq = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
            freqs = torch.outer(torch.arange(T).float(), inv_freq)
            emb = torch.cat((freqs, freqs), dim=-1)
            cos, sin = emb.cos(), emb.sin()
            mask = torch.full((T, T), torch.finfo(torch.float32).min).triu(1)
            x = self.embed_tokens(ids)
            for layer in self.layers:
                x = layer(x, cos, sin, mask)
            x = self.norm(x)
            logits = x @ (self.embed_tokens.weight if tied else self.lm_head.weight).t()
            return F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))

    model = Model()
    for name, p in model.named_parameters():
        p.requires_grad = ".aq." in name or ".av." in name
    return model, V


def run_case(case, batch, seq, steps, images, bf16=False):
    import torch
    torch.manual_seed(0)
    threads = int(os.environ.get("FOURIERFT_NUM_THREADS", "2"))
    torch.set_num_threads(threads)
    model_name, method = case.split("/")
    llama = model_name in LLAMA_MODELS
    if llama:
        model, V = build_llama(torch, model_name, method)
    else:
        model = build(torch, model_name, method)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    cfg = MODELS.get(model_name)
    if llama:
        batch, seq = batch or LLAMA_BATCH, seq or LLAMA_SEQ
        data = torch.randint(0, V, (batch, seq))
        tokens = batch * seq
    elif model_name.startswith("gpt2"):
        batch, seq = batch or 8, seq or 128
        data = torch.randint(0, cfg["V"], (batch, seq))
        tokens = batch * seq
    elif model_name == "roberta":
        batch, seq = batch or 8, seq or 128
        data = (torch.randint(3, cfg["V"], (batch, seq)), torch.randint(0, 2, (batch,)))
        tokens = batch * seq
    else:
        batch = images
        data = (torch.randn(batch, 3, cfg["image"], cfg["image"]), torch.randint(0, 10, (batch,)))
        seq = (cfg["image"] // cfg["patch"]) ** 2 + 1
        tokens = batch * seq
    times = []
    for s in range(steps + 1):  # the first step warms up (allocator, AdamW state)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model.loss(data)
        loss.backward()
        opt.step()
        opt.zero_grad()
        dt = time.perf_counter() - t0
        if s > 0:
            times.append(dt)
        if not math.isfinite(loss.item()):
            sys.exit(f"{case}: loss is {loss.item()} at step {s}")
    ms = statistics.median(times) * 1e3
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    trainable = sum(p.numel() for p in params)
    method = method + "+bf16" if bf16 else method
    print(f"pytorch\t{model_name}\t{method}\t{batch}\t{seq}\t{tokens / (ms / 1e3):.1f}\t{ms:.1f}"
          f"\t{rss_mb:.0f}\t{trainable}", flush=True)


GENERATE_CASES = ["greedy/1", "greedy/4", "beam/1", "beam/4"]


def ban_repeated_ngrams(torch, logp, rows, n):
    """HF's NoRepeatNGramLogitsProcessor: a token that would complete an n-gram already in the row
    (prompt included) gets -inf. logp: (N, V); rows: (N, L)."""
    L = rows.shape[1]
    if n <= 0 or L + 1 < n:
        return
    for i, row in enumerate(rows.tolist()):
        prefix = row[L - n + 1:]
        banned = [row[j + n - 1] for j in range(L - n + 1) if row[j:j + n - 1] == prefix]
        if banned:
            logp[i, banned] = -math.inf


def last_logits(model, rows):  # no cache: the whole (N, L) prefix again, the head on the last position
    return model.gpt2_hidden(rows)[:, -1] @ model.wte.weight.t()


class Decoder:
    """The last position's logits of each row, with a KV cache (use_cache=True: the prompt once,
    then one new token per row per step, the cached keys / values reordered when beams are
    reselected) or without (the whole prefix again every step)."""

    def __init__(self, model, use_cache):
        self.model, self.use_cache, self.past = model, use_cache, None

    def logits(self, rows, parents=None):  # rows: (N, L), all tokens so far
        if not self.use_cache:
            return last_logits(self.model, rows)
        if self.past is not None and parents is not None:
            self.past = [(k[parents], v[parents]) for k, v in self.past]
        new = rows if self.past is None else rows[:, -1:]
        hidden, self.past = self.model.gpt2_hidden_cached(new, self.past)
        return hidden[:, -1] @ self.model.wte.weight.t()


def greedy(torch, model, ids, new_tokens, use_cache):
    rows, score = ids, torch.zeros(ids.shape[0], dtype=torch.float64)
    decoder = Decoder(model, use_cache)
    for _ in range(new_tokens):
        logp = decoder.logits(rows).log_softmax(-1)
        token = logp.argmax(-1)
        score += logp.gather(1, token[:, None])[:, 0].double()
        rows = torch.cat([rows, token[:, None]], 1)
    return rows[:, ids.shape[1]:], score


def beam_search(torch, model, ids, new_tokens, K, length_penalty, ngram, use_cache):
    B, T = ids.shape
    decoder, parents = Decoder(model, use_cache), None
    rows = ids.repeat_interleave(K, 0)  # (B·K, T): row b·K + k is beam k of prompt b
    beam_scores = torch.zeros(B, K)
    beam_scores[:, 1:] = -1e9  # the first step branches from one beam
    beam_scores = beam_scores.view(-1)
    offsets = (torch.arange(B) * K)[:, None]
    for _ in range(new_tokens):
        logp = decoder.logits(rows, parents).log_softmax(-1)  # (B·K, V)
        ban_repeated_ngrams(torch, logp, rows, ngram)
        V = logp.shape[1]
        scores = (logp + beam_scores[:, None]).view(B, K * V)
        top, idx = scores.topk(2 * K, dim=1)  # HF keeps 2K for eos; with no eos the first K win
        top, idx = top[:, :K], idx[:, :K]
        parents = (idx // V + offsets).reshape(-1)
        rows = torch.cat([rows[parents], (idx % V).reshape(-1, 1)], 1)
        beam_scores = top.reshape(-1)
    final = beam_scores.view(B, K) / float(new_tokens) ** length_penalty
    best = final.argmax(1)
    picked = rows.view(B, K, -1)[torch.arange(B), best]
    return picked[:, T:], final[torch.arange(B), best]


def run_generate_case(case, prompt_len, new_tokens, beams, use_cache):
    import torch
    torch.manual_seed(0)
    torch.set_num_threads(int(os.environ.get("FOURIERFT_NUM_THREADS", "2")))
    mode, batch = case.split("/")
    batch = int(batch)
    if mode not in ("greedy", "beam"):
        sys.exit(f"unknown generate mode '{mode}' (greedy, beam)")
    model = build(torch, "gpt2", "full")
    model.eval()
    ids = torch.randint(0, MODELS["gpt2"]["V"] - 1, (batch, prompt_len))

    def generate(n):
        if mode == "greedy":
            return greedy(torch, model, ids, n, use_cache)
        return beam_search(torch, model, ids, n, beams, 0.8, 4, use_cache)  # the E2E recipe

    with torch.no_grad():
        generate(2)  # warm-up
        t0 = time.perf_counter()
        tokens, _ = generate(new_tokens)
        ms = (time.perf_counter() - t0) * 1e3
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    generated = tokens.shape[1]
    print(f"pytorch\t{mode}\t{batch}\t{prompt_len}\t{generated}\t{batch * generated / (ms / 1e3):.2f}"
          f"\t{ms:.1f}\t{rss_mb:.0f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", action="append", help="model/method, e.g. gpt2/fourierft (repeatable)")
    ap.add_argument("--all", action="store_true", help="also GPT-2 medium and ViT-base")
    ap.add_argument("--llama", action="store_true", help="the LLaMA-family cases: " + " ".join(LLAMA_CASES))
    ap.add_argument("--batch", type=int, default=None, help="default 8 (LLaMA family: 4)")
    ap.add_argument("--seq", type=int, default=None, help="default 128 (LLaMA family: 256)")
    ap.add_argument("--images", type=int, default=8, help="ViT batch (197 tokens each)")
    ap.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up step")
    ap.add_argument("--header", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--bf16", action="store_true",
                    help="training steps under torch.autocast('cpu', dtype=torch.bfloat16)")
    ap.add_argument("--generate", action="store_true",
                    help="time generation instead (cases mode/batch: greedy/1 greedy/4 beam/1 beam/4)")
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--cache", action=argparse.BooleanOptionalAction, default=True,
                    help="--generate with a KV cache (default, as HF's use_cache=True) or --no-cache")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--beams", type=int, default=10)
    a = ap.parse_args()
    if a.generate:
        cases = a.case or GENERATE_CASES
        if a.header:
            print("impl\tmode\tbatch\tprompt_len\tnew_tokens\ttokens_per_s\tms\tpeak_rss_mb", flush=True)
        if len(cases) == 1:
            run_generate_case(cases[0], a.prompt_len, a.new_tokens, a.beams, a.cache)
            return
        for case in cases:  # one process per case
            subprocess.run([sys.executable, __file__, "--generate", "--no-header", "--case", case,
                            "--prompt-len", str(a.prompt_len), "--new-tokens", str(a.new_tokens),
                            "--beams", str(a.beams), "--cache" if a.cache else "--no-cache"],
                           check=True)
        return
    cases = a.case or (LLAMA_CASES if a.llama else DEFAULT_CASES + (EXTRA_CASES if a.all else []))
    if a.header:
        print("impl\tmodel\tmethod\tbatch\tseq\ttokens_per_s\tms_per_step\tpeak_rss_mb\ttrainable", flush=True)
    if len(cases) == 1:
        run_case(cases[0], a.batch, a.seq, a.steps, a.images, a.bf16)
        return
    for case in cases:  # one process per case: peak RSS per case, no allocator carry-over
        sizes = [arg for flag, v in (("--batch", a.batch), ("--seq", a.seq)) if v for arg in (flag, str(v))]
        subprocess.run([sys.executable, __file__, "--no-header", "--case", case, *sizes,
                        "--steps", str(a.steps), "--images", str(a.images),
                        *(["--bf16"] if a.bf16 else [])], check=True)


if __name__ == "__main__":
    main()
