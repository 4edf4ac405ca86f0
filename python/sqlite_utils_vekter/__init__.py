"""sqlite-utils-vekter: vekter (FAISS inside SQLite) in every sqlite-utils connection, so
`sqlite-utils query data.db "select faiss_search(...)"` and `sqlite_utils.Database(...)` work
without `--load-extension`."""

import sqlite_utils
import vekter


@sqlite_utils.hookimpl
def prepare_connection(conn):
    vekter.load(conn)
