//! `lanyard invoke NODE COMMAND`: run one command on a node and print its answer.

use anyhow::Context;
use clap::Args;
use node_kit::protocol::{NodeInvokeParams, method};
use std::path::Path;

/// Run a command on a connected node (e.g. `screen.snapshot`) and print its answer as JSON
#[derive(Args)]
pub struct InvokeArgs {
    /// The node's ID (see `lanyard nodes list`)
    node: String,

    /// The command, e.g. screen.navigate
    command: String,

    /// The command's params as a JSON object, e.g. '{"url":"https://example.org"}'
    #[arg(long, default_value = "{}", value_name = "JSON")]
    params: String,

    /// Give up after this many milliseconds
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    timeout_ms: u64,
}

pub async fn run(args: InvokeArgs, url: &str, home: &Path) -> anyhow::Result<()> {
    let params: serde_json::Value = serde_json::from_str(&args.params).context("--params is not valid JSON")?;
    let client = super::connect(url, home).await?;
    let request = NodeInvokeParams {
        node_id: args.node,
        command: args.command,
        params,
        idempotency_key: super::idempotency_key(),
        timeout_ms: Some(args.timeout_ms),
    };
    let payload = client.request(method::NODE_INVOKE, serde_json::to_value(request)?).await?;
    println!("{}", serde_json::to_string_pretty(&payload)?);
    Ok(())
}
