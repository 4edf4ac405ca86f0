"""Concurrency at scale (issue 5, item 3).

One file-backed WAL database holds a content table `docs` with two faiss tables over it (`flat`,
exact, and `hnsw`) and a plain table `notes` (searched through faiss_search's exact registry
index). While reader threads search continuously, each with its own connection, writer threads in
the same process and writer processes (two that load vekter, one that never does: the triggers
are plain SQL) insert, update and delete rows, now and then running 'optimize' and 'rebuild'.

Checks:
- no deadlock: every thread and process finishes within a bound (stacks are dumped if not);
- no exception other than SQLITE_BUSY where SQLite demands a retry (counted);
- every verified read is consistent: the search and the rows it is compared with are read in one
  transaction (`BEGIN; search; SELECT rows; COMMIT`, or rows first and the search after a pause,
  while writers commit: the long-reader path), and exact searches equal numpy brute force over
  exactly the rows that transaction sees. Writers also search inside their own write
  transactions, which must see their uncommitted rows;
- after the writers: integrity-check passes for both faiss tables, exact searches equal brute
  force, in this process and in a fresh one (snapshot + change log replayed).
"""
import collections
import faulthandler
import json
import os
import pathlib
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import traceback

import numpy as np

from conftest import LIB, connect

DIM = 8
INITIAL_ROWS = 3000
ID_SPACE = 6000
K = 10
READERS = 6
WRITER_THREADS = 2
WRITER_PROCESSES = 3  # the last one never loads vekter
WRITE_SECONDS = float(os.environ.get("VEKTER_CONCURRENCY_SECONDS", "25"))
BOUND_SECONDS = WRITE_SECONDS + 60  # beyond this, something is stuck
HERE = pathlib.Path(__file__).resolve().parent


def is_busy(error):
    return isinstance(error, sqlite3.OperationalError) and (getattr(error, "sqlite_errorcode", 0) & 0xFF) == 5


def open_db(path, load=True):
    if load:
        return connect(path, isolation_level=None, timeout=30)
    return sqlite3.connect(str(path), isolation_level=None, timeout=30)


# --- brute force -------------------------------------------------------------------------------

def decode(value):
    if isinstance(value, bytes):
        return np.frombuffer(value, dtype="<f4")
    return np.asarray(json.loads(value), dtype=np.float32)


def read_rows(conn, table="docs", where=""):
    """The ids (ascending) and vectors of `table` as this connection's transaction sees them."""
    rows = conn.execute(f"select id, embedding from {table} where embedding is not null {where} order by id").fetchall()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    vectors = np.empty((len(rows), DIM), dtype=np.float32)
    blobs = [j for j, r in enumerate(rows) if isinstance(r[1], bytes)]
    if blobs:
        vectors[blobs] = np.frombuffer(b"".join(rows[j][1] for j in blobs), dtype="<f4").reshape(-1, DIM)
    if len(blobs) < len(rows):
        for j, r in enumerate(rows):
            if not isinstance(r[1], bytes):
                vectors[j] = decode(r[1])
    return ids, vectors


def check(got, ids, vectors, q, k, exact=True):
    """Compares [(id, distance)] with brute force. Returns (problem or None, kind, recall hits)."""
    d = ((vectors.astype(np.float64) - q.astype(np.float64)) ** 2).sum(axis=1)
    order = np.lexsort((ids, d))
    n = min(k, len(ids))
    got_ids = [int(r) for r, _ in got]
    found = np.searchsorted(ids, got_ids) if len(ids) else np.zeros(len(got_ids), dtype=np.int64)
    position = {r: int(j) for r, j in zip(got_ids, found) if j < len(ids) and ids[j] == r}
    if len(got) != n:
        return f"{len(got)} rows, expected {n}", None, 0
    if len(set(got_ids)) != len(got_ids):
        return f"duplicate ids {got_ids}", None, 0
    for r, dist in got:
        j = position.get(int(r))
        if j is None:
            return f"id {r} is not in the transaction's rows", None, 0
        if abs(dist - d[j]) > 1e-4 * (1 + d[j]):
            return f"id {r}: distance {dist}, its vector gives {d[j]}", None, 0
    for (_, a), (_, b) in zip(got, got[1:]):
        if b < a - 1e-5 * (1 + abs(a)):
            return f"not nearest first: {got}", None, 0
    want = [int(ids[j]) for j in order[:n]]
    hits = len(set(got_ids) & set(want))
    if not exact:
        return None, "approximate", hits
    if got_ids == want:
        return None, "exact", hits
    # Differs only where distances tie (within float32 rounding): still right.
    if np.allclose(np.sort([d[position[r]] for r in got_ids]), d[order[:n]], rtol=1e-6, atol=1e-6):
        return None, "tie", hits
    return f"got {got_ids}, brute force {want} (distances {d[order[:n]].round(5).tolist()})", None, hits


def vtab_search(conn, table, q, k=K, extra="", params=()):
    return conn.execute(
        f"select rowid, distance from {table} where query = ? and k = ? {extra}", [q.tobytes(), k, *params]
    ).fetchall()


def function_search(conn, table, q, k=K):
    (text,) = conn.execute("select faiss_search_with_scores('main', ?, ?, ?)", [table, q.tobytes(), k]).fetchone()
    return [(r, s) for r, s in json.loads(text)]


# --- writers (threads and processes) -----------------------------------------------------------

def random_vector(rng):
    v = rng.normal(size=DIM).astype(np.float32)
    if rng.random() < 0.1:  # JSON text, as some tools store it
        return json.dumps([float(x) for x in v])
    return v.tobytes()


def one_write(conn, rng):
    op = rng.random()
    i = int(rng.integers(0, ID_SPACE))
    if op < 0.33:
        conn.execute("insert or ignore into docs (id, embedding) values (?, ?)", [i, random_vector(rng)])
    elif op < 0.37:
        conn.execute("insert into docs (embedding) values (?)", [random_vector(rng)])
    elif op < 0.41:
        conn.execute("insert or replace into docs (id, embedding) values (?, ?)", [i, random_vector(rng)])
    elif op < 0.60:
        conn.execute("update docs set embedding = ? where id = ?", [random_vector(rng), i])
    elif op < 0.62:
        conn.execute("update docs set embedding = null where id = ?", [i])
    elif op < 0.66:
        conn.execute("update or ignore docs set id = ? where id = ?", [int(rng.integers(0, ID_SPACE)), i])
    elif op < 0.88:
        conn.execute("delete from docs where id = ?", [i])
    elif op < 0.90:
        conn.execute("delete from docs where id between ? and ?", [i, i + 4])
    elif op < 0.96:
        conn.execute("insert or replace into notes (id, embedding) values (?, ?)", [i % 1000, random_vector(rng)])
    else:
        conn.execute("delete from notes where id = ?", [i % 1000])


def verify_in_transaction(conn, rng, stats, problems, when):
    q = rng.normal(size=DIM).astype(np.float32)
    rows = None
    for table, exact in [("flat", True), ("hnsw", False)]:
        got = vtab_search(conn, table, q)
        rows = rows or read_rows(conn)
        problem, kind, hits = check(got, *rows, q, K, exact)
        stats["searches"] += 1
        if problem:
            problems.append(f"{table} {when}: {problem}")
        elif exact:
            stats["verified in write transactions"] += 1
            stats["ties"] += kind == "tie"


def run_writer(conn, seed, deadline, vekter, stats, problems):
    """Writes until `deadline`, in three ways: batches in BEGIN IMMEDIATE; batches in a deferred
    transaction that first reads (with vekter: searches), so that its first write can meet
    SQLITE_BUSY (snapshot outdated: no busy handler helps, the transaction must be retried);
    single autocommit statements. With vekter loaded it also searches inside its write
    transactions (checked against the rows it sees, its own uncommitted ones included) and runs
    'optimize' / 'rebuild' now and then. Returns when the deadline passes."""
    rng = np.random.default_rng(seed)
    while time.time() < deadline:
        try:
            style = rng.random()
            if style < 0.15:
                one_write(conn, rng)
                stats["writes"] += 1
                stats["autocommit writes"] += 1
                continue
            if style < 0.4:
                conn.execute("begin")
                if vekter:
                    verify_in_transaction(conn, rng, stats, problems, "in a read transaction before writing")
                else:
                    conn.execute("select count(*) from docs").fetchone()
                stats["deferred transactions"] += 1
            else:
                conn.execute("begin immediate")
            ops = int(rng.integers(1, 16))
            for _ in range(ops):
                one_write(conn, rng)
            if vekter and rng.random() < 0.2:
                verify_in_transaction(conn, rng, stats, problems, "inside a write transaction")
            if rng.random() < 0.1:
                conn.execute("rollback")
                stats["rollbacks"] += 1
            else:
                conn.execute("commit")
                stats["writes"] += ops
                stats["write transactions"] += 1
            if vekter:
                r = rng.random()
                if r < 0.08:
                    table = ["flat", "hnsw"][int(rng.integers(0, 2))]
                    conn.execute(f"insert into {table}({table}) values ('optimize')")
                    stats["optimizes"] += 1
                elif r < 0.09:
                    table = ["flat", "hnsw"][int(rng.integers(0, 2))]
                    conn.execute(f"insert into {table}({table}) values ('rebuild')")
                    stats["rebuilds"] += 1
        except sqlite3.OperationalError as e:
            if not is_busy(e):
                raise
            stats["busy retries"] += 1
            if conn.in_transaction:
                conn.execute("rollback")
            time.sleep(0.005)


def process_writer(path, lib, seed, deadline):
    """Entry point of a writer process. lib == '' means: never load vekter."""
    stats, problems = collections.Counter(), []
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    if lib:
        conn.enable_load_extension(True)
        conn.load_extension(lib)
        conn.enable_load_extension(False)
    else:
        try:
            conn.execute("select vekter_version()")
            raise AssertionError("vekter is loaded in the process that must not load it")
        except sqlite3.OperationalError:
            pass
    try:
        run_writer(conn, int(seed), float(deadline), bool(lib), stats, problems)
    except Exception:
        problems.append("exception: " + traceback.format_exc())
    conn.close()
    return {"stats": dict(stats), "problems": problems}


PROCESS = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import test_concurrency as t
    print(json.dumps(t.process_writer(*sys.argv[2:])), flush=True)
    """
)


# --- readers -----------------------------------------------------------------------------------

def one_read(conn, rng, stats, problems):
    mode = int(rng.integers(0, 8))
    q = rng.normal(size=DIM).astype(np.float32)
    k = int(rng.choice([1, 5, 10, 25]))
    if mode == 7:  # autocommit: the fast path; no transaction to compare with, only the count
        for query in rng.normal(size=(8, DIM)).astype(np.float32):
            assert len(vtab_search(conn, "flat", query, k)) == k
            assert len(function_search(conn, "hnsw", query, k)) == k
            assert len(function_search(conn, "notes", query, k)) == k
            stats["searches"] += 3
        return
    conn.execute("begin")
    if mode == 0:
        checks = [("flat", vtab_search(conn, "flat", q, k), read_rows(conn), True)]
    elif mode == 1:
        # Rows first, then a pause while writers commit: this transaction's snapshot is now older
        # than the shared index, and the search must still answer for this snapshot.
        rows = read_rows(conn)
        (before,) = conn.execute("pragma data_version").fetchone()
        time.sleep(float(rng.uniform(0, 0.08)))
        checks = [("flat (older snapshot)", vtab_search(conn, "flat", q, k), rows, True),
                  ("hnsw (older snapshot)", vtab_search(conn, "hnsw", q, k), rows, False),
                  ("faiss_search flat (older snapshot)", function_search(conn, "flat", q, k), rows, True)]
        conn.execute("commit")
        # Did another connection commit while this snapshot was held? (Counted, not required.)
        stats["older-snapshot reads"] += conn.execute("pragma data_version").fetchone()[0] != before
    elif mode == 2:
        checks = [("faiss_search flat", function_search(conn, "flat", q, k), read_rows(conn), True)]
    elif mode == 3:
        checks = [("faiss_search notes", function_search(conn, "notes", q, k), read_rows(conn, "notes"), True)]
    elif mode == 4:
        params = "" if rng.random() < 0.5 else " and params = 'efSearch=128'"
        checks = [("hnsw", vtab_search(conn, "hnsw", q, k, params), read_rows(conn), False)]
    elif mode == 5:
        m = int(rng.integers(0, 3))
        got = vtab_search(conn, "flat", q, k, "and rowid in (select id from docs where id % 3 = ?)", [m])
        checks = [("flat filtered", got, read_rows(conn, where=f"and id % 3 = {m}"), True)]
    else:
        checks = [("faiss_search hnsw", function_search(conn, "hnsw", q, k), read_rows(conn), False)]
    if conn.in_transaction:
        conn.execute("commit")
    for name, got, (ids, vectors), exact in checks:
        stats["searches"] += 1
        problem, kind, hits = check(got, ids, vectors, q, k, exact)
        if problem:
            problems.append(f"{name}, k={k}: {problem}")
            continue
        if exact:
            stats["verified snapshots"] += 1
            stats["ties"] += kind == "tie"
        else:
            stats["approximate checked"] += 1
            stats["recall hits"] += hits
            stats["recall wanted"] += min(k, len(ids))


def reader(path, seed, stop, stats, problems):
    rng = np.random.default_rng(seed)
    conn = open_db(path)
    try:
        while not stop.is_set():
            try:
                one_read(conn, rng, stats, problems)
            except sqlite3.OperationalError as e:
                if not is_busy(e):
                    raise
                stats["busy retries"] += 1
                if conn.in_transaction:
                    conn.execute("rollback")
    except Exception:
        problems.append("reader exception: " + traceback.format_exc())
    finally:
        conn.close()


def writer_thread(path, seed, deadline, stats, problems):
    conn = open_db(path)
    try:
        run_writer(conn, seed, deadline, True, stats, problems)
    except Exception:
        problems.append("writer exception: " + traceback.format_exc())
    finally:
        conn.close()


# --- after the writers -------------------------------------------------------------------------

def final_check(path, queries=40):
    """integrity-check, then exact searches equal brute force. Returns (problems, figures)."""
    conn = open_db(path)
    problems, figures = [], collections.Counter()
    for table in ["flat", "hnsw"]:
        try:
            conn.execute(f"insert into {table}({table}) values ('integrity-check')")
        except sqlite3.Error as e:
            problems.append(f"integrity-check {table}: {e}")
    ids, vectors = read_rows(conn)
    note_ids, note_vectors = read_rows(conn, "notes")
    rng = np.random.default_rng(99)
    for q in rng.normal(size=(queries, DIM)).astype(np.float32):
        for name, got, rows, exact in [
            ("flat", vtab_search(conn, "flat", q, K), (ids, vectors), True),
            ("faiss_search flat", function_search(conn, "flat", q, K), (ids, vectors), True),
            ("faiss_search notes", function_search(conn, "notes", q, K), (note_ids, note_vectors), True),
            ("hnsw", vtab_search(conn, "hnsw", q, K), (ids, vectors), False),
        ]:
            problem, kind, hits = check(got, *rows, q, K, exact)
            if problem:
                problems.append(f"after the writers, {name}: {problem}")
            elif exact:
                figures["exact"] += 1
                figures["ties"] += kind == "tie"
            else:
                figures["recall hits"] += hits
                figures["recall wanted"] += K
    figures["rows"] = len(ids)
    conn.close()
    return problems, dict(figures)


FRESH = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import test_concurrency as t
    print(json.dumps(t.final_check(sys.argv[2])), flush=True)
    """
)


# --- the test ----------------------------------------------------------------------------------

def test_readers_writers_threads_and_processes_agree_with_the_table(tmp_path, report):
    path = str(tmp_path / "concurrency.db")
    setup = open_db(path)
    setup.execute("pragma journal_mode = wal")
    setup.execute("create table docs (id integer primary key, embedding blob)")
    setup.execute("create table notes (id integer primary key, embedding blob)")
    rng = np.random.default_rng(0)
    setup.execute("begin")
    setup.executemany("insert into docs values (?, ?)",
                      [(i, v.tobytes()) for i, v in enumerate(rng.normal(size=(INITIAL_ROWS, DIM)).astype(np.float32))])
    setup.executemany("insert into notes values (?, ?)",
                      [(i, v.tobytes()) for i, v in enumerate(rng.normal(size=(500, DIM)).astype(np.float32))])
    setup.execute("commit")
    setup.execute("create virtual table flat using faiss(content = docs, factory = 'Flat')")
    setup.execute("create virtual table hnsw using faiss(content = docs, factory = 'HNSW16', params = 'efSearch=64')")
    setup.close()

    started = time.time()
    deadline = started + WRITE_SECONDS
    stop = threading.Event()
    reader_stats = [collections.Counter() for _ in range(READERS)]
    writer_stats = [collections.Counter() for _ in range(WRITER_THREADS)]
    problems = []  # list.append is atomic under the GIL
    readers = [threading.Thread(target=reader, args=(path, 100 + t, stop, reader_stats[t], problems), daemon=True)
               for t in range(READERS)]
    writers = [threading.Thread(target=writer_thread, args=(path, 200 + t, deadline, writer_stats[t], problems), daemon=True)
               for t in range(WRITER_THREADS)]
    lib = LIB.removesuffix(".so")
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PROCESS, str(HERE), path, lib if p < WRITER_PROCESSES - 1 else "", str(300 + p), str(deadline)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for p in range(WRITER_PROCESSES)
    ]
    for t in readers + writers:
        t.start()

    bound = started + BOUND_SECONDS
    outputs = []
    try:
        for t in writers:
            t.join(timeout=max(0, bound - time.time()))
        for p in processes:
            outputs.append(p.communicate(timeout=max(1, bound - time.time())))
        stop.set()
        for t in readers:
            t.join(timeout=max(0, bound - time.time()))
        stuck = [t.name for t in readers + writers if t.is_alive()]
        if stuck:
            faulthandler.dump_traceback(all_threads=True)
        assert not stuck, f"deadlock: threads {stuck} still running after {BOUND_SECONDS} s (stacks on stderr)"
    except subprocess.TimeoutExpired:
        faulthandler.dump_traceback(all_threads=True)
        raise AssertionError(f"deadlock: a writer process still running after {BOUND_SECONDS} s")
    finally:
        stop.set()
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
    elapsed_writes = time.time() - started

    process_stats = []
    for p, (out, err) in zip(processes, outputs):
        assert p.returncode == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        problems.extend(f"process {p.pid}: {x}" for x in result["problems"])
        process_stats.append(collections.Counter(result["stats"]))

    final_problems, final = final_check(path)
    problems.extend(final_problems)
    fresh = subprocess.run([sys.executable, "-c", FRESH, str(HERE), path], capture_output=True, text=True, timeout=120)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    fresh_problems, fresh_figures = json.loads(fresh.stdout.strip().splitlines()[-1])
    problems.extend(f"fresh process: {x}" for x in fresh_problems)

    total = sum(reader_stats + writer_stats + process_stats, collections.Counter())
    disagreements = [x for x in problems if "exception" not in x]
    recall = total["recall hits"] / max(1, total["recall wanted"])
    final_recall = final["recall hits"] / max(1, final["recall wanted"])
    print()
    report(f"concurrency: {READERS} reader threads, {WRITER_THREADS} writer threads, {WRITER_PROCESSES} writer processes "
          f"(1 without vekter), {total['searches']} searches, {total['writes']} writes, "
          f"{total['verified snapshots'] + total['verified in write transactions']} verified snapshots, "
          f"{len(disagreements)} disagreements")
    report(f"concurrency details: {total['write transactions']} write transactions "
          f"({total['deferred transactions']} begun deferred, with a read first), "
          f"{total['autocommit writes']} autocommit writes, {total['rollbacks']} rollbacks, "
          f"{total['optimizes']} optimizes, {total['rebuilds']} rebuilds, {total['busy retries']} busy retries, "
          f"{total['older-snapshot reads']} older-snapshot reads, "
          f"{total['verified in write transactions']} verified inside writers' transactions, "
          f"{total['ties']} float ties, HNSW recall@k {recall:.3f} during / {final_recall:.3f} after, "
          f"{final['rows']} rows at the end, {final['exact'] + fresh_figures['exact']} exact checks after "
          f"(this process and a fresh one), {elapsed_writes:.1f} s of concurrent work")
    per_process = ", ".join(f"{s['writes']}" for s in process_stats)
    print(f"concurrency per worker: reader searches {[s['searches'] for s in reader_stats]}, "
          f"writer thread writes {[s['writes'] for s in writer_stats]}, writer process writes [{per_process}]")

    assert not problems, f"{len(problems)} problems, first ones:\n" + "\n".join(problems[:10])
    # Everyone made progress: no thread or process starved.
    assert all(s["searches"] > 0 for s in reader_stats)
    assert all(s["writes"] > 0 for s in writer_stats + process_stats)
    assert total["optimizes"] > 0
    assert recall > 0.85 and final_recall > 0.85
