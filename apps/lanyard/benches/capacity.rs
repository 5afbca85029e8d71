//! What strangers and idle nodes cost a running `lanyard up`, and what a call costs through the bridge next
//! to nginx doing the same job, in one run:
//!
//! 1. **Idle nodes held**: N paired nodes (10,000 by default) connect from many loopback addresses and stay
//!    connected; the server's RSS and open descriptors before and after, per node; then every node sends one
//!    call at once and the time until all are answered.
//! 2. **Connects per second**: full node connects (TCP, mutual pinned TLS 1.3, WebSocket, `connect`, the
//!    bridge's gateway link, `hello-ok`) with 64 in flight, and the server's CPU time per connect.
//! 3. **Calls through the bridge against nginx**: nginx 1 worker, TLS 1.3 with client certificates, as a
//!    WebSocket reverse proxy in front of the same gateway. The same node-kit client, the same calls
//!    (`system-event`, `health`, a `system-event` carrying 64 KB of text) and the same gateway work (each
//!    path reaches the gateway as a node's link), on three paths: straight to the gateway, through the
//!    bridge, through nginx; batches rotate and each path's added latency and CPU per call are taken over
//!    the direct path. Run three times: against `lanyard up` (bridge and gateway in one process: CPU is the
//!    whole process's), and against `lanyard gateway` and `lanyard bridge` as two processes (the bridge
//!    process's CPU alone, beside nginx's), the bridge with its runtime's default threads and with one.
//!
//!   cargo bench -p lanyard --bench capacity
//!   BENCH_NODES=10000 BENCH_CONNECTS=4000 BENCH_CALLS=3000 BENCH_ROUNDS=5 to change the sizes;
//!   BENCH_PARTS=idle,connects,calls and BENCH_KINDS=system-event,health,64k to run only some.
//!
//! BENCH_SERVER_PREFIX runs each server process under a profiler (e.g. "valgrind --tool=massif");
//! BENCH_LANYARD names another `lanyard` binary to run (another commit's build, for a before and after);
//! BENCH_PERF=DIR records part 3 with `perf record` attached to the servers and nginx (DIR/LAYOUT-WHO.data;
//! the figures of such a run include perf's own cost).
//!
//! Needs nginx on PATH (`apt-get install nginx-light`; part 3 is skipped with a note otherwise). Run as root
//! it raises the descriptor hard limit so 10,000 nodes fit.

#[path = "../../../gateway/benches/stats.rs"]
mod stats;

use certs::{Identity, KeyId, Pin};
use futures_util::future::join_all;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use node_kit::Client;
use node_kit::protocol::{ClientMode, DeviceInfo, PairedNode, Scope, method};
use stats::{Stats, ms};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

/// Connections one source address opens: within the bridge's handshake burst (20) and its cap on
/// connections from one address still handshaking (8).
const PER_ADDRESS: usize = 8;

/// The n-th source address, from 127.1.0.0 on, each used for at most [`PER_ADDRESS`] connections.
fn source(n: usize) -> IpAddr {
    let block = n / PER_ADDRESS;
    IpAddr::V4(Ipv4Addr::new(127, 1 + (block >> 16) as u8, (block >> 8) as u8, block as u8))
}

/// Whether the part `name` (`idle`, `connects`, `calls`) is to run: BENCH_PARTS lists them, all by default.
fn part(name: &str) -> bool {
    std::env::var("BENCH_PARTS").map_or(true, |parts| parts.split(',').any(|p| p.trim() == name))
}

#[tokio::main]
async fn main() {
    let nodes = env_or("BENCH_NODES", 10_000);
    let connects = env_or("BENCH_CONNECTS", 4_000);
    let calls = env_or("BENCH_CALLS", 3_000);
    let rounds = env_or("BENCH_ROUNDS", 5);
    let descriptors = raise_descriptor_limit(2 * nodes as u64 + 10_000);
    println!("descriptor limit for this process and the servers: {descriptors}");

    let home = tempfile::tempdir().unwrap();
    let identities: Vec<Arc<Identity>> =
        (0..nodes.max(connects).max(3)).map(|_| Arc::new(Identity::generate())).collect();
    write_paired_store(home.path(), &identities);
    // Each part on a fresh server: memory a part freed would hide what the next one costs.
    let connect_rate = if part("connects") {
        let server = Server::start(home.path(), Layout::Up).await;
        println!("{}", server.limits_line);
        let rate = connects_per_second(&server, &identities[..connects]).await;
        server.stop().await;
        Some(rate)
    } else {
        None
    };

    let idle = if part("idle") {
        let server = Server::start(home.path(), Layout::Up).await;
        let idle = hold_idle_nodes(&server, &identities[..nodes], |i, identity| server.node(identity, source(i))).await;
        server.stop().await;
        // The gateway's share: the same nodes as links straight to the gateway, as the bridge opens them.
        let server = Server::start(home.path(), Layout::Up).await;
        let gateway_share = hold_idle_nodes(&server, &identities[..nodes], |_, identity| {
            server.as_node(Client::builder(&server.gateway_url), identity)
        })
        .await;
        server.stop().await;
        Some((idle, gateway_share))
    } else {
        None
    };

    let mut versus = Vec::new();
    if part("calls") {
        match which::which("nginx") {
            Ok(nginx) => {
                for layout in Layout::ALL {
                    let server = Server::start(home.path(), layout).await;
                    versus.push(versus_nginx(&server, &nginx, &identities[..3], calls, rounds).await);
                    server.stop().await;
                }
            }
            Err(_) => println!("nginx is not on PATH (apt-get install nginx-light): the comparison is skipped"),
        }
    }

    if let Some((idle, gateway_share)) = idle {
        idle.print(&gateway_share);
    }
    if let Some(rate) = connect_rate {
        rate.print();
    }
    for v in versus {
        v.print();
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Raises this process's descriptor limit (the hard one too, when root) so the clients and the servers it
/// starts fit; returns the soft limit in force.
fn raise_descriptor_limit(wanted: u64) -> u64 {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if hard < wanted && setrlimit(Resource::RLIMIT_NOFILE, wanted, wanted).is_ok() {
        return wanted;
    }
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    getrlimit(Resource::RLIMIT_NOFILE).map(|(soft, _)| soft).unwrap_or(soft)
}

/// Pairs every identity by writing the gateway's store before it starts (pairing 10,000 nodes through a
/// door would mostly measure the owner's approvals).
fn write_paired_store(home: &Path, identities: &[Arc<Identity>]) {
    let nodes: Vec<PairedNode> = identities
        .iter()
        .enumerate()
        .map(|(i, identity)| PairedNode {
            node_id: identity.id(),
            device: DeviceInfo { name: format!("bench node {i}"), platform: "bench".into(), model: None },
            scopes: vec![Scope::Chat],
            created_at_ms: 1,
            last_seen_ms: 1,
            policy: Default::default(),
            routing_token_hash: None,
        })
        .collect();
    let path = gateway::home::paired_store_path(home);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, serde_json::to_vec(&serde_json::json!({ "version": 1, "nodes": nodes })).unwrap()).unwrap();
}

/// How the bridge and the gateway run: `lanyard up` (one process, as users run them), or `lanyard gateway`
/// and `lanyard bridge` as two processes, so the bridge's CPU can be read apart from the gateway's; the
/// bridge with its runtime's default worker threads (one per core), or with one, as nginx runs here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Up,
    Split,
    SplitOneThread,
}

impl Layout {
    const ALL: [Layout; 3] = [Layout::Up, Layout::Split, Layout::SplitOneThread];

    fn name(self) -> &'static str {
        match self {
            Layout::Up => "up",
            Layout::Split => "split",
            Layout::SplitOneThread => "split-1",
        }
    }

    fn split(self) -> bool {
        self != Layout::Up
    }

    fn title(self) -> &'static str {
        match self {
            Layout::Up => "`lanyard up`: bridge and gateway in one process",
            Layout::Split => "`lanyard gateway` and `lanyard bridge` as two processes",
            Layout::SplitOneThread => "two processes, the bridge on one runtime thread (TOKIO_WORKER_THREADS=1)",
        }
    }
}

/// The servers in processes of their own, so their memory, descriptors and CPU are their own.
struct Server {
    layout: Layout,
    /// `lanyard up`, or `lanyard gateway` then `lanyard bridge`.
    processes: Vec<Child>,
    gateway_pid: u32,
    /// The gateway's process under `lanyard up`.
    bridge_pid: u32,
    bridge: SocketAddr,
    bridge_id: KeyId,
    gateway_url: String,
    gateway_port: u16,
    /// The bridge's gateway token: the direct and nginx paths connect with it as nodes, so the gateway does
    /// the same work for a call on every path.
    bridge_token: String,
    limits_line: String,
}

/// `lanyard ARGS` with the home and quiet logs, under BENCH_SERVER_PREFIX (e.g. "valgrind --tool=massif");
/// BENCH_LANYARD runs another build of it (another commit's, for a before and after in one run).
fn lanyard(home: &Path, args: &[String], env: &[(&str, &str)]) -> Child {
    let prefix = std::env::var("BENCH_SERVER_PREFIX").unwrap_or_default();
    let binary = std::env::var("BENCH_LANYARD").unwrap_or_else(|_| env!("CARGO_BIN_EXE_lanyard").to_string());
    let mut words = prefix.split_whitespace().map(str::to_string).chain([binary]);
    Command::new(words.next().unwrap())
        .args(words)
        .args(args)
        .env("LANYARD_HOME", home)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Reads a bridge's banner up to its last line; returns its `Limits:` line.
async fn banner(process: &mut Child) -> String {
    let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
    let mut limits_line = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        if line.contains("Limits:") {
            limits_line = line.trim().to_string();
        }
        if line.contains("Stop with Ctrl-C") {
            break;
        }
    }
    limits_line
}

impl Server {
    async fn start(home: &Path, layout: Layout) -> Server {
        let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (gateway_port, bridge_port) = (free(), free());
        let gateway_url = format!("ws://127.0.0.1:{gateway_port}");
        let bridge_args = ["--mdns", "off", "--key-store", "file", "--bridge-bind", "127.0.0.1"]
            .into_iter()
            .map(String::from)
            // Calls back to back would pass a device's usual 20 a second.
            .chain(["--requests-per-node".into(), "1000000".into()])
            .chain(["--bridge-port".into(), bridge_port.to_string()]);
        let mut processes = Vec::new();
        if layout.split() {
            processes.push(lanyard(home, &["gateway".into(), "--port".into(), gateway_port.to_string()], &[]));
            let deadline = Instant::now() + Duration::from_secs(30);
            while tokio::net::TcpStream::connect(("127.0.0.1", gateway_port)).await.is_err() {
                assert!(Instant::now() < deadline, "`lanyard gateway` did not start");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let args: Vec<String> =
                ["--url".into(), gateway_url.clone(), "bridge".into()].into_iter().chain(bridge_args).collect();
            let threads: &[(&str, &str)] =
                if layout == Layout::SplitOneThread { &[("TOKIO_WORKER_THREADS", "1")] } else { &[] };
            processes.push(lanyard(home, &args, threads));
        } else {
            let args: Vec<String> =
                ["up".into(), "--port".into(), gateway_port.to_string()].into_iter().chain(bridge_args).collect();
            processes.push(lanyard(home, &args, &[]));
        }
        let limits_line = banner(processes.last_mut().unwrap()).await;
        let pem = std::fs::read_to_string(bridge::identity::key_file(home)).unwrap();
        let bridge_token = std::fs::read_to_string(gateway::home::bridge_token_path(home)).unwrap().trim().to_string();
        Server {
            layout,
            gateway_pid: processes[0].id().unwrap(),
            bridge_pid: processes.last().unwrap().id().unwrap(),
            processes,
            bridge: SocketAddr::from(([127, 0, 0, 1], bridge_port)),
            bridge_id: Identity::from_pkcs8_pem(&pem).unwrap().id(),
            gateway_url,
            gateway_port,
            bridge_token,
            limits_line,
        }
    }

    fn node(&self, identity: &Identity, from: IpAddr) -> node_kit::ClientBuilder {
        Client::bridge(self.bridge.to_string(), identity, Pin::Key(self.bridge_id)).unwrap().local_address(from)
    }

    /// A node's link as the bridge opens it: `mode: node`, the node's key ID, the bridge token.
    fn as_node(&self, builder: node_kit::ClientBuilder, identity: &Identity) -> node_kit::ClientBuilder {
        builder.token(&self.bridge_token).mode(ClientMode::Node).instance_id(identity.id().to_string())
    }

    fn pids(&self) -> Vec<u32> {
        self.processes.iter().filter_map(Child::id).collect()
    }

    /// RSS of `lanyard up` (parts 1 and 2 run only that layout).
    fn rss(&self) -> u64 {
        rss_of(self.gateway_pid)
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.gateway_pid)).unwrap().count()
    }

    /// CPU of every server process.
    fn cpu(&self) -> Duration {
        self.pids().into_iter().map(cpu_of).sum()
    }

    /// Stops the servers with SIGTERM, as a user would, so a profiler they run under writes its report.
    async fn stop(self) {
        for mut process in self.processes.into_iter().rev() {
            if let Some(pid) = process.id() {
                signal(pid, "-TERM");
            }
            if tokio::time::timeout(Duration::from_secs(60), process.wait()).await.is_err() {
                let _ = process.start_kill();
            }
        }
    }
}

fn signal(pid: u32, which: &str) {
    let _ = std::process::Command::new("kill").args([which, &pid.to_string()]).status();
}

fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches("kB").trim();
    kb.parse::<u64>().unwrap() * 1024
}

/// CPU time of every thread of a process, in nanoseconds from the scheduler (not the 10 ms ticks of `stat`).
fn cpu_of(pid: u32) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|line| line.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()))
        .sum();
    Duration::from_nanos(nanos)
}

struct ConnectRate {
    count: usize,
    wall: Duration,
    server_cpu: Duration,
    latency: Stats,
}

impl ConnectRate {
    fn per_second(&self) -> f64 {
        self.count as f64 / self.wall.as_secs_f64()
    }

    fn server_cpu_ms(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1000.0 / self.count as f64
    }

    fn print(&self) {
        println!("\n### Connects\n");
        println!("| what | value |\n| --- | --- |");
        println!("| node connects (to hello-ok), 64 in flight | {} |", self.count);
        println!("| connects per second, clients on the same 2 cores | {:.0} |", self.per_second());
        println!("| server CPU per connect | {:.3} ms |", self.server_cpu_ms());
        println!("| connects per second the server's CPU allows on 2 cores | {:.0} |", 2000.0 / self.server_cpu_ms());
        println!("| connect latency median / p90 | {} / {} |", ms(self.latency.median), ms(self.latency.p90));
    }
}

async fn connects_per_second(server: &Server, identities: &[Arc<Identity>]) -> ConnectRate {
    let in_flight = Arc::new(Semaphore::new(64));
    let cpu_before = server.cpu();
    let started = Instant::now();
    let tasks = identities.iter().enumerate().map(|(i, identity)| {
        let builder = server.node(identity, source(i)).keepalive(None);
        let in_flight = in_flight.clone();
        async move {
            let _permit = in_flight.acquire().await.unwrap();
            let asked = Instant::now();
            let client = builder.connect().await.expect("a node connects");
            let took = asked.elapsed();
            drop(client);
            took
        }
    });
    let mut latencies = join_all(tasks).await;
    let wall = started.elapsed();
    let server_cpu = server.cpu() - cpu_before;
    ConnectRate { count: identities.len(), wall, server_cpu, latency: Stats::of(&mut latencies) }
}

struct Idle {
    nodes: usize,
    rss_before: u64,
    rss_after: u64,
    fds_before: usize,
    fds_after: usize,
    all_answered: Duration,
    connect_all: Duration,
    rss_left: u64,
}

impl Idle {
    fn rss_per_node(&self) -> f64 {
        self.rss_after.saturating_sub(self.rss_before) as f64 / self.nodes as f64
    }

    fn print(&self, gateway_share: &Idle) {
        println!("\n### Idle paired nodes\n");
        println!("| what | value |\n| --- | --- |");
        println!("| nodes held | {} |", self.nodes);
        println!(
            "| server RSS before / with the nodes / after they all left | {:.1} MB / {:.1} MB / {:.1} MB |",
            mb(self.rss_before),
            mb(self.rss_after),
            mb(self.rss_left)
        );
        println!("| RSS per idle node (bridge + gateway) | {:.1} KB |", self.rss_per_node() / 1024.0);
        println!(
            "| of which the gateway's share (the same nodes as direct gateway links) | {:.1} KB |",
            gateway_share.rss_per_node() / 1024.0
        );
        println!(
            "| descriptors before / after | {} / {} ({:.2} per node) |",
            self.fds_before,
            self.fds_after,
            (self.fds_after - self.fds_before) as f64 / self.nodes as f64
        );
        println!("| all {} nodes answering a call sent at once | {} |", self.nodes, ms(self.all_answered));
        println!("| client connect time for all nodes | {:.1} s |", self.connect_all.as_secs_f64());
    }
}

async fn hold_idle_nodes(
    server: &Server,
    identities: &[Arc<Identity>],
    builder: impl Fn(usize, &Identity) -> node_kit::ClientBuilder,
) -> Idle {
    let (rss_before, fds_before) = (server.rss(), server.fds());
    let in_flight = Arc::new(Semaphore::new(64));
    let started = Instant::now();
    let tasks = identities.iter().enumerate().map(|(i, identity)| {
        let builder = builder(i, identity);
        let in_flight = in_flight.clone();
        async move {
            let _permit = in_flight.acquire().await.unwrap();
            builder.connect().await.expect("a node connects")
        }
    });
    let clients = join_all(tasks).await;
    let connect_all = started.elapsed();
    // Idle for a while: what a node costs once its connection has settled.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rss_after, fds_after) = (server.rss(), server.fds());
    let started = Instant::now();
    let answers = join_all(clients.iter().map(|c| c.request(method::SYSTEM_EVENT, serde_json::json!({})))).await;
    let all_answered = started.elapsed();
    assert!(answers.iter().all(Result::is_ok), "every idle node is answered");
    drop(clients);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_left = server.rss();
    Idle { nodes: identities.len(), rss_before, rss_after, fds_before, fds_after, all_answered, connect_all, rss_left }
}

/// nginx in front of the gateway: TLS 1.3, client certificates asked for and not checked against a CA (the
/// way the bridge takes any key before pairing), one worker, WebSocket proxying.
struct Nginx {
    process: Child,
    pid: u32,
    addr: SocketAddr,
    identity: Identity,
    _dir: tempfile::TempDir,
}

impl Nginx {
    async fn start(binary: &Path, gateway_port: u16) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::generate();
        let pem = |label: &str, der: &[u8]| {
            let body = data_encoding::BASE64.encode(der);
            let lines: Vec<&str> = body.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
            format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
        };
        std::fs::write(dir.path().join("cert.pem"), pem("CERTIFICATE", identity.certificate())).unwrap();
        std::fs::write(dir.path().join("key.pem"), pem("PRIVATE KEY", &pkcs8_v1(&identity))).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        // As root, nginx's worker would switch to a user that cannot read the key in this directory.
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
        let user = if root { "user root;" } else { "" };
        let conf = format!(
            "{user}
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile 4096;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fcgi;
  uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_protocols TLSv1.3;
    ssl_certificate {dir}/cert.pem;
    ssl_certificate_key {dir}/key.pem;
    ssl_verify_client optional_no_ca;
    location / {{
      proxy_pass http://127.0.0.1:{gateway_port};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection \"upgrade\";
      proxy_read_timeout 3600s;
    }}
  }}
}}
",
            dir = dir.path().display()
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let process = Command::new(binary)
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir.path())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {:?}",
                std::fs::read_to_string(dir.path().join("error.log"))
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Nginx { pid: process.id().unwrap(), process, addr, identity, _dir: dir }
    }
}

/// The key as PKCS#8 v1, which OpenSSL 3.0 reads: ring writes v2 (with the public key after the seed),
/// and for Ed25519 the v1 encoding is a fixed prefix and the 32-byte seed.
fn pkcs8_v1(identity: &Identity) -> Vec<u8> {
    let pem = identity.to_pkcs8_pem();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let v2 = data_encoding::BASE64.decode(body.as_bytes()).unwrap();
    let seed_at = v2.windows(4).position(|w| w == [0x04, 0x22, 0x04, 0x20]).unwrap() + 4;
    let mut v1 = vec![0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
    v1.extend_from_slice(&v2[seed_at..seed_at + 32]);
    v1
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.process.start_kill();
    }
}

impl Nginx {
    /// The master and its worker.
    fn pids(&self) -> Vec<u32> {
        let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.pid)).unwrap_or_default();
        std::iter::once(self.pid).chain(children.split_whitespace().filter_map(|p| p.parse().ok())).collect()
    }

    fn cpu(&self) -> Duration {
        self.pids().into_iter().map(cpu_of).sum()
    }
}

/// Bytes of text the large call carries.
const LARGE_CALL_BYTES: usize = 64 * 1024;

/// The calls measured against nginx. The large one is a `system-event` whose beacon text is 64 KB: the
/// gateway parses it and keeps it as the node's presence, the same work on every path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    SystemEvent,
    Health,
    Large,
}

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::SystemEvent => "system-event",
            Call::Health => "health",
            Call::Large => "64k",
        }
    }

    /// Those BENCH_KINDS lists (by [`Call::name`]), all by default.
    fn chosen() -> Vec<Call> {
        let all = [Call::SystemEvent, Call::Health, Call::Large];
        match std::env::var("BENCH_KINDS") {
            Ok(kinds) => all.into_iter().filter(|c| kinds.split(',').any(|k| k.trim() == c.name())).collect(),
            Err(_) => all.to_vec(),
        }
    }

    fn request(self) -> (&'static str, serde_json::Value) {
        match self {
            Call::SystemEvent => (method::SYSTEM_EVENT, serde_json::json!({})),
            Call::Health => (method::HEALTH, serde_json::Value::Null),
            Call::Large => (method::SYSTEM_EVENT, serde_json::json!({ "text": "a".repeat(LARGE_CALL_BYTES) })),
        }
    }
}

/// The three paths a call takes, in the order of [`CallSamples::paths`].
const PATHS: [&str; 3] = [
    "gateway directly (ws, loopback)",
    "through the bridge (mutual pinned TLS 1.3)",
    "through nginx (TLS 1.3, client certificate, 1 worker)",
];

/// One path's batches of one kind of call.
#[derive(Default)]
struct PathSamples {
    latencies: Vec<Duration>,
    /// Per call in each batch: CPU of every server process on the path (the lanyard processes, and nginx's
    /// on its path).
    all_cpu: Vec<Duration>,
    /// Per call in each batch: CPU of the proxy's own process, the bridge's (when it runs alone) or nginx's.
    proxy_cpu: Vec<Duration>,
}

fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

struct CallSamples {
    call: Call,
    /// Direct, bridge, nginx.
    paths: [PathSamples; 3],
}

struct Versus {
    layout: Layout,
    calls: Vec<CallSamples>,
}

/// perf recording the servers while part 3 runs, when BENCH_PERF names a directory.
struct Profilers(Vec<Child>);

impl Profilers {
    fn start(layout: Layout, server: &Server, nginx: &Nginx) -> Profilers {
        let Ok(dir) = std::env::var("BENCH_PERF") else {
            return Profilers(Vec::new());
        };
        let who = if layout.split() {
            vec![("gateway", vec![server.gateway_pid]), ("bridge", vec![server.bridge_pid])]
        } else {
            vec![("up", vec![server.gateway_pid])]
        };
        let who = who.into_iter().chain([("nginx", nginx.pids())]);
        Profilers(
            who.map(|(name, pids)| {
                let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
                let out = format!("{dir}/{}-{name}.data", layout.name());
                Command::new("perf")
                    .args(["record", "-q", "-F", "999", "--call-graph", "dwarf,32768", "-o", &out, "-p"])
                    .arg(pids.join(","))
                    .stdout(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .expect("perf runs")
            })
            .collect(),
        )
    }

    async fn stop(self) {
        for mut perf in self.0 {
            signal(perf.id().unwrap(), "-INT");
            let _ = perf.wait().await;
        }
    }
}

/// Three paired nodes, one per path (a node's newer connection would replace its older one). No operator
/// is connected, so a call's presence beacon is announced to nobody on any path.
async fn versus_nginx(
    server: &Server,
    nginx: &Path,
    identities: &[Arc<Identity>],
    calls: usize,
    rounds: usize,
) -> Versus {
    let proxy = Nginx::start(nginx, server.gateway_port).await;
    let direct = server.as_node(Client::builder(&server.gateway_url), &identities[0]).connect().await.unwrap();
    let node = server.node(&identities[1], IpAddr::V4(Ipv4Addr::LOCALHOST)).connect().await.unwrap();
    let to_nginx = Client::bridge(proxy.addr.to_string(), &identities[2], Pin::Key(proxy.identity.id())).unwrap();
    let through_nginx =
        server.as_node(to_nginx, &identities[2]).connect().await.expect("a client connects through nginx");
    let clients = [&direct, &node, &through_nginx];
    let mut samples: Vec<CallSamples> =
        Call::chosen().into_iter().map(|call| CallSamples { call, paths: Default::default() }).collect();
    // Warm-up, then rounds of one batch per kind and path, the paths in a rotating order.
    for kind in &samples {
        for client in clients {
            batch(client, kind.call, 200).await;
        }
    }
    let profilers = Profilers::start(server.layout, server, &proxy);
    for round in 0..rounds {
        for kind in &mut samples {
            for path in (0..3).map(|i| (i + round) % 3) {
                let cpu = || {
                    let lanyard = server.cpu();
                    match path {
                        0 => (lanyard, Duration::ZERO),
                        1 => (lanyard, cpu_of(server.bridge_pid)),
                        _ => (lanyard + proxy.cpu(), proxy.cpu()),
                    }
                };
                let (all_before, proxy_before) = cpu();
                let mut latencies = batch(clients[path], kind.call, calls).await;
                let (all_after, proxy_after) = cpu();
                let taken = &mut kind.paths[path];
                taken.all_cpu.push((all_after - all_before) / calls as u32);
                taken.proxy_cpu.push((proxy_after - proxy_before) / calls as u32);
                taken.latencies.append(&mut latencies);
            }
        }
    }
    profilers.stop().await;
    Versus { layout: server.layout, calls: samples }
}

async fn batch(client: &Client, call: Call, calls: usize) -> Vec<Duration> {
    let (method, params) = call.request();
    let mut latencies = Vec::with_capacity(calls);
    for _ in 0..calls {
        let params = params.clone();
        let started = Instant::now();
        client.request(method, params).await.unwrap();
        latencies.push(started.elapsed());
    }
    latencies
}

impl Versus {
    fn print(mut self) {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let (title, proxy_alone) = (self.layout.title(), self.layout.split());
        println!("\n### Calls: direct, through the bridge, through nginx ({title})\n");
        println!(
            "| call | path | calls | median | p90 | CPU per call, all server processes | CPU per call, the proxy's \
             process |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- |");
        let mut ratios = Vec::new();
        for kind in &mut self.calls {
            let mut latency = Vec::new();
            let mut all_cpu = Vec::new();
            let mut proxy_cpu = Vec::new();
            for (path, taken) in PATHS.iter().zip(&mut kind.paths) {
                let stats = Stats::of(&mut taken.latencies);
                let (all, proxy) = (median(&taken.all_cpu), median(&taken.proxy_cpu));
                let alone =
                    if proxy_alone && proxy > Duration::ZERO { format!("{:.1} µs", us(proxy)) } else { "–".into() };
                println!(
                    "| {} | {path} | {} | {:.1} µs | {:.1} µs | {:.1} µs | {alone} |",
                    kind.call.name(),
                    taken.latencies.len(),
                    us(stats.median),
                    us(stats.p90),
                    us(all)
                );
                latency.push(us(stats.median));
                all_cpu.push(us(all));
                proxy_cpu.push(us(proxy));
            }
            ratios.push((kind.call, latency, all_cpu, proxy_cpu));
        }
        let alone_column = if proxy_alone { " proxy process CPU: bridge / nginx |" } else { "" };
        println!("\n| call | added latency: bridge / nginx | added CPU, all processes: bridge / nginx |{alone_column}");
        println!("| --- | --- | --- |{}", if proxy_alone { " --- |" } else { "" });
        for (call, latency, all_cpu, proxy_cpu) in ratios {
            let added = |v: &[f64], i: usize| v[i] - v[0];
            let ratio = |a: f64, b: f64| format!("{a:.1} / {b:.1} µs = **{:.2}**", a / b);
            print!(
                "| {} | {} | {} |",
                call.name(),
                ratio(added(&latency, 1), added(&latency, 2)),
                ratio(added(&all_cpu, 1), added(&all_cpu, 2))
            );
            if proxy_alone {
                print!(" {} |", ratio(proxy_cpu[1], proxy_cpu[2]));
            }
            println!();
        }
    }
}
