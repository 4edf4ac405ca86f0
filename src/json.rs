//! JSON text output byte-identical to Python's `json.dumps` with default settings (SPEC §2),
//! so datasette-faiss users see the same strings: `[1, 2]`, `[[1, 0.25], [2, 30.25]]`,
//! `[1.0, 2.0, 3.0]`, `1e-05`, `"caf\u00e9"`.

use std::fmt::Write;

/// An id as the content table stores it; it keeps its SQLite type in JSON.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum IdValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(Box<str>),
    /// A BLOB key (a faiss table over a table keyed by a BLOB): the `id` column returns it;
    /// JSON has no form for it (`faiss_search` refuses it before rendering).
    Blob(Box<[u8]>),
}

/// Append Python's `repr` of `x` (what `json.dumps` writes for a float).
pub(crate) fn push_float(out: &mut String, x: f64) {
    if x.is_nan() {
        out.push_str("NaN");
        return;
    }
    if x.is_infinite() {
        out.push_str(if x > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    // Rust's `{:e}` gives the shortest digits that round-trip, as Python's repr does:
    // "2.4000000953674316e0", "-1e-5". Re-lay them out with Python's rules.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').expect("{:e} always has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let n = digits.len() as i32;
    // Position of the decimal point relative to the first digit: x = 0.DIGITS × 10^decpt.
    let decpt = exp + 1;
    if negative {
        out.push('-');
    }
    if x == 0.0 {
        out.push_str("0.0");
    } else if decpt <= -4 || decpt > 16 {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs());
    } else if decpt <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-decpt) as usize));
        out.push_str(&digits);
    } else if decpt < n {
        out.push_str(&digits[..decpt as usize]);
        out.push('.');
        out.push_str(&digits[decpt as usize..]);
    } else {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (decpt - n) as usize));
        out.push_str(".0");
    }
}

/// Append `s` as a JSON string with `ensure_ascii=True` escaping.
pub(crate) fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

pub(crate) fn push_id(out: &mut String, id: &IdValue) {
    match id {
        IdValue::Null => out.push_str("null"),
        IdValue::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        IdValue::Real(x) => push_float(out, *x),
        IdValue::Text(s) => push_str(out, s),
        IdValue::Blob(b) => push_str(out, &hex(b)),
    }
}

/// `bytes` as upper-case hex, as SQLite's `hex()` writes them.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|x| format!("{x:02X}")).collect()
}

/// `[a, b, c]` with `", "` between the items, as `json.dumps` writes lists.
pub(crate) fn list<T>(
    items: impl IntoIterator<Item = T>,
    mut item: impl FnMut(&mut String, T),
) -> String {
    let mut out = String::from("[");
    for (i, x) in items.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        item(&mut out, x);
    }
    out.push(']');
    out
}

/// `[1.0, 2.5]`: float32 values widened to double, as Python prints them.
pub(crate) fn floats(v: &[f32]) -> String {
    list(v, |out, x| push_float(out, *x as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr(x: f64) -> String {
        let mut s = String::new();
        push_float(&mut s, x);
        s
    }

    #[test]
    fn floats_match_python_repr() {
        let cases = [
            (1.0, "1.0"),
            (0.25, "0.25"),
            (30.25, "30.25"),
            (1e-05, "1e-05"),
            (0.0001, "0.0001"),
            (1.500000053056283e-07, "1.500000053056283e-07"),
            (f32::MAX as f64, "3.4028234663852886e+38"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (-2.5, "-2.5"),
            (2.4f32 as f64, "2.4000000953674316"),
            (0.1, "0.1"),
            (100.0, "100.0"),
            (5e-324, "5e-324"),
            (f64::INFINITY, "Infinity"),
        ];
        for (x, want) in cases {
            assert_eq!(repr(x), want, "repr({x:e})");
        }
    }

    #[test]
    fn strings_match_json_dumps() {
        let mut s = String::new();
        push_str(&mut s, "caf\u{e9} \"q\" \\ \n\t\u{1}\u{7f} \u{1F600}");
        assert_eq!(s, r#""caf\u00e9 \"q\" \\ \n\t\u0001\u007f \ud83d\ude00""#);
    }

    #[test]
    fn lists_and_ids() {
        assert_eq!(floats(&[1.0, 2.0, 3.0]), "[1.0, 2.0, 3.0]");
        assert_eq!(floats(&[]), "[]");
        let ids = [
            IdValue::Integer(1),
            IdValue::Text("a".into()),
            IdValue::Null,
        ];
        assert_eq!(list(&ids, push_id), r#"[1, "a", null]"#);
    }
}
