"""The markdown report (docs/benchmarks.md): setup, summary, goals, and one part per section."""
from __future__ import annotations

import json

from ..config import EARLIER, SEARCH_THREADS, K
from ..fmt import fmt_ms, fmt_ratio, fmt_recall, fmt_s, md_table
from .derived import goals, ratio_items, reopen_label

LABELS = {
    "faiss": "raw FAISS IndexFlatL2 (faiss-cpu)",
    "faiss_nosimd": "raw FAISS IndexFlatL2, SIMD level forced to NONE",
    "vekter_vtab": "vekter `faiss` table `idx` over `t` (Flat): `WHERE query = ? AND k = 10`",
    "vekter_fn": "vekter `faiss_search('main', 't_plain', ?, 10)` (plain table)",
    "vec": "sqlite-vec `vec0`: `WHERE embedding MATCH ? AND k = 10`",
    "vss": "sqlite-vss `vss0` (Flat): `vss_search(…, vss_search_params(?, 10))`",
}


def exact_rows(ex):
    base = ex["methods"]["faiss"]["median_ms"]
    rows = []
    for key in ("faiss", "faiss_nosimd", "vekter_vtab", "vekter_fn", "vec", "vss"):
        m = ex["methods"].get(key)
        if m is None:
            continue
        if "error" in m:
            rows.append([LABELS[key], "not measured: " + m["error"], "", "", "", "", ""])
            continue
        build = m.get("build_s")
        rows.append([LABELS[key], fmt_s(build) if build is not None else "–", fmt_ms(m["median_ms"]),
                     fmt_ms(m["p90_ms"]), fmt_ratio(m["median_ms"] / base), fmt_recall(m["recall"]), m["n"]])
    return rows


EXACT_HEADER = ["method", "build / load (s)", "median (ms)", "p90 (ms)", "vs FAISS", "recall@10", "queries"]


def ann_rows(ann, kind):
    rows = []
    table = ann["hnsw"] if kind == "hnsw" else ann["ivf"]
    for p, row in table.items():
        f = row["faiss"]["median_ms"]
        cells = [p]
        for who in (["vekter", "faiss", "vectorlite"] if kind == "hnsw" else ["vekter", "faiss"]):
            m = row[who]
            cells += [fmt_recall(m["recall"]), fmt_ms(m["median_ms"])]
        cells.append(fmt_ratio(row["vekter"]["median_ms"] / f))
        if kind == "hnsw":
            cells.append(fmt_ratio(row["vectorlite"]["median_ms"] / f))
        rows.append(cells)
    return rows


def ann_part(ann, env, title, png, intro=None):
    """The report's part for one ANN data set."""
    L = [title] + ([intro] if intro else []) + [f"![recall vs latency]({png})\n"]
    b = ann["build"]
    L.append("### Build\n")
    L.append(md_table(["index", "seconds", "what is timed"], [
        ["vekter `factory = 'HNSW32'`", fmt_s(b["vekter_hnsw"]), "`CREATE VIRTUAL TABLE … USING faiss(…)`: read the table, build, save the snapshot"],
        ["raw FAISS `IndexHNSWFlat(d, 32)`", fmt_s(b["faiss_hnsw"]), f"`add` ({env['vekter_threads']} threads)"],
        ["vectorlite `hnsw(max_elements=N, M=32, ef_construction=40)`", fmt_s(b["vectorlite_hnsw"]), "inserting every row in one transaction"],
        [f"vekter `factory = 'IVF{ann['nlist']},Flat'`", fmt_s(b["vekter_ivf"]), "create: train on a 50,000-row sample (default `train_size`), add, save"],
        [f"raw FAISS `IVF{ann['nlist']},Flat`", fmt_s(b["faiss_ivf"]), f"`train` on a 50,000-row sample + `add` ({env['vekter_threads']} threads)"],
        ["vekter Flat", fmt_s(b["vekter_flat"]), "create (exact reference)"],
    ]))
    L.append("")
    L.append("vectorlite gets FAISS HNSW32's construction parameters (32 links per node, 64 on level 0; "
             "efConstruction 40) so the graphs are comparable; its defaults are M=16, ef_construction=200.\n")
    L.append("### HNSW: recall@10 and median latency (ms)\n")
    L.append("vekter: `SELECT rowid, distance FROM hnsw WHERE query = ? AND k = 10 AND params = 'efSearch=N'`; "
             "raw FAISS: `index.hnsw.efSearch = N`; vectorlite: `knn_search(embedding, knn_param(?, 10, N))`.\n")
    L.append(md_table(["efSearch", "vekter recall", "vekter ms", "FAISS recall", "FAISS ms", "vectorlite recall",
                       "vectorlite ms", "vekter / FAISS", "vectorlite / FAISS"], ann_rows(ann, "hnsw")))
    hd = ann.get("hnsw_default")
    L.append("")
    with16 = ann["hnsw"].get(16, {}).get("vekter")
    if hd:
        L.append(f"Without `params` (the table default: FAISS's efSearch = 16) vekter answers in {fmt_ms(hd['median_ms'])} ms "
                 f"with recall {fmt_recall(hd['recall'])}"
                 + (f"; with `params = 'efSearch=16'` (the same search, set per query) in "
                    f"{fmt_ms(with16['median_ms'])} ms" if with16 else "") + ".\n")
    L.append(f"### IVF{ann['nlist']},Flat: recall@10 and median latency (ms)\n")
    L.append("vekter: `… AND params = 'nprobe=N'`; raw FAISS: `nprobe = N`.\n")
    L.append(md_table(["nprobe", "vekter recall", "vekter ms", "FAISS recall", "FAISS ms", "vekter / FAISS"],
                      ann_rows(ann, "ivf")))
    L.append("")
    ex = ann["exact"]
    L.append(f"Exact reference on the same data: vekter Flat table {fmt_ms(ex['vekter']['median_ms'])} ms, raw FAISS "
             f"`IndexFlatL2` {fmt_ms(ex['faiss']['median_ms'])} ms.\n")
    by_k = ann.get("by_k")
    if by_k:
        L.append("### Time vekter adds to raw FAISS, by k\n")
        L.append("The same search through SQL and through raw FAISS, interleaved (median of each): the difference is "
                 "what vekter adds (the SQL statement, reading the rows of the hits, Python's call into SQLite). "
                 "Goal (issue 13): at most 15 µs + 0.5 µs per returned row.\n")
        rows = []
        for kind, tab in by_k.items():
            name = "HNSW32 efSearch=64" if kind == "hnsw" else f"IVF{ann['nlist']},Flat nprobe=16"
            for k, m in tab.items():
                rows.append([name, k, f"{m['vekter_ms'] * 1e3:.0f}", f"{m['faiss_ms'] * 1e3:.0f}",
                             f"{m['added_us']:.1f}", f"{15 + 0.5 * k:g}"])
        L.append(md_table(["index", "k", "vekter µs", "raw FAISS µs", "added µs", "goal µs"], rows))
        L.append("")
    return L


def report(results, cfg, mode, elapsed, out_dir):
    env = results["env"]
    L = []
    L.append("# Benchmarks\n")
    L.append(f"Written by `make bench{' QUICK=1' if mode == 'quick' else ''}` (`bench/run.py"
             f"{' --quick' if mode == 'quick' else ''}`) on {env['date']}, **{mode} mode**"
             f"{' (small sizes: a smoke test of the harness, not the documented figures; run `make bench` for those)' if mode == 'quick' else ''}."
             f" The whole run took {elapsed / 60:.1f} minutes. Every backend runs in one Python process on"
             " the same generated data; every number below was measured by that run.\n")
    L.append("## Setup\n")
    vss = f"sqlite-vss {env['sqlite_vss']}" if env["vss"] is None else f"sqlite-vss: skipped ({env['vss']})"
    L.append(md_table(["", ""], [
        ["machine", (f"{env['nproc']} cores, {env['cpu']} ({env['cpu_simd']}), {env['mem_gb']:.0f} GB RAM; "
                     f"single-thread read bandwidth {env.get('read_gbs', 0):.1f} GB/s (numpy sum over 1 GiB)")],
        ["system", f"{env['os_release'] or env['os']}; Python {env['python']}, SQLite {env['sqlite']} (the `sqlite3` module), numpy {env['numpy']}"],
        ["load average", f"{env['loadavg_start'][0]:.2f} at the start, {env['loadavg_end'][0]:.2f} at the end (1-minute)"],
        ["vekter", f"`vekter_version()` = {env['vekter_version']}; `vekter_debug()` = `{env['vekter_debug']}`"],
        ["raw FAISS", (f"faiss-cpu {env['faiss']} ({env['faiss_compile'].strip()}; SIMD level in use: {env['faiss_simd']}); "
                       f"searches with `faiss.omp_set_num_threads({SEARCH_THREADS})`, index builds with {env['vekter_threads']} threads (vekter's `vekter_threads()`)")],
        ["peers", f"sqlite-vec {env['sqlite_vec']}; vectorlite-py ({env['vectorlite']}); {vss}"],
    ]))
    L.append("")
    L.append("Method: one query per call from Python (`conn.execute(...).fetchall()` for SQL, `index.search` for "
             f"raw FAISS), k = {K}; latency is the median over the queries. Backends compared with each other answer "
             "the same queries, each query once, in blocks of 25 queries per backend (3 untimed warm-up calls before "
             "each block) with the backends taking turns and a different one first in each round, so that a change in "
             f"machine load hits them alike. Measurement stops after {cfg['budget_s']:.0f} s per backend once "
             f"{cfg['min_queries']} queries are done (the `queries` column says how many ran). Recall@10 is against "
             "exact ground truth from FAISS `IndexFlatL2`. Database files are on local disk and hot in the OS page "
             "cache. Data: `embeddings()` in `bench/vbench/data.py` — a mixture of 512 overlapping Gaussian clusters in a "
             "d/2-dimensional latent space, mapped to d dimensions plus noise; queries are fresh draws from the same "
             "distribution (deterministic seeds). Python's own call overhead is in every SQL and raw-FAISS figure alike "
             "(see *Per-call overhead*).\n")

    items = ratio_items(results)
    if items:
        L.append("## Summary\n")
        L.append("Median latency per query against raw FAISS at the same setting (details and every setting below; "
                 "the chart is at the end).\n")
        L.append(md_table(["case", "backend", "median", "raw FAISS", "ratio"],
                          [[g, label, f"{fmt_ms(v)} {u}", f"{fmt_ms(b)} {u}", fmt_ratio(v / b)]
                           for g, label, v, b, u in items]))
        L.append("")
        w = results.get("write")
        if w and "vekter_hnsw" in w["targets"]:
            t = w["targets"]
            L.append("Writes, time per single-row INSERT relative to a table without an index: "
                     + ", ".join(f"{name} {fmt_ratio(t[k]['ratio_vs_plain'])}" for k, name in
                                 (("vekter_hnsw", "vekter HNSW32"), ("vekter_flat", "vekter Flat"), ("vec", "sqlite-vec"),
                                  ("vectorlite", "vectorlite"), ("vss", "sqlite-vss")) if k in t)
                     + " (vekter indexes the rows at the next search; see *Write path*).\n")
        ro = results.get("reopen")
        if ro:
            c = ro["cases"]
            L.append("Reopen, open + first query in a new process: " + "; ".join(
                f"{reopen_label(n, ro)} vekter {fmt_ms(c[n]['vekter']['first'] * 1e3)} ms vs "
                f"`faiss.read_index` {fmt_ms(c[n]['faiss']['first'] * 1e3)} ms" for n in c) + ".\n")
        mem = results.get("memory")
        if mem:
            c = mem["cases"]
            L.append("Memory, 4 connections instead of 1 searching one file: " + "; ".join(
                f"{'HNSW32' if n == 'hnsw' else 'Flat'} {(c[n][4]['end_kb'] - c[n][1]['end_kb']) / 1024:+.0f} MB "
                f"(index {c[n][1]['index_bytes'] / 2**20:.0f} MB)" for n in c) + ".\n")

    g = goals(results)
    if g:
        L.append("## Goals (issues 4, 13 and 14)\n")
        L.append(md_table(["goal", "measured in this run", "met"], [[a, b, "yes" if c else "**no**"] for a, b, c in g]))
        L.append("")

    simd = results.get("simd")
    if simd:
        lv = simd["levels"]
        L.append("## SIMD: vekter's three FAISS builds\n")
        L.append("`make build` compiles FAISS three times: `vekter.so` for the x86-64 baseline, `vekter_avx2.so` and "
                 "`vekter_avx512.so` with FAISS's AVX2 / AVX-512 flags. Loading `vekter.so` hands the connection to the "
                 "best build the CPU runs (`VEKTER_SIMD` overrides). Same files, same queries, a new "
                 f"process per build (median µs per query, {simd['queries']} queries; builds of the first "
                 f"{simd['build_rows']:,} rows in memory).\n")
        keys = [("hnsw_ef16_us", "HNSW32 efSearch=16 (µs)"), ("hnsw_ef64_us", "HNSW32 efSearch=64 (µs)"),
                ("hnsw_ef256_us", "HNSW32 efSearch=256 (µs)"), ("flat_us", f"Flat {simd['n']:,}×{simd['d']} (µs)"),
                ("ivfpq_us", "IVF64,PQ16 nprobe=16 (µs)"), ("build_hnsw_s", "build HNSW32 (s)"),
                ("build_ivfpq_s", "build IVF64,PQ16 (s)")]
        ok = [k for k in ("generic", "avx2", "avx512") if k in lv and "error" not in lv[k]]
        L.append(md_table([""] + ok + [f"generic / {k}" for k in ok if k != "generic"],
                          [[name] + [f"{lv[k][key]:.2f}" for k in ok]
                           + [fmt_ratio(lv["generic"][key] / lv[k][key]) for k in ok if k != "generic"]
                           for key, name in keys]))
        for k, v in lv.items():
            if "error" in v:
                L.append(f"\n`{k}`: not available on this machine ({v['error']}).")
        L.append("")

    th = results.get("threads")
    if th:
        L.append("## Threads\n")
        L.append("A search runs on its caller's thread (FAISS parallelises over queries; vekter sends one per call), "
                 "except a large exact scan (Flat, at least 2 × 2^20 numbers, fewer than 20 query vectors, no rows deleted since the last optimize and no rowid filter): that one is "
                 "split into ranges of the index over the cores no other vekter search holds at that moment, so one "
                 "connection alone gets every core and many connections never bring more threads than cores. "
                 "Builds, training and bulk adds use `vekter_threads()` OpenMP threads (default: the CPUs available; "
                 "`VEKTER_THREADS` or `SELECT vekter_threads(n)` change it; `vekter_threads(1)` also keeps scans on "
                 "one thread).\n")
        L.append(md_table(["vekter_threads(n)", f"HNSW32 build of {th['build_rows']:,} rows (s)"],
                          [[n, f"{s:.2f}"] for n, s in th["build"].items()]))
        L.append("")
        flat = th.get("flat_qps", {})
        L.append(md_table(["connections searching at once (one thread each)", "queries per second (HNSW32, efSearch 16)"]
                          + (["queries per second (Flat, exact scan)"] if flat else []),
                          [[n, f"{q:,.0f}"] + ([f"{flat[n]:,.0f}"] if n in flat else []) for n, q in th["qps"].items()]))
        L.append("")
        q = th["qps"]
        most, cores = max(q), min(env["nproc"], max(q))
        if q.get(cores):
            L.append(f"On {env['nproc']} cores, {most} connections searching HNSW at once reach {q[most] / q[cores]:.2f}× "
                     f"the throughput of {cores}: every search runs on its caller's thread, so no connection brings an "
                     "OpenMP team that would oversubscribe the machine.\n")
        if flat and th.get("flat_qps_one_thread"):
            one = th["flat_qps_one_thread"]
            L.append(f"Exact scans of the same {results['ann']['n']:,}-row Flat index: one connection on one thread "
                     f"(`vekter_threads(1)`) {one:,.0f} queries/s; one connection with its scans split over the idle "
                     f"cores {flat[1]:,.0f} queries/s ({flat[1] / one:.2f}×); {max(flat)} connections at once "
                     f"{flat[max(flat)]:,.0f} queries/s in all ({flat[max(flat)] / one:.2f}× one thread): the split "
                     "scans give way when other searches hold the cores.\n")
        if th.get("separate_run"):
            L.append(f"(This section was measured in a separate run, {th['separate_run']}, after a harness fix.)\n")

    if "exact" in results:
        L.append("## Exact search\n")
        for ex in results["exact"]:
            L.append(f"### {ex['n']:,} × {ex['d']}-d\n")
            L.append(md_table(EXACT_HEADER, exact_rows(ex)))
            L.append("")
            L.append(f"Build / load: FAISS `add`; vekter `faiss_search`: its first call (reads the table, builds the "
                     f"exact index); vekter table: `CREATE VIRTUAL TABLE idx USING faiss(content = t)` (reads the table, "
                     f"builds, saves the snapshot in the file); sqlite-vec / sqlite-vss: inserting every row in one "
                     f"transaction. Loading a plain table took {fmt_s(ex['table_load_s'])} s. The file held two copies of the "
                     f"table (`t` with the faiss table `idx`, and `t_plain` without one, so that `faiss_search` takes the "
                     f"plain-table path) and vekter's Flat index: {ex['file_mb']:.0f} MB.\n")
            vss = ex["methods"].get("vss")
            if vss and "self_found" in vss:
                L.append(f"sqlite-vss ran in a child process on the same data (an exception inside its FAISS ends the "
                         f"process). Its table holds {vss['stored_rows']:,} rows, but searching 200 of the stored vectors "
                         f"(k = 1) finds the row itself for only {vss['self_found']:.0%} of them: rows inserted in one "
                         f"large transaction are missing from its index, which is why its recall@10 is "
                         f"{fmt_recall(vss['recall'])} and why its latency is over a smaller index.\n"
                         if vss["self_found"] < 0.995 else
                         "sqlite-vss ran in a child process on the same data (an exception inside its FAISS ends the process).\n")

    ann = results.get("ann")
    if ann:
        L += ann_part(ann, env, f"## Approximate search: {ann['n']:,} × {ann['d']}-d, generated data\n",
                      "bench_recall_latency.png")
    real = results.get("ann_real")
    if real and "hnsw" in real:
        info = real["data"]
        L += ann_part(real, env, f"## Approximate search: {real['n']:,} × {real['d']}-d, real sentence embeddings\n",
                      "bench_recall_latency_real.png",
                      f"Data: {info['model']} embeddings (unit length) of {real['n']:,} documentation passages found on "
                      f"this machine ({info['passages_source']}; {info['n_passages_available']:,} available), the "
                      "queries being other passages of the same corpus. Computed once by `bench/vbench/realdata.py` "
                      "(a numpy forward pass of the model, checked against sentence-transformers' published "
                      "similarities) and cached.\n")
    elif real:
        L.append(f"## Approximate search on real sentence embeddings\n\nSkipped in this run: {real['skipped']}\n")

    w = results.get("write")
    if w:
        names = {"plain": "table without an index", "vekter_hnsw": "table + vekter HNSW32 `faiss` table",
                 "vekter_flat": "table + vekter Flat `faiss` table", "vec": "sqlite-vec `vec0`",
                 "vectorlite": "vectorlite `hnsw(M=32, ef_construction=40)`", "vss": "sqlite-vss `vss0` (Flat)"}
        next_what = {"plain": "`faiss_search` re-reads the table", "vekter_hnsw": "applies the change log to the HNSW graph",
                     "vekter_flat": "applies the change log", "vec": "", "vectorlite": "", "vss": ""}
        L.append("## Write path\n")
        L.append(f"{w['rows']:,} single-row `INSERT`s of {w['d']}-d vectors in one transaction (commit included) into a "
                 f"{w['base']:,}-row table; median of {w['repeats']} runs. Then the next k = {K} search (vekter tables and the "
                 "plain table's `faiss_search` catch up with the writes here; the peers indexed them while inserting), "
                 "and 20 more.\n")
        rows = []
        for t, v in w["targets"].items():
            rows.append([names[t], f"{v['insert_us_per_row']:.2f}", fmt_ratio(v["ratio_vs_plain"]),
                         fmt_ms(v["next_search_ms"]) + (f" ({next_what[t]})" if next_what[t] else ""),
                         fmt_ms(v["second_search_ms"])])
        L.append(md_table(["target", "µs per row", "vs plain", "next search (ms)", "later searches (ms, median of 20)"], rows))
        L.append("")
        if "vekter_hnsw" in w["targets"]:
            v = w["targets"]["vekter_hnsw"]
            raw = w.get("faiss_hnsw_add_ms")
            L.append(f"vekter's write stays O(1) per row (a trigger appends the rowid to the change log); the index work "
                     f"happens at the next search: {v['next_search_ms'] * 1e3 / w['rows']:.0f} µs per row for HNSW32"
                     + (f", against raw FAISS's own HNSW32 add of the same rows into the same base, {fmt_ms(raw)} ms "
                        f"({v['next_search_ms'] / raw:.2f}×)" if raw else "") + ".\n")
        if "vekter_flat" in w["targets"] and "plain" in w["targets"]:
            v, p = w["targets"]["vekter_flat"], w["targets"]["plain"]
            ins, base = v["insert_us_per_row"] * w["rows"] / 1e3, p["insert_us_per_row"] * w["rows"] / 1e3
            L.append(f"Flat, inserts and catch-up together: {ins:.0f} + {v['next_search_ms']:.0f} ms against {base:.0f} ms "
                     f"without an index = {(ins + v['next_search_ms']) / base:.2f}×. The trigger alone costs SQLite about "
                     "0.75 µs per row, even one that does nothing (`WHEN 0`), and appending to the log as much again.\n")

    ro = results.get("reopen")
    if ro:
        L.append("## Reopen: first result in a new process\n")
        L.append(f"HNSW32 and Flat on the ANN data ({ro['n']:,} × {ro['d']}-d)"
                 + (f", and the exact section's Flat file ({ro['big']['n']:,} × {ro['big']['d']}-d)" if ro.get("big") else "")
                 + ". vekter: a new Python process opens the database file, "
                 "loads the extension and runs one k = 10 query (the snapshot is read from the file, checked and "
                 "deserialized on first use). FAISS: a new process imports faiss and calls `faiss.read_index` on the "
                 "same data indexed by FAISS (`faiss.write_index`), then searches once. Median of "
                 f"{ro['runs']} runs, files hot in the page cache.\n")
        rows = []
        for name, c in ro["cases"].items():
            lab = reopen_label(name, ro)
            for who in ("vekter", "faiss"):
                r = c[who]
                rows.append([f"{lab}: {'vekter (sqlite3 + .load)' if who == 'vekter' else 'faiss.read_index'}",
                             f"{c[who + '_file_mb']:.0f}",
                             fmt_ms(r["load"] * 1e3), fmt_ms(r["first"] * 1e3), fmt_ms(r["second"] * 1e3),
                             fmt_ms(r["wall"] * 1e3)])
        L.append(md_table(["", "file (MB)", "import / load extension (ms)", "open + first query (ms)",
                           "second query (ms)", "whole process (ms)"], rows))
        L.append("")
        checks = [[reopen_label(name, ro), fmt_ms(c["vekter"]["first"] * 1e3), fmt_ms(c["vekter"]["check"] * 1e3),
                   fmt_ms(c["vekter"]["seal"] * 1e3),
                   f"{100 * c['vekter']['check'] / c['vekter']['first']:.0f} %" if c["vekter"]["first"] else "–"]
                  for name, c in ro["cases"].items() if "check" in c["vekter"]]
        if checks:
            L.append("Of vekter's first query, the time spent reading and checking the stored snapshot before FAISS "
                     "sees it (chunks, lengths, checksum and the keyed BLAKE3 seal, SECURITY.md), and the time a "
                     "helper thread spent hashing the seal meanwhile (overlapped with the reads, so not all of it "
                     "adds to the wall time):\n")
            L.append(md_table(["", "open + first query (ms)", "read + check (ms)", "seal hashing (ms)",
                               "read + check / first query"], checks))
            L.append("")
        L.append("The vekter file holds the table and the index; the FAISS file the index only. The clock starts "
                 "after `import sqlite3` for vekter and before `import faiss` (which imports numpy) for FAISS. "
                 "\"Whole process\" is the wall time of the child process, Python's start-up included.\n")

    pc = results.get("percall")
    if pc:
        names = {"select": "`SELECT ?` (the sqlite3 module's own floor)", "encode": "`SELECT faiss_encode(?)` (trivial SQL function)",
                 "vtab": "vekter `faiss` table (Flat), k = 10", "fn": "vekter `faiss_search` (plain table), k = 10",
                 "vec": "sqlite-vec `vec0`, k = 10", "vectorlite": "vectorlite, k = 10",
                 "faiss": "raw FAISS `index.search` (Python call)"}
        L.append("## Per-call overhead\n")
        L.append(f"A 100-row, 4-d index: the search itself is nearly free, so this is the cost of a call. Median of "
                 f"{pc['batches']} interleaved batches of {pc['calls']:,} calls.\n")
        enc = pc["us"]["encode"]
        L.append(md_table(["call", "µs per call", "vs `faiss_encode`"],
                          [[names[k], f"{v:.2f}", fmt_ratio(v / enc)] for k, v in pc["us"].items()]))
        L.append("")

    bt = results.get("batch")
    if bt:
        names = {"vekter_batch": "vekter, one search: `WHERE neighbours_of IN (SELECT id FROM docs) AND k = 10`",
                 "vekter_join": "vekter, one query per row: `JOIN docs_idx ON query = d.embedding AND k = 11`",
                 "faiss_batch": "raw FAISS, one `search` of all rows (1 thread)",
                 "faiss_per_call": "raw FAISS, one `search` per row (1 thread)"}
        sec = bt["seconds"]
        L.append("## Neighbours of every row\n")
        L.append(f"The nearest {bt['k']} of each of {bt['n']:,} stored {bt['d']}-d rows (Flat), each row left out of "
                 f"its own list: \"related items\" for a whole table. {bt['agreement']:.2%} of the rows get the same "
                 "neighbours from vekter's single search as from raw FAISS (all but at most one: ties at the k-th "
                 "place).\n")
        L.append(md_table(["how", "seconds", "vs vekter, one query per row"],
                          [[names[k], f"{v:.2f}", fmt_ratio(v / sec["vekter_join"])] for k, v in sec.items()]))
        L.append("")

    mem = results.get("memory")
    if mem:
        L.append("## Memory\n")
        L.append(f"VmRSS (from `/proc/self/status`) of a new Python process that opens the {mem['n']:,} × {mem['d']}-d "
                 f"file through 1 or 4 connections (each loads vekter) and runs {mem['queries_per_connection']} "
                 "queries on each. One in-memory copy of an index serves every connection of the process.\n")

        def mb(kb):
            return f"{kb / 1024:.0f}"
        rows = []
        for name, c in mem["cases"].items():
            lab = "HNSW32" if name == "hnsw" else "Flat"
            rows.append([lab, f"{c[1]['index_bytes'] / 2**20:.0f}", mb(c[1]["base_kb"]), mb(c[1]["end_kb"]), mb(c[4]["end_kb"]),
                         f"{(c[4]['end_kb'] - c[1]['end_kb']) / 1024:+.0f}", mb(c["faiss"]["end_kb"])])
        L.append(md_table(["index", "index in memory (MB, `faiss_indexes.bytes`)", "process before (MB)",
                           "1 connection (MB)", "4 connections (MB)", "4 − 1 (MB)", "faiss.read_index process (MB)"], rows))
        L.append("")

    pt = results.get("partition")
    if pt:
        names = {
            "partitioned": "vekter `faiss` table with `partition = tenant`: `WHERE query = ? AND k = 10 AND tenant = ?`",
            "partial": "vekter `faiss` table with `where = 'tenant = 7'` over the same table",
            "alone": "vekter `faiss` table over a table holding only that tenant's rows",
            "filtered": "vekter `faiss` table over all rows: `… AND rowid IN (SELECT id FROM docs WHERE tenant = ?)`",
            "vec": "sqlite-vec `vec0` with `tenant integer partition key`",
            "faiss": "raw FAISS IndexFlatL2 over that tenant's vectors",
        }
        m = pt["methods"]
        alone = m["partial"]["median_ms"]
        L.append("## Partitions\n")
        L.append(f"{pt['parts']} tenants × {pt['rows']:,} rows of {pt['d']}-d vectors in one table (Flat indexes); "
                 f"every query searches tenant {pt['tenant']}. The goal: searching one partition costs about what an "
                 "index of that partition alone costs: the partial index over the same table is the reference (the "
                 "partition's own table is smaller, so looking up the rows found is cheaper there).\n")
        b = pt["build_s"]
        L.append(md_table(["method", "build (s)", "median (ms)", "p90 (ms)", "vs the partial index", "recall@10", "queries"],
                          [[names[k], fmt_s(b.get({"partitioned": "vekter_partitioned", "partial": "vekter_partial",
                                                   "alone": "vekter_alone",
                                                   "filtered": "vekter_whole", "vec": "vec",
                                                   "faiss": "faiss_alone"}[k], 0)),
                            fmt_ms(v["median_ms"]), fmt_ms(v["p90_ms"]), fmt_ratio(v["median_ms"] / alone),
                            fmt_recall(v["recall"]), v["n"]] for k, v in m.items()]))
        L.append("")
        L.append("Build times: the partitioned and the unpartitioned tables index every row of all tenants; the "
                 "partial index, the partition's own table and raw FAISS only the one tenant's.\n")

    items = ratio_items(results)
    if items:
        L.append("## Ratios\n")
        L.append("![latency ratios vs raw FAISS](bench_ratios.png)\n")
        L.append("Median latency divided by raw FAISS's at the same setting (exact: `IndexFlatL2`; HNSW and IVF: the "
                 "middle efSearch / nprobe of the sweep; tiny: per-call cost vs a raw `index.search` call).\n")

    it = results.get("interrupt")
    if it:
        L.append("## Interrupting long work\n")
        L.append(f"`conn.interrupt()` during a `CREATE VIRTUAL TABLE` over {it['n']:,} × {it['d']}-d rows, once "
                 "`faiss_indexes` (read from another connection) shows the build in the phase named (for HNSW32, half a "
                 "second into its adds): the time until the statement fails with SQLite's \"interrupted\", and the faiss "
                 "tables, shadow tables and triggers left afterwards (none should be).\n")
        rows = [[f, c["state"], f"{c['after_s']:.1f}",
                 "(ended first)" if c["ms"] is None else f"{c['ms']:.0f}", str(c["error"]), str(c["left"])]
                for f, c in it["cases"].items()]
        L.append(md_table(["factory", "progress shown when interrupted", "interrupted after (s)",
                           "stopped (ms after the interrupt)", "error", "objects left"], rows))
        L.append("")
    if results.get("errors"):
        L.append("## Sections that failed\n")
        L += [f"- `{k}`: {v}" for k, v in results["errors"].items()]
        L.append("")
    L.append("## Reading these numbers\n")
    notes = [
        (f"vekter's bundled FAISS ({json.loads(env['vekter_debug']).get('faiss', '?')}, SIMD "
         f"`{json.loads(env['vekter_debug'])['simd']['level']}`) and the faiss-cpu wheel ({env['faiss']}, SIMD "
         f"`{env['faiss_simd']}`) are different builds: part of any gap is the FAISS build, not SQLite. The "
         "\"SIMD level forced to NONE\" row of the exact tables shows how much the wheel's SIMD dispatch matters there."),
        ("Every SQL figure includes Python's `sqlite3` call overhead and SQLite's statement execution; "
         "raw FAISS figures include Python's call into the SWIG wrapper."),
        ("The machine is a small VM that may be shared with other work; the load average above says how busy it was. "
         "Differences of 10–20% between runs are common at these latencies."),
    ]
    L += [f"- {n}" for n in notes]
    L.append("")
    L.append("## Earlier measurements\n")
    if EARLIER.exists():
        L.append(EARLIER.read_text().strip() + "\n")
    return "\n".join(L)
