//! `SealKey::open`, which the gateway runs on every sealed body the relay passes on
//! (`[direction u8][counter u64 BE][frame u64 BE]SEALED-TEXT`, under the key of node-kit's test vectors):
//! never a panic; a body that opens is exactly what sealing its plaintext under the same nonce writes, and
//! opens under no other nonce. `SealKey::from_base64` (the key file) reads a key only from its own text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node_kit::seal::{Direction, SealKey};

/// The key of `node-kit/tests/vectors/rust.json`, so the seed corpus holds bodies that open.
const VECTOR_KEY: &str = "aAGaM8xl_pcguVLrhB22T9hxCqM81W4HkCnCW_SNJr8";

fuzz_target!(|data: &[u8]| {
    let Some((&direction, rest)) = data.split_first() else { return };
    let Some((counter, rest)) = rest.split_first_chunk::<8>() else { return };
    let Some((frame, sealed)) = rest.split_first_chunk::<8>() else { return };
    let Ok(sealed) = std::str::from_utf8(sealed) else { return };
    let direction = if direction & 1 == 0 { Direction::ToBridge } else { Direction::ToClient };
    let (counter, frame) = (u64::from_be_bytes(*counter), u64::from_be_bytes(*frame));

    let key = SealKey::from_base64(VECTOR_KEY).expect("the vectors' key");
    if let Ok(plaintext) = key.open(direction, counter, frame, sealed) {
        assert_eq!(key.seal(direction, counter, frame, &plaintext), sealed);
        assert!(key.open(direction, counter.wrapping_add(1), frame, sealed).is_err());
        assert!(key.open(direction, counter, frame.wrapping_add(1), sealed).is_err());
        let other = if direction == Direction::ToBridge { Direction::ToClient } else { Direction::ToBridge };
        assert!(key.open(other, counter, frame, sealed).is_err());
    }
    if let Some(read) = SealKey::from_base64(sealed) {
        assert_eq!(*read.to_base64(), sealed);
    }
});
