"""Sections `ann` and `ann_real`: recall@10 against exact ground truth vs median latency for HNSW
(vekter HNSW32 with per-query efSearch, raw FAISS IndexHNSWFlat, vectorlite) and IVF (vekter, raw
FAISS), with build times, and the time vekter adds to raw FAISS by k (IVF and Flat, k = 1, 10,
100). `ann` runs on generated data and leaves its files in the work directory for simd, threads,
reopen and memory; `ann_real` runs the same on real sentence embeddings (realdata.py)."""
from __future__ import annotations

import gc

import faiss
import numpy as np

from ..config import SEARCH_THREADS, K
from ..data import embeddings, ground_truth
from ..fmt import fmt_ms, fmt_recall, fmt_s, log
from ..harness import Backend, measure, timed, warm
from ..peers import (
    connect,
    faiss_ids,
    load_rows,
    raw_search,
    rows_ids,
    threads,
    vectorlite_search,
    vtab_search,
)

BY_K = (1, 10, 100)


def bench_ann(cfg, work, env):
    n, d = cfg["ann"]
    log(f"\n== ANN, {n:,} x {d} (generated), k={K}")
    base = embeddings(n, d, seed=30)
    queries = embeddings(cfg["queries"] + 3, d, seed=31)
    res = ann_case(cfg, work, env, base, queries, "ann", keep=True)
    res["data"] = "generated (`embeddings()` in bench/vbench/data.py)"
    return res


def bench_ann_real(cfg, work, env):
    from ..realdata import available, real_embeddings

    why = available()
    if why:
        log(f"\n== ANN on real sentence embeddings: skipped ({why})")
        return {"skipped": why}
    n = cfg["ann_real"]
    base, queries, info = real_embeddings(n, cfg["queries"] + 3)
    log(f"\n== ANN, {n:,} x {base.shape[1]} (real sentence embeddings: {info['model']}), k={K}")
    res = ann_case(cfg, work, env, base, queries, "real", keep=False)
    res["data"] = info
    return res


def ann_case(cfg, work, env, base, queries, prefix, keep):
    """HNSW, IVF and Flat on one data set; `keep`: leave the files the later sections use."""
    n, d = base.shape
    nlist = cfg["ivf_nlist"]
    gt = ground_truth(base, queries)
    res = {"n": n, "d": d, "nlist": nlist, "build": {}, "hnsw": {}, "ivf": {}, "exact": {}, "by_k": {}}
    build_threads = env["vekter_threads"]

    # HNSW ------------------------------------------------------------------------------
    hpath = work / f"{prefix}_hnsw.db"
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
        set_ef(BY_K_EF)
        res["by_k"]["hnsw"] = by_k(conn, "hnsw", f"efSearch={BY_K_EF}", raw_hnsw, queries, cfg)
        if "hnsw_default" in res:
            log(f"  vekter without params (efSearch 16): {fmt_ms(res['hnsw_default']['median_ms'])} ms")
        raw_hnsw.hnsw.efSearch = 16
    conn.close()

    # IVF -------------------------------------------------------------------------------
    ipath = work / f"{prefix}_ivf.db"
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
        set_nprobe(BY_K_NPROBE)
        res["by_k"]["ivf"] = by_k(conn, "ivf", f"nprobe={BY_K_NPROBE}", raw_ivf, queries, cfg)
    conn.close()
    ipath.unlink()

    # Exact reference on the same data (also the Flat file the reopen and memory sections use)
    fpath = work / f"{prefix}_flat.db"
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

    if not keep:
        hpath.unlink()
        fpath.unlink()
        return res
    # Kept for the reopen and memory sections: the same data, indexed by FAISS itself.
    faiss.write_index(raw_hnsw, str(work / "ann_hnsw.faissindex"))
    faiss.write_index(raw_flat, str(work / "ann_flat.faissindex"))
    queries[0].tofile(work / "query.f32")
    res["files_mb"] = {p.name: p.stat().st_size / 2**20 for p in
                       [hpath, fpath, work / "ann_hnsw.faissindex", work / "ann_flat.faissindex"]}
    raw_hnsw = raw_ivf = raw_flat = base = None
    gc.collect()
    return res


BY_K_NPROBE = 16
BY_K_EF = 64


def by_k(conn, table, params, raw, queries, cfg):
    """The time vekter adds to raw FAISS on the same search, by k: {k: {vekter_ms, faiss_ms,
    added_us}} (medians of interleaved blocks, as everywhere)."""
    out = {}
    for k in BY_K:
        row = measure({"vekter": Backend(vtab_search(conn, table, params, k=k), None),
                       "faiss": Backend(raw_search(raw, k=k), None)}, queries, None, cfg)
        v, f = row["vekter"]["median_ms"], row["faiss"]["median_ms"]
        out[k] = {"vekter_ms": v, "faiss_ms": f, "added_us": (v - f) * 1e3}
        log(f"  {table} k={k:<3}: vekter {fmt_ms(v)} ms, FAISS {fmt_ms(f)} ms, added {(v - f) * 1e3:.1f} µs")
    return out
