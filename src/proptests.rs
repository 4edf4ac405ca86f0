//! Property tests for the parsers and codecs that take untrusted input: whatever the bytes,
//! they return a value or an error, never panic, and what they accept round-trips.

use proptest::prelude::*;

use crate::engine::SearchParams;
use crate::json;
use crate::sqlite::Cell;
use crate::vector;
use crate::vtab::options;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn blob_vectors_round_trip(v in prop::collection::vec(-1e30f32..1e30, 1..200)) {
        let blob = vector::encode(&v);
        prop_assert_eq!(vector::parse(Cell::Blob(&blob)).unwrap(), v);
    }

    #[test]
    fn json_output_parses_back_to_the_same_floats(v in prop::collection::vec(any::<f32>().prop_filter("finite", |x| x.is_finite()), 1..50)) {
        let text = json::floats(&v);
        prop_assert_eq!(vector::parse(Cell::Text(text.as_bytes())).unwrap(), v.clone());
        // and what serde_json (a strict JSON reader) sees is the same numbers
        let back: Vec<f64> = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(back, v.iter().map(|x| *x as f64).collect::<Vec<_>>());
    }

    #[test]
    fn float_repr_round_trips(x in any::<f64>().prop_filter("finite", |x| x.is_finite())) {
        let mut s = String::new();
        json::push_float(&mut s, x);
        prop_assert_eq!(s.parse::<f64>().unwrap(), x);
        prop_assert!(s.contains('.') || s.contains('e'), "{} looks like an integer", s);
    }

    #[test]
    fn json_strings_are_ascii_and_valid(s in ".*") {
        let mut out = String::new();
        json::push_str(&mut out, &s);
        prop_assert!(out.is_ascii());
        let back: String = serde_json::from_str(&out).unwrap();
        prop_assert_eq!(back, s);
    }

    #[test]
    fn vector_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = vector::parse(Cell::Text(&bytes));
        let _ = vector::parse(Cell::Blob(&bytes));
    }

    #[test]
    fn json_like_text_never_panics(s in r"[\[\]0-9eE+\-., \t\n]{0,80}") {
        if let Ok(v) = vector::parse(Cell::Text(s.as_bytes())) {
            prop_assert!(!v.is_empty() && v.iter().all(|x| x.is_finite()));
        }
    }

    #[test]
    fn option_and_parameter_parsers_never_panic(args in prop::collection::vec(".{0,40}", 0..6), p in ".{0,60}") {
        let _ = options::parse(&args);
        let _ = SearchParams::parse(&p);
        let _ = crate::index::check_factory(&p);
    }
}
