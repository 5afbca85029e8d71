//! `lanyard-node run`: connect (and stay connected), serve the Canvas, forward transcripts, answer the
//! agent's prompts and cancel its turn from stdin commands, and switch between foreground and background
//! on a signal or a stdin command, until SIGINT or SIGTERM. A clean shutdown closes the browser.
//!
//! stdin is read by one task: commands are handled at once (prompt answers and `/cancel` even while a
//! turn streams), transcripts wait in the voice queue for their turn.

use crate::allow::WebAllow;
use crate::canvas::{Canvas, CanvasLimits, CanvasOptions};
use crate::commands::NodeCommands;
use crate::prompts::{self, Steer, Turns};
use crate::settings::{RunStatus, Settings, StateDir};
use crate::voice;
use anyhow::Context;
use clap::Args;
use node_kit::discovery::MdnsDiscovery;
use node_kit::node::{Link, LinkChange, Node, Path};
use node_kit::protocol::{AppState, VOICE_EVENT, VoiceAvailability, now_ms};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{broadcast, mpsc, watch};

/// How often a presence beacon is sent while nothing changes.
const BEACON_EVERY: Duration = Duration::from_secs(60);
/// Pause between attempts when the bridge cannot be reached at start.
const START_RETRY: Duration = Duration::from_secs(5);

/// What `lanyard-node run --help` says about stdin.
pub const STDIN_HELP: &str = "\
stdin: each line is a voice transcript for the agent (sent one at a time, in order; the reply streams to \
stdout), or one of these commands, handled at once, even while a reply streams:

  /allow [ID]              allow the tool the agent asks to use ([permission ID] …)
  /deny [ID] [reason…]     refuse it; the model reads the reason
  /answer [ID] N|text      answer a question ([question ID] …) by option number or in words; several
                           questions: answers in order, separated by ` | `; a multi-select takes N,N
  /approve [ID]            approve the agent's plan ([plan ID] …)
  /reject [ID] [reason…]   reject it; the agent stays in plan mode with the reason
  /cancel                  stop the running turn (it ends with [cancelled])
  /pending                 list the prompts waiting for this node
  /foreground, /background tell the computer the app's state (as SIGUSR1 and SIGUSR2 do)
  /status                  print the link and the screen to stderr
  /quit                    stop (as SIGINT and SIGTERM do)

ID is a prompt's request id, or a unique prefix of it; it may be left out while one prompt is open. \
An answer the computer refuses is printed as [answer refused: CODE: message]; [prompt closed ID: \
allowed|denied|timed_out|withdrawn] follows every prompt. A prompt left unanswered is denied after the \
computer's timeout.";

#[derive(Args)]
pub struct RunArgs {
    /// The Chromium (or Chrome) binary for the Canvas; looked for on PATH when not given. Never downloaded.
    #[arg(long, env = "LANYARD_NODE_BROWSER", value_name = "PATH")]
    browser: Option<PathBuf>,
    /// Show the Canvas in a visible window (needs a display); headless by default.
    #[arg(long)]
    headed: bool,
    /// Size of the Canvas in pixels.
    #[arg(long, default_value = "1280x720", value_parser = parse_size)]
    window: (u32, u32),
    /// Offer no screen: no browser is started and the agent cannot use this node's screen.
    #[arg(long)]
    no_screen: bool,
    /// Read transcripts from this file (one per line) instead of stdin; stdin still takes commands.
    #[arg(long, value_name = "FILE")]
    transcripts: Option<PathBuf>,
    /// Look for the bridge with mDNS only on this network interface (repeatable; all by default).
    #[arg(long = "interface", value_name = "IF")]
    interfaces: Vec<String>,
    /// The UDP port mDNS uses (5353, the standard one, unless the bridge advertises on another).
    #[arg(long, default_value_t = 5353, value_name = "PORT")]
    mdns_port: u16,
}

fn parse_size(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text.split_once('x').ok_or("write the size as WIDTHxHEIGHT, e.g. 1280x720")?;
    let parse = |v: &str| v.parse::<u32>().ok().filter(|v| (64..=7680).contains(v));
    match (parse(w), parse(h)) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => Err("each side must be 64 to 7680 pixels".into()),
    }
}

/// What stdin or a signal asked for, for the main loop.
enum Control {
    State(AppState),
    Status,
    Quit,
}

/// What `lanyard-node` says when the computer has revoked this device, before it exits.
const UNPAIRED: &str = "this computer unpaired this device (revoked); pair again with `lanyard-node pair …` \
    (with the string `lanyard pair` prints on the computer, or without one to ask for approval)";

/// A line of input: a command (stdin only) or a transcript.
enum Line {
    Control(Control),
    /// About the agent's prompts or its running turn.
    Steer(Steer),
    Transcript(String),
}

/// A stdin line: `/background`, `/foreground`, `/status`, `/quit`, a prompt command (see
/// [`crate::prompts`]), or a transcript. Lines of a transcript file (`commands` false) are all transcripts.
fn read_line(line: &str, commands: bool) -> Option<Line> {
    let line = line.trim();
    let command = match line {
        "" => return None,
        _ if !commands => return Some(Line::Transcript(line.to_string())),
        "/background" => Control::State(AppState::Background),
        "/foreground" => Control::State(AppState::Foreground),
        "/status" => Control::Status,
        "/quit" => Control::Quit,
        text => {
            return Some(match prompts::parse(text) {
                Some(steer) => Line::Steer(steer),
                None => Line::Transcript(text.to_string()),
            });
        }
    };
    Some(Line::Control(command))
}

/// Where [`read_lines`] sends what it reads.
#[derive(Clone)]
struct Sinks {
    controls: mpsc::Sender<Control>,
    steer: mpsc::Sender<Steer>,
    /// The voice queue; `None` when voice is off.
    transcripts: Option<mpsc::Sender<String>>,
}

/// Keeps `status.json` current for `lanyard-node status`.
struct Reporter {
    state: StateDir,
    status: Mutex<RunStatus>,
}

impl Reporter {
    fn update(&self, change: impl FnOnce(&mut RunStatus)) {
        let mut status = self.status.lock().expect("status lock");
        change(&mut status);
        status.updated_at_ms = now_ms();
        if let Err(e) = self.state.save_status(&status) {
            tracing::warn!(error = %e, "cannot write the status file");
        }
    }
}

pub async fn run(state: &StateDir, settings: Settings, args: RunArgs) -> anyhow::Result<()> {
    let identity = Arc::new(state.identity()?);
    let paired = state.pairing()?.context("this device is not paired yet; run `lanyard-node pair` first")?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigusr1 = signal(SignalKind::user_defined1())?;
    let mut sigusr2 = signal(SignalKind::user_defined2())?;

    // Set while the app is in the background: the node then refuses screen commands itself too.
    let background = Arc::new(AtomicBool::new(false));
    let canvas = if args.no_screen {
        None
    } else {
        let options = CanvasOptions {
            browser: args.browser.clone(),
            headed: args.headed,
            width: args.window.0,
            height: args.window.1,
        };
        // A settings file edited by hand past the limit is held to it.
        let max_snapshot_bytes = settings.max_snapshot_bytes.min(crate::settings::MAX_SNAPSHOT_BYTES_LIMIT);
        // Read again for each page, so that `lanyard-node --web-allow …` reaches this running node. A damaged
        // settings file admits nothing.
        let saved = state.clone();
        let web_allow = WebAllow::new(move || match saved.settings() {
            Ok(settings) => settings.web_allow,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the web allow-list; web mode opens nothing until it is fixed");
                Vec::new()
            }
        });
        let limits = CanvasLimits { web_allow, max_snapshot_bytes };
        let canvas = Arc::new(Canvas::new(options, limits).await.context("cannot serve the canvas page")?);
        if let Err(e) = canvas.start().await {
            eprintln!("lanyard-node: the screen is unavailable for now: {e}");
        }
        Some(canvas)
    };
    let reporter = Arc::new(Reporter {
        state: state.clone(),
        status: Mutex::new(RunStatus {
            pid: std::process::id(),
            link: "connecting".into(),
            foreground: true,
            screen: canvas.as_ref().map_or_else(|| "off".into(), |c| c.describe()),
            updated_at_ms: now_ms(),
        }),
    });
    reporter.update(|_| {});

    let connect = async {
        loop {
            let mut builder = Node::builder(identity.clone(), paired.clone())
                .display_name(&settings.name)
                .platform(std::env::consts::OS)
                .discovery(MdnsDiscovery::new().interfaces(args.interfaces.clone()).port(args.mdns_port));
            if let Some(canvas) = &canvas {
                let handler = NodeCommands::new(canvas.clone(), background.clone());
                builder = builder.commands(NodeCommands::advert(), handler);
            }
            match builder.connect().await {
                Ok(node) => return Ok(node),
                Err(e) if e.is_retryable() => {
                    eprintln!("lanyard-node: the bridge is not reachable yet ({e}); trying again");
                    tokio::time::sleep(START_RETRY).await;
                }
                Err(e) if e.is_unpaired() => return Err(unpaired(state)),
                Err(e) => return Err(anyhow::Error::new(e).context("the bridge refused this device")),
            }
        }
    };
    let node = tokio::select! {
        node = connect => match node {
            Ok(node) => node,
            Err(e) => {
                stop(canvas, state, None).await?;
                return Err(e);
            }
        },
        _ = sigterm.recv() => return stop(canvas, state, None).await,
        _ = sigint.recv() => return stop(canvas, state, None).await,
    };
    state.save_pairing(&node.bridge())?;
    let at = match node.path() {
        Path::Lan => format!("at {}", node.bridge().address),
        Path::Relay => format!("through the relay {}", node.bridge().relay.map(|r| r.url).unwrap_or_default()),
    };
    eprintln!("lanyard-node: connected to bridge {} {at} as {:?}", paired.bridge_id, settings.name);
    // The first link state the watcher sees is "connected": it announces voice, and again after each
    // reconnect.
    tokio::spawn(watch_link(node.clone(), reporter.clone(), settings.voice));
    tokio::spawn(say_changes(node.changes()));
    tokio::spawn(follow_name(node.name(), state.clone()));
    let mut link = node.link();

    // Transcripts go straight to the voice queue, whose task runs one turn at a time; prompt commands go
    // to a task of their own, so they are answered while a turn streams.
    let turns = Arc::new(Turns::default());
    let transcripts = settings.voice.then(|| {
        let (transcripts, queue) = mpsc::channel(voice::QUEUE);
        tokio::spawn(voice::forward(node.clone(), turns.clone(), queue));
        transcripts
    });
    let (steer, steer_queue) = mpsc::channel(16);
    tokio::spawn(prompts::steer(node.clone(), turns, steer_queue));
    let (controls_tx, mut controls) = mpsc::channel(8);
    let sinks = Sinks { controls: controls_tx, steer, transcripts };
    tokio::spawn(read_lines(tokio::io::stdin(), sinks.clone(), true));
    if let Some(path) = &args.transcripts {
        let file = tokio::fs::File::open(path).await.with_context(|| format!("cannot open {}", path.display()))?;
        tokio::spawn(read_lines(file, sinks.clone(), false));
    }
    drop(sinks);

    let mut app_state = AppState::Foreground;
    let mut beacon = tokio::time::interval(BEACON_EVERY);
    beacon.tick().await;
    let mut inputs_open = true;
    loop {
        let asked = tokio::select! {
            line = controls.recv(), if inputs_open => match line {
                Some(control) => control,
                // stdin and the transcript file are both done: keep serving until a signal.
                None => { inputs_open = false; continue; }
            },
            _ = sigusr1.recv() => Control::State(AppState::Foreground),
            _ = sigusr2.recv() => Control::State(AppState::Background),
            _ = beacon.tick() => Control::State(app_state),
            _ = sigterm.recv() => Control::Quit,
            _ = sigint.recv() => Control::Quit,
            revoked = link.wait_for(|l| matches!(l, Link::Unpaired(_))) => {
                drop(revoked);
                stop(canvas, state, Some(node)).await?;
                return Err(unpaired(state));
            }
        };
        match asked {
            Control::State(state) => {
                app_state = state;
                background.store(state == AppState::Background, Ordering::Relaxed);
                if let Err(e) = node.set_app_state(state).await {
                    tracing::debug!(error = %e, "the beacon did not reach the bridge; it is sent again after reconnecting");
                }
                let screen = canvas.as_ref().map_or_else(|| "off".into(), |c| c.describe());
                reporter.update(|s| {
                    s.foreground = state == AppState::Foreground;
                    s.screen = screen;
                });
            }
            Control::Status => {
                let screen = canvas.as_ref().map_or_else(|| "off".into(), |c| c.describe());
                reporter.update(|s| s.screen = screen.clone());
                let status = reporter.status.lock().expect("status lock").clone();
                eprintln!("lanyard-node: link {}, {:?}, screen {}", status.link, app_state, status.screen);
            }
            Control::Quit => break,
        }
    }
    stop(canvas, state, Some(node)).await
}

/// The computer revoked this device: the pairing is forgotten (so `status` says so), and the error says
/// how to pair again.
fn unpaired(state: &StateDir) -> anyhow::Error {
    match state.forget_pairing() {
        Ok(()) => anyhow::anyhow!(UNPAIRED),
        Err(e) => e.context(UNPAIRED),
    }
}

/// Closes the browser and the connection, and keeps the address that worked (unless the pairing is gone).
async fn stop(canvas: Option<Arc<Canvas>>, state: &StateDir, node: Option<Node>) -> anyhow::Result<()> {
    if let Some(canvas) = canvas {
        canvas.close().await;
    }
    if let Some(node) = node {
        if !matches!(*node.link().borrow(), Link::Unpaired(_)) {
            state.save_pairing(&node.bridge())?;
        }
        node.close();
    }
    state.clear_status();
    eprintln!("lanyard-node: stopped");
    Ok(())
}

/// Tells the computer whether this node forwards voice.
async fn announce(node: &Node, voice: bool) {
    let payload = serde_json::to_value(VoiceAvailability { available: voice }).expect("voice events serialise");
    if let Err(e) = node.event(VOICE_EVENT, payload).await {
        tracing::debug!(error = %e, "the voice event did not reach the bridge");
    }
}

/// Follows the link for the status file, and says again after each reconnect whether voice is on.
async fn watch_link(node: Node, reporter: Arc<Reporter>, voice: bool) {
    let mut link = node.link();
    loop {
        let text = match &*link.borrow_and_update() {
            Link::Connected(_) if node.path() == Path::Relay => "connected (relay)".to_string(),
            Link::Connected(_) => "connected".to_string(),
            Link::Reconnecting(_) => "reconnecting".to_string(),
            Link::BridgeOffline => "bridge offline (retrying)".to_string(),
            Link::Unpaired(_) => "unpaired (revoked)".to_string(),
            Link::Stopped(e) => format!("stopped: {e}"),
        };
        let reconnected = text.starts_with("connected")
            && !reporter.status.lock().expect("status lock").link.starts_with("connected");
        reporter.update(|s| s.link = text);
        if reconnected {
            announce(&node, voice).await;
        }
        if link.changed().await.is_err() {
            return;
        }
    }
}

/// Prints one line to stderr for each change of the link: where it connected (LAN or relay), why it was
/// lost, why a try failed and when the next is. Repeats of the same failure are not printed again.
async fn say_changes(mut changes: broadcast::Receiver<LinkChange>) {
    let mut last = String::new();
    loop {
        let change = match changes.recv().await {
            Ok(change) => change,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let (what, then) = match change {
            LinkChange::Connected { path: Path::Lan, via } => (format!("connected on the LAN at {via}"), String::new()),
            LinkChange::Connected { path: Path::Relay, via } => {
                (format!("connected through the relay {via}"), String::new())
            }
            LinkChange::Lost { cause } => {
                let why =
                    cause.map_or_else(|| "the connection closed".to_string(), |e| format!("{}: {}", e.code, e.message));
                (format!("lost ({why})"), String::new())
            }
            LinkChange::Retrying { error, next_attempt_in } => {
                (format!("reconnecting: {error}"), format!("; next try within {:.1} s", next_attempt_in.as_secs_f64()))
            }
            LinkChange::BridgeOffline { next_attempt_in } => (
                "the bridge is offline (its computer is not connected to the relay)".to_string(),
                format!("; next try within {:.1} s", next_attempt_in.as_secs_f64()),
            ),
            // The main loop says it, with what to do, as it exits.
            LinkChange::Unpaired(_) => continue,
            LinkChange::Stopped(e) if matches!(*e, node_kit::ClientError::Closed) => continue,
            LinkChange::Stopped(e) => (format!("stopped: {e}"), String::new()),
        };
        if what != last {
            eprintln!("lanyard-node: link: {what}{then}");
            last = what;
        }
    }
}

/// Keeps the name the computer lists this device by in the settings (for `status`), and says when the
/// owner renames it.
async fn follow_name(mut name: watch::Receiver<Option<String>>, state: StateDir) {
    loop {
        let current = name.borrow_and_update().clone();
        if let Some(current) = current {
            match state.settings() {
                Ok(mut settings) if settings.name != current => {
                    settings.name = current.clone();
                    if let Err(e) = state.save_settings(&settings) {
                        tracing::warn!(error = %e, "cannot save the device's new name");
                    }
                    eprintln!("lanyard-node: the computer lists this device as {current:?} now");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot read the settings to save the device's name"),
            }
        }
        if name.changed().await.is_err() {
            return;
        }
    }
}

/// Reads `input` (stdin, with commands; or a transcript file) line by line: commands to the main loop or
/// the prompt task, transcripts to the voice queue.
async fn read_lines(input: impl tokio::io::AsyncRead + Unpin, sinks: Sinks, commands: bool) {
    let mut lines = BufReader::new(input).lines();
    // Transcripts the voice queue has no room for yet. Reading goes on meanwhile, so that a `/allow` typed
    // behind them is handled at once and not after the turn it would unblock has timed out.
    let mut backlog = std::collections::VecDeque::new();
    let mut reading = true;
    while reading || !backlog.is_empty() {
        let waiting = !backlog.is_empty();
        let room = async {
            match &sinks.transcripts {
                Some(queue) if waiting => queue.reserve().await.ok(),
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            permit = room => match permit {
                Some(permit) => permit.send(backlog.pop_front().expect("waiting")),
                None => return,
            },
            line = lines.next_line(), if reading && backlog.len() < voice::BACKLOG => {
                let Ok(Some(line)) = line else {
                    reading = false;
                    continue;
                };
                let sent = match (read_line(&line, commands), &sinks.transcripts) {
                    (None, _) => true,
                    (Some(Line::Control(control)), _) => sinks.controls.send(control).await.is_ok(),
                    (Some(Line::Steer(steer)), _) => sinks.steer.send(steer).await.is_ok(),
                    (Some(Line::Transcript(text)), Some(_)) => {
                        backlog.push_back(text);
                        true
                    }
                    (Some(Line::Transcript(_)), None) => {
                        eprintln!("lanyard-node: voice is off; turn it on with `lanyard-node --voice on run`");
                        true
                    }
                };
                if !sent {
                    return;
                }
            }
        }
    }
}
