"""Section `simd`: the ANN section's files searched (and small indexes built) by each of
vekter's FAISS builds, one child process per build (children/simd_search.py): VEKTER_SIMD=generic
keeps the baseline build; avx2 / avx512 pick vekter_avx2.so / vekter_avx512.so."""
from __future__ import annotations

from ..config import LIB, child
from ..fmt import log
from ..harness import run_child


def bench_simd(cfg, work, env, ann):
    c = cfg["simd"]
    log(f"\n== SIMD: vekter's FAISS builds side by side ({ann['n']:,} x {ann['d']})")
    args = [child("simd_search"), str(work / "ann_hnsw.db"), str(work / "ann_flat.db"), LIB,
            str(c["queries"]), str(c["build_rows"])]
    out = {"n": ann["n"], "d": ann["d"], "queries": c["queries"], "build_rows": c["build_rows"], "levels": {}}
    for level in ("generic", "avx2", "avx512"):
        try:
            r = run_child(args, env={"VEKTER_SIMD": level})
        except RuntimeError as e:  # this CPU cannot run that build: loading it refuses
            out["levels"][level] = {"error": str(e).strip().splitlines()[-1]}
            log(f"  {level:<8} not available: {out['levels'][level]['error']}")
            continue
        out["levels"][r["simd"]["level"]] = r
        log(f"  {r['simd']['level']:<8} HNSW efSearch=16/64/256 {r['hnsw_ef16_us']:.0f}/{r['hnsw_ef64_us']:.0f}/"
            f"{r['hnsw_ef256_us']:.0f} µs, Flat {r['flat_us'] / 1e3:.2f} ms, IVF64,PQ16 nprobe=16 {r['ivfpq_us']:.0f} µs; "
            f"build {c['build_rows']:,} rows: HNSW32 {r['build_hnsw_s']:.2f} s, IVF64,PQ16 {r['build_ivfpq_s']:.2f} s")
    return out
