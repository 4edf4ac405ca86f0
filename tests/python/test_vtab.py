"""The faiss virtual table from Python, checked against numpy brute force."""
import json
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import LIB, connect


def make_table(conn, data, extra=None):
    conn.execute("create table docs (id integer primary key, category integer, embedding blob)")
    conn.executemany(
        "insert into docs values (?, ?, ?)",
        [(i, int(extra[i]) if extra is not None else 0, v.astype(np.float32).tobytes()) for i, v in enumerate(data)],
    )
    conn.commit()


def knn(conn, table, q, k, extra_sql="", params=()):
    return conn.execute(
        f"select rowid, distance from {table} where query = ? and k = ? {extra_sql}",
        [np.asarray(q, dtype=np.float32).tobytes(), k, *params],
    ).fetchall()


def brute(data, q, k, metric="l2", allowed=None):
    """The k nearest (rowid, distance): squared L2, 1 - cosine similarity, or -inner product."""
    idx = np.arange(len(data)) if allowed is None else np.asarray(sorted(allowed))
    sub = data[idx]
    if metric == "l2":
        d = ((sub - q) ** 2).sum(axis=1)
    elif metric == "ip":
        d = -(sub @ q)
    else:
        d = 1 - (sub @ q) / (np.linalg.norm(sub, axis=1) * np.linalg.norm(q))
    order = np.argsort(d, kind="stable")
    return [(int(idx[i]), float(d[i])) for i in order[:k]]


def clustered(n, dim, clusters, seed):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim)) * 4
    labels = rng.integers(0, clusters, size=n)
    return (centers[labels] + rng.normal(size=(n, dim))).astype(np.float32), labels


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_flat_is_exact(metric):
    conn = connect()
    rng = np.random.default_rng(3)
    data = rng.normal(size=(1500, 24)).astype(np.float32)
    make_table(conn, data)
    conn.execute(f"create virtual table idx using faiss(content = docs, metric = {metric})")
    for q in rng.normal(size=(15, 24)).astype(np.float32):
        got = knn(conn, "idx", q, 10)
        want = brute(data, q, 10, metric)
        assert [r for r, _ in got] == [r for r, _ in want]
        for (_, d), (_, w) in zip(got, want):
            assert d == pytest.approx(w, rel=1e-4, abs=1e-4)


def recall(conn, table, data, queries, k, extra="", params=()):
    hits = 0
    for q in queries:
        got = {r for r, _ in knn(conn, table, q, k, extra, params)}
        hits += len(got & {r for r, _ in brute(data, q, k)})
    return hits / (k * len(queries))


def test_hnsw_and_ivf_recall_on_clustered_data():
    conn = connect()
    data, _ = clustered(6000, 32, 40, seed=1)
    make_table(conn, data)
    queries, _ = clustered(40, 32, 40, seed=2)
    conn.execute("create virtual table hnsw using faiss(content = docs, factory = 'HNSW16', params = 'efSearch=256')")
    conn.execute("create virtual table ivf using faiss(content = docs, factory = 'IVF32,Flat', params = 'nprobe=8')")
    conn.execute("create virtual table pq using faiss(content = docs, factory = 'IVF32,PQ8', params = 'nprobe=8')")
    assert recall(conn, "hnsw", data, queries, 10) >= 0.95
    # the table default efSearch=256 is used; a lower one per query costs recall
    assert recall(conn, "hnsw", data, queries, 10, "and params = ?", ["efSearch=16"]) < 0.8
    assert recall(conn, "ivf", data, queries, 10) >= 0.9
    # per-query nprobe = nlist makes IVF exhaustive: exact
    assert recall(conn, "ivf", data, queries, 10, "and params = ?", ["nprobe=32"]) == 1.0
    # PQ codes are lossy; re-ranking by the stored vectors recovers exact order
    plain = recall(conn, "pq", data, queries, 10)
    reranked = recall(conn, "pq", data, queries, 10, "and params = ?", ["rerank=8"])
    assert reranked >= max(plain, 0.9)
    # a per-query parameter does not leak into later queries
    before = knn(conn, "ivf", queries[0], 10, "and params = ?", ["nprobe=1"])
    default = knn(conn, "ivf", queries[1], 10)
    assert knn(conn, "ivf", queries[1], 10) == default
    assert knn(conn, "ivf", queries[0], 10, "and params = ?", ["nprobe=1"]) == before


def test_training_is_reproducible():
    data, _ = clustered(3000, 16, 20, seed=5)
    results = []
    for _ in range(2):
        conn = connect()
        make_table(conn, data)
        conn.execute("create virtual table ivf using faiss(content = docs, factory = 'IVF16,PQ4', train_size = 1000)")
        results.append([knn(conn, "ivf", q, 5) for q in data[:20]])
    assert results[0] == results[1]


def test_too_few_rows_to_train_is_a_clear_error():
    conn = connect()
    make_table(conn, np.ones((10, 4), dtype=np.float32))
    with pytest.raises(sqlite3.OperationalError, match="Number of training points"):
        conn.execute("create virtual table ivf using faiss(content = docs, factory = 'IVF64,Flat')")
    conn.execute("create table empty (id integer primary key, embedding blob)")
    with pytest.raises(sqlite3.OperationalError, match="needs training"):
        conn.execute("create virtual table e using faiss(content = empty, factory = 'IVF4,Flat', dim = 4)")
    assert conn.execute("select count(*) from sqlite_master where name like 'ivf%' or name like 'e\\_%' escape '\\'").fetchone()[0] == 0


@pytest.mark.parametrize("factory", ["Flat", "HNSW16", "IVF8,Flat"])
def test_insert_update_delete_stay_in_sync(factory):
    conn = connect()
    rng = np.random.default_rng(11)
    data = rng.normal(size=(400, 8)).astype(np.float32)
    make_table(conn, data)
    params = ", params = 'nprobe=8'" if factory.startswith("IVF") else ", params = 'efSearch=400'" if factory.startswith("HNSW") else ""
    conn.execute(f"create virtual table idx using faiss(content = docs, factory = '{factory}'{params})")
    table = {i: v for i, v in enumerate(data)}
    # insert
    for i in range(400, 450):
        v = rng.normal(size=8).astype(np.float32)
        conn.execute("insert into docs (id, embedding) values (?, ?)", [i, v.tobytes()])
        table[i] = v
    # update vectors, and move a row to a new rowid
    for i in range(0, 40):
        v = rng.normal(size=8).astype(np.float32) + 10
        conn.execute("update docs set embedding = ? where id = ?", [v.tobytes(), i])
        table[i] = v
    conn.execute("update docs set id = 1000 where id = 41")
    table[1000] = table.pop(41)
    # delete
    conn.execute("delete from docs where id between 100 and 199")
    for i in range(100, 200):
        del table[i]
    # a NULL vector leaves the index
    conn.execute("update docs set embedding = null where id = 300")
    del table[300]
    conn.commit()
    ids = np.array(sorted(table))
    mat = np.stack([table[i] for i in ids])
    for q in list(rng.normal(size=(10, 8)).astype(np.float32)) + [table[5], table[1000] + 0.01]:
        got = [r for r, _ in knn(conn, "idx", q, 10)]
        want = [int(ids[j]) for j, _ in brute(mat, q, 10)]
        assert set(got) <= set(table), "deleted rows never come back"
        assert len(set(got) & set(want)) >= 9
        assert got[0] == want[0]
    conn.execute("insert into idx(idx) values ('integrity-check')")
    count = conn.execute("select ntotal from faiss_indexes where name = 'idx'").fetchone()[0]
    assert count == len(table)


def test_rollback_and_own_uncommitted_writes(tmp_path):
    path = tmp_path / "t.db"
    a = connect(path, isolation_level=None)
    b = connect(path, isolation_level=None)
    make_table(a, np.array([[0, 0], [10, 10]], dtype=np.float32))
    a.execute("create virtual table idx using faiss(content = docs, factory = 'HNSW8')")
    q = np.array([5, 5], dtype=np.float32)
    assert [r for r, _ in knn(b, "idx", q, 1)] in ([0], [1])
    a.execute("begin")
    a.execute("insert into docs (id, embedding) values (7, ?)", [q.tobytes()])
    a.execute("delete from docs where id = 0")
    assert [r for r, _ in knn(a, "idx", q, 5)] == [7, 1], "a sees its own writes"
    assert sorted(r for r, _ in knn(b, "idx", q, 5)) == [0, 1], "b does not"
    a.execute("rollback")
    assert sorted(r for r, _ in knn(a, "idx", q, 5)) == [0, 1]
    assert sorted(r for r, _ in knn(b, "idx", q, 5)) == [0, 1]
    a.execute("insert into idx(idx) values ('integrity-check')")


def test_writes_from_another_process_without_vekter(tmp_path):
    path = tmp_path / "t.db"
    conn = connect(path)
    make_table(conn, np.array([[0, 0], [10, 10]], dtype=np.float32))
    conn.execute("create virtual table idx using faiss(content = docs, factory = 'HNSW8')")
    conn.commit()
    assert knn(conn, "idx", [9, 9], 1)[0][0] == 1
    # a process that never loads vekter: the sync triggers are plain SQL
    script = f"""
import sqlite3, struct
c = sqlite3.connect({str(path)!r})
c.execute("insert into docs (id, embedding) values (2, ?)", [struct.pack('ff', 9, 9)])
c.execute("delete from docs where id = 1")
c.commit()
"""
    subprocess.run([sys.executable, "-c", script], check=True)
    assert [r for r, _ in knn(conn, "idx", [9, 9], 5)] == [2, 0]


REOPEN = """
import json, sqlite3, sys, time
t0 = time.perf_counter()
c = sqlite3.connect(sys.argv[1])
c.enable_load_extension(True)
c.load_extension(sys.argv[2])
rows = c.execute("select rowid, distance from idx where query = (select embedding from docs where id = 7) and k = 5").fetchall()
t1 = time.perf_counter()
info = c.execute("select loads, ntotal, factory from faiss_indexes where name = 'idx'").fetchone()
print(json.dumps({"rows": rows, "seconds": t1 - t0, "info": info}))
"""


@pytest.mark.parametrize("factory", ["HNSW32", "IVF64,PQ8"])
def test_reopen_in_a_new_process_loads_without_rebuilding(tmp_path, factory):
    path = tmp_path / "t.db"
    data, _ = clustered(20000, 32, 50, seed=9)
    conn = connect(path)
    make_table(conn, data)
    t0 = time.perf_counter()
    conn.execute(f"create virtual table idx using faiss(content = docs, factory = '{factory}')")
    conn.commit()
    build = time.perf_counter() - t0
    conn.execute("insert into docs (id, embedding) values (20000, ?)", [data[7].tobytes()])
    conn.commit()
    mine = knn(conn, "idx", data[7], 5)
    conn.close()
    out = subprocess.run(
        [sys.executable, "-c", REOPEN, str(path), LIB.removesuffix(".so")], check=True, capture_output=True, text=True
    )
    result = json.loads(out.stdout)
    assert result["info"] == [1, 20001, factory], "one snapshot load, the logged insert replayed"
    assert [tuple(r) for r in result["rows"]] == [tuple(r) for r in mine]
    assert {7, 20000} <= {r for r, _ in result["rows"]}
    # loading is much cheaper than building (no training, no graph construction)
    assert result["seconds"] < build


def test_filtered_search_returns_k_matching_rows():
    conn = connect()
    data, labels = clustered(4000, 16, 20, seed=4)
    category = np.arange(4000) % 97
    make_table(conn, data, extra=category)
    conn.execute("create virtual table idx using faiss(content = docs, factory = 'HNSW16')")
    for q in data[:10]:
        got = knn(conn, "idx", q, 10, "and rowid in (select id from docs where category = 3)")
        allowed = set(np.nonzero(category == 3)[0].tolist())
        assert len(got) == 10
        assert {r for r, _ in got} <= allowed
        assert [r for r, _ in got] == [r for r, _ in brute(data, q, 10, allowed=allowed)]
    # a filter with fewer matches than k returns just those
    got = knn(conn, "idx", data[0], 10, "and rowid in (1, 2, 3)")
    assert sorted(r for r, _ in got) == [1, 2, 3]
    # a single rowid
    assert [r for r, _ in knn(conn, "idx", data[0], 10, "and rowid = 42")] == [42]


def test_query_forms_ids_and_vectors_as_json_or_blob():
    conn = connect()
    conn.execute("create table docs (pk integer primary key, title text, vec blob)")
    conn.executemany(
        "insert into docs values (?, ?, ?)",
        [(1, "one", json.dumps([0, 0])), (2, "two", np.array([1, 0], np.float32).tobytes()), (3, "three", "[5, 5]")],
    )
    conn.execute("create virtual table idx using faiss(content = docs, column = vec, id = title)")
    blob = np.array([0.9, 0], np.float32).tobytes()
    expected = [(2, "two", pytest.approx(0.01)), (1, "one", pytest.approx(0.81))]
    assert conn.execute("select rowid, id, distance from idx where query = ? and k = 2", [blob]).fetchall() == expected
    assert conn.execute("select rowid, id, distance from idx(?, 2)", ["[0.9, 0]"]).fetchall() == expected
    assert conn.execute("select rowid, id, distance from idx(?, 2, 'rerank=2')", [blob]).fetchall() == expected
    joined = conn.execute(
        "select d.title, i.distance from idx('[5, 4]', 1) i join docs d on d.pk = i.rowid"
    ).fetchall()
    assert joined == [("three", 1.0)]
    assert conn.execute("select faiss_search_with_scores('main', 'idx', '[0.9, 0]', 1)").fetchone()[0] == '[["two", 0.010000004433095455]]'
    assert conn.execute("select faiss_search('main', 'docs', '[0.9, 0]', 2)").fetchone()[0] == '["two", "one"]'
    # ORDER BY distance is already satisfied; a search per row of another table
    rows = conn.execute(
        "select d.pk, i.rowid from docs d, idx i where i.query = d.vec and i.k = 1 order by d.pk"
    ).fetchall()
    assert rows == [(1, 1), (2, 2), (3, 3)]


def test_drop_rename_and_two_indexes_over_one_table():
    conn = connect()
    data = np.random.default_rng(1).normal(size=(300, 8)).astype(np.float32)
    make_table(conn, data)
    conn.execute("create virtual table a using faiss(content = docs)")
    conn.execute("create virtual table b using faiss(content = docs, factory = 'HNSW8', metric = cosine)")
    with pytest.raises(sqlite3.OperationalError, match=r"2 faiss indexes \(a, b\)"):
        conn.execute("select faiss_search('main', 'docs', ?, 1)", [data[0].tobytes()]).fetchone()
    conn.execute("insert into docs (id, embedding) values (999, ?)", [data[5].tobytes()])
    assert {r for r, _ in knn(conn, "a", data[5], 2)} == {5, 999}
    assert {r for r, _ in knn(conn, "b", data[5], 2)} == {5, 999}
    conn.execute("alter table a rename to a2")
    conn.execute("insert into docs (id, embedding) values (1000, ?)", [data[6].tobytes()])
    assert {r for r, _ in knn(conn, "a2", data[6], 2)} == {6, 1000}
    names = {r[0] for r in conn.execute("select name from sqlite_master")}
    assert {"a2_config", "a2_chunks", "a2_changes", "a2_vekter_ai"} <= names
    assert not any(n.startswith("a_") for n in names)
    conn.execute("drop table a2")
    conn.execute("drop table b")
    names = {r[0] for r in conn.execute("select name from sqlite_master")}
    assert names == {"docs"}
    conn.execute("insert into docs (id, embedding) values (1001, ?)", [data[7].tobytes()])
    assert conn.execute("select faiss_search('main', 'docs', ?, 1)", [data[7].tobytes()]).fetchone()[0] == "[7]"


def test_content_table_rename_is_followed():
    conn = connect()
    make_table(conn, np.eye(4, dtype=np.float32))
    conn.execute("create virtual table idx using faiss(content = docs)")
    conn.execute("alter table docs rename to papers")
    conn.execute("insert into papers (id, embedding) values (9, ?)", [np.array([0, 0, 0, 2], np.float32).tobytes()])
    assert knn(conn, "idx", [0, 0, 0, 3], 1)[0][0] == 9


@pytest.mark.parametrize("writer", ["this connection", "another connection"])
def test_rows_gone_unheard_never_come_back(tmp_path, writer):
    """Hits are checked against the content table (one statement for all of them): a row that
    left it without the change log hearing (an INSERT OR REPLACE through a UNIQUE index) is
    never returned, even after the UNIQUE index is gone."""
    path = tmp_path / "r.db"
    conn = connect(path, isolation_level=None)
    data = np.random.default_rng(5).normal(size=(60, 8)).astype(np.float32)
    conn.execute("create table docs (id integer primary key, title text, embedding blob)")
    conn.executemany("insert into docs values (?, ?, ?)", [(i, f"t{i}", v.tobytes()) for i, v in enumerate(data)])
    conn.execute("create virtual table idx using faiss(content = docs)")
    assert [r for r, _ in knn(conn, "idx", data[7], 1)] == [7]
    other = conn if writer == "this connection" else sqlite3.connect(path, isolation_level=None)
    other.execute("create unique index docs_title on docs(title)")
    other.execute("insert or replace into docs values (1000, 't7', ?)", [(data[7] + 1e-3).tobytes()])
    other.execute("drop index docs_title")
    assert conn.execute("select count(*) from docs where id = 7").fetchone()[0] == 0
    assert [r for r, _ in knn(conn, "idx", data[7], 2)] == [1000, brute(data, data[7], 2)[1][0]]


@pytest.mark.parametrize("alias", ["rowid", "oid", "_rowid_", "id"])
def test_a_row_moved_to_another_rowid_is_followed(tmp_path, alias):
    """`UPDATE … SET rowid = …` names no column; the update trigger watches every spelling."""
    conn = connect(tmp_path / "m.db", isolation_level=None)
    data = np.random.default_rng(6).normal(size=(40, 8)).astype(np.float32)
    conn.execute("create table docs (id integer primary key, title text, embedding blob)")
    conn.executemany("insert into docs values (?, ?, ?)", [(i, f"t{i}", v.tobytes()) for i, v in enumerate(data)])
    conn.execute("create virtual table idx using faiss(content = docs)")
    knn(conn, "idx", data[9], 1)
    conn.execute(f"update docs set {alias} = 2000 where id = 9")
    assert [r for r, _ in knn(conn, "idx", data[9], 1)] == [2000]
    conn.execute("insert into idx(idx) values ('integrity-check')")


def test_optimize_compacts_and_integrity_check_reports_damage(tmp_path):
    path = tmp_path / "t.db"
    conn = connect(path, isolation_level=None)
    data = np.random.default_rng(2).normal(size=(500, 8)).astype(np.float32)
    make_table(conn, data)
    conn.execute("create virtual table idx using faiss(content = docs, factory = 'HNSW8')")
    conn.execute("delete from docs where id < 100")
    knn(conn, "idx", data[0], 1)
    assert conn.execute("select ntotal, deleted, pending from faiss_indexes").fetchone() == (400, 100, 100)
    conn.execute("insert into idx(idx) values ('optimize')")
    # folded: only the newest entry stays (the log never empties: its next seq is past them all)
    assert conn.execute("select count(*) from idx_changes").fetchone()[0] == 1
    knn(conn, "idx", data[0], 1)
    assert conn.execute("select ntotal, deleted, pending from faiss_indexes").fetchone() == (400, 0, 0)
    conn.execute("insert into idx(idx) values ('integrity-check')")
    # a row changed behind the triggers' back is reported
    conn.execute("drop trigger idx_vekter_ad")
    conn.execute("delete from docs where id = 200")
    with pytest.raises(sqlite3.DatabaseError, match=r"1 indexed rowids are not in the content table \(rowids 200\)"):
        conn.execute("insert into idx(idx) values ('integrity-check')")
    # search results never name a row that is gone
    assert 200 not in {r for r, _ in knn(conn, "idx", data[200], 5)}
    # damaged snapshot bytes: detected, never loaded
    conn.execute("update idx_chunks set data = zeroblob(length(data)) where chunk = 0")
    with pytest.raises(sqlite3.DatabaseError, match="checksum"):
        conn.execute("insert into idx(idx) values ('integrity-check')")
    # a process that loads the index from the file refuses the damaged bytes and searches an
    # exact index built from the content table in their place, saying so
    probe = f"""
import sqlite3
c = sqlite3.connect({str(path)!r})
c.enable_load_extension(True)
c.load_extension({LIB.removesuffix(".so")!r})
print(c.execute("select rowid from idx where query = (select embedding from docs where id = 300) and k = 1").fetchall())
print(c.execute("select state from faiss_indexes").fetchone()[0])
"""
    run = lambda: subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout
    hits, state = run().splitlines()
    assert hits == "[(300,)]" and state.startswith("stand-in") and "checksum" in state
    # 'rebuild' recreates the index from the content table
    conn.execute("insert into idx(idx) values ('rebuild')")
    assert run().splitlines() == ["[(300,)]", "live"]
    conn.execute("insert into idx(idx) values ('integrity-check')")


def test_read_only_connections_search_but_do_not_change(tmp_path):
    path = tmp_path / "t.db"
    conn = connect(path)
    make_table(conn, np.eye(3, dtype=np.float32))
    conn.execute("create virtual table idx using faiss(content = docs)")
    conn.commit()
    ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    ro.enable_load_extension(True)
    ro.load_extension(LIB.removesuffix(".so"))
    assert knn(ro, "idx", [1, 0, 0], 1)[0][0] == 0
    for command in ["rebuild", "optimize"]:
        with pytest.raises(sqlite3.OperationalError, match="readonly|read-only"):
            ro.execute(f"insert into idx(idx) values ('{command}')")
    with pytest.raises(sqlite3.OperationalError, match="readonly|read-only"):
        ro.execute("create virtual table idx2 using faiss(content = docs)")
    # commands are INSERTs: SQLite refuses them all on a read-only connection, like FTS5's
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        ro.execute("insert into idx(idx) values ('integrity-check')")
    assert knn(ro, "idx", [0, 0, 1], 1)[0][0] == 2


@pytest.mark.parametrize(
    "sql, message",
    [
        ("select * from idx where query = '[1, 0, 0]'", "needs k"),
        ("select * from idx('[1, 0]', 1)", "faiss table 'idx': query vector has 2 dimensions but the index has 3"),
        ("select * from idx('[1, 0, 0]', 0)", "k must be a positive integer"),
        ("select * from idx('[1, 0, 0]', 1, 'nprobe')", "not name=value"),
        ("select * from idx('[1, 0, 0]', 1, 'ht=3')", "can only be a table default"),
        ("select * from idx('[1, 0, 0]', 1, 'efSearch=1000000')", "above its limit"),
        ("select * from idx('[1, 0, 0]', 1, 'efSearch=16')", "efSearch"),
        ("select * from idx('[NaN, 0, 0]', 1)", "only finite numbers"),
        ("insert into idx(idx) values ('vacuum')", "unknown command 'vacuum'"),
        ("insert into idx(rowid, id) values (1, 2)", "is an index over 'docs'"),
        ("delete from idx", "is an index over 'docs': write to 'docs' instead"),
        ("update idx set id = 3 where query = '[1, 0, 0]' and k = 1", "is an index over 'docs'"),
    ],
)
def test_bad_queries_and_writes_are_clear_errors(sql, message):
    conn = connect()
    make_table(conn, np.eye(3, dtype=np.float32))
    conn.execute("create virtual table idx using faiss(content = docs)")
    with pytest.raises(sqlite3.OperationalError, match=message):
        conn.execute(sql).fetchall()


def test_without_a_query_the_table_lists_what_it_indexes():
    conn = connect(isolation_level=None)
    data = np.random.default_rng(5).normal(size=(50, 4)).astype(np.float32)
    make_table(conn, data)
    conn.execute("create virtual table idx using faiss(content = docs, factory = 'HNSW8')")
    assert conn.execute("select count(*) from idx").fetchone() == (50,)
    conn.execute("delete from docs where id < 10")
    conn.execute("update docs set embedding = null where id = 20")
    rows = conn.execute("select rowid, id, distance from idx").fetchall()
    assert [r for r, _, _ in rows] == [i for i in range(10, 50) if i != 20]
    assert all(rowid == id and d is None for rowid, id, d in rows)
    assert conn.execute("select rowid from idx where rowid in (5, 11, 20, 30)").fetchall() == [(11,), (30,)]
    # a transaction's own uncommitted writes show, as in a search
    conn.execute("begin")
    conn.execute("insert into docs values (100, 0, ?)", [data[0].tobytes()])
    conn.execute("delete from docs where id = 11")
    listed = {r for (r,) in conn.execute("select rowid from idx")}
    assert len(listed) == 39 and 100 in listed and 11 not in listed
    assert conn.execute("select count(*) from idx").fetchone() == (39,)
    conn.execute("rollback")
    listed = {r for (r,) in conn.execute("select rowid from idx")}
    assert len(listed) == 39 and 100 not in listed and 11 in listed

