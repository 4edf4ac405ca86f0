"""Build the three wheels of `make wheels` into dist/wheels/ (SPEC §8, README "Installing").

- `vekter`: a platform wheel holding the three builds of the extension (dist/vekter.so,
  vekter_avx2.so, vekter_avx512.so, debug info stripped) and the `vekter` module; then
  `auditwheel repair` copies in every shared library they need that the manylinux policy does
  not allow (OpenBLAS, LAPACK, libgomp, libgfortran…), points the builds at those copies, and
  gives the wheel its manylinux tag.
- `datasette-vekter` and `sqlite-utils-vekter`: pure-Python plugins that depend on `vekter`.

The vekter wheel carries the licences of what it holds in its .dist-info/licenses/ (LICENCES).

One version for all three, read from Cargo.toml (the one `vekter_version()` reports).
Wheels are zip files with a fixed layout (PEP 427); writing them directly keeps the build
offline and byte-reproducible (fixed timestamps) apart from auditwheel's own rewrite.

Usage: python build_wheels.py DIST_DIR OUT_DIR   (auditwheel and patchelf on PATH)
"""

import base64
import hashlib
import io
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LIBRARIES = ("vekter.so", "vekter_avx2.so", "vekter_avx512.so")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)

# The licences a copy of the vekter wheel must carry: vekter's own, FAISS's (compiled in), and
# those of the shared libraries auditwheel copies in, from the Debian packages they come from.
LICENCES = {
    "LICENSE-MIT": ROOT / "LICENSE-MIT",
    "LICENSE-APACHE": ROOT / "LICENSE-APACHE",
    "FAISS-LICENSE": "faiss-sys-*/faiss/LICENSE",
    "OpenBLAS-LAPACK-copyright": Path("/usr/share/doc/libopenblas0-pthread/copyright"),
    "GCC-runtime-libgomp-libgfortran-libquadmath-copyright": Path("/usr/share/doc/libgomp1/copyright"),
}

SUMMARIES = {
    "vekter": "FAISS inside SQLite: any FAISS index over an ordinary table, kept in sync, "
              "stored in the database file",
    "datasette-vekter": "vekter (FAISS inside SQLite) in every Datasette connection; a drop-in "
                        "for datasette-faiss",
    "sqlite-utils-vekter": "vekter (FAISS inside SQLite) in every sqlite-utils connection",
}

DESCRIPTIONS = {
    "vekter": """\
# vekter

FAISS inside SQLite: any FAISS index over the vectors of an ordinary table, kept in sync with
that table, stored inside the same database file, searched from SQL.

```python
import sqlite3, vekter
conn = sqlite3.connect("data.db")
vekter.load(conn)
conn.execute("select faiss_search('main', 'embeddings', ?, 5)", [vekter.encode([0.1, 0.2])])
```

`vekter.loadable_path()` is the extension's path, for the sqlite3 shell (`.load`) or
`datasette --load-extension`. The wheel carries everything the extension needs (OpenBLAS,
OpenMP): no compiler, no system BLAS.
""",
    "datasette-vekter": """\
# datasette-vekter

Loads vekter (FAISS inside SQLite) into every Datasette connection: `faiss_search`,
`faiss_search_with_scores`, `faiss_encode`, `faiss_decode`, `faiss_agg` and the `faiss` virtual
table, with no `--load-extension`. A drop-in replacement for datasette-faiss: its `tables`
configuration (under `datasette-faiss` or `datasette-vekter`) builds those indexes at start-up,
and they stay current as the tables change. Shadow tables are hidden; `/-/vekter` lists the
indexes.
""",
    "sqlite-utils-vekter": """\
# sqlite-utils-vekter

Loads vekter (FAISS inside SQLite) into every sqlite-utils connection:
`sqlite-utils query data.db "select faiss_search('main', 'embeddings', :q, 5)" -p q '[1, 2]'`
works without `--load-extension`, and so does `sqlite_utils.Database(...)` in Python.
""",
}


def main():
    dist, out = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    if platform.machine() != "x86_64":
        sys.exit(f"build_wheels: the vekter wheel is built for x86-64 only, not {platform.machine()}")
    missing = [name for name in LIBRARIES if not (dist / name).is_file()]
    if missing:
        sys.exit(f"build_wheels: {', '.join(missing)} not in {dist}: run `make build` first")
    version = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        raw = build_vekter(dist, Path(tmp), version)
        subprocess.run(["auditwheel", "repair", "--wheel-dir", str(out), str(raw)], check=True)
    for name, package, plugin_group in (
        ("datasette-vekter", "datasette_vekter", "datasette"),
        ("sqlite-utils-vekter", "sqlite_utils_vekter", "sqlite_utils"),
    ):
        host = "datasette>=0.64" if plugin_group == "datasette" else "sqlite-utils>=3.34"
        files = package_files(package)
        files[f"{dist_info(name, version)}/entry_points.txt"] = (
            f"[{plugin_group}]\nvekter = {package}\n".encode()
        )
        write_wheel(out, name, version, "py3-none-any", files, [f"vekter=={version}", host])
    for wheel in sorted(out.glob("*.whl")):
        size = wheel.stat().st_size
        print(f"{wheel}: {size / 1e6:.1f} MB" if size > 1e6 else f"{wheel}: {size / 1e3:.1f} kB")


def build_vekter(dist, tmp, version):
    files = package_files("vekter")
    files["vekter/_version.py"] = f'__version__ = "{version}"\n'.encode()
    licences = f"{dist_info('vekter', version)}/licenses"
    for name, source in LICENCES.items():
        files[f"{licences}/{name}"] = licence_text(source)
    files[f"{licences}/RUST-CRATES"] = rust_crates()
    for name in LIBRARIES:
        stripped = tmp / name
        subprocess.run(["strip", "--strip-debug", "-o", str(stripped), str(dist / name)], check=True)
        files[f"vekter/{name}"] = stripped.read_bytes()
    return write_wheel(tmp, "vekter", version, "py3-none-linux_x86_64", files, [], purelib=False)


def licence_text(source):
    if isinstance(source, str):  # a file of a crate's source, in cargo's registry
        cargo_home = Path(os.environ.get("CARGO_HOME", Path.home() / ".cargo"))
        found = sorted(cargo_home.glob(f"registry/src/*/{source}"))
        source = found[-1] if found else cargo_home / "registry/src" / source
    if not source.is_file():
        sys.exit(f"build_wheels: {source} is missing: the wheel must carry that licence")
    return source.read_bytes()


def rust_crates():
    """The Rust crates compiled into the builds, with their licences."""
    tree = subprocess.run(
        ["cargo", "tree", "--offline", "-e", "normal", "--prefix", "none", "--format", "{p} {l}"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    lines = sorted({line.removesuffix(" (*)") for line in tree.splitlines() if line.strip()})
    header = "Rust crates compiled into vekter.so, vekter_avx2.so and vekter_avx512.so:\n\n"
    return (header + "\n".join(lines) + "\n").encode()


def package_files(package):
    """Every file of python/<package>/ (sources and templates), by its path in the wheel."""
    files = {}
    for path in sorted((HERE / package).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            files[path.relative_to(HERE).as_posix()] = path.read_bytes()
    return files


def dist_info(name, version):
    return f"{name.replace('-', '_')}-{version}.dist-info"


def write_wheel(out, name, version, tag, files, requires, purelib=True):
    info = dist_info(name, version)
    metadata = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {version}",
        f"Summary: {SUMMARIES[name]}",
        "License: MIT OR Apache-2.0",
        "Requires-Python: >=3.9",
        *(f"Requires-Dist: {r}" for r in requires),
        "Description-Content-Type: text/markdown",
        "",
        DESCRIPTIONS[name],
    ]
    files = dict(files)
    files[f"{info}/METADATA"] = "\n".join(metadata).encode()
    files[f"{info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: vekter build_wheels.py\n"
        f"Root-Is-Purelib: {'true' if purelib else 'false'}\nTag: {tag}\n"
    ).encode()
    record = [f"{path},sha256={digest(data)},{len(data)}" for path, data in files.items()]
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = out / f"{name.replace('-', '_')}-{version}-{tag}.whl"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files.items():
            entry = zipfile.ZipInfo(path, ZIP_DATE)
            entry.external_attr = (0o755 if path.endswith(".so") else 0o644) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(entry, data)
    wheel.write_bytes(buffer.getvalue())
    return wheel


def digest(data):
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


if __name__ == "__main__":
    if not shutil.which("auditwheel") or not shutil.which("patchelf"):
        sys.exit("build_wheels: auditwheel and patchelf must be on PATH (make wheels installs them)")
    main()
