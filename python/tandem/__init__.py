"""Tandem: cloud-edge collaborative LLM inference with early exit.

The heavy lifting is in C++ (`tandem._tandem`); this package re-exports it.
Arrays cross the boundary as NumPy arrays (float32 hidden states / logits,
int64 token ids).
"""
from ._tandem import KVCache, Model, Tokenizer, generate  # noqa: F401

__all__ = ["Model", "KVCache", "Tokenizer", "generate"]
