"""Run a piece of Python in a fresh interpreter, so that a crash is a test failure.

Tests of memory safety may segfault or abort (``PYTHONMALLOC=debug`` aborts on a write past a
block or into freed memory) on a broken build; run in-process, that would kill pytest and every
test after it.  ``run_isolated(code)`` runs ``code`` in ``python -X dev`` with
``PYTHONMALLOC=debug`` and the test process's ``sys.path`` (so the child imports the same
bufferkit build), and ``check_isolated(code)`` asserts that it exited with status 0, wrote
nothing to stderr, and printed ``DONE`` last: a child that dies, hangs, or stops early fails
the test with its exit status and output in the message.
"""

import os
import signal
import subprocess
import sys
import textwrap


def child_env(**extra):
    """The environment of a child that imports what this process imports."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(p for p in sys.path if p)
    env['PYTHONMALLOC'] = 'debug'
    env.pop('PYTHONWARNINGS', None)
    env.update(extra)
    return env


def run_isolated(code, *, timeout=60, args=(), **env):
    """``python -X dev -c code *args`` with PYTHONMALLOC=debug; the CompletedProcess."""
    return subprocess.run([sys.executable, '-X', 'dev', '-c', textwrap.dedent(code), *args],
                          env=child_env(**env), capture_output=True, text=True,
                          timeout=timeout)


def describe(result):
    """Exit status (with the signal's name when it died of one) and both streams."""
    rc = result.returncode
    how = f'exit status {rc}'
    if rc < 0:
        how = f'killed by {signal.Signals(-rc).name}'
    return f'{how}\n--- stdout ---\n{result.stdout}--- stderr ---\n{result.stderr}'


def check_isolated(code, *, timeout=60, args=(), **env):
    """Run ``code`` isolated; it must exit 0, print nothing on stderr and print ``DONE`` as its
    last line. Returns the lines before ``DONE``."""
    result = run_isolated(code, timeout=timeout, args=args, **env)
    lines = result.stdout.splitlines()
    ok = result.returncode == 0 and not result.stderr and lines and lines[-1] == 'DONE'
    assert ok, describe(result)
    return lines[:-1]
