"""faiss_search over plain tables and views: the metric argument, one meaning for distance on
every surface, views that are never stale."""
import json
import sqlite3

import numpy as np
import pytest

from conftest import connect


def distances(data, q, metric):
    if metric == "l2":
        return ((data - q) ** 2).sum(axis=1)
    if metric == "ip":
        return -(data @ q)
    return 1 - (data @ q) / (np.linalg.norm(data, axis=1) * np.linalg.norm(q))


@pytest.mark.parametrize("metric", ["l2", "ip", "cosine"])
def test_the_metric_argument_and_distances(metric):
    conn = connect()
    rng = np.random.default_rng(11)
    data = rng.normal(size=(300, 8)).astype(np.float32)
    conn.execute("create table t (id integer primary key, embedding blob)")
    conn.executemany("insert into t values (?, ?)", [(i, v.tobytes()) for i, v in enumerate(data)])
    for q in rng.normal(size=(5, 8)).astype(np.float32):
        got = json.loads(conn.execute("select faiss_search_with_scores('main', 't', ?, 5, ?)", [q.tobytes(), metric]).fetchone()[0])
        d = distances(data, q, metric)
        order = np.argsort(d, kind="stable")[:5]
        assert [i for i, _ in got] == [int(i) for i in order]
        assert [s for _, s in got] == pytest.approx([float(d[i]) for i in order], rel=1e-4, abs=1e-4)
        assert [s for _, s in got] == sorted(s for _, s in got), "smaller is nearer"


def test_a_faiss_table_answers_with_the_same_meaning_of_distance():
    conn = connect()
    data = np.random.default_rng(12).normal(size=(100, 6)).astype(np.float32)
    conn.execute("create table t (id integer primary key, embedding blob)")
    conn.executemany("insert into t values (?, ?)", [(i, v.tobytes()) for i, v in enumerate(data)])
    q = data[3] + 0.01
    plain = json.loads(conn.execute("select faiss_search_with_scores('main', 't', ?, 5, 'cosine')", [q.tobytes()]).fetchone()[0])
    conn.execute("create virtual table idx using faiss(content = t, metric = cosine)")
    through_index = json.loads(conn.execute("select faiss_search_with_scores('main', 't', ?, 5)", [q.tobytes()]).fetchone()[0])
    column = conn.execute("select rowid, distance from idx(?, 5)", [q.tobytes()]).fetchall()
    assert [i for i, _ in plain] == [i for i, _ in through_index] == [r for r, _ in column]
    for (_, a), (_, b), (_, c) in zip(plain, through_index, column):
        assert a == pytest.approx(b, abs=1e-5) and b == pytest.approx(c, abs=1e-5)
    assert column[0][1] == pytest.approx(0.0, abs=1e-3), "1 - cosine similarity"
    # Another metric than the faiss table's: the exact plain path, with that metric.
    l2 = json.loads(conn.execute("select faiss_search_with_scores('main', 't', ?, 5, 'l2')", [q.tobytes()]).fetchone()[0])
    d = distances(data, q, "l2")
    assert [i for i, _ in l2] == [int(i) for i in np.argsort(d, kind="stable")[:5]]
    # A faiss table named directly is searched with its own metric only.
    with pytest.raises(sqlite3.OperationalError, match="faiss table 'idx' has metric cosine, not l2: leave out the metric"):
        conn.execute("select faiss_search('main', 'idx', ?, 5, 'l2')", [q.tobytes()]).fetchone()
    # Two faiss tables over t: the metric asked for picks one; without it, name one.
    conn.execute("create virtual table idx_l2 using faiss(content = t)")
    assert json.loads(conn.execute("select faiss_search_with_scores('main', 't', ?, 5, 'l2')", [q.tobytes()]).fetchone()[0]) == l2
    assert json.loads(conn.execute("select faiss_search('main', 't', ?, 5, 'cosine')", [q.tobytes()]).fetchone()[0]) == [i for i, _ in plain]
    with pytest.raises(sqlite3.OperationalError, match="has 2 faiss indexes"):
        conn.execute("select faiss_search('main', 't', ?, 5)", [q.tobytes()]).fetchone()


def test_views_are_never_stale(tmp_path):
    path = tmp_path / "v.db"
    writer = connect(path)
    writer.execute("create table t (id integer primary key, kind text, embedding blob)")
    writer.execute("insert into t values (1, 'a', ?)", [np.float32([0, 0]).tobytes()])
    writer.execute("create view main_view as select id, embedding from t where kind = 'a'")
    writer.commit()
    reader = connect(path)
    reader.execute("create temp view temp_view as select id, embedding from main.t where kind = 'a'")
    q = np.float32([5, 5]).tobytes()
    for schema, view in [("main", "main_view"), ("temp", "temp_view")]:
        assert reader.execute("select faiss_search(?, ?, ?, 1)", [schema, view, q]).fetchone()[0] == "[1]"
    writer.execute("insert into t values (2, 'a', ?)", [np.float32([5, 5]).tobytes()])
    writer.execute("insert into t values (3, 'b', ?)", [np.float32([5, 5]).tobytes()])
    writer.commit()
    for schema, view in [("main", "main_view"), ("temp", "temp_view")]:
        assert reader.execute("select faiss_search(?, ?, ?, 1)", [schema, view, q]).fetchone()[0] == "[2]", view
