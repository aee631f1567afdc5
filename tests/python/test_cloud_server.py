"""tandem.CloudServer + a collaborative tandem.EdgeSession on loopback."""
import socket

import numpy as np
import pytest

import tandem

PROMPT = "In the beginning"
NEVER = 2.0  # no max_prob reaches it: every token goes to the cloud


@pytest.fixture(scope="module")
def cloud(model_dir):
    with tandem.CloudServer(model_dir) as server:
        yield server


def test_server_address_and_stats(cloud):
    host, port = cloud.address.rsplit(":", 1)
    assert int(port) == cloud.port > 0 and cloud.running
    stats = cloud.stats()
    assert stats.streams_active >= 0 and stats.context.sessions >= 0
    assert "tandem" in cloud.metrics_text()


def test_collaboration_records_add_up_to_the_stats(cloud, model_dir):
    options = tandem.CloudOptions(cloud.address, codec="int8", request_timeout=30.0)
    before = cloud.stats()
    with tandem.EdgeSession(model_dir, cloud=options) as edge:
        assert edge.collaborative
        r = edge.generate(PROMPT, max_new_tokens=32, stop_at_eos=False)
    s = r.stats
    counts = {"exit": 0, "fallback": 0, "cloud": 0}
    for t in r.tokens:
        counts[t.decided_by] += 1
        if t.decided_by == "cloud":
            assert t.layer is None and np.isnan(t.confidence)
    assert counts["cloud"] == s.cloud_tokens == s.cloud.cloud_tokens
    assert counts["exit"] == sum(s.exit_tokens.values())
    assert counts["fallback"] == sum(s.fallback_tokens.values()) == s.cloud.failed_requests == 0
    assert sum(counts.values()) == s.generated_tokens == 32
    # Pipelined: drafts rolled back by an earlier rejection were requested too.
    assert s.cloud_tokens > 0 and s.cloud.requests >= s.cloud_tokens
    assert s.cloud.bytes_up > 0 and s.cloud.bytes_down > 0
    after = cloud.stats()
    assert after.tokens_sent - before.tokens_sent == s.cloud_tokens
    assert after.streams_opened > before.streams_opened


def test_fp32_collaboration_equals_the_full_model(cloud, model_dir):
    # With no exit ever confident and an exact codec, every token is the
    # cloud's: greedy output must be the full model's own.
    options = tandem.CloudOptions(cloud.address, codec="fp32", request_timeout=30.0)
    with tandem.EdgeSession(model_dir, cloud=options, thresholds=NEVER,
                            measure="max_prob") as edge:
        r = edge.generate(PROMPT, max_new_tokens=24, stop_at_eos=False)
    assert {t.decided_by for t in r.tokens} == {"cloud"}
    model = tandem.Model.load(model_dir)
    ids = tandem.Tokenizer.load(model_dir).encode(PROMPT)
    assert r.ids == tandem.generate(model, ids, max_new_tokens=24)


def test_dead_cloud_falls_back_to_the_edge(model_dir):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = tandem.CloudOptions(f"127.0.0.1:{port}", request_timeout=0.2, connect_timeout=0.2)
    with tandem.EdgeSession(model_dir, cloud=options, thresholds=NEVER,
                            measure="max_prob") as edge:
        r = edge.generate(PROMPT, max_new_tokens=8, stop_at_eos=False)
        link = edge.cloud_stats
    assert r.stats.generated_tokens == 8
    assert {t.decided_by for t in r.tokens} == {"fallback"}
    assert r.stats.cloud_tokens == 0 and link.cloud_tokens == 0
    assert link.connect_failures + link.failed_requests > 0 and link.last_error


def test_bad_server_options(model_dir, tmp_path):
    with pytest.raises(tandem.NotFoundError):
        tandem.CloudServer(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError):
        tandem.CloudServer(model_dir, port=70000)
    with pytest.raises(ValueError):
        tandem.CloudServer(model_dir, split=99)
    with pytest.raises(ValueError):
        tandem.CloudOptions("127.0.0.1:1", resync="sometimes")


def test_shutdown_is_idempotent_and_edges_carry_on(model_dir):
    server = tandem.CloudServer(model_dir)
    options = tandem.CloudOptions(server.address, request_timeout=5.0, connect_timeout=1.0)
    with tandem.EdgeSession(model_dir, cloud=options, thresholds=NEVER,
                            measure="max_prob") as edge:
        assert edge.generate(PROMPT, max_new_tokens=4).stats.cloud_tokens > 0
        server.shutdown(grace=0.5)
        server.shutdown()
        assert not server.running
        with pytest.raises(RuntimeError):
            server.stats()
        r = edge.generate(PROMPT, max_new_tokens=4, stop_at_eos=False)
        assert r.stats.generated_tokens == 4 and r.stats.cloud_tokens == 0
