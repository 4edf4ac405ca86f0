//! `<name>_config`: what a `faiss` table indexes and which stored snapshot is current. Every key
//! is named once ([`Key`]), with one rule for a missing key; values are read into types here and
//! nowhere else.

use std::collections::HashMap;
use std::str::FromStr;

use crate::error::{bail, Error, Kind, Result};
use crate::index::Metric;

use super::key::KeyShape;
use super::params::SearchParams;
use super::predicate::Predicate;
use super::shadow::{Shadow, ShadowTable};

/// Version of the stored layout; a table written by another version is refused, not guessed.
pub(crate) const FORMAT_VERSION: i64 = 1;

/// The keys of `<name>_config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    /// Layout version ([`FORMAT_VERSION`]).
    Format,
    /// The content table's name at creation (its current name comes from the insert trigger).
    Content,
    /// The vector column.
    Column,
    /// The column returned as `id`; empty for the rowid.
    Id,
    /// The content table's INTEGER PRIMARY KEY column (empty for the other key shapes).
    Pk,
    /// How content rows are identified: `rowid`, `rowid-unstable` or `columns` (`key::KeyShape`).
    Shape,
    /// The key columns of the `columns` shape, as a JSON array.
    ShapeColumns,
    /// 1 when the content table is WITHOUT ROWID.
    WithoutRowid,
    /// A partial index's predicate over the content columns, as vekter wrote it back (empty:
    /// every row).
    Where,
    /// The partition column (empty: not partitioned).
    Partition,
    Factory,
    Metric,
    Dim,
    /// Default search parameters.
    Params,
    TrainSize,
    /// 1: build the same bytes on every node whatever its thread count, at the cost of a
    /// single-threaded graph construction (`deterministic = 1`, docs/replication.md).
    Deterministic,
    /// The stored snapshot's length, chunk count and checksum.
    SnapshotBytes,
    SnapshotChunks,
    SnapshotChecksum,
    /// The stored snapshot's seal (keyed MAC, `snapshot::seal`) and the id of the key that
    /// made it; empty in snapshots from before seals.
    SnapshotSeal,
    SnapshotKeyId,
    /// The change-log position the stored snapshot reflects.
    SnapshotSeq,
    /// The stored snapshot's lineage: a new id and a larger number at every create, rebuild
    /// and compaction.
    BuildId,
    Lineage,
    /// `rowid-unstable` tables: the schema cookie at which every indexed rowid was last found
    /// to hold the vector it indexed (-1: not checked yet).
    VerifiedCookie,
}

impl Key {
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Key::Format => "format",
            Key::Content => "content",
            Key::Column => "column",
            Key::Id => "id",
            Key::Pk => "pk",
            Key::Shape => "key",
            Key::ShapeColumns => "key_columns",
            Key::WithoutRowid => "without_rowid",
            Key::Where => "where",
            Key::Partition => "partition",
            Key::Factory => "factory",
            Key::Metric => "metric",
            Key::Dim => "dim",
            Key::Params => "params",
            Key::TrainSize => "train_size",
            Key::Deterministic => "deterministic",
            Key::SnapshotBytes => "snapshot_bytes",
            Key::SnapshotChunks => "snapshot_chunks",
            Key::SnapshotChecksum => "snapshot_checksum",
            Key::SnapshotSeal => "snapshot_seal",
            Key::SnapshotKeyId => "snapshot_key",
            Key::SnapshotSeq => "snapshot_seq",
            Key::BuildId => "build_id",
            Key::Lineage => "lineage",
            Key::VerifiedCookie => "verified_cookie",
        }
    }

    /// The value a missing (or, for a number, unreadable) key stands for; `None`: the key is
    /// required.
    const fn default(self) -> Option<&'static str> {
        match self {
            // Only a fallback for a table whose content table is gone.
            Key::Content => Some(""),
            Key::BuildId => Some(""),
            Key::Lineage => Some("0"),
            // Tables made before other key shapes existed are keyed by an INTEGER PRIMARY KEY.
            Key::Shape => Some("rowid"),
            Key::ShapeColumns => Some("[]"),
            Key::WithoutRowid => Some("0"),
            Key::Deterministic => Some("0"),
            Key::Where => Some(""),
            Key::Partition => Some(""),
            Key::VerifiedCookie => Some("-1"),
            Key::SnapshotSeal => Some(""),
            Key::SnapshotKeyId => Some(""),
            _ => None,
        }
    }
}

/// The key/value pairs of `<name>_config`, as stored.
#[derive(Debug, Clone, Default)]
pub(crate) struct Config(HashMap<String, String>);

impl Config {
    /// Read `<name>_config`. Pairs with a NULL key or value are left out.
    pub(crate) fn read(shadow: &Shadow) -> Result<Config> {
        let mut stmt = shadow
            .conn()
            .prepare(&format!(
                "SELECT key, value FROM {}",
                shadow.table(ShadowTable::Config)
            ))
            .map_err(Error::damaged_if_schema)?;
        let mut map = HashMap::new();
        while stmt.step().map_err(Error::damaged_if_schema)? {
            if let (Some(k), Some(v)) = (stmt.text(0), stmt.text(1)) {
                map.insert(k, v);
            }
        }
        Ok(Config(map))
    }

    /// Write `pairs`, replacing the values of keys already there.
    pub(crate) fn write(shadow: &Shadow, pairs: &[(Key, String)]) -> Result<()> {
        let mut stmt = shadow.conn().prepare(&format!(
            "INSERT OR REPLACE INTO {} (key, value) VALUES (?1, ?2)",
            shadow.table(ShadowTable::Config)
        ))?;
        for (key, value) in pairs {
            stmt.bind_text(1, key.name())?;
            stmt.bind_text(2, value)?;
            while stmt.step()? {}
            stmt.reset();
        }
        Ok(())
    }

    /// The value of `key`: its default when missing, an error when it is required.
    pub(crate) fn text(&self, key: Key) -> Result<&str> {
        match (self.0.get(key.name()), key.default()) {
            (Some(v), _) => Ok(v),
            (None, Some(default)) => Ok(default),
            (None, None) => bail!(Corrupt: "config has no '{}'", key.name()),
        }
    }

    /// The value of `key` as a number (or other `FromStr` type). A key with a default reads as
    /// its default when its value does not parse either: those keys never fail.
    pub(crate) fn num<T: FromStr>(&self, key: Key) -> Result<T> {
        self.text(key)
            .ok()
            .and_then(|v| v.parse().ok())
            .or_else(|| key.default()?.parse().ok())
            .ok_or_else(|| {
                Error::of(
                    Kind::Corrupt,
                    format!("config has no valid '{}'", key.name()),
                )
            })
    }

    /// Which snapshot is stored: its lineage and log position.
    pub(crate) fn mark(&self) -> Result<SnapshotMark> {
        Ok(SnapshotMark {
            seq: self.num(Key::SnapshotSeq)?,
            build_id: self.text(Key::BuildId)?.to_string(),
            lineage: self.num(Key::Lineage)?,
            verified_cookie: self.num::<i64>(Key::VerifiedCookie)?,
        })
    }

    /// How the stored snapshot was chunked and summed.
    pub(crate) fn record(&self) -> Result<SnapshotRecord> {
        Ok(SnapshotRecord {
            bytes: self.num(Key::SnapshotBytes)?,
            chunks: self.num(Key::SnapshotChunks)?,
            checksum: self.text(Key::SnapshotChecksum)?.to_string(),
            seal: self.text(Key::SnapshotSeal)?.to_string(),
            key_id: self.text(Key::SnapshotKeyId)?.to_string(),
        })
    }
}

/// Which snapshot is stored: its lineage and the change-log position it reflects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapshotMark {
    pub(crate) seq: i64,
    pub(crate) build_id: String,
    pub(crate) lineage: i64,
    /// See [`Key::VerifiedCookie`].
    pub(crate) verified_cookie: i64,
}

impl SnapshotMark {
    pub(crate) fn pairs(&self) -> [(Key, String); 4] {
        [
            (Key::SnapshotSeq, self.seq.to_string()),
            (Key::BuildId, self.build_id.clone()),
            (Key::Lineage, self.lineage.to_string()),
            (Key::VerifiedCookie, self.verified_cookie.to_string()),
        ]
    }
}

/// How the stored snapshot was written: its length, chunk count, checksum and seal (hex), and
/// the id of the key that sealed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapshotRecord {
    pub(crate) bytes: usize,
    pub(crate) chunks: i64,
    pub(crate) checksum: String,
    pub(crate) seal: String,
    pub(crate) key_id: String,
}

impl SnapshotRecord {
    pub(crate) fn pairs(&self) -> [(Key, String); 5] {
        [
            (Key::SnapshotBytes, self.bytes.to_string()),
            (Key::SnapshotChunks, self.chunks.to_string()),
            (Key::SnapshotChecksum, self.checksum.clone()),
            (Key::SnapshotSeal, self.seal.clone()),
            (Key::SnapshotKeyId, self.key_id.clone()),
        ]
    }
}

/// What a `faiss` table indexes and how; fixed at creation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Meta {
    /// The content table's current name.
    pub(crate) content: String,
    pub(crate) column: String,
    /// The content column returned as `id`; `None` returns the rowid.
    pub(crate) id_column: Option<String>,
    /// The content table's INTEGER PRIMARY KEY column (its rowid), or "".
    pub(crate) pk: String,
    /// How content rows are identified.
    pub(crate) key: KeyShape,
    /// A partial index indexes only the rows that match.
    pub(crate) predicate: Option<Predicate>,
    /// A partitioned index keeps one FAISS index per value of this column.
    pub(crate) partition: Option<String>,
    pub(crate) factory: String,
    pub(crate) metric: Metric,
    pub(crate) dim: usize,
    /// Default search parameters, applied to the index when it is loaded.
    pub(crate) params: SearchParams,
    pub(crate) train_size: usize,
    /// `deterministic = 1`: graph construction on one thread in fixed batches (see `Key`).
    pub(crate) deterministic: bool,
}

impl Meta {
    pub(crate) fn to_config(&self) -> Vec<(Key, String)> {
        vec![
            (Key::Format, FORMAT_VERSION.to_string()),
            (Key::Content, self.content.clone()),
            (Key::Column, self.column.clone()),
            (Key::Id, self.id_column.clone().unwrap_or_default()),
            (Key::Pk, self.pk.clone()),
            (Key::Shape, self.key.name().to_string()),
            (
                Key::ShapeColumns,
                serde_json::Value::from(self.key.columns().to_vec()).to_string(),
            ),
            (
                Key::WithoutRowid,
                (!self.key.has_rowid() as i64).to_string(),
            ),
            (
                Key::Where,
                self.predicate
                    .as_ref()
                    .map(|p| p.sql(None))
                    .unwrap_or_default(),
            ),
            (Key::Partition, self.partition.clone().unwrap_or_default()),
            (Key::Factory, self.factory.clone()),
            (Key::Metric, self.metric.name().to_string()),
            (Key::Dim, self.dim.to_string()),
            (Key::Params, self.params.to_string()),
            (Key::TrainSize, self.train_size.to_string()),
            (Key::Deterministic, (self.deterministic as i64).to_string()),
        ]
    }

    /// The metadata stored by `to_config`; `content` is the table's current name.
    pub(crate) fn from_config(config: &Config, content: String) -> Result<Meta> {
        let format: i64 = config.num(Key::Format)?;
        if format != FORMAT_VERSION {
            bail!(
                "stored format {format} is not the format {FORMAT_VERSION} this vekter reads: \
                 recreate the table with this version"
            );
        }
        let id = config.text(Key::Id)?;
        Ok(Meta {
            content,
            column: config.text(Key::Column)?.to_string(),
            id_column: (!id.is_empty()).then(|| id.to_string()),
            pk: config.text(Key::Pk)?.to_string(),
            key: KeyShape::parse(
                config.text(Key::Shape)?,
                serde_json::from_str(config.text(Key::ShapeColumns)?)
                    .map_err(|_| Error::of(Kind::Corrupt, "config has no valid 'key_columns'"))?,
                config.num::<i64>(Key::WithoutRowid)? == 1,
            )?,
            // Parsed again each time: the file may come from a stranger (see `predicate`).
            predicate: match config.text(Key::Where)? {
                "" => None,
                text => Some(Predicate::parse(text).map_err(|e| e.into_kind(Kind::Corrupt))?),
            },
            partition: Some(config.text(Key::Partition)?)
                .filter(|p| !p.is_empty())
                .map(str::to_string),
            factory: config.text(Key::Factory)?.to_string(),
            metric: Metric::parse(config.text(Key::Metric)?)?,
            dim: config.num(Key::Dim)?,
            params: SearchParams::parse(config.text(Key::Params)?)?,
            train_size: config.num(Key::TrainSize)?,
            deterministic: config.num::<i64>(Key::Deterministic)? == 1,
        })
    }
}

#[cfg(any(test, feature = "fuzzing"))]
impl Config {
    /// A config from pairs (tests and fuzzing build them without a database).
    pub(crate) fn from_pairs<K: Into<String>>(
        pairs: impl IntoIterator<Item = (K, String)>,
    ) -> Config {
        Config(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta {
            content: "docs".into(),
            column: "embedding".into(),
            id_column: Some("doc_id".into()),
            pk: "id".into(),
            key: KeyShape::Rowid,
            predicate: None,
            partition: None,
            factory: "HNSW32".into(),
            metric: Metric::Cosine,
            dim: 8,
            params: SearchParams::parse("efSearch=64,rerank=2").unwrap(),
            train_size: 100,
            deterministic: false,
        }
    }

    fn config(pairs: Vec<(Key, String)>) -> Config {
        Config::from_pairs(pairs.into_iter().map(|(k, v)| (k.name(), v)))
    }

    #[test]
    fn meta_round_trips_through_config() {
        let mut m = meta();
        assert_eq!(
            Meta::from_config(&config(m.to_config()), "docs".into()).unwrap(),
            m
        );
        m.key = KeyShape::Columns {
            columns: vec!["collection_id".into(), "a \"b\"".into()],
            without_rowid: true,
        };
        m.pk = String::new();
        m.predicate = Some(Predicate::parse("collection_id = 1").unwrap());
        m.partition = Some("tenant".into());
        assert_eq!(
            Meta::from_config(&config(m.to_config()), "docs".into()).unwrap(),
            m
        );
        // A table made before other key shapes: keyed by its INTEGER PRIMARY KEY.
        let old: Vec<_> = meta()
            .to_config()
            .into_iter()
            .filter(|(k, _)| !matches!(k, Key::Shape | Key::ShapeColumns | Key::WithoutRowid))
            .collect();
        assert_eq!(
            Meta::from_config(&config(old), "docs".into()).unwrap().key,
            KeyShape::Rowid
        );
    }

    #[test]
    fn missing_keys_follow_one_rule() {
        let c = config(vec![(Key::SnapshotSeq, "4".into())]);
        // Keys with a default read as it; required keys are corruption, named in the error.
        assert_eq!(c.text(Key::BuildId).unwrap(), "");
        assert_eq!(c.num::<i64>(Key::Lineage).unwrap(), 0);
        let e = c.text(Key::Factory).unwrap_err();
        assert_eq!(
            (e.kind(), e.message()),
            (Kind::Corrupt, "config has no 'factory'")
        );
        let e = c.num::<usize>(Key::SnapshotBytes).unwrap_err();
        assert_eq!(e.message(), "config has no valid 'snapshot_bytes'");
        let mark = c.mark().unwrap();
        assert_eq!((mark.seq, mark.lineage, mark.build_id.as_str()), (4, 0, ""));
        assert_eq!(mark.verified_cookie, -1);
        // A defaulted key with a value that does not parse reads as its default.
        let garbled = config(vec![
            (Key::SnapshotSeq, "4".into()),
            (Key::Lineage, "x".into()),
        ]);
        assert_eq!(garbled.num::<i64>(Key::Lineage).unwrap(), 0);
        let mut stored = meta().to_config();
        stored[0].1 = "2".into();
        assert!(Meta::from_config(&config(stored), "docs".into())
            .unwrap_err()
            .message()
            .contains("stored format 2"));
    }
}
