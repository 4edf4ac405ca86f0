-- faiss tables over every table shape (SPEC §4): composite and TEXT keys, WITHOUT ROWID, rowid
-- tables with no declared key (VACUUM renumbers them), partial and partitioned indexes.
.load ./dist/vekter
-- llm's embeddings table: PRIMARY KEY (collection_id, id TEXT), collections of two dimensions
CREATE TABLE emb (collection_id INTEGER, id TEXT, embedding BLOB, PRIMARY KEY (collection_id, id));
INSERT INTO emb VALUES (1, 'a', faiss_encode('[0, 0]')), (1, 'b', faiss_encode('[1, 0]')), (1, 'c', faiss_encode('[5, 5]')),
  (2, 'a', faiss_encode('[0, 0, 1]')), (2, 'z', faiss_encode('[1, 1, 1]'));
CREATE VIRTUAL TABLE c1 USING faiss(content = emb, where = 'collection_id = 1', id = id);
SELECT key, value FROM c1_config WHERE key IN ('key', 'key_columns', 'where', 'pk');
-- rowid is the content row's current rowid, id the id column
SELECT rowid, id, distance FROM c1('[0.9, 0]', 3);
-- re-embedding with INSERT OR REPLACE (a new rowid), a delete, a row moving out of the predicate
INSERT OR REPLACE INTO emb VALUES (1, 'a', faiss_encode('[0.95, 0]'));
SELECT rowid, id, distance FROM c1('[0.9, 0]', 3);
DELETE FROM emb WHERE collection_id = 1 AND id = 'b';
UPDATE emb SET collection_id = 3 WHERE id = 'c';
SELECT rowid, id, distance FROM c1('[0.9, 0]', 3);
INSERT INTO emb VALUES (1, 'd', faiss_encode('[0, 1]'));
UPDATE emb SET collection_id = 1 WHERE id = 'c';
SELECT rowid, id, distance FROM c1('[0.9, 0]', 5);
INSERT INTO c1(c1) VALUES ('integrity-check');
INSERT INTO c1(c1) VALUES ('optimize');
SELECT count(*), group_concat(id) FROM c1;
-- a join back by the composite key runs the search once
SELECT e.id, s.distance FROM c1('[0, 0]', 2) AS s JOIN emb AS e ON e.collection_id = 1 AND e.id = s.id;
EXPLAIN QUERY PLAN SELECT e.id, s.distance FROM c1('[0, 0]', 2) AS s JOIN emb AS e ON e.collection_id = 1 AND e.id = s.id;
EXPLAIN QUERY PLAN SELECT e.id, s.distance FROM emb AS e JOIN c1 AS s ON e.collection_id = 1 AND e.id = s.id WHERE s.query = '[0, 0]' AND s.k = 2;
-- partitioned: every search names its partition and never returns another's rows
CREATE TABLE t (id TEXT PRIMARY KEY, tenant INTEGER, embedding BLOB);
INSERT INTO t VALUES ('x1', 1, '[0, 0]'), ('x2', 1, '[1, 1]'), ('y1', 2, '[0, 0.1]'), ('y2', 2, '[9, 9]');
CREATE VIRTUAL TABLE tp USING faiss(content = t, partition = tenant);
SELECT rowid, id, tenant, distance FROM tp WHERE query = '[0, 0]' AND k = 5 AND tenant = 2;
SELECT id, tenant FROM tp ORDER BY id;
SELECT id FROM tp WHERE tenant = 1 ORDER BY id;
UPDATE t SET tenant = 2 WHERE id = 'x2';
SELECT rowid, id, tenant, distance FROM tp WHERE query = '[0, 0]' AND k = 5 AND tenant = 2;
SELECT count(*) FROM tp WHERE query = '[0, 0]' AND k = 5 AND tenant = 3;
-- the partition value converts as SQLite converts it for tenant = ? (Datasette's parameters are text)
SELECT id FROM tp WHERE query = '[0, 0]' AND k = 1 AND tenant = '2';
SELECT id FROM tp WHERE query = '[0, 0]' AND k = 1 AND tenant = 2.0;
SELECT count(*) FROM tp WHERE tenant = ' 1 ';
INSERT INTO tp(tp) VALUES ('integrity-check');
-- a TEXT key: the join uses the key's index
EXPLAIN QUERY PLAN SELECT t.id FROM tp AS s JOIN t ON t.id = s.id WHERE s.query = '[0, 0]' AND s.k = 2 AND s.tenant = 1;
-- a rowid table with no declared key (what sqlite-utils makes): exact before and after VACUUM
CREATE TABLE nk (title TEXT, embedding BLOB);
INSERT INTO nk VALUES ('p', '[0, 0]'), ('q', '[1, 0]'), ('r', '[2, 0]'), ('s', '[3, 0]');
CREATE VIRTUAL TABLE nki USING faiss(content = nk, id = title);
DELETE FROM nk WHERE title IN ('p', 'q');
SELECT rowid, id, distance FROM nki('[2.9, 0]', 2);
VACUUM;
SELECT rowid, title FROM nk;
SELECT rowid, id, distance FROM nki('[2.9, 0]', 2);
SELECT n.title FROM nki('[2.9, 0]', 1) AS i JOIN nk AS n ON n.rowid = i.rowid;
INSERT INTO nki(nki) VALUES ('integrity-check');
-- WITHOUT ROWID: id is the key (join back by it)
CREATE TABLE wr (k TEXT PRIMARY KEY, embedding BLOB) WITHOUT ROWID;
INSERT INTO wr VALUES ('one', '[1]'), ('two', '[2]');
CREATE VIRTUAL TABLE wri USING faiss(content = wr);
SELECT id, distance FROM wri('[1.9]', 2);
SELECT wr.k FROM wri('[1.9]', 1) AS s JOIN wr ON wr.k = s.id;
-- two keys with one 64-bit handle (a table crafted to collide): the write is refused with an
-- error naming both, never one row answering for the other (a write from a connection without
-- vekter makes searches fail with that error until one of them is gone: test_shapes.py)
CREATE TABLE bk (k BLOB PRIMARY KEY, name TEXT, embedding BLOB);
INSERT INTO bk VALUES (zeroblob(87), 'A', '[0, 0]'), (X'02', 'two', '[3, 3]');
CREATE VIRTUAL TABLE bki USING faiss(content = bk, id = name);
INSERT INTO bk VALUES (X'01000000000000000000000000000000000000000000000000000000000000a7b94ccd6c16f5d5000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000', 'B', '[1, 1]');
SELECT id, distance FROM bki('[0, 0]', 3);
DELETE FROM bk WHERE name = 'B';
SELECT id, distance FROM bki('[0, 0]', 3);
INSERT INTO bki(bki) VALUES ('integrity-check');
-- BLOB keys: id is the BLOB (hex() to read it); a composite key with a BLOB part shows it as hex
CREATE VIRTUAL TABLE bkk USING faiss(content = bk);
SELECT hex(id), typeof(id), distance FROM bkk('[2, 2]', 2);
CREATE TABLE cb (a INTEGER, b BLOB, embedding BLOB, PRIMARY KEY (a, b));
INSERT INTO cb VALUES (1, X'CAFE', '[0]'), (1, X'00', '[5]');
CREATE VIRTUAL TABLE cbi USING faiss(content = cb);
SELECT id, distance FROM cbi('[1]', 2);
-- the partition from another table of a join: the search runs once per outer row, by partition
CREATE TABLE tenants (tid INTEGER PRIMARY KEY, name TEXT);
INSERT INTO tenants VALUES (1, 'one'), (2, 'two');
EXPLAIN QUERY PLAN SELECT tenants.name, s.id FROM tenants JOIN tp AS s ON s.tenant = tenants.tid WHERE s.query = '[0, 0]' AND s.k = 1;
SELECT tenants.name, s.id FROM tenants JOIN tp AS s ON s.tenant = tenants.tid WHERE s.query = '[0, 0]' AND s.k = 1 ORDER BY tenants.tid;
-- errors name the problem
CREATE VIRTUAL TABLE x USING faiss(content = t, partition = id);
CREATE VIRTUAL TABLE x USING faiss(content = emb, where = 'nosuch = 1');
CREATE VIRTUAL TABLE x USING faiss(content = emb, where = 'collection_id = (SELECT 1)');
CREATE VIRTUAL TABLE x USING faiss(content = emb, where = 'upper(id) = ''A''');
CREATE VIRTUAL TABLE x USING faiss(content = emb, where = 'collection_id = 1; DROP TABLE emb');
CREATE VIRTUAL TABLE x USING faiss(content = t, partition = nosuch);
CREATE VIRTUAL TABLE x USING faiss(content = t, partition = embedding);
CREATE VIRTUAL TABLE x USING faiss(content = emb);
SELECT * FROM tp WHERE query = '[0, 0]' AND k = 5;
SELECT * FROM tp WHERE query = '[0, 0]' AND k = 5 AND tenant IS NULL;
SELECT faiss_search('main', 'tp', '[0, 0]', 1);
-- faiss_search over a content table uses only a faiss table that indexes all of it at once
SELECT faiss_search('main', 't', '[0, 0]', 4);
SELECT faiss_search('main', 'emb', '[0, 0]', 1);
SELECT count(*) AS leftovers FROM sqlite_master WHERE name LIKE 'x%';
