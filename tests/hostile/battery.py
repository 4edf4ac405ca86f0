"""A generated battery of hostile SQL against the loaded extension. Each case runs in its own
sqlite3 shell process, so a crash shows as a signal and a hang as a timeout, then checks that
the extension still answers. Usage: python tests/hostile/battery.py [--workers N]"""
import argparse
import concurrent.futures
import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]

VALUES = [
    "NULL", "0", "-1", "1", "2", "9223372036854775807", "-9223372036854775808", "1e308", "-1e308", "0.5",
    "'nan'", "''", "'[]'", "'['", "'[1'", "'[1,2,3]'", "'[1e39]'", "'[[1]]'", "'[\"a\"]'", "'[1,2]'",
    "X''", "X'00'", "X'0000807F'", "X'0000C07F'", "X'00000000'", "zeroblob(4)", "zeroblob(400000)",
    "'" + "[" * 10000 + "'", "'[" + ",".join(["1"] * 70000) + "]'", "randomblob(16)", "'main'", "'temp'",
    "'nosuch'", "'e'", "'x'", "'sqlite_master'", "'x_config'", "'x_changes'", "'faiss_indexes'",
    "'e'' OR 1=1 --'", "'\"'", "char(0)", "'params=1'", "'nprobe=99999999'", "'efSearch=1e300'",
    "'rerank=100'", "100001", "100000", "'HNSW0'", "'IVF0,Flat'", "'PQ1x0'", "'NSG2'",
    "'k = 1 OR ((('", "'" + "(" * 5000 + "k'", "'k LIKE ''%'' ESCAPE ''x'' '", "'NOT NOT NOT k'",
    "'tenant IN (' || replace(hex(zeroblob(20000)), '00', '1,') || '1)'",
]

SETUP = """.load ./dist/vekter
CREATE TABLE e (id INTEGER PRIMARY KEY, embedding BLOB);
INSERT INTO e VALUES (1, faiss_encode('[1,2]')), (2, faiss_encode('[3,4]')), (3, '[5,6]');
CREATE VIRTUAL TABLE x USING faiss(content = e, factory = 'HNSW8');
CREATE VIRTUAL TABLE y USING faiss(content = e, factory = 'IVF1,Flat');
CREATE TABLE t (k TEXT PRIMARY KEY, tenant, embedding BLOB);
INSERT INTO t VALUES ('a', 1, '[1,2]'), ('b', 2, '[3,4]'), ('c', 2, '[5,6]'), ('d', 2.0, '[7]');
CREATE VIRTUAL TABLE p USING faiss(content = t, partition = tenant, where = 'k != ''d''');
"""

# After each case: the extension must still work on this connection.
AFTER = """SELECT 'alive', count(*) FROM faiss_indexes;
SELECT 'alive', faiss_decode(faiss_encode('[1]'));
"""

TEMPLATES = [
    "SELECT faiss_encode({v});", "SELECT faiss_decode({v});",
    "SELECT faiss_search('main', 'e', {v}, 2);", "SELECT faiss_search({v}, 'e', '[1,2]', 2);",
    "SELECT faiss_search('main', {v}, '[1,2]', 2);", "SELECT faiss_search_with_scores('main', 'x', '[1,2]', {v});",
    "SELECT faiss_agg(id, embedding, {v}, 2) FROM e;", "SELECT faiss_agg(id, {v}, '[1,2]', 2) FROM e;",
    "SELECT faiss_agg_with_scores({v}, embedding, '[1,2]', {v}) FROM e;",
    "SELECT * FROM x({v}, 2);", "SELECT * FROM x('[1,2]', {v});", "SELECT * FROM x('[1,2]', 2, {v});",
    "SELECT * FROM y('[1,2]', 2, {v});",
    "SELECT rowid FROM x WHERE query = '[1,2]' AND k = 2 AND rowid IN ({v}, 1);",
    "SELECT rowid FROM x WHERE query = '[1,2]' AND k = 2 AND distance < {v};",
    "SELECT * FROM x WHERE neighbours_of = {v} AND k = 2;",
    "SELECT * FROM x WHERE neighbours_of IN ({v}, 1, 2) AND k = {v};",
    "SELECT * FROM y WHERE query IN ('[1,2]', {v}) AND k = 2;",
    "SELECT * FROM x WHERE query IN (SELECT embedding FROM e UNION ALL SELECT {v}) AND k = 3;",
    "SELECT * FROM p WHERE neighbours_of IN (SELECT rowid FROM p WHERE tenant = 2) AND k = 2 AND tenant = {v};",
    "WITH RECURSIVE s(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM s WHERE v < 300000) SELECT count(*) FROM x WHERE neighbours_of IN (SELECT v FROM s) AND k = 1 AND {v} IS NOT NULL;",
    "INSERT INTO x(x) VALUES ({v});",
    "INSERT INTO e(id, embedding) VALUES (100, {v}); SELECT count(*) FROM x('[1,2]', 10); DELETE FROM e WHERE id = 100;",
    "CREATE VIRTUAL TABLE z USING faiss(content = e, factory = {v}); DROP TABLE IF EXISTS z;",
    "CREATE VIRTUAL TABLE z USING faiss(content = e, dim = {v}); DROP TABLE IF EXISTS z;",
    "CREATE VIRTUAL TABLE z USING faiss(content = e, deterministic = {v}); DROP TABLE IF EXISTS z;",
    "SELECT faiss_integrity_check({v});", "SELECT faiss_integrity_check({v}, 'x');",
    "SELECT faiss_integrity_check('main', {v});",
    "CREATE VIRTUAL TABLE z USING faiss(content = e, params = {v}); DROP TABLE IF EXISTS z;",
    "CREATE VIRTUAL TABLE z USING faiss(content = e, train_size = {v}, factory = 'IVF1,Flat'); DROP TABLE IF EXISTS z;",
    "SELECT * FROM p WHERE query = '[1,2]' AND k = 2 AND tenant = {v};",
    "SELECT count(*), group_concat(id) FROM p WHERE tenant = {v};",
    "CREATE VIRTUAL TABLE z USING faiss(content = e, where = {v}); SELECT count(*) FROM z; DROP TABLE IF EXISTS z;",
    "CREATE VIRTUAL TABLE z USING faiss(content = t, partition = {v}); DROP TABLE IF EXISTS z;",
    "INSERT OR REPLACE INTO t VALUES ({v}, {v}, '[1,2]'); SELECT count(*) FROM p WHERE query = '[1,2]' AND k = 5 AND tenant = 2;",
]

# The partitioned, partial table over a TEXT key: its own config keys, snapshot format and log.
DAMAGE_P = [
    "UPDATE p_config SET value = 'k = (SELECT 1)' WHERE key = 'where';",
    "UPDATE p_config SET value = 'k = 1; DROP TABLE t' WHERE key = 'where';",
    "UPDATE p_config SET value = '' WHERE key = 'partition';",
    "UPDATE p_config SET value = 'nosuch' WHERE key = 'partition';",
    "UPDATE p_config SET value = 'rowid' WHERE key = 'key';",
    "UPDATE p_config SET value = 'rowid-unstable' WHERE key = 'key';",
    "UPDATE p_config SET value = 'nope' WHERE key = 'key';",
    "UPDATE p_config SET value = '[]' WHERE key = 'key_columns';",
    "UPDATE p_config SET value = '[\"nosuch\", 1]' WHERE key = 'key_columns';",
    "UPDATE p_chunks SET data = randomblob(length(data));",
    "UPDATE p_chunks SET data = substr(data, 1, 40);",
    "UPDATE p_changes SET key0 = NULL;",
    "INSERT INTO p_changes(key0) VALUES (zeroblob(1000000));",
    "ALTER TABLE t RENAME TO t2;",
    "DROP TABLE t;",
]
USE_P = """SELECT count(*) FROM p WHERE query = '[1,2]' AND k = 10 AND tenant = 2;
SELECT count(*) FROM p;
INSERT INTO p(p) VALUES ('integrity-check');
INSERT INTO p(p) VALUES ('rebuild');
SELECT count(*) FROM p WHERE query = '[1,2]' AND k = 10 AND tenant = 2;
"""

DAMAGE = [
    "UPDATE x_config SET value = '999999999999' WHERE key = 'snapshot_bytes';", "DELETE FROM x_config;",
    "DROP TABLE x_config;", "DELETE FROM x_chunks;", "INSERT INTO x_changes(rid) VALUES (999);",
    "UPDATE x_config SET value = 'Nope' WHERE key = 'factory';", "UPDATE x_config SET value = '3' WHERE key = 'dim';",
    "UPDATE x_config SET value = 'xx' WHERE key = 'metric';", "UPDATE x_config SET value = '2' WHERE key = 'format';",
    "UPDATE x_chunks SET data = substr(data, 1, 10);", "UPDATE x_chunks SET data = randomblob(length(data));",
    "UPDATE x_chunks SET data = data || X'00';", "DROP TABLE e;", "ALTER TABLE e RENAME TO e2;",
    "DROP TRIGGER x_vekter_ai;", "DELETE FROM x_changes;", "UPDATE x_changes SET rid = -rid;",
]
# Damage, then use the table from this connection and from a fresh one (which loads the snapshot).
USE = """SELECT count(*) FROM x('[1,2]', 10);
INSERT INTO x(x) VALUES ('integrity-check');
INSERT INTO x(x) VALUES ('rebuild');
SELECT count(*) FROM x('[1,2]', 10);
"""

GENERIC = re.compile(r"internal error|raised exception|unknown error|SQL logic error", re.I)


def cases():
    for t in TEMPLATES:
        for v in VALUES:
            yield SETUP + t.format(v=v) + "\n" + AFTER, None
    for d in DAMAGE:
        yield SETUP + d + "\n" + USE + AFTER, ".load ./dist/vekter\n" + USE + AFTER
    for d in DAMAGE_P:
        yield SETUP + d + "\n" + USE_P + AFTER, ".load ./dist/vekter\n" + USE_P + AFTER


def run(case):
    script, reopen = case
    with tempfile.TemporaryDirectory() as tmp:
        db = str(pathlib.Path(tmp) / "h.db")
        outputs = []
        for sql in [script] + ([reopen] if reopen else []):
            try:
                p = subprocess.run(["sqlite3", db], input=sql, capture_output=True, text=True, encoding="utf-8", errors="replace", timeout=60, cwd=ROOT)
            except subprocess.TimeoutExpired:
                return "hang", sql[:300]
            if p.returncode not in (0, 1):
                return f"signal {-p.returncode}" if p.returncode < 0 else f"exit {p.returncode}", sql[:300]
            outputs.append(p.stdout + p.stderr)
        out = "\n".join(outputs)
        if out.count("alive|") < 2 * len(outputs):
            return "extension stopped answering", out[-500:]
        generic = GENERIC.search(out)
        if generic:
            return f"unclear error '{generic.group(0)}'", out[-500:]
        return "ok", out.count("error")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    all_cases = list(cases())
    with concurrent.futures.ThreadPoolExecutor(args.workers) as pool:
        results = list(pool.map(run, all_cases))
    bad = [(r, d) for r, d in results if r != "ok"]
    errors = sum(d for r, d in results if r == "ok")
    print(f"hostile battery: {len(all_cases)} cases, {errors} clear SQL errors, {len(bad)} failures")
    for r, d in bad[:10]:
        print(f"  {r}: {d!r}")
    print(f"hostile: {len(all_cases) - len(bad)} passed, {len(bad)} failed")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
