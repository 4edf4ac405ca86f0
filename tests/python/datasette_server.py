"""A real `datasette serve` on a free port, for the tests that talk to Datasette over HTTP
(tests/python/test_datasette.py with --load-extension, tests/wheels/ with the plugin)."""
import contextlib
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(command, cwd=None):
    """Runs `command` (a `datasette serve …` without --port) and yields (base URL, log): the
    log is a file holding the server's output so far (seek(0) to read it)."""
    port = free_port()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen([*map(str, command), "--port", str(port)], cwd=cwd, stdout=log,
                                stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + 60
            while True:
                try:
                    urllib.request.urlopen(base + "/-/versions.json", timeout=2)
                    break
                except (urllib.error.URLError, ConnectionError):
                    if proc.poll() is not None or time.time() > deadline:
                        proc.kill()
                        log.seek(0)
                        raise RuntimeError("datasette did not start:\n" + log.read()) from None
                    time.sleep(0.2)
            yield base, log
        finally:
            proc.terminate()
            proc.wait(timeout=10)
