//! Door 3's invite, `https://RELAY/#id=BRIDGE_ID&route=ROUTING[&name=NAME]` (and the older
//! `lanyard+https://` form), as a device reads it from a QR code anyone can show: never a panic; a refusal
//! says what an invite looks like; one that parses, written again, parses to the same, with a relay URL
//! the relay check accepts, a 43-character route and a name that is safe to show.
#![no_main]

use libfuzzer_sys::fuzz_target;
use node_kit::connection_string::{MAX_INVITE_NAME_CHARS, RelayInvite};
use node_kit::protocol::check_relay_url;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match text.parse::<RelayInvite>() {
        Ok(invite) => {
            let written = invite.to_string();
            assert_eq!(written.parse::<RelayInvite>().as_ref(), Ok(&invite), "{written}");
            assert_eq!(check_relay_url(&invite.relay_url).as_ref(), Ok(&invite.relay_url));
            assert_eq!(invite.routing.len(), 43);
            if let Some(name) = &invite.name {
                assert!(name.chars().count() <= MAX_INVITE_NAME_CHARS && !name.chars().any(char::is_control));
            }
        }
        Err(e) => assert!(e.to_string().contains("https://RELAY/#id=BRIDGE_ID&route=ROUTING"), "{e}"),
    }
});
