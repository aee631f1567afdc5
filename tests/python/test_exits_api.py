"""train_exits / calibrate / evaluate / evaluate_thresholds from Python."""
import json
import shutil

import numpy as np
import pytest

import tandem


def test_evaluate_matches_the_model_card(model_dir, test_slice):
    card = json.load(open(f"{model_dir}/card.json"))
    seen = []
    r = tandem.evaluate(model_dir, test_slice, seq_len=card["seq_len"], on_progress=seen.append)
    want = card["test_slice"]
    assert r.tokens == want["tokens"]
    assert r.full_perplexity == pytest.approx(want["full_ppl"], rel=0.01)
    assert r.exit_perplexity[2] == pytest.approx(want["exit_2_ppl"], rel=0.01)
    assert r.exit_perplexity[4] == pytest.approx(want["exit_4_ppl"], rel=0.01)
    assert r.unigram_perplexity is None
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    assert seen[-1].done == seen[-1].total == r.tokens


def test_bf16_evaluation_stays_close_and_bad_precision_is_refused(model_dir, test_slice):
    ids = tandem.load_tokens(test_slice, model_dir)[:2570]
    fp32 = tandem.evaluate(model_dir, ids, seq_len=256)
    bf16 = tandem.evaluate(model_dir, ids, seq_len=256, precision="bf16")
    assert bf16.tokens == fp32.tokens
    assert bf16.full_perplexity == pytest.approx(fp32.full_perplexity, rel=0.03)
    with pytest.raises(ValueError, match="precision"):
        tandem.evaluate(model_dir, ids, seq_len=256, precision="fp8")


def test_unigram_baseline(model_dir, test_slice):
    ids = tandem.load_tokens(test_slice, model_dir)
    r = tandem.evaluate(model_dir, ids[:2570], unigram_from=ids, seq_len=256)
    assert r.tokens == 2560
    assert r.unigram_perplexity > r.full_perplexity > 1.0


def test_calibrate_meets_its_target_and_applies(model_dir, test_slice, tmp_path):
    r = tandem.calibrate(model_dir, test_slice, target_agreement=0.98, curve_points=11,
                         max_tokens=2048)
    assert r.tokens == 2048
    assert [m.measure for m in r.measures] == ["max_prob", "margin", "neg_entropy"]
    best = r.chosen
    assert best.coverage == max(m.coverage for m in r.measures)
    for m in r.measures:
        assert m.agreement >= 0.98 - 1e-12
        assert sum(m.exit_share.values()) == pytest.approx(m.coverage)
        for layer, curve in m.curves.items():
            assert len(curve) == 11
            assert [p.coverage for p in curve] == sorted((p.coverage for p in curve), reverse=True)
            assert curve[0].coverage == 1.0
            assert curve[0].agreement == pytest.approx(r.top1_agreement[layer])
    assert "chosen" in r.table()
    # The chosen thresholds, measured again as the edge would apply them.
    again = tandem.evaluate_thresholds(model_dir, test_slice, best.thresholds,
                                       measure=best.measure, max_tokens=2048)
    # (Up to a token per exit: a threshold is some token's exact confidence,
    # and evaluate_thresholds runs a head only on the rows that reach it.)
    assert again.coverage == pytest.approx(best.coverage, abs=2 / 2048)
    assert again.agreement == pytest.approx(best.agreement, abs=2 / 2048)
    # write=True stores them where EdgeSession finds them.
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    tandem.calibrate(str(copy), test_slice, target_agreement=0.98, write=True, max_tokens=1024)
    stored = json.load(open(copy / "exits.json"))["thresholds"]
    assert stored["target_agreement"] == 0.98
    with tandem.EdgeSession(str(copy)) as edge:
        assert edge.measure == stored["measure"]


def test_evaluate_thresholds_defaults_to_the_calibrated_ones(model_dir, test_slice):
    r = tandem.evaluate_thresholds(model_dir, test_slice, max_tokens=2048)
    assert r.tokens == 2048 and 0.0 < r.coverage < 1.0 and 0.9 < r.agreement <= 1.0
    everything = tandem.evaluate_thresholds(model_dir, test_slice, {2: 0.0}, measure="max_prob",
                                            max_tokens=512)
    assert everything.coverage == 1.0 and everything.exit_share == {2: 1.0}
    with pytest.raises(ValueError):
        tandem.evaluate_thresholds(model_dir, test_slice, {3: 0.5})


def test_progress_false_cancels_and_bad_input_raises(model_dir, test_slice, tmp_path):
    with pytest.raises(tandem.CancelledError):
        tandem.calibrate(model_dir, test_slice, on_progress=lambda p: False)
    with pytest.raises(ZeroDivisionError):
        tandem.evaluate(model_dir, test_slice, on_progress=lambda p: 1 / 0)
    with pytest.raises(ValueError, match="window"):
        tandem.evaluate(model_dir, [1, 2, 3])
    with pytest.raises(ValueError, match="vocabulary"):
        tandem.evaluate(model_dir, np.full(600, 10**6))
    with pytest.raises(ValueError):
        tandem.calibrate(model_dir, test_slice, target_agreement=1.5)
    with pytest.raises(tandem.NotFoundError):
        tandem.evaluate(str(tmp_path), test_slice)
    with pytest.raises(FileNotFoundError):
        tandem.evaluate(model_dir, str(tmp_path / "missing.bin"))


def test_train_exits_writes_heads_that_load(model_dir, test_slice, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    (copy / "exits.json").unlink()
    (copy / "tandem_exits.safetensors").unlink()
    ids = tandem.load_tokens(test_slice, model_dir)
    seen = []
    r = tandem.train_exits(str(copy), ids, exits=[1, 3], steps=6, batch_size=2, seq_len=64,
                           adapter_rank=4, on_progress=seen.append)
    assert r.steps == 6 and sorted(r.kl) == [1, 3] and r.out_dir == str(copy)
    assert [p.done for p in seen] == [1, 2, 3, 4, 5, 6]
    assert all(set(p.kl) == {1, 3} and all(v > 0 for v in p.kl.values()) for p in seen)
    assert json.load(open(copy / "exits.json"))["layers"] == [1, 3]
    ppl = tandem.evaluate(str(copy), ids, max_tokens=512)
    assert sorted(ppl.exit_perplexity) == [1, 3]
    with pytest.raises(tandem.CancelledError):
        tandem.train_exits(str(copy), ids, exits=[1], steps=50, batch_size=2, seq_len=64,
                           on_progress=lambda p: p.done < 2)
    with pytest.raises(ValueError):
        tandem.train_exits(str(copy), ids, exits=[99], steps=1)
