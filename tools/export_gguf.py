#!/usr/bin/env python3
"""Exports a Llama-family checkpoint in Hugging Face layout (config.json,
model.safetensors, tokenizer.json with a byte-level BPE) to a GGUF file, so
llama.cpp can run the very weights Tandem runs (the benchmark baseline).

Written from the GGUF format's documentation (version 3): a header (magic
"GGUF", version, tensor count, metadata count), typed key/value metadata, one
info record per tensor (name, dims innermost first, ggml type, offset), then
the tensor data, each tensor aligned to 32 bytes.

Two conventions differ from Hugging Face's:
  - rotary embeddings: HF rotates the pairs (i, i + head_dim/2) ("rotate
    half"); llama.cpp's llama architecture rotates adjacent pairs (2i, 2i+1).
    The rows of every q and k head are therefore reordered so that row 2i
    takes HF row i and row 2i+1 takes HF row i + head_dim/2.
  - dims are listed innermost first, so an HF [out, in] matrix is [in, out].

Weight types: f32, f16, q8_0 (blocks of 32: fp16 scale, 32 int8) and q4_0
(blocks of 32: fp16 scale, 16 bytes; weight j in the low nibble of byte j,
weight 16 + j in the high nibble, value = scale * (q - 8)). Norms stay f32;
a matrix whose rows are not a multiple of 32 wide cannot be block-quantized
and is written as f16 (reported on stderr).

Usage: /usr/bin/python3 tools/export_gguf.py --model DIR --out FILE.gguf
           [--type f32|f16|q8_0|q4_0]
"""
import argparse
import json
import struct
import sys

import numpy as np

GGUF_MAGIC = 0x46554747  # "GGUF" little-endian
GGUF_VERSION = 3
ALIGNMENT = 32

# Metadata value types.
T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY = 4, 5, 6, 7, 8, 9
# Tensor types (ggml_type).
GGML = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 8}
# general.file_type (llama_ftype) of a file whose matrices are mostly that type.
FILE_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q8_0": 7}


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
            arr = (np.frombuffer(data[a:b], np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(data[a:b], {"F32": np.float32, "F16": np.float16}[info["dtype"]])
        out[name] = arr.astype(np.float32).reshape(info["shape"])
    return out


def rope_rows_to_adjacent(w, heads):
    """HF rotate-half row order -> llama.cpp adjacent-pair order, per head."""
    rows = w.shape[0]
    hd = rows // heads
    return w.reshape(heads, 2, hd // 2, -1).swapaxes(1, 2).reshape(rows, -1)


def quantize_q8_0(w):
    blocks = w.reshape(-1, 32)
    d = np.abs(blocks).max(axis=1) / 127.0
    d16 = d.astype(np.float16)
    inv = np.divide(1.0, d16.astype(np.float32), out=np.zeros_like(d), where=d16 != 0)
    q = np.clip(np.rint(blocks * inv[:, None]), -127, 127).astype(np.int8)
    out = np.empty(len(blocks), dtype=[("d", "<f2"), ("q", "i1", 32)])
    out["d"], out["q"] = d16, q
    return out.tobytes()


def quantize_q4_0(w):
    blocks = w.reshape(-1, 32)
    idx = np.abs(blocks).argmax(axis=1)
    extreme = blocks[np.arange(len(blocks)), idx]
    d16 = (extreme / -8.0).astype(np.float16)
    d = d16.astype(np.float32)
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.clip(np.rint(blocks * inv[:, None]) + 8, 0, 15).astype(np.uint8)
    packed = q[:, :16] | (q[:, 16:] << 4)
    out = np.empty(len(blocks), dtype=[("d", "<f2"), ("q", "u1", 16)])
    out["d"], out["q"] = d16, packed
    return out.tobytes()


class Writer:
    def __init__(self):
        self.kv = []       # bytes of each metadata entry
        self.tensors = []  # (name, dims innermost first, type, bytes)

    @staticmethod
    def _str(s):
        b = s.encode("utf-8")
        return struct.pack("<Q", len(b)) + b

    def add(self, key, vtype, value):
        body = self._str(key) + struct.pack("<I", vtype)
        if vtype == T_STRING:
            body += self._str(value)
        elif vtype == T_ARRAY:
            item_type, items = value
            body += struct.pack("<IQ", item_type, len(items))
            if item_type == T_STRING:
                body += b"".join(self._str(s) for s in items)
            else:
                fmt = {T_INT32: "<i", T_UINT32: "<I", T_FLOAT32: "<f"}[item_type]
                body += b"".join(struct.pack(fmt, v) for v in items)
        else:
            fmt = {T_UINT32: "<I", T_INT32: "<i", T_FLOAT32: "<f", T_BOOL: "<?"}[vtype]
            body += struct.pack(fmt, value)
        self.kv.append(body)

    def tensor(self, name, array, kind):
        shape = list(array.shape)
        if kind == "f32":
            data = array.astype("<f4").tobytes()
        elif kind == "f16":
            data = array.astype("<f2").tobytes()
        elif kind == "q8_0":
            data = quantize_q8_0(array)
        else:
            data = quantize_q4_0(array)
        self.tensors.append((name, shape[::-1], GGML[kind], data))

    def write(self, path):
        with open(path, "wb") as f:
            f.write(struct.pack("<IIQQ", GGUF_MAGIC, GGUF_VERSION, len(self.tensors), len(self.kv)))
            for body in self.kv:
                f.write(body)
            offset = 0
            for name, dims, kind, data in self.tensors:
                f.write(self._str(name) + struct.pack("<I", len(dims)))
                f.write(b"".join(struct.pack("<Q", d) for d in dims))
                f.write(struct.pack("<IQ", kind, offset))
                offset += len(data) + (-len(data) % ALIGNMENT)
            f.write(b"\0" * (-f.tell() % ALIGNMENT))
            for _, _, _, data in self.tensors:
                f.write(data)
                f.write(b"\0" * (-len(data) % ALIGNMENT))


def add_tokenizer(w, model_dir, cfg):
    with open(f"{model_dir}/tokenizer.json") as f:
        tok = json.load(f)
    model = tok["model"]
    if model.get("type") != "BPE":
        sys.exit("export_gguf: only byte-level BPE tokenizer.json files are supported")
    vocab = dict(model["vocab"])
    control = set()
    for added in tok.get("added_tokens", []):
        vocab[added["content"]] = added["id"]
        if added.get("special"):
            control.add(added["id"])
    size = cfg["vocab_size"]
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [5] * size  # unused
    for text, i in vocab.items():
        if i < size:
            tokens[i] = text
            types[i] = 3 if i in control else 1  # control / normal
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    w.add("tokenizer.ggml.model", T_STRING, "gpt2")
    # The shipped tokenizer splits with Llama 3's regex; llama.cpp names that "llama-bpe".
    w.add("tokenizer.ggml.pre", T_STRING, "llama-bpe")
    w.add("tokenizer.ggml.tokens", T_ARRAY, (T_STRING, tokens))
    w.add("tokenizer.ggml.token_type", T_ARRAY, (T_INT32, types))
    w.add("tokenizer.ggml.merges", T_ARRAY, (T_STRING, merges))
    if cfg.get("bos_token_id") is not None:
        w.add("tokenizer.ggml.bos_token_id", T_UINT32, cfg["bos_token_id"])
        w.add("tokenizer.ggml.add_bos_token", T_BOOL, True)
    eos = cfg.get("eos_token_id")
    if isinstance(eos, list):
        eos = eos[0]
    if eos is not None:
        w.add("tokenizer.ggml.eos_token_id", T_UINT32, eos)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--type", default="f16", choices=sorted(GGML))
    args = ap.parse_args()
    with open(f"{args.model}/config.json") as f:
        cfg = json.load(f)
    if cfg.get("model_type", "llama") != "llama" or cfg.get("attention_bias") or cfg.get("mlp_bias"):
        sys.exit("export_gguf: only bias-free llama checkpoints are supported")
    if cfg.get("rope_scaling"):
        sys.exit("export_gguf: rope_scaling is not supported")
    weights = read_safetensors(f"{args.model}/model.safetensors")
    heads = cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads") or heads
    hd = cfg.get("head_dim") or cfg["hidden_size"] // heads

    w = Writer()
    w.add("general.architecture", T_STRING, "llama")
    w.add("general.name", T_STRING, args.model.rstrip("/").split("/")[-1])
    w.add("general.alignment", T_UINT32, ALIGNMENT)
    w.add("general.file_type", T_UINT32, FILE_TYPE[args.type])
    w.add("llama.vocab_size", T_UINT32, cfg["vocab_size"])
    w.add("llama.context_length", T_UINT32, cfg.get("max_position_embeddings", 2048))
    w.add("llama.embedding_length", T_UINT32, cfg["hidden_size"])
    w.add("llama.block_count", T_UINT32, cfg["num_hidden_layers"])
    w.add("llama.feed_forward_length", T_UINT32, cfg["intermediate_size"])
    w.add("llama.rope.dimension_count", T_UINT32, hd)
    w.add("llama.attention.head_count", T_UINT32, heads)
    w.add("llama.attention.head_count_kv", T_UINT32, kv_heads)
    w.add("llama.attention.key_length", T_UINT32, hd)
    w.add("llama.attention.value_length", T_UINT32, hd)
    w.add("llama.attention.layer_norm_rms_epsilon", T_FLOAT32, cfg.get("rms_norm_eps", 1e-6))
    w.add("llama.rope.freq_base", T_FLOAT32, cfg.get("rope_theta", 10000.0))
    add_tokenizer(w, args.model, cfg)

    def matrix(name, array):
        kind = args.type
        if kind in ("q8_0", "q4_0") and array.shape[1] % 32 != 0:
            print(f"export_gguf: {name} is {array.shape[1]} wide: written as f16", file=sys.stderr)
            kind = "f16"
        w.tensor(name, array, kind)

    matrix("token_embd.weight", weights["model.embed_tokens.weight"])
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        g = f"blk.{l}."
        w.tensor(g + "attn_norm.weight", weights[p + "input_layernorm.weight"], "f32")
        matrix(g + "attn_q.weight", rope_rows_to_adjacent(weights[p + "self_attn.q_proj.weight"], heads))
        matrix(g + "attn_k.weight", rope_rows_to_adjacent(weights[p + "self_attn.k_proj.weight"], kv_heads))
        matrix(g + "attn_v.weight", weights[p + "self_attn.v_proj.weight"])
        matrix(g + "attn_output.weight", weights[p + "self_attn.o_proj.weight"])
        w.tensor(g + "ffn_norm.weight", weights[p + "post_attention_layernorm.weight"], "f32")
        matrix(g + "ffn_gate.weight", weights[p + "mlp.gate_proj.weight"])
        matrix(g + "ffn_up.weight", weights[p + "mlp.up_proj.weight"])
        matrix(g + "ffn_down.weight", weights[p + "mlp.down_proj.weight"])
    w.tensor("output_norm.weight", weights["model.norm.weight"], "f32")
    if "lm_head.weight" in weights and not cfg.get("tie_word_embeddings", False):
        matrix("output.weight", weights["lm_head.weight"])
    w.write(args.out)
    print(f"export_gguf: wrote {args.out} ({len(w.tensors)} tensors, {args.type})")


if __name__ == "__main__":
    main()
