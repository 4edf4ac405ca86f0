//! What the connection's schemas hold: which schema a `database` argument names, which tables
//! and columns exist, and ids as SQL returns them (read from `sqlite_master` and the table
//! pragmas).

use crate::error::{bail, Error, Kind, Result};
use crate::json::IdValue;
use crate::sqlite::{quote_ident, Cell, Conn};

/// The schema of this connection that `database` names: a schema name (`main`, `temp`, an
/// attached alias), or the file stem of an attached database file (`blog` for `…/blog.db`,
/// as Datasette names databases).
pub(crate) fn resolve_schema(conn: Conn, database: &str) -> Result<String> {
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
    bail!(NotFound:
        "no database named '{database}' on this connection (known: {})",
        known.join(", ")
    )
}

/// (schema name, file path) of every database of the connection; "" for in-memory ones.
pub(crate) fn database_files(conn: Conn) -> Result<Vec<(String, String)>> {
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
pub(crate) fn object_type(conn: Conn, schema: &str, table: &str) -> Result<Option<String>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT type FROM {}.sqlite_master WHERE name = ?1 COLLATE NOCASE \
         AND type IN ('table', 'view')",
        quote_ident(schema)
    ))?;
    stmt.bind_text(1, table)?;
    Ok(if stmt.step()? { stmt.text(0) } else { None })
}

/// The column names of `table`, in order.
pub(crate) fn columns(conn: Conn, schema: &str, table: &str) -> Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_xinfo(?1, ?2)")?;
    stmt.bind_text(1, table)?;
    stmt.bind_text(2, schema)?;
    let mut names = Vec::new();
    while stmt.step()? {
        names.extend(stmt.text(0));
    }
    Ok(names)
}

/// The declared type of `table.column` ("" when none).
pub(crate) fn declared_type(conn: Conn, schema: &str, table: &str, column: &str) -> Result<String> {
    let mut stmt =
        conn.prepare("SELECT type FROM pragma_table_xinfo(?1, ?2) WHERE name = ?3 COLLATE NOCASE")?;
    stmt.bind_text(1, table)?;
    stmt.bind_text(2, schema)?;
    stmt.bind_text(3, column)?;
    Ok(if stmt.step()? {
        stmt.text(0).unwrap_or_default()
    } else {
        String::new()
    })
}

/// Fail unless `schema.table` exists and has every column in `needed`.
pub(crate) fn check_table(conn: Conn, schema: &str, table: &str, needed: &[&str]) -> Result<()> {
    if object_type(conn, schema, table)?.is_none() {
        bail!(NotFound: "no table named '{table}' in database '{schema}'");
    }
    let have = columns(conn, schema, table)?;
    for column in needed {
        if !have.iter().any(|c| c.eq_ignore_ascii_case(column)) {
            bail!(NotFound:
                "table '{table}' has no column '{column}' (it has: {})",
                have.join(", ")
            );
        }
    }
    Ok(())
}

/// The column of `have` (the columns of `table`) named `column` in any case, as the table spells
/// it; `what` says what the column is for in the error.
pub(crate) fn find_column(
    have: &[String],
    table: &str,
    column: &str,
    what: &str,
) -> Result<String> {
    have.iter()
        .find(|c| c.eq_ignore_ascii_case(column))
        .cloned()
        .ok_or_else(|| {
            Error::of(
                Kind::NotFound,
                format!(
                    "{what} column '{column}' is not in table '{table}' (it has: {})",
                    have.join(", ")
                ),
            )
        })
}

/// An id cell as the value returned to SQL.
pub(crate) fn id_value(cell: Cell) -> Result<IdValue> {
    Ok(match cell {
        Cell::Null => IdValue::Null,
        Cell::Integer(i) => IdValue::Integer(i),
        Cell::Real(x) => IdValue::Real(x),
        Cell::Text(b) => IdValue::Text(String::from_utf8_lossy(b).into()),
        Cell::Blob(_) => bail!("id is a BLOB: ids must be INTEGER or TEXT"),
    })
}

/// The `id` a faiss table returns for a row: as [`id_value`], and a BLOB key as itself.
pub(crate) fn row_id_value(cell: Cell) -> Result<IdValue> {
    match cell {
        Cell::Blob(b) => Ok(IdValue::Blob(b.into())),
        other => id_value(other),
    }
}
