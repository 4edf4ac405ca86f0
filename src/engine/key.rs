//! How a `faiss` table names the content rows it indexes, so that no VACUUM can make it point
//! at the wrong row.
//!
//! - [`KeyShape::Rowid`]: the content table has an INTEGER PRIMARY KEY, an alias of the rowid,
//!   which VACUUM keeps. The row's handle is its rowid.
//! - [`KeyShape::UnstableRowid`]: a rowid table with no declared key (what sqlite-utils makes).
//!   The handle is the rowid, which VACUUM may renumber: the index keeps a hash of each indexed
//!   vector and checks them against the table after every schema change (VACUUM changes the
//!   schema cookie), refilling itself when a rowid no longer holds the vector it indexed.
//! - [`KeyShape::Columns`]: any other PRIMARY KEY (TEXT, composite, WITHOUT ROWID). The change
//!   log records key values; the handle is a fixed 64-bit hash of the key ([`RowKey::handle`]),
//!   and the index keeps handle → key to find the row again.

use crate::catalog::object_type;
use crate::error::{bail, Result};
use crate::sqlite::{quote_ident, Cell, Conn, Stmt};

use super::snapshot::checksum::hash64;
use super::snapshot::DEAD_SLOT;

/// How the content table's rows are identified (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyShape {
    Rowid,
    UnstableRowid,
    Columns {
        columns: Vec<String>,
        without_rowid: bool,
    },
}

impl KeyShape {
    /// The name stored in config (`key`).
    pub(crate) fn name(&self) -> &'static str {
        match self {
            KeyShape::Rowid => "rowid",
            KeyShape::UnstableRowid => "rowid-unstable",
            KeyShape::Columns { .. } => "columns",
        }
    }

    pub(crate) fn parse(name: &str, columns: Vec<String>, without_rowid: bool) -> Result<Self> {
        Ok(match name {
            "rowid" => KeyShape::Rowid,
            "rowid-unstable" => KeyShape::UnstableRowid,
            "columns" if !columns.is_empty() => KeyShape::Columns {
                columns,
                without_rowid,
            },
            "columns" => bail!(Corrupt: "config says the table is keyed by columns but names none"),
            other => bail!(Corrupt: "config has an unknown key shape '{other}'"),
        })
    }

    /// The key columns (empty for the rowid shapes).
    pub(crate) fn columns(&self) -> &[String] {
        match self {
            KeyShape::Columns { columns, .. } => columns,
            _ => &[],
        }
    }

    /// True when the content table has rowids, which the faiss table's `rowid` returns.
    pub(crate) fn has_rowid(&self) -> bool {
        !matches!(
            self,
            KeyShape::Columns {
                without_rowid: true,
                ..
            }
        )
    }

    /// SQL that selects a row's key, qualified by `alias` (`"t"."a", "t"."b"`, or `t.rowid`).
    pub(crate) fn select(&self, alias: &str) -> String {
        match self {
            KeyShape::Columns { columns, .. } => columns
                .iter()
                .map(|c| format!("{alias}.{}", quote_ident(c)))
                .collect::<Vec<_>>()
                .join(", "),
            _ => format!("{alias}.rowid"),
        }
    }

    /// Number of result columns [`select`](Self::select) yields.
    pub(crate) fn width(&self) -> usize {
        self.columns().len().max(1)
    }

    /// `"a" = ?N AND "b" = ?N+1` (or `rowid = ?N`) for a lookup by key, parameters from `first`.
    pub(crate) fn matches(&self, first: usize) -> String {
        match self {
            KeyShape::Columns { columns, .. } => columns
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{} = ?{}", quote_ident(c), first + i))
                .collect::<Vec<_>>()
                .join(" AND "),
            _ => format!("rowid = ?{first}"),
        }
    }
}

/// One value of a key column. NULL is not a key: a row whose key has a NULL cannot be told
/// apart from others and is not indexed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum KeyPart {
    Int(i64),
    Real(f64),
    /// TEXT as SQLite stores it: UTF-8, unless a writer stored other bytes.
    Text(Vec<u8>),
    Blob(Vec<u8>),
}

impl Eq for KeyPart {}

impl std::hash::Hash for KeyPart {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            KeyPart::Int(i) => (0u8, i).hash(state),
            KeyPart::Real(x) => (1u8, x.to_bits()).hash(state),
            KeyPart::Text(s) => (2u8, s).hash(state),
            KeyPart::Blob(b) => (3u8, b).hash(state),
        }
    }
}

impl KeyPart {
    /// A partition value as the index keys it (as a key part, see [`RowKey::from_cells`]),
    /// `None` for NULL.
    pub(crate) fn partition(cell: Cell) -> Option<KeyPart> {
        RowKey::from_cells([cell])?.0.pop()
    }

    /// A value compared with a column of `affinity` (`WHERE column = value`), converted as
    /// SQLite converts it before comparing, then keyed as [`KeyPart::partition`]. A number
    /// compared with a TEXT column becomes text; SQLite renders REALs (`text_of_real`).
    pub(crate) fn compared_with(
        cell: Cell,
        affinity: Affinity,
        text_of_real: impl FnOnce(f64) -> Result<String>,
    ) -> Result<Option<KeyPart>> {
        Ok(match (affinity, cell) {
            (Affinity::Numeric, Cell::Text(_)) => cell
                .as_str()
                .and_then(numeric_text)
                .or_else(|| KeyPart::partition(cell)),
            (Affinity::Text, Cell::Integer(i)) => Some(KeyPart::Text(i.to_string().into_bytes())),
            (Affinity::Text, Cell::Real(x)) => Some(KeyPart::Text(text_of_real(x)?.into_bytes())),
            _ => KeyPart::partition(cell),
        })
    }
}

/// `x` as an integer when it is one (and fits).
fn integral(x: f64) -> Option<i64> {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    (x.fract() == 0.0 && (-LIMIT..LIMIT).contains(&x)).then_some(x as i64)
}

/// The number in `text` when SQLite's numeric affinity would convert it (a decimal integer or
/// real literal, with optional surrounding spaces; no hex, no `inf`), keyed as a partition.
fn numeric_text(text: &str) -> Option<KeyPart> {
    let t = text.trim_matches(|c: char| c.is_ascii_whitespace());
    if t.is_empty()
        || !t
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
    {
        return None;
    }
    if let Ok(i) = t.parse::<i64>() {
        return Some(KeyPart::Int(i));
    }
    let x = t.parse::<f64>().ok()?;
    Some(integral(x).map_or(KeyPart::Real(x), KeyPart::Int))
}

/// SQLite's type affinity of a declared column type (its "Determination of Column Affinity"
/// rules; REAL is folded into NUMERIC: both convert numeric text the same for `=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Affinity {
    Numeric,
    Text,
    Blob,
}

impl Affinity {
    pub(crate) fn of_declared(declared: &str) -> Affinity {
        let t = declared.to_ascii_uppercase();
        if t.contains("INT") {
            Affinity::Numeric
        } else if ["CHAR", "CLOB", "TEXT"].iter().any(|w| t.contains(w)) {
            Affinity::Text
        } else if t.contains("BLOB") || t.trim().is_empty() {
            Affinity::Blob
        } else {
            Affinity::Numeric
        }
    }
}

/// A row's key: the values of the key columns, in order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RowKey(pub(crate) Vec<KeyPart>);

const TAG_INT: u8 = 1;
const TAG_REAL: u8 = 2;
const TAG_TEXT: u8 = 3;
const TAG_BLOB: u8 = 4;

impl RowKey {
    /// The key in `cells` (from a statement), or `None` when a part is NULL.
    pub(crate) fn from_cells<'a>(cells: impl IntoIterator<Item = Cell<'a>>) -> Option<RowKey> {
        let mut parts = Vec::new();
        for cell in cells {
            parts.push(match cell {
                Cell::Null => return None,
                Cell::Integer(i) => KeyPart::Int(i),
                // SQLite's `=` holds `2 = 2.0` (a key column without a type may hold either,
                // and INSERT OR REPLACE takes one for the other): an integral REAL is keyed as
                // the INTEGER.
                Cell::Real(x) => integral(x).map_or(KeyPart::Real(x), KeyPart::Int),
                Cell::Text(b) => KeyPart::Text(b.to_vec()),
                Cell::Blob(b) => KeyPart::Blob(b.to_vec()),
            });
        }
        Some(RowKey(parts))
    }

    /// Bind the parts as parameters `first`, `first + 1`, ….
    pub(crate) fn bind(&self, stmt: &mut Stmt, first: usize) -> Result<()> {
        for (i, part) in self.0.iter().enumerate() {
            let n = (first + i) as i32;
            match part {
                KeyPart::Int(v) => stmt.bind_i64(n, *v)?,
                KeyPart::Real(v) => stmt.bind_f64(n, *v)?,
                KeyPart::Text(v) => stmt.bind_text(n, v)?,
                KeyPart::Blob(v) => stmt.bind_blob(n, v)?,
            }
        }
        Ok(())
    }

    /// The key's bytes on disk: per part a tag and its value (little-endian; text and blobs
    /// with a u32 length). Fixed forever: stored in snapshots and hashed into handles.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.0.len() as u32).to_le_bytes());
        for part in &self.0 {
            match part {
                KeyPart::Int(v) => {
                    out.push(TAG_INT);
                    out.extend_from_slice(&v.to_le_bytes());
                }
                KeyPart::Real(v) => {
                    out.push(TAG_REAL);
                    out.extend_from_slice(&v.to_bits().to_le_bytes());
                }
                KeyPart::Text(v) => {
                    out.push(TAG_TEXT);
                    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    out.extend_from_slice(v);
                }
                KeyPart::Blob(v) => {
                    out.push(TAG_BLOB);
                    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                    out.extend_from_slice(v);
                }
            }
        }
    }

    /// A key [`encode`](Self::encode) wrote at the front of `bytes`, and the bytes it took.
    /// Every length is checked against what remains.
    pub(crate) fn decode(bytes: &[u8]) -> Result<(RowKey, usize)> {
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8]> {
            let end = at.checked_add(n).filter(|&e| e <= bytes.len());
            let Some(end) = end else {
                bail!(Corrupt: "stored snapshot is damaged: a key runs past the end");
            };
            let slice = &bytes[at..end];
            at = end;
            Ok(slice)
        };
        let word = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4")) as usize;
        let long = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8"));
        let count = word(take(4)?);
        if count == 0 || count > 64 {
            bail!(Corrupt: "stored snapshot is damaged: a key has {count} parts");
        }
        let mut parts = Vec::with_capacity(count);
        for _ in 0..count {
            let tag = take(1)?[0];
            parts.push(match tag {
                TAG_INT => KeyPart::Int(long(take(8)?) as i64),
                TAG_REAL => KeyPart::Real(f64::from_bits(long(take(8)?))),
                TAG_TEXT | TAG_BLOB => {
                    let n = word(take(4)?);
                    let b = take(n)?;
                    if tag == TAG_TEXT {
                        KeyPart::Text(b.to_vec())
                    } else {
                        KeyPart::Blob(b.to_vec())
                    }
                }
                other => bail!(Corrupt: "stored snapshot is damaged: key part tag {other}"),
            });
        }
        Ok((RowKey(parts), at))
    }

    /// The handle the index knows this row by: a fixed hash of the encoded key (never the
    /// dead-slot marker).
    pub(crate) fn handle(&self) -> i64 {
        let mut bytes = Vec::with_capacity(32);
        self.encode(&mut bytes);
        match hash64(&bytes) as i64 {
            DEAD_SLOT => DEAD_SLOT + 1,
            h => h,
        }
    }
}

/// A fixed hash of an indexed vector, kept per slot by [`KeyShape::UnstableRowid`] tables to
/// check, after a schema change, that each rowid still holds the vector it indexed.
pub(crate) fn vector_hash(vector: &[f32]) -> u64 {
    hash64(bytemuck::cast_slice(vector))
}

/// How the rows of `table` are identified (`key::KeyShape`), and its INTEGER PRIMARY KEY
/// column when it has one; an error when it cannot be a content table at all.
pub(crate) fn key_shape(conn: Conn, schema: &str, table: &str) -> Result<(KeyShape, String)> {
    match object_type(conn, schema, table)?.as_deref() {
        Some("table") => {}
        Some(other) => bail!("content '{table}' is a {other}: it must be an ordinary table"),
        None => bail!(NotFound: "no content table named '{table}' in database '{schema}'"),
    }
    let content = format!("{}.{}", quote_ident(schema), quote_ident(table));
    let without_rowid = conn
        .prepare(&format!("SELECT rowid FROM {content} LIMIT 0"))
        .is_err();
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
    drop(stmt);
    Ok(match keys.as_slice() {
        [] if without_rowid => bail!("content table '{table}' is WITHOUT ROWID but has no key"),
        [] => (KeyShape::UnstableRowid, String::new()),
        // An INTEGER PRIMARY KEY of a rowid table is the rowid itself, unless declared DESC
        // (SQLite's documented quirk): then it is an ordinary column.
        [(name, kind)] if kind == "INTEGER" && !without_rowid && !pk_desc(conn, schema, table)? => {
            (KeyShape::Rowid, name.clone())
        }
        _ => (
            KeyShape::Columns {
                columns: keys.into_iter().map(|(name, _)| name).collect(),
                without_rowid,
            },
            String::new(),
        ),
    })
}

/// True when `table`'s CREATE statement declares `PRIMARY KEY DESC`.
fn pk_desc(conn: Conn, schema: &str, table: &str) -> Result<bool> {
    let mut stmt = conn.prepare(&format!(
        "SELECT sql FROM {}.sqlite_master WHERE type = 'table' AND name = ?1 COLLATE NOCASE",
        quote_ident(schema)
    ))?;
    stmt.bind_text(1, table)?;
    let sql = if stmt.step()? {
        stmt.text(0).unwrap_or_default()
    } else {
        String::new()
    };
    let words: Vec<String> = sql
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_uppercase)
        .collect();
    Ok(words.windows(3).any(|w| w == ["PRIMARY", "KEY", "DESC"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_values_compare_as_sqlite_compares_them() {
        use Affinity::*;
        assert_eq!(Affinity::of_declared("INTEGER"), Numeric);
        assert_eq!(Affinity::of_declared("varchar(10)"), Text);
        assert_eq!(Affinity::of_declared(""), Blob);
        assert_eq!(Affinity::of_declared("DOUBLE"), Numeric);
        let real = |x: f64| Ok(format!("{x:?}"));
        let part = |cell, affinity| KeyPart::compared_with(cell, affinity, real).unwrap();
        assert_eq!(part(Cell::Text(b" 2 "), Numeric), Some(KeyPart::Int(2)));
        assert_eq!(part(Cell::Text(b"2.0"), Numeric), Some(KeyPart::Int(2)));
        assert_eq!(part(Cell::Text(b"2.5"), Numeric), Some(KeyPart::Real(2.5)));
        assert_eq!(
            part(Cell::Text(b"9007199254740993"), Numeric),
            Some(KeyPart::Int(9007199254740993))
        );
        for not_a_number in [&b"0x10"[..], b"inf", b"2a", b"", b"e5"] {
            let text = String::from_utf8(not_a_number.to_vec()).unwrap();
            assert_eq!(
                part(Cell::Text(not_a_number), Numeric),
                Some(KeyPart::Text(text.into_bytes()))
            );
        }
        assert_eq!(part(Cell::Real(2.0), Blob), Some(KeyPart::Int(2)));
        assert_eq!(
            part(Cell::Text(b"2"), Blob),
            Some(KeyPart::Text("2".into()))
        );
        assert_eq!(
            part(Cell::Integer(7), Text),
            Some(KeyPart::Text("7".into()))
        );
        assert_eq!(
            part(Cell::Real(2.5), Text),
            Some(KeyPart::Text("2.5".into()))
        );
        assert_eq!(part(Cell::Null, Numeric), None);
        assert_eq!(
            KeyPart::partition(Cell::Real(1e300)),
            Some(KeyPart::Real(1e300))
        );
    }

    #[test]
    fn keys_round_trip_and_handles_are_fixed() {
        let key = RowKey(vec![
            KeyPart::Int(1),
            KeyPart::Text("L0".into()),
            KeyPart::Real(2.5),
            KeyPart::Blob(vec![0, 1]),
        ]);
        let mut bytes = Vec::new();
        key.encode(&mut bytes);
        bytes.extend_from_slice(b"rest");
        let (back, used) = RowKey::decode(&bytes).unwrap();
        assert_eq!((back, used), (key.clone(), bytes.len() - 4));
        for cut in 0..bytes.len() - 4 {
            assert!(RowKey::decode(&bytes[..cut]).is_err(), "{cut}");
        }
        // Written to disk: a change would orphan every stored snapshot of such a table.
        assert_eq!(
            RowKey(vec![KeyPart::Text("a".into())]).handle(),
            7905696857082005922
        );
        assert_ne!(
            RowKey(vec![KeyPart::Int(1)]).handle(),
            RowKey(vec![KeyPart::Text("1".into())]).handle()
        );
        assert_eq!(RowKey::from_cells([Cell::Integer(1), Cell::Null]), None);
    }

    #[test]
    fn shapes_write_their_sql() {
        let shape = KeyShape::Columns {
            columns: vec!["collection_id".into(), "id".into()],
            without_rowid: false,
        };
        assert_eq!(shape.select("t"), "t.\"collection_id\", t.\"id\"");
        assert_eq!(shape.matches(2), "\"collection_id\" = ?2 AND \"id\" = ?3");
        assert_eq!((shape.width(), shape.has_rowid()), (2, true));
        assert_eq!(KeyShape::Rowid.select("t"), "t.rowid");
        assert_eq!(KeyShape::UnstableRowid.matches(1), "rowid = ?1");
        let parsed = KeyShape::parse("columns", vec!["k".into()], true).unwrap();
        assert!(!parsed.has_rowid());
        assert!(KeyShape::parse("other", vec![], false).is_err());
    }
}
