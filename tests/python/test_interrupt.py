"""Issue 14, part 3: long work shows how far it is (`faiss_indexes` from another connection, the
sqlite3 shell's stderr) and stops on `sqlite3_interrupt` (`conn.interrupt()`, Ctrl-C in the
shell) with SQLite's "interrupted", leaving the database as it was before the statement: no
faiss table, shadow table or trigger after an interrupted CREATE; the old index, intact, after an
interrupted rebuild or optimize.

The time from the interrupt to the error is measured in `make bench` (section `interrupt`); here
it only has to come long before the work would have ended."""
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time

import numpy as np
import pytest
from conftest import LIB, connect

DIM = 64
ROWS = 30_000


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    p = tmp_path_factory.mktemp("interrupt") / "i.db"
    c = connect(p, isolation_level=None)
    x = np.random.default_rng(7).standard_normal((ROWS, DIM)).astype(np.float32)
    c.execute("create table t(id integer primary key, embedding blob)")
    c.execute("begin")
    c.executemany("insert into t values (?, ?)", ((i + 1, x[i].tobytes()) for i in range(ROWS)))
    c.execute("commit")
    c.close()
    return p


def objects(conn, like):
    return conn.execute("select type, name from sqlite_master where name like ? order by name", [like]).fetchall()


def progress(conn, name):
    """The states of `name`'s work in progress (rows of `faiss_indexes` other than its index's)."""
    return [s for n, s in conn.execute("select name, state from faiss_indexes")
            if n == name and s.split(":", 1)[0] in ("building", "optimizing", "applying changes")]


def interrupt_when(worker_conn, watcher, name, phase, sql):
    """Run `sql` on a thread; once `faiss_indexes` (read by `watcher`) shows `name` in `phase`,
    interrupt it. Returns (error or None, seconds from the interrupt to the end, states seen)."""
    out = {}

    def work():
        try:
            worker_conn.execute(sql)
            out["error"] = None
        except Exception as e:  # noqa: BLE001 - the error is the result
            out["error"] = e
        out["end"] = time.perf_counter()

    th = threading.Thread(target=work)
    th.start()
    seen = []
    deadline = time.time() + 60
    while time.time() < deadline and th.is_alive():
        states = progress(watcher, name)
        seen.extend(states)
        if any(s.split(": ", 1)[-1].startswith(phase) for s in states):
            break
        time.sleep(0.02)
    asked = time.perf_counter()
    worker_conn.interrupt()
    th.join(60)
    assert not th.is_alive(), "the work did not stop"
    return out["error"], out["end"] - asked, seen


@pytest.mark.parametrize("factory, options, phase", [
    ("HNSW32", "", "adding rows"),
    ("IVF1024,Flat", ", train_size = 30000", "training"),
])
def test_an_interrupted_create_leaves_nothing(path, factory, options, phase):
    worker = connect(path, isolation_level=None, check_same_thread=False)
    watcher = connect(path, isolation_level=None)
    error, took, seen = interrupt_when(
        worker, watcher, "idx", phase,
        f"create virtual table idx using faiss(content = t, factory = '{factory}'{options})")
    # SQLite's own code and message, as Datasette's time limit expects them.
    assert error is not None and error.sqlite_errorcode == sqlite3.SQLITE_INTERRUPT, error
    assert str(error) == "interrupted", error
    assert any(s.startswith(f"building: {phase}") for s in seen), seen
    assert took < 20, f"stopped {took:.1f} s after the interrupt"
    for conn in (worker, watcher):
        assert objects(conn, "idx%") == []
        assert conn.execute("select count(*) from sqlite_master where type = 'trigger'").fetchone()[0] == 0
        assert conn.execute("select count(*) from t").fetchone()[0] == ROWS
    assert progress(watcher, "idx") == [], "the task is still listed"
    # Nothing is left half-made: the same statement works at once.
    worker.execute("create virtual table idx using faiss(content = t, factory = 'Flat')")
    worker.execute("drop table idx")


@pytest.mark.parametrize("command", ["rebuild", "optimize"])
def test_an_interrupted_rebuild_or_optimize_leaves_the_old_index(path, command):
    worker = connect(path, isolation_level=None, check_same_thread=False)
    watcher = connect(path, isolation_level=None)
    worker.execute("create virtual table old using faiss(content = t, factory = 'HNSW32')")
    q = np.ones(DIM, dtype=np.float32).tobytes()
    search = "select rowid, distance from old where query = ? and k = 10 and params = 'efSearch=64'"
    before = watcher.execute(search, [q]).fetchall()
    snapshot = watcher.execute("select count(*), sum(length(data)) from old_chunks").fetchone()
    if command == "optimize":  # a deleted row makes optimize compact (rebuild its graph)
        worker.execute("delete from t where id = 1")
        worker.execute("insert into t values (1, ?)", [np.zeros(DIM, dtype=np.float32).tobytes()])
        before = watcher.execute(search, [q]).fetchall()
    config = watcher.execute("select * from old_config order by 1").fetchall()
    chunks = watcher.execute("select group_concat(hex(substr(data, 1, 64)) || length(data)) from old_chunks").fetchone()
    error, took, seen = interrupt_when(
        worker, watcher, "old", "adding rows", f"insert into old(old) values ('{command}')")
    assert error is not None and error.sqlite_errorcode == sqlite3.SQLITE_INTERRUPT, error
    work = "building" if command == "rebuild" else "optimizing"
    assert any(s.startswith(f"{work}: adding rows") for s in seen), seen
    assert took < 20, f"stopped {took:.1f} s after the interrupt"
    assert watcher.execute("select count(*), sum(length(data)) from old_chunks").fetchone() == snapshot
    # The stored snapshot and its record (build id, seal) are the ones from before.
    assert watcher.execute("select * from old_config order by 1").fetchall() == config
    assert watcher.execute(
        "select group_concat(hex(substr(data, 1, 64)) || length(data)) from old_chunks").fetchone() == chunks
    fresh = connect(path, isolation_level=None)
    for conn in (worker, watcher, fresh):
        assert conn.execute(search, [q]).fetchall() == before
    worker.execute("insert into old(old) values ('integrity-check')")
    worker.execute("drop table old")


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="no sqlite3 shell (make test installs it)")
def test_the_shell_shows_progress_and_stops_on_ctrl_c(tmp_path):
    """The sqlite3 shell: progress on stderr (forced on, as stderr is a pipe here, not a
    terminal), and SIGINT (Ctrl-C) interrupts the statement."""
    path = tmp_path / "shell.db"
    c = connect(path, isolation_level=None)
    x = np.random.default_rng(8).standard_normal((60_000, 128)).astype(np.float32)
    c.execute("create table t(id integer primary key, embedding blob)")
    c.execute("begin")
    c.executemany("insert into t values (?, ?)", ((i + 1, x[i].tobytes()) for i in range(len(x))))
    c.execute("commit")
    c.close()
    env = dict(os.environ, VEKTER_PROGRESS="1", VEKTER_THREADS="1")
    shell = subprocess.Popen(
        ["sqlite3", str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, text=True)
    err = []
    reader = threading.Thread(target=lambda: err.extend(iter(lambda: shell.stderr.read(1), "")), daemon=True)
    reader.start()
    shell.stdin.write(f".load {LIB.removesuffix('.so')}\n"
                      "create virtual table sh using faiss(content = t, factory = 'HNSW32');\n")
    shell.stdin.close()
    deadline = time.time() + 60
    while "adding rows" not in "".join(err) and time.time() < deadline and shell.poll() is None:
        time.sleep(0.05)
    shell.send_signal(signal.SIGINT)
    try:
        shell.wait(timeout=60)  # (it prints nothing on stdout)
    except subprocess.TimeoutExpired:
        shell.kill()
        raise
    reader.join(10)
    err = "".join(err)
    assert "vekter: building sh: adding rows" in err, err
    assert "interrupted" in err, err
    # (The shell stops reading a script on Ctrl-C: the database tells what is left.)
    c = connect(path, isolation_level=None)
    assert objects(c, "sh%") == []


def test_a_large_catch_up_shows_progress_and_stops(tmp_path):
    """The first search after many writes applies them (here 70,000 rows to an HNSW graph): it is
    listed in `faiss_indexes` for the other connections meanwhile, stops on an interrupt, and
    the next search applies them all."""
    path = tmp_path / "c.db"
    writer = connect(path, isolation_level=None, check_same_thread=False)
    watcher = connect(path, isolation_level=None)
    rng = np.random.default_rng(9)
    writer.execute("create table t(id integer primary key, embedding blob)")
    writer.executemany("insert into t values (?, ?)",
                       ((i, rng.standard_normal(DIM).astype(np.float32).tobytes()) for i in range(1, 2001)))
    writer.execute("create virtual table cu using faiss(content = t, factory = 'HNSW32')")
    q = rng.standard_normal(DIM).astype(np.float32).tobytes()
    search = "select rowid from cu where query = ? and k = 5"
    watcher.execute(search, [q]).fetchall()
    writer.execute("begin")
    writer.executemany("insert into t values (?, ?)",
                       ((i, rng.standard_normal(DIM).astype(np.float32).tobytes()) for i in range(2001, 72001)))
    writer.execute("commit")
    blob = "x'" + q.hex() + "'"
    sql = f"select count(*) from (select rowid from cu where query = {blob} and k = 5)"
    error, took, seen = interrupt_when(writer, watcher, "cu", "", sql)
    assert any(s.startswith("applying changes: ") for s in seen), seen
    assert error is not None and error.sqlite_errorcode == sqlite3.SQLITE_INTERRUPT, error
    assert took < 20, f"stopped {took:.1f} s after the interrupt"
    assert watcher.execute("select count(*) from cu").fetchone()[0] == 72000
