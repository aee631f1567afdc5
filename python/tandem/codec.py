"""Hidden-state codec: what the edge sends the cloud for rows of hidden states.

Formats (see common/include/tandem/codec.h for the exact wire layout):
  fp32 (bit-exact), fp16, bf16 (round to nearest even), int8 (per-row absmax
  scale), int4 / int4-g64 (per group of 32 / 64 values), each optionally
  followed by "+zstd" or "+zstdN" (N in 1..19; lossless, stored raw when it would
  not shrink the payload).

Measured relative L2 error on Gaussian rows (the C++ tests' bounds): fp16 2e-4,
bf16 1.7e-3, int8 7e-3, int4 9.8e-2, int4-g64 1.1e-1.

Thread-safety: every function is pure and may be called from any thread; the
GIL is released while encoding and decoding.
"""
import sys
from typing import Any, Union

import numpy as np

from ._tandem import _codec

HEADER_BYTES: int = _codec.HEADER_BYTES
#: Every base format; each also takes "+zstd" / "+zstdN".
FORMATS = ("fp32", "fp16", "bf16", "int8", "int4", "int4-g64")


def _torch_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def encode(x: Any, spec: str = "int8") -> bytes:
    """Encodes hidden states.

    Args:
      x: float array of shape [rows, dim] or [dim] (one row): a NumPy array or a
        torch.Tensor (any device, detached). A C-contiguous float32 array (or CPU
        tensor) is read in place; anything else is converted to one first.
      spec: codec name, e.g. "fp16", "int8+zstd", "int4-g64".

    Returns:
      The self-describing byte string (24-byte header + payload).

    Raises:
      ValueError: unknown spec, wrong number of dimensions, non-finite values
        for int8/int4 (one NaN would poison a whole scale), int4 group scales
        overflowing fp16.
    """
    if _torch_tensor(x):
        x = x.detach().to("cpu").float().contiguous().numpy()
    return _codec.encode(x, spec)


def decode(buffer: Union[bytes, bytearray, memoryview], *, expected_dim: int = 0,
           max_rows: int = 65536, as_torch: bool = False) -> Any:
    """Decodes a buffer made by `encode` (or received from the wire).

    Args:
      buffer: the encoded bytes; nothing may follow the payload.
      expected_dim: refuse a buffer whose rows are not this wide (0 = any).
      max_rows: refuse more rows than this (bounds memory on untrusted input).
      as_torch: return a torch.Tensor (sharing the array's memory) instead.

    Returns:
      float32 array [rows, dim] that owns the decoder's output (no copy after
      decoding), or a torch.Tensor view of it.

    Raises:
      ValueError: any malformed, truncated or oversized buffer; the message
        starts with "codec: ".
    """
    out = _codec.decode(bytes(buffer), expected_dim, max_rows)
    if as_torch:
        import torch
        return torch.from_numpy(out)
    return out


def canonical_name(spec: str) -> str:
    """The canonical spelling of a codec spec ("int4-g32" -> "int4"); ValueError if invalid."""
    return _codec.canonical_name(spec)


def encoded_size(rows: int, dim: int, spec: str) -> int:
    """Exact encoded bytes without zstd (header + payload) for rows x dim values."""
    return _codec.encoded_size(rows, dim, spec)


def relative_error(x: Any, spec: str) -> float:
    """Relative L2 error ||decode(encode(x)) - x|| / ||x|| of a round trip, for
    comparing codecs on your own hidden states."""
    if _torch_tensor(x):
        x = x.detach().to("cpu").float().numpy()
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = decode(encode(x, spec), max_rows=max(1, x.reshape(-1, x.shape[-1]).shape[0]))
    diff = y.reshape(x.shape).astype(np.float64) - x
    norm = float(np.linalg.norm(x.astype(np.float64)))
    return float(np.linalg.norm(diff)) / norm if norm > 0 else float(np.linalg.norm(diff))
