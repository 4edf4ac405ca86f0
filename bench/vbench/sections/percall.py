"""Section `percall`: the cost of one call on a 100-row, 4-d index (the search itself nearly
free), for vekter, sqlite-vec, vectorlite and raw FAISS, against SQLite's own floor."""
from __future__ import annotations

import json
import statistics
import time

import faiss

from ..config import SEARCH_THREADS, K
from ..data import embeddings
from ..fmt import log
from ..peers import connect, load_rows, threads


def bench_percall(cfg, work, env):
    pc = cfg["percall"]
    log(f"\n== per-call overhead: 100 rows, 4-d, k={K}")
    data = embeddings(100, 4, seed=50)
    q = embeddings(1, 4, seed=51)[0]
    qb = q.tobytes()
    conn = connect(work / "tiny.db", "vec", "vectorlite")
    for t in ("tiny", "tiny_plain"):
        conn.execute(f"create table {t} (id integer primary key, embedding blob)")
        load_rows(conn, f"insert into {t} (id, embedding) values (?, ?)", data)
    conn.execute("create virtual table tiny_idx using faiss(content = tiny)")
    conn.execute("create virtual table tiny_vec using vec0(embedding float[4])")
    load_rows(conn, "insert into tiny_vec (rowid, embedding) values (?, ?)", data)
    conn.execute("create virtual table tiny_vl using vectorlite(embedding float32[4], hnsw(max_elements=100))")
    load_rows(conn, "insert into tiny_vl (rowid, embedding) values (?, ?)", data)
    raw = faiss.IndexFlatL2(4)
    raw.add(data)
    q2 = q.reshape(1, -1)
    qjson = json.dumps(q.tolist())
    calls = {
        "select": lambda: conn.execute("select ?", [qb]).fetchall(),
        "encode": lambda: conn.execute("select faiss_encode(?)", [qjson]).fetchall(),
        "vtab": lambda: conn.execute(f"select rowid, distance from tiny_idx where query = ? and k = {K}", [qb]).fetchall(),
        "fn": lambda: conn.execute(f"select faiss_search('main', 'tiny_plain', ?, {K})", [qb]).fetchall(),
        "vec": lambda: conn.execute(f"select rowid, distance from tiny_vec where embedding match ? and k = {K}", [qb]).fetchall(),
        "vectorlite": lambda: conn.execute(f"select rowid, distance from tiny_vl where knn_search(embedding, knn_param(?, {K}))", [qb]).fetchall(),
        "faiss": lambda: raw.search(q2, K),
    }
    out = {}
    with threads(SEARCH_THREADS):
        for f in calls.values():  # warm-up (builds faiss_search's exact index)
            for _ in range(100):
                f()
        per = {k: [] for k in calls}
        for _ in range(pc["batches"]):
            for k, f in calls.items():  # interleaved batches
                t = time.perf_counter_ns()
                for _ in range(pc["calls"]):
                    f()
                per[k].append((time.perf_counter_ns() - t) / pc["calls"] / 1e3)
    for k, v in per.items():
        out[k] = statistics.median(v)
        log(f"  {k:<11} {out[k]:8.2f} µs/call")
    conn.close()
    return {"calls": pc["calls"], "batches": pc["batches"], "us": out}
