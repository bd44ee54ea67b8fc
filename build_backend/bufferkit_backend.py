"""PEP 517 build backend for bufferkit: maturin, plus the abi3 feature on CPython 3.11+.

Every build of bufferkit goes through here (``pip wheel .``, ``pip install .`` and the
Makefile), so there is one way to build. The only decision taken here is the build kind:
CPython 3.11 and newer get the stable-ABI module (``bufferkit/_bufferkit.abi3.so``, loadable
by every later CPython); 3.9 and 3.10 get a version-specific module, because the buffer slots
and ``Py_buffer`` are not part of their limited API.
"""

import os
import shlex
import sys

import maturin
from maturin import *  # noqa: F401,F403  (the rest of the PEP 517 hooks, unchanged)


def _abi3_args():
    args = shlex.split(os.environ.get("MATURIN_PEP517_ARGS", ""))
    wants_abi3 = sys.implementation.name == "cpython" and sys.version_info >= (3, 11)
    if wants_abi3 and not any(a.startswith("--features") or a == "-F" for a in args):
        args += ["--features", "abi3"]
    os.environ["MATURIN_PEP517_ARGS"] = shlex.join(args)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _abi3_args()
    return maturin.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    _abi3_args()
    return maturin.build_editable(wheel_directory, config_settings, metadata_directory)
