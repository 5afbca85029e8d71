//! A computer for the phone: the real `lanyard up` (gateway and bridge, mDNS off) in a home of its own, its
//! claude pointed at a scripted Messages API, its tunnel on to the local relay; and `lanyard` commands typed
//! against it as the owner types them (no `--url`: they find the running `up` through the home).

use super::banner;
use super::support::gw::messages_api::MessagesApi;
use super::support::gw::{claude_env, eventually};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::process::{Child, Command};

pub struct Computer {
    pub home: tempfile::TempDir,
    /// claude's HOME and working directory: where the tools the phone allows write their files.
    pub cwd: tempfile::TempDir,
    /// The gateway's `ws://` URL, from the banner.
    pub gateway_url: String,
    /// Where a device on the LAN connects, from the banner.
    pub bridge_addr: String,
    claude: PathBuf,
    env: Vec<(String, String)>,
    process: Option<Child>,
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl Computer {
    /// `lanyard up` with its tunnel on to `relay_url`, once the bridge's link to the relay is ready.
    /// `push_allow_local` sets the gateway's test-only switch that lets a push endpoint be local.
    pub async fn start(claude: &Path, api: &MessagesApi, relay_url: &str, push_allow_local: bool) -> Computer {
        let cwd = tempfile::tempdir().unwrap();
        let mut env = claude_env(api, cwd.path());
        if push_allow_local {
            env.push(("LANYARD_PUSH_ALLOW_LOCAL".into(), "1".into()));
        }
        let mut computer = Computer {
            home: tempfile::tempdir().unwrap(),
            cwd,
            gateway_url: String::new(),
            bridge_addr: String::new(),
            claude: claude.to_path_buf(),
            env,
            process: None,
        };
        computer.launch().await;
        let enabled = computer.lanyard_ok(&["tunnel", "enable", relay_url]).await;
        assert!(enabled.starts_with(&format!("tunnel on: {relay_url}\n")), "{enabled}");
        computer.tunnel_ready().await;
        computer
    }

    async fn launch(&mut self) {
        let mut process = Command::new(env!("CARGO_BIN_EXE_lanyard"))
            .args(["up", "--port", "0", "--bridge-port", "0", "--bridge-bind", "127.0.0.1"])
            .args(["--key-store", "file", "--mdns", "off", "--no-console", "--claude"])
            .arg(&self.claude)
            .arg("--cwd")
            .arg(self.cwd.path())
            .envs(self.env.iter().cloned())
            .env("LANYARD_HOME", self.home.path())
            .env("RUST_LOG", "warn")
            .env_remove("LANYARD_GATEWAY_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("lanyard up starts");
        let banner = banner::read(process.stdout.take().unwrap(), Duration::from_secs(30)).await;
        self.gateway_url = banner::after(&banner, "Gateway:");
        self.bridge_addr = banner::after(&banner, "Devices use:");
        self.process = Some(process);
    }

    async fn tunnel_ready(&self) {
        eventually(Duration::from_secs(60), async || {
            self.lanyard_ok(&["tunnel", "status"]).await.contains("link: ready").then_some(())
        })
        .await;
    }

    /// Stops `up` the way Ctrl-C does, and waits for it to end: the computer is offline.
    pub async fn stop(&mut self) {
        let mut process = self.process.take().expect("up is running");
        let pid = nix::unistd::Pid::from_raw(process.id().unwrap() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
        tokio::time::timeout(Duration::from_secs(20), process.wait()).await.expect("up stops").unwrap();
    }

    /// Starts `up` again with the same home (same key, pairings and tunnel), back on the relay.
    pub async fn restart(&mut self) {
        self.launch().await;
        self.tunnel_ready().await;
    }

    /// `lanyard ARGS` with this computer's home, run off the async threads.
    pub async fn lanyard(&self, args: &[&str]) -> Output {
        let home = self.home.path().to_path_buf();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let run = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_lanyard"))
                .args(&args)
                .env("LANYARD_HOME", home)
                .env_remove("LANYARD_GATEWAY_URL")
                .stdin(Stdio::null())
                .output()
                .unwrap()
        });
        tokio::time::timeout(Duration::from_secs(30), run).await.expect("lanyard finishes").unwrap()
    }

    pub async fn lanyard_ok(&self, args: &[&str]) -> String {
        let out = self.lanyard(args).await;
        assert!(out.status.success(), "lanyard {args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    }

    /// A fresh invite from `lanyard pair --remote --string`: the URL on its first line, the PIN on the second.
    pub async fn invite(&self) -> (String, String) {
        let printed = self.lanyard_ok(&["pair", "--remote", "--string"]).await;
        let lines: Vec<&str> = printed.lines().collect();
        let pin = lines.get(1).and_then(|l| l.strip_prefix("PIN: ")).unwrap_or_else(|| panic!("{printed:?}"));
        (lines[0].to_string(), pin.to_string())
    }

    /// The bridge's ID, from the key `up` stored in its home.
    pub fn bridge_id(&self) -> String {
        let pem = std::fs::read_to_string(bridge::identity::key_file(self.home.path())).unwrap();
        certs::Identity::from_pkcs8_pem(&pem).unwrap().id().to_string()
    }

    /// The paired devices, as `lanyard nodes list --json` gives them.
    pub async fn nodes(&self) -> Vec<Value> {
        let listed: Value = serde_json::from_str(&self.lanyard_ok(&["nodes", "list", "--json"]).await).unwrap();
        listed["nodes"].as_array().cloned().unwrap_or_default()
    }

    /// An operator connection to the gateway, with the owner's token from the home.
    pub async fn operator(&self) -> node_kit::Client {
        let token = std::fs::read_to_string(self.home.path().join("gateway/token")).unwrap();
        node_kit::Client::builder(&self.gateway_url).token(token.trim()).connect().await.expect("operator connects")
    }

    /// The text of `file` in claude's working directory, if a tool wrote it.
    pub fn written(&self, file: &str) -> Option<String> {
        std::fs::read_to_string(self.cwd.path().join(file)).ok().map(|t| t.trim().to_string())
    }
}
