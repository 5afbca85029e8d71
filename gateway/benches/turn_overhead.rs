//! What the gateway adds to an agent turn. The same scripted turns run, interleaved, directly against a
//! persistent `claude` process (the baseline: stream-json lines on its stdin and stdout) and through the
//! gateway (a WebSocket client → gateway → its own persistent claude), both against the same local
//! Messages API. Prints a Markdown table for docs/benchmarks.md.
//!
//!   LANYARD_TEST_CLAUDE=/path/to/claude cargo bench -p gateway --bench turn_overhead
//!   BENCH_TURNS=100 to change the number of measured turns per side (default 40).

#[path = "stats.rs"]
mod stats;
#[path = "../tests/support/mod.rs"]
mod support;

use node_kit::Client;
use node_kit::protocol::AgentParams;
use stats::{Stats, ms};
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::messages_api::{MessagesApi, Reply};
use support::{TestGateway, claude_binary, claude_env};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const WARMUP: usize = 3;

#[tokio::main]
async fn main() {
    let Some(claude) = claude_binary() else {
        eprintln!("set LANYARD_TEST_CLAUDE or run ./test.sh once (it installs claude under .tools/)");
        std::process::exit(2);
    };
    let turns: usize = std::env::var("BENCH_TURNS").ok().and_then(|n| n.parse().ok()).unwrap_or(40);
    let api = MessagesApi::start(|_| Reply::text(&["The ", "answer ", "is ", "42."])).await;

    // The gateway, in this process, with its own claude; the baseline claude shares its home and settings.
    let gateway = TestGateway::with_claude(claude.clone(), &api, |_| {}).await;
    let client = gateway.operator().await;
    let claude_home = gateway.claude_home.as_ref().expect("a claude gateway").path();
    let mut direct = tokio::process::Command::new(&claude)
        .args(gateway::agent::CLAUDE_ARGS)
        .envs(claude_env(&api, claude_home))
        .current_dir(claude_home)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = direct.stdin.take().unwrap();
    let mut stdout = BufReader::new(direct.stdout.take().unwrap()).lines();

    let mut baseline = Vec::new();
    let mut through_gateway = Vec::new();
    for i in 0..WARMUP + turns {
        let prompt = format!("turn {i}: what is the answer?");
        // Alternate which path goes first, so neither always runs on a just-warmed machine.
        let (direct_time, gateway_time) = if i % 2 == 0 {
            let d = direct_turn(&mut stdin, &mut stdout, &prompt).await;
            (d, gateway_turn(&client, &prompt, i).await)
        } else {
            let g = gateway_turn(&client, &prompt, i).await;
            (direct_turn(&mut stdin, &mut stdout, &prompt).await, g)
        };
        if i >= WARMUP {
            baseline.push(direct_time);
            through_gateway.push(gateway_time);
        }
    }
    // The fixed cost of one request through the gateway, without claude: a `health` round trip.
    let mut round_trips = Vec::new();
    for _ in 0..1000 {
        let started = Instant::now();
        client.request(node_kit::protocol::method::HEALTH, serde_json::Value::Null).await.unwrap();
        round_trips.push(started.elapsed());
    }
    drop(client);
    gateway.stop().await;

    // Each gateway turn ran right next to its baseline turn: the per-pair difference cancels slow drift.
    let paired_median = stats::paired_median_ms(&baseline, &through_gateway);
    let (b, g) = (Stats::of(&mut baseline), Stats::of(&mut through_gateway));
    println!("| path | turns | median | p90 | mean |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| claude alone (stream-json, persistent process) | {turns} | {} | {} | {} |",
        ms(b.median),
        ms(b.p90),
        ms(b.mean)
    );
    println!(
        "| through the gateway (WebSocket client, persistent process) | {turns} | {} | {} | {} |",
        ms(g.median),
        ms(g.p90),
        ms(g.mean)
    );
    let h = Stats::of(&mut round_trips);
    println!(
        "| `health` round trip through the gateway (no claude) | 1000 | {} | {} | {} |",
        ms(h.median),
        ms(h.p90),
        ms(h.mean)
    );
    let added = g.median.as_secs_f64() - b.median.as_secs_f64();
    let share = added / b.median.as_secs_f64() * 100.0;
    println!("\nDifference of the medians: {:+.2} ms ({share:+.1} %)", added * 1000.0);
    println!("Median of the paired per-turn differences: {paired_median:+.2} ms");
}

/// One turn on the bare claude process: a stream-json line in, output read up to the `result` line.
async fn direct_turn(
    stdin: &mut tokio::process::ChildStdin,
    stdout: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    prompt: &str,
) -> Duration {
    let started = Instant::now();
    let line = serde_json::json!({"type": "user", "message": {"role": "user", "content": prompt}}).to_string() + "\n";
    stdin.write_all(line.as_bytes()).await.unwrap();
    while let Some(line) = stdout.next_line().await.unwrap() {
        if line.starts_with(r#"{"type":"result""#) {
            break;
        }
    }
    started.elapsed()
}

/// One `agent` turn through the gateway, from the request to the final answer.
async fn gateway_turn(client: &Client, prompt: &str, i: usize) -> Duration {
    let started = Instant::now();
    let params = AgentParams {
        channel: Default::default(),
        prompt: prompt.to_string(),
        session_key: Some("bench".into()),
        idempotency_key: format!("bench-{i}"),
        timeout_ms: Some(60_000),
        attachments: Vec::new(),
    };
    let outcome = client.agent(params).await.unwrap().outcome().await.unwrap();
    assert_eq!(outcome.result, "The answer is 42.");
    started.elapsed()
}
