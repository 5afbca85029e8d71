//! One file per command.

pub mod agent;
pub mod bridge;
pub mod gateway;
pub mod invoke;
pub mod nodes;
pub mod pair;
pub mod up;

use ::gateway::home::GatewayToken;
use anyhow::{Context, anyhow};
use node_kit::{Client, ClientError};
use std::path::Path;

/// Reads a token the gateway created in its home, with an error that says what to do when it is missing.
pub fn load_token(path: &Path) -> anyhow::Result<GatewayToken> {
    GatewayToken::load(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            anyhow!(
                "no gateway token at {}: start the gateway first with `lanyard up` or `lanyard gateway` (it \
                 creates the token), or pass the same --home / LANYARD_HOME it uses",
                path.display()
            )
        } else {
            anyhow!("cannot read the gateway token at {}: {e}", path.display())
        }
    })
}

/// Connects to the gateway as an operator, with errors that say what to do.
pub async fn connect(url: &str, home: &Path) -> anyhow::Result<Client> {
    let token = load_token(&::gateway::home::token_path(home))?;
    Client::builder(url)
        .token(token.expose())
        .display_name("lanyard-cli")
        .connect()
        .await
        .map_err(|e| match e {
            ClientError::Connect { .. } => {
                anyhow!("{e}; is the gateway running? start it with `lanyard up`")
            }
            other => anyhow!(other),
        })
        .context("connecting to the gateway")
}

/// A fresh idempotency key for one command invocation.
pub fn idempotency_key() -> String {
    node_kit::client::random_id()
}
