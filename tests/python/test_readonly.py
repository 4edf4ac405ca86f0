"""Read-only is a contract (docs/replication.md): on a connection that cannot write — a file
opened with mode=ro or immutable=1, PRAGMA query_only, a read replica (the Litestream VFS case
is in test_replication.py) — searches, faiss_indexes and faiss_integrity_check() work, and
nothing is ever written: the file's bytes are the same afterwards.

The file is left with work for the reader: change-log entries newer than the stored snapshot
(applied in memory only), and a second table whose snapshot is damaged (searched through the
in-memory stand-in, reported by faiss_integrity_check).
"""
import hashlib
import json
import shutil
import sqlite3

import numpy as np
import pytest
from conftest import LIB, connect

DIM = 16


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    path = tmp_path_factory.mktemp("ro") / "data.db"
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((1250, DIM)).astype(np.float32)
    conn = connect(path, isolation_level=None)
    conn.execute("pragma journal_mode = delete")
    conn.execute("create table docs (id integer primary key, embedding blob)")
    conn.execute("create table notes (id integer primary key, embedding blob)")
    conn.execute("create table other (id integer primary key, embedding blob)")
    conn.executemany("insert into docs values (?, ?)", [(i, v.tobytes()) for i, v in enumerate(vectors[:1000])])
    conn.executemany("insert into notes values (?, ?)", [(i, v.tobytes()) for i, v in enumerate(vectors[:300])])
    conn.executemany("insert into other values (?, ?)", [(i, v.tobytes()) for i, v in enumerate(vectors[:300])])
    conn.execute("create virtual table docs_idx using faiss(content = docs, factory = 'IVF8,Flat', "
                 "params = 'nprobe=8')")
    conn.execute("create virtual table other_idx using faiss(content = other)")
    # Newer than the snapshot: 200 inserts, 50 updates, 20 deletes in the change log.
    conn.executemany("insert into docs values (?, ?)", [(i, vectors[i].tobytes()) for i in range(1000, 1200)])
    for i in range(50):
        conn.execute("update docs set embedding = ? where id = ?", [vectors[1200 + i].tobytes(), i])
    conn.execute("delete from docs where id between 100 and 119")
    # Damage other_idx's stored snapshot (a flipped byte): readers must refuse it, not fail.
    conn.execute("update other_idx_chunks set data = "
                 "substr(data, 1, 100) || x'ff' || substr(data, 102) where chunk = 0")
    conn.close()
    rows = {i: vectors[i] for i in range(1000)}
    rows.update({i: vectors[i] for i in range(1000, 1200)})
    rows.update({i: vectors[1200 + i] for i in range(50)})
    for i in range(100, 120):
        del rows[i]
    return path, rows


MODES = {
    "mode=ro": lambda p: connect(f"file:{p}?mode=ro", uri=True),
    "immutable=1": lambda p: connect(f"file:{p}?immutable=1", uri=True),
    "query_only": lambda p: query_only(p),
}


def query_only(path):
    conn = connect(path)
    conn.execute("pragma query_only = 1")
    return conn


@pytest.mark.parametrize("mode", MODES)
def test_read_only_connection_searches_checks_and_writes_nothing(built, mode, tmp_path):
    # A copy under a new name: this process has nothing of it in memory, as another would not.
    source, rows = built
    path = tmp_path / "data.db"
    shutil.copyfile(source, path)
    before = digest(path)
    conn = MODES[mode](path)
    try:
        ids = np.array(sorted(rows))
        matrix = np.stack([rows[i] for i in ids])
        for q in np.random.default_rng(9).standard_normal((10, DIM)).astype(np.float32):
            want = ids[np.argsort(((matrix - q) ** 2).sum(1), kind="stable")[:5]].tolist()
            got = [r[0] for r in conn.execute("select id from docs_idx where query = ? and k = 5", [q.tobytes()])]
            assert got == want, mode
            assert json.loads(conn.execute("select faiss_search('main', 'docs', ?, 5)",
                                           [q.tobytes()]).fetchone()[0]) == want
        # A plain table (no faiss table) and a table whose snapshot is refused answer too.
        assert json.loads(conn.execute("select faiss_search('main', 'notes', ?, 1)",
                                       [rows[250].tobytes()]).fetchone()[0]) == [250]
        assert [r[0] for r in conn.execute("select id from other_idx where query = ? and k = 1",
                                           [rows[200].tobytes()])] == [200]
        states = dict(conn.execute("select name, state from faiss_indexes"))
        assert states["docs_idx"] == "live" and states["other_idx"].startswith("stand-in"), states
        assert conn.execute("select faiss_integrity_check('docs_idx')").fetchone()[0] == "ok"
        assert conn.execute("select faiss_integrity_check('main', 'docs')").fetchone()[0] == "ok"
        damaged = conn.execute("select faiss_integrity_check('other_idx')").fetchone()[0]
        assert "integrity-check failed" in damaged and "refused" in damaged, damaged
        with pytest.raises(sqlite3.OperationalError, match="no faiss table named 'nope'"):
            conn.execute("select faiss_integrity_check('nope')").fetchone()
        # The commands are writes: refused by SQLite on this connection, never half-done.
        with pytest.raises(sqlite3.OperationalError, match="readonly|read-only|query_only"):
            conn.execute("insert into docs_idx(docs_idx) values ('optimize')")
    finally:
        conn.close()
    assert digest(path) == before, f"{mode}: the file changed"
    assert not path.with_name(path.name + "-journal").exists()


def test_integrity_check_function_agrees_with_the_command(tmp_path):
    """On a writable connection the function and the command find the same problems."""
    conn = connect(tmp_path / "rw.db", isolation_level=None)
    conn.execute("create table docs (id integer primary key, embedding blob)")
    conn.executemany("insert into docs values (?, ?)",
                     [(i, np.full(DIM, i, np.float32).tobytes()) for i in range(50)])
    conn.execute("create virtual table idx using faiss(content = docs)")
    assert conn.execute("select faiss_integrity_check('idx')").fetchone()[0] == "ok"
    conn.execute("insert into docs values (99, x'00')")  # cannot be indexed: one byte
    found = conn.execute("select faiss_integrity_check('idx')").fetchone()[0]
    with pytest.raises(sqlite3.DatabaseError) as command:
        conn.execute("insert into idx(idx) values ('integrity-check')")
    assert found == str(command.value) and "cannot be indexed" in found, (found, command.value)
    assert LIB


@pytest.mark.parametrize("sql,message", [
    ("select faiss_integrity_check(NULL)", "table must be a name (TEXT), got NULL"),
    ("select faiss_integrity_check(3)", "table must be a name (TEXT), got INTEGER"),
    ("select faiss_integrity_check(x'00')", "table must be a name (TEXT), got BLOB"),
    ("select faiss_integrity_check('main', NULL)", "table must be a name (TEXT), got NULL"),
    ("select faiss_integrity_check('nodb', 'docs')", "no database named 'nodb'"),
    ("select faiss_integrity_check('docs')", "no faiss table named 'docs' or over table 'docs'"),
    ("create virtual table i2 using faiss(content = docs, deterministic = 2)", "deterministic = 2: must be 0 or 1"),
    ("create virtual table i3 using faiss(content = docs, deterministic = yes)", "deterministic = yes: must be 0 or 1"),
])
def test_bad_input_gets_a_clear_error(conn, sql, message):
    conn.execute("create table docs (id integer primary key, embedding blob)")
    conn.execute("insert into docs values (1, x'0000803f')")
    with pytest.raises(sqlite3.OperationalError) as error:
        conn.execute(sql).fetchall()
    assert message in str(error.value)
