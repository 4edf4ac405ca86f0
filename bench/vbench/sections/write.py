"""Section `write`: N single-row INSERTs in one transaction into a plain table, tables with a
vekter HNSW32 or Flat index, sqlite-vec, vectorlite (and sqlite-vss); then the next search, which
applies them to vekter's indexes (and raw FAISS's HNSW32 add of the same rows, to compare)."""
from __future__ import annotations

import statistics

import faiss

from ..config import K
from ..data import embeddings
from ..fmt import fmt_ms, fmt_ratio, log
from ..harness import timed
from ..peers import connect, load_rows

INSERT_SQL = {
    "plain": "insert into plain (id, embedding) values (?, ?)",
    "vekter_hnsw": "insert into t_hnsw (id, embedding) values (?, ?)",
    "vekter_flat": "insert into t_flat (id, embedding) values (?, ?)",
    "vec": "insert into v (rowid, embedding) values (?, ?)",
    "vectorlite": "insert into vl (rowid, embedding) values (?, ?)",
    "vss": "insert into vss (rowid, embedding) values (?, ?)",
}


def searches_of(conn):
    """For each target, a k-nearest-neighbour search on conn (the query as bytes)."""
    return {
        "plain": lambda q: conn.execute(f"select faiss_search('main', 'plain', ?, {K})", [q]).fetchone(),
        "vekter_hnsw": lambda q: conn.execute(f"select rowid from hnsw where query = ? and k = {K}", [q]).fetchall(),
        "vekter_flat": lambda q: conn.execute(f"select rowid from flat where query = ? and k = {K}", [q]).fetchall(),
        "vec": lambda q: conn.execute(f"select rowid from v where embedding match ? and k = {K}", [q]).fetchall(),
        "vectorlite": lambda q: conn.execute(f"select rowid from vl where knn_search(embedding, knn_param(?, {K}))", [q]).fetchall(),
        "vss": lambda q: conn.execute(f"select rowid from vss where vss_search(embedding, vss_search_params(?, {K}))", [q]).fetchall(),
    }


def insert_each(conn, sql, rows):
    """Every row as its own INSERT statement, all in one transaction."""
    conn.execute("begin")
    for row in rows:
        conn.execute(sql, row)
    conn.execute("commit")


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
        searches = searches_of(conn)
        # Warm every search path before the writes (the plain table's exact index is built
        # by its first faiss_search), so "next search" measures only catching up.
        for t in targets:
            searches[t](qs[0])
        for t in targets:
            rows = [(n_base + 1 + i, new[i].tobytes()) for i in range(n_rows)]
            insert_s[t].append(timed(insert_each, conn, INSERT_SQL[t], rows)[0])
            search_s[t].append(timed(searches[t], qs[0])[0])
            # steady state: the median of 20 more searches
            after = [timed(searches[t], v)[0] for v in qs[1:]]
            second_s[t].append(statistics.median(after))
        conn.close()
        path.unlink()
    # FAISS's own add of the same rows into an HNSW32 index holding the same base: what the
    # HNSW catch-up (vekter_hnsw's next search) is made of.
    raw_add = []
    for _ in range(w["repeats"]):
        idx = faiss.IndexHNSWFlat(d, 32)
        idx.add(base)
        raw_add.append(timed(idx.add, new)[0])
    med = statistics.median
    out = {"d": d, "base": n_base, "rows": n_rows, "repeats": w["repeats"], "targets": {},
           "faiss_hnsw_add_ms": med(raw_add) * 1e3}
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
    log(f"  raw FAISS HNSW32 add of the same rows: {fmt_ms(out['faiss_hnsw_add_ms'])} ms")
    return out
