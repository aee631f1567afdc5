"""Pipelined speculative verification from Python: CloudOptions' window,
delivery="confirmed" / "eager", rollbacks, per-token flags and the
speculation statistics, against an in-process CloudServer on loopback."""
import pytest

import tandem

PROMPT = "The quick brown fox jumps over the lazy dog, and then"
NEVER = 2.0  # no max_prob reaches it: every token is drafted and verified
TOKENS = 48


@pytest.fixture(scope="module")
def cloud(model_dir):
    with tandem.CloudServer(model_dir) as server:
        yield server


def options(cloud, **kw):
    # fp32: the cloud's continuation is exact, so greedy texts can be compared.
    return tandem.CloudOptions(cloud.address, codec="fp32", request_timeout=30.0, **kw)


@pytest.fixture(scope="module")
def edge(cloud, model_dir):
    with tandem.EdgeSession(model_dir, cloud=options(cloud), thresholds=NEVER,
                            measure="max_prob") as session:
        yield session


def run(session, delivery, **kw):
    streamed = []
    rollbacks = []
    result = session.generate(PROMPT, max_new_tokens=TOKENS, stop_at_eos=False,
                              delivery=delivery, on_token=streamed.append,
                              on_rollback=rollbacks.append, **kw)
    return result, streamed, rollbacks


def replay(items):
    """The text a UI shows after applying every record and rollback in order."""
    shown = ""
    for item in items:
        if isinstance(item, tandem.Rollback):
            assert shown.endswith(item.text)
            shown = shown[:len(shown) - len(item.text)]
        else:
            shown += item.text
    return shown


def test_cloud_options_carry_the_window():
    o = tandem.CloudOptions("127.0.0.1:1")
    assert (o.max_in_flight, o.adaptive_depth, o.min_in_flight, o.draft_top_k) == (32, True, 4, 8)
    o = tandem.CloudOptions("127.0.0.1:1", max_in_flight=0, adaptive_depth=False,
                            min_in_flight=2, draft_top_k=16)
    assert (o.max_in_flight, o.adaptive_depth, o.min_in_flight, o.draft_top_k) == (0, False, 2, 16)
    o.max_in_flight = 7
    assert o.max_in_flight == 7 and "max_in_flight=7" in repr(o)


@pytest.mark.parametrize("field,value", [("max_in_flight", -1), ("max_in_flight", 5000),
                                         ("min_in_flight", 0), ("draft_top_k", 65)])
def test_out_of_range_window_is_a_value_error(model_dir, field, value):
    with pytest.raises(ValueError, match=field):
        tandem.EdgeSession(model_dir, cloud=tandem.CloudOptions("127.0.0.1:1", **{field: value}))


def test_bad_delivery_is_a_value_error(edge):
    with pytest.raises(ValueError, match="delivery"):
        edge.generate(PROMPT, max_new_tokens=2, delivery="sometimes")


def test_confirmed_records_and_speculation_stats_add_up(edge):
    r, streamed, rollbacks = run(edge, "confirmed")
    s, sp = r.stats, r.stats.speculation
    assert rollbacks == [] and r.rollbacks == []
    assert [t.id for t in streamed] == [t.id for t in r.tokens] == r.ids
    assert len(r.tokens) == s.generated_tokens == TOKENS
    assert not any(t.provisional for t in r.tokens)
    # Every token was drafted and verified: the cloud decided each one, by
    # confirming the edge's draft or replacing it.
    assert s.cloud.failed_requests == 0 and sp.unverified == 0, s.cloud.last_error
    assert {t.decided_by for t in r.tokens} == {"cloud"}
    assert sum(t.draft_accepted for t in r.tokens) == sp.accepted
    assert sum(not t.draft_accepted for t in r.tokens) == sp.rejected
    assert sp.accepted + sp.rejected == s.cloud_tokens == TOKENS
    # Drafts decoded on top of a replaced draft were dropped without a verdict.
    assert sp.drafts >= sp.accepted + sp.rejected + sp.unverified
    assert sp.rolled_back >= sp.rejected
    assert sp.wasted_steps == sp.rolled_back - sp.rejected
    assert sp.drafts - (sp.accepted + sp.rejected + sp.unverified) <= sp.wasted_steps
    assert sp.mean_in_flight > 0.0 and sp.wait_seconds >= 0.0
    assert 1 <= sp.final_window <= 32
    assert "drafts=" in repr(sp)


def test_eager_has_rollbacks_and_ends_with_the_confirmed_text(edge):
    confirmed, _, _ = run(edge, "confirmed")
    eager, streamed, rollbacks = run(edge, "eager")
    assert eager.text == confirmed.text and eager.ids == confirmed.ids
    sp = eager.stats.speculation
    # The shipped model's fallback exit disagrees with the full model on this
    # prompt, so drafts are replaced after they were streamed.
    assert sp.rejected > 0 and len(rollbacks) > 0
    assert len(rollbacks) <= sp.rejected  # a draft replaced before it streamed needs none
    assert [(b.position, b.tokens, b.text) for b in eager.rollbacks] == \
        [(b.position, b.tokens, b.text) for b in rollbacks]
    assert any(t.provisional for t in streamed)
    for b in rollbacks:
        assert b.tokens >= 1 and b.bytes == len(b.text.encode())
    # What was streamed, less what was taken back, is what stands.
    assert len(streamed) == len(eager.tokens) + sum(b.tokens for b in rollbacks)
    assert sum(b.tokens for b in rollbacks) <= sp.rolled_back
    assert [t.id for t in eager.tokens] == eager.ids
    # Counts are by how each standing token was decided when it streamed.
    s = eager.stats
    assert sum(t.decided_by == "cloud" for t in eager.tokens) == s.cloud_tokens
    assert sum(t.decided_by == "fallback" for t in eager.tokens) == sum(s.fallback_tokens.values())
    assert s.generated_tokens == TOKENS


def test_eager_stream_yields_rollbacks_in_order(edge):
    want, _, _ = run(edge, "confirmed")
    items = []
    stream = edge.stream(PROMPT, max_new_tokens=TOKENS, stop_at_eos=False, delivery="eager")
    while True:
        try:
            items.append(next(stream))
        except StopIteration as done:
            result = done.value
            break
    assert any(isinstance(i, tandem.Rollback) for i in items)
    assert replay(items) == result.text == want.text
    with pytest.raises(TypeError):
        next(edge.stream(PROMPT, on_rollback=print))


def test_blocking_policy_gives_the_same_text_and_wastes_nothing(cloud, model_dir, edge):
    want, _, _ = run(edge, "confirmed")
    with tandem.EdgeSession(model_dir, cloud=options(cloud, max_in_flight=0),
                            thresholds=NEVER, measure="max_prob") as blocking:
        r, _, _ = run(blocking, "confirmed")
    assert r.text == want.text
    sp = r.stats.speculation
    # Nothing is decoded on top of an unverified draft.
    assert sp.wasted_steps == 0 and sp.rolled_back == sp.rejected
    assert sp.drafts == sp.accepted + sp.rejected == TOKENS
