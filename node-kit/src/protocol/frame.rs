//! Frames: the unit on the wire. Every WebSocket text message is exactly one frame, tagged by `type`.

use super::error::ErrorShape;
use super::limits::{
    MAX_ADVERTISED, MAX_ADVERTISED_LEN, MAX_ID_LEN, MAX_NAME_LEN, MAX_PLATFORM_LEN, MAX_TOKEN_LEN, MAX_VERSION_LEN,
    check_len,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One protocol frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Frame {
    /// Client → server, first frame of every connection.
    Connect(ConnectParams),
    /// Server → client, the answer to a good `connect`.
    HelloOk(Box<HelloOk>),
    /// A request, in either direction (the gateway sends `node.invoke` requests to nodes).
    Req(Request),
    /// The answer to a `req`, matched by `id`. `agent` is answered twice: an ack, then the outcome.
    Res(Response),
    /// A server event with a per-connection sequence number.
    Event(EventFrame),
    /// A connection-level error that belongs to no request (bad `connect`, unreadable frame).
    Error(ErrorFrame),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectParams {
    pub min_protocol: u32,
    pub max_protocol: u32,
    pub client: ClientInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<Auth>,
    /// Present when `client.mode` is `node`: what the node can do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeAdvert>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientInfo {
    /// Stable per installation. For a node it is its key ID: the bridge sets it from the node's TLS key
    /// (whatever the node sent), and the gateway accepts it only from the bridge.
    pub instance_id: String,
    pub mode: ClientMode,
    pub platform: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// How the bridge reached the node: set by the bridge on a node's link, ignored from anyone else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<LinkPath>,
}

/// Which way a node's connection goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkPath {
    /// Straight to the bridge over the local network.
    Lan,
    /// Through the owner's relay.
    Relay,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientMode {
    /// A person's tool (the CLI, an admin page): calls methods, receives events.
    Operator,
    /// A device that offers commands (`screen.*`) and may call the agent.
    Node,
    /// The LAN bridge relaying for paired nodes.
    Bridge,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Auth {
    pub token: String,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Auth { token: <redacted> }")
    }
}

/// The capabilities and commands a node offers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeAdvert {
    /// Capability names, e.g. `screen`.
    #[serde(default)]
    pub caps: Vec<String>,
    /// Command names the node answers, e.g. `screen.snapshot`.
    #[serde(default)]
    pub commands: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloOk {
    /// The negotiated protocol version.
    pub protocol: u32,
    pub server: ServerInfo,
    pub methods: Vec<String>,
    pub events: Vec<String>,
    pub limits: Limits,
    /// On a node's connection: the node's pairing record (its ID and granted scopes). Absent for a node
    /// that is not paired yet, which may only call the `pair.*` methods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paired: Option<super::PairedNode>,
    /// On a paired node's connection: the relay URL when the owner turned the tunnel on, so the node can
    /// fetch a routing token (`tunnel.token`) while it is home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    pub name: String,
    pub version: String,
    /// This connection's ID on the server, for logs on both sides.
    pub connection_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    pub max_frame_bytes: usize,
    /// Requests a connection may have running at once.
    pub max_in_flight: usize,
    pub handshake_timeout_ms: u64,
    /// The server pings this often; a peer silent for two intervals is closed.
    pub keepalive_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    pub method: String,
    #[serde(default)]
    pub params: Value,
}

/// The answer to a request: `{id, ok: true, payload}` or `{id, ok: false, error}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawResponse", into = "RawResponse")]
pub struct Response {
    pub id: String,
    pub outcome: Result<Value, ErrorShape>,
}

#[derive(Serialize, Deserialize)]
struct RawResponse {
    id: String,
    ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    payload: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<ErrorShape>,
}

impl TryFrom<RawResponse> for Response {
    type Error = String;
    fn try_from(raw: RawResponse) -> Result<Self, String> {
        let outcome = match (raw.ok, raw.payload, raw.error) {
            (true, payload, None) => Ok(payload.unwrap_or(Value::Null)),
            (false, None, Some(error)) => Err(error),
            (true, _, Some(_)) => return Err("a res with ok: true must not carry error".into()),
            (false, _, _) => {
                return Err("a res with ok: false must carry error and no payload".into());
            }
        };
        Ok(Response { id: raw.id, outcome })
    }
}

impl From<Response> for RawResponse {
    fn from(res: Response) -> Self {
        match res.outcome {
            Ok(payload) => RawResponse { id: res.id, ok: true, payload: Some(payload), error: None },
            Err(error) => RawResponse { id: res.id, ok: false, payload: None, error: Some(error) },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventFrame {
    pub event: String,
    pub payload: Value,
    /// Starts at 1 on every connection and grows by one per event sent on it, so a gap means loss.
    pub seq: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorFrame {
    pub error: ErrorShape,
}

/// What a relay needs of a frame from the gateway before passing it on as it arrived: its type and, for a
/// request, its id, method and command name. Reading only these skips building the payload, which the relay
/// never looks at.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FrameHead {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    params: Option<ParamsHead>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct ParamsHead {
    #[serde(default)]
    command: Option<String>,
}

impl FrameHead {
    pub fn parse(text: &str) -> Result<FrameHead, FrameError> {
        serde_json::from_str(text).map_err(|e| FrameError::explain(text, e))
    }

    /// `params.command` of a request (`node.invoke`'s command name).
    pub fn command(&self) -> Option<&str> {
        self.params.as_ref().and_then(|p| p.command.as_deref())
    }
}

/// Why a text could not be read as a frame. `request_id` is set when the text was a `req` whose `id`
/// could be read, so the answer can be a `res` for that request rather than a connection-level error.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    pub request_id: Option<String>,
    pub error: ErrorShape,
}

fn valid_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN
}

fn bad_id_message() -> String {
    format!("a req needs an \"id\" string of 1 to {MAX_ID_LEN} characters")
}

impl FrameError {
    fn invalid(request_id: Option<String>, message: String) -> FrameError {
        FrameError { request_id, error: ErrorShape::invalid_request(message) }
    }

    /// Why `text` is not a frame, keeping the request id when the text was a `req` with a readable one, so
    /// the answer can be a `res` for that request.
    fn explain(text: &str, typed_error: serde_json::Error) -> FrameError {
        let value = match serde_json::from_str::<Value>(text) {
            Ok(value) => value,
            Err(e) => return FrameError::invalid(None, format!("malformed JSON: {e}")),
        };
        let Some(object) = value.as_object() else {
            return FrameError::invalid(None, "a frame must be a JSON object".into());
        };
        match (object.get("type").and_then(Value::as_str), object.get("id")) {
            (Some("req"), Some(Value::String(id))) if valid_request_id(id) => {
                FrameError::invalid(Some(id.clone()), format!("invalid frame: {typed_error}"))
            }
            (Some("req"), _) => FrameError::invalid(None, bad_id_message()),
            _ => FrameError::invalid(None, format!("invalid frame: {typed_error}")),
        }
    }
}

impl Frame {
    /// Parses one text message. Never panics; every failure is an `INVALID_REQUEST` error.
    pub fn parse(text: &str) -> Result<Frame, FrameError> {
        // One typed pass for good frames; only a bad frame is looked at again to say why.
        match serde_json::from_str::<Frame>(text) {
            Ok(Frame::Req(req)) if !valid_request_id(&req.id) => Err(FrameError::invalid(None, bad_id_message())),
            Ok(frame) => Ok(frame),
            Err(e) => Err(FrameError::explain(text, e)),
        }
    }

    /// The frame's `type` on the wire.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Connect(_) => "connect",
            Frame::HelloOk(_) => "hello-ok",
            Frame::Req(_) => "req",
            Frame::Res(_) => "res",
            Frame::Event(_) => "event",
            Frame::Error(_) => "error",
        }
    }

    /// Serialises the frame as one text message.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("frames always serialise")
    }

    pub fn ok(id: impl Into<String>, payload: Value) -> Frame {
        Frame::Res(Response { id: id.into(), outcome: Ok(payload) })
    }

    pub fn err(id: impl Into<String>, error: ErrorShape) -> Frame {
        Frame::Res(Response { id: id.into(), outcome: Err(error) })
    }
}

impl ConnectParams {
    /// The lengths of everything a peer chose in its `connect`.
    pub fn check_lengths(&self) -> Result<(), ErrorShape> {
        let client = &self.client;
        check_len("client.instanceId", &client.instance_id, MAX_ID_LEN)?;
        check_len("client.platform", &client.platform, MAX_PLATFORM_LEN)?;
        check_len("client.version", &client.version, MAX_VERSION_LEN)?;
        if let Some(name) = &client.display_name {
            check_len("client.displayName", name, MAX_NAME_LEN)?;
        }
        if let Some(auth) = &self.auth {
            check_len("auth.token", &auth.token, MAX_TOKEN_LEN)?;
        }
        if let Some(node) = &self.node {
            node.check_lengths()?;
        }
        Ok(())
    }
}

impl NodeAdvert {
    pub fn check_lengths(&self) -> Result<(), ErrorShape> {
        for (field, names) in [("node.caps", &self.caps), ("node.commands", &self.commands)] {
            if names.len() > MAX_ADVERTISED {
                return Err(ErrorShape::invalid_request(format!(
                    "{field} lists {} names; the limit is {MAX_ADVERTISED}",
                    names.len()
                )));
            }
            for name in names {
                check_len(field, name, MAX_ADVERTISED_LEN)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ClientInfo, ClientMode, ErrorCode, PROTOCOL_VERSION};
    use serde_json::json;

    fn connect() -> ConnectParams {
        ConnectParams {
            min_protocol: PROTOCOL_VERSION,
            max_protocol: PROTOCOL_VERSION,
            client: ClientInfo {
                instance_id: "i".into(),
                mode: ClientMode::Node,
                platform: "linux".into(),
                version: "1".into(),
                display_name: Some("n".repeat(MAX_NAME_LEN)),
                path: None,
            },
            auth: None,
            node: Some(NodeAdvert { caps: vec!["screen".into()], commands: vec![] }),
        }
    }

    #[test]
    fn each_connect_string_is_checked_at_its_limit() {
        connect().check_lengths().unwrap();
        type Spoil = fn(&mut ConnectParams);
        let cases: [(&str, Spoil); 5] = [
            ("client.displayName", |c| c.client.display_name = Some("n".repeat(MAX_NAME_LEN + 1))),
            ("client.platform", |c| c.client.platform = "p".repeat(MAX_PLATFORM_LEN + 1)),
            ("client.version", |c| c.client.version = "v".repeat(MAX_VERSION_LEN + 1)),
            ("client.instanceId", |c| c.client.instance_id = "i".repeat(MAX_ID_LEN + 1)),
            ("node.caps", |c| c.node.as_mut().unwrap().caps = vec!["c".repeat(MAX_ADVERTISED_LEN + 1)]),
        ];
        for (field, spoil) in cases {
            let mut params = connect();
            spoil(&mut params);
            let refused = params.check_lengths().unwrap_err();
            assert_eq!(refused.code, ErrorCode::InvalidRequest, "{field}");
            assert_eq!(refused.details.as_ref().unwrap()["field"], field);
        }
        let mut many = connect();
        many.node.as_mut().unwrap().commands = vec!["c".into(); MAX_ADVERTISED + 1];
        assert_eq!(many.check_lengths().unwrap_err().code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn a_head_reads_type_id_method_and_command_only() {
        let text = r#"{"type":"req","id":"7","method":"node.invoke","params":{"nodeId":"n","command":"screen.eval","params":{"javaScript":"1+1"}}}"#;
        let head = FrameHead::parse(text).unwrap();
        assert_eq!(
            (head.kind.as_str(), head.id.as_deref(), head.method.as_deref()),
            ("req", Some("7"), Some("node.invoke"))
        );
        assert_eq!(head.command(), Some("screen.eval"));
        let event = FrameHead::parse(r#"{"type":"event","event":"agent","payload":{"params":1},"seq":3}"#).unwrap();
        assert_eq!((event.kind.as_str(), event.id.as_deref(), event.command()), ("event", None, None));
        assert!(FrameHead::parse("not json").is_err());
    }

    #[test]
    fn res_round_trips_both_shapes() {
        let ok = Frame::ok("1", json!({"a": 1}));
        assert_eq!(
            serde_json::to_value(&ok).unwrap(),
            json!({"type": "res", "id": "1", "ok": true, "payload": {"a": 1}})
        );
        assert_eq!(Frame::parse(&ok.to_text()).unwrap(), ok);
        let err = Frame::err("2", ErrorShape::new(ErrorCode::Timeout, "t"));
        assert_eq!(Frame::parse(&err.to_text()).unwrap(), err);
    }

    #[test]
    fn kind_is_the_wire_type() {
        for frame in [Frame::ok("1", Value::Null), Frame::Error(ErrorFrame { error: ErrorShape::invalid_request("x") })]
        {
            assert_eq!(serde_json::to_value(&frame).unwrap()["type"], frame.kind());
        }
    }

    #[test]
    fn contradictory_res_is_rejected() {
        let text = r#"{"type":"res","id":"1","ok":true,"error":{"code":"TIMEOUT","message":"","retryable":false}}"#;
        assert!(Frame::parse(text).is_err());
    }

    #[test]
    fn bad_req_keeps_its_id_for_the_answer() {
        let e = Frame::parse(r#"{"type":"req","id":"7","method":5}"#).unwrap_err();
        assert_eq!(e.request_id.as_deref(), Some("7"));
        assert_eq!(e.error.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn garbage_is_invalid_request_without_id() {
        for text in ["", "{", "[]", "42", r#"{"type":"nope"}"#, r#"{"type":"req","method":"health"}"#] {
            let e = Frame::parse(text).unwrap_err();
            assert_eq!(e.request_id, None, "{text}");
            assert_eq!(e.error.code, ErrorCode::InvalidRequest);
        }
    }

    #[test]
    fn req_params_default_to_null() {
        let f = Frame::parse(r#"{"type":"req","id":"a","method":"health"}"#).unwrap();
        assert_eq!(f, Frame::Req(Request { id: "a".into(), method: "health".into(), params: Value::Null }));
    }

    #[test]
    fn auth_token_is_not_debug_printed() {
        let auth = Auth { token: "canary-secret".into() };
        assert!(!format!("{auth:?}").contains("canary"));
    }
}
