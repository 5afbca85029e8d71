//! What strangers and idle nodes cost a running `lanyard up`, and what a call costs through the bridge next
//! to nginx doing the same job, in one run against one `lanyard up` process:
//!
//! 1. **Idle nodes held**: N paired nodes (10,000 by default) connect from many loopback addresses and stay
//!    connected; the server's RSS and open descriptors before and after, per node; then every node sends one
//!    call at once and the time until all are answered.
//! 2. **Connects per second**: full node connects (TCP, mutual pinned TLS 1.3, WebSocket, `connect`, the
//!    bridge's gateway link, `hello-ok`) with 64 in flight, and the server's CPU time per connect.
//! 3. **A call through the bridge against nginx**: nginx 1 worker, TLS 1.3 with client certificates, as a
//!    WebSocket reverse proxy in front of the same gateway. The same node-kit client, the same call
//!    (`system-event`), and the same gateway work (each path reaches the gateway as a node's link), on three
//!    paths: straight to the gateway, through the bridge, through nginx; batches rotate and each path's
//!    added latency and server CPU per call are taken over the direct path.
//!
//!   cargo bench -p lanyard --bench capacity
//!   BENCH_NODES=10000 BENCH_CONNECTS=4000 BENCH_CALLS=3000 BENCH_ROUNDS=5 to change the sizes.
//!
//! BENCH_SERVER_PREFIX runs each `lanyard up` under a profiler (e.g. "valgrind --tool=massif").
//!
//! Needs nginx on PATH (`apt-get install nginx-light`; the part is skipped with a note otherwise). Run as root
//! it raises the descriptor hard limit so 10,000 nodes (three descriptors each in `lanyard up`) fit.

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

#[tokio::main]
async fn main() {
    let nodes = env_or("BENCH_NODES", 10_000);
    let connects = env_or("BENCH_CONNECTS", 4_000);
    let calls = env_or("BENCH_CALLS", 3_000);
    let rounds = env_or("BENCH_ROUNDS", 5);
    let descriptors = raise_descriptor_limit(4 * nodes as u64 + 10_000);
    println!("descriptor limit for this process and `lanyard up`: {descriptors}");

    let home = tempfile::tempdir().unwrap();
    let identities: Vec<Arc<Identity>> = (0..nodes.max(connects)).map(|_| Arc::new(Identity::generate())).collect();
    write_paired_store(home.path(), &identities);
    // Each part on a fresh `lanyard up`: memory a part freed would hide what the next one costs.
    let server = Server::start(home.path()).await;
    println!("{}", server.limits_line);
    let connect_rate = connects_per_second(&server, &identities[..connects]).await;
    server.stop().await;

    let server = Server::start(home.path()).await;
    let idle = hold_idle_nodes(&server, &identities[..nodes], |i, identity| server.node(identity, source(i))).await;
    server.stop().await;

    // The gateway's share: the same nodes as links straight to the gateway, as the bridge opens them.
    let server = Server::start(home.path()).await;
    let gateway_share = hold_idle_nodes(&server, &identities[..nodes], |_, identity| {
        server.as_node(Client::builder(&server.gateway_url), identity)
    })
    .await;

    let versus = match which::which("nginx") {
        Ok(nginx) => Some(versus_nginx(&server, &nginx, &identities[..3], calls, rounds).await),
        Err(_) => {
            println!("nginx is not on PATH (apt-get install nginx-light): the comparison is skipped");
            None
        }
    };
    server.stop().await;

    println!("\n### Idle paired nodes\n");
    println!("| what | value |\n| --- | --- |");
    println!("| nodes held | {} |", idle.nodes);
    println!(
        "| server RSS before / with the nodes / after they all left | {:.1} MB / {:.1} MB / {:.1} MB |",
        mb(idle.rss_before),
        mb(idle.rss_after),
        mb(idle.rss_left)
    );
    println!("| RSS per idle node (bridge + gateway) | {:.1} KB |", idle.rss_per_node() / 1024.0);
    println!(
        "| of which the gateway's share (the same nodes as direct gateway links) | {:.1} KB |",
        gateway_share.rss_per_node() / 1024.0
    );
    println!(
        "| descriptors before / after | {} / {} ({:.2} per node) |",
        idle.fds_before,
        idle.fds_after,
        (idle.fds_after - idle.fds_before) as f64 / idle.nodes as f64
    );
    println!("| time until every node's call was answered (all at once) | {} |", ms(idle.all_answered));
    println!("| client connect time for all nodes | {:.1} s |", idle.connect_all.as_secs_f64());

    println!("\n### Connects\n");
    println!("| what | value |\n| --- | --- |");
    println!("| node connects (to hello-ok), 64 in flight | {} |", connect_rate.count);
    println!("| connects per second, clients on the same 2 cores | {:.0} |", connect_rate.per_second());
    println!("| server CPU per connect | {:.3} ms |", connect_rate.server_cpu_ms());
    println!(
        "| connects per second the server's CPU allows on 2 cores | {:.0} |",
        2000.0 / connect_rate.server_cpu_ms()
    );
    println!(
        "| connect latency median / p90 | {} / {} |",
        ms(connect_rate.latency.median),
        ms(connect_rate.latency.p90)
    );

    if let Some(v) = versus {
        v.print();
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Raises this process's descriptor limit (the hard one too, when root) so the clients and the server it
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

/// `lanyard up` in a process of its own, so its memory, descriptors and CPU are its own.
struct Server {
    process: Child,
    pid: u32,
    bridge: SocketAddr,
    bridge_id: KeyId,
    gateway_url: String,
    gateway_port: u16,
    /// The bridge's gateway token: the direct and nginx paths connect with it as nodes, so the gateway does
    /// the same work for a call on every path.
    bridge_token: String,
    limits_line: String,
}

impl Server {
    async fn start(home: &Path) -> Server {
        let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let (gateway_port, bridge_port) = (free(), free());
        // BENCH_SERVER_PREFIX runs the server under a profiler, e.g. "valgrind --tool=massif".
        let prefix = std::env::var("BENCH_SERVER_PREFIX").unwrap_or_default();
        let mut words = prefix.split_whitespace().chain([env!("CARGO_BIN_EXE_lanyard")]);
        let mut process = Command::new(words.next().unwrap())
            .args(words)
            .args(["up", "--mdns", "off", "--key-store", "file", "--bridge-bind", "127.0.0.1"])
            // Calls back to back would pass a device's usual 20 a second.
            .args(["--requests-per-node", "1000000"])
            .args(["--port", &gateway_port.to_string(), "--bridge-port", &bridge_port.to_string()])
            .env("LANYARD_HOME", home)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
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
        let pem = std::fs::read_to_string(bridge::identity::key_file(home)).unwrap();
        let bridge_token = std::fs::read_to_string(gateway::home::bridge_token_path(home)).unwrap().trim().to_string();
        Server {
            pid: process.id().unwrap(),
            process,
            bridge: SocketAddr::from(([127, 0, 0, 1], bridge_port)),
            bridge_id: Identity::from_pkcs8_pem(&pem).unwrap().id(),
            gateway_url: format!("ws://127.0.0.1:{gateway_port}"),
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

    fn rss(&self) -> u64 {
        rss_of(self.pid)
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid)).unwrap().count()
    }

    fn cpu(&self) -> Duration {
        cpu_of(self.pid)
    }
}

impl Server {
    /// Stops the server with SIGTERM, as a user would, so a profiler it runs under writes its report.
    async fn stop(mut self) {
        let _ = std::process::Command::new("kill").args(["-TERM", &self.pid.to_string()]).status();
        if tokio::time::timeout(Duration::from_secs(60), self.process.wait()).await.is_err() {
            let _ = self.process.start_kill();
        }
    }
}

fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap().trim().trim_end_matches("kB").trim();
    kb.parse::<u64>().unwrap() * 1024
}

/// CPU time of every thread of a process, in nanoseconds from the scheduler (not the 10 ms ticks of `stat`).
fn cpu_of(pid: u32) -> Duration {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
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

    /// CPU of the master and its worker.
    fn cpu(&self) -> Duration {
        let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.pid)).unwrap_or_default();
        let workers: Duration = children.split_whitespace().filter_map(|p| p.parse().ok()).map(cpu_of).sum();
        cpu_of(self.pid) + workers
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

/// One path's batches: per-call latencies, and server CPU per call in each batch.
#[derive(Default)]
struct PathSamples {
    latencies: Vec<Duration>,
    cpu_per_call: Vec<Duration>,
}

impl PathSamples {
    fn median_cpu(&self) -> Duration {
        let mut cpu = self.cpu_per_call.clone();
        cpu.sort();
        cpu[cpu.len() / 2]
    }
}

struct Versus {
    direct: PathSamples,
    bridge: PathSamples,
    nginx: PathSamples,
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
    let mut versus = Versus { direct: Default::default(), bridge: Default::default(), nginx: Default::default() };
    // Warm-up, then rounds of one batch per path, in a rotating order.
    for client in [&direct, &node, &through_nginx] {
        batch(client, 200).await;
    }
    for round in 0..rounds {
        for path in (0..3).map(|i| (i + round) % 3) {
            let (client, samples) = match path {
                0 => (&direct, &mut versus.direct),
                1 => (&node, &mut versus.bridge),
                _ => (&through_nginx, &mut versus.nginx),
            };
            let cpu_before = server.cpu() + if path == 2 { proxy.cpu() } else { Duration::ZERO };
            let mut latencies = batch(client, calls).await;
            let cpu = server.cpu() + if path == 2 { proxy.cpu() } else { Duration::ZERO } - cpu_before;
            samples.cpu_per_call.push(cpu / calls as u32);
            samples.latencies.append(&mut latencies);
        }
    }
    versus
}

async fn batch(client: &Client, calls: usize) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(calls);
    for _ in 0..calls {
        let started = Instant::now();
        client.request(method::SYSTEM_EVENT, serde_json::json!({})).await.unwrap();
        latencies.push(started.elapsed());
    }
    latencies
}

impl Versus {
    fn print(mut self) {
        let direct = Stats::of(&mut self.direct.latencies);
        let bridge = Stats::of(&mut self.bridge.latencies);
        let nginx = Stats::of(&mut self.nginx.latencies);
        let (direct_cpu, bridge_cpu, nginx_cpu) =
            (self.direct.median_cpu(), self.bridge.median_cpu(), self.nginx.median_cpu());
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!("\n### A call: direct, through the bridge, through nginx\n");
        println!("| path | calls | median | p90 | server CPU per call (median of batches) |");
        println!("| --- | --- | --- | --- | --- |");
        for (what, stats, cpu, n) in [
            ("gateway directly (ws, loopback)", &direct, direct_cpu, self.direct.latencies.len()),
            ("through the bridge (mutual pinned TLS 1.3)", &bridge, bridge_cpu, self.bridge.latencies.len()),
            ("through nginx (TLS 1.3, client certificate, 1 worker)", &nginx, nginx_cpu, self.nginx.latencies.len()),
        ] {
            println!("| {what} | {n} | {} | {} | {:.1} µs |", ms(stats.median), ms(stats.p90), us(cpu));
        }
        let added = |path: &Stats| us(path.median) - us(direct.median);
        let (bridge_added, nginx_added) = (added(&bridge), added(&nginx));
        let (bridge_cpu_added, nginx_cpu_added) = (us(bridge_cpu) - us(direct_cpu), us(nginx_cpu) - us(direct_cpu));
        println!(
            "\nAdded over the direct call: bridge {bridge_added:.1} µs latency, {bridge_cpu_added:.1} µs CPU; \
             nginx {nginx_added:.1} µs latency, {nginx_cpu_added:.1} µs CPU"
        );
        println!(
            "Bridge ÷ nginx: latency added {:.2}, CPU added {:.2}",
            bridge_added / nginx_added,
            bridge_cpu_added / nginx_cpu_added
        );
    }
}
