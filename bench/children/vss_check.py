"""Child of bench/run.py (vbench.peers.vss_status): does sqlite-vss load and answer here?
Prints vss_version() and the result of a 1-nearest-neighbour search ([(1,)] when it works).
Run in its own process because an exception inside sqlite-vss's FAISS aborts the process."""
import sqlite3
import struct

import sqlite_vss

c = sqlite3.connect(":memory:", isolation_level=None)
c.enable_load_extension(True)
sqlite_vss.load(c)
c.execute("create virtual table x using vss0(e(2))")
c.execute("insert into x(rowid, e) values (1, ?)", [struct.pack("<2f", 0, 0)])
print(c.execute("select vss_version()").fetchone()[0])
print(c.execute("select rowid from x where vss_search(e, vss_search_params(?, 1))",
                [struct.pack("<2f", 0, 0)]).fetchall())
