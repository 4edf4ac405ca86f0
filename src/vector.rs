//! Vector values (SPEC §1): float32 little-endian blobs and JSON arrays in, blobs out.
//! Everything that reaches FAISS has passed through here: finite, non-empty, bounded.

use crate::error::{Error, Kind, Result};
use crate::sqlite::Cell;

/// Largest dimension accepted anywhere (the biggest common embedding models stay far below).
pub(crate) const MAX_DIM: usize = 65_536;
/// Largest JSON text accepted as a vector: room for `MAX_DIM` numbers written out in full.
pub(crate) const MAX_JSON_BYTES: usize = 4 << 20;

/// Append the vector in `cell` to `out` and return its dimension. On error `out` is unchanged.
pub(crate) fn append(cell: Cell, out: &mut Vec<f32>) -> Result<usize> {
    let start = out.len();
    let result = match cell {
        Cell::Blob(bytes) => append_blob(bytes, out),
        Cell::Text(text) => append_json(text, out),
        Cell::Null => Err(Error::invalid("vector is NULL")),
        other => Err(Error::invalid(format!(
            "vector must be a BLOB of float32 or a JSON array as TEXT, not {}",
            other.type_name()
        ))),
    };
    let result = result.and_then(|()| check_finite(&out[start..]).map(|()| out.len() - start));
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// The vector in `cell`.
pub(crate) fn parse(cell: Cell) -> Result<Vec<f32>> {
    let mut v = Vec::new();
    append(cell, &mut v)?;
    Ok(v)
}

/// A vector as the float32 little-endian blob the other functions read.
pub(crate) fn encode(v: &[f32]) -> Vec<u8> {
    if cfg!(target_endian = "little") {
        bytemuck::cast_slice(v).to_vec()
    } else {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }
}

fn check_dim(dim: usize) -> Result<()> {
    if dim == 0 {
        return Err(Error::invalid("vector is empty"));
    }
    if dim > MAX_DIM {
        return Err(Error::of(
            Kind::TooBig,
            format!("vector has {dim} dimensions, more than the limit of {MAX_DIM}"),
        ));
    }
    Ok(())
}

fn check_finite(v: &[f32]) -> Result<()> {
    // One branch-free pass over every element (it vectorizes); where it fails, find which.
    if !v.iter().fold(false, |bad, x| bad | !x.is_finite()) {
        return Ok(());
    }
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::invalid(format!(
            "vector element {i} is {}: only finite numbers are allowed",
            if v[i].is_nan() { "NaN" } else { "infinite" }
        ))),
    }
}

fn append_blob(bytes: &[u8], out: &mut Vec<f32>) -> Result<()> {
    if !bytes.len().is_multiple_of(4) {
        return Err(Error::invalid(format!(
            "vector blob has {} bytes, which is not a multiple of 4 (float32)",
            bytes.len()
        )));
    }
    check_dim(bytes.len() / 4)?;
    // Blobs carry no alignment guarantee (SQLite hands out pointers into its pages): a
    // little-endian host copies the bytes as they are, a big-endian one reads each float.
    if cfg!(target_endian = "little") {
        let start = out.len();
        out.resize(start + bytes.len() / 4, 0.0);
        bytemuck::cast_slice_mut::<f32, u8>(&mut out[start..]).copy_from_slice(bytes);
    } else {
        out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
    }
    Ok(())
}

fn append_json(text: &[u8], out: &mut Vec<f32>) -> Result<()> {
    if text.len() > MAX_JSON_BYTES {
        return Err(Error::of(
            Kind::TooBig,
            format!(
                "vector JSON is {} bytes, more than the limit of {MAX_JSON_BYTES}",
                text.len()
            ),
        ));
    }
    let start = out.len();
    let mut p = JsonCursor { text, pos: 0 };
    p.skip_ws();
    if p.peek() != Some(b'[') {
        return Err(p.error("expected a JSON array such as [1.5, 2, 3]"));
    }
    p.pos += 1;
    p.skip_ws();
    if p.peek() == Some(b']') {
        return Err(Error::invalid("vector is empty"));
    }
    loop {
        p.skip_ws();
        let index = out.len() - start;
        let x = p.number(index)?;
        let f = x as f32;
        if f.is_infinite() && x.is_finite() {
            return Err(Error::invalid(format!(
                "vector element {index} ({x:e}) is out of the float32 range"
            )));
        }
        out.push(f);
        check_dim(out.len() - start)?;
        p.skip_ws();
        match p.peek() {
            Some(b',') => p.pos += 1,
            Some(b']') => {
                p.pos += 1;
                break;
            }
            _ => return Err(p.error("expected ',' or ']'")),
        }
    }
    p.skip_ws();
    if p.pos != text.len() {
        return Err(p.error("unexpected text after the array"));
    }
    Ok(())
}

struct JsonCursor<'a> {
    text: &'a [u8],
    pos: usize,
}

impl JsonCursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn error(&self, what: &str) -> Error {
        Error::invalid(format!("vector JSON: {what} at character {}", self.pos))
    }

    fn digits(&mut self) -> usize {
        let from = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - from
    }

    /// One JSON number (RFC 8259 grammar), as f64.
    fn number(&mut self, index: usize) -> Result<f64> {
        let from = self.pos;
        match self.peek() {
            Some(b'[') => {
                return Err(Error::invalid(format!(
                    "vector element {index} is an array: a vector is a flat array of numbers"
                )))
            }
            Some(b'"') => {
                return Err(Error::invalid(format!(
                    "vector element {index} is a string, not a number"
                )))
            }
            Some(b'N' | b'I') => {
                return Err(Error::invalid(format!(
                    "vector element {index} is NaN or Infinity: only finite numbers are allowed"
                )))
            }
            Some(b'-') => self.pos += 1,
            _ => {}
        }
        if self.peek() == Some(b'I') {
            return Err(Error::invalid(format!(
                "vector element {index} is NaN or Infinity: only finite numbers are allowed"
            )));
        }
        let int_digits = self.digits();
        let leading_zero = int_digits > 1 && self.text[self.pos - int_digits] == b'0';
        if int_digits == 0 || leading_zero {
            self.pos = from;
            return Err(Error::invalid(format!(
                "vector element {index} is not a number (at character {from})"
            )));
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.error("expected digits after '.'"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("expected digits in the exponent"));
            }
        }
        // The slice is ASCII digits and signs by construction.
        let s = std::str::from_utf8(&self.text[from..self.pos]).unwrap_or("");
        s.parse::<f64>()
            .map_err(|_| self.error("malformed number"))
            .and_then(|x| {
                if x.is_finite() {
                    Ok(x)
                } else {
                    Err(Error::invalid(format!(
                        "vector element {index} ({s}) is out of the float32 range"
                    )))
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> Result<Vec<f32>> {
        parse(Cell::Text(s.as_bytes()))
    }

    #[test]
    fn encodes_like_struct_pack() {
        let v = json("[2.4, 4.1, 1.8]").unwrap();
        let hex: String = encode(&v).iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(hex, "9A991940333383406666E63F");
    }

    #[test]
    fn blob_roundtrip_and_unaligned() {
        let bytes = encode(&[1.0, -2.5, 3.25]);
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&bytes);
        assert_eq!(
            parse(Cell::Blob(&shifted[1..])).unwrap(),
            vec![1.0, -2.5, 3.25]
        );
    }

    #[test]
    fn accepts_json_number_forms() {
        assert_eq!(
            json(" [ 1 , -2.5e1,3E-1 ,0] ").unwrap(),
            vec![1.0, -25.0, 0.3, 0.0]
        );
    }

    #[test]
    fn rejects_bad_vectors_with_reasons() {
        let cases = [
            ("[]", "empty"),
            ("[1, [2]]", "flat array"),
            ("[1, \"a\"]", "string"),
            ("[NaN]", "NaN"),
            ("[-Infinity]", "NaN or Infinity"),
            ("[1e39]", "float32 range"),
            ("[1e999]", "float32 range"),
            ("[1,]", "not a number"),
            ("[01]", "not a number"),
            ("[1 2]", "expected ','"),
            ("[1] x", "after the array"),
            ("{\"a\": 1}", "JSON array"),
            ("[true]", "not a number"),
            ("[1.]", "digits after"),
            ("", "JSON array"),
            ("[1", "expected ','"),
        ];
        for (input, needle) in cases {
            let err = json(input).unwrap_err();
            assert!(
                err.message().contains(needle),
                "{input:?} gave {:?}, expected {needle:?}",
                err.message()
            );
        }
        let nan = f32::NAN.to_le_bytes();
        assert!(parse(Cell::Blob(&nan))
            .unwrap_err()
            .message()
            .contains("NaN"));
        assert!(parse(Cell::Blob(&[0; 5]))
            .unwrap_err()
            .message()
            .contains("multiple of 4"));
        assert!(parse(Cell::Blob(&[]))
            .unwrap_err()
            .message()
            .contains("empty"));
        assert!(parse(Cell::Null).unwrap_err().message().contains("NULL"));
        assert!(parse(Cell::Integer(3))
            .unwrap_err()
            .message()
            .contains("INTEGER"));
        let huge = vec![0u8; (MAX_DIM + 1) * 4];
        assert!(parse(Cell::Blob(&huge))
            .unwrap_err()
            .message()
            .contains("limit"));
    }

    #[test]
    fn append_leaves_buffer_untouched_on_error() {
        let mut buf = vec![9.0];
        assert!(append(Cell::Text(b"[1, 2, NaN]"), &mut buf).is_err());
        assert!(append(Cell::Text(b"[1, 2, 1e39]"), &mut buf).is_err());
        assert_eq!(buf, vec![9.0]);
    }
}
