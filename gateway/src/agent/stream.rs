//! Reading claude's `--output-format stream-json` lines: one JSON object per line, of which we need the
//! session id, text deltas, tool use, tool results and the final `result`.

use node_kit::protocol::AgentEventKind;
use serde_json::Value;

/// What one output line means to the gateway.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ClaudeLine {
    /// `system/init`: the session claude is running.
    Init { session_id: String },
    /// Something to stream to the caller.
    Events(Vec<AgentEventKind>),
    /// The turn ended.
    Result(TurnReport),
    /// claude asks its host something (an MCP message for our tools, later permissions); it waits for a
    /// `control_response` with the same `request_id`.
    ControlRequest { request_id: String, request: Value },
    /// claude no longer waits for the answer to its request `request_id` (the turn was interrupted).
    ControlCancel { request_id: String },
    /// Everything else (status lines, whole assistant messages already streamed as deltas).
    Other,
}

/// claude's `result` line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TurnReport {
    pub is_error: bool,
    pub result: String,
    pub session_id: String,
    pub usage: Value,
    /// The HTTP status of a failed API call, when that is why the turn failed.
    pub api_error_status: Option<u64>,
    pub subtype: String,
    /// Model calls made in the turn.
    pub num_turns: u64,
    /// Time spent in API calls; 0 on a failed turn means claude refused before calling the API.
    pub api_duration_ms: u64,
    /// The host interrupted the turn (set by the host, not read from the line).
    pub interrupted: bool,
}

impl TurnReport {
    /// claude failed on its own side (not logged in, bad settings) without asking the model anything.
    pub fn refused_locally(&self) -> bool {
        self.is_error && self.api_error_status.is_none() && self.api_duration_ms == 0 && self.subtype == "success"
    }
}

pub(crate) fn parse_line(line: &str) -> ClaudeLine {
    let Ok(value) = serde_json::from_str::<Value>(line) else {
        return ClaudeLine::Other;
    };
    let str_at = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    match value.get("type").and_then(Value::as_str) {
        Some("system") if value.get("subtype").and_then(Value::as_str) == Some("init") => {
            ClaudeLine::Init { session_id: str_at(&value, "session_id") }
        }
        Some("stream_event") => {
            let event = &value["event"];
            if event["type"] == "content_block_delta" && event["delta"]["type"] == "text_delta" {
                ClaudeLine::Events(vec![AgentEventKind::TextDelta { text: str_at(&event["delta"], "text") }])
            } else {
                ClaudeLine::Other
            }
        }
        Some("assistant") => events_from_blocks(&value, "tool_use", |block| AgentEventKind::ToolUse {
            tool_use_id: str_at(block, "id"),
            name: str_at(block, "name"),
            input: block.get("input").cloned().unwrap_or(Value::Null),
        }),
        Some("control_request") => ClaudeLine::ControlRequest {
            request_id: str_at(&value, "request_id"),
            request: value.get("request").cloned().unwrap_or(Value::Null),
        },
        Some("user") => events_from_blocks(&value, "tool_result", |block| AgentEventKind::ToolResult {
            tool_use_id: str_at(block, "tool_use_id"),
            content: without_image_data(block.get("content").cloned().unwrap_or(Value::Null)),
            is_error: block.get("is_error").and_then(Value::as_bool).unwrap_or(false),
        }),
        Some("result") => ClaudeLine::Result(TurnReport {
            is_error: value.get("is_error").and_then(Value::as_bool).unwrap_or(false),
            result: str_at(&value, "result"),
            session_id: str_at(&value, "session_id"),
            usage: value.get("usage").cloned().unwrap_or(Value::Null),
            api_error_status: value.get("api_error_status").and_then(Value::as_u64),
            subtype: str_at(&value, "subtype"),
            num_turns: value.get("num_turns").and_then(Value::as_u64).unwrap_or(0),
            api_duration_ms: value.get("duration_api_ms").and_then(Value::as_u64).unwrap_or(0),
            interrupted: false,
        }),
        Some("control_cancel_request") => ClaudeLine::ControlCancel { request_id: str_at(&value, "request_id") },
        _ => ClaudeLine::Other,
    }
}

/// Tool results stream to the caller without the bytes of their images (a screen snapshot would make every
/// event frame megabytes long): each image keeps its type and gains `omittedBytes`.
fn without_image_data(mut content: Value) -> Value {
    if let Some(blocks) = content.as_array_mut() {
        for block in blocks.iter_mut().filter(|b| b["type"] == "image") {
            if let Some(source) = block.get_mut("source").and_then(Value::as_object_mut)
                && let Some(Value::String(data)) = source.remove("data")
            {
                source.insert("omittedBytes".into(), data.len().into());
            }
        }
    }
    content
}

/// The content blocks of type `kind` in a message line, each turned into an event.
fn events_from_blocks(value: &Value, kind: &str, to_event: impl Fn(&Value) -> AgentEventKind) -> ClaudeLine {
    let events: Vec<_> = value["message"]["content"]
        .as_array()
        .map(|blocks| blocks.iter().filter(|b| b["type"] == kind).map(&to_event).collect())
        .unwrap_or_default();
    if events.is_empty() { ClaudeLine::Other } else { ClaudeLine::Events(events) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_the_lines_that_matter() {
        assert_eq!(
            parse_line(r#"{"type":"system","subtype":"init","session_id":"s1","tools":[]}"#),
            ClaudeLine::Init { session_id: "s1".into() }
        );
        assert_eq!(
            parse_line(
                r#"{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hel"}}}"#
            ),
            ClaudeLine::Events(vec![AgentEventKind::TextDelta { text: "Hel".into() }])
        );
        assert_eq!(
            parse_line(
                r#"{"type":"assistant","message":{"content":[{"type":"text","text":"x"},{"type":"tool_use","id":"t1","name":"Read","input":{"file_path":"/a"}}]}}"#
            ),
            ClaudeLine::Events(vec![AgentEventKind::ToolUse {
                tool_use_id: "t1".into(),
                name: "Read".into(),
                input: json!({"file_path": "/a"})
            }])
        );
        assert_eq!(
            parse_line(r#"{"type":"assistant","message":{"content":[{"type":"text","text":"x"}]}}"#),
            ClaudeLine::Other
        );
        let ClaudeLine::Result(report) = parse_line(
            r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":529,"result":"API Error: 529","session_id":"s1","usage":{"input_tokens":0}}"#,
        ) else {
            panic!("result line")
        };
        assert!(report.is_error);
        assert_eq!(report.api_error_status, Some(529));
        assert!(!report.refused_locally());
        let ClaudeLine::Result(report) = parse_line(
            r#"{"type":"result","subtype":"success","is_error":true,"api_error_status":null,"duration_api_ms":0,"num_turns":1,"result":"Not logged in · Please run /login","session_id":"s2"}"#,
        ) else {
            panic!("result line")
        };
        assert!(report.refused_locally());
        assert_eq!(parse_line("not json"), ClaudeLine::Other);
        assert_eq!(
            parse_line(r#"{"type":"control_cancel_request","request_id":"p1"}"#),
            ClaudeLine::ControlCancel { request_id: "p1".into() }
        );
    }

    #[test]
    fn control_requests_and_image_results() {
        assert_eq!(
            parse_line(
                r#"{"type":"control_request","request_id":"r1","request":{"subtype":"mcp_message","server_name":"lanyard"}}"#
            ),
            ClaudeLine::ControlRequest {
                request_id: "r1".into(),
                request: json!({"subtype": "mcp_message", "server_name": "lanyard"})
            }
        );
        let line = json!({"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id": "t1",
            "content": [{"type": "text", "text": "shot"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}]}]}});
        let ClaudeLine::Events(events) = parse_line(&line.to_string()) else { panic!("events") };
        let AgentEventKind::ToolResult { content, .. } = &events[0] else { panic!("a tool result") };
        assert_eq!(content[1]["source"], json!({"type": "base64", "media_type": "image/png", "omittedBytes": 12}));
        assert_eq!(content[0]["text"], "shot");
    }
}
