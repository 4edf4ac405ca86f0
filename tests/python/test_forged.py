"""Database files from strangers (SECURITY.md): stored FAISS bytes altered by someone who can
write the file, with the checksum recomputed, never reach FAISS. Each forged snapshot of every
index type is opened by a fresh process, which must search without a signal, a hang or running
out of memory, get exact results from the stand-in index built from the content table, and
report the refusal in faiss_indexes.state and integrity-check. A file built with another key (a
stranger's machine) is treated the same way; `rebuild` stores a sealed index again."""
import json
import os
import random
import sqlite3
import struct
import subprocess
import sys

import numpy as np
import pytest
import xxhash
from conftest import LIB, connect

DIM = 8
ROWS = 300


def checksum(data):
    """The snapshot checksum (XXH3-64, src/engine/snapshot/checksum.rs), as a forger computes it."""
    return "xxh3:" + xxhash.xxh3_64_hexdigest(data)


# (options, content table shape): every index type vekter stores, and both payload versions.
CASES = {
    "flat": ("factory = 'Flat'", "rowid"),
    "hnsw": ("factory = 'HNSW16'", "rowid"),
    "ivf": ("factory = 'IVF4,Flat'", "rowid"),
    "ivfpq": ("factory = 'IVF4,PQ4'", "rowid"),
    "opq": ("factory = 'OPQ4,IVF4,PQ4'", "rowid"),
    "sq": ("factory = 'SQ8'", "rowid"),
    "pca-refine": ("factory = 'PCA4,IVF4,Flat,RFlat'", "rowid"),
    "hnsw-sq": ("factory = 'HNSW8,SQ8', metric = cosine", "rowid"),
    "text-key-hnsw": ("factory = 'HNSW8'", "text"),
    "partitioned-ivf": ("factory = 'IVF2,Flat', partition = tenant", "text"),
}


def make(path, options, shape, env=None):
    """The file a stranger sends: built in another process (with `env`'s key, if given)."""
    code = f"""
import sqlite3, numpy as np
c = sqlite3.connect({str(path)!r}, isolation_level=None)
c.enable_load_extension(True)
c.load_extension({LIB.removesuffix(".so")!r})
data = np.random.default_rng(5).normal(size=({ROWS}, {DIM})).astype(np.float32)
key = "id integer primary key" if {shape!r} == "rowid" else "id text primary key"
c.execute(f"create table docs ({{key}}, tenant integer, embedding blob)")
ids = range({ROWS}) if {shape!r} == "rowid" else [f"k{{i}}" for i in range({ROWS})]
c.executemany("insert into docs values (?, ?, ?)", [(k, i % 2, data[i].tobytes()) for i, k in enumerate(ids)])
c.execute("create virtual table idx using faiss(content = docs, {options})")
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, env={**os.environ, **(env or {})})


def payload(conn):
    return b"".join(d for (d,) in conn.execute("select data from idx_chunks order by chunk"))


def forge(conn, data, n):
    """Store `data` as the snapshot, as a forger would: chunks, lengths and checksum made to
    agree, and a new build id so every process reloads."""
    conn.execute("delete from idx_chunks")
    step = 4 << 20
    pieces = [data[i : i + step] for i in range(0, len(data), step)] or [b""]
    conn.executemany("insert into idx_chunks (chunk, data) values (?, ?)", list(enumerate(pieces)))
    for key, value in [
        ("snapshot_bytes", str(len(data))),
        ("snapshot_chunks", str(len(pieces))),
        ("snapshot_checksum", checksum(data)),
        ("build_id", f"forged-{n}"),
    ]:
        conn.execute("update idx_config set value = ? where key = ?", (value, key))


def forgeries(data, rng):
    """Ids, counts, lengths and offsets set out of range at many places of the FAISS bytes."""
    values = [struct.pack("<q", v) for v in (-1, 0, 1, 2**31 - 1, 2**62, ROWS, ROWS + 1, -(2**63))]
    values += [struct.pack("<i", v) for v in (-1, 2**31 - 1, ROWS * 16)]
    out = []
    for _ in range(24):
        at = rng.randrange(24, max(25, len(data) - 8))
        v = rng.choice(values)
        out.append(data[:at] + v + data[at + len(v) :])
    out.append(data[: len(data) // 2])
    out.append(data + b"\xff" * 64)
    out.append(bytes(len(data)))
    # A value written over the same value leaves the snapshot as it was: not a forgery.
    return [f for f in out if f != data]


# Forgeries opened so far, per case (for the closing summary).
OPENED = []

# The prober: a fresh process with only vekter, opening the forged file.
PROBE = """
import json, sqlite3, sys
import numpy as np
c = sqlite3.connect(sys.argv[1])
c.enable_load_extension(True)
c.load_extension(sys.argv[2])
q = np.random.default_rng(9).normal(size=8).astype(np.float32).tobytes()
where = " and tenant = 1" if "partition" in sys.argv[3] else ""
out = {}
out["hits"] = c.execute(f"select id from idx where query = ? and k = 5{where}", (q,)).fetchall()
# The stand-in takes any factory's search parameters (they do not apply to an exact search).
params = "nprobe=2,efSearch=32,rerank=2" if sys.argv[4] == "stand-in" else "rerank=2"
out["params"] = c.execute(f"select count(*) from idx where query = ? and k = 5 and params = ?{where}", (q, params)).fetchone()[0]
out["state"] = c.execute("select state from faiss_indexes where name = 'idx'").fetchone()[0]
try:
    c.execute("insert into idx(idx) values ('integrity-check')")
    out["check"] = "ok"
except sqlite3.Error as e:
    out["check"] = str(e)
print(json.dumps(out))
"""


def exact_ids(path, options):
    conn = sqlite3.connect(path)
    where = " where tenant = 1" if "partition" in options else ""
    rows = conn.execute(f"select id, embedding from docs{where}").fetchall()
    data = np.stack([np.frombuffer(e, dtype=np.float32) for _, e in rows])
    q = np.random.default_rng(9).normal(size=DIM).astype(np.float32)
    if "cosine" in options:
        d = 1 - data @ q / (np.linalg.norm(data, axis=1) * np.linalg.norm(q))
    else:
        d = ((data - q) ** 2).sum(axis=1)
    return [rows[i][0] for i in np.argsort(d, kind="stable")[:5]]


def probe(path, options, expect="stand-in"):
    run = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), LIB.removesuffix(".so"), options, expect],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, f"probe died ({run.returncode}): {run.stderr[-2000:]}"
    return json.loads(run.stdout)


@pytest.mark.parametrize("case", list(CASES))
def test_forged_snapshots_never_reach_faiss(tmp_path, case, report):
    options, shape = CASES[case]
    path = tmp_path / "forged.db"
    make(path, options, shape)
    want = exact_ids(path, options)
    attacker = sqlite3.connect(path, isolation_level=None)
    original = payload(attacker)
    rng = random.Random(case)
    cases = forgeries(original, rng)
    for n, data in enumerate(cases):
        forge(attacker, data, n)
        got = probe(path, options)
        assert [i for (i,) in got["hits"]] == want, (n, got)
        assert got["params"] == 5, (n, got)
        assert got["state"].startswith("stand-in: an exact index"), (n, got)
        assert "integrity-check failed" in got["check"] and "rebuild" in got["check"], (n, got)
    # The forger's own copy of the seal does not help: a snapshot is only loaded whole and
    # unchanged. And `rebuild` stores a sealed index again, which the next process loads.
    owner = connect(path, isolation_level=None)
    owner.execute("insert into idx(idx) values ('rebuild')")
    got = probe(path, options, "live")
    assert got["state"] == "live" and got["check"] == "ok", got
    assert len(got["hits"]) == 5 and got["params"] == 5, got
    if case in ("flat", "text-key-hnsw"):
        assert [i for (i,) in got["hits"]] == want, got
    OPENED.append(len(cases))
    if len(OPENED) == len(CASES):
        report(f"forged snapshots: {len(CASES)} index types, {sum(OPENED)} forgeries, each opened by a fresh process: exact results, 0 signals")


def test_a_file_built_with_another_key_is_rebuilt_in_memory_only(tmp_path):
    """A stranger's file (their machine's key): searched through an exact stand-in, nothing
    written; a read-only connection (Datasette's) does the same; vouching with the builder's
    key loads it as it is."""
    path = tmp_path / "stranger.db"
    stranger = {"VEKTER_KEY": "5a" * 32}
    make(path, "factory = 'HNSW16'", "rowid", env=stranger)
    before = path.read_bytes()
    want = exact_ids(path, "")
    got = probe(f"file:{path}?mode=ro", "")
    assert [i for (i,) in got["hits"]] == want
    assert "sealed with key" in got["state"] and "another machine or user" in got["state"], got
    assert path.read_bytes() == before
    # The same file in a process that holds the builder's key: loaded, not rebuilt.
    run = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), LIB.removesuffix(".so"), "", "live"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **stranger},
    )
    assert json.loads(run.stdout)["state"] == "live", run.stderr
    # On a writable connection, optimize stores the table's own index, sealed with this key.
    conn = connect(path, isolation_level=None)
    conn.execute("insert into idx(idx) values ('optimize')")
    got = probe(path, "", "live")
    assert got["state"] == "live" and got["check"] == "ok", got
    config = dict(conn.execute("select key, value from idx_config"))
    assert config["factory"] == "HNSW16"
    assert json.loads(json.dumps(config["snapshot_seal"])) != ""


def test_unsealed_snapshot_from_an_earlier_vekter(tmp_path):
    path = tmp_path / "old.db"
    make(path, "factory = 'Flat'", "rowid")
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("delete from idx_config where key in ('snapshot_seal', 'snapshot_key')")
    c.execute("update idx_config set value = 'old' where key = 'build_id'")
    got = probe(path, "")
    assert "has no seal" in got["state"], got
    assert [i for (i,) in got["hits"]] == exact_ids(path, "")


def test_a_snapshot_of_several_chunks_loads_and_its_forgery_does_not(tmp_path):
    """12,000 x 128-d (IVF4,Flat: 6 MB, two 4 MiB chunks; a Flat table stores no vectors): read, summed and sealed in one pass; a byte
    changed in the second chunk is caught."""
    path = tmp_path / "big.db"
    conn = connect(path, isolation_level=None)
    data = np.random.default_rng(8).normal(size=(12_000, 128)).astype(np.float32)
    conn.execute("create table docs (id integer primary key, embedding blob)")
    conn.executemany("insert into docs values (?, ?)", [(i, v.tobytes()) for i, v in enumerate(data)])
    conn.execute("create virtual table idx using faiss(content = docs, factory = 'IVF4,Flat')")
    assert conn.execute("select count(*) from idx_chunks").fetchone()[0] == 2
    code = f"""
import json, sqlite3, sys
c = sqlite3.connect({str(path)!r})
c.enable_load_extension(True)
c.load_extension({LIB.removesuffix(".so")!r})
hit = c.execute("select rowid from idx where query = (select embedding from docs where id = 11999) and k = 1").fetchall()
state = c.execute("select state from faiss_indexes").fetchone()[0]
verified = json.loads(c.execute("select vekter_debug()").fetchone()[0])["snapshots"]["last_verified"]
print(json.dumps([hit, state, verified["bytes"]]))
"""
    run = lambda: json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    hit, state, verified = run()
    assert hit == [[11999]] and state == "live" and verified > 4 << 20
    original = payload(conn)
    changed = original[: 5 << 20] + bytes([original[5 << 20] ^ 1]) + original[(5 << 20) + 1 :]
    forge(conn, changed, 0)
    hit, state, _ = run()
    assert hit == [[11999]] and state.startswith("stand-in") and "does not verify" in state


def test_a_content_view_without_end_is_refused_not_scanned(tmp_path):
    """The file puts a recursive view in the content table's place and a snapshot that needs a
    stand-in: the search fails with a message, in bounded time and memory."""
    path = tmp_path / "view.db"
    make(path, "factory = 'HNSW8'", "rowid")
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("drop table docs")
    c.execute(
        "create view docs as with recursive n(i) as (select 1 union all select i + 1 from n) "
        "select i as id, i as tenant, zeroblob(32) as embedding from n"
    )
    code = f"""
import sqlite3
c = sqlite3.connect({str(path)!r})
c.enable_load_extension(True)
c.load_extension({LIB.removesuffix(".so")!r})
for sql in ["select rowid from idx where query = zeroblob(32) and k = 3", "insert into idx(idx) values ('integrity-check')"]:
    try:
        c.execute(sql).fetchall()
        print("no error")
    except sqlite3.Error as e:
        print(e)
"""
    probe = lambda: subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    # The sealed snapshot loads; integrity-check's scan of the content refuses the view.
    run = probe()
    assert run.returncode == 0, run.stderr
    search, check = run.stdout.splitlines()
    assert search == "no error" and "is a view, not a table" in check, run.stdout
    # With the snapshot refused, the stand-in is not built from the view.
    c.execute("delete from idx_config where key = 'snapshot_seal'")
    c.execute("update idx_config set value = 'view' where key = 'build_id'")
    run = probe()
    assert run.returncode == 0, run.stderr
    search, check = run.stdout.splitlines()
    assert "rebuilding it from the content table failed: content 'docs' is a view" in search, run.stdout
