"""Reading a results JSON file (--json / --from-json) back into the shape the report expects."""
from __future__ import annotations

import json
import pathlib


def load_results(path):
    """A --json file back into the shape the report expects (JSON made the int keys strings)."""
    results = json.loads(pathlib.Path(path).read_text())
    for name in ("ann", "ann_real"):
        ann = results.get(name)
        if ann and "hnsw" in ann:
            for kind in ("hnsw", "ivf"):
                ann[kind] = {int(k): v for k, v in ann[kind].items()}
            for kind in ann.get("by_k", {}):
                ann["by_k"][kind] = {int(k): v for k, v in ann["by_k"][kind].items()}
    th = results.get("threads")
    if th:
        for k in ("build", "qps", "flat_qps"):
            if k in th:
                th[k] = {int(n): v for n, v in th[k].items()}
    for case in (results.get("memory") or {}).get("cases", {}).values():
        for k in ("1", "4"):
            case[int(k)] = case.pop(k)
    return results
