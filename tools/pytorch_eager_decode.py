#!/usr/bin/env python3
"""PyTorch eager baseline for full-model decode: a Llama-family checkpoint in
Hugging Face layout run op by op from Python (the way a researcher's script
would), greedy, with a KV cache. Prints decode tokens/s (median of --repeats
runs), for comparison with `tandem generate` on the same checkpoint.

Usage: /usr/bin/python3 tools/pytorch_eager_decode.py --model models/tandem-tiny
           [--new-tokens 128] [--threads 1] [--repeats 5]
"""
import argparse
import json
import math
import statistics
import struct
import time

import numpy as np
import torch

_DTYPES = {"F32": np.float32, "F16": np.float16}


def read_safetensors(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        if info["dtype"] == "BF16":
            raw = np.frombuffer(data[a:b], dtype=np.uint16).astype(np.uint32) << 16
            arr = raw.view(np.float32)
        else:
            arr = np.frombuffer(data[a:b], dtype=_DTYPES[info["dtype"]])
        out[name] = torch.from_numpy(arr.astype(np.float32).reshape(info["shape"]).copy())
    return out


class Llama:
    def __init__(self, model_dir):
        with open(f"{model_dir}/config.json") as f:
            self.cfg = cfg = json.load(f)
        self.w = read_safetensors(f"{model_dir}/model.safetensors")
        self.heads = cfg["num_attention_heads"]
        self.kv_heads = cfg.get("num_key_value_heads") or self.heads
        self.hd = cfg.get("head_dim") or cfg["hidden_size"] // self.heads
        self.layers = cfg["num_hidden_layers"]
        self.eps = cfg["rms_norm_eps"]
        theta = cfg.get("rope_theta", 10000.0)
        self.inv_freq = 1.0 / theta ** (torch.arange(0, self.hd, 2, dtype=torch.float32) / self.hd)
        self.head = self.w.get("lm_head.weight", self.w["model.embed_tokens.weight"])

    def norm(self, x, weight):
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))

    def rotate(self, x, pos):
        angles = pos[:, None].float() * self.inv_freq[None, :]
        cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
        half = self.hd // 2
        rot = torch.cat([-x[..., half:], x[..., :half]], -1)
        return x * cos[:, None, :] + rot * sin[:, None, :]

    def step(self, ids, start, cache):
        w, t = self.w, len(ids)
        pos = torch.arange(start, start + t)
        x = w["model.embed_tokens.weight"][torch.tensor(ids)]
        group = self.heads // self.kv_heads
        for l in range(self.layers):
            p = f"model.layers.{l}."
            h = self.norm(x, w[p + "input_layernorm.weight"])
            q = (h @ w[p + "self_attn.q_proj.weight"].T).view(t, self.heads, self.hd)
            k = (h @ w[p + "self_attn.k_proj.weight"].T).view(t, self.kv_heads, self.hd)
            v = (h @ w[p + "self_attn.v_proj.weight"].T).view(t, self.kv_heads, self.hd)
            q, k = self.rotate(q, pos), self.rotate(k, pos)
            if l in cache:
                k = torch.cat([cache[l][0], k])
                v = torch.cat([cache[l][1], v])
            cache[l] = (k, v)
            kk = k.repeat_interleave(group, dim=1).transpose(0, 1)
            vv = v.repeat_interleave(group, dim=1).transpose(0, 1)
            scores = q.transpose(0, 1) @ kk.transpose(1, 2) / math.sqrt(self.hd)
            mask = torch.arange(k.shape[0])[None, :] > pos[:, None]
            scores = scores.masked_fill(mask, float("-inf"))
            out = (scores.softmax(-1) @ vv).transpose(0, 1).reshape(t, -1)
            x = x + out @ w[p + "self_attn.o_proj.weight"].T
            h = self.norm(x, w[p + "post_attention_layernorm.weight"])
            g = torch.nn.functional.silu(h @ w[p + "mlp.gate_proj.weight"].T)
            x = x + (g * (h @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
        x = self.norm(x[-1], w["model.norm.weight"])
        return x @ self.head.T


def run(model, prompt, new_tokens):
    with torch.inference_mode():
        cache = {}
        logits = model.step(prompt, 0, cache)
        ids = [int(logits.argmax())]
        start = time.perf_counter()
        for i in range(new_tokens - 1):
            logits = model.step(ids[-1:], len(prompt) + i, cache)
            ids.append(int(logits.argmax()))
        return ids, (new_tokens - 1) / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--prompt-ids", default="8189,644,262,2026,280")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = Llama(args.model)
    prompt = [int(s) for s in args.prompt_ids.split(",")]
    rates = []
    for _ in range(args.repeats):
        ids, rate = run(model, prompt, args.new_tokens)
        rates.append(rate)
    print(json.dumps({"engine": "pytorch_eager_fp32", "threads": args.threads,
                      "decode_tokens_per_s_median": statistics.median(rates),
                      "runs": rates, "ids": ids}))


if __name__ == "__main__":
    main()
