"""Section `exact`: k=10 exact search, one query per call (vekter's Flat table and faiss_search,
raw FAISS IndexFlatL2, sqlite-vec, and sqlite-vss in a child process: run.py --vss-exact)."""
from __future__ import annotations

import gc
import subprocess
import sys
import time

import faiss
import numpy as np

from ..config import MODES, RUN_PY, SEARCH_THREADS, K
from ..data import embeddings, ground_truth
from ..fmt import fmt_ms, fmt_recall, fmt_s, log
from ..harness import Backend, measure, run_child, timed, warm
from ..peers import (
    connect,
    faiss_ids,
    faiss_search_fn,
    json_ids,
    load_rows,
    raw_search,
    rows_ids,
    simd_level,
    threads,
    vec_search,
    vss_search,
    vtab_search,
)


def bench_exact(cfg, work, env):
    out = []
    for n, d in cfg["exact"]:
        out.append(exact_case(n, d, cfg, work, env))
        gc.collect()
    return out


def exact_case(n, d, cfg, work, env):
    """One (rows, dimension) case of the exact section."""
    log(f"\n== exact search, {n:,} x {d}, k={K}")
    base = embeddings(n, d, seed=10 + d)
    queries = embeddings(cfg["queries"] + 3, d, seed=20 + d)
    gt = ground_truth(base, queries)
    res = {"n": n, "d": d, "build_s": {}}
    build = res["build_s"]

    idx = faiss.IndexFlatL2(d)
    build["faiss"], _ = timed(lambda: idx.add(base))

    path = work / f"exact_{n}x{d}.db"
    conn = connect(path, "vec")
    # Two copies of the table: `t` gets a faiss table; `t_plain` has none, so that
    # faiss_search('main', 't_plain', ...) takes the plain-table path (with a faiss table
    # over it, faiss_search would search that instead).
    for t in ("t", "t_plain"):
        conn.execute(f"create table {t} (id integer primary key, embedding blob)")
        res["table_load_s"] = load_rows(conn, f"insert into {t} (id, embedding) values (?, ?)", base)
    # The first faiss_search reads the table and builds the exact index.
    build["vekter_fn"], _ = timed(lambda: conn.execute(
        f"select faiss_search('main', 't_plain', ?, {K})", [queries[-1].tobytes()]).fetchone())
    build["vekter_vtab"], _ = timed(lambda: conn.execute("create virtual table idx using faiss(content = t)"))
    res["file_mb"] = path.stat().st_size / 2**20
    conn.execute(f"create virtual table v using vec0(embedding float[{d}])")
    build["vec"] = load_rows(conn, "insert into v (rowid, embedding) values (?, ?)", base)
    log("  build / load (s): " + ", ".join(f"{k} {fmt_s(v)}" for k, v in build.items()))

    backends = {
        "faiss": Backend(raw_search(idx), faiss_ids),
        "vekter_vtab": Backend(vtab_search(conn, "idx"), rows_ids),
        "vekter_fn": Backend(faiss_search_fn(conn, "t_plain"), json_ids),
        "vec": Backend(vec_search(conn), rows_ids),
    }
    # Raw FAISS once more at its portable SIMD level when the wheel dispatches at run time
    # (vekter's bundled FAISS is built without SIMD flags).
    if simd_level() not in (None, "NONE"):
        level = faiss.SIMDConfig.get_level()
        backends["faiss_nosimd"] = Backend(
            raw_search(idx), faiss_ids, enter=lambda: faiss.SIMDConfig.set_level(faiss.SIMDLevel_NONE),
            exit=lambda: faiss.SIMDConfig.set_level(level))
    with threads(SEARCH_THREADS):
        warm(backends, queries, n=10)
        m = measure(backends, queries, gt, cfg)
    for k, v in m.items():
        log(f"  {k:<13} {fmt_ms(v['median_ms']):>7} ms  recall {fmt_recall(v['recall'])}  ({v['n']} queries)")
    res["methods"] = m
    for k, v in build.items():
        m[k]["build_s"] = v
    conn.close()
    if "reopen_big" not in env and d == 128:
        # Kept for the reopen section: the largest Flat index, and FAISS's own file of it.
        faiss.write_index(idx, str(work / "exact_big.faissindex"))
        queries[0].tofile(work / "exact_query.f32")
        env["reopen_big"] = {"db": str(path), "n": n, "d": d,
                             "db_mb": path.stat().st_size / 2**20,
                             "faiss_mb": (work / "exact_big.faissindex").stat().st_size / 2**20}
    else:
        path.unlink()
    idx = None  # free it before the next step

    if env["vss"] is None:
        # In a child process on the same (regenerated, deterministic) data: an exception
        # inside sqlite-vss's FAISS calls std::terminate and would end the whole run.
        try:
            m["vss"] = run_child([str(RUN_PY), "--vss-exact", f"{n}x{d}", "--work-dir", str(work)]
                                 + (["--quick"] if cfg is MODES["quick"] else []),
                                 timeout=cfg["vss_timeout_s"], wall=False)
            log(f"  sqlite-vss vss0 (Flat, child process): insert {fmt_s(m['vss']['build_s'])} s, query "
                f"{fmt_ms(m['vss']['median_ms'])} ms, recall {fmt_recall(m['vss']['recall'])}, finds "
                f"{m['vss']['self_found']:.0%} of sampled stored rows by their own vector")
        except subprocess.TimeoutExpired as e:
            progress = [ln for ln in (e.stderr or b"").decode(errors="replace").splitlines() if ln.startswith("inserted")]
            m["vss"] = {"error": f"stopped after {cfg['vss_timeout_s']} s, still inserting"
                                 + (f" ({progress[-1]})" if progress else "")}
            log(f"  sqlite-vss: {m['vss']['error']}")
        except Exception as e:  # noqa: BLE001
            m["vss"] = {"error": str(e)[-300:]}
            log(f"  sqlite-vss failed: {e}")
    return res


def vss_exact(n, d, cfg, work):
    """sqlite-vss on the exact section's data (run in a child process by bench_exact)."""
    base = embeddings(n, d, seed=10 + d)
    queries = embeddings(cfg["queries"] + 3, d, seed=20 + d)
    gt = ground_truth(base, queries)
    path = work / f"exact_{n}x{d}_vss.db"
    conn = connect(path, "vss")
    conn.execute(f"create virtual table vss using vss0(embedding({d}))")
    t0 = time.perf_counter()
    conn.execute("begin")  # one transaction, like every other backend; progress on stderr
    for s in range(0, n, 5_000):
        conn.executemany("insert into vss (rowid, embedding) values (?, ?)",
                         ((i + 1, base[i].tobytes()) for i in range(s, min(n, s + 5_000))))
        print(f"inserted {min(n, s + 5_000):,} of {n:,} rows in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr, flush=True)
    conn.execute("commit")
    build = time.perf_counter() - t0
    m = measure({"vss": Backend(vss_search(conn), rows_ids)}, queries, gt, cfg)["vss"]
    m["build_s"] = build
    # Rows it actually indexed: does searching a stored vector find that row?
    probe = np.linspace(0, n - 1, 200).astype(int)
    sql = "select rowid from vss where vss_search(embedding, vss_search_params(?, 1))"
    found = sum(1 for i in probe if conn.execute(sql, [base[i].tobytes()]).fetchall() == [(int(i) + 1,)])
    m["self_found"] = found / len(probe)
    m["stored_rows"] = conn.execute("select count(*) from vss").fetchone()[0]
    conn.close()
    path.unlink()
    return m

