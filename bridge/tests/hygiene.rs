//! Secrets stay secret: key, token and store files are 0600 in 0700 directories, and a canary prompt,
//! answer, a pairing code, the tokens and the bridge's private key never appear in the logs of a full paired session,
//! captured at TRACE through the filter the binaries use.

mod support;

use node_kit::node::Node;
use node_kit::pairing::{PairingRequest, redeem};
use node_kit::protocol::{AgentParams, Scope};
use std::os::unix::fs::PermissionsExt;
use support::gw::messages_api::{MessagesApi, Reply};
use support::gw::{LogCapture, TestGateway, claude_binary};
use support::{TestBridge, connection_string, pair};

#[tokio::test]
async fn secrets_stay_out_of_logs_and_files_are_private() {
    let Some(claude) = claude_binary() else { return };
    let logs = LogCapture::install();

    const PROMPT_CANARY: &str = "canary-prompt-b71c04";
    let api = MessagesApi::start(|_| Reply::text(&["canary-answer-", "e93f"])).await;
    let gateway = TestGateway::with_claude(claude, &api, |_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let (identity, paired) = pair(&bridge, &gateway, &[Scope::Chat]).await;
    let node = Node::builder(identity.clone(), paired).connect().await.unwrap();
    let outcome =
        node.agent(AgentParams::new(format!("remember {PROMPT_CANARY}"))).await.unwrap().outcome().await.unwrap();
    assert_eq!(outcome.result, "canary-answer-e93f");
    node.close();

    // Door 2: the one-time code is a secret too, used and refused again (both paths log).
    let string = connection_string(&bridge, &gateway).await;
    let phone = certs::Identity::generate();
    redeem(&string, &phone, PairingRequest::new("QR phone", "test")).await.expect("redeemed");
    redeem(&string, &certs::Identity::generate(), PairingRequest::new("late", "test")).await.unwrap_err();

    let home = gateway.home.path().to_path_buf();
    let private_files = [
        gateway::home::token_path(&home),
        gateway::home::bridge_token_path(&home),
        gateway::home::paired_store_path(&home),
        bridge::identity::key_file(&home),
        node_kit::running::RunningBridge::path(&home),
    ];
    for file in &private_files {
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
        let dir_mode = std::fs::metadata(file.parent().unwrap()).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o700, "{}", file.parent().unwrap().display());
    }
    let key_pem = std::fs::read_to_string(bridge::identity::key_file(&home)).unwrap();
    let key_body: String = key_pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let secrets = [
        PROMPT_CANARY.to_string(),
        "canary-answer".to_string(),
        gateway.token.clone(),
        gateway.bridge_token.clone(),
        key_body,
        identity.to_pkcs8_pem().lines().filter(|l| !l.starts_with("-----")).collect(),
        string.code.clone(),
    ];
    bridge.stop().await;
    gateway.stop().await;

    let text = logs.text();
    assert!(text.contains("paired node connected") && text.contains("agent run accepted"), "the capture works");
    assert!(text.contains("paired with a one-time code") && text.contains("pairing code refused"), "{text}");
    logs.assert_free_of(&secrets.iter().map(String::as_str).collect::<Vec<_>>());
}
