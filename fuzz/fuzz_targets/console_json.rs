//! The console's requests as the gateway reads them (`HEADER: VALUE` lines, an empty line, the body):
//! the guard's `Host` and `Origin` checks, the session cookie, and the JSON bodies of `POST /api/call` and
//! `POST /api/pair-code`. Never a panic; only the listener's loopback names and its own origin pass; a
//! body that is not JSON is `400`, one that is not sent as JSON `415`.
#![no_main]

use libfuzzer_sys::fuzz_target;

const PORT: u16 = 18790;

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(end) => (&data[..end], &data[end + 2..]),
        None => (data, &[][..]),
    };
    // Only lines any HTTP stack would pass on, so that the first of a name here is the first there too.
    let headers: Vec<(&[u8], &[u8])> = head
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
            let name_ok = !name.is_empty() && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-');
            (name_ok && value.iter().all(|b| (0x20..0x7f).contains(b))).then_some((name, value))
        })
        .collect();
    let header = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| *v);
    let read = gateway::fuzzing::read_request(&headers, PORT, body);

    let host = header("host").unwrap_or_default();
    if read.host_allowed {
        let allowed = ["127.0.0.1", "localhost", "[::1]"].map(|name| format!("{name}:{PORT}"));
        assert!(allowed.iter().any(|a| a.as_bytes() == host), "{host:?}");
    }
    if read.origin_allowed {
        assert_eq!(header("origin"), Some([b"http://", host].concat().as_slice()));
    }
    if let Some(cookie) = &read.cookie {
        let pair = format!("lanyard_console={cookie}");
        assert!(
            headers
                .iter()
                .any(|(n, v)| n.eq_ignore_ascii_case(b"cookie") && v.windows(pair.len()).any(|w| w == pair.as_bytes()))
        );
    }
    let json = header("content-type").is_some_and(|t| t.starts_with(b"application/json"));
    for refused in [read.call.as_ref().err(), read.pair_code.as_ref().err()].into_iter().flatten() {
        assert_eq!(*refused, if json { (400, "invalid_request") } else { (415, "json_required") });
    }
    // serde skips the fields it does not read without checking their strings are UTF-8; a `Value` does not.
    if let (Ok((method, _)), Ok(value)) = (&read.call, serde_json::from_slice::<serde_json::Value>(body)) {
        assert_eq!(value["method"].as_str(), Some(method.as_str()));
    }
});
