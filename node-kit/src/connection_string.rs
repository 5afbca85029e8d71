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
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}://{}?id={}&code={}", self.address(), self.bridge_id, self.code)
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

    #[test]
    fn debug_hides_the_code() {
        let s = ConnectionString { host: "h".into(), port: 1, bridge_id: id(), code: "canary-secret".into() };
        assert!(!format!("{s:?}").contains("canary-secret"));
    }
}

/// Door 3's invite, as the computer shows it for a device away from home (a QR code, with the PIN shown
/// beside it and typed on the device): `lanyard+https://RELAY[/PATH]?id=BRIDGE_ID&route=ROUTING_TOKEN`.
/// The routing token gets the device's stream through the relay to the bridge and names the code; the
/// bridge ID is only the relay's address for it: the PIN exchange is what authenticates the bridge.
#[derive(Clone, PartialEq, Eq)]
pub struct RelayInvite {
    pub relay_url: String,
    pub bridge_id: KeyId,
    pub routing: String,
}

impl fmt::Debug for RelayInvite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RelayInvite({}, {})", self.relay_url, self.bridge_id)
    }
}

impl fmt::Display for RelayInvite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "lanyard+{}?id={}&route={}", self.relay_url, self.bridge_id, self.routing)
    }
}

impl FromStr for RelayInvite {
    type Err = ConnectionStringError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: String| ConnectionStringError(why);
        let rest =
            s.trim().strip_prefix("lanyard+").ok_or_else(|| bad("it must start with lanyard+https://".into()))?;
        let mut url = url::Url::parse(rest).map_err(|e| bad(e.to_string()))?;
        let (mut bridge_id, mut routing) = (None, None);
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "id" => bridge_id = Some(value.parse::<KeyId>().map_err(|e| bad(format!("id: {e}")))?),
                "route" => routing = Some(value.into_owned()),
                _ => {}
            }
        }
        url.set_query(None);
        let relay_url = crate::protocol::check_relay_url(url.as_str()).map_err(bad)?;
        let routing = routing.filter(|r| r.len() == 43).ok_or_else(|| bad("no route of 43 characters".into()))?;
        Ok(RelayInvite { relay_url, bridge_id: bridge_id.ok_or_else(|| bad("no id".into()))?, routing })
    }
}

#[cfg(test)]
mod invite_tests {
    use super::*;

    #[test]
    fn invites_round_trip_and_hide_the_route_in_debug() {
        let invite = RelayInvite {
            relay_url: "https://relay.example.workers.dev".into(),
            bridge_id: certs::Identity::generate().id(),
            routing: "a".repeat(43),
        };
        let text = invite.to_string();
        assert!(text.starts_with("lanyard+https://relay.example.workers.dev?id="), "{text}");
        assert_eq!(text.parse::<RelayInvite>().unwrap(), invite);
        assert!(!format!("{invite:?}").contains(&invite.routing));
        for bad in ["https://r.example?id=x&route=y", "lanyard+https://r.example?route=", "lanyard+ftp://r?id=&route="]
        {
            assert!(bad.parse::<RelayInvite>().is_err(), "{bad}");
        }
    }
}
