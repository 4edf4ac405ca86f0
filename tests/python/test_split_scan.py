"""Issue 13, part 3: a large exact scan is split between the idle cores, and the answer is the
same as one thread's (brute force in numpy), with deleted rows, every metric, several query
vectors, `faiss_search` on a plain table, and many connections searching at once.

`vekter_debug()` counts the scans that were split (`threads.split_scans`) and the threads inside
searches now (`threads.searching_now`): the tests check both, so a scan that silently stays on
one thread, or a team that never gives its cores back, fails here."""
import json
import os
import threading

import numpy as np
import pytest

from conftest import connect

ROWS, DIM = 48_000, 64  # 3.1M numbers: two shards of at least 2^20
CPUS = len(os.sched_getaffinity(0))
MULTI = CPUS >= 2 and os.environ.get("VEKTER_THREADS", "2") != "1"


def threads_info(conn):
    return json.loads(conn.execute("select vekter_debug()").fetchone()[0])["threads"]


def split_scans(conn):
    return threads_info(conn)["split_scans"]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(13)
    return rng.standard_normal((ROWS, DIM)).astype(np.float32), rng.standard_normal((12, DIM)).astype(np.float32)


@pytest.fixture(scope="module")
def db(tmp_path_factory, data):
    base, _ = data
    path = tmp_path_factory.mktemp("split") / "split.db"
    c = connect(path)
    c.execute("create table t (id integer primary key, embedding blob)")
    c.executemany("insert into t values (?, ?)", [(i + 1, v.tobytes()) for i, v in enumerate(base)])
    for metric in ("l2", "ip", "cosine"):
        c.execute(f"create virtual table flat_{metric} using faiss(content = t, column = embedding, metric = '{metric}')")
    c.commit()
    c.close()
    return path


def brute(base, q, k, metric, alive=None):
    ids = np.arange(1, len(base) + 1)
    if alive is not None:
        base, ids = base[alive], ids[alive]
    if metric == "l2":
        score = ((base - q) ** 2).sum(1)
    elif metric == "ip":
        score = -(base @ q)
    else:
        unit = base / np.linalg.norm(base, axis=1, keepdims=True)
        score = -(unit @ (q / np.linalg.norm(q)))
    return [int(i) for i in ids[np.argsort(score, kind="stable")[:k]]]


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_split_scan_equals_brute_force(db, data, metric):
    base, queries = data
    c = connect(db)
    before = split_scans(c)
    for k in (1, 10, 100):
        for q in queries[:4]:
            got = [r[0] for r in c.execute(f"select rowid from flat_{metric} where query = ? and k = ?", [q.tobytes(), k])]
            assert got == brute(base, q, k, metric)
    if MULTI:
        assert split_scans(c) - before == 12
    assert threads_info(c)["searching_now"] == 0


def test_distances_are_those_of_one_thread(db, data):
    base, queries = data
    c = connect(db)
    q = queries[5]
    rows = c.execute("select rowid, distance from flat_l2 where query = ? and k = 20", [q.tobytes()]).fetchall()
    want = ((base[[r[0] - 1 for r in rows]] - q) ** 2).sum(1)
    assert np.allclose([r[1] for r in rows], want, rtol=1e-4)
    assert [r[1] for r in rows] == sorted(r[1] for r in rows)


def test_one_thread_when_vekter_threads_is_1(db, data):
    base, queries = data
    c = connect(db)
    default = c.execute("select vekter_threads()").fetchone()[0]
    try:
        c.execute("select vekter_threads(1)")
        assert threads_info(c)["scan"] == 1
        before = split_scans(c)
        got = [r[0] for r in c.execute("select rowid from flat_l2 where query = ? and k = 10", [queries[0].tobytes()])]
        assert got == brute(base, queries[0], 10, "l2")
        assert split_scans(c) == before
    finally:
        c.execute(f"select vekter_threads({default})")


def test_deleted_rows_stay_out_of_every_range(tmp_path, data):
    """Deleted rows not yet compacted away are left out by a bitmap; such a scan stays on one
    thread (a range ANDed with a bitmap would cost FAISS its range shortcut: found in review,
    7.1 ms split against 5.6 ms whole on 1M x 4), and after `optimize` it splits again."""
    base, queries = data
    c = connect(tmp_path / "del.db")
    c.execute("create table t (id integer primary key, embedding blob)")
    c.executemany("insert into t values (?, ?)", [(i + 1, v.tobytes()) for i, v in enumerate(base)])
    c.execute("create virtual table idx using faiss(content = t, column = embedding)")
    c.commit()
    # The nearest rows of each query, in both halves of the index, go.
    gone = set()
    for q in queries[:3]:
        gone.update(brute(base, q, 30, "l2")[::2])
    c.executemany("delete from t where id = ?", [(i,) for i in sorted(gone)])
    c.commit()
    alive = np.array([i + 1 not in gone for i in range(ROWS)])
    before = split_scans(c)
    for q in queries[:3]:
        got = [r[0] for r in c.execute("select rowid from idx where query = ? and k = 25", [q.tobytes()])]
        assert not set(got) & gone
        assert got == brute(base, q, 25, "l2", alive)
    assert split_scans(c) == before
    c.execute("insert into idx(idx) values ('optimize')")
    for q in queries[:3]:
        got = [r[0] for r in c.execute("select rowid from idx where query = ? and k = 25", [q.tobytes()])]
        assert got == brute(base, q, 25, "l2", alive)
    if MULTI:
        assert split_scans(c) - before == 3


def test_k_beyond_a_range(db, data):
    """k larger than a thread's range: each range asks FAISS for at most its own rows."""
    base, queries = data
    c = connect(db)
    q = queries[7]
    rows = c.execute("select rowid, distance from flat_l2 where query = ? and k = 30000", [q.tobytes()]).fetchall()
    got = [r[0] for r in rows]
    assert len(set(got)) == 30000
    # Deep in the list, float32 rounding may swap rows whose distances agree to 1e-6: compare
    # the distances, each row's own included, with numpy's in float64.
    exact = np.sort(((base.astype(np.float64) - q) ** 2).sum(1))[:30000]
    own = ((base[np.array(got) - 1].astype(np.float64) - q) ** 2).sum(1)
    assert np.allclose([r[1] for r in rows], exact, rtol=1e-5)
    assert np.allclose(own, exact, rtol=1e-5)
    assert got[:1000] == brute(base, q, 1000, "l2")


def test_several_query_vectors_in_one_split_scan(db, data):
    base, queries = data
    c = connect(db)
    c.execute("create temp table qs (i integer primary key, q blob)")
    c.executemany("insert into qs values (?, ?)", [(i, q.tobytes()) for i, q in enumerate(queries[:6])])
    before = split_scans(c)
    rows = c.execute("select query, rowid from flat_l2 where query in (select q from qs) and k = 5").fetchall()
    for q in queries[:6]:
        assert [r[1] for r in rows if r[0] == q.tobytes()] == brute(base, q, 5, "l2")
    if MULTI:
        assert split_scans(c) - before == 1


def test_faiss_search_on_a_plain_table_splits_too(tmp_path, data):
    base, queries = data
    c = connect(tmp_path / "plain.db")
    c.execute("create table p (id integer primary key, embedding blob)")
    c.executemany("insert into p values (?, ?)", [(i + 1, v.tobytes()) for i, v in enumerate(base)])
    c.commit()
    c.execute("select faiss_search('main', 'p', ?, 1)", [queries[0].tobytes()]).fetchone()  # builds the index
    before = split_scans(c)
    got = json.loads(c.execute("select faiss_search('main', 'p', ?, 10)", [queries[1].tobytes()]).fetchone()[0])
    assert got == brute(base, queries[1], 10, "l2")
    if MULTI:
        assert split_scans(c) - before == 1


def test_many_connections_at_once_answer_exactly_and_give_the_cores_back(db, data):
    base, queries = data
    want = [brute(base, q, 10, "l2") for q in queries]
    errors = []
    start = threading.Barrier(6)

    def worker(n):
        try:
            c = connect(db, check_same_thread=False)
            start.wait()
            for j in range(24):
                i = (n + j) % len(queries)
                got = [r[0] for r in c.execute("select rowid from flat_l2 where query = ? and k = 10",
                                               [queries[i].tobytes()])]
                if got != want[i]:
                    errors.append((n, i, got))
            c.close()
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            errors.append((n, repr(e)))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    c = connect(db)
    assert threads_info(c)["searching_now"] == 0
