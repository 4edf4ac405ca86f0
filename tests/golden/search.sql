-- faiss_search / faiss_search_with_scores / faiss_agg over a plain table (SPEC §3).
.load ./dist/vekter
CREATE TABLE embeddings (id INTEGER PRIMARY KEY, embedding BLOB);
INSERT INTO embeddings VALUES
  (1, faiss_encode('[0, 0]')),
  (2, faiss_encode('[0.5, 0]')),
  (3, faiss_encode('[6, 0]')),
  (4, faiss_encode('[0, 0.5]'));
SELECT faiss_search('main', 'embeddings', faiss_encode('[0, 0]'), 2);
SELECT faiss_search_with_scores('main', 'embeddings', '[0.5, 0]', 2);
-- ties keep rowid order; k beyond the table returns every row, no padding
SELECT faiss_search_with_scores('main', 'embeddings', '[0, 0]', 100);
-- the datasette-faiss join through json_each
SELECT e.id, json_extract(j.value, '$[1]') AS score
FROM json_each(faiss_search_with_scores('main', 'embeddings', '[6, 1]', 2)) AS j
JOIN embeddings AS e ON e.id = json_extract(j.value, '$[0]');
-- the index follows the table: insert, update, delete
INSERT INTO embeddings VALUES (5, faiss_encode('[6, 1]'));
SELECT faiss_search('main', 'embeddings', '[6, 1]', 1);
UPDATE embeddings SET embedding = faiss_encode('[100, 100]') WHERE id = 5;
SELECT faiss_search('main', 'embeddings', '[6, 1]', 1);
DELETE FROM embeddings WHERE id = 3;
SELECT faiss_search('main', 'embeddings', '[6, 1]', 1);
-- k as text (how Datasette passes form parameters) and as an integral real
SELECT faiss_search('main', 'embeddings', '[0, 0]', '2'), faiss_search('main', 'embeddings', '[0, 0]', 2.0);
-- text ids (the llm tool's embeddings table) and JSON-vector rows
CREATE TABLE llm (id TEXT PRIMARY KEY, embedding BLOB);
INSERT INTO llm VALUES ('café', '[1, 1]'), ('b', faiss_encode('[2, 2]')), ('quote"d', NULL);
SELECT faiss_search_with_scores('main', 'llm', '[1, 1.5]', 5);
-- an empty table has no neighbours
CREATE TABLE empty (id INTEGER, embedding BLOB);
SELECT faiss_search('main', 'empty', '[1, 2, 3]', 3);
-- temp schema and the database named by its schema
CREATE TEMP TABLE t (id INTEGER, embedding BLOB);
INSERT INTO t VALUES (7, faiss_encode('[1]')), (8, faiss_encode('[3]'));
SELECT faiss_search('temp', 't', '[2.9]', 5);
-- a fifth argument names the metric; every score is a distance, smaller is nearer:
-- squared L2, 1 - cosine similarity, the negated inner product
CREATE TABLE dirs (id TEXT, embedding BLOB);
INSERT INTO dirs VALUES ('east', '[1, 0]'), ('north', '[0, 2]'), ('west', '[-3, 0]');
SELECT faiss_search_with_scores('main', 'dirs', '[2, 0]', 3);
SELECT faiss_search_with_scores('main', 'dirs', '[2, 0]', 3, 'l2');
SELECT faiss_search_with_scores('main', 'dirs', '[2, 0]', 3, 'cosine');
SELECT faiss_search_with_scores('main', 'dirs', '[2, 0]', 3, 'ip');
SELECT faiss_search('main', 'dirs', '[2, 0]', 3, 'manhattan');
-- a view is searched as a table
CREATE VIEW east_west AS SELECT * FROM dirs WHERE id != 'north';
SELECT faiss_search('main', 'east_west', '[0, 1]', 3);
-- aggregates: filtered search in plain SQL
SELECT faiss_agg(id, embedding, '[0, 0]', 2) FROM embeddings WHERE id != 1;
SELECT faiss_agg_with_scores(id, embedding, '[0, 0]', 10) FROM embeddings;
SELECT faiss_agg(id, embedding, '[0, 0]', 2) FROM embeddings WHERE id > 100;
SELECT id % 2 AS parity, faiss_agg(id, embedding, '[0, 0]', 1) FROM embeddings GROUP BY parity;
-- errors name the problem
SELECT faiss_search('nosuchdb', 'embeddings', '[0, 0]', 1);
SELECT faiss_search('main', 'nosuchtable', '[0, 0]', 1);
CREATE TABLE noemb (id INTEGER, vec BLOB);
SELECT faiss_search('main', 'noemb', '[0, 0]', 1);
SELECT faiss_search('main', 'embeddings', '[0, 0, 0]', 1);
SELECT faiss_search('main', 'embeddings', '[0, 0]', 0);
SELECT faiss_search('main', 'embeddings', '[0, 0]', -5);
SELECT faiss_search('main', 'embeddings', '[0, 0]', 1.5);
SELECT faiss_search('main', 'embeddings', '[0, 0]', 'ten');
SELECT faiss_search('main', 'embeddings', '[0, 0]', NULL);
SELECT faiss_search('main', 'embeddings', '[0, 0]', 100001);
SELECT faiss_search('main', 'embeddings', NULL, 1);
SELECT faiss_search('main', 'embeddings', '[NaN, 0]', 1);
SELECT faiss_search(NULL, 'embeddings', '[0, 0]', 1);
SELECT faiss_search('main', 42, '[0, 0]', 1);
SELECT faiss_search('main', 'embeddings', '[0, 0]');
CREATE TABLE mixed (id INTEGER, embedding BLOB);
INSERT INTO mixed VALUES (1, faiss_encode('[1, 2]')), (2, faiss_encode('[1, 2, 3]'));
SELECT faiss_search('main', 'mixed', '[1, 2]', 1);
CREATE TABLE blobids (id BLOB, embedding BLOB);
INSERT INTO blobids VALUES (X'01', faiss_encode('[1]'));
SELECT faiss_search('main', 'blobids', '[1]', 1);
SELECT faiss_agg(id, embedding, '[0, 0]', 0) FROM embeddings;
SELECT faiss_agg(id, embedding, '[0, 0, 0]', 1) FROM embeddings;
