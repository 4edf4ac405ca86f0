-- vekter seed example: 10,000 pseudo-random 64-d vectors, vector 1 made close to vector 0,
-- an exact FAISS index (a faiss table with the default Flat factory), and the 3 nearest
-- neighbours of rows 0 and 1.
-- Run it with `make demo` (or: sqlite3 :memory: < sql/demo.sql).
.load ./dist/vekter
.bail on

CREATE TABLE embeddings (id INTEGER PRIMARY KEY, embedding BLOB);

-- Deterministic values in [-1, 1): an integer hash of (row, dimension), written with the
-- operators SQLite has (a XOR b = (a | b) - (a & b)).
WITH RECURSIVE
  ids(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM ids WHERE i < 9999),
  dims(d) AS (SELECT 0 UNION ALL SELECT d + 1 FROM dims WHERE d < 63),
  h0 AS (SELECT i, d, i * 64 + d + 1 AS x FROM ids, dims),
  h1 AS (SELECT i, d, ((((x >> 16) | x) - ((x >> 16) & x)) * 73244475) % 4294967296 AS x FROM h0),
  h2 AS (SELECT i, d, ((((x >> 16) | x) - ((x >> 16) & x)) * 73244475) % 4294967296 AS x FROM h1),
  h3 AS (SELECT i, d, ((x >> 16) | x) - ((x >> 16) & x) AS x FROM h2 ORDER BY i, d)
INSERT INTO embeddings (id, embedding)
SELECT i, faiss_encode('[' || group_concat(x / 2147483648.0 - 1.0, ', ') || ']')
FROM h3 GROUP BY i;

-- Row 1 becomes row 0 plus a little noise (±0.02 per dimension).
UPDATE embeddings SET embedding = (
  SELECT faiss_encode('[' || group_concat(value + 0.01 * ((key * 7) % 5 - 2), ', ') || ']')
  FROM json_each((SELECT faiss_decode(embedding) FROM embeddings WHERE id = 0))
) WHERE id = 1;

SELECT 'vekter ' || vekter_version() || ', FAISS ' || json_extract(vekter_debug(), '$.faiss')
       || ', ' || count(*) || ' vectors of ' || (length(embedding) / 4) || ' dimensions'
FROM embeddings;

-- The index: kept in sync with the table from now on, stored in the database.
CREATE VIRTUAL TABLE embeddings_idx USING faiss(content = embeddings);

.print ''
.print 'The 3 nearest neighbours of rows 0 and 1 (exact index, squared L2 distance):'
.mode box
SELECT q.id AS query_row,
       row_number() OVER (PARTITION BY q.id ORDER BY n.distance) AS rank,
       n.rowid AS neighbour,
       printf('%.4f', n.distance) AS distance
FROM embeddings AS q
JOIN embeddings_idx AS n ON n.query = q.embedding AND n.k = 3
WHERE q.id IN (0, 1)
ORDER BY q.id, rank;
