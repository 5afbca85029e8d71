//! `lanyard gateway`: run the gateway in the foreground.

use super::limits::{limits_health, raise_descriptor_limit};
use ::gateway::{AgentConfig, Gateway, GatewayConfig};
use clap::Args;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Run only the gateway in the foreground (`lanyard up` runs it with the bridge)
///
/// The gateway is a loopback-only WebSocket server that runs `claude` for agent calls and routes
/// commands to connected nodes. Devices on the LAN reach it through the bridge, which `lanyard up`
/// starts too. Logs go to stderr (RUST_LOG=debug for more).
#[derive(Args)]
pub struct GatewayArgs {
    /// The gateway's port (on 127.0.0.1 and, where present, ::1)
    #[arg(long, default_value_t = ::gateway::config::DEFAULT_PORT)]
    port: u16,

    /// Loopback address for the gateway to listen on instead of the defaults; repeat for several.
    /// Non-loopback addresses are refused.
    #[arg(long, value_name = "IP")]
    bind: Vec<IpAddr>,

    /// The claude binary [default: `claude` on PATH]
    #[arg(long, env = "LANYARD_CLAUDE", value_name = "PATH")]
    claude: Option<PathBuf>,

    /// Directory claude works in [default: the current directory]
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,

    /// End a conversation's claude process after this many idle seconds
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    idle_timeout: u64,

    /// Stop a turn that runs longer than this many seconds
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    turn_timeout: u64,

    /// Deny a permission prompt, question or plan that nobody answers within this many seconds (the
    /// model is told why)
    #[arg(long, default_value_t = 600, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    prompt_timeout: u64,
}

impl GatewayArgs {
    /// The gateway's settings, the same whether it runs alone (`lanyard gateway`) or with the bridge
    /// (`lanyard up`).
    pub(crate) fn config(self, home: PathBuf) -> GatewayConfig {
        let mut config = GatewayConfig::new(home);
        config.port = self.port;
        config.bind = self.bind.iter().map(|ip| SocketAddr::new(*ip, self.port)).collect();
        config.agent = AgentConfig {
            claude_path: self.claude,
            cwd: self.cwd,
            idle_timeout: Duration::from_secs(self.idle_timeout),
            turn_timeout: Duration::from_secs(self.turn_timeout),
            prompt_timeout: Duration::from_secs(self.prompt_timeout),
            ..AgentConfig::default()
        };
        config
    }
}

pub async fn run(args: GatewayArgs, home: PathBuf) -> anyhow::Result<()> {
    ::gateway::logging::init();
    let mut config = args.config(home.clone());
    config.limits = limits_health(raise_descriptor_limit(), None);
    let gateway = Gateway::bind(config).await?;
    let _record = super::GatewayRecord::write(&home, gateway.url());
    for addr in gateway.local_addrs() {
        tracing::info!(%addr, "gateway listening");
    }
    tracing::info!(home = %home.display(), "token and state in this directory");
    match gateway.claude_path() {
        Ok(path) => tracing::info!(claude = %path.display(), "agent ready; try `lanyard agent \"hello\"`"),
        Err(e) => tracing::warn!("agent unavailable until claude is installed: {}", e.message),
    }
    gateway.run(super::shutdown_signal()).await;
    Ok(())
}
