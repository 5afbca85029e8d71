//! `lanyard up`: the gateway and the bridge in one process, the one command a user starts.

mod notify;
mod prompt;
mod screen;

use super::bridge::{BridgeArgs, HOW_TO_PAIR};
use super::gateway::GatewayArgs;
use super::limits::{bridge_caps, limits_health, raise_descriptor_limit};
use super::shutdown_signal;
use ::bridge::Bridge;
use ::bridge::connections::DescriptorCosts;
use ::gateway::Gateway;
use clap::Args;
use node_kit::link::GatewayConnector;
use std::io::IsTerminal;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// Start Lanyard: the gateway and the bridge together, until Ctrl-C
///
/// The gateway listens on loopback only and runs `claude`; the bridge faces the LAN, advertises itself
/// over mDNS and pairs devices. Then pair a device: run `lanyard pair` and scan its QR code, or ask to
/// pair from the device and approve the request here, where the terminal asks, or with `lanyard nodes
/// approve`. The first run creates the bridge's key and the tokens.
#[derive(Args)]
pub struct UpArgs {
    #[command(flatten)]
    gateway: GatewayArgs,

    #[command(flatten)]
    bridge: BridgeArgs,

    /// The owner's console, on 127.0.0.1 at this port (`lanyard open` logs a browser in) [default: the
    /// gateway's port + 2, 18791, next to the bridge's 18790; a random one when the gateway's port is 0]
    #[arg(long, value_name = "PORT", conflicts_with = "no_console")]
    console_port: Option<u16>,

    /// Serve no console
    #[arg(long)]
    no_console: bool,
}

pub async fn run(args: UpArgs, home: PathBuf) -> anyhow::Result<()> {
    // With no one at the keyboard (a service, a pipe) there is nobody to ask.
    let interactive = std::io::stdin().is_terminal();
    if interactive && std::io::stderr().is_terminal() {
        ::gateway::logging::init_with_writer(|| screen::LogWriter);
    } else {
        ::gateway::logging::init();
    }
    // The console's descriptors come out of the budget before the bridge's caps are sized.
    let console_descriptors = if args.no_console { 0 } else { ::gateway::console::DESCRIPTORS };
    let descriptors = raise_descriptor_limit();
    // The bridge's links to the gateway are in-process: a device costs its socket alone.
    let caps = bridge_caps(descriptors, console_descriptors, DescriptorCosts::GATEWAY_IN_PROCESS);
    let mut gateway_config = args.gateway.config(home.clone());
    gateway_config.limits = limits_health(descriptors, Some(caps));
    let console_default = if gateway_config.port == 0 { 0 } else { gateway_config.port.saturating_add(2) };
    gateway_config.console_port = (!args.no_console).then(|| args.console_port.unwrap_or(console_default));
    // The gateway creates its tokens, and the bridge its key, when they are missing.
    let first_run = !::gateway::home::token_path(&home).exists();
    let gateway = Gateway::bind(gateway_config).await?;
    // Recorded before the banner: a command typed once the banner is out finds this gateway.
    let _record = super::GatewayRecord::write(&home, gateway.url());
    // The gateway created the bridge token at bind if this is the first run. The bridge reaches it through
    // in-process links, which the gateway serves as it serves sockets, from the bridge token's check on.
    let in_process = GatewayConnector::InProcess(gateway.link_connector());
    let bridge = args.bridge.bind(home.clone(), in_process, caps).await?;
    // Watched from before the banner: a SIGTERM right after it (a service manager's) stops cleanly.
    let signal = shutdown_signal();
    let tunnel = ::gateway::tunnel::load_url(&home).ok().flatten();
    if first_run {
        println!(
            "First run: created the bridge's key and the gateway's tokens in {}; later runs use the same ones.",
            home.display()
        );
    }
    println!("{}", banner(&gateway, &bridge, &args.bridge, tunnel, interactive));

    let url = gateway.url();
    let console = gateway.console_url();
    let stop = CancellationToken::new();
    tokio::join!(
        gateway.run(stop.cancelled()),
        bridge.run(stop.cancelled()),
        async {
            if interactive {
                prompt::approve_from_terminal(&url, &home, &stop).await;
            } else {
                notify::pairing_requests(&url, &home, console, &stop).await;
            }
        },
        async {
            signal.await;
            stop.cancel();
        },
    );
    Ok(())
}

/// What the owner needs on screen to pair a device: who the bridge is, where devices connect, and how
/// pairing works. Printed on stdout, apart from the logs on stderr.
fn banner(
    gateway: &Gateway,
    bridge: &Bridge,
    bridge_args: &BridgeArgs,
    tunnel: Option<String>,
    interactive: bool,
) -> String {
    let agent = match gateway.claude_path() {
        Ok(path) => format!("ready (claude at {})", path.display()),
        Err(e) => format!("unavailable until claude is installed: {}", e.message),
    };
    let approvals = if interactive {
        "Pairing requests will show up here for you to approve."
    } else {
        "stdin is not a terminal, so approve pairing requests in the console or with `lanyard nodes \
         pending|approve|reject`."
    };
    let console = match gateway.console_url() {
        Some(url) => format!("{url} (this computer only; `lanyard open` logs you in)"),
        None => "off".into(),
    };
    let tunnel = match tunnel {
        Some(relay) => format!("{relay} (linking; `lanyard tunnel status` shows the link)"),
        None => "off (`lanyard tunnel enable …` to reach this computer from away)".into(),
    };
    format!(
        "Lanyard is up.\n\
         {bridge_lines}\
         \x20 Tunnel:       {tunnel}\n\
         \x20 Gateway:      {gateway_url} (this computer only)\n\
         \x20 Console:      {console}\n\
         \x20 Agent:        {agent}\n\
         \n\
         {HOW_TO_PAIR}\n\
         {approvals} Stop with Ctrl-C.",
        bridge_lines = bridge_args.describe(bridge, gateway.console_url().map(|_| ::gateway::console::MAX_CONNECTIONS)),
        gateway_url = gateway.url(),
    )
}
