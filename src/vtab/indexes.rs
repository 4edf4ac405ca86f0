//! `faiss_indexes` (SPEC §5): an eponymous table listing the indexes this process holds for
//! the databases of the querying connection.

use std::sync::Arc;

use crate::catalog::database_files;
use crate::engine::{shared, Meta};
use crate::error::Result;
use crate::plain;
use crate::registry::{ConnState, DbKey, IndexKey};
use crate::sqlite::{Conn, Context, Cursor, IndexInfo, Output, Plan, VTab, ValueRef};

pub(crate) struct IndexesTable {
    conn: Conn,
    state: Arc<ConnState>,
}

const COLUMNS: &str = "CREATE TABLE x(database, name, content, column, factory, metric, dim, \
                       ntotal, bytes, pending, deleted, loads, state)";

impl VTab for IndexesTable {
    type Aux = Arc<ConnState>;
    type Cursor = IndexesCursor;
    const SHADOW_TABLES: &'static [&'static str] = &[];
    const CREATES: bool = false;
    // What the process holds is for the operator's own SQL, not for a view or trigger that a
    // database file brings along.
    const DIRECT_ONLY: bool = true;

    fn create(conn: Conn, aux: &Arc<ConnState>, args: &[String]) -> Result<(String, Self)> {
        Self::connect(conn, aux, args)
    }

    fn connect(conn: Conn, aux: &Arc<ConnState>, _: &[String]) -> Result<(String, Self)> {
        Ok((
            COLUMNS.to_string(),
            IndexesTable {
                conn,
                state: aux.clone(),
            },
        ))
    }

    fn best_index(&self, info: &mut IndexInfo) -> Result<Plan> {
        info.set_plan(0, "", 1000.0, 10);
        Ok(Plan::Use)
    }

    fn open(&self) -> Result<IndexesCursor> {
        Ok(IndexesCursor::default())
    }
}

#[derive(Default)]
pub(crate) struct IndexesCursor {
    rows: Vec<Vec<Output>>,
    pos: usize,
}

impl Cursor for IndexesCursor {
    type Table = IndexesTable;

    fn filter(
        &mut self,
        table: &IndexesTable,
        _: i32,
        _: Option<&str>,
        _: &[ValueRef],
    ) -> Result<()> {
        let files = database_files(table.conn)?;
        // Which schema of this connection an index's database is, if any.
        let database = |key: &IndexKey| match &key.db {
            DbKey::File(path) => files.iter().find(|(_, f)| f == path).map(|f| f.0.clone()),
            DbKey::Private { conn, schema } if *conn == table.state.id() => Some(schema.clone()),
            DbKey::Private { .. } => None,
        };
        let text = |s: &str| Output::Text(s.to_string());
        let describe = |meta: Option<&Meta>, name: &str| match meta {
            Some(m) => [
                text(&m.content),
                text(&m.column),
                text(&m.factory),
                text(m.metric.name()),
            ],
            None => [text(name), text("embedding"), text("Flat"), text("l2")],
        };
        let mut rows = Vec::new();
        for l in plain::list() {
            let Some(db) = database(&l.key) else { continue };
            let mut row = vec![Output::Text(db), text(&l.key.name)];
            row.extend(describe(None, &l.key.name));
            row.extend([
                Output::Integer(l.dim as i64),
                Output::Integer(l.ntotal as i64),
                Output::Integer(l.bytes as i64),
                Output::Integer(0),
                Output::Integer(0),
                Output::Integer(0),
                text("exact, from table"),
            ]);
            rows.push(row);
        }
        for l in shared::list() {
            let Some(db) = database(&l.key) else { continue };
            let mut row = vec![Output::Text(db), text(&l.key.name)];
            let mut described = describe(l.meta.as_ref(), &l.key.name);
            if let (Some(m), Some(_)) = (&l.meta, &l.refused) {
                described[2] = text(&format!("Flat (stand-in for {})", m.factory));
            }
            row.extend(described);
            row.extend([
                Output::Integer(l.dim as i64),
                Output::Integer(l.ntotal as i64),
                Output::Integer(l.bytes as i64),
                Output::Integer(l.pending),
                Output::Integer(l.dead as i64),
                Output::Integer(l.loads as i64),
                match (&l.meta, &l.refused) {
                    (_, Some(why)) => text(&format!(
                        "stand-in: an exact index built in memory from the content table, \
                         because {why}"
                    )),
                    (Some(_), None) => text("live"),
                    (None, None) => text("exact, from table"),
                },
            ]);
            rows.push(row);
        }
        // Long work in progress (a create, rebuild, optimize or large catch-up): its table is
        // listed once more, with how far it is.
        for r in crate::progress::running() {
            let Some(db) = r
                .file
                .as_ref()
                .and_then(|f| files.iter().find(|(_, p)| p == f))
            else {
                continue;
            };
            let mut row = vec![text(&db.0), text(&r.table)];
            row.extend(std::iter::repeat_n(Output::Null, 10));
            row.push(text(&r.state));
            rows.push(row);
        }
        self.rows = rows;
        self.rows
            .sort_by(|a, b| format!("{:?}", &a[..2]).cmp(&format!("{:?}", &b[..2])));
        self.pos = 0;
        Ok(())
    }

    fn next(&mut self) -> Result<()> {
        self.pos += 1;
        Ok(())
    }

    fn eof(&self) -> bool {
        self.pos >= self.rows.len()
    }

    fn column(&self, _: &IndexesTable, ctx: &Context, i: i32) -> Result<()> {
        ctx.set(self.rows[self.pos].get(i as usize).unwrap_or(&Output::Null));
        Ok(())
    }

    fn rowid(&self, _: &IndexesTable) -> Result<i64> {
        Ok(self.pos as i64)
    }
}

pub(crate) fn register(conn: Conn, state: &Arc<ConnState>) -> Result<()> {
    crate::sqlite::create_module::<IndexesTable>(conn, "faiss_indexes", state.clone())
}
