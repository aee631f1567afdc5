"""tandem.codec on NumPy arrays and torch tensors, with the C++ tests' bounds."""
import numpy as np
import pytest

import tandem
from tandem import codec

# Relative L2 error bounds of tests/common/codec_test.cc (Gaussian rows); zstd
# is lossless on top.
BOUNDS = {"fp16": 2.5e-4, "bf16": 2.0e-3, "int8": 8.5e-3, "int4": 1.1e-1, "int4-g64": 1.2e-1}
# ... and on the shipped model's layer-4 outputs.
REAL_BOUNDS = {"fp16": 2.5e-4, "bf16": 2.0e-3, "int8": 8.5e-3, "int4": 1.15e-1,
               "int4-g64": 1.3e-1}


def gaussian(rows=64, dim=256, seed=42):
    return np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)


def rel_l2(x, y):
    return float(np.linalg.norm(y.astype(np.float64) - x) / np.linalg.norm(x.astype(np.float64)))


@pytest.mark.parametrize("base", sorted(BOUNDS))
@pytest.mark.parametrize("zstd", ["", "+zstd"])
def test_numpy_round_trip_within_bounds(base, zstd):
    x = gaussian()
    buf = codec.encode(x, base + zstd)
    assert isinstance(buf, bytes)
    y = codec.decode(buf)
    assert y.shape == x.shape and y.dtype == np.float32
    err = rel_l2(x, y)
    assert 0.0 < err < BOUNDS[base]
    assert codec.relative_error(x, base + zstd) == pytest.approx(err)
    if not zstd:
        assert len(buf) == codec.encoded_size(64, 256, base)


def test_fp32_is_bit_exact_including_specials():
    x = gaussian(8, 32)
    x[0, :4] = [np.inf, -np.inf, -0.0, np.nan]
    y = codec.decode(codec.encode(x, "fp32+zstd"))
    assert y.tobytes() == x.tobytes()


def test_torch_round_trip():
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(gaussian(16, 256))
    buf = codec.encode(x, "int8")
    assert buf == codec.encode(x.numpy(), "int8")  # same bytes from either input
    y = codec.decode(buf, as_torch=True)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32 and y.shape == (16, 256)
    assert rel_l2(x.numpy(), y.numpy()) < BOUNDS["int8"]
    # Non-contiguous, other dtypes and autograd tensors are converted once.
    z = torch.from_numpy(gaussian(256, 16)).double().t().requires_grad_(True)
    assert codec.decode(codec.encode(z, "fp32")).tobytes() == \
        z.detach().float().contiguous().numpy().tobytes()


def test_one_row_and_float64_input():
    x = gaussian(1, 100)[0].astype(np.float64)
    y = codec.decode(codec.encode(x, "fp16"))
    assert y.shape == (1, 100)
    assert rel_l2(x, y[0]) < BOUNDS["fp16"]


def test_bad_input_raises_value_errors():
    x = gaussian(4, 32)
    with pytest.raises(ValueError, match="codec"):
        codec.encode(x, "int3")
    bad = x.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError):
        codec.encode(bad, "int8")
    with pytest.raises(ValueError):
        codec.encode(np.zeros((2, 2, 2), np.float32), "fp16")
    buf = codec.encode(x, "int4")
    for broken in (buf[:10], buf[:-1], buf + b"\0", b"XXXX" + buf[4:]):
        with pytest.raises(ValueError, match="^codec: "):
            codec.decode(broken)
    with pytest.raises(ValueError):
        codec.decode(buf, expected_dim=33)
    with pytest.raises(ValueError):
        codec.decode(buf, max_rows=3)


def test_canonical_names():
    assert codec.canonical_name("int4-g32") == "int4"
    assert codec.canonical_name("int8+zstd3") == "int8+zstd"  # level 3 is the default
    assert set(codec.FORMATS) <= {codec.canonical_name(f) for f in codec.FORMATS}


def test_real_hidden_states_within_bounds(model_dir, test_slice):
    # Layer-4 outputs of the shipped model, as the edge would send them.
    model = tandem.Model.load(model_dir)
    ids = tandem.load_tokens(test_slice, model_dir)[:256]
    h = model.hidden_states(ids, [4])[4]
    for base, bound in REAL_BOUNDS.items():
        assert 0.0 < codec.relative_error(h, base) < bound, base
