//! `faiss_integrity_check([database,] table)`: the `integrity-check` command as a function, so
//! that it runs on read-only connections too (`mode=ro`, `PRAGMA query_only`, a read replica),
//! where the command, an INSERT, cannot. It only reads.

use crate::args::parse_name;
use crate::catalog::resolve_schema;
use crate::engine::{self, commands, LiveTable};
use crate::error::{bail, Kind, Result};
use crate::registry::ConnState;
use crate::sqlite::{Context, Output, ValueRef};

/// `'ok'`, or what is wrong (the command's message) as text, like `PRAGMA integrity_check`.
/// Failures that are not damage (a busy database, an unknown table) are errors.
pub(crate) fn integrity_check(
    ctx: &Context,
    state: &ConnState,
    args: &[ValueRef],
) -> Result<Output> {
    let (database, table) = match args {
        [table] => ("main", parse_name(table.cell(), "table")?),
        [database, table] => (
            parse_name(database.cell(), "database")?,
            parse_name(table.cell(), "table")?,
        ),
        _ => bail!("faiss_integrity_check takes ([database,] table)"),
    };
    let conn = ctx.conn();
    let schema = resolve_schema(conn, database)?;
    // One read snapshot for the stored snapshot, the change log and the content table.
    let _held = conn.hold_read(&schema)?;
    let Some((name, meta)) = engine::resolve(conn, &schema, table, None)? else {
        bail!(
            "no faiss table named '{table}' or over table '{table}' in database '{schema}' \
             (faiss_indexes lists them)"
        );
    };
    let live = LiveTable::with_meta(conn, &schema, &name, meta);
    match commands::integrity_check(&live, state) {
        Ok(()) => Ok(Output::Text("ok".to_string())),
        Err(e) if e.kind() == Kind::Corrupt => Ok(Output::Text(e.message().to_string())),
        Err(e) => Err(e.in_table(&name)),
    }
}
