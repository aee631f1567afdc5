"""Model.hidden_states: the states an exit head or the cloud sees, per layer."""
import numpy as np
import pytest

import tandem


@pytest.fixture(scope="module")
def model(model_dir):
    return tandem.Model.load(model_dir)


def test_layers_agree_with_the_forward_pass(model):
    ids = np.array([5, 17, 300, 42, 9, 1000, 7], dtype=np.int64)
    L = model.config["num_hidden_layers"]
    states = model.hidden_states(ids, [0, 2, L])
    assert sorted(states) == [0, 2, L]
    assert all(s.shape == (7, model.config["hidden_size"]) and s.dtype == np.float32
               for s in states.values())
    np.testing.assert_array_equal(states[0], model.embed(ids))
    np.testing.assert_allclose(states[2], model.forward_layers(0, 2, states[0]), atol=1e-6)
    np.testing.assert_allclose(model.logits_from_hidden(states[L]), model.logits(ids),
                               atol=1e-4)


def test_batches_match_single_rows_and_torch_shares_memory(model):
    torch = pytest.importorskip("torch")
    batch = np.array([[1, 2, 3, 4], [9, 8, 7, 6]])
    both = model.hidden_states(batch, [3])[3]
    assert both.shape == (2, 4, model.config["hidden_size"])
    for b in range(2):
        np.testing.assert_allclose(both[b], model.hidden_states(batch[b], [3])[3], atol=1e-5)
    t = model.hidden_states([1, 2, 3], [1], as_torch=True)[1]
    assert isinstance(t, torch.Tensor) and t.shape == (3, model.config["hidden_size"])


def test_bad_layers_and_ids(model, model_dir):
    with pytest.raises(ValueError):
        model.hidden_states([1, 2], [model.config["num_hidden_layers"] + 1])
    with pytest.raises(ValueError):
        model.hidden_states([1, 2], [])
    with pytest.raises(ValueError):
        model.hidden_states([1, model.config["vocab_size"]], [1])
    half = tandem.Model.load(model_dir, layer_end=2)
    with pytest.raises(ValueError, match="ForwardLayers"):
        half.hidden_states([1, 2], [4])
