//! One push, on the wire (RFC 8030 §5): `POST` the encrypted body to the subscription's endpoint with
//! `Content-Encoding: aes128gcm`, `TTL`, `Urgency` and the VAPID `Authorization`.

use super::endpoint::EndpointRule;
use super::notice::PADDED_LEN;
use super::{Push, Subscription, ece};
use node_kit::protocol::{PushKind, PushNotice};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use std::sync::Arc;
use std::time::Duration;

/// The push's `sub` claim when no relay is set (RFC 8292 §2.1: a contact for the push service).
const FALLBACK_CONTACT: &str = "mailto:owner@lanyard.invalid";
/// How long a push service keeps a finished run's push for a device that is offline.
const DONE_TTL: Duration = Duration::from_secs(3600);

/// The client every push goes through: web PKI roots, no proxy (it would connect elsewhere than the
/// addresses checked), no redirects (a push service has no reason to, and a redirect could point anywhere),
/// and the endpoint rule as its only resolver.
pub(super) fn http_client(rule: EndpointRule) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(node_kit::relay::web_tls_config())
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(rule))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("the push HTTP client builds with a rustls configuration")
}

/// The push service's host, for logs: the endpoint's path is the subscription's secret, never logged.
pub(super) fn service_name(endpoint: &str) -> String {
    url::Url::parse(endpoint).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub(super) enum DeliveryError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Encryption(#[from] ece::EceError),
    #[error("{0}")]
    Http(String),
}

impl Push {
    /// Encrypts and POSTs one notice; the push service's status.
    pub(super) async fn deliver(
        &self,
        subscription: &Subscription,
        notice: &PushNotice,
    ) -> Result<StatusCode, DeliveryError> {
        // The subscription was checked when it was given; the store may have been edited since.
        let url = self.rule.check_url(&subscription.endpoint).map_err(|e| DeliveryError::Refused(e.message))?;
        let recipient = subscription.recipient().map_err(|e| DeliveryError::Refused(e.message))?;
        let plaintext = serde_json::to_vec(notice).expect("notices serialise");
        let body = ece::encrypt(&recipient, &plaintext, PADDED_LEN)?;
        let vapid = self.vapid().map_err(|e| DeliveryError::Refused(e.message))?;
        let contact = crate::tunnel::load_url(&self.home).ok().flatten().and_then(|relay| {
            url::Url::parse(&relay).ok().map(|u| u.origin().ascii_serialization()).filter(|o| o.starts_with("https://"))
        });
        let authorization = vapid.authorization(
            &url.origin().ascii_serialization(),
            contact.as_deref().unwrap_or(FALLBACK_CONTACT),
            node_kit::protocol::now_ms() / 1000,
        );
        let (ttl, urgency) = match notice.kind {
            PushKind::Done => (DONE_TTL, "normal"),
            PushKind::Permission | PushKind::Question | PushKind::Plan => (self.prompt_ttl, "high"),
        };
        let response = self
            .http
            .post(url)
            .header(AUTHORIZATION, authorization)
            .header(CONTENT_ENCODING, "aes128gcm")
            .header(CONTENT_TYPE, "application/octet-stream")
            .header("TTL", ttl.as_secs().to_string())
            .header("Urgency", urgency)
            .body(body)
            .send()
            .await
            .map_err(|e| DeliveryError::Http(causes(&e.without_url())))?;
        Ok(response.status())
    }
}

/// An error and its causes on one line (reqwest's own message leaves out why a connection failed).
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::super::{Push, PushConfig};
    use super::*;
    use data_encoding::BASE64URL_NOPAD;
    use node_kit::protocol::PushSubscriptionKeys;
    use p256::elliptic_curve::sec1::ToEncodedPoint;

    fn subscription(endpoint: String) -> Subscription {
        let point = p256::SecretKey::from_slice(&[9; 32]).unwrap().public_key().to_encoded_point(false);
        let keys = PushSubscriptionKeys {
            p256dh: BASE64URL_NOPAD.encode(point.as_bytes()),
            auth: BASE64URL_NOPAD.encode(&[3; 16]),
        };
        Subscription::new(endpoint, keys).unwrap()
    }

    fn notice() -> PushNotice {
        PushNotice {
            v: 1,
            kind: PushKind::Done,
            run_id: "r".into(),
            request_id: None,
            session_key: "s".into(),
            tool: None,
        }
    }

    /// A name is checked when the push is sent, and the connection goes only to what was checked: a name
    /// that resolves to loopback gets no connection, whatever the store says.
    #[tokio::test]
    async fn a_name_resolving_to_a_local_address_gets_no_connection() {
        let home = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let push = Push::new(home.path().to_path_buf(), &PushConfig::default(), Duration::from_secs(60));
        let refused_at_once = |endpoint: String| {
            let push = &push;
            async move {
                let (subscription, notice) = (subscription(endpoint), notice());
                let delivery = push.deliver(&subscription, &notice);
                tokio::time::timeout(Duration::from_secs(10), delivery).await.expect("refused without connecting")
            }
        };
        let refused = refused_at_once(format!("https://localhost:{port}/x")).await.unwrap_err();
        assert!(refused.to_string().contains("not a public address"), "{refused}");
        let literal = refused_at_once(format!("https://127.0.0.1:{port}/x")).await.unwrap_err();
        assert!(literal.to_string().contains("not a public address"), "{literal}");
        // A connection made would be waiting to be accepted by now.
        let accepted = tokio::time::timeout(Duration::ZERO, listener.accept()).await;
        assert!(accepted.is_err(), "a refused endpoint was connected to");
    }
}
