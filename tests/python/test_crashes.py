"""Processes killed with SIGKILL at random points while writing, optimizing, creating or
rebuilding: after reopening, integrity-check passes, an exact index agrees with the table, and
every index still takes writes and finds them."""
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np

from conftest import LIB, connect

WORKER = textwrap.dedent(
    """
    import random, sqlite3, sys
    path, lib, seed, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    rng = random.Random(seed)
    c = sqlite3.connect(path, isolation_level=None, timeout=30)
    c.enable_load_extension(True)
    c.load_extension(lib)
    print("ready", flush=True)
    while True:
        if mode == "create":
            c.execute("drop table if exists h")
            c.execute("create virtual table h using faiss(content = docs, factory = 'HNSW16')")
            continue
        c.execute("begin")
        for _ in range(rng.randint(1, 20)):
            op = rng.random()
            i = rng.randint(0, 3000)
            if op < 0.5:
                v = "[%f, %f, %f, %f]" % tuple(rng.uniform(-1, 1) for _ in range(4))
                c.execute("insert or ignore into docs (id, embedding) values (?, ?)", [i, v])
            elif op < 0.8:
                c.execute("delete from docs where id = ?", [i])
            else:
                c.execute("update docs set embedding = '[9, 9, 9, 9]' where id = ?", [i])
        c.execute("commit")
        c.execute("select count(*) from f('[0, 0, 0, 0]', 5)").fetchone()
        if mode == "optimize" and rng.random() < 0.3:
            c.execute("insert into f(f) values ('optimize')")
    """
)

CHECK = textwrap.dedent(
    """
    import sqlite3, struct, sys
    c = sqlite3.connect(sys.argv[1], timeout=30)
    c.enable_load_extension(True)
    c.load_extension(sys.argv[2])
    c.execute("insert into f(f) values ('integrity-check')")
    rows = c.execute("select id, embedding from docs").fetchall()
    q = [0.1, -0.2, 0.3, 0.0]
    def vec(v):
        return struct.unpack("4f", v) if isinstance(v, bytes) else [float(x) for x in v.strip("[]").split(",")]
    want = sorted(rows, key=lambda r: (sum((a - b) ** 2 for a, b in zip(vec(r[1]), q)), r[0]))[:10]
    got = c.execute("select rowid from f where query = ? and k = 10", [struct.pack("4f", *q)]).fetchall()
    assert [r[0] for r in got] == [r[0] for r in want], (got, want)
    names = [r[0] for r in c.execute("select name from sqlite_master where name like 'h%'")]
    if "h" in names:
        c.execute("insert into h(h) values ('integrity-check')")
    print("ok", len(rows))
    """
)


def test_sigkill_at_random_points_never_loses_or_corrupts(tmp_path, report):
    path = tmp_path / "crash.db"
    conn = connect(path)
    conn.execute("create table docs (id integer primary key, embedding blob)")
    rng = np.random.default_rng(0)
    conn.executemany("insert into docs values (?, ?)", [(i, v.tobytes()) for i, v in enumerate(rng.normal(size=(1500, 4)).astype(np.float32))])
    conn.execute("create virtual table f using faiss(content = docs)")
    conn.commit()
    conn.close()
    lib = LIB.removesuffix(".so")
    rand = random.Random(1)
    kills = 0
    deadline = time.time() + 40
    for round_ in range(60):
        if time.time() > deadline and kills >= 12:
            break
        mode = ["write", "optimize", "create"][round_ % 3]
        worker = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(path), lib, str(round_), mode],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert worker.stdout.readline().strip() == "ready", worker.stderr.read()
        time.sleep(rand.uniform(0.02, 0.6))
        if worker.poll() is None:
            os.kill(worker.pid, signal.SIGKILL)
            kills += 1
        worker.wait()
        check = subprocess.run([sys.executable, "-c", CHECK, str(path), lib], capture_output=True, text=True, timeout=120)
        assert check.returncode == 0, f"after kill {kills} ({mode}): {check.stderr[-2000:]}"
        assert check.stdout.startswith("ok")
    report(f"crash test: {round_ + 1} rounds, {kills} processes killed with SIGKILL, all recovered")
    assert kills >= 12


# --- kills during 'rebuild' (issue 5, item 4) --------------------------------------------------
# A worker spends nearly all its time in 'rebuild' (Flat, HNSW, IVF), with some 'optimize',
# drop + CREATE VIRTUAL TABLE of a trained index, and small write batches in between, some of them
# in the same transaction as the rebuild. It prints a marker before and after each command, so
# that after SIGKILL the parent knows what the kill interrupted. After every kill a fresh process
# reopens the file: integrity-check passes for every faiss table, Flat equals brute force, the
# other indexes return rows that exist, and every table is usable: a new row is found by the next
# search, its deletion hides it, and integrity-check still passes.

REBUILD_DIM = 16
REBUILD_TABLES = {"rf": "Flat", "rh": "HNSW16", "ri": "IVF16,Flat"}

REBUILD_WORKER = textwrap.dedent(
    """
    import random, sqlite3, struct, sys
    path, lib, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = random.Random(seed)
    c = sqlite3.connect(path, isolation_level=None, timeout=30)
    c.enable_load_extension(True)
    c.load_extension(lib)
    print("ready", flush=True)

    def writes():
        for _ in range(rng.randint(1, 30)):
            i = rng.randint(0, 5000)
            r = rng.random()
            if r < 0.5:
                v = struct.pack("16f", *(rng.gauss(0, 1) for _ in range(16)))
                c.execute("insert or replace into docs (id, embedding) values (?, ?)", [i, v])
            elif r < 0.8:
                c.execute("delete from docs where id = ?", [i])
            else:
                c.execute("update docs set embedding = null where id = ?", [i])

    while True:
        r = rng.random()
        table = rng.choice(["rf", "rh", "ri"])
        if r < 0.1:
            print("begin create rc", flush=True)
            c.execute("drop table if exists rc")
            c.execute("create virtual table rc using faiss(content = docs, factory = 'IVF8,Flat')")
        elif r < 0.2:
            print("begin optimize", table, flush=True)
            c.execute(f"insert into {table}({table}) values ('optimize')")
        elif r < 0.4:
            print("begin write+rebuild", table, flush=True)
            c.execute("begin")
            writes()
            c.execute(f"insert into {table}({table}) values ('rebuild')")
            c.execute("commit")
        else:
            if r < 0.6:
                c.execute("begin")
                writes()
                c.execute("commit")
            print("begin rebuild", table, flush=True)
            c.execute(f"insert into {table}({table}) values ('rebuild')")
        print("end", flush=True)
    """
)

REBUILD_CHECK = textwrap.dedent(
    """
    import sqlite3, sys
    import numpy as np
    path, lib, round_ = sys.argv[1], sys.argv[2], int(sys.argv[3])
    c = sqlite3.connect(path, isolation_level=None, timeout=30)
    c.enable_load_extension(True)
    c.load_extension(lib)
    tables = [r[0] for r in c.execute("select name from sqlite_master where sql like 'create virtual table%using faiss%' order by name")]
    assert {"rf", "rh", "ri"} <= set(tables), tables

    def rows():
        got = c.execute("select id, embedding from docs where embedding is not null order by id").fetchall()
        return np.array([r[0] for r in got]), np.frombuffer(b"".join(r[1] for r in got), dtype="<f4").reshape(-1, 16)

    def search(table, q, k, params=""):
        return c.execute(f"select rowid, distance from {table} where query = ? and k = ? {params}", [q.tobytes(), k]).fetchall()

    for t in tables:
        c.execute(f"insert into {t}({t}) values ('integrity-check')")
    ids, x = rows()
    rng = np.random.default_rng(round_)
    for q in rng.normal(size=(5, 16)).astype(np.float32):
        d = ((x.astype(np.float64) - q) ** 2).sum(axis=1)
        want = ids[np.lexsort((ids, d))[:10]].tolist()
        got = search("rf", q, 10)
        assert [r for r, _ in got] == want, (got, want)
        for t in tables:
            got = search(t, q, 10)
            assert len(got) == 10 and set(r for r, _ in got) <= set(ids.tolist()), (t, got)
    # Usable: a new row is in every index at once (integrity-check) and found by the next search
    # (HNSW is approximate: searched with a wide efSearch); its deletion hides it.
    v = np.random.default_rng(10_000 + round_).normal(size=16).astype(np.float32)  # not a stored vector's seed
    rid = c.execute("insert into docs (embedding) values (?)", [v.tobytes()]).lastrowid
    wide = lambda t: "and params = 'efSearch=256'" if t in ("rh",) else ""
    for t in tables:
        c.execute(f"insert into {t}({t}) values ('integrity-check')")
        assert search(t, v, 1, wide(t)) == [(rid, 0.0)], (t, search(t, v, 1, wide(t)))
    c.execute("delete from docs where id = ?", [rid])
    for t in tables:
        assert rid not in [r for r, _ in search(t, v, 3, wide(t))], t
        c.execute(f"insert into {t}({t}) values ('integrity-check')")
    print("ok", len(ids), len(tables))
    """
)


def make_rebuild_db(path, wal):
    conn = connect(path)
    if wal:
        conn.execute("pragma journal_mode = wal")
    conn.execute("create table docs (id integer primary key, embedding blob)")
    rng = np.random.default_rng(7)
    data = rng.normal(size=(4000, REBUILD_DIM)).astype(np.float32)
    conn.executemany("insert into docs values (?, ?)", [(i, v.tobytes()) for i, v in enumerate(data)])
    conn.commit()
    for name, factory in REBUILD_TABLES.items():
        conn.execute(f"create virtual table {name} using faiss(content = docs, factory = '{factory}')")
    conn.commit()
    conn.close()


def test_sigkill_during_rebuild_optimize_and_create(tmp_path, report):
    paths = {False: tmp_path / "rebuild-rollback-journal.db", True: tmp_path / "rebuild-wal.db"}
    for wal, path in paths.items():
        make_rebuild_db(path, wal)
    lib = LIB.removesuffix(".so")
    rand = random.Random(2)
    interrupted = {}  # what each kill interrupted, from the worker's last marker
    kills = 0
    started = time.time()
    iterations = 30
    for round_ in range(iterations):
        wal = round_ % 2 == 1
        path = paths[wal]
        worker = subprocess.Popen(
            [sys.executable, "-c", REBUILD_WORKER, str(path), lib, str(round_)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert worker.stdout.readline().strip() == "ready", worker.stderr.read()
        time.sleep(rand.uniform(0.05, 0.8))
        assert worker.poll() is None, worker.stderr.read()[-2000:]
        os.kill(worker.pid, signal.SIGKILL)
        kills += 1
        out, _ = worker.communicate()
        lines = out.strip().splitlines()
        last = lines[-1] if lines else "ready"
        what = " ".join(last.split()[1:2]) if last.startswith("begin") else "writes or between commands"
        interrupted[what] = interrupted.get(what, 0) + 1
        # The files as the kill left them, kept for a failure's reproduction.
        kept = tmp_path / f"killed-{round_}"
        kept.mkdir()
        for f in path.parent.glob(path.name + "*"):
            shutil.copy(f, kept / f.name)
        check = subprocess.run([sys.executable, "-c", REBUILD_CHECK, str(path), lib, str(round_)],
                               capture_output=True, text=True, timeout=120)
        journal = "wal" if wal else "rollback journal"
        assert check.returncode == 0, (
            f"after kill {kills} ({journal}, during {last!r}; files as the kill left them in {kept}): "
            f"{check.stderr[-3000:]}"
        )
        shutil.rmtree(kept)
        assert check.stdout.startswith("ok")
    summary = ", ".join(f"{n} during {w}" for w, n in sorted(interrupted.items()))
    report(f"rebuild crash test: {iterations} rounds (rollback journal and WAL), {kills} processes killed with "
          f"SIGKILL ({summary}), all recovered in {time.time() - started:.1f} s")
    assert interrupted.get("rebuild", 0) + interrupted.get("write+rebuild", 0) >= iterations // 2
