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
from collections.abc import Mapping
from collections.abc import Set as AbstractSet

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
    NaN, infinity and numbers outside the float32 range (ValueError), and anything that is not a
    sequence of real numbers (TypeError)."""
    if isinstance(vector, (str, bytes, bytearray, memoryview, AbstractSet, Mapping)):
        raise TypeError(
            f"vekter.encode: expected a sequence of numbers, got {type(vector).__name__}"
        )
    if hasattr(vector, "__array__") and not isinstance(vector, (list, tuple)):
        return _encode_array(vector)
    values = list(vector)
    if not values:
        raise ValueError("vekter.encode: the vector is empty")
    floats = [_element(i, value) for i, value in enumerate(values)]
    return struct.pack(f"<{len(floats)}f", *floats)


def _element(i, value):
    """One element as a float that float32 can hold, or the error that says which and why."""
    real = isinstance(value, numbers.Real) or (
        getattr(value, "ndim", None) == 0 and getattr(value, "dtype", None) is not None
        and value.dtype.kind in "biuf"
    )
    if not real:
        raise TypeError(f"vekter.encode: element {i} is {type(value).__name__}, not a number")
    try:
        number = float(value)
        struct.pack("<f", number)
    except (OverflowError, struct.error):
        raise ValueError(f"vekter.encode: element {i} ({value!r:.40}) is outside the float32 range") from None
    if not math.isfinite(number):
        raise ValueError(f"vekter.encode: element {i} is {number}: only finite numbers are allowed")
    return number


def _encode_array(vector):
    import numpy

    if numpy.ma.isMaskedArray(vector) and numpy.ma.is_masked(vector):
        raise ValueError("vekter.encode: the array has masked elements")
    array = numpy.asarray(vector)
    if array.ndim != 1:
        raise ValueError(
            f"vekter.encode: expected one vector (a 1-d array), got shape {array.shape}"
        )
    if array.size == 0:
        raise ValueError("vekter.encode: the vector is empty")
    if array.dtype.kind not in "biuf":
        raise TypeError(f"vekter.encode: an array of {array.dtype}, not of real numbers")
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
    """A float32 BLOB (bytes, bytearray or memoryview) back as a tuple of floats, as
    `datasette_faiss.decode` returns."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise TypeError(f"vekter.decode: expected bytes, got {type(blob).__name__}")
    data = bytes(memoryview(blob).cast("B"))
    if len(data) % 4:
        raise ValueError(
            f"vekter.decode: the blob has {len(data)} bytes, which is not a multiple of 4 (float32)"
        )
    return struct.unpack(f"<{len(data) // 4}f", data)
