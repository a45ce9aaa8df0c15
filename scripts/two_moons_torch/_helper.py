"""Import the repository's Python helper (`python/scoreflow`) whether or not it
was installed with `pip install ./python`: the command's sandbox mirrors the
project, with the helper among the stage's `code:` files."""
import os
import sys

try:
    import scoreflow  # noqa: F401  (installed)
except ImportError:
    sys.path.insert(0, os.path.join(os.environ["SCOREFLOW_PROJECT"], "python"))
    import scoreflow  # noqa: F401
