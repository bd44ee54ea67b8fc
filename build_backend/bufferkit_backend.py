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


def _plain_abi3t_suffix(wheel_directory, name):
    """Rename ``_bufferkit.abi3t-<multiarch>.so`` to ``_bufferkit.abi3t.so`` in an abi3t wheel.

    maturin names the abi3t module after the building interpreter's first abi3t suffix, which
    on Debian's CPython is the multiarch one (``.abi3t-x86_64-linux-gnu.so``); it names the abi3
    module ``.abi3.so`` in the same place. CPython itself (gh-146636) accepts ``.abi3t.so`` on
    every 3.15+, the multiarch name only where a distribution patched it in, so the wheel
    carries the plain name. The file's bytes, and so its RECORD hash, do not change.
    """
    if "abi3t" not in name:
        return name
    import re
    import zipfile

    path = os.path.join(wheel_directory, name)
    pattern = re.compile(r"(_bufferkit\.abi3t)-[^/]+(\.so)$")
    with zipfile.ZipFile(path) as old:
        items = [(info, old.read(info)) for info in old.infolist()]
    renamed = {}
    for info, _ in items:
        new = pattern.sub(r"\1\2", info.filename)
        if new != info.filename:
            renamed[info.filename] = new
    if not renamed:
        return name
    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as out:
        for info, data in items:
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(
                    renamed.get(line.split(",", 1)[0], line.split(",", 1)[0]) + "," + line.split(",", 1)[1]
                    if "," in line else line
                    for line in lines
                ).encode()
            info.filename = renamed.get(info.filename, info.filename)
            out.writestr(info, data)
    os.replace(tmp, path)
    return name


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _abi3_args()
    name = maturin.build_wheel(wheel_directory, config_settings, metadata_directory)
    return _plain_abi3t_suffix(wheel_directory, name)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    _abi3_args()
    return maturin.build_editable(wheel_directory, config_settings, metadata_directory)
