//! `Frame::parse`, the first thing the bridge and the gateway do with every text message (a stranger's
//! `connect` and pairing dialogue included): never a panic; a refusal is `INVALID_REQUEST` with a request
//! id only when one could be read; a frame written again parses to itself, and its head agrees with it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node_kit::protocol::{ErrorCode, Frame, FrameHead, MAX_ID_LEN, negotiate_version};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Frame::parse(text) {
        Ok(frame) => {
            let written = frame.to_text();
            assert_eq!(Frame::parse(&written).as_ref(), Ok(&frame), "{written}");
            if let Ok(head) = FrameHead::parse(text) {
                assert_eq!(head.kind, frame.kind());
                if let Frame::Req(req) = &frame {
                    assert_eq!((head.id.as_deref(), head.method.as_deref()), (Some(&*req.id), Some(&*req.method)));
                }
            }
            if let Frame::Connect(connect) = &frame {
                if let Err(e) = connect.check_lengths() {
                    assert_eq!(e.code, ErrorCode::InvalidRequest);
                }
                if let Some(version) = negotiate_version(connect.min_protocol, connect.max_protocol) {
                    assert!((connect.min_protocol..=connect.max_protocol).contains(&version));
                }
            }
        }
        Err(e) => {
            assert_eq!(e.error.code, ErrorCode::InvalidRequest);
            if let Some(id) = e.request_id {
                assert!(!id.is_empty() && id.len() <= MAX_ID_LEN, "{id:?}");
            }
        }
    }
});
