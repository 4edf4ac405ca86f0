"""datasette-vekter: vekter (FAISS inside SQLite) in every Datasette connection.

- Loads vekter into every connection Datasette opens, so `faiss_search`, the `faiss` virtual
  table and the other SQL functions work without `--load-extension`. A database whose Datasette
  name is not its file's stem (`blog_2` for a second `blog.db`) is also attached read-only under
  that name, so `faiss_search('blog_2', …)` finds it.
- Builds the indexes named by a datasette-faiss style `tables` configuration at start-up, under
  this plugin's name or under `datasette-faiss` (so a migrating `metadata.json` keeps working):
  the first query does not pay for them.
- Hides the shadow tables of `faiss` tables from the table lists (Datasette 0.64/0.65, whose
  `get_metadata` hook this uses).
- `/-/vekter` (and `/-/vekter.json`): the version, the build in use, the indexes the process
  holds for each database the visitor may see (its `faiss_indexes`), and what start-up did for
  each configured table.
"""

import json
import logging
import os
import re
import sqlite3
import threading
import time
from pathlib import Path

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

_FAISS_TABLE_SQL = re.compile(r"\s*create\s+virtual\s+table\b.*?\busing\s+faiss\s*\(", re.IGNORECASE | re.DOTALL)
_SHADOW_SUFFIXES = ("config", "chunks", "changes")


def quote(name):
    return '"' + name.replace('"', '""') + '"'


@hookimpl
def prepare_connection(conn, database, datasette):
    vekter.load(conn)
    db = datasette.databases.get(database)
    path = getattr(db, "path", None)
    if path and not getattr(db, "is_memory", False) and Path(path).stem != database:
        try:
            conn.execute("attach database ? as " + quote(database), [_read_only_uri(db)])
        except sqlite3.Error as e:
            log.warning("datasette-vekter: cannot attach %s as %r: %s", path, database, e)


def _read_only_uri(db):
    """A URI that opens the database file read-only: `immutable=1` for files Datasette serves
    as immutable (which may sit on read-only storage, where a WAL file's `-shm` cannot be made)."""
    mode = "mode=ro" if getattr(db, "is_mutable", True) else "immutable=1"
    return f"file:{Path(db.path).resolve().as_posix()}?{mode}"


@hookimpl
def startup(datasette):
    async def build_configured_indexes():
        for database, table in configured_tables(datasette):
            _startup_report[(database, table)] = await _build_index(datasette, database, table)

    return build_configured_indexes


def configured_tables(datasette):
    """The `[database, table]` pairs of the `tables` configuration, under either name, each once.
    A malformed configuration or entry is reported and left out: Datasette still starts."""
    pairs = []
    for name in CONFIG_NAMES:
        config = datasette.plugin_config(name)
        if config is None:
            continue
        entries = config.get("tables", []) if isinstance(config, dict) else config
        if not isinstance(entries, list):
            log.warning("%s: the configuration is {\"tables\": [[database, table], …]}, not %s",
                        name, json.dumps(config))
            continue
        for entry in entries:
            ok = (
                isinstance(entry, (list, tuple))
                and len(entry) == 2
                and all(isinstance(part, str) and part for part in entry)
            )
            if not ok:
                log.warning("%s: each entry of 'tables' is a [database, table] pair, not %s",
                            name, json.dumps(entry))
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
        # Not naming the others: /-/vekter shows this to visitors who may not see them all.
        return _failed(database, table, f"no database named {database!r}")
    try:
        return await db.execute_fn(lambda conn: _search_once(conn, table))
    except sqlite3.Error as e:
        return _failed(database, table, str(e))


def _failed(database, table, message):
    log.warning("datasette-vekter: cannot build the index of %s/%s: %s", database, table, message)
    return "error: " + message


def _search_once(conn, table):
    started = time.perf_counter()
    faiss_tables = [n for n, sql in _tables(conn) if sql and _FAISS_TABLE_SQL.match(sql)]
    if table in faiss_tables:
        conn.execute(f"select count(*) from {quote(table)}").fetchone()  # loads its snapshot
    else:
        # The vector column: the one a faiss table over this table indexes, else `embedding`.
        column = "embedding"
        for name in faiss_tables:
            config = dict(conn.execute(
                f"select key, value from {quote(name + '_config')} where key in ('content', 'column')"))
            if config.get("content") == table and config.get("column"):
                column = config["column"]
        row = conn.execute(
            f"select {quote(column)} from {quote(table)} where {quote(column)} is not null limit 1"
        ).fetchone()
        if row is None:
            return "empty table: the index is built at the first search"
        conn.execute("select faiss_search('main', ?, ?, 1)", [table, row[0]]).fetchone()
    return f"built in {(time.perf_counter() - started) * 1000:.0f} ms"


def _tables(conn):
    return conn.execute("select name, sql from sqlite_master where type = 'table'").fetchall()


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
    stamp = tuple(_mtime(p) for p in (path, path + "-wal"))
    with _shadow_lock:
        cached = _shadow_cache.get(path)
        if cached and cached[0] == stamp:
            return cached[1]
    try:
        conn = sqlite3.connect(_read_only_uri(db), uri=True)
        try:
            schema = _tables(conn)
        finally:
            conn.close()
    except sqlite3.Error as e:
        log.warning("datasette-vekter: cannot read the schema of %s to hide shadow tables: %s", path, e)
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
    except OSError:
        return None


@hookimpl
def register_routes():
    return [(r"^/-/vekter(?P<format>\.json)?$", vekter_page)]


async def vekter_page(datasette, request):
    """What vekter holds, limited to what the visitor could read with SQL: the databases they
    may view, and the build details (vekter_debug()) only for one who may run SQL."""
    actor = request.actor
    if not await _allowed(datasette, actor, "view-instance"):
        return Response.text("Forbidden", status=403)
    visible = [db for name, db in datasette.databases.items()
               if not name.startswith("_") and await _allowed(datasette, actor, "view-database", name)]
    may_run_sql = [db for db in visible if await _allowed(datasette, actor, "execute-sql", db.name)]
    first = visible[0] if visible else datasette.get_database("_internal")
    version = (await first.execute("select vekter_version()")).rows[0][0]
    debug = None
    if may_run_sql:
        debug = json.loads((await may_run_sql[0].execute("select vekter_debug()")).rows[0][0])
    # faiss_indexes lists the indexes of the asking connection's own files: ask each database.
    indexes = []
    for db in visible:
        for row in (await db.execute("select * from faiss_indexes")).rows:
            indexes.append({**dict(row), "database": db.name})
    # An entry for a database the visitor may not see is left out (one naming no database at
    # all is a configuration mistake worth showing).
    hidden = set(datasette.databases) - {db.name for db in visible}
    data = {
        "version": version,
        "debug": debug,
        "indexes": indexes,
        "configured_tables": [
            {"database": d, "table": t, "startup": what}
            for (d, t), what in _startup_report.items() if d not in hidden
        ],
    }
    if request.url_vars.get("format"):
        return Response.json(data)
    return Response.html(
        await datasette.render_template("vekter.html", {"vekter": data}, request=request)
    )


async def _allowed(datasette, actor, action, database=None):
    """One permission check, on Datasette 0.64/0.65 (`permission_allowed`) or 1.0 (`allowed`)."""
    if hasattr(datasette, "permission_allowed"):
        return await datasette.permission_allowed(actor, action, resource=database, default=True)
    from datasette.resources import DatabaseResource

    resource = DatabaseResource(database) if database else None
    return await datasette.allowed(action=action, resource=resource, actor=actor)
