"""`make bench`: vekter against raw FAISS and the SQLite vector peers, in one process, on the
same generated data.

    python bench/run.py [--quick] [--out-dir DIR] [--json FILE] [--only SECTIONS] [--keep]
    python bench/run.py --from-json bench/out/results-full.json   # redo report and plots only

Sections (all run by default; `--only exact,ann` runs a subset):

  exact    k=10 exact search, one query per call: vekter's `faiss` table (Flat), vekter's
           `faiss_search` on a plain table, raw FAISS IndexFlatL2, sqlite-vec vec0 (and
           sqlite-vss when it loads).
  ann      recall@10 against exact ground truth vs median latency: HNSW (vekter HNSW32 with
           per-query efSearch, raw FAISS IndexHNSWFlat, vectorlite) and IVF (vekter and raw
           FAISS), with build times.
  write    N single-row INSERTs in one transaction: plain table, tables with a vekter HNSW32 or
           Flat index, sqlite-vec, vectorlite (and sqlite-vss); then the next search.
  reopen   time to first result in a new process: vekter file vs faiss.read_index.
  percall  per-call overhead on a 100-row, 4-d index.
  memory   RSS of a process searching one vekter index file through 1 vs 4 connections.

Writes docs/benchmarks.md, docs/bench_recall_latency.png and docs/bench_ratios.png (or the
same names under --out-dir), and every measurement to bench/out/results-{quick,full}.json
(git-ignored). Every number is measured when the script runs.

The interpreter must be able to load SQLite extensions (Debian's /usr/bin/python3 can; use
the virtualenv `make bench` makes from it).
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import pathlib
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np

# faiss-cpu must be imported before any SQLite extension is loaded: SQLite dlopen()s extensions
# with RTLD_GLOBAL, and sqlite-vss carries its own (older) FAISS. Imported first, the Python
# FAISS has all its symbols bound to its own library. (vekter exports only its entry point.)
import faiss

import sqlite_vec
import vectorlite_py

try:
    import sqlite_vss
except ImportError:  # optional peer
    sqlite_vss = None

ROOT = pathlib.Path(__file__).resolve().parents[1]
LIB = os.environ.get("VEKTER_LIB", str(ROOT / "dist" / "vekter")).removesuffix(".so")
EARLIER = pathlib.Path(__file__).resolve().parent / "earlier_measurements.md"
K = 10

# Sizes. Full mode is what docs/benchmarks.md documents; quick mode keeps every section but
# shrinks the data so that the whole run takes a few minutes on 2 cores.
MODES = {
    "quick": dict(
        exact=[(50_000, 128), (10_000, 768)],
        queries=200, budget_s=2.0, min_queries=30,
        ann=(20_000, 128), ivf_nlist=256,
        ef=[16, 32, 64, 128, 256], nprobe=[1, 2, 4, 8, 16, 32, 64],
        write=dict(base=10_000, rows=2_000, dim=128, repeats=3),
        vss_timeout_s=240,  # sqlite-vss: its inserts slow down with each row of a transaction
        reopen_runs=5,
        percall=dict(batches=5, calls=2_000),
        memory_queries=20,
        simd=dict(queries=200, build_rows=5_000),
        threads=dict(build_rows=10_000, seconds=2.0),
    ),
    "full": dict(
        exact=[(1_000_000, 128), (100_000, 768)],
        queries=1_000, budget_s=20.0, min_queries=50,
        ann=(100_000, 128), ivf_nlist=1024,
        ef=[16, 32, 64, 128, 256, 512], nprobe=[1, 2, 4, 8, 16, 32, 64, 128],
        write=dict(base=20_000, rows=10_000, dim=128, repeats=3),
        vss_timeout_s=300,
        reopen_runs=5,
        percall=dict(batches=7, calls=10_000),
        memory_queries=100,
        simd=dict(queries=1_000, build_rows=30_000),
        threads=dict(build_rows=50_000, seconds=5.0),
    ),
}
SECTIONS = ["exact", "ann", "simd", "threads", "write", "reopen", "percall", "memory"]


# --------------------------------------------------------------------------------------------
# Data


def embeddings(n: int, d: int, seed: int) -> np.ndarray:
    """n float32 vectors of dimension d, deterministic for (n, d, seed).

    Not trivially clustered: a mixture of 512 Gaussian clusters in a latent space of d/2
    dimensions whose spread (1.25) exceeds the spread of the cluster centres (1.0), so clusters
    overlap; mapped linearly to d dimensions, plus isotropic noise (0.15). The structure
    (centres, projection) depends on d only, so base vectors and queries drawn with different
    seeds come from the same distribution. Tuned so that ANN is neither trivial nor hopeless:
    on 100,000 such vectors HNSW32 needs efSearch around 128 and IVF1024 nprobe around 128 for
    recall@10 near 0.96-0.99 (see the report for the measured curves).
    """
    latent = max(2, d // 2)
    structure = np.random.default_rng(1_000_003 + d)
    centres = structure.normal(size=(512, latent))
    proj = structure.normal(size=(latent, d)) / np.sqrt(latent)
    rng = np.random.default_rng(seed)
    out = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, 100_000):  # in chunks: bounded float64 temporaries
        m = min(100_000, n - s)
        z = centres[rng.integers(0, 512, size=m)] + 1.25 * rng.normal(size=(m, latent))
        out[s:s + m] = z @ proj + 0.15 * rng.normal(size=(m, d))
    return out


def ground_truth(base: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """Exact k nearest neighbours (squared L2) as SQLite rowids (= position + 1)."""
    with threads(os.cpu_count() or 1):
        idx = faiss.IndexFlatL2(base.shape[1])
        idx.add(base)
        _, ids = idx.search(queries, k)
    return ids + 1


# --------------------------------------------------------------------------------------------
# Helpers


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


SEARCH_THREADS = 1  # raw FAISS searches: one thread (one query per call)


def connect(path, *peers):
    conn = sqlite3.connect(str(path), isolation_level=None)
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


VSS_CHECK = r"""
import sqlite3, struct, sqlite_vss
c = sqlite3.connect(":memory:", isolation_level=None)
c.enable_load_extension(True)
sqlite_vss.load(c)
c.execute("create virtual table x using vss0(e(2))")
c.execute("insert into x(rowid, e) values (1, ?)", [struct.pack("<2f", 0, 0)])
print(c.execute("select vss_version()").fetchone()[0])
print(c.execute("select rowid from x where vss_search(e, vss_search_params(?, 1))",
                [struct.pack("<2f", 0, 0)]).fetchall())
"""


def vss_status():
    """None if sqlite-vss loads and answers, else why not. Checked in a child process: an
    exception inside sqlite-vss's FAISS aborts the whole process."""
    if sqlite_vss is None:
        return "not installed (pip could not install sqlite-vss)"
    p = subprocess.run([sys.executable, "-c", VSS_CHECK], capture_output=True, text=True)
    if p.returncode != 0 or "[(1,)]" not in p.stdout:
        why = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]
        return f"does not load or answer here: {why}"
    return None


def timed(f):
    t = time.perf_counter()
    r = f()
    return time.perf_counter() - t, r


def load_rows(conn, sql, data, first_id=1):
    """Insert every row of data in one transaction with executemany; seconds."""
    def run():
        conn.execute("begin")
        conn.executemany(sql, ((first_id + i, data[i].tobytes()) for i in range(len(data))))
        conn.execute("commit")
    return timed(run)[0]


class Backend:
    """One way of answering a query. `search(q)` is timed (the call and fetching its rows);
    `ids_of(result)` turns its result into rowids for recall, untimed; `enter`/`exit` run
    untimed around each call (e.g. a raw FAISS index's search parameter)."""

    def __init__(self, search, ids_of, enter=None, exit=None):
        self.search, self.ids_of, self.enter, self.exit = search, ids_of, enter, exit

    def __call__(self, q):
        if self.enter:
            self.enter()
        try:
            t0 = time.perf_counter_ns()
            r = self.search(q)
            return r, (time.perf_counter_ns() - t0) / 1e6
        finally:
            if self.exit:
                self.exit()


def measure(backends, queries, gt, cfg, warmup=3, block=25):
    """Median latency of one query per call for each backend. Each backend answers every query
    once, in blocks of `block` queries: each backend in turn runs a block (after `warmup`
    untimed calls, so it starts warm, as in steady use), with a different backend first in each
    round, so drift in machine load hits them alike. Runs up to cfg['queries'] queries and stops
    after a round once cfg['min_queries'] are done and cfg['budget_s'] seconds per backend have
    passed. Returns {name: {median_ms, p90_ms, n, recall}}."""
    names = list(backends)
    times = {n: [] for n in names}
    recalls = {n: [] for n in names}
    budget = cfg["budget_s"] * len(names)
    nq = min(cfg["queries"], len(queries) - warmup)
    start = time.perf_counter()
    for r, lo in enumerate(range(0, nq, block)):
        for name in names[r % len(names):] + names[:r % len(names)]:
            b = backends[name]
            for q in queries[-warmup:]:
                b(q)
            for i in range(lo, min(nq, lo + block)):
                raw, ms = b(queries[i])
                times[name].append(ms)
                if gt is not None:
                    got = b.ids_of(raw)
                    recalls[name].append(len(set(got[:K]) & set(gt[i][:K].tolist())) / K)
        if lo + block >= cfg["min_queries"] and time.perf_counter() - start > budget:
            break
    return {n: {
        "median_ms": statistics.median(times[n]),
        "p90_ms": float(np.percentile(times[n], 90)),
        "n": len(times[n]),
        "recall": statistics.fmean(recalls[n]) if recalls[n] else None,
    } for n in names}


def warm(backends, queries, n=50):
    """Run each backend on n queries (the last ones; measure() times the first ones) so that
    nothing pays for cold caches."""
    for b in backends.values():
        for q in queries[-n:]:
            b(q)


def rows_ids(rows):
    return [r[0] for r in rows]


def faiss_ids(res):
    return (res[1][0] + 1).tolist()


def json_ids(row):
    return json.loads(row[0])


def vtab_search(conn, table, params=None):
    if params is None:
        sql = f"select rowid, distance from {table} where query = ? and k = {K}"
        return lambda q: conn.execute(sql, [q.tobytes()]).fetchall()
    sql = f"select rowid, distance from {table} where query = ? and k = {K} and params = ?"
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


def raw_search(index):
    return lambda q: index.search(q.reshape(1, -1), K)


def log(*a):
    print(*a, flush=True)


def fmt_ms(x):
    if x is None:
        return "–"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def fmt_s(x):
    if x is None:
        return "–"
    if x < 0.1:
        return f"{x:.3f}"
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def fmt_ratio(x):
    return "–" if x is None else (f"{x:.2f}×" if x < 10 else f"{x:.0f}×")


def fmt_recall(x):
    return "–" if x is None else f"{x:.3f}"


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def text_table(header, rows):
    cols = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in cols[1:]])


def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return None


# --------------------------------------------------------------------------------------------
# a. Exact search


def bench_exact(cfg, work, env):
    out = []
    for n, d in cfg["exact"]:
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
                m["vss"] = run_child([str(pathlib.Path(__file__).resolve()), "--vss-exact", f"{n}x{d}",
                                      "--work-dir", str(work)] + (["--quick"] if cfg is MODES["quick"] else []),
                                     script=True, timeout=cfg["vss_timeout_s"])
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
        out.append(res)
        base = queries = gt = None
        gc.collect()
    return out


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


def simd_level():
    try:
        return faiss.SIMDConfig.get_level_name()
    except Exception:  # noqa: BLE001 - older faiss-cpu without SIMDConfig
        return None


# --------------------------------------------------------------------------------------------
# b. ANN


def bench_ann(cfg, work, env):
    n, d = cfg["ann"]
    nlist = cfg["ivf_nlist"]
    log(f"\n== ANN, {n:,} x {d}, k={K}")
    base = embeddings(n, d, seed=30)
    queries = embeddings(cfg["queries"] + 3, d, seed=31)
    gt = ground_truth(base, queries)
    res = {"n": n, "d": d, "nlist": nlist, "build": {}, "hnsw": {}, "ivf": {}, "exact": {}}
    build_threads = env["vekter_threads"]

    # HNSW ------------------------------------------------------------------------------
    hpath = work / "ann_hnsw.db"
    conn = connect(hpath, "vectorlite")
    conn.execute("create table t (id integer primary key, embedding blob)")
    load_rows(conn, "insert into t (id, embedding) values (?, ?)", base)
    s, _ = timed(lambda: conn.execute("create virtual table hnsw using faiss(content = t, factory = 'HNSW32')"))
    res["build"]["vekter_hnsw"] = s
    log(f"  vekter HNSW32: create {fmt_s(s)} s")

    raw_hnsw = faiss.IndexHNSWFlat(d, 32)
    with threads(build_threads):
        s, _ = timed(lambda: raw_hnsw.add(base))
    res["build"]["faiss_hnsw"] = s
    log(f"  raw FAISS IndexHNSWFlat(d, 32): add {fmt_s(s)} s ({build_threads} threads)")

    # vectorlite (hnswlib) with FAISS HNSW32's construction parameters: M=32 links per node
    # (hnswlib's M, level 0 gets 2*M like FAISS), ef_construction=40 (FAISS's default).
    conn.execute(f"create virtual table vl using vectorlite(embedding float32[{d}], "
                 f"hnsw(max_elements={n}, M=32, ef_construction=40))")
    s = load_rows(conn, "insert into vl (rowid, embedding) values (?, ?)", base)
    res["build"]["vectorlite_hnsw"] = s
    log(f"  vectorlite hnsw(M=32, ef_construction=40): insert {fmt_s(s)} s")

    def set_ef(ef):
        raw_hnsw.hnsw.efSearch = ef

    with threads(SEARCH_THREADS):
        warm({"v": Backend(vtab_search(conn, "hnsw"), None), "f": Backend(raw_search(raw_hnsw), None),
              "l": Backend(vectorlite_search(conn, "vl"), None)}, queries)
        for ef in cfg["ef"]:
            backends = {
                "vekter": Backend(vtab_search(conn, "hnsw", f"efSearch={ef}"), rows_ids),
                "faiss": Backend(raw_search(raw_hnsw), faiss_ids, enter=lambda ef=ef: set_ef(ef)),
                "vectorlite": Backend(vectorlite_search(conn, "vl", ef), rows_ids),
            }
            if ef == 16:  # vekter without params: the table default, FAISS's efSearch (16)
                backends["vekter_noparams"] = Backend(vtab_search(conn, "hnsw"), rows_ids)
            row = measure(backends, queries, gt, cfg)
            if "vekter_noparams" in row:
                res["hnsw_default"] = row.pop("vekter_noparams")
            res["hnsw"][ef] = row
            log(f"  efSearch={ef:<4} " + "  ".join(
                f"{k}: {fmt_ms(v['median_ms'])} ms r={fmt_recall(v['recall'])}" for k, v in row.items()))
        if "hnsw_default" in res:
            log(f"  vekter without params (efSearch 16): {fmt_ms(res['hnsw_default']['median_ms'])} ms")
        raw_hnsw.hnsw.efSearch = 16
    conn.close()

    # IVF -------------------------------------------------------------------------------
    ipath = work / "ann_ivf.db"
    conn = connect(ipath)
    conn.execute("create table t (id integer primary key, embedding blob)")
    load_rows(conn, "insert into t (id, embedding) values (?, ?)", base)
    factory = f"IVF{nlist},Flat"
    s, _ = timed(lambda: conn.execute(f"create virtual table ivf using faiss(content = t, factory = '{factory}')"))
    res["build"]["vekter_ivf"] = s
    log(f"  vekter {factory}: create (train + add) {fmt_s(s)} s")

    # vekter trains on a seeded sample of train_size (default 50,000) rows: same size here.
    raw_ivf = faiss.index_factory(d, factory)
    sample = base[np.random.default_rng(7).choice(n, size=min(n, 50_000), replace=False)]
    with threads(build_threads):
        s, _ = timed(lambda: (raw_ivf.train(sample), raw_ivf.add(base)))
    res["build"]["faiss_ivf"] = s
    log(f"  raw FAISS {factory}: train + add {fmt_s(s)} s ({build_threads} threads)")

    ivf = faiss.extract_index_ivf(raw_ivf)

    def set_nprobe(p):
        ivf.nprobe = p

    with threads(SEARCH_THREADS):
        warm({"v": Backend(vtab_search(conn, "ivf"), None), "f": Backend(raw_search(raw_ivf), None)}, queries)
        for p in cfg["nprobe"]:
            row = measure({
                "vekter": Backend(vtab_search(conn, "ivf", f"nprobe={p}"), rows_ids),
                "faiss": Backend(raw_search(raw_ivf), faiss_ids, enter=lambda p=p: set_nprobe(p)),
            }, queries, gt, cfg)
            res["ivf"][p] = row
            log(f"  nprobe={p:<4} " + "  ".join(
                f"{k}: {fmt_ms(v['median_ms'])} ms r={fmt_recall(v['recall'])}" for k, v in row.items()))
    conn.close()
    ipath.unlink()

    # Exact reference on the same data (also the Flat file the reopen and memory sections use)
    fpath = work / "ann_flat.db"
    conn = connect(fpath)
    conn.execute("create table t (id integer primary key, embedding blob)")
    load_rows(conn, "insert into t (id, embedding) values (?, ?)", base)
    s, _ = timed(lambda: conn.execute("create virtual table flat using faiss(content = t)"))
    res["build"]["vekter_flat"] = s
    raw_flat = faiss.IndexFlatL2(d)
    raw_flat.add(base)
    with threads(SEARCH_THREADS):
        backends = {"vekter": Backend(vtab_search(conn, "flat"), rows_ids), "faiss": Backend(raw_search(raw_flat), faiss_ids)}
        warm(backends, queries)
        res["exact"] = measure(backends, queries, gt, cfg)
    conn.close()
    log(f"  exact reference: vekter Flat {fmt_ms(res['exact']['vekter']['median_ms'])} ms, "
        f"FAISS Flat {fmt_ms(res['exact']['faiss']['median_ms'])} ms")

    # Kept for the reopen and memory sections: the same data, indexed by FAISS itself.
    faiss.write_index(raw_hnsw, str(work / "ann_hnsw.faissindex"))
    faiss.write_index(raw_flat, str(work / "ann_flat.faissindex"))
    queries[0].tofile(work / "query.f32")
    res["files_mb"] = {p.name: p.stat().st_size / 2**20 for p in
                       [hpath, fpath, work / "ann_hnsw.faissindex", work / "ann_flat.faissindex"]}
    raw_hnsw = raw_ivf = raw_flat = base = None
    gc.collect()
    return res


# --------------------------------------------------------------------------------------------
# c. Write path


def bench_write(cfg, work, env):
    w = cfg["write"]
    d, n_base, n_rows = w["dim"], w["base"], w["rows"]
    log(f"\n== write path: {n_rows:,} single-row INSERTs ({d}-d) in one transaction into {n_base:,}-row tables")
    base = embeddings(n_base, d, seed=40)
    new = embeddings(n_rows, d, seed=41)
    qs = [v.tobytes() for v in embeddings(21, d, seed=42)]
    targets = ["plain", "vekter_hnsw", "vekter_flat", "vec", "vectorlite"] + (["vss"] if env["vss"] is None else [])
    insert_s = {t: [] for t in targets}
    search_s = {t: [] for t in targets}
    second_s = {t: [] for t in targets}
    peers = ["vec", "vectorlite"] + (["vss"] if env["vss"] is None else [])
    for r in range(w["repeats"]):
        path = work / f"write_{r}.db"
        conn = connect(path, *peers)
        for t in ("plain", "t_hnsw", "t_flat"):
            conn.execute(f"create table {t} (id integer primary key, embedding blob)")
            load_rows(conn, f"insert into {t} (id, embedding) values (?, ?)", base)
        conn.execute("create virtual table hnsw using faiss(content = t_hnsw, factory = 'HNSW32')")
        conn.execute("create virtual table flat using faiss(content = t_flat)")
        conn.execute(f"create virtual table v using vec0(embedding float[{d}])")
        load_rows(conn, "insert into v (rowid, embedding) values (?, ?)", base)
        conn.execute(f"create virtual table vl using vectorlite(embedding float32[{d}], "
                     f"hnsw(max_elements={n_base + n_rows}, M=32, ef_construction=40))")
        load_rows(conn, "insert into vl (rowid, embedding) values (?, ?)", base)
        if "vss" in targets:
            conn.execute(f"create virtual table vss using vss0(embedding({d}))")
            load_rows(conn, "insert into vss (rowid, embedding) values (?, ?)", base)
        sqls = {
            "plain": "insert into plain (id, embedding) values (?, ?)",
            "vekter_hnsw": "insert into t_hnsw (id, embedding) values (?, ?)",
            "vekter_flat": "insert into t_flat (id, embedding) values (?, ?)",
            "vec": "insert into v (rowid, embedding) values (?, ?)",
            "vectorlite": "insert into vl (rowid, embedding) values (?, ?)",
            "vss": "insert into vss (rowid, embedding) values (?, ?)",
        }
        searches = {
            "plain": lambda q: conn.execute(f"select faiss_search('main', 'plain', ?, {K})", [q]).fetchone(),
            "vekter_hnsw": lambda q: conn.execute(f"select rowid from hnsw where query = ? and k = {K}", [q]).fetchall(),
            "vekter_flat": lambda q: conn.execute(f"select rowid from flat where query = ? and k = {K}", [q]).fetchall(),
            "vec": lambda q: conn.execute(f"select rowid from v where embedding match ? and k = {K}", [q]).fetchall(),
            "vectorlite": lambda q: conn.execute(f"select rowid from vl where knn_search(embedding, knn_param(?, {K}))", [q]).fetchall(),
            "vss": lambda q: conn.execute(f"select rowid from vss where vss_search(embedding, vss_search_params(?, {K}))", [q]).fetchall(),
        }
        # Warm every search path before the writes (the plain table's exact index is built
        # by its first faiss_search), so "next search" measures only catching up.
        for t in targets:
            searches[t](qs[0])
        for t in targets:
            sql = sqls[t]
            rows = [(n_base + 1 + i, new[i].tobytes()) for i in range(n_rows)]

            def run():
                conn.execute("begin")
                for row in rows:
                    conn.execute(sql, row)
                conn.execute("commit")
            insert_s[t].append(timed(run)[0])
            search_s[t].append(timed(lambda: searches[t](qs[0]))[0])
            # steady state: the median of 20 more searches
            after = [timed(lambda: searches[t](v))[0] for v in qs[1:]]
            second_s[t].append(statistics.median(after))
        conn.close()
        path.unlink()
    med = lambda v: statistics.median(v)  # noqa: E731
    out = {"d": d, "base": n_base, "rows": n_rows, "repeats": w["repeats"], "targets": {}}
    plain = med(insert_s["plain"])
    for t in targets:
        out["targets"][t] = {
            "insert_us_per_row": med(insert_s[t]) / n_rows * 1e6,
            "ratio_vs_plain": med(insert_s[t]) / plain,
            "next_search_ms": med(search_s[t]) * 1e3,
            "second_search_ms": med(second_s[t]) * 1e3,
        }
        v = out["targets"][t]
        log(f"  {t:<12} {v['insert_us_per_row']:8.2f} µs/row ({fmt_ratio(v['ratio_vs_plain'])} plain)"
            f"  next search {fmt_ms(v['next_search_ms'])} ms, then {fmt_ms(v['second_search_ms'])} ms")
    return out


# --------------------------------------------------------------------------------------------
# d. Reopen in a new process

REOPEN_VEKTER = r"""
import json, sqlite3, sys, time
path, lib, table, qpath = sys.argv[1:5]
q = open(qpath, "rb").read()
t0 = time.perf_counter()
c = sqlite3.connect(path)
c.enable_load_extension(True)
c.load_extension(lib)
t1 = time.perf_counter()
ids = [r[0] - 1 for r in c.execute(f"select rowid from {table} where query = ? and k = 10", [q])]
t2 = time.perf_counter()
c.execute(f"select rowid from {table} where query = ? and k = 10", [q]).fetchall()
t3 = time.perf_counter()
print(json.dumps({"load": t1 - t0, "first": t2 - t1, "second": t3 - t2, "ids": ids}))
"""

REOPEN_FAISS = r"""
import json, sys, time
ipath, qpath = sys.argv[1:3]
qb = open(qpath, "rb").read()
t0 = time.perf_counter()
import numpy as np
import faiss
faiss.omp_set_num_threads(1)
t1 = time.perf_counter()
index = faiss.read_index(ipath)
q = np.frombuffer(qb, dtype=np.float32).reshape(1, -1)
_, ids = index.search(q, 10)
t2 = time.perf_counter()
index.search(q, 10)
t3 = time.perf_counter()
print(json.dumps({"load": t1 - t0, "first": t2 - t1, "second": t3 - t2, "ids": ids[0].tolist()}))
"""


def run_child(args, script=False, timeout=None, env=None):
    """Run Python code (-c) or a script in a new process; its last stdout line is JSON."""
    t = time.perf_counter()
    p = subprocess.run([sys.executable, *([] if script else ["-c"]), *args], capture_output=True, timeout=timeout,
                       env=None if env is None else {**os.environ, **env})
    p.stdout, p.stderr = p.stdout.decode(), p.stderr.decode(errors="replace")
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"child failed (exit status {p.returncode}): {p.stderr.strip()[-2000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    if not script:
        out["wall"] = wall
    return out


def bench_reopen(cfg, work, env, ann):
    log(f"\n== reopen: first result in a new process ({ann['n']:,} x {ann['d']})")
    q = str(work / "query.f32")
    cases = {
        "hnsw": ([REOPEN_VEKTER, str(work / "ann_hnsw.db"), LIB, "hnsw", q],
                 [REOPEN_FAISS, str(work / "ann_hnsw.faissindex"), q]),
        "flat": ([REOPEN_VEKTER, str(work / "ann_flat.db"), LIB, "flat", q],
                 [REOPEN_FAISS, str(work / "ann_flat.faissindex"), q]),
    }
    big = env.get("reopen_big")
    if big:  # the exact section's largest Flat file (1,000,000 × 128 in full mode)
        bq = str(work / "exact_query.f32")
        cases["flat_big"] = ([REOPEN_VEKTER, big["db"], LIB, "idx", bq],
                             [REOPEN_FAISS, str(work / "exact_big.faissindex"), bq])
    out = {"n": ann["n"], "d": ann["d"], "runs": cfg["reopen_runs"], "cases": {},
           "big": {k: big[k] for k in ("n", "d")} if big else None}
    for name, (vek, raw) in cases.items():
        runs = {"vekter": [], "faiss": []}
        for _ in range(cfg["reopen_runs"]):  # alternate, so drift hits both alike
            runs["vekter"].append(run_child(vek))
            runs["faiss"].append(run_child(raw))
        case = {}
        for who, rs in runs.items():
            case[who] = {k: statistics.median(r[k] for r in rs) for k in ("load", "first", "second", "wall")}
        case["same_ids"] = runs["vekter"][0]["ids"] == runs["faiss"][0]["ids"]
        if name == "flat_big":
            case["vekter_file_mb"], case["faiss_file_mb"] = big["db_mb"], big["faiss_mb"]
        else:
            case["vekter_file_mb"] = ann["files_mb"][f"ann_{name}.db"]
            case["faiss_file_mb"] = ann["files_mb"][f"ann_{name}.faissindex"]
        out["cases"][name] = case
        log(f"  {name}: vekter open+first query {fmt_ms(case['vekter']['first'] * 1e3)} ms "
            f"(process {fmt_ms(case['vekter']['wall'] * 1e3)} ms); faiss.read_index+search "
            f"{fmt_ms(case['faiss']['first'] * 1e3)} ms (process {fmt_ms(case['faiss']['wall'] * 1e3)} ms)")
    if big:
        pathlib.Path(big["db"]).unlink(missing_ok=True)
        (work / "exact_big.faissindex").unlink(missing_ok=True)
    return out


def reopen_label(name, ro):
    if name == "flat_big":
        return f"Flat {ro['big']['n']:,}×{ro['big']['d']}"
    return ("HNSW32" if name == "hnsw" else "Flat") + f" {ro['n']:,}×{ro['d']}"


# --------------------------------------------------------------------------------------------
# SIMD: the same files searched by vekter's FAISS builds (VEKTER_SIMD=generic keeps the baseline
# build; avx2 / avx512 pick vekter_avx2.so / vekter_avx512.so; the default is the best the CPU runs)

SIMD_CHILD = r"""
import json, sqlite3, statistics, sys, time
hnsw_path, flat_path, lib, nq, build_rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
def connect(path):
    c = sqlite3.connect(path, isolation_level=None)
    c.enable_load_extension(True)
    c.load_extension(lib)
    return c
def median_us(c, sql, queries):
    for q in queries[:20]:
        c.execute(sql, [q]).fetchall()
    times = []
    for q in queries:
        t = time.perf_counter_ns()
        c.execute(sql, [q]).fetchall()
        times.append((time.perf_counter_ns() - t) / 1e3)
    return statistics.median(times)
c = connect(hnsw_path)
out = {"simd": json.loads(c.execute("select vekter_debug()").fetchone()[0])["simd"]}
queries = [r[0] for r in c.execute("select embedding from t where id % 89 = 0 limit ?", [nq])]
for ef in (16, 64, 256):
    out[f"hnsw_ef{ef}_us"] = median_us(c, f"select rowid from hnsw where query = ? and k = 10 and params = 'efSearch={ef}'", queries)
f = connect(flat_path)
out["flat_us"] = median_us(f, "select rowid from flat where query = ? and k = 10", queries[:200])
m = connect(":memory:")
m.execute("attach ? as src", [flat_path])
m.execute("create table t (id integer primary key, embedding blob)")
m.execute("insert into t select id, embedding from src.t where id <= ?", [build_rows])
t = time.perf_counter()
m.execute("create virtual table h using faiss(content = t, factory = 'HNSW32')")
out["build_hnsw_s"] = time.perf_counter() - t
t = time.perf_counter()
m.execute("create virtual table p using faiss(content = t, factory = 'IVF64,PQ16')")
out["build_ivfpq_s"] = time.perf_counter() - t
out["ivfpq_us"] = median_us(m, "select rowid from p where query = ? and k = 10 and params = 'nprobe=16'", queries)
print(json.dumps(out))
"""


def bench_simd(cfg, work, env, ann):
    c = cfg["simd"]
    log(f"\n== SIMD: vekter's FAISS builds side by side ({ann['n']:,} x {ann['d']})")
    args = [SIMD_CHILD, str(work / "ann_hnsw.db"), str(work / "ann_flat.db"), LIB, str(c["queries"]), str(c["build_rows"])]
    out = {"n": ann["n"], "d": ann["d"], "queries": c["queries"], "build_rows": c["build_rows"], "levels": {}}
    for level in ("generic", "avx2", "avx512"):
        try:
            r = run_child(args, env={"VEKTER_SIMD": level})
        except RuntimeError as e:  # this CPU cannot run that build: loading it refuses
            out["levels"][level] = {"error": str(e).strip().splitlines()[-1]}
            log(f"  {level:<8} not available: {out['levels'][level]['error']}")
            continue
        out["levels"][r["simd"]["level"]] = r
        log(f"  {r['simd']['level']:<8} HNSW efSearch=16/64/256 {r['hnsw_ef16_us']:.0f}/{r['hnsw_ef64_us']:.0f}/"
            f"{r['hnsw_ef256_us']:.0f} µs, Flat {r['flat_us'] / 1e3:.2f} ms, IVF64,PQ16 nprobe=16 {r['ivfpq_us']:.0f} µs; "
            f"build {c['build_rows']:,} rows: HNSW32 {r['build_hnsw_s']:.2f} s, IVF64,PQ16 {r['build_ivfpq_s']:.2f} s")
    return out


# --------------------------------------------------------------------------------------------
# Threads: build time by vekter_threads(n); search throughput with more connections than cores

THREADS_BUILD_CHILD = r"""
import json, sqlite3, sys, time
flat_path, lib, rows, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
m = sqlite3.connect(":memory:", isolation_level=None)
m.enable_load_extension(True)
m.load_extension(lib)
m.execute("select vekter_threads(?)", [n])
m.execute("attach ? as src", [flat_path])
m.execute("create table t (id integer primary key, embedding blob)")
m.execute("insert into t select id, embedding from src.t where id <= ?", [rows])
t = time.perf_counter()
m.execute("create virtual table h using faiss(content = t, factory = 'HNSW32')")
print(json.dumps({"threads": n, "build_s": time.perf_counter() - t}))
"""


def bench_threads(cfg, work, env, ann):
    import threading
    c = cfg["threads"]
    log(f"\n== threads: builds by vekter_threads(n); searches from several connections at once")
    out = {"build_rows": c["build_rows"], "seconds": c["seconds"], "build": {}, "qps": {}}
    for n in sorted({1, 2, env["nproc"]}):
        r = run_child([THREADS_BUILD_CHILD, str(work / "ann_flat.db"), LIB, str(c["build_rows"]), str(n)])
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
        window["stop"] = t0 + c["seconds"]
        ready.wait()
        for t in ts:
            t.join()
        out["qps"][nconn] = sum(counts) / (time.perf_counter() - t0)
        log(f"  {nconn} connection(s) in {nconn} thread(s), HNSW32 (efSearch 16): {out['qps'][nconn]:,.0f} queries/s")
    return out


# --------------------------------------------------------------------------------------------
# e. Per-call overhead


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


# --------------------------------------------------------------------------------------------
# f. Memory

MEMORY_CHILD = r"""
import json, sqlite3, sys
path, lib, table, nconn, nq = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
base = rss()
conns = []
for i in range(nconn):
    c = sqlite3.connect(path)
    c.enable_load_extension(True)
    c.load_extension(lib)
    conns.append(c)
loaded = rss()
after_first = None
for j, c in enumerate(conns):
    for i in range(nq):
        q = c.execute("select embedding from t where id = ?", [1 + (i * 7919 + j) % 1000]).fetchone()[0]
        c.execute(f"select rowid from {table} where query = ? and k = 10", [q]).fetchall()
    if after_first is None:
        after_first = rss()
end = rss()
nbytes = conns[0].execute("select sum(bytes) from faiss_indexes where name = ?", [table]).fetchone()[0]
print(json.dumps({"base_kb": base, "loaded_kb": loaded, "after_first_kb": after_first,
                  "end_kb": end, "index_bytes": nbytes}))
"""

MEMORY_FAISS_CHILD = r"""
import json, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
base = rss()
import numpy as np, faiss
loaded = rss()
index = faiss.read_index(sys.argv[1])
q = np.zeros((1, index.d), dtype=np.float32)
index.search(q, 10)
print(json.dumps({"base_kb": base, "loaded_kb": loaded, "end_kb": rss()}))
"""


def bench_memory(cfg, work, env, ann):
    log(f"\n== memory: VmRSS of a process searching one vekter file ({ann['n']:,} x {ann['d']})")
    out = {"n": ann["n"], "d": ann["d"], "queries_per_connection": cfg["memory_queries"], "cases": {}}
    for name in ("hnsw", "flat"):
        case = {}
        for nconn in (1, 4):
            r = run_child([MEMORY_CHILD, str(work / f"ann_{name}.db"), LIB, name, str(nconn), str(cfg["memory_queries"])])
            case[nconn] = r
        case["faiss"] = run_child([MEMORY_FAISS_CHILD, str(work / f"ann_{name}.faissindex")])
        out["cases"][name] = case
        mb = lambda kb: kb / 1024  # noqa: E731
        log(f"  {name}: 1 connection {mb(case[1]['end_kb']):.0f} MB, 4 connections {mb(case[4]['end_kb']):.0f} MB "
            f"(index {case[1]['index_bytes'] / 2**20:.0f} MB; faiss.read_index process {mb(case['faiss']['end_kb']):.0f} MB)")
    return out


# --------------------------------------------------------------------------------------------
# Environment


def read_bandwidth():
    """The machine's single-thread read bandwidth (GB/s): best of numpy float32 sums over a
    1 GiB array (memory-bound, one thread, vectorised)."""
    a = np.ones(2**28, dtype=np.float32)
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        a.sum()
        best = max(best, a.nbytes / (time.perf_counter() - t) / 1e9)
    return best


def environment():
    env = {}
    env["date"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    env["nproc"] = os.cpu_count()
    cpu = "unknown"
    flags = set()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    env["cpu"] = cpu
    env["cpu_simd"] = " ".join(f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f") if f in flags)
    try:
        mem = next(line for line in open("/proc/meminfo") if line.startswith("MemTotal"))
        env["mem_gb"] = int(mem.split()[1]) / 2**20
    except (OSError, StopIteration):
        env["mem_gb"] = None
    env["os"] = platform.platform()
    try:
        env["os_release"] = next(line.split("=", 1)[1].strip().strip('"') for line in open("/etc/os-release")
                                 if line.startswith("PRETTY_NAME="))
    except (OSError, StopIteration):
        env["os_release"] = None
    env["python"] = platform.python_version()
    env["sqlite"] = sqlite3.sqlite_version
    env["numpy"] = np.__version__
    env["faiss"] = faiss.__version__
    env["faiss_simd"] = simd_level()
    env["faiss_compile"] = faiss.get_compile_options()
    c = connect(":memory:", "vec", "vectorlite")
    env["vekter_version"], dbg = c.execute("select vekter_version(), vekter_debug()").fetchone()
    env["vekter_debug"] = dbg
    env["vekter_threads"] = json.loads(dbg)["threads"]["build"]
    env["read_gbs"] = read_bandwidth()
    env["sqlite_vec"] = c.execute("select vec_version()").fetchone()[0]
    env["vectorlite"] = c.execute("select vectorlite_info()").fetchone()[0]
    c.close()
    env["vss"] = vss_status()
    if env["vss"] is None:
        c = connect(":memory:", "vss")
        env["sqlite_vss"] = c.execute("select vss_version()").fetchone()[0]
        c.close()
    env["loadavg_start"] = os.getloadavg()
    return env


# --------------------------------------------------------------------------------------------
# Report


LABELS = {
    "faiss": "raw FAISS IndexFlatL2 (faiss-cpu)",
    "faiss_nosimd": "raw FAISS IndexFlatL2, SIMD level forced to NONE",
    "vekter_vtab": "vekter `faiss` table `idx` over `t` (Flat): `WHERE query = ? AND k = 10`",
    "vekter_fn": "vekter `faiss_search('main', 't_plain', ?, 10)` (plain table)",
    "vec": "sqlite-vec `vec0`: `WHERE embedding MATCH ? AND k = 10`",
    "vss": "sqlite-vss `vss0` (Flat): `vss_search(…, vss_search_params(?, 10))`",
}
SHORT = {
    "faiss": "FAISS", "faiss_nosimd": "raw FAISS, SIMD off", "vekter_vtab": "vekter table",
    "vekter_fn": "vekter faiss_search", "vec": "sqlite-vec", "vss": "sqlite-vss",
}


def exact_rows(ex):
    base = ex["methods"]["faiss"]["median_ms"]
    rows = []
    for key in ("faiss", "faiss_nosimd", "vekter_vtab", "vekter_fn", "vec", "vss"):
        m = ex["methods"].get(key)
        if m is None:
            continue
        if "error" in m:
            rows.append([LABELS[key], "not measured: " + m["error"], "", "", "", "", ""])
            continue
        build = m.get("build_s")
        rows.append([LABELS[key], fmt_s(build) if build is not None else "–", fmt_ms(m["median_ms"]),
                     fmt_ms(m["p90_ms"]), fmt_ratio(m["median_ms"] / base), fmt_recall(m["recall"]), m["n"]])
    return rows


EXACT_HEADER = ["method", "build / load (s)", "median (ms)", "p90 (ms)", "vs FAISS", "recall@10", "queries"]


def ann_rows(ann, kind):
    rows = []
    table = ann["hnsw"] if kind == "hnsw" else ann["ivf"]
    for p, row in table.items():
        f = row["faiss"]["median_ms"]
        cells = [p]
        for who in (["vekter", "faiss", "vectorlite"] if kind == "hnsw" else ["vekter", "faiss"]):
            m = row[who]
            cells += [fmt_recall(m["recall"]), fmt_ms(m["median_ms"])]
        cells.append(fmt_ratio(row["vekter"]["median_ms"] / f))
        if kind == "hnsw":
            cells.append(fmt_ratio(row["vectorlite"]["median_ms"] / f))
        rows.append(cells)
    return rows


def best_at_recall(table, who, target=0.95):
    """(setting, median ms, recall) of the fastest setting where `who` reaches `target` recall."""
    ok = [(row[who]["median_ms"], p, row[who]["recall"]) for p, row in table.items()
          if who in row and row[who]["recall"] >= target]
    if not ok:
        return None
    ms, p, r = min(ok)
    return p, ms, r


def goals(results):
    """Issue 4's goals: (goal, measured, met) from this run's figures."""
    out = []
    env = results["env"]
    for ex in results.get("exact", []):
        m = ex["methods"]
        f = m["faiss"]["median_ms"]
        case = f"{ex['n']:,}×{ex['d']}"
        for key, name in (("vekter_vtab", "table"), ("vekter_fn", "faiss_search")):
            v = m[key]["median_ms"]
            out.append((f"exact {case}, vekter {name} ≤ 1.10× raw FAISS", f"{v / f:.2f}×", v / f <= 1.10))
        if "vec" in m and "median_ms" in m["vec"]:
            r = m["vec"]["median_ms"] / m["vekter_vtab"]["median_ms"]
            out.append((f"exact {case}, vekter table ≥ 4× faster than sqlite-vec", f"{r:.1f}×", r >= 4))
        if env.get("read_gbs"):
            gbs = ex["n"] * ex["d"] * 4 / (m["vekter_vtab"]["median_ms"] / 1e3) / 1e9
            share = gbs / env["read_gbs"]
            out.append((f"exact {case} scan ≥ 70% of single-thread read bandwidth ({env['read_gbs']:.1f} GB/s)",
                        f"{gbs:.1f} GB/s = {share:.0%}", share >= 0.7))
    ann = results.get("ann")
    if ann:
        h = ann["hnsw"]
        v = best_at_recall(h, "vekter")
        if v:
            p, ms, r = v
            f = h[p]["faiss"]["median_ms"]
            out.append(("HNSW ≤ 1.1× raw FAISS at the same setting (first efSearch with recall ≥ 0.95)",
                        f"efSearch={p}: {ms:.3f} vs {f:.3f} ms = {ms / f:.2f}× (recall {r:.3f} vs {h[p]['faiss']['recall']:.3f})",
                        ms / f <= 1.1))
            vl = best_at_recall(h, "vectorlite")
            if vl:
                out.append(("HNSW faster than vectorlite at recall@10 ≥ 0.95 (fastest setting each)",
                            f"vekter {ms:.3f} ms (efSearch={p}) vs vectorlite {vl[1]:.3f} ms (ef={vl[0]}) = {vl[1] / ms:.2f}× faster",
                            ms < vl[1]))
        b = ann["build"]
        out.append(("HNSW build ≤ 1.2× raw FAISS", f"{b['vekter_hnsw']:.1f} vs {b['faiss_hnsw']:.1f} s = "
                    f"{b['vekter_hnsw'] / b['faiss_hnsw']:.2f}×", b["vekter_hnsw"] / b["faiss_hnsw"] <= 1.2))
        out.append(("HNSW build ≥ 2× faster than vectorlite's insert", f"{b['vectorlite_hnsw']:.1f} vs {b['vekter_hnsw']:.1f} s = "
                    f"{b['vectorlite_hnsw'] / b['vekter_hnsw']:.2f}×", b["vectorlite_hnsw"] / b["vekter_hnsw"] >= 2))
    w = results.get("write")
    if w:
        for k, name in (("vekter_hnsw", "HNSW32"), ("vekter_flat", "Flat")):
            if k in w["targets"]:
                r = w["targets"][k]["ratio_vs_plain"]
                out.append((f"synced writes ({name}) ≤ 1.5× without an index", f"{r:.2f}×", r <= 1.5))
    ro = results.get("reopen")
    if ro:
        for n, c in ro["cases"].items():
            r = c["vekter"]["first"] / c["faiss"]["first"]
            out.append((f"reopen {reopen_label(n, ro)} ≤ 1.5× faiss.read_index",
                        f"{c['vekter']['first'] * 1e3:.0f} vs {c['faiss']['first'] * 1e3:.0f} ms = {r:.2f}×", r <= 1.5))
    pc = results.get("percall")
    if pc:
        for k, name in (("vtab", "table"), ("fn", "faiss_search")):
            us = pc["us"][k]
            out.append((f"per-call ({name}, from Python) ≤ 20 µs", f"{us:.1f} µs", us <= 20))
    mem = results.get("memory")
    if mem:
        for n, c in mem["cases"].items():
            r = c[4]["end_kb"] / c[1]["end_kb"]
            out.append((f"4 connections ≤ 1.1× the memory of 1 ({'HNSW32' if n == 'hnsw' else 'Flat'})", f"{r:.3f}×", r <= 1.1))
    return out


def ratio_items(results):
    """(group, label, median, raw FAISS median, unit) for the bar chart and the summary."""
    items = []
    for ex in results.get("exact", []):
        g = f"exact {ex['n']:,}×{ex['d']}"
        base = ex["methods"]["faiss"]["median_ms"]
        for key in ("vekter_vtab", "vekter_fn", "vec", "vss", "faiss_nosimd"):
            m = ex["methods"].get(key)
            if m and "median_ms" in m:
                label = SHORT[key]
                if m.get("recall") is not None and m["recall"] < 0.99:
                    label += f" (recall {m['recall']:.2f}!)"
                items.append((g, label, m["median_ms"], base, "ms"))
    ann = results.get("ann")
    if ann:
        for kind, table, who in (("HNSW", ann["hnsw"], ["vekter", "vectorlite"]), ("IVF", ann["ivf"], ["vekter"])):
            params = list(table)
            p = params[len(params) // 2]
            name = "efSearch" if kind == "HNSW" else "nprobe"
            for w in who:
                label = (f"{w} {kind}" if w == "vekter" else "vectorlite") + \
                    f" (recall {table[p][w]['recall']:.3f}, FAISS {table[p]['faiss']['recall']:.3f})"
                items.append((f"{kind} {name}={p}", label, table[p][w]["median_ms"], table[p]["faiss"]["median_ms"], "ms"))
    pc = results.get("percall")
    if pc:
        for k, label in (("vtab", "vekter table"), ("fn", "vekter faiss_search"), ("vec", "sqlite-vec"),
                         ("vectorlite", "vectorlite")):
            items.append(("tiny 100×4", label, pc["us"][k], pc["us"]["faiss"], "µs"))
    return items


def plot(results, out_dir, mode):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    files = []
    ann = results.get("ann")
    if ann:
        fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
        series = [
            (axes[0], "hnsw", "efSearch", [("vekter", "vekter HNSW32 (SQL)", "C0", "o-"),
                                            ("faiss", "raw FAISS IndexHNSWFlat(32)", "C1", "s--"),
                                            ("vectorlite", "vectorlite hnsw (M=32)", "C2", "^-.")]),
            (axes[1], "ivf", "nprobe", [("vekter", f"vekter IVF{ann['nlist']},Flat (SQL)", "C0", "o-"),
                                         ("faiss", f"raw FAISS IVF{ann['nlist']},Flat", "C1", "s--")]),
        ]
        for ax, kind, pname, whos in series:
            table = ann[kind]
            for who, label, color, style in whos:
                xs = [table[p][who]["recall"] for p in table]
                ys = [table[p][who]["median_ms"] for p in table]
                ax.plot(xs, ys, style, color=color, label=label, markersize=5)
                if who == "vekter":
                    for p, x, y in zip(table, xs, ys):
                        ax.annotate(f"{p}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=color)
            ex = ann["exact"]
            ax.axhline(ex["vekter"]["median_ms"], color="C0", linestyle=":", linewidth=1,
                       label=f"vekter Flat (exact): {fmt_ms(ex['vekter']['median_ms'])} ms")
            ax.axhline(ex["faiss"]["median_ms"], color="C1", linestyle=":", linewidth=1,
                       label=f"raw FAISS Flat (exact): {fmt_ms(ex['faiss']['median_ms'])} ms")
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
                lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
            ax.tick_params(axis="y", which="minor", labelsize=7)
            ax.set_xlabel("recall@10 (mean over queries)")
            ax.set_ylabel("median latency per query (ms, log scale)")
            ax.set_title(f"{kind.upper()}: labels are {pname}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8, loc="upper left")
        fig.suptitle(f"Recall vs latency, {ann['n']:,} × {ann['d']}-d, k={K}, one query per call "
                     f"({mode} mode, {results['env']['date'][:10]})")
        fig.tight_layout()
        p = out_dir / "bench_recall_latency.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        files.append(p)

    items = ratio_items(results)
    if items:
        fig, ax = plt.subplots(figsize=(12, 0.38 * len(items) + 1.6))
        groups = []
        for g, *_ in items:
            if g not in groups:
                groups.append(g)
        colors = {g: f"C{i}" for i, g in enumerate(groups)}
        labels = [f"{g}: {label}" for g, label, *_ in items]
        vals = [v / base for _, _, v, base, _ in items]
        y = np.arange(len(items))[::-1]
        ax.barh(y, vals, color=[colors[g] for g, *_ in items])
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
            lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.axvline(1.0, color="black", linewidth=1)
        for yi, v in zip(y, vals):
            ax.text(max(v, 1.0) * 1.06, yi, fmt_ratio(v), va="center", fontsize=8)
        ax.set_xlim(min(0.5, min(vals) / 1.5), max(vals) * 3)
        ax.set_xlabel("median latency ÷ raw FAISS median latency at the same setting (log scale; 1 = as fast as raw FAISS)")
        ax.set_title(f"Latency ratios vs raw FAISS (single thread), {mode} mode, {results['env']['date'][:10]}")
        ax.grid(True, axis="x", which="both", alpha=0.3)
        fig.tight_layout()
        p = out_dir / "bench_ratios.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        files.append(p)
    return files


def report(results, cfg, mode, elapsed, out_dir):
    env = results["env"]
    L = []
    L.append("# Benchmarks\n")
    L.append(f"Written by `make bench{' QUICK=1' if mode == 'quick' else ''}` (`bench/run.py"
             f"{' --quick' if mode == 'quick' else ''}`) on {env['date']}, **{mode} mode**"
             f"{' (small sizes: a smoke test of the harness, not the documented figures; run `make bench` for those)' if mode == 'quick' else ''}."
             f" The whole run took {elapsed / 60:.1f} minutes. Every backend runs in one Python process on"
             " the same generated data; every number below was measured by that run.\n")
    L.append("## Setup\n")
    vss = f"sqlite-vss {env['sqlite_vss']}" if env["vss"] is None else f"sqlite-vss: skipped ({env['vss']})"
    L.append(md_table(["", ""], [
        ["machine", f"{env['nproc']} cores, {env['cpu']} ({env['cpu_simd']}), {env['mem_gb']:.0f} GB RAM; "
                    f"single-thread read bandwidth {env.get('read_gbs', 0):.1f} GB/s (numpy sum over 1 GiB)"],
        ["system", f"{env['os_release'] or env['os']}; Python {env['python']}, SQLite {env['sqlite']} (the `sqlite3` module), numpy {env['numpy']}"],
        ["load average", f"{env['loadavg_start'][0]:.2f} at the start, {env['loadavg_end'][0]:.2f} at the end (1-minute)"],
        ["vekter", f"`vekter_version()` = {env['vekter_version']}; `vekter_debug()` = `{env['vekter_debug']}`"],
        ["raw FAISS", f"faiss-cpu {env['faiss']} ({env['faiss_compile'].strip()}; SIMD level in use: {env['faiss_simd']}); "
                      f"searches with `faiss.omp_set_num_threads({SEARCH_THREADS})`, index builds with {env['vekter_threads']} threads (vekter's `vekter_threads()`)"],
        ["peers", f"sqlite-vec {env['sqlite_vec']}; vectorlite-py ({env['vectorlite']}); {vss}"],
    ]))
    L.append("")
    L.append("Method: one query per call from Python (`conn.execute(...).fetchall()` for SQL, `index.search` for "
             f"raw FAISS), k = {K}; latency is the median over the queries. Backends compared with each other answer "
             "the same queries, each query once, in blocks of 25 queries per backend (3 untimed warm-up calls before "
             "each block) with the backends taking turns and a different one first in each round, so that a change in "
             f"machine load hits them alike. Measurement stops after {cfg['budget_s']:.0f} s per backend once "
             f"{cfg['min_queries']} queries are done (the `queries` column says how many ran). Recall@10 is against "
             "exact ground truth from FAISS `IndexFlatL2`. Database files are on local disk and hot in the OS page "
             "cache. Data: `embeddings()` in `bench/run.py` — a mixture of 512 overlapping Gaussian clusters in a "
             "d/2-dimensional latent space, mapped to d dimensions plus noise; queries are fresh draws from the same "
             "distribution (deterministic seeds). Python's own call overhead is in every SQL and raw-FAISS figure alike "
             "(see *Per-call overhead*).\n")

    items = ratio_items(results)
    if items:
        L.append("## Summary\n")
        L.append("Median latency per query against raw FAISS at the same setting (details and every setting below; "
                 "the chart is at the end).\n")
        L.append(md_table(["case", "backend", "median", "raw FAISS", "ratio"],
                          [[g, label, f"{fmt_ms(v)} {u}", f"{fmt_ms(b)} {u}", fmt_ratio(v / b)]
                           for g, label, v, b, u in items]))
        L.append("")
        w = results.get("write")
        if w and "vekter_hnsw" in w["targets"]:
            t = w["targets"]
            L.append("Writes, time per single-row INSERT relative to a table without an index: "
                     + ", ".join(f"{name} {fmt_ratio(t[k]['ratio_vs_plain'])}" for k, name in
                                 (("vekter_hnsw", "vekter HNSW32"), ("vekter_flat", "vekter Flat"), ("vec", "sqlite-vec"),
                                  ("vectorlite", "vectorlite"), ("vss", "sqlite-vss")) if k in t)
                     + " (vekter indexes the rows at the next search; see *Write path*).\n")
        ro = results.get("reopen")
        if ro:
            c = ro["cases"]
            L.append("Reopen, open + first query in a new process: " + "; ".join(
                f"{reopen_label(n, ro)} vekter {fmt_ms(c[n]['vekter']['first'] * 1e3)} ms vs "
                f"`faiss.read_index` {fmt_ms(c[n]['faiss']['first'] * 1e3)} ms" for n in c) + ".\n")
        mem = results.get("memory")
        if mem:
            c = mem["cases"]
            L.append("Memory, 4 connections instead of 1 searching one file: " + "; ".join(
                f"{'HNSW32' if n == 'hnsw' else 'Flat'} {(c[n][4]['end_kb'] - c[n][1]['end_kb']) / 1024:+.0f} MB "
                f"(index {c[n][1]['index_bytes'] / 2**20:.0f} MB)" for n in c) + ".\n")

    g = goals(results)
    if g:
        L.append("## Goals (issue 4)\n")
        L.append(md_table(["goal", "measured in this run", "met"], [[a, b, "yes" if c else "**no**"] for a, b, c in g]))
        L.append("")

    simd = results.get("simd")
    if simd:
        lv = simd["levels"]
        L.append("## SIMD: vekter's three FAISS builds\n")
        L.append("`make build` compiles FAISS three times: `vekter.so` for the x86-64 baseline, `vekter_avx2.so` and "
                 "`vekter_avx512.so` with FAISS's AVX2 / AVX-512 flags. Loading `vekter.so` hands the connection to the "
                 "best build the CPU runs (`VEKTER_SIMD` overrides). Same files, same queries, a new "
                 f"process per build (median µs per query, {simd['queries']} queries; builds of the first "
                 f"{simd['build_rows']:,} rows in memory).\n")
        keys = [("hnsw_ef16_us", "HNSW32 efSearch=16 (µs)"), ("hnsw_ef64_us", "HNSW32 efSearch=64 (µs)"),
                ("hnsw_ef256_us", "HNSW32 efSearch=256 (µs)"), ("flat_us", f"Flat {simd['n']:,}×{simd['d']} (µs)"),
                ("ivfpq_us", "IVF64,PQ16 nprobe=16 (µs)"), ("build_hnsw_s", "build HNSW32 (s)"),
                ("build_ivfpq_s", "build IVF64,PQ16 (s)")]
        ok = [k for k in ("generic", "avx2", "avx512") if k in lv and "error" not in lv[k]]
        L.append(md_table([""] + ok + [f"generic / {k}" for k in ok if k != "generic"],
                          [[name] + [f"{lv[k][key]:.2f}" for k in ok]
                           + [fmt_ratio(lv["generic"][key] / lv[k][key]) for k in ok if k != "generic"]
                           for key, name in keys]))
        for k, v in lv.items():
            if "error" in v:
                L.append(f"\n`{k}`: not available on this machine ({v['error']}).")
        L.append("")

    th = results.get("threads")
    if th:
        L.append("## Threads\n")
        L.append("A search uses one thread, the caller's (FAISS parallelises over queries; vekter sends one per call). "
                 "Builds, training and bulk adds use `vekter_threads()` OpenMP threads (default: the CPUs available; "
                 "`VEKTER_THREADS` or `SELECT vekter_threads(n)` change it).\n")
        L.append(md_table(["vekter_threads(n)", f"HNSW32 build of {th['build_rows']:,} rows (s)"],
                          [[n, f"{s:.2f}"] for n, s in th["build"].items()]))
        L.append("")
        L.append(md_table(["connections searching at once (one thread each)", "queries per second (HNSW32, efSearch 16)"],
                          [[n, f"{q:,.0f}"] for n, q in th["qps"].items()]))
        L.append("")
        q = th["qps"]
        most, cores = max(q), min(env["nproc"], max(q))
        if cores in q and q[cores]:
            L.append(f"On {env['nproc']} cores, {most} connections searching at once reach {q[most] / q[cores]:.2f}× "
                     f"the throughput of {cores}: every search runs on its caller's thread, so no connection brings an "
                     "OpenMP team that would oversubscribe the machine.\n")
        if th.get("separate_run"):
            L.append(f"(This section was measured in a separate run, {th['separate_run']}, after a harness fix.)\n")

    if "exact" in results:
        L.append("## Exact search\n")
        for ex in results["exact"]:
            L.append(f"### {ex['n']:,} × {ex['d']}-d\n")
            L.append(md_table(EXACT_HEADER, exact_rows(ex)))
            L.append("")
            L.append(f"Build / load: FAISS `add`; vekter `faiss_search`: its first call (reads the table, builds the "
                     f"exact index); vekter table: `CREATE VIRTUAL TABLE idx USING faiss(content = t)` (reads the table, "
                     f"builds, saves the snapshot in the file); sqlite-vec / sqlite-vss: inserting every row in one "
                     f"transaction. Loading a plain table took {fmt_s(ex['table_load_s'])} s. The file held two copies of the "
                     f"table (`t` with the faiss table `idx`, and `t_plain` without one, so that `faiss_search` takes the "
                     f"plain-table path) and vekter's Flat index: {ex['file_mb']:.0f} MB.\n")
            vss = ex["methods"].get("vss")
            if vss and "self_found" in vss:
                L.append(f"sqlite-vss ran in a child process on the same data (an exception inside its FAISS ends the "
                         f"process). Its table holds {vss['stored_rows']:,} rows, but searching 200 of the stored vectors "
                         f"(k = 1) finds the row itself for only {vss['self_found']:.0%} of them: rows inserted in one "
                         f"large transaction are missing from its index, which is why its recall@10 is "
                         f"{fmt_recall(vss['recall'])} and why its latency is over a smaller index.\n"
                         if vss["self_found"] < 0.995 else
                         "sqlite-vss ran in a child process on the same data (an exception inside its FAISS ends the process).\n")

    ann = results.get("ann")
    if ann:
        b = ann["build"]
        L.append(f"## Approximate search: {ann['n']:,} × {ann['d']}-d\n")
        L.append("![recall vs latency](bench_recall_latency.png)\n")
        L.append("### Build\n")
        L.append(md_table(["index", "seconds", "what is timed"], [
            ["vekter `factory = 'HNSW32'`", fmt_s(b["vekter_hnsw"]), "`CREATE VIRTUAL TABLE … USING faiss(…)`: read the table, build, save the snapshot"],
            ["raw FAISS `IndexHNSWFlat(d, 32)`", fmt_s(b["faiss_hnsw"]), f"`add` ({env['vekter_threads']} threads)"],
            ["vectorlite `hnsw(max_elements=N, M=32, ef_construction=40)`", fmt_s(b["vectorlite_hnsw"]), "inserting every row in one transaction"],
            [f"vekter `factory = 'IVF{ann['nlist']},Flat'`", fmt_s(b["vekter_ivf"]), "create: train on a 50,000-row sample (default `train_size`), add, save"],
            [f"raw FAISS `IVF{ann['nlist']},Flat`", fmt_s(b["faiss_ivf"]), f"`train` on a 50,000-row sample + `add` ({env['vekter_threads']} threads)"],
            ["vekter Flat", fmt_s(b["vekter_flat"]), "create (exact reference)"],
        ]))
        L.append("")
        L.append("vectorlite gets FAISS HNSW32's construction parameters (32 links per node, 64 on level 0; "
                 "efConstruction 40) so the graphs are comparable; its defaults are M=16, ef_construction=200.\n")
        L.append("### HNSW: recall@10 and median latency (ms)\n")
        L.append("vekter: `SELECT rowid, distance FROM hnsw WHERE query = ? AND k = 10 AND params = 'efSearch=N'`; "
                 "raw FAISS: `index.hnsw.efSearch = N`; vectorlite: `knn_search(embedding, knn_param(?, 10, N))`.\n")
        L.append(md_table(["efSearch", "vekter recall", "vekter ms", "FAISS recall", "FAISS ms", "vectorlite recall",
                           "vectorlite ms", "vekter / FAISS", "vectorlite / FAISS"], ann_rows(ann, "hnsw")))
        hd = ann.get("hnsw_default")
        L.append("")
        with16 = ann["hnsw"].get(16, {}).get("vekter")
        if hd:
            L.append(f"Without `params` (the table default: FAISS's efSearch = 16) vekter answers in {fmt_ms(hd['median_ms'])} ms "
                     f"with recall {fmt_recall(hd['recall'])}"
                     + (f"; with `params = 'efSearch=16'` (the same search, set per query) in "
                        f"{fmt_ms(with16['median_ms'])} ms" if with16 else "") + ".\n")
        L.append(f"### IVF{ann['nlist']},Flat: recall@10 and median latency (ms)\n")
        L.append("vekter: `… AND params = 'nprobe=N'`; raw FAISS: `nprobe = N`.\n")
        L.append(md_table(["nprobe", "vekter recall", "vekter ms", "FAISS recall", "FAISS ms", "vekter / FAISS"],
                          ann_rows(ann, "ivf")))
        L.append("")
        ex = ann["exact"]
        L.append(f"Exact reference on the same data: vekter Flat table {fmt_ms(ex['vekter']['median_ms'])} ms, raw FAISS "
                 f"`IndexFlatL2` {fmt_ms(ex['faiss']['median_ms'])} ms.\n")

    w = results.get("write")
    if w:
        names = {"plain": "table without an index", "vekter_hnsw": "table + vekter HNSW32 `faiss` table",
                 "vekter_flat": "table + vekter Flat `faiss` table", "vec": "sqlite-vec `vec0`",
                 "vectorlite": "vectorlite `hnsw(M=32, ef_construction=40)`", "vss": "sqlite-vss `vss0` (Flat)"}
        next_what = {"plain": "`faiss_search` re-reads the table", "vekter_hnsw": "applies the change log to the HNSW graph",
                     "vekter_flat": "applies the change log", "vec": "", "vectorlite": "", "vss": ""}
        L.append("## Write path\n")
        L.append(f"{w['rows']:,} single-row `INSERT`s of {w['d']}-d vectors in one transaction (commit included) into a "
                 f"{w['base']:,}-row table; median of {w['repeats']} runs. Then the next k = {K} search (vekter tables and the "
                 "plain table's `faiss_search` catch up with the writes here; the peers indexed them while inserting), "
                 "and 20 more.\n")
        rows = []
        for t, v in w["targets"].items():
            rows.append([names[t], f"{v['insert_us_per_row']:.2f}", fmt_ratio(v["ratio_vs_plain"]),
                         fmt_ms(v["next_search_ms"]) + (f" ({next_what[t]})" if next_what[t] else ""),
                         fmt_ms(v["second_search_ms"])])
        L.append(md_table(["target", "µs per row", "vs plain", "next search (ms)", "later searches (ms, median of 20)"], rows))
        L.append("")
        if "vekter_hnsw" in w["targets"]:
            v = w["targets"]["vekter_hnsw"]
            L.append(f"vekter's write stays O(1) per row (a trigger appends the rowid to the change log); the index work "
                     f"happens at the next search: {v['next_search_ms'] * 1e3 / w['rows']:.0f} µs per row for HNSW32.\n")

    ro = results.get("reopen")
    if ro:
        L.append("## Reopen: first result in a new process\n")
        L.append(f"HNSW32 and Flat on the ANN data ({ro['n']:,} × {ro['d']}-d)"
                 + (f", and the exact section's Flat file ({ro['big']['n']:,} × {ro['big']['d']}-d)" if ro.get("big") else "")
                 + ". vekter: a new Python process opens the database file, "
                 "loads the extension and runs one k = 10 query (the snapshot is read from the file, checked and "
                 "deserialized on first use). FAISS: a new process imports faiss and calls `faiss.read_index` on the "
                 "same data indexed by FAISS (`faiss.write_index`), then searches once. Median of "
                 f"{ro['runs']} runs, files hot in the page cache.\n")
        rows = []
        for name, c in ro["cases"].items():
            lab = reopen_label(name, ro)
            for who in ("vekter", "faiss"):
                r = c[who]
                rows.append([f"{lab}: {'vekter (sqlite3 + .load)' if who == 'vekter' else 'faiss.read_index'}",
                             f"{c[who + '_file_mb']:.0f}",
                             fmt_ms(r["load"] * 1e3), fmt_ms(r["first"] * 1e3), fmt_ms(r["second"] * 1e3),
                             fmt_ms(r["wall"] * 1e3)])
        L.append(md_table(["", "file (MB)", "import / load extension (ms)", "open + first query (ms)",
                           "second query (ms)", "whole process (ms)"], rows))
        L.append("")
        L.append("The vekter file holds the table and the index; the FAISS file the index only. The clock starts "
                 "after `import sqlite3` for vekter and before `import faiss` (which imports numpy) for FAISS. "
                 "\"Whole process\" is the wall time of the child process, Python's start-up included.\n")

    pc = results.get("percall")
    if pc:
        names = {"select": "`SELECT ?` (the sqlite3 module's own floor)", "encode": "`SELECT faiss_encode(?)` (trivial SQL function)",
                 "vtab": "vekter `faiss` table (Flat), k = 10", "fn": "vekter `faiss_search` (plain table), k = 10",
                 "vec": "sqlite-vec `vec0`, k = 10", "vectorlite": "vectorlite, k = 10",
                 "faiss": "raw FAISS `index.search` (Python call)"}
        L.append("## Per-call overhead\n")
        L.append(f"A 100-row, 4-d index: the search itself is nearly free, so this is the cost of a call. Median of "
                 f"{pc['batches']} interleaved batches of {pc['calls']:,} calls.\n")
        enc = pc["us"]["encode"]
        L.append(md_table(["call", "µs per call", "vs `faiss_encode`"],
                          [[names[k], f"{v:.2f}", fmt_ratio(v / enc)] for k, v in pc["us"].items()]))
        L.append("")

    mem = results.get("memory")
    if mem:
        L.append("## Memory\n")
        L.append(f"VmRSS (from `/proc/self/status`) of a new Python process that opens the {mem['n']:,} × {mem['d']}-d "
                 f"file through 1 or 4 connections (each loads vekter) and runs {mem['queries_per_connection']} "
                 "queries on each. One in-memory copy of an index serves every connection of the process.\n")
        rows = []
        for name, c in mem["cases"].items():
            lab = "HNSW32" if name == "hnsw" else "Flat"
            mb = lambda kb: f"{kb / 1024:.0f}"  # noqa: E731
            rows.append([lab, f"{c[1]['index_bytes'] / 2**20:.0f}", mb(c[1]["base_kb"]), mb(c[1]["end_kb"]), mb(c[4]["end_kb"]),
                         f"{(c[4]['end_kb'] - c[1]['end_kb']) / 1024:+.0f}", mb(c["faiss"]["end_kb"])])
        L.append(md_table(["index", "index in memory (MB, `faiss_indexes.bytes`)", "process before (MB)",
                           "1 connection (MB)", "4 connections (MB)", "4 − 1 (MB)", "faiss.read_index process (MB)"], rows))
        L.append("")

    items = ratio_items(results)
    if items:
        L.append("## Ratios\n")
        L.append("![latency ratios vs raw FAISS](bench_ratios.png)\n")
        L.append("Median latency divided by raw FAISS's at the same setting (exact: `IndexFlatL2`; HNSW and IVF: the "
                 "middle efSearch / nprobe of the sweep; tiny: per-call cost vs a raw `index.search` call).\n")

    if results.get("errors"):
        L.append("## Sections that failed\n")
        L += [f"- `{k}`: {v}" for k, v in results["errors"].items()]
        L.append("")
    L.append("## Reading these numbers\n")
    notes = [
        f"vekter's bundled FAISS ({json.loads(env['vekter_debug']).get('faiss', '?')}, SIMD "
        f"`{json.loads(env['vekter_debug'])['simd']['level']}`) and the faiss-cpu wheel ({env['faiss']}, SIMD "
        f"`{env['faiss_simd']}`) are different builds: part of any gap is the FAISS build, not SQLite. The "
        "\"SIMD level forced to NONE\" row of the exact tables shows how much the wheel's SIMD dispatch matters there.",
        "Every SQL figure includes Python's `sqlite3` call overhead and SQLite's statement execution; "
        "raw FAISS figures include Python's call into the SWIG wrapper.",
        "The machine is a small VM that may be shared with other work; the load average above says how busy it was. "
        "Differences of 10–20% between runs are common at these latencies.",
    ]
    L += [f"- {n}" for n in notes]
    L.append("")
    L.append("## Earlier measurements\n")
    if EARLIER.exists():
        L.append(EARLIER.read_text().strip() + "\n")
    return "\n".join(L)


def summary(results):
    """The console table: medians and ratios."""
    rows = []
    for ex in results.get("exact", []):
        base = ex["methods"]["faiss"]["median_ms"]
        for key, m in ex["methods"].items():
            if "median_ms" in m:
                rows.append([f"exact {ex['n']:,}x{ex['d']}", SHORT[key], fmt_ms(m["median_ms"]),
                             fmt_ratio(m["median_ms"] / base), fmt_recall(m["recall"])])
    ann = results.get("ann")
    if ann:
        for kind, name in (("hnsw", "efSearch"), ("ivf", "nprobe")):
            for p, row in ann[kind].items():
                base = row["faiss"]["median_ms"]
                for who, m in row.items():
                    rows.append([f"{kind.upper()} {name}={p}", who, fmt_ms(m["median_ms"]),
                                 fmt_ratio(m["median_ms"] / base), fmt_recall(m["recall"])])
    out = [text_table(["case", "backend", "median ms", "vs FAISS", "recall@10"], rows)] if rows else []
    g = goals(results)
    if g:
        out.append("")
        out.append(text_table(["goal", "measured", "met"], [[a, b, "yes" if c else "NO"] for a, b, c in g]))
    w = results.get("write")
    if w:
        out.append("")
        out.append(text_table(["write path", "µs/row", "vs plain", "next search ms"],
                              [[t, f"{v['insert_us_per_row']:.2f}", fmt_ratio(v["ratio_vs_plain"]), fmt_ms(v["next_search_ms"])]
                               for t, v in w["targets"].items()]))
    ro = results.get("reopen")
    if ro:
        out.append("")
        out.append(text_table(["reopen (new process)", "open+first ms", "whole process ms"],
                              [[f"{n} {who}", fmt_ms(c[who]["first"] * 1e3), fmt_ms(c[who]["wall"] * 1e3)]
                               for n, c in ro["cases"].items() for who in ("vekter", "faiss")]))
    pc = results.get("percall")
    if pc:
        out.append("")
        out.append(text_table(["per call (100x4)", "µs"], [[k, f"{v:.2f}"] for k, v in pc["us"].items()]))
    mem = results.get("memory")
    if mem:
        out.append("")
        out.append(text_table(["memory (VmRSS MB)", "1 conn", "4 conns", "index MB"],
                              [[n, f"{c[1]['end_kb'] / 1024:.0f}", f"{c[4]['end_kb'] / 1024:.0f}",
                                f"{c[1]['index_bytes'] / 2**20:.0f}"] for n, c in mem["cases"].items()]))
    return "\n".join(out)


# --------------------------------------------------------------------------------------------


def load_results(path):
    """A --json file back into the shape the report expects (JSON made the int keys strings)."""
    results = json.loads(pathlib.Path(path).read_text())
    ann = results.get("ann")
    if ann:
        for kind in ("hnsw", "ivf"):
            ann[kind] = {int(k): v for k, v in ann[kind].items()}
    th = results.get("threads")
    if th:
        for k in ("build", "qps"):
            th[k] = {int(n): v for n, v in th[k].items()}
    for case in (results.get("memory") or {}).get("cases", {}).values():
        for k in ("1", "4"):
            case[int(k)] = case.pop(k)
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    ap.add_argument("--out-dir", default=str(ROOT / "docs"), help="where benchmarks.md and the PNGs go (default: docs/)")
    ap.add_argument("--json", help="write every measurement to this JSON file "
                                   "(default: bench/out/results-quick.json or results-full.json)")
    ap.add_argument("--only", help=f"comma-separated subset of: {', '.join(SECTIONS)}")
    ap.add_argument("--work-dir", help="directory for the database files (default: a new temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--from-json", metavar="FILE", help="measure nothing: rewrite the report and plots from a --json file")
    ap.add_argument("--vss-exact", metavar="NxD", help=argparse.SUPPRESS)  # internal: the sqlite-vss child
    args = ap.parse_args()

    if args.from_json:
        results = load_results(args.from_json)
        out_dir = pathlib.Path(args.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        plots = plot(results, out_dir, results["mode"])
        (out_dir / "benchmarks.md").write_text(report(results, results["config"], results["mode"], results["elapsed_s"], out_dir))
        log(summary(results))
        log(f"\nwrote {out_dir / 'benchmarks.md'}" + "".join(f", {p}" for p in plots))
        return 0

    mode = "quick" if args.quick else "full"
    cfg = MODES[mode]
    if args.vss_exact:
        n, d = (int(v) for v in args.vss_exact.split("x"))
        print(json.dumps(vss_exact(n, d, cfg, pathlib.Path(args.work_dir))))
        return 0
    only = SECTIONS if not args.only else [s.strip() for s in args.only.split(",")]
    for s in only:
        if s not in SECTIONS:
            ap.error(f"unknown section {s!r}")
    if any(s in only for s in ("simd", "threads", "reopen", "memory")) and "ann" not in only:
        only = ["ann"] + only  # they use the ANN section's files
    out_dir = pathlib.Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(args.work_dir or tempfile.mkdtemp(prefix="vekter-bench-"))
    work.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    env = environment()
    log(f"vekter bench, {mode} mode: {env['nproc']} cores, {env['cpu']}; vekter {env['vekter_version']}, "
        f"faiss-cpu {env['faiss']} ({env['faiss_simd']}), sqlite-vec {env['sqlite_vec']}, "
        f"{env['vectorlite']}, sqlite-vss: {env.get('sqlite_vss') or env['vss']}")
    log(f"vekter_debug(): {env['vekter_debug']}")
    log(f"raw FAISS: searches on {SEARCH_THREADS} thread, builds on {env['vekter_threads']}; work dir {work}")
    results = {"mode": mode, "env": env, "config": cfg, "errors": {}}
    sections = {
        "exact": lambda: bench_exact(cfg, work, env),
        "ann": lambda: bench_ann(cfg, work, env),
        "write": lambda: bench_write(cfg, work, env),
        "simd": lambda: bench_simd(cfg, work, env, results["ann"]),
        "threads": lambda: bench_threads(cfg, work, env, results["ann"]),
        "reopen": lambda: bench_reopen(cfg, work, env, results["ann"]),
        "percall": lambda: bench_percall(cfg, work, env),
        "memory": lambda: bench_memory(cfg, work, env, results["ann"]),
    }
    try:
        for name in SECTIONS:
            if name not in only:
                continue
            if name in ("simd", "threads", "reopen", "memory") and "ann" not in results:
                results["errors"][name] = "skipped: the ANN section did not complete"
                continue
            try:
                results[name] = sections[name]()
            except Exception:  # noqa: BLE001 - report it, run the other sections, fail at the end
                err = traceback.format_exc()
                log(f"\n!! section {name} failed:\n{err}")
                results["errors"][name] = err.strip().splitlines()[-1]
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    env["loadavg_end"] = os.getloadavg()
    elapsed = time.perf_counter() - t0
    results["elapsed_s"] = elapsed

    log("\n" + "=" * 100)
    log(summary(results))
    plots = plot(results, out_dir, mode)
    md = out_dir / "benchmarks.md"
    md.write_text(report(results, cfg, mode, elapsed, out_dir))
    js = pathlib.Path(args.json or ROOT / "bench" / "out" / f"results-{mode}.json")
    js.parent.mkdir(parents=True, exist_ok=True)
    js.write_text(json.dumps(results, indent=1, default=str))
    log(f"\nwrote {md}, " + ", ".join(str(p) for p in plots) + f", {js}")
    log(f"total {elapsed:.0f} s ({mode} mode)")
    if results["errors"]:
        log("FAILED sections: " + ", ".join(f"{k} ({v})" for k, v in results["errors"].items()))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
