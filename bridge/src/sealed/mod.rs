//! The sealed HTTP contract for simple clients (`docs/protocol.md` §20), served on HTTP exchanges the relay
//! opens. Pairing is door 3 again (the same `pair.pin` steps as on a TLS stream; the client has no key,
//! so its ID comes out of the exchange); a chat body is opened once by the gateway (`seal.open`), and its
//! envelope's command runs as the paired client, through the same ACL and limits as a node's call.
//!
//! One module per route and per command that has logic of its own: [`pair`] (`/v1/pair/start`,
//! `/v1/pair/confirm`), [`chat`] (the envelope and its dispatcher), [`agent`] (the streams of `agent`
//! and `agent.attach`), [`ai_chat`], [`hello`], and [`unary`] for every command that is a gateway
//! method answered with one value; [`caller`] is the client as the gateway sees it, and [`reply`] writes
//! what goes back.

mod agent;
mod ai_chat;
mod caller;
mod chat;
mod hello;
mod pair;
mod reply;
mod unary;

pub(crate) use caller::SealedLinks;

use crate::shared::BridgeShared;
use crate::source::Source;
use reply::Reply;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_tungstenite::tungstenite::Bytes;

/// Exchanges served at once: each may hold a gateway link and a running turn for as long as it streams.
pub(crate) const MAX_EXCHANGES: usize = 16;
/// How long the relay may take to pass the request body after opening the exchange.
const BODY_WITHIN: Duration = Duration::from_secs(10);

/// The routes, as the relay names them when it opens an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) enum Route {
    #[serde(rename = "pair/start")]
    PairStart,
    #[serde(rename = "pair/confirm")]
    PairConfirm,
    #[serde(rename = "chat")]
    Chat,
    /// A route of a newer relay: answered 404, the link stays up.
    #[serde(other)]
    Unknown,
}

/// One HTTP request through the relay: its body comes on `request` (which closes when the client goes
/// away), and what is sent on `response` (the head, then the body) goes back; dropping it ends the answer.
pub(crate) struct Exchange {
    pub source: Source,
    pub request: mpsc::Receiver<Bytes>,
    pub response: mpsc::Sender<Vec<u8>>,
}

/// Serves one exchange to its end; `_permit` is its place among [`MAX_EXCHANGES`].
pub(crate) async fn serve(route: Route, exchange: Exchange, shared: Arc<BridgeShared>, _permit: OwnedSemaphorePermit) {
    let Exchange { source, mut request, response } = exchange;
    let Ok(Some(body)) = tokio::time::timeout(BODY_WITHIN, request.recv()).await else {
        tracing::debug!(%source, "an HTTP exchange brought no body");
        return;
    };
    let reply = Reply::new(response);
    match route {
        Route::PairStart => reply.answer(pair::start(&shared, source, &body).await).await,
        Route::PairConfirm => reply.answer(pair::confirm(&shared, source, &body).await).await,
        Route::Chat => chat::serve(&shared, source, &body, &mut request, reply).await,
        Route::Unknown => reply.refuse(404, "not_found", "no such route on this bridge").await,
    }
}

/// A JSON body, or `INVALID_REQUEST` saying why not.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, node_kit::ErrorShape> {
    serde_json::from_slice(body).map_err(|e| node_kit::ErrorShape::invalid_request(format!("unreadable body: {e}")))
}
