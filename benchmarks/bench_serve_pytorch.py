#!/usr/bin/python3
"""bench_serve_pytorch.py — the baseline of bench_serve in plain PyTorch (PEFT is not installable
here: no PyPI). The same mixed batch as bench_serve's mixed/* cases — 8 sequences, each with its own
FourierFT adapter on q_proj and v_proj — served the only way PEFT can: one adapter at a time.
Each turn merges that adapter's dense ΔW = scaling * Re(ifft2(F)) into q_proj and v_proj of every
layer (what PEFT's merge does), decodes its sequence alone (batch 1, KV cache) for --steps tokens,
and unmerges. Reported: decode tokens/s with the merges counted and without them, and the ms
per merge + unmerge. Same shapes (Qwen3-0.6B from tests/fixtures/models/real-shapes), random FP32
weights, the same prompt length and steps.

  /usr/bin/python3 benchmarks/bench_serve_pytorch.py [--model Qwen3-0.6B] [--steps 16] [--rounds 3]
"""
import argparse
import json
import os
import time

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--model", default="Qwen3-0.6B")
parser.add_argument("--prompt-len", type=int, default=32)
parser.add_argument("--steps", type=int, default=16)
parser.add_argument("--rounds", type=int, default=3)
parser.add_argument("--n", type=int, default=1000)
args = parser.parse_args()
torch.manual_seed(0)
torch.set_num_threads(int(os.environ.get("FOURIERFT_NUM_THREADS", os.cpu_count())))
here = os.path.dirname(os.path.abspath(__file__))
c = json.load(open(os.path.join(here, "..", "tests/fixtures/models/real-shapes", args.model + ".json")))["config"]
D, F, L = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
H, KV = c["num_attention_heads"], c.get("num_key_value_heads", c["num_attention_heads"])
HS = c.get("head_dim") or D // H
V, eps, theta = c["vocab_size"], c["rms_norm_eps"], c.get("rope_theta", 10000.0)
qk_norm = c.get("model_type") == "qwen3"


def linear(o, i):
    return (torch.rand(o, i) * 2 - 1) / i ** 0.5


layers = [dict(q=linear(H * HS, D), k=linear(KV * HS, D), v=linear(KV * HS, D), o=linear(D, H * HS),
               gate=linear(F, D), up=linear(F, D), down=linear(D, F)) for _ in range(L)]
embed = torch.randn(V, D) * 0.02
lm_head = embed if c.get("tie_word_embeddings") else linear(V, D)
inv_freq = 1.0 / theta ** (torch.arange(0, HS, 2).float() / HS)


def rms(x):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def rope(x, pos):  # x: (B, heads, T, HS); rotate-half layout
    f = pos[:, None].float() * inv_freq[None, :]
    cos, sin = torch.cat([f.cos(), f.cos()], -1), torch.cat([f.sin(), f.sin()], -1)
    x1, x2 = x[..., : HS // 2], x[..., HS // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def forward(ids, pos, cache):  # ids (B, T); cache: per layer [k, v] or None
    x = embed[ids]
    B, T = ids.shape
    for li, w in enumerate(layers):
        h = rms(x)
        q = (h @ w["q"].T).view(B, T, H, HS)
        k = (h @ w["k"].T).view(B, T, KV, HS)
        v = (h @ w["v"].T).view(B, T, KV, HS).transpose(1, 2)
        if qk_norm:
            q, k = rms(q), rms(k)
        q, k = rope(q.transpose(1, 2), pos), rope(k.transpose(1, 2), pos)
        if cache[li] is not None:
            k, v = torch.cat([cache[li][0], k], 2), torch.cat([cache[li][1], v], 2)
        cache[li] = [k, v]
        k, v = k.repeat_interleave(H // KV, 1), v.repeat_interleave(H // KV, 1)
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=T > 1) \
            if hasattr(torch.nn.functional, "scaled_dot_product_attention") else \
            torch.softmax((q @ k.transpose(-1, -2)) / HS ** 0.5 + (torch.triu(torch.full((T, k.shape[2]), float("-inf")), 1 + k.shape[2] - T) if T > 1 else 0), -1) @ v
        x = x + a.transpose(1, 2).reshape(B, T, H * HS) @ w["o"].T
        h = rms(x)
        x = x + (torch.nn.functional.silu(h @ w["gate"].T) * (h @ w["up"].T)) @ w["down"].T
    return rms(x[:, -1]) @ lm_head.T


def delta(weight, spectrum, entries, scaling=150.0):  # PEFT: scaling * Re(ifft2(F))
    M, N = weight.shape
    dense = torch.zeros(M, N, dtype=torch.complex64)
    dense[entries[0], entries[1]] = spectrum.to(torch.complex64)
    return torch.fft.ifft2(dense).real * scaling


g = torch.Generator().manual_seed(777)
entries = {}
for name in ("q", "v"):
    M, N = layers[0][name].shape
    idx = torch.randperm(M * N, generator=g)[: args.n]
    entries[name] = (idx // N, idx % N)
adapters = [{(li, name): torch.randn(args.n) for li in range(L) for name in ("q", "v")} for _ in range(8)]


def merge(adapter, sign):
    for (li, name), s in adapter.items():
        layers[li][name] += sign * delta(layers[li][name], s, entries[name])


@torch.no_grad()
def turn(adapter):
    t0 = time.perf_counter()
    merge(adapter, +1)
    t1 = time.perf_counter()
    cache = [None] * L
    ids = torch.randint(0, 1000, (1, args.prompt_len))
    logits = forward(ids, torch.arange(args.prompt_len), cache)
    t2 = time.perf_counter()
    for s in range(args.steps):
        tok = logits.argmax(-1, keepdim=True)
        logits = forward(tok, torch.tensor([args.prompt_len + s]), cache)
    t3 = time.perf_counter()
    merge(adapter, -1)
    t4 = time.perf_counter()
    return (t1 - t0) + (t4 - t3), t3 - t2


with torch.no_grad():
    forward(torch.randint(0, 1000, (1, 4)), torch.arange(4), [None] * L)  # warm-up
results = []
for r in range(args.rounds):
    merges = decode = 0.0
    for a in adapters:
        m, d = turn(a)
        merges, decode = merges + m, decode + d
    results.append((merges, decode))
    print(f"round {r}: decode {8 * args.steps / decode:.1f} tok/s without merges, "
          f"{8 * args.steps / (decode + merges):.1f} with; merge+unmerge {1000 * merges / 8:.0f} ms per adapter")
results.sort(key=lambda x: x[1])
m, d = results[len(results) // 2]
print(f"pytorch/8-turns-merged\t{8 * args.steps / (d + m):.1f} tok/s (merges counted)\t"
      f"{8 * args.steps / d:.1f} tok/s (decode only)\t{1000 * m / 8:.0f} ms merge+unmerge per adapter\t"
      f"threads {torch.get_num_threads()}")
