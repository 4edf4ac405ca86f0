"""Shared fixtures: every test loads the built dist/vekter.so the way users do."""
import os
import pathlib
import sqlite3
import struct

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
LIB = os.environ.get("VEKTER_LIB", str(ROOT / "dist" / "vekter.so"))


def connect(path=":memory:", **kwargs):
    conn = sqlite3.connect(str(path), **kwargs)
    conn.enable_load_extension(True)
    conn.load_extension(LIB.removesuffix(".so"))
    conn.enable_load_extension(False)
    return conn


def encode(vector):
    """datasette-faiss's encode()."""
    return struct.pack("f" * len(vector), *vector)


@pytest.fixture
def conn():
    c = connect()
    yield c
    c.close()


# Figures tests want shown at the end of every run (make test), even when they pass.
SUMMARY = []


@pytest.fixture
def report():
    """report(line): print `line` in pytest's closing summary."""
    return SUMMARY.append


def pytest_terminal_summary(terminalreporter):
    for line in SUMMARY:
        terminalreporter.write_line(line)
