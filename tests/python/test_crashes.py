"""Processes killed with SIGKILL at random points while writing, optimizing or creating: after
reopening, integrity-check passes and an exact index agrees with the table."""
import os
import random
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


def test_sigkill_at_random_points_never_loses_or_corrupts(tmp_path):
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
    print(f"crash test: {round_ + 1} rounds, {kills} processes killed with SIGKILL, all recovered")
    assert kills >= 12
