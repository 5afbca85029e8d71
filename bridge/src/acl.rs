//! The access control table, deny by default: what a paired node may call, and which commands the
//! gateway may send to a node. Nothing else is consulted; nothing else decides.
//!
//! A node may answer prompts, cancel, attach and read history only with an agent scope, and only for its
//! own conversations: the gateway, which alone knows whose conversation a run belongs to, narrows every
//! such call to the node's own (`node:<id>:…`) sessions.

use node_kit::protocol::{AgentChannel, ErrorCode, ErrorShape, Frame, FrameError, NodeCommand, Request, Scope, method};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use std::fmt;

/// Methods a paired node may call, and what each needs.
const NODE_METHODS: &[(&str, Needs)] = &[
    (method::AGENT, Needs::ChannelScope),
    (method::AGENT_RESPOND, Needs::AgentScope),
    (method::AGENT_CANCEL, Needs::AgentScope),
    (method::AGENT_ATTACH, Needs::AgentScope),
    (method::AGENT_PENDING, Needs::AgentScope),
    (method::AGENT_SESSIONS, Needs::AgentScope),
    (method::AGENT_HISTORY, Needs::AgentScope),
    // Push tells a device about its agent runs, so it goes with the agent scopes.
    (method::PUSH_KEY, Needs::AgentScope),
    (method::PUSH_SUBSCRIBE, Needs::AgentScope),
    (method::PUSH_UNSUBSCRIBE, Needs::AgentScope),
    (method::SYSTEM_EVENT, Needs::Nothing),
    (method::NODE_EVENT, Needs::Nothing),
    (method::HEALTH, Needs::Nothing),
    (method::TUNNEL_TOKEN, Needs::Nothing),
];

#[derive(Debug, Clone, Copy)]
enum Needs {
    Nothing,
    /// `chat` for typed prompts, `voice` for transcripts.
    ChannelScope,
    /// Either `chat` or `voice`: a node that may start turns may also steer and read them.
    AgentScope,
}

/// What the ACL learnt about an allowed call that other checks need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowedCall {
    Other,
    /// An `agent` call carrying a voice transcript (it has its own rate limit).
    Voice,
}

/// The methods a paired node may call, for its `hello-ok`.
pub fn node_methods() -> Vec<String> {
    NODE_METHODS.iter().map(|(m, _)| m.to_string()).collect()
}

/// May a node with `scopes` call `method` with `params`?
pub fn check_node_call(method: &str, params: &Value, scopes: &[Scope]) -> Result<AllowedCall, ErrorShape> {
    let Some((_, needs)) = NODE_METHODS.iter().find(|(m, _)| *m == method) else {
        return Err(ErrorShape::new(ErrorCode::Forbidden, format!("a node may not call {method}"))
            .with_details(serde_json::json!({ "allowed": node_methods() })));
    };
    match needs {
        Needs::Nothing => Ok(AllowedCall::Other),
        Needs::AgentScope if scopes.iter().any(|s| matches!(s, Scope::Chat | Scope::Voice)) => Ok(AllowedCall::Other),
        Needs::AgentScope => Err(ErrorShape::new(
            ErrorCode::Forbidden,
            format!("this node has no agent scope (chat or voice) for {method}"),
        )),
        Needs::ChannelScope => {
            let channel = match params.get("channel") {
                None => AgentChannel::Chat,
                Some(value) => AgentChannel::deserialize(value)
                    .map_err(|e| ErrorShape::invalid_request(format!("invalid params for agent: channel: {e}")))?,
            };
            let (scope, call) = match channel {
                AgentChannel::Chat => (Scope::Chat, AllowedCall::Other),
                AgentChannel::Voice => (Scope::Voice, AllowedCall::Voice),
            };
            if !scopes.contains(&scope) {
                return Err(ErrorShape::new(
                    ErrorCode::Forbidden,
                    format!("this node was not granted the {scope} scope that agent calls on this channel need"),
                ));
            }
            Ok(call)
        }
    }
}

/// Whether the checks on a call of `method` read its params: an `agent` call's channel and images.
fn reads_params(method: &str) -> bool {
    method == method::AGENT
        || NODE_METHODS.iter().any(|(m, needs)| *m == method && matches!(needs, Needs::ChannelScope))
}

/// A node's request as the checks see it. `params` is read only for the methods whose checks need it
/// ([`reads_params`]); otherwise it is `null` and the call passes on as the bytes that arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub id: String,
    pub method: String,
    pub params: Value,
    /// `params.state` (a `system-event`'s app state), as the full params would give it.
    pub state: Option<Value>,
}

impl From<Request> for Call {
    fn from(req: Request) -> Call {
        let state = req.params.get("state").cloned();
        Call { id: req.id, method: req.method, params: req.params, state }
    }
}

/// A frame from a node, read for the relay: a request as a [`Call`] (most by their head only, see
/// [`NodeFrame::parse`]), anything else in full.
#[derive(Debug)]
pub enum NodeFrame {
    Call(Call),
    Frame(Frame),
}

impl NodeFrame {
    /// Reads a request whose checks need only its id, method and `params.state` without building the
    /// rest: every other value is walked by the same JSON grammar with the same nesting limit as
    /// [`Frame::parse`], so a head is returned only for a text that `Frame::parse` reads as the same
    /// request. Anything else (another type, an `agent` call, a duplicated field, a bad id, bad JSON) is
    /// read by `Frame::parse`, with its answers and errors.
    pub fn parse(text: &str) -> Result<NodeFrame, FrameError> {
        let mut json = serde_json::Deserializer::from_str(text);
        match json.deserialize_map(HeadVisitor).and_then(|head| json.end().map(|()| head)) {
            Ok(Some(call)) => Ok(NodeFrame::Call(call)),
            _ => Frame::parse(text).map(|frame| match frame {
                Frame::Req(req) => NodeFrame::Call(req.into()),
                other => NodeFrame::Frame(other),
            }),
        }
    }
}

/// The keys of a request that the head reads.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum HeadKey {
    Type,
    Id,
    Method,
    Params,
    #[serde(other)]
    Other,
}

/// Reads a frame's head; `None` when it is not a request the head may stand for. Stops at the first sign
/// of that (an error ends the parse; [`NodeFrame::parse`] then reads the frame in full).
struct HeadVisitor;

impl<'de> Visitor<'de> for HeadVisitor {
    type Value = Option<Call>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a frame object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Call>, A::Error> {
        let (mut kind, mut id, mut method, mut params) = (None, None, None, None);
        let seen_twice = || de::Error::custom("a field appears twice");
        while let Some(key) = map.next_key::<HeadKey>()? {
            match key {
                HeadKey::Type if kind.is_none() => {
                    let value: String = map.next_value()?;
                    if value != "req" {
                        return Err(de::Error::custom("not a request"));
                    }
                    kind = Some(value);
                }
                HeadKey::Id if id.is_none() => id = Some(map.next_value::<String>()?),
                HeadKey::Method if method.is_none() => {
                    let value: String = map.next_value()?;
                    if reads_params(&value) {
                        return Err(de::Error::custom("its checks read the params"));
                    }
                    method = Some(value);
                }
                HeadKey::Params if params.is_none() => params = Some(map.next_value_seed(Walk { keep_state: true })?),
                HeadKey::Other => map.next_value_seed(SKIP).map(drop)?,
                HeadKey::Type | HeadKey::Id | HeadKey::Method | HeadKey::Params => return Err(seen_twice()),
            }
        }
        let (Some(_), Some(id), Some(method)) = (kind, id, method) else {
            return Ok(None);
        };
        let id_ok = !id.is_empty() && id.len() <= node_kit::protocol::MAX_ID_LEN;
        let state = params.flatten();
        Ok(id_ok.then_some(Call { id, method, params: Value::Null, state }))
    }
}

/// The keys of an object that [`Walk`] tells apart.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum ParamsKey {
    State,
    #[serde(other)]
    Other,
}

/// Walks a JSON value and drops it, keeping only, when `keep_state`, the `state` of an object (a later
/// `state` wins, as in a parsed map). It goes through `deserialize_any` as a parsed value does, so the
/// same grammar and the same nesting limit apply (serde_json's own skipping has no nesting limit).
#[derive(Clone, Copy)]
struct Walk {
    keep_state: bool,
}

const SKIP: Walk = Walk { keep_state: false };

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<Value>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = Option<Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Option<Value>, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Option<Value>, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Option<Value>, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Option<Value>, E> {
        Ok(None)
    }

    fn visit_str<E>(self, _: &str) -> Result<Option<Value>, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Option<Value>, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Option<Value>, A::Error> {
        while seq.next_element_seed(SKIP)?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<Value>, A::Error> {
        let mut state = None;
        while let Some(key) = map.next_key::<ParamsKey>()? {
            match key {
                ParamsKey::State if self.keep_state => state = Some(map.next_value::<Value>()?),
                _ => map.next_value_seed(SKIP).map(drop)?,
            }
        }
        Ok(state)
    }
}

/// May the gateway send `command` to a node that granted `caps`?
pub fn check_command(command: &str, caps: &[String]) -> Result<(), ErrorShape> {
    match NodeCommand::capability(command) {
        Some(cap) if !caps.iter().any(|c| c == cap) => Err(ErrorShape::new(
            ErrorCode::Forbidden,
            format!("the node has not granted the {cap} capability {command} needs"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deny_by_default() {
        for method in [method::NODE_INVOKE, method::NODE_LIST, method::PAIR_APPROVE, method::PAIR_LIST, "anything"] {
            assert_eq!(check_node_call(method, &json!({}), &[Scope::Chat]).unwrap_err().code, ErrorCode::Forbidden);
        }
        assert_eq!(check_node_call(method::HEALTH, &json!({}), &[]).unwrap(), AllowedCall::Other);
    }

    #[test]
    fn the_hello_lists_every_method_the_table_allows_and_nothing_else() {
        let listed = node_methods();
        assert_eq!(listed.len(), NODE_METHODS.len());
        assert!(listed.iter().any(|m| m == method::AGENT_RESPOND), "{listed:?}");
        assert!(!listed.iter().any(|m| m == method::PAIR_POLICY), "{listed:?}");
        let refused = check_node_call("nope", &json!({}), &[Scope::Chat]).unwrap_err();
        assert_eq!(refused.details.unwrap()["allowed"], json!(listed));
    }

    #[test]
    fn agent_needs_the_scope_of_its_channel() {
        let typed = json!({ "prompt": "hi" });
        let voice = json!({ "prompt": "hi", "channel": "voice" });
        assert_eq!(check_node_call(method::AGENT, &typed, &[Scope::Chat]).unwrap(), AllowedCall::Other);
        assert_eq!(check_node_call(method::AGENT, &voice, &[Scope::Chat]).unwrap_err().code, ErrorCode::Forbidden);
        assert_eq!(check_node_call(method::AGENT, &voice, &[Scope::Voice]).unwrap(), AllowedCall::Voice);
        assert_eq!(check_node_call(method::AGENT, &typed, &[Scope::Voice]).unwrap_err().code, ErrorCode::Forbidden);
        assert_eq!(check_node_call(method::AGENT, &typed, &[]).unwrap_err().code, ErrorCode::Forbidden);
    }

    #[test]
    fn steering_the_agent_needs_an_agent_scope() {
        for method in [
            method::AGENT_RESPOND,
            method::AGENT_CANCEL,
            method::AGENT_ATTACH,
            method::AGENT_PENDING,
            method::AGENT_SESSIONS,
            method::AGENT_HISTORY,
            method::PUSH_KEY,
            method::PUSH_SUBSCRIBE,
            method::PUSH_UNSUBSCRIBE,
        ] {
            assert_eq!(check_node_call(method, &json!({}), &[]).unwrap_err().code, ErrorCode::Forbidden, "{method}");
            assert_eq!(check_node_call(method, &json!({}), &[Scope::Chat]).unwrap(), AllowedCall::Other);
            assert_eq!(check_node_call(method, &json!({}), &[Scope::Voice]).unwrap(), AllowedCall::Other);
        }
        assert_eq!(
            check_node_call(method::PAIR_POLICY, &json!({}), &[Scope::Chat]).unwrap_err().code,
            ErrorCode::Forbidden
        );
    }

    /// The call `Frame::parse` reads from `text`, as the checks see it.
    fn parsed_in_full(text: &str) -> Result<(String, String, Option<Value>), ErrorShape> {
        match Frame::parse(text) {
            Ok(Frame::Req(req)) => Ok((req.id, req.method, req.params.get("state").cloned())),
            Ok(other) => panic!("not a request: {other:?}"),
            Err(e) => Err(e.error),
        }
    }

    /// Every text gives, through the head, exactly what the full parse gives: the same id, method and state,
    /// or the same refusal. Crafted texts included: head and body that disagree (a field twice), escaped
    /// names, deep nesting past the parser's limit inside a skipped value, trailing bytes.
    #[test]
    fn a_head_reads_what_the_full_parse_reads_or_leaves_it_to_the_full_parse() {
        let deep = format!(
            r#"{{"type":"req","id":"1","method":"health","params":{{"x":{}1{}}}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let texts = [
            r#"{"type":"req","id":"1","method":"health"}"#,
            r#"{"type":"req","id":"1","method":"health","params":null}"#,
            r#"{"method":"system-event","id":"2","type":"req","extra":{"a":[1,2.5,-3,{"b":null}],"c":"\"q\""}}"#,
            r#"{"type":"req","id":"3","method":"system-event","params":{"state":"background","text":"x"}}"#,
            r#"{"type":"req","id":"3","method":"system-event","params":{"state":"foreground","state":"background"}}"#,
            r#"{"type":"req","id":"3","method":"system-event","params":{"st\u0061te":"background"}}"#,
            r#"{"type":"req","id":"3","method":"system-event","params":[{"state":"background"}]}"#,
            r#"{"type":"req","id":"3","method":"system-event","params":{"nested":{"state":"background"}}}"#,
            r#"{"type":"req","id":"4","method":"health","method":"node.invoke"}"#,
            r#"{"type":"req","id":"4","method":"node.invoke","method":"health"}"#,
            r#"{"type":"req","id":"4","method":"health","params":{},"params":{"state":"background"}}"#,
            r#"{"type":"req","type":"res","id":"4","method":"health"}"#,
            r#"{"type":"req","id":"4","id":"5","method":"health"}"#,
            r#"{"type":"req","id":"5","method":"node\u002einvoke"}"#,
            r#"{"type":"r\u0065q","id":"5","method":"he\u0061lth"}"#,
            r#"{"type":"req","id":"6","method":"agent","params":{"prompt":"hi","channel":"voice"}}"#,
            r#"{"type":"req","id":"","method":"health"}"#,
            r#"{"type":"req","id":7,"method":"health"}"#,
            r#"{"type":"req","method":"health"}"#,
            r#"{"type":"req","id":"8","method":"health"} x"#,
            r#"{"type":"req","id":"8","method":"health","params":{"n":1e999}}"#,
            r#"{"type":"req","id":"8","method":"health","params":{"s":"a\u0000"}}"#,
            r#"{"type":"req","id":"8","method":"health","params":{"s":"\x"}}"#,
            r#"["req","8","health"]"#,
            &deep,
        ];
        let long_id =
            format!(r#"{{"type":"req","id":"{}","method":"health"}}"#, "i".repeat(node_kit::protocol::MAX_ID_LEN + 1));
        for text in texts.into_iter().chain([long_id.as_str()]) {
            let through_head = match NodeFrame::parse(text) {
                Ok(NodeFrame::Call(call)) => Ok((call.id, call.method, call.state)),
                Ok(NodeFrame::Frame(other)) => panic!("{text}: not a request: {other:?}"),
                Err(e) => Err(e.error),
            };
            assert_eq!(through_head, parsed_in_full(text), "{text}");
        }
    }

    #[test]
    fn only_calls_whose_checks_read_their_params_are_parsed_in_full() {
        let head = |text| match NodeFrame::parse(text).unwrap() {
            NodeFrame::Call(call) => call.params,
            NodeFrame::Frame(other) => panic!("not a request: {other:?}"),
        };
        assert_eq!(head(r#"{"type":"req","id":"1","method":"system-event","params":{"text":"x"}}"#), Value::Null);
        let agent = head(r#"{"type":"req","id":"1","method":"agent","params":{"prompt":"hi","channel":"voice"}}"#);
        assert_eq!(agent["channel"], "voice");
        // A voice transcript through the head would pass with the chat scope alone.
        assert_eq!(check_node_call(method::AGENT, &agent, &[Scope::Chat]).unwrap_err().code, ErrorCode::Forbidden);
        let res = NodeFrame::parse(r#"{"type":"res","id":"1","ok":true,"payload":{}}"#).unwrap();
        assert!(matches!(res, NodeFrame::Frame(Frame::Res(_))), "{res:?}");
    }

    #[test]
    fn screen_commands_need_the_screen_capability() {
        assert_eq!(check_command("screen.show", &[]).unwrap_err().code, ErrorCode::Forbidden);
        check_command("screen.show", &["screen".to_string()]).unwrap();
        check_command("app.custom", &[]).unwrap();
    }
}
