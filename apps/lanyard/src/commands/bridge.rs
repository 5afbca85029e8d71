//! `lanyard bridge`: run the bridge in the foreground, against a gateway that is already running.

use super::limits::{bridge_caps, raise_descriptor_limit};
use super::shutdown_signal;
use ::bridge::connections::{ConnectionCaps, DescriptorCosts};
use ::bridge::descriptors;
use ::bridge::identity::KeyStore;
use ::bridge::mdns::MdnsConfig;
use ::bridge::server::MdnsStatus;
use ::bridge::{Bridge, BridgeConfig};
use clap::{Args, ValueEnum};
use node_kit::discovery::SERVICE_TYPE;
use node_kit::link::GatewayConnector;
use node_kit::running::lan_addresses;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// Run only the bridge in the foreground, for a gateway already running (`lanyard up` runs both)
///
/// The bridge is the LAN-facing TLS server that devices pair with and connect to. It relays their calls
/// to the gateway on this computer (`lanyard gateway`, found with --url) using the bridge token in the
/// gateway's home. It advertises itself over mDNS (Bonjour) so devices on the network find it; `lanyard
/// pair` prints a QR code that pairs a device with it at once.
#[derive(Args)]
pub struct BridgeArgs {
    /// The port devices connect to
    #[arg(long, default_value_t = ::bridge::config::DEFAULT_PORT, value_name = "PORT")]
    bridge_port: u16,

    /// The address devices connect to; the default listens on every interface so phones on the LAN
    /// can reach it
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED), value_name = "IP")]
    bridge_bind: IpAddr,

    /// Where the bridge keeps its private key
    #[arg(long, value_enum, default_value_t = KeyStoreArg::Auto)]
    key_store: KeyStoreArg,

    /// Advertise the bridge over mDNS (Bonjour) as `_lanyard._tcp`, so devices on the network find it
    /// without an address typed. The record carries the port, a short bridge-ID hint and the name, and
    /// is never trusted: devices pin the bridge's key when they pair
    #[arg(long, value_enum, default_value_t = Switch::On, value_name = "on|off")]
    mdns: Switch,

    /// Advertise only on this network interface (e.g. en0, wlan0); repeat for several. It also limits
    /// the addresses shown and put in `lanyard pair`'s connection string [default: every interface]
    #[arg(long, value_name = "NAME")]
    mdns_interface: Vec<String>,

    /// The name devices show for this computer [default: the computer's name]
    #[arg(long, value_name = "NAME")]
    mdns_name: Option<String>,

    /// Requests one paired device may make per second, all methods together (bursts of 2.5 times as many
    /// pass); over it a device is answered RATE_LIMITED with the time to wait
    #[arg(long, default_value_t = 20, value_name = "PER_SECOND")]
    requests_per_node: u32,

    /// The UDP port for mDNS; only tests use another than the standard one
    #[arg(long, hide = true, default_value_t = MdnsConfig::default().port, value_name = "PORT")]
    mdns_port: u16,
}

/// The command-line spelling of [`KeyStore`].
#[derive(Clone, Copy, ValueEnum)]
enum KeyStoreArg {
    /// The OS keychain when there is one, else a 0600 file under the home
    Auto,
    /// Always the 0600 file under the home (headless hosts, tests)
    File,
}

impl From<KeyStoreArg> for KeyStore {
    fn from(arg: KeyStoreArg) -> KeyStore {
        match arg {
            KeyStoreArg::Auto => KeyStore::Auto,
            KeyStoreArg::File => KeyStore::File,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Switch {
    On,
    Off,
}

impl BridgeArgs {
    /// Binds the bridge for `gateway` (a URL, or the gateway in this process), with the bridge token that
    /// gateway created under `home` and the connection caps [`bridge_caps`] sized: the one step `lanyard
    /// bridge` and `lanyard up` share.
    pub(crate) async fn bind(
        &self,
        home: PathBuf,
        gateway: GatewayConnector,
        caps: ConnectionCaps,
    ) -> anyhow::Result<Bridge> {
        let token = super::load_token(&::gateway::home::bridge_token_path(&home))?;
        let mut config = BridgeConfig::new(home, gateway, token.expose().to_string());
        config.caps = caps;
        let per_second = self.requests_per_node.max(1);
        config.limits.requests_per_node = ::bridge::ratelimit::Rate::per_second(per_second, per_second * 5 / 2);
        config.bind = SocketAddr::new(self.bridge_bind, self.bridge_port);
        config.key_store = self.key_store.into();
        config.mdns = MdnsConfig {
            enabled: self.mdns == Switch::On,
            interfaces: self.mdns_interface.clone(),
            // One name everywhere a device shows it: the DNS-SD instance and the TXT record.
            instance: self.mdns_name.clone(),
            display_name: self.mdns_name.clone(),
            port: self.mdns_port,
            ..MdnsConfig::default()
        };
        Ok(Bridge::bind(config).await?)
    }

    /// The banner lines about the bridge, the same in `lanyard bridge` and `lanyard up`: its ID, where
    /// devices connect, whether it is advertised, where its key is, and the connection caps (with the
    /// console's, which shares the descriptor budget, when one is served).
    pub(crate) fn describe(&self, bridge: &Bridge, console_connections: Option<usize>) -> String {
        format!(
            "\x20 Bridge ID:    {id}\n\
             \x20 Devices use:  {addresses}\n\
             \x20 mDNS:         {mdns}\n\
             \x20 Bridge key:   {key}\n\
             \x20 Limits:       {limits}\n",
            id = bridge.id(),
            limits = describe_caps(&bridge.caps(), console_connections),
            addresses = self.device_addresses(bridge.local_addr()),
            mdns = self.mdns_status(&bridge.mdns()),
            key = bridge.key_location(),
        )
    }

    /// The addresses a device can reach the bridge at, as `lanyard pair` picks from them too.
    fn device_addresses(&self, bound: SocketAddr) -> String {
        let found = lan_addresses(bound.ip(), &self.mdns_interface);
        if found.is_empty() {
            return format!("port {} of this computer's LAN address (no network address found now)", bound.port());
        }
        let addresses: Vec<String> =
            found.into_iter().map(|ip| SocketAddr::new(ip, bound.port()).to_string()).collect();
        addresses.join(", ")
    }

    fn mdns_status(&self, status: &MdnsStatus) -> String {
        match status {
            MdnsStatus::Off => "off (devices need the address or `lanyard pair`)".to_string(),
            MdnsStatus::Failed(reason) => format!("failed: {reason}"),
            MdnsStatus::Advertising(fullname) => {
                let instance =
                    fullname.strip_suffix(SERVICE_TYPE).and_then(|i| i.strip_suffix('.')).unwrap_or(fullname);
                let scope = if self.mdns_interface.is_empty() {
                    String::new()
                } else {
                    format!(" on {}", self.mdns_interface.join(", "))
                };
                // Nothing to send the advertisement on: say so rather than claim devices can find it.
                let unspecified = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
                let none_up = if lan_addresses(unspecified, &self.mdns_interface).is_empty() {
                    ", but no network interface is up to advertise on: devices find it once this computer is on a \
                     network"
                } else {
                    ""
                };
                format!("advertised as \"{instance}\"{scope}{none_up}")
            }
        }
    }
}

fn describe_caps(caps: &ConnectionCaps, console_connections: Option<usize>) -> String {
    let descriptors = match descriptors::current() {
        Ok(limit) => format!("{} file descriptors; ", limit.soft),
        Err(_) => String::new(),
    };
    let console = console_connections.map(|n| format!(", {n} console connections")).unwrap_or_default();
    format!(
        "{descriptors}{} paired devices, {} unpaired connections ({} per address){console}",
        caps.paired, caps.unpaired, caps.unpaired_per_address
    )
}

/// The banner's closing advice, the same in `lanyard bridge` and `lanyard up`: both ways to pair on the LAN.
pub(crate) const HOW_TO_PAIR: &str = "To pair a device: run `lanyard pair` and scan its QR code with the device \
    (it pairs at once, no approval needed), or ask to pair from the device (it finds this computer over mDNS \
    when advertised, or use an address above) and approve the request with `lanyard nodes approve ID` (`lanyard nodes \
    pending` shows the IDs and the code the device shows).";

pub async fn run(args: BridgeArgs, url: &str, home: &Path) -> anyhow::Result<()> {
    ::gateway::logging::init();
    // Each device's link to the gateway in the other process is a socket of its own here.
    let caps = bridge_caps(raise_descriptor_limit(), 0, DescriptorCosts::GATEWAY_APART);
    let bridge = args.bind(home.to_path_buf(), GatewayConnector::WebSocket(url.to_string()), caps).await?;
    println!(
        "The Lanyard bridge is up.\n{bridge_lines}\x20 Gateway:      {url}\n\n{HOW_TO_PAIR}\nStop with Ctrl-C.",
        bridge_lines = args.describe(&bridge, None)
    );
    bridge.run(shutdown_signal()).await;
    Ok(())
}
