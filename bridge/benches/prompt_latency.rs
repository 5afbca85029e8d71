//! How long a permission prompt takes each way, through the bridge to a node and, as the baseline in the
//! same run, straight from the gateway to an operator:
//!
//! - from the moment claude writes its `can_use_tool` request to the moment the prompt event arrives;
//! - from the moment the answer is sent (`agent.respond`) to the moment it reaches claude's stdin, and to
//!   claude's next output line (it ran the tool and goes on).
//!
//! claude's side is timed by a small pass-through shim between the gateway and the real claude that
//! stamps those lines with CLOCK_MONOTONIC, the clock this process reads too. Each round is one turn in
//! which the scripted model asks for a Bash command that needs permission.
//!
//! Needs `LANYARD_TEST_CLAUDE` (./test.sh installs claude into .tools/) and python3; run inside a network
//! namespace: `unshare --net -- sh -c 'ip link set lo up && cargo bench -p bridge --bench prompt_latency'`.
//! BENCH_ROUNDS sets the number of turns per path (default 30).

#[path = "../../gateway/benches/stats.rs"]
mod stats;
#[path = "../tests/support/mod.rs"]
mod support;

use node_kit::AgentRun;
use node_kit::node::Node;
use node_kit::protocol::{AgentParams, Decision, RespondParams, Scope};
use serde_json::json;
use stats::print_table;
use std::collections::HashMap;
use std::time::Duration;
use support::gw::messages_api::{MessagesApi, Reply};
use support::gw::{TestGateway, claude_binary};
use support::{TestBridge, pair};

/// Passes claude's stdin and stdout through, stamping permission requests, their answers and claude's
/// first line after each answer.
const SHIM: &str = r#"#!/usr/bin/env python3
import json, os, subprocess, sys, threading, time
log = open(os.environ["SHIM_LOG"], "a", buffering=1)
child = subprocess.Popen([os.environ["SHIM_CLAUDE"]] + sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
answered, lock = [], threading.Lock()
def pump_in():
    for line in sys.stdin.buffer:
        if b'"control_response"' in line and b'"behavior"' in line:
            now = time.monotonic_ns()
            rid = json.loads(line)["response"]["request_id"]
            with lock:
                answered.append(rid)
            log.write(f"{now} answer {rid}\n")
        child.stdin.write(line)
        child.stdin.flush()
    child.stdin.close()
threading.Thread(target=pump_in, daemon=True).start()
for line in iter(child.stdout.readline, b""):
    now = time.monotonic_ns()
    if b'"can_use_tool"' in line:
        log.write(f"{now} ask {json.loads(line)['request_id']}\n")
    else:
        with lock:
            resumed = answered[:]
            answered.clear()
        for rid in resumed:
            log.write(f"{now} resume {rid}\n")
    sys.stdout.buffer.write(line)
    sys.stdout.buffer.flush()
sys.exit(child.wait())
"#;

fn now_ns() -> i64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("the monotonic clock");
    t.tv_sec() * 1_000_000_000 + t.tv_nsec()
}

/// When this side saw each prompt arrive and sent its answer, by request id.
#[derive(Default)]
struct Sides {
    arrived: HashMap<String, i64>,
    answered: HashMap<String, i64>,
}

/// One turn: waits for the prompt, stamps it, allows it, waits for the end.
async fn turn(run: AgentRun, sides: &mut Sides, respond: impl AsyncFnOnce(RespondParams)) {
    let mut run = run;
    let prompt = loop {
        let event = run.next().await.expect("a prompt before the end");
        if event.kind.prompt_id().is_some() {
            break event;
        }
    };
    let id = prompt.kind.prompt_id().unwrap().to_string();
    sides.arrived.insert(id.clone(), now_ns());
    sides.answered.insert(id.clone(), now_ns());
    respond(RespondParams::new(run.run_id(), &id, Decision::Allow)).await;
    let outcome = run.outcome().await.expect("the turn ends");
    assert_eq!(outcome.result, "ran it");
}

fn ms_between(from: i64, to: i64) -> Duration {
    Duration::from_nanos(u64::try_from(to - from).expect("stamps in order"))
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(30);
    let Some(claude) = claude_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (shim, log) = (dir.path().join("claude-shim"), dir.path().join("stamps.log"));
    std::fs::write(&shim, SHIM).unwrap();
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let api = MessagesApi::start(|r| {
        if r.has_tool_result {
            Reply::text(&["ran it"])
        } else {
            // An id of its own per call, as a real model does: claude does not settle a reused one.
            let id = format!("toolu_bench_{}", r.message_count);
            Reply::tool(&id, "Bash", json!({ "command": "echo bench | tee bench.txt" }))
        }
    })
    .await;
    let (real, stamps) = (claude.display().to_string(), log.display().to_string());
    let gateway = TestGateway::with_claude(shim, &api, move |config| {
        config.agent.env.push(("SHIM_CLAUDE".into(), real));
        config.agent.env.push(("SHIM_LOG".into(), stamps));
    })
    .await;
    let bridge = TestBridge::start(&gateway, |_| {}).await;
    let (identity, paired) = pair(&bridge, &gateway, &[Scope::Chat]).await;
    let node = Node::builder(identity, paired).connect().await.unwrap();
    let operator = gateway.operator().await;

    let (mut through_bridge, mut direct) = (Sides::default(), Sides::default());
    // One untimed turn each first: claude starts and loads.
    for round in 0..=rounds {
        let params = || AgentParams { timeout_ms: Some(60_000), ..AgentParams::new(format!("round {round}")) };
        let mut sides = Sides::default();
        let run = node.agent(params().session("bench")).await.unwrap();
        turn(run, &mut sides, async |answer| drop(node.respond(answer).await.unwrap())).await;
        if round > 0 {
            through_bridge.arrived.extend(sides.arrived.drain());
            through_bridge.answered.extend(sides.answered.drain());
        }
        let run = operator.agent(params().session("bench-direct")).await.unwrap();
        turn(run, &mut sides, async |answer| drop(operator.respond(answer).await.unwrap())).await;
        if round > 0 {
            direct.arrived.extend(sides.arrived.drain());
            direct.answered.extend(sides.answered.drain());
        }
    }

    let mut claude_side: HashMap<(String, String), i64> = HashMap::new();
    for line in std::fs::read_to_string(&log).unwrap().lines() {
        let mut parts = line.split(' ');
        let (at, what, id) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        claude_side.insert((what.to_string(), id.to_string()), at.parse().unwrap());
    }
    let stamp = |what: &str, id: &str| claude_side[&(what.to_string(), id.to_string())];
    let figures = |sides: &Sides| {
        let (mut out, mut back, mut resumed) = (Vec::new(), Vec::new(), Vec::new());
        for (id, arrived) in &sides.arrived {
            out.push(ms_between(stamp("ask", id), *arrived));
            back.push(ms_between(sides.answered[id], stamp("answer", id)));
            resumed.push(ms_between(sides.answered[id], stamp("resume", id)));
        }
        (out, back, resumed)
    };
    let (mut node_out, mut node_back, mut node_resumed) = figures(&through_bridge);
    let (mut op_out, mut op_back, mut op_resumed) = figures(&direct);
    println!(
        "claude {}",
        std::process::Command::new(&claude)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    );
    print_table(
        "turns",
        &mut [
            ("claude asks → prompt at the node (through the bridge)", &mut node_out),
            ("claude asks → prompt at an operator (gateway only)", &mut op_out),
            ("node answers → answer at claude's stdin", &mut node_back),
            ("operator answers → answer at claude's stdin", &mut op_back),
            ("node answers → claude's next line (tool ran)", &mut node_resumed),
            ("operator answers → claude's next line (tool ran)", &mut op_resumed),
        ],
    );
    bridge.stop().await;
    gateway.stop().await;
}
