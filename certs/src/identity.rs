//! A party's long-lived key and the self-signed certificate that carries it into TLS.

use crate::key_id::KeyId;
use crate::verifier::PeerKeyVerifier;
use rcgen::{CertificateParams, KeyPair, PKCS_ED25519};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, ServerConfig};
use std::sync::Arc;
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("the stored private key is unreadable: {0}")]
    BadKey(String),
    #[error("the stored private key is not an Ed25519 key")]
    NotEd25519,
    #[error("cannot build the TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// A private Ed25519 key, its [`KeyId`] and a certificate for it.
///
/// The certificate is re-made at every start: only the key is long-lived, so there is nothing to renew.
pub struct Identity {
    pkcs8: Zeroizing<Vec<u8>>,
    certificate: CertificateDer<'static>,
    id: KeyId,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.id)
    }
}

impl Identity {
    /// A fresh random key.
    pub fn generate() -> Identity {
        let key = KeyPair::generate_for(&PKCS_ED25519).expect("ring generates Ed25519 keys");
        Identity::from_key_pair(key).expect("a fresh Ed25519 key is usable")
    }

    /// Loads a key saved with [`Identity::to_pkcs8_pem`].
    pub fn from_pkcs8_pem(pem: &str) -> Result<Identity, IdentityError> {
        let key = KeyPair::from_pem(pem).map_err(|e| IdentityError::BadKey(e.to_string()))?;
        Identity::from_key_pair(key)
    }

    fn from_key_pair(key: KeyPair) -> Result<Identity, IdentityError> {
        if !key.is_compatible(&PKCS_ED25519) {
            return Err(IdentityError::NotEd25519);
        }
        let params =
            CertificateParams::new(vec!["lanyard".to_string()]).map_err(|e| IdentityError::BadKey(e.to_string()))?;
        let certificate = params.self_signed(&key).map_err(|e| IdentityError::BadKey(e.to_string()))?.der().clone();
        let id = KeyId::of_spki(&rcgen::PublicKeyData::subject_public_key_info(&key));
        Ok(Identity { pkcs8: Zeroizing::new(key.serialize_der()), certificate, id })
    }

    /// The private key as PKCS#8 PEM, for the keychain or a 0600 file. Zeroed when dropped.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        let key = KeyPair::try_from(self.pkcs8.as_slice()).expect("the key was valid when loaded");
        Zeroizing::new(key.serialize_pem())
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.certificate
    }

    /// The raw 32-byte Ed25519 public key (what a relay checks a proof against).
    pub fn public_key(&self) -> [u8; 32] {
        let key = self.signing_key();
        ring::signature::KeyPair::public_key(&key).as_ref().try_into().expect("Ed25519 public keys are 32 bytes")
    }

    /// Signs `message` with this key (Ed25519). Used outside TLS only where a peer needs proof of the key
    /// before any TLS session exists: the bridge's proof to its relay.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing_key().sign(message).as_ref().try_into().expect("Ed25519 signatures are 64 bytes")
    }

    fn signing_key(&self) -> ring::signature::Ed25519KeyPair {
        ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&self.pkcs8).expect("the key was valid when loaded")
    }

    fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.pkcs8.to_vec()))
    }

    /// A TLS 1.3 server config that presents this identity and requires a client certificate that
    /// `verifier` accepts.
    pub fn server_config(&self, verifier: PeerKeyVerifier) -> Result<ServerConfig, IdentityError> {
        Ok(ServerConfig::builder_with_provider(crate::crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(verifier))
            .with_single_cert(vec![self.certificate.clone()], self.private_key())?)
    }

    /// A TLS 1.3 client config that presents this identity and accepts a server that `verifier` accepts.
    pub fn client_config(&self, verifier: PeerKeyVerifier) -> Result<ClientConfig, IdentityError> {
        Ok(ClientConfig::builder_with_provider(crate::crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_client_auth_cert(vec![self.certificate.clone()], self.private_key())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_with_the_public_key_whose_spki_is_the_id() {
        let identity = Identity::generate();
        let public = identity.public_key();
        let spki = [&[0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00][..], &public].concat();
        assert_eq!(KeyId::of_spki(&spki), identity.id());
        assert_eq!(KeyId::of_ed25519(&public), identity.id());
        let signature = identity.sign(b"lanyard");
        let verifier = ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public);
        assert!(verifier.verify(b"lanyard", &signature).is_ok());
        assert!(verifier.verify(b"lanyarD", &signature).is_err());
    }

    #[test]
    fn saved_key_loads_to_the_same_id() {
        let identity = Identity::generate();
        let pem = identity.to_pkcs8_pem();
        assert!(pem.contains("PRIVATE KEY"));
        let loaded = Identity::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(loaded.id(), identity.id());
        assert_ne!(Identity::generate().id(), identity.id());
    }

    /// `Debug` shows the key ID and nothing of the private key, in any form a `Debug` could print its
    /// bytes: decimal (as a derived `Debug` prints a `Vec<u8>`, on one line or pretty), hex in either
    /// case, or base64 as in the PEM file. Any 8 bytes of the secret seed in a row count as a leak.
    #[test]
    fn debug_shows_the_key_id_and_none_of_the_private_key() {
        let identity = Identity::generate();
        // PKCS#8 for Ed25519: a fixed 16-byte header ending in OCTET STRING { OCTET STRING (32) }, then
        // the 32-byte secret seed (the public key may follow; it is no secret).
        assert_eq!(identity.pkcs8[12..16], [0x04, 0x22, 0x04, 0x20]);
        let key: &[u8] = &identity.pkcs8[16..48];
        let pem = identity.to_pkcs8_pem();
        let base64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        for shown in [format!("{identity:?}"), format!("{identity:#?}")] {
            assert!(shown.contains(&identity.id().to_string()), "{shown}");
            let numbers: Vec<u64> = shown.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect();
            let hex_digits: String = shown.to_lowercase().chars().filter(char::is_ascii_hexdigit).collect();
            for run in key.windows(8) {
                let decimal = numbers.windows(8).any(|w| w.iter().zip(run).all(|(n, b)| *n == u64::from(*b)));
                assert!(!decimal, "key bytes in decimal in {shown}");
                let hex: String = run.iter().map(|b| format!("{b:02x}")).collect();
                assert!(!hex_digits.contains(&hex), "key bytes in hex in {shown}");
            }
            for start in 0..base64.len().saturating_sub(12) {
                assert!(!shown.contains(&base64[start..start + 12]), "the key's base64 in {shown}");
            }
        }
    }

    #[test]
    fn other_key_types_are_refused() {
        let p256 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        assert!(matches!(Identity::from_pkcs8_pem(&p256.serialize_pem()), Err(IdentityError::NotEd25519)));
        assert!(matches!(Identity::from_pkcs8_pem("nonsense"), Err(IdentityError::BadKey(_))));
    }
}
