"""Section `threads`: HNSW32 build time by vekter_threads(n) (children/threads_build.py), and
search throughput with more connections (one thread each) than cores: HNSW, and exact scans of
the Flat index (split over the idle cores when one connection searches alone; never more
threads than cores in all when many do)."""
from __future__ import annotations

import json
import threading
import time

from ..config import LIB, child
from ..fmt import log
from ..harness import run_child
from ..peers import connect


def bench_threads(cfg, work, env, ann):
    c = cfg["threads"]
    log("\n== threads: builds by vekter_threads(n); searches from several connections at once")
    out = {"build_rows": c["build_rows"], "seconds": c["seconds"], "build": {}, "qps": {}}
    for n in sorted({1, 2, env["nproc"]}):
        r = run_child([child("threads_build"), str(work / "ann_flat.db"), LIB, str(c["build_rows"]), str(n)])
        out["build"][n] = r["build_s"]
        log(f"  HNSW32 build of {c['build_rows']:,} rows with vekter_threads({n}): {r['build_s']:.2f} s")
    path = str(work / "ann_hnsw.db")
    probe = connect(path)
    queries = [r[0] for r in probe.execute("select embedding from t where id % 89 = 0 limit 200")]
    probe.close()
    # No per-query parameters: searches share the index (a per-query efSearch would take it
    # exclusively and serialize them, which is not what this measures).
    sql = "select rowid from hnsw where query = ? and k = 10"
    for nconn in (1, 2, 4, 8):
        out["qps"][nconn] = throughput(path, sql, queries, nconn, c["seconds"])
        log(f"  {nconn} connection(s) in {nconn} thread(s), HNSW32 (efSearch 16): {out['qps'][nconn]:,.0f} queries/s")
    flat = str(work / "ann_flat.db")
    sql = "select rowid from flat where query = ? and k = 10"
    out["flat_qps"] = {}
    probe = connect(flat)
    probe.execute("select vekter_threads(1)")
    out["flat_qps_one_thread"] = throughput(flat, sql, queries, 1, c["seconds"])
    probe.execute(f"select vekter_threads({env['vekter_threads']})")
    log(f"  1 connection, Flat exact scan on one thread (vekter_threads(1)): {out['flat_qps_one_thread']:,.0f} queries/s")
    for nconn in (1, 2, 4, 8):
        before = json.loads(probe.execute("select vekter_debug()").fetchone()[0])["threads"]["split_scans"]
        out["flat_qps"][nconn] = throughput(flat, sql, queries, nconn, c["seconds"])
        after = json.loads(probe.execute("select vekter_debug()").fetchone()[0])["threads"]["split_scans"]
        log(f"  {nconn} connection(s), Flat exact scan: {out['flat_qps'][nconn]:,.0f} queries/s "
            f"({after - before:,} scans split)")
    probe.close()
    return out


def throughput(path, sql, queries, nconn, seconds):
    """Queries per second from nconn threads, each searching through its own connection, over
    a window of `seconds` that starts once every thread has run a first query."""
    counts = [0] * nconn
    ready = threading.Barrier(nconn + 1)
    window = {}

    def worker(i):
        cn = connect(path)  # each thread opens and owns its connection
        cn.execute(sql, [queries[i % len(queries)]]).fetchall()
        ready.wait()
        j = i
        while time.perf_counter() < window["stop"]:
            cn.execute(sql, [queries[j % len(queries)]]).fetchall()
            j += 1
            counts[i] += 1
        cn.close()

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(nconn)]
    for t in ts:
        t.start()
    t0 = time.perf_counter()
    window["stop"] = t0 + seconds
    ready.wait()
    for t in ts:
        t.join()
    return sum(counts) / (time.perf_counter() - t0)
