//! The user's tables: finding the schema a `database` argument names, checking a table has
//! the columns an index needs, and reading its ids and vectors in one pass.

use std::hash::Hasher;

use crate::error::{bail, Error, Result};
use crate::json::IdValue;
use crate::sqlite::{quote_ident, Cell, Conn};
use crate::vector;

/// The schema of this connection that `database` names: a schema name (`main`, `temp`, an
/// attached alias), or the file stem of an attached database file (`blog` for `…/blog.db`,
/// as Datasette names databases).
pub fn resolve_schema(conn: Conn, database: &str) -> Result<String> {
    if conn.db_filename(database).is_some() {
        return Ok(database.to_string());
    }
    let mut known = Vec::new();
    for (name, file) in database_files(conn)? {
        let stem = std::path::Path::new(&file)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned());
        if stem.as_deref() == Some(database) {
            return Ok(name);
        }
        known.push(match stem {
            Some(stem) if stem != name => format!("{name} ({stem})"),
            _ => name,
        });
    }
    bail!(
        "no database named '{database}' on this connection (known: {})",
        known.join(", ")
    )
}

/// The `faiss` table that `faiss_search(…, table, …)` should use: `table` itself when it is
/// one, or the single `faiss` table over it. `None`: a plain table (exact index).
pub fn faiss_table_for(conn: Conn, schema: &str, table: &str) -> Result<Option<String>> {
    let master = format!("{}.sqlite_master", quote_ident(schema));
    let mut stmt = conn.prepare(&format!(
        "SELECT name, sql FROM {master} WHERE type = 'table' AND name = ?1 COLLATE NOCASE"
    ))?;
    stmt.bind_text(1, table)?;
    if stmt.step()? {
        let sql = stmt.text(1).unwrap_or_default().to_ascii_lowercase();
        let words: Vec<&str> = sql
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .collect();
        if words.windows(2).any(|w| w == ["using", "faiss"]) && sql.starts_with("create virtual") {
            return Ok(stmt.text(0));
        }
    }
    // Each faiss table keeps an insert trigger `<name>_vekter_ai` on its content table.
    let mut stmt = conn.prepare(&format!(
        "SELECT v.name FROM {master} AS t JOIN {master} AS v \
         ON v.type = 'table' AND v.name = substr(t.name, 1, length(t.name) - 10) \
         WHERE t.type = 'trigger' AND t.tbl_name = ?1 COLLATE NOCASE \
         AND substr(t.name, -10) = '_vekter_ai' ORDER BY 1"
    ))?;
    stmt.bind_text(1, table)?;
    let mut names = Vec::new();
    while stmt.step()? {
        names.extend(stmt.text(0));
    }
    match names.len() {
        0 => Ok(None),
        1 => Ok(names.pop()),
        _ => bail!(
            "table '{table}' has {} faiss indexes ({}): name the one to search",
            names.len(),
            names.join(", ")
        ),
    }
}

/// (schema name, file path) of every database of the connection; "" for in-memory ones.
pub fn database_files(conn: Conn) -> Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare("SELECT name, file FROM pragma_database_list")?;
    let mut out = Vec::new();
    while stmt.step()? {
        out.push((
            stmt.text(0).unwrap_or_default(),
            stmt.text(1).unwrap_or_default(),
        ));
    }
    Ok(out)
}

/// What kind of object `table` is in `schema`, if it exists: `table` or `view`.
pub fn object_type(conn: Conn, schema: &str, table: &str) -> Result<Option<String>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT type FROM {}.sqlite_master WHERE name = ?1 COLLATE NOCASE \
         AND type IN ('table', 'view')",
        quote_ident(schema)
    ))?;
    stmt.bind_text(1, table)?;
    Ok(if stmt.step()? { stmt.text(0) } else { None })
}

/// The column names of `table`, in order.
pub fn columns(conn: Conn, schema: &str, table: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_xinfo(?1, ?2)")?;
    stmt.bind_text(1, table)?;
    stmt.bind_text(2, schema)?;
    let mut names = Vec::new();
    while stmt.step()? {
        names.extend(stmt.text(0));
    }
    Ok(names)
}

/// Fail unless `schema.table` exists and has every column in `needed`.
pub fn check_table(conn: Conn, schema: &str, table: &str, needed: &[&str]) -> Result<()> {
    if object_type(conn, schema, table)?.is_none() {
        bail!("no table named '{table}' in database '{schema}'");
    }
    let have = columns(conn, schema, table)?;
    for column in needed {
        if !have.iter().any(|c| c.eq_ignore_ascii_case(column)) {
            bail!(
                "table '{table}' has no column '{column}' (it has: {})",
                have.join(", ")
            );
        }
    }
    Ok(())
}

/// Every row's id and vector, in rowid order, with a fingerprint of exactly what was read.
#[derive(Debug, Default)]
pub struct Rows {
    pub ids: Vec<IdValue>,
    /// Row-major, `ids.len() × dim`.
    pub vectors: Vec<f32>,
    /// 0 when no row has a vector.
    pub dim: usize,
    /// Changes whenever an id, a vector, the row order or the set of rows changes.
    pub fingerprint: u64,
}

/// Read `id` and `embedding` of every row of `schema.table`. Rows whose embedding is NULL
/// have no vector and are skipped.
pub fn read_rows(conn: Conn, schema: &str, table: &str) -> Result<Rows> {
    check_table(conn, schema, table, &["id", "embedding"])?;
    let base = format!(
        "SELECT \"id\", \"embedding\" FROM {}.{}",
        quote_ident(schema),
        quote_ident(table)
    );
    // Views and WITHOUT ROWID tables have no rowid: their natural order is kept.
    let mut stmt = conn
        .prepare(&format!("{base} ORDER BY rowid"))
        .or_else(|_| conn.prepare(&base))?;
    let mut rows = Rows::default();
    let mut hash = std::hash::DefaultHasher::new();
    let mut row = 0usize;
    while stmt.step()? {
        row += 1;
        let id_cell = stmt.cell(0);
        let vector_cell = stmt.cell(1);
        hash_cell(&mut hash, id_cell);
        hash_cell(&mut hash, vector_cell);
        if vector_cell == Cell::Null {
            continue;
        }
        let where_ = || format!("table '{table}', row {row} (id {})", id_text(id_cell));
        let dim = vector::append(vector_cell, &mut rows.vectors)
            .map_err(|e| e.context(format!("{}: embedding", where_())))?;
        if rows.dim == 0 {
            rows.dim = dim;
        } else if dim != rows.dim {
            bail!(
                "{}: embedding has {dim} dimensions but earlier rows have {}",
                where_(),
                rows.dim
            );
        }
        rows.ids
            .push(id_value(id_cell).map_err(|e| e.context(where_()))?);
    }
    rows.fingerprint = hash.finish();
    Ok(rows)
}

fn hash_cell(hash: &mut impl Hasher, cell: Cell) {
    match cell {
        Cell::Null => hash.write_u8(0),
        Cell::Integer(i) => {
            hash.write_u8(1);
            hash.write_i64(i);
        }
        Cell::Real(x) => {
            hash.write_u8(2);
            hash.write_u64(x.to_bits());
        }
        Cell::Text(b) => {
            hash.write_u8(3);
            hash.write_usize(b.len());
            hash.write(b);
        }
        Cell::Blob(b) => {
            hash.write_u8(4);
            hash.write_usize(b.len());
            hash.write(b);
        }
    }
}

/// An id cell as the value returned to SQL.
pub fn id_value(cell: Cell) -> Result<IdValue> {
    Ok(match cell {
        Cell::Null => IdValue::Null,
        Cell::Integer(i) => IdValue::Integer(i),
        Cell::Real(x) => IdValue::Real(x),
        Cell::Text(b) => IdValue::Text(String::from_utf8_lossy(b).into()),
        Cell::Blob(_) => return Err(Error::new("id is a BLOB: ids must be INTEGER or TEXT")),
    })
}

fn id_text(cell: Cell) -> String {
    match cell {
        Cell::Integer(i) => i.to_string(),
        Cell::Real(x) => x.to_string(),
        Cell::Text(b) => format!("'{}'", String::from_utf8_lossy(b)),
        other => other.type_name().to_string(),
    }
}
