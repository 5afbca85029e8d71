//! The agent path end to end: the real `claude` binary, run by the gateway, against the scripted
//! Messages API.

mod support;

use gateway::GatewayConfig;
use node_kit::protocol::{AgentEventKind, AgentParams, ErrorCode, HealthPayload, method};
use node_kit::{Client, ClientError};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::messages_api::{Gate, MessagesApi, Reply};
use support::{TestGateway, claude_binary, eventually};

fn params(prompt: &str, session: &str) -> AgentParams {
    AgentParams {
        channel: Default::default(),
        prompt: prompt.into(),
        session_key: Some(session.into()),
        idempotency_key: node_kit::client::random_id(),
        timeout_ms: Some(60_000),
        attachments: Vec::new(),
    }
}

/// The scripted model: a prompt containing a directive gets the matching reply; anything else is greeted.
fn script(request: &support::messages_api::ApiRequest) -> Reply {
    let text = &request.last_user_text;
    if request.has_tool_result {
        return Reply::text(&["I read ", "the file."]);
    }
    if text.contains("overloaded") {
        return Reply::Status(529, "overloaded_error");
    }
    if text.contains("hang") {
        return Reply::Delay(Duration::from_secs(120), Box::new(Reply::text(&["late"])));
    }
    if text.contains("read the note") {
        let path = text.rsplit(' ').next().unwrap_or_default();
        return Reply::ToolUse { id: "toolu_01".into(), name: "Read".into(), input: json!({ "file_path": path }) };
    }
    if text.contains("slowly") {
        return Reply::Delay(Duration::from_millis(700), Box::new(Reply::text(&["Hello", " from", " the model"])));
    }
    if text.contains("count") {
        return Reply::Text {
            pieces: ["one ", "two ", "three ", "four ", "five"].map(String::from).to_vec(),
            gap: Duration::from_millis(200),
        };
    }
    Reply::text(&["Hello", " from", " the model"])
}

/// The scripted API, a gateway running the real claude against it, and an operator; `None` skips.
async fn agent_setup(configure: impl FnOnce(&mut GatewayConfig)) -> Option<(MessagesApi, TestGateway, Client)> {
    agent_setup_with(script, configure).await
}

/// [`agent_setup`] with a script of the test's own.
async fn agent_setup_with(
    script: impl Fn(&support::messages_api::ApiRequest) -> Reply + Send + Sync + 'static,
    configure: impl FnOnce(&mut GatewayConfig),
) -> Option<(MessagesApi, TestGateway, Client)> {
    let claude = claude_binary()?;
    let api = MessagesApi::start(script).await;
    let gateway = TestGateway::with_claude(claude, &api, configure).await;
    let client = gateway.operator().await;
    Some((api, gateway, client))
}

async fn health(client: &Client) -> HealthPayload {
    serde_json::from_value(client.request(method::HEALTH, Value::Null).await.unwrap()).unwrap()
}

async fn session_pid(client: &Client, session: &str) -> Option<u32> {
    health(client).await.agent.sessions.into_iter().find(|s| s.session_key == session).and_then(|s| s.pid)
}

/// Streamed, not batched: the scripted API sends each piece of the answer only when the test lets it, and
/// holds the rest of the message (and its end) until then. Each delta must reach the operator while the
/// API still holds everything after it, so no part of the path may wait for the end of the message.
#[tokio::test]
async fn deltas_stream_in_order_before_the_result_and_the_session_keeps_its_process() {
    let pieces = ["one ", "two ", "three ", "four ", "five"];
    let gate = Gate::closed();
    let on_cue = {
        let gate = gate.clone();
        move |request: &support::messages_api::ApiRequest| {
            if request.last_user_text.contains("on cue") {
                Reply::Gated { pieces: pieces.map(String::from).to_vec(), gate: gate.clone() }
            } else {
                script(request)
            }
        }
    };
    let Some((api, gateway, client)) = agent_setup_with(on_cue, |_| {}).await else { return };

    let mut run = client.agent(params("please count on cue", "s1")).await.unwrap();
    assert!(!run.is_duplicate());
    for piece in pieces {
        gate.release_one();
        let delta = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                match run.next_event().await.expect("the run goes on while the model writes") {
                    AgentEventKind::TextDelta { text } => return text,
                    _ => continue,
                }
            }
        })
        .await
        .expect("the delta arrives while the API holds the rest of the message");
        assert_eq!(delta, piece);
    }
    let outcome = run.outcome().await.unwrap();
    assert_eq!(outcome.result, pieces.concat());
    assert!(!outcome.session_id.is_empty());
    assert!(outcome.usage.is_object());

    let first_pid = session_pid(&client, "s1").await.expect("the session has a live process");
    let second = client.agent(params("and hello again", "s1")).await.unwrap().outcome().await.unwrap();
    assert_eq!(second.result, "Hello from the model");
    assert_eq!(second.session_id, outcome.session_id, "same claude session");
    assert_eq!(session_pid(&client, "s1").await, Some(first_pid), "the second turn reused the process");
    let second_request = api.requests_with("and hello again").pop().unwrap();
    assert!(second_request.message_count >= 3, "the second turn carries the first in its history");
    gateway.stop().await;
}

#[tokio::test]
async fn tool_use_and_tool_results_are_streamed() {
    let note = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(note.path(), "the note says hi").unwrap();
    let Some((_api, gateway, client)) = agent_setup(|c| c.agent.extra_args = vec!["--allowedTools=Read".into()]).await
    else {
        return;
    };

    let prompt = format!("please read the note {}", note.path().display());
    let mut run = client.agent(params(&prompt, "tools")).await.unwrap();
    let mut events = Vec::new();
    while let Some(event) = run.next_event().await {
        events.push(event);
    }
    let outcome = run.outcome().await.unwrap();
    assert_eq!(outcome.result, "I read the file.");
    let tool_use = events.iter().position(|e| matches!(e, AgentEventKind::ToolUse { name, .. } if name == "Read"));
    let tool_result = events.iter().position(|e| {
        matches!(e, AgentEventKind::ToolResult { tool_use_id, content, .. }
            if tool_use_id == "toolu_01" && content.to_string().contains("the note says hi"))
    });
    assert!(tool_use.is_some() && tool_result.is_some(), "events: {events:?}");
    assert!(tool_use < tool_result);
    gateway.stop().await;
}

#[tokio::test]
async fn an_api_error_is_a_structured_error_not_a_hang() {
    let Some((_api, gateway, client)) = agent_setup(|_| {}).await else { return };

    let started = Instant::now();
    let run = client.agent(params("the model is overloaded", "errors")).await.unwrap();
    let err = tokio::time::timeout(Duration::from_secs(60), run.outcome()).await.expect("no hang").unwrap_err();
    let ClientError::Remote(e) = err else { panic!("expected a protocol error, got {err}") };
    assert_eq!(e.code, ErrorCode::AgentError);
    assert!(e.retryable);
    assert_eq!(e.details.as_ref().unwrap()["apiErrorStatus"], 529);
    assert!(e.details.as_ref().unwrap()["runId"].is_string());
    assert!(e.message.contains("529"), "{}", e.message);
    assert!(started.elapsed() < Duration::from_secs(30));

    // The same process still serves the next turn.
    let ok = client.agent(params("hello after the error", "errors")).await.unwrap().outcome().await.unwrap();
    assert_eq!(ok.result, "Hello from the model");
    gateway.stop().await;
}

#[tokio::test]
async fn killing_claude_mid_turn_is_an_error_and_the_next_turn_resumes() {
    let Some((api, gateway, client)) = agent_setup(|_| {}).await else { return };

    let first = client.agent(params("remember the word lanyard", "crash")).await.unwrap().outcome().await.unwrap();
    gateway.transcript_written(&first.session_id).await;
    let run = client.agent(params("now hang please", "crash")).await.unwrap();
    eventually(Duration::from_secs(30), async || (!api.requests_with("now hang").is_empty()).then_some(())).await;
    let pid = session_pid(&client, "crash").await.expect("a live claude process");
    std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();

    let err = tokio::time::timeout(Duration::from_secs(30), run.outcome()).await.expect("no hang").unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AgentError), "{err}");
    let ClientError::Remote(e) = err else { unreachable!() };
    assert!(e.retryable);
    assert!(e.message.contains("exited"), "{}", e.message);

    let next = client.agent(params("are you back", "crash")).await.unwrap().outcome().await.unwrap();
    assert_eq!(next.result, "Hello from the model");
    assert_eq!(next.session_id, first.session_id, "the new process resumed the session");
    let new_pid = session_pid(&client, "crash").await.unwrap();
    assert_ne!(new_pid, pid);
    let resumed = api.requests_with("are you back").pop().unwrap();
    assert!(resumed.body.to_string().contains("remember the word lanyard"), "history survived the crash");
    gateway.stop().await;
}

#[tokio::test]
async fn a_crash_before_claude_saved_the_conversation_starts_a_new_one() {
    let Some((_api, gateway, client)) = agent_setup(|_| {}).await else { return };

    client.agent(params("hello there", "lost")).await.unwrap().outcome().await.unwrap();
    // Kill at once, before claude's lazy transcript write, and remove any transcript it did write.
    let pid = session_pid(&client, "lost").await.unwrap();
    std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    std::fs::remove_dir_all(gateway.claude_home.as_ref().unwrap().path().join(".claude/projects")).ok();
    // The next turn notices the dead process, cannot resume the lost conversation, and starts afresh.
    let next = client.agent(params("still there", "lost")).await.unwrap().outcome().await.unwrap();
    assert_eq!(next.result, "Hello from the model");
    gateway.stop().await;
}

#[tokio::test]
async fn idle_processes_are_reaped_and_the_session_resumes_later() {
    let Some((api, gateway, client)) = agent_setup(|c| c.agent.idle_timeout = Duration::from_millis(500)).await else {
        return;
    };

    let first = client.agent(params("remember the colour teal", "idle")).await.unwrap().outcome().await.unwrap();
    eventually(Duration::from_secs(10), async || health(&client).await.agent.sessions.is_empty().then_some(())).await;
    let next = client.agent(params("what colour", "idle")).await.unwrap().outcome().await.unwrap();
    assert_eq!(next.session_id, first.session_id);
    assert!(api.requests_with("what colour").pop().unwrap().body.to_string().contains("remember the colour teal"));
    gateway.stop().await;
}

#[tokio::test]
async fn turns_on_one_session_queue_and_a_retried_key_runs_once() {
    let Some((api, gateway, a)) = agent_setup(|_| {}).await else { return };
    let b = gateway.operator().await;

    // Two turns at once on one session: both succeed, one after the other.
    let (first, second) =
        tokio::join!(async { a.agent(params("first queued count", "q")).await.unwrap().outcome().await }, async {
            b.agent(params("second queued hello", "q")).await.unwrap().outcome().await
        },);
    assert_eq!(first.unwrap().result, "one two three four five");
    assert_eq!(second.unwrap().result, "Hello from the model");

    // A retry with the same key, even from another connection, returns the first outcome without a new run.
    let mut retry = params("dedupe me please", "q");
    let original = a.agent(retry.clone()).await.unwrap().outcome().await.unwrap();
    retry.prompt = "dedupe me please".into();
    let again = b.agent(retry).await.unwrap();
    assert!(again.is_duplicate());
    assert_eq!(again.run_id(), original.run_id);
    assert_eq!(again.outcome().await.unwrap(), original);
    assert_eq!(api.requests_with("dedupe me").len(), 1, "the model was asked once");
    gateway.stop().await;
}

#[tokio::test]
async fn a_run_survives_its_caller_and_shutdown_leaves_no_claude_behind() {
    let Some((api, gateway, first_caller)) = agent_setup(|_| {}).await else { return };
    let mut request = params("take it slowly please", "survive");

    // The caller goes away mid-turn; the run goes on and its outcome is kept under the idempotency key.
    let run = first_caller.agent(request.clone()).await.unwrap();
    let run_id = run.run_id().to_string();
    drop(run);
    drop(first_caller);
    let retry = gateway.operator().await;
    request.prompt = "take it slowly please".into();
    let replay = retry.agent(request).await.unwrap();
    assert!(replay.is_duplicate());
    assert_eq!(replay.run_id(), run_id);
    assert_eq!(replay.outcome().await.unwrap().result, "Hello from the model");
    assert_eq!(api.requests_with("take it slowly").len(), 1, "ran once");

    let pid = session_pid(&retry, "survive").await.expect("a live claude process");
    gateway.stop().await;
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "claude was ended and reaped on shutdown");
}

#[tokio::test]
async fn claude_without_an_account_says_what_is_missing() {
    let Some((api, gateway, client)) = agent_setup(|c| {
        for (key, value) in &mut c.agent.env {
            if key == "ANTHROPIC_API_KEY" {
                value.clear();
            }
        }
    })
    .await
    else {
        return;
    };
    let err = client.agent(params("hello without a key", "nokey")).await.unwrap().outcome().await.unwrap_err();
    let ClientError::Remote(e) = err else { panic!("expected a protocol error, got {err}") };
    assert_eq!(e.code, ErrorCode::AgentUnavailable);
    assert!(!e.retryable);
    assert!(e.message.contains("log in") && e.message.contains("ANTHROPIC_API_KEY"), "{}", e.message);
    assert!(api.requests_with("hello without a key").is_empty());
    gateway.stop().await;
}
