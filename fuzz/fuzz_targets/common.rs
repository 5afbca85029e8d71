//! What several targets assert of a value a parser accepted.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// parse(write(x)) == x: the value written as JSON reads back as the same value.
pub fn assert_round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) {
    let text = serde_json::to_string(value).expect("a parsed value serialises");
    let again: T = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text} does not parse back: {e}"));
    assert_eq!(&again, value, "{text}");
}
