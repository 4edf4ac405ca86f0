"""The plots: recall vs latency for HNSW and IVF (bench_recall_latency.png; bench_recall_latency_real.png
for the real sentence embeddings) and latency ratios
against raw FAISS (bench_ratios.png)."""
from __future__ import annotations

import numpy as np

from ..config import K
from ..fmt import fmt_ms, fmt_ratio
from .derived import ratio_items


def plot(results, out_dir, mode):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    files = []
    for name, png, data in (("ann", "bench_recall_latency.png", "generated data"),
                            ("ann_real", "bench_recall_latency_real.png", "real sentence embeddings")):
        ann = results.get(name)
        if not ann or "hnsw" not in ann:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
        series = [
            (axes[0], "hnsw", "efSearch", [("vekter", "vekter HNSW32 (SQL)", "C0", "o-"),
                                            ("faiss", "raw FAISS IndexHNSWFlat(32)", "C1", "s--"),
                                            ("vectorlite", "vectorlite hnsw (M=32)", "C2", "^-.")]),
            (axes[1], "ivf", "nprobe", [("vekter", f"vekter IVF{ann['nlist']},Flat (SQL)", "C0", "o-"),
                                         ("faiss", f"raw FAISS IVF{ann['nlist']},Flat", "C1", "s--")]),
        ]
        for ax, kind, pname, whos in series:
            table = ann[kind]
            for who, label, color, style in whos:
                xs = [table[p][who]["recall"] for p in table]
                ys = [table[p][who]["median_ms"] for p in table]
                ax.plot(xs, ys, style, color=color, label=label, markersize=5)
                if who == "vekter":
                    for p, x, y in zip(table, xs, ys):
                        ax.annotate(f"{p}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=color)
            ex = ann["exact"]
            ax.axhline(ex["vekter"]["median_ms"], color="C0", linestyle=":", linewidth=1,
                       label=f"vekter Flat (exact): {fmt_ms(ex['vekter']['median_ms'])} ms")
            ax.axhline(ex["faiss"]["median_ms"], color="C1", linestyle=":", linewidth=1,
                       label=f"raw FAISS Flat (exact): {fmt_ms(ex['faiss']['median_ms'])} ms")
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
                lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
            ax.tick_params(axis="y", which="minor", labelsize=7)
            ax.set_xlabel("recall@10 (mean over queries)")
            ax.set_ylabel("median latency per query (ms, log scale)")
            ax.set_title(f"{kind.upper()}: labels are {pname}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8, loc="upper left")
        fig.suptitle(f"Recall vs latency, {ann['n']:,} × {ann['d']}-d ({data}), k={K}, one query per call "
                     f"({mode} mode, {results['env']['date'][:10]})")
        fig.tight_layout()
        p = out_dir / png
        fig.savefig(p, dpi=110)
        plt.close(fig)
        files.append(p)

    items = ratio_items(results)
    if items:
        fig, ax = plt.subplots(figsize=(12, 0.38 * len(items) + 1.6))
        groups = []
        for g, *_ in items:
            if g not in groups:
                groups.append(g)
        colors = {g: f"C{i}" for i, g in enumerate(groups)}
        labels = [f"{g}: {label}" for g, label, *_ in items]
        vals = [v / base for _, _, v, base, _ in items]
        y = np.arange(len(items))[::-1]
        ax.barh(y, vals, color=[colors[g] for g, *_ in items])
        ax.set_yticks(y, labels, fontsize=8)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(
            lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.axvline(1.0, color="black", linewidth=1)
        for yi, v in zip(y, vals):
            ax.text(max(v, 1.0) * 1.06, yi, fmt_ratio(v), va="center", fontsize=8)
        ax.set_xlim(min(0.5, min(vals) / 1.5), max(vals) * 3)
        ax.set_xlabel("median latency ÷ raw FAISS median latency at the same setting (log scale; 1 = as fast as raw FAISS)")
        ax.set_title(f"Latency ratios vs raw FAISS (single thread), {mode} mode, {results['env']['date'][:10]}")
        ax.grid(True, axis="x", which="both", alpha=0.3)
        fig.tight_layout()
        p = out_dir / "bench_ratios.png"
        fig.savefig(p, dpi=110)
        plt.close(fig)
        files.append(p)
    return files
