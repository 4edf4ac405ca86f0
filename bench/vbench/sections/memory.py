"""Section `memory`: VmRSS of a new process searching one vekter index file through 1 vs 4
connections (children/memory_vekter.py), and of one using faiss.read_index (children/memory_faiss.py)."""
from __future__ import annotations

from ..config import LIB, child
from ..fmt import log
from ..harness import run_child


def mb(kb):
    return kb / 1024


def bench_memory(cfg, work, env, ann):
    log(f"\n== memory: VmRSS of a process searching one vekter file ({ann['n']:,} x {ann['d']})")
    out = {"n": ann["n"], "d": ann["d"], "queries_per_connection": cfg["memory_queries"], "cases": {}}
    for name in ("hnsw", "flat"):
        case = {}
        for nconn in (1, 4):
            r = run_child([child("memory_vekter"), str(work / f"ann_{name}.db"), LIB, name, str(nconn),
                           str(cfg["memory_queries"])])
            case[nconn] = r
        case["faiss"] = run_child([child("memory_faiss"), str(work / f"ann_{name}.faissindex")])
        out["cases"][name] = case
        log(f"  {name}: 1 connection {mb(case[1]['end_kb']):.0f} MB, 4 connections {mb(case[4]['end_kb']):.0f} MB "
            f"(index {case[1]['index_bytes'] / 2**20:.0f} MB; faiss.read_index process {mb(case['faiss']['end_kb']):.0f} MB)")
    return out
