"""Section `ann`: recall@10 against exact ground truth vs median latency for HNSW (vekter HNSW32
with per-query efSearch, raw FAISS IndexHNSWFlat, vectorlite) and IVF (vekter, raw FAISS), with
build times. Leaves its files in the work directory for simd, threads, reopen and memory."""
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
