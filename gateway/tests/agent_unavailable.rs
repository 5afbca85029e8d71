//! Without claude the agent answers at once with `AGENT_UNAVAILABLE` naming what to install.

mod support;

use node_kit::protocol::{AgentParams, ErrorCode, HealthPayload, method};
use std::time::{Duration, Instant};
use support::TestGateway;

#[tokio::test]
async fn missing_claude_is_reported_at_once() {
    let gateway = TestGateway::start(|c| c.agent.claude_path = Some("/nonexistent/claude".into())).await;
    let client = gateway.operator().await;
    let started = Instant::now();
    let err = client
        .agent(AgentParams {
            channel: Default::default(),
            prompt: "hello".into(),
            session_key: None,
            idempotency_key: "k1".into(),
            timeout_ms: None,
            attachments: Vec::new(),
        })
        .await
        .expect_err("no run is accepted");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(err.code(), Some(ErrorCode::AgentUnavailable));
    let message = err.to_string();
    assert!(message.contains("npm install -g @anthropic-ai/claude-code"), "{message}");
    assert!(message.contains("/nonexistent/claude"), "{message}");

    let health: HealthPayload =
        serde_json::from_value(client.request(method::HEALTH, serde_json::Value::Null).await.unwrap()).unwrap();
    assert!(!health.agent.available);
    gateway.stop().await;
}
