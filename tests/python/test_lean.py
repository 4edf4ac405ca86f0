"""Lean Flat snapshots (ARCHITECTURE.md, "The snapshot"): a Flat table stores no copy of its
vectors and is built from the content table at load; its optimize writes 24 bytes at most and keeps
its lineage. And the build id names what was built: the same rows under another definition
get another id."""
import json
import shutil

import numpy as np
from conftest import connect

DIM = 64


def config(conn, name="idx"):
    return dict(conn.execute(f"select key, value from {name}_config"))


def reopened(path, tmp_path, name):
    """The file under a new name: this process has nothing of it in memory."""
    copy = tmp_path / name
    shutil.copyfile(path, copy)
    return connect(copy)


def test_flat_stores_no_vectors_and_reloads_exactly(tmp_path):
    path = tmp_path / "flat.db"
    conn = connect(path, isolation_level=None)
    rng = np.random.default_rng(3)
    data = rng.standard_normal((2000, DIM)).astype(np.float32)
    conn.execute("create table docs (id integer primary key, embedding blob)")
    conn.executemany("insert into docs values (?, ?)", [(i, v.tobytes()) for i, v in enumerate(data)])
    conn.execute("create virtual table idx using faiss(content = docs)")
    assert config(conn)["snapshot_bytes"] == "24"
    lineage, build_id = config(conn)["lineage"], config(conn)["build_id"]
    # Updates leave tombstones in memory; optimize drops them, writes nothing new, keeps the id.
    for i in range(0, 2000, 10):
        data[i] = rng.standard_normal(DIM)
        conn.execute("update docs set embedding = ? where id = ?", [data[i].tobytes(), i])
    conn.execute("select id from idx where query = ? and k = 1", [data[0].tobytes()]).fetchall()
    conn.execute("insert into idx(idx) values ('optimize')")
    saved = json.loads(conn.execute("select vekter_debug()").fetchone()[0])["snapshots"]["last_saved"]
    assert saved == {"bytes": 24, "written": 0}, saved
    assert (config(conn)["lineage"], config(conn)["build_id"]) == (lineage, build_id)
    assert conn.execute("select count(*) from idx").fetchone()[0] == 2000
    other = reopened(path, tmp_path, "copy.db")
    for i in (0, 5, 10, 1999):
        got = other.execute("select id from idx where query = ? and k = 1", [data[i].tobytes()]).fetchall()
        assert got == [(i,)]
    assert other.execute("select faiss_integrity_check('idx')").fetchone()[0] == "ok"


def test_compact_json_vectors_reload(tmp_path):
    """JSON text takes fewer bytes than float32 in memory ("0," per element): the load's bound
    on vector bytes must allow for it."""
    path = tmp_path / "json.db"
    conn = connect(path, isolation_level=None)
    conn.execute("create table docs (id integer primary key, embedding text)")
    rows = [(i, json.dumps([int(j == i % 512) for j in range(512)], separators=(",", ":"))) for i in range(3000)]
    conn.executemany("insert into docs values (?, ?)", rows)
    conn.execute("create virtual table idx using faiss(content = docs)")
    other = reopened(path, tmp_path, "copy.db")
    assert other.execute("select rowid from idx where query = ? and k = 1", [rows[7][1]]).fetchone()[0] % 512 == 7
    assert dict(other.execute("select name, state from faiss_indexes"))["idx"] == "live"


def test_a_flat_payload_in_another_table_is_refused(tmp_path):
    """A sealed lean payload copied into an IVF table's config is not taken for its index."""
    path = tmp_path / "swap.db"
    conn = connect(path, isolation_level=None)
    data = np.random.default_rng(4).standard_normal((500, DIM)).astype(np.float32)
    conn.execute("create table docs (id integer primary key, embedding blob)")
    conn.executemany("insert into docs values (?, ?)", [(i, v.tobytes()) for i, v in enumerate(data)])
    conn.execute("create virtual table flat using faiss(content = docs)")
    conn.execute("create virtual table ivf using faiss(content = docs, factory = 'IVF4,Flat')")
    conn.execute("delete from ivf_chunks")
    conn.execute("insert into ivf_chunks select * from flat_chunks")
    for key in ("snapshot_bytes", "snapshot_chunks", "snapshot_checksum", "snapshot_seal"):
        conn.execute("update ivf_config set value = (select value from flat_config where key = ?) where key = ?",
                     [key, key])
    other = reopened(path, tmp_path, "copy.db")
    assert other.execute("select rowid from ivf where query = ? and k = 1", [data[3].tobytes()]).fetchall() == [(3,)]
    state = dict(other.execute("select name, state from faiss_indexes"))["ivf"]
    assert state.startswith("stand-in") and "Flat table" in state, state


def test_the_build_id_names_the_definition(tmp_path):
    """The same rows partitioned another way are another index: another build id."""
    conn = connect(tmp_path / "parts.db", isolation_level=None)
    conn.execute("create table docs (id integer primary key, a text, b text, embedding blob)")
    conn.executemany("insert into docs values (?, ?, ?, ?)",
                     [(i, f"a{i % 2}", f"b{i % 3}", np.full(8, i, np.float32).tobytes()) for i in range(30)])
    ids = []
    for column in ("a", "b"):
        conn.execute(f"create virtual table idx using faiss(content = docs, factory = 'IVF2,Flat', partition = {column})")
        ids.append(config(conn)["build_id"])
        conn.execute("drop table idx")
    assert ids[0] != ids[1], ids
