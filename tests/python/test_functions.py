"""The SQL functions from Python's sqlite3 module, checked against numpy and Python's json."""
import json
import math
import pathlib
import re
import sqlite3
import struct
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, connect, encode


def test_codec_matches_datasette_faiss(conn):
    blob = conn.execute("select faiss_encode('[2.4, 4.1, 1.8]')").fetchone()[0]
    assert blob.hex().upper() == "9A991940333383406666E63F"
    assert blob == encode([2.4, 4.1, 1.8])
    text = conn.execute("select faiss_decode(?)", [blob]).fetchone()[0]
    assert text == json.dumps(list(struct.unpack("fff", blob)))


def test_json_output_is_python_json_dumps(conn):
    rng = np.random.default_rng(5)
    values = np.concatenate(
        [rng.normal(size=200) * 10.0 ** rng.integers(-12, 30, size=200), [0.0, -0.0, 1.0, 1e-5, 3.4028234663852886e38]]
    ).astype(np.float32)
    text = conn.execute("select faiss_decode(?)", [values.tobytes()]).fetchone()[0]
    assert text == json.dumps([float(x) for x in values])


def test_search_matches_numpy_brute_force(conn):
    rng = np.random.default_rng(1)
    data = rng.normal(size=(2000, 32)).astype(np.float32)
    conn.execute("create table embeddings (id integer primary key, embedding blob)")
    conn.executemany(
        "insert into embeddings values (?, ?)", [(i, v.tobytes()) for i, v in enumerate(data)]
    )
    for q in rng.normal(size=(10, 32)).astype(np.float32):
        got = json.loads(
            conn.execute(
                "select faiss_search_with_scores('main', 'embeddings', ?, 10)", [q.tobytes()]
            ).fetchone()[0]
        )
        dist = ((data - q) ** 2).sum(axis=1)
        want = np.argsort(dist, kind="stable")[:10]
        assert [i for i, _ in got] == want.tolist()
        for (_, score), i in zip(got, want):
            assert math.isclose(score, dist[i], rel_tol=1e-4)


def test_text_ids_like_the_llm_tool(conn):
    conn.execute("create table embeddings (collection_id integer, id text primary key, embedding blob)")
    conn.executemany(
        "insert into embeddings (collection_id, id, embedding) values (1, ?, ?)",
        [("doc-é", encode([1, 0])), ("doc-2", encode([0, 1]))],
    )
    got = conn.execute("select faiss_search('main', 'embeddings', ?, 2)", [encode([0.9, 0])]).fetchone()[0]
    assert got == json.dumps(["doc-é", "doc-2"])
    assert json.loads(got) == ["doc-é", "doc-2"]


def test_agg_filters_in_plain_sql(conn):
    conn.execute("create table items (id integer primary key, category text, embedding blob)")
    conn.executemany(
        "insert into items values (?, ?, ?)",
        [(i, "news" if i % 2 else "blog", encode([i, 0])) for i in range(10)],
    )
    got = conn.execute(
        "select faiss_agg(id, embedding, ?, 3) from items where category = 'news'", [encode([4, 0])]
    ).fetchone()[0]
    assert json.loads(got) == [3, 5, 1]
    got = conn.execute(
        "select faiss_agg_with_scores(id, embedding, ?, 2) from items where category = 'blog'",
        [encode([4, 0])],
    ).fetchone()[0]
    assert got == "[[4, 0.0], [2, 4.0]]"
    assert conn.execute("select faiss_agg(id, embedding, '[1, 1]', 2) from items where 0").fetchone()[0] is None


@pytest.mark.parametrize(
    "sql, message",
    [
        ("select faiss_search('main', 'nope', '[1]', 1)", "no table named 'nope'"),
        ("select faiss_search('main', 't', '[1]', 0)", "k must be a positive integer"),
        ("select faiss_search('main', 't', '[1, 2]', 1)", "query vector has 2 dimensions"),
        ("select faiss_search('main', 't', x'0000', 1)", "not a multiple of 4"),
        ("select faiss_encode('[1, NaN]')", "only finite numbers"),
        ("select faiss_decode(1)", "not INTEGER"),
    ],
)
def test_bad_input_gives_specific_errors(conn, sql, message):
    conn.execute("create table t (id integer, embedding blob)")
    conn.execute("insert into t values (1, ?)", [encode([1])])
    with pytest.raises(sqlite3.OperationalError, match=re.escape(message)):
        conn.execute(sql).fetchone()


def test_write_from_another_process_is_seen(tmp_path):
    path = tmp_path / "fresh.db"
    conn = connect(path)
    conn.execute("create table embeddings (id integer primary key, embedding blob)")
    conn.execute("insert into embeddings values (1, ?)", [encode([0, 0])])
    conn.commit()
    assert conn.execute("select faiss_search('fresh', 'embeddings', '[5, 5]', 1)").fetchone()[0] == "[1]"
    writer = f"""
import sqlite3, struct
c = sqlite3.connect({str(path)!r})
c.execute("insert into embeddings values (2, ?)", [struct.pack('ff', 5, 5)])
c.execute("update embeddings set embedding = ? where id = 1", [struct.pack('ff', 100, 100)])
c.commit()
"""
    subprocess.run([sys.executable, "-c", writer], check=True)
    got = conn.execute("select faiss_search_with_scores('fresh', 'embeddings', '[5, 5]', 5)").fetchone()[0]
    assert got == "[[2, 0.0], [1, 18050.0]]"


def test_every_registered_function_has_a_test():
    conn = connect()
    names = [
        r[0]
        for r in conn.execute(
            "select distinct name from pragma_function_list "
            "where name like 'faiss%' or name like 'vekter%' order by name"
        )
    ]
    assert len(names) >= 8, names
    sources = [
        p.read_text(encoding="utf-8")
        for pattern in ("tests/*.rs", "tests/python/*.py", "tests/golden/*.sql")
        for p in ROOT.glob(pattern)
    ]
    untested = [n for n in names if not any(re.search(rf"\b{n}\(", s) for s in sources)]
    assert not untested, f"registered functions without a test: {untested}"


def test_version_and_debug(conn):
    assert re.fullmatch(r"\d+\.\d+\.\d+", conn.execute("select vekter_version()").fetchone()[0])
    info = json.loads(conn.execute("select vekter_debug()").fetchone()[0])
    assert info["faiss"].startswith("1.")
    assert info["threads"]["build"] >= 1 and info["threads"]["search"] == 1
    assert info["simd"]["level"] in ("generic", "avx2", "avx512")
    assert {"builds", "checks", "table_indexes"} <= set(info["registry"])
