//! Two hosts on one machine (see `netns`): the computer (gateway, real claude, bridge advertising on its
//! LAN interface) in namespace A, a phone (node-kit) in namespace B. The phone finds the bridge over real
//! mDNS with no address typed, pairs through door 1 (approved with the `lanyard` CLI) or door 2 (the
//! string `lanyard pair --string` prints), talks to the agent, and keeps working across a bridge restart
//! and an address change of host A. Spoofed advertisements get it nowhere.

mod netns;
#[path = "../../../bridge/tests/support/mod.rs"]
mod support;

use certs::Identity;
use mdns_sd::ServiceInfo;
use netns::{A_IP, Host, LAN, TestNet};
use node_kit::connection_string::ConnectionString;
use node_kit::discovery::{DiscoveredBridge, Discovery, MdnsDiscovery, SERVICE_TYPE, id_hint, txt};
use node_kit::node::{Backoff, Link, Node};
use node_kit::pairing::{PairedBridge, PairingRequest, redeem, request_pairing};
use node_kit::protocol::{AgentParams, PROTOCOL_VERSION, Scope, method};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::gw::messages_api::{MessagesApi, Reply};
use support::gw::{TestGateway, claude_binary, eventually};
use support::{Middleman, TestBridge, TlsImpostor, pending_requests};

const INSTANCE: &str = "Home computer";

/// Runs `body` on a controller runtime; the hosts have their own.
fn two_hosts(body: impl AsyncFnOnce(&TestNet, Host, Host)) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let Some(net) = TestNet::create() else { return };
    let (a, b) = (net.host_a(), net.host_b());
    let control = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    control
        .block_on(async { tokio::time::timeout(Duration::from_secs(120), body(&net, a, b)).await })
        .expect("the test finishes in time");
}

/// The computer on host A: the gateway with the real claude against a scripted Messages API.
async fn computer(a: &Host) -> Option<(Arc<MessagesApi>, Arc<TestGateway>)> {
    let claude = claude_binary()?;
    Some(
        a.run(async move {
            let api = Arc::new(MessagesApi::start(|_| Reply::text(&["Hello", " across", " the LAN"])).await);
            let gateway = Arc::new(TestGateway::with_claude(claude, &api, |_| {}).await);
            (api, gateway)
        })
        .await,
    )
}

/// The bridge on every address of host A, advertised on its LAN interface only.
async fn bridge(a: &Host, gateway: &Arc<TestGateway>, mdns: bool) -> TestBridge {
    let gateway = gateway.clone();
    a.run(async move {
        TestBridge::start(&gateway, |c| {
            c.bind = "0.0.0.0:0".parse().unwrap();
            c.mdns.enabled = mdns;
            c.mdns.interfaces = vec![LAN.into()];
            c.mdns.instance = Some(INSTANCE.into());
            c.mdns.address_check = Duration::from_secs(1);
        })
        .await
    })
    .await
}

fn lan_discovery() -> MdnsDiscovery {
    MdnsDiscovery::new().interfaces([LAN])
}

/// What the phone on host B discovers first.
async fn discover(b: &Host) -> DiscoveredBridge {
    b.run(async {
        let mut found = lan_discovery().watch().unwrap();
        found.find(Duration::from_secs(20), |_| true).await.expect("the bridge is discovered")
    })
    .await
}

/// `lanyard ARGS` on host A against its gateway.
async fn lanyard(a: &Host, gateway: &TestGateway, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_lanyard"));
    command.arg("--url").arg(&gateway.url).args(args).env("LANYARD_HOME", gateway.home.path());
    let out = a.run(async move { command.output().await.unwrap() }).await;
    assert!(out.status.success(), "lanyard {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// A paired node on host B that finds its bridge over mDNS, with short timers so moves show quickly.
async fn phone(b: &Host, identity: Arc<Identity>, paired: PairedBridge) -> Node {
    b.run(async move {
        Node::builder(identity, paired)
            .discovery(lan_discovery())
            .keepalive(Duration::from_millis(500))
            .handshake_timeout(Duration::from_secs(2))
            .backoff(Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(1) })
            .connect()
            .await
            .expect("the phone connects")
    })
    .await
}

/// One agent turn from the phone; the answer's text.
async fn ask(b: &Host, node: &Node, prompt: &str) -> String {
    let (node, prompt) = (node.clone(), prompt.to_string());
    b.run(async move {
        // While the phone is still finding the bridge, a call says NotConnected; keep asking a while.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let run = loop {
            match node.agent(AgentParams::new(prompt.clone())).await {
                Ok(run) => break run,
                Err(e) if tokio::time::Instant::now() < deadline => wait_a_little(&e).await,
                Err(e) => panic!("the phone never got through: {e}"),
            }
        };
        run.outcome().await.expect("the agent answers").result
    })
    .await
}

async fn wait_a_little(e: &node_kit::ClientError) {
    eprintln!("phone: {e}; retrying");
    tokio::time::sleep(Duration::from_millis(200)).await;
}

fn port_of(address: &str) -> u16 {
    address.parse::<SocketAddr>().unwrap().port()
}

#[test]
fn a_phone_on_another_host_discovers_pairs_by_approval_and_survives_restart_and_move() {
    two_hosts(async |net, a, b| {
        let Some((api, gateway)) = computer(&a).await else { return };
        let started = Instant::now();
        let bridge = bridge(&a, &gateway, true).await;
        let found = discover(&b).await;
        let discovery_time = started.elapsed();
        let address = format!("{A_IP}:{}", bridge.addr.port());
        assert_eq!(
            found.addresses,
            std::slice::from_ref(&address),
            "the LAN address only; no loopback, no gateway port"
        );
        assert_eq!(found.hint.id_hint, Some(id_hint(&bridge.id)));
        assert_eq!(found.hint.protocol, Some(PROTOCOL_VERSION));

        // The gateway is loopback-only on host A: host B cannot reach it. The bridge port it can.
        let gateway_port = gateway.addr.port();
        let (to_gateway, to_bridge) = b
            .run(async move {
                let gateway = tokio::net::TcpStream::connect((A_IP, gateway_port)).await;
                let bridge = tokio::net::TcpStream::connect(address.as_str()).await;
                (gateway.map(drop), bridge.map(drop))
            })
            .await;
        assert!(to_gateway.is_err(), "the gateway port must not be reachable from the LAN");
        to_bridge.expect("the bridge port is reachable from the LAN");

        // Door 1 at the discovered address; the owner compares the SAS and approves with the CLI.
        let identity = Arc::new(Identity::generate());
        let first = found.addresses[0].clone();
        let (id, request) = (identity.clone(), PairingRequest::new("Phone on B", "test").scopes([Scope::Chat]));
        let pending = b.run(async move { request_pairing(&first, &id, request).await.unwrap() }).await;
        assert_eq!(pending.bridge_id(), bridge.id);
        let shown = gateway.clone();
        let shown = a.run(async move { pending_requests(&shown).await }).await;
        assert_eq!(shown[0].request.sas, pending.sas(), "both screens show the same code");
        assert_eq!(shown[0].request.address, netns::B_IP);
        lanyard(&a, &gateway, &["nodes", "approve", pending.request_id()]).await;
        let approved_at = Instant::now();
        let paired = b.run(pending.approved()).await.expect("approved");
        let node = phone(&b, identity, paired).await;
        assert_eq!(ask(&b, &node, "first question").await, "Hello across the LAN");
        let approval_to_answer = approved_at.elapsed();
        eprintln!(
            "two hosts: bridge start to discovery {discovery_time:?}; approval to first answered call {approval_to_answer:?}"
        );

        // A bridge restart: the phone comes back by itself, pinned as before.
        let bridge = a.run(bridge.restart()).await;
        assert_eq!(ask(&b, &node, "after the restart").await, "Hello across the LAN");

        // Host A moves to another address; the old one vanishes without a word. The phone notices the
        // silence, and mDNS (re-announced by the bridge) says where the computer went.
        net.move_a("10.99.0.3");
        assert_eq!(ask(&b, &node, "after the move").await, "Hello across the LAN");
        assert_eq!(node.bridge().address, format!("10.99.0.3:{}", bridge.addr.port()));
        assert_eq!(node.client().unwrap().peer_key(), Some(bridge.id));
        assert_eq!(api.requests_with("after the move").len(), 1);
    });
}

#[test]
fn a_phone_on_another_host_pairs_with_the_string_lanyard_pair_prints() {
    two_hosts(async |_net, a, b| {
        let Some((_api, gateway)) = computer(&a).await else { return };
        let bridge = bridge(&a, &gateway, true).await;
        let out = lanyard(&a, &gateway, &["pair", "--string"]).await;
        let printed = String::from_utf8(out.stdout).unwrap();
        let string: ConnectionString = printed.trim().parse().expect("one connection string");
        assert_eq!(string.host, A_IP, "the string names the LAN address");
        assert_eq!((string.port, string.bridge_id), (bridge.addr.port(), bridge.id));

        let identity = Arc::new(Identity::generate());
        let (id, s) = (identity.clone(), string.clone());
        let paired = b
            .run(async move { redeem(&s, &id, PairingRequest::new("QR phone on B", "test")).await })
            .await
            .expect("the code pairs the phone with no prompt");
        let g = gateway.clone();
        assert!(a.run(async move { pending_requests(&g).await }).await.is_empty());
        let node = phone(&b, identity, paired).await;
        assert_eq!(ask(&b, &node, "hello by QR").await, "Hello across the LAN");

        // Single use: the same string again is refused.
        let again = b
            .run(async move { redeem(&string, &Identity::generate(), PairingRequest::new("again", "test")).await })
            .await
            .unwrap_err();
        assert!(again.to_string().contains("already used"), "{again}");
    });
}

/// Announces `INSTANCE` as the real bridge would, copying its TXT hint, but pointing at `port`: what
/// an attacker's laptop on the same Wi-Fi can do. Runs as its own mDNS responder on host A, without the
/// polite probing, so it claims the name outright.
async fn spoof(a: &Host, real: &DiscoveredBridge, port: u16) -> mdns_sd::ServiceDaemon {
    let hint = real.hint.clone();
    a.run(async move {
        let daemon = node_kit::discovery::mdns_daemon(mdns_sd::MDNS_PORT, &[LAN.to_string()]).unwrap();
        let properties = [
            (txt::PROTOCOL, PROTOCOL_VERSION.to_string()),
            (txt::ID_HINT, hint.id_hint.unwrap()),
            (txt::NAME, hint.name.unwrap()),
        ];
        let mut service =
            ServiceInfo::new(SERVICE_TYPE, INSTANCE, "attacker.local.", A_IP, port, &properties[..]).unwrap();
        service.set_requires_probe(false);
        daemon.register(service).unwrap();
        daemon
    })
    .await
}

#[test]
fn spoofed_advertisements_do_not_fool_paired_or_unpaired_phones() {
    two_hosts(async |_net, a, b| {
        let gateway = Arc::new(a.run(TestGateway::start(|_| {})).await);
        let real = bridge(&a, &gateway, true).await;
        let found = discover(&b).await;
        let string = {
            let (g, port, id) = (gateway.clone(), real.addr.port(), real.id);
            a.run(async move {
                let issued = g.operator().await.request(method::PAIR_CODE, serde_json::Value::Null).await.unwrap();
                let code = issued["code"].as_str().unwrap().to_string();
                ConnectionString { host: A_IP.into(), port, bridge_id: id, code }
            })
            .await
        };
        let identity = Arc::new(Identity::generate());
        let id = identity.clone();
        let paired = b.run(async move { redeem(&string, &id, PairingRequest::new("phone", "test")).await }).await;
        let node = phone(&b, identity, paired.unwrap()).await;

        // The real bridge goes away; an impostor (another key, another port) claims its name and hint.
        let impostor = a.run(TlsImpostor::start("0.0.0.0:0".parse().unwrap())).await;
        assert_ne!(impostor.id, real.id);
        let real_config_port = real.addr.port();
        a.run(real.stop()).await;
        let spoofer = spoof(&a, &found, impostor.addr.port()).await;
        let seen_spoof = b
            .run(async move {
                let mut browse = lan_discovery().watch().unwrap();
                browse
                    .find(Duration::from_secs(20), |f| f.addresses.iter().any(|a| port_of(a) != real_config_port))
                    .await
            })
            .await
            .expect("the phone hears the spoofed advertisement");
        assert_eq!(seen_spoof.instance, found.instance, "same name");
        assert_eq!(seen_spoof.hint.id_hint, found.hint.id_hint, "same hint");
        // The phone does dial the advertised impostor, and refuses its key in the TLS handshake: twice, so
        // it was refused and tried again, still pinned. Not one handshake with the impostor completes.
        let outcomes = eventually(Duration::from_secs(30), async || {
            let outcomes = impostor.outcomes();
            (outcomes.len() >= 2).then_some(outcomes)
        })
        .await;
        for outcome in &outcomes {
            let refusal = outcome.as_ref().expect_err("the paired phone must not talk to the impostor");
            assert!(refusal.contains("alert"), "the phone ended the handshake: {refusal}");
        }
        assert!(!matches!(*node.link().borrow(), Link::Connected(_)), "the phone is connected to nothing");
        // An unpaired phone pairing with the spoofed "bridge" (a middleman relaying to the real one) sees
        // a code that differs from the owner's screen.
        a.run(async move {
            let withdrawn = spoofer.unregister(&format!("{INSTANCE}.{SERVICE_TYPE}")).unwrap();
            let _ = tokio::time::timeout(Duration::from_secs(2), withdrawn.recv_async()).await;
            let _ = spoofer.shutdown();
        })
        .await;
        let real = bridge(&a, &gateway, false).await;
        let real_address = format!("127.0.0.1:{}", real.addr.port());
        let middle = a.run(async move { Middleman::start(real_address, "0.0.0.0:0").await }).await;
        let _spoofer = spoof(&a, &found, middle.addr.port()).await;
        let middle_port = middle.addr.port();
        let pending = b
            .run(async move {
                let mut browse = lan_discovery().watch().unwrap();
                let spoofed = browse
                    .find(Duration::from_secs(20), |f| f.addresses.iter().any(|a| port_of(a) == middle_port))
                    .await
                    .expect("the new phone discovers the spoofed bridge");
                let fresh = Identity::generate();
                request_pairing(&spoofed.addresses[0], &fresh, PairingRequest::new("new phone", "test")).await.unwrap()
            })
            .await;
        let g = gateway.clone();
        let shown = a.run(async move { pending_requests(&g).await }).await;
        let shown =
            shown.iter().find(|p| p.request.node_id == middle.posing_as_node).expect("the owner sees a request");
        assert_ne!(shown.request.sas, pending.sas(), "the screens disagree, so the owner rejects");
        assert_eq!(pending.bridge_id(), middle.posing_as_bridge);
    });
}

/// The example node (`node-kit/examples/phone.rs`), built beside this test by `cargo test --workspace`.
fn phone_example() -> Option<PathBuf> {
    let deps = std::env::current_exe().ok()?.parent()?.to_path_buf();
    let example = deps.parent()?.join("examples").join("phone");
    if example.is_file() {
        return Some(example);
    }
    support::gw::skip(&format!("{} is missing: run `cargo test --workspace`", example.display()));
    None
}

#[test]
fn the_example_phone_pairs_by_string_then_finds_the_bridge_by_itself() {
    two_hosts(async |_net, a, b| {
        let Some(example) = phone_example() else { return };
        let Some((_api, gateway)) = computer(&a).await else { return };
        let _bridge = bridge(&a, &gateway, true).await;
        let string = String::from_utf8(lanyard(&a, &gateway, &["pair", "--string"]).await.stdout).unwrap();
        let state = tempfile::tempdir().unwrap();
        let run = |args: Vec<String>| {
            let mut command = tokio::process::Command::new(&example);
            command.arg("--state").arg(state.path()).args(["--interface", LAN]).args(args);
            async move { command.output().await.unwrap() }
        };
        let first = b.run(run(vec!["--connect".into(), string.trim().into(), "first from the example".into()])).await;
        assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
        assert_eq!(String::from_utf8_lossy(&first.stdout), "Hello across the LAN\n");
        // Paired now: the next run has no string and no address, only mDNS and the saved pairing.
        let again = b.run(run(vec!["second from the example".into()])).await;
        assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
        assert_eq!(String::from_utf8_lossy(&again.stdout), "Hello across the LAN\n");
    });
}
