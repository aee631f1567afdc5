import os
import pathlib
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

# Under CTest the module must be importable: a missing build is a failure, not a
# skip. (Run by hand, tests that need it skip or fail with an import error.)
if os.environ.get("TANDEM_REQUIRE_MODULE"):
    import tandem  # noqa: F401

SOURCE_DIR = pathlib.Path(os.environ.get("TANDEM_SOURCE_DIR",
                                         pathlib.Path(__file__).resolve().parents[2]))
SHIPPED_MODEL = SOURCE_DIR / "models" / "tandem-tiny"
TEST_SLICE = SOURCE_DIR / "tests" / "data" / "corpus" / "test_slice.txt"


@pytest.fixture(scope="session")
def model_dir():
    """The shipped model (weights are committed; its absence is a failure)."""
    assert (SHIPPED_MODEL / "model.safetensors").exists(), SHIPPED_MODEL
    return str(SHIPPED_MODEL)


@pytest.fixture(scope="session")
def test_slice():
    return str(TEST_SLICE)


@pytest.fixture(scope="session")
def cli():
    """The `tandem` command-line tool (set by CTest; found in build/ otherwise)."""
    path = os.environ.get("TANDEM_CLI") or str(SOURCE_DIR / "build" / "examples" / "tandem")
    if not os.path.exists(path):
        pytest.skip("the tandem CLI is not built")
    return path
