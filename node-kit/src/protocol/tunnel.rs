//! The off-LAN tunnel: the owner's relay URL, the routing tokens nodes use to reach the bridge's relay
//! object, and the state of the bridge's link to it. `docs/relay.md` is the relay's own wire contract.

use serde::{Deserialize, Serialize};

/// Params of `tunnel.set` (operators): the relay's base URL, or `null` to turn the tunnel off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TunnelSetParams {
    pub url: Option<String>,
}

/// What the bridge needs to run its relay link: payload of `tunnel.sync` and of the `tunnel` event the
/// gateway sends the bridge whenever either part changes (the owner set the URL, a node got a token, a
/// pairing was revoked).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelSync {
    pub url: Option<String>,
    /// The lowercase hex SHA-256 of every paired node's routing token; never the tokens.
    pub tokens: Vec<String>,
}

/// Payload of `tunnel.token` (a paired node): a fresh routing token for this node, replacing any
/// earlier one. The gateway keeps only its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutingToken {
    pub token: String,
    /// Where the relay is; `None` while the owner has not turned the tunnel on.
    pub relay_url: Option<String>,
}

/// The bridge's link to its relay, as it reports it in `tunnel.report` and `health` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TunnelLinkState {
    /// Opening the socket or proving the key.
    Connecting,
    /// Proved and carrying node streams.
    Ready,
    /// Lost or refused; the next try is scheduled.
    Retrying,
}

/// Params of `tunnel.report` (the bridge).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelReport {
    pub state: TunnelLinkState,
    /// The relay URL the link is for.
    pub url: String,
    /// Node streams open through the relay now.
    pub relay_streams: usize,
    /// Why the last attempt failed, for `Retrying`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Since when the link is in this state (ms since the epoch).
    pub since_ms: u64,
}

/// The tunnel in `health` (operators).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TunnelHealth {
    pub url: Option<String>,
    /// The bridge's last report; `None` when no bridge has reported on this URL.
    pub link: Option<TunnelReport>,
    /// Paired nodes holding a routing token.
    pub nodes_with_tokens: usize,
}

/// The value the relay and the gateway hold for a routing token: lowercase hex SHA-256 of its text.
pub fn routing_token_hash(token: &str) -> String {
    certs::sha256(&[token.as_bytes()]).iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a relay URL the owner typed: `https://HOST[:PORT][/PATH]` (or `http://` for loopback tests),
/// no query, no credentials. Returns it without a trailing slash.
pub fn check_relay_url(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    let loopback = matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
        || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
        || url.host_str() == Some("localhost");
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => return Err("the relay URL must be https:// (plain http is only for a relay on this computer)".into()),
        other => return Err(format!("the relay URL must be https://, not {other}://")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the relay URL has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() || url.query().is_some() || url.fragment().is_some() {
        return Err("the relay URL must not carry credentials, a query or a fragment".into());
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_urls_are_https_or_loopback_http() {
        assert_eq!(check_relay_url("https://relay.example.workers.dev/").unwrap(), "https://relay.example.workers.dev");
        assert_eq!(check_relay_url("http://127.0.0.1:8787").unwrap(), "http://127.0.0.1:8787");
        assert!(check_relay_url("http://relay.example").is_err());
        assert!(check_relay_url("ftp://relay.example").is_err());
        assert!(check_relay_url("https://user:pw@relay.example").is_err());
        assert!(check_relay_url("https://relay.example/?x=1").is_err());
        assert!(check_relay_url("relay.example").is_err());
    }

    #[test]
    fn token_hashes_are_lowercase_hex_sha256() {
        // SHA-256("abc"), the FIPS 180-2 example.
        assert_eq!(routing_token_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
