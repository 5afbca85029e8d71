//! What the bridge reads of a sealed client's HTTP exchange, body by body: `/v1/pair/start`
//! (`PairPinParams`), `/v1/pair/confirm` (`PairPinConfirmParams`), `/v1/chat`'s `{"counter","sealed"}`
//! (`SealedBody`), and, once the gateway opened it, the envelope (`Envelope`) and `ai_chat`'s payload
//! (`ChatPayload`). Never a panic; whatever parses writes back to itself.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use node_kit::protocol::{PairPinConfirmParams, PairPinParams};
use node_kit::seal::{ChatPayload, Envelope, SealedBody};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

fuzz_target!(|data: &[u8]| {
    body::<PairPinParams>(data);
    body::<PairPinConfirmParams>(data);
    body::<SealedBody>(data);
    if let Some(envelope) = body::<Envelope>(data)
        && let Ok(payload) = serde_json::from_value::<ChatPayload>(envelope.payload)
    {
        common::assert_round_trip(&payload);
    }
});

/// The body as the bridge reads it (`serde_json::from_slice`), checked to write back to itself.
fn body<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) -> Option<T> {
    let parsed = serde_json::from_slice::<T>(data).ok()?;
    common::assert_round_trip(&parsed);
    Some(parsed)
}
