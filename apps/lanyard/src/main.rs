//! `lanyard`: the one command line users run.

mod commands;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "lanyard",
    version,
    about = "Drive the Claude Code agent on this computer from your phone and other devices",
    long_about = "Lanyard runs a loopback-only gateway that runs the `claude` CLI for you, and a bridge that \
                  lets devices on your network (\"nodes\") pair with it and talk to it.\n\n\
                  Start everything with `lanyard up`, then pair a device: run `lanyard pair` and scan the QR \
                  code it shows (or paste its connection string) on the device, which pairs it at once; or ask \
                  to pair from the device, compare the code it shows with the one on this computer, and approve \
                  (in the `lanyard up` terminal or with `lanyard nodes approve`). `lanyard nodes list` shows \
                  the paired devices; `lanyard agent \"hello\"` talks to the agent from here."
)]
struct Cli {
    /// Where Lanyard keeps its token and state [default: the platform's data directory]
    #[arg(long, global = true, env = "LANYARD_HOME", value_name = "DIR")]
    home: Option<PathBuf>,

    /// The gateway to talk to (`up` and `gateway` run their own and ignore this) [default: the one `lanyard
    /// up` or `lanyard gateway` runs with this home, wherever it listens; else ws://127.0.0.1:18789]
    #[arg(long, global = true, env = "LANYARD_GATEWAY_URL", value_name = "URL")]
    url: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Up(commands::up::UpArgs),
    Gateway(commands::gateway::GatewayArgs),
    Bridge(commands::bridge::BridgeArgs),
    Agent(commands::agent::AgentArgs),
    Pending(commands::pending::PendingArgs),
    #[command(subcommand)]
    Nodes(commands::nodes::NodesCommand),
    Pair(commands::pair::PairArgs),
    Invoke(commands::invoke::InvokeArgs),
    Open(commands::open::OpenArgs),
    #[command(subcommand)]
    Tunnel(commands::tunnel::TunnelCommand),
    #[command(subcommand)]
    Service(commands::service::ServiceCommand),
    Doctor(commands::doctor::DoctorArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let home = cli.home.unwrap_or_else(gateway::home::lanyard_home);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let url = commands::gateway_url(cli.url, &home);
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up(args) => commands::up::run(args, home).await,
            Command::Gateway(args) => commands::gateway::run(args, home).await,
            Command::Bridge(args) => commands::bridge::run(args, &url, &home).await,
            Command::Agent(args) => commands::agent::run(args, &url, &home).await,
            Command::Pending(args) => commands::pending::run(args, &url, &home).await,
            Command::Nodes(command) => commands::nodes::run(command, &url, &home).await,
            Command::Pair(args) => commands::pair::run(args, &url, &home).await,
            Command::Invoke(args) => commands::invoke::run(args, &url, &home).await,
            Command::Open(args) => commands::open::run(args, &url, &home).await,
            Command::Tunnel(command) => commands::tunnel::run(command, &url, &home).await,
            Command::Service(command) => commands::service::run(command, &home).await,
            Command::Doctor(args) => commands::doctor::run(args, home).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The command has said why (Ctrl-C stopped `lanyard agent`, say): only the status is left.
            if let Some(commands::Exit(code)) = e.downcast_ref() {
                return ExitCode::from(*code);
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
