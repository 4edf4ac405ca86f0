"""Section `reopen`: time to the first result in a new process, vekter file vs faiss.read_index
(children/reopen_vekter.py and children/reopen_faiss.py, alternating)."""
from __future__ import annotations

import pathlib
import statistics

from ..config import LIB, child
from ..fmt import fmt_ms, log
from ..harness import run_child


def bench_reopen(cfg, work, env, ann):
    log(f"\n== reopen: first result in a new process ({ann['n']:,} x {ann['d']})")
    vek_child, raw_child = child("reopen_vekter"), child("reopen_faiss")
    q = str(work / "query.f32")
    cases = {
        "hnsw": ([vek_child, str(work / "ann_hnsw.db"), LIB, "hnsw", q],
                 [raw_child, str(work / "ann_hnsw.faissindex"), q]),
        "flat": ([vek_child, str(work / "ann_flat.db"), LIB, "flat", q],
                 [raw_child, str(work / "ann_flat.faissindex"), q]),
    }
    big = env.get("reopen_big")
    if big:  # the exact section's largest Flat file (1,000,000 × 128 in full mode)
        bq = str(work / "exact_query.f32")
        cases["flat_big"] = ([vek_child, big["db"], LIB, "idx", bq],
                             [raw_child, str(work / "exact_big.faissindex"), bq])
    out = {"n": ann["n"], "d": ann["d"], "runs": cfg["reopen_runs"], "cases": {},
           "big": {k: big[k] for k in ("n", "d")} if big else None}
    for name, (vek, raw) in cases.items():
        runs = {"vekter": [], "faiss": []}
        for _ in range(cfg["reopen_runs"]):  # alternate, so drift hits both alike
            runs["vekter"].append(run_child(vek))
            runs["faiss"].append(run_child(raw))
        case = {}
        for who, rs in runs.items():
            keys = ("load", "first", "second", "wall") + (("check", "seal") if who == "vekter" else ())
            case[who] = {k: statistics.median(r[k] for r in rs) for k in keys}
        case["same_ids"] = runs["vekter"][0]["ids"] == runs["faiss"][0]["ids"]
        if name == "flat_big":
            case["vekter_file_mb"], case["faiss_file_mb"] = big["db_mb"], big["faiss_mb"]
        else:
            case["vekter_file_mb"] = ann["files_mb"][f"ann_{name}.db"]
            case["faiss_file_mb"] = ann["files_mb"][f"ann_{name}.faissindex"]
        out["cases"][name] = case
        log(f"  {name}: vekter open+first query {fmt_ms(case['vekter']['first'] * 1e3)} ms "
            f"(check {fmt_ms(case['vekter']['check'] * 1e3)} ms, seal {fmt_ms(case['vekter']['seal'] * 1e3)} ms) "
            f"(process {fmt_ms(case['vekter']['wall'] * 1e3)} ms); faiss.read_index+search "
            f"{fmt_ms(case['faiss']['first'] * 1e3)} ms (process {fmt_ms(case['faiss']['wall'] * 1e3)} ms)")
    if big:
        pathlib.Path(big["db"]).unlink(missing_ok=True)
        (work / "exact_big.faissindex").unlink(missing_ok=True)
    return out
