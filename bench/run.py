"""`make bench`: vekter against raw FAISS and the SQLite vector peers, in one process, on the
same generated data.

    python bench/run.py [--quick] [--out-dir DIR] [--json FILE] [--only SECTIONS] [--keep]
    python bench/run.py --from-json bench/out/results-full.json   # redo report and plots only

Sections (all run by default; `--only exact,ann` runs a subset):

  exact    k=10 exact search, one query per call: vekter's `faiss` table (Flat), vekter's
           `faiss_search` on a plain table, raw FAISS IndexFlatL2, sqlite-vec vec0 (and
           sqlite-vss when it loads).
  ann      recall@10 against exact ground truth vs median latency: HNSW (vekter HNSW32 with
           per-query efSearch, raw FAISS IndexHNSWFlat, vectorlite) and IVF (vekter and raw
           FAISS), with build times, and the time vekter adds to raw FAISS by k.
  ann_real the same on real sentence embeddings (all-MiniLM-L6-v2 of documentation passages
           found on the machine, computed once and cached: bench/vbench/realdata.py).
  write    N single-row INSERTs in one transaction: plain table, tables with a vekter HNSW32 or
           Flat index, sqlite-vec, vectorlite (and sqlite-vss); then the next search.
  threads  builds by vekter_threads(n); searches (HNSW, and big exact scans split over idle
           cores) from 1-8 connections at once.
  reopen   time to first result in a new process: vekter file vs faiss.read_index.
  percall  per-call overhead on a 100-row, 4-d index.
  batch    the nearest k of every row: neighbours_of IN (one search) against one query per call.
  interrupt  conn.interrupt() during a CREATE (Flat, HNSW32, IVF training): time to the error,
           and nothing left behind.
  memory   RSS of a process searching one vekter index file through 1 vs 4 connections.
  partition  one search in one of many partitions (`partition = tenant`) vs an index of that
           partition alone (vekter and raw FAISS), a filter over one unpartitioned index, and
           sqlite-vec's partition key.

Writes docs/benchmarks.md, docs/bench_recall_latency.png and docs/bench_ratios.png (or the
same names under --out-dir), and every measurement to bench/out/results-{quick,full}.json
(git-ignored). Every number is measured when the script runs.

The interpreter must be able to load SQLite extensions (Debian's /usr/bin/python3 can; use
the virtualenv `make bench` makes from it).

This file is the entry point (arguments and the section loop). The code is in the package
bench/vbench/ (config, data, peers, harness, machine, sections/, report/); the scripts the
sections run in new processes are in bench/children/.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time
import traceback

from vbench.config import MODES, NEEDS_ANN, ROOT, SEARCH_THREADS, SECTIONS
from vbench.fmt import log
from vbench.machine import environment
from vbench.report.console import summary
from vbench.report.load import load_results
from vbench.report.markdown import report
from vbench.report.plots import plot
from vbench.sections.ann import bench_ann, bench_ann_real
from vbench.sections.batch import bench_batch
from vbench.sections.exact import bench_exact, vss_exact
from vbench.sections.interrupt import bench_interrupt
from vbench.sections.memory import bench_memory
from vbench.sections.partition import bench_partition
from vbench.sections.percall import bench_percall
from vbench.sections.reopen import bench_reopen
from vbench.sections.simd import bench_simd
from vbench.sections.threads import bench_threads
from vbench.sections.write import bench_write


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    ap.add_argument("--out-dir", default=str(ROOT / "docs"), help="where benchmarks.md and the PNGs go (default: docs/)")
    ap.add_argument("--json", help="write every measurement to this JSON file "
                                   "(default: bench/out/results-quick.json or results-full.json)")
    ap.add_argument("--only", help=f"comma-separated subset of: {', '.join(SECTIONS)}")
    ap.add_argument("--work-dir", help="directory for the database files (default: a new temporary directory)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--from-json", metavar="FILE", help="measure nothing: rewrite the report and plots from a --json file")
    ap.add_argument("--vss-exact", metavar="NxD", help=argparse.SUPPRESS)  # internal: the sqlite-vss child
    args = ap.parse_args()

    if args.from_json:
        results = load_results(args.from_json)
        out_dir = pathlib.Path(args.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        plots = plot(results, out_dir, results["mode"])
        (out_dir / "benchmarks.md").write_text(report(results, results["config"], results["mode"], results["elapsed_s"], out_dir))
        log(summary(results))
        log(f"\nwrote {out_dir / 'benchmarks.md'}" + "".join(f", {p}" for p in plots))
        return 0

    mode = "quick" if args.quick else "full"
    cfg = MODES[mode]
    if args.vss_exact:
        n, d = (int(v) for v in args.vss_exact.split("x"))
        print(json.dumps(vss_exact(n, d, cfg, pathlib.Path(args.work_dir))))
        return 0
    only = SECTIONS if not args.only else [s.strip() for s in args.only.split(",")]
    for s in only:
        if s not in SECTIONS:
            ap.error(f"unknown section {s!r}")
    if any(s in only for s in NEEDS_ANN) and "ann" not in only:
        only = ["ann", *only]  # they use the ANN section's files
    out_dir = pathlib.Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(args.work_dir or tempfile.mkdtemp(prefix="vekter-bench-"))
    work.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    env = environment()
    log(f"vekter bench, {mode} mode: {env['nproc']} cores, {env['cpu']}; vekter {env['vekter_version']}, "
        f"faiss-cpu {env['faiss']} ({env['faiss_simd']}), sqlite-vec {env['sqlite_vec']}, "
        f"{env['vectorlite']}, sqlite-vss: {env.get('sqlite_vss') or env['vss']}")
    log(f"vekter_debug(): {env['vekter_debug']}")
    log(f"raw FAISS: searches on {SEARCH_THREADS} thread, builds on {env['vekter_threads']}; work dir {work}")
    results = {"mode": mode, "env": env, "config": cfg, "errors": {}}
    sections = {
        "exact": lambda: bench_exact(cfg, work, env),
        "ann": lambda: bench_ann(cfg, work, env),
        "ann_real": lambda: bench_ann_real(cfg, work, env),
        "write": lambda: bench_write(cfg, work, env),
        "simd": lambda: bench_simd(cfg, work, env, results["ann"]),
        "threads": lambda: bench_threads(cfg, work, env, results["ann"]),
        "reopen": lambda: bench_reopen(cfg, work, env, results["ann"]),
        "percall": lambda: bench_percall(cfg, work, env),
        "memory": lambda: bench_memory(cfg, work, env, results["ann"]),
        "partition": lambda: bench_partition(cfg, work, env),
        "batch": lambda: bench_batch(cfg, work, env),
        "interrupt": lambda: bench_interrupt(cfg, work, env),
    }
    try:
        for name in SECTIONS:
            if name not in only:
                continue
            if name in NEEDS_ANN and "ann" not in results:
                results["errors"][name] = "skipped: the ANN section did not complete"
                continue
            try:
                results[name] = sections[name]()
            except Exception:  # noqa: BLE001 - report it, run the other sections, fail at the end
                err = traceback.format_exc()
                log(f"\n!! section {name} failed:\n{err}")
                results["errors"][name] = err.strip().splitlines()[-1]
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    env["loadavg_end"] = os.getloadavg()
    elapsed = time.perf_counter() - t0
    results["elapsed_s"] = elapsed

    log("\n" + "=" * 100)
    log(summary(results))
    plots = plot(results, out_dir, mode)
    md = out_dir / "benchmarks.md"
    md.write_text(report(results, cfg, mode, elapsed, out_dir))
    js = pathlib.Path(args.json or ROOT / "bench" / "out" / f"results-{mode}.json")
    js.parent.mkdir(parents=True, exist_ok=True)
    js.write_text(json.dumps(results, indent=1, default=str))
    log(f"\nwrote {md}, " + ", ".join(str(p) for p in plots) + f", {js}")
    log(f"total {elapsed:.0f} s ({mode} mode)")
    if results["errors"]:
        log("FAILED sections: " + ", ".join(f"{k} ({v})" for k, v in results["errors"].items()))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
