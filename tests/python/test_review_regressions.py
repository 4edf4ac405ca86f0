"""Regression tests for defects found in review: each reproduced a crash, a hang or a wrong
answer before it was fixed."""
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from conftest import LIB, connect

CREATE = textwrap.dedent(
    """
    import sqlite3, sys
    c = sqlite3.connect(":memory:")
    c.enable_load_extension(True)
    c.load_extension(sys.argv[1])
    c.execute("create table docs (id integer primary key, embedding blob)")
    c.executemany("insert into docs values (?, ?)", [(i, f"[{i % 7}, {i % 5}, {i % 3}, {i % 11}]") for i in range(300)])
    try:
        c.execute("create virtual table x using faiss(content = docs, factory = ?)".replace("?", repr(sys.argv[2])))
        c.execute("update docs set embedding = '[1, 2, 3, 4]' where id = 3")
        print("ok", c.execute("select count(*) from x('[1, 2, 3, 4]', 10)").fetchone())
    except sqlite3.Error as e:
        print("error:", e)
    """
)


@pytest.mark.parametrize(
    "factory",
    ["HNSW0", "HNSW1", "IVF0,Flat", "PQ0", "PQ1x0", "IVF1,PQ0", "IVF4,PQ1x0", "OPQ4_0,Flat",
     "RQ1x0", "NSG0", "NSG2,Flat", "IDMap,Flat", "HNSW100000", "PQ2x20"],
)
def test_factories_that_crashed_or_hung_are_refused(factory):
    run = subprocess.run(
        [sys.executable, "-c", CREATE, LIB.removesuffix(".so"), factory],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, f"process died: {run.returncode} {run.stderr[-500:]}"
    assert run.stdout.startswith("error:"), run.stdout


def test_failed_per_query_parameters_do_not_leak(tmp_path):
    path = tmp_path / "t.db"
    conn = connect(path)
    rng = np.random.default_rng(0)
    conn.execute("create table docs (id integer primary key, embedding blob)")
    conn.executemany("insert into docs values (?, ?)", [(i, v.tobytes()) for i, v in enumerate(rng.normal(size=(400, 4)).astype(np.float32))])
    conn.execute("create virtual table x using faiss(content = docs, factory = 'IVF4,Flat')")
    conn.commit()
    count = lambda p=None: conn.execute(
        "select count(*) from x where query = '[0, 0, 0, 0]' and k = 400" + (" and params = ?" if p else ""), [p] if p else []
    ).fetchone()[0]
    before = count()
    assert before < 400, "nprobe=1 scans one list of four"
    with pytest.raises(sqlite3.OperationalError, match="efSearch"):
        count("nprobe=4,efSearch=10")
    assert count() == before
    assert count("nprobe=4") == 400
    assert count() == before
    conn.execute("insert into x(x) values ('optimize')")
    conn.commit()
    fresh = connect(path)
    assert fresh.execute("select count(*) from x('[0, 0, 0, 0]', 400)").fetchone()[0] == before


def test_insert_or_replace_on_another_unique_column_still_gives_k_rows():
    conn = connect()
    conn.execute("create table docs (id integer primary key, url text unique, embedding blob)")
    conn.executemany("insert into docs values (?, ?, ?)", [(i, f"u{i}", f"[{i}, 0]") for i in range(1, 11)])
    conn.execute("create virtual table x using faiss(content = docs, factory = 'HNSW8')")
    # deletes row 1 without firing the delete trigger (recursive_triggers is off)
    conn.execute("insert or replace into docs (url, embedding) values ('u1', '[50, 0]')")
    got = [r[0] for r in conn.execute("select rowid from x('[1, 0]', 3)")]
    assert got == [2, 3, 4]
    with pytest.raises(sqlite3.DatabaseError, match="not in the content table"):
        conn.execute("insert into x(x) values ('integrity-check')")
    conn.execute("insert into x(x) values ('optimize')")
    conn.execute("insert into x(x) values ('integrity-check')")
    assert conn.execute("select ntotal, deleted from faiss_indexes where name = 'x'").fetchone() == (10, 0)


def test_faiss_table_can_be_dropped_after_its_content_table():
    conn = connect()
    conn.execute("create table docs (id integer primary key, embedding blob)")
    conn.execute("insert into docs values (1, '[1, 2]')")
    conn.execute("create virtual table x using faiss(content = docs)")
    conn.execute("drop table docs")
    with pytest.raises(sqlite3.OperationalError, match="docs"):
        conn.execute("select * from x('[1, 2]', 1)").fetchall()
    conn.execute("drop table x")
    assert conn.execute("select count(*) from sqlite_master").fetchone()[0] == 0


def test_rowid_given_as_text_filters_like_sql_does():
    conn = connect()
    conn.execute("create table docs (id integer primary key, embedding blob)")
    conn.executemany("insert into docs values (?, ?)", [(i, f"[{i}]") for i in range(10)])
    conn.execute("create virtual table x using faiss(content = docs)")
    assert conn.execute("select rowid from x where query = '[0]' and k = 3 and rowid = '5'").fetchall() == [(5,)]
    assert conn.execute("select rowid from x where query = '[0]' and k = 3 and rowid in ('5', 6)").fetchall() == [(5,), (6,)]


def test_filtered_ivf_search_is_exact_with_every_list_probed():
    conn = connect()
    rng = np.random.default_rng(8)
    data = rng.normal(size=(2000, 8)).astype(np.float32)
    conn.execute("create table docs (id integer primary key, embedding blob)")
    conn.executemany("insert into docs values (?, ?)", [(i, v.tobytes()) for i, v in enumerate(data)])
    conn.execute("create virtual table x using faiss(content = docs, factory = 'IVF16,Flat', params = 'nprobe=16')")
    conn.execute("delete from docs where id % 10 = 0")
    allowed = [i for i in range(0, 2000, 3) if i % 10]
    for q in data[:5]:
        got = [r[0] for r in conn.execute(
            "select rowid from x where query = ? and k = 10 and rowid in (select id from docs where id % 3 = 0)", [q.tobytes()])]
        d = ((data[allowed] - q) ** 2).sum(axis=1)
        assert got == [allowed[i] for i in np.argsort(d, kind="stable")[:10]]


WRITER = textwrap.dedent(
    """
    import sqlite3, sys, time
    c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
    c.enable_load_extension(True)
    c.load_extension(sys.argv[2])
    end = time.time() + float(sys.argv[3])
    i = 100000
    while time.time() < end:
        c.execute("insert into docs (id, embedding) values (?, '[1, 1]')", [i])
        c.execute("delete from docs where id = ?", [i - 7])
        c.execute("select count(*) from x('[1, 1]', 5)").fetchone()
        if i % 5 == 0:
            c.execute("insert into x(x) values ('optimize')")
        i += 1
    """
)


def test_a_reader_sees_one_consistent_snapshot_while_another_process_optimizes(tmp_path):
    path = tmp_path / "race.db"
    conn = connect(path, isolation_level=None, timeout=30)
    conn.execute("pragma journal_mode = wal")
    conn.execute("create table docs (id integer primary key, embedding blob)")
    conn.executemany("insert into docs values (?, ?)", [(i, f"[{i % 10}, 1]") for i in range(2000)])
    conn.execute("create virtual table x using faiss(content = docs)")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), LIB.removesuffix(".so"), "4"])
    checks = errors = 0
    deadline = time.time() + 4
    while time.time() < deadline:
        try:
            total, found = conn.execute(
                "select (select count(*) from docs), (select count(*) from x('[1, 1]', 100000))"
            ).fetchone()
            assert found == total, (found, total)
            checks += 1
        except sqlite3.OperationalError as e:
            assert "locked" in str(e) or "busy" in str(e), e
            errors += 1
    assert writer.wait(timeout=60) == 0
    assert checks > 20


def test_a_wal_reader_on_an_older_snapshot_gets_its_own_answer(tmp_path):
    path = tmp_path / "wal.db"
    w = connect(path, isolation_level=None)
    w.execute("pragma journal_mode = wal")
    w.execute("create table docs (id integer primary key, embedding blob)")
    w.executemany("insert into docs values (?, ?)", [(i, f"[{i}, 0]") for i in range(1, 11)])
    w.execute("create virtual table x using faiss(content = docs, factory = 'HNSW8')")
    r = connect(path, isolation_level=None)
    r.execute("begin")
    assert r.execute("select count(*) from docs").fetchone()[0] == 10
    w.execute("delete from docs where id = 1")
    w.execute("insert into docs values (100, '[1.1, 0]')")
    assert [x[0] for x in w.execute("select rowid from x('[1, 0]', 3)")] == [100, 2, 3]
    assert [x[0] for x in r.execute("select rowid from x('[1, 0]', 3)")] == [1, 2, 3]
    r.execute("commit")
    assert [x[0] for x in r.execute("select rowid from x('[1, 0]', 3)")] == [100, 2, 3]


def test_pending_counts_after_rebuild_of_an_empty_log():
    """A rebuild after a rebuild stores the log's end (the log keeps its newest entry when
    folded, so it never counts from 1 again), so faiss_indexes.pending counts only the changes
    made since."""
    conn = connect(isolation_level=None)
    conn.execute("create table docs (id integer primary key, embedding blob)")
    conn.execute("create virtual table f using faiss(content = docs, dim = 2)")
    conn.execute("insert into docs values (1, '[0,0]'), (2, '[1,1]'), (3, '[2,2]')")
    conn.execute("insert into f(f) values ('rebuild')")
    conn.execute("insert into f(f) values ('rebuild')")  # the log holds its newest entry only
    conn.execute("insert into docs values (4, '[3,3]')")
    assert conn.execute("select count(*) from f('[0,0]', 2)").fetchone()[0] == 2
    assert conn.execute("select (select count(*) from f_changes), pending from faiss_indexes "
                        "where name = 'f'").fetchone() == (2, 1)
    conn.execute("insert into f(f) values ('optimize')")
    assert conn.execute("select pending from faiss_indexes where name = 'f'").fetchone()[0] == 0


@pytest.mark.parametrize("autoincrement", [False, True])
def test_the_change_log_never_counts_from_1_again(tmp_path, autoincrement):
    """The change log has no AUTOINCREMENT (a second B-tree write per write): `optimize` keeps
    its newest entry so that the next seq is past every seq folded. A log made with
    AUTOINCREMENT (before 2026-12-02) keeps working, emptied or not, and reopened files too."""
    path = tmp_path / "log.db"
    conn = connect(path, isolation_level=None)
    conn.execute("create table docs (id integer primary key, embedding blob)")
    conn.execute("create virtual table f using faiss(content = docs, dim = 2)")
    if autoincrement:  # an older file's log: emptied by an older optimize
        conn.execute("drop table f_changes")
        conn.execute("create table f_changes (seq integer primary key autoincrement, rid integer not null)")
    for i in range(1, 6):
        conn.execute("insert into docs values (?, ?)", (i, f"[{i}, 0]"))
    conn.execute("insert into f(f) values ('optimize')")
    if autoincrement:
        conn.execute("delete from f_changes")
    assert [r[0] for r in conn.execute("select rowid from f('[5, 0]', 5)")] == [5, 4, 3, 2, 1]
    conn.close()
    for round_ in range(3):
        conn = connect(path, isolation_level=None)
        new = 10 + round_
        conn.execute("insert into docs values (?, ?)", (new, f"[{new}, 0]"))
        conn.execute("delete from docs where id = ?", (round_ + 1,))
        seqs = [r[0] for r in conn.execute("select seq from f_changes order by seq")]
        assert seqs == sorted(set(seqs)) and seqs[-1] >= 7 + 2 * round_
        assert conn.execute("select rowid from f('[100, 0]', 1)").fetchone()[0] == new
        conn.execute("insert into f(f) values ('optimize')")
        assert conn.execute("select pending from faiss_indexes where name = 'f'").fetchone()[0] == 0
        conn.close()
        other = connect(path, isolation_level=None)
        got = [r[0] for r in other.execute("select rowid from f('[0, 0]', 20)")]
        assert got == sorted(set(range(1, 6)) - set(range(1, round_ + 2)) | set(range(10, new + 1)))
        other.execute("insert into f(f) values ('integrity-check')")
        other.close()


def test_rows_found_inside_a_rolled_back_transaction_are_not_trusted_after_it():
    """Found in review: the memo of rows found in the content table was keyed by data version
    and change count, which ROLLBACK (TO) does not move; a row inserted and rolled back came
    back in results where the index still held a row REPLACE had removed unseen."""
    conn = connect(isolation_level=None)
    conn.execute("create table d2 (id integer primary key, u text unique, embedding blob)")
    conn.execute("insert into d2 values (1, 'a', '[0, 0]'), (2, 'b', '[5, 5]')")
    conn.execute("create virtual table g using faiss(content = d2)")
    conn.execute("insert or replace into d2 values (3, 'a', '[9, 9]')")  # row 1 gone unseen

    def near():
        return [r[0] for r in conn.execute("select rowid from g('[0, 0]', 3)")]

    assert near() == [2, 3]
    conn.execute("begin")
    conn.execute("savepoint s")
    conn.execute("insert into d2 values (1, 'z', '[0, 0]')")
    assert near() == [1, 2, 3]
    conn.execute("rollback to s")
    assert near() == [2, 3]
    conn.execute("commit")
    conn.execute("begin")
    conn.execute("insert into d2 values (1, 'z', '[0, 0]')")
    assert near() == [1, 2, 3]
    conn.execute("rollback")
    assert near() == [2, 3]


def test_an_emptied_change_log_is_reported_not_searched_stale():
    """Found in review: without AUTOINCREMENT, a change log emptied by SQL numbers new writes
    below the stored index's mark, where no sync reads them. Searches say so and name the fix."""
    conn = connect(isolation_level=None)
    conn.execute("create table docs (id integer primary key, embedding blob)")
    conn.execute("create virtual table f using faiss(content = docs, dim = 2)")
    conn.executemany("insert into docs values (?, ?)", [(i, f"[{i}, 0]") for i in range(1, 11)])
    conn.execute("insert into f(f) values ('optimize')")
    conn.execute("delete from f_changes")
    conn.execute("insert into docs values (100, '[100, 0]')")
    with pytest.raises(sqlite3.DatabaseError, match=r"change log \"f_changes\" was emptied.*'rebuild'"):
        conn.execute("select rowid from f('[100, 0]', 1)").fetchall()
    conn.execute("insert into f(f) values ('rebuild')")
    assert conn.execute("select rowid from f('[100, 0]', 1)").fetchone()[0] == 100
    conn.execute("insert into f(f) values ('integrity-check')")
