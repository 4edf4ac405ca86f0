-- The faiss virtual table in the sqlite3 shell (SPEC §4, §5).
.load ./dist/vekter
CREATE TABLE docs (id INTEGER PRIMARY KEY, title TEXT, year INTEGER, embedding BLOB);
INSERT INTO docs VALUES
  (1, 'origin', 2019, faiss_encode('[0, 0]')),
  (2, 'east', 2021, faiss_encode('[1, 0]')),
  (3, 'far', 2022, faiss_encode('[5, 5]')),
  (4, 'north', 2023, faiss_encode('[0, 1]'));
CREATE VIRTUAL TABLE docs_idx USING faiss(content = docs, id = title);
-- shadow tables and sync triggers
SELECT type, name FROM sqlite_master WHERE name LIKE 'docs_idx%' ORDER BY type, name;
SELECT key, value FROM docs_idx_config WHERE key NOT IN ('build_id', 'snapshot_checksum', 'snapshot_seal', 'snapshot_key') ORDER BY key;
SELECT length(value) FROM docs_idx_config WHERE key = 'snapshot_seal';
-- hidden-column and table-valued forms, nearest first
SELECT rowid, id, distance FROM docs_idx WHERE query = '[0.9, 0]' AND k = 3;
SELECT rowid, id, distance FROM docs_idx(faiss_encode('[0.9, 0]'), 2);
SELECT d.title, i.distance FROM docs_idx('[0, 0.8]', 2) AS i JOIN docs AS d ON d.rowid = i.rowid;
-- a distance bound filters the k nearest
SELECT rowid, distance FROM docs_idx WHERE query = '[0.9, 0]' AND k = 3 AND distance < 1;
-- the filter is applied inside the search: still k rows
SELECT rowid, id FROM docs_idx WHERE query = '[0.9, 0]' AND k = 2 AND rowid IN (SELECT id FROM docs WHERE year > 2020);
EXPLAIN QUERY PLAN SELECT rowid FROM docs_idx WHERE query = '[0.9, 0]' AND k = 2 AND rowid IN (SELECT id FROM docs WHERE year > 2020);
-- writes to the content table reach the index
INSERT INTO docs VALUES (5, 'near', 2024, faiss_encode('[0.9, 0.1]'));
UPDATE docs SET embedding = faiss_encode('[9, 9]') WHERE id = 2;
DELETE FROM docs WHERE id = 4;
SELECT rowid, id, distance FROM docs_idx('[0.9, 0]', 10);
SELECT count(*) AS logged FROM docs_idx_changes;
-- faiss_search uses the faiss table over a content table
SELECT faiss_search_with_scores('main', 'docs', '[0.9, 0]', 2);
SELECT faiss_search('main', 'docs_idx', '[0.9, 0]', 2);
-- commands
INSERT INTO docs_idx(docs_idx) VALUES ('integrity-check');
INSERT INTO docs_idx(docs_idx) VALUES ('optimize');
SELECT count(*) AS logged_after_optimize FROM docs_idx_changes; -- 1: the newest entry stays
INSERT INTO docs_idx(docs_idx) VALUES ('rebuild');
SELECT database, name, content, column, factory, metric, dim, ntotal, pending, deleted, state FROM faiss_indexes;
-- without a query a faiss table lists the rows it indexes (Datasette's table page, sqlite-utils)
SELECT count(*) FROM docs_idx;
SELECT rowid, id, distance IS NULL FROM docs_idx;
SELECT rowid, id FROM docs_idx WHERE rowid IN (2, 4, 99);
-- the neighbours of stored rows (each left out of its own), many query vectors: one search each
SELECT neighbours_of, rowid, distance FROM docs_idx WHERE neighbours_of = 1 AND k = 2;
SELECT neighbours_of, rowid, distance FROM docs_idx WHERE neighbours_of IN (SELECT id FROM docs) AND k = 1;
SELECT faiss_decode(query), rowid, distance FROM docs_idx WHERE query IN ('[0, 0]', '[9, 9]') AND k = 1;
EXPLAIN QUERY PLAN SELECT neighbours_of, rowid FROM docs_idx WHERE neighbours_of IN (SELECT id FROM docs) AND k = 1 ORDER BY distance;
SELECT * FROM docs_idx WHERE neighbours_of IN (1, 2);
SELECT * FROM docs_idx WHERE neighbours_of = 1 AND query = '[1, 1]' AND k = 1;
-- a join runs the search once and looks the content rows up by key
EXPLAIN QUERY PLAN SELECT d.title, i.distance FROM docs_idx('[0, 0.8]', 2) AS i JOIN docs AS d ON d.rowid = i.rowid;
EXPLAIN QUERY PLAN SELECT d.title, i.distance FROM docs AS d JOIN docs_idx AS i ON d.rowid = i.rowid WHERE i.query = '[0, 0.8]' AND i.k = 2;
-- errors name the problem
SELECT * FROM docs_idx WHERE query = '[1, 1]';
SELECT * FROM docs_idx('[1, 1, 1]', 1);
SELECT * FROM docs_idx('[1, 1]', -1);
SELECT * FROM docs_idx('[1, 1]', 1, 'rerank=0');
INSERT INTO docs_idx(docs_idx) VALUES ('compact');
DELETE FROM docs_idx WHERE rowid = 1;
CREATE VIRTUAL TABLE x USING faiss(column = embedding);
CREATE VIRTUAL TABLE x USING faiss(content = docs, colour = 'red');
CREATE VIRTUAL TABLE x USING faiss(content = nope);
CREATE VIRTUAL TABLE x USING faiss(content = docs, column = vec);
CREATE VIRTUAL TABLE x USING faiss(content = docs, metric = hamming);
CREATE VIRTUAL TABLE x USING faiss(content = docs, factory = 'NoSuchIndex');
CREATE VIRTUAL TABLE x USING faiss(content = docs, factory = 'IVF64,Flat');
CREATE VIRTUAL TABLE x USING faiss(content = docs, dim = 3);
CREATE TABLE loose (a TEXT, embedding BLOB);
CREATE VIRTUAL TABLE x USING faiss(content = loose);
CREATE TABLE norowid (a INTEGER PRIMARY KEY, embedding BLOB) WITHOUT ROWID;
CREATE VIRTUAL TABLE x USING faiss(content = norowid);
CREATE VIEW v AS SELECT * FROM docs;
CREATE VIRTUAL TABLE x USING faiss(content = v);
SELECT count(*) AS leftovers FROM sqlite_master WHERE name LIKE 'x%';
-- rename and drop take the shadow tables and triggers along
ALTER TABLE docs_idx RENAME TO papers_idx;
SELECT type, name FROM sqlite_master WHERE name LIKE '%idx%' ORDER BY type, name;
INSERT INTO docs VALUES (6, 'new', 2025, faiss_encode('[0.9, 0]'));
SELECT rowid, id FROM papers_idx('[0.9, 0]', 1);
DROP TABLE papers_idx;
SELECT type, name FROM sqlite_master ORDER BY type, name;
-- faiss_indexes is for top-level SQL only: a view (or a trigger) cannot reach it
CREATE VIEW process_indexes AS SELECT * FROM faiss_indexes;
SELECT * FROM process_indexes;
DROP VIEW process_indexes;
