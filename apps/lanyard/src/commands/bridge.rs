//! `lanyard bridge`: run the bridge in the foreground, against a gateway that is already running.

use super::gateway::shutdown_signal;
use ::bridge::identity::KeyStore;
use ::bridge::{Bridge, BridgeConfig};
use clap::{Args, ValueEnum};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

/// Run only the bridge in the foreground, for a gateway already running (`lanyard up` runs both)
///
/// The bridge is the LAN-facing TLS server that devices pair with and connect to. It relays their calls
/// to the gateway on this computer (`lanyard gateway`, found with --url) using the bridge token in the
/// gateway's home.
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

impl BridgeArgs {
    /// Binds the bridge for the gateway at `gateway_url`, with the bridge token that gateway created
    /// under `home`: the one step `lanyard bridge` and `lanyard up` share.
    pub(crate) async fn bind(self, home: PathBuf, gateway_url: String) -> anyhow::Result<Bridge> {
        let token = super::load_token(&::gateway::home::bridge_token_path(&home))?;
        let mut config = BridgeConfig::new(home, gateway_url, token.expose().to_string());
        config.bind = SocketAddr::new(self.bridge_bind, self.bridge_port);
        config.key_store = self.key_store.into();
        Ok(Bridge::bind(config).await?)
    }
}

pub async fn run(args: BridgeArgs, url: &str, home: &Path) -> anyhow::Result<()> {
    ::gateway::logging::init();
    let bridge = args.bind(home.to_path_buf(), url.to_string()).await?;
    tracing::info!(addr = %bridge.local_addr(), gateway = url, "bridge listening");
    tracing::info!(bridge_id = %bridge.id(), key = %bridge.key_location(), "bridge identity");
    tracing::info!("pair a device with this address, then approve it with `lanyard nodes approve`");
    bridge.run(shutdown_signal()).await;
    Ok(())
}
