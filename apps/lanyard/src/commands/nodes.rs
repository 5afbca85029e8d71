//! `lanyard nodes …`: the nodes connected to the gateway.

use clap::Subcommand;
use node_kit::protocol::{NodeListPayload, method};
use std::path::Path;

/// See and manage nodes (devices connected to the gateway)
#[derive(Subcommand)]
pub enum NodesCommand {
    /// List the nodes connected now, with their platform and commands
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(command: NodesCommand, url: &str, home: &Path) -> anyhow::Result<()> {
    let client = super::connect(url, home).await?;
    match command {
        NodesCommand::List { json } => {
            let payload = client.request(method::NODE_LIST, serde_json::Value::Null).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&payload)?);
                return Ok(());
            }
            let list: NodeListPayload = serde_json::from_value(payload)?;
            if list.nodes.is_empty() {
                println!("no nodes connected");
            }
            for node in list.nodes {
                println!(
                    "{}\t{}\t{}\t{}",
                    node.node_id,
                    node.display_name.as_deref().unwrap_or("-"),
                    node.platform,
                    node.commands.join(",")
                );
            }
            Ok(())
        }
    }
}
