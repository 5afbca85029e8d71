//! Where a connection comes from: the key of every limit, cap and count that is about origin (the
//! handshake rate, pairing requests, the unpaired connection caps, refusal summaries).
//!
//! On the LAN that is the peer's IP address. A relayed stream's address is the relay's, shared by every
//! node behind it, so it is keyed by the stream's routing token instead: one node's streams share a
//! budget, and no node can spend another's.

use std::fmt;
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    Lan(IpAddr),
    /// The SHA-256 of the routing token the relay admitted the stream with.
    Relay([u8; 32]),
}

impl Source {
    /// The path a connection from here takes.
    pub fn path(&self) -> node_kit::protocol::LinkPath {
        match self {
            Source::Lan(_) => node_kit::protocol::LinkPath::Lan,
            Source::Relay(_) => node_kit::protocol::LinkPath::Relay,
        }
    }

    /// A relayed source's token hash as the gateway and the relay write it (lowercase hex).
    pub fn relay_hash_hex(&self) -> Option<String> {
        match self {
            Source::Relay(hash) => Some(hash.iter().map(|b| format!("{b:02x}")).collect()),
            Source::Lan(_) => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Lan(ip) => write!(f, "{ip}"),
            Source::Relay(hash) => {
                f.write_str("relay:")?;
                hash[..6].iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_sources_show_a_short_token_hash_and_never_equal_an_address() {
        let relay = Source::Relay([0xab; 32]);
        assert_eq!(relay.to_string(), "relay:abababababab");
        assert_eq!(Source::Lan(IpAddr::from([10, 0, 0, 1])).to_string(), "10.0.0.1");
        assert_ne!(relay, Source::Relay([0xac; 32]));
        assert_eq!(relay.relay_hash_hex().unwrap(), "ab".repeat(32));
        assert_eq!(Source::Lan(IpAddr::from([10, 0, 0, 1])).relay_hash_hex(), None);
    }
}
