//! The owner's commands for nodes, against a real gateway and bridge and a paired node: `lanyard invoke
//! … --out` writes the picture, `lanyard nodes list` shows what each node offers and its state.

#[path = "../../../bridge/tests/support/mod.rs"]
mod support;

use futures_util::future::BoxFuture;
use node_kit::CommandHandler;
use node_kit::node::Node;
use node_kit::protocol::{
    AppState, ErrorShape, ImageFormat, NodeAdvert, NodeCommandRequest, Scope, SnapshotResult, VOICE_EVENT,
};
use serde_json::{Value, json};
use std::process::Output;
use std::time::Duration;
use support::gw::{TestGateway, eventually};
use support::{TestBridge, pair};

/// A 2×1 PNG: one red pixel, one blue.
fn png() -> Vec<u8> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, 2, 1);
    encoder.set_color(png::ColorType::Rgb);
    encoder.write_header().unwrap().write_image_data(&[255, 0, 0, 0, 0, 255]).unwrap();
    bytes
}

/// A test node whose screen always shows [`png`].
struct FixedScreen;

impl CommandHandler for FixedScreen {
    fn handle(&self, _: NodeCommandRequest) -> BoxFuture<'static, Result<Value, ErrorShape>> {
        let shot = SnapshotResult {
            format: ImageFormat::Png,
            width: 2,
            height: 1,
            base64: data_encoding::BASE64.encode(&png()),
        };
        Box::pin(async move { Ok(serde_json::to_value(shot).unwrap()) })
    }
}

async fn lanyard(gateway: &TestGateway, args: &[&str]) -> Output {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_lanyard"))
        .arg("--url")
        .arg(&gateway.url)
        .args(args)
        .env("LANYARD_HOME", gateway.home.path())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "lanyard {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[tokio::test]
async fn invoke_writes_the_snapshot_and_nodes_list_shows_caps_state_and_voice() {
    let gateway = TestGateway::start(|_| {}).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let (identity, paired) = pair(&bridge, &gateway, &[Scope::Chat, Scope::Voice]).await;
    let node_id = identity.id().to_string();
    let advert = NodeAdvert { caps: vec!["screen".into()], commands: vec!["screen.snapshot".into()] };
    let node = Node::builder(identity, paired).commands(advert, FixedScreen).connect().await.unwrap();
    node.event(VOICE_EVENT, json!({ "available": true })).await.unwrap();
    node.set_app_state(AppState::Background).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let list = eventually(Duration::from_secs(10), async || {
        let out = lanyard(&gateway, &["nodes", "list"]).await;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("background").then_some(text)
    })
    .await;
    let header = list.lines().next().unwrap();
    assert!(header.contains("CAPS") && header.contains("STATE") && header.contains("VOICE"), "{list}");
    let row = list.lines().find(|l| l.starts_with(&node_id)).unwrap();
    assert!(row.contains("screen") && row.contains("background") && row.trim_end().ends_with("on"), "{row}");
    let json_list = lanyard(&gateway, &["nodes", "list", "--json"]).await;
    let json_list: Value = serde_json::from_slice(&json_list.stdout).unwrap();
    assert_eq!(json_list["nodes"][0]["state"], "background");
    assert_eq!(json_list["nodes"][0]["voice"], true);

    node.set_app_state(AppState::Foreground).await.unwrap();
    let path = dir.path().join("shot.png");
    // The node named by the start of its ID, as a person types it from the list.
    let out = lanyard(&gateway, &["invoke", &node_id[..9], "screen.snapshot", "--out", path.to_str().unwrap()]).await;
    assert_eq!(std::fs::read(&path).unwrap(), png());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("PNG, 2x1") && said.contains(&format!("{} bytes", png().len())), "{said}");
    bridge.stop().await;
    gateway.stop().await;
}
