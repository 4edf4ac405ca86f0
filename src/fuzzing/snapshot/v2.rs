//! Mode 3 of the `snapshot` target: version-2 payloads (keyed, rowid-unstable and partitioned
//! tables) built around FAISS serializations vekter wrote, then damaged (see
//! [`super::snapshot`]).

use crate::engine::key::{KeyPart, KeyShape, RowKey};
use crate::engine::snapshot::{self, Bytes, PartImage, DEAD_SLOT};
use crate::engine::state::LiveState;

use super::super::Input;
use super::{shaped_meta, trusted, FACTORIES, METRICS};

/// How `snapshot_v2` damages the payload it built.
const V2_DAMAGES: u8 = 9;

/// One part of the version-2 payload `snapshot_v2` builds.
struct V2Part {
    value: Option<KeyPart>,
    faiss: Vec<u8>,
    slots: Vec<i64>,
    hashes: Vec<u64>,
}

pub(super) fn snapshot_v2(input: &mut Input) {
    let key = match input.u8() % 3 {
        0 => KeyShape::Rowid,
        1 => KeyShape::UnstableRowid,
        _ => KeyShape::Columns {
            columns: vec!["collection_id".into(), "id".into()],
            without_rowid: false,
        },
    };
    let keyed = matches!(key, KeyShape::Columns { .. });
    let hashed = key == KeyShape::UnstableRowid;
    let partitioned = input.u8() & 1 == 1;
    let factory = input.u8() as usize % FACTORIES.len();
    let metric = input.u8() as usize % 3;
    let dim = 1 + input.u8() as usize % 4;
    let nparts = if partitioned {
        input.u8() as usize % 4
    } else {
        1
    };
    let damage = input.u8() % V2_DAMAGES;

    // Well-formed parts: distinct partition values, distinct handles (of distinct keys when
    // keyed), one hash per slot when hashed.
    let mut next_row = 0i64;
    let mut keys: Vec<(i64, RowKey)> = Vec::new();
    let mut parts: Vec<V2Part> = Vec::new();
    for p in 0..nparts {
        let value = partitioned.then(|| match input.u8() % 3 {
            0 => KeyPart::Int(p as i64),
            1 => KeyPart::Text(format!("tenant {p}").into_bytes()),
            _ => KeyPart::Blob(vec![p as u8; 3]),
        });
        let count = input.u8() as usize % 6;
        let mut slots = Vec::with_capacity(count);
        for _ in 0..count {
            if input.u8().is_multiple_of(5) {
                slots.push(DEAD_SLOT);
                continue;
            }
            next_row += 1 + (input.u8() % 3) as i64;
            let handle = if keyed {
                let key = RowKey(vec![
                    KeyPart::Int(1),
                    KeyPart::Text(format!("L{next_row}").into_bytes()),
                ]);
                let h = key.handle();
                keys.push((h, key));
                h
            } else {
                next_row
            };
            slots.push(handle);
        }
        let hashes = if hashed {
            (0..count as u64).map(|i| i * 31 + 7).collect()
        } else {
            Vec::new()
        };
        parts.push(V2Part {
            value,
            faiss: trusted(factory, dim, count, metric),
            slots,
            hashes,
        });
    }
    keys.sort_unstable_by_key(|(h, _)| *h);
    let template = partitioned.then(|| trusted(factory, dim, 0, metric));

    // One damage, picked by the input (some do not apply to every payload).
    let (mut meta_dim, mut meta_partitioned, mut meta_key) = (dim, partitioned, key.clone());
    let pick = input.u8() as usize;
    let first_live = parts
        .iter()
        .flat_map(|p| p.slots.iter())
        .copied()
        .find(|&h| h != DEAD_SLOT);
    let damaged = match damage {
        1 if first_live.is_some() => {
            // A handle twice (in one part or across parts).
            let at = pick % parts.len();
            parts[at].slots.push(first_live.expect("checked"));
            parts[at].hashes.push(0);
            true
        }
        2 if !keys.is_empty() => {
            keys.remove(pick % keys.len());
            true
        }
        3 if !keys.is_empty() => {
            // A key whose handle is not its hash.
            let at = pick % keys.len();
            keys[at].0 ^= 1;
            true
        }
        4 if hashed && !parts.is_empty() => {
            let at = pick % parts.len();
            parts[at].hashes.push(1);
            true
        }
        5 if parts.len() > 1 => {
            parts[1].value = parts[0].value.clone();
            true
        }
        6 => {
            meta_dim = dim % 4 + 1;
            true
        }
        7 => {
            meta_partitioned = !partitioned;
            true
        }
        8 => {
            meta_key = match key {
                KeyShape::Rowid => KeyShape::UnstableRowid,
                _ => KeyShape::Rowid,
            };
            true
        }
        _ => false,
    };
    let images: Vec<PartImage> = parts
        .iter()
        .map(|p| PartImage {
            value: p.value.as_ref(),
            faiss: p.faiss.clone(),
            slots: &p.slots,
            hashes: hashed.then_some(p.hashes.as_slice()),
        })
        .collect();
    let key_refs: Vec<(i64, &RowKey)> = keys.iter().map(|(h, k)| (*h, k)).collect();
    let mut payload = snapshot::encode_v2(&images, template.as_deref(), &key_refs);
    // And a cut or trailing bytes, when the input asks.
    let cut = match input.u8() % 8 {
        1 => {
            let at = (input.u8() as usize * payload.len() / 256).max(8);
            let cut = at < payload.len();
            payload.truncate(at);
            cut
        }
        2 => {
            let extra = input.chunk();
            payload.extend_from_slice(extra);
            !extra.is_empty()
        }
        _ => false,
    };
    let valid = !damaged && !cut;

    let meta = shaped_meta(meta_dim, METRICS[metric], meta_key, meta_partitioned);
    let result = LiveState::from_payload(&mut Bytes(&payload), &meta, ("fz".to_string(), 0, 5));
    match result {
        Err(e) => {
            assert!(!valid, "a valid version-2 payload is refused: {e}");
            assert!(!e.message().is_empty());
        }
        Ok(state) => {
            // Whatever was accepted is consistent: each handle once, a key for each when keyed,
            // and it encodes to a payload that loads to the same rows.
            let handles = state.handles();
            let mut unique = handles.clone();
            unique.dedup();
            assert_eq!(unique, handles, "a handle appears twice");
            assert_eq!(handles.len(), state.live_count());
            if keyed {
                assert!(handles
                    .iter()
                    .all(|h| state.key(*h).is_some_and(|k| k.handle() == *h)));
            }
            let _ = state.memory_bytes();
            let again = state.to_payload().expect("encode");
            // (A state that needs nothing of version 2 — one part, no keys, no hashes — writes
            // version 1.)
            if valid && again.starts_with(b"VEKTSNP2") {
                assert_eq!(
                    again, payload,
                    "a well-formed payload does not encode back to itself"
                );
            }
            let back = LiveState::from_payload(&mut Bytes(&again), &meta, ("fz".to_string(), 0, 5))
                .unwrap_or_else(|e| panic!("an accepted state's own payload is refused: {e}"));
            assert_eq!(back.handles(), handles);
        }
    }
}
