"""A real Datasette server, started with --load-extension, answering datasette-faiss SQL over
HTTP: the README's json_each join, scores, errors, and freshness after a write."""
import contextlib
import json
import os
import sqlite3
import sys
import urllib.error
import urllib.parse
import urllib.request

import pytest
from conftest import LIB, encode
from datasette_server import serving

README_QUERY = """
with related as (
  select value from json_each(
    faiss_search(
      'blog',
      'embeddings',
      (select embedding from embeddings where id = 3),
      3
    )
  )
)
select blog_entry.id, blog_entry.title from related join blog_entry on blog_entry.id = related.value
"""


def make_blog(path, with_index=False):
    conn = sqlite3.connect(path)
    conn.execute("create table blog_entry (id integer primary key, title text)")
    conn.execute("create table embeddings (id integer primary key, embedding blob)")
    for i in range(1, 7):
        conn.execute("insert into blog_entry values (?, ?)", (i, f"Entry {i}"))
        conn.execute("insert into embeddings values (?, ?)", (i, encode([i, i * 0.5])))
    if with_index:
        conn.enable_load_extension(True)
        conn.load_extension(LIB.removesuffix(".so"))
        conn.execute("create virtual table embeddings_idx using faiss(content = embeddings, factory = 'HNSW8')")
    conn.commit()
    conn.close()


@contextlib.contextmanager
def datasette_serving(db):
    """A real `datasette serve` with vekter loaded by --load-extension; yields its base URL."""
    datasette = os.path.join(os.path.dirname(sys.executable), "datasette")
    with serving([datasette, "serve", db, "--load-extension", LIB.removesuffix(".so")]) as (base, _):
        yield base


@pytest.fixture(params=[False, True], ids=["plain table", "faiss table"])
def server(tmp_path, request):
    db = tmp_path / "blog.db"
    make_blog(db, with_index=request.param)
    with datasette_serving(db) as base:
        yield base, db


def query(base, sql, **params):
    qs = urllib.parse.urlencode({"sql": sql, "_shape": "array", **params})
    try:
        with urllib.request.urlopen(f"{base}/blog.json?{qs}", timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_readme_join_query_over_http(server):
    base, _ = server
    status, rows = query(base, README_QUERY)
    assert status == 200, rows
    assert rows == [
        {"id": 3, "title": "Entry 3"},
        {"id": 2, "title": "Entry 2"},
        {"id": 4, "title": "Entry 4"},
    ]


def test_scores_codec_and_form_parameters_over_http(server):
    base, _ = server
    # Datasette passes :k and :q from the query string as text.
    status, rows = query(
        base,
        "select faiss_search_with_scores('blog', 'embeddings', :q, :k) as r, "
        "hex(faiss_encode('[2.4, 4.1, 1.8]')) as h",
        q="[2, 1]",
        k="2",
    )
    assert status == 200, rows
    assert rows[0]["r"] == "[[2, 0.0], [1, 1.25]]"
    assert rows[0]["h"] == "9A991940333383406666E63F"


def test_errors_are_messages_not_crashes(server):
    base, _ = server
    status, body = query(base, "select faiss_search('blog', 'embeddings', '[1, 1]', -1)")
    assert status == 400
    assert "k must be a positive integer" in body["error"]
    status, body = query(base, "select faiss_search('nope', 'embeddings', '[1, 1]', 1)")
    assert "no database named 'nope'" in body["error"]
    status, _ = query(base, "select 1")
    assert status == 200, "server still up"


def test_server_sees_writes_made_while_it_runs(server):
    base, db = server
    assert query(base, "select faiss_search('blog', 'embeddings', '[100, 50]', 1) as r")[1][0]["r"] == "[6]"
    conn = sqlite3.connect(db)
    conn.execute("insert into embeddings values (7, ?)", [encode([100, 50])])
    conn.commit()
    conn.close()
    assert query(base, "select faiss_search('blog', 'embeddings', '[100, 50]', 1) as r")[1][0]["r"] == "[7]"


def test_faiss_table_queries_over_http(tmp_path):
    db = tmp_path / "blog.db"
    make_blog(db, with_index=True)
    with datasette_serving(db) as base:
        status, rows = query(
            base,
            "select b.title, i.distance from embeddings_idx(:q, :k) i join blog_entry b on b.id = i.rowid",
            q="[4, 2]",
            k="2",
        )
        assert status == 200, rows
        assert rows == [{"title": "Entry 4", "distance": 0.0}, {"title": "Entry 3", "distance": 1.25}]
        status, rows = query(
            base,
            "select rowid from embeddings_idx where query = :q and k = 3 and rowid in (select id from blog_entry where id % 2 = 1)",
            q="[4, 2]",
        )
        assert [r["rowid"] for r in rows] == [3, 5, 1]
        # without a query the faiss table lists what it indexes: its table page renders
        status, rows = query(base, "select rowid, id, distance from embeddings_idx")
        assert status == 200, rows
        assert [r["rowid"] for r in rows] == [1, 2, 3, 4, 5, 6]
        assert all(r["distance"] is None for r in rows)
        with urllib.request.urlopen(base + "/blog.json", timeout=30) as r:
            assert r.status == 200
        with urllib.request.urlopen(base + "/blog/embeddings_idx.json?_shape=array", timeout=30) as r:
            assert r.status == 200
            assert len(json.loads(r.read())) == 6
        # faiss_indexes shows the index this server holds
        status, rows = query(base, "select name, factory, ntotal from faiss_indexes")
        assert rows == [{"name": "embeddings_idx", "factory": "HNSW8", "ntotal": 6}]
