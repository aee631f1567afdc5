"""An independent NumPy implementation of the Llama-family decoder.

Written from the architecture's definition (Touvron et al. 2023; Qwen2 adds
q/k/v biases), not from Tandem's C++: RMSNorm, rotary embeddings in the
"rotate half" convention of Hugging Face checkpoints, grouped-query attention
with a causal mask, SwiGLU MLP. Computes in float64 so it can serve as the
reference for float32 results.
"""
import math

import numpy as np


def rms_norm(x, weight, eps):
    return weight * (x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps))


def inverse_frequencies(cfg):
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    inv = 1.0 / (cfg.get("rope_theta", 10000.0) ** (np.arange(0, head_dim, 2) / head_dim))
    scaling = cfg.get("rope_scaling") or {}
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind == "linear":
        inv = inv / scaling["factor"]
    elif kind == "llama3":
        factor = scaling["factor"]
        low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
        old = scaling["original_max_position_embeddings"]
        out = []
        for f in inv:
            wavelen = 2 * math.pi / f
            if wavelen < old / high:
                out.append(f)
            elif wavelen > old / low:
                out.append(f / factor)
            else:
                smooth = (old / wavelen - low) / (high - low)
                out.append((1 - smooth) * f / factor + smooth * f)
        inv = np.array(out)
    return inv


def rotate(x, positions, inv_freq):
    """x: [T, heads, head_dim]; rotates (x[i], x[i + d/2]) by position * inv_freq[i]."""
    angles = positions[:, None] * inv_freq[None, :]  # [T, d/2]
    cos = np.cos(np.concatenate([angles, angles], axis=-1))[:, None, :]
    sin = np.sin(np.concatenate([angles, angles], axis=-1))[:, None, :]
    half = x.shape[-1] // 2
    rotated_half = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated_half * sin


def silu(x):
    return x / (1.0 + np.exp(-x))


def linear(x, weights, name):
    y = x @ weights[name + ".weight"].T
    bias = weights.get(name + ".bias")
    return y if bias is None else y + bias


def hidden_states(weights, cfg, ids):
    """Final hidden state (before the last norm) of every position of `ids`."""
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    heads = cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
    group = heads // kv_heads
    eps = cfg["rms_norm_eps"]
    inv_freq = inverse_frequencies(cfg)
    t = len(ids)
    positions = np.arange(t, dtype=np.float64)
    causal = np.tril(np.ones((t, t), dtype=bool))

    x = w["model.embed_tokens.weight"][np.asarray(ids)]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = linear(h, w, p + "self_attn.q_proj").reshape(t, heads, head_dim)
        k = linear(h, w, p + "self_attn.k_proj").reshape(t, kv_heads, head_dim)
        v = linear(h, w, p + "self_attn.v_proj").reshape(t, kv_heads, head_dim)
        q = rotate(q, positions, inv_freq)
        k = rotate(k, positions, inv_freq)
        out = np.zeros((t, heads, head_dim))
        for head in range(heads):
            kh, vh = k[:, head // group], v[:, head // group]
            scores = q[:, head] @ kh.T / math.sqrt(head_dim)
            scores = np.where(causal, scores, -np.inf)
            scores = scores - scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            out[:, head] = probs @ vh
        x = x + linear(out.reshape(t, heads * head_dim), w, p + "self_attn.o_proj")
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        mlp = silu(linear(h, w, p + "mlp.gate_proj")) * linear(h, w, p + "mlp.up_proj")
        x = x + linear(mlp, w, p + "mlp.down_proj")
    return x


def logits(weights, cfg, ids):
    x = hidden_states(weights, cfg, ids)
    x = rms_norm(x, weights["model.norm.weight"].astype(np.float64), cfg["rms_norm_eps"])
    head = weights.get("lm_head.weight")
    if head is None:
        head = weights["model.embed_tokens.weight"]
    return x @ head.astype(np.float64).T


def greedy(weights, cfg, prompt, steps):
    ids = list(prompt)
    for _ in range(steps):
        ids.append(int(np.argmax(logits(weights, cfg, ids)[-1])))
    return ids[len(prompt):]
