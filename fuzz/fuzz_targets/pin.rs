//! Door 3's SPAKE2 messages and key confirmations, as the computer and a device read the other side's
//! (`pin::answer`, `NodePin::finish`, `PinKeys::check_node`), raw and as the base64url text they travel
//! in: never a panic; a malformed message is `BadMessage`, a wrong confirmation `Mismatch`.
#![no_main]

use certs::KeyId;
use libfuzzer_sys::fuzz_target;
use node_kit::pin::{self, NodePin, PinError};

const PIN: &str = "482913";

fuzz_target!(|data: &[u8]| {
    let bridge = KeyId::from_digest([7; 32]);
    let node = KeyId::from_digest([9; 32]);
    let decoded = data_encoding::BASE64URL_NOPAD.decode(data).ok();
    for message in std::iter::once(data).chain(decoded.as_deref()) {
        for node_id in [None, Some(&node)] {
            match pin::answer(PIN, node_id, &bridge, message) {
                Ok((_, keys)) => assert_eq!(keys.check_node(message), Err(PinError::Mismatch)),
                Err(e) => assert_eq!(e, PinError::BadMessage),
            }
            let (side_a, _) = NodePin::start(PIN, node_id, &bridge).expect("a six-digit PIN");
            match side_a.finish(message, message) {
                Err(PinError::BadMessage | PinError::Mismatch) => {}
                other => panic!("a confirmation nobody could compute was taken: {:?}", other.map(|_| ())),
            }
        }
    }
});
