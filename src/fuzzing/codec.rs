//! The codec targets: `vector_codec` (vectors in, blobs and JSON out) and `json_output`
//! (Python-`repr` floats, ids and strings).

use crate::json::{self, IdValue};
use crate::sqlite::Cell;
use crate::vector::{self, MAX_DIM, MAX_JSON_BYTES};

use super::{same_bits, Input};

/// The vector codec: `data` as a float32 blob and as JSON text. Whatever is accepted encodes
/// back bit-identically (blob → blob, blob → JSON → vector, JSON → blob → vector); errors leave
/// the caller's buffer untouched; the JSON reader accepts exactly what `serde_json` reads as an
/// array of numbers that fit in float32.
pub fn vector_codec(data: &[u8]) {
    const SENTINEL: f32 = -7.25;

    // As a blob.
    let mut out = vec![SENTINEL];
    match vector::append(Cell::Blob(data), &mut out) {
        Ok(dim) => {
            let v = &out[1..];
            assert_eq!(out[0].to_bits(), SENTINEL.to_bits(), "blob: prefix changed");
            assert_eq!(dim * 4, data.len(), "blob: dimension");
            assert!(!v.is_empty() && v.len() <= MAX_DIM);
            assert!(v.iter().all(|x| x.is_finite()), "blob: non-finite accepted");
            assert_eq!(vector::encode(v), data, "blob → encode is not identical");
            let text = json::floats(v);
            let back = vector::parse(Cell::Text(text.as_bytes()))
                .unwrap_or_else(|e| panic!("blob → JSON {text:?} does not parse: {e}"));
            assert!(same_bits(&back, v), "blob → JSON → vector differs");
        }
        Err(e) => {
            assert_eq!(out.len(), 1, "blob: buffer changed on error");
            assert!(!e.message().is_empty());
        }
    }

    // As JSON text.
    let mut out = vec![SENTINEL];
    let parsed = vector::append(Cell::Text(data), &mut out);
    let strict = serde_json::from_slice::<Vec<f64>>(data).ok();
    match parsed {
        Ok(dim) => {
            let v = &out[1..];
            assert_eq!(out[0].to_bits(), SENTINEL.to_bits(), "JSON: prefix changed");
            assert_eq!(dim, v.len());
            assert!(!v.is_empty() && v.len() <= MAX_DIM);
            assert!(v.iter().all(|x| x.is_finite()), "JSON: non-finite accepted");
            let blob = vector::encode(v);
            let back = vector::parse(Cell::Blob(&blob)).expect("JSON → blob parses");
            assert!(same_bits(&back, v), "JSON → blob → vector differs");
            let text = json::floats(v);
            let again = vector::parse(Cell::Text(text.as_bytes()))
                .unwrap_or_else(|e| panic!("JSON → JSON {text:?} does not parse: {e}"));
            assert!(same_bits(&again, v), "JSON → JSON → vector differs");
            assert_eq!(json::floats(&again), text, "JSON output is not stable");
            // serde_json reads the same numbers (-0 and 0 compare equal: serde reads "-0" as 0).
            let strict = strict.unwrap_or_else(|| panic!("serde_json rejects accepted {data:?}"));
            assert_eq!(strict.len(), v.len());
            for (s, x) in strict.iter().zip(v) {
                assert!(*s as f32 == *x, "serde_json reads {s:e}, vekter {x:e}");
            }
        }
        Err(e) => {
            assert_eq!(out.len(), 1, "JSON: buffer changed on error");
            assert!(!e.message().is_empty());
            if let Some(xs) = strict {
                let fits = !xs.is_empty()
                    && xs.len() <= MAX_DIM
                    && data.len() <= MAX_JSON_BYTES
                    && xs.iter().all(|x| (*x as f32).is_finite());
                assert!(
                    !fits,
                    "vekter rejects valid JSON {:?}: {}",
                    String::from_utf8_lossy(data),
                    e.message()
                );
            }
        }
    }
}

fn repr(x: f64) -> String {
    let mut s = String::new();
    json::push_float(&mut s, x);
    s
}

/// Significant digits of a decimal number written out (no sign, point, exponent, or leading and
/// trailing zeros).
fn significant(s: &str) -> String {
    let mantissa = s.split(['e', 'E']).next().unwrap_or("");
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    digits
        .trim_start_matches('0')
        .trim_end_matches('0')
        .to_string()
}

/// Python's `repr(x)` for a float, checked without Python: it reads back to the same bits, has
/// the shortest digits that do, and uses an exponent exactly when Python does.
fn check_float(x: f64) {
    let s = repr(x);
    if x.is_nan() {
        assert_eq!(s, "NaN");
        return;
    }
    if x.is_infinite() {
        assert_eq!(s, if x > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    let back: f64 = s
        .parse()
        .unwrap_or_else(|_| panic!("repr {s:?} is not a float"));
    assert_eq!(
        back.to_bits(),
        x.to_bits(),
        "repr({x:e}) = {s} reads back differently"
    );
    let strict: f64 = serde_json::from_str(&s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
    assert!(strict == x, "serde_json reads {s} as {strict:e}");
    assert!(s.is_ascii() && (s.contains('.') || s.contains('e')), "{s}");
    let shortest = format!("{:e}", x.abs());
    assert_eq!(significant(&s), significant(&shortest), "{s} vs {shortest}");
    if x != 0.0 {
        let exp: i32 = shortest
            .split_once('e')
            .and_then(|(_, e)| e.parse().ok())
            .expect("{:e} has an exponent");
        let scientific = !(-4..16).contains(&exp);
        assert_eq!(s.contains('e'), scientific, "{s}: exponent {exp}");
        if let Some((_, e)) = s.split_once('e') {
            assert!(
                e.starts_with(['+', '-']) && e.len() >= 3,
                "{s}: exponent form"
            );
        }
    }
}

fn check_string(s: &str) {
    let mut out = String::new();
    json::push_str(&mut out, s);
    assert!(out.is_ascii(), "{out:?} is not ASCII");
    let back: String = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out:?}: {e}"));
    assert_eq!(back, s);
}

/// JSON output: floats (as `f64` and as `f32` lists), ids of every SQLite type and strings, as
/// a stream of tagged values. Finite output is strict JSON (`serde_json` reads it back to the
/// same values); non-finite floats come out as Python writes them.
pub fn json_output(data: &[u8]) {
    let mut input = Input { data };
    let mut ids = Vec::new();
    let mut floats32 = Vec::new();
    while !input.is_empty() {
        match input.u8() % 6 {
            0 => {
                let x = f64::from_le_bytes(input.word());
                check_float(x);
                ids.push(IdValue::Real(x));
            }
            1 => {
                let mut w = [0u8; 4];
                let b = input.take(4);
                w[..b.len()].copy_from_slice(b);
                let x = f32::from_le_bytes(w);
                check_float(x as f64);
                floats32.push(x);
            }
            2 => ids.push(IdValue::Integer(i64::from_le_bytes(input.word()))),
            3 => {
                let s = String::from_utf8_lossy(input.chunk()).into_owned();
                check_string(&s);
                ids.push(IdValue::Text(s.into()));
            }
            4 => ids.push(IdValue::Null),
            _ => {
                // A small float from a decimal string: the numbers people actually store.
                let s = String::from_utf8_lossy(input.chunk()).into_owned();
                if let Ok(x) = s.trim().parse::<f64>() {
                    check_float(x);
                    ids.push(IdValue::Real(x));
                }
            }
        }
    }

    // A float32 vector list, as faiss_decode writes it.
    let text = json::floats(&floats32);
    assert!(text.starts_with('[') && text.ends_with(']'));
    let finite: Vec<f32> = floats32.iter().copied().filter(|x| x.is_finite()).collect();
    let text = json::floats(&finite);
    let back: Vec<f64> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(back.len(), finite.len());
    for (b, x) in back.iter().zip(&finite) {
        assert!(*b == *x as f64, "{text}: {b:e} vs {x:e}");
    }
    if !finite.is_empty() && finite.len() <= MAX_DIM {
        let v = vector::parse(Cell::Text(text.as_bytes())).expect("floats() output parses");
        assert!(
            same_bits(&v, &finite),
            "{text} does not read back bit-identically"
        );
    }

    // Ids, as faiss_search writes them.
    let text = json::list(&ids, json::push_id);
    assert!(text.is_ascii());
    if ids
        .iter()
        .all(|id| !matches!(id, IdValue::Real(x) if !x.is_finite()))
    {
        let value: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let items = value.as_array().expect("a JSON array");
        assert_eq!(items.len(), ids.len());
        for (item, id) in items.iter().zip(&ids) {
            let ok = match id {
                IdValue::Null => item.is_null(),
                IdValue::Integer(i) => item.as_i64() == Some(*i),
                IdValue::Real(x) => item.is_f64() && item.as_f64() == Some(*x),
                IdValue::Text(s) => item.as_str() == Some(&**s),
                IdValue::Blob(_) => item.is_string(),
            };
            assert!(ok, "{id:?} came out as {item}");
        }
    }
}
