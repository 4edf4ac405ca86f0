"""Child of bench/run.py (memory section): VmRSS of a process searching one vekter file.

    python memory_vekter.py DB_PATH VEKTER_LIB TABLE N_CONNECTIONS N_QUERIES

Opens N_CONNECTIONS connections (each loads vekter), runs N_QUERIES queries on each and prints
one JSON line: VmRSS in kB at the start, after loading, after the first connection's queries
and at the end, and the index's bytes from faiss_indexes."""
import json
import sqlite3
import sys

from procstat import rss

path, lib, table, nconn, nq = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])


base = rss()
conns = []
for _ in range(nconn):
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
