//! Prompts and tokens never reach the logs, at any level: every log line of a full agent turn and of a
//! refused connection is captured at TRACE, through the filter the binaries use, and searched for canary strings.

mod support;

use node_kit::Client;
use node_kit::protocol::AgentParams;
use support::messages_api::{MessagesApi, Reply};
use support::{LogCapture, TestGateway, claude_binary};

#[tokio::test]
async fn canary_prompt_and_token_never_appear_in_logs() {
    let Some(claude) = claude_binary() else { return };
    let logs = LogCapture::install();

    const PROMPT_CANARY: &str = "canary-prompt-7f3a9c";
    const TOKEN_CANARY: &str = "canary-token-91b2e4";
    let api = MessagesApi::start(|_| Reply::text(&["canary-answer-", "5d1e"])).await;
    let gateway = TestGateway::with_claude(claude, &api, |_| {}).await;
    let client = gateway.operator().await;
    let outcome = client
        .agent(AgentParams {
            channel: Default::default(),
            prompt: format!("please remember {PROMPT_CANARY}"),
            session_key: None,
            idempotency_key: "canary-run".into(),
            timeout_ms: Some(60_000),
            attachments: Vec::new(),
        })
        .await
        .unwrap()
        .outcome()
        .await
        .unwrap();
    assert_eq!(outcome.result, "canary-answer-5d1e");
    assert!(Client::builder(&gateway.url).token(TOKEN_CANARY).connect().await.is_err());
    let real_token = gateway.token.clone();
    gateway.stop().await;

    assert!(logs.text().contains("agent run accepted"), "the capture works");
    logs.assert_free_of(&[PROMPT_CANARY, TOKEN_CANARY, real_token.as_str(), "canary-answer"]);
}
