"""llm's embeddings table, as llm 0.36 makes it: PRIMARY KEY (collection_id, id TEXT), two
collections of different dimensions in one table, re-embedding by INSERT OR REPLACE. A faiss
table over one collection gives the neighbours `llm similar` gives, and follows `llm embed` run
in another process."""
import json
import os
import pathlib
import subprocess
import sys

import fake_embeddings
import llm
import numpy as np
import pytest
import sqlite_utils
from conftest import LIB, connect

HERE = pathlib.Path(__file__).resolve().parent


@pytest.fixture
def llm_db(tmp_path, monkeypatch):
    """An llm database with `docs` (fake-64, 300 items, id 1) and `notes` (fake-32, 200 items)."""
    monkeypatch.setenv("LLM_USER_PATH", str(tmp_path / "llm-user"))
    fake_embeddings.register()
    path = tmp_path / "embeddings.db"
    db = sqlite_utils.Database(path)
    docs = llm.Collection("docs", db, model_id="fake-64")
    notes = llm.Collection("notes", db, model_id="fake-32")
    docs.embed_multi([(f"d{i}", f"doc {i}") for i in range(300)], store=True)
    notes.embed_multi([(f"n{i}", f"note {i}") for i in range(200)])
    db.close()
    assert (docs.id, notes.id) == (1, 2)
    return path


def run_llm(*args):
    """The llm command in its own process, with the fake models registered."""
    env = dict(os.environ, LLM_LOAD_PLUGINS="")
    done = subprocess.run(
        [sys.executable, str(HERE / "fake_embeddings.py"), *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def llm_similar(path, content, n):
    """`llm similar docs -c content -n n`: [(id, score)]."""
    out = run_llm("similar", "docs", "-c", content, "-d", str(path), "-n", str(n))
    return [(r["id"], r["score"]) for r in map(json.loads, out.splitlines())]


def collection_similar(path, name, vector, n):
    """What `llm similar` computes, through llm's Python API (faster than a process per query)."""
    db = sqlite_utils.Database(path)
    try:
        return [(e.id, e.score) for e in llm.Collection(name, db, create=False).similar_by_vector(vector, n)]
    finally:
        db.close()


def vekter_similar(conn, table, vector, n):
    rows = conn.execute(f"select id, distance from {table}(?, ?)", [fake_embeddings_blob(vector), n]).fetchall()
    return [(i, 1 - d) for i, d in rows]


def fake_embeddings_blob(vector):
    return np.asarray(vector, dtype="<f4").tobytes()


def assert_same(got, want):
    assert [i for i, _ in got] == [i for i, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-5)


def test_one_collection_gives_llm_similar_neighbours_and_follows_llm_embed(llm_db, report):
    conn = connect(llm_db)
    conn.execute(
        "create virtual table docs_idx using faiss(content = embeddings, where = 'collection_id = 1', metric = cosine, id = id)"
    )
    assert conn.execute("select count(*) from docs_idx").fetchone() == (300,)

    # The same neighbours, in the same order, as `llm similar` (the command, then many queries
    # through the same code in-process).
    for text in ["near:doc 5", "near:doc 123", "something else"]:
        assert_same(vekter_similar(conn, "docs_idx", fake_embeddings.vector(text, 64), 10), llm_similar(llm_db, text, 10))
    for i in range(40):
        q = fake_embeddings.vector(f"query {i}", 64)
        assert_same(vekter_similar(conn, "docs_idx", q, 10), collection_similar(llm_db, "docs", q, 10))

    # `llm embed` and `llm embed-multi` in another process: a new id, a re-embedded id (INSERT OR
    # REPLACE), and rows deleted with sqlite-utils; the next query sees all of it.
    run_llm("embed", "docs", "fresh", "-c", "near:doc 7", "-d", str(llm_db))
    # (llm skips content it has embedded before, so the re-embedded text differs)
    run_llm("embed", "docs", "d9", "-c", "near:near:doc 7", "-d", str(llm_db))
    subprocess.run(
        [sys.executable, "-m", "sqlite_utils", "query", str(llm_db), "delete from embeddings where collection_id = 1 and id in ('d7', 'd10', 'd11')"],
        check=True, capture_output=True, timeout=60,
    )
    got = vekter_similar(conn, "docs_idx", fake_embeddings.vector("near:doc 7", 64), 5)
    assert [i for i, _ in got[:2]] in (["fresh", "d9"], ["d9", "fresh"])
    assert "d7" not in [i for i, _ in got]
    assert_same(got, llm_similar(llm_db, "near:doc 7", 5))
    for i in range(20):
        q = fake_embeddings.vector(f"after {i}", 64)
        assert_same(vekter_similar(conn, "docs_idx", q, 10), collection_similar(llm_db, "docs", q, 10))
    assert conn.execute("select count(*) from docs_idx").fetchone() == (298,)
    conn.execute("insert into docs_idx(docs_idx) values ('integrity-check')")
    conn.commit()

    # sqlite-utils counts every table of the file, the faiss table included.
    counts = subprocess.run(
        [sys.executable, "-m", "sqlite_utils", "tables", "--counts", f"--load-extension={LIB.removesuffix('.so')}", str(llm_db)],
        check=True, capture_output=True, text=True, timeout=60,
    )
    assert {"table": "docs_idx", "count": 298} in json.loads(counts.stdout)

    # The other collection (another model, another dimension) never bothers this index: not at
    # build, not at sync.
    run_llm("embed", "notes", "n-new", "-c", "a note", "-d", str(llm_db))
    assert conn.execute("select count(*) from docs_idx").fetchone() == (298,)

    # Join back by the composite key: the search runs once, as the outer loop, rows in rank order.
    sql = (
        "select e.id, e.content, s.distance from docs_idx(?, 5) as s "
        "join embeddings as e on e.collection_id = 1 and e.id = s.id"
    )
    q = fake_embeddings_blob(fake_embeddings.vector("near:doc 42", 64))
    plan = [r[3] for r in conn.execute("explain query plan " + sql, [q]).fetchall()]
    assert plan[0].startswith("SCAN s VIRTUAL TABLE INDEX"), plan
    assert plan[1].startswith("SEARCH e USING"), plan
    rows = conn.execute(sql, [q]).fetchall()
    assert rows[0][:2] == ("d42", "doc 42")
    assert [r[2] for r in rows] == sorted(r[2] for r in rows)
    report(f"llm: faiss table over one collection = llm similar on {40 + 20 + 4} queries; join plan: {' / '.join(plan)}")
    conn.close()


def test_a_table_per_collection_and_the_plain_path(llm_db):
    conn = connect(llm_db)
    conn.execute("create virtual table notes_idx using faiss(content = embeddings, where = 'collection_id = 2', metric = cosine, id = id)")
    for i in range(10):
        q = fake_embeddings.vector(f"note query {i}", 32)
        assert_same(vekter_similar(conn, "notes_idx", q, 5), collection_similar(llm_db, "notes", q, 5))

    # faiss_search over the whole table cannot mix dimensions; the message says what to do.
    q = fake_embeddings_blob(fake_embeddings.vector("x", 64))
    with pytest.raises(Exception, match="where = |faiss_agg"):
        conn.execute("select faiss_search('main', 'embeddings', ?, 3)", [q]).fetchone()
    # faiss_agg over one collection, with the metric argument, is what llm similar computes.
    q = fake_embeddings.vector("note query 0", 32)
    got = json.loads(conn.execute(
        "select faiss_agg_with_scores(id, embedding, ?, 5, 'cosine') from embeddings where collection_id = 2",
        [fake_embeddings_blob(q)],
    ).fetchone()[0])
    assert_same([(i, 1 - d) for i, d in got], collection_similar(llm_db, "notes", q, 5))
    conn.close()
