"""sqlite-utils-vekter: vekter (FAISS inside SQLite) in every sqlite-utils connection, so
`sqlite-utils query data.db "select faiss_search(...)"` and `sqlite_utils.Database(...)` work
without `--load-extension`."""

import warnings

import sqlite_utils
import vekter


@sqlite_utils.hookimpl
def prepare_connection(conn):
    # sqlite-utils does much more than vector search: in a Python whose sqlite3 cannot load
    # extensions, say so once and leave the connection usable.
    try:
        vekter.load(conn)
    except RuntimeError as e:
        warnings.warn(f"sqlite-utils-vekter: vekter not loaded: {e}", RuntimeWarning, stacklevel=2)
