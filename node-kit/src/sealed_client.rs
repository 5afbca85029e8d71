//! A client of the sealed HTTP contract (`docs/protocol.md` §20), for programs with no TLS stack of their
//! own to spare: it pairs by PIN over two HTTPS calls to the relay and then sends sealed command envelopes,
//! reading the answer as sealed Server-Sent Events. It is also the reference for writing one in another
//! language: everything it does is in the contract.

use crate::connection_string::RelayInvite;
use crate::pin::{NodePin, PinError};
use crate::protocol::{
    AgentParams, AttachParams, CancelParams, CancelResult, DeviceInfo, HistoryPage, HistoryParams, PairPinChallenge,
    PairPinConfirmParams, PairPinParams, PendingPrompts, PushKey, PushSubscribeParams, RespondParams, RespondResult,
    Scope, SessionList, method,
};
use crate::seal::{
    ChatFrame, ChatPayload, CommandError, Direction, ENVELOPE_VERSION, Envelope, Paired, SealKey, SealedBody,
    SealedHello, command,
};
use certs::KeyId;
use futures_util::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::time::Duration;

/// The header that names the bridge on the relay's HTTP routes.
pub const BRIDGE_HEADER: &str = "Lanyard-Bridge";
/// How long a call waits for the answer's head (a streamed answer then takes as long as the turn).
const HEAD_WITHIN: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum SealedError {
    /// The relay says the computer is not connected to it (asleep, offline, or its bridge stopped).
    #[error("the computer is offline (its bridge is not connected to the relay)")]
    BridgeOffline,
    /// A refusal in clear: the relay's, or the computer's before it opened the body (`replayed`,
    /// `unreadable`, `pairing_pin_wrong`, …).
    #[error("refused with {status}: {error} ({message})")]
    Refused { status: u16, error: String, message: String, details: Option<Value> },
    /// The computer opened the envelope and does not know its command.
    #[error("the computer does not know the command {command:?}; it supports {supported:?}")]
    UnknownCommand { command: String, supported: Vec<String> },
    /// The computer opened the envelope and refused it (a sealed error).
    #[error("the computer refused the command with {status}: {}", .error.error)]
    Command { status: u16, error: Box<CommandError> },
    /// The PIN exchange failed on this side: a wrong PIN, or the answer was not the computer's.
    #[error(transparent)]
    Pin(#[from] PinError),
    /// An answer did not open under the pairing's key, or came out of order: not the computer's.
    #[error("an answer did not open under this pairing's key: it was not the computer's")]
    Tampered,
    #[error("cannot reach the relay: {0}")]
    Transport(String),
    #[error("the answer does not follow the contract: {0}")]
    Protocol(String),
}

/// What a client keeps after pairing, to chat later (keep it secret: the token and key are its
/// credentials).
pub struct SealedClient {
    http: reqwest::Client,
    relay_url: String,
    bridge_id: KeyId,
    paired: Paired,
    key: SealKey,
    /// The last counter used; the next body is sealed with the one after.
    counter: u64,
}

impl std::fmt::Debug for SealedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealedClient({}, {})", self.relay_url, self.paired.node_id)
    }
}

fn http_client() -> Result<reqwest::Client, SealedError> {
    reqwest::Client::builder()
        .use_preconfigured_tls(crate::relay::web_tls_config())
        .connect_timeout(HEAD_WITHIN)
        .build()
        .map_err(|e| SealedError::Transport(e.to_string()))
}

fn b64(bytes: &[u8]) -> String {
    data_encoding::BASE64URL_NOPAD.encode(bytes)
}

fn unb64(text: &str) -> Result<Vec<u8>, SealedError> {
    data_encoding::BASE64URL_NOPAD.decode(text.as_bytes()).map_err(|_| SealedError::Protocol("not base64url".into()))
}

impl SealedClient {
    /// Pairs with the invite's computer by its PIN. `device.name` is only a label: the ID this client is
    /// paired under comes out of the exchange, new for every pairing.
    pub async fn pair(
        invite: &RelayInvite,
        pin: &str,
        device: DeviceInfo,
        scopes: Vec<Scope>,
    ) -> Result<SealedClient, SealedError> {
        let http = http_client()?;
        let (side_a, message) = NodePin::start(pin, None, &invite.bridge_id)?;
        let start = PairPinParams { message: b64(&message), device, scopes };
        let call = |route| Call { http: &http, relay_url: &invite.relay_url, bridge_id: &invite.bridge_id, route };
        let challenge: PairPinChallenge = call("pair/start").json(&invite.routing, &start).await?;
        let keys = side_a.finish(&unb64(&challenge.message)?, &unb64(&challenge.confirmation)?)?;
        let confirm = PairPinConfirmParams { confirmation: b64(&keys.node_confirmation()) };
        let answer: SealedBody = call("pair/confirm").json(&invite.routing, &confirm).await?;
        let key = SealKey::new(keys.seal_key());
        let paired: Paired = serde_json::from_slice(
            &key.open(Direction::ToClient, 0, 0, &answer.sealed).map_err(|_| SealedError::Tampered)?,
        )
        .map_err(|e| SealedError::Protocol(e.to_string()))?;
        // The key the computer names must be the one the invite's bridge ID is the hash of, and the ID it
        // stored this client under the one the exchange gave.
        let bridge_key: [u8; 32] = unb64(&paired.bridge_public_key)?.try_into().map_err(|_| SealedError::Tampered)?;
        if KeyId::of_ed25519(&bridge_key) != invite.bridge_id || paired.node_id != keys.client_id() {
            return Err(SealedError::Tampered);
        }
        let relay_url = paired.relay_url.clone().unwrap_or_else(|| invite.relay_url.clone());
        Ok(SealedClient { http, relay_url, bridge_id: invite.bridge_id, paired, key, counter: 0 })
    }

    /// What the computer answered at pairing: the ID it keeps this client under, its scopes, its key.
    pub fn paired(&self) -> &Paired {
        &self.paired
    }

    /// `ai_chat`: `message` on the conversation `conversation_id`, answered as a stream of frames.
    pub async fn chat(&mut self, conversation_id: &str, message: &str) -> Result<ChatStream, SealedError> {
        let payload = ChatPayload { conversation_id: conversation_id.into(), message: message.into() };
        self.send(&envelope(command::AI_CHAT, payload)).await?.frames()
    }

    /// `agent`: a turn (build it with [`AgentParams::new`]), its run streamed as frames. Reading stops the
    /// stream, not the turn: follow it again with [`SealedClient::attach`].
    pub async fn agent(&mut self, params: AgentParams) -> Result<ChatStream, SealedError> {
        self.send(&envelope(command::AGENT, params)).await?.frames()
    }

    /// `agent.attach`: a run again, from after the event `after_seq` ([`ChatStream::last_seq`]): the
    /// prompts still open first, then every later event once, in order, then the outcome.
    pub async fn attach(&mut self, params: AttachParams) -> Result<ChatStream, SealedError> {
        let after_seq = params.after_seq;
        let mut frames = self.send(&envelope(command::AGENT_ATTACH, params)).await?.frames()?;
        frames.last_seq = after_seq;
        Ok(frames)
    }

    /// `agent.respond`: answers a permission prompt, a question or a plan ([`RespondParams::new`]).
    pub async fn respond(&mut self, params: RespondParams) -> Result<RespondResult, SealedError> {
        self.typed(method::AGENT_RESPOND, params).await
    }

    /// `agent.cancel`: stops the run `run_id` (claude's interrupt), or drops it from the queue.
    pub async fn cancel(&mut self, run_id: &str) -> Result<CancelResult, SealedError> {
        self.typed(method::AGENT_CANCEL, CancelParams { run_id: run_id.into() }).await
    }

    /// `agent.pending`: the prompts of this client's conversations that wait for an answer.
    pub async fn pending(&mut self) -> Result<PendingPrompts, SealedError> {
        self.typed(method::AGENT_PENDING, serde_json::json!({})).await
    }

    /// `agent.sessions`: this client's conversations, latest activity first.
    pub async fn sessions(&mut self) -> Result<SessionList, SealedError> {
        self.typed(method::AGENT_SESSIONS, serde_json::json!({})).await
    }

    /// `agent.history`: one of this client's conversations, a page at a time.
    pub async fn history(&mut self, params: HistoryParams) -> Result<HistoryPage, SealedError> {
        self.typed(method::AGENT_HISTORY, params).await
    }

    /// `hello`: the computer's ID and name, this client's ID, name and scopes, the commands there are.
    pub async fn hello(&mut self) -> Result<SealedHello, SealedError> {
        self.typed(command::HELLO, serde_json::json!({})).await
    }

    /// `push.key`: the computer's VAPID public key, and whether this client has a push subscription.
    pub async fn push_key(&mut self) -> Result<PushKey, SealedError> {
        self.typed(method::PUSH_KEY, serde_json::json!({})).await
    }

    /// `push.subscribe`: this client's browser push subscription (the computer then pushes to it).
    pub async fn push_subscribe(&mut self, params: PushSubscribeParams) -> Result<(), SealedError> {
        self.call(method::PUSH_SUBSCRIBE, serde_json::to_value(params).expect("params serialise")).await.map(drop)
    }

    /// `push.unsubscribe`: forgets this client's push subscription.
    pub async fn push_unsubscribe(&mut self) -> Result<(), SealedError> {
        self.call(method::PUSH_UNSUBSCRIBE, serde_json::json!({})).await.map(drop)
    }

    /// Any command answered with one value, its answer as it is.
    pub async fn call(&mut self, command: &str, payload: Value) -> Result<Value, SealedError> {
        self.send(&envelope(command, payload)).await?.value()
    }

    async fn typed<T: DeserializeOwned>(&mut self, command: &str, payload: impl Serialize) -> Result<T, SealedError> {
        let value = self.send(&envelope(command, payload)).await?.value()?;
        serde_json::from_value(value).map_err(|e| SealedError::Protocol(format!("unreadable {command} answer: {e}")))
    }

    /// Sends any envelope (a command this build does not know of, say) and reads its answer.
    pub async fn send(&mut self, envelope: &Envelope) -> Result<Answer, SealedError> {
        let body = self.seal(envelope);
        self.post(&body).await
    }

    /// Seals `envelope` under the next counter: the body as it goes on the wire.
    pub fn seal(&mut self, envelope: &Envelope) -> Vec<u8> {
        self.counter += 1;
        let sealed = self.key.seal_json(Direction::ToBridge, self.counter, 0, envelope);
        serde_json::to_vec(&SealedBody { counter: Some(self.counter), sealed }).expect("bodies serialise")
    }

    /// Posts a sealed body as it is (a test replays one this way).
    pub async fn post(&self, body: &[u8]) -> Result<Answer, SealedError> {
        let counter = serde_json::from_slice::<SealedBody>(body)
            .ok()
            .and_then(|b| b.counter)
            .ok_or_else(|| SealedError::Protocol("not a sealed body with a counter".into()))?;
        let call = Call { http: &self.http, relay_url: &self.relay_url, bridge_id: &self.bridge_id, route: "chat" };
        let response = call.post(&self.paired.token, body.to_vec()).await?;
        let status = response.status().as_u16();
        let key = self.key.clone();
        let streamed = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(b"text/event-stream"));
        if status == 200 && streamed {
            return Ok(Answer::Frames(ChatStream {
                response: Box::pin(response.bytes_stream().map(|chunk| chunk.map(|bytes| bytes.to_vec()))),
                buffer: Vec::new(),
                key,
                counter,
                index: 0,
                last_seq: 0,
            }));
        }
        let bytes = response.bytes().await.map_err(|e| SealedError::Transport(e.to_string()))?;
        // After opening the envelope the computer seals its answers and errors; before, errors are in clear.
        match serde_json::from_slice::<SealedBody>(&bytes) {
            Ok(sealed) => {
                let opened =
                    key.open(Direction::ToClient, counter, 0, &sealed.sealed).map_err(|_| SealedError::Tampered)?;
                if status == 200 {
                    return serde_json::from_slice(&opened)
                        .map(Answer::Value)
                        .map_err(|e| SealedError::Protocol(e.to_string()));
                }
                let error: CommandError =
                    serde_json::from_slice(&opened).map_err(|e| SealedError::Protocol(e.to_string()))?;
                Err(match (error.error.as_str(), &error.command) {
                    ("unknown_command", Some(command)) => {
                        SealedError::UnknownCommand { command: command.clone(), supported: error.supported }
                    }
                    _ => SealedError::Command { status, error: Box::new(error) },
                })
            }
            Err(_) => Err(refused(status, &bytes)),
        }
    }
}

/// The envelope of `command` with `payload`.
fn envelope(command: &str, payload: impl Serialize) -> Envelope {
    Envelope {
        command: command.into(),
        version: ENVELOPE_VERSION,
        payload: serde_json::to_value(payload).expect("payloads serialise"),
    }
}

/// What the computer answered a body: a stream of sealed frames, or one sealed value.
#[derive(Debug)]
pub enum Answer {
    Frames(ChatStream),
    Value(Value),
}

impl Answer {
    /// The frames of a streamed answer.
    pub fn frames(self) -> Result<ChatStream, SealedError> {
        match self {
            Answer::Frames(frames) => Ok(frames),
            Answer::Value(_) => Err(SealedError::Protocol("one value where a stream of frames was due".into())),
        }
    }

    /// The value of a one-value answer.
    pub fn value(self) -> Result<Value, SealedError> {
        match self {
            Answer::Value(value) => Ok(value),
            Answer::Frames(_) => Err(SealedError::Protocol("a stream of frames where one value was due".into())),
        }
    }
}

/// One POST to a route of the relay.
struct Call<'a> {
    http: &'a reqwest::Client,
    relay_url: &'a str,
    bridge_id: &'a KeyId,
    route: &'a str,
}

impl Call<'_> {
    async fn post(&self, token: &str, body: Vec<u8>) -> Result<reqwest::Response, SealedError> {
        let url = format!("{}/v1/{}", self.relay_url.trim_end_matches('/'), self.route);
        let sent = self
            .http
            .post(url)
            .header(BRIDGE_HEADER, self.bridge_id.to_string())
            .bearer_auth(token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send();
        tokio::time::timeout(HEAD_WITHIN, sent)
            .await
            .map_err(|_| SealedError::Transport("no answer in time".into()))?
            .map_err(|e| SealedError::Transport(e.to_string()))
    }

    /// A JSON call answered with JSON.
    async fn json<T: DeserializeOwned>(&self, token: &str, body: &impl Serialize) -> Result<T, SealedError> {
        let response = self.post(token, serde_json::to_vec(body).expect("bodies serialise")).await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(|e| SealedError::Transport(e.to_string()))?;
        if status != 200 {
            return Err(refused(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| SealedError::Protocol(e.to_string()))
    }
}

/// A refusal in clear: `{"error", "message", "details"}`.
fn refused(status: u16, body: &[u8]) -> SealedError {
    let value: Value = serde_json::from_slice(body).unwrap_or_default();
    let text = |field: &str| value.get(field).and_then(Value::as_str).unwrap_or_default().to_string();
    let error = text("error");
    if status == 503 && error == "bridge_offline" {
        return SealedError::BridgeOffline;
    }
    SealedError::Refused { status, error, message: text("message"), details: value.get("details").cloned() }
}

type ByteStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<Vec<u8>>> + Send>>;

/// The sealed SSE answer of one command, frame by frame.
pub struct ChatStream {
    response: ByteStream,
    buffer: Vec<u8>,
    key: SealKey,
    counter: u64,
    index: u64,
    last_seq: u64,
}

impl std::fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChatStream(counter {}, frame {})", self.counter, self.index)
    }
}

impl ChatStream {
    /// The next frame; `None` once the answer has ended.
    pub async fn next(&mut self) -> Option<Result<ChatFrame, SealedError>> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&event);
                let Some(data) = text.lines().find_map(|line| line.strip_prefix("data: ")) else { continue };
                let opened = self.key.open(Direction::ToClient, self.counter, self.index, data.trim());
                self.index += 1;
                let frame = opened
                    .map_err(|_| SealedError::Tampered)
                    .and_then(|plain| serde_json::from_slice(&plain).map_err(|e| SealedError::Protocol(e.to_string())));
                if let Ok(ChatFrame::Agent { event }) = &frame {
                    self.last_seq = self.last_seq.max(event.seq);
                }
                return Some(frame);
            }
            match self.response.next().await {
                Some(Ok(bytes)) => self.buffer.extend_from_slice(&bytes),
                Some(Err(e)) => return Some(Err(SealedError::Transport(e.to_string()))),
                None if self.buffer.iter().all(u8::is_ascii_whitespace) => return None,
                None => return Some(Err(SealedError::Protocol("the answer ended inside an event".into()))),
            }
        }
    }

    /// The sequence number of the latest event read: what to attach after when the stream is cut.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Reads to the end: every frame in order.
    pub async fn collect(mut self) -> Result<Vec<ChatFrame>, SealedError> {
        let mut frames = Vec::new();
        while let Some(frame) = self.next().await {
            frames.push(frame?);
        }
        Ok(frames)
    }
}
