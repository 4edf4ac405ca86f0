"""Section `partition`: one search in one of many partitions (`partition = tenant`), against
what an index of that partition alone costs: a partial index (`where = 'tenant = 7'`) over the
same table, a vekter table over a copy of the partition's rows, and raw FAISS over its vectors;
with the alternatives a user without partitions has (one unpartitioned index filtered by
`rowid IN (…)`) and sqlite-vec's `partition key`."""
from __future__ import annotations

import faiss
import numpy as np

from ..config import SEARCH_THREADS, K
from ..data import embeddings
from ..fmt import fmt_ms, fmt_recall, fmt_s, log
from ..harness import Backend, measure, timed, warm
from ..peers import connect, raw_search, rows_ids, threads

TENANT = 7  # the partition every query searches


def bench_partition(cfg, work, env):
    pc = cfg["partition"]
    parts, rows, d = pc["parts"], pc["rows"], pc["dim"]
    n = parts * rows
    log(f"\n== partitions: {parts} tenants x {rows:,} rows, {d}-d, k={K}; every query searches tenant {TENANT}")
    data = embeddings(n, d, seed=60)
    tenant = np.arange(n) % parts  # row i (rowid i + 1) belongs to tenant i % parts
    mine = np.flatnonzero(tenant == TENANT)
    queries = embeddings(cfg["queries"] + 3, d, seed=61)
    # Exact neighbours within the tenant, as rowids.
    with threads(env["nproc"]):
        exact = faiss.IndexFlatL2(d)
        exact.add(data[mine])
        _, pos = exact.search(queries, K)
    gt = mine[pos] + 1

    conn = connect(work / "partition.db", "vec")
    build = {}
    conn.execute("create table docs (id integer primary key, tenant integer, embedding blob)")
    build["table_load"], _ = timed(lambda: insert(conn, "insert into docs values (?, ?, ?)", data, tenant))
    conn.execute("create index docs_tenant on docs (tenant)")
    build["vekter_partitioned"], _ = timed(
        conn.execute, "create virtual table parts_idx using faiss(content = docs, partition = tenant)")
    # The partition alone: a partial index over the same table, and a table of its own (same
    # rowids, a small table to look results up in).
    build["vekter_partial"], _ = timed(
        conn.execute, f"create virtual table partial_idx using faiss(content = docs, where = 'tenant = {TENANT}')")
    conn.execute("create table alone (id integer primary key, embedding blob)")
    conn.execute(f"insert into alone select id, embedding from docs where tenant = {TENANT}")
    build["vekter_alone"], _ = timed(conn.execute, "create virtual table alone_idx using faiss(content = alone)")
    build["vekter_whole"], _ = timed(conn.execute, "create virtual table whole_idx using faiss(content = docs)")
    conn.execute(f"create virtual table docs_vec using vec0(tenant integer partition key, embedding float[{d}])")
    build["vec"], _ = timed(lambda: insert(conn, "insert into docs_vec (rowid, tenant, embedding) values (?, ?, ?)", data, tenant))
    raw = faiss.IndexFlatL2(d)
    build["faiss_alone"], _ = timed(raw.add, data[mine])
    for name, s in build.items():
        log(f"  build {name:<20} {fmt_s(s)} s")

    def sql(statement, *extra):
        return lambda q: conn.execute(statement, [q.tobytes(), *extra]).fetchall()

    backends = {
        "partitioned": Backend(sql(f"select rowid, distance from parts_idx where query = ? and k = {K} and tenant = ?", TENANT),
                               rows_ids),
        "partial": Backend(sql(f"select rowid, distance from partial_idx where query = ? and k = {K}"), rows_ids),
        "alone": Backend(sql(f"select rowid, distance from alone_idx where query = ? and k = {K}"), rows_ids),
        "filtered": Backend(sql(f"select rowid, distance from whole_idx where query = ? and k = {K} "
                                "and rowid in (select id from docs where tenant = ?)", TENANT), rows_ids),
        "vec": Backend(sql(f"select rowid, distance from docs_vec where embedding match ? and k = {K} and tenant = ?", TENANT),
                       rows_ids),
        "faiss": Backend(raw_search(raw), lambda r: [int(mine[i]) + 1 for i in r[1][0]]),
    }
    with threads(SEARCH_THREADS):
        warm(backends, queries)
        res = measure(backends, queries, gt, cfg)
    for name, m in res.items():
        log(f"  {name:<12} {fmt_ms(m['median_ms'])} ms  recall {fmt_recall(m['recall'])}")
    conn.close()
    return {"parts": parts, "rows": rows, "d": d, "tenant": TENANT, "build_s": build, "methods": res}


def insert(conn, sql, data, tenant):
    conn.execute("begin")
    conn.executemany(sql, ((i + 1, int(tenant[i]), data[i].tobytes()) for i in range(len(data))))
    conn.execute("commit")
