//! Door 3's codes: pairing a device away from home, by PIN, through the relay. One code is live at a
//! time: a routing token (which gets the device's stream through the relay to the bridge, and names the
//! code) and a 6-digit PIN, valid 5 minutes, burnt after five exchanges that did not end in a pairing.
//! The PIN is kept in memory only and never logged; the SPAKE2 exchange itself is [`node_kit::pin`].

use crate::now_ms;
use certs::KeyId;
use node_kit::pin::{self, PinKeys};
use node_kit::protocol::{
    DeviceInfo, ErrorCode, ErrorShape, PairPinChallenge, PairPinConfirmSubmit, PairPinSubmit, RemotePairCode, Scope,
    routing_token_hash,
};
use std::sync::Mutex;
use std::time::Duration;
use zeroize::Zeroizing;

/// Exchanges a code allows before it is burnt.
pub(crate) const PIN_TRIES: u32 = 5;

struct LiveCode {
    routing_hash: String,
    pin: Zeroizing<String>,
    request_id: String,
    scopes: Vec<Scope>,
    expires_at_ms: u64,
    tries_left: u32,
    /// The last exchange, waiting for the node's confirmation.
    pending: Option<Pending>,
    /// When the code was used or burnt. Its routing token stays in the relay's set a little longer, so the
    /// answer that ended it still reaches the device over the stream that token opened.
    ended_at_ms: Option<u64>,
}

impl LiveCode {
    fn end(&mut self) {
        self.ended_at_ms = Some(now_ms());
        self.pending = None;
    }
}

struct Pending {
    /// The TLS key of a device; none for a keyless client of the sealed HTTP contract.
    node_id: Option<KeyId>,
    keys: PinKeys,
    device: DeviceInfo,
    scopes: Vec<Scope>,
}

/// What a confirmed exchange grants.
pub(crate) struct Granted {
    pub request_id: String,
    /// A device's TLS key ID, or the ID a keyless client's exchange made.
    pub node_id: KeyId,
    pub device: DeviceInfo,
    pub scopes: Vec<Scope>,
    /// The exchange's key, for a keyless client of the sealed HTTP contract only.
    pub seal_key: Option<node_kit::seal::SealKey>,
}

pub(crate) struct RemoteCodes {
    ttl: Duration,
    linger: Duration,
    live: Mutex<Option<LiveCode>>,
}

fn b64(bytes: &[u8]) -> String {
    data_encoding::BASE64URL_NOPAD.encode(bytes)
}

fn unb64(text: &str, what: &str) -> Result<Vec<u8>, ErrorShape> {
    data_encoding::BASE64URL_NOPAD
        .decode(text.as_bytes())
        .map_err(|_| ErrorShape::invalid_request(format!("{what} is not base64url")))
}

fn not_valid() -> ErrorShape {
    ErrorShape::new(
        ErrorCode::PairingCodeInvalid,
        "this remote pairing code is not valid (expired, used, burnt by wrong PINs, or replaced); run \
         `lanyard pair --remote` on the computer for a new one",
    )
}

impl RemoteCodes {
    /// Codes live `ttl`; an ended one's routing token stays in the relay's set for `linger`.
    pub(crate) fn new(ttl: Duration, linger: Duration) -> Self {
        RemoteCodes { ttl, linger, live: Mutex::new(None) }
    }

    pub(crate) fn linger(&self) -> Duration {
        self.linger
    }

    /// Whether a code is live and can still be tried.
    pub(crate) fn is_live(&self) -> bool {
        let live = self.live.lock().expect("remote codes lock");
        live.as_ref().is_some_and(|code| code.ended_at_ms.is_none() && code.expires_at_ms > now_ms())
    }

    /// A fresh code granting at most `scopes`; the previous one stops working.
    pub(crate) fn issue(&self, scopes: Vec<Scope>, relay_url: String) -> RemotePairCode {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).expect("the OS random source works");
        let routing = b64(&secret);
        let pin = pin::random_pin();
        let request_id = format!("remote:{}", &node_kit::client::random_id()[..12]);
        let expires_at_ms = now_ms() + self.ttl.as_millis() as u64;
        *self.live.lock().expect("remote codes lock") = Some(LiveCode {
            routing_hash: routing_token_hash(&routing),
            pin: Zeroizing::new(pin.clone()),
            request_id: request_id.clone(),
            scopes,
            expires_at_ms,
            tries_left: PIN_TRIES,
            pending: None,
            ended_at_ms: None,
        });
        RemotePairCode { routing, pin, relay_url, request_id, expires_at_ms, tries: PIN_TRIES }
    }

    /// The live code's routing-token hash, for the relay's token set.
    pub(crate) fn routing_hash(&self) -> Option<String> {
        let live = self.live.lock().expect("remote codes lock");
        let now = now_ms();
        let linger = self.linger.as_millis() as u64;
        live.as_ref()
            .filter(|code| code.expires_at_ms > now && code.ended_at_ms.is_none_or(|ended| now < ended + linger))
            .map(|code| code.routing_hash.clone())
    }

    /// The live code if `routing_hash` names it and it has not expired.
    fn live_for<'a>(live: &'a mut Option<LiveCode>, routing_hash: &str) -> Result<&'a mut LiveCode, ErrorShape> {
        if live.as_ref().is_some_and(|code| code.expires_at_ms <= now_ms()) {
            *live = None;
        }
        match live {
            Some(code) if code.routing_hash == routing_hash && code.ended_at_ms.is_none() => Ok(code),
            _ => Err(not_valid()),
        }
    }

    /// The node's SPAKE2 message: spends a try and answers with the computer's message and confirmation.
    pub(crate) fn answer(&self, submit: &PairPinSubmit) -> Result<PairPinChallenge, ErrorShape> {
        let mut live = self.live.lock().expect("remote codes lock");
        let code = Self::live_for(&mut live, &submit.routing_hash)?;
        if code.tries_left == 0 {
            // Its last exchange was never confirmed: the code is burnt.
            code.end();
            return Err(not_valid());
        }
        code.tries_left -= 1;
        code.pending = None;
        let scopes: Vec<Scope> = submit.pin.scopes.iter().copied().filter(|s| code.scopes.contains(s)).collect();
        let outcome = unb64(&submit.pin.message, "message").and_then(|message| {
            pin::answer(&code.pin, submit.node_id.as_ref(), &submit.bridge_id, &message)
                .map_err(|e| ErrorShape::invalid_request(e.to_string()))
        });
        let tries_left = code.tries_left;
        let (message, keys) = match outcome {
            Ok(answer) => answer,
            Err(e) => {
                if tries_left == 0 {
                    code.end();
                }
                return Err(e);
            }
        };
        let challenge = PairPinChallenge { message: b64(&message), confirmation: b64(&keys.bridge_confirmation()) };
        code.pending = Some(Pending { node_id: submit.node_id, keys, device: submit.pin.device.clone(), scopes });
        Ok(challenge)
    }

    /// The node's confirmation. `paired` stores the pairing; only if it succeeds is the code spent.
    pub(crate) fn confirm<T>(
        &self,
        submit: &PairPinConfirmSubmit,
        paired: impl FnOnce(Granted) -> Result<T, ErrorShape>,
    ) -> Result<T, ErrorShape> {
        let mut live = self.live.lock().expect("remote codes lock");
        let code = Self::live_for(&mut live, &submit.routing_hash)?;
        let confirmation = unb64(&submit.confirmation, "confirmation")?;
        let matched = code
            .pending
            .take_if(|pending| pending.node_id == submit.node_id)
            .filter(|pending| pending.keys.check_node(&confirmation).is_ok());
        let Some(pending) = matched else {
            let tries_left = code.tries_left;
            if tries_left == 0 {
                code.end();
            }
            return Err(ErrorShape::new(
                ErrorCode::PairingPinWrong,
                format!("the PIN did not match ({tries_left} tries left with this code)"),
            )
            .with_details(serde_json::json!({ "triesLeft": tries_left })));
        };
        if pending.scopes.is_empty() {
            return Err(ErrorShape::invalid_request(format!(
                "this code grants only {}; ask for one of those",
                code.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        let granted = Granted {
            request_id: code.request_id.clone(),
            node_id: pending.node_id.unwrap_or_else(|| pending.keys.client_id()),
            device: pending.device,
            scopes: pending.scopes,
            seal_key: pending.node_id.is_none().then(|| node_kit::seal::SealKey::new(pending.keys.seal_key())),
        };
        let answer = paired(granted)?;
        code.end();
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use node_kit::pin::NodePin;
    use node_kit::protocol::PairPinParams;

    struct Device {
        node: KeyId,
        bridge: KeyId,
    }

    impl Device {
        fn new() -> Device {
            Device { node: certs::Identity::generate().id(), bridge: certs::Identity::generate().id() }
        }

        /// The node's first step: its SPAKE2 state and the `pair.pin` the bridge passes on.
        fn start(&self, pin: &str, routing_hash: &str) -> (NodePin, PairPinSubmit) {
            let (side_a, message) = NodePin::start(pin, Some(&self.node), &self.bridge).unwrap();
            let submit = PairPinSubmit {
                node_id: Some(self.node),
                bridge_id: self.bridge,
                routing_hash: routing_hash.to_string(),
                pin: PairPinParams {
                    message: b64(&message),
                    device: DeviceInfo { name: "phone".into(), platform: "test".into(), model: None },
                    scopes: vec![Scope::Chat],
                },
            };
            (side_a, submit)
        }

        fn try_pin(&self, codes: &RemoteCodes, code: &RemotePairCode, pin: &str) -> Result<Vec<Scope>, ErrorShape> {
            let routing_hash = routing_token_hash(&code.routing);
            let (side_a, submit) = self.start(pin, &routing_hash);
            let challenge = codes.answer(&submit)?;
            let keys = side_a.finish(&unb64(&challenge.message, "m")?, &unb64(&challenge.confirmation, "c")?);
            // A node whose check fails sends a confirmation that cannot match.
            let confirmation = keys.map(|k| k.node_confirmation()).unwrap_or_default();
            let confirm =
                PairPinConfirmSubmit { node_id: Some(self.node), routing_hash, confirmation: b64(&confirmation) };
            codes.confirm(&confirm, |granted| Ok(granted.scopes))
        }
    }

    #[test]
    fn the_right_pin_pairs_once_and_the_code_is_spent() {
        let codes = RemoteCodes::new(Duration::from_secs(300), Duration::ZERO);
        let code = codes.issue(vec![Scope::Chat], "https://r".into());
        assert_eq!(codes.routing_hash(), Some(routing_token_hash(&code.routing)));
        let device = Device::new();
        assert_eq!(device.try_pin(&codes, &code, &code.pin).unwrap(), [Scope::Chat]);
        assert_eq!(device.try_pin(&codes, &code, &code.pin).unwrap_err().code, ErrorCode::PairingCodeInvalid);
        assert_eq!(codes.routing_hash(), None);
    }

    #[test]
    fn five_wrong_pins_burn_the_code() {
        let codes = RemoteCodes::new(Duration::from_secs(300), Duration::ZERO);
        let code = codes.issue(vec![Scope::Chat], "https://r".into());
        let wrong = if code.pin == "000000" { "111111" } else { "000000" };
        let device = Device::new();
        for left in (0..PIN_TRIES).rev() {
            let refused = device.try_pin(&codes, &code, wrong).unwrap_err();
            assert_eq!(refused.code, ErrorCode::PairingPinWrong);
            assert_eq!(refused.details.unwrap()["triesLeft"], left);
        }
        assert_eq!(device.try_pin(&codes, &code, &code.pin).unwrap_err().code, ErrorCode::PairingCodeInvalid);
        assert_eq!(codes.routing_hash(), None, "a burnt code leaves the relay's token set");
    }

    #[test]
    fn another_routing_token_an_expired_code_or_a_replaced_one_is_refused() {
        let codes = RemoteCodes::new(Duration::ZERO, Duration::ZERO);
        let expired = codes.issue(vec![Scope::Chat], "https://r".into());
        let device = Device::new();
        assert_eq!(device.try_pin(&codes, &expired, &expired.pin).unwrap_err().code, ErrorCode::PairingCodeInvalid);

        let codes = RemoteCodes::new(Duration::from_secs(300), Duration::ZERO);
        let old = codes.issue(vec![Scope::Chat], "https://r".into());
        let new = codes.issue(vec![Scope::Chat], "https://r".into());
        assert_eq!(device.try_pin(&codes, &old, &new.pin).unwrap_err().code, ErrorCode::PairingCodeInvalid);
        assert!(device.try_pin(&codes, &new, &new.pin).is_ok());
    }

    #[test]
    fn a_confirmation_from_another_key_than_the_exchange_is_refused() {
        let codes = RemoteCodes::new(Duration::from_secs(300), Duration::ZERO);
        let code = codes.issue(vec![Scope::Chat], "https://r".into());
        let device = Device::new();
        let routing_hash = routing_token_hash(&code.routing);
        let (side_a, submit) = device.start(&code.pin, &routing_hash);
        let challenge = codes.answer(&submit).unwrap();
        let keys = side_a
            .finish(&unb64(&challenge.message, "m").unwrap(), &unb64(&challenge.confirmation, "c").unwrap())
            .unwrap();
        let other = certs::Identity::generate().id();
        let confirm =
            PairPinConfirmSubmit { node_id: Some(other), routing_hash, confirmation: b64(&keys.node_confirmation()) };
        assert_eq!(codes.confirm(&confirm, |_| Ok(())).unwrap_err().code, ErrorCode::PairingPinWrong);
    }
}
