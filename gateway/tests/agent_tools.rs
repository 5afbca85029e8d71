//! The agent's node tools as the real `claude` sees them: served in-band by the gateway, allowed without a
//! prompt, and answering with node errors as tool errors. (Calls that reach a real node and its Canvas are
//! in `apps/node/tests`.)

mod support;

use node_kit::protocol::AgentParams;
use serde_json::{Value, json};
use support::messages_api::{ApiRequest, MessagesApi, Reply};
use support::{TestGateway, claude_binary};

/// The tools the model was offered in the API request `request`, by name, with whether each was deferred
/// (held back behind claude's ToolSearch, its schema not shown).
fn offered_tools(request: &ApiRequest) -> Vec<(String, bool)> {
    let tools = request.body["tools"].as_array().cloned().unwrap_or_default();
    tools
        .iter()
        .filter_map(|t| Some((t["name"].as_str()?.to_string(), t["defer_loading"].as_bool().unwrap_or(false))))
        .collect()
}

/// The result of the tool call `id` as the model got it, as (is_error, text of its first block).
fn tool_result(api: &MessagesApi, id: &str) -> (bool, String) {
    let request = api.requests().into_iter().last().unwrap();
    let messages = request.body["messages"].as_array().unwrap();
    let block = messages
        .iter()
        .filter(|m| m["role"] == "user")
        .filter_map(|m| m["content"].as_array())
        .flatten()
        .find(|b| b["type"] == "tool_result" && b["tool_use_id"] == id)
        .expect("the model got the tool result");
    let text = match &block["content"] {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks[0]["text"].as_str().unwrap_or_default().to_string(),
        other => other.to_string(),
    };
    (block["is_error"].as_bool().unwrap_or(false), text)
}

/// A prompt naming a tool call gets it; anything else (the tool's result) gets "noted". claude may put the
/// next prompt in the same user message as the last tool result, so the text decides, not the result.
fn prompt(text: &str) -> AgentParams {
    AgentParams { timeout_ms: Some(30_000), ..AgentParams::new(text) }
}

fn script(request: &ApiRequest) -> Reply {
    let (id, name, input) = match request.last_user_text.as_str() {
        text if text.contains("which nodes") => ("toolu_list", "mcp__lanyard__nodes_list", json!({})),
        text if text.contains("look at the screen") => {
            ("toolu_snap", "mcp__lanyard__screen_snapshot", json!({ "nodeId": "nobody" }))
        }
        _ => return Reply::text(&["noted"]),
    };
    Reply::ToolUse { id: id.into(), name: name.into(), input }
}

#[tokio::test]
async fn the_agent_lists_nodes_and_gets_node_errors_as_tool_errors() {
    let Some(claude) = claude_binary() else { return };
    let api = MessagesApi::start(script).await;
    let gateway = TestGateway::with_claude(claude, &api, |_| {}).await;
    let client = gateway.operator().await;

    let run = client.agent(prompt("which nodes are there?")).await.unwrap();
    assert_eq!(run.outcome().await.unwrap().result, "noted");
    let (is_error, text) = tool_result(&api, "toolu_list");
    assert!(!is_error, "{text}");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), json!({ "nodes": [] }));

    let run = client.agent(prompt("look at the screen")).await.unwrap();
    let outcome = run.outcome().await;
    assert_eq!(outcome.unwrap().result, "noted");
    let (is_error, text) = tool_result(&api, "toolu_snap");
    assert!(is_error, "{text}");
    let error: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(error["error"]["code"], "NODE_NOT_CONNECTED", "{text}");
    assert_eq!(error["error"]["retryAfterMs"], 1000, "{text}");
    gateway.stop().await;
}

/// The model learns of the screen from its very first request: every Lanyard tool is in it in full, not
/// deferred behind claude's ToolSearch, so a model that never searches (as this scripted one) still sees
/// the wall display exists.
#[tokio::test]
async fn every_tool_is_in_the_models_first_request() {
    let Some(claude) = claude_binary() else { return };
    let api = MessagesApi::start(|_| Reply::text(&["noted"])).await;
    let gateway = TestGateway::with_claude(claude, &api, |_| {}).await;
    let client = gateway.operator().await;

    let run = client.agent(prompt("hello")).await.unwrap();
    assert_eq!(run.outcome().await.unwrap().result, "noted");
    let first = api.requests().into_iter().next().expect("claude asked the model");
    let offered = offered_tools(&first);
    for tool in gateway::agent::claude_tool_names() {
        let entry = offered.iter().find(|(name, _)| *name == tool);
        assert_eq!(entry.map(|(_, deferred)| *deferred), Some(false), "{tool} in full among {offered:?}");
    }
    gateway.stop().await;
}
