"""Tandem: cloud-edge collaborative LLM inference with early exit.

Everything computes in the C++ library (`tandem._tandem`); this package re-exports
it and adds thin Python conveniences. Arrays cross the boundary as NumPy arrays
(float32 hidden states and logits, int64 token ids); `tandem.codec` and
`Model.hidden_states` also take / give `torch.Tensor`.

Main entry points:
  EdgeSession      the edge half of a split model: generate / stream text
  CloudServer      an in-process tandem-cloud server (context manager)
  codec            hidden-state codec: encode / decode arrays and tensors
  Model            the full model: logits, hidden states at any layer
  train_exits, calibrate, evaluate, evaluate_thresholds   exit heads on held-out text

Errors: ValueError for bad arguments, NotFoundError (a LookupError) for missing
files, CancelledError when a progress callback returns False, RuntimeError for
the rest, each with the library's message. Long calls release the GIL and stop
on Ctrl-C (KeyboardInterrupt).
"""
from ._tandem import (  # noqa: F401
    CalibrationResult,
    CancelledError,
    CloudLinkStats,
    CloudOptions,
    CloudServer,
    ContextStats,
    CurvePoint,
    GenerationResult,
    GenerationStats,
    KVCache,
    MeasureCalibration,
    Model,
    NotFoundError,
    PerplexityResult,
    Progress,
    Rollback,
    ServerStats,
    SessionStats,
    SpeculationStats,
    ThresholdEvaluation,
    Tokenizer,
    TokenRecord,
    TrainExitsResult,
    TrainProgress,
    generate,
    set_threads,
)
from . import codec  # noqa: F401
from .edge import EdgeSession  # noqa: F401
from .exits import calibrate, evaluate, evaluate_thresholds, load_tokens, train_exits  # noqa: F401

__all__ = [
    "CalibrationResult", "CancelledError", "CloudLinkStats", "CloudOptions", "CloudServer",
    "ContextStats", "CurvePoint", "EdgeSession", "GenerationResult", "GenerationStats",
    "KVCache", "MeasureCalibration", "Model", "NotFoundError", "PerplexityResult", "Progress",
    "Rollback", "ServerStats", "SessionStats", "SpeculationStats", "ThresholdEvaluation", "Tokenizer", "TokenRecord",
    "TrainExitsResult", "TrainProgress", "calibrate", "codec", "evaluate",
    "evaluate_thresholds", "generate", "load_tokens", "set_threads", "train_exits",
]
