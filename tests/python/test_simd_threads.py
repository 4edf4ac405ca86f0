"""Issue 4: the three FAISS builds (baseline, AVX2, AVX-512) and the thread policy.

`vekter.so` hands each connection to the best of `vekter_avx512.so` / `vekter_avx2.so` the CPU
can run; `VEKTER_SIMD` overrides the choice. The choice is made once per process, so each case
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
AVX512_LIB = DIST / "vekter_avx512.so"


def cpu_flags():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


CPU_AVX2 = {"avx2", "fma", "f16c", "popcnt"} <= cpu_flags()
CPU_AVX512 = CPU_AVX2 and {"avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"} <= cpu_flags()
LEVELS = {"avx2": (CPU_AVX2, AVX2_LIB), "avx512": (CPU_AVX512, AVX512_LIB)}
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


@pytest.mark.skipif(not X86, reason="x86-64 only")
def test_default_is_the_best_build_the_cpu_runs():
    for lib in (AVX2_LIB, AVX512_LIB):
        assert lib.exists(), f"make build produces {lib} on x86-64"
    best = "avx512" if CPU_AVX512 else "avx2" if CPU_AVX2 else "generic"
    assert run(VEKTER_SIMD="auto")["simd"]["level"] == best


@pytest.mark.parametrize("level", ["avx2", "avx512"])
def test_simd_build_agrees_with_generic(generic, level):
    cpu_ok, lib = LEVELS[level]
    if not (X86 and cpu_ok):
        pytest.skip(f"the CPU cannot run the {level} build")
    fast = run(VEKTER_SIMD=level)
    assert fast["simd"]["level"] == level, fast["simd"]
    assert "-mavx2" in fast["simd"]["faiss_cxxflags"]
    assert fast["simd"]["library"].endswith(lib.name)
    # Exact search: the same rows in the same order; distances equal up to float rounding
    # (FMA changes the last bits).
    for a, b in zip(fast["flat"], generic["flat"]):
        assert [r[0] for r in a] == [r[0] for r in b]
        np.testing.assert_allclose([r[1] for r in a], [r[1] for r in b], rtol=1e-4, atol=1e-4)
    # The SIMD fast-scan PQ kernels and the generic ones rank alike.
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
    if X86 and CPU_AVX512:
        assert "vekter_avx512.so does not exist" in out["simd"]["reason"]


def test_bad_simd_setting_refuses_to_load():
    out = run(VEKTER_SIMD="avx9000")
    assert 'VEKTER_SIMD="avx9000" is not a SIMD level: use auto, generic, avx2 or avx512' in out["error"]


@pytest.mark.skipif(not X86, reason="x86-64 only")
def test_only_the_simd_libraries_have_simd_code():
    """The baseline library must run on any x86-64 CPU: no FMA or AVX-512 instruction in it."""
    objdump = shutil.which("objdump")
    if objdump is None:
        pytest.skip("objdump not installed")

    def counts(path):
        text = subprocess.run([objdump, "-d", "--no-show-raw-insn", str(path)], capture_output=True,
                              text=True, check=True).stdout
        lines = text.splitlines()
        return (sum(1 for line in lines if "\tvfmadd" in line), sum(1 for line in lines if "zmm" in line))

    assert counts(LIB) == (0, 0)
    fma, zmm = counts(AVX2_LIB)
    assert fma > 100 and zmm == 0
    fma, zmm = counts(AVX512_LIB)
    assert fma > 100 and zmm > 100


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


def test_threads_setting_refused_on_read_only_connections(tmp_path):
    """Datasette runs strangers' SQL on connections opened with mode=ro."""
    path = tmp_path / "ro.db"
    connect(path).close()
    import sqlite3
    ro = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    ro.enable_load_extension(True)
    ro.load_extension(LIB.removesuffix(".so"))
    assert ro.execute("select vekter_threads()").fetchone()[0] >= 1
    with pytest.raises(sqlite3.OperationalError, match="process-wide setting and the connection is read-only"):
        ro.execute("select vekter_threads(1)").fetchone()


def test_env_var_sets_default():
    code = ("import sqlite3,sys; c=sqlite3.connect(':memory:'); c.enable_load_extension(True); "
            "c.load_extension(sys.argv[1]); print(c.execute('select vekter_threads()').fetchone()[0])")
    for value, want in (("1", "1"), ("3", "3"), ("junk", str(os.cpu_count())), ("0", str(os.cpu_count()))):
        env = {**os.environ, "VEKTER_THREADS": value}
        p = subprocess.run([sys.executable, "-c", code, LIB.removesuffix(".so")], env=env, capture_output=True,
                           text=True, check=True)
        assert p.stdout.strip() == want, (value, p.stdout, p.stderr)
