"""The systems compared: how vekter, raw FAISS, sqlite-vec, vectorlite and sqlite-vss are loaded
into a connection (or a process), how rows go in, and how each one is queried."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

# faiss-cpu must be imported before any SQLite extension is loaded: SQLite dlopen()s extensions
# with RTLD_GLOBAL, and sqlite-vss carries its own (older) FAISS. Imported first, the Python
# FAISS has all its symbols bound to its own library. (vekter exports only its entry point.)
import faiss
import sqlite_vec
import vectorlite_py

from .config import LIB, K, child
from .harness import timed

try:
    import sqlite_vss
except ImportError:  # optional peer
    sqlite_vss = None


class threads:
    """Context manager: raw FAISS's OpenMP thread count (the faiss-cpu wheel has its own
    OpenMP runtime, so this never changes vekter's)."""

    def __init__(self, n):
        self.n = n

    def __enter__(self):
        self.old = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(self.n)

    def __exit__(self, *exc):
        faiss.omp_set_num_threads(self.old)


def simd_level():
    try:
        return faiss.SIMDConfig.get_level_name()
    except Exception:  # noqa: BLE001 - older faiss-cpu without SIMDConfig
        return None


def connect(path, *peers, check_same_thread=True):
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=check_same_thread)
    conn.enable_load_extension(True)
    conn.load_extension(LIB)
    for p in peers:
        if p == "vec":
            sqlite_vec.load(conn)
        elif p == "vectorlite":
            conn.load_extension(vectorlite_py.vectorlite_path())
        elif p == "vss":
            sqlite_vss.load(conn)
    conn.enable_load_extension(False)
    return conn


def vss_status():
    """None if sqlite-vss loads and answers, else why not. Checked in a child process
    (children/vss_check.py): an exception inside sqlite-vss's FAISS aborts the whole process."""
    if sqlite_vss is None:
        return "not installed (pip could not install sqlite-vss)"
    p = subprocess.run([sys.executable, child("vss_check")], capture_output=True, text=True, check=False)
    if p.returncode != 0 or "[(1,)]" not in p.stdout:
        why = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]
        return f"does not load or answer here: {why}"
    return None


def load_rows(conn, sql, data, first_id=1):
    """Insert every row of data in one transaction with executemany; seconds."""
    def run():
        conn.execute("begin")
        conn.executemany(sql, ((first_id + i, data[i].tobytes()) for i in range(len(data))))
        conn.execute("commit")
    return timed(run)[0]


# Results into rowids (for recall) ------------------------------------------------------------


def rows_ids(rows):
    return [r[0] for r in rows]


def faiss_ids(res):
    return (res[1][0] + 1).tolist()


def json_ids(row):
    return json.loads(row[0])


# One k-nearest-neighbour query per call, for each system -------------------------------------


def vtab_search(conn, table, params=None, k=K):
    if params is None:
        sql = f"select rowid, distance from {table} where query = ? and k = {k}"
        return lambda q: conn.execute(sql, [q.tobytes()]).fetchall()
    sql = f"select rowid, distance from {table} where query = ? and k = {k} and params = ?"
    return lambda q: conn.execute(sql, [q.tobytes(), params]).fetchall()


def faiss_search_fn(conn, table):
    sql = f"select faiss_search('main', '{table}', ?, {K})"
    return lambda q: conn.execute(sql, [q.tobytes()]).fetchone()


def vec_search(conn, table="v"):
    sql = f"select rowid, distance from {table} where embedding match ? and k = {K}"
    return lambda q: conn.execute(sql, [q.tobytes()]).fetchall()


def vectorlite_search(conn, table="vl", ef=None):
    if ef is None:
        sql = f"select rowid, distance from {table} where knn_search(embedding, knn_param(?, {K}))"
        return lambda q: conn.execute(sql, [q.tobytes()]).fetchall()
    sql = f"select rowid, distance from {table} where knn_search(embedding, knn_param(?, {K}, {int(ef)}))"
    return lambda q: conn.execute(sql, [q.tobytes()]).fetchall()


def vss_search(conn, table="vss"):
    sql = f"select rowid, distance from {table} where vss_search(embedding, vss_search_params(?, {K}))"
    return lambda q: conn.execute(sql, [q.tobytes()]).fetchall()


def raw_search(index, k=K):
    return lambda q: index.search(q.reshape(1, -1), k)
