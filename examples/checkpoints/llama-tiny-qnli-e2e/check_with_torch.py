"""Checks this folder as Hugging Face would read it, with torch only (no transformers, no
safetensors package): the model.safetensors header (keys, shapes, dtypes, offsets) against the
tensors LlamaForCausalLM.save_pretrained writes for config.json, the tokenizer.json vocabulary and
merges, and the model itself: the loss of a few ASCII sentences and a greedy continuation, computed
by tests/fixtures/make_llama_fixtures.py's functional LlamaForCausalLM (eager attention).

  /usr/bin/python3 examples/checkpoints/llama-tiny-qnli-e2e/check_with_torch.py [FOLDER]
(FOLDER: another clm-llama output folder; default this one)
"""
import json
import math
import os
import re
import struct
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "tests", "fixtures"))
import make_fixtures as mf  # noqa: E402
import make_llama_fixtures as ml  # noqa: E402

FOLDER = sys.argv[1] if len(sys.argv) > 1 else HERE

cfg = json.load(open(os.path.join(FOLDER, "config.json")))
assert cfg["model_type"] == "llama" and cfg["architectures"] == ["LlamaForCausalLM"], cfg

# ---- model.safetensors: header as the safetensors library writes and reads it ----------------------
path = os.path.join(FOLDER, "model.safetensors")
data = open(path, "rb").read()
(n,) = struct.unpack("<Q", data[:8])
header = json.loads(data[8:8 + n])
assert header.pop("__metadata__", {}).get("format") == "pt", "metadata format should be pt"
want = ml.param_shapes(cfg)
assert set(header) == set(want), (set(header) ^ set(want))
end = 0
for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
    assert info["shape"] == want[name], (name, info["shape"], want[name])
    assert info["dtype"] == "BF16", (name, info["dtype"])  # config.json: torch_dtype bfloat16
    begin, stop = info["data_offsets"]
    assert begin == end and stop - begin == 2 * math.prod(info["shape"]), name
    end = stop
assert 8 + n + end == len(data), "trailing bytes"
assert cfg["torch_dtype"] == "bfloat16"
w = {k: v.float() for k, v in mf.read_safetensors(path).items()}
print(f"model.safetensors: {len(header)} tensors, all BF16, keys and shapes of LlamaForCausalLM "
      f"(tied head: {ml.tied(cfg)}), {sum(math.prod(s) for s in want.values()):,} parameters")

# ---- tokenizer.json: a byte-level BPE whose merges all build tokens of the vocabulary -------------
tok = json.load(open(os.path.join(FOLDER, "tokenizer.json")))
vocab, merges = tok["model"]["vocab"], [tuple(m.split(" ")) for m in tok["model"]["merges"]]
assert sorted(vocab.values()) == list(range(len(vocab)))
assert all(a in vocab and b in vocab and a + b in vocab for a, b in merges)
added = {t["content"]: t["id"] for t in tok["added_tokens"]}
assert max(added.values()) + 1 == cfg["vocab_size"], (added, cfg["vocab_size"])
assert tok["pre_tokenizer"]["type"] == "ByteLevel" and tok["decoder"]["type"] == "ByteLevel"
tc = json.load(open(os.path.join(FOLDER, "tokenizer_config.json")))
assert added[tc["eos_token"]] == cfg["eos_token_id"][0] and added[tc["pad_token"]] == cfg["pad_token_id"]
print(f"tokenizer.json: {len(vocab)} tokens, {len(merges)} merges, added {added}")

# GPT-2's byte-level BPE, for ASCII text only (its split regex with ASCII letter / digit classes).
byte_char = {}
chars = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
extra = 0
for b in range(256):
    if b in chars:
        byte_char[b] = chr(b)
    else:
        byte_char[b] = chr(256 + extra)
        extra += 1
char_byte = {c: b for b, c in byte_char.items()}
rank = {m: i for i, m in enumerate(merges)}
split = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")


def encode(text):
    assert text.isascii()
    ids = []
    for word in split.findall(text):
        parts = [byte_char[b] for b in word.encode()]
        while len(parts) > 1:
            pairs = [(rank.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            best, i = min(pairs)
            if best == 1 << 30:
                break
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        ids += [vocab[p] for p in parts]
    return ids


id_token = {i: t for t, i in vocab.items()}


def decode(ids):
    return bytes(char_byte[c] for i in ids for c in id_token[i]).decode("utf-8", "replace")


texts = ["The Eagle is a coffee shop that serves Italian food near Burger King in the city centre.",
         "What is the capital city of France?",
         "The university was founded in 1850 and has about 20,000 students."]
with torch.no_grad():
    for text in texts:
        ids = torch.tensor([encode(text)])
        assert decode(ids[0].tolist()) == text
        logits, _ = ml.forward(w, cfg, ids)
        loss = ml.causal_lm_loss(logits, ids).item()
        print(f"loss {loss:.3f} (uniform {math.log(cfg['vocab_size']):.3f}) over {ids.shape[1]} tokens: {text}")
    prompt = torch.tensor([encode("The city of")])
    out = ml.greedy_generate(w, cfg, prompt, torch.ones_like(prompt), 16)
    print("greedy:", repr(decode(out[0].tolist())))
