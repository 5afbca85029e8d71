//! The sealed HTTP contract for simple clients (`docs/protocol.md` §20): clients with no TLS stack of their
//! own pair by PIN and then chat over plain HTTPS to the relay, every body sealed end to end between them
//! and the bridge with XChaCha20-Poly1305 under the key their PIN exchange derived.
//!
//! Nonces are counters, never random: the client numbers its requests from 1 and the computer takes each
//! number once, so a body the relay (or anyone) replays is refused. A nonce is
//! `[direction][counter u64 BE][index u64 BE][7 zero bytes]`; the computer's answer to request `counter`
//! is frames `index` 0, 1, 2… under the same counter, and the pairing answer is (computer, 0, 0). No two
//! seals under one key ever share a nonce.

use crate::protocol::{AgentEvent, AgentOutcome, ErrorShape, Scope};
use certs::KeyId;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

/// Bound into every seal, so a sealed body means nothing to any other protocol.
const AAD: &[u8] = b"lanyard-seal-v1";
/// The envelope version this computer speaks.
pub const ENVELOPE_VERSION: u32 = 1;

/// The commands of the envelope; a new one is a new handler, never a change to these. Every command but
/// `ai_chat` and `hello` is the node protocol's method of the same name, run as that method.
pub mod command {
    use crate::protocol::method;

    /// One prompt on one conversation (the first version of this contract), streamed.
    pub const AI_CHAT: &str = "ai_chat";
    /// Who the computer, this client and its scopes are, and the commands the computer knows.
    pub const HELLO: &str = "hello";
    /// A turn, streamed: the node protocol's `agent`.
    pub const AGENT: &str = method::AGENT;
    /// A run followed again after `afterSeq`, streamed: the node protocol's `agent.attach`.
    pub const AGENT_ATTACH: &str = method::AGENT_ATTACH;
    /// Commands answered with one value: the result of the gateway method of the same name, as it is.
    pub const UNARY: &[&str] = &[
        method::AGENT_RESPOND,
        method::AGENT_CANCEL,
        method::AGENT_PENDING,
        method::AGENT_SESSIONS,
        method::AGENT_HISTORY,
        method::PUSH_KEY,
        method::PUSH_SUBSCRIBE,
        method::PUSH_UNSUBSCRIBE,
    ];
    /// Every command, as `unknown_command` and `hello` list them.
    pub fn all() -> Vec<String> {
        [AI_CHAT, HELLO, AGENT, AGENT_ATTACH].iter().chain(UNARY).map(|c| c.to_string()).collect()
    }
}

/// Who sealed a body: each side has its own half of the nonce space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ToBridge = 0,
    ToClient = 1,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the sealed body is not base64url")]
    NotBase64,
    #[error("the sealed body does not open under this pairing's key (tampered, or sealed for another counter)")]
    Unreadable,
}

/// The 32-byte key of one PIN pairing. Zeroed when dropped.
#[derive(Clone)]
pub struct SealKey(Zeroizing<[u8; 32]>);

impl SealKey {
    pub fn new(bytes: [u8; 32]) -> SealKey {
        SealKey(Zeroizing::new(bytes))
    }

    /// The key as base64url, for the private state file that keeps it.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(data_encoding::BASE64URL_NOPAD.encode(&*self.0))
    }

    pub fn from_base64(text: &str) -> Option<SealKey> {
        let bytes = Zeroizing::new(data_encoding::BASE64URL_NOPAD.decode(text.as_bytes()).ok()?);
        Some(SealKey::new(bytes.as_slice().try_into().ok()?))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&*self.0).into())
    }

    /// Seals `plaintext` as frame `index` of `counter` in `direction`; base64url.
    pub fn seal(&self, direction: Direction, counter: u64, index: u64, plaintext: &[u8]) -> String {
        let sealed = self
            .cipher()
            .encrypt(&nonce(direction, counter, index), Payload { msg: plaintext, aad: AAD })
            .expect("XChaCha20-Poly1305 seals any length a body can have");
        data_encoding::BASE64URL_NOPAD.encode(&sealed)
    }

    /// Opens what [`SealKey::seal`] made with the same direction, counter and index.
    pub fn open(&self, direction: Direction, counter: u64, index: u64, sealed: &str) -> Result<Vec<u8>, SealError> {
        let bytes = data_encoding::BASE64URL_NOPAD.decode(sealed.as_bytes()).map_err(|_| SealError::NotBase64)?;
        self.cipher()
            .decrypt(&nonce(direction, counter, index), Payload { msg: &bytes, aad: AAD })
            .map_err(|_| SealError::Unreadable)
    }

    /// Seals a JSON value.
    pub fn seal_json(&self, direction: Direction, counter: u64, index: u64, value: &impl Serialize) -> String {
        self.seal(direction, counter, index, &serde_json::to_vec(value).expect("sealed payloads serialise"))
    }
}

fn nonce(direction: Direction, counter: u64, index: u64) -> XNonce {
    let mut nonce = [0u8; 24];
    nonce[0] = direction as u8;
    nonce[1..9].copy_from_slice(&counter.to_be_bytes());
    nonce[9..17].copy_from_slice(&index.to_be_bytes());
    nonce.into()
}

/// A sealed body: `{"sealed": …}`, with the counter when the client sealed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<u64>,
    pub sealed: String,
}

/// What `POST /v1/pair/confirm` answers, sealed as (computer, 0, 0): the seed's pairing result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    /// The bearer token for `/v1/chat` (the client's routing token).
    pub token: String,
    /// The ID the computer stored this pairing under.
    pub node_id: KeyId,
    /// The bridge's Ed25519 public key, base64url; it hashes to the bridge ID of the invite.
    pub bridge_public_key: String,
    pub relay_url: Option<String>,
    pub scopes: Vec<Scope>,
    /// The name the owner knows this computer by (as `lanyard` and the LAN advertisement show it): a
    /// label to show, never an identity.
    pub computer_name: String,
}

/// The versioned command envelope every `/v1/chat` body seals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub command: String,
    pub version: u32,
    pub payload: Value,
}

/// What `hello` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealedHello {
    /// The computer: its bridge ID and its name.
    pub computer: Named,
    /// This client: the ID the computer keeps it under, and the name the owner sees for it.
    pub device: Named,
    pub scopes: Vec<Scope>,
    /// Every command the computer knows ([`command::ALL`]).
    pub commands: Vec<String>,
}

/// An ID with the name shown for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Named {
    pub id: KeyId,
    pub name: String,
}

/// `ai_chat`'s payload: one prompt on one of the client's conversations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatPayload {
    pub conversation_id: String,
    pub message: String,
}

/// One frame of a streamed answer (`ai_chat`, `agent`, `agent.attach`), each an SSE event of its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChatFrame {
    /// The turn was accepted as run `run_id`.
    Accepted { run_id: String },
    /// An event of the run, as a node sees it (text deltas, tool use, prompts).
    Agent { event: Box<AgentEvent> },
    /// The run ended; the last frame.
    Done { outcome: Box<AgentOutcome> },
    /// The run failed; the last frame.
    Error { error: ErrorShape },
}

/// The body of an error the computer answers after opening the envelope (sealed, so the relay sees only
/// the status): `unknown_command` names the command and lists the supported ones, as the seed contract has it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CommandError {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The refusal's details, as the node protocol's error shape has them (`resolution` of a closed
    /// prompt, the caps of a refused image, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    /// When a retry may pass (a rate limit, a gateway restarting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supported: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> SealKey {
        SealKey::new([byte; 32])
    }

    #[test]
    fn a_seal_opens_only_with_its_key_direction_counter_and_index() {
        let sealed = key(1).seal(Direction::ToBridge, 7, 0, b"hello");
        assert_eq!(key(1).open(Direction::ToBridge, 7, 0, &sealed).unwrap(), b"hello");
        assert_eq!(key(2).open(Direction::ToBridge, 7, 0, &sealed), Err(SealError::Unreadable));
        assert_eq!(key(1).open(Direction::ToClient, 7, 0, &sealed), Err(SealError::Unreadable));
        assert_eq!(key(1).open(Direction::ToBridge, 8, 0, &sealed), Err(SealError::Unreadable));
        assert_eq!(key(1).open(Direction::ToBridge, 7, 1, &sealed), Err(SealError::Unreadable));
        assert_eq!(key(1).open(Direction::ToBridge, 7, 0, "not base64!"), Err(SealError::NotBase64));
    }

    #[test]
    fn sealed_json_opens_to_the_same_json() {
        let frame = ChatFrame::Accepted { run_id: "r1".into() };
        let sealed = key(3).seal_json(Direction::ToClient, 4, 5, &frame);
        let opened: ChatFrame =
            serde_json::from_slice(&key(3).open(Direction::ToClient, 4, 5, &sealed).unwrap()).unwrap();
        assert_eq!(opened, frame);
    }

    #[test]
    fn a_flipped_bit_is_refused() {
        let sealed = key(1).seal(Direction::ToClient, 1, 2, b"frame");
        let mut bytes = data_encoding::BASE64URL_NOPAD.decode(sealed.as_bytes()).unwrap();
        bytes[0] ^= 1;
        let tampered = data_encoding::BASE64URL_NOPAD.encode(&bytes);
        assert_eq!(key(1).open(Direction::ToClient, 1, 2, &tampered), Err(SealError::Unreadable));
    }

    #[test]
    fn nonces_of_different_frames_differ_in_every_field() {
        let base = nonce(Direction::ToBridge, 1, 0);
        assert_ne!(base, nonce(Direction::ToClient, 1, 0));
        assert_ne!(base, nonce(Direction::ToBridge, 2, 0));
        assert_ne!(base, nonce(Direction::ToBridge, 1, 1));
        assert_eq!(
            nonce(Direction::ToClient, 0x0102, 3).as_slice()[..17],
            [1, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 3]
        );
    }

    #[test]
    fn keys_survive_base64() {
        let text = key(9).to_base64();
        assert_eq!(
            SealKey::from_base64(&text).unwrap().seal(Direction::ToBridge, 1, 0, b"x"),
            key(9).seal(Direction::ToBridge, 1, 0, b"x")
        );
        assert!(SealKey::from_base64("short").is_none());
    }
}

/// The counter rules of `docs/protocol.md` ("Sealing") as properties over any keys, counters and frames.
#[cfg(test)]
mod counter_rules {
    use super::*;
    use proptest::prelude::*;

    /// Where a body or frame was sealed: (direction, counter, frame index).
    type Place = (Direction, u64, u64);

    fn direction() -> impl Strategy<Value = Direction> {
        prop_oneof![Just(Direction::ToBridge), Just(Direction::ToClient)]
    }

    /// Small numbers too, so that two places often share a counter or an index.
    fn number() -> impl Strategy<Value = u64> {
        prop_oneof![0u64..4, any::<u64>()]
    }

    fn place() -> impl Strategy<Value = Place> {
        (direction(), number(), number())
    }

    proptest! {
        /// The nonce is `[direction][counter u64 BE][frame u64 BE][7 zero bytes]`, so two places share a
        /// nonce only when they are the same place.
        #[test]
        fn the_nonce_is_the_documented_bytes_and_never_repeats(a in place(), b in place()) {
            let bytes = nonce(a.0, a.1, a.2);
            prop_assert_eq!(bytes[0], a.0 as u8);
            prop_assert_eq!(&bytes[1..9], &a.1.to_be_bytes());
            prop_assert_eq!(&bytes[9..17], &a.2.to_be_bytes());
            prop_assert_eq!(&bytes[17..], &[0u8; 7]);
            prop_assert_eq!(a == b, bytes == nonce(b.0, b.1, b.2));
        }

        /// A seal opens only where it was sealed: sent back the other way (reflected), under another
        /// body's counter (replayed into another exchange) or at another frame index (reordered), it does
        /// not open.
        #[test]
        fn a_seal_opens_only_at_its_own_place(
            key in any::<[u8; 32]>(),
            at in place(),
            elsewhere in place(),
            plaintext in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let key = SealKey::new(key);
            let sealed = key.seal(at.0, at.1, at.2, &plaintext);
            prop_assert_eq!(key.open(at.0, at.1, at.2, &sealed), Ok(plaintext));
            if elsewhere != at {
                prop_assert_eq!(key.open(elsewhere.0, elsewhere.1, elsewhere.2, &sealed), Err(SealError::Unreadable));
            }
        }

        /// A client reads a streamed answer as frames 0, 1, 2, … of its body's counter: whatever the relay
        /// delivers (frames dropped, repeated, reordered, or another body's), it reads exactly the frames
        /// that came in order, up to the first out of place, and nothing after it.
        #[test]
        fn a_stream_reads_only_its_frames_in_order(
            counter in 1u64..4,
            delivered in proptest::collection::vec((0u64..4, 0u64..6), 0..12),
        ) {
            let key = SealKey::new([7; 32]);
            let mut read = Vec::new();
            for (body, frame) in &delivered {
                let sealed = key.seal(Direction::ToClient, *body, *frame, format!("{body}/{frame}").as_bytes());
                match key.open(Direction::ToClient, counter, read.len() as u64, &sealed) {
                    Ok(plaintext) => read.push(String::from_utf8(plaintext).unwrap()),
                    Err(_) => break,
                }
            }
            let in_order = delivered
                .iter()
                .enumerate()
                .take_while(|(i, (body, frame))| *body == counter && *frame == *i as u64)
                .count();
            let expected: Vec<String> = (0..in_order).map(|i| format!("{counter}/{i}")).collect();
            prop_assert_eq!(read, expected);
        }
    }
}
