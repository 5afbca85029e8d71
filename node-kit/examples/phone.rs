//! The first code a mobile developer copies: find the computer's bridge, pair with it once (either door),
//! then send a prompt and stream the agent's answer. When the agent asks (to run a tool, a question, to
//! go ahead with its plan), the question is put on the terminal and the answer sent with `agent.respond`;
//! a prompt nobody answers is denied by the computer after a while.
//!
//! ```text
//! # Door 1: find the bridge over mDNS, show the code, wait for the owner to approve on the computer.
//! cargo run -p node-kit --example phone -- "What's on my calendar today?"
//! # Door 2: the string `lanyard pair` printed (or its QR code); no approval step.
//! cargo run -p node-kit --example phone -- --connect 'lanyard://192.168.1.20:18790?id=…&code=…' "Hello"
//! ```
//!
//! The device key and the pairing live in `--state` (a phone keeps them in its keychain). After pairing,
//! the bridge is found again wherever it moved: mDNS first, then the last address that worked, always
//! pinned to the key learnt when pairing.

use anyhow::Context;
use clap::Parser;
use node_kit::connection_string::ConnectionString;
use node_kit::discovery::{Discovery, MdnsDiscovery};
use node_kit::node::Node;
use node_kit::pairing::{PairedBridge, PairingRequest, redeem, request_pairing};
use node_kit::protocol::{AgentEventKind, AgentParams, Decision, RespondParams, Scope};
use node_kit::storage::{load_or_create_identity, write_private_file};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(about = "A minimal Lanyard node: discover, pair, ask the agent")]
struct Args {
    /// Where the device key and the pairing are kept.
    #[arg(long, default_value = ".lanyard-phone")]
    state: PathBuf,
    /// Pair with a connection string from `lanyard pair` (door 2) instead of by approval (door 1).
    #[arg(long)]
    connect: Option<ConnectionString>,
    /// Browse only on this network interface (repeatable); every interface by default.
    #[arg(long = "interface")]
    interfaces: Vec<String>,
    /// How this device is named on the computer.
    #[arg(long, default_value = "Example phone")]
    name: String,
    /// What to ask the agent.
    prompt: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let identity = Arc::new(load_or_create_identity(&args.state.join("identity.pem"))?);
    let discovery = MdnsDiscovery::new().interfaces(args.interfaces.clone());
    let pairing_file = args.state.join("bridge.json");
    let paired = match std::fs::read(&pairing_file) {
        Ok(saved) => serde_json::from_slice(&saved).context("reading the saved pairing")?,
        Err(_) => pair(&args, &identity, &discovery).await?,
    };
    save(&pairing_file, &paired)?;

    let node = Node::builder(identity, paired).display_name(&args.name).discovery(discovery).connect().await?;
    let mut run = node.agent(AgentParams::new(args.prompt.clone())).await?;
    while let Some(event) = run.next_event().await {
        let answer = match event {
            AgentEventKind::TextDelta { text } => {
                print!("{text}");
                std::io::stdout().flush()?;
                continue;
            }
            // The agent wants to use a tool that needs the owner's permission.
            AgentEventKind::Permission { request_id, summary, .. } => {
                let allow = yes(&format!("\n{summary}\nAllow? [y/N] ")).await?;
                RespondParams::new(run.run_id(), request_id, if allow { Decision::Allow } else { Decision::Deny })
            }
            // The agent asks the owner to choose: each question's answer is an option's label.
            AgentEventKind::Question { request_id, questions, .. } => {
                let mut answer = RespondParams::new(run.run_id(), request_id, Decision::Allow);
                for question in questions {
                    println!("\n{}", question.question);
                    for (n, option) in question.options.iter().enumerate() {
                        println!("  {}) {}", n + 1, option.label);
                    }
                    let label = loop {
                        let n: usize = line("Number: ").await?.trim().parse().unwrap_or(0);
                        if let Some(option) = n.checked_sub(1).and_then(|i| question.options.get(i)) {
                            break option.label.clone();
                        }
                    };
                    answer = answer.answer(question.question, label);
                }
                answer
            }
            // The agent planned first and asks to go ahead.
            AgentEventKind::Plan { request_id, plan, .. } => {
                let approve = yes(&format!("\n{plan}\nApprove this plan? [y/N] ")).await?;
                RespondParams::new(run.run_id(), request_id, if approve { Decision::Allow } else { Decision::Deny })
            }
            _ => continue,
        };
        // Another device may have answered first (PROMPT_CLOSED): the turn goes on either way.
        if let Err(e) = node.respond(answer).await {
            eprintln!("the answer was not taken: {e}");
        }
    }
    run.outcome().await?;
    println!();
    // The bridge may have moved since last time: keep the address that worked.
    save(&pairing_file, &node.bridge())
}

/// Pairs through door 2 when given a connection string, else door 1 with the first bridge mDNS finds.
async fn pair(args: &Args, identity: &certs::Identity, discovery: &MdnsDiscovery) -> anyhow::Result<PairedBridge> {
    let request = PairingRequest::new(&args.name, std::env::consts::OS).scopes([Scope::Chat, Scope::Voice]);
    if let Some(string) = &args.connect {
        eprintln!("pairing with {} using its one-time code", string.address());
        return Ok(redeem(string, identity, request).await?);
    }
    eprintln!("looking for a Lanyard bridge on the local network…");
    let found = discovery
        .watch()?
        .find(Duration::from_secs(30), |_| true)
        .await
        .context("no bridge found; is `lanyard up` running on the same network?")?;
    let address = found.addresses.first().context("the bridge advertised no usable address")?;
    let name = found.hint.name.as_deref().unwrap_or("the computer");
    let pending = request_pairing(address, identity, request).await?;
    eprintln!("Approve this device on {name}; check that it shows the code {}", pending.sas());
    Ok(pending.approved().await?)
}

/// A line typed on the terminal, read without holding up the runtime.
async fn line(prompt: &str) -> anyhow::Result<String> {
    print!("{prompt}");
    std::io::stdout().flush()?;
    let read = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|n| (n, line))
    });
    let (n, line) = read.await??;
    anyhow::ensure!(n > 0, "stdin closed before an answer was given");
    Ok(line)
}

async fn yes(prompt: &str) -> anyhow::Result<bool> {
    Ok(matches!(line(prompt).await?.trim(), "y" | "Y" | "yes"))
}

fn save(path: &std::path::Path, paired: &PairedBridge) -> anyhow::Result<()> {
    Ok(write_private_file(path, &serde_json::to_vec_pretty(paired)?)?)
}
