"""Type stubs of the C++ extension `tandem._tandem` (see the docstrings there)."""
from typing import Callable, Dict, List, Optional, Sequence, Union, overload

import numpy as np
import numpy.typing as npt

IntArray = Union[Sequence[int], npt.NDArray[np.integer]]
FloatArray = npt.NDArray[np.floating]

class NotFoundError(LookupError): ...
class CancelledError(RuntimeError): ...

def set_threads(threads: int) -> int: ...

class KVCache:
    def length(self, layer: int) -> int: ...
    @property
    def min_length(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    @property
    def allocated_bytes(self) -> int: ...
    @property
    def used_bytes(self) -> int: ...
    def truncate(self, length: int) -> None: ...

class Model:
    @staticmethod
    def load(path: str, dtype: str = "float32", layer_begin: int = 0, layer_end: int = -1,
             load_embedding: bool = True, load_head: bool = True) -> Model: ...
    @property
    def config(self) -> Dict[str, Union[int, float, bool, str]]: ...
    @property
    def weight_bytes(self) -> int: ...
    def embed(self, ids: IntArray) -> npt.NDArray[np.float32]: ...
    def forward_layers(self, begin: int, end: int, hidden: FloatArray, start: int = 0,
                       cache: Optional[KVCache] = None) -> npt.NDArray[np.float32]: ...
    def logits_from_hidden(self, hidden: FloatArray) -> npt.NDArray[np.float32]: ...
    def logits(self, ids: IntArray, cache: Optional[KVCache] = None) -> npt.NDArray[np.float32]: ...
    def hidden_states(self, ids: IntArray, layers: Sequence[int], as_torch: bool = False
                      ) -> Dict[int, npt.NDArray[np.float32]]: ...
    def new_cache(self, capacity: int) -> KVCache: ...
    def save(self, dir: str, dtype: str = "float32") -> None: ...

def generate(model: Model, prompt_ids: Sequence[int], max_new_tokens: int = 32,
             temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
             eos_id: int = -1) -> List[int]: ...

class Tokenizer:
    @staticmethod
    def load(path: str) -> Tokenizer: ...
    def encode(self, text: str, add_special_tokens: bool = True) -> List[int]: ...
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str: ...
    @property
    def vocab_size(self) -> int: ...
    @property
    def bos_id(self) -> int: ...
    @property
    def eos_id(self) -> int: ...

class CloudOptions:
    address: str
    codec: str
    request_timeout: float
    connect_timeout: float
    resync: str
    upload_batch_rows: int
    upload_max_delay: float
    api_key: str
    tls_root_certs_file: str
    tls_server_name: str
    max_message_bytes: int
    max_in_flight: int
    adaptive_depth: bool
    min_in_flight: int
    draft_top_k: int
    def __init__(self, address: str = "", codec: str = "int8", request_timeout: float = 1.0,
                 connect_timeout: float = 2.0, resync: str = "auto",
                 upload_batch_rows: int = 16, upload_max_delay: float = 0.02,
                 api_key: str = "", tls_root_certs_file: str = "", tls_server_name: str = "",
                 max_message_bytes: int = 4194304, max_in_flight: int = 32,
                 adaptive_depth: bool = True, min_in_flight: int = 4,
                 draft_top_k: int = 8) -> None: ...

class TokenRecord:
    @property
    def id(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def position(self) -> int: ...
    @property
    def decided_by(self) -> str: ...
    @property
    def layer(self) -> Optional[int]: ...
    @property
    def confidence(self) -> float: ...
    @property
    def probability(self) -> float: ...
    @property
    def seconds(self) -> float: ...
    @property
    def provisional(self) -> bool: ...
    @property
    def draft_accepted(self) -> bool: ...

class Rollback:
    @property
    def position(self) -> int: ...
    @property
    def tokens(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def text(self) -> str: ...

class SpeculationStats:
    drafts: int
    accepted: int
    rejected: int
    unverified: int
    rolled_back: int
    wasted_steps: int
    wait_seconds: float
    mean_in_flight: float
    final_window: int

class CloudLinkStats:
    bytes_up: int
    bytes_down: int
    context_bytes: int
    continue_bytes: int
    context_rows: int
    requests: int
    cloud_tokens: int
    failed_requests: int
    connects: int
    connect_failures: int
    resyncs: int
    resync_token_positions: int
    resync_hidden_positions: int
    request_seconds: float
    cloud_compute_seconds: float
    last_error: str

class GenerationStats:
    prompt_tokens: int
    generated_tokens: int
    stop_reason: str
    exit_tokens: Dict[int, int]
    fallback_tokens: Dict[int, int]
    cloud_tokens: int
    edge_tokens: int
    prefill_seconds: float
    decode_seconds: float
    total_seconds: float
    bytes_to_sink: int
    cloud: CloudLinkStats
    speculation: SpeculationStats

class SessionStats:
    generations: int
    prompt_tokens: int
    generated_tokens: int
    exit_tokens: Dict[int, int]
    fallback_tokens: Dict[int, int]
    cloud_tokens: int
    mean_confidence: Dict[int, float]
    prefill_seconds: float
    decode_seconds: float
    decode_steps: int
    seconds_per_token: float
    bytes_to_sink: int

class GenerationResult:
    text: str
    ids: List[int]
    tokens: List[TokenRecord]
    rollbacks: List[Rollback]
    stats: GenerationStats

class EdgeSession:
    def __init__(self, model_dir: str, split: Optional[int] = None,
                 exits: Optional[Sequence[int]] = None,
                 thresholds: Union[None, float, Dict[int, float]] = None,
                 measure: Optional[str] = None, cloud: Union[None, str, CloudOptions] = None,
                 fallback: str = "deepest", threads: int = 0, max_context: int = 0,
                 allow_fresh_heads: bool = False, weights: Optional[str] = None,
                 decode_threads: int = 1) -> None: ...
    def generate(self, prompt: Union[str, Sequence[int]], max_new_tokens: int = 64,
                 temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
                 stop: Union[None, str, Sequence[str]] = None, stop_at_eos: bool = True,
                 add_special_tokens: bool = True,
                 on_token: Optional[Callable[[TokenRecord], Optional[bool]]] = None,
                 delivery: str = "confirmed",
                 on_rollback: Optional[Callable[[Rollback], None]] = None
                 ) -> GenerationResult: ...
    def cancel(self) -> None: ...
    @property
    def stats(self) -> SessionStats: ...
    @property
    def cloud_stats(self) -> Optional[CloudLinkStats]: ...
    @property
    def split(self) -> int: ...
    @property
    def exits(self) -> List[int]: ...
    @property
    def thresholds(self) -> Dict[int, float]: ...
    @property
    def measure(self) -> str: ...
    @property
    def collaborative(self) -> bool: ...
    def close(self) -> None: ...
    def __enter__(self) -> EdgeSession: ...
    def __exit__(self, *args: object) -> None: ...

class ContextStats:
    sessions: int
    memory_bytes: int
    queued_rows: int
    opened: int
    closed: int
    evicted: int
    expired: int
    failed: int
    rows_received: int
    rows_run: int
    tokens_served: int
    batches: int
    compute_seconds: float

class ServerStats:
    streams_opened: int
    streams_active: int
    messages_in: int
    bytes_in: int
    bytes_out: int
    context_messages: int
    continue_requests: int
    tokens_sent: int
    resyncs_sent: int
    errors_sent: int
    auth_failures: int
    context: ContextStats

class CloudServer:
    def __init__(self, model_dir: str, split: Optional[int] = None, host: str = "127.0.0.1",
                 port: int = 0, memory_budget: int = 1073741824, max_sessions: int = 1024,
                 max_positions: int = 0, idle_ttl: float = 600.0, max_batch_rows: int = 256,
                 api_keys: Dict[str, str] = ..., tls_cert: str = "", tls_key: str = "",
                 token_resync: bool = True, log: bool = False) -> None: ...
    @property
    def address(self) -> str: ...
    @property
    def port(self) -> int: ...
    @property
    def running(self) -> bool: ...
    def stats(self) -> ServerStats: ...
    def metrics_text(self) -> str: ...
    def shutdown(self, grace: float = 1.0) -> None: ...
    def __enter__(self) -> CloudServer: ...
    def __exit__(self, *args: object) -> None: ...

class Progress:
    done: int
    total: int
    elapsed_seconds: float
    fraction: float

class TrainProgress:
    done: int
    total: int
    elapsed_seconds: float
    kl: Dict[int, float]
    ce: Dict[int, float]

class TrainExitsResult:
    steps: int
    kl: Dict[int, float]
    ce: Dict[int, float]
    seconds: float
    out_dir: str

class CurvePoint:
    threshold: float
    coverage: float
    agreement: float

class MeasureCalibration:
    measure: str
    thresholds: Dict[int, float]
    exit_share: Dict[int, float]
    coverage: float
    agreement: float
    curves: Dict[int, List[CurvePoint]]

class CalibrationResult:
    tokens: int
    target_agreement: float
    top1_agreement: Dict[int, float]
    measures: List[MeasureCalibration]
    best: int
    chosen: MeasureCalibration
    def table(self) -> str: ...

class PerplexityResult:
    tokens: int
    full_nll: float
    exit_nll: Dict[int, float]
    unigram_nll: float
    full_perplexity: float
    exit_perplexity: Dict[int, float]
    unigram_perplexity: Optional[float]

class ThresholdEvaluation:
    tokens: int
    coverage: float
    agreement: float
    exit_share: Dict[int, float]

class _CodecModule:
    HEADER_BYTES: int
    def encode(self, array: FloatArray, spec: str) -> bytes: ...
    def decode(self, buffer: bytes, expected_dim: int = 0, max_rows: int = 65536
               ) -> npt.NDArray[np.float32]: ...
    def canonical_name(self, spec: str) -> str: ...
    def encoded_size(self, rows: int, dim: int, spec: str) -> int: ...

_codec: _CodecModule

def _train_exits(*args: object) -> TrainExitsResult: ...
def _calibrate(*args: object) -> CalibrationResult: ...
def _evaluate(*args: object) -> PerplexityResult: ...
def _evaluate_thresholds(*args: object) -> ThresholdEvaluation: ...
