//! The computer's VAPID key (RFC 8292): a P-256 key made on first use and kept in the gateway's home
//! (mode 0600, written atomically), and the `Authorization` header it signs for each push.

use data_encoding::BASE64URL_NOPAD;
use node_kit::storage;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use std::io;
use std::path::Path;
use std::time::Duration;
use zeroize::Zeroizing;

/// The file under the gateway's directory: the private scalar, base64url, one line.
pub(crate) const VAPID_FILE: &str = "push-vapid.key";
/// How long a signed token is good for (RFC 8292 allows at most 24 hours).
const TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 3600);

pub(crate) struct VapidKey {
    key: SigningKey,
}

impl VapidKey {
    /// Reads the key at `path`, or makes one and writes it when there is none. A file that is there but
    /// unreadable is an error, never replaced: the browsers' subscriptions are bound to this key.
    pub(crate) fn load_or_create(path: &Path) -> io::Result<VapidKey> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let invalid = || io::Error::new(io::ErrorKind::InvalidData, format!("{VAPID_FILE} holds no P-256 key"));
                let scalar = Zeroizing::new(BASE64URL_NOPAD.decode(text.trim().as_bytes()).map_err(|_| invalid())?);
                let key = SigningKey::from_slice(&scalar).map_err(|_| invalid())?;
                Ok(VapidKey { key })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key = loop {
                    let mut scalar = Zeroizing::new([0u8; 32]);
                    getrandom::fill(scalar.as_mut()).expect("the OS random source works");
                    // Out of range (zero or above the group order) about once in 2^32 draws.
                    if let Ok(key) = SigningKey::from_slice(scalar.as_ref()) {
                        break key;
                    }
                };
                let text = Zeroizing::new(BASE64URL_NOPAD.encode(&key.to_bytes()) + "\n");
                storage::write_private_file(path, text.as_bytes())?;
                tracing::info!("made the computer's Web Push (VAPID) key");
                Ok(VapidKey { key })
            }
            Err(e) => Err(e),
        }
    }

    /// The 65-byte uncompressed public point, base64url: the browser's `applicationServerKey`.
    pub(crate) fn public_key(&self) -> String {
        BASE64URL_NOPAD.encode(self.key.verifying_key().to_encoded_point(false).as_bytes())
    }

    /// `vapid t=JWT, k=KEY` for a push service at `audience` (the endpoint's origin), signed now.
    pub(crate) fn authorization(&self, audience: &str, subject: &str, now_secs: u64) -> String {
        let header = BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({
            "aud": audience,
            "exp": now_secs + TOKEN_LIFETIME.as_secs(),
            "sub": subject,
        });
        let claims = BASE64URL_NOPAD.encode(claims.to_string().as_bytes());
        let signing_input = format!("{header}.{claims}");
        let signature: Signature = self.key.sign(signing_input.as_bytes());
        let signature = BASE64URL_NOPAD.encode(&signature.to_bytes());
        format!("vapid t={signing_input}.{signature}, k={}", self.public_key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::VerifyingKey;
    use p256::ecdsa::signature::Verifier;

    #[test]
    fn the_key_is_made_once_kept_0600_and_signs_tokens_its_public_key_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway").join(VAPID_FILE);
        let key = VapidKey::load_or_create(&path).unwrap();
        assert_eq!(VapidKey::load_or_create(&path).unwrap().public_key(), key.public_key());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);

        let header = key.authorization("https://push.example.net", "mailto:owner@example.org", 1_000);
        let (token, k) = header.strip_prefix("vapid t=").unwrap().split_once(", k=").unwrap();
        assert_eq!(k, key.public_key());
        let parts: Vec<&str> = token.split('.').collect();
        let claims: serde_json::Value =
            serde_json::from_slice(&BASE64URL_NOPAD.decode(parts[1].as_bytes()).unwrap()).unwrap();
        assert_eq!(claims["aud"], "https://push.example.net");
        assert_eq!(claims["exp"], 1_000 + 12 * 3600);
        let public = VerifyingKey::from_sec1_bytes(&BASE64URL_NOPAD.decode(k.as_bytes()).unwrap()).unwrap();
        let signature = Signature::from_slice(&BASE64URL_NOPAD.decode(parts[2].as_bytes()).unwrap()).unwrap();
        public.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature).unwrap();

        std::fs::write(&path, "not a key").unwrap();
        assert_eq!(VapidKey::load_or_create(&path).err().unwrap().kind(), io::ErrorKind::InvalidData);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a key", "an unreadable key is never replaced");
    }
}
