"""Exit heads on held-out text: training, calibration, teacher-forced evaluation.

Each function loads the model from `model_dir`, runs in C++ with the GIL
released, calls `on_progress` (if given) on the calling thread after every
batch of windows (every step for training) — returning False from it raises
CancelledError — and stops on Ctrl-C with KeyboardInterrupt.

`data` is a path to a .bin file of little-endian uint16 token ids (what
tools/tokenize_corpus.py writes), a path to a UTF-8 text file (tokenized with
the model's tokenizer, no special tokens added), or a 1-D sequence / array of
token ids.

Teacher forcing: the ids are cut into non-overlapping windows of seq_len + 1;
each window is a fresh context predicting its last seq_len tokens.
"""
import os
from typing import Callable, Dict, Optional, Sequence, Union

import numpy as np

from . import _tandem

__all__ = ["load_tokens", "train_exits", "calibrate", "evaluate", "evaluate_thresholds"]

Data = Union[str, "os.PathLike[str]", Sequence[int], np.ndarray]


def load_tokens(data: Data, model_dir: Optional[str] = None) -> np.ndarray:
    """Token ids (int32 [N]) from a .bin path, a text path (needs model_dir for its
    tokenizer) or a sequence of ids. Raises FileNotFoundError, ValueError."""
    if isinstance(data, (str, os.PathLike)):
        path = os.fspath(data)
        if path.endswith(".bin"):
            raw = np.fromfile(path, dtype="<u2")
            return raw.astype(np.int32)
        if model_dir is None:
            raise ValueError(f"{path}: a text file needs model_dir for its tokenizer")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        ids = _tandem.Tokenizer.load(model_dir).encode(text, add_special_tokens=False)
        return np.asarray(ids, dtype=np.int32)
    ids = np.asarray(data)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError("token ids must be a 1-D integer sequence")
    return ids.astype(np.int32, copy=False)


def train_exits(model_dir: str, data: Data, exits: Sequence[int] = (2, 4), *,
                adapter_rank: int = 0, steps: int = 1000, batch_size: int = 8,
                seq_len: int = 256, learning_rate: float = 1e-3, warmup_steps: int = 50,
                kl_weight: float = 1.0, ce_weight: float = 0.2, max_minutes: float = 0.0,
                bf16: bool = False, seed: int = 1, out_dir: Optional[str] = None,
                on_progress: Optional[Callable[[_tandem.TrainProgress], Optional[bool]]] = None
                ) -> _tandem.TrainExitsResult:
    """Trains fresh exit heads at `exits` with the backbone frozen.

    Loss per exit: kl_weight * KL(final || exit) + ce_weight * cross-entropy on
    the next token (distillation from the final layer, as in LayerSkip-style
    early exit). AdamW, linear warm-up over warmup_steps; random windows of
    seq_len + 1 tokens, batch_size per step; stops after `steps` or max_minutes
    (0 = no limit). Each head: its own RMSNorm (from the final norm), an
    optional low-rank adapter (rank adapter_rank; 0 = none) and the model's LM
    head, shared. Writes tandem_exits.safetensors + exits.json into out_dir
    (default: model_dir). Thresholds already in that exits.json are left as
    they were, i.e. stale for the new heads: run calibrate(write=True) next.

    Returns TrainExitsResult (steps taken, last step's kl/ce per exit in nats,
    seconds, out_dir). Raises ValueError (bad exits, data shorter than one
    window, ids outside the vocabulary), NotFoundError, CancelledError,
    KeyboardInterrupt — in those cases nothing is written.
    """
    tokens = load_tokens(data, model_dir)
    return _tandem._train_exits(model_dir, tokens, list(exits), adapter_rank, steps,
                                batch_size, seq_len, learning_rate, warmup_steps, kl_weight,
                                ce_weight, max_minutes, bf16, seed, out_dir or "", on_progress)


def calibrate(model_dir: str, data: Data, target_agreement: float = 0.99, *,
              split: Optional[int] = None, seq_len: int = 256, max_tokens: int = 0,
              curve_points: int = 21, write: bool = False, precision: str = "fp32",
              on_progress: Optional[Callable[[_tandem.Progress], Optional[bool]]] = None
              ) -> _tandem.CalibrationResult:
    """Chooses exit thresholds so the edge's cascade agrees with the full model.

    For each confidence measure (max_prob, margin, neg_entropy) it records every
    exit's standalone curve (coverage and agreement at curve_points thresholds,
    quantiles of that exit's confidence) and picks thresholds by a joint search
    over 200 quantiles per exit (exact for two exits) that maximise the share of
    tokens decided at the edge while the overall agreement (exited tokens equal
    to the full model's greedy token; the rest are the full model's own) stays
    >= target_agreement. Only exits at layers <= split take part (None = all).

    max_tokens: stop after this many predicted tokens (0 = all of data).
    write: store the best measure's thresholds in model_dir/exits.json (what
      EdgeSession uses by default), as `tandem calibrate` does.
    precision: 'fp32' (default: the numbers the fp32 runtime will see), 'bf16'
      (matmuls under bf16 autocast: several times faster on CPUs with
      AVX512_BF16 or AMX, ~100x slower elsewhere; argmaxes can flip on
      near-ties, so use it for sweeps, not for thresholds you ship) or 'auto'
      (bf16 exactly where the CPU makes it fast).

    Returns CalibrationResult. Raises ValueError (target outside (0, 1], no exit
    <= split, too little data), NotFoundError (no exit heads), CancelledError,
    KeyboardInterrupt.
    """
    tokens = load_tokens(data, model_dir)
    return _tandem._calibrate(model_dir, tokens, target_agreement, split, seq_len, max_tokens,
                              curve_points, write, precision, on_progress)


def evaluate(model_dir: str, data: Data, *, unigram_from: Optional[Data] = None,
             seq_len: int = 256, max_tokens: int = 0, precision: str = "fp32",
             on_progress: Optional[Callable[[_tandem.Progress], Optional[bool]]] = None
             ) -> _tandem.PerplexityResult:
    """Perplexity of the full model and of every exit head (if the directory has
    heads) on held-out text; with unigram_from, also of an add-one unigram
    fitted on those ids (a baseline). precision: as in calibrate().

    Returns PerplexityResult (mean NLL in nats and perplexities). Raises
    ValueError, NotFoundError, CancelledError, KeyboardInterrupt.
    """
    tokens = load_tokens(data, model_dir)
    unigram = None if unigram_from is None else load_tokens(unigram_from, model_dir)
    return _tandem._evaluate(model_dir, tokens, unigram, seq_len, max_tokens, precision,
                             on_progress)


def evaluate_thresholds(model_dir: str, data: Data,
                        thresholds: Optional[Dict[int, float]] = None, *,
                        measure: Optional[str] = None, seq_len: int = 256, max_tokens: int = 0,
                        precision: str = "fp32",
                        on_progress: Optional[Callable[[_tandem.Progress], Optional[bool]]] = None
                        ) -> _tandem.ThresholdEvaluation:
    """The edge's cascade at fixed thresholds, teacher-forced on held-out text:
    the share of tokens each exit decides and the overall agreement with the
    full model (what `tandem calibrate --apply` prints).

    thresholds: {layer: threshold} (None = the calibrated ones in exits.json).
      Only the listed exits take part.
    measure: 'max_prob', 'margin' or 'neg_entropy' (None = the calibrated one,
      or max_prob for an uncalibrated directory).
    precision: as in calibrate().

    Returns ThresholdEvaluation. Raises ValueError (a layer without a head),
    RuntimeError (no calibrated thresholds and none given), NotFoundError,
    CancelledError, KeyboardInterrupt.
    """
    tokens = load_tokens(data, model_dir)
    return _tandem._evaluate_thresholds(model_dir, tokens, thresholds, measure, seq_len,
                                        max_tokens, precision, on_progress)
