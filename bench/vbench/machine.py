"""Facts about the machine and the software under test, recorded with every run: CPU, memory,
OS, versions of Python / SQLite / numpy / faiss-cpu / vekter / the peers, read bandwidth, load."""
from __future__ import annotations

import datetime
import json
import os
import platform
import sqlite3
import time

import faiss
import numpy as np

from .peers import connect, simd_level, vss_status


def read_bandwidth():
    """The machine's single-thread read bandwidth (GB/s): best of numpy float32 sums over a
    1 GiB array (memory-bound, one thread, vectorised)."""
    a = np.ones(2**28, dtype=np.float32)
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        a.sum()
        best = max(best, a.nbytes / (time.perf_counter() - t) / 1e9)
    return best


def environment():
    env = {}
    env["date"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    env["nproc"] = os.cpu_count()
    cpu = "unknown"
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu == "unknown":
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    env["cpu"] = cpu
    env["cpu_simd"] = " ".join(f for f in ("sse4_2", "avx", "avx2", "fma", "avx512f") if f in flags)
    try:
        with open("/proc/meminfo") as f:
            mem = next(line for line in f if line.startswith("MemTotal"))
        env["mem_gb"] = int(mem.split()[1]) / 2**20
    except (OSError, StopIteration):
        env["mem_gb"] = None
    env["os"] = platform.platform()
    try:
        with open("/etc/os-release") as f:
            env["os_release"] = next(line.split("=", 1)[1].strip().strip('"') for line in f
                                     if line.startswith("PRETTY_NAME="))
    except (OSError, StopIteration):
        env["os_release"] = None
    env["python"] = platform.python_version()
    env["sqlite"] = sqlite3.sqlite_version
    env["numpy"] = np.__version__
    env["faiss"] = faiss.__version__
    env["faiss_simd"] = simd_level()
    env["faiss_compile"] = faiss.get_compile_options()
    c = connect(":memory:", "vec", "vectorlite")
    env["vekter_version"], dbg = c.execute("select vekter_version(), vekter_debug()").fetchone()
    env["vekter_debug"] = dbg
    env["vekter_threads"] = json.loads(dbg)["threads"]["build"]
    env["read_gbs"] = read_bandwidth()
    env["sqlite_vec"] = c.execute("select vec_version()").fetchone()[0]
    env["vectorlite"] = c.execute("select vectorlite_info()").fetchone()[0]
    c.close()
    env["vss"] = vss_status()
    if env["vss"] is None:
        c = connect(":memory:", "vss")
        env["sqlite_vss"] = c.execute("select vss_version()").fetchone()[0]
        c.close()
    env["loadavg_start"] = os.getloadavg()
    return env
