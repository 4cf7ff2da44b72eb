#!/usr/bin/env python3
"""Converts a legacy PyTorch checkpoint (pytorch_model.bin) into Hugging Face's safetensors layout.

fourierft reads only safetensors. Older hub checkpoints (and many fine-tuned ones) ship a pickled
`pytorch_model.bin` instead; this script rewrites it the way transformers' save_pretrained would:

  * every tensor made contiguous and written as `model.safetensors` with metadata {"format": "pt"}
    (tensors ordered by dtype, then name; header padded to 8 bytes — the `safetensors` library's layout);
  * tensors sharing storage (tied weights) written once: the copies HF drops on save are removed —
    `lm_head.weight` (GPT-2, tied to `transformer.wte.weight`), `lm_head.decoder.weight` and
    `lm_head.decoder.bias` (RoBERTa, tied to the word embeddings and `lm_head.bias`), BERT's
    `cls.predictions.decoder.*`; of any other group of aliases the first name (sorted) is kept;
  * buffers stored in old files (GPT-2's `attn.bias` / `attn.masked_bias`, RoBERTa's
    `embeddings.position_ids`) are kept, as HF's own conversions keep them; fourierft ignores them;
  * a sharded checkpoint (`pytorch_model.bin.index.json` + `pytorch_model-0000i-of-0000n.bin`) becomes
    `model-0000i-of-0000n.safetensors` + `model.safetensors.index.json`.
Non-tensor entries (rare: optimizer state, step counters) are skipped with a note. config.json and
the tokenizer files are not touched: keep them beside the output.

Usage:
    python3 scripts/convert_pytorch_bin.py CHECKPOINT_DIR            # writes CHECKPOINT_DIR/model.safetensors
    python3 scripts/convert_pytorch_bin.py pytorch_model.bin OUT.safetensors
    python3 scripts/convert_pytorch_bin.py CHECKPOINT_DIR --out-dir OTHER_DIR [--check]

--check reloads the written file(s) and compares every tensor with the pickle (bit-exact).
Needs torch only (no transformers, no safetensors package). torch.load runs with weights_only=True
where the installed torch supports it; pass --unsafe-pickle to allow arbitrary pickles you trust.
"""

import argparse
import json
import os
import re
import struct
import sys

import numpy as np
import torch

# Names save_pretrained drops when they alias another tensor (models' _tied_weights_keys).
TIED_PATTERNS = [r"(^|\.)lm_head\.weight$", r"(^|\.)lm_head\.decoder\.weight$",
                 r"(^|\.)lm_head\.decoder\.bias$", r"(^|\.)cls\.predictions\.decoder\.(weight|bias)$"]

_ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32",
          "F64", "I64", "U64"]
_DTYPE = {torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16",
          torch.float16: "F16", torch.bfloat16: "BF16", torch.int32: "I32", torch.float32: "F32",
          torch.float64: "F64", torch.int64: "I64"}
_TORCH = {v: k for k, v in _DTYPE.items()}


def tensor_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def safetensors_bytes(tensors, metadata):
    for name, t in tensors.items():
        if t.dtype not in _DTYPE:
            raise SystemExit(f"{name}: dtype {t.dtype} has no safetensors equivalent")
    items = sorted(tensors.items(), key=lambda kv: kv[0])
    items = sorted(items, key=lambda kv: -_ORDER.index(_DTYPE[kv[1].dtype]))
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, t in items:
        blob = tensor_bytes(t)
        header[name] = {"dtype": _DTYPE[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def write_atomically(path, data):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        raw = data[8 + n + begin:8 + n + end]
        dtype = _TORCH[info["dtype"]]
        if dtype == torch.bfloat16:
            t = torch.from_numpy(np.frombuffer(raw, dtype=np.int16).copy()).view(torch.bfloat16)
        else:
            t = torch.from_numpy(np.frombuffer(raw, dtype=torch.empty(0, dtype=dtype).numpy().dtype).copy())
        out[name] = t.reshape(info["shape"])
    return out


def load_bin(path, unsafe):
    kwargs = {"map_location": "cpu"}
    if not unsafe:
        kwargs["weights_only"] = True
    try:
        obj = torch.load(path, **kwargs)
    except TypeError:  # torch < 1.13: no weights_only
        kwargs.pop("weights_only", None)
        obj = torch.load(path, **kwargs)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise SystemExit(f"{path}: expected a state dict, found {type(obj).__name__}")
    state = {}
    for name, value in obj.items():
        if isinstance(value, torch.Tensor):
            state[name] = value
        else:
            print(f"  skipping non-tensor entry {name!r} ({type(value).__name__})", file=sys.stderr)
    return state


def storage_key(t):
    # Tensors that alias memory: same storage (identical data_ptr of the untyped storage).
    try:
        return t.untyped_storage().data_ptr()
    except AttributeError:
        return t.storage().data_ptr()


def drop_shared(state):
    """Removes aliases as save_pretrained does; returns (kept state, list of (dropped, kept))."""
    groups = {}
    for name, t in state.items():
        if t.numel() == 0:
            continue
        groups.setdefault(storage_key(t), []).append(name)
    dropped = []
    for names in groups.values():
        if len(names) < 2:
            continue
        # Only true aliases (same bytes), not two views of disjoint parts of one buffer.
        def span(n):
            t = state[n]
            return (t.data_ptr(), t.numel() * t.element_size())
        by_span = {}
        for n in names:
            by_span.setdefault(span(n), []).append(n)
        for aliases in by_span.values():
            if len(aliases) < 2:
                continue
            tied = [n for n in sorted(aliases) if any(re.search(p, n) for p in TIED_PATTERNS)]
            keep = [n for n in sorted(aliases) if n not in tied]
            if not keep:  # every name looks tied: keep the first
                keep, tied = tied[:1], tied[1:]
            for n in tied + keep[1:]:
                dropped.append((n, keep[0]))
    out = {n: t.contiguous().clone() for n, t in state.items() if n not in {d for d, _ in dropped}}
    return out, dropped


def convert_file(src, dst, unsafe, check):
    print(f"{src} -> {dst}")
    state = load_bin(src, unsafe)
    kept, dropped = drop_shared(state)
    for name, target in dropped:
        print(f"  dropped {name} (shares memory with {target})")
    write_atomically(dst, safetensors_bytes(kept, {"format": "pt"}))
    print(f"  wrote {len(kept)} tensors, {os.path.getsize(dst)} bytes")
    if check:
        back = read_safetensors(dst)
        assert back.keys() == kept.keys(), "key sets differ after the round trip"
        for name, t in kept.items():
            assert back[name].dtype == t.dtype and back[name].shape == t.shape, name
            assert tensor_bytes(back[name]) == tensor_bytes(t), name  # bit-exact, NaNs included
        print("  check: every tensor reloads bit-exact")
    return kept


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="pytorch_model.bin, its index .json, or a checkpoint folder")
    ap.add_argument("dst", nargs="?", help="output .safetensors (single file only)")
    ap.add_argument("--out-dir", help="folder for the output (default: beside the input)")
    ap.add_argument("--check", action="store_true", help="reload and compare after writing")
    ap.add_argument("--unsafe-pickle", action="store_true", help="torch.load without weights_only")
    args = ap.parse_args()

    src = args.src
    if os.path.isdir(src):
        index = os.path.join(src, "pytorch_model.bin.index.json")
        src = index if os.path.exists(index) else os.path.join(src, "pytorch_model.bin")
    if not os.path.exists(src):
        raise SystemExit(f"{src}: no such file")
    out_dir = args.out_dir or os.path.dirname(os.path.abspath(src))
    os.makedirs(out_dir, exist_ok=True)

    if src.endswith(".json"):  # sharded
        if args.dst:
            raise SystemExit("a sharded checkpoint converts into a folder: use --out-dir")
        with open(src) as f:
            index = json.load(f)
        shards = sorted(set(index["weight_map"].values()))
        weight_map, total = {}, 0
        for i, shard in enumerate(shards, 1):
            name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
            kept = convert_file(os.path.join(os.path.dirname(src), shard), os.path.join(out_dir, name),
                                args.unsafe_pickle, args.check)
            for k, t in kept.items():
                weight_map[k] = name
                total += t.numel() * t.element_size()
        text = json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map},
                          indent=2, sort_keys=True) + "\n"
        write_atomically(os.path.join(out_dir, "model.safetensors.index.json"), text.encode())
        print(f"wrote {os.path.join(out_dir, 'model.safetensors.index.json')}")
    else:
        dst = args.dst or os.path.join(out_dir, "model.safetensors")
        convert_file(src, dst, args.unsafe_pickle, args.check)


if __name__ == "__main__":
    main()
