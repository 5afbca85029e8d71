//! `FrameHead::parse`, all the bridge reads of a frame it relays from the gateway: never a panic; a refusal
//! is `INVALID_REQUEST`; `command()` is a request's `params.command`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node_kit::protocol::{ErrorCode, FrameHead};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match FrameHead::parse(text) {
        Ok(head) => {
            // A head skips what it does not read, so it takes numbers a `Value` refuses (1e400).
            if let (Some(command), Ok(value)) = (head.command(), serde_json::from_str::<serde_json::Value>(text)) {
                assert_eq!(value["params"]["command"].as_str(), Some(command));
            }
        }
        Err(e) => assert_eq!(e.error.code, ErrorCode::InvalidRequest),
    }
});
