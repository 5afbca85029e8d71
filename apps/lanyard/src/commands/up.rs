//! `lanyard up`: the gateway and the bridge in one process, the one command a user starts.

mod prompt;

use super::bridge::BridgeArgs;
use super::gateway::{GatewayArgs, shutdown_signal};
use ::bridge::Bridge;
use ::gateway::Gateway;
use clap::Args;
use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// Start Lanyard: the gateway and the bridge together, until Ctrl-C
///
/// The gateway listens on loopback only and runs `claude`; the bridge faces the LAN and pairs devices.
/// Then pair a device: ask to pair from the device and approve the request here, where the terminal
/// asks, or with `lanyard nodes approve`. The first run creates the bridge's key and the tokens.
#[derive(Args)]
pub struct UpArgs {
    #[command(flatten)]
    gateway: GatewayArgs,

    #[command(flatten)]
    bridge: BridgeArgs,
}

pub async fn run(args: UpArgs, home: PathBuf) -> anyhow::Result<()> {
    ::gateway::logging::init();
    let gateway = Gateway::bind(args.gateway.config(home.clone())).await?;
    // The gateway created the bridge token at bind if this is the first run.
    let bridge = args.bridge.bind(home.clone(), gateway.url()).await?;
    // With no one at the keyboard (a service, a pipe) there is nobody to ask.
    let interactive = std::io::stdin().is_terminal();
    println!("{}", banner(&gateway, &bridge, interactive));

    let url = gateway.url();
    let stop = CancellationToken::new();
    tokio::join!(
        gateway.run(stop.cancelled()),
        bridge.run(stop.cancelled()),
        async {
            if interactive {
                prompt::approve_from_terminal(&url, &home, &stop).await;
            }
        },
        async {
            shutdown_signal().await;
            stop.cancel();
        },
    );
    Ok(())
}

/// What the owner needs on screen to pair a device: who the bridge is, where devices connect, and how
/// approval works. Printed on stdout, apart from the logs on stderr.
fn banner(gateway: &Gateway, bridge: &Bridge, interactive: bool) -> String {
    let (address, address_note) = device_address(bridge.local_addr());
    let agent = match gateway.claude_path() {
        Ok(path) => format!("ready (claude at {})", path.display()),
        Err(e) => format!("unavailable until claude is installed: {}", e.message),
    };
    let approvals = if interactive {
        "Pairing requests will show up here for you to approve."
    } else {
        "stdin is not a terminal, so approve pairing requests with `lanyard nodes pending|approve|reject`."
    };
    format!(
        "Lanyard is up.\n\
         \x20 Bridge ID:    {id}\n\
         \x20 Devices use:  {address}{address_note}\n\
         \x20 Gateway:      {gateway_url} (this computer only)\n\
         \x20 Bridge key:   {key}\n\
         \x20 Agent:        {agent}\n\
         \n\
         To pair a device: on the device, connect to {address} and ask to pair; approve here or with \
         `lanyard nodes approve ID` (`lanyard nodes pending` shows the IDs).\n\
         {approvals} Stop with Ctrl-C.",
        id = bridge.id(),
        gateway_url = gateway.url(),
        key = bridge.key_location(),
    )
}

/// Where devices should connect, and a note when that is a guess. A bridge on every interface has no
/// single address: name the one the default route leaves from (usually the LAN address), else say it in
/// words.
fn device_address(bound: SocketAddr) -> (String, &'static str) {
    if !bound.ip().is_unspecified() {
        return (bound.to_string(), "");
    }
    match default_route_ipv4() {
        Some(ip) => {
            (SocketAddr::new(IpAddr::V4(ip), bound.port()).to_string(), " (or this computer's other LAN addresses)")
        }
        None => (format!("this computer's LAN address, port {}", bound.port()), ""),
    }
}

/// The local IPv4 address of the default route, found without a dependency or a packet: connecting a UDP
/// socket only picks a route. 192.0.2.1 is a documentation address (TEST-NET-1), never a real host.
fn default_route_ipv4() -> Option<Ipv4Addr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?;
    match socket.local_addr().ok()?.ip() {
        IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}
