"""The wheels of `make wheels` as a user gets them (SPEC §8): each installed into a fresh venv made
from /usr/bin/python3, used from a directory outside the checkout, with no build tree in sight.

- `vekter` alone: the module, the libraries the process really maps, auditwheel's verdict, and
  the golden SQL under APSW's current SQLite;
- `datasette install` of the plugin: a real Datasette, no --load-extension, a datasette-faiss
  metadata.json, the datasette-faiss README's json_each query over HTTP;
- `sqlite-utils install` of the other plugin: the CLI and the Python API.

Runs from `make test-wheels` (VEKTER_WHEELS: the wheels; WHEEL_VENV: the venv with auditwheel).
PyPI provides datasette, sqlite-utils and apsw; pip's cache makes later runs quick.
"""

import json
import os
import random
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
import tomllib
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import pytest
from build_wheels import LIBRARIES
from datasette_server import serving

ROOT = Path(__file__).resolve().parents[2]
WHEELS = Path(os.environ.get("VEKTER_WHEELS", ROOT / "dist" / "wheels"))
WHEEL_VENV = Path(os.environ.get("WHEEL_VENV", Path.home() / ".cache" / "vekter" / "wheel-venv"))
VERSION = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
DIM = 8


def wheel(prefix):
    found = sorted(WHEELS.glob(f"{prefix}-{VERSION}-*.whl"))
    assert len(found) == 1, f"expected one {prefix} wheel of version {VERSION} in {WHEELS}: {found}"
    return found[0]


def run(args, cwd, **kwargs):
    result = subprocess.run(
        [str(a) for a in args], check=False, cwd=cwd, capture_output=True, text=True, timeout=600,
        **kwargs,
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def fresh_venv(path):
    """A venv from Debian's Python (its sqlite3 can load extensions), nothing installed."""
    run(["/usr/bin/python3", "-m", "venv", path], cwd=path.parent)
    return path / "bin"


def pip_install(bindir, cwd, *packages):
    run([bindir / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages], cwd)


def vectors(n, seed):
    rng = random.Random(seed)
    return [[rng.uniform(-1, 1) for _ in range(DIM)] for _ in range(n)]


def f32(values):
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


def nearest(rows, query, k):
    """Ids of the k rows nearest to query by squared L2, ties by id: the exact answer."""
    q = f32(query)
    scored = sorted((sum((a - b) ** 2 for a, b in zip(f32(v), q)), i) for i, v in rows.items())
    return [i for _, i in scored[:k]]


def make_blog(path, n=60):
    """The datasette-faiss README's tables: blog_entry, and embeddings(id, embedding)."""
    rows = dict(enumerate(vectors(n, seed=7), start=1))
    conn = sqlite3.connect(path)
    conn.execute("create table blog_entry (id integer primary key, title text)")
    conn.execute("create table embeddings (id integer primary key, embedding blob)")
    for i, v in rows.items():
        conn.execute("insert into blog_entry values (?, ?)", (i, f"Entry {i}"))
        conn.execute("insert into embeddings values (?, ?)", (i, struct.pack(f"<{DIM}f", *v)))
    conn.commit()
    conn.close()
    return rows


# --- vekter alone ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """(bin dir, work dir) of a venv holding only the vekter wheel."""
    work = tmp_path_factory.mktemp("plain")
    bindir = fresh_venv(work / "venv")
    pip_install(bindir, work, wheel("vekter"))
    return bindir, work


def test_the_issue_command_prints_the_version(plain):
    bindir, work = plain
    installed = run([bindir / "python", "-m", "pip", "list", "--format=json"], work)
    assert {p["name"] for p in json.loads(installed)} <= {"pip", "setuptools", "vekter"}
    command = ("import sqlite3, vekter; c = sqlite3.connect(':memory:'); vekter.load(c); "
               "print(c.execute('select vekter_version()').fetchone()[0])")
    out = run([bindir / "python", "-c", command], work)
    assert out.strip() == VERSION


MODULE_CHECKS = r"""
import json, random, sqlite3, struct, sys, vekter

assert vekter.__version__ == sys.argv[1], vekter.__version__
path = vekter.loadable_path()
assert path.endswith("/site-packages/vekter/vekter.so"), path

# encode / decode: the SPEC's examples, numpy-free, and what vekter would refuse later.
assert vekter.encode([2.4, 4.1, 1.8]).hex().upper() == "9A991940333383406666E63F"
assert vekter.decode(bytes.fromhex("9A991940333383406666E63F")) == (
    2.4000000953674316, 4.099999904632568, 1.7999999523162842)
assert vekter.decode(vekter.encode((1, 2, 3))) == (1.0, 2.0, 3.0)
assert vekter.decode(b"") == ()
encode, decode = vekter.encode, vekter.decode
for function, bad, kind, words in [
    (encode, [], ValueError, "empty"), (encode, [1.0, float("nan")], ValueError, "element 1"),
    (encode, [float("inf")], ValueError, "finite"), (encode, [1e39], ValueError, "float32 range"),
    (encode, [1, "2"], TypeError, "element 1 is str"), (encode, "[1, 2]", TypeError, "sequence of numbers"),
    (encode, b"\x00\x00\x80\x3f", TypeError, "sequence of numbers"),
    (encode, [10**39], ValueError, "float32 range"), (encode, [10**400], ValueError, "float32 range"),
    (encode, {1: 2.0}, TypeError, "got dict"), (encode, [None], TypeError, "NoneType"),
    (decode, b"abc", ValueError, "multiple of 4"), (decode, 8, TypeError, "expected bytes"),
]:
    try:
        function(bad)
    except kind as e:
        assert words in str(e), (bad, e)
    else:
        raise AssertionError(f"{function.__name__}({bad!r}) was accepted")
assert vekter.decode(memoryview(b"\x00\x00\x80\x3f")) == (1.0,)
assert vekter.encode(x for x in (1, 2)) == vekter.encode([1.0, 2.0])

# load: search a plain table and a faiss table; SQL cannot load extensions afterwards.
conn = sqlite3.connect(":memory:")
vekter.load(conn)
vekter.load(conn)  # twice is harmless
rng = random.Random(3)
rows = {i: [rng.uniform(-1, 1) for _ in range(8)] for i in range(1, 301)}
conn.execute("create table embeddings (id integer primary key, embedding blob)")
conn.executemany("insert into embeddings values (?, ?)",
                 [(i, vekter.encode(v)) for i, v in rows.items()])
conn.execute("create virtual table idx using faiss(content = embeddings, factory = 'IVF4,Flat', params = 'nprobe=4')")
q = vekter.encode(rows[5])
plain = json.loads(conn.execute("select faiss_search('main', 'embeddings', ?, 5)", [q]).fetchone()[0])
viatable = [r[0] for r in conn.execute("select rowid from idx where query = ? and k = 5", [q])]
exact = sorted(rows, key=lambda i: (sum((a - b) ** 2 for a, b in zip(vekter.decode(vekter.encode(rows[i])), vekter.decode(q))), i))[:5]
assert plain == exact and viatable == exact, (plain, viatable, exact)
try:
    conn.execute("select load_extension(?)", [path])
except sqlite3.OperationalError as e:
    assert "not authorized" in str(e), e
else:
    raise AssertionError("load_extension() from SQL was allowed after vekter.load")

# Which files the process really maps: the wheel's builds and the wheel's copies of the libraries.
maps = {line.split()[-1] for line in open("/proc/self/maps") if ".so" in line.split()[-1]}
print(json.dumps(sorted(maps)))
print(json.loads(conn.execute("select vekter_debug()").fetchone()[0])["simd"]["library"])
"""


def test_module_from_another_directory(plain):
    bindir, work = plain
    out = run([bindir / "python", "-c", MODULE_CHECKS, VERSION], work).splitlines()
    maps, library = json.loads(out[0]), out[1]
    site = str(work / "venv")
    assert library.startswith(site + "/") and Path(library).name in LIBRARIES
    assert not [m for m in maps if str(ROOT / "dist") in m], "a library was loaded from the build tree"
    vendored = [m for m in maps if re.search(r"lib(openblas|lapack|blas|gomp|gfortran|quadmath)", m)]
    assert vendored, f"no BLAS/OpenMP library mapped at all: {maps}"
    strays = [m for m in vendored if "/site-packages/vekter.libs/" not in m]
    assert not strays, f"libraries taken from the system, not the wheel: {strays}"


# What `dist/vekter.so` links to on this machine and a user's machine may lack.
SYSTEM_LIBRARIES = ("libopenblas", "liblapack", "libblas", "libgomp", "libgfortran", "libquadmath")


def hiding_system_libraries():
    """A shell prefix that, inside a private mount namespace, makes the system's BLAS, LAPACK,
    OpenMP and Fortran runtime unreadable (their directory under an empty tmpfs, each other file
    under /dev/null): a machine that never installed them."""
    libdir = Path("/usr/lib/x86_64-linux-gnu")
    files = {os.path.realpath(p) for p in libdir.iterdir() if p.name.startswith(SYSTEM_LIBRARIES)}
    dirs = [d for d in libdir.glob("openblas*") if d.is_dir()]
    commands = [f"mount -t tmpfs none {d}" for d in dirs]
    commands += [f"mount --bind /dev/null {f}" for f in sorted(files) if os.path.isfile(f)
                 and not any(f.startswith(str(d) + "/") for d in dirs)]
    return " && ".join(commands)


def test_runs_on_a_machine_without_blas_or_openmp(plain):
    """The wheel's copies are all it needs; the build tree's library, as a control, cannot load."""
    bindir, work = plain
    if os.geteuid() != 0 or subprocess.run(["unshare", "-m", "true"], check=False).returncode:
        pytest.skip("needs root and unshare -m to hide the system libraries")
    hide = hiding_system_libraries()
    search = ("import sqlite3, vekter; c = sqlite3.connect(':memory:'); vekter.load(c); "
              "c.execute('create table e (id integer primary key, embedding blob)'); "
              "c.executemany('insert into e values (?, ?)', [(i, vekter.encode([i % 7, i % 11, 1])) for i in range(300)]); "
              "c.execute(\"create virtual table x using faiss(content = e, factory = 'IVF4,Flat')\"); "
              "print(c.execute(\"select faiss_search('main', 'e', '[3, 3, 1]', 3)\").fetchone()[0])")
    result = subprocess.run(["unshare", "-m", "sh", "-c", f'{hide} && exec "$0" -c "$1"',
                             bindir / "python", search], check=False, cwd=work, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [3, 80, 157]
    control = subprocess.run(["unshare", "-m", "sh", "-c", f'{hide} && exec sqlite3 :memory: ".load $0" "select 1"',
                              ROOT / "dist" / "vekter"], check=False, cwd=work, capture_output=True, text=True)
    assert control.returncode != 0 and "Error" in control.stderr, (
        f"the system libraries were not hidden: {control.stdout} {control.stderr}")


def test_a_python_that_cannot_load_extensions_gets_told_why(plain):
    """pyenv's Python (first on PATH on these machines) has no enable_load_extension."""
    work = plain[1]
    probe = "import sqlite3; print(hasattr(sqlite3.Connection, 'enable_load_extension'))"
    pythons = [p for p in {shutil.which("python3"), "/usr/local/bin/python3"} if p and os.path.exists(p)]
    unable = [p for p in pythons if run([p, "-c", probe], work).strip() == "False"]
    if not unable:
        pytest.skip("every Python here can load extensions")
    site = next((work / "venv" / "lib").glob("python3*/site-packages"))
    result = subprocess.run(
        [unable[0], "-c", "import sqlite3, vekter; vekter.load(sqlite3.connect(':memory:'))"],
        check=False, cwd=work, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(site)},
    )
    assert result.returncode != 0
    assert "built without extension loading" in result.stderr and "apsw" in result.stderr, result.stderr


def test_auditwheel_and_every_needed_library(tmp_path):
    """auditwheel's verdict, and each library the three builds (and the copies) need: inside the
    wheel, or one the manylinux policy lets every system provide."""
    whl = wheel("vekter")
    shown = run([WHEEL_VENV / "bin" / "auditwheel", "show", whl], tmp_path)
    tag = re.search(r'consistent with the\s+following platform tag:\s+"(manylinux_\d+_\d+_x86_64)"', shown)
    assert tag, shown
    assert tag.group(1) in whl.name
    policy = json.loads(run([WHEEL_VENV / "bin" / "python", "-c", (
        "import importlib.resources, json; p = importlib.resources.files('auditwheel') / 'policy' / "
        "'manylinux-policy.json'; print(p.read_text())")], tmp_path))
    allowed = set(next(p for p in policy if p["name"] == tag.group(1).removesuffix("_x86_64"))["lib_whitelist"])
    with zipfile.ZipFile(whl) as z:
        z.extractall(tmp_path / "wheel")
    inside = {p.name for p in (tmp_path / "wheel" / "vekter.libs").iterdir()}
    elves = [tmp_path / "wheel" / "vekter" / name for name in LIBRARIES]
    elves += [tmp_path / "wheel" / "vekter.libs" / name for name in inside]
    for elf in elves:
        dynamic = run(["readelf", "-d", elf], tmp_path)
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dynamic)
        # The dynamic loader is glibc itself, as auditwheel also treats it.
        outside = [n for n in needed if n not in inside and n not in allowed
                   and not n.startswith("ld-linux-")]
        assert not outside, f"{elf.name} needs {outside}: neither in the wheel nor allowed by {tag.group(1)}"
        if any(n in inside for n in needed):
            assert re.search(r"R(UN)?PATH.*\$ORIGIN", dynamic), f"{elf.name} cannot find its copies"
    assert set(LIBRARIES) <= set(os.listdir(tmp_path / "wheel" / "vekter"))


def test_golden_sql_under_a_current_sqlite(plain):
    """APSW bundles a current SQLite: load vekter there from the wheel and run tests/golden."""
    bindir, work = plain
    pip_install(bindir, work, "apsw")
    version = run([bindir / "python", "-c", "import apsw; print(apsw.sqlite_lib_version())"], work)
    assert tuple(map(int, version.split("."))) > tuple(map(int, sqlite3.sqlite_version.split("."))), (
        f"APSW's SQLite {version} is not newer than the system's {sqlite3.sqlite_version}")
    result = subprocess.run([bindir / "python", ROOT / "tests/wheels/golden_apsw.py", ROOT / "tests/golden"],
                            check=False, cwd=work, capture_output=True, text=True, timeout=600)
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    files = len(list((ROOT / "tests/golden").glob("*.sql")))
    assert files >= 5 and f"{files} passed, 0 failed" in result.stdout, result.stdout


# --- datasette-vekter --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def datasette_env(tmp_path_factory):
    """A venv with datasette from PyPI, then `datasette install` of the two wheels."""
    work = tmp_path_factory.mktemp("datasette")
    bindir = fresh_venv(work / "venv")
    pip_install(bindir, work, "datasette")
    run([bindir / "datasette", "install", wheel("vekter"), wheel("datasette_vekter")], work)
    return bindir, work


def get(base, path, **params):
    url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def sql(base, database, query):
    status, body = get(base, f"/{database}.json", sql=query, _shape="array")
    assert status == 200, body
    return json.loads(body)


# As in datasette-faiss's README.
README_QUERY = """
with related as (
  select value from json_each(
    faiss_search(
      'blog',
      'embeddings',
      (select embedding from embeddings limit 1),
      5
    )
  )
)
select * from blog_entry, related
where id = value
"""

WITH_VEKTER = "import sqlite3, sys, vekter; c = sqlite3.connect(sys.argv[1]); vekter.load(c); c.executescript(sys.argv[2])"


@pytest.fixture(scope="module")
def served(datasette_env):
    """`datasette serve blog.db docs.db other/blog.db secret.db -i docs.db --crossdb -m
    metadata.json`, and no --load-extension:
    - blog.db: datasette-faiss's tables; configured under `datasette-faiss`;
    - docs.db: WAL mode, served immutable, a faiss table over column `vec`; the content table
      and the faiss table itself configured under `datasette-vekter`;
    - other/blog.db: Datasette names it blog_2;
    - secret.db: a faiss table, configured, but `allow: false` for everyone;
    - and a database that does not exist, configured."""
    bindir, work = datasette_env
    rows = make_blog(work / "blog.db")
    (work / "other").mkdir()
    make_blog(work / "other" / "blog.db", n=20)
    docs = sqlite3.connect(work / "docs.db")
    docs.execute("pragma journal_mode = wal")
    docs.execute("create table docs (id integer primary key, vec blob)")
    docs.executemany("insert into docs values (?, ?)",
                     [(i, struct.pack(f"<{DIM}f", *v)) for i, v in enumerate(vectors(40, seed=8))])
    docs.commit()
    docs.close()
    run([bindir / "python", "-c", WITH_VEKTER, "docs.db",
         "create virtual table docs_idx using faiss(content = docs, column = vec, factory = 'HNSW8')"], work)
    make_blog(work / "secret.db", n=10)
    run([bindir / "python", "-c", WITH_VEKTER, "secret.db",
         "create virtual table secret_idx using faiss(content = embeddings)"], work)
    (work / "metadata.json").write_text(json.dumps({
        "databases": {"secret": {"allow": False}},
        "plugins": {
            "datasette-faiss": {"tables": [["blog", "embeddings"]]},
            "datasette-vekter": {"tables": [["docs", "docs"], ["docs", "docs_idx"], ["secret", "embeddings"],
                                            ["nosuch", "x"]]},
        },
    }))
    command = [bindir / "datasette", "serve", "blog.db", "other/blog.db", "secret.db", "-i", "docs.db",
               "--crossdb", "-m", "metadata.json"]
    with serving(command, cwd=work) as (base, log):
        yield base, rows, work, log


def test_datasette_lists_the_plugin(served):
    base = served[0]
    status, body = get(base, "/-/plugins.json")
    assert status == 200
    plugin = [p for p in json.loads(body) if p["name"] == "datasette-vekter"]
    assert plugin and plugin[0]["version"] == VERSION, body


def test_configured_indexes_are_built_at_start_up(served):
    """Before any query: /-/vekter.json shows what start-up built, under either configuration
    name (a faiss table named directly, and one over another vector column, included), and the
    reason for the table it could not build (also in Datasette's log)."""
    base, _, _, log = served
    status, body = get(base, "/-/vekter.json")
    assert status == 200, body
    page = json.loads(body)
    assert page["version"] == VERSION and page["debug"]["vekter"] == VERSION
    startup = {(t["database"], t["table"]): t["startup"] for t in page["configured_tables"]}
    for table in [("blog", "embeddings"), ("docs", "docs"), ("docs", "docs_idx")]:
        assert startup.pop(table).startswith("built in"), (table, startup)
    assert "no database named 'nosuch'" in startup.pop(("nosuch", "x"))
    assert startup == {}, "secret's entry shows to a visitor who may not see secret"
    held = {(i["database"], i["content"], i["factory"], i["loads"]) for i in page["indexes"]}
    assert held == {("blog", "embeddings", "Flat", 0), ("docs", "docs", "HNSW8", 1)}, page["indexes"]
    log.seek(0)
    assert "cannot build the index of nosuch/x" in log.read()
    status, html = get(base, "/-/vekter")
    assert status == 200 and f"vekter {VERSION}" in html


def test_the_datasette_faiss_readme_query(served):
    base, rows, _, _ = served
    got = sql(base, "blog", README_QUERY)
    want = nearest(rows, rows[1], 5)
    assert sorted(got, key=lambda r: r["id"]) == [
        {"id": i, "title": f"Entry {i}", "value": i} for i in sorted(want)], got


def test_every_database_name_datasette_gives(served):
    """A second blog.db is `blog_2` in Datasette; --crossdb's _memory sees every database."""
    base, rows, _, _ = served
    q = "select faiss_search('{}', 'embeddings', (select embedding from {}embeddings where id = 2), 3) as ids"
    other = dict(list(rows.items())[:20])
    assert json.loads(sql(base, "blog_2", q.format("blog_2", ""))[0]["ids"]) == nearest(other, rows[2], 3)
    assert json.loads(sql(base, "_memory", q.format("blog", "blog."))[0]["ids"]) == nearest(rows, rows[2], 3)


def test_a_write_is_seen_by_the_next_query(served):
    base, rows, work, _ = served
    conn = sqlite3.connect(work / "blog.db")
    near = [x + 1e-4 for x in rows[3]]
    conn.execute("insert into embeddings values (1000, ?)", [struct.pack(f"<{DIM}f", *near)])
    conn.commit()
    conn.close()
    q = "select faiss_search('blog', 'embeddings', (select embedding from embeddings where id = 3), 2) as ids"
    assert json.loads(sql(base, "blog", q)[0]["ids"]) == [3, 1000]


def hidden_tables(base, database):
    status, body = get(base, f"/{database}.json")
    assert status == 200, body
    return {t["name"]: t["hidden"] for t in json.loads(body)["tables"]}


def test_shadow_tables_are_hidden(served):
    """In an immutable WAL database, and for a faiss table made after start-up."""
    base, _, work, _ = served
    tables = hidden_tables(base, "docs")
    assert tables["docs"] is False and tables["docs_idx"] is False, tables
    assert all(tables[f"docs_idx_{suffix}"] for suffix in ("config", "chunks", "changes")), tables
    run([served_python(work), "-c", WITH_VEKTER, "blog.db",
         "create virtual table late_idx using faiss(content = embeddings)"], work)
    tables = hidden_tables(base, "blog")
    assert tables["late_idx"] is False and tables["late_idx_chunks"] is True, tables


def served_python(work):
    return work / "venv" / "bin" / "python"


def test_private_databases_stay_private(served):
    base = served[0]
    assert get(base, "/secret.json")[0] == 403
    status, body = get(base, "/-/vekter.json")
    assert status == 200 and "secret" not in body, body


def test_sql_cannot_load_extensions(served):
    base = served[0]
    status, body = get(base, "/blog.json", sql="select load_extension('/tmp/x')", _shape="array")
    assert status == 400 and "not authorized" in body, (status, body)


def test_a_malformed_configuration_does_not_stop_datasette(datasette_env, tmp_path):
    bindir, _ = datasette_env
    make_blog(tmp_path / "blog.db", n=5)
    (tmp_path / "metadata.json").write_text(json.dumps({"plugins": {
        "datasette-faiss": ["blog", "embeddings"], "datasette-vekter": {"tables": "blog"}}}))
    command = [bindir / "datasette", "serve", "blog.db", "-m", "metadata.json"]
    with serving(command, cwd=tmp_path) as (base, log):
        status, body = get(base, "/-/vekter.json")
        assert status == 200 and json.loads(body)["configured_tables"] == []
        log.seek(0)
        output = log.read()
    assert "each entry of 'tables' is a [database, table] pair" in output, output
    assert "the configuration is" in output, output


# --- sqlite-utils-vekter -----------------------------------------------------------------------


def test_sqlite_utils_plugin(tmp_path):
    bindir = fresh_venv(tmp_path / "venv")
    pip_install(bindir, tmp_path, "sqlite-utils")
    run([bindir / "sqlite-utils", "install", wheel("vekter"), wheel("sqlite_utils_vekter")], tmp_path)
    rows = make_blog(tmp_path / "blog.db")
    query = json.dumps(rows[4])
    out = run([bindir / "sqlite-utils", "query", "blog.db",
               "select faiss_search('main', 'embeddings', :q, 4) as ids", "-p", "q", query], tmp_path)
    assert json.loads(json.loads(out)[0]["ids"]) == nearest(rows, rows[4], 4)
    out = run([bindir / "python", "-c", (
        "import sqlite_utils; db = sqlite_utils.Database('blog.db'); "
        "print(db.execute('select vekter_version()').fetchone()[0])")], tmp_path)
    assert out.strip() == VERSION
    plugins = json.loads(run([bindir / "sqlite-utils", "plugins"], tmp_path))
    assert [p["version"] for p in plugins if p["name"] == "sqlite-utils-vekter"] == [VERSION], plugins


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
