//! Where the computer may POST a push: a subscription names a URL, and a paired device must not be able to
//! make the computer send requests into its own network. So an endpoint is `https` on a public address;
//! an IP literal is checked when the device subscribes, a name when a push is sent, by a resolver that
//! hands the HTTP client only addresses it checked (so nothing can re-point the name in between).

use node_kit::protocol::ErrorShape;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::json;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use url::{Host, Url};

/// Longest endpoint URL taken (the push services' are about 200 to 500 bytes).
pub(crate) const MAX_ENDPOINT_LEN: usize = 2048;

/// Why an endpoint is refused: `details.reason` of the `INVALID_REQUEST`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    NotHttps,
    NotPublic,
}

impl Refusal {
    pub(crate) fn into_error(self, detail: &str) -> ErrorShape {
        let (reason, message) = match self {
            Refusal::NotHttps => ("endpoint_not_https", "a push endpoint must be an https URL"),
            Refusal::NotPublic => ("endpoint_not_public", "a push endpoint must be on a public internet address"),
        };
        ErrorShape::invalid_request(format!("{message} ({detail})")).with_details(json!({ "reason": reason }))
    }
}

/// The endpoint rule, with the test-only switch that lets tests use a push service on loopback over http.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EndpointRule {
    pub allow_local: bool,
}

impl EndpointRule {
    /// Checks what can be checked without resolving: the URL's form, its scheme, and an IP literal host.
    pub(crate) fn check_url(&self, endpoint: &str) -> Result<Url, ErrorShape> {
        if endpoint.len() > MAX_ENDPOINT_LEN {
            return Err(ErrorShape::invalid_request(format!("endpoint is longer than {MAX_ENDPOINT_LEN} bytes")));
        }
        let url =
            Url::parse(endpoint).map_err(|e| ErrorShape::invalid_request(format!("endpoint is not a URL: {e}")))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(ErrorShape::invalid_request("endpoint must not carry a user name or password"));
        }
        let scheme_ok = url.scheme() == "https" || (self.allow_local && url.scheme() == "http");
        if !scheme_ok {
            return Err(Refusal::NotHttps.into_error(&format!("the scheme is {:?}", url.scheme())));
        }
        let literal = match url.host() {
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(Host::Domain(_)) => None,
            None => return Err(ErrorShape::invalid_request("endpoint has no host")),
        };
        if let Some(ip) = literal
            && !self.allows(ip)
        {
            return Err(Refusal::NotPublic.into_error(&format!("{ip} is not a public address")));
        }
        Ok(url)
    }

    /// Whether a connection to `ip` is allowed.
    pub(crate) fn allows(&self, ip: IpAddr) -> bool {
        self.allow_local || is_public(ip)
    }

    /// Resolves `host` and checks every address: one private address among public ones refuses the name.
    pub(crate) async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        let addrs: Vec<SocketAddr> =
            tokio::net::lookup_host((host, port)).await.map_err(ResolveError::Lookup)?.collect();
        if addrs.is_empty() {
            return Err(ResolveError::Lookup(std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses")));
        }
        match addrs.iter().find(|a| !self.allows(a.ip())) {
            Some(refused) => Err(ResolveError::NotPublic(refused.ip())),
            None => Ok(addrs),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    #[error("cannot resolve the push endpoint's name: {0}")]
    Lookup(std::io::Error),
    #[error("the push endpoint's name resolves to {0}, which is not a public address")]
    NotPublic(IpAddr),
}

/// The HTTP client's only resolver: it returns a name's addresses only when all are allowed, and the
/// client connects to what it returned.
impl Resolve for EndpointRule {
    fn resolve(&self, name: Name) -> Resolving {
        let rule = *self;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = rule.resolve(&host, 0).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// A unicast address on the public internet: not loopback, private, link-local, unique-local, CGNAT,
/// unspecified, multicast, broadcast, reserved or documentation; an address that embeds an IPv4 one
/// (mapped, NAT64, 6to4) is judged by that.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    const NOT_PUBLIC: &[([u8; 4], u32)] = &[
        ([0, 0, 0, 0], 8),       // "this network", unspecified
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // CGNAT
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // documentation
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // documentation
        ([203, 0, 113, 0], 24),  // documentation
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, broadcast
    ];
    !NOT_PUBLIC.iter().any(|(net, prefix)| in_v4(ip, *net, *prefix))
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let embedded_v4 = |offset: u32| Ipv4Addr::from((u128::from(ip) >> offset) as u32);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return is_public_v4(embedded_v4(0)); // NAT64
    }
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        return is_public_v4(embedded_v4(80)); // 6to4
    }
    const NOT_PUBLIC: &[([u16; 8], u32)] = &[
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), // IETF protocol assignments (Teredo, benchmarking, ORCHID)
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), // documentation
    ];
    // Global unicast is 2000::/3: this leaves out ::, ::1, unique-local, link-local, site-local, multicast.
    in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) && !NOT_PUBLIC.iter().any(|(net, prefix)| in_v6(ip, *net, *prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: EndpointRule = EndpointRule { allow_local: false };

    fn reason(endpoint: &str) -> String {
        let refused = STRICT.check_url(endpoint).unwrap_err();
        refused.details.map(|d| d["reason"].as_str().unwrap_or_default().to_string()).unwrap_or(refused.message)
    }

    #[test]
    fn only_public_unicast_addresses_are_public() {
        for public in ["8.8.8.8", "142.250.74.106", "2a00:1450:4001:82b::200a", "::ffff:8.8.8.8", "64:ff9b::808:808"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
        for local in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.1",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.251",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:c0a8:101::1",
            "2001::1",
            "2001:db8::1",
            "3fff::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(!is_public(local.parse().unwrap()), "{local}");
        }
    }

    #[test]
    fn an_endpoint_is_https_and_its_ip_literal_public() {
        assert!(STRICT.check_url("https://fcm.googleapis.com/fcm/send/abc").is_ok());
        assert!(STRICT.check_url("https://8.8.8.8/push").is_ok());
        for local in [
            "https://127.0.0.1/x",
            "https://10.0.0.5:8443/x",
            "https://192.168.1.20/x",
            "https://[::1]/x",
            "https://[fc00::1]/x",
            "https://[::ffff:192.168.0.1]/x",
            "https://2130706433/x",
            "https://0x7f.1/x",
        ] {
            assert_eq!(reason(local), "endpoint_not_public", "{local}");
        }
        assert_eq!(reason("http://push.example.com/x"), "endpoint_not_https");
        assert_eq!(reason("ftp://push.example.com/x"), "endpoint_not_https");
        assert!(reason("https://user:pw@push.example.com/x").contains("user name"));
        assert!(reason("not a url").contains("not a URL"));
        assert!(reason(&format!("https://push.example.com/{}", "a".repeat(MAX_ENDPOINT_LEN))).contains("longer"));
        let local = EndpointRule { allow_local: true };
        assert!(local.check_url("http://127.0.0.1:9/x").is_ok());
    }

    #[tokio::test]
    async fn a_name_is_refused_when_any_address_it_resolves_to_is_not_public() {
        let refused = STRICT.resolve("localhost", 443).await.unwrap_err();
        assert!(matches!(refused, ResolveError::NotPublic(ip) if ip.is_loopback()), "{refused}");
        let allowed = EndpointRule { allow_local: true }.resolve("localhost", 443).await.unwrap();
        assert!(allowed.iter().all(|a| a.ip().is_loopback()));
    }
}
