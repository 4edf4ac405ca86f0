"""Section `batch`: the nearest k of every stored row ("related items" for a whole table), as
one search (`neighbours_of IN (SELECT …)`) against one query per call (a join), and raw FAISS
both ways, on the same rows."""
from __future__ import annotations

import time

import faiss
import numpy as np

from ..config import SEARCH_THREADS, K
from ..data import embeddings
from ..fmt import log
from ..peers import connect, load_rows, threads


def bench_batch(cfg, work, env):
    n, d = cfg["batch"]
    log(f"\n== neighbours of every row: {n:,} x {d}, k={K} (Flat)")
    data = embeddings(n, d, seed=60)
    conn = connect(work / "batch.db")
    conn.execute("create table docs (id integer primary key, embedding blob)")
    load_rows(conn, "insert into docs (id, embedding) values (?, ?)", data)
    conn.execute("create virtual table docs_idx using faiss(content = docs)")
    conn.commit()
    times = {}

    def timed(name, f):
        t = time.perf_counter()
        out = f()
        times[name] = time.perf_counter() - t
        log(f"  {name:<14} {times[name]:8.2f} s")
        return out

    batch = timed("vekter_batch", lambda: conn.execute(
        "select neighbours_of, rowid from docs_idx where neighbours_of in (select id from docs) and k = ?",
        [K]).fetchall())
    timed("vekter_join", lambda: conn.execute(
        "select d.id, i.rowid from docs d join docs_idx i on i.query = d.embedding and i.k = ?", [K + 1]).fetchall())
    conn.close()
    raw = faiss.IndexFlatL2(d)
    raw.add(data)
    with threads(SEARCH_THREADS):
        _, ids = timed("faiss_batch", lambda: raw.search(data, K + 1))
        timed("faiss_per_call", lambda: [raw.search(data[i:i + 1], K + 1) for i in range(n)])
    # vekter's answers against FAISS's (each row left out of its own); a tie at the k-th
    # place may pick another row.
    got = {}
    for asked, rowid in batch:
        got.setdefault(asked, set()).add(rowid)
    want = [{int(j) + 1 for j in ids[i] if j != i} for i in range(n)]
    same = float(np.mean([len(got.get(i + 1, set()) & want[i]) >= K - 1 for i in range(n)]))
    log(f"  rows whose neighbours match FAISS's (all but at most one): {same:.4f}")
    return {"n": n, "d": d, "k": K, "seconds": times, "agreement": same}
