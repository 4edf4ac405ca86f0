"""Child of bench/run.py (simd section): searches and builds with whichever of vekter's FAISS
builds the environment selects (VEKTER_SIMD=generic|avx2|avx512; unset: the best the CPU runs).

    python simd_search.py HNSW_DB FLAT_DB VEKTER_LIB N_QUERIES BUILD_ROWS

Prints one JSON line: the build in use ("simd", from vekter_debug()), median µs per query for
HNSW32 at efSearch 16/64/256, Flat and IVF64,PQ16 (nprobe=16), and the seconds to build
HNSW32 and IVF64,PQ16 over the first BUILD_ROWS rows in memory."""
import json
import sqlite3
import statistics
import sys
import time

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
