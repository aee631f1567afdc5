"""Writes small random checkpoints in Hugging Face layout (config.json +
model.safetensors), with a safetensors writer of our own (independent of the C++
one), for the reference tests."""
import json
import struct

import numpy as np

_DTYPES = {np.float32: "F32", np.float16: "F16"}


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        data = array.tobytes()
        header[name] = {
            "dtype": _DTYPES[array.dtype.type],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def random_weights(cfg, seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    d, ff, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    heads = cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads") or heads
    hd = cfg.get("head_dim") or d // heads
    qkv_bias = cfg.get("attention_bias", False) or cfg["model_type"] == "qwen2"
    o_bias = cfg.get("attention_bias", False) and cfg["model_type"] != "qwen2"
    mlp_bias = cfg.get("mlp_bias", False)

    def mat(rows, cols):
        return rng.normal(0.0, 1.0 / np.sqrt(cols), size=(rows, cols))

    def vec(n, center=0.0):
        return center + rng.normal(0.0, 0.1, size=n)

    w = {"model.embed_tokens.weight": rng.normal(0.0, 1.0, size=(vocab, d)),
         "model.norm.weight": vec(d, 1.0)}
    if not cfg.get("tie_word_embeddings", False):
        w["lm_head.weight"] = mat(vocab, d)
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        w[p + "input_layernorm.weight"] = vec(d, 1.0)
        w[p + "post_attention_layernorm.weight"] = vec(d, 1.0)
        for name, rows in (("q", heads * hd), ("k", kv_heads * hd), ("v", kv_heads * hd)):
            w[p + f"self_attn.{name}_proj.weight"] = mat(rows, d)
            if qkv_bias:
                w[p + f"self_attn.{name}_proj.bias"] = vec(rows)
        w[p + "self_attn.o_proj.weight"] = mat(d, heads * hd)
        if o_bias:
            w[p + "self_attn.o_proj.bias"] = vec(d)
        w[p + "mlp.gate_proj.weight"] = mat(ff, d)
        w[p + "mlp.up_proj.weight"] = mat(ff, d)
        w[p + "mlp.down_proj.weight"] = mat(d, ff)
        if mlp_bias:
            w[p + "mlp.gate_proj.bias"] = vec(ff)
            w[p + "mlp.up_proj.bias"] = vec(ff)
            w[p + "mlp.down_proj.bias"] = vec(d)
    return {k: v.astype(dtype) for k, v in w.items()}


def write_checkpoint(directory, cfg, seed=0, dtype=np.float32):
    """Writes the checkpoint and returns its weights (as stored, e.g. fp16)."""
    directory.mkdir(parents=True, exist_ok=True)
    weights = random_weights(cfg, seed, dtype)
    (directory / "config.json").write_text(json.dumps(cfg, indent=2))
    write_safetensors(directory / "model.safetensors", weights)
    return weights


GQA_TIED = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
    "vocab_size": 101, "hidden_size": 64, "intermediate_size": 96,
    "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
    "max_position_embeddings": 256, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2,
}

BIAS_UNTIED = {
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu",
    "vocab_size": 89, "hidden_size": 48, "intermediate_size": 80,
    "num_hidden_layers": 2, "num_attention_heads": 6, "num_key_value_heads": 3,
    "max_position_embeddings": 256, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False, "use_sliding_window": False,
}

# Llama 3 style: rope_scaling llama3, explicit head_dim, biases everywhere.
LLAMA3_BIASES = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
    "vocab_size": 64, "hidden_size": 32, "intermediate_size": 64, "head_dim": 16,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
    "max_position_embeddings": 512, "rope_theta": 500000.0, "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True, "attention_bias": True, "mlp_bias": True,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                     "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
}
