//! Pairing door 3, the PIN: SPAKE2 on a 6-digit PIN with the two TLS key IDs each side saw as the SPAKE2
//! identities. The node runs side A, the computer side B. A client of the sealed HTTP contract has no key:
//! its identity A is the fixed [`SEALED_CLIENT_IDENTITY`], and its ID comes out of the exchange
//! ([`PinKeys::client_id`]), so no name it chose and no ID anyone chose can be its identity.
//!
//! Why the keys are bound in: door 3 runs inside a TLS session whose bridge key the node has not pinned
//! yet. A relay that puts itself in the middle must present its own key to each side, so the node and the
//! computer then run SPAKE2 with different identities, derive different keys, and the confirmation fails,
//! with one of the code's five tries spent. SPAKE2 itself gives anyone in the middle one PIN guess per
//! exchange and nothing to test PINs against offline.
//!
//! After the exchange the computer proves the key first (`bridge` confirmation), then the node (`node`
//! confirmation). Both are HMAC-SHA256 under the shared key with a fixed label; the seal key for the
//! HTTP contract comes from the same key under its own label.

use certs::KeyId;
use ring::hmac;
use spake2::{Ed25519Group, Identity, Password, Spake2};
use subtle::ConstantTimeEq;

const LABEL_BRIDGE: &[u8] = b"lanyard-pin-v1 bridge confirms";
const LABEL_NODE: &[u8] = b"lanyard-pin-v1 node confirms";
const LABEL_SEAL: &[u8] = b"lanyard-pin-v1 seal key";
const LABEL_CLIENT_ID: &[u8] = b"lanyard-pin-v1 client id";

/// SPAKE2 identity A of a keyless client of the sealed HTTP contract. It is not 32 bytes long, so it is
/// never a key ID: a sealed exchange and a TLS device's exchange never share their identities.
pub const SEALED_CLIENT_IDENTITY: &[u8] = b"lanyard-http-client-v2";

/// How many digits a PIN has.
pub const PIN_DIGITS: usize = 6;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    #[error("the PIN must be {PIN_DIGITS} digits")]
    BadPin,
    #[error("the other side's PIN message is malformed")]
    BadMessage,
    /// Either the PINs differ or someone in the middle swapped the TLS keys: the two cannot be told apart,
    /// which is the point.
    #[error("the PIN did not match (or the connection was intercepted)")]
    Mismatch,
}

/// The keys one finished exchange yields.
pub struct PinKeys {
    key: Vec<u8>,
}

impl PinKeys {
    fn tag(&self, label: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &self.key), label).as_ref().to_vec()
    }

    /// What the computer sends to prove it has the key.
    pub fn bridge_confirmation(&self) -> Vec<u8> {
        self.tag(LABEL_BRIDGE)
    }

    /// What the node sends to prove it has the key.
    pub fn node_confirmation(&self) -> Vec<u8> {
        self.tag(LABEL_NODE)
    }

    /// Checks the node's confirmation, in constant time.
    pub fn check_node(&self, confirmation: &[u8]) -> Result<(), PinError> {
        check(&self.node_confirmation(), confirmation)
    }

    /// The 32-byte key that seals the HTTP contract's envelopes for this pairing.
    pub fn seal_key(&self) -> [u8; 32] {
        self.tag(LABEL_SEAL).try_into().expect("HMAC-SHA256 tags are 32 bytes")
    }

    /// The ID of a sealed client paired by this exchange. Both sides' random scalars went into the key, so
    /// neither side chose it, nobody without the PIN can know it, and no two pairings share it.
    pub fn client_id(&self) -> KeyId {
        KeyId::from_digest(self.tag(LABEL_CLIENT_ID).try_into().expect("HMAC-SHA256 tags are 32 bytes"))
    }
}

fn check(expected: &[u8], presented: &[u8]) -> Result<(), PinError> {
    if bool::from(expected.ct_eq(presented)) { Ok(()) } else { Err(PinError::Mismatch) }
}

/// SPAKE2 identity A: the node's key ID (32 bytes), or [`SEALED_CLIENT_IDENTITY`] for a keyless client.
fn identity_a(node: Option<&KeyId>) -> &[u8] {
    node.map_or(SEALED_CLIENT_IDENTITY, |id| id.as_bytes())
}

fn start(
    pin: &str,
    node: Option<&KeyId>,
    bridge: &KeyId,
    side_a: bool,
) -> Result<(Spake2<Ed25519Group>, Vec<u8>), PinError> {
    if pin.len() != PIN_DIGITS || !pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PinError::BadPin);
    }
    let (password, a, b) =
        (Password::new(pin.as_bytes()), Identity::new(identity_a(node)), Identity::new(bridge.as_bytes()));
    Ok(if side_a { Spake2::start_a(&password, &a, &b) } else { Spake2::start_b(&password, &a, &b) })
}

/// The node's side, between its message and the computer's answer.
pub struct NodePin(Spake2<Ed25519Group>);

impl NodePin {
    /// `node` is this node's own key ID (`None` for a keyless client of the sealed HTTP contract);
    /// `bridge` the key the bridge presented in TLS (the invite's bridge ID). Returns the message to send.
    pub fn start(pin: &str, node: Option<&KeyId>, bridge: &KeyId) -> Result<(NodePin, Vec<u8>), PinError> {
        let (state, message) = start(pin, node, bridge, true)?;
        Ok((NodePin(state), message))
    }

    /// Takes the computer's message and confirmation; the keys if the computer proved the same key.
    pub fn finish(self, message: &[u8], bridge_confirmation: &[u8]) -> Result<PinKeys, PinError> {
        let keys = PinKeys { key: self.0.finish(message).map_err(|_| PinError::BadMessage)? };
        check(&keys.bridge_confirmation(), bridge_confirmation)?;
        Ok(keys)
    }
}

/// The computer's side in one step: `node` is the key the node presented in TLS (`None` for a keyless
/// client), `bridge` the bridge's own. Returns its message and the keys (send
/// [`PinKeys::bridge_confirmation`] with the message).
pub fn answer(
    pin: &str,
    node: Option<&KeyId>,
    bridge: &KeyId,
    node_message: &[u8],
) -> Result<(Vec<u8>, PinKeys), PinError> {
    let (state, message) = start(pin, node, bridge, false)?;
    let key = state.finish(node_message).map_err(|_| PinError::BadMessage)?;
    Ok((message, PinKeys { key }))
}

/// A fresh random PIN.
pub fn random_pin() -> String {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).expect("the OS random source works");
    // 2^32 is not a multiple of 10^6; the bias (under 0.03%) does not matter for a 5-try PIN.
    format!("{:06}", u32::from_be_bytes(bytes) % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (KeyId, KeyId) {
        (certs::Identity::generate().id(), certs::Identity::generate().id())
    }

    #[test]
    fn the_same_pin_and_keys_agree_and_confirm_both_ways() {
        let (node, bridge) = ids();
        let (side_a, to_bridge) = NodePin::start("482913", Some(&node), &bridge).unwrap();
        let (to_node, bridge_keys) = answer("482913", Some(&node), &bridge, &to_bridge).unwrap();
        let node_keys = side_a.finish(&to_node, &bridge_keys.bridge_confirmation()).unwrap();
        bridge_keys.check_node(&node_keys.node_confirmation()).unwrap();
        assert_eq!(node_keys.seal_key(), bridge_keys.seal_key());
    }

    #[test]
    fn a_wrong_pin_or_a_swapped_key_fails_the_confirmation() {
        let (node, bridge) = ids();
        let (side_a, to_bridge) = NodePin::start("482913", Some(&node), &bridge).unwrap();
        let (to_node, keys) = answer("482914", Some(&node), &bridge, &to_bridge).unwrap();
        assert_eq!(side_a.finish(&to_node, &keys.bridge_confirmation()).err(), Some(PinError::Mismatch));

        // A middleman: the node saw the middleman's key as the bridge's, the computer saw another as the node's.
        let (middle_to_node, middle_to_bridge) = ids();
        let (side_a, to_bridge) = NodePin::start("482913", Some(&node), &middle_to_node).unwrap();
        let (to_node, keys) = answer("482913", Some(&middle_to_bridge), &bridge, &to_bridge).unwrap();
        assert_eq!(side_a.finish(&to_node, &keys.bridge_confirmation()).err(), Some(PinError::Mismatch));
        assert_eq!(keys.check_node(&[0; 32]), Err(PinError::Mismatch));
    }

    #[test]
    fn a_node_confirmation_proves_this_exchange_and_no_other() {
        let (node, bridge) = ids();
        let agree = |pin: &str| {
            let (side_a, to_bridge) = NodePin::start("482913", Some(&node), &bridge).unwrap();
            let (to_node, bridge_keys) = answer(pin, Some(&node), &bridge, &to_bridge).unwrap();
            let node_keys = PinKeys { key: side_a.0.finish(&to_node).unwrap() };
            (node_keys, bridge_keys)
        };
        let (node_keys, bridge_keys) = agree("482914");
        assert_eq!(bridge_keys.check_node(&node_keys.node_confirmation()), Err(PinError::Mismatch));
        let (first, _) = agree("482913");
        let (second, _) = agree("482913");
        assert_ne!(first.node_confirmation(), second.node_confirmation(), "fresh each exchange");
        assert_ne!(first.seal_key(), second.seal_key(), "fresh each exchange");
        assert_ne!(first.node_confirmation(), first.bridge_confirmation());
        assert_ne!(first.seal_key().to_vec(), first.node_confirmation());
    }

    #[test]
    fn a_keyless_client_gets_an_id_from_the_exchange_that_no_two_pairings_share() {
        let bridge = certs::Identity::generate().id();
        let pair = || {
            let (side_a, to_bridge) = NodePin::start("482913", None, &bridge).unwrap();
            let (to_node, bridge_keys) = answer("482913", None, &bridge, &to_bridge).unwrap();
            let node_keys = side_a.finish(&to_node, &bridge_keys.bridge_confirmation()).unwrap();
            assert_eq!(node_keys.client_id(), bridge_keys.client_id(), "both sides derive the same ID");
            node_keys.client_id()
        };
        assert_ne!(pair(), pair(), "the same PIN, bridge and device: still two IDs");

        // A keyless exchange is not a TLS device's: a computer that took side A for a node key disagrees.
        let node = certs::Identity::generate().id();
        let (side_a, to_bridge) = NodePin::start("482913", None, &bridge).unwrap();
        let (to_node, keys) = answer("482913", Some(&node), &bridge, &to_bridge).unwrap();
        assert_eq!(side_a.finish(&to_node, &keys.bridge_confirmation()).err(), Some(PinError::Mismatch));
    }

    #[test]
    fn pins_are_six_digits() {
        let (node, bridge) = ids();
        for bad in ["12345", "1234567", "12345a", ""] {
            assert_eq!(NodePin::start(bad, Some(&node), &bridge).err(), Some(PinError::BadPin), "{bad}");
        }
        assert!(answer("123456", Some(&node), &bridge, b"short").is_err());
        let pin = random_pin();
        assert_eq!(pin.len(), 6);
        assert!(pin.bytes().all(|b| b.is_ascii_digit()));
    }
}
