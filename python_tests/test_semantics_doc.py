"""docs/semantics.md lists every error message of the shipped types (issue 16).

Two checks that the page and the code agree:

- every message template in ``module/src/types/{buffer,common,view,exporter}.rs`` (the text of each
  ``*_error(...)`` call, with its ``{placeholders}``) matches some code span of the page;
- the messages the page shows as examples are raised, word for word, by the calls that make
  them (so the page's examples are not merely plausible).

The source files are read from the checkout the tests run from.
"""

import os
import pickle
import re

import numpy as np
import pytest

from bufferkit import Buffer, Exporter, View
from conftest import STRUCT_HAS_COMPLEX

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, 'docs', 'semantics.md')
SOURCES = ['module/src/types/buffer.rs', 'module/src/types/common.rs',
           'module/src/types/view.rs', 'module/src/types/exporter.rs']

CALL = re.compile(r'\b(?:type|value|buffer|overflow|system|memory)_error\(')
HELPER = re.compile(r'\b(?:exported_error|in_use_error)\("(\w+)"')
LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)

#: Calls whose message is not a literal at the call: where each message is, instead.
NOT_LITERAL = {
    'message': 'in_use_error: both texts are raised by test_examples_are_raised_as_shown',
    'e.to_string()': "a LayoutError's Display (src/layout.rs): the View examples raise them",
    'LayoutError::TooManyDims(n as usize).to_string()': 'src/layout.rs, as above',
    'MODULE_CLEARED': 'module/src/module.rs; on the page, raised by test_safety.py '
                      '(test_calls_after_the_module_was_cleared)',
    'crate::module::MODULE_CLEARED': 'as above',
}


def doc_spans():
    with open(DOC, encoding='utf-8') as f:
        text = f.read()
    return [' '.join(span.split()) for span in re.findall(r'`([^`]+)`', text)]


def call_arguments(src):
    """The argument text of each ``*_error(`` call in ``src``."""
    for m in CALL.finditer(src):
        i = depth = m.end()
        depth = 1
        j = i
        while depth:
            if src[j] == '"':
                j = LITERAL.match(src, j).end()
                continue
            depth += {'(': 1, ')': -1}.get(src[j], 0)
            j += 1
        yield src[i:j - 1].strip().rstrip(',').strip()


def templates():
    """(file, kind, template text) for each message; and the non-literal arguments."""
    found, other = [], []
    for name in SOURCES:
        with open(os.path.join(ROOT, name), encoding='utf-8') as f:
            src = f.read()
        consts = dict(re.findall(r'const (\w+): &str =\s*"((?:[^"\\]|\\.)*)"', src))
        for arg in call_arguments(src):
            lit = LITERAL.match(arg[len('format!('):].lstrip() if arg.startswith('format!(')
                                else arg)
            if lit:
                text = lit.group(1)
            elif arg in consts:
                text = consts[arg]
            else:
                other.append(arg)
                continue
            text = re.sub(r'\\\n\s*', '', text).replace('\\"', '"').replace("\\'", "'")
            found.append((name, text))
        for verb in HELPER.findall(src):
            found.append((name, f'cannot {verb}: {{count}} exported buffer{{s}}'))
    return found, other


def pattern(template):
    """A template as a regex of the messages it makes: each ``{...}`` any text."""
    parts = re.split(r'\{[^{}]*\}', template)
    return re.compile('.*'.join(re.escape(p) for p in parts))


TEMPLATES, NON_LITERAL = templates()


def test_sources_were_read():
    assert len(TEMPLATES) > 30
    assert {name for name, _ in TEMPLATES} == set(SOURCES)


def test_non_literal_messages_are_accounted_for():
    assert set(NON_LITERAL) <= set(NOT_LITERAL), set(NON_LITERAL) - set(NOT_LITERAL)


@pytest.mark.parametrize('name, template', TEMPLATES, ids=[t[:50] for _, t in TEMPLATES])
def test_every_message_of_the_code_is_on_the_page(name, template):
    spans = doc_spans()
    regex = pattern(template)
    assert any(regex.fullmatch(span) for span in spans), f'{name}: {template!r} not in the page'


def _raised(call):
    try:
        call()
    except Exception as e:  # noqa: BLE001 - the type is checked by the caller
        return e
    raise AssertionError('did not raise')


def _exported(n, verb):
    b = Buffer(4)
    views = [memoryview(b) for _ in range(n)]
    e = _raised(getattr(b, verb))
    for v in views:
        v.release()
    raise e


class C(Exporter):
    pass


class NotAView(Exporter):
    def __buffer__(self, flags):
        return b'x'


EXAMPLES = [
    (lambda: Buffer('3'), TypeError),
    (lambda: Buffer((1, 'a')), TypeError),
    (lambda: Buffer((2, -3)), ValueError),
    (lambda: Buffer(2**62), MemoryError),
    (lambda: Buffer([1, 2, 3]), TypeError),
    (lambda: Buffer([300, -1]), TypeError),
    (lambda: Buffer(list(range(9))), TypeError),
    (lambda: Buffer(1, 'T{i}'), ValueError),
    (lambda: Buffer(1, '0i'), ValueError),
    (lambda: Buffer(1, '4x'), ValueError),
    (lambda: Buffer(1, 'é'), ValueError),
    (lambda: Buffer(1, 'B\0'), ValueError),
    *([] if STRUCT_HAS_COMPLEX else [(lambda: Buffer(1, 'c8'), ValueError)]),
    (lambda: Buffer(1, 'f16'), ValueError),
    (lambda: Buffer(1, 'U3'), ValueError),
    *([] if STRUCT_HAS_COMPLEX else [(lambda: Buffer(1, np.dtype('c8')), ValueError)]),
    (lambda: Buffer(1, np.dtype('M8[ns]')), ValueError),
    (lambda: Buffer(1, b'B'), TypeError),
    (lambda: Buffer(1, order='A'), ValueError),
    (lambda: Buffer(1, order=1), TypeError),
    (lambda: Buffer(1).tobytes('K'), ValueError),
    (lambda: Buffer(1).tobytes(1), TypeError),
    (lambda: View(np.array(['ab', 'c'])).tolist(), NotImplementedError),
    (lambda: len(Buffer(())), TypeError),
    (lambda: _exported(1, 'close'), BufferError),
    (lambda: _exported(2, 'freeze'), BufferError),
    (lambda: Buffer(1).__class__.__reduce_ex__(Buffer(1), 2)[0](
        Buffer, b'ab', 'h', (2,), 'C', False), ValueError),
    (lambda: Buffer(1).__reduce_ex__(2)[0](int, b'', 'B', (0,), 'C', False), TypeError),
    (lambda: Buffer(1).__reduce_ex__(2)[0](Buffer, b'', 'B', (0,), 'C', False, x=1), TypeError),
    (lambda: View(3), TypeError),
    (lambda: View(b'ab', readonly=False), BufferError),
    (lambda: View(np.zeros((2, 2))[:, ::2], offset=0), ValueError),
    (lambda: View(bytearray(8), strides=(1,)), ValueError),
    (lambda: View(bytearray(8), shape=(2,), strides=3), TypeError),
    (lambda: View(bytearray(8), shape=(2,), strides=('a',)), TypeError),
    (lambda: View(bytearray(8), offset=9), ValueError),
    (lambda: View(bytearray(8), offset=6, format='i', shape=(1,)), ValueError),
    (lambda: View(bytearray(8), format='i', shape=(3,), strides=(4,)), ValueError),
    (lambda: View(bytearray(8), format='i', shape=(3,), strides=(-4,)), ValueError),
    (lambda: View(bytearray(8), shape=(2, 2), strides=(1,)), ValueError),
    (lambda: View(bytearray(8), shape=(2, 4))[:, :, :], TypeError),
    (lambda: View(bytearray(8))[1], TypeError),
    (lambda: pickle.dumps(View(b'ab')), TypeError),
    (lambda: bytes(C()), TypeError),
    (lambda: bytes(NotAView()), TypeError),
]


def _released_view_message():
    v = View(bytearray(2))
    v.release()
    return _raised(v.tobytes)


def _release_while_exported():
    v = View(bytearray(2))
    m = memoryview(v)
    e = _raised(v.release)
    m.release()
    return e


@pytest.mark.parametrize('call, kind', EXAMPLES)
def test_examples_are_raised_as_shown(call, kind):
    e = _raised(call)
    assert type(e) is kind, f'{type(e).__name__}: {e}'
    message = ' '.join(str(e).split())
    # CPython 3.15 names the class in this TypeError (gh-130821); the page calls it C.
    message = re.sub(r'^[\w.]+(?=\.__buffer__\(\) must return a memoryview)', 'C', message)
    spans = doc_spans()
    assert message in spans or any(
        s.endswith('...') and message.startswith(s[:-3]) for s in spans), message


def test_view_and_closed_messages_as_shown():
    spans = doc_spans()
    for e, kind in ((_released_view_message(), ValueError),
                    (_release_while_exported(), BufferError)):
        assert type(e) is kind and str(e) in spans, str(e)
    b = Buffer(2)
    b.close()
    assert str(_raised(lambda: b.shape)) in spans


def test_the_with_note_as_shown():
    import sys
    if sys.version_info < (3, 11):
        return  # no notes before 3.11; test_buffer checks that nothing is added there
    b = Buffer(2)
    try:
        with b:
            m = memoryview(b)
            raise KeyError
    except KeyError as e:
        (note,) = e.__notes__
    m.release()
    spans = doc_spans()
    shown = [s for s in spans if s.startswith('Buffer not closed on leaving the with block')]
    assert len(shown) == 1 and shown[0].endswith('...')
    assert note.startswith(shown[0][:-3])
