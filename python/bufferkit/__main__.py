"""``python -m bufferkit``: a small command line for debugging exporters.

    python -m bufferkit inspect EXPR [--flags FLAGS]

evaluates the Python expression EXPR, asks the resulting object for a buffer with the request
FLAGS (default PyBUF_FULL_RO) exactly as a C consumer would, and prints the ``Py_buffer`` it
got as a table of fields and values (``bufferkit.inspect()``).

EXPR is evaluated in a namespace holding the builtins, ``bufferkit`` and bufferkit's public
names (``Buffer``, ``View``, ``PyBUF_ND``, ...). Modules are imported for it in two ways:

* dotted names are imported automatically: in ``numpy.arange(6).reshape(2, 3)`` or
  ``array.array('h', [1, 2])`` every prefix of ``numpy.arange`` / ``array.array`` that is a
  module is imported first (``xml.etree.ElementTree`` imports all three levels);
* ``MODULE:EXPR`` imports MODULE and evaluates EXPR in its namespace (instead of the one
  above), for names a module defines or imports itself: ``mypkg.samples:make_waveform(16)``.
  The part before the first ``:`` must be a dotted name, so slices
  (``memoryview(b'abc')[1:]``) and lambdas are left alone.

FLAGS is an int (``284``, ``0x11c``) or request-flag names joined by ``|``, with or without
the ``PyBUF_`` prefix: ``ND``, ``'PyBUF_STRIDES|PyBUF_FORMAT'``, ``RECORDS_RO`` (quote names
joined by ``|`` in a shell, which would otherwise make a pipe of them).

Exit status: 0 when the request was served, 1 when the object refused it (the exception is
printed), 2 for a bad command line or an EXPR that cannot be evaluated.
"""

import argparse
import ast
import builtins
import importlib
import keyword
import re
import sys
import typing
from typing import Dict, List, Optional, Tuple

import bufferkit

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")

FLAG_NAMES: Dict[str, int] = {
    name[len("PyBUF_") :]: getattr(bufferkit, name)
    for name in bufferkit.__all__
    if name.startswith("PyBUF_")
}


class UsageError(Exception):
    """A command-line argument that cannot be used (exit status 2)."""


def parse_flags(text: str) -> int:
    """``'0x11c'`` / ``'284'`` / ``'ND|FORMAT'`` / ``'PyBUF_RECORDS_RO'`` -> the int."""
    try:
        return int(text, 0)
    except ValueError:
        pass
    value = 0
    for part in text.split("|"):
        name = part.strip()
        if name.startswith("PyBUF_"):
            name = name[len("PyBUF_") :]
        if name.upper() not in FLAG_NAMES:
            known = ", ".join(FLAG_NAMES)
            raise UsageError(f"unknown request flag {part.strip()!r} (known: {known})")
        value |= FLAG_NAMES[name.upper()]
    return value


def flag_names(flags: int) -> str:
    """The standard request names equal to ``flags`` (``'PyBUF_FULL_RO'``), or ``''``."""
    names = [f"PyBUF_{n}" for n, v in FLAG_NAMES.items() if v == flags]
    return " = ".join(names)


def _dotted_names(tree: ast.AST) -> List[str]:
    """Every outermost ``a.b.c`` attribute chain rooted at a plain name, in source order."""
    found: List[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Attribute):
            parts: List[str] = []
            inner: ast.AST = node
            while isinstance(inner, ast.Attribute):
                parts.append(inner.attr)
                inner = inner.value
            if isinstance(inner, ast.Name):
                found.append(".".join([inner.id, *reversed(parts)]))
                return
            visit(inner)
            return
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _import_prefixes(dotted: str, namespace: Dict[str, object]) -> None:
    """Imports each leading part of ``dotted`` that names a module, binding the top one."""
    parts = dotted.split(".")
    imported = False
    for i in range(1, len(parts) + 1):
        name = ".".join(parts[:i])
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                break  # `name` is not a module: the rest of the chain are attributes
            raise  # `name` is a module, but something it imports is missing
        imported = True
    if imported:
        namespace[parts[0]] = sys.modules[parts[0]]


def split_expr(text: str) -> Tuple[Optional[str], str]:
    """``'pkg.mod:expr'`` -> (``'pkg.mod'``, ``'expr'``); anything else -> (None, text)."""
    head, sep, tail = text.partition(":")
    if sep and _DOTTED.fullmatch(head.strip()) and not any(
        keyword.iskeyword(p) for p in head.strip().split(".")
    ):
        return head.strip(), tail
    return None, text


def evaluate(text: str) -> typing.Any:  # whatever EXPR gives; inspect() refuses non-buffers
    """The value of EXPR, with the imports described in the module docstring."""
    module_name, expr = split_expr(text)
    namespace: Dict[str, object] = {"bufferkit": bufferkit}
    namespace.update((n, getattr(bufferkit, n)) for n in bufferkit.__all__)
    if module_name is not None:
        namespace = dict(vars(importlib.import_module(module_name)))
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError as e:
        raise UsageError(f"EXPR is not a Python expression: {e.msg}: {expr.strip()!r}") from e
    for dotted in _dotted_names(tree):
        root = dotted.split(".")[0]
        if root not in namespace and not hasattr(builtins, root):
            _import_prefixes(dotted, namespace)
    code = compile(tree, "<EXPR>", "eval")
    try:
        return eval(code, namespace)  # noqa: S307 (evaluating the user's expression is the point)
    except NameError as e:
        if e.args and isinstance(e.args[0], str) and any(
            d.split(".")[0] not in namespace and f"'{d.split('.')[0]}'" in e.args[0]
            for d in _dotted_names(tree)
        ):
            e.args = (e.args[0] + " (nor importable as a module)",)
        raise


def table(info: bufferkit.BufferInfo) -> str:
    """The fields of ``info`` as a two-column table."""
    rows: List[Tuple[str, str]] = [("buf", "NULL" if info.buf is None else hex(info.buf))]
    for field, value in zip(info._fields[1:], info[1:]):
        rows.append((field, "NULL" if value is None else repr(value)))
    width = max(len(f) for f, _ in rows)
    # A multi-line repr (a numpy array's) continues under the value column.
    rows = [(f, v.replace("\n", "\n" + " " * (width + 2))) for f, v in rows]
    lines = [f"{'field':<{width}}  value", f"{'-' * width}  {'-' * 5}"]
    lines += [f"{f:<{width}}  {v}" for f, v in rows]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bufferkit",
        description="Debugging tools for the CPython buffer protocol (PEP 3118).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    inspect = commands.add_parser(
        "inspect",
        help="print the Py_buffer an object exports for a request",
        description=(
            "Evaluate EXPR, request a buffer from the result with FLAGS as a C consumer "
            "would, and print the Py_buffer fields it got (pointers that are NULL print as "
            "NULL). Dotted module names in EXPR are imported (numpy.arange(6)); "
            "MODULE:EXPR evaluates EXPR in MODULE's namespace. bufferkit's names (Buffer, "
            "View, ...) are available."
        ),
        # Each example is a shell command as it would be pasted: the EXPR and any FLAGS with
        # '|' are quoted (python_tests/test_cli.py runs them through a shell).
        epilog=(
            "examples:\n"
            "  python -m bufferkit inspect \"bytearray(b'abc')\" --flags ND\n"
            "  python -m bufferkit inspect 'numpy.arange(6).reshape(2, 3)[:, ::2]' "
            "--flags 'STRIDES|FORMAT'\n"
            "  python -m bufferkit inspect \"Buffer((2, 3), '<h', order='F')\" "
            "--flags 0x1c"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inspect.set_defaults(subparser=inspect)
    inspect.add_argument("expr", metavar="EXPR", help="a Python expression, or MODULE:EXPR")
    inspect.add_argument(
        "--flags",
        default="FULL_RO",
        metavar="FLAGS",
        help=(
            "request flags: an int (284, 0x11c) or names joined by '|', quoted for the shell "
            "('ND|FORMAT'), with or without the PyBUF_ prefix (default: FULL_RO)"
        ),
    )
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        flags = parse_flags(args.flags)
        obj = evaluate(args.expr)
    except UsageError as e:
        args.subparser.error(str(e))
    except Exception as e:  # the user's expression failed: say how, as the interpreter would
        print(f"error: cannot evaluate {args.expr!r}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    names = flag_names(flags)
    print(f"request: {flags:#x}" + (f" ({names})" if names else ""))
    print(f"object:  {type(obj).__module__}.{type(obj).__qualname__}")
    try:
        info = bufferkit.inspect(obj, flags)
    except Exception as e:
        print(f"refused: {type(e).__name__}: {e}")
        return 1
    print(table(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
