"""bufferkit demo: a fixed-length waveform read from a file, edited in place, written out.

The use case bufferkit started from (a python-list thread, 2018): an object that exposes its
memory through the buffer protocol -- readinto() fills it, numpy sees it without a copy, a
device gets it -- without inheriting bytearray's resizing methods.
"""

import os
import tempfile

import numpy as np

import bufferkit

SAMPLES = 4096

with tempfile.TemporaryDirectory() as tmp:
    source = os.path.join(tmp, "in.wave")
    target = os.path.join(tmp, "out.wave")
    # A file with one period of a sine wave as little-endian int16 samples.
    t = np.arange(SAMPLES)
    np.round(8000 * np.sin(2 * np.pi * t / SAMPLES)).astype("<i2").tofile(source)

    # 1. A fixed-size, zero-initialised Buffer of int16 samples; readinto() fills it in place.
    wave = bufferkit.Buffer(SAMPLES, "<h")
    print(f"created       {wave!r}")
    with open(source, "rb", buffering=0) as f:
        n = f.readinto(wave)
    print(f"readinto      {n} bytes, exports={wave.exports} (the file's export was released)")

    # 2. numpy sees the same memory: no copy. While the array lives, the Buffer is locked.
    samples = np.frombuffer(wave, dtype="<i2")
    print(f"numpy view    shares memory: {np.shares_memory(samples, np.asarray(wave))}, exports={wave.exports}")
    try:
        wave.close()
    except BufferError as e:
        print(f"close()       refused while exported: {e}")
    samples *= 2                       # edit in place: louder
    samples[: SAMPLES // 8] = 0        # and a fade-in of silence
    print(f"edited        peak={int(samples.max())}, first={int(samples[0])}, via the Buffer: {wave.tolist()[1024]}")

    # 3. A zero-copy View of the second half, handed to the writer: nothing is copied.
    second_half = bufferkit.View(wave)[SAMPLES // 2 :]
    print(f"view          {second_half!r}")
    with open(target, "wb") as f:
        f.write(wave)
        f.write(second_half)
    print(f"written       {os.path.getsize(target)} bytes to {os.path.basename(target)}")

    # 4. Release everything; then the Buffer can be closed.
    del samples
    second_half.release()
    print(f"released      exports={wave.exports}")
    wave.close()
    print(f"closed        {wave!r}")
    check = np.fromfile(target, dtype="<i2")
    assert check[0] == 0 and check.max() == 16000 and len(check) == SAMPLES + SAMPLES // 2
    print("round trip    ok")
