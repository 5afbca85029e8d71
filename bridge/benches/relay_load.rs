//! The relay under load: one bridge's Durable Object, the real relay Worker under `wrangler dev` (workerd
//! on loopback), a real bridge tunnelled to it and real clients through it.
//!
//! - **Streamed frames**: `BENCH_DEVICES` paired devices, each with its pinned TLS session carried by the
//!   relay, send `system-event` calls at rising offered rates (open loop: each call has its slot, and its
//!   latency counts from the slot, so a relay that falls behind shows it). A call is one WebSocket message
//!   from the node through the object to the bridge, and one back.
//! - **Sealed calls**: `BENCH_SEALED` clients paired by PIN send sealed `hello` commands (`POST /v1/chat`),
//!   each an HTTP stream through the object: OPEN and the body in, head, body and CLOSE out.
//! - **Streams held**: the devices' live sessions plus raw streams of their tokens, up to the object's cap;
//!   then one more, to show the refusal; then a call on every live session with all of them held.
//!
//! For each step: achieved calls a second, latency median and p90, and the CPU of workerd, of wrangler's
//! Node process (its local proxy runs inside workerd), and of this process (the bridge, the gateway and the
//! clients), from /proc. Every step is bounded in
//! time, every call in time. Prints Markdown tables for docs/benchmarks.md ("The relay under load").
//!
//!   cargo bench -p bridge --bench relay_load
//!   BENCH_DEVICES=32 BENCH_SEALED=8 BENCH_SECONDS=4 BENCH_RATES=100,200,400,800,1600
//!   BENCH_SEALED_RATES=10,20,40,80,160 to change the sizes.

#[path = "../../gateway/benches/stats.rs"]
mod stats;
#[path = "../tests/support/mod.rs"]
mod support;

use bridge::connections::ConnectionCaps;
use bridge::ratelimit::Rate;
use certs::Pin;
use node_kit::Client;
use node_kit::protocol::{DeviceInfo, Scope, method};
use node_kit::relay::RelayRoute;
use node_kit::sealed_client::SealedClient;
use stats::{Stats, ms};
use std::time::{Duration, Instant};
use support::TestBridge;
use support::gw::{TestGateway, eventually};
use support::relay::{LocalRelay, paired_with_route, raw_stream, relay_knows, remote_code, tunnel_on};

/// The longest one call may take before it counts as failed.
const CALL_WITHIN: Duration = Duration::from_secs(10);
/// Linux reports process times in ticks of 1/100 s (USER_HZ, fixed at 100 on every architecture here).
const TICKS_PER_SECOND: f64 = 100.0;
/// The object's cap on streams open at once (apps/relay-worker/src/limits.ts).
const OBJECT_STREAM_CAP: usize = 256;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|n| n.parse().ok()).unwrap_or(default)
}

fn rates_or(name: &str, default: &[f64]) -> Vec<f64> {
    std::env::var(name)
        .ok()
        .map(|list| list.split(',').filter_map(|r| r.trim().parse().ok()).collect())
        .unwrap_or_else(|| default.to_vec())
}

#[tokio::main]
async fn main() {
    let devices = env_or("BENCH_DEVICES", 32);
    let sealed = env_or("BENCH_SEALED", 8);
    let seconds = Duration::from_secs(env_or("BENCH_SECONDS", 4) as u64);
    let rates = rates_or("BENCH_RATES", &[100.0, 200.0, 400.0, 800.0, 1600.0]);
    let sealed_rates = rates_or("BENCH_SEALED_RATES", &[10.0, 20.0, 40.0, 80.0, 160.0]);

    let Some(relay) = LocalRelay::start().await else { return };
    let port: u16 = relay.url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("the relay's port");
    let processes = RelayProcesses::find(port);
    let gateway = TestGateway::start(|_| {}).await;
    // The relay is what is measured: the bridge's own limits are lifted out of its way, and raw streams
    // (which send no TLS) are kept for the whole run.
    let bridge = TestBridge::start(&gateway, |config| {
        config.limits.handshakes_per_address = Rate::per_second(100_000, 100_000);
        config.limits.requests_per_node = Rate::per_second(100_000, 100_000);
        config.limits.pairing_per_address = Rate::per_second(1000, 1000);
        config.limits.pairing_codes_per_address = Rate::per_second(1000, 1000);
        config.caps = ConnectionCaps { unpaired: 2048, unpaired_per_address: 8, unpaired_per_key: 2, paired: 2048 };
        config.handshake_timeout = Duration::from_secs(300);
    })
    .await;
    tunnel_on(&gateway, &relay.url).await;

    let mut routes = Vec::new();
    let mut clients = Vec::new();
    let mut connects = Vec::new();
    for _ in 0..devices {
        let (identity, _, route) = paired_with_route(&bridge, &gateway, &relay.url).await;
        let relayed = Client::bridge(bridge.address(), &identity, Pin::Key(bridge.id)).unwrap().relay(route.clone());
        let started = Instant::now();
        clients.push(relayed.connect().await.expect("connects through the relay"));
        connects.push(started.elapsed());
        routes.push(route);
    }
    let mut sealed_clients = Vec::new();
    for i in 0..sealed {
        let (invite, code) = remote_code(&gateway, &bridge, &relay.url, &relay.url).await;
        let device = DeviceInfo { name: format!("Bench phone {i}"), platform: "web".into(), model: None };
        let client = SealedClient::pair(&invite, &code.pin, device, vec![Scope::Chat]).await.expect("pairs by PIN");
        let token = client.paired().token.clone();
        eventually(Duration::from_secs(10), async || relay_knows(&relay.url, &bridge.id, &token).await.then_some(()))
            .await;
        sealed_clients.push(client);
    }
    let connect = Stats::of(&mut connects);
    println!(
        "\n{devices} devices connected through the relay (relay WebSocket, pinned TLS 1.3, WebSocket, connect): \
         median {}, p90 {}; {sealed} sealed clients paired by PIN.",
        ms(connect.median),
        ms(connect.p90)
    );

    println!("\n### Streamed frames: `system-event` on {devices} relayed sessions, {}s a step\n", seconds.as_secs());
    print_header();
    for &rate in &rates {
        let step = paced(&processes, &mut clients, rate, seconds, async |client: &mut Client| {
            client.request(method::SYSTEM_EVENT, serde_json::json!({})).await.is_ok()
        })
        .await;
        step.print(rate);
    }

    println!("\n### Sealed calls: `hello` from {sealed} clients (`POST /v1/chat`), {}s a step\n", seconds.as_secs());
    print_header();
    for &rate in &sealed_rates {
        let step = paced(&processes, &mut sealed_clients, rate, seconds, async |client: &mut SealedClient| {
            client.hello().await.is_ok()
        })
        .await;
        step.print(rate);
    }

    held_streams(&processes, &clients, &routes).await;

    drop((clients, sealed_clients));
    bridge.stop().await;
    gateway.stop().await;
}

/// Fills the object with streams (the live sessions, then raw streams of their tokens, at most 8 a token),
/// shows the refusal of one more, and times a call on every live session with all of them held.
async fn held_streams(processes: &RelayProcesses, clients: &[Client], routes: &[RelayRoute]) {
    let rss_before = processes.workerd_rss_kib();
    let mut raw = Vec::new();
    'fill: for _ in 0..7 {
        for route in routes {
            if clients.len() + raw.len() >= OBJECT_STREAM_CAP {
                break 'fill;
            }
            raw.push(raw_stream(route).await.expect("a stream under the caps"));
        }
    }
    let held = clients.len() + raw.len();
    let rss_after = processes.workerd_rss_kib();
    let refusal = match raw_stream(&routes[0]).await {
        Ok(_) => "none: opened".to_string(),
        Err((status, retry_after, body)) => {
            format!("`{status}` `{body}`, `Retry-After: {}`", retry_after.unwrap_or_default())
        }
    };
    let all_at_once = futures_util::future::join_all(clients.iter().map(|client| async {
        let started = Instant::now();
        let answered = tokio::time::timeout(CALL_WITHIN, client.request(method::SYSTEM_EVENT, serde_json::json!({})));
        answered.await.ok().and_then(Result::ok).map(|_| started.elapsed())
    }))
    .await;
    let mut answered: Vec<Duration> = all_at_once.iter().flatten().copied().collect();
    let round = Stats::of(&mut answered);
    println!("\n### Streams held by one object\n");
    println!(
        "- held: {held} ({} live TLS sessions, {} raw streams of their tokens); the next: {refusal}",
        clients.len(),
        raw.len()
    );
    println!(
        "- a call on every live session at once, all {held} held: {} of {} answered, median {}, p90 {}",
        answered.len(),
        clients.len(),
        ms(round.median),
        ms(round.p90)
    );
    println!(
        "- workerd RSS: {} MiB with the live sessions, {} MiB with all {held} ({:.1} KiB a raw stream, local runtime)",
        rss_before / 1024,
        rss_after / 1024,
        rss_after.saturating_sub(rss_before) as f64 / raw.len().max(1) as f64
    );
}

fn print_header() {
    println!(
        "| offered calls/s | achieved calls/s | median | p90 | failed | workerd CPU | workerd CPU ms a call | wrangler (Node) CPU | bridge, gateway and clients CPU |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
}

struct Step {
    latencies: Vec<Duration>,
    failed: usize,
    elapsed: Duration,
    workerd_cpu: f64,
    wrangler_cpu: f64,
    own_cpu: f64,
}

impl Step {
    fn print(mut self, offered: f64) {
        let done = self.latencies.len();
        let wall = self.elapsed.as_secs_f64();
        let per_call = if done == 0 { 0.0 } else { self.workerd_cpu * 1000.0 / done as f64 };
        let (median, p90) = if done == 0 {
            ("-".to_string(), "-".to_string())
        } else {
            let s = Stats::of(&mut self.latencies);
            (ms(s.median), ms(s.p90))
        };
        println!(
            "| {offered:.0} | {:.0} | {median} | {p90} | {} | {:.0} % | {per_call:.2} | {:.0} % | {:.0} % |",
            done as f64 / wall,
            self.failed,
            self.workerd_cpu / wall * 100.0,
            self.wrangler_cpu / wall * 100.0,
            self.own_cpu / wall * 100.0
        );
    }
}

/// Runs `call` on every state at `rate` calls a second in all, for `run_for`: each state has its slots,
/// evenly spaced and staggered against the others, and a call's latency counts from its slot.
async fn paced<S>(
    processes: &RelayProcesses,
    states: &mut [S],
    rate: f64,
    run_for: Duration,
    call: impl AsyncFn(&mut S) -> bool,
) -> Step {
    let count = states.len();
    let every = Duration::from_secs_f64(count as f64 / rate);
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + run_for;
    let cpu = processes.cpu_seconds();
    let call = &call;
    let runs = futures_util::future::join_all(states.iter_mut().enumerate().map(|(i, state)| async move {
        let (mut latencies, mut failed) = (Vec::new(), 0);
        let mut slot = start + every.mul_f64(i as f64 / count as f64);
        while slot < end {
            tokio::time::sleep_until(slot.into()).await;
            match tokio::time::timeout(CALL_WITHIN, call(state)).await {
                Ok(true) => latencies.push(slot.elapsed()),
                _ => failed += 1,
            }
            slot += every;
        }
        (latencies, failed)
    }))
    .await;
    let elapsed = start.elapsed();
    let after = processes.cpu_seconds();
    let (mut latencies, mut failed) = (Vec::new(), 0);
    for (l, f) in runs {
        latencies.extend(l);
        failed += f;
    }
    Step {
        latencies,
        failed,
        elapsed,
        workerd_cpu: after.0 - cpu.0,
        wrangler_cpu: after.1 - cpu.1,
        own_cpu: after.2 - cpu.2,
    }
}

/// The processes of this benchmark's `wrangler dev`: its own (Node, the local proxy) and workerd's, found
/// by the port it serves (another `wrangler dev` on the machine has another).
struct RelayProcesses {
    wrangler: i32,
    workerd: Vec<i32>,
}

impl RelayProcesses {
    fn find(port: u16) -> RelayProcesses {
        let pids: Vec<i32> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
            .collect();
        let port = port.to_string();
        let wrangler = *pids
            .iter()
            .find(|pid| {
                let args = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let args: Vec<&[u8]> = args.split(|b| *b == 0).collect();
                args.iter().any(|a| a.ends_with(b"wrangler.js"))
                    && args.windows(2).any(|w| w[0] == b"--port" && w[1] == port.as_bytes())
            })
            .expect("this benchmark's wrangler dev");
        // wrangler runs in a process group of its own (LocalRelay starts it so), and workerd in it.
        let workerd = pids
            .into_iter()
            .filter(|pid| {
                stat_fields(*pid).is_some_and(|fields| fields[2] == wrangler.to_string())
                    && std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "workerd")
            })
            .collect::<Vec<_>>();
        assert!(!workerd.is_empty(), "no workerd in wrangler's process group");
        RelayProcesses { wrangler, workerd }
    }

    /// CPU seconds (user and system) so far: workerd's, wrangler's Node process's, and this process's.
    fn cpu_seconds(&self) -> (f64, f64, f64) {
        let of = |pid: i32| {
            stat_fields(pid).map_or(0.0, |f| {
                (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / TICKS_PER_SECOND
            })
        };
        (self.workerd.iter().map(|pid| of(*pid)).sum(), of(self.wrangler), of(std::process::id() as i32))
    }

    fn workerd_rss_kib(&self) -> u64 {
        self.workerd
            .iter()
            .filter_map(|pid| {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
                let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .sum()
    }
}

/// The fields of /proc/PID/stat after the command name, from the state (field 3) on.
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    Some(after.split_whitespace().map(str::to_string).collect())
}
