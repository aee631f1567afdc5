import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

# `import torch` first is not needed: the module exchanges NumPy arrays only.
tandem = pytest.importorskip("tandem", reason="build the module and set PYTHONPATH=build/python")
