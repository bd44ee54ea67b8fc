"""``python -m bufferkit``: the command line (python/bufferkit/__main__.py).

The command runs in a subprocess, as a user runs it; its table is parsed back and compared
with ``bufferkit.inspect()`` called in this process on an equal object.
"""

import os
import shlex
import subprocess
import sys
import textwrap

import pytest

import bufferkit
from bufferkit import __main__ as cli


def run(*args, extra_path=(), check=None):
    """Runs ``python -m bufferkit *args``; returns the CompletedProcess."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(bufferkit.__file__)))
    path = [*extra_path, here, os.environ.get("PYTHONPATH", "")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p))
    done = subprocess.run(
        [sys.executable, "-m", "bufferkit", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check is not None:
        assert done.returncode == check, (done.stdout, done.stderr)
    return done


def fields(stdout):
    """The table's rows as {field: value text}, plus 'request' and 'object'."""
    out = {}
    lines = stdout.splitlines()
    for line in lines[:2]:
        key, _, value = line.partition(":")
        out[key] = value.strip()
    assert lines[2].split() == ["field", "value"]
    for line in lines[4:]:
        if line.startswith(" "):  # continuation of a multi-line repr
            continue
        key, _, value = line.partition("  ")
        out[key] = value.strip()
    return out


def expected(obj, flags):
    """What the table must show for obj and flags (buf and obj excepted)."""
    info = bufferkit.inspect(obj, flags)
    return {
        f: ("NULL" if v is None else repr(v))
        for f, v in info._asdict().items()
        if f not in ("buf", "obj")
    }


def info_buf(obj, flags):
    return bufferkit.inspect(obj, flags).buf


def assert_table(stdout, obj, flags):
    got = fields(stdout)
    want = expected(obj, flags)
    assert {f: got[f] for f in want} == want
    assert got["buf"] == "NULL" if info_buf(obj, flags) is None else int(got["buf"], 16) > 0
    return got


def test_help():
    done = run("--help", check=0)
    assert "usage: python -m bufferkit" in done.stdout
    assert "inspect" in done.stdout
    done = run("inspect", "--help", check=0)
    for text in ("EXPR", "--flags", "MODULE:EXPR", "examples:"):
        assert text in done.stdout


def shell_env():
    here = os.path.dirname(os.path.dirname(os.path.abspath(bufferkit.__file__)))
    path = [here, os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p))


def run_in_shell(command):
    """Runs a ``python -m bufferkit ...`` command line through ``sh``, as pasted, with this
    interpreter as ``python``."""
    assert command.startswith("python -m bufferkit "), command
    line = shlex.quote(sys.executable) + command[len("python"):]
    return subprocess.run(["sh", "-c", line], env=shell_env(), capture_output=True, text=True,
                          timeout=120)


def shell_operators(command):
    """The tokens of ``command`` that a shell reads as operators (``|``, ``;``, ``&``, ...)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    return [t for t in lexer if t and set(t) <= set("|&;<>()")]


def test_help_examples_paste_into_a_shell():
    """Every example of ``inspect --help`` runs as pasted into a shell: FLAGS joined by '|'
    are quoted, so the shell does not make a pipe of them."""
    done = run("inspect", "--help", check=0)
    text = done.stdout
    examples = [line.strip() for line in text.split("examples:", 1)[1].splitlines()
                if line.strip().startswith("python -m bufferkit")]
    assert len(examples) == 3
    assert any("'STRIDES|FORMAT'" in e for e in examples)
    for command in examples:
        assert shell_operators(command) == [], command
        got = run_in_shell(command)
        assert got.returncode == 0, (command, got.stdout, got.stderr)
        assert got.stdout.startswith("request: "), got.stdout
    done = run_in_shell("python -m bufferkit inspect 'bytearray(4)' --flags 'STRIDES|FORMAT'")
    assert fields(done.stdout)["request"] == "0x1c (PyBUF_RECORDS_RO)"
    # The --flags help shows its '|' example quoted too, and the unquoted form nowhere.
    assert "('ND|FORMAT')" in " ".join(text.split())
    assert " STRIDES|FORMAT" not in text and " ND|FORMAT" not in text


def test_no_command_is_a_usage_error():
    done = run(check=2)
    assert "usage:" in done.stderr


def test_bytearray_with_named_flags():
    done = run("inspect", "bytearray(b'abc')", "--flags", "ND", check=0)
    got = assert_table(done.stdout, bytearray(b"abc"), bufferkit.PyBUF_ND)
    assert got["request"].startswith("0x8 (PyBUF_ND")
    assert got["object"] == "builtins.bytearray"
    assert got["format"] == "NULL" and got["strides"] == "NULL"


def test_default_request_is_full_ro():
    done = run("inspect", "b'xyz'", check=0)
    got = assert_table(done.stdout, b"xyz", bufferkit.PyBUF_FULL_RO)
    assert got["request"] == "0x11c (PyBUF_FULL_RO)"


@pytest.mark.parametrize(
    "spelling", ["0x1c", "28", "RECORDS_RO", "PyBUF_RECORDS_RO", "STRIDES|FORMAT", "strides | PyBUF_FORMAT"]
)
def test_flag_spellings(spelling):
    assert cli.parse_flags(spelling) == bufferkit.PyBUF_RECORDS_RO
    done = run("inspect", "bytearray(4)", "--flags", spelling, check=0)
    assert fields(done.stdout)["request"] == "0x1c (PyBUF_RECORDS_RO)"


def test_bufferkit_names_are_in_scope():
    expr = "Buffer((2, 3), '<h', order='F')"
    done = run("inspect", expr, "--flags", "STRIDES|FORMAT", check=0)
    b = bufferkit.Buffer((2, 3), "<h", order="F")
    got = assert_table(done.stdout, b, bufferkit.PyBUF_RECORDS_RO)
    assert got["strides"] == "(2, 4)"
    assert got["obj"].startswith("<bufferkit.Buffer shape=(2, 3)")


def test_refused_request_exits_1():
    done = run("inspect", "bufferkit.Buffer((2, 3), order='F')", "--flags", "ND", check=1)
    assert "refused: BufferError: Buffer is not C-contiguous" in done.stdout


def test_not_an_exporter_exits_1():
    done = run("inspect", "3", check=1)
    assert "refused: TypeError" in done.stdout


def test_dotted_module_names_are_imported():
    done = run("inspect", "array.array('h', [1, 2, 3])", check=0)
    import array

    assert_table(done.stdout, array.array("h", [1, 2, 3]), bufferkit.PyBUF_FULL_RO)


def test_numpy_expression():
    import numpy as np
    expr = "numpy.arange(6, dtype=numpy.int32).reshape(2, 3)[:, ::2]"
    done = run("inspect", expr, "--flags", "STRIDES|FORMAT", check=0)
    a = np.arange(6, dtype=np.int32).reshape(2, 3)[:, ::2]
    got = assert_table(done.stdout, a, bufferkit.PyBUF_RECORDS_RO)
    assert got["shape"] == "(2, 2)" and got["strides"] == "(12, 8)"
    assert got["object"] == "numpy.ndarray"


def test_module_colon_expression(tmp_path):
    (tmp_path / "cli_samples.py").write_text(
        textwrap.dedent(
            """
            import bufferkit as bk

            def make(n):
                return bk.Buffer(n, 'd')
            """
        )
    )
    done = run("inspect", "cli_samples:make(5)", extra_path=[str(tmp_path)], check=0)
    got = assert_table(done.stdout, bufferkit.Buffer(5, "d"), bufferkit.PyBUF_FULL_RO)
    assert got["len"] == "40"
    # The same module reached through a dotted name.
    done = run("inspect", "cli_samples.make(5)", extra_path=[str(tmp_path)], check=0)
    assert fields(done.stdout)["len"] == "40"


def test_colons_inside_an_expression_are_not_a_module():
    assert cli.split_expr("memoryview(b'abcd')[1:3]") == (None, "memoryview(b'abcd')[1:3]")
    assert cli.split_expr("lambda: 0") == (None, "lambda: 0")
    assert cli.split_expr("pkg.mod:f(1)") == ("pkg.mod", "f(1)")
    done = run("inspect", "memoryview(b'abcd')[1:3]", "--flags", "SIMPLE", check=0)
    assert fields(done.stdout)["len"] == "2"


@pytest.mark.parametrize(
    "args, message",
    [
        (["inspect", "b''", "--flags", "NOPE"], "unknown request flag 'NOPE'"),
        (["inspect", "1 +"], "EXPR is not a Python expression"),
    ],
)
def test_usage_errors_exit_2(args, message):
    done = run(*args, check=2)
    assert message in done.stderr
    assert "usage: python -m bufferkit inspect" in done.stderr


def test_failing_expression_exits_2():
    done = run("inspect", "no_such_name_anywhere.attr", check=2)
    assert "NameError: name 'no_such_name_anywhere' is not defined (nor importable" in done.stderr
    done = run("inspect", "bytearray(-1)", check=2)
    assert "ValueError" in done.stderr


def test_multiline_repr_stays_in_the_value_column():
    import numpy as np
    done = run("inspect", "numpy.zeros((3, 2))", check=0)
    lines = done.stdout.splitlines()
    obj = next(i for i, line in enumerate(lines) if line.startswith("obj "))
    column = lines[obj].index("array(")
    assert lines[obj + 1].startswith(" " * column) and lines[obj + 1].strip().startswith("[")
    assert_table(done.stdout, np.zeros((3, 2)), bufferkit.PyBUF_FULL_RO)
