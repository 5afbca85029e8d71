//! Door 3's SPAKE2 exactly as `docs/protocol.md` §19 spells it out, computed from those formulas alone
//! (edwards25519 with curve25519-dalek, SHA-256 and HMAC with ring), against the `spake2` crate the product
//! runs: a side written from the doc completes an exchange with the product's other side, both ways, and
//! derives the same confirmations, seal key and client ID. If the doc and the product part, this fails.

use certs::KeyId;
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use node_kit::pin::{self, NodePin, PinError, SEALED_CLIENT_IDENTITY};
use ring::{digest, hmac};

/// The doc's M and N: compressed edwards25519 points, hex.
const M: &str = "15cfd18e385952982b6a8f8c7854963b58e34388c8e6dae891db756481a02312";
const N: &str = "f04f2e7eb734b2a8f8b472eaf9c3c632576ac64aea650b496a8a20ff00e583c3";
const PIN: &str = "482913";

fn point(hex: &str) -> EdwardsPoint {
    let bytes: [u8; 32] = data_encoding::HEXLOWER.decode(hex.as_bytes()).unwrap().try_into().unwrap();
    CompressedEdwardsY(bytes).decompress().expect("a point on the curve")
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut context = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, key));
    for part in parts {
        context.update(part);
    }
    context.sign().as_ref().try_into().unwrap()
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    digest::digest(&digest::SHA256, bytes).as_ref().try_into().unwrap()
}

/// `w`: HKDF-SHA256 of the PIN's ASCII digits (salt empty, info `SPAKE2 pw`, 48 bytes), read as a big-endian
/// integer, reduced mod ℓ. HKDF written out: PRK = HMAC(salt, ikm), T1 = HMAC(PRK, info ‖ 1),
/// T2 = HMAC(PRK, T1 ‖ info ‖ 2), OKM = T1 ‖ T2[..16].
fn password_scalar(pin: &str) -> Scalar {
    let prk = hmac_sha256(b"", &[pin.as_bytes()]);
    let t1 = hmac_sha256(&prk, &[b"SPAKE2 pw", &[1]]);
    let t2 = hmac_sha256(&prk, &[&t1, b"SPAKE2 pw", &[2]]);
    let okm: Vec<u8> = t1.iter().chain(&t2[..16]).copied().collect();
    let mut little_endian = [0u8; 64];
    for (i, byte) in okm.iter().enumerate() {
        little_endian[okm.len() - 1 - i] = *byte;
    }
    Scalar::from_bytes_mod_order_wide(&little_endian)
}

fn random_scalar() -> Scalar {
    let mut wide = [0u8; 64];
    getrandom::fill(&mut wide).unwrap();
    Scalar::from_bytes_mod_order_wide(&wide)
}

fn decompress(message: &[u8]) -> EdwardsPoint {
    CompressedEdwardsY(message[1..].try_into().unwrap()).decompress().unwrap()
}

/// `K = SHA-256(SHA-256(pin) ‖ SHA-256(idA) ‖ SHA-256(idB) ‖ X ‖ Y ‖ Z)`: X and Y the 32-byte points of the
/// two messages (A's, then B's), Z the shared point, all compressed.
fn shared_key(id_a: &[u8], id_b: &[u8], x: &[u8], y: &[u8], z: &EdwardsPoint) -> [u8; 32] {
    let mut transcript = Vec::with_capacity(192);
    for part in [sha256(PIN.as_bytes()), sha256(id_a), sha256(id_b)] {
        transcript.extend_from_slice(&part);
    }
    transcript.extend_from_slice(x);
    transcript.extend_from_slice(y);
    transcript.extend_from_slice(z.compress().as_bytes());
    sha256(&transcript)
}

fn tag(key: &[u8; 32], label: &str) -> [u8; 32] {
    hmac_sha256(key, &[label.as_bytes()])
}

/// A message: the side's letter (`A` 0x41, `B` 0x42), then its point `r·G + w·blind`.
fn message(side: u8, r: &Scalar, blind: &str) -> Vec<u8> {
    let point = ED25519_BASEPOINT_POINT * r + point(blind) * password_scalar(PIN);
    [&[side], point.compress().as_bytes().as_slice()].concat()
}

#[test]
fn a_keyless_client_written_from_the_doc_pairs_with_the_computers_side() {
    let bridge = certs::Identity::generate().id();
    let x = random_scalar();
    let to_bridge = message(0x41, &x, M);
    let (to_client, computer) = pin::answer(PIN, None, &bridge, &to_bridge).unwrap();
    assert_eq!((to_client.len(), to_client[0]), (33, 0x42));
    let z = (decompress(&to_client) - point(N) * password_scalar(PIN)) * x;
    let key = shared_key(SEALED_CLIENT_IDENTITY, bridge.as_bytes(), &to_bridge[1..], &to_client[1..], &z);

    assert_eq!(SEALED_CLIENT_IDENTITY, b"lanyard-http-client-v2");
    assert_eq!(computer.bridge_confirmation(), tag(&key, "lanyard-pin-v1 bridge confirms"));
    computer.check_node(&tag(&key, "lanyard-pin-v1 node confirms")).unwrap();
    assert_eq!(computer.seal_key(), tag(&key, "lanyard-pin-v1 seal key"));
    assert_eq!(computer.client_id(), KeyId::from_digest(tag(&key, "lanyard-pin-v1 client id")));
}

#[test]
fn a_computer_written_from_the_doc_pairs_with_a_tls_nodes_side() {
    let (node, bridge) = (certs::Identity::generate().id(), certs::Identity::generate().id());
    let y = random_scalar();
    let to_node = message(0x42, &y, N);
    let answer = |identity_a: &[u8]| {
        let (side_a, to_bridge) = NodePin::start(PIN, Some(&node), &bridge).unwrap();
        assert_eq!((to_bridge.len(), to_bridge[0]), (33, 0x41));
        let z = (decompress(&to_bridge) - point(M) * password_scalar(PIN)) * y;
        let key = shared_key(identity_a, bridge.as_bytes(), &to_bridge[1..], &to_node[1..], &z);
        (side_a.finish(&to_node, &tag(&key, "lanyard-pin-v1 bridge confirms")), key)
    };
    // The identities are the key IDs' 32 raw bytes.
    let (keys, key) = answer(node.as_bytes());
    assert_eq!(keys.unwrap().node_confirmation(), tag(&key, "lanyard-pin-v1 node confirms"));
    // Never their text.
    let (refused, _) = answer(node.to_string().as_bytes());
    assert_eq!(refused.err(), Some(PinError::Mismatch));
}
