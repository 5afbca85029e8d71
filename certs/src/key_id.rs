//! The ID of a public key: SHA-256 of its SubjectPublicKeyInfo.
//!
//! People compare IDs by eye, so the text form is upper-case base32 in dash-separated groups of four
//! (Syncthing's device IDs are the model): 52 characters of key material in 13 groups. Parsing accepts any
//! case and ignores dashes and spaces, so an ID read aloud or retyped still parses.

use data_encoding::BASE32_NOPAD;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 32]);

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("not a Lanyard key ID ({0}); expected 52 base32 characters such as ABCD-EFGH-…")]
pub struct KeyIdError(&'static str);

const GROUP: usize = 4;

impl KeyId {
    /// The ID of the key in a DER-encoded SubjectPublicKeyInfo.
    pub fn of_spki(spki_der: &[u8]) -> KeyId {
        KeyId(crate::sha256(&[spki_der]))
    }

    /// The ID of a raw 32-byte Ed25519 public key: its SPKI is a fixed 12-byte header and the key.
    pub fn of_ed25519(public_key: &[u8; 32]) -> KeyId {
        const ED25519_SPKI_HEADER: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
        KeyId(crate::sha256(&[&ED25519_SPKI_HEADER, public_key]))
    }

    /// An ID that is a 32-byte digest made elsewhere. Clients of the sealed HTTP contract hold no key: their
    /// ID is an HMAC-SHA256 their PIN exchange's key makes (`node_kit::pin::PinKeys::client_id`).
    pub fn from_digest(digest: [u8; 32]) -> KeyId {
        KeyId(digest)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain = BASE32_NOPAD.encode(&self.0);
        for (i, group) in plain.as_bytes().chunks(GROUP).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            f.write_str(std::str::from_utf8(group).expect("base32 is ASCII"))?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = KeyIdError;

    fn from_str(s: &str) -> Result<KeyId, KeyIdError> {
        let plain: String =
            s.chars().filter(|c| *c != '-' && !c.is_whitespace()).map(|c| c.to_ascii_uppercase()).collect();
        if plain.len() != 52 {
            return Err(KeyIdError("wrong length"));
        }
        let bytes = BASE32_NOPAD.decode(plain.as_bytes()).map_err(|_| KeyIdError("not base32"))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| KeyIdError("wrong length"))?;
        Ok(KeyId(bytes))
    }
}

impl serde::Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<KeyId, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips_and_forgives_case_and_dashes() {
        let id = KeyId::of_spki(b"some key");
        let text = id.to_string();
        assert_eq!(text.len(), 52 + 12);
        assert_eq!(text.split('-').count(), 13);
        assert_eq!(text.parse::<KeyId>().unwrap(), id);
        assert_eq!(text.to_lowercase().replace('-', " ").parse::<KeyId>().unwrap(), id);
    }

    #[test]
    fn garbage_is_refused() {
        assert!("ABCD".parse::<KeyId>().is_err());
        assert!("1".repeat(52).parse::<KeyId>().is_err());
        assert_ne!(KeyId::of_spki(b"a"), KeyId::of_spki(b"b"));
    }
}
