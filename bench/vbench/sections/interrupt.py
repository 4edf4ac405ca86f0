"""Section `interrupt`: long work stopped by `conn.interrupt()` (issue 14). A CREATE of a Flat,
an HNSW32 and an IVF index over the same table is interrupted once `faiss_indexes` (read from
another connection) shows it in the phase named; the time from the interrupt to the error, and
that nothing is left behind (no faiss table, shadow table or trigger)."""
from __future__ import annotations

import threading
import time

from ..data import embeddings
from ..fmt import log
from ..peers import connect, load_rows

CASES = [  # (factory, options, phase to interrupt in)
    ("Flat", "", "adding rows"),
    ("HNSW32", "", "adding rows"),
    ("IVF4096,Flat", ", train_size = 100000", "training"),
]


def run(conn, sql, res):
    """Run `sql`, noting its error (or None) and when it ended in `res`."""
    try:
        conn.execute(sql)
        res["error"] = None
    except Exception as e:  # noqa: BLE001 - the error is the measurement
        res["error"] = str(e)
    res["end"] = time.perf_counter()


def bench_interrupt(cfg, work, env):
    n, d = cfg["interrupt"]["rows"], 128
    log(f"\n== interrupt: conn.interrupt() during a CREATE over {n:,} x {d} rows")
    path = work / "interrupt.db"
    c = connect(path)
    c.execute("create table t (id integer primary key, embedding blob)")
    load_rows(c, "insert into t (id, embedding) values (?, ?)", embeddings(n, d, seed=60))
    c.close()
    out = {"n": n, "d": d, "cases": {}}
    for factory, options, phase in CASES:
        worker, watcher = connect(path, check_same_thread=False), connect(path)
        res = {}
        sql = f"create virtual table idx using faiss(content = t, factory = '{factory}'{options})"
        th = threading.Thread(target=run, args=(worker, sql, res))
        started = time.perf_counter()
        th.start()
        state = ""
        while th.is_alive():
            states = [s for name, s in watcher.execute("select name, state from faiss_indexes") if name == "idx"]
            if states and states[0].split(": ", 1)[-1].startswith(phase):
                state = states[0]
                break
            time.sleep(0.01)
        if factory.startswith("HNSW"):
            time.sleep(0.5)  # well into FAISS's graph building
            state = next((s for name, s in watcher.execute("select name, state from faiss_indexes") if name == "idx"),
                         state)
        asked = time.perf_counter()
        worker.interrupt()
        th.join()
        left = watcher.execute("select count(*) from sqlite_master where name like 'idx%' or type = 'trigger'").fetchone()[0]
        finished = res["end"] <= asked  # done before the interrupt: nothing measured
        case = {"ms": None if finished else (res["end"] - asked) * 1e3, "after_s": asked - started,
                "error": res["error"], "state": state, "left": 0 if finished else left}
        if finished:
            watcher.execute("drop table if exists idx")
        out["cases"][factory] = case
        if finished:
            log(f"  {factory}: the build ended ({case['after_s']:.1f} s) before it could be interrupted")
        else:
            log(f"  {factory}: interrupted {case['after_s']:.1f} s in ({state!r}): error {res['error']!r} "
                f"{case['ms']:.0f} ms after the interrupt; objects left: {left}")
        worker.close()
        watcher.close()
    path.unlink()
    return out
