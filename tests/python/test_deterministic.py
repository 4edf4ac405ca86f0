"""Deterministic indexes (docs/replication.md): the same SQL on the same data gives
byte-identical shadow tables in every process, whatever its thread count and whenever it
searched — what statement replication (rqlite) needs to keep its nodes' files identical.

Each case runs one script of writes in two processes: one with 1 build thread that searches
after every write (so it applies the change log in many small catch-ups), one with 2 threads
that never searches before `optimize` (one big catch-up, or none). Their config, snapshot
chunks and change log must be equal, byte for byte.
"""
import hashlib
import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import LIB

N, DIM = 3000, 32

SCRIPT = textwrap.dedent(
    r"""
    import json, os, sqlite3, struct, sys
    import numpy as np
    lib, path, factory, options, searches = sys.argv[1:6]
    searches = searches == "1"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.enable_load_extension(True)
    conn.load_extension(lib.removesuffix(".so"))
    # About 1,300 commits: not one fsync each (the test is about bytes, not durability).
    conn.execute("PRAGMA synchronous = OFF")
    rng = np.random.default_rng(7)
    data = rng.standard_normal((__N__, __DIM__)).astype("float32")
    conn.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, embedding BLOB)")
    conn.executemany("INSERT INTO docs VALUES (?, ?)",
                     [(i * 3 + 1, data[i].tobytes()) for i in range(2000)])
    conn.execute(f"CREATE VIRTUAL TABLE idx USING faiss(content = docs, factory = '{factory}'"
                 f"{options})")
    q = data[0].tobytes()

    def search():
        if searches:
            conn.execute("SELECT id FROM idx WHERE query = ? AND k = 5", [q]).fetchall()

    # Inserts out of rowid order, updates, deletes, an insert deleted again: each its own commit.
    for i in range(2000, __N__):
        conn.execute("INSERT INTO docs VALUES (?, ?)", [(__N__ - i) * 3, data[i].tobytes()])
        if i % 97 == 0:
            search()
    for i in range(1, 600, 7):
        conn.execute("UPDATE docs SET embedding = ? WHERE id = ?", [data[i + 5].tobytes(), i])
        search()
    for i in range(4, 900, 11):
        conn.execute("DELETE FROM docs WHERE id = ?", [i])
        search()
    conn.execute("INSERT INTO docs VALUES (999999, ?)", [q])
    search()
    conn.execute("DELETE FROM docs WHERE id = 999999")
    search()
    conn.execute("INSERT INTO idx(idx) VALUES ('optimize')")
    dump = {}
    for name in ("idx_config", "idx_chunks", "idx_changes"):
        rows = conn.execute(f"SELECT * FROM {name} ORDER BY 1").fetchall()
        dump[name] = [[v.hex() if isinstance(v, bytes) else v for v in row] for row in rows]
    json.dump(dump, sys.stdout)
    """
).replace("__N__", str(N)).replace("__DIM__", str(DIM))

# PQ with 4-bit codes and OPQ4 train in seconds on 2,000 rows (8-bit PQ8 takes minutes there).
CASES = [
    ("Flat", ""),
    ("IVF16,Flat", ""),
    ("PQ8x4", ", train_size = 1000"),
    ("IVF16,PQ8x4", ", train_size = 1000"),
    ("IVF16,SQ8", ""),
    ("OPQ4,IVF16,PQ4x4", ", train_size = 1000"),
    ("HNSW16", ", deterministic = 1"),
    ("HNSW16,SQ8", ", deterministic = 1"),
]


def run(tmp_path, name, factory, options, threads, searches):
    path = tmp_path / f"{name}.db"
    env = dict(os.environ, VEKTER_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, LIB, str(path), factory, options, str(int(searches))],
        check=False, env=env, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("factory,options", CASES)
def test_same_sql_gives_identical_shadow_tables(tmp_path, factory, options):
    a = run(tmp_path, "a", factory, options, threads=1, searches=True)
    b = run(tmp_path, "b", factory, options, threads=2, searches=False)
    for name in a:
        digest = [hashlib.sha256(json.dumps(d[name]).encode()).hexdigest()[:12] for d in (a, b)]
        if a[name] != b[name] and name == "idx_config":
            differ = {r[0]: (r[1], s[1]) for r, s in zip(a[name], b[name]) if r != s}
            pytest.fail(f"{factory}: {name} differs: {differ}")
        assert a[name] == b[name], f"{factory}: {name} differs ({digest})"
    config = dict(a["idx_config"])
    # The build id comes from what was built, not from the time or the process.
    assert config["build_id"]
    assert len(a["idx_chunks"]) >= 1
