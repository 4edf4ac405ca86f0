"""The timing harness: timing a call, interleaved per-query latency and recall over several
backends, warm-up, and running a child script whose last stdout line is JSON."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from .config import K


def timed(f, *args):
    """(seconds, result) of f(*args)."""
    t = time.perf_counter()
    r = f(*args)
    return time.perf_counter() - t, r


class Backend:
    """One way of answering a query. `search(q)` is timed (the call and fetching its rows);
    `ids_of(result)` turns its result into rowids for recall, untimed; `enter`/`exit` run
    untimed around each call (e.g. a raw FAISS index's search parameter)."""

    def __init__(self, search, ids_of, enter=None, exit=None):
        self.search, self.ids_of, self.enter, self.exit = search, ids_of, enter, exit

    def __call__(self, q):
        if self.enter:
            self.enter()
        try:
            t0 = time.perf_counter_ns()
            r = self.search(q)
            return r, (time.perf_counter_ns() - t0) / 1e6
        finally:
            if self.exit:
                self.exit()


def measure(backends, queries, gt, cfg, warmup=3, block=25):
    """Median latency of one query per call for each backend. Each backend answers every query
    once, in blocks of `block` queries: each backend in turn runs a block (after `warmup`
    untimed calls, so it starts warm, as in steady use), with a different backend first in each
    round, so drift in machine load hits them alike. Runs up to cfg['queries'] queries and stops
    after a round once cfg['min_queries'] are done and cfg['budget_s'] seconds per backend have
    passed. Returns {name: {median_ms, p90_ms, n, recall}}."""
    names = list(backends)
    times = {n: [] for n in names}
    recalls = {n: [] for n in names}
    budget = cfg["budget_s"] * len(names)
    nq = min(cfg["queries"], len(queries) - warmup)
    start = time.perf_counter()
    for r, lo in enumerate(range(0, nq, block)):
        for name in names[r % len(names):] + names[:r % len(names)]:
            b = backends[name]
            for q in queries[-warmup:]:
                b(q)
            for i in range(lo, min(nq, lo + block)):
                raw, ms = b(queries[i])
                times[name].append(ms)
                if gt is not None:
                    got = b.ids_of(raw)
                    recalls[name].append(len(set(got[:K]) & set(gt[i][:K].tolist())) / K)
        if lo + block >= cfg["min_queries"] and time.perf_counter() - start > budget:
            break
    return {n: {
        "median_ms": statistics.median(times[n]),
        "p90_ms": float(np.percentile(times[n], 90)),
        "n": len(times[n]),
        "recall": statistics.fmean(recalls[n]) if recalls[n] else None,
    } for n in names}


def warm(backends, queries, n=50):
    """Run each backend on n queries (the last ones; measure() times the first ones) so that
    nothing pays for cold caches."""
    for b in backends.values():
        for q in queries[-n:]:
            b(q)


def run_child(args, timeout=None, env=None, wall=True):
    """Run a Python script (args[0], then its arguments) in a new process; its last stdout line
    is JSON. With `wall`, adds the child's wall time (Python's start-up included) as "wall"."""
    t = time.perf_counter()
    p = subprocess.run([sys.executable, *args], capture_output=True, timeout=timeout, check=False,
                       env=None if env is None else {**os.environ, **env})
    p.stdout, p.stderr = p.stdout.decode(), p.stderr.decode(errors="replace")
    elapsed = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"child failed (exit status {p.returncode}): {p.stderr.strip()[-2000:]}")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    if wall:
        out["wall"] = elapsed
    return out
