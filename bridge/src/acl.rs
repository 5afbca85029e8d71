//! The access control table, deny by default: what a paired node may call, and which commands the
//! gateway may send to a node. Nothing else is consulted; nothing else decides.
//!
//! A node may answer prompts, cancel, attach and read history only with an agent scope, and only for its
//! own conversations: the gateway, which alone knows whose conversation a run belongs to, narrows every
//! such call to the node's own (`node:<id>:…`) sessions.

use node_kit::protocol::{AgentChannel, ErrorCode, ErrorShape, NodeCommand, Scope, method};
use serde::Deserialize;
use serde_json::Value;

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

    #[test]
    fn screen_commands_need_the_screen_capability() {
        assert_eq!(check_command("screen.show", &[]).unwrap_err().code, ErrorCode::Forbidden);
        check_command("screen.show", &["screen".to_string()]).unwrap();
        check_command("app.custom", &[]).unwrap();
    }
}
