"""vekter: FAISS inside SQLite.

The `vekter` wheel carries the SQLite extension (`vekter.so`, plus the AVX2 and AVX-512 builds it
hands connections to on CPUs that have them, and the libraries they need), and this module:

    import sqlite3, vekter
    conn = sqlite3.connect("data.db")
    vekter.load(conn)
    conn.execute("select faiss_search('main', 'embeddings', ?, 5)", [vekter.encode(vector)])

`encode` and `decode` are drop-in replacements for `datasette_faiss.encode` / `decode`: float32,
little-endian, no header — the layout every vekter function reads.
"""

import math
import numbers
import os
import struct

from vekter._version import __version__

__all__ = ["__version__", "decode", "encode", "load", "loadable_path"]

def loadable_path():
    """The path of the extension, for `load_extension`, `.load` in the sqlite3 shell or
    `datasette --load-extension`. Its entry point is `sqlite3_vekter_init`, the name SQLite
    derives from the file name, so no entry point needs to be given."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "vekter.so")


def load(conn):
    """Load vekter into `conn`: a `sqlite3.Connection`, an `apsw.Connection`, or anything with a
    `.conn` attribute holding one (a `sqlite_utils.Database`).

    Extension loading is switched on only for the call and switched off again, so SQL run on the
    connection afterwards cannot call `load_extension()` itself."""
    conn = getattr(conn, "conn", conn)
    enable = getattr(conn, "enable_load_extension", None)
    if enable is None:
        raise RuntimeError(
            "vekter.load: this Python's sqlite3 module was built without extension loading "
            "(pyenv and some other builds are); use a Python whose sqlite3 can load extensions "
            "(Debian's /usr/bin/python3 can), or APSW (pip install apsw)"
        )
    enable(True)
    try:
        conn.load_extension(loadable_path())
    finally:
        enable(False)


def encode(vector):
    """A vector (a sequence of numbers, or a 1-d numpy array) as the float32 BLOB vekter reads.

    Unlike `datasette_faiss.encode`, it refuses what vekter would refuse later: an empty vector,
    NaN, infinity and numbers outside the float32 range (ValueError), non-numbers (TypeError)."""
    if isinstance(vector, (str, bytes, bytearray, memoryview)):
        raise TypeError(
            f"vekter.encode: expected a sequence of numbers, got {type(vector).__name__}"
        )
    if hasattr(vector, "__array__") and not isinstance(vector, (list, tuple)):
        return _encode_array(vector)
    values = list(vector)
    if not values:
        raise ValueError("vekter.encode: the vector is empty")
    for i, value in enumerate(values):
        if not isinstance(value, numbers.Real):
            raise TypeError(f"vekter.encode: element {i} is {type(value).__name__}, not a number")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(
                f"vekter.encode: element {i} is {number}: only finite numbers are allowed"
            )
    try:
        return struct.pack(f"<{len(values)}f", *values)
    except OverflowError:
        i = next(i for i, v in enumerate(values) if not _fits_float32(v))
        raise ValueError(
            f"vekter.encode: element {i} ({float(values[i])!r}) is outside the float32 range"
        ) from None


def _fits_float32(value):
    try:
        struct.pack("<f", value)
        return True
    except OverflowError:
        return False


def _encode_array(vector):
    import numpy

    array = numpy.asarray(vector)
    if array.ndim != 1:
        raise ValueError(
            f"vekter.encode: expected one vector (a 1-d array), got shape {array.shape}"
        )
    if array.size == 0:
        raise ValueError("vekter.encode: the vector is empty")
    if not numpy.issubdtype(array.dtype, numpy.number) or numpy.iscomplexobj(array):
        raise TypeError(f"vekter.encode: array of {array.dtype}, not real numbers")
    with numpy.errstate(over="ignore", invalid="ignore"):
        as_float32 = array.astype("<f4")
    bad = numpy.flatnonzero(~numpy.isfinite(as_float32))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"vekter.encode: element {i} ({array[i]!r}) is not a finite float32 number"
        )
    return as_float32.tobytes()


def decode(blob):
    """A float32 BLOB back as a tuple of floats (as `datasette_faiss.decode` returns)."""
    data = bytes(blob)
    if len(data) % 4:
        raise ValueError(
            f"vekter.decode: the blob has {len(data)} bytes, which is not a multiple of 4 (float32)"
        )
    return struct.unpack(f"<{len(data) // 4}f", data)
