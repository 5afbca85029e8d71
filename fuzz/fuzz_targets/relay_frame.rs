//! The relay link's binary frames, `[kind u8][stream u32 BE][body]`, as the bridge decodes what the relay
//! object sends: never a panic; a refusal is the decoder's error; a `DATA` or `CLOSE` written again is the
//! same message (a `CLOSE` reason cut to 123 bytes on a character boundary) and decodes to itself.
#![no_main]

use bridge::fuzzing::MAX_REASON;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match bridge::fuzzing::relay_frame(data) {
        Ok(Some(written)) => {
            assert_eq!(bridge::fuzzing::relay_frame(&written), Ok(Some(written.clone())));
            if data[0] == 3 && data.len() - 5 > MAX_REASON {
                assert!(data.starts_with(&written) && written.len() - 5 <= MAX_REASON);
            } else {
                assert_eq!(written, data);
            }
        }
        Ok(None) => assert_eq!(data[0], 1, "only an OPEN is the relay's alone"),
        Err(e) => assert!(e.starts_with("malformed relay frame"), "{e}"),
    }
});
