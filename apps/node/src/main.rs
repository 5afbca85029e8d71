//! `lanyard-node`: the reference Lanyard node for Linux and macOS. It pairs with the computer's bridge
//! (either door), keeps its key and pairing in its state directory, and stays connected. It gives the agent
//! a Canvas (a page in headless Chromium) to show, navigate, script and photograph, and forwards voice
//! transcripts, read line by line, to the agent; the agent's prompts (a tool's permission, a question, a
//! plan) are printed with their request id and answered by stdin commands (`/allow`, `/deny`, `/answer`,
//! `/approve`, `/reject`), and `/cancel` stops its turn. What a wall display, a Raspberry Pi or a spare
//! laptop runs, and what phone apps copy.

mod allow;
mod canvas;
mod commands;
mod pair;
mod prompts;
mod run;
mod settings;
mod status;
mod voice;

use allow::AllowEntry;
use clap::{Parser, Subcommand, ValueEnum};
use settings::{Settings, StateDir};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "lanyard-node",
    version,
    about = "A Lanyard node: pairs with your computer's bridge, gives the agent a screen, forwards voice",
    long_about = "A Lanyard node: pairs with your computer's bridge, gives the agent a screen (a Canvas in \
        headless Chromium) and forwards voice transcripts to it; you answer the agent's prompts (a tool's \
        permission, a question, a plan) and cancel its turn with commands on stdin (see `lanyard-node run \
        --help`).\n\n\
        Pair once (`lanyard-node pair 'lanyard://…'` with the string `lanyard pair` printed on the computer, \
        or `lanyard-node pair` to find the bridge on the network and wait for the owner's approval), then \
        `lanyard-node run`.\n\n\
        The settings below are kept in the state directory once given, so `lanyard-node --voice off status` \
        turns voice off for every later run."
)]
struct Cli {
    /// Where the device key, the pairing and the settings are kept.
    #[arg(long, global = true, env = "LANYARD_NODE_STATE", value_name = "DIR")]
    state: Option<PathBuf>,
    /// Setting: how the computer lists this device.
    #[arg(long, global = true, value_name = "NAME")]
    name: Option<String>,
    /// Setting: forward transcripts to the agent (on) or not (off).
    #[arg(long, global = true, value_name = "on|off")]
    voice: Option<OnOff>,
    /// Setting: let web mode open this host over https (repeatable; `*.example.org` for its subdomains,
    /// `http://host:port` for one plain-http origin such as a dashboard on the home network). Default: none.
    #[arg(long = "web-allow", global = true, value_name = "HOST")]
    web_allow: Vec<AllowEntry>,
    /// Setting: empty the web allow-list (before adding any --web-allow given with it).
    #[arg(long = "web-allow-clear", global = true)]
    web_allow_clear: bool,
    /// Setting: largest snapshot image to send, in bytes; larger pictures are sent as smaller JPEGs or refused.
    #[arg(long, global = true, value_name = "BYTES")]
    max_snapshot_bytes: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Subcommand)]
enum Command {
    /// Pair with the computer: by a connection string (door 2), or by finding its bridge and waiting for the
    /// owner to approve (door 1).
    Pair(pair::PairArgs),
    /// Connect and serve: the Canvas, voice transcripts from stdin (or --transcripts), commands on stdin
    /// (answers to the agent's prompts, /cancel, /pending, /foreground, /background, /quit).
    #[command(after_help = run::STDIN_HELP)]
    Run(run::RunArgs),
    /// Show the name, the bridge, the pairing, the link, voice and the web allow-list.
    Status,
}

impl Cli {
    /// Applies the settings given on the command line and saves them.
    fn settings(&self, state: &StateDir) -> anyhow::Result<Settings> {
        let mut settings = state.settings()?;
        let before = settings.clone();
        if let Some(name) = &self.name {
            anyhow::ensure!(
                !name.trim().is_empty() && name.len() <= node_kit::protocol::MAX_NAME_LEN,
                "--name must be 1 to {} bytes",
                node_kit::protocol::MAX_NAME_LEN
            );
            settings.name = name.clone();
        }
        if let Some(voice) = self.voice {
            settings.voice = matches!(voice, OnOff::On);
        }
        if self.web_allow_clear {
            settings.web_allow.clear();
        }
        for entry in &self.web_allow {
            if !settings.web_allow.contains(entry) {
                settings.web_allow.push(entry.clone());
            }
        }
        if let Some(bytes) = self.max_snapshot_bytes {
            anyhow::ensure!(
                (1024..=settings::MAX_SNAPSHOT_BYTES_LIMIT).contains(&bytes),
                "--max-snapshot-bytes must be 1024 to {} (the bridge refuses larger snapshot answers)",
                settings::MAX_SNAPSHOT_BYTES_LIMIT
            );
            settings.max_snapshot_bytes = bytes;
        }
        if settings != before {
            state.save_settings(&settings)?;
        }
        Ok(settings)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("lanyard_node=info,node_kit=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("lanyard-node: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(start(cli));
    // Reading stdin blocks a thread that only a new line would free: do not wait for it.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lanyard-node: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn start(cli: Cli) -> anyhow::Result<()> {
    let state = StateDir::new(match &cli.state {
        Some(dir) => dir.clone(),
        None => StateDir::default_path()?,
    });
    node_kit::storage::ensure_private_dir(state.path())?;
    let settings = cli.settings(&state)?;
    match cli.command {
        Command::Pair(args) => pair::run(&state, &settings, args).await,
        Command::Run(args) => run::run(&state, settings, args).await,
        Command::Status => status::print(&state, &settings),
    }
}
