"""The console summary printed at the end of a run (and by --from-json): medians, ratios,
goals, write path, reopen, per-call and memory figures as plain-text tables."""
from __future__ import annotations

from ..fmt import fmt_ms, fmt_ratio, fmt_recall, text_table
from .derived import SHORT, goals


def summary(results):
    """The console table: medians and ratios."""
    rows = []
    for ex in results.get("exact", []):
        base = ex["methods"]["faiss"]["median_ms"]
        for key, m in ex["methods"].items():
            if "median_ms" in m:
                rows.append([f"exact {ex['n']:,}x{ex['d']}", SHORT[key], fmt_ms(m["median_ms"]),
                             fmt_ratio(m["median_ms"] / base), fmt_recall(m["recall"])])
    ann = results.get("ann")
    if ann:
        for kind, name in (("hnsw", "efSearch"), ("ivf", "nprobe")):
            for p, row in ann[kind].items():
                base = row["faiss"]["median_ms"]
                for who, m in row.items():
                    rows.append([f"{kind.upper()} {name}={p}", who, fmt_ms(m["median_ms"]),
                                 fmt_ratio(m["median_ms"] / base), fmt_recall(m["recall"])])
    out = [text_table(["case", "backend", "median ms", "vs FAISS", "recall@10"], rows)] if rows else []
    g = goals(results)
    if g:
        out.append("")
        out.append(text_table(["goal", "measured", "met"], [[a, b, "yes" if c else "NO"] for a, b, c in g]))
    w = results.get("write")
    if w:
        out.append("")
        out.append(text_table(["write path", "µs/row", "vs plain", "next search ms"],
                              [[t, f"{v['insert_us_per_row']:.2f}", fmt_ratio(v["ratio_vs_plain"]), fmt_ms(v["next_search_ms"])]
                               for t, v in w["targets"].items()]))
    ro = results.get("reopen")
    if ro:
        out.append("")
        out.append(text_table(["reopen (new process)", "open+first ms", "whole process ms"],
                              [[f"{n} {who}", fmt_ms(c[who]["first"] * 1e3), fmt_ms(c[who]["wall"] * 1e3)]
                               for n, c in ro["cases"].items() for who in ("vekter", "faiss")]))
    pc = results.get("percall")
    if pc:
        out.append("")
        out.append(text_table(["per call (100x4)", "µs"], [[k, f"{v:.2f}"] for k, v in pc["us"].items()]))
    bt = results.get("batch")
    if bt:
        out.append("")
        out.append(text_table([f"neighbours of every row ({bt['n']:,}x{bt['d']})", "s"],
                              [[k, f"{v:.2f}"] for k, v in bt["seconds"].items()]))
    pt = results.get("partition")
    if pt:
        out.append("")
        alone = pt["methods"]["partial"]["median_ms"]
        out.append(text_table([f"partition ({pt['parts']} x {pt['rows']:,})", "median ms", "vs partial", "recall@10"],
                              [[k, fmt_ms(m["median_ms"]), fmt_ratio(m["median_ms"] / alone), fmt_recall(m["recall"])]
                               for k, m in pt["methods"].items()]))
    mem = results.get("memory")
    if mem:
        out.append("")
        out.append(text_table(["memory (VmRSS MB)", "1 conn", "4 conns", "index MB"],
                              [[n, f"{c[1]['end_kb'] / 1024:.0f}", f"{c[4]['end_kb'] / 1024:.0f}",
                                f"{c[1]['index_bytes'] / 2**20:.0f}"] for n, c in mem["cases"].items()]))
    return "\n".join(out)
