//! Secrets stay secret: key, token and store files are 0600 in 0700 directories, and a canary prompt,
//! answer, the tokens and the bridge's private key never appear in the logs of a full paired session,
//! captured at TRACE through the filter the binaries use.

mod support;

use node_kit::node::Node;
use node_kit::protocol::{AgentParams, Scope};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use support::gw::messages_api::{MessagesApi, Reply};
use support::gw::{TestGateway, claude_binary};
use support::{TestBridge, pair};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn secrets_stay_out_of_logs_and_files_are_private() {
    let Some(claude) = claude_binary() else { return };
    let logs = Captured::default();
    let sink = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter(gateway::logging::filter("trace"))
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .init();

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

    let home = gateway.home.path().to_path_buf();
    let private_files = [
        gateway::home::token_path(&home),
        gateway::home::bridge_token_path(&home),
        gateway::home::paired_store_path(&home),
        bridge::identity::key_file(&home),
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
    ];
    bridge.stop().await;
    gateway.stop().await;

    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(text.contains("paired node connected") && text.contains("agent run accepted"), "the capture works");
    for secret in secrets {
        if let Some(line) = text.lines().find(|l| l.contains(&secret)) {
            panic!("a secret leaked into the logs: {}", &line[..line.len().min(400)]);
        }
    }
}
