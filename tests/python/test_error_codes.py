"""Errors carry the SQLite code of their kind: damaged stored data is SQLITE_CORRUPT_VTAB however
it is met, limits are SQLITE_TOOBIG, writes to read-only files SQLITE_READONLY, and a message
names its faiss table once."""
import sqlite3
import subprocess
import sys

from conftest import LIB, connect, encode

SQLITE_READONLY = 8
SQLITE_TOOBIG = 18
SQLITE_CORRUPT_VTAB = 267


def test_damaged_snapshot_is_corruption_wherever_it_is_met(tmp_path):
    """Searches go on through an exact stand-in; integrity-check reports the damage as
    SQLITE_CORRUPT_VTAB, naming the table once."""
    path = tmp_path / "damaged.db"
    c = connect(path, isolation_level=None)
    c.execute("create table docs (id integer primary key, embedding blob)")
    c.executemany("insert into docs values (?, ?)", [(i, encode([i, -i])) for i in range(50)])
    c.execute("create virtual table idx using faiss(content = docs)")
    c.execute("update idx_chunks set data = zeroblob(length(data))")
    c.close()
    # A new process loads the stored snapshot (this one still holds the sound state in memory).
    probe = f"""
import sqlite3, struct
c = sqlite3.connect({str(path)!r})
c.enable_load_extension(True)
c.load_extension({LIB.removesuffix(".so")!r})
q = struct.pack("2f", 1, -1)
for sql in ["select rowid from idx where query = ? and k = 1",
            "select faiss_search('main', 'idx', ?, 1)",
            "insert into idx(idx) values ('integrity-check')"]:
    try:
        print("ok", c.execute(sql, (q,) if "?" in sql else ()).fetchall())
    except sqlite3.Error as e:
        print(e.sqlite_errorcode, e)
"""
    lines = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout.splitlines()
    assert lines[:2] == ["ok [(1,)]", "ok [('[1]',)]"], lines
    code, message = lines[2].split(" ", 1)
    assert int(code) == SQLITE_CORRUPT_VTAB, lines
    assert "checksum" in message and "rebuilt in memory" in message, lines
    assert message.count("faiss table 'idx'") == 1, lines


def test_limits_and_read_only_keep_their_codes(tmp_path):
    path = tmp_path / "t.db"
    c = connect(path, isolation_level=None)
    c.execute("create table docs (id integer primary key, embedding blob)")
    c.execute("insert into docs values (1, ?)", (encode([1, 2]),))
    c.execute("create virtual table idx using faiss(content = docs)")
    try:
        c.execute("select * from idx where query = ? and k = 1000000", (encode([1, 2]),)).fetchall()
        raise AssertionError("k above the limit was accepted")
    except sqlite3.Error as e:
        assert e.sqlite_errorcode == SQLITE_TOOBIG, e
    c.close()
    ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    ro.enable_load_extension(True)
    ro.load_extension(LIB.removesuffix(".so"))
    assert ro.execute("select rowid from idx where query = ? and k = 1", (encode([1, 2]),)).fetchall() == [(1,)]
    try:
        ro.execute("insert into idx(idx) values ('optimize')")
        raise AssertionError("optimize on a read-only file was accepted")
    except sqlite3.Error as e:
        assert e.sqlite_errorcode == SQLITE_READONLY, e
