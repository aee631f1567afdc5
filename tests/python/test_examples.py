"""The scripts in python/examples/ run and produce what they promise."""
import os
import subprocess
import sys

import pytest

from conftest import SOURCE_DIR

EXAMPLES = SOURCE_DIR / "python" / "examples"


def run(script, *args, cwd):
    return subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=cwd, check=True,
                          capture_output=True, text=True, timeout=600).stdout


def test_threshold_sweep_writes_its_plot(tmp_path, test_slice):
    pytest.importorskip("matplotlib")
    out = tmp_path / "sweep.png"
    text = run("threshold_sweep.py", "--data", test_slice, "--max-tokens", "1024",
               "--targets", "0.97,0.99", "--points", "11", "--threads", "1", "--out", str(out),
               cwd=tmp_path)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "cascade (best thresholds per measure)" in text
    assert text.count("%") >= 6  # a row per target and measure


def test_codec_comparison_prints_every_codec(tmp_path):
    text = run("codec_comparison.py", "--windows", "2", cwd=tmp_path)
    for spec in ("fp32", "int8+zstd", "int4"):
        assert f"\n{spec:>10} " in text
    fp32 = next(l for l in text.splitlines() if l.split()[:1] == ["fp32"])
    assert fp32.split()[-1] == "100.00%"  # the exact codec changes nothing


def test_edge_cloud_collaborates(tmp_path):
    text = run("edge_cloud.py", "--tokens", "12", cwd=tmp_path)
    assert "cloud listening on 127.0.0.1:" in text
    assert "tokens sent" in text
