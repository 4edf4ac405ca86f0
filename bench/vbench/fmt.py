"""Number formatting and text output shared by the sections' progress lines and the report:
the console log, ms / s / ratio / recall formats, markdown and plain-text tables."""
from __future__ import annotations


def log(*a):
    print(*a, flush=True)


def fmt_ms(x):
    if x is None:
        return "–"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def fmt_s(x):
    if x is None:
        return "–"
    if x < 0.1:
        return f"{x:.3f}"
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def fmt_ratio(x):
    return "–" if x is None else (f"{x:.2f}×" if x < 10 else f"{x:.0f}×")


def fmt_recall(x):
    return "–" if x is None else f"{x:.3f}"


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def text_table(header, rows):
    cols = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(header))]

    def line(r):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in cols[1:]])
