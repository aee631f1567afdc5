"""tandem.EdgeSession in standalone mode on the shipped model."""
import subprocess
import threading

import pytest

import tandem

PROMPT = "And it came to pass"


@pytest.fixture(scope="module")
def session(model_dir):
    s = tandem.EdgeSession(model_dir)
    yield s
    s.close()


def test_standalone_generate_equals_the_cli(session, model_dir, cli):
    # Sampling (temperature, top-k, seed) makes the comparison cover the
    # sampler too; --show-exits also compares where each token was decided.
    args = dict(max_new_tokens=40, temperature=0.8, top_k=40, seed=7)
    result = session.generate(PROMPT, **args)
    out = subprocess.run(
        [cli, "edge", "--model", model_dir, "--prompt", PROMPT, "--max-new-tokens", "40",
         "--temperature", "0.8", "--top-k", "40", "--seed", "7", "--show-exits", "--threads", "1"],
        check=True, capture_output=True, text=True).stdout
    shown = "".join(f"[{t.layer}{'c' if t.decided_by == 'exit' else 'f'}|{t.text}]"
                    for t in result.tokens)
    tail = result.text[len("".join(t.text for t in result.tokens)):]  # held-back text
    assert out == PROMPT + shown + tail + "\n"
    assert result.stats.generated_tokens == len(result.tokens) > 0


def test_same_seed_same_output_and_greedy_is_deterministic(session):
    a = session.generate(PROMPT, max_new_tokens=24, temperature=1.0, seed=3)
    b = session.generate(PROMPT, max_new_tokens=24, temperature=1.0, seed=3)
    assert a.ids == b.ids
    g1 = session.generate(PROMPT, max_new_tokens=24)
    g2 = session.generate(PROMPT, max_new_tokens=24)
    assert g1.text == g2.text


def test_records_add_up_to_the_stats(session):
    before = session.stats
    r = session.generate(PROMPT, max_new_tokens=48, stop_at_eos=False)
    s = r.stats
    assert [t.id for t in r.tokens] == r.ids
    assert len(r.tokens) == s.generated_tokens == 48
    assert s.stop_reason == "max_tokens"
    by_layer = {}
    for t in r.tokens:
        assert t.decided_by in ("exit", "fallback")  # standalone: never the cloud
        assert t.layer in session.exits
        assert 0.0 <= t.probability <= 1.0 and t.seconds > 0.0
        key = (t.decided_by, t.layer)
        by_layer[key] = by_layer.get(key, 0) + 1
    assert {("exit", l): n for l, n in s.exit_tokens.items() if n} == \
        {k: n for k, n in by_layer.items() if k[0] == "exit"}
    assert {("fallback", l): n for l, n in s.fallback_tokens.items() if n} == \
        {k: n for k, n in by_layer.items() if k[0] == "fallback"}
    assert s.cloud_tokens == 0 and s.edge_tokens == 48
    positions = [t.position for t in r.tokens]
    assert positions == list(range(positions[0], positions[0] + 48))
    assert r.text == "".join(t.text for t in r.tokens)  # nothing held back without stop strings
    after = session.stats
    assert after.generations == before.generations + 1
    assert after.generated_tokens == before.generated_tokens + 48


def test_stream_yields_what_generate_returns(session):
    want = session.generate(PROMPT, max_new_tokens=20)
    records = []
    stream = session.stream(PROMPT, max_new_tokens=20)
    while True:
        try:
            records.append(next(stream))
        except StopIteration as done:
            result = done.value
            break
    assert [t.id for t in records if t.id >= 0] == want.ids
    assert "".join(t.text for t in records) == want.text == result.text


def test_breaking_out_of_a_stream_cancels_it(session):
    seen = 0
    for _ in session.stream(PROMPT, max_new_tokens=200, stop_at_eos=False):
        seen += 1
        if seen == 3:
            break
    # The session is free again at once: the background generate has ended.
    assert session.generate(PROMPT, max_new_tokens=2).stats.generated_tokens == 2


def test_stop_strings_and_callbacks(session):
    full = session.generate(PROMPT, max_new_tokens=40, stop_at_eos=False).text
    stop = full[len(full) // 2:len(full) // 2 + 3]
    cut = session.generate(PROMPT, max_new_tokens=40, stop=stop, stop_at_eos=False)
    assert cut.stats.stop_reason == "stop_string"
    assert stop not in cut.text and full.startswith(cut.text)

    calls = []
    r = session.generate(PROMPT, max_new_tokens=40, on_token=lambda t: len(calls) < 4 and calls.append(t) is None)
    assert r.stats.stop_reason == "callback" and len(r.tokens) == 5

    def boom(token):
        raise ZeroDivisionError("from on_token")

    with pytest.raises(ZeroDivisionError, match="from on_token"):
        session.generate(PROMPT, max_new_tokens=40, on_token=boom)
    assert session.generate(PROMPT, max_new_tokens=3).stats.generated_tokens == 3


def test_cancel_from_another_thread(session):
    started = threading.Event()

    def on_token(token):
        started.set()

    out = []
    worker = threading.Thread(target=lambda: out.append(
        session.generate(PROMPT, max_new_tokens=100000, stop_at_eos=False, on_token=on_token)))
    worker.start()
    assert started.wait(60)
    session.cancel()
    worker.join(60)
    assert not worker.is_alive()
    assert out[0].stats.stop_reason in ("cancelled", "context_full")


def test_ids_prompt_and_properties(session, model_dir):
    tok = tandem.Tokenizer.load(model_dir)
    ids = tok.encode(PROMPT)
    by_ids = session.generate(ids, max_new_tokens=10)
    by_text = session.generate(PROMPT, max_new_tokens=10)
    assert by_ids.ids == by_text.ids
    assert all(t.text == "" for t in by_ids.tokens)  # no tokenizer involved
    assert session.split == session.exits[-1]
    assert session.measure in ("max_prob", "margin", "neg_entropy")
    assert set(session.thresholds) == set(session.exits)
    assert not session.collaborative and session.cloud_stats is None


def test_thresholds_measure_and_split_options(model_dir):
    with tandem.EdgeSession(model_dir, thresholds=0.0, measure="max_prob") as s:
        assert s.thresholds == {e: 0.0 for e in s.exits}
        r = s.generate(PROMPT, max_new_tokens=16)
        # Every token passes the first exit.
        assert {t.layer for t in r.tokens} == {s.exits[0]}
        assert all(t.decided_by == "exit" for t in r.tokens)
    with tandem.EdgeSession(model_dir, split=2, thresholds={2: 2.0},
                            measure="max_prob") as s:
        assert s.split == 2 and s.exits == [2]
        r = s.generate(PROMPT, max_new_tokens=8)
        assert {(t.decided_by, t.layer) for t in r.tokens} == {("fallback", 2)}


def test_bad_arguments_raise_clear_errors(model_dir, tmp_path):
    with pytest.raises(tandem.NotFoundError):
        tandem.EdgeSession(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="split"):
        tandem.EdgeSession(model_dir, split=99)
    with pytest.raises(tandem.NotFoundError, match="no exit head at layer 3"):
        tandem.EdgeSession(model_dir, split=3)
    with pytest.raises(ValueError):
        tandem.EdgeSession(model_dir, measure="loudness")
    with pytest.raises(ValueError):
        tandem.EdgeSession(model_dir, fallback="coin")
    with tandem.EdgeSession(model_dir) as s:
        with pytest.raises(ValueError, match="prompt"):
            s.generate("", add_special_tokens=False)
        with pytest.raises(ValueError, match="prompt"):
            s.generate([])
        with pytest.raises(ValueError):
            s.generate(PROMPT, temperature=-1.0)
        with pytest.raises(ValueError):
            s.generate([10**6])
    closed = tandem.EdgeSession(model_dir)
    closed.close()
    with pytest.raises(RuntimeError, match="closed"):
        closed.generate(PROMPT)


def test_one_generate_at_a_time(session):
    started, release = threading.Event(), threading.Event()

    def hold(token):
        started.set()
        release.wait(30)

    worker = threading.Thread(target=session.generate, args=(PROMPT,),
                              kwargs=dict(max_new_tokens=2, on_token=hold))
    worker.start()
    try:
        assert started.wait(60)
        with pytest.raises(RuntimeError, match="another Generate"):
            session.generate(PROMPT, max_new_tokens=1)
    finally:
        release.set()
        worker.join(60)


def test_decode_path_weights(model_dir):
    with tandem.EdgeSession(model_dir) as reference:
        want = reference.generate(PROMPT, max_new_tokens=16, stop_at_eos=False)
    # fp32 on the SIMD decode path agrees with libtorch within 1e-4: the same
    # greedy tokens, decided at the same exits.
    with tandem.EdgeSession(model_dir, weights="fp32") as fast:
        got = fast.generate(PROMPT, max_new_tokens=16, stop_at_eos=False)
    assert got.ids == want.ids
    assert [(t.decided_by, t.layer) for t in got.tokens] == \
        [(t.decided_by, t.layer) for t in want.tokens]
    with tandem.EdgeSession(model_dir, weights="int8", decode_threads=2) as int8:
        r = int8.generate(PROMPT, max_new_tokens=16, stop_at_eos=False)
        assert r.stats.generated_tokens == len(r.tokens) == 16
        assert sum(r.stats.exit_tokens.values()) + sum(r.stats.fallback_tokens.values()) == 16
    with pytest.raises(ValueError):
        tandem.EdgeSession(model_dir, weights="int3")
    with pytest.raises(ValueError):
        tandem.EdgeSession(model_dir, weights="int8", decode_threads=0)
