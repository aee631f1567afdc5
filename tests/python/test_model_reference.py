"""The C++ model against an independent NumPy implementation (reference_llama)."""
import numpy as np
import pytest

import checkpoints
import reference_llama
import tandem

CONFIGS = {
    "gqa_tied": checkpoints.GQA_TIED,
    "bias_untied": checkpoints.BIAS_UNTIED,
    "llama3_biases": checkpoints.LLAMA3_BIASES,
}
PROMPT = [1, 7, 42, 3, 19, 5, 60, 33, 8, 12, 44]
TOLERANCE = 1e-4


@pytest.fixture(params=sorted(CONFIGS))
def checkpoint(request, tmp_path):
    cfg = CONFIGS[request.param]
    weights = checkpoints.write_checkpoint(tmp_path / request.param, cfg, seed=3)
    return tmp_path / request.param, cfg, weights


def test_prompt_logits_match_reference(checkpoint):
    path, cfg, weights = checkpoint
    model = tandem.Model.load(str(path))
    ids = np.array(PROMPT, dtype=np.int64) % cfg["vocab_size"]
    got = model.logits(ids)
    want = reference_llama.logits(weights, cfg, ids)
    assert got.shape == want.shape
    assert np.abs(want).max() > 1.0  # the comparison is not between near-zeros
    np.testing.assert_allclose(got, want, atol=TOLERANCE, rtol=0)


def test_twenty_cached_decode_steps_match_reference(checkpoint):
    path, cfg, weights = checkpoint
    model = tandem.Model.load(str(path))
    ids = [i % cfg["vocab_size"] for i in PROMPT]
    cache = model.new_cache(64)
    step_logits = model.logits(np.array(ids, dtype=np.int64), cache)[-1]
    for _ in range(20):
        want = reference_llama.logits(weights, cfg, ids)[-1]
        np.testing.assert_allclose(step_logits, want, atol=TOLERANCE, rtol=0)
        # Cached decode also equals a full re-run without cache.
        rerun = model.logits(np.array(ids, dtype=np.int64))[-1]
        np.testing.assert_allclose(step_logits, rerun, atol=TOLERANCE, rtol=0)
        ids.append(int(np.argmax(want)))
        step_logits = model.logits(np.array(ids[-1:], dtype=np.int64), cache)[-1]
    assert cache.min_length == len(ids)


def test_greedy_generation_matches_reference(checkpoint):
    path, cfg, weights = checkpoint
    model = tandem.Model.load(str(path))
    prompt = [i % cfg["vocab_size"] for i in PROMPT[:5]]
    assert tandem.generate(model, prompt, max_new_tokens=12) == \
        reference_llama.greedy(weights, cfg, prompt, 12)


def test_fp16_checkpoint_loads_exact_values(tmp_path):
    cfg = checkpoints.GQA_TIED
    weights = checkpoints.write_checkpoint(tmp_path / "f16", cfg, seed=5, dtype=np.float16)
    model = tandem.Model.load(str(tmp_path / "f16"))
    ids = np.array(PROMPT, dtype=np.int64)
    np.testing.assert_allclose(model.logits(ids), reference_llama.logits(weights, cfg, ids),
                               atol=TOLERANCE, rtol=0)


def test_layer_ranges_and_partial_loads(checkpoint):
    path, cfg, weights = checkpoint
    layers = cfg["num_hidden_layers"]
    split = layers // 2
    edge = tandem.Model.load(str(path), layer_end=split, load_head=False)
    cloud = tandem.Model.load(str(path), layer_begin=split, load_embedding=False)
    ids = np.array(PROMPT, dtype=np.int64) % cfg["vocab_size"]
    hidden = edge.forward_layers(0, split, edge.embed(ids))
    got = cloud.logits_from_hidden(cloud.forward_layers(split, layers, hidden))
    np.testing.assert_allclose(got, reference_llama.logits(weights, cfg, ids),
                               atol=TOLERANCE, rtol=0)
    full_bytes = tandem.Model.load(str(path)).weight_bytes
    assert edge.weight_bytes < full_bytes and cloud.weight_bytes < full_bytes
    with pytest.raises(RuntimeError):
        cloud.embed(ids)


def test_bad_inputs_raise(checkpoint, tmp_path):
    path, cfg, _ = checkpoint
    model = tandem.Model.load(str(path))
    with pytest.raises(ValueError):
        model.logits(np.array([cfg["vocab_size"]], dtype=np.int64))
    with pytest.raises(ValueError):
        model.forward_layers(0, 1, np.zeros((2, cfg["hidden_size"] + 1), dtype=np.float32))
    with pytest.raises(LookupError):
        tandem.Model.load(str(tmp_path / "missing"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(ValueError):
        tandem.Model.load(str(tmp_path / "broken"))
