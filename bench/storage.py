"""What a faiss table costs on disk, and what `optimize` makes a page-level replica ship.

Usage:
    ~/.cache/vekter/venv/bin/python bench/storage.py --lib dist/vekter.so [--quick]
        [--n N] [--dim D] [--factories 'Flat;HNSW32'] [--variant all|cheap|none]
        [--train-size N] [--polysemous] [--fraction 0.01] [--journal wal|delete]
        [--reopen-runs 3] [--json FILE] [--md FILE] [--keep DIR]
    ~/.cache/vekter/venv/bin/python bench/storage.py --from-json FILE [--md FILE]

For each factory, on one fresh copy of a content-only database
`docs(id INTEGER PRIMARY KEY, embedding BLOB)` holding N random float32 vectors of dimension D
(defaults 100,000 x 384; --quick: 20,000, IVF256 in place of IVF1024). The factories are
built with train_size = 10,000 (--quick: 5,000) and IVF…,PQm as PQmnp (no polysemous
training): neither changes a stored byte count, both cut the build time (--train-size 0 and
--polysemous keep vekter's and FAISS's defaults).

1. Size: the file with the content table only vs with the faiss table (journal_mode=DELETE),
   and per object through the `dbstat` virtual table (content, chunks, config, change log,
   freelist), as MB and as % of the content-only file.
2. `optimize` after 1% of the rows changed (new random vectors for 1% of the ids, one
   transaction): a search applies the change log, then `optimize` runs. Measured: the database
   pages that differ before/after (what a page-level replica such as Litestream must ship at the
   least), which objects they belong to afterwards, the file-size delta, the WAL frames written
   (with --journal wal, the default: every frame is shipped, identical pages included), and the
   same for the 1% UPDATE itself; and how much of the snapshot's own bytes changed (whole
   chunks, 4 KiB blocks at equal offsets). Variant: 0.5% deletes + 0.5% inserts (default: not
   for HNSW, whose optimize re-adds every vector and so costs about a build).
3. Reopen: in a fresh process (3 of them, median), open the file, load vekter, time the first
   search (it loads and verifies the snapshot) and the second.

Markdown goes to stdout (and --md FILE), everything measured to --json FILE, progress to stderr.
Timings are on warm OS page cache (the files were just written).
"""
import argparse
import json
import os
import pathlib
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

FULL = ["Flat", "IVF1024,Flat", "HNSW32", "IVF1024,PQ48", "OPQ16,IVF256,PQ16"]
QUICK = ["Flat", "IVF256,Flat", "HNSW32", "IVF256,PQ48", "OPQ16,IVF256,PQ16"]
MB = 1e6
T0 = time.perf_counter()


def log(msg):
    print(f"[{time.perf_counter() - T0:7.1f} s] {msg}", file=sys.stderr, flush=True)


def connect(path, lib=None):
    conn = sqlite3.connect(str(path), isolation_level=None)
    if lib:
        conn.enable_load_extension(True)
        conn.load_extension(lib.removesuffix(".so"))
        conn.enable_load_extension(False)
    return conn


def timed(f):
    t = time.perf_counter()
    out = f()
    return time.perf_counter() - t, out


def search_sql(name):
    return f"SELECT rowid FROM {name} WHERE query = ? AND k = 10"


# ---------------------------------------------------------------- files and pages


def file_pages(conn):
    return conn.execute("PRAGMA page_size").fetchone()[0]


def objects(conn):
    """{object: bytes} from dbstat, plus 'freelist'."""
    ps = file_pages(conn)
    rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
    out = {name: size for name, size in rows}
    out["(freelist)"] = conn.execute("PRAGMA freelist_count").fetchone()[0] * ps
    return out


def page_owners(conn, n_pages):
    """Array page number (1-based index) -> small int code, and the code names."""
    names = ["(freelist)"]  # no auto_vacuum: a page dbstat does not list is a free one
    code = {}
    owner = np.zeros(n_pages + 1, dtype=np.int16)
    for name, pageno in conn.execute("SELECT name, pageno FROM dbstat"):
        if name not in code:
            code[name] = len(names)
            names.append(name)
        if pageno <= n_pages:
            owner[pageno] = code[name]
    return owner, names


def changed_pages(before, after, page_size, block=16384):
    """Page numbers (1-based) of `after` whose bytes differ from `before` (or that are new)."""
    a = np.memmap(before, dtype=np.uint8, mode="r")
    b = np.memmap(after, dtype=np.uint8, mode="r")
    na, nb = len(a) // page_size, len(b) // page_size
    pa = a[: na * page_size].reshape(na, page_size)
    pb = b[: nb * page_size].reshape(nb, page_size)
    common = min(na, nb)
    out = []
    for i in range(0, common, block):
        j = min(i + block, common)
        diff = (pa[i:j] != pb[i:j]).any(axis=1)
        out.append(np.nonzero(diff)[0] + i + 1)
    if nb > na:
        out.append(np.arange(na, nb) + 1)
    del a, b, pa, pb
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def payload(conn, name="docs_idx"):
    """The stored snapshot: its chunks, in order."""
    return [r[0] for r in conn.execute(f"SELECT data FROM {name}_chunks ORDER BY chunk")]


def payload_diff(before, after, block=4096):
    """How much of the snapshot's bytes moved: whole chunks and 4 KiB blocks at equal offsets."""
    same_chunks = sum(1 for x, y in zip(before, after) if x == y)
    a = np.frombuffer(b"".join(before), dtype=np.uint8)
    b = np.frombuffer(b"".join(after), dtype=np.uint8)
    common = min(len(a), len(b)) // block
    differ = (a[: common * block].reshape(common, block)
              != b[: common * block].reshape(common, block)).any(axis=1)
    total = -(-len(b) // block)
    changed = int(differ.sum()) + (total - common)
    first = int(np.argmax(differ)) * block if differ.any() else (common * block if total > common else None)
    return {
        "bytes_before": len(a), "bytes_after": len(b),
        "chunks_before": len(before), "chunks_after": len(after),
        "chunks_identical": same_chunks,
        "blocks_4k": total, "blocks_4k_changed": changed,
        "first_changed_offset": first,
    }


def wal_frames(path, page_size):
    wal = str(path) + "-wal"
    if not os.path.exists(wal):
        return 0
    size = os.path.getsize(wal)
    return max(0, (size - 32) // (page_size + 24))


def checkpoint(conn):
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    if mode == "wal":
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            raise RuntimeError("checkpoint blocked by a reader")


def page_report(conn, path, before_copy, wal=False):
    """Changed pages of `path` against `before_copy`, grouped by owner in the new file."""
    ps = file_pages(conn)
    frames = wal_frames(path, ps) if wal else None
    checkpoint(conn)
    pages = changed_pages(before_copy, path, ps)
    n_pages = os.path.getsize(path) // ps
    owner, names = page_owners(conn, n_pages)
    by = {}
    for c in owner[pages]:
        by[names[c]] = by.get(names[c], 0) + 1
    return {
        "page_size": ps,
        "pages_changed": len(pages),
        "bytes_changed": len(pages) * ps,
        "by_object_pages": {k: int(v) for k, v in sorted(by.items(), key=lambda kv: -kv[1])},
        "wal_frames": frames,
        "wal_bytes": None if frames is None else frames * ps,
        "file_size_before": os.path.getsize(before_copy),
        "file_size_after": os.path.getsize(path),
        "file_size_delta": os.path.getsize(path) - os.path.getsize(before_copy),
        "freelist_bytes_after": conn.execute("PRAGMA freelist_count").fetchone()[0] * ps,
    }


# ---------------------------------------------------------------- steps


def make_content(path, n, dim, seed=0):
    rng = np.random.default_rng(seed)
    conn = connect(path)
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY, embedding BLOB)")
    conn.execute("BEGIN")
    step = 10000
    for start in range(0, n, step):
        block = rng.standard_normal((min(step, n - start), dim), dtype=np.float32)
        conn.executemany(
            "INSERT INTO docs (id, embedding) VALUES (?, ?)",
            ((start + i + 1, v.tobytes()) for i, v in enumerate(block)),
        )
    conn.execute("COMMIT")
    sizes = objects(conn)
    conn.close()
    return {"file_bytes": os.path.getsize(path), "objects": sizes}


def build(path, lib, factory, train_size, name="docs_idx"):
    conn = connect(path, lib)
    extra = f", train_size = {train_size}" if train_size else ""
    took, _ = timed(lambda: conn.execute(
        f"CREATE VIRTUAL TABLE {name} USING faiss(content = docs, column = embedding, "
        f"factory = '{factory}'{extra})"))
    checkpoint(conn)
    sizes = objects(conn)
    config = dict(conn.execute(f"SELECT key, value FROM {name}_config").fetchall())
    conn.close()
    return {
        "build_s": took,
        "file_bytes": os.path.getsize(path),
        "objects": sizes,
        "snapshot_bytes": int(config.get("snapshot_bytes", 0)),
        "snapshot_chunks": int(config.get("snapshot_chunks", 0)),
    }


def changes(path, lib, work, kind, n, dim, fraction, journal, seed):
    """Change `fraction` of the rows, apply them with a search, then optimize; page counts."""
    rng = np.random.default_rng(seed)
    conn = connect(path, lib)
    conn.execute(f"PRAGMA journal_mode={journal}")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    q = rng.standard_normal(dim, dtype=np.float32).tobytes()
    load_s, _ = timed(lambda: conn.execute(search_sql("docs_idx"), [q]).fetchall())
    checkpoint(conn)
    snap0 = work / "before_update.db"
    shutil.copyfile(path, snap0)

    count = max(1, round(n * fraction))
    ids = rng.choice(np.arange(1, n + 1), size=count, replace=False)
    vecs = rng.standard_normal((count, dim), dtype=np.float32)

    def write():
        conn.execute("BEGIN")
        if kind == "update":
            conn.executemany("UPDATE docs SET embedding = ? WHERE id = ?",
                             ((v.tobytes(), int(i)) for i, v in zip(ids, vecs)))
        else:  # half deletes, half inserts
            half = count // 2
            conn.executemany("DELETE FROM docs WHERE id = ?", ((int(i),) for i in ids[:half]))
            conn.executemany("INSERT INTO docs (id, embedding) VALUES (?, ?)",
                             ((n + 1 + j, v.tobytes()) for j, v in enumerate(vecs[: count - half])))
        conn.execute("COMMIT")

    write_s, _ = timed(write)
    write_pages = page_report(conn, path, snap0, wal=journal == "wal")

    q2 = rng.standard_normal(dim, dtype=np.float32).tobytes()
    apply_s, _ = timed(lambda: conn.execute(search_sql("docs_idx"), [q2]).fetchall())
    checkpoint(conn)
    shutil.copyfile(path, snap0)
    old = payload(conn)
    opt_s, _ = timed(lambda: conn.execute("INSERT INTO docs_idx(docs_idx) VALUES ('optimize')"))
    opt_pages = page_report(conn, path, snap0, wal=journal == "wal")
    opt_pages["snapshot"] = payload_diff(old, payload(conn))
    del old
    left = conn.execute("SELECT count(*) FROM docs_idx_changes").fetchone()[0]
    config = dict(conn.execute("SELECT key, value FROM docs_idx_config").fetchall())
    after_search_s, _ = timed(lambda: conn.execute(search_sql("docs_idx"), [q]).fetchall())
    conn.close()
    os.unlink(snap0)
    return {
        "kind": kind,
        "rows_changed": count,
        "journal": journal,
        "first_search_load_s": load_s,
        "write_s": write_s,
        "write": write_pages,
        "apply_search_s": apply_s,
        "optimize_s": opt_s,
        "optimize": opt_pages,
        "changes_left_after_optimize": left,
        "snapshot_bytes_after": int(config.get("snapshot_bytes", 0)),
        "search_after_optimize_s": after_search_s,
    }


CHILD = "--child-reopen"


def child_reopen(db, lib, dim):
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    q1 = rng.standard_normal(dim, dtype=np.float32).tobytes()
    q2 = rng.standard_normal(dim, dtype=np.float32).tobytes()
    t = time.perf_counter()
    conn = connect(db, lib)
    open_s = time.perf_counter() - t
    first, _ = timed(lambda: conn.execute(search_sql("docs_idx"), [q1]).fetchall())
    second, _ = timed(lambda: conn.execute(search_sql("docs_idx"), [q2]).fetchall())
    fs, _ = timed(lambda: conn.execute("SELECT faiss_search('main', 'docs', ?, 10)", [q2]).fetchone())
    try:
        debug = json.loads(conn.execute("SELECT vekter_debug()").fetchone()[0])
    except Exception:  # noqa: BLE001 - only informative
        debug = None
    print(json.dumps({"open_load_s": open_s, "first_s": first, "second_s": second,
                      "faiss_search_s": fs, "debug": debug}))


def reopen(db, lib, dim, runs=3):
    out = []
    for _ in range(runs):
        r = subprocess.run([sys.executable, __file__, CHILD, str(db), "--lib", lib,
                            "--dim", str(dim)],
                           check=True, capture_output=True, text=True)
        out.append(json.loads(r.stdout.strip().splitlines()[-1]))
    med = {k: statistics.median(o[k] for o in out)
           for k in ("open_load_s", "first_s", "second_s", "faiss_search_s")}
    med["runs"] = out
    return med


# ---------------------------------------------------------------- report


def mb(x):
    return "–" if x is None else f"{x / MB:,.1f}"


def pct(x, base):
    return f"{100 * x / base:,.1f}%"


def ms(s):
    return f"{s * 1000:,.0f} ms" if s < 10 else f"{s:,.1f} s"


def secs(s):
    return f"{s:,.2f} s" if s < 100 else f"{s:,.0f} s"


def shadow_bytes(objs, name="docs_idx"):
    return sum(v for k, v in objs.items() if k.startswith(name + "_"))


def top_objects(by, n=4):
    def label(k):
        return "(freelist)" if k == "(free or unused)" else k.removeprefix("docs_idx_")
    return ", ".join(f"{label(k)} {v:,}" for k, v in list(by.items())[:n])


def verify_ms(runs):
    """Median time of the snapshot check (vekter_debug's snapshots.last_verified), if shown."""
    try:
        return f"{statistics.median(r['debug']['snapshots']['last_verified']['ms'] for r in runs):,.0f} ms"
    except (KeyError, TypeError, statistics.StatisticsError):
        return "–"


def markdown(res):
    a = res["args"]
    base = res["content"]["file_bytes"]
    docs = res["content"]["objects"].get("docs", 0)
    lines = [
        f"# vekter storage: {a['n']:,} x {a['dim']} float32, lib `{a['lib']}`",
        "",
        (f"SQLite {res['sqlite_version']}, page size {res['page_size']} B, "
        f"secure_delete={res['secure_delete']}, {res['cpus']} CPUs, "
        f"content-only file {mb(base)} MB (table `docs` {mb(docs)} MB), "
        f"train_size {a['train_size'] or 'default'}, "
        f"run {res['total_s']:.0f} s (os.nice 10). MB = 10^6 bytes."),
        "",
        "## 1. File overhead per index",
        "",
        ("| factory | build | file with index MB | overhead MB | % of content file | "
        "shadow tables MB (dbstat) | chunks MB | snapshot MB (chunks) |"),
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for f in res["factories"]:
        if "error" in f:
            lines.append(f"| {f['factory']} | error: {f['error']} | | | | | | |")
            continue
        b = f["build"]
        over = b["file_bytes"] - base
        lines.append(
            f"| {f['factory']} | {secs(b['build_s'])} | {mb(b['file_bytes'])} | {mb(over)} | "
            f"{pct(over, base)} | {mb(shadow_bytes(b['objects']))} | "
            f"{mb(b['objects'].get('docs_idx_chunks', 0))} | "
            f"{mb(b['snapshot_bytes'])} ({b['snapshot_chunks']}) |")
    for kind, title in (("update", "1% of rows updated"),
                        ("delins", "0.5% deleted + 0.5% inserted")):
        rows = [f for f in res["factories"] if kind in f.get("changes", {})]
        if not rows:
            continue
        lines += [
            "",
            f"## 2. `optimize` after {title} ({rows[0]['changes'][kind]['journal']} journal)",
            "",
            ("Pages differing before/after (what a page-level replica ships at the least); "
            "WAL = frames written (Litestream ships every frame)."),
            "",
            ("| factory | write: changed MB | write: WAL MB | apply (search) | optimize | "
            "optimize: changed MB | optimize: WAL MB | optimize / write (changed) | "
            "file delta MB | freelist after MB | snapshot: chunks identical, 4 KiB blocks "
            "changed | changed pages by object (optimize) |"),
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for f in rows:
            c = f["changes"][kind]
            w, o = c["write"], c["optimize"]
            snap = o["snapshot"]
            ratio = o["bytes_changed"] / w["bytes_changed"] if w["bytes_changed"] else float("nan")
            lines.append(
                f"| {f['factory']} | {mb(w['bytes_changed'])} | {mb(w['wal_bytes'])} | "
                f"{ms(c['apply_search_s'])} | {secs(c['optimize_s'])} | "
                f"{mb(o['bytes_changed'])} | {mb(o['wal_bytes'])} | {ratio:,.1f}x | "
                f"{o['file_size_delta'] / MB:+,.1f} | {mb(o['freelist_bytes_after'])} | "
                f"{snap['chunks_identical']}/{snap['chunks_after']}, "
                f"{pct(snap['blocks_4k_changed'], snap['blocks_4k'])} | "
                f"{top_objects(o['by_object_pages'])} |")
    rows = [f for f in res["factories"] if "reopen" in f]
    if rows:
        lines += [
            "",
            ("## 3. Reopen in a fresh process (median of "
            f"{len(rows[0]['reopen']['runs'])})"),
            "",
            ("| factory | connect + load vekter | first search (loads snapshot) | of which "
            "checksum + seal check | second search | faiss_search('main','docs') after |"),
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for f in rows:
            r = f["reopen"]
            lines.append(f"| {f['factory']} | {ms(r['open_load_s'])} | {ms(r['first_s'])} | "
                         f"{verify_ms(r['runs'])} | "
                         f"{ms(r['second_s'])} | {ms(r['faiss_search_s'])} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main


def no_polysemous(factory):
    """IVF…,PQm -> IVF…,PQmnp: FAISS's polysemous training (single-threaded simulated annealing,
    about 2 s per sub-quantizer whatever N) changes no stored byte count, only the build time."""
    if "IVF" in factory and re.search(r",PQ\d+(x\d+)?$", factory):
        return factory + "np"
    return factory


def wants_variant(policy, factory):
    return policy == "all" or (policy == "cheap" and "HNSW" not in factory)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--lib", help="path of vekter.so (required unless --from-json)")
    p.add_argument("--n", type=int)
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--quick", action="store_true", help="N=20,000 and smaller IVF")
    p.add_argument("--factories", help="';'-separated factory strings")
    p.add_argument("--fraction", type=float, default=0.01)
    p.add_argument("--variant", choices=("all", "cheap", "none"), default="cheap",
                   help="where to also run 0.5%% deletes + 0.5%% inserts; cheap (default): not "
                        "HNSW, whose optimize re-adds every vector (as long as its build)")
    p.add_argument("--train-size", type=int,
                   help="train_size option (default 10000; --quick 5000; 0: vekter's 50000). "
                        "The stored size does not depend on it, the build time does")
    p.add_argument("--polysemous", action="store_true",
                   help="keep FAISS's polysemous training of IVF…,PQm (default: PQmnp)")
    p.add_argument("--journal", choices=("wal", "delete"), default="wal",
                   help="journal mode of the change/optimize step (wal also counts frames)")
    p.add_argument("--reopen-runs", type=int, default=3)
    p.add_argument("--json")
    p.add_argument("--md")
    p.add_argument("--keep", help="directory for the work files (kept); default: a temp dir")
    p.add_argument("--from-json", help="only print the Markdown of an earlier run's JSON")
    p.add_argument(CHILD, dest="child")
    a = p.parse_args()
    if a.from_json:
        md = markdown(json.loads(pathlib.Path(a.from_json).read_text()))
        print(md)
        if a.md:
            pathlib.Path(a.md).write_text(md)
        return
    if not a.lib:
        p.error("--lib is required")
    a.lib = os.path.abspath(a.lib)
    if a.child:
        child_reopen(a.child, a.lib, a.dim)
        return
    os.nice(10)
    n = a.n or (20000 if a.quick else 100000)
    factories = a.factories.split(";") if a.factories else (QUICK if a.quick else FULL)
    if not a.polysemous:
        factories = [no_polysemous(f) for f in factories]
    train_size = (5000 if a.quick else 10000) if a.train_size is None else a.train_size
    tmp = None
    if a.keep:
        work = pathlib.Path(a.keep)
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="vekter-storage-", dir=os.environ.get("TMPDIR"))
        work = pathlib.Path(tmp.name)
    probe = connect(":memory:")
    res = {
        "args": {"lib": a.lib, "n": n, "dim": a.dim, "quick": a.quick, "fraction": a.fraction,
                 "journal": a.journal, "factories": factories, "train_size": train_size,
                 "variant": a.variant},
        "sqlite_version": sqlite3.sqlite_version,
        "secure_delete": probe.execute("PRAGMA secure_delete").fetchone()[0],
        "cpus": len(os.sched_getaffinity(0)),
        "factories": [],
    }
    probe.close()
    try:
        content = work / "content.db"
        log(f"content table: {n:,} x {a.dim}")
        res["content"] = make_content(content, n, a.dim)
        c = connect(content)
        res["page_size"] = file_pages(c)
        c.close()
        for i, factory in enumerate(factories):
            f = {"factory": factory}
            res["factories"].append(f)
            db = work / f"idx{i}.db"
            shutil.copyfile(content, db)
            log(f"{factory}: build")
            try:
                f["build"] = build(db, a.lib, factory, train_size)
            except sqlite3.Error as e:
                f["error"] = str(e)
                log(f"{factory}: {e}")
                os.unlink(db)
                continue
            log(f"{factory}: built in {f['build']['build_s']:.1f} s, "
                f"{f['build']['file_bytes'] / MB:.1f} MB; reopen")
            f["reopen"] = reopen(db, a.lib, a.dim, a.reopen_runs)
            f["changes"] = {}
            variant = None
            if wants_variant(a.variant, factory):
                variant = work / f"idx{i}_variant.db"
                shutil.copyfile(db, variant)
            log(f"{factory}: {a.fraction:.1%} updates + optimize")
            f["changes"]["update"] = changes(db, a.lib, work, "update", n, a.dim, a.fraction,
                                             a.journal, seed=1)
            log(f"{factory}: optimize {f['changes']['update']['optimize_s']:.1f} s")
            os.unlink(db)
            if variant:
                log(f"{factory}: deletes + inserts + optimize")
                f["changes"]["delins"] = changes(variant, a.lib, work, "delins", n, a.dim,
                                                 a.fraction, a.journal, seed=2)
                os.unlink(variant)
            for extra in ("-wal", "-shm"):
                for path in (db, variant):
                    if path and os.path.exists(str(path) + extra):
                        os.unlink(str(path) + extra)
    finally:
        res["total_s"] = time.perf_counter() - T0
        if tmp:
            tmp.cleanup()
    md = markdown(res)
    print(md)
    if a.md:
        pathlib.Path(a.md).write_text(md)
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps(res, indent=2))
    log("done")


if __name__ == "__main__":
    main()
