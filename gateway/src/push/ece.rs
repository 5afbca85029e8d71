//! RFC 8291 message encryption for Web Push: RFC 8188 `aes128gcm` content coding, one record, keys from
//! an ECDH between a fresh P-256 key of the computer's and the browser's subscription key, mixed with the
//! subscription's authentication secret.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce};
use hkdf::Hkdf;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use sha2::Sha256;

/// The record size written in the header: the one record is never longer.
const RECORD_SIZE: u32 = 4096;
/// The AES-GCM tag on the record.
const TAG_LEN: usize = 16;
/// salt (16) ‖ rs (4) ‖ idlen (1) ‖ keyid (the computer's 65-byte public key).
pub(crate) const HEADER_LEN: usize = 16 + 4 + 1 + 65;
/// RFC 8188's delimiter of the last record; zero bytes of padding follow it.
const LAST_RECORD: u8 = 2;

/// What a subscription gives to encrypt to it.
#[derive(Clone)]
pub(crate) struct Recipient {
    pub public_key: PublicKey,
    pub auth_secret: [u8; 16],
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum EceError {
    #[error("the payload is {size} bytes; a push carries at most {max}")]
    TooLong { size: usize, max: usize },
}

/// The body length of a message whose padded record holds `padded_len` bytes (payload, delimiter, padding).
pub(crate) const fn body_len(padded_len: usize) -> usize {
    HEADER_LEN + padded_len + TAG_LEN
}

/// Encrypts `plaintext` to `to`, padded so that the record holds exactly `padded_len` bytes: every body
/// is [`body_len`]`(padded_len)` bytes long, whatever the payload.
pub(crate) fn encrypt(to: &Recipient, plaintext: &[u8], padded_len: usize) -> Result<Vec<u8>, EceError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("the OS random source works");
    encrypt_with(to, plaintext, padded_len, &ephemeral_key(), salt)
}

/// A fresh key for one message.
fn ephemeral_key() -> SecretKey {
    loop {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the OS random source works");
        // Out of range (zero or above the group order) about once in 2^32 draws.
        if let Ok(key) = SecretKey::from_slice(&bytes) {
            return key;
        }
    }
}

fn encrypt_with(
    to: &Recipient,
    plaintext: &[u8],
    padded_len: usize,
    sender: &SecretKey,
    salt: [u8; 16],
) -> Result<Vec<u8>, EceError> {
    if plaintext.len() >= padded_len {
        return Err(EceError::TooLong { size: plaintext.len(), max: padded_len - 1 });
    }
    let sender_public = sender.public_key().to_encoded_point(false);
    let receiver_public = to.public_key.to_encoded_point(false);
    let shared = p256::ecdh::diffie_hellman(sender.to_nonzero_scalar(), to.public_key.as_affine());

    // RFC 8291 §3.4: IKM from the ECDH secret, keyed by the auth secret, bound to both public keys.
    let mut key_info = b"WebPush: info\0".to_vec();
    key_info.extend_from_slice(receiver_public.as_bytes());
    key_info.extend_from_slice(sender_public.as_bytes());
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(&to.auth_secret), shared.raw_secret_bytes())
        .expand(&key_info, &mut ikm)
        .expect("32 bytes is a valid HKDF-SHA256 length");
    // RFC 8188 §2.2: the content key and nonce from the salt.
    let prk = Hkdf::<Sha256>::new(Some(&salt), &ikm);
    let mut cek = [0u8; 16];
    let mut nonce = [0u8; 12];
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek).expect("16 bytes is a valid length");
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce).expect("12 bytes is a valid length");

    let mut record = Vec::with_capacity(padded_len);
    record.extend_from_slice(plaintext);
    record.push(LAST_RECORD);
    record.resize(padded_len, 0);
    let sealed = Aes128Gcm::new_from_slice(&cek)
        .expect("a 16-byte key")
        .encrypt(Nonce::from_slice(&nonce), record.as_slice())
        .expect("AES-GCM encrypts any record this short");

    let mut body = Vec::with_capacity(body_len(padded_len));
    body.extend_from_slice(&salt);
    body.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    body.push(sender_public.as_bytes().len() as u8);
    body.extend_from_slice(sender_public.as_bytes());
    body.extend_from_slice(&sealed);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use data_encoding::BASE64URL_NOPAD;

    fn b64(text: &str) -> Vec<u8> {
        BASE64URL_NOPAD.decode(text.as_bytes()).unwrap()
    }

    /// RFC 8291 Appendix A, byte for byte: its keys, salt and plaintext (padded with the delimiter only)
    /// give its body.
    #[test]
    fn rfc_8291_appendix_a() {
        let plaintext = b"When I grow up, I want to be a watermelon";
        let sender = SecretKey::from_slice(&b64("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw")).unwrap();
        let receiver = Recipient {
            public_key: PublicKey::from_sec1_bytes(&b64(
                "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
            ))
            .unwrap(),
            auth_secret: b64("BTBZMqHH6r4Tts7J_aSIgg").try_into().unwrap(),
        };
        let salt: [u8; 16] = b64("DGv6ra1nlYgDCS1FRnbzlw").try_into().unwrap();
        let body = encrypt_with(&receiver, plaintext, plaintext.len() + 1, &sender, salt).unwrap();
        let expected = concat!(
            "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml",
            "mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT",
            "pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN",
        );
        assert_eq!(BASE64URL_NOPAD.encode(&body), expected);
    }

    #[test]
    fn every_body_has_the_length_its_padding_gives() {
        let receiver = Recipient { public_key: ephemeral_key().public_key(), auth_secret: [7; 16] };
        for size in [0, 1, 100, 511] {
            assert_eq!(encrypt(&receiver, &vec![b'x'; size], 512).unwrap().len(), body_len(512));
        }
        assert!(matches!(encrypt(&receiver, &[b'x'; 512], 512), Err(EceError::TooLong { size: 512, max: 511 })));
    }
}
