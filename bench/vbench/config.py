"""Where things are (repository, vekter library, child scripts) and how big each run is: the
quick and full modes' sizes, k and the list of sections."""
from __future__ import annotations

import os
import pathlib

BENCH = pathlib.Path(__file__).resolve().parents[1]  # bench/
ROOT = BENCH.parent
LIB = os.environ.get("VEKTER_LIB", str(ROOT / "dist" / "vekter")).removesuffix(".so")
EARLIER = BENCH / "earlier_measurements.md"
RUN_PY = BENCH / "run.py"  # also the sqlite-vss child (run.py --vss-exact)
CHILDREN = BENCH / "children"  # scripts the sections run in new processes
K = 10
SEARCH_THREADS = 1  # raw FAISS searches: one thread (one query per call)

# Sizes. Full mode is what docs/benchmarks.md documents; quick mode keeps every section but
# shrinks the data so that the whole run takes a few minutes on 2 cores.
MODES = {
    "quick": {
        "exact": [(50_000, 128), (10_000, 768)],
        "queries": 200, "budget_s": 2.0, "min_queries": 30,
        "ann": (20_000, 128), "ivf_nlist": 256, "ann_real": 10_000,
        "ef": [16, 32, 64, 128, 256], "nprobe": [1, 2, 4, 8, 16, 32, 64],
        "write": {"base": 10_000, "rows": 2_000, "dim": 128, "repeats": 3},
        "vss_timeout_s": 240,  # sqlite-vss: its inserts slow down with each row of a transaction
        "reopen_runs": 5,
        "percall": {"batches": 5, "calls": 2_000},
        "memory_queries": 20,
        "simd": {"queries": 200, "build_rows": 5_000},
        "threads": {"build_rows": 10_000, "seconds": 2.0},
        "partition": {"parts": 20, "rows": 2_000, "dim": 128},
        "batch": (5_000, 128),
        "interrupt": {"rows": 100_000},
    },
    "full": {
        "exact": [(1_000_000, 128), (100_000, 768)],
        "queries": 1_000, "budget_s": 20.0, "min_queries": 50,
        "ann": (100_000, 128), "ivf_nlist": 1024, "ann_real": 100_000,
        "ef": [16, 32, 64, 128, 256, 512], "nprobe": [1, 2, 4, 8, 16, 32, 64, 128],
        "write": {"base": 20_000, "rows": 50_000, "dim": 128, "repeats": 3},
        "vss_timeout_s": 300,
        "reopen_runs": 5,
        "percall": {"batches": 7, "calls": 10_000},
        "memory_queries": 100,
        "simd": {"queries": 1_000, "build_rows": 30_000},
        "threads": {"build_rows": 50_000, "seconds": 5.0},
        "partition": {"parts": 100, "rows": 10_000, "dim": 128},
        "batch": (20_000, 128),
        "interrupt": {"rows": 1_000_000},
    },
}
SECTIONS = ["exact", "ann", "ann_real", "simd", "threads", "write", "reopen", "percall", "memory", "partition", "batch", "interrupt"]
# Sections that use the files the ANN section leaves in the work directory.
NEEDS_ANN = ("simd", "threads", "reopen", "memory")


def child(name: str) -> str:
    """The path of a child script (bench/children/NAME.py), as an argument for run_child."""
    return str(CHILDREN / f"{name}.py")
