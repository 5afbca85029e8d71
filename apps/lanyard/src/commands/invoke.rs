//! `lanyard invoke NODE COMMAND`: run one command on a node and print its answer.

use anyhow::Context;
use clap::Args;
use data_encoding::BASE64;
use node_kit::protocol::{ImageFormat, NodeInvokeParams, NodeInvokeResult, SnapshotResult, method};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Run a command on a connected node (e.g. `screen.snapshot`) and print its answer as JSON
#[derive(Args)]
pub struct InvokeArgs {
    /// The node's ID (or its first characters, or its name), from `lanyard nodes list`
    node: String,

    /// The command, e.g. screen.navigate
    command: String,

    /// The command's params as a JSON object, e.g. '{"url":"https://example.org"}'
    #[arg(long, default_value = "{}", value_name = "JSON")]
    params: String,

    /// Give up after this many milliseconds
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    timeout_ms: u64,

    /// For screen.snapshot: write the image to this file (PNG or JPEG as the node sent it) and print its
    /// size instead of the base64
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub async fn run(args: InvokeArgs, url: &str, home: &Path) -> anyhow::Result<()> {
    let params: serde_json::Value = serde_json::from_str(&args.params).context("--params is not valid JSON")?;
    let client = super::connect(url, home).await?;
    let node_id = super::nodes::find(&client, &args.node).await?.node_id;
    let request = NodeInvokeParams {
        node_id: node_id.to_string(),
        command: args.command,
        params,
        idempotency_key: super::idempotency_key(),
        timeout_ms: Some(args.timeout_ms),
    };
    let payload = client.request(method::NODE_INVOKE, serde_json::to_value(request)?).await?;
    match &args.out {
        Some(path) => save_image(&payload, path),
        None => {
            println!("{}", serde_json::to_string_pretty(&payload)?);
            Ok(())
        }
    }
}

/// Writes a snapshot's image to `path` (atomically: a half-written picture never replaces a good one).
fn save_image(payload: &serde_json::Value, path: &Path) -> anyhow::Result<()> {
    let result: NodeInvokeResult = serde_json::from_value(payload.clone()).context("unreadable answer")?;
    let shot: SnapshotResult = serde_json::from_value(result.payload)
        .context("--out needs an image answer (screen.snapshot); this command's answer has none")?;
    let bytes = BASE64.decode(shot.base64.as_bytes()).context("the node sent an image that is not base64")?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut file =
        tempfile::NamedTempFile::new_in(dir).with_context(|| format!("cannot write in {}", dir.display()))?;
    file.write_all(&bytes)?;
    file.persist(path).with_context(|| format!("cannot write {}", path.display()))?;
    let format = match shot.format {
        ImageFormat::Png => "PNG",
        ImageFormat::Jpeg => "JPEG",
    };
    println!("wrote {} ({format}, {}x{}, {} bytes)", path.display(), shot.width, shot.height, bytes.len());
    Ok(())
}
