//! All SQL a `faiss` table runs on its content table (the change log's join aside): the one
//! pass over the rows it indexes that builds, trains and checks; vectors, ids and rowids of
//! single rows for searches; and, at creation, how the table's rows are identified.
//!
//! [`read_vector`] is the one place a stored vector is parsed and checked against the index.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::catalog::{object_type, row_id_value};
use crate::error::{bail, Error, Result};
use crate::json::{hex, IdValue};
use crate::sqlite::{quote_ident, Cell, Conn, Stmt, StmtCache};
use crate::vector;

use super::config::Meta;
use super::key::{KeyPart, KeyShape, RowKey};

/// Rows one connection found in the content table, by rowid, and what it saw when it found
/// them: while the connection sees nothing change — the same data version, change count and
/// schema cookie — a row found there is still there, and a search hitting it again needs no
/// lookup. Anything else (a commit anywhere, a write of this connection, a schema change)
/// forgets them all, and nothing is remembered inside a write transaction (see `stamp`).
#[derive(Default)]
pub(crate) struct Verified {
    stamp: Option<(crate::registry::Seen, i64)>,
    rowids: HashSet<i64>,
}

/// At most this many rowids are remembered per faiss table and connection (a few MB).
const MAX_VERIFIED: usize = 1 << 18;

/// Why a stored vector cannot be indexed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Rejected {
    /// Not a vector: NULL, another type, NaN, a bad blob or JSON text.
    Invalid(Error),
    Dimension {
        got: usize,
        want: usize,
    },
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejected::Invalid(e) => f.write_str(e.message()),
            Rejected::Dimension { got, want } => {
                write!(f, "vector has {got} dimensions, the index has {want}")
            }
        }
    }
}

impl Rejected {
    pub(crate) fn into_error(self) -> Error {
        match self {
            Rejected::Invalid(e) => e,
            dimension => Error::invalid(dimension.to_string()),
        }
    }
}

/// Append the vector in `cell` to `out` if the index can take it (`dim` dimensions). On
/// rejection `out` is unchanged.
pub(crate) fn read_vector(cell: Cell, dim: usize, out: &mut Vec<f32>) -> Result<(), Rejected> {
    let got = vector::append(cell, out).map_err(Rejected::Invalid)?;
    if got != dim {
        out.truncate(out.len() - got);
        return Err(Rejected::Dimension { got, want: dim });
    }
    Ok(())
}

/// Where a row is: its handle, and its key when the table is keyed by columns.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowRef<'a> {
    pub(crate) handle: i64,
    pub(crate) key: Option<&'a RowKey>,
}

/// A row the scan found: its handle, key and partition value.
pub(crate) struct Found {
    pub(crate) handle: i64,
    pub(crate) key: Option<RowKey>,
    pub(crate) part: Option<KeyPart>,
}

/// Read a row's handle, key and partition value from `stmt`, whose columns start with the key
/// (`shape.select`) and end with the partition when there is one. `None`: a NULL key or
/// partition, which the index leaves out.
pub(crate) fn found(stmt: &Stmt, shape: &KeyShape, partition_at: Option<i32>) -> Option<Found> {
    let (handle, key) = match shape {
        KeyShape::Columns { columns, .. } => {
            let key = RowKey::from_cells((0..columns.len() as i32).map(|i| stmt.cell(i)))?;
            (key.handle(), Some(key))
        }
        _ => match stmt.cell(0) {
            Cell::Integer(rowid) => (rowid, None),
            _ => return None,
        },
    };
    let part = match partition_at {
        Some(at) => Some(KeyPart::partition(stmt.cell(at))?),
        None => None,
    };
    Some(Found { handle, key, part })
}

/// The content table of one `faiss` table, as one connection sees it.
pub(crate) struct Content<'a> {
    conn: Conn,
    schema: &'a str,
    meta: &'a Meta,
    /// Statements run on every search, prepared once per faiss table object.
    stmts: &'a StmtCache,
    /// Rows already found there (searches of a table that is not changing hit them again).
    verified: &'a std::cell::RefCell<Verified>,
}

impl<'a> Content<'a> {
    pub(crate) fn new(
        conn: Conn,
        schema: &'a str,
        meta: &'a Meta,
        stmts: &'a StmtCache,
        verified: &'a std::cell::RefCell<Verified>,
    ) -> Self {
        Content {
            conn,
            schema,
            meta,
            stmts,
            verified,
        }
    }

    /// What this connection sees now, for [`Verified`]; `None` when it cannot tell, and inside a
    /// write transaction: a ROLLBACK (or ROLLBACK TO) takes rows away without moving the data
    /// version or the change count, so rows found there are not remembered.
    fn stamp(&self) -> Option<(crate::registry::Seen, i64)> {
        if self.conn.in_write_transaction(self.schema) {
            return None;
        }
        let seen = crate::registry::Seen::now(self.conn, self.schema)?;
        let sql = format!("PRAGMA {}.schema_version", quote_ident(self.schema));
        let cookie = self.stmts.with(self.conn, &sql, |stmt| {
            stmt.step()?;
            Ok(match stmt.cell(0) {
                Cell::Integer(v) => v,
                _ => -1,
            })
        });
        Some((seen, cookie.ok()?))
    }

    /// True when a row's handle is its rowid and its `id`: rows keyed by rowid, `id` the rowid.
    fn id_is_handle(&self) -> bool {
        let id_is_rowid = match &self.meta.id_column {
            None => true,
            Some(column) => column.eq_ignore_ascii_case(&self.meta.pk),
        };
        self.meta.key == KeyShape::Rowid && id_is_rowid
    }

    /// Which of `handles` (rowids) the content table has now, in one statement for all of
    /// them; `None` where SQLite has no `json_each`, or when the content is not a table: a view
    /// in its place (a file from a stranger) would be scanned once per handle, without end for
    /// a recursive one, where the one-row lookup's `rowid = ?` is false before any scan.
    fn rowids_present(&self, handles: &[i64]) -> Option<HashSet<i64>> {
        let type_sql = format!(
            "SELECT type = 'table' FROM {}.sqlite_master WHERE name = ?1 COLLATE NOCASE \
             AND type IN ('table', 'view')",
            quote_ident(self.schema)
        );
        let is_table = self.stmts.with(self.conn, &type_sql, |stmt| {
            stmt.bind_text(1, &self.meta.content)?;
            Ok(stmt.step()? && stmt.cell(0) == Cell::Integer(1))
        });
        if !is_table.ok()? {
            return None;
        }
        let mut list = String::with_capacity(2 + handles.len() * 8);
        list.push('[');
        for (i, h) in handles.iter().enumerate() {
            if i > 0 {
                list.push(',');
            }
            list.push_str(&h.to_string());
        }
        list.push(']');
        let sql = format!(
            "SELECT j.value FROM json_each(?1) AS j JOIN {} AS t ON t.rowid = j.value",
            self.table()
        );
        self.stmts
            .with(self.conn, &sql, |stmt| {
                stmt.bind_text(1, &list)?;
                let mut present = HashSet::with_capacity(handles.len());
                while stmt.step()? {
                    if let Cell::Integer(v) = stmt.cell(0) {
                        present.insert(v);
                    }
                }
                Ok(present)
            })
            .ok()
    }

    /// `"schema"."table"`, for SQL.
    fn table(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(self.schema),
            quote_ident(&self.meta.content)
        )
    }

    /// `table.column of row N`, for errors about one row.
    pub(crate) fn row_context(&self, found: &Found) -> String {
        let row = match &found.key {
            Some(key) => format!("key {}", key_text(key)),
            None => format!("row {}", found.handle),
        };
        format!("{}.{} of {row}", self.meta.content, self.meta.column)
    }

    /// `WHERE` for the rows the index takes: a vector, and the predicate of a partial index.
    fn indexed_rows(&self) -> String {
        let mut sql = format!("t.{} IS NOT NULL", quote_ident(&self.meta.column));
        if let Some(p) = &self.meta.predicate {
            sql.push_str(&format!(" AND {}", p.sql(Some("t"))));
        }
        sql
    }

    /// `ORDER BY` for a pass over the table: rowid order, or the key's in a WITHOUT ROWID table.
    fn order(&self) -> &'static str {
        if self.meta.key.has_rowid() {
            " ORDER BY t.rowid"
        } else {
            ""
        }
    }

    /// The key columns, then `extra`, then the partition column, from `t`; the partition's index.
    fn select(&self, extra: &str) -> (String, Option<i32>) {
        let mut sql = self.meta.key.select("t");
        let mut width = self.meta.key.width();
        if !extra.is_empty() {
            sql.push_str(", ");
            sql.push_str(extra);
            width += 1;
        }
        let partition_at = self.meta.partition.as_ref().map(|p| {
            sql.push_str(&format!(", t.{}", quote_ident(p)));
            width as i32
        });
        (sql, partition_at)
    }

    /// Every row the index takes that `keep` accepts: `visit(row, result, buf)`, where on
    /// `Ok` the row's vector was appended to `buf` (the caller keeps or truncates it). Rows
    /// whose key or partition is NULL are left out.
    pub(crate) fn scan(
        &self,
        mut keep: impl FnMut(i64) -> bool,
        buf: &mut Vec<f32>,
        mut visit: impl FnMut(Found, Result<(), Rejected>, &mut Vec<f32>) -> Result<()>,
    ) -> Result<()> {
        // A whole scan of a file's content "table" must end: a view (the file may have put one
        // in the table's place, say a recursive one) could yield rows without end.
        if let Some(kind) = object_type(self.conn, self.schema, &self.meta.content)? {
            if kind != "table" {
                bail!(Corrupt:
                    "content '{}' is a {kind}, not a table: the database file was changed",
                    self.meta.content
                );
            }
        }
        let column = format!("t.{}", quote_ident(&self.meta.column));
        let (select, partition_at) = self.select(&column);
        let vector_at = self.meta.key.width() as i32;
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {select} FROM {} AS t WHERE {}{}",
            self.table(),
            self.indexed_rows(),
            self.order()
        ))?;
        while stmt.step()? {
            let Some(row) = found(&stmt, &self.meta.key, partition_at) else {
                continue;
            };
            if !keep(row.handle) {
                continue;
            }
            let read = read_vector(stmt.cell(vector_at), self.meta.dim, buf);
            visit(row, read, buf)?;
        }
        Ok(())
    }

    /// About how many rows [`scan`](Self::scan) will visit, for progress (`None` when the
    /// content is not a table): rows with a NULL vector are counted too, which keeps the count
    /// from reading the vectors (a `count(*)` walks only the table's pages).
    pub(crate) fn count(&self) -> Result<Option<u64>> {
        if object_type(self.conn, self.schema, &self.meta.content)?.as_deref() != Some("table") {
            return Ok(None);
        }
        let filter = match &self.meta.predicate {
            Some(p) => format!(" WHERE {}", p.sql(Some("t"))),
            None => String::new(),
        };
        let mut stmt = self.conn.prepare(&format!(
            "SELECT count(*) FROM {} AS t{filter}",
            self.table()
        ))?;
        stmt.step()?;
        Ok(match stmt.cell(0) {
            Cell::Integer(n) => u64::try_from(n).ok(),
            _ => None,
        })
    }

    /// Handles of the rows the index takes, in scan order.
    pub(crate) fn handles(&self) -> Result<Vec<i64>> {
        let (select, partition_at) = self.select("");
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {select} FROM {} AS t WHERE {}{}",
            self.table(),
            self.indexed_rows(),
            self.order()
        ))?;
        let mut handles = Vec::new();
        while stmt.step()? {
            handles.extend(found(&stmt, &self.meta.key, partition_at).map(|f| f.handle));
        }
        Ok(handles)
    }

    /// The dimension of the first vector the index would take (what a new table's index takes).
    pub(crate) fn first_dim(&self) -> Result<Option<usize>> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT t.{} FROM {} AS t WHERE {}{} LIMIT 1",
            quote_ident(&self.meta.column),
            self.table(),
            self.indexed_rows(),
            self.order()
        ))?;
        if !stmt.step()? {
            return Ok(None);
        }
        vector::parse(stmt.cell(0))
            .map(|v| Some(v.len()))
            .map_err(|e| e.context(format!("first vector of {}", self.meta.content)))
    }

    /// Bind `row` as parameter 1… of a lookup by [`KeyShape::matches`].
    fn bind(&self, stmt: &mut Stmt, row: RowRef) -> Result<bool> {
        match (row.key, &self.meta.key) {
            (Some(key), KeyShape::Columns { .. }) => key.bind(stmt, 1)?,
            (_, KeyShape::Columns { .. }) => return Ok(false),
            _ => stmt.bind_i64(1, row.handle)?,
        }
        Ok(true)
    }

    /// Vectors of `rows` as this connection sees them (missing, NULL or unindexable rows left
    /// out).
    pub(crate) fn vectors_of(&self, rows: &[RowRef]) -> Result<Vec<(i64, Vec<f32>)>> {
        let sql = format!(
            "SELECT {} FROM {} WHERE {}",
            quote_ident(&self.meta.column),
            self.table(),
            self.meta.key.matches(1)
        );
        self.stmts.with(self.conn, &sql, |stmt| {
            let mut out = Vec::with_capacity(rows.len());
            for &row in rows {
                if self.bind(stmt, row)? && stmt.step()? {
                    let mut v = Vec::with_capacity(self.meta.dim);
                    if read_vector(stmt.cell(0), self.meta.dim, &mut v).is_ok() {
                        out.push((row.handle, v));
                    }
                }
                stmt.reset();
            }
            Ok(out)
        })
    }

    /// Where each of `rows` is now: its current rowid (its handle in a WITHOUT ROWID table) and
    /// its `id` — the `id=` column, else the rowid or the key (a composite key as a JSON
    /// array). `None` for a row this connection cannot see in the content table (deleted in a
    /// way no trigger saw, or committed after this connection's read snapshot began).
    pub(crate) fn locate(&self, rows: &[RowRef]) -> Result<Vec<Option<(i64, IdValue)>>> {
        // A row keyed by rowid whose id is the rowid needs only to be there: one statement
        // for all the hits instead of one per hit.
        // Rows this connection found there since it last saw anything change are not looked up
        // again.
        if self.id_is_handle() {
            let handles: Vec<i64> = rows.iter().map(|r| r.handle).collect();
            let stamp = self.stamp();
            let unknown: Vec<i64> = {
                let mut verified = self.verified.borrow_mut();
                if stamp.is_none() || verified.stamp != stamp {
                    verified.rowids.clear();
                    verified.stamp = stamp;
                }
                let mut unknown: Vec<i64> = handles
                    .iter()
                    .copied()
                    .filter(|h| !verified.rowids.contains(h))
                    .collect();
                unknown.sort_unstable();
                unknown.dedup();
                unknown
            };
            let present = if unknown.is_empty() {
                Some(HashSet::new())
            } else {
                self.rowids_present(&unknown)
            };
            if let Some(present) = present {
                let mut verified = self.verified.borrow_mut();
                if verified.stamp.is_some() && verified.stamp == stamp {
                    let room = MAX_VERIFIED.saturating_sub(verified.rowids.len());
                    verified.rowids.extend(present.iter().copied().take(room));
                }
                return Ok(handles
                    .into_iter()
                    .map(|h| {
                        (present.contains(&h) || verified.rowids.contains(&h))
                            .then_some((h, IdValue::Integer(h)))
                    })
                    .collect());
            }
        }
        let id = match (&self.meta.id_column, &self.meta.key) {
            (Some(column), _) => quote_ident(column),
            (None, KeyShape::Columns { columns, .. }) if columns.len() == 1 => {
                quote_ident(&columns[0])
            }
            // JSON holds no BLOB: a BLOB part is given as its hex.
            (None, KeyShape::Columns { columns, .. }) => format!(
                "json_array({})",
                columns
                    .iter()
                    .map(|c| {
                        let c = quote_ident(c);
                        format!("CASE WHEN typeof({c}) = 'blob' THEN hex({c}) ELSE {c} END")
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (None, _) => "rowid".to_string(),
        };
        let rowid = if self.meta.key.has_rowid() {
            "rowid"
        } else {
            "NULL"
        };
        // The key too: a lookup by `=` also finds a row whose key only compares equal (another
        // case under COLLATE NOCASE), which may be a replacement no trigger reported. Only the
        // row whose key is the indexed one is this row.
        let sql = format!(
            "SELECT {rowid}, {id}, {} FROM {} AS t WHERE {}",
            self.meta.key.select("t"),
            self.table(),
            self.meta.key.matches(1)
        );
        self.stmts.with(self.conn, &sql, |stmt| {
            let mut out = Vec::with_capacity(rows.len());
            for &row in rows {
                let found = self.bind(stmt, row)?
                    && stmt.step()?
                    && match &self.meta.key {
                        KeyShape::Columns { columns, .. } => {
                            let cells = (0..columns.len() as i32).map(|i| stmt.cell(2 + i));
                            RowKey::from_cells(cells).is_some_and(|k| k.handle() == row.handle)
                        }
                        _ => true,
                    };
                out.push(if found {
                    let rowid = match stmt.cell(0) {
                        Cell::Integer(r) => r,
                        _ => row.handle,
                    };
                    Some((rowid, row_id_value(stmt.cell(1))?))
                } else {
                    None
                });
                stmt.reset();
            }
            Ok(out)
        })
    }

    /// The handles of the rows with these rowids (a `rowid = …` filter on a table keyed by
    /// columns); rows that are gone or have a NULL key are left out.
    pub(crate) fn handles_of_rowids(
        &self,
        rowids: impl Iterator<Item = i64>,
    ) -> Result<HashMap<i64, i64>> {
        let sql = format!(
            "SELECT {} FROM {} AS t WHERE t.rowid = ?1",
            self.meta.key.select("t"),
            self.table()
        );
        self.stmts.with(self.conn, &sql, |stmt| {
            let mut out = HashMap::new();
            for rowid in rowids {
                stmt.bind_i64(1, rowid)?;
                if stmt.step()? {
                    out.extend(found(stmt, &self.meta.key, None).map(|f| (rowid, f.handle)));
                }
                stmt.reset();
            }
            Ok(out)
        })
    }
}

/// A key as a message shows it: `'L0'`, `(1, 'L0')`; long keys are cut short (with their
/// length).
pub(crate) fn key_text(key: &RowKey) -> String {
    let parts: Vec<String> = key
        .0
        .iter()
        .map(|p| match p {
            KeyPart::Int(i) => i.to_string(),
            KeyPart::Real(x) => x.to_string(),
            KeyPart::Text(t) if t.len() > 64 => format!(
                "'{}…' ({} bytes)",
                String::from_utf8_lossy(&t[..48]),
                t.len()
            ),
            KeyPart::Text(t) => format!("'{}'", String::from_utf8_lossy(t)),
            KeyPart::Blob(b) if b.len() > 32 => {
                format!("X'{}…' ({} bytes)", hex(&b[..16]), b.len())
            }
            KeyPart::Blob(b) => format!("X'{}'", hex(b)),
        })
        .collect();
    match parts.as_slice() {
        [one] => one.clone(),
        _ => format!("({})", parts.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_vectors_are_parsed_then_checked_in_one_place() {
        let blob = vector::encode(&[1.0, 2.0]);
        let mut out = vec![9.0];
        assert_eq!(read_vector(Cell::Blob(&blob), 2, &mut out), Ok(()));
        assert_eq!(out, vec![9.0, 1.0, 2.0]);
        let wrong = read_vector(Cell::Text(b"[1, 2, 3]"), 2, &mut out).unwrap_err();
        assert_eq!(
            wrong.to_string(),
            "vector has 3 dimensions, the index has 2"
        );
        assert!(matches!(
            read_vector(Cell::Text(b"[1, NaN]"), 2, &mut out),
            Err(Rejected::Invalid(_))
        ));
        assert_eq!(
            out,
            vec![9.0, 1.0, 2.0],
            "rejections leave the buffer as it was"
        );
    }
}
