//! All SQL a `faiss` table runs on its content table (the change log's join aside): the one
//! pass over rows in rowid order that builds, trains and checks; vectors and ids of single rows
//! for searches; and, at creation, which column is the table's INTEGER PRIMARY KEY.
//!
//! [`read_vector`] is the one place a stored vector is parsed and checked against the index.

use std::fmt;

use crate::catalog::{id_value, object_type};
use crate::error::{bail, Error, Result};
use crate::json::IdValue;
use crate::sqlite::{quote_ident, Cell, Conn, StmtCache};
use crate::vector;

use super::config::Meta;

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

/// The content table of one `faiss` table, as one connection sees it.
pub(crate) struct Content<'a> {
    conn: Conn,
    schema: &'a str,
    meta: &'a Meta,
    /// Statements run on every search, prepared once per faiss table object.
    stmts: &'a StmtCache,
}

impl<'a> Content<'a> {
    pub(crate) fn new(conn: Conn, schema: &'a str, meta: &'a Meta, stmts: &'a StmtCache) -> Self {
        Content {
            conn,
            schema,
            meta,
            stmts,
        }
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
    pub(crate) fn row_context(&self, rowid: i64) -> String {
        format!("{}.{} of row {rowid}", self.meta.content, self.meta.column)
    }

    /// Every row with a non-NULL vector that `keep` accepts, in rowid order:
    /// `visit(rowid, result, buf)`, where on `Ok` the row's vector was appended to `buf` (the
    /// caller keeps or truncates it).
    pub(crate) fn scan(
        &self,
        mut keep: impl FnMut(i64) -> bool,
        buf: &mut Vec<f32>,
        mut visit: impl FnMut(i64, Result<(), Rejected>, &mut Vec<f32>) -> Result<()>,
    ) -> Result<()> {
        let column = quote_ident(&self.meta.column);
        let mut stmt = self.conn.prepare(&format!(
            "SELECT rowid, {column} FROM {} WHERE {column} IS NOT NULL ORDER BY rowid",
            self.table()
        ))?;
        while stmt.step()? {
            let Cell::Integer(rowid) = stmt.cell(0) else {
                continue;
            };
            if !keep(rowid) {
                continue;
            }
            let read = read_vector(stmt.cell(1), self.meta.dim, buf);
            visit(rowid, read, buf)?;
        }
        Ok(())
    }

    /// Rowids of the rows with a non-NULL vector, ascending.
    pub(crate) fn rowids(&self) -> Result<Vec<i64>> {
        let column = quote_ident(&self.meta.column);
        let mut stmt = self.conn.prepare(&format!(
            "SELECT rowid FROM {} WHERE {column} IS NOT NULL ORDER BY rowid",
            self.table()
        ))?;
        let mut rowids = Vec::new();
        while stmt.step()? {
            if let Cell::Integer(r) = stmt.cell(0) {
                rowids.push(r);
            }
        }
        Ok(rowids)
    }

    /// The dimension of the first stored vector, if any (what a new table's index takes).
    pub(crate) fn first_dim(&self) -> Result<Option<usize>> {
        let column = quote_ident(&self.meta.column);
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {column} FROM {} WHERE {column} IS NOT NULL ORDER BY rowid LIMIT 1",
            self.table()
        ))?;
        if !stmt.step()? {
            return Ok(None);
        }
        vector::parse(stmt.cell(0))
            .map(|v| Some(v.len()))
            .map_err(|e| e.context(format!("first vector of {}", self.meta.content)))
    }

    /// Vectors of `rowids` as this connection sees them (missing, NULL or unindexable rows left
    /// out).
    pub(crate) fn vectors_of(&self, rowids: &[i64]) -> Result<Vec<(i64, Vec<f32>)>> {
        let sql = format!(
            "SELECT {} FROM {} WHERE rowid = ?1",
            quote_ident(&self.meta.column),
            self.table()
        );
        self.stmts.with(self.conn, &sql, |stmt| {
            let mut out = Vec::with_capacity(rowids.len());
            for &rowid in rowids {
                stmt.bind_i64(1, rowid)?;
                if stmt.step()? {
                    let mut v = Vec::with_capacity(self.meta.dim);
                    if read_vector(stmt.cell(0), self.meta.dim, &mut v).is_ok() {
                        out.push((rowid, v));
                    }
                }
                stmt.reset();
            }
            Ok(out)
        })
    }

    /// The `id` of each rowid (the rowid itself when the table has no id column); `None` for
    /// a rowid this connection cannot see in the content table (a row deleted in a way no
    /// trigger saw, or one committed after this connection's read snapshot began).
    pub(crate) fn ids_of(&self, rowids: &[i64]) -> Result<Vec<Option<IdValue>>> {
        let id = self
            .meta
            .id_column
            .as_deref()
            .map_or("rowid".to_string(), quote_ident);
        let sql = format!("SELECT {id} FROM {} WHERE rowid = ?1", self.table());
        self.stmts.with(self.conn, &sql, |stmt| {
            let mut out = Vec::with_capacity(rowids.len());
            for &rowid in rowids {
                stmt.bind_i64(1, rowid)?;
                out.push(if stmt.step()? {
                    Some(id_value(stmt.cell(0))?)
                } else {
                    None
                });
                stmt.reset();
            }
            Ok(out)
        })
    }
}

/// The INTEGER PRIMARY KEY column of `table`, or an error saying why it cannot be a content
/// table: other rowids may change on VACUUM, which would silently re-point the index.
pub(crate) fn key_column(conn: Conn, schema: &str, table: &str) -> Result<String> {
    match object_type(conn, schema, table)?.as_deref() {
        Some("table") => {}
        Some(other) => bail!("content '{table}' is a {other}: it must be an ordinary table"),
        None => bail!(NotFound: "no content table named '{table}' in database '{schema}'"),
    }
    let content = format!("{}.{}", quote_ident(schema), quote_ident(table));
    if conn
        .prepare(&format!("SELECT rowid FROM {content} LIMIT 0"))
        .is_err()
    {
        bail!("content table '{table}' is WITHOUT ROWID: faiss tables index rowid tables only");
    }
    let mut stmt = conn.prepare(
        "SELECT name, upper(type) FROM pragma_table_info(?1, ?2) WHERE pk > 0 ORDER BY pk",
    )?;
    stmt.bind_text(1, table)?;
    stmt.bind_text(2, schema)?;
    let mut keys = Vec::new();
    while stmt.step()? {
        keys.push((
            stmt.text(0).unwrap_or_default(),
            stmt.text(1).unwrap_or_default(),
        ));
    }
    match keys.as_slice() {
        [(name, kind)] if kind == "INTEGER" => Ok(name.clone()),
        _ => bail!(
            "content table '{table}' has no INTEGER PRIMARY KEY, so VACUUM may renumber its \
             rowids and the index would point at the wrong rows: add a column such as \
             `id INTEGER PRIMARY KEY` (faiss_search() works without one)"
        ),
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
