"""Issue 4: the two FAISS builds (baseline and AVX2) and the thread policy.

`vekter.so` hands each connection to `vekter_avx2.so` when the CPU has AVX2, FMA, F16C and
POPCNT; `VEKTER_SIMD` overrides the choice. The choice is made once per process, so each case
runs in its own process."""
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import LIB, connect

DIST = pathlib.Path(LIB).parent
AVX2_LIB = DIST / "vekter_avx2.so"


def cpu_flags():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


CPU_AVX2 = {"avx2", "fma", "f16c", "popcnt"} <= cpu_flags()
X86 = platform.machine() == "x86_64"

CHILD = r"""
import json, sqlite3, sys
lib = sys.argv[1]
c = sqlite3.connect(":memory:")
c.enable_load_extension(True)
try:
    c.load_extension(lib)
except sqlite3.OperationalError as e:
    print(json.dumps({"error": str(e)}))
    raise SystemExit(0)
info = json.loads(c.execute("select vekter_debug()").fetchone()[0])
c.execute("create table t (id integer primary key, e blob)")
import random, struct
rnd = random.Random(7)
rows = [(i, struct.pack("32f", *[rnd.gauss(0, 1) for _ in range(32)])) for i in range(1, 3001)]
c.executemany("insert into t values (?, ?)", rows)
c.execute("create virtual table flat using faiss(content = t, column = e)")
c.execute("create virtual table pq using faiss(content = t, column = e, factory = 'IVF16,PQ8x4fs', params = 'nprobe=16')")
out = {"simd": info["simd"], "flat": [], "pq": []}
for q in rows[:20]:
    out["flat"].append(c.execute("select rowid, distance from flat where query = ? and k = 5", [q[1]]).fetchall())
    out["pq"].append([r[0] for r in c.execute("select rowid from pq where query = ? and k = 10", [q[1]])])
print(json.dumps(out))
"""


def run(lib=LIB, **env):
    environ = {k: v for k, v in os.environ.items() if k != "VEKTER_SIMD"}
    environ.update(env)
    p = subprocess.run([sys.executable, "-c", CHILD, str(lib).removesuffix(".so")], env=environ,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def generic():
    return run(VEKTER_SIMD="generic")


def test_generic_build_on_request(generic):
    assert generic["simd"]["level"] == "generic"
    assert generic["simd"]["reason"] == "VEKTER_SIMD=generic"
    assert generic["simd"]["faiss_cxxflags"] == ""


@pytest.mark.skipif(not (X86 and CPU_AVX2), reason="needs an x86-64 CPU with AVX2")
def test_default_uses_avx2_and_agrees_with_generic(generic):
    assert AVX2_LIB.exists(), "make build produces dist/vekter_avx2.so on x86-64"
    fast = run()
    assert fast["simd"]["level"] == "avx2", fast["simd"]
    assert "-mavx2" in fast["simd"]["faiss_cxxflags"]
    assert fast["simd"]["library"].endswith("vekter_avx2.so")
    # Exact search: the same rows in the same order; distances equal up to float rounding
    # (FMA changes the last bits).
    for a, b in zip(fast["flat"], generic["flat"]):
        assert [r[0] for r in a] == [r[0] for r in b]
        np.testing.assert_allclose([r[1] for r in a], [r[1] for r in b], rtol=1e-4, atol=1e-4)
    # The AVX2 fast-scan PQ kernels and the generic ones rank alike.
    same = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(fast["pq"], generic["pq"])])
    assert same >= 0.9, same


def test_missing_avx2_library_falls_back(tmp_path):
    lone = tmp_path / "vekter.so"
    shutil.copy(LIB, lone)
    out = run(lone)
    assert out["simd"]["level"] == "generic"
    if X86 and CPU_AVX2:
        assert "vekter_avx2.so does not exist" in out["simd"]["reason"]
        refused = run(lone, VEKTER_SIMD="avx2")
        assert "VEKTER_SIMD=avx2 cannot be honoured" in refused["error"], refused


def test_bad_simd_setting_refuses_to_load():
    out = run(VEKTER_SIMD="avx9000")
    assert 'VEKTER_SIMD="avx9000" is not a SIMD level' in out["error"]


@pytest.mark.skipif(not X86, reason="x86-64 only")
def test_only_the_avx2_library_has_avx2_code():
    """The baseline library must run on any x86-64 CPU: no AVX2/FMA instruction in it."""
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump not installed")

    def fma_count(path):
        text = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(path)], capture_output=True,
                              text=True, check=True).stdout
        return sum(1 for line in text.splitlines() if "\tvfmadd" in line)

    assert fma_count(LIB) == 0
    if AVX2_LIB.exists():
        assert fma_count(AVX2_LIB) > 100


def test_threads_setting(conn):
    default = conn.execute("select vekter_threads()").fetchone()[0]
    assert default == (os.cpu_count() if "VEKTER_THREADS" not in os.environ else int(os.environ["VEKTER_THREADS"]))
    assert conn.execute("select vekter_threads(1)").fetchone()[0] == 1
    info = json.loads(conn.execute("select vekter_debug()").fetchone()[0])
    assert info["threads"]["build"] == 1 and info["threads"]["search"] == 1
    for bad, message in (("0", "between 1 and 256, got 0"), ("257", "between 1 and 256"), ("'2'", "must be an integer"),
                         ("null", "must be an integer"), ("1.5", "must be an integer")):
        with pytest.raises(Exception, match=message):
            conn.execute(f"select vekter_threads({bad})").fetchone()
    # A build with one thread gives the same exact index as with the default.
    conn.execute("create table t (id integer primary key, e blob)")
    rng = np.random.default_rng(3)
    data = rng.standard_normal((2000, 16)).astype(np.float32)
    conn.executemany("insert into t values (?, ?)", [(i + 1, v.tobytes()) for i, v in enumerate(data)])
    conn.execute("create virtual table one using faiss(content = t, column = e, factory = 'HNSW16')")
    conn.execute(f"select vekter_threads({default})")
    got = [r[0] for r in conn.execute("select rowid from one where query = ? and k = 10 and params = 'efSearch=200'",
                                       [data[5].tobytes()])]
    assert got[0] == 6
    assert conn.execute("select vekter_threads()").fetchone()[0] == default


def test_threads_setting_is_direct_only(conn):
    conn.execute("create view v as select vekter_threads(1)")
    with pytest.raises(Exception, match="unsafe use of vekter_threads"):
        conn.execute("select * from v").fetchall()


def test_env_var_sets_default():
    code = ("import sqlite3,sys; c=sqlite3.connect(':memory:'); c.enable_load_extension(True); "
            "c.load_extension(sys.argv[1]); print(c.execute('select vekter_threads()').fetchone()[0])")
    for value, want in (("1", "1"), ("3", "3"), ("junk", str(os.cpu_count())), ("0", str(os.cpu_count()))):
        env = {**os.environ, "VEKTER_THREADS": value}
        p = subprocess.run([sys.executable, "-c", code, LIB.removesuffix(".so")], env=env, capture_output=True,
                           text=True, check=True)
        assert p.stdout.strip() == want, (value, p.stdout, p.stderr)
