//! The `lanyard` binary as a user runs it: help texts, refusals, `lanyard up` with a device paired
//! through `lanyard nodes` and through `lanyard pair`'s connection string, the bridge found over mDNS by
//! another process, and a gateway started from the CLI answering `lanyard agent` with the real claude
//! against the scripted Messages API. Every server listens on 127.0.0.1 only, and mDNS runs only on `lo`
//! on a private port (test.sh runs the suites in a network namespace with only loopback up).

#[path = "up/banner.rs"]
mod banner;
#[path = "../../../bridge/tests/support/mod.rs"]
mod support;

use certs::Identity;
use node_kit::connection_string::ConnectionString;
use node_kit::discovery::{Discovery, MdnsDiscovery, id_hint};
use node_kit::node::Node;
use node_kit::pairing::{PairingRequest, redeem, request_pairing};
use node_kit::protocol::method;
use node_kit::protocol::{ErrorCode, Scope};
use node_kit::running::{RunningBridge, RunningGateway};
use serde_json::json;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;
use support::gw::messages_api::{Gate, MessagesApi, Reply};
use support::gw::{awaited, claude_binary, claude_env, connect_and_ask, eventually};
use support::relay::LocalRelay;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

fn lanyard(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lanyard"))
        .args(args)
        .env("LANYARD_HOME", home)
        .env_remove("LANYARD_GATEWAY_URL")
        .output()
        .expect("lanyard runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn every_command_explains_itself() {
    let home = tempfile::tempdir().unwrap();
    for (args, phrase) in [
        (vec!["--help"], "loopback-only gateway"),
        (vec!["--help"], "Start everything with `lanyard up`, then pair a device"),
        (vec!["--help"], "run `lanyard pair` and scan the QR"),
        (vec!["up", "--help"], "the gateway and the bridge together"),
        (vec!["up", "--help"], "--bridge-bind"),
        (vec!["up", "--help"], "run `lanyard pair` and scan its QR code"),
        (vec!["up", "--help"], "--mdns <on|off>"),
        (vec!["up", "--help"], "--mdns-interface <NAME>"),
        (vec!["up", "--help"], "--mdns-name <NAME>"),
        (vec!["gateway", "--help"], "loopback-only WebSocket server"),
        (vec!["bridge", "--help"], "LAN-facing TLS server that devices pair with"),
        (vec!["bridge", "--help"], "--key-store"),
        (vec!["bridge", "--help"], "advertises itself over mDNS"),
        (vec!["bridge", "--help"], "--mdns <on|off>"),
        (vec!["bridge", "--help"], "--mdns-interface <NAME>"),
        (vec!["bridge", "--help"], "--mdns-name <NAME>"),
        (vec!["pair", "--help"], "Pair a device by QR code"),
        (vec!["pair", "--help"], "lanyard://HOST:PORT?id=BRIDGE_ID&code=CODE"),
        (vec!["pair", "--help"], "The code works once and expires after 5 minutes"),
        (vec!["pair", "--help"], "running `lanyard pair` again retires it"),
        (vec!["pair", "--help"], "Ctrl-C stops waiting"),
        (vec!["pair", "--help"], "--string"),
        (vec!["pair", "--help"], "headless hosts and scripts"),
        (vec!["pair", "--help"], "--scopes <SCOPES>"),
        (vec!["pair", "--help"], "--host <HOST>"),
        (vec!["agent", "--help"], "stream its answer"),
        (vec!["nodes", "--help"], "answer their pairing requests"),
        (vec!["nodes", "list", "--help"], "connected now"),
        (vec!["nodes", "pending", "--help"], "pairing requests waiting for your decision"),
        (vec!["nodes", "approve", "--help"], "someone is in the middle"),
        (vec!["nodes", "approve", "--help"], "--scopes"),
        (vec!["nodes", "reject", "--help"], "Reject a pairing request"),
        (vec!["nodes", "rename", "--help"], "another name"),
        (vec!["nodes", "revoke", "--help"], "close its live connections"),
        (vec!["invoke", "--help"], "Run a command on a connected node"),
    ] {
        let out = lanyard(home.path(), &args);
        assert!(out.status.success(), "{args:?}");
        assert!(text(&out.stdout).contains(phrase), "{args:?}: {}", text(&out.stdout));
    }
    // The mDNS port is for tests only.
    for command in ["up", "bridge"] {
        assert!(!text(&lanyard(home.path(), &[command, "--help"]).stdout).contains("--mdns-port"));
    }
}

#[test]
fn refusals_say_what_to_do() {
    let home = tempfile::tempdir().unwrap();
    let out = lanyard(home.path(), &["gateway", "--bind", "0.0.0.0", "--port", "0"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("loopback"), "{}", text(&out.stderr));

    let out = lanyard(home.path(), &["agent", "hello"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("lanyard gateway"), "{}", text(&out.stderr));

    let out = lanyard(home.path(), &["invoke", "n1", "screen.eval", "--params", "{not json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--params is not valid JSON"), "{}", text(&out.stderr));

    // The bridge needs the token a gateway creates; it says so before listening anywhere.
    let out = lanyard(home.path(), &["bridge", "--bridge-bind", "127.0.0.1", "--bridge-port", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("start the gateway first with `lanyard up`"), "{}", text(&out.stderr));

    // A port already taken (another Lanyard, say) is named with the flag of the command that was run.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = lanyard(home.path(), &["up", "--port", &port, "--bridge-port", "0", "--no-console", "--mdns", "off"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("`lanyard up --port` picks another port"), "{}", text(&out.stderr));

    // Malformed scopes are refused before any connection.
    let out = lanyard(home.path(), &["nodes", "approve", "r1", "--scopes", "chat,admin"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("the scopes are chat and voice"), "{}", text(&out.stderr));
}

/// A port on which nothing answers for as long as the socket lives: bound, so nobody else gets it, but
/// not listening, so a connection to it is refused.
fn silent_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// `lanyard gateway` on a free loopback port, answering with this home's token. A port found free can
/// be taken by another process before the gateway binds it; then the gateway exits, and another port is
/// tried. Checking the token makes sure the port answering is this gateway's, not someone else's.
async fn gateway(home: &Path, configure: impl Fn(&mut tokio::process::Command)) -> (Child, u16) {
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut command = serve(home, &["gateway", "--port", &port.to_string(), "--bind", "127.0.0.1"]);
        configure(&mut command);
        let mut gateway = command.spawn().unwrap();
        let url = format!("ws://127.0.0.1:{port}");
        let ours = eventually(Duration::from_secs(20), async || {
            if let Ok(Some(_)) = gateway.try_wait() {
                return Some(false);
            }
            let token = std::fs::read_to_string(home.join("gateway/token")).ok()?;
            let client = node_kit::Client::builder(&url).token(token.trim()).connect().await.ok()?;
            client.request("health", serde_json::Value::Null).await.ok().map(|_| true)
        })
        .await;
        if ours {
            return (gateway, port);
        }
        let out = gateway.wait_with_output().await.unwrap();
        assert!(text(&out.stderr).contains("in use"), "the gateway did not start: {}", text(&out.stderr));
    }
    panic!("no free port for the gateway in five tries");
}

/// A UDP port for one test's mDNS traffic, so no test advertises on 5353.
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `lanyard ARGS` against the gateway at `url`, run off the async threads (it blocks until it exits).
async fn lanyard_at(home: &Path, url: &str, args: &[&str]) -> Output {
    let args: Vec<&str> = ["--url", url].into_iter().chain(args.iter().copied()).collect();
    lanyard_in(home, &args).await
}

/// `lanyard ARGS` as a user types it, with no `--url`: it finds the gateway of `home` by itself.
async fn lanyard_in(home: &Path, args: &[&str]) -> Output {
    let home = home.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let run = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        lanyard(&home, &args)
    });
    tokio::time::timeout(Duration::from_secs(20), run).await.expect("lanyard finishes").unwrap()
}

/// `lanyard ARGS` that must succeed; its stdout.
async fn lanyard_ok(home: &Path, url: &str, args: &[&str]) -> String {
    let out = lanyard_at(home, url, args).await;
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// A long-running `lanyard` command (a server), killed if the test panics.
fn serve(home: &Path, args: &[&str]) -> tokio::process::Command {
    serve_with_descriptors(home, args, None)
}

/// [`serve`] with the descriptor limit set first by `ulimit` with `limit`: `-n 256` sets soft and hard,
/// `-Sn 256` the soft limit only.
fn serve_with_descriptors(home: &Path, args: &[&str], limit: Option<&str>) -> tokio::process::Command {
    let mut command = match limit {
        None => tokio::process::Command::new(env!("CARGO_BIN_EXE_lanyard")),
        Some(limit) => {
            let mut shell = tokio::process::Command::new("sh");
            shell.arg("-c").arg(format!("ulimit {limit} && exec \"$0\" \"$@\"")).arg(env!("CARGO_BIN_EXE_lanyard"));
            shell
        }
    };
    command
        .args(args)
        .env("LANYARD_HOME", home)
        .env("RUST_LOG", "warn")
        .env_remove("LANYARD_GATEWAY_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

async fn listening(port: u16) {
    eventually(Duration::from_secs(10), async || tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()).await;
}

/// SIGTERM ends a server cleanly (exit status 0) and promptly; what it wrote on stderr.
async fn terminate(server: Child) -> String {
    Command::new("kill").args(["-TERM", &server.id().unwrap().to_string()]).status().unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), server.wait_with_output())
        .await
        .expect("the server stops within 10 s of SIGTERM")
        .unwrap();
    assert!(out.status.success(), "{:?}: {}", out.status, text(&out.stderr));
    text(&out.stderr)
}

/// `lanyard up` on free loopback ports, started and past its banner.
struct Up {
    process: Child,
    home: tempfile::TempDir,
    url: String,
    bridge_port: u16,
    bridge_addr: String,
    banner: String,
}

impl Up {
    /// Without mDNS.
    async fn start() -> Up {
        Up::start_with(&["--mdns", "off"]).await
    }

    async fn start_with(extra: &[&str]) -> Up {
        Up::launch(extra, None, |_| {}).await
    }

    /// `lanyard up` with `extra` flags, under a descriptor limit when given, its command adjusted by `configure`.
    async fn launch(
        extra: &[&str],
        descriptors: Option<&str>,
        configure: impl FnOnce(&mut tokio::process::Command),
    ) -> Up {
        let home = tempfile::tempdir().unwrap();
        // Ports of the system's choosing, read back from the banner: nothing can take them in between.
        let mut command =
            serve_with_descriptors(home.path(), &["up", "--port", "0", "--bridge-port", "0"], descriptors);
        configure(&mut command);
        let mut process = command
            .args(["--bridge-bind", "127.0.0.1", "--key-store", "file"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let banner = banner::read(process.stdout.take().unwrap(), Duration::from_secs(10)).await;
        let after = |label: &str| banner::after(&banner, label);
        let url = after("Gateway:");
        let bridge_addr = after("Devices use:");
        let bridge_port = bridge_addr.rsplit(':').next().unwrap().parse().unwrap();
        assert!(url.starts_with("ws://127.0.0.1:") && bridge_addr.starts_with("127.0.0.1:"), "{banner}");
        Up { process, home, url, bridge_port, bridge_addr, banner }
    }

    async fn lanyard(&self, args: &[&str]) -> Output {
        lanyard_at(self.home.path(), &self.url, args).await
    }

    async fn lanyard_ok(&self, args: &[&str]) -> String {
        lanyard_ok(self.home.path(), &self.url, args).await
    }

    /// The bridge ID, computed from the key the first run stored under the home.
    fn bridge_id(&self) -> String {
        let pem = std::fs::read_to_string(bridge::identity::key_file(self.home.path())).unwrap();
        Identity::from_pkcs8_pem(&pem).unwrap().id().to_string()
    }
}

#[tokio::test]
async fn up_starts_gateway_and_bridge_and_nodes_commands_reach_it() {
    let up = Up::start().await;
    assert!(up.banner.contains(&format!("Bridge ID:    {}", up.bridge_id())), "{}", up.banner);
    assert!(up.banner.contains(&format!("Devices use:  {}\n", up.bridge_addr)), "{}", up.banner);
    assert!(up.banner.contains("mDNS:         off"), "{}", up.banner);
    assert!(up.banner.contains("To pair a device: run `lanyard pair` and scan its QR code"), "{}", up.banner);
    assert!(up.banner.contains(&format!("Gateway:      {}", up.url)), "{}", up.banner);
    assert!(up.banner.contains("identity.pem (mode 0600)"), "{}", up.banner);
    assert!(up.banner.starts_with("First run: created the bridge's key and the gateway's tokens in "), "{}", up.banner);
    // Started from a test, stdin is not a terminal: approvals go through the console or `lanyard nodes`.
    assert!(
        up.banner.contains("approve pairing requests in the console or with `lanyard nodes pending|approve|reject`"),
        "{}",
        up.banner
    );

    assert!(up.lanyard_ok(&["nodes", "list"]).await.starts_with("no paired devices; pair one with"));
    assert_eq!(up.lanyard_ok(&["nodes", "pending"]).await, "no pairing requests waiting\n");
    let out = up.lanyard(&["nodes", "approve", "nonexistent"]).await;
    assert_eq!(out.status.code(), Some(1));
    let error = text(&out.stderr);
    assert!(error.contains("no pairing request nonexistent is waiting"), "{error}");
    assert!(error.contains("`lanyard nodes pending` lists the ones waiting now"), "{error}");

    // Typed with no --url, a command finds `up` on the port it got, not the default one.
    let out = lanyard_in(up.home.path(), &["nodes", "list"]).await;
    assert!(text(&out.stdout).starts_with("no paired devices"), "{}", text(&out.stderr));

    terminate(up.process).await;
    // A clean stop takes the record away; a gateway that does not answer is named with the way to another.
    assert!(!RunningGateway::path(up.home.path()).exists());
    // Started again on the same home: nothing is created, so nothing is said about it.
    let mut again = serve(up.home.path(), &["up", "--port", "0", "--bridge-port", "0", "--bridge-bind", "127.0.0.1"])
        .args(["--key-store", "file", "--mdns", "off"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let banner = banner::read(again.stdout.take().unwrap(), Duration::from_secs(10)).await;
    assert!(banner.starts_with("Lanyard is up."), "{banner}");
    terminate(again).await;
    let (_held, port) = silent_port();
    let out = lanyard_at(up.home.path(), &format!("ws://127.0.0.1:{port}"), &["nodes", "list"]).await;
    let error = text(&out.stderr);
    assert!(error.contains("start it with `lanyard up`, or pass --url with the address it listens on"), "{error}");
}

#[tokio::test]
async fn up_serves_the_console_and_open_prints_a_link_that_logs_in_once() {
    let up = Up::start().await;
    let console = up.banner.lines().find_map(|l| l.trim_start().strip_prefix("Console:")).expect("a console line");
    let console = console.split_whitespace().next().unwrap().to_string();
    assert!(console.starts_with("http://127.0.0.1:"), "{}", up.banner);
    let link = up.lanyard_ok(&["open", "--print"]).await;
    let link = link.trim();
    assert!(link.starts_with(&format!("{console}/login?token=")), "{link}");
    let get = async |path: &str| {
        let addr = console.trim_start_matches("http://");
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        tokio::io::AsyncWriteExt::write_all(&mut tcp, request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut tcp, &mut answer).await.unwrap();
        answer
    };
    let path = link.strip_prefix(&console).unwrap();
    let first = get(path).await;
    assert!(first.starts_with("HTTP/1.1 303") && first.contains("lanyard_console="), "{first}");
    assert!(get(path).await.starts_with("HTTP/1.1 401"), "a link logs in once");
    let help = up.lanyard_ok(&["open", "--help"]).await;
    assert!(help.contains("once") && help.contains("--print"), "{help}");
}

/// With no terminal (a login service), a pairing request raises a desktop notification that points to the
/// console; the device's name reaches the notifier as an argument, whatever it contains.
#[tokio::test]
async fn without_a_terminal_a_pairing_request_raises_a_desktop_notification() {
    let bin = tempfile::tempdir().unwrap();
    let record = bin.path().join("notified");
    let notifier = bin.path().join("notify-send");
    std::fs::write(&notifier, format!("#!/bin/sh\nprintf '%s\\n' \"$@\" >> '{}'\n", record.display())).unwrap();
    std::fs::set_permissions(&notifier, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.path().display(), std::env::var("PATH").unwrap_or_default());
    let up = Up::launch(&["--mdns", "off"], None, |command| {
        command.env("DISPLAY", ":99").env("PATH", &path);
    })
    .await;
    let identity = Identity::generate();
    let request = PairingRequest::new("Eve's \"tablet\"; rm -rf ~", "android").scopes([Scope::Chat]);
    let _pending = request_pairing(&up.bridge_addr, &identity, request).await.unwrap();
    let shown = eventually(Duration::from_secs(10), async || std::fs::read_to_string(&record).ok()).await;
    assert!(shown.contains("Eve's \"tablet\"; rm -rf ~ asks to pair with Lanyard"), "{shown}");
    assert!(shown.contains("approve it in the console (http://127.0.0.1:"), "{shown}");
}

#[tokio::test]
async fn a_device_pairs_through_up_and_is_managed_with_nodes() {
    let up = Up::start().await;
    let identity = Arc::new(Identity::generate());
    let node_id = identity.id().to_string();

    // The device asks; the owner sees the same code and the same bridge the device sees.
    let request = PairingRequest::new("Ada's phone", "ios").model("iPhone15,2").scopes([Scope::Chat, Scope::Voice]);
    let pending = request_pairing(&up.bridge_addr, &identity, request).await.unwrap();
    assert_eq!(pending.bridge_id().to_string(), up.bridge_id());
    let shown = up.lanyard_ok(&["nodes", "pending"]).await;
    assert!(shown.contains("Ada's phone (ios, iPhone15,2) at 127.0.0.1\n"), "{shown}");
    assert!(shown.contains("asks for: chat,voice"), "{shown}");
    assert!(shown.contains(&format!("code:     {}", pending.sas())), "{shown}");
    assert!(shown.contains(&format!("request:  {}", pending.request_id())), "{shown}");
    assert!(shown.contains("expires:  in 5 min"), "{shown}");
    let json: serde_json::Value = serde_json::from_str(&up.lanyard_ok(&["nodes", "pending", "--json"]).await).unwrap();
    assert_eq!(json["requests"][0]["sas"], pending.sas());

    // Approved with a narrower grant than asked for.
    let approved = up.lanyard_ok(&["nodes", "approve", pending.request_id(), "--scopes", "chat"]).await;
    assert_eq!(approved, format!("approved: \"Ada's phone\" is paired as {node_id} with scopes chat\n"));
    let paired = tokio::time::timeout(Duration::from_secs(10), pending.approved()).await.unwrap().unwrap();
    assert_eq!(paired.scopes, [Scope::Chat]);
    assert_eq!(up.lanyard_ok(&["nodes", "pending"]).await, "no pairing requests waiting\n");

    // Connected through the bridge, it lists as connected now.
    let node = Node::builder(identity, paired).connect().await.unwrap();
    let listed = eventually(Duration::from_secs(10), async || {
        let listed = up.lanyard_ok(&["nodes", "list"]).await;
        listed.contains(" yes").then_some(listed)
    })
    .await;
    let row = listed.lines().find(|l| l.starts_with(&node_id)).unwrap_or_else(|| panic!("{listed}"));
    let cells: Vec<&str> = row.split("  ").map(str::trim).filter(|c| !c.is_empty()).collect();
    let expected =
        [node_id.as_str(), "Ada's phone", "ios", "chat", "default", "now", "yes", "none", "foreground", "unknown"];
    assert_eq!(cells, expected, "{listed}");
    assert!(listed.starts_with("ID "), "{listed}");
    let json: serde_json::Value = serde_json::from_str(&up.lanyard_ok(&["nodes", "list", "--json"]).await).unwrap();
    assert_eq!(json["nodes"][0]["nodeId"], node_id);
    assert_eq!(json["nodes"][0]["connected"], true);

    // A device is named by the start of its ID, as typed from the list, or by its name.
    let renamed = up.lanyard_ok(&["nodes", "rename", &node_id[..9].to_lowercase(), "Kitchen\ntablet"]).await;
    assert_eq!(renamed, format!("renamed {node_id} to \"Kitchen tablet\"\n"));
    assert!(up.lanyard_ok(&["nodes", "list"]).await.contains("Kitchen tablet"));
    let out = up.lanyard(&["nodes", "revoke", "Kitchen"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no paired device has the name \"Kitchen\""), "{}", text(&out.stderr));

    // Revoking closes the live connection at once; the device is gone from the list.
    let revoked = up.lanyard_ok(&["nodes", "revoke", "Kitchen tablet"]).await;
    assert!(revoked.contains("1 live connection closed"), "{revoked}");
    assert!(up.lanyard_ok(&["nodes", "list"]).await.starts_with("no paired devices"));
    let out = up.lanyard(&["nodes", "revoke", &node_id]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is not paired"), "{}", text(&out.stderr));
    drop(node);

    terminate(up.process).await;
}

#[tokio::test]
async fn bridge_runs_against_a_separately_started_gateway() {
    let home = tempfile::tempdir().unwrap();
    let (gateway, port) = gateway(home.path(), |_| {}).await;
    let url = format!("ws://127.0.0.1:{port}");
    let bridge = serve(home.path(), &["--url", &url, "bridge", "--bridge-port", "0"])
        .args(["--bridge-bind", "127.0.0.1", "--key-store", "file", "--mdns", "off"])
        .spawn()
        .unwrap();
    // The bridge records the port it got once it listens.
    let bridge_port = eventually(Duration::from_secs(10), async || {
        RunningBridge::read(home.path()).ok().flatten().map(|running| running.port)
    })
    .await;
    listening(bridge_port).await;

    let identity = Identity::generate();
    let request = PairingRequest::new("Pi", "linux");
    let pending = request_pairing(&format!("127.0.0.1:{bridge_port}"), &identity, request).await.unwrap();
    let shown = lanyard_ok(home.path(), &url, &["nodes", "pending"]).await;
    assert!(shown.contains(&format!("code:     {}", pending.sas())), "{shown}");
    let rejected = lanyard_ok(home.path(), &url, &["nodes", "reject", pending.request_id()]).await;
    assert_eq!(rejected, format!("rejected: device {} was told no and nothing about it was kept\n", identity.id()));
    let refused = tokio::time::timeout(Duration::from_secs(10), pending.approved()).await.unwrap();
    assert_eq!(refused.unwrap_err().code(), Some(node_kit::ErrorCode::PairingRejected));

    terminate(bridge).await;
    terminate(gateway).await;
}

#[tokio::test]
async fn gateway_then_agent_streams_an_answer() {
    let Some(claude) = claude_binary() else { return };
    let api = MessagesApi::start(|_| Reply::text(&["Hello", " from", " the model"])).await;
    let home = tempfile::tempdir().unwrap();
    let claude_home = tempfile::tempdir().unwrap();
    let (gateway, port) = gateway(home.path(), |command| {
        command.arg("--claude").arg(&claude).arg("--cwd").arg(claude_home.path());
        command.envs(claude_env(&api, claude_home.path()));
    })
    .await;

    let url = format!("ws://127.0.0.1:{port}");
    assert_eq!(lanyard_ok(home.path(), &url, &["agent", "hello"]).await, "Hello from the model\n");
    assert!(lanyard_ok(home.path(), &url, &["nodes", "list"]).await.starts_with("no paired devices"));

    terminate(gateway).await;
}

/// A stranger's TCP connection from `from` (any 127.0.0.0/8 address is loopback), as another host's would be.
async fn tcp_from(from: [u8; 4], to: &str) -> std::io::Result<tokio::net::TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind((std::net::Ipv4Addr::from(from), 0).into())?;
    socket.connect(to.parse().unwrap()).await
}

#[tokio::test]
async fn up_under_a_low_descriptor_limit_still_lets_a_paired_node_in() {
    let Some(claude) = claude_binary() else { return };
    let api = MessagesApi::start(|_| Reply::text(&["still ", "here"])).await;
    let claude_home = tempfile::tempdir().unwrap();
    let claude_arg = claude.display().to_string();
    let cwd = claude_home.path().display().to_string();
    let up = Up::launch(&["--mdns", "off", "--claude", &claude_arg, "--cwd", &cwd], Some("-n 256"), |command| {
        command.envs(claude_env(&api, claude_home.path()));
    })
    .await;
    // The caps are sized from the limit and shown.
    let limits = "Limits:       256 file descriptors; 108 paired devices, 36 unpaired connections (8 per address), \
                  32 console connections";
    assert!(up.banner.contains(limits), "{}", up.banner);
    let string = pair_string(&up).await;
    let identity = Arc::new(Identity::generate());
    let paired = redeem(&string, &identity, PairingRequest::new("Ada's phone", "ios")).await.unwrap();
    // The first turn starts the node's claude process; the second, timed, is what connecting and a turn in the
    // same conversation take with no strangers about.
    connect_and_ask(&identity, &paired, "hello").await.0.close();
    let (node, _, baseline) = connect_and_ask(&identity, &paired, "anyone?").await;
    node.close();

    // Strangers from 40 addresses open 400 connections, more than the process has descriptors, and hold
    // them: the bridge keeps at most its unpaired cap, closes the rest before TLS, and keeps its descriptors for its own links.
    let mut strangers = Vec::new();
    for n in 0..400u32 {
        if let Ok(tcp) = tcp_from([127, 0, 1, 2 + (n % 40) as u8], &up.bridge_addr).await {
            strangers.push(tcp);
        }
    }
    let (node, answer, took) = connect_and_ask(&identity, &paired, "there?").await;
    assert_eq!(answer, "still here");
    // Out of descriptors, or queued behind the strangers, it would wait out handshakes (10 s) or not get in.
    assert!(took < baseline * 3 + Duration::from_secs(2), "{took:?}, where it took {baseline:?} alone");
    // The owner's CLI works too, and sees the device connected.
    let listed = up.lanyard_ok(&["nodes", "list"]).await;
    assert!(listed.contains("Ada's phone") && listed.contains(" yes"), "{listed}");
    drop(strangers);
    node.close();
    terminate(up.process).await;
}

/// A local process opens 1,200 connections to the console and holds them, under a 1024-descriptor limit:
/// the console keeps its cap and closes the rest at once, so the bridge and the gateway keep their
/// descriptors. A paired node gets in and is answered within 1 s, `lanyard nodes list` works, and the log
/// gains no line per connection.
#[tokio::test]
async fn a_local_process_filling_the_console_leaves_up_its_descriptors() {
    // The test holds the 1,200 sockets itself, so it needs more than the usual 1024.
    bridge::descriptors::raise_to_hard_limit().unwrap();
    let mut up = Up::launch(&["--mdns", "off"], Some("-n 1024"), |command| {
        command.env("RUST_LOG", "info");
    })
    .await;
    let limits = "Limits:       1024 file descriptors; 684 paired devices, 228 unpaired connections (8 per address), \
                  32 console connections";
    assert!(up.banner.contains(limits), "{}", up.banner);
    let console = banner::after(&up.banner, "Console:");
    let console = console.trim_start_matches("http://").to_string();
    let log = Arc::new(std::sync::Mutex::new(String::new()));
    let mut stderr = BufReader::new(up.process.stderr.take().unwrap()).lines();
    tokio::spawn({
        let log = log.clone();
        async move {
            while let Ok(Some(line)) = stderr.next_line().await {
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        }
    });
    let string = pair_string(&up).await;
    let identity = Arc::new(Identity::generate());
    let paired = redeem(&string, &identity, PairingRequest::new("Ada's phone", "ios")).await.unwrap();
    let logged_before = log.lock().unwrap().len();

    let mut idle = Vec::new();
    for _ in 0..1200 {
        // A console out of descriptors stops accepting: the kernel's queue fills and connects hang.
        match tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(&console)).await {
            Ok(Ok(tcp)) => idle.push(tcp),
            _ => break,
        }
    }
    let started = std::time::Instant::now();
    let node = Node::builder(identity, paired).connect().await.expect("the paired node gets in");
    node.request(node_kit::protocol::method::HEALTH, serde_json::Value::Null).await.unwrap();
    let answered = started.elapsed();
    let pid = up.process.id().unwrap();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|fds| fds.count()).unwrap_or_default();
    assert!(answered < Duration::from_secs(1), "answered after {answered:?} ({open} descriptors open)");
    let listed = up.lanyard_ok(&["nodes", "list"]).await;
    assert!(listed.contains("Ada's phone") && listed.contains(" yes"), "{listed}");
    let logged = log.lock().unwrap()[logged_before..].to_string();
    eprintln!(
        "{} idle console connections; {open} descriptors open; answered in {answered:?}; the log grew {} bytes",
        idle.len(),
        logged.len()
    );
    assert!(!logged.contains("Too many open files") && !logged.contains("accept"), "{logged}");
    assert!(logged.lines().count() < 20, "{logged}");
    drop(idle);
    node.close();
    terminate(up.process).await;
}

/// `lanyard up` links each device to its gateway in-process, so a paired device costs the process one
/// descriptor, its own socket (over loopback WebSockets it cost three: its socket and both ends of its
/// link). Pairing at both LAN doors, a node's calls, the ACL both ways and a revocation all cross those links.
#[tokio::test]
async fn up_holds_each_paired_device_on_one_descriptor() {
    // Pairing is rate limited per address (3 at once at each door), and the test has one address.
    const DEVICES: usize = 6;
    let up = Up::start().await;
    let token = std::fs::read_to_string(::gateway::home::token_path(up.home.path())).unwrap();
    let operator = node_kit::Client::builder(&up.url).token(token.trim()).connect().await.unwrap();
    let pid = up.process.id().unwrap();
    let open = || std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    // Sockets of commands that just ended close a moment later: a count is taken once it holds still.
    let settled = async || {
        awaited("the descriptor count to hold still", Duration::from_secs(20), async || {
            let first = open();
            tokio::time::sleep(Duration::from_millis(200)).await;
            (open() == first).then_some(first)
        })
        .await
    };

    // Paired through both LAN doors: the bridge's pairing calls reach the gateway over in-process links.
    let mut devices = Vec::new();
    for n in 0..DEVICES {
        let identity = Arc::new(Identity::generate());
        let request = PairingRequest::new(format!("Device {n}"), "linux").scopes([Scope::Chat]);
        let paired = if n % 2 == 0 {
            redeem(&pair_string(&up).await, &identity, request).await.expect("the device pairs with a code")
        } else {
            let pending = request_pairing(&up.bridge_addr, &identity, request).await.unwrap();
            operator.request(method::PAIR_APPROVE, json!({ "requestId": pending.request_id() })).await.unwrap();
            pending.approved().await.expect("the device pairs once approved")
        };
        devices.push((identity, paired));
    }
    let before = settled().await;

    // The first device lets the agent run scripts on its screen; the second lists the command but does not
    // grant the screen capability it needs; the others offer nothing.
    let mut nodes = Vec::new();
    for (n, (identity, paired)) in devices.iter().enumerate() {
        let advert = match n {
            0 => support::screen_advert(),
            1 => node_kit::protocol::NodeAdvert { caps: vec![], commands: vec!["screen.eval".into()] },
            _ => node_kit::protocol::NodeAdvert::default(),
        };
        let node = node_kit::Client::bridge(&up.bridge_addr, identity, certs::Pin::Key(paired.bridge_id))
            .unwrap()
            .node(advert, ScriptLength)
            .connect()
            .await
            .expect("the paired device connects");
        node.request(method::SYSTEM_EVENT, json!({})).await.expect("a node's call is answered");
        nodes.push(node);
    }
    let with_devices = settled().await;
    eprintln!("{before} descriptors open before {DEVICES} devices connected, {with_devices} with them");
    assert!(
        (before + DEVICES..=before + DEVICES + 2).contains(&with_devices),
        "{DEVICES} devices took {} descriptors",
        with_devices - before
    );

    // The bridge's ACL on a node's call, and on the gateway's command to a node, over the link both ways.
    let refused = nodes[0].request(method::NODE_LIST, json!({})).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::Forbidden), "{refused}");
    let invoke = |node: usize| {
        let params = json!({
            "nodeId": devices[node].0.id(),
            "command": "screen.eval",
            "params": { "javaScript": "1 + 1" },
            "idempotencyKey": format!("eval-{node}"),
        });
        operator.request(method::NODE_INVOKE, params)
    };
    assert_eq!(invoke(0).await.expect("a granted command is answered")["payload"]["result"], 5);
    assert_eq!(invoke(1).await.unwrap_err().code(), Some(ErrorCode::Forbidden));

    // A revocation closes the device's connection, with the gateway's reason, and frees its descriptor.
    let revoked = up.lanyard_ok(&["nodes", "revoke", &devices[0].0.id().to_string()]).await;
    assert!(revoked.contains("1 live connection closed"), "{revoked}");
    tokio::time::timeout(Duration::from_secs(10), nodes[0].closed()).await.expect("the revoked device is closed");
    assert_eq!(nodes[0].last_error().map(|e| e.code), Some(ErrorCode::NotPaired));
    awaited("the revoked device's descriptor to close", Duration::from_secs(10), async || {
        (open() < with_devices).then_some(())
    })
    .await;
    nodes.iter().for_each(node_kit::Client::close);
    terminate(up.process).await;
}

/// Answers `screen.eval` with the length of its script.
struct ScriptLength;

impl node_kit::CommandHandler for ScriptLength {
    fn handle(
        &self,
        request: node_kit::protocol::NodeCommandRequest,
    ) -> futures_util::future::BoxFuture<'static, Result<serde_json::Value, node_kit::ErrorShape>> {
        let length = request.params["javaScript"].as_str().map_or(0, str::len);
        Box::pin(async move { Ok(json!({ "result": length })) })
    }
}

/// A soft descriptor limit below the hard one is raised to it at startup, and the caps are sized from the
/// raised limit.
#[tokio::test]
async fn up_raises_its_soft_descriptor_limit_to_the_hard_one() {
    let hard = bridge::descriptors::current().unwrap().hard;
    let up = Up::launch(&["--mdns", "off"], Some("-Sn 256"), |_| {}).await;
    let in_process = bridge::connections::DescriptorCosts::GATEWAY_IN_PROCESS;
    let caps = bridge::connections::ConnectionCaps::for_descriptors(hard - 48, in_process);
    let limits = format!(
        "Limits:       {hard} file descriptors; {} paired devices, {} unpaired connections",
        caps.paired, caps.unpaired
    );
    assert!(hard > 256 && up.banner.contains(&limits), "{limits}\n{}", up.banner);
}

/// `lanyard pair --string` against `up`: the one line it prints, parsed.
async fn pair_string(up: &Up) -> ConnectionString {
    let out = up.lanyard(&["pair", "--string"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "only the string on stdout: {stdout:?}");
    // The bridge listens on loopback only, and the string says so where a person reads it.
    assert!(text(&out.stderr).contains("only this computer can reach"), "{}", text(&out.stderr));
    stdout.trim_end().parse().unwrap_or_else(|e| panic!("{stdout:?}: {e}"))
}

#[tokio::test]
async fn pair_string_names_the_running_bridge_and_each_run_retires_the_last_code() {
    let up = Up::start().await;
    let first = pair_string(&up).await;
    assert_eq!(first.bridge_id.to_string(), up.bridge_id());
    assert_eq!((first.host.as_str(), first.port), ("127.0.0.1", up.bridge_port));
    let second = pair_string(&up).await;
    assert_ne!(first.code, second.code);
    assert_eq!((second.bridge_id, second.port), (first.bridge_id, first.port));

    // An address given by hand goes in as it is, and the rest of the string stays.
    let out = up.lanyard(&["pair", "--string", "--host", "adas-mac.local", "--scopes", "chat"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).is_empty(), "no warning for a given host: {}", text(&out.stderr));
    let named: ConnectionString = text(&out.stdout).trim_end().parse().unwrap();
    assert_eq!((named.host.as_str(), named.port, named.bridge_id), ("adas-mac.local", up.bridge_port, first.bridge_id));
    let out = up.lanyard(&["pair", "--string", "--host", "a/b?c"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("--host \"a/b?c\""), "{}", text(&out.stderr));

    terminate(up.process).await;
}

#[tokio::test]
async fn a_device_pairs_with_the_printed_string_and_nodes_list_shows_it() {
    let up = Up::start().await;
    let retired = pair_string(&up).await;
    let string = pair_string(&up).await;
    let identity = Arc::new(Identity::generate());

    // The code retired by the second `lanyard pair` is refused and says why.
    let refused = redeem(&retired, &identity, PairingRequest::new("Scanned phone", "android")).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::PairingExpired), "{refused}");

    let request = PairingRequest::new("Scanned phone", "android").scopes([Scope::Chat]);
    let paired = redeem(&string, &identity, request).await.expect("the printed string pairs the device");
    assert_eq!(paired.bridge_id.to_string(), up.bridge_id());
    assert_eq!(paired.scopes, [Scope::Chat]);
    let listed = up.lanyard_ok(&["nodes", "list"]).await;
    let row = listed.lines().find(|l| l.starts_with(&identity.id().to_string())).unwrap_or_else(|| panic!("{listed}"));
    assert!(row.contains("Scanned phone") && row.contains("android"), "{listed}");
    assert_eq!(up.lanyard_ok(&["nodes", "pending"]).await, "no pairing requests waiting\n", "no approval asked");

    // Used once, the string pairs nobody else.
    let other = Identity::generate();
    let again = redeem(&string, &other, PairingRequest::new("Other phone", "android")).await.unwrap_err();
    assert_eq!(again.code(), Some(ErrorCode::PairingCodeUsed), "{again}");

    // The paired device connects through the bridge as any other.
    let node = Node::builder(identity, paired).connect().await.unwrap();
    node.request(node_kit::protocol::method::HEALTH, serde_json::Value::Null).await.unwrap();
    drop(node);
    terminate(up.process).await;
}

/// `lanyard pair` as a person runs it, its stdout read line by line.
struct Pairing {
    process: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    shown: String,
}

impl Pairing {
    async fn start(up: &Up) -> Pairing {
        let mut process = serve(up.home.path(), &["--url", &up.url, "pair"]).stdout(Stdio::piped()).spawn().unwrap();
        let lines = BufReader::new(process.stdout.take().unwrap()).lines();
        let mut pairing = Pairing { process, lines, shown: String::new() };
        pairing.read_until("Waiting for the device").await;
        pairing
    }

    async fn read_until(&mut self, phrase: &str) {
        let read = async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                self.shown.push_str(&line);
                self.shown.push('\n');
                if line.contains(phrase) {
                    return;
                }
            }
            panic!("lanyard pair ended before {phrase:?}:\n{}", self.shown);
        };
        tokio::time::timeout(Duration::from_secs(10), read).await.expect("lanyard pair shows it");
    }

    fn string(&self) -> ConnectionString {
        let line = self.shown.lines().find(|l| l.trim_start().starts_with("lanyard://")).expect("the string is shown");
        line.trim().parse().unwrap()
    }

    async fn exit(self) -> Output {
        tokio::time::timeout(Duration::from_secs(10), self.process.wait_with_output())
            .await
            .expect("lanyard pair exits")
            .unwrap()
    }
}

#[tokio::test]
async fn pair_shows_a_qr_code_and_waits_for_the_device() {
    let up = Up::start().await;
    let mut pairing = Pairing::start(&up).await;
    let shown = pairing.shown.clone();
    assert!(shown.lines().next().unwrap().chars().all(|c| c == '█'), "the QR code's quiet zone first:\n{shown}");
    assert!(shown.contains("▀") && shown.contains("▄"), "{shown}");
    assert!(shown.contains("scopes chat,voice"), "{shown}");
    assert!(shown.contains("The code works once and expires in 5 min"), "{shown}");
    assert!(shown.contains("running `lanyard pair` again retires it"), "{shown}");
    let string = pairing.string();
    assert_eq!(string.bridge_id.to_string(), up.bridge_id());

    let identity = Identity::generate();
    redeem(&string, &identity, PairingRequest::new("Kitchen tablet", "android")).await.unwrap();
    pairing.read_until("Paired: ").await;
    assert!(
        pairing.shown.contains(&format!("Paired: {} with scopes chat; `lanyard nodes list` shows it\n", identity.id())),
        "{}",
        pairing.shown
    );
    let out = pairing.exit().await;
    assert!(out.status.success(), "{:?}: {}", out.status, text(&out.stderr));

    terminate(up.process).await;
}

#[tokio::test]
async fn a_newer_pair_stops_the_one_waiting_on_the_code_it_retired() {
    let up = Up::start().await;
    let pairing = Pairing::start(&up).await;
    pair_string(&up).await;
    let out = pairing.exit().await;
    assert_eq!(out.status.code(), Some(1));
    let error = text(&out.stderr);
    assert!(
        error.contains("a newer `lanyard pair` (or the console) issued another code, which retired this one"),
        "{error}"
    );
    terminate(up.process).await;
}

#[tokio::test]
async fn ctrl_c_stops_waiting_and_leaves_the_code_valid() {
    let up = Up::start().await;
    let pairing = Pairing::start(&up).await;
    let string = pairing.string();
    Command::new("kill").args(["-INT", &pairing.process.id().unwrap().to_string()]).status().unwrap();
    let out = pairing.exit().await;
    assert!(out.status.success(), "{:?}: {}", out.status, text(&out.stderr));
    assert!(text(&out.stderr).contains("The code still works until it expires"), "{}", text(&out.stderr));

    let identity = Identity::generate();
    redeem(&string, &identity, PairingRequest::new("Late phone", "ios")).await.expect("the code still works");
    terminate(up.process).await;
}

#[tokio::test]
async fn pair_without_a_running_bridge_says_to_start_one() {
    let home = tempfile::tempdir().unwrap();
    for args in [vec!["pair"], vec!["pair", "--string"]] {
        let out = lanyard(home.path(), &args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}: {}", text(&out.stdout));
        let error = text(&out.stderr);
        assert!(error.contains("the bridge is not running"), "{error}");
        assert!(error.contains("start it with `lanyard up`"), "{error}");
    }

    // A crashed bridge leaves its record behind: nothing answering on its port is the same as none.
    let (_held, port) = silent_port();
    let stale = RunningBridge {
        bridge_id: Identity::generate().id(),
        bind: "0.0.0.0".parse().unwrap(),
        port,
        interfaces: Vec::new(),
        pid: 1,
    };
    stale.write(home.path()).unwrap();
    let out = lanyard(home.path(), &["pair", "--string"]);
    assert_eq!(out.status.code(), Some(1));
    let error = text(&out.stderr);
    assert!(error.contains(&format!("nothing answers on its port {}", stale.port)), "{error}");
    assert!(error.contains("start it with `lanyard up`"), "{error}");
}

/// The `up` terminal at its default log level: the owner's commands (each one connection) add no lines,
/// the MCP library's requests are not dumped, and a clean stop with a device connected warns of nothing.
#[tokio::test]
async fn the_up_terminal_stays_quiet_through_commands_and_a_clean_stop() {
    let up = Up::launch(&["--mdns", "off"], None, |command| {
        command.env_remove("RUST_LOG");
    })
    .await;
    let string = pair_string(&up).await;
    let identity = Arc::new(Identity::generate());
    let paired = redeem(&string, &identity, PairingRequest::new("Ada's phone", "ios")).await.unwrap();
    let node = Node::builder(identity, paired).connect().await.unwrap();
    for _ in 0..5 {
        up.lanyard_ok(&["nodes", "list"]).await;
    }
    let logged = terminate(up.process).await;
    drop(node);
    for quiet in ["operator", "lanyard-cli", "WARN", "rmcp", "InitializeRequest"] {
        assert!(!logged.contains(quiet), "{quiet:?} in:\n{logged}");
    }
    assert!(logged.lines().count() < 20, "{logged}");
}

/// With no network interface but loopback (the test's namespace), the banner does not claim devices can
/// find the bridge over mDNS.
#[tokio::test]
async fn the_banner_says_when_mdns_has_no_interface_to_advertise_on() {
    let mdns_port = free_udp_port().to_string();
    let up = Up::start_with(&["--mdns-port", &mdns_port]).await;
    let line = up.banner.lines().find(|l| l.trim_start().starts_with("mDNS:")).unwrap();
    assert!(
        line.contains("advertised as") && line.contains("but no network interface is up to advertise on"),
        "{line}"
    );
    terminate(up.process).await;
}

/// The bridge `lanyard up` advertises is found by another process browsing mDNS on `lo`, and is
/// withdrawn (goodbye packets) when `up` is stopped.
#[tokio::test]
async fn another_process_finds_the_bridge_over_mdns_until_it_stops() {
    let mdns_port = free_udp_port().to_string();
    let up = Up::start_with(&["--mdns-interface", "lo", "--mdns-port", &mdns_port, "--mdns-name", "CLI test computer"])
        .await;
    assert!(up.banner.contains("mDNS:         advertised as \"CLI test computer\" on lo\n"), "{}", up.banner);

    let mut found = MdnsDiscovery::new().interfaces(["lo"]).port(mdns_port.parse().unwrap()).watch().unwrap();
    let seen = found.find(Duration::from_secs(10), |_| true).await.expect("the bridge is discovered");
    assert!(seen.addresses.contains(&up.bridge_addr), "{:?} should include {}", seen.addresses, up.bridge_addr);
    assert_eq!(seen.hint.id_hint, Some(id_hint(&up.bridge_id().parse().unwrap())));
    assert_eq!(seen.hint.name.as_deref(), Some("CLI test computer"));
    assert_eq!(seen.instance, "CLI test computer._lanyard._tcp.local.");

    terminate(up.process).await;
    assert!(
        found.lost(&seen.instance, Duration::from_secs(5)).await,
        "the bridge is reported lost within 5 s of SIGTERM"
    );
}

/// The README's "Away from home" steps, typed as written (no `--url`: the commands find `up`, which got a
/// port of its own), with `lanyard up` running, against the real relay Worker under `wrangler dev`: the
/// bridge links to the relay at once, with no restart.
#[tokio::test]
async fn the_readmes_tunnel_steps_reach_a_running_up() {
    let Some(relay) = LocalRelay::start().await else { return };
    let up = Up::start().await;
    let home = up.home.path();
    let typed = async |args: &[&str]| {
        let out = lanyard_in(home, args).await;
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };

    let enabled = typed(&["tunnel", "enable", &relay.url]).await;
    assert!(enabled.starts_with(&format!("tunnel on: {}\n", relay.url)), "{enabled}");
    assert!(!enabled.contains("not running"), "{enabled}");
    let status = eventually(Duration::from_secs(30), async || {
        let status = typed(&["tunnel", "status"]).await;
        status.contains("link: ready").then_some(status)
    })
    .await;
    assert!(status.starts_with(&format!("tunnel: {}\n", relay.url)), "{status}");

    // The invite a script reads from the first line, the PIN labelled on the second. The invite is the
    // phone app's URL on the relay, with the invite after the `#` and this computer's name.
    let remote = typed(&["pair", "--remote", "--string"]).await;
    let lines: Vec<&str> = remote.lines().collect();
    assert_eq!(lines.len(), 2, "{remote:?}");
    assert!(lines[0].starts_with(&format!("{}/#id={}&route=", relay.url, up.bridge_id())), "{remote:?}");
    let invite: node_kit::connection_string::RelayInvite =
        lines[0].parse().unwrap_or_else(|e| panic!("{remote:?}: {e}"));
    assert_eq!(invite.relay_url, relay.url);
    assert_eq!(invite.bridge_id.to_string(), up.bridge_id());
    assert_eq!(invite.name, Some(node_kit::discovery::computer_name()), "{remote:?}");
    let pin = lines[1].strip_prefix("PIN: ").unwrap_or_else(|| panic!("{remote:?}"));
    assert!(pin.len() == 6 && pin.bytes().all(|b| b.is_ascii_digit()), "{remote:?}");

    assert_eq!(typed(&["tunnel", "disable"]).await, "tunnel off\n");
    assert!(typed(&["tunnel", "status"]).await.starts_with("tunnel: off"));
    terminate(up.process).await;
}

/// The gateway stopped (Ctrl-C of `lanyard up`) while the answer streams: `lanyard agent` ends the half
/// line it printed and says on a line of its own what happened.
#[tokio::test]
async fn agent_says_the_computer_stopped_when_the_gateway_ends_mid_turn() {
    let Some(claude) = claude_binary() else { return };
    let gate = Gate::closed();
    let api = MessagesApi::start({
        let gate = gate.clone();
        move |_| Reply::Gated { pieces: vec!["Half".into(), " a sentence".into()], gate: gate.clone() }
    })
    .await;
    let home = tempfile::tempdir().unwrap();
    let claude_home = tempfile::tempdir().unwrap();
    let (gateway, _port) = gateway(home.path(), |command| {
        command.arg("--claude").arg(&claude).arg("--cwd").arg(claude_home.path());
        command.envs(claude_env(&api, claude_home.path()));
    })
    .await;
    let mut agent = serve(home.path(), &["agent", "hello"]).stdout(Stdio::piped()).spawn().unwrap();
    gate.release_one();
    let mut stdout = agent.stdout.take().unwrap();
    let mut shown = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while !shown.ends_with(b"Half") {
            let mut byte = [0u8; 1];
            assert_eq!(tokio::io::AsyncReadExt::read(&mut stdout, &mut byte).await.unwrap(), 1, "{shown:?}");
            shown.push(byte[0]);
        }
    })
    .await
    .expect("the first piece streams");
    Command::new("kill").args(["-INT", &gateway.id().unwrap().to_string()]).status().unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), agent.wait_with_output()).await.unwrap().unwrap();
    tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut shown).await.unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&shown), "Half\n", "the half line is ended");
    let error = text(&out.stderr);
    assert!(error.starts_with("error: the computer stopped during this turn"), "{error}");
    drop(gateway);
}
