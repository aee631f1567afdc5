#!/usr/bin/python3
"""PyTorch eager baseline: greedy decoding of a Hugging Face Llama-family
checkpoint with Debian's python3-torch, written the plain way (one module call
per op, KV cache as growing tensors) — what a researcher would run before any
engine. The benchmark suite runs it on the same weights, prompts and thread
count as Tandem's full-model decode and reports Tandem's decode step as a
ratio to it.

Reads config.json and *.safetensors (f32/f16/bf16) itself: the format is an
8-byte little-endian header length, a JSON header, then raw tensors.
Supports what the shipped and the `tandem random-model` checkpoints use:
RMSNorm, RoPE (no scaling), GQA, SwiGLU, optional q/k/v biases, tied or untied
LM head. Output: one JSON object on stdout.

  torch_baseline.py --model DIR --prompts prompts.json --tokens 32 --threads 1
"""
import argparse
import glob
import json
import os
import statistics
import struct
import sys
import time

import numpy as np
import torch

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None}


def load_safetensors(path):
    out = {}
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        data = np.memmap(path, dtype=np.uint8, mode="r")
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = data[base + begin: base + end]
        if info["dtype"] == "BF16":
            u16 = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
            arr = u16.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=DTYPES[info["dtype"]]).astype(np.float32)
        out[name] = torch.from_numpy(arr.reshape(info["shape"]).copy())
    return out


class Llama:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            self.c = json.load(f)
        w = {}
        for path in sorted(glob.glob(os.path.join(model_dir, "*.safetensors"))):
            if os.path.basename(path).startswith("tandem_exits"):
                continue
            w.update(load_safetensors(path))
        self.w = {k.removeprefix("model."): v for k, v in w.items()}
        c = self.c
        self.layers = c["num_hidden_layers"]
        self.heads = c["num_attention_heads"]
        self.kv_heads = c.get("num_key_value_heads", self.heads)
        self.head_dim = c.get("head_dim") or c["hidden_size"] // self.heads
        self.eps = c.get("rms_norm_eps", 1e-6)
        theta = c.get("rope_theta", 10000.0)
        self.inv_freq = 1.0 / (theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim))
        self.lm_head = self.w.get("lm_head.weight", self.w["embed_tokens.weight"])

    def weight_bytes(self):
        return sum(t.numel() * 4 for t in self.w.values())

    def norm(self, x, weight):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * weight

    def rope(self, x, positions):
        freqs = positions[:, None].float() * self.inv_freq[None, :]
        emb = torch.cat([freqs, freqs], dim=-1)
        cos, sin = emb.cos(), emb.sin()
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    def linear(self, x, name):
        y = x @ self.w[name + ".weight"].T
        bias = self.w.get(name + ".bias")
        return y + bias if bias is not None else y

    def forward(self, ids, positions, cache):
        x = self.w["embed_tokens.weight"][ids]
        t = ids.shape[0]
        for i in range(self.layers):
            p = f"layers.{i}."
            h = self.norm(x, self.w[p + "input_layernorm.weight"])
            q = self.linear(h, p + "self_attn.q_proj").view(t, self.heads, self.head_dim).transpose(0, 1)
            k = self.linear(h, p + "self_attn.k_proj").view(t, self.kv_heads, self.head_dim).transpose(0, 1)
            v = self.linear(h, p + "self_attn.v_proj").view(t, self.kv_heads, self.head_dim).transpose(0, 1)
            q, k = self.rope(q, positions), self.rope(k, positions)
            if cache[i] is not None:
                k = torch.cat([cache[i][0], k], dim=1)
                v = torch.cat([cache[i][1], v], dim=1)
            cache[i] = (k, v)
            group = self.heads // self.kv_heads
            kk = k.repeat_interleave(group, dim=0)
            vv = v.repeat_interleave(group, dim=0)
            scores = q @ kk.transpose(1, 2) / (self.head_dim ** 0.5)
            total = kk.shape[1]
            mask = torch.ones(t, total, dtype=torch.bool).tril(diagonal=total - t)
            scores = scores.masked_fill(~mask, float("-inf"))
            attn = torch.softmax(scores, dim=-1) @ vv
            x = x + self.linear(attn.transpose(0, 1).reshape(t, -1), p + "self_attn.o_proj")
            h = self.norm(x, self.w[p + "post_attention_layernorm.weight"])
            gate = torch.nn.functional.silu(self.linear(h, p + "mlp.gate_proj"))
            x = x + self.linear(gate * self.linear(h, p + "mlp.up_proj"), p + "mlp.down_proj")
        x = self.norm(x[-1:], self.w["norm.weight"])
        return x @ self.lm_head.T


def generate(model, prompt, tokens):
    cache = [None] * model.layers
    ids = torch.tensor(prompt, dtype=torch.long)
    position = 0
    out, steps = [], []
    start = time.perf_counter()
    prefill = 0.0
    with torch.inference_mode():
        for step in range(tokens):
            t0 = time.perf_counter()
            logits = model.forward(ids, torch.arange(position, position + ids.shape[0]), cache)
            position += ids.shape[0]
            token = int(logits[0].argmax())
            if step == 0:
                prefill = time.perf_counter() - start
            else:
                steps.append(time.perf_counter() - t0)
            out.append(token)
            ids = torch.tensor([token], dtype=torch.long)
    return out, prefill, steps


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", required=True, help="JSON list of token-id lists")
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with open(args.prompts) as f:
        prompts = json.load(f)
    model = Llama(args.model)
    generate(model, prompts[0], 4)  # warm-up
    runs = []
    for prompt in prompts:
        ids, prefill, steps = generate(model, prompt, args.tokens)
        runs.append({"ids": ids, "prefill_s": prefill, "step_s": steps})
    all_steps = [s for r in runs for s in r["step_s"]]
    json.dump({"torch_version": torch.__version__, "threads": args.threads,
               "weight_bytes": model.weight_bytes(),
               "median_step_s": statistics.median(all_steps),
               "median_prefill_s": statistics.median(r["prefill_s"] for r in runs),
               "prompts": prompts, "runs": runs}, sys.stdout)


if __name__ == "__main__":
    main()
