"""Write-path and reopen figures for the faiss table (issue 3's closing note; the start of
`make bench`). Usage: python bench/sync_reopen.py [N_VECTORS] [DIM]

- cost per synced insert: N single-row INSERTs in one transaction into an indexed table vs
  the same table without an index, and the time the next search takes to apply them;
- reopen: first query in a new process on a file holding an HNSW index vs building it.
"""
import json
import os
import pathlib
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
LIB = os.environ.get("VEKTER_LIB", str(ROOT / "dist" / "vekter"))


def connect(path):
    c = sqlite3.connect(path, isolation_level=None)
    c.enable_load_extension(True)
    c.load_extension(LIB.removesuffix(".so"))
    return c


def timed(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def inserts(conn, table, rows):
    conn.execute("begin")
    for i, v in rows:
        conn.execute(f"insert into {table} (id, embedding) values (?, ?)", (i, v))
    conn.execute("commit")


def write_path(dim, n_base=20000, n_insert=10000, repeats=3):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(n_base, dim)).astype(np.float32)
    out = {"plain": [], "indexed": [], "apply": []}
    for r in range(repeats):
        with tempfile.TemporaryDirectory() as d:
            conn = connect(os.path.join(d, "w.db"))
            for t in ("plain", "indexed"):
                conn.execute(f"create table {t} (id integer primary key, embedding blob)")
                inserts(conn, t, [(i, base[i].tobytes()) for i in range(n_base)])
            conn.execute("create virtual table idx using faiss(content = indexed, factory = 'HNSW32')")
            new = [(n_base + i, v.tobytes()) for i, v in enumerate(rng.normal(size=(n_insert, dim)).astype(np.float32))]
            out["plain"].append(timed(lambda: inserts(conn, "plain", new)))  # noqa: B023 - called at once
            out["indexed"].append(timed(lambda: inserts(conn, "indexed", new)))  # noqa: B023 - called at once
            q = base[0].tobytes()
            out["apply"].append(timed(lambda: conn.execute("select rowid from idx where query = ? and k = 10", [q]).fetchall()))  # noqa: B023 - called at once
            conn.close()
    med = {k: statistics.median(v) for k, v in out.items()}
    return {
        "rows": n_insert,
        "plain_us_per_row": med["plain"] / n_insert * 1e6,
        "indexed_us_per_row": med["indexed"] / n_insert * 1e6,
        "ratio": med["indexed"] / med["plain"],
        "apply_on_next_search_us_per_row": med["apply"] / n_insert * 1e6,
    }


REOPEN = """
import sqlite3, sys, time
t = time.perf_counter()
c = sqlite3.connect(sys.argv[1])
c.enable_load_extension(True)
c.load_extension(sys.argv[2])
c.execute("select rowid from idx where query = (select embedding from docs where id = 1) and k = 10").fetchall()
print(time.perf_counter() - t)
"""


def reopen(n, dim, factory="HNSW32"):
    rng = np.random.default_rng(1)
    data = rng.normal(size=(n, dim)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "r.db")
        conn = connect(path)
        conn.execute("create table docs (id integer primary key, embedding blob)")
        inserts(conn, "docs", [(i, v.tobytes()) for i, v in enumerate(data)])
        build = timed(lambda: conn.execute(f"create virtual table idx using faiss(content = docs, factory = '{factory}')"))
        conn.close()
        runs = [
            float(subprocess.run([sys.executable, "-c", REOPEN, path, LIB.removesuffix(".so")],
                                 check=True, capture_output=True, text=True).stdout)
            for _ in range(3)
        ]
        size = os.path.getsize(path)
    return {"vectors": n, "dim": dim, "factory": factory, "build_s": build,
            "reopen_first_query_s": statistics.median(runs), "file_mb": size / 2**20}


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    dim = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    print(json.dumps({"write_path": write_path(dim), "reopen": reopen(n, dim)}, indent=2))
