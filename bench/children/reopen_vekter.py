"""Child of bench/run.py (reopen section): first result from a vekter file in a new process.

    python reopen_vekter.py DB_PATH VEKTER_LIB TABLE QUERY_F32

Prints one JSON line: seconds to connect and load the extension ("load"), for the first query
("first") and a second one ("second"), the first query's ids ("ids", 0-based), and from
vekter_debug() the seconds the first query spent reading and checking the stored snapshot
("check": chunks, lengths, checksum, seal) and, of those, hashing its seal ("seal")."""
import json
import sqlite3
import sys
import time

path, lib, table, qpath = sys.argv[1:5]
with open(qpath, "rb") as f:
    q = f.read()
t0 = time.perf_counter()
c = sqlite3.connect(path)
c.enable_load_extension(True)
c.load_extension(lib)
t1 = time.perf_counter()
ids = [r[0] - 1 for r in c.execute(f"select rowid from {table} where query = ? and k = 10", [q])]
t2 = time.perf_counter()
c.execute(f"select rowid from {table} where query = ? and k = 10", [q]).fetchall()
t3 = time.perf_counter()
verified = json.loads(c.execute("select vekter_debug()").fetchone()[0]).get("snapshots", {}).get("last_verified", {})
print(json.dumps({"load": t1 - t0, "first": t2 - t1, "second": t3 - t2, "ids": ids,
                  "check": verified.get("ms", 0) / 1e3, "seal": verified.get("seal_ms", 0) / 1e3}))
