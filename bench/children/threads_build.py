"""Child of bench/run.py (threads section): an HNSW32 build with vekter_threads(N).

    python threads_build.py FLAT_DB VEKTER_LIB ROWS N

Copies the first ROWS rows of FLAT_DB's table t into memory, builds HNSW32 over them and
prints one JSON line: {"threads": N, "build_s": seconds}."""
import json
import sqlite3
import sys
import time

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
