//! `lanyard tunnel`: reach this computer from away through the owner's own relay Worker.

use clap::Subcommand;
use node_kit::protocol::{HealthPayload, TunnelHealth, TunnelLinkState, TunnelSetParams, check_relay_url, method};
use std::path::Path;

/// Reach this computer from away through your own Cloudflare relay
///
/// Deploy the relay Worker to your Cloudflare account first (apps/relay-worker/README.md). With the tunnel
/// on, the bridge keeps one outbound link to the relay (no open port, nothing to install); your paired
/// devices get a routing token the next time they connect at home, and from then on reach this computer
/// through the relay when they are away. The relay carries only the bytes of the same pinned TLS session
/// as at home: it cannot read or change anything.
#[derive(Subcommand)]
pub enum TunnelCommand {
    /// Turn the tunnel on, with the relay at RELAY_URL (https://NAME.ACCOUNT.workers.dev)
    ///
    /// With `lanyard up` running, the bridge links to the relay at once (`lanyard tunnel status` shows the
    /// link); otherwise the URL is saved and `lanyard up` links when it starts. The global --url is the
    /// gateway's address, not the relay's.
    Enable {
        /// The relay Worker's base URL (https://, or http:// for a relay on this computer under `wrangler dev`)
        #[arg(value_name = "RELAY_URL")]
        relay: String,
    },
    /// Show the relay URL, the bridge's link to it and the devices that can use it
    Status {
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Turn the tunnel off: the link closes and devices away from home lose their way in until you turn it
    /// on again
    Disable,
}

pub async fn run(command: TunnelCommand, url: &str, home: &Path) -> anyhow::Result<()> {
    match command {
        TunnelCommand::Enable { relay } => {
            let relay = check_relay_url(&relay).map_err(anyhow::Error::msg)?;
            set(url, home, Some(relay.clone())).await?;
            println!("tunnel on: {relay}");
            println!("devices get their routing token the next time they connect at home");
            Ok(())
        }
        TunnelCommand::Disable => {
            set(url, home, None).await?;
            println!("tunnel off");
            Ok(())
        }
        TunnelCommand::Status { json } => status(url, home, json).await,
    }
}

/// Through the running gateway (the bridge follows at once); with none running, into its settings file,
/// which `lanyard up` reads when it starts.
async fn set(url: &str, home: &Path, relay: Option<String>) -> anyhow::Result<()> {
    match super::connect(url, home).await {
        Ok(client) => {
            let params = serde_json::to_value(TunnelSetParams { url: relay })?;
            client.request(method::TUNNEL_SET, params).await?;
        }
        Err(e) if gateway_not_running(&e) => {
            ::gateway::tunnel::save_url(home, relay.as_deref())?;
            println!("(the gateway is not running: saved; `lanyard up` starts with it)");
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

async fn status(url: &str, home: &Path, json: bool) -> anyhow::Result<()> {
    let tunnel = match super::connect(url, home).await {
        Ok(client) => {
            let health: HealthPayload =
                serde_json::from_value(client.request(method::HEALTH, serde_json::json!({})).await?)?;
            health.tunnel.unwrap_or_default()
        }
        Err(e) if gateway_not_running(&e) => {
            TunnelHealth { url: ::gateway::tunnel::load_url(home)?, link: None, nodes_with_tokens: 0 }
        }
        Err(e) => return Err(e),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&tunnel)?);
        return Ok(());
    }
    println!("{}", describe(&tunnel));
    Ok(())
}

/// The tunnel in words, as `tunnel status` and `lanyard up` show it.
pub fn describe(tunnel: &TunnelHealth) -> String {
    let Some(relay) = &tunnel.url else {
        return "tunnel: off (turn it on with `lanyard tunnel enable https://…`)".into();
    };
    let link = match &tunnel.link {
        None => "no report from the bridge (is `lanyard up` running?)".to_string(),
        Some(link) => match link.state {
            TunnelLinkState::Connecting => "connecting".into(),
            TunnelLinkState::Ready => format!("ready, {} relayed connection(s)", link.relay_streams),
            TunnelLinkState::Retrying => {
                format!("down, retrying ({})", link.error.as_deref().unwrap_or("no reason given"))
            }
        },
    };
    format!("tunnel: {relay}\nlink: {link}\ndevices with a routing token: {}", tunnel.nodes_with_tokens)
}

fn gateway_not_running(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| cause.is::<super::GatewayDown>())
}
