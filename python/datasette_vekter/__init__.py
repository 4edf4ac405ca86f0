"""datasette-vekter: vekter (FAISS inside SQLite) in every Datasette connection.

- Loads vekter into every connection Datasette opens, so `faiss_search`, the `faiss` virtual
  table and the other SQL functions work without `--load-extension`.
- Builds the indexes named by a datasette-faiss style `tables` configuration at start-up, under
  this plugin's name or under `datasette-faiss` (so a migrating `metadata.json` keeps working):
  the first query does not pay for them.
- Hides the shadow tables of `faiss` tables from the table lists.
- `/-/vekter` (and `/-/vekter.json`): the version, the build in use, the indexes the process
  holds for each database (its `faiss_indexes`), and what start-up did for each configured table.
"""

import json
import logging
import os
import re
import sqlite3
import threading
import time

import vekter
from datasette import hookimpl
from datasette.utils.asgi import Response

log = logging.getLogger("datasette_vekter")

CONFIG_NAMES = ("datasette-vekter", "datasette-faiss")

# What start-up did for each configured table, shown on /-/vekter: (database, table) -> text.
_startup_report = {}

# The shadow tables of each database file, keyed by what would change them (see _shadow_tables).
_shadow_cache = {}
_shadow_lock = threading.Lock()

# `CREATE VIRTUAL TABLE <name> USING faiss(`: the name is the first identifier, in any quoting.
_FAISS_TABLE_SQL = re.compile(r"\s*create\s+virtual\s+table\b.*?\busing\s+faiss\s*\(", re.IGNORECASE | re.DOTALL)
_SHADOW_SUFFIXES = ("config", "chunks", "changes")


@hookimpl
def prepare_connection(conn):
    vekter.load(conn)


@hookimpl
def startup(datasette):
    async def build_configured_indexes():
        for database, table in configured_tables(datasette):
            _startup_report[(database, table)] = await _build_index(datasette, database, table)

    return build_configured_indexes


def configured_tables(datasette):
    """The `[database, table]` pairs of the `tables` configuration, under either name, each once.
    A malformed entry is reported and left out: Datasette still starts."""
    pairs = []
    for name in CONFIG_NAMES:
        config = datasette.plugin_config(name) or {}
        entries = config.get("tables") or []
        if not isinstance(entries, list):
            log.warning("%s: 'tables' must be a list of [database, table] pairs", name)
            continue
        for entry in entries:
            ok = (
                isinstance(entry, (list, tuple))
                and len(entry) == 2
                and all(isinstance(part, str) and part for part in entry)
            )
            if not ok:
                log.warning(
                    "%s: each entry of 'tables' is a [database, table] pair, not %s",
                    name,
                    json.dumps(entry),
                )
            elif tuple(entry) not in pairs:
                pairs.append(tuple(entry))
    return pairs


async def _build_index(datasette, database, table):
    """Runs one search on the table, which builds its index (or loads the stored one of its
    faiss table) into the process-wide registry that every connection shares. Returns what
    happened, in words; failures are logged, and the same query will fail the same way later
    with vekter's own error message."""
    try:
        db = datasette.get_database(database)
    except KeyError:
        known = ", ".join(sorted(datasette.databases))
        message = f"no database named {database!r} (this Datasette has: {known})"
        log.warning("datasette-vekter: cannot build the index of %s/%s: %s", database, table, message)
        return "error: " + message

    def search_once(conn):
        started = time.perf_counter()
        quoted = '"' + table.replace('"', '""') + '"'
        row = conn.execute(f"select embedding from {quoted} where embedding is not null limit 1").fetchone()
        if row is None:
            return "empty table: the index is built at the first search"
        conn.execute("select faiss_search('main', ?, ?, 1)", [table, row[0]]).fetchone()
        return f"built in {(time.perf_counter() - started) * 1000:.0f} ms"

    try:
        return await db.execute_fn(search_once)
    except sqlite3.Error as e:
        log.warning("datasette-vekter: cannot build the index of %s/%s: %s", database, table, e)
        return f"error: {e}"


@hookimpl
def get_metadata(datasette, key, database, table):
    hidden = {}
    for name, db in datasette.databases.items():
        names = _shadow_tables(db)
        if names:
            hidden[name] = {"tables": {t: {"hidden": True} for t in names}}
    return {"databases": hidden} if hidden else {}


def _shadow_tables(db):
    """The shadow tables of the faiss tables in one database file: `<name>_config`, `_chunks`
    and `_changes`. Read from the file's schema with a short read-only connection, again only
    when the file (or its WAL) has changed."""
    path = getattr(db, "path", None)
    if not path or getattr(db, "is_memory", False):
        return ()
    try:
        stamp = tuple(_mtime(p) for p in (path, path + "-wal"))
    except OSError:
        return ()
    with _shadow_lock:
        cached = _shadow_cache.get(path)
        if cached and cached[0] == stamp:
            return cached[1]
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            schema = conn.execute("select name, sql from sqlite_master where type = 'table'").fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return ()
    tables = {name for name, _ in schema}
    shadow = tuple(
        f"{name}_{suffix}"
        for name, sql in schema
        if sql and _FAISS_TABLE_SQL.match(sql)
        for suffix in _SHADOW_SUFFIXES
        if f"{name}_{suffix}" in tables
    )
    with _shadow_lock:
        _shadow_cache[path] = (stamp, shadow)
    return shadow


def _mtime(path):
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return None


@hookimpl
def register_routes():
    return [(r"^/-/vekter(?P<format>\.json)?$", vekter_page)]


async def vekter_page(datasette, request):
    await datasette.ensure_permissions(request.actor, ["view-instance"])
    databases = [db for name, db in datasette.databases.items() if not name.startswith("_")]
    first = databases[0] if databases else datasette.get_database("_internal")
    version, debug = (await first.execute("select vekter_version(), vekter_debug()")).rows[0]
    # faiss_indexes lists the indexes of the asking connection's own files: ask each database.
    indexes = []
    for db in databases:
        for row in (await db.execute("select * from faiss_indexes")).rows:
            indexes.append({**dict(row), "database": db.name})
    data = {
        "version": version,
        "debug": json.loads(debug),
        "indexes": indexes,
        "configured_tables": [
            {"database": d, "table": t, "startup": what} for (d, t), what in _startup_report.items()
        ],
    }
    if request.url_vars.get("format"):
        return Response.json(data)
    return Response.html(
        await datasette.render_template("vekter.html", {"vekter": data}, request=request)
    )
