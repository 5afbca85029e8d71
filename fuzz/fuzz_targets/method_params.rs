//! A request's method and params (`METHOD\nPARAMS-JSON`) through every parser that reads them before
//! anything runs: the bridge's pairing dialogue with a stranger (`pair.request`, `pair.confirm`, …), the
//! bridge's ACL for a paired node's call, and the gateway's dispatcher (`pair.submit`, `pair.pin`,
//! `seal.open`, … as the bridge passes them on). Never a panic; every refusal is a structured error of
//! the codes the protocol gives for bad params; what the dialogue accepts writes back to itself.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use node_kit::protocol::{
    ErrorCode, ErrorShape, PairConfirmParams, PairPinConfirmParams, PairPinParams, PairRedeemParams, PairRequestParams,
    PairWaitParams, Scope, method,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt::Debug;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (name, params) = text.split_once('\n').unwrap_or((text, ""));
    let params = if params.trim().is_empty() {
        Value::Null
    } else {
        match serde_json::from_str::<Value>(params) {
            Ok(params) => params,
            Err(_) => return,
        }
    };

    match name {
        method::PAIR_REQUEST => dialogue::<PairRequestParams>(&params, |p| p.device.check_lengths()),
        method::PAIR_CONFIRM => dialogue::<PairConfirmParams>(&params, |_| Ok(())),
        method::PAIR_WAIT => dialogue::<PairWaitParams>(&params, |_| Ok(())),
        method::PAIR_REDEEM => dialogue::<PairRedeemParams>(&params, PairRedeemParams::check_lengths),
        method::PAIR_PIN => dialogue::<PairPinParams>(&params, |p| p.device.check_lengths()),
        method::PAIR_PIN_CONFIRM => dialogue::<PairPinConfirmParams>(&params, |_| Ok(())),
        _ => {}
    }

    for scopes in [&[][..], &[Scope::Chat], &[Scope::Voice], &Scope::ALL] {
        if let Err(e) = bridge::acl::check_node_call(name, &params, scopes) {
            assert!(matches!(e.code, ErrorCode::Forbidden | ErrorCode::InvalidRequest), "{e:?}");
        }
    }

    match gateway::fuzzing::method(name, params) {
        Ok(parsed) => assert_eq!(parsed, name),
        Err(e) if e.code == ErrorCode::UnknownMethod => {
            let supported = &e.details.as_ref().expect("an unknown method lists the known ones")["supported"];
            assert!(!supported.as_array().expect("a list").iter().any(|known| known == name), "{name}");
        }
        Err(e) => assert!(matches!(e.code, ErrorCode::InvalidRequest | ErrorCode::PayloadTooLarge), "{e:?}"),
    }
});

/// What the bridge's dialogue does with a stranger's params: read them, then check their lengths.
fn dialogue<T: Serialize + DeserializeOwned + PartialEq + Debug>(
    params: &Value,
    check: impl Fn(&T) -> Result<(), ErrorShape>,
) {
    if let Ok(parsed) = T::deserialize(params) {
        common::assert_round_trip(&parsed);
        if let Err(e) = check(&parsed) {
            assert_eq!(e.code, ErrorCode::InvalidRequest);
        }
    }
}
