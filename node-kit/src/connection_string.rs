//! The connection string of pairing door 2, `lanyard://HOST:PORT?id=BRIDGE_ID&code=SECRET`, as the
//! computer prints it (and its QR code carries it). It names the bridge's full key, so the node's very
//! first packet is already pinned, and a one-time code that stands for the owner's approval.

use certs::KeyId;
use std::fmt;
use std::str::FromStr;

pub const SCHEME: &str = "lanyard";

/// A parsed connection string. Its `Debug` hides the code; `Display` gives the string back in full.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    pub host: String,
    pub port: u16,
    pub bridge_id: KeyId,
    pub code: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Lanyard connection string ({0}); it looks like lanyard://HOST:PORT?id=BRIDGE_ID&code=CODE")]
pub struct ConnectionStringError(String);

impl ConnectionString {
    /// `host:port`, with brackets around an IPv6 host, as [`crate::Client::bridge`] takes it.
    pub fn address(&self) -> String {
        host_port(&self.host, self.port)
    }
}

/// `host:port`, bracketing IPv6 literals.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

impl FromStr for ConnectionString {
    type Err = ConnectionStringError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| ConnectionStringError(why.to_string());
        let url = url::Url::parse(s.trim()).map_err(|e| ConnectionStringError(e.to_string()))?;
        if url.scheme() != SCHEME {
            return Err(bad("the scheme must be lanyard://"));
        }
        let host = match url.host() {
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => return Err(bad("no host")),
        };
        let port = url.port().ok_or_else(|| bad("no port"))?;
        let mut bridge_id = None;
        let mut code = None;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "id" => {
                    bridge_id = Some(value.parse::<KeyId>().map_err(|e| ConnectionStringError(format!("id: {e}")))?)
                }
                "code" => code = Some(value.into_owned()),
                _ => {}
            }
        }
        let bridge_id = bridge_id.ok_or_else(|| bad("no id"))?;
        let code = code.filter(|c| !c.is_empty()).ok_or_else(|| bad("no code"))?;
        Ok(ConnectionString { host, port, bridge_id, code })
    }
}

impl fmt::Display for ConnectionString {
    /// The code percent-encoded, so that any code the parser took reads back the same (a code of `pair.code`
    /// has no character that changes).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}://{}?id={}&code={}", self.address(), self.bridge_id, percent_encoded(&self.code))
    }
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionString")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("bridge_id", &self.bridge_id)
            .field("code", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> KeyId {
        certs::Identity::generate().id()
    }

    #[test]
    fn round_trips_for_ipv4_names_and_ipv6() {
        for host in ["192.168.1.20", "adas-mac.local", "fe80::1"] {
            let s = ConnectionString { host: host.into(), port: 18790, bridge_id: id(), code: "abc234".into() };
            let text = s.to_string();
            assert!(text.starts_with("lanyard://"), "{text}");
            assert_eq!(text.parse::<ConnectionString>().unwrap(), s);
        }
    }

    #[test]
    fn refuses_what_is_not_one() {
        let id = id();
        for bad in [
            "https://10.0.0.1:18790?id=X&code=y".to_string(),
            format!("lanyard://10.0.0.1?id={id}&code=y"),
            "lanyard://10.0.0.1:18790?id=not-a-key&code=y".to_string(),
            format!("lanyard://10.0.0.1:18790?id={id}"),
            format!("lanyard://10.0.0.1:18790?id={id}&code="),
            "lanyard://10.0.0.1:18790?code=y".to_string(),
        ] {
            let e = bad.parse::<ConnectionString>().unwrap_err();
            assert!(e.to_string().contains("lanyard://HOST:PORT"), "{bad}: {e}");
        }
    }

    /// Found by the `connection_string` fuzz target: a code with spaces, controls or non-ASCII characters
    /// was written as it was, so the string read back as another code.
    #[test]
    fn any_code_it_reads_is_written_back_the_same() {
        let text = "lanyard://[fd00::20]:18790?id=A3R7-3D62-FG5W-BK2Z-KV66-MHW3-BLWN-WIYR-GS7D-BZ23-IVPY-5G3Z-F6UQ\
                    &code=n\t\0\0\0ou4fvh%E2%98%954pzkd+";
        let parsed = text.parse::<ConnectionString>().unwrap();
        assert_eq!(parsed.code, "n\0\0\0ou4fvh\u{2615}4pzkd ");
        assert_eq!(parsed.to_string().parse::<ConnectionString>().unwrap(), parsed);
        let usual =
            ConnectionString { host: "h".into(), port: 1, bridge_id: id(), code: "nmpq4ou4fvhv5ct3nrou4pzkdm".into() };
        assert!(usual.to_string().ends_with("&code=nmpq4ou4fvhv5ct3nrou4pzkdm"));
    }

    #[test]
    fn debug_hides_the_code() {
        let s = ConnectionString { host: "h".into(), port: 1, bridge_id: id(), code: "canary-secret".into() };
        assert!(!format!("{s:?}").contains("canary-secret"));
    }
}

/// Door 3's invite, as the computer shows it for a device away from home (a QR code, with the PIN shown
/// beside it and typed on the device): the phone app's address on the relay, with the invite in the
/// fragment, which a browser never sends to a server:
/// `https://RELAY[/PATH]/#id=BRIDGE_ID&route=ROUTING_TOKEN[&name=COMPUTER_NAME]`. The older
/// `lanyard+https://RELAY[/PATH]?id=BRIDGE_ID&route=ROUTING_TOKEN` means the same invite. The routing
/// token gets the device's stream through the relay to the bridge and names the code; the bridge ID is
/// only the relay's address for it: the PIN exchange is what authenticates the bridge.
#[derive(Clone, PartialEq, Eq)]
pub struct RelayInvite {
    pub relay_url: String,
    pub bridge_id: KeyId,
    pub routing: String,
    /// The computer's name, for display only: whoever made the invite chose it (see [`RelayInvite::named`]).
    pub name: Option<String>,
}

/// The most characters an invite's computer name has.
pub const MAX_INVITE_NAME_CHARS: usize = 64;

/// Why a text is not a relay invite.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a Lanyard invite ({0}); it looks like https://RELAY/#id=BRIDGE_ID&route=ROUTING, as `lanyard pair \
     --remote` prints it"
)]
pub struct InviteError(String);

impl RelayInvite {
    /// The invite with the computer's name shown: control characters dropped, cut to
    /// [`MAX_INVITE_NAME_CHARS`], none if nothing is left.
    pub fn named(self, name: &str) -> Self {
        let name: String = name.trim().chars().filter(|c| !c.is_control()).take(MAX_INVITE_NAME_CHARS).collect();
        RelayInvite { name: (!name.is_empty()).then_some(name), ..self }
    }
}

impl fmt::Debug for RelayInvite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RelayInvite({}, {}, {:?})", self.relay_url, self.bridge_id, self.name)
    }
}

impl fmt::Display for RelayInvite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/#id={}&route={}", self.relay_url, self.bridge_id, self.routing)?;
        match &self.name {
            Some(name) => write!(f, "&name={}", percent_encoded(name)),
            None => Ok(()),
        }
    }
}

/// Every byte but the URI's unreserved characters as `%XX`, as `encodeURIComponent` writes it, so that
/// `URLSearchParams` and `decodeURIComponent` read it back alike.
fn percent_encoded(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl FromStr for RelayInvite {
    type Err = InviteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| InviteError(why.to_string());
        let text = s.trim();
        // The old form carries the invite in the query, the new one in the fragment.
        let (mut url, old_form) = match text.strip_prefix("lanyard+") {
            Some(rest) => (url::Url::parse(rest).map_err(|e| InviteError(e.to_string()))?, true),
            None => (url::Url::parse(text).map_err(|e| InviteError(e.to_string()))?, false),
        };
        let fields = if old_form { url.query() } else { url.fragment() }.unwrap_or_default().to_string();
        let (mut bridge_id, mut routing, mut name) = (None, None, None);
        for (key, value) in url::form_urlencoded::parse(fields.as_bytes()) {
            match key.as_ref() {
                "id" => bridge_id = Some(value.parse::<KeyId>().map_err(|e| InviteError(format!("id: {e}")))?),
                "route" => routing = Some(value.into_owned()),
                "name" if !old_form => name = Some(value.into_owned()),
                _ => {}
            }
        }
        if old_form {
            url.set_query(None);
        } else {
            if url.query().is_some() {
                return Err(bad("the invite is in the part after #, and a query has no place before it"));
            }
            url.set_fragment(None);
        }
        let relay_url = crate::protocol::check_relay_url(url.as_str()).map_err(InviteError)?;
        let bridge_id = bridge_id.ok_or_else(|| bad("no id"))?;
        let routing = routing
            .filter(|r| r.len() == 43 && r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
            .ok_or_else(|| bad("no route of 43 base64url characters"))?;
        if let Some(name) = &name
            && (name.chars().count() > MAX_INVITE_NAME_CHARS || name.chars().any(char::is_control))
        {
            return Err(bad("the name has more than 64 characters or a control character"));
        }
        Ok(RelayInvite { relay_url, bridge_id, routing, name })
    }
}

#[cfg(test)]
mod invite_tests {
    use super::*;

    fn invite() -> RelayInvite {
        RelayInvite {
            relay_url: "https://relay.example.workers.dev".into(),
            bridge_id: certs::Identity::generate().id(),
            routing: "a".repeat(43),
            name: None,
        }
    }

    #[test]
    fn the_app_url_round_trips_and_debug_hides_the_route() {
        let invite = invite();
        let text = invite.to_string();
        assert_eq!(
            text,
            format!("https://relay.example.workers.dev/#id={}&route={}", invite.bridge_id, "a".repeat(43))
        );
        assert_eq!(text.parse::<RelayInvite>().unwrap(), invite);
        assert!(!format!("{invite:?}").contains(&invite.routing));
        // A relay under a path, and one on this computer for tests.
        for relay_url in ["https://example.net/lanyard", "http://127.0.0.1:8787", "http://localhost:8787"] {
            let invite = RelayInvite { relay_url: relay_url.into(), ..invite.clone() };
            assert_eq!(invite.to_string().parse::<RelayInvite>().unwrap(), invite);
        }
    }

    #[test]
    fn the_old_form_and_the_app_url_are_the_same_invite() {
        let invite = invite();
        let old = format!("lanyard+https://relay.example.workers.dev?id={}&route={}", invite.bridge_id, invite.routing);
        let new = format!("https://relay.example.workers.dev/#id={}&route={}", invite.bridge_id, invite.routing);
        assert_eq!(old.parse::<RelayInvite>().unwrap(), new.parse::<RelayInvite>().unwrap());
        assert_eq!(old.parse::<RelayInvite>().unwrap(), invite);
        // The name is the only difference a named invite makes.
        let named = format!("{new}&name=Ada%27s%20Mac").parse::<RelayInvite>().unwrap();
        assert_eq!(named.name.as_deref(), Some("Ada's Mac"));
        assert_eq!(RelayInvite { name: None, ..named }, invite);
    }

    #[test]
    fn names_are_percent_encoded_utf8_and_cleaned_when_made() {
        let invite = invite().named("  Ada's Mac ☕ & co=1\n");
        assert_eq!(invite.name.as_deref(), Some("Ada's Mac ☕ & co=1"));
        let text = invite.to_string();
        assert!(text.ends_with("&name=Ada%27s%20Mac%20%E2%98%95%20%26%20co%3D1"), "{text}");
        assert_eq!(text.parse::<RelayInvite>().unwrap(), invite);
        assert_eq!(invite.clone().named(&"é".repeat(100)).name.unwrap().chars().count(), 64);
        assert_eq!(invite.named("\n\t").name, None);
    }

    #[test]
    fn refuses_a_bad_id_route_scheme_or_name_saying_what_an_invite_looks_like() {
        let invite = invite();
        let (id, route) = (invite.bridge_id.to_string(), invite.routing.clone());
        let cases = [
            (format!("https://r.example/#id=not-a-key&route={route}"), "id:"),
            (format!("https://r.example/#route={route}"), "no id"),
            (format!("https://r.example/#id={id}"), "no route"),
            (format!("https://r.example/#id={id}&route={}", "a".repeat(42)), "no route"),
            (format!("https://r.example/#id={id}&route={}", "a+".repeat(21) + "a"), "no route"),
            // The invite is in the fragment: a query is not read as one.
            (format!("https://r.example/?id={id}&route={route}"), "after #"),
            (format!("https://r.example/?x=1#id={id}&route={route}"), "query"),
            (format!("ftp://r.example/#id={id}&route={route}"), "not ftp://"),
            (format!("http://r.example/#id={id}&route={route}"), "plain http"),
            (format!("http://10.0.0.1:8787/#id={id}&route={route}"), "plain http"),
            (format!("lanyard+ftp://r.example?id={id}&route={route}"), "not ftp://"),
            (format!("lanyard+https://r.example?route={route}"), "no id"),
            (format!("https://r.example/#id={id}&route={route}&name={}", "n".repeat(65)), "name"),
            (format!("https://r.example/#id={id}&route={route}&name=a%0Ab"), "name"),
            ("relay.example".to_string(), "relative URL"),
        ];
        for (text, why) in cases {
            let e = text.parse::<RelayInvite>().unwrap_err().to_string();
            assert!(e.contains(why) && e.contains("https://RELAY/#id=BRIDGE_ID&route=ROUTING"), "{text}: {e}");
        }
        let name = "n".repeat(64);
        assert!(format!("https://r.example/#id={id}&route={route}&name={name}").parse::<RelayInvite>().is_ok());
    }
}
