//! Test vectors shared with the phone web app (`apps/phone`), both ways, so its SPAKE2, key derivations and
//! seal cannot part from the Rust side's.
//!
//! - `vectors/rust.json` is made here with the crates the product runs (the `spake2` crate with fixed
//!   randomness, `node_kit::seal`), and must be current: a change of the product's bytes fails this test
//!   until the file is regenerated (`LANYARD_WRITE_VECTORS=1`), and the app's tests then check the app
//!   against the new file.
//! - `vectors/from-web.json` is written by the app's tests (`apps/phone/test.sh`) with the app's own code;
//!   here the Rust code checks every byte of it.

use certs::KeyId;
use chacha20poly1305::aead::rand_core::{CryptoRng, Error as RngError, RngCore};
use node_kit::pin::{self, NodePin, SEALED_CLIENT_IDENTITY};
use node_kit::seal::{Direction, SealKey};
use ring::hmac;
use serde_json::{Value, json};
use spake2::{Ed25519Group, Identity, Password, Spake2};
use std::path::PathBuf;

/// Hands out fixed bytes: the `spake2` crate draws its scalar as 64 bytes read little-endian mod ℓ, so
/// these bytes are the scalar the vectors name.
struct FixedRng(Vec<u8>);

impl RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        let mut bytes = [0; 4];
        self.fill_bytes(&mut bytes);
        u32::from_le_bytes(bytes)
    }
    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0; 8];
        self.fill_bytes(&mut bytes);
        u64::from_le_bytes(bytes)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        assert!(self.0.len() >= dest.len(), "the vector has too few random bytes");
        dest.copy_from_slice(&self.0.drain(..dest.len()).collect::<Vec<u8>>());
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), RngError> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl CryptoRng for FixedRng {}

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

fn b64(bytes: &[u8]) -> String {
    data_encoding::BASE64URL_NOPAD.encode(bytes)
}

fn unb64(text: &str) -> Vec<u8> {
    data_encoding::BASE64URL_NOPAD.decode(text.as_bytes()).expect("base64url without padding")
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

fn unhex(text: &str) -> Vec<u8> {
    data_encoding::HEXLOWER.decode(text.as_bytes()).expect("lowercase hex")
}

fn text<'a>(vector: &'a Value, field: &str) -> &'a str {
    vector[field].as_str().unwrap_or_else(|| panic!("{field} is text in {vector}"))
}

fn tag(key: &[u8], label: &str) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), label.as_bytes()).as_ref().to_vec()
}

/// `count` bytes that look random and are the same every run.
fn fixed_bytes(seed: u8, count: usize) -> Vec<u8> {
    (0..count).map(|i| (i as u8).wrapping_mul(151).wrapping_add(seed.wrapping_mul(89)) ^ seed).collect()
}

fn key_id(text: &str) -> KeyId {
    let plain: String = text.chars().filter(|c| *c != '-').collect();
    let bytes = data_encoding::BASE32_NOPAD.decode(plain.as_bytes()).expect("a key ID is base32");
    KeyId::from_digest(bytes.try_into().expect("a key ID is 32 bytes"))
}

/// Both sides of one keyless exchange, each with fixed randomness, as the `spake2` crate runs it with the
/// identities `node_kit::pin` gives it: `(message A, message B, K)`.
fn exchange(pin: &str, bridge: &KeyId, x_random: &[u8], y_random: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (password, a, b) =
        (Password::new(pin.as_bytes()), Identity::new(SEALED_CLIENT_IDENTITY), Identity::new(bridge.as_bytes()));
    let (side_a, message_a) = Spake2::<Ed25519Group>::start_a_with_rng(&password, &a, &b, FixedRng(x_random.to_vec()));
    let (side_b, message_b) = Spake2::<Ed25519Group>::start_b_with_rng(&password, &a, &b, FixedRng(y_random.to_vec()));
    let key = side_a.finish(&message_b).expect("side B's message is a point");
    assert_eq!(side_b.finish(&message_a).expect("side A's message is a point"), key, "both sides agree");
    (message_a, message_b, key)
}

/// The fields of a SPAKE2 vector that follow from its inputs.
fn spake2_vector(pin: &str, bridge_public_key: &[u8; 32], x_random: &[u8], y_random: &[u8]) -> Value {
    let bridge = KeyId::of_ed25519(bridge_public_key);
    let (message_a, message_b, key) = exchange(pin, &bridge, x_random, y_random);
    json!({
        "pin": pin,
        "bridgePublicKey": b64(bridge_public_key),
        "bridgeId": bridge.to_string(),
        "xRandom": hex(x_random),
        "yRandom": hex(y_random),
        "messageA": b64(&message_a),
        "messageB": b64(&message_b),
        "key": hex(&key),
        "bridgeConfirmation": b64(&tag(&key, "lanyard-pin-v1 bridge confirms")),
        "nodeConfirmation": b64(&tag(&key, "lanyard-pin-v1 node confirms")),
        "sealKey": b64(&tag(&key, "lanyard-pin-v1 seal key")),
        "clientId": KeyId::from_digest(tag(&key, "lanyard-pin-v1 client id").try_into().unwrap()).to_string(),
    })
}

fn seal_vector(key: &[u8; 32], direction: Direction, counter: u64, frame: u64, plaintext: &str) -> Value {
    json!({
        "key": b64(key),
        "direction": direction as u8,
        // Counters go past 2^53 in one vector, so they travel as decimal text.
        "counter": counter.to_string(),
        "frame": frame.to_string(),
        "plaintext": plaintext,
        "sealed": SealKey::new(*key).seal(direction, counter, frame, plaintext.as_bytes()),
    })
}

fn rust_vectors() -> Value {
    let spake2 = [("482913", 1u8), ("000000", 2), ("999999", 3), ("120034", 4)]
        .iter()
        .map(|(pin, seed)| {
            let public_key: [u8; 32] = fixed_bytes(seed + 100, 32).try_into().unwrap();
            spake2_vector(pin, &public_key, &fixed_bytes(*seed, 64), &fixed_bytes(seed + 50, 64))
        })
        .collect::<Vec<_>>();
    let key: [u8; 32] = fixed_bytes(7, 32).try_into().unwrap();
    let seal = vec![
        seal_vector(&key, Direction::ToClient, 0, 0, r#"{"token":"t","node_id":"ID"}"#),
        seal_vector(&key, Direction::ToBridge, 1, 0, r#"{"command":"hello","version":1,"payload":{}}"#),
        seal_vector(&key, Direction::ToClient, 1, 2, "frame two: ünïcödé ✓"),
        seal_vector(&key, Direction::ToBridge, (1 << 60) + 5, 0, ""),
        seal_vector(&key, Direction::ToClient, 258, (1 << 33) + 7, "a longer frame ".repeat(40).as_str()),
    ];
    json!({
        "about": "Made by node-kit/tests/web_vectors.rs with the Rust crates Lanyard runs; checked by apps/phone's tests.",
        "sealedClientIdentity": String::from_utf8(SEALED_CLIENT_IDENTITY.to_vec()).unwrap(),
        "spake2": spake2,
        "seal": seal,
    })
}

/// The vectors' recipe is the product's: the `spake2` crate with fixed randomness and the labels above
/// give what `node_kit::pin` computes with real randomness, on either side.
#[test]
fn the_vectors_recipe_is_what_node_kit_computes() {
    let bridge = KeyId::of_ed25519(&fixed_bytes(9, 32).try_into().unwrap());
    let (password, a, b) =
        (Password::new(b"482913"), Identity::new(SEALED_CLIENT_IDENTITY), Identity::new(bridge.as_bytes()));
    let x_random = fixed_bytes(11, 64);
    let start_a = || Spake2::<Ed25519Group>::start_a_with_rng(&password, &a, &b, FixedRng(x_random.clone()));

    // The product's computer side answers the fixed side A.
    let (_, message_a) = start_a();
    let (message_b, computer) = pin::answer("482913", None, &bridge, &message_a).unwrap();
    let key = start_a().0.finish(&message_b).unwrap();
    assert_eq!(computer.bridge_confirmation(), tag(&key, "lanyard-pin-v1 bridge confirms"));
    computer.check_node(&tag(&key, "lanyard-pin-v1 node confirms")).unwrap();
    assert_eq!(computer.seal_key().to_vec(), tag(&key, "lanyard-pin-v1 seal key"));
    assert_eq!(computer.client_id().as_bytes().to_vec(), tag(&key, "lanyard-pin-v1 client id"));

    // The product's client side finishes against a fixed side B.
    let (side_a, message_a) = NodePin::start("482913", None, &bridge).unwrap();
    let start_b = Spake2::<Ed25519Group>::start_b_with_rng(&password, &a, &b, FixedRng(fixed_bytes(12, 64)));
    let (side_b, message_b) = start_b;
    let key = side_b.finish(&message_a).unwrap();
    let client = side_a.finish(&message_b, &tag(&key, "lanyard-pin-v1 bridge confirms")).unwrap();
    assert_eq!(client.node_confirmation(), tag(&key, "lanyard-pin-v1 node confirms"));
    assert_eq!(client.seal_key().to_vec(), tag(&key, "lanyard-pin-v1 seal key"));
    assert_eq!(client.client_id().as_bytes().to_vec(), tag(&key, "lanyard-pin-v1 client id"));
}

#[test]
fn the_committed_vectors_for_the_web_are_current() {
    let path = vectors_dir().join("rust.json");
    let made = serde_json::to_string_pretty(&rust_vectors()).unwrap() + "\n";
    if std::env::var_os("LANYARD_WRITE_VECTORS").is_some() {
        std::fs::create_dir_all(vectors_dir()).unwrap();
        std::fs::write(&path, &made).unwrap();
    }
    let committed = std::fs::read_to_string(&path).expect("node-kit/tests/vectors/rust.json is committed");
    assert!(
        committed == made,
        "{} is stale: run this test with LANYARD_WRITE_VECTORS=1, then apps/phone/test.sh",
        path.display()
    );
}

#[test]
fn the_web_apps_vectors_check_with_the_rust_code() {
    let path = vectors_dir().join("from-web.json");
    let web: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("written by apps/phone/test.sh")).expect("JSON");
    let spake2 = web["spake2"].as_array().expect("spake2 vectors");
    let seal = web["seal"].as_array().expect("seal vectors");
    assert!(spake2.len() >= 3 && seal.len() >= 3, "the app wrote its vectors");

    for vector in spake2 {
        let public_key: [u8; 32] = unb64(text(vector, "bridgePublicKey")).try_into().unwrap();
        assert_eq!(key_id(text(vector, "bridgeId")), KeyId::of_ed25519(&public_key), "the app's bridge ID");
        let expected = spake2_vector(
            text(vector, "pin"),
            &public_key,
            &unhex(text(vector, "xRandom")),
            &unhex(text(vector, "yRandom")),
        );
        for field in
            ["bridgeId", "messageA", "messageB", "key", "bridgeConfirmation", "nodeConfirmation", "sealKey", "clientId"]
        {
            assert_eq!(vector[field], expected[field], "{field} of the app's vector for PIN {}", vector["pin"]);
        }
    }

    for vector in seal {
        let key = SealKey::new(unb64(text(vector, "key")).try_into().unwrap());
        let direction = if vector["direction"] == 0 { Direction::ToBridge } else { Direction::ToClient };
        let counter: u64 = text(vector, "counter").parse().unwrap();
        let frame: u64 = text(vector, "frame").parse().unwrap();
        let opened = key.open(direction, counter, frame, text(vector, "sealed")).expect("the app's seal opens");
        assert_eq!(String::from_utf8(opened).unwrap(), text(vector, "plaintext"));
        assert_eq!(key.seal(direction, counter, frame, text(vector, "plaintext").as_bytes()), text(vector, "sealed"));
    }
}
