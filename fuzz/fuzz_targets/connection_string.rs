//! Door 2's connection string, `lanyard://HOST:PORT?id=BRIDGE_ID&code=CODE`, as a device reads it from a
//! QR code anyone can print: never a panic; a refusal says what a connection string looks like; one that
//! parses, written again, parses to the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node_kit::connection_string::ConnectionString;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match text.parse::<ConnectionString>() {
        Ok(parsed) => {
            let written = parsed.to_string();
            assert_eq!(written.parse::<ConnectionString>().as_ref(), Ok(&parsed), "{written}");
            assert!(!parsed.code.is_empty());
        }
        Err(e) => assert!(e.to_string().contains("lanyard://HOST:PORT"), "{e}"),
    }
});
