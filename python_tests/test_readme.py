"""README.md runs as pasted (issue 16).

Every ```python block of the README runs on its own, in a fresh interpreter, in an empty
directory, as a user who pastes it would run it: it must exit 0, and each ``print(...)`` line
with a comment beside it must print what the comment says (``...`` in a comment stands for
any text). Every command line of the ```sh blocks is either run through a shell, as pasted, or
named in ``NOT_RUN`` with the reason, so a new one cannot slip in untested.
"""

import os
import re
import shlex
import subprocess
import sys

import pytest

import bufferkit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, 'README.md')

#: Shell lines of the README that this file does not run, and why.
NOT_RUN = {
    'make demo': 'builds the module, then runs demo/waveform.py, which test_make_demo_script runs',
    'make test': 'is the suite this test is part of',
    'pip install .': 'scripts/install_check.sh --from-source runs it in fresh venvs (make test)',
    'pip wheel .': 'make test builds the wheel it tests with it (scripts/install_check.sh)',
}

#: ``print(...)  # what it prints``
PRINTED = re.compile(r'^\s*print\(.*\)\s+#\s?(.*)$')


def blocks(lang):
    """(line number, code) of each fenced block of ``lang`` in the README."""
    with open(README, encoding='utf-8') as f:
        text = f.read()
    found = []
    for m in re.finditer(r'^```(\w*)\n(.*?)^```\s*$', text, re.M | re.S):
        if m.group(1) == lang:
            found.append((text.count('\n', 0, m.start()) + 1, m.group(2)))
    return found


def env():
    """The environment of a pasted snippet: this bufferkit importable, as for the tests."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(bufferkit.__file__)))
    path = [here, os.environ.get('PYTHONPATH', '')]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in path if p))


def shown(comment):
    """The comment beside a print as a pattern of the line printed (``...``: any text)."""
    return re.compile('.*'.join(re.escape(part) for part in comment.strip().split('...')))


PYTHON_BLOCKS = blocks('python')


def test_the_readme_has_the_blocks_this_file_runs():
    assert len(PYTHON_BLOCKS) >= 4
    assert any('Buffer(' in code for _, code in PYTHON_BLOCKS)
    # The quick start makes its own input: nothing outside the empty directory is read.
    first = PYTHON_BLOCKS[0][1]
    assert 'open("in.wave", "wb")' in first
    assert first.index('open("in.wave", "wb")') < first.index('open("in.wave", "rb"')


@pytest.mark.parametrize('line, code', PYTHON_BLOCKS, ids=[f'line{n}' for n, _ in PYTHON_BLOCKS])
def test_python_block_runs_as_pasted(line, code, tmp_path):
    script = tmp_path / 'snippet.py'
    script.write_text(code, encoding='utf-8')
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f'README line {line}:\n{done.stderr}'
    comments = [m.group(1) for m in map(PRINTED.match, code.splitlines()) if m]
    printed = done.stdout.splitlines()
    prints = sum(1 for ln in code.splitlines() if ln.lstrip().startswith('print('))
    assert len(printed) == prints, printed
    # Each print here prints one line; those with a comment must print what it says.
    with_comment = [p for ln, p in zip([ln for ln in code.splitlines()
                                        if ln.lstrip().startswith('print(')], printed)
                    if PRINTED.match(ln)]
    assert len(with_comment) == len(comments)
    for comment, got in zip(comments, with_comment):
        assert shown(comment).fullmatch(got), f'README line {line}: {comment!r} but printed {got!r}'
    # Only what the snippet made itself is left in its directory.
    assert {p.name for p in tmp_path.iterdir()} <= {'snippet.py', 'in.wave'}


def shell_lines():
    """(README line, command) of every command in the ```sh blocks, comments stripped."""
    found = []
    for start, code in blocks('sh'):
        for i, raw in enumerate(code.splitlines()):
            command = raw.split('  #', 1)[0].split(' # ', 1)[0].strip()
            if command and not command.startswith('#'):
                found.append((start + 1 + i, command))
    return found


SHELL_LINES = shell_lines()


def test_every_shell_line_is_run_or_excused():
    run = [c for _, c in SHELL_LINES if c.startswith('python -m bufferkit ')]
    excused = [c for _, c in SHELL_LINES if c in NOT_RUN]
    assert sorted(run + excused) == sorted(c for _, c in SHELL_LINES)
    assert run, 'the README shows the command line'
    assert set(excused) == set(NOT_RUN), 'NOT_RUN names a line the README no longer has'


@pytest.mark.parametrize('line, command',
                         [(n, c) for n, c in SHELL_LINES if c.startswith('python -m bufferkit ')],
                         ids=lambda x: str(x) if isinstance(x, int) else None)
def test_shell_command_runs_as_pasted(line, command, tmp_path):
    pasted = shlex.quote(sys.executable) + command[len('python'):]
    done = subprocess.run(['sh', '-c', pasted], cwd=tmp_path, env=env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f'README line {line}: {done.stdout}{done.stderr}'
    assert done.stdout.startswith('request: '), done.stdout
    assert 'refused' not in done.stdout


def test_make_demo_script():
    """What ``make demo`` runs once the module is built."""
    done = subprocess.run([sys.executable, os.path.join(ROOT, 'demo', 'waveform.py')],
                          env=env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert 'round trip    ok' in done.stdout


def test_links_to_files_exist():
    with open(README, encoding='utf-8') as f:
        text = f.read()
    targets = re.findall(r'\]\(([^)#:]+)\)', text)
    assert targets
    missing = [t for t in targets if not os.path.exists(os.path.join(ROOT, t))]
    assert missing == []
