//! A local Messages API that the tests script: enough of Anthropic's streaming format (SSE:
//! message_start, content_block_start/delta/stop, message_delta, message_stop) for the real `claude` CLI
//! to run offline against it. What to answer is decided per request by the test's script, from the last
//! user message, so claude's own extra requests do not upset the order.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// What the script sees of one request.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    /// The last text block of the last `user` message: what was just asked (claude folds an unanswered
    /// earlier prompt into the same message, ahead of it).
    pub last_user_text: String,
    /// True when the last user message carries tool results (the model's second step after a tool call).
    pub has_tool_result: bool,
    /// How many messages the conversation has: grows by two per turn in one session.
    pub message_count: usize,
    pub body: Value,
}

/// What to answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Stream these text pieces as `text_delta`s, `gap` apart.
    Text { pieces: Vec<String>, gap: Duration },
    /// Call a tool.
    ToolUse { id: String, name: String, input: Value },
    /// Answer with an HTTP error status and Anthropic's error body.
    Status(u16, &'static str),
    /// Wait this long before answering (to catch the turn mid-way).
    Delay(Duration, Box<Reply>),
    /// Stream these text pieces as `text_delta`s, each only once the test lets it through the gate: the
    /// rest of the message (and its end) is held until then, so a test can see what arrives while the
    /// model is still "writing".
    Gated { pieces: Vec<String>, gate: Gate },
    /// Stream gated text pieces, then call a tool in the same message.
    GatedThenTool { pieces: Vec<String>, gate: Gate, id: String, name: String, input: Value },
}

/// Releases a [`Reply::Gated`] piece by piece.
#[derive(Debug, Clone)]
pub struct Gate(Arc<tokio::sync::Semaphore>);

impl Gate {
    pub fn closed() -> Gate {
        Gate(Arc::new(tokio::sync::Semaphore::new(0)))
    }

    /// Lets the next piece be sent.
    pub fn release_one(&self) {
        self.0.add_permits(1);
    }

    async fn pass(&self) {
        self.0.acquire().await.expect("the gate is never closed").forget();
    }
}

/// What the API waits for before sending an event.
enum Wait {
    For(Duration),
    Gate(Gate),
}

impl Reply {
    pub fn text(pieces: &[&str]) -> Reply {
        Reply::Text { pieces: pieces.iter().map(|p| p.to_string()).collect(), gap: Duration::ZERO }
    }

    pub fn tool(id: &str, name: &str, input: Value) -> Reply {
        Reply::ToolUse { id: id.into(), name: name.into(), input }
    }
}

impl ApiRequest {
    /// The `tool_result` block for `tool_use_id` in this request's last user message, if it has one.
    pub fn tool_result(&self, tool_use_id: &str) -> Option<Value> {
        let messages = self.body["messages"].as_array()?;
        let last_user = messages.iter().rev().find(|m| m["role"] == "user")?;
        last_user["content"]
            .as_array()?
            .iter()
            .find(|b| b["type"] == "tool_result" && b["tool_use_id"] == tool_use_id)
            .cloned()
    }

    /// The text of a tool result's content, whether a string or text blocks.
    pub fn tool_result_text(&self, tool_use_id: &str) -> Option<(String, bool)> {
        let block = self.tool_result(tool_use_id)?;
        let is_error = block["is_error"].as_bool().unwrap_or(false);
        let text = match &block["content"] {
            Value::String(text) => text.clone(),
            Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join(""),
            _ => String::new(),
        };
        Some((text, is_error))
    }
}

type Script = dyn Fn(&ApiRequest) -> Reply + Send + Sync;

pub struct MessagesApi {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<ApiRequest>>>,
}

#[derive(Clone)]
struct ApiState {
    script: Arc<Script>,
    requests: Arc<Mutex<Vec<ApiRequest>>>,
}

impl MessagesApi {
    pub async fn start(script: impl Fn(&ApiRequest) -> Reply + Send + Sync + 'static) -> MessagesApi {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = ApiState { script: Arc::new(script), requests: requests.clone() };
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .route("/v1/messages/count_tokens", post(|| async { axum::Json(json!({"input_tokens": 10})) }))
            .fallback(|| async { StatusCode::OK })
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        MessagesApi { addr, requests }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<ApiRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// The first request carrying a result for `tool_use_id`: its text and whether it is an error.
    pub fn tool_result_text(&self, tool_use_id: &str) -> Option<(String, bool)> {
        self.requests.lock().unwrap().iter().find_map(|r| r.tool_result_text(tool_use_id))
    }

    /// Requests whose last user text contains `marker`.
    pub fn requests_with(&self, marker: &str) -> Vec<ApiRequest> {
        self.requests.lock().unwrap().iter().filter(|r| r.last_user_text.contains(marker)).cloned().collect()
    }
}

fn describe(body: Value) -> ApiRequest {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let last_user = messages.iter().rev().find(|m| m["role"] == "user").cloned().unwrap_or(Value::Null);
    let (mut text, mut has_tool_result) = (String::new(), false);
    match &last_user["content"] {
        Value::String(s) => text.push_str(s),
        Value::Array(blocks) => {
            for block in blocks {
                match block["type"].as_str() {
                    Some("text") => block["text"].as_str().unwrap_or_default().clone_into(&mut text),
                    Some("tool_result") => has_tool_result = true,
                    _ => {}
                }
            }
        }
        _ => {}
    }
    ApiRequest { last_user_text: text, has_tool_result, message_count: messages.len(), body }
}

async fn messages(State(state): State<ApiState>, axum::Json(body): axum::Json<Value>) -> Response {
    let request = describe(body);
    let mut reply = (state.script)(&request);
    let model = request.body["model"].as_str().unwrap_or("claude-test").to_string();
    state.requests.lock().unwrap().push(request);
    while let Reply::Delay(wait, next) = reply {
        tokio::time::sleep(wait).await;
        reply = *next;
    }
    if let Reply::Status(status, kind) = reply {
        let body = json!({"type": "error", "error": {"type": kind, "message": kind}});
        return (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    }
    let (tx, rx) = mpsc::channel::<Result<Event, Infallible>>(64);
    tokio::spawn(async move {
        for (event, wait) in stream_events(&model, reply) {
            match wait {
                Wait::For(gap) if gap.is_zero() => {}
                Wait::For(gap) => tokio::time::sleep(gap).await,
                Wait::Gate(gate) => gate.pass().await,
            }
            let name = event["type"].as_str().unwrap().to_string();
            if tx.send(Ok(Event::default().event(name).data(event.to_string()))).await.is_err() {
                return;
            }
        }
    });
    Sse::new(ReceiverStream::new(rx)).into_response()
}

/// The SSE events of one streamed message, each with the wait before it.
fn stream_events(model: &str, reply: Reply) -> Vec<(Value, Wait)> {
    // Each message needs an id of its own: claude keeps one assistant message per id in its transcript.
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = format!("msg_test_{}", NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    let now = || Wait::For(Duration::ZERO);
    let mut events = vec![(
        json!({"type": "message_start", "message": {"id": id, "type": "message", "role": "assistant",
            "model": model, "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 12, "output_tokens": 1}}}),
        now(),
    )];
    let mut last_block = 0;
    let stop_reason = match reply {
        Reply::Text { pieces, gap } => {
            text_block(&mut events, pieces, || Wait::For(gap));
            "end_turn"
        }
        Reply::Gated { pieces, gate } => {
            text_block(&mut events, pieces, || Wait::Gate(gate.clone()));
            "end_turn"
        }
        Reply::GatedThenTool { pieces, gate, id, name, input } => {
            text_block(&mut events, pieces, || Wait::Gate(gate.clone()));
            events.push((json!({"type": "content_block_stop", "index": 0}), now()));
            tool_block(&mut events, 1, &id, &name, &input);
            last_block = 1;
            "tool_use"
        }
        Reply::ToolUse { id, name, input } => {
            tool_block(&mut events, 0, &id, &name, &input);
            "tool_use"
        }
        Reply::Status(..) | Reply::Delay(..) => unreachable!("handled before streaming"),
    };
    events.push((json!({"type": "content_block_stop", "index": last_block}), now()));
    events.push((
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
        "usage": {"output_tokens": 7}}),
        now(),
    ));
    events.push((json!({"type": "message_stop"}), now()));
    events
}

/// A text block at index 0: its start, then one delta per piece, each after `wait`.
fn text_block(events: &mut Vec<(Value, Wait)>, pieces: Vec<String>, wait: impl Fn() -> Wait) {
    events.push((
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        Wait::For(Duration::ZERO),
    ));
    for piece in pieces {
        events.push((
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}),
            wait(),
        ));
    }
}

/// A tool call block at `index`: its start and its whole input as one delta (the block's stop is the caller's).
fn tool_block(events: &mut Vec<(Value, Wait)>, index: usize, id: &str, name: &str, input: &Value) {
    let start = json!({"type": "content_block_start", "index": index,
        "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}});
    let delta = json!({"type": "content_block_delta", "index": index,
        "delta": {"type": "input_json_delta", "partial_json": input.to_string()}});
    events.push((start, Wait::For(Duration::ZERO)));
    events.push((delta, Wait::For(Duration::ZERO)));
}

/// The question of the prompt tests.
pub const COLOR_QUESTION: &str = "Which color should the button be?";

/// The model asks [`COLOR_QUESTION`] (AskUserQuestion, `toolu_ask`), with the options Red and Blue.
pub fn color_question() -> Reply {
    Reply::tool(
        "toolu_ask",
        "AskUserQuestion",
        json!({ "questions": [{ "question": COLOR_QUESTION, "header": "Color", "multiSelect": false,
            "options": [{ "label": "Red", "description": "A red button" },
                        { "label": "Blue", "description": "A blue button" }] }] }),
    )
}
