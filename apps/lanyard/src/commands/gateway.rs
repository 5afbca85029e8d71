//! `lanyard gateway`: run the gateway in the foreground.

use ::gateway::{AgentConfig, Gateway, GatewayConfig};
use clap::Args;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Run the gateway in the foreground: a loopback-only WebSocket server that runs `claude` for agent
/// calls and routes commands to connected nodes. Logs go to stderr (RUST_LOG=debug for more).
#[derive(Args)]
pub struct GatewayArgs {
    /// Port to listen on (on 127.0.0.1 and, where present, ::1)
    #[arg(long, default_value_t = ::gateway::config::DEFAULT_PORT)]
    port: u16,

    /// Loopback address to listen on instead of the defaults; repeat for several. Non-loopback
    /// addresses are refused.
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
}

pub async fn run(args: GatewayArgs, home: PathBuf) -> anyhow::Result<()> {
    ::gateway::logging::init();
    let mut config = GatewayConfig::new(home.clone());
    config.port = args.port;
    config.bind = args.bind.iter().map(|ip| SocketAddr::new(*ip, args.port)).collect();
    config.agent = AgentConfig {
        claude_path: args.claude,
        cwd: args.cwd,
        idle_timeout: Duration::from_secs(args.idle_timeout),
        turn_timeout: Duration::from_secs(args.turn_timeout),
        ..AgentConfig::default()
    };
    let gateway = Gateway::bind(config).await?;
    for addr in gateway.local_addrs() {
        tracing::info!(%addr, "gateway listening");
    }
    tracing::info!(home = %home.display(), "token and state in this directory");
    match gateway.claude_path() {
        Ok(path) => tracing::info!(claude = %path.display(), "agent ready; try `lanyard agent \"hello\"`"),
        Err(e) => tracing::warn!("agent unavailable until claude is installed: {}", e.message),
    }
    gateway.run(shutdown_signal()).await;
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
