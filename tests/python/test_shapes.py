"""faiss tables over every table shape (SPEC §4), checked against numpy: rowid tables with no
declared key across VACUUM (run by another process), TEXT keys and WITHOUT ROWID, partial indexes
that rows move in and out of, partitions, and the errors of bad options."""
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from conftest import connect

DIM = 8


def exact(rows, q, k):
    """[(key, distance)] of the k rows nearest q by squared L2; rows: {key: vector}."""
    keys = list(rows)
    data = np.stack([rows[key] for key in keys])
    d = ((data - q) ** 2).sum(axis=1)
    order = np.argsort(d, kind="stable")[:k]
    return [(keys[i], float(d[i])) for i in order]


def assert_exact(got, want):
    assert [key for key, _ in got] == [key for key, _ in want]
    assert [d for _, d in got] == pytest.approx([d for _, d in want], rel=1e-4, abs=1e-4)


def other_process(path, sql):
    """Run `sql` in another process, without vekter: what sqlite-utils or any tool would do."""
    code = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.close()"
    subprocess.run([sys.executable, "-c", code, str(path), sql], check=True, timeout=60)


def test_a_rowid_table_without_a_key_stays_exact_across_vacuum(tmp_path):
    path = tmp_path / "nokey.db"
    conn = connect(path, isolation_level=None)
    rng = np.random.default_rng(1)
    conn.execute("create table notes (title text, embedding blob)")
    rows = {f"t{i}": rng.normal(size=DIM).astype(np.float32) for i in range(600)}
    conn.executemany("insert into notes values (?, ?)", [(t, v.tobytes()) for t, v in rows.items()])
    conn.execute("create virtual table notes_idx using faiss(content = notes, id = title)")
    # Holes at the front: VACUUM moves every later row to a new rowid.
    conn.execute("delete from notes where rowid % 3 = 0 or rowid < 50")
    rows = {t: v for t, v in rows.items() if conn.execute("select 1 from notes where title = ?", [t]).fetchone()}

    def check():
        by_rowid = dict(conn.execute("select rowid, title from notes"))
        for q in rng.normal(size=(10, DIM)).astype(np.float32):
            got = conn.execute("select rowid, id, distance from notes_idx(?, 10)", [q.tobytes()]).fetchall()
            assert_exact([(i, d) for _, i, d in got], exact(rows, q, 10))
            # rowid is the content row's current rowid: a join by rowid finds the same row.
            assert all(by_rowid[r] == i for r, i, _ in got)
            joined = conn.execute(
                "select n.title from notes_idx(?, 10) as s join notes as n on n.rowid = s.rowid", [q.tobytes()]
            ).fetchall()
            assert [t for (t,) in joined] == [i for _, i, _ in got]

    check()
    before = dict(conn.execute("select title, rowid from notes"))
    other_process(path, "VACUUM")
    after = dict(conn.execute("select title, rowid from notes"))
    assert sum(before[t] != after[t] for t in after) > 300, "VACUUM renumbered the rows"
    check()
    # Writes after the VACUUM, from this connection and another process.
    v = rng.normal(size=DIM).astype(np.float32)
    conn.execute("insert into notes values ('new', ?)", [v.tobytes()])
    rows["new"] = v
    other_process(path, "DELETE FROM notes WHERE title = 't100'; VACUUM")
    del rows["t100"]
    check()
    conn.execute("insert into notes_idx(notes_idx) values ('integrity-check')")
    # A second connection opening the file fresh agrees.
    conn2 = connect(path)
    title = next(iter(rows))
    assert conn2.execute("select id from notes_idx(?, 1)", [rows[title].tobytes()]).fetchone() == (title,)
    conn2.close()
    conn.close()


@pytest.mark.parametrize("without_rowid", [False, True])
def test_text_keys_follow_insert_or_replace(tmp_path, without_rowid):
    path = tmp_path / "text.db"
    conn = connect(path, isolation_level=None)
    rng = np.random.default_rng(2)
    tail = " WITHOUT ROWID" if without_rowid else ""
    conn.execute(f"create table docs (uuid text primary key, embedding blob){tail}")
    rows = {f"u-{i:04}": rng.normal(size=DIM).astype(np.float32) for i in range(400)}
    conn.executemany("insert into docs values (?, ?)", [(u, v.tobytes()) for u, v in rows.items()])
    conn.execute("create virtual table docs_idx using faiss(content = docs)")
    # Re-embedding by INSERT OR REPLACE (a delete and an insert, no recursive_triggers), here and
    # from another process.
    for u in ["u-0001", "u-0002", "u-0003"]:
        rows[u] = rng.normal(size=DIM).astype(np.float32)
        conn.execute("insert or replace into docs values (?, ?)", [u, rows[u].tobytes()])
    rows["u-0004"] = np.zeros(DIM, np.float32)
    other_process(path, f"INSERT OR REPLACE INTO docs VALUES ('u-0004', zeroblob({DIM * 4}))")
    conn.execute("delete from docs where uuid = 'u-0005'")
    del rows["u-0005"]
    for q in [*rng.normal(size=(10, DIM)).astype(np.float32), *(rows[u] for u in ["u-0001", "u-0004"])]:
        got = conn.execute("select id, distance from docs_idx(?, 8)", [q.tobytes()]).fetchall()
        assert_exact(got, exact(rows, q, 8))
    other_process(path, "VACUUM")
    q = rows["u-0003"]
    assert conn.execute("select id from docs_idx(?, 1)", [q.tobytes()]).fetchone() == ("u-0003",)
    conn.execute("insert into docs_idx(docs_idx) values ('integrity-check')")
    assert conn.execute("select count(*) from docs_idx").fetchone() == (399,)
    conn.close()


def test_a_partial_index_follows_rows_moving_in_and_out(tmp_path):
    path = tmp_path / "partial.db"
    conn = connect(path, isolation_level=None)
    rng = np.random.default_rng(3)
    conn.execute("create table items (id integer primary key, lang text, embedding blob)")
    langs = {}
    vectors = {}
    for i in range(500):
        langs[i] = ["en", "de", "fr"][i % 3]
        # Another language, another model: a different dimension must never cause an error.
        vectors[i] = rng.normal(size=DIM if langs[i] != "fr" else DIM + 3).astype(np.float32)
    conn.executemany("insert into items values (?, ?, ?)", [(i, langs[i], vectors[i].tobytes()) for i in vectors])
    conn.execute("create virtual table en_idx using faiss(content = items, where = 'lang = ''en''', factory = 'IVF8,Flat', params = 'nprobe=8')")

    def check():
        rows = {i: v for i, v in vectors.items() if langs[i] == "en"}
        for q in rng.normal(size=(5, DIM)).astype(np.float32):
            got = conn.execute("select rowid, distance from en_idx(?, 10)", [q.tobytes()]).fetchall()
            assert_exact(got, exact(rows, q, 10))
        assert conn.execute("select count(*) from en_idx").fetchone() == (len(rows),)

    check()
    conn.execute("update items set lang = 'en' where id in (1, 4)")  # de -> en
    conn.execute("update items set lang = 'de' where id in (0, 3)")  # en -> de
    conn.execute("update items set lang = 'xx' where id = 2")  # fr (other dimension) stays out
    other_process(path, "UPDATE items SET lang = 'en' WHERE id = 7; UPDATE items SET lang = 'de' WHERE id = 6")
    for i, lang in [(1, "en"), (4, "en"), (0, "de"), (3, "de"), (2, "xx"), (7, "en"), (6, "de")]:
        langs[i] = lang
    v = rng.normal(size=DIM + 3).astype(np.float32)
    conn.execute("insert into items values (1000, 'fr', ?)", [v.tobytes()])
    vectors[1000], langs[1000] = v, "fr"
    check()
    conn.execute("insert into en_idx(en_idx) values ('integrity-check')")
    # A row moving in with a vector of another dimension is left out (as a NULL vector is), and
    # integrity-check names it.
    conn.execute("update items set lang = 'en' where id = 5")
    langs[5] = "en"
    del vectors[5]
    check()
    with pytest.raises(sqlite3.DatabaseError, match="row 5: vector has 11 dimensions, the index has 8"):
        conn.execute("insert into en_idx(en_idx) values ('integrity-check')")


@pytest.mark.parametrize("options", ["factory = 'Flat'", "factory = 'IVF4,Flat', params = 'nprobe=4'"])
def test_partitions_never_mix(tmp_path, options):
    path = tmp_path / "tenants.db"
    conn = connect(path, isolation_level=None)
    rng = np.random.default_rng(4)
    conn.execute("create table docs (id text primary key, tenant integer, embedding blob)")
    tenant = {}
    vectors = {}
    for i in range(1200):
        tenant[f"d{i}"] = i % 12
        vectors[f"d{i}"] = rng.normal(size=DIM).astype(np.float32)
    conn.executemany("insert into docs values (?, ?, ?)", [(d, tenant[d], vectors[d].tobytes()) for d in vectors])
    conn.execute(f"create virtual table docs_idx using faiss(content = docs, partition = tenant, {options})")

    def check():
        for t in range(12):
            rows = {d: v for d, v in vectors.items() if tenant[d] == t}
            q = rng.normal(size=DIM).astype(np.float32)
            got = conn.execute(
                "select id, tenant, distance from docs_idx where query = ? and k = 10 and tenant = ?", [q.tobytes(), t]
            ).fetchall()
            assert {row[1] for row in got} == {t}
            assert_exact([(d, dist) for d, _, dist in got], exact(rows, q, 10))
            assert conn.execute("select count(*) from docs_idx where tenant = ?", [t]).fetchone() == (len(rows),)

    check()
    # Rows moving between tenants, new tenants, deletes; from here and another process.
    conn.execute("update docs set tenant = 3 where id in ('d0', 'd1')")
    tenant["d0"] = tenant["d1"] = 3
    other_process(path, "UPDATE docs SET tenant = 11 WHERE id = 'd2'; DELETE FROM docs WHERE id = 'd14'")
    tenant["d2"] = 11
    del vectors["d14"], tenant["d14"]
    conn.execute("insert into docs values ('new', 12, ?)", [vectors["d5"].tobytes()])
    conn.execute("update docs set tenant = 12 where id = 'd17'")
    for d, t in [("d17", 12)]:
        tenant[d] = t
    vectors["new"], tenant["new"] = vectors["d5"], 12
    got = conn.execute("select id from docs_idx where query = ? and k = 5 and tenant = 12", [vectors["d5"].tobytes()]).fetchall()
    assert got == [("new",), ("d17",)]
    check()
    conn.execute("insert into docs_idx(docs_idx) values ('integrity-check')")
    # An unknown partition is empty, not an error; a search without the partition is an error.
    assert conn.execute("select count(*) from docs_idx where query = ? and k = 5 and tenant = 99", [vectors["d5"].tobytes()]).fetchone() == (0,)
    with pytest.raises(sqlite3.OperationalError, match="partitioned by tenant: name the partition"):
        conn.execute("select * from docs_idx(?, 5)", [vectors["d5"].tobytes()]).fetchall()
    # Reopened from the file, the partitions are the same.
    conn.close()
    conn = connect(path)
    q = vectors["d3"]
    assert conn.execute("select id from docs_idx where query = ? and k = 1 and tenant = 3", [q.tobytes()]).fetchone() == ("d3",)
    conn.close()


@pytest.mark.parametrize(
    "options, message",
    [
        ("where = 'lang = '", "where = 'lang = ': it ends where a column or a value was expected"),
        ("where = 'nope = 1'", "does not fit table 'items': no such column: nope"),
        ("where = 'lang = ''en'' ; drop table items'", "';' is not allowed"),
        ("where = 'load_extension(''x'') = 1'", "is a function call"),
        ("where = 'lang IN (SELECT lang FROM items)'", "'SELECT' is not allowed"),
        ("partition = nope", "partition column 'nope' is not in table 'items' (it has: id, lang, embedding)"),
        ("partition = embedding", "the vector column cannot be the partition"),
        ("where = 'lang = ''en''', where = 'lang = ''de'''", "twice"),
    ],
)
def test_bad_options_are_refused_and_leave_nothing(options, message):
    conn = connect()
    conn.execute("create table items (id integer primary key, lang text, embedding blob)")
    conn.execute("insert into items values (1, 'en', ?)", [np.zeros(DIM, np.float32).tobytes()])
    with pytest.raises(sqlite3.OperationalError, match=message.replace("(", r"\(").replace(")", r"\)")):
        conn.execute(f"create virtual table bad using faiss(content = items, {options})")
    assert conn.execute("select name from sqlite_master where name like 'bad%' or type = 'trigger'").fetchall() == []


@pytest.mark.parametrize(
    "table, options",
    [
        ("create table t (title text, embedding blob)", ""),
        ("create table t (k text primary key, embedding blob) without rowid", ""),
        ("create table t (id integer primary key, tenant, embedding blob)", ", partition = tenant"),
    ],
)
def test_empty_tables_reopen(tmp_path, table, options):
    """A snapshot of an empty index (no rows, no key, no partition) loads again."""
    path = tmp_path / "empty.db"
    conn = connect(path)
    conn.execute(table)
    conn.execute(f"create virtual table t_idx using faiss(content = t, dim = 2{options})")
    conn.commit()
    conn.close()
    conn = connect(path)
    where = " and tenant = 1" if "partition" in options else ""
    assert conn.execute(f"select count(*) from t_idx where query = '[0, 0]' and k = 3{where}").fetchone() == (0,)
    conn.execute("insert into t_idx(t_idx) values ('integrity-check')")
    conn.close()


def test_a_write_transaction_after_vacuum_sees_current_rowids(tmp_path):
    """VACUUM renumbers; a search inside the next write transaction (uncommitted rows, rowids not
    yet checked) must still answer with the rows' current rowids and their own vectors."""
    conn = connect(tmp_path / "vt.db", isolation_level=None)
    conn.execute("create table nk (title text, embedding blob)")
    conn.executemany("insert into nk values (?, ?)", [(f"r{i}", f"[{i}, 0]") for i in range(6)])
    conn.execute("create virtual table nki using faiss(content = nk, id = title)")
    conn.execute("delete from nk where title in ('r0', 'r1', 'r2')")
    conn.execute("select * from nki('[3, 0]', 1)").fetchall()
    conn.execute("vacuum")
    for end in ["commit", "rollback"]:
        conn.execute("begin")
        conn.execute("insert into nk values ('new', '[100, 0]')")
        got = conn.execute("select rowid, id, distance from nki('[3, 0]', 4)").fetchall()
        by_rowid = dict(conn.execute("select rowid, title from nk"))
        assert [i for _, i, _ in got] == ["r3", "r4", "r5", "new"]
        assert [d for _, _, d in got] == [0.0, 1.0, 4.0, 97.0 ** 2]
        assert all(by_rowid[r] == i for r, i, _ in got)
        conn.execute(end)
        if end == "commit":
            conn.execute("delete from nk where title = 'new'")
    got = conn.execute("select id from nki('[3, 0]', 4)").fetchall()
    assert got == [("r3",), ("r4",), ("r5",)]
    conn.execute("insert into nki(nki) values ('integrity-check')")


def test_colliding_keys_written_by_another_tool(tmp_path):
    """Two BLOB keys crafted to share one 64-bit handle, the second written without vekter:
    searches fail with an error naming both keys (never one row answering for the other) until
    one is gone; then the index answers exactly again."""
    path = tmp_path / "coll.db"
    conn = connect(path, isolation_level=None)
    conn.execute("create table bk (k blob primary key, name text, embedding blob)")
    conn.execute("insert into bk values (zeroblob(87), 'A', '[0, 0]'), (x'02', 'two', '[3, 3]')")
    conn.execute("create virtual table bki using faiss(content = bk, id = name)")
    twin = "01" + "00" * 30 + "a7b94ccd6c16f5d5" + "00" * 48
    other_process(path, f"insert into bk values (x'{twin}', 'B', '[1, 1]')")
    with pytest.raises(sqlite3.OperationalError, match="hash to the same 64-bit handle"):
        conn.execute("select id from bki('[0, 0]', 3)").fetchall()
    other_process(path, "delete from bk where name = 'B'")
    assert conn.execute("select id, distance from bki('[0, 0]', 3)").fetchall() == [("A", 0.0), ("two", 18.0)]
    conn.execute("insert into bki(bki) values ('integrity-check')")


def test_nocase_replace_does_not_answer_with_a_ghost(tmp_path):
    """INSERT OR REPLACE through a NOCASE key replaces 'A' by 'a': the old row never comes back
    in results, and the new one is found with its own key."""
    conn = connect(tmp_path / "nc.db", isolation_level=None)
    conn.execute("create table t (k text primary key collate nocase, embedding blob)")
    conn.execute("insert into t values ('A', '[0, 0]'), ('b', '[5, 5]')")
    conn.execute("create virtual table ti using faiss(content = t)")
    conn.execute("insert or replace into t values ('a', '[1, 1]')")
    got = conn.execute("select id, distance from ti('[0, 0]', 5)").fetchall()
    assert got == [("a", 2.0), ("b", 50.0)]
    joined = conn.execute("select t.k from ti('[0, 0]', 5) as s join t on t.k = s.id").fetchall()
    assert joined == [("a",), ("b",)]
    conn.execute("insert into ti(ti) values ('optimize')")
    assert conn.execute("select count(*) from ti").fetchone() == (2,)
