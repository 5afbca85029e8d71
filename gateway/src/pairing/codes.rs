//! One-time pairing codes (door 2): the secret of a `lanyard://` connection string, standing for the
//! owner's approval. One code is live at a time; issuing a new one retires the old. Codes live in memory
//! only (a gateway restart retires them) and only their hashes are kept, so they never reach a log or a
//! state file. Retired codes are remembered for a while to tell "used" and "expired" from "wrong".

use crate::now_ms;
use node_kit::protocol::{ErrorCode, ErrorShape, Scope};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// How many retired codes are remembered to explain a refusal.
const RETIRED_KEPT: usize = 16;

type CodeHash = [u8; 32];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retired {
    Used,
    Expired,
    Replaced,
}

struct LiveCode {
    hash: CodeHash,
    request_id: String,
    scopes: Vec<Scope>,
    expires_at_ms: u64,
}

#[derive(Default)]
struct Codes {
    live: Option<LiveCode>,
    retired: VecDeque<(CodeHash, Retired)>,
}

impl Codes {
    fn retire(&mut self, reason: Retired) {
        if let Some(live) = self.live.take() {
            if self.retired.len() == RETIRED_KEPT {
                self.retired.pop_front();
            }
            self.retired.push_back((live.hash, reason));
        }
    }
}

pub(crate) struct PairingCodes {
    ttl: Duration,
    codes: Mutex<Codes>,
}

/// A freshly issued code.
pub(crate) struct Issued {
    pub code: String,
    /// Names the redemption in `pair.resolved`, so the owner's `lanyard pair` hears its own code's.
    pub request_id: String,
    pub expires_at_ms: u64,
}

/// What a valid code grants.
#[derive(Debug)]
pub(crate) struct Redeemed {
    pub request_id: String,
    pub scopes: Vec<Scope>,
}

impl PairingCodes {
    pub(crate) fn new(ttl: Duration) -> Self {
        PairingCodes { ttl, codes: Mutex::new(Codes::default()) }
    }

    /// A fresh code granting at most `scopes`; the previous code stops working.
    pub(crate) fn issue(&self, scopes: Vec<Scope>) -> Issued {
        let mut secret = [0u8; 16];
        getrandom::fill(&mut secret).expect("the OS random source works");
        let code = data_encoding::BASE32_NOPAD.encode(&secret).to_ascii_lowercase();
        let expires_at_ms = now_ms() + self.ttl.as_millis() as u64;
        let mut codes = self.codes.lock().expect("codes lock");
        codes.retire(Retired::Replaced);
        let request_id = format!("code:{}", &node_kit::client::random_id()[..12]);
        codes.live = Some(LiveCode { hash: hash(&code), request_id: request_id.clone(), scopes, expires_at_ms });
        Issued { code, request_id, expires_at_ms }
    }

    /// Spends `code` if it is the live one; `paired` runs (and may fail) before the code is spent, so a
    /// failed store write leaves the code usable.
    pub(crate) fn redeem<T>(
        &self,
        code: &str,
        paired: impl FnOnce(Redeemed) -> Result<T, ErrorShape>,
    ) -> Result<T, ErrorShape> {
        let presented = hash(code.trim().to_ascii_lowercase().as_str());
        let mut codes = self.codes.lock().expect("codes lock");
        if codes.live.as_ref().is_some_and(|live| live.expires_at_ms <= now_ms()) {
            codes.retire(Retired::Expired);
        }
        match &codes.live {
            Some(live) if bool::from(live.hash.ct_eq(&presented)) => {
                let answer = paired(Redeemed { request_id: live.request_id.clone(), scopes: live.scopes.clone() })?;
                codes.retire(Retired::Used);
                Ok(answer)
            }
            _ => {
                let retired = codes.retired.iter().find(|(hash, _)| bool::from(hash.ct_eq(&presented)));
                Err(match retired.map(|(_, why)| *why) {
                    Some(Retired::Used) => ErrorShape::new(
                        ErrorCode::PairingCodeUsed,
                        "this pairing code was already used; run `lanyard pair` on the computer for a new one",
                    ),
                    Some(Retired::Expired) => ErrorShape::new(
                        ErrorCode::PairingExpired,
                        "this pairing code expired (codes last 5 minutes); run `lanyard pair` for a new one",
                    ),
                    Some(Retired::Replaced) => ErrorShape::new(
                        ErrorCode::PairingExpired,
                        "a newer pairing code was issued, which retired this one; use the newest code",
                    ),
                    None => ErrorShape::new(
                        ErrorCode::PairingCodeInvalid,
                        "this pairing code is not valid here; check the connection string, or run `lanyard pair` again",
                    ),
                })
            }
        }
    }
}

fn hash(code: &str) -> CodeHash {
    certs::sha256(&[b"lanyard-pair-code-v1", code.as_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(codes: &PairingCodes, code: &str) -> Result<Vec<Scope>, ErrorCode> {
        codes.redeem(code, |r| Ok(r.scopes)).map_err(|e| e.code)
    }

    #[test]
    fn a_code_works_once() {
        let codes = PairingCodes::new(Duration::from_secs(300));
        let code = codes.issue(vec![Scope::Chat]).code;
        assert_eq!(code.len(), 26);
        assert_eq!(grant(&codes, &code.to_ascii_uppercase()), Ok(vec![Scope::Chat]));
        assert_eq!(grant(&codes, &code), Err(ErrorCode::PairingCodeUsed));
    }

    #[test]
    fn a_new_code_retires_the_old_one() {
        let codes = PairingCodes::new(Duration::from_secs(300));
        let old = codes.issue(Scope::ALL.to_vec()).code;
        let new = codes.issue(Scope::ALL.to_vec()).code;
        assert_eq!(grant(&codes, &old), Err(ErrorCode::PairingExpired));
        assert!(grant(&codes, &new).is_ok());
    }

    #[test]
    fn expired_and_wrong_codes_are_refused_apart() {
        let codes = PairingCodes::new(Duration::ZERO);
        let code = codes.issue(Scope::ALL.to_vec()).code;
        assert_eq!(grant(&codes, &code), Err(ErrorCode::PairingExpired));
        assert_eq!(grant(&codes, "aaaaaaaaaaaaaaaaaaaaaaaaaa"), Err(ErrorCode::PairingCodeInvalid));
    }

    #[test]
    fn a_failed_pairing_leaves_the_code_usable() {
        let codes = PairingCodes::new(Duration::from_secs(300));
        let code = codes.issue(Scope::ALL.to_vec()).code;
        let failed: Result<(), _> = codes.redeem(&code, |_| Err(ErrorShape::invalid_request("disk full")));
        assert!(failed.is_err());
        assert!(grant(&codes, &code).is_ok());
    }
}
