//! The web allow-list: which URLs `screen.navigate` may open. Empty by default, so a node opens nothing
//! from the web until its owner says so. An entry is a host (`example.org`, https on any port), a
//! wildcard (`*.example.org`, its subdomains), or an origin with a scheme (`http://192.168.1.5:8123`, for
//! a dashboard on the home network that has no certificate: only that scheme, host and port).

use node_kit::protocol::{ErrorCode, ErrorShape};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::fmt;
use std::str::FromStr;
use url::Url;

/// Where the Canvas gets the allow-list: asked again for every page (each `screen.navigate` and each
/// document the browser loads), so an entry saved by another `lanyard-node --web-allow …` command reaches a
/// running node at once, and a removed one stops admitting at once.
#[derive(Clone)]
pub struct WebAllow(std::sync::Arc<dyn Fn() -> Vec<AllowEntry> + Send + Sync>);

impl WebAllow {
    pub fn new(read: impl Fn() -> Vec<AllowEntry> + Send + Sync + 'static) -> WebAllow {
        WebAllow(std::sync::Arc::new(read))
    }

    /// The allow-list as it is now.
    pub fn current(&self) -> Vec<AllowEntry> {
        (self.0)()
    }
}

impl fmt::Debug for WebAllow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WebAllow").field(&self.current()).finish()
    }
}

/// The setting's name, as errors show it.
pub const SETTING: &str = "--web-allow";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum AllowEntry {
    /// https to this host (any port).
    Host(String),
    /// https to any subdomain of this domain (not the domain itself).
    Subdomains(String),
    /// Exactly this scheme, host and port (http or https).
    Origin { scheme: String, host: String, port: u16 },
}

impl FromStr for AllowEntry {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.contains("://") {
            let url = Url::parse(text).map_err(|e| format!("{text:?} is not an origin: {e}"))?;
            let scheme = url.scheme().to_string();
            if scheme != "http" && scheme != "https" {
                return Err(format!("{text:?}: only http and https origins can be allowed"));
            }
            if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
                return Err(format!("{text:?}: give an origin (scheme://host:port) without a path"));
            }
            let host = url.host_str().ok_or_else(|| format!("{text:?} has no host"))?.to_ascii_lowercase();
            let port = url.port_or_known_default().ok_or_else(|| format!("{text:?} has no port"))?;
            return Ok(AllowEntry::Origin { scheme, host, port });
        }
        let host = text.to_ascii_lowercase();
        let (wildcard, name) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, host),
        };
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if !valid {
            return Err(format!("{text:?} is not a host name; write example.org, *.example.org or http://host:port"));
        }
        Ok(if wildcard { AllowEntry::Subdomains(name) } else { AllowEntry::Host(name) })
    }
}

impl TryFrom<String> for AllowEntry {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl From<AllowEntry> for String {
    fn from(entry: AllowEntry) -> String {
        entry.to_string()
    }
}

impl fmt::Display for AllowEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowEntry::Host(host) => f.write_str(host),
            AllowEntry::Subdomains(domain) => write!(f, "*.{domain}"),
            AllowEntry::Origin { scheme, host, port } => write!(f, "{scheme}://{host}:{port}"),
        }
    }
}

impl AllowEntry {
    fn admits(&self, url: &Url) -> bool {
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else { return false };
        let host = host.to_ascii_lowercase();
        match self {
            AllowEntry::Host(allowed) => url.scheme() == "https" && host == *allowed,
            AllowEntry::Subdomains(domain) => {
                url.scheme() == "https" && host.strip_suffix(domain.as_str()).is_some_and(|sub| sub.ends_with('.'))
            }
            AllowEntry::Origin { scheme, host: allowed, port: allowed_port } => {
                url.scheme() == scheme && host == *allowed && port == *allowed_port
            }
        }
    }
}

/// Parses `text` and checks it against `allowed`: `URL_NOT_ALLOWED` naming the setting when no entry
/// admits it. Schemes other than http and https (`file:`, `javascript:`, `chrome:`, `data:`) are never
/// admitted, and neither are URLs with credentials in them.
pub fn check(text: &str, allowed: &[AllowEntry]) -> Result<Url, ErrorShape> {
    let url = Url::parse(text).map_err(|e| ErrorShape::invalid_request(format!("{text:?} is not a URL: {e}")))?;
    let refuse = |why: String| {
        Err(ErrorShape::new(ErrorCode::UrlNotAllowed, why).with_details(json!({ "setting": SETTING, "url": text })))
    };
    if url.scheme() != "https" && url.scheme() != "http" {
        return refuse(format!(
            "{}: URLs are never opened; only http(s) URLs the {SETTING} setting admits",
            url.scheme()
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return refuse("URLs with credentials in them are not opened".into());
    }
    if allowed.iter().any(|entry| entry.admits(&url)) {
        return Ok(url);
    }
    let host = url.host_str().unwrap_or_default();
    if allowed.is_empty() {
        refuse(format!(
            "web mode may not open anything: the {SETTING} setting is empty (run `lanyard-node {SETTING} {host} status` to allow https://{host})"
        ))
    } else {
        let list: Vec<String> = allowed.iter().map(ToString::to_string).collect();
        refuse(format!("{url} is not on the {SETTING} list ({})", list.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(list: &[&str]) -> Vec<AllowEntry> {
        list.iter().map(|e| e.parse().unwrap()).collect()
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        let e = check("https://example.org/", &[]).unwrap_err();
        assert_eq!(e.code, ErrorCode::UrlNotAllowed);
        assert!(e.message.contains(SETTING), "{}", e.message);
        assert_eq!(e.details.unwrap()["setting"], SETTING);
    }

    #[test]
    fn hosts_admit_https_only_and_wildcards_only_subdomains() {
        let allowed = entries(&["example.org", "*.wiki.test"]);
        check("https://example.org/a?b", &allowed).unwrap();
        check("https://EXAMPLE.org:8443/", &allowed).unwrap();
        assert!(check("http://example.org/", &allowed).is_err());
        assert!(check("https://evil-example.org/", &allowed).is_err());
        assert!(check("https://example.org.evil.test/", &allowed).is_err());
        check("https://en.wiki.test/", &allowed).unwrap();
        assert!(check("https://wiki.test/", &allowed).is_err());
        assert!(check("https://xwiki.test/", &allowed).is_err());
    }

    #[test]
    fn origins_admit_exactly_their_scheme_host_and_port() {
        let allowed = entries(&["http://127.0.0.1:8123"]);
        check("http://127.0.0.1:8123/dash", &allowed).unwrap();
        assert!(check("http://127.0.0.1:8124/", &allowed).is_err());
        assert!(check("https://127.0.0.1:8123/", &allowed).is_err());
    }

    #[test]
    fn other_schemes_and_credentials_are_never_opened() {
        let allowed = entries(&["example.org", "http://127.0.0.1:80"]);
        for url in
            ["file:///etc/passwd", "javascript:alert(1)", "chrome://settings", "data:text/html,hi", "about:blank"]
        {
            assert_eq!(check(url, &allowed).unwrap_err().code, ErrorCode::UrlNotAllowed, "{url}");
        }
        for url in ["https://user:pw@example.org/", "https://user@example.org/", "https://:pw@example.org/"] {
            assert_eq!(check(url, &allowed).unwrap_err().code, ErrorCode::UrlNotAllowed, "{url}");
        }
        assert_eq!(check("not a url", &allowed).unwrap_err().code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn entries_are_saved_as_they_are_written() {
        let saved = serde_json::to_string(&entries(&["*.example.org", "http://10.0.0.5:8123"])).unwrap();
        assert_eq!(saved, r#"["*.example.org","http://10.0.0.5:8123"]"#);
        assert_eq!(
            serde_json::from_str::<Vec<AllowEntry>>(&saved).unwrap(),
            entries(&["*.example.org", "http://10.0.0.5:8123"])
        );
        assert!(serde_json::from_str::<Vec<AllowEntry>>(r#"["ftp://x.test"]"#).is_err());
    }

    #[test]
    fn entries_parse_and_print_back() {
        for text in ["example.org", "*.example.org", "http://10.0.0.5:8123", "https://a.test:443"] {
            assert_eq!(text.parse::<AllowEntry>().unwrap().to_string(), text);
        }
        for bad in
            ["", "exa mple.org", "ftp://x.test", "http://x.test/path", "http://x.test/?q", "http://x.test/#f", "*."]
        {
            assert!(bad.parse::<AllowEntry>().is_err(), "{bad}");
        }
    }
}
