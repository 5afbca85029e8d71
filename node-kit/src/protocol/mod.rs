//! The Lanyard wire protocol: JSON text frames over a WebSocket.
//!
//! `docs/protocol.md` describes the same types for implementers in other languages; keep the two in step.

mod agent;
mod commands;
mod error;
mod frame;
mod limits;
mod methods;
mod pairing;
mod push;
mod tunnel;

pub use agent::*;
pub use commands::*;
pub use error::{ErrorCode, ErrorShape};
pub use frame::*;
pub use limits::*;
pub use methods::*;
pub use pairing::*;
pub use push::*;
pub use tunnel::*;

/// The protocol version this build speaks. Peers negotiate within `[min, max]` ranges in `connect`.
pub const PROTOCOL_VERSION: u32 = 1;
/// The oldest protocol version this build still accepts.
pub const MIN_PROTOCOL_VERSION: u32 = 1;

/// The message of the error that ends a run, and the reason of the Close that ends a connection, when the
/// gateway stops (Ctrl-C of `lanyard up`): a clean stop, which clients and the bridge tell from a failure.
pub const GATEWAY_SHUTTING_DOWN: &str = "the gateway is shutting down";

/// The reason of the Close that ends a node's older connection when the node connected again (a phone moving
/// between the LAN and the relay): sent by the gateway on the older link, and by the bridge to the device.
pub const REPLACED_BY_NEWER_CONNECTION: &str = "replaced by a newer connection of this node";

/// Milliseconds since the Unix epoch: the unit of every timestamp in the protocol.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

/// `text` cut to `max` characters, with `…` where it was cut: for one-line summaries people read.
pub fn ellipsize(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// Picks the highest version both sides speak, if any.
pub fn negotiate_version(peer_min: u32, peer_max: u32) -> Option<u32> {
    let high = peer_max.min(PROTOCOL_VERSION);
    let low = peer_min.max(MIN_PROTOCOL_VERSION);
    (low <= high).then_some(high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_highest_common_version() {
        assert_eq!(negotiate_version(1, 1), Some(1));
        assert_eq!(negotiate_version(1, 9), Some(PROTOCOL_VERSION));
        assert_eq!(negotiate_version(2, 9), None);
        assert_eq!(negotiate_version(0, 0), None);
    }
}
