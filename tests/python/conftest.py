import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

# Under CTest the module must be importable: a missing build is a failure, not a
# skip. (Run by hand, tests that need it skip or fail with an import error.)
if os.environ.get("TANDEM_REQUIRE_MODULE"):
    import tandem  # noqa: F401
