//! `lanyard doctor` against a healthy `lanyard up` and against each broken state it checks: no claude, a
//! port taken, a secret with the wrong mode, an unreachable or skewed relay, another mDNS responder with the
//! bridge's name. Servers listen on 127.0.0.1 only and mDNS runs only on `lo` on a private port (test.sh runs
//! the suites in a network namespace with only loopback up).

#[path = "up/banner.rs"]
mod banner;
#[path = "../../../gateway/tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A port nothing listens on for as long as the listener is not made: found free, then released.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One check's line, from `--json`.
#[derive(Debug)]
struct Line {
    verdict: String,
    message: String,
    fix: Option<String>,
}

/// What a doctor run said.
struct Diagnosis {
    status: Option<i32>,
    checks: BTreeMap<String, Line>,
    took: Duration,
}

impl Diagnosis {
    /// The check's line, asserting its verdict.
    fn expect(&self, check: &str, verdict: &str) -> &Line {
        let line = self.checks.get(check).unwrap_or_else(|| panic!("no {check} check: {:?}", self.checks));
        assert_eq!(line.verdict, verdict, "{check}: {line:?}");
        assert_eq!(line.fix.is_some(), verdict != "ok", "{check}: a fix exactly when not ok: {line:?}");
        line
    }
}

/// The setting a doctor run looks at: a home, the ports, the claude binary and its environment.
struct Doctor {
    home: PathBuf,
    port: u16,
    bridge_port: u16,
    mdns_port: u16,
    mdns_name: String,
    claude: Option<String>,
    /// claude's HOME: empty, so nothing of this machine's login is seen.
    claude_home: tempfile::TempDir,
    env: Vec<(String, String)>,
    units: tempfile::TempDir,
}

impl Doctor {
    fn new(home: &Path, claude: &Path) -> Doctor {
        Doctor {
            home: home.to_path_buf(),
            port: closed_port(),
            bridge_port: closed_port(),
            mdns_port: free_udp_port(),
            mdns_name: format!("doctor-{}", std::process::id()),
            claude: Some(claude.display().to_string()),
            claude_home: tempfile::tempdir().unwrap(),
            env: vec![("ANTHROPIC_API_KEY".into(), "sk-ant-test-key".into())],
            units: tempfile::tempdir().unwrap(),
        }
    }

    fn command(&self, extra: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_lanyard"));
        command
            .arg("doctor")
            .args(["--port", &self.port.to_string(), "--bridge-port", &self.bridge_port.to_string()])
            .args(["--mdns-interface", "lo", "--mdns-port", &self.mdns_port.to_string()])
            .args(["--mdns-name", &self.mdns_name])
            .args(extra)
            .env("LANYARD_HOME", &self.home)
            .env("HOME", self.claude_home.path())
            .env("LANYARD_SERVICE_DIR", self.units.path())
            .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
            .env("DISABLE_AUTOUPDATER", "1")
            .env_remove("LANYARD_CLAUDE")
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("LANYARD_GATEWAY_URL")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        if let Some(claude) = &self.claude {
            command.args(["--claude", claude]);
        }
        command
    }

    /// `lanyard doctor --json`, run off the async threads.
    async fn run(&self) -> Diagnosis {
        let mut command = self.command(&["--json"]);
        let started = Instant::now();
        let out = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
        let took = started.elapsed();
        let array: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("--json is not JSON ({e}): {}\n{}", text(&out.stdout), text(&out.stderr)));
        let checks = array
            .into_iter()
            .map(|check| {
                let line = Line {
                    verdict: check["verdict"].as_str().unwrap().to_string(),
                    message: check["message"].as_str().unwrap().to_string(),
                    fix: check["fix"].as_str().map(str::to_string),
                };
                (check["check"].as_str().unwrap().to_string(), line)
            })
            .collect();
        Diagnosis { status: out.status.code(), checks, took }
    }

    /// `lanyard doctor` in words.
    async fn run_text(&self) -> Output {
        let mut command = self.command(&[]);
        tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap()
    }
}

/// A Lanyard home that Lanyard itself creates (0700), inside a temporary directory.
fn lanyard_home() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("lanyard");
    (root, home)
}

/// `lanyard up` on loopback, advertised over mDNS on `lo` only, past its banner.
struct Up {
    process: tokio::process::Child,
    _root: tempfile::TempDir,
    home: PathBuf,
    port: u16,
    bridge_port: u16,
}

impl Up {
    async fn start(claude: &Path, mdns_port: u16, mdns_name: &str) -> Up {
        let (root, home) = lanyard_home();
        let mut process = tokio::process::Command::new(env!("CARGO_BIN_EXE_lanyard"))
            .args(["up", "--port", "0", "--bridge-port", "0", "--bridge-bind", "127.0.0.1", "--key-store", "file"])
            .args(["--mdns", "on", "--mdns-interface", "lo", "--mdns-port", &mdns_port.to_string()])
            .args(["--mdns-name", mdns_name, "--claude", &claude.display().to_string()])
            .env("LANYARD_HOME", &home)
            .env("RUST_LOG", "warn")
            .env_remove("LANYARD_GATEWAY_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let banner = banner::read(process.stdout.take().unwrap(), Duration::from_secs(20)).await;
        let port_after =
            |label: &str| -> u16 { banner::after(&banner, label).rsplit(':').next().unwrap().parse().unwrap() };
        let (port, bridge_port) = (port_after("Gateway:"), port_after("Devices use:"));
        Up { process, _root: root, home, port, bridge_port }
    }

    /// A doctor for this `up`: its home, its ports, its mDNS.
    fn doctor(&self, claude: &Path, mdns_port: u16, mdns_name: &str) -> Doctor {
        let mut doctor = Doctor::new(&self.home, claude);
        (doctor.port, doctor.bridge_port, doctor.mdns_port) = (self.port, self.bridge_port, mdns_port);
        doctor.mdns_name = mdns_name.to_string();
        doctor
    }
}

#[tokio::test]
async fn a_healthy_up_passes_every_check() {
    let Some(claude) = support::claude_binary() else { return };
    let (mdns_port, name) = (free_udp_port(), "doctor-healthy");
    let up = Up::start(&claude, mdns_port, name).await;
    let doctor = up.doctor(&claude, mdns_port, name);
    let found = doctor.run().await;
    assert_eq!(found.status, Some(0), "{:?}", found.checks);
    assert!(found.expect("claude", "ok").message.contains("(Claude Code)"));
    assert!(found.expect("claude-login", "ok").message.contains("ANTHROPIC_API_KEY"));
    let gateway = found.expect("gateway-port", "ok");
    assert!(gateway.message.starts_with("this Lanyard's gateway answers"), "{gateway:?}");
    let pem = std::fs::read_to_string(bridge::identity::key_file(&up.home)).unwrap();
    let bridge_id = certs::Identity::from_pkcs8_pem(&pem).unwrap().id().to_string();
    let bridge = found.expect("bridge-port", "ok");
    assert!(
        bridge.message.contains(&format!("this Lanyard's bridge answers on port {}", up.bridge_port)),
        "{bridge:?}"
    );
    assert!(bridge.message.contains(&bridge_id), "{bridge:?}");
    found.expect("file-modes", "ok");
    assert!(found.expect("key-store", "ok").message.contains(&bridge_id));
    let mdns = found.expect("mdns", "ok");
    assert_eq!(mdns.message, format!("this bridge is advertised as \"{name}\" on lo"));
    let addresses = found.expect("lan-addresses", "ok");
    assert!(addresses.message.contains(&format!("127.0.0.1:{}", up.bridge_port)), "{addresses:?}");
    found.expect("firewall", "ok");
    assert!(found.expect("tunnel", "ok").message.starts_with("off"));
    assert!(found.expect("service", "ok").message.starts_with("no login service"));
    println!("doctor against a healthy up took {:?}", found.took);

    let out = doctor.run_text().await;
    assert!(out.status.success());
    let shown = text(&out.stdout);
    assert!(shown.contains("ok    gateway-port   this Lanyard's gateway answers on 127.0.0.1:"), "{shown}");
    assert!(shown.contains("\n11 ok, 0 to look at, 0 failed\n"), "{shown}");
}

#[tokio::test]
async fn no_claude_is_a_failure_that_says_what_to_install() {
    let Some(claude) = support::claude_binary() else { return };
    let (_root, home) = lanyard_home();
    let mut doctor = Doctor::new(&home, &claude);

    doctor.claude = Some("/nonexistent/claude".into());
    let found = doctor.run().await;
    assert_eq!(found.status, Some(1));
    let line = found.expect("claude", "fail");
    assert_eq!(line.message, "the claude binary /nonexistent/claude does not exist");
    assert!(line.fix.as_ref().unwrap().contains("npm install -g @anthropic-ai/claude-code"), "{line:?}");
    found.expect("claude-login", "warn");

    // No --claude, and a PATH without it.
    let empty = tempfile::tempdir().unwrap();
    doctor.claude = None;
    doctor.env.push(("PATH".into(), empty.path().display().to_string()));
    let found = doctor.run().await;
    assert_eq!(found.status, Some(1));
    assert_eq!(found.expect("claude", "fail").message, "no `claude` on PATH");

    // The real claude, logged out: the agent cannot answer.
    let mut doctor = Doctor::new(&home, &claude);
    doctor.env.clear();
    let found = doctor.run().await;
    assert_eq!(found.status, Some(1));
    found.expect("claude", "ok");
    let login = found.expect("claude-login", "fail");
    assert!(login.message.contains("not logged in"), "{login:?}");
    assert!(login.fix.as_ref().unwrap().contains("claude auth login"), "{login:?}");
}

#[tokio::test]
async fn ports_taken_by_others_fail_and_ours_are_told_apart() {
    let Some(claude) = support::claude_binary() else { return };
    let (_root, home) = lanyard_home();
    let doctor = {
        let mut doctor = Doctor::new(&home, &claude);
        // Listening, but not Lanyard: a program that never answers.
        let gateway = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let bridge = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        doctor.port = gateway.local_addr().unwrap().port();
        doctor.bridge_port = bridge.local_addr().unwrap().port();
        let found = doctor.run().await;
        assert_eq!(found.status, Some(1));
        let line = found.expect("gateway-port", "fail");
        assert!(
            line.message.starts_with(&format!("port {} is taken by a program this home has no token", doctor.port))
        );
        assert!(line.fix.as_ref().unwrap().contains(&format!("ss -ltnp 'sport = :{}'", doctor.port)), "{line:?}");
        assert!(line.fix.as_ref().unwrap().contains("lanyard up --port OTHER"), "{line:?}");
        let line = found.expect("bridge-port", "fail");
        assert!(line.message.contains("does not answer as a Lanyard bridge"), "{line:?}");
        assert!(line.fix.as_ref().unwrap().contains("lanyard up --bridge-port OTHER"), "{line:?}");
        drop((gateway, bridge));
        doctor
    };
    // Released: free again.
    let found = doctor.run().await;
    assert!(found.expect("gateway-port", "ok").message.contains("is free"));
    assert!(found.expect("bridge-port", "ok").message.contains("is free"));

    // A running Lanyard of another home: its gateway refuses this home's token, its bridge has another key.
    let mdns_port = free_udp_port();
    let up = Up::start(&claude, mdns_port, "doctor-other").await;
    let (_other_root, other) = lanyard_home();
    node_kit::storage::write_private_file(&other.join("gateway/token"), b"not-the-token").unwrap();
    let mut doctor = up.doctor(&claude, mdns_port, "doctor-other");
    doctor.home = other;
    let found = doctor.run().await;
    assert_eq!(found.status, Some(1));
    assert!(found.expect("gateway-port", "fail").message.contains("refuses this home's token"));
    assert!(found.expect("bridge-port", "fail").message.contains("another Lanyard bridge"));
    drop(up.process);
}

#[tokio::test]
async fn a_secret_other_users_can_read_fails_with_the_chmod_that_fixes_it() {
    let Some(claude) = support::claude_binary() else { return };
    let (mdns_port, name) = (free_udp_port(), "doctor-modes");
    let up = Up::start(&claude, mdns_port, name).await;
    let doctor = up.doctor(&claude, mdns_port, name);
    let token = up.home.join("gateway/token");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();

    let found = doctor.run().await;
    assert_eq!(found.status, Some(1));
    let line = found.expect("file-modes", "fail");
    assert!(line.message.contains(&format!("{} (0644)", token.display())), "{line:?}");
    let fix = line.fix.clone().unwrap();
    assert_eq!(fix, format!("`chmod 600 '{}'`", token.display()));
    // The gateway still answers: only the mode is wrong.
    found.expect("gateway-port", "ok");

    // The fix, as printed, fixes it.
    let status = Command::new("sh").arg("-c").arg(fix.trim_matches('`')).status().unwrap();
    assert!(status.success());
    let found = doctor.run().await;
    assert_eq!(found.status, Some(0), "{:?}", found.checks);
    found.expect("file-modes", "ok");

    // A directory open to others is found too.
    std::fs::set_permissions(up.home.join("bridge"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let line = doctor.run().await.checks.remove("file-modes").unwrap();
    assert!(line.fix.unwrap().starts_with("`chmod 700 '"), "{}", line.message);
}

#[tokio::test]
async fn an_unreachable_relay_fails_and_a_skewed_clock_is_a_warning() {
    let Some(claude) = support::claude_binary() else { return };
    let (_root, home) = lanyard_home();
    let doctor = Doctor::new(&home, &claude);
    let closed = closed_port();
    gateway::tunnel::save_url(&home, Some(&format!("http://127.0.0.1:{closed}"))).unwrap();
    let found = doctor.run().await;
    assert_eq!(found.status, Some(1));
    let line = found.expect("tunnel", "fail");
    assert!(line.message.starts_with(&format!("the relay does not answer at http://127.0.0.1:{closed}/v1/health")));
    assert!(line.fix.as_ref().unwrap().contains("`lanyard tunnel status`"), "{line:?}");
    assert!(line.fix.as_ref().unwrap().contains("`lanyard tunnel disable`"), "{line:?}");

    // A relay that answers, with a clock an hour ahead.
    let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(3600));
    let app = axum::Router::new().route(
        "/v1/health",
        axum::routing::get(move || {
            let date = date.clone();
            async move { ([(axum::http::header::DATE, date)], "{\"ok\":true}") }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    gateway::tunnel::save_url(&home, Some(&relay)).unwrap();
    let found = doctor.run().await;
    let line = found.expect("tunnel", "warn");
    assert!(
        line.message.contains("clock is 3599 s behind the relay's") || line.message.contains("3600 s behind"),
        "{line:?}"
    );
    assert!(line.fix.as_ref().unwrap().contains("timedatectl set-ntp true"), "{line:?}");
    // Warnings alone do not fail doctor.
    assert_eq!(found.status, Some(0), "{:?}", found.checks);
}

#[tokio::test]
async fn another_responder_with_the_bridge_name_is_a_warning() {
    let Some(claude) = support::claude_binary() else { return };
    let (_root, home) = lanyard_home();
    let doctor = Doctor::new(&home, &claude);
    let quiet = doctor.run().await;
    assert!(quiet.expect("mdns", "ok").message.starts_with("mDNS works on lo; nothing answers as"));

    let config = bridge::mdns::MdnsConfig {
        interfaces: vec!["lo".into()],
        instance: Some(doctor.mdns_name.clone()),
        port: doctor.mdns_port,
        ..Default::default()
    };
    let stranger = certs::Identity::generate().id();
    let advertiser = bridge::mdns::Advertiser::start(&config, &stranger, "127.0.0.1".parse().unwrap(), 4242).unwrap();
    let found = doctor.run().await;
    let line = found.expect("mdns", "warn");
    assert!(line.message.starts_with(&format!("another responder answers as \"{}\"", doctor.mdns_name)), "{line:?}");
    assert!(line.message.contains(&node_kit::discovery::id_hint(&stranger)), "{line:?}");
    assert!(line.message.contains("127.0.0.1:4242"), "{line:?}");
    assert!(line.fix.as_ref().unwrap().contains("--mdns-name"), "{line:?}");
    advertiser.withdraw().await;
}

#[tokio::test]
async fn an_installed_service_that_does_not_run_is_a_warning() {
    let Some(claude) = support::claude_binary() else { return };
    let (_root, home) = lanyard_home();
    let doctor = Doctor::new(&home, &claude);
    let install = Command::new(env!("CARGO_BIN_EXE_lanyard"))
        .args(["service", "install", "--no-start"])
        .env("LANYARD_HOME", &home)
        .env("LANYARD_SERVICE_DIR", doctor.units.path())
        .output()
        .unwrap();
    assert!(install.status.success(), "{}", text(&install.stderr));
    let found = doctor.run().await;
    let line = found.expect("service", "warn");
    assert!(line.message.contains("is installed"), "{line:?}");
}
