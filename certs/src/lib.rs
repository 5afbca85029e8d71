//! Lanyard identities and TLS pinning.
//!
//! Every party (the bridge, each node) has a long-lived Ed25519 key. Its [`KeyId`] is the SHA-256 of the
//! key's SubjectPublicKeyInfo; that is what pairing stores and what TLS pins. Certificates are self-signed
//! and carry nothing but the key: trust comes from the pin, never from a CA or a name.
//!
//! - [`KeyId`]: the ID of a key, with the chunked form people compare.
//! - [`Identity`]: a private key and its certificate, and the TLS 1.3 configs built from it.
//! - [`PeerKeyVerifier`]: the one verifier both sides use. It checks the peer's key against a [`Pin`]
//!   **and** has rustls verify the handshake signature, so a copied certificate is worthless without its key.

mod identity;
mod key_id;
mod verifier;

pub use identity::{Identity, IdentityError};
pub use key_id::{KeyId, KeyIdError};
pub use rustls;
pub use verifier::{PeerKeyVerifier, Pin, peer_key, peer_key_id};

use std::sync::Arc;

/// The one crypto provider Lanyard uses (ring), passed explicitly so that no process-wide default is needed.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// SHA-256, for key IDs and for the short authentication string.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        ctx.update(part);
    }
    ctx.finish().as_ref().try_into().expect("SHA-256 is 32 bytes")
}
