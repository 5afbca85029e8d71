//! The console with a running bridge: the owner shows a pairing QR code on the page and a device pairs with
//! what it reads, at once; the page sees it paired and connected, and on which path.

#[path = "../../gateway/tests/support/chromium.rs"]
mod chromium;
mod support;

use chromium::{Chromium, click, eval, login_url, screenshot, until};
use node_kit::connection_string::ConnectionString;
use node_kit::node::Node;
use node_kit::pairing::{PairingRequest, redeem};
use std::sync::Arc;
use support::TestBridge;
use support::gw::{TestGateway, skip};

#[tokio::test]
async fn a_device_pairs_with_the_qr_code_the_console_shows() {
    let gateway = TestGateway::start(|config| config.console_port = Some(0)).await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let Some(chromium) = Chromium::start(skip).await else { return };
    let page = chromium.open(&login_url(&gateway.operator().await).await).await;
    until(&page, "document.body.dataset.ready === 'true'").await;
    until(&page, "document.getElementById('live').textContent === 'live'").await;

    click(&page, "#pair-code").await;
    until(&page, "!!document.getElementById('pairing-text')").await;
    until(&page, "document.querySelector('#pairing img').naturalWidth > 0").await;
    let text: String = eval(&page, "document.getElementById('pairing-text').textContent").await;
    let string: ConnectionString = text.parse().expect("the page shows a connection string");
    assert_eq!(string.bridge_id, bridge.id);
    assert_eq!(string.address(), bridge.address());
    screenshot(&page, "pair-code").await;

    let identity = Arc::new(certs::Identity::generate());
    let paired = redeem(&string, &identity, PairingRequest::new("Scanned phone", "android")).await.expect("pairs");
    let _node = Node::builder(identity, paired).connect().await.expect("connects");
    until(&page, "!!document.getElementById('pairing-done')").await;
    let shown = "[...document.querySelectorAll('#devices li')].some(li => li.textContent.includes('Scanned phone') \
                 && li.textContent.includes('connected on the LAN'))";
    until(&page, shown).await;

    // The code was used: showing it again gives a new one.
    click(&page, "#pair-code").await;
    until(&page, &format!("document.getElementById('pairing-text')?.textContent !== {text:?}")).await;
}
