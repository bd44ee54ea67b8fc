"""Interpreter shutdown with bufferkit objects alive (issue 6, item 8).

Each scenario runs in a fresh interpreter (``python -X dev``, also with
``PYTHONMALLOC=debug``), leaves Buffers, Views and Exporters alive at exit -- in module
globals, in reference cycles the collector never saw, with live exports held by memoryviews,
numpy arrays, ``_testbuffer`` and raw ``Py_buffer``s that are never released, in daemon
threads still exporting -- and must exit with status 0 and print nothing on stderr (an
"Exception ignored" line from a releasebuffer or a destructor during finalization is a
failure). ``c_tests`` cover the same from C: ``finalize_with_live_exports`` and
``finalize_with_unreleased_view`` call ``Py_FinalizeEx()`` with exports held by C.
"""

import os
import re
import subprocess
import sys
import textwrap

import pytest

import bufferkit

PRELUDE = '''
import ctypes, gc, sys, threading
import numpy as np
import _testbuffer
import bufferkit
from bufferkit import Buffer, View, Exporter

class PyBuffer(ctypes.Structure):
    _fields_ = [('buf', ctypes.c_void_p), ('obj', ctypes.c_void_p),
                ('len', ctypes.c_ssize_t), ('itemsize', ctypes.c_ssize_t),
                ('readonly', ctypes.c_int), ('ndim', ctypes.c_int),
                ('format', ctypes.c_char_p), ('shape', ctypes.c_void_p),
                ('strides', ctypes.c_void_p), ('suboffsets', ctypes.c_void_p),
                ('internal', ctypes.c_void_p)]

_get = ctypes.pythonapi.PyObject_GetBuffer
_get.argtypes = [ctypes.py_object, ctypes.POINTER(PyBuffer), ctypes.c_int]

def c_export(obj, flags=0x11d):  # PyBUF_FULL_RO: held by "C" and never released
    view = PyBuffer()
    if _get(obj, ctypes.byref(view), flags) != 0:
        raise RuntimeError('export failed')
    return view

class Wrap(Exporter):
    released = 0
    def __init__(self, base):
        self.base = base
        self.me = self          # a cycle through the Exporter itself
    def __buffer__(self, flags):
        return memoryview(self.base)
    def __release_buffer__(self, view):
        # no builtins here: late in finalization they may already be gone, and the test is
        # about bufferkit, not about user code that needs them
        self.released += 1

class SubView(View):
    pass

class SubBuffer(Buffer):
    pass
'''

SCENARIOS = {
    'globals': '''
        b = Buffer((4, 4), 'd')
        m = memoryview(b)
        arr = np.asarray(b)
        nd = _testbuffer.ndarray(b, getbuf=0x11d)
        ba = bytearray(64)
        v = View(ba)
        s = v[8:40:4]
        vv = View(s)
        vb = View(b)[1:, ::2]
        e = Wrap(bytearray(b'exported'))
        em = memoryview(e)
        ev = View(e)
        assert b.exports == 4 and v.exports == 0
    ''',
    'cycles': '''
        gc.disable()
        junk = []
        for i in range(20):
            b = SubBuffer(16)
            b.me = b
            b.m = memoryview(b)         # a cycle through the Buffer's own export
            v = SubView(bytearray(16))
            v.me = v
            v.s = v[::2]
            v.sm = memoryview(v.s)       # an export of a slice held inside the cycle
            e = Wrap(b)
            e.view = View(e)
            cycle = [b, v, e]
            cycle.append(cycle)
        del b, v, e, cycle
    ''',
    'c-held exports': '''
        b = Buffer(32)
        v = View(bytearray(32))[4:]
        e = Wrap(bytearray(b'xyz'))
        held = [c_export(b), c_export(v), c_export(e), c_export(v[::3])]
        del b, v, e                     # only the C views keep them alive
    ''',
    'module removed': '''
        keep = [Buffer(8), View(bytearray(8)), Wrap(bytearray(b'ab'))]
        keep.append(memoryview(keep[0]))
        keep.append(memoryview(keep[2]))
        keep.append(View(keep[2]))
        for name in list(sys.modules):
            if name.startswith('bufferkit'):
                del sys.modules[name]
        del bufferkit, Buffer, View, Exporter
    ''',
    # Daemon threads exporting at exit, also through Python code: CPython 3.9-3.13 end a daemon
    # thread that wakes during finalization with pthread_exit, a forced unwind that must not
    # reach a bufferkit frame (src/ffi/unwind.rs parks the thread instead). A tiny switch
    # interval makes the threads wake inside __buffer__/__release_buffer__ at exit in about one
    # run of five without that.
    'daemon threads': '''
        sys.setswitchinterval(1e-6)
        b = Buffer(1024)
        v = View(bytearray(1024))
        e = Wrap(bytearray(1024))
        ee = Wrap(e)
        started = threading.Barrier(5)
        import os
        def churn(obj):
            started.wait()
            try:
                while True:
                    m = memoryview(obj)
                    s = View(obj)[1:]
                    m.release()
                    s.release()
            except BaseException as exc:
                # the traceback may not print this late: say what it was on the raw fd
                os.write(2, ('churn(%s): %r\\n' % (type(obj).__name__, exc)).encode())
                raise
        for obj in (b, v, e, ee):
            threading.Thread(target=churn, args=(obj,), daemon=True).start()
        started.wait()
    ''',
    'atexit': '''
        import atexit
        b = Buffer(16)
        e = Wrap(b)
        def late():
            m = memoryview(e)
            global leftover
            leftover = (m, View(b)[::2], View(e))
        atexit.register(late)
    ''',
    # Not at exit: cycles collected while running. On 3.12+ a View of an Exporter holds an
    # export of CPython's _buffer_wrapper (a memoryview underneath); before CPython 3.12.7
    # (gh-77894) the collector clears that memoryview while exported and then crashes.
    'exporter views in collected cycles': '''
        gc.disable()
        for i in range(50):
            e = Wrap(bytearray(16))
            v = View(e)
            m = memoryview(v)
            cycle = [e, v, m, SubView(e.base)]
            cycle.append(cycle)
            del e, v, m, cycle
            gc.collect()
    ''',
    'exporter wrapping numpy': '''
        class Samples(Exporter):
            def __init__(self, n):
                self.data = np.arange(n, dtype=np.float64)
                self.me = self
            def __buffer__(self, flags):
                return memoryview(self.data)
        x = Samples(100)
        views = [View(x), np.asarray(x), memoryview(x)]
        views.append(views)
    ''',
}


def run_scenario(source, env_extra):
    script = PRELUDE + textwrap.dedent(source) + "\nprint('done', flush=True)\n"
    env = dict(os.environ)
    env.update(env_extra)
    env['PYTHONPATH'] = os.pathsep.join(p for p in sys.path if p)
    return subprocess.run([sys.executable, '-X', 'dev', '-c', script], env=env,
                          capture_output=True, text=True, timeout=120)


#: How often each scenario runs: the daemon-thread one depends on where the threads are when
#: finalization starts, so it gets several tries.
REPEATS = {'daemon threads': 6}


def _params():
    for name in SCENARIOS:
        for malloc in ('default', 'debug'):
            yield pytest.param(name, malloc, id=f'{name}-{malloc}')


#: From 3.12 CPython's own slot_bf_releasebuffer dispatches __release_buffer__ (bufferkit's slot
#: does not run for a class that defines __buffer__) and reports this when finalization cleared
#: the class before its instances' exports were released: CPython's output, not bufferkit's.
#: On 3.9-3.11 bufferkit's slot runs and must print nothing.
_CPYTHON_312_RELEASE_NOISE = re.compile(
    # 3.12 says "Exception ignored in: <Wrap object at 0x...>", 3.13 "Exception ignored in
    # __release_buffer__ of Wrap:"
    r"Exception ignored in(: <Wrap object at 0x[0-9a-f]+>| __release_buffer__ of Wrap:)\n"
    r"AttributeError: (type object 'Wrap' has no attribute '__release_buffer__'|"
    r"__release_buffer__)\n")


def _bufferkit_stderr(stderr):
    if sys.version_info >= (3, 12):
        return _CPYTHON_312_RELEASE_NOISE.sub('', stderr)
    return stderr


@pytest.mark.parametrize('name, malloc', list(_params()))
def test_exit_with_live_objects(name, malloc):
    env = {} if malloc == 'default' else {'PYTHONMALLOC': 'debug'}
    for attempt in range(REPEATS.get(name, 1)):
        result = run_scenario(SCENARIOS[name], env)
        where = f'{name} (run {attempt + 1})'
        assert result.returncode == 0, (
            f'{where}: exit status {result.returncode}\nstderr:\n{result.stderr[:4000]}')
        assert result.stdout == 'done\n', result.stdout
        stderr = _bufferkit_stderr(result.stderr)
        assert stderr == '', f'{where}: error output at exit:\n{stderr[:4000]}'


def test_scenarios_see_the_built_module():
    """The child interpreters import the same bufferkit as this one."""
    result = subprocess.run(
        [sys.executable, '-c', 'import bufferkit; print(bufferkit.__file__)'],
        env={**os.environ, 'PYTHONPATH': os.pathsep.join(p for p in sys.path if p)},
        capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == bufferkit.__file__
