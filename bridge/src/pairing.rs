//! The pairing dialogue with a node whose key is not paired. Door 1 is a small state machine per
//! connection: `pair.request` (the node commits to its nonce; the bridge answers with its own), then
//! `pair.confirm` (the node reveals its nonce; the bridge computes the SAS and files the request with the
//! gateway), then `pair.wait` (answered when the owner decides). Door 2 is one call, `pair.redeem`, with
//! the one-time code of a connection string, passed to the gateway with the key TLS proved. Door 3 is
//! `pair.pin` then `pair.pin.confirm`, only on a stream the relay admitted with a remote code's routing
//! token: the bridge adds the two keys TLS showed it and that token's hash, and the gateway runs the
//! SPAKE2 side of the computer. Nothing else is allowed: every other method is `NOT_PAIRED`.
//!
//! A stranger's connection is cheap by construction: frames are held to the unpaired limit, each step must
//! come within the step timeout unless the node is waiting for the owner, and the whole dialogue ends
//! after the unpaired lifetime.

use crate::gateway_link;
use crate::node_side::NodeSide;
use crate::shared::BridgeShared;
use crate::source::Source;
use certs::KeyId;
use node_kit::Client;
use node_kit::connection::Incoming;
use node_kit::outbound::WriterTask;
use node_kit::protocol::{
    ErrorCode, ErrorFrame, ErrorShape, Frame, PairChallenge, PairConfirmParams, PairPinConfirmParams,
    PairPinConfirmSubmit, PairPinParams, PairPinSubmit, PairRedeemParams, PairRedeemSubmit, PairRequestParams,
    PairSubmitParams, PairTicket, PairWaitParams, Request, method, nonce_commitment, pairing_nonce, sas,
};
use serde_json::Value;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// What an unpaired node may call.
pub(crate) const METHODS: &[&str] = &[
    method::PAIR_REQUEST,
    method::PAIR_CONFIRM,
    method::PAIR_WAIT,
    method::PAIR_REDEEM,
    method::PAIR_PIN,
    method::PAIR_PIN_CONFIRM,
];

/// Where the dialogue is. Each step is only possible from the one before it.
enum Stage {
    Start,
    Challenged { request: PairRequestParams, bridge_nonce: String },
    Filed { request_id: String, gateway: Client },
}

pub(crate) async fn run(node: NodeSide, shared: Arc<BridgeShared>) {
    let NodeSide { mut reader, writer, mut keepalive, node_id, source, admission } = node;
    // Answers go through a queue: the owner's decision is sent by a task of its own.
    let writer = WriterTask::spawn(writer, shared.config.outbound_queue);
    let out = writer.outbound.clone();
    let send_error = |error| {
        out.send(Frame::Error(ErrorFrame { error }));
    };
    let mut stage = Stage::Start;
    let mut waiting: Option<JoinHandle<()>> = None;
    let lifetime = tokio::time::sleep(shared.config.unpaired_lifetime);
    let step_timer = tokio::time::sleep(shared.config.pairing_step_timeout);
    tokio::pin!(lifetime, step_timer);
    let close = loop {
        // Waiting for the owner is the one step with no step timeout; the lifetime still bounds it.
        let owner_deciding = waiting.as_ref().is_some_and(|task| !task.is_finished());
        tokio::select! {
            incoming = reader.next() => {
                keepalive.heard();
                match incoming {
                    Incoming::Frame(Frame::Req(req)) => {
                        step_timer.as_mut().reset(tokio::time::Instant::now() + shared.config.pairing_step_timeout);
                        let id = req.id.clone();
                        match step(&shared, (node_id, source), &mut stage, req).await {
                            Ok(Step::Answer(payload)) => { out.send(Frame::ok(id, payload)); }
                            Ok(Step::Wait { request_id, gateway }) => {
                                if let Some(previous) = waiting.take() {
                                    previous.abort();
                                }
                                waiting = Some(tokio::spawn(wait_for_owner(gateway, request_id, id, out.clone())));
                            }
                            Err(e) => { out.send(Frame::err(id, e)); }
                        }
                    }
                    Incoming::Frame(other) => {
                        send_error(ErrorShape::invalid_request(format!("unexpected {:?} frame", other.kind())));
                    }
                    Incoming::Invalid(e) => send_error(e.error),
                    Incoming::TooLarge(e) => {
                        send_error(e);
                        break Some((CloseCode::Size, "frame too large"));
                    }
                    Incoming::Heartbeat => {}
                    // Closing flushes the Close that answers the node's (RFC 6455 §5.5.1).
                    Incoming::Closed(_) => break Some((CloseCode::Normal, "closed by the node")),
                }
            }
            alive = keepalive.tick() => {
                if !alive {
                    break Some((CloseCode::Away, "keepalive timeout"));
                }
                out.ping();
            }
            () = &mut step_timer, if !owner_deciding => break Some((CloseCode::Policy, "pairing step timed out")),
            () = &mut lifetime => break Some((CloseCode::Policy, "pairing took too long")),
            () = out.closed().cancelled() => break None,
            () = admission.stopped() => break Some(admission.close_reason()),
        }
    };
    if let Some(task) = waiting {
        task.abort();
    }
    writer.finish(close).await;
}

enum Step {
    Answer(Value),
    /// `pair.wait`: answered later, by a task, when the owner decides.
    Wait {
        request_id: String,
        gateway: Client,
    },
}

/// One request of the dialogue from the node `node_id` at `source`.
async fn step(
    shared: &BridgeShared,
    (node_id, source): (KeyId, Source),
    stage: &mut Stage,
    req: Request,
) -> Result<Step, ErrorShape> {
    match req.method.as_str() {
        method::PAIR_REQUEST => {
            shared.limiter.pairing_request(source)?;
            let request: PairRequestParams = params(&req)?;
            check_request(&request)?;
            let bridge_nonce = pairing_nonce();
            let answer = PairChallenge { bridge_nonce: bridge_nonce.clone() };
            *stage = Stage::Challenged { request, bridge_nonce };
            Ok(Step::Answer(serde_json::to_value(answer).expect("challenges serialise")))
        }
        method::PAIR_CONFIRM => {
            let Stage::Challenged { request, bridge_nonce } = std::mem::replace(stage, Stage::Start) else {
                return Err(ErrorShape::invalid_request("pair.confirm comes after pair.request"));
            };
            let confirm: PairConfirmParams = params(&req)?;
            if nonce_commitment(&confirm.nonce) != request.nonce_commitment {
                return Err(ErrorShape::invalid_request("the nonce does not match the commitment; start again"));
            }
            let sas = sas(&shared.bridge_id, &node_id, &bridge_nonce, &confirm.nonce);
            let submit = PairSubmitParams {
                node_id,
                device: request.device,
                scopes: request.scopes,
                address: source.to_string(),
                sas,
            };
            let gateway = gateway_link::bridge_client(&shared.config).await?;
            let ticket = gateway
                .request(method::PAIR_SUBMIT, serde_json::to_value(submit).expect("params serialise"))
                .await
                .map_err(gateway_link::refusal)?;
            let ticket: PairTicket = serde_json::from_value(ticket)
                .map_err(|e| ErrorShape::new(ErrorCode::Internal, format!("unreadable pair.submit answer: {e}")))?;
            *stage = Stage::Filed { request_id: ticket.request_id.clone(), gateway };
            Ok(Step::Answer(serde_json::to_value(ticket).expect("tickets serialise")))
        }
        method::PAIR_REDEEM => {
            shared.limiter.pairing_code(source)?;
            let redeem: PairRedeemParams = params(&req)?;
            redeem.check_lengths()?;
            check_scopes(&redeem.scopes)?;
            let submit = PairRedeemSubmit { node_id, address: source.to_string(), redeem };
            forward(shared, method::PAIR_REDEEM, submit).await.map(Step::Answer)
        }
        method::PAIR_PIN => pin_start(shared, Some(node_id), source, params(&req)?).await.map(Step::Answer),
        method::PAIR_PIN_CONFIRM => {
            let PairPinConfirmParams { confirmation } = params(&req)?;
            pin_confirm(shared, Some(node_id), source, confirmation).await.map(Step::Answer)
        }
        method::PAIR_WAIT => match stage {
            Stage::Filed { request_id, gateway } => {
                Ok(Step::Wait { request_id: request_id.clone(), gateway: gateway.clone() })
            }
            _ => Err(ErrorShape::invalid_request("pair.wait comes after pair.confirm")),
        },
        other => Err(ErrorShape::new(
            ErrorCode::NotPaired,
            format!("this device is not paired with this computer, so it may not call {other}; pair first"),
        )
        .with_details(serde_json::json!({ "allowed": METHODS }))),
    }
}

/// The longest base64url field of door 3 (SPAKE2 messages are 33 bytes, confirmations 32).
const MAX_PIN_FIELD: usize = 128;

/// Door 3's first step on the relayed stream from `source`, whichever way the device speaks: `node_id` is
/// the key it showed in TLS, or none for a keyless client of the sealed HTTP contract (whose ID the
/// exchange makes). Answers the computer's SPAKE2 message and confirmation.
pub(crate) async fn pin_start(
    shared: &BridgeShared,
    node_id: Option<KeyId>,
    source: Source,
    pin: PairPinParams,
) -> Result<Value, ErrorShape> {
    let routing_hash = relayed(source)?;
    shared.limiter.pairing_code(source)?;
    pin.device.check_lengths()?;
    check_scopes(&pin.scopes)?;
    if pin.message.len() > MAX_PIN_FIELD {
        return Err(ErrorShape::invalid_request("message is too long"));
    }
    forward(shared, method::PAIR_PIN, PairPinSubmit { node_id, bridge_id: shared.bridge_id, routing_hash, pin }).await
}

/// Door 3's last step: the device's confirmation; a keyless client also gets its seal key kept.
pub(crate) async fn pin_confirm(
    shared: &BridgeShared,
    node_id: Option<KeyId>,
    source: Source,
    confirmation: String,
) -> Result<Value, ErrorShape> {
    let routing_hash = relayed(source)?;
    if confirmation.len() > MAX_PIN_FIELD {
        return Err(ErrorShape::invalid_request("confirmation is too long"));
    }
    forward(shared, method::PAIR_PIN_CONFIRM, PairPinConfirmSubmit { node_id, routing_hash, confirmation }).await
}

/// Door 3 runs only on a relayed stream: the routing token it came in with names the code.
fn relayed(source: Source) -> Result<String, ErrorShape> {
    source.relay_hash_hex().ok_or_else(|| {
        ErrorShape::invalid_request(
            "PIN pairing is for devices away from home, through the relay; on this network pair with `lanyard \
             pair` (QR code) or by asking",
        )
    })
}

/// One call passed to the gateway as is, its answer back to the node.
pub(crate) async fn forward(
    shared: &BridgeShared,
    method: &str,
    params: impl serde::Serialize,
) -> Result<Value, ErrorShape> {
    let gateway = gateway_link::bridge_client(&shared.config).await?;
    let params = serde_json::to_value(params).expect("params serialise");
    gateway.request(method, params).await.map_err(gateway_link::refusal)
}

async fn wait_for_owner(gateway: Client, request_id: String, answer_id: String, out: node_kit::outbound::Outbound) {
    let params = serde_json::to_value(PairWaitParams { request_id: Some(request_id) }).expect("params serialise");
    let outcome = gateway.request(method::PAIR_WAIT, params).await.map_err(gateway_link::refusal);
    out.send(match outcome {
        Ok(resolution) => Frame::ok(answer_id, resolution),
        Err(e) => Frame::err(answer_id, e),
    });
}

fn check_request(request: &PairRequestParams) -> Result<(), ErrorShape> {
    request.device.check_lengths()?;
    check_scopes(&request.scopes)?;
    let commitment = &request.nonce_commitment;
    if commitment.len() != 64 || !commitment.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(ErrorShape::invalid_request("nonceCommitment must be 64 lower-case hex characters"));
    }
    Ok(())
}

fn check_scopes(scopes: &[node_kit::protocol::Scope]) -> Result<(), ErrorShape> {
    if scopes.is_empty() {
        return Err(ErrorShape::invalid_request("ask for at least one scope (chat, voice)"));
    }
    Ok(())
}

fn params<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, ErrorShape> {
    T::deserialize(&req.params)
        .map_err(|e| ErrorShape::invalid_request(format!("invalid params for {}: {e}", req.method)))
}
