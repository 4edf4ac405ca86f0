"""Many questions in one search (SPEC §4): `neighbours_of = ?` / `neighbours_of IN (…)` (the
neighbours of stored rows, each row left out of its own) and `query IN (…)` (many query
vectors), answered by one FAISS call, checked against numpy for every table shape, inside a
write transaction, with filters and partitions, and the errors."""
import sqlite3

import numpy as np
import pytest
from conftest import connect

DIM = 8


def brute(rows, q, k, leave_out=None):
    """[(key, distance)] of the k rows nearest q (squared L2, ties by key order in `rows`)."""
    keys = [key for key in rows if key != leave_out]
    data = np.stack([rows[key] for key in keys])
    d = ((data - q) ** 2).sum(axis=1)
    order = np.argsort(d, kind="stable")[:k]
    return [(keys[i], float(d[i])) for i in order]


def grouped(result):
    """{question: [(answer, distance), …]} in result order."""
    out = {}
    for question, answer, distance in result:
        out.setdefault(question, []).append((answer, distance))
    return out


def assert_same(got, want):
    assert [key for key, _ in got] == [key for key, _ in want]
    assert [d for _, d in got] == pytest.approx([d for _, d in want], rel=1e-4, abs=1e-4)


@pytest.fixture
def docs(tmp_path):
    conn = connect(tmp_path / "b.db", isolation_level=None)
    rng = np.random.default_rng(11)
    rows = {i: rng.normal(size=DIM).astype(np.float32) for i in range(1, 401)}
    conn.execute("create table docs (id integer primary key, tenant integer, embedding blob)")
    conn.executemany("insert into docs values (?, ?, ?)", [(i, i % 3, v.tobytes()) for i, v in rows.items()])
    return conn, rows


@pytest.mark.parametrize("factory", ["Flat", "IVF8,Flat"])
def test_neighbours_of_every_row_in_one_search(docs, factory):
    conn, rows = docs
    params = ", params = 'nprobe=8'" if factory.startswith("IVF") else ""
    conn.execute(f"create virtual table idx using faiss(content = docs, factory = '{factory}'{params})")
    got = grouped(conn.execute(
        "select neighbours_of, rowid, distance from idx where neighbours_of in (select id from docs) and k = 5"))
    assert sorted(got) == sorted(rows)
    for i, answers in got.items():
        assert_same(answers, brute(rows, rows[i], 5, leave_out=i))
    plan = conn.execute("explain query plan select neighbours_of, rowid from idx "
                        "where neighbours_of in (select id from docs) and k = 5 order by distance").fetchall()
    assert "INDEX 0:Nk" in plan[0][3] and any("ORDER BY" in r[3] for r in plan), plan
    # One row, by =; a row that does not exist asks nothing.
    one = conn.execute("select neighbours_of, rowid, distance from idx where neighbours_of = 7 and k = 3").fetchall()
    assert_same([(r, d) for _, r, d in one], brute(rows, rows[7], 3, leave_out=7))
    assert conn.execute("select * from idx where neighbours_of in (7000, 7001) and k = 3").fetchall() == []


def test_many_query_vectors_in_one_search(docs):
    conn, rows = docs
    conn.execute("create virtual table idx using faiss(content = docs)")
    rng = np.random.default_rng(3)
    queries = [rng.normal(size=DIM).astype(np.float32) for _ in range(20)]
    conn.execute("create table questions (q blob)")
    conn.executemany("insert into questions values (?)", [(q.tobytes(),) for q in queries])
    got = grouped(conn.execute("select query, rowid, distance from idx where query in (select q from questions) and k = 4"))
    assert len(got) == 20
    for q in queries:
        assert_same(got[q.tobytes()], brute(rows, q, 4))
    # JSON text works too, and each result carries the value it answers as given.
    text = conn.execute("select distinct query from idx where query in ('[0, 0, 0, 0, 0, 0, 0, 0]', '[1,1,1,1,1,1,1,1]') "
                        "and k = 2").fetchall()
    assert sorted(t for (t,) in text) == ["[0, 0, 0, 0, 0, 0, 0, 0]", "[1,1,1,1,1,1,1,1]"]


def test_with_a_rowid_filter_a_distance_bound_and_a_partition(docs):
    conn, rows = docs
    conn.execute("create virtual table tp using faiss(content = docs, partition = tenant)")
    got = grouped(conn.execute(
        "select neighbours_of, rowid, distance from tp where neighbours_of in (3, 6, 9) and k = 4 and tenant = 0 "
        "and rowid in (select id from docs where id % 2 = 0) and distance < 20"))
    for i in (3, 6, 9):
        allowed = {j: v for j, v in rows.items() if j % 3 == 0 and j % 2 == 0}
        want = [(j, d) for j, d in brute(allowed, rows[i], 4, leave_out=i) if d < 20]
        assert_same(got.get(i, []), want)


def test_inside_a_write_transaction_and_after_rollback(docs):
    conn, rows = docs
    conn.execute("create virtual table idx using faiss(content = docs)")
    conn.execute("begin")
    new = (rows[5] + 0.001).astype(np.float32)
    conn.execute("insert into docs values (1000, 0, ?)", [new.tobytes()])
    conn.execute("delete from docs where id = 6")
    mine = {**rows, 1000: new}
    del mine[6]
    got = grouped(conn.execute("select neighbours_of, rowid, distance from idx where neighbours_of in (5, 1000, 6) and k = 3"))
    assert sorted(got) == [5, 1000], "a deleted row has no vector: it asks nothing"
    for i in (5, 1000):
        assert_same(got[i], brute(mine, mine[i], 3, leave_out=i))
    conn.execute("rollback")
    got = grouped(conn.execute("select neighbours_of, rowid, distance from idx where neighbours_of in (5, 1000) and k = 3"))
    assert sorted(got) == [5]
    assert_same(got[5], brute(rows, rows[5], 3, leave_out=5))


@pytest.mark.parametrize("without_rowid", [False, True])
def test_text_and_composite_keys(tmp_path, without_rowid):
    """llm's embeddings table: (collection_id, id TEXT) key; neighbours_of takes the faiss
    table's rowid (the content rowid, or for WITHOUT ROWID the faiss table's own)."""
    conn = connect(tmp_path / "k.db", isolation_level=None)
    rng = np.random.default_rng(5)
    rows = {f"doc{i}": rng.normal(size=DIM).astype(np.float32) for i in range(120)}
    suffix = " without rowid" if without_rowid else ""
    conn.execute(f"create table emb (collection_id integer, id text, embedding blob, primary key (collection_id, id)){suffix}")
    conn.executemany("insert into emb values (1, ?, ?)", [(k, v.tobytes()) for k, v in rows.items()])
    conn.execute("create virtual table e1 using faiss(content = emb, id = id)")
    rowid_of = {key: rowid for rowid, key in conn.execute("select rowid, id from e1")}
    got = {}
    for asked, key, distance in conn.execute(
            "select neighbours_of, id, distance from e1 where neighbours_of in (select rowid from e1) and k = 3"):
        got.setdefault(asked, []).append((key, distance))
    assert len(got) == len(rows)
    for key, rowid in rowid_of.items():
        assert_same(got[rowid], brute(rows, rows[key], 3, leave_out=key))


@pytest.mark.parametrize("sql, message", [
    ("select * from idx where neighbours_of = 1 and query = '[1,1,1,1,1,1,1,1]' and k = 1", "not both"),
    ("select * from idx where neighbours_of in (1, 2)", "needs k: add AND k = 10 \\(a LIMIT counts"),
    ("select * from idx where query in ('[1,1,1,1,1,1,1,1]', '[1,2]') and k = 1", "query vector has 2 dimensions"),
    ("select * from idx where query in ('[1,1,1,1,1,1,1,1]', 'nope') and k = 1", "query \\(IN list value 2\\): vector JSON"),
    # Bounded before anything large is allocated: 100,000 questions, 2^24 results.
    ("with recursive s(v) as (select 1 union all select v + 1 from s where v < 100001) "
     "select count(*) from idx where neighbours_of in (select v from s) and k = 1", "at most 100000 questions"),
    ("with recursive s(v) as (select 1 union all select v + 1 from s where v < 50000) "
     "select count(*) from idx where query in (select '[' || v || ',1,1,1,1,1,1,1]' from s) and k = 400",
     "50000 query vectors with k = 400 ask for more than 16777216 results"),
])
def test_errors(docs, sql, message):
    conn, _ = docs
    conn.execute("create virtual table idx using faiss(content = docs)")
    with pytest.raises(sqlite3.Error, match=message):
        conn.execute(sql).fetchall()


def test_nulls_ask_nothing_and_the_table_valued_form(docs):
    """NULL in an IN list matches nothing; the table-valued form's NULLs are arguments left out
    (its fourth argument is neighbours_of)."""
    conn, rows = docs
    conn.execute("create virtual table idx using faiss(content = docs)")
    q = rows[4].tobytes()
    got = conn.execute("select query, rowid from idx where query in (?, NULL) and k = 2", [q]).fetchall()
    assert [r for _, r in got] == [r for r, _ in brute(rows, rows[4], 2)]
    assert conn.execute("select rowid from idx(?, 2, NULL, NULL)", [q]).fetchall() == [(4,), (brute(rows, rows[4], 2)[1][0],)]
    assert [r for (r,) in conn.execute("select rowid from idx(NULL, 2, NULL, 4)")] == [r for r, _ in brute(rows, rows[4], 2, leave_out=4)]
    assert conn.execute("select * from idx where neighbours_of in (NULL) and k = 2").fetchall() == []
