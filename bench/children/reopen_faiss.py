"""Child of bench/run.py (reopen section): first result from a FAISS index file in a new process.

    python reopen_faiss.py INDEX_PATH QUERY_F32

Prints one JSON line: seconds to import numpy and faiss ("load"), for faiss.read_index and the
first search ("first"), for a second search ("second"), and the first search's ids ("ids")."""
import json
import sys
import time

ipath, qpath = sys.argv[1:3]
with open(qpath, "rb") as f:
    qb = f.read()
t0 = time.perf_counter()
# Imported here on purpose: importing faiss (and numpy) is part of what "load" times.
import faiss
import numpy as np

faiss.omp_set_num_threads(1)
t1 = time.perf_counter()
index = faiss.read_index(ipath)
q = np.frombuffer(qb, dtype=np.float32).reshape(1, -1)
_, ids = index.search(q, 10)
t2 = time.perf_counter()
index.search(q, 10)
t3 = time.perf_counter()
print(json.dumps({"load": t1 - t0, "first": t2 - t1, "second": t3 - t2, "ids": ids[0].tolist()}))
