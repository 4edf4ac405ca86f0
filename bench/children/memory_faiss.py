"""Child of bench/run.py (memory section): VmRSS of a process that reads a FAISS index file
with faiss.read_index and searches it once.

    python memory_faiss.py INDEX_PATH

Prints one JSON line: VmRSS in kB at the start, after importing numpy and faiss, and at the end."""
import json
import sys

from procstat import rss

base = rss()
# Imported here on purpose: their memory is part of what "loaded_kb" shows.
import faiss
import numpy as np

loaded = rss()
index = faiss.read_index(sys.argv[1])
q = np.zeros((1, index.d), dtype=np.float32)
index.search(q, 10)
print(json.dumps({"base_kb": base, "loaded_kb": loaded, "end_kb": rss()}))
