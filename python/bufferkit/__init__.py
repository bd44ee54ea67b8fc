"""bufferkit: export the CPython buffer protocol (PEP 3118) correctly, safely and fast.

The types live in the native module ``bufferkit._bufferkit``; this package re-exports them so
that ``bufferkit.Buffer`` is the public name (and ``Buffer.__module__ == 'bufferkit'``).
"""

from ._bufferkit import *  # noqa: F401,F403
from ._bufferkit import __all__  # noqa: F401
from ._bufferkit import inspect as _inspect

#: The package version: Cargo.toml's and pyproject.toml's (python_tests/test_buffer.py,
#: test_version, keeps the three equal).
__version__ = "0.1.0"

# Functions of an extension module name that module; the public home is this package.
_inspect.__module__ = __name__
del _inspect
