//! `lanyard service …`: run `lanyard up` at login, as a systemd user unit (Linux) or a launchd agent
//! (macOS), both rendered from one [`ServiceSpec`].

pub mod unit;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::time::Duration;
use unit::ServiceSpec;

/// Start Lanyard at login, and keep it running
///
/// `install` writes a systemd user unit (Linux, ~/.config/systemd/user/lanyard.service) or a launchd agent
/// (macOS, ~/Library/LaunchAgents/dev.lanyard.up.plist) that runs `lanyard up` when you log in, restarts
/// it if it crashes and sends its output to a log file under the Lanyard home; then starts it. Installing
/// again changes nothing unless something changed. A service has no terminal to ask in: approve pairing
/// requests with `lanyard nodes pending` and `lanyard nodes approve ID` (or in the console).
#[derive(Subcommand)]
pub enum ServiceCommand {
    /// Install the login service and start it
    ///
    /// Flags after `--` go to `lanyard up`, e.g. `lanyard service install -- --mdns-interface en0`. The
    /// service gets this shell's PATH (so it finds `claude`) and the Lanyard home, but not your shell's
    /// other variables: log claude in (`claude auth login`) rather than relying on ANTHROPIC_API_KEY.
    Install {
        /// Only write the file; do not ask systemd / launchd to start it
        #[arg(long)]
        no_start: bool,

        #[command(flatten)]
        target: TargetArgs,

        /// Flags for `lanyard up`
        #[arg(last = true, value_name = "UP_FLAGS")]
        up_args: Vec<String>,
    },
    /// Stop the login service and remove it
    Uninstall {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Show whether the login service is installed and whether it runs
    Status {
        #[command(flatten)]
        target: TargetArgs,
    },
}

/// Which service manager, and where its files go.
#[derive(Args, Clone, Default)]
pub struct TargetArgs {
    /// Render for this platform instead of this computer's (tests render the launchd agent on Linux)
    #[arg(long, hide = true, value_enum)]
    platform: Option<Platform>,

    /// Put the file in this directory instead of the service manager's; the manager is then left alone
    /// (tests, so they never start a real service)
    #[arg(long, hide = true, env = "LANYARD_SERVICE_DIR", value_name = "DIR")]
    service_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Platform {
    /// A systemd user unit
    Linux,
    /// A launchd agent
    Macos,
}

impl Platform {
    fn this_computer() -> Platform {
        if cfg!(target_os = "macos") { Platform::Macos } else { Platform::Linux }
    }

    fn manager(self) -> &'static str {
        match self {
            Platform::Linux => "systemd user unit",
            Platform::Macos => "launchd agent",
        }
    }
}

const LABEL: &str = "dev.lanyard.up";
const UNIT: &str = "lanyard.service";
const APPROVALS: &str = "a service has no terminal to ask in: approve pairing requests with `lanyard nodes \
                         pending` and `lanyard nodes approve ID` (or in the console)";

/// Where the service file lives and who runs it.
pub struct Target {
    platform: Platform,
    dir: PathBuf,
    /// A directory the service manager does not read: never start or stop anything.
    detached: bool,
}

impl Target {
    pub fn new(args: &TargetArgs) -> anyhow::Result<Target> {
        let platform = args.platform.unwrap_or_else(Platform::this_computer);
        if let Some(dir) = &args.service_dir {
            return Ok(Target { platform, dir: dir.clone(), detached: true });
        }
        let base = directories::BaseDirs::new().ok_or_else(|| anyhow!("cannot find your home directory"))?;
        let dir = match platform {
            Platform::Linux => base.config_dir().join("systemd/user"),
            Platform::Macos => base.home_dir().join("Library/LaunchAgents"),
        };
        Ok(Target { platform, dir, detached: false })
    }

    pub fn file(&self) -> PathBuf {
        match self.platform {
            Platform::Linux => self.dir.join(UNIT),
            Platform::Macos => self.dir.join(format!("{LABEL}.plist")),
        }
    }

    fn render(&self, spec: &ServiceSpec) -> String {
        match self.platform {
            Platform::Linux => unit::systemd(spec),
            Platform::Macos => unit::launchd(spec),
        }
    }
}

/// Where the service's output goes.
pub fn log_path(home: &Path) -> PathBuf {
    home.join("logs").join("lanyard.log")
}

/// What `install` writes: this very binary running `lanyard up` with this home and PATH.
fn spec(home: &Path, up_args: &[String]) -> anyhow::Result<ServiceSpec> {
    let program = std::env::current_exe().context("cannot find the lanyard binary's path")?;
    let program = program.canonicalize().unwrap_or(program);
    let home = std::path::absolute(home).context("cannot make the Lanyard home path absolute")?;
    let working_dir = directories::BaseDirs::new().map_or_else(|| PathBuf::from("/"), |b| b.home_dir().to_path_buf());
    let mut env = vec![("LANYARD_HOME".to_string(), home.display().to_string())];
    if let Some(path) = std::env::var_os("PATH") {
        env.push(("PATH".into(), path.to_string_lossy().into_owned()));
    }
    let text_ok = |s: &str| !s.contains(['\n', '\r', '\0']);
    if !up_args.iter().all(|a| text_ok(a)) || !env.iter().all(|(_, v)| text_ok(v)) {
        bail!("the service's flags and paths must not contain line breaks");
    }
    Ok(ServiceSpec {
        label: LABEL.into(),
        program,
        args: std::iter::once("up".to_string()).chain(up_args.iter().cloned()).collect(),
        working_dir,
        log: log_path(&home),
        env,
    })
}

pub async fn run(command: ServiceCommand, home: &Path) -> anyhow::Result<()> {
    match command {
        ServiceCommand::Install { no_start, target, up_args } => {
            install(&Target::new(&target)?, home, &up_args, !no_start).await
        }
        ServiceCommand::Uninstall { target } => uninstall(&Target::new(&target)?).await,
        ServiceCommand::Status { target } => {
            let target = Target::new(&target)?;
            println!("{}", describe(&target, &inspect(&target).await, home));
            Ok(())
        }
    }
}

async fn install(target: &Target, home: &Path, up_args: &[String], start: bool) -> anyhow::Result<()> {
    let spec = spec(home, up_args)?;
    let file = target.file();
    let text = target.render(&spec);
    let before = match std::fs::read(&file) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(anyhow!("cannot read {}: {e}", file.display())),
    };
    let change = match &before {
        Some(bytes) if *bytes == text.as_bytes() => Change::None,
        Some(_) => Change::Updated,
        None => Change::New,
    };
    if let Some(dir) = spec.log.parent() {
        node_kit::storage::ensure_private_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if change != Change::None {
        node_kit::storage::write_private_file(&file, text.as_bytes())
            .with_context(|| format!("cannot write {}", file.display()))?;
    }
    match change {
        Change::None => println!("already installed: {} (unchanged)", file.display()),
        Change::Updated => println!("updated the Lanyard service: {}", file.display()),
        Change::New => println!("installed the Lanyard service: {}", file.display()),
    }
    println!(
        "It runs `{}` at login and restarts it if it crashes; its output goes to {}.",
        spec.args.join(" "),
        spec.log.display()
    );
    if !start {
        println!("Not started (--no-start).");
    } else if target.detached {
        println!("Not started: the service manager does not read {}.", target.dir.display());
    } else {
        start_service(target, &file, change).await?;
    }
    println!("Note: {APPROVALS}.");
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Change {
    None,
    Updated,
    New,
}

async fn start_service(target: &Target, file: &Path, change: Change) -> anyhow::Result<()> {
    match target.platform {
        Platform::Linux => {
            systemctl(&["daemon-reload"]).await?;
            systemctl(&["enable", "--now", UNIT]).await?;
            if change == Change::Updated {
                systemctl(&["restart", UNIT]).await?;
            }
            println!("Started: `systemctl --user status {UNIT}` shows it.");
        }
        Platform::Macos => {
            let service = launchd_target();
            let loaded = launchctl(&["print", &service]).await.is_ok();
            if loaded && change == Change::None {
                println!("Already loaded: `launchctl print {service}` shows it.");
                return Ok(());
            }
            if loaded {
                launchctl(&["bootout", &service]).await?;
            }
            let file = file.display().to_string();
            launchctl(&["bootstrap", &launchd_domain(), &file]).await?;
            println!("Started: `launchctl print {service}` shows it.");
        }
    }
    Ok(())
}

async fn uninstall(target: &Target) -> anyhow::Result<()> {
    let file = target.file();
    if !file.exists() {
        println!("not installed: there is no {}", file.display());
        return Ok(());
    }
    if !target.detached {
        // Stop it before its file goes, so the manager still knows what it is stopping.
        match target.platform {
            Platform::Linux => {
                systemctl(&["disable", "--now", UNIT]).await?;
            }
            Platform::Macos => {
                // Not loaded is fine: there is nothing to stop.
                let _ = launchctl(&["bootout", &launchd_target()]).await;
            }
        }
    }
    std::fs::remove_file(&file).with_context(|| format!("cannot remove {}", file.display()))?;
    if !target.detached && target.platform == Platform::Linux {
        systemctl(&["daemon-reload"]).await?;
    }
    println!("removed the Lanyard service: {}", file.display());
    if !target.detached {
        println!("It is stopped and no longer starts at login; `lanyard up` still runs it by hand.");
    }
    Ok(())
}

/// What the service manager says about the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Running {
    /// Running, with the manager's words.
    Yes(String),
    /// Loaded but not running, or not loaded.
    No(String),
    /// The manager cannot be asked (missing, no session bus).
    Unknown(String),
}

/// The service as `status` and `doctor` see it.
pub struct Report {
    pub file: PathBuf,
    pub installed: bool,
    pub running: Running,
    pub manager: &'static str,
}

pub async fn inspect(target: &Target) -> Report {
    let file = target.file();
    let running = match target.platform {
        Platform::Linux => match run_tool("systemctl", &["--user", "is-active", UNIT]).await {
            // is-active prints the state and fails for every state but active.
            Ok(out) => Running::Yes(format!("systemctl --user is-active: {}", out.trim())),
            Err(ToolError::Failed { stdout, stderr }) if !stdout.trim().is_empty() => {
                let state = stdout.trim().to_string();
                if stderr.trim().is_empty() { Running::No(state) } else { Running::Unknown(stderr.trim().into()) }
            }
            Err(e) => Running::Unknown(e.to_string()),
        },
        Platform::Macos => match run_tool("launchctl", &["print", &launchd_target()]).await {
            Ok(out) => {
                let state = out.lines().find_map(|l| l.trim().strip_prefix("state = ")).unwrap_or("unknown");
                if state == "running" {
                    Running::Yes(format!("launchctl: state = {state}"))
                } else {
                    Running::No(format!("loaded, state = {state}"))
                }
            }
            Err(ToolError::Failed { .. }) => Running::No("not loaded".into()),
            Err(e) => Running::Unknown(e.to_string()),
        },
    };
    Report { installed: file.is_file(), file, running, manager: target.platform.manager() }
}

fn describe(target: &Target, report: &Report, home: &Path) -> String {
    let installed = if report.installed {
        format!("installed at {}", report.file.display())
    } else {
        format!(
            "not installed (`lanyard service install` starts Lanyard at login; it would go to {})",
            report.file.display()
        )
    };
    let state = match &report.running {
        Running::Yes(how) => format!("running ({how})"),
        Running::No(state) => format!("not running ({state})"),
        Running::Unknown(why) => format!("unknown: {why}"),
    };
    let detached = if target.detached { " (a directory the service manager does not read)" } else { "" };
    format!(
        "Lanyard service ({manager}): {installed}{detached}\n\
         \x20 state:      {state}\n\
         \x20 logs:       {log}\n\
         \x20 approvals:  {APPROVALS}",
        manager = report.manager,
        log = log_path(home).display(),
    )
}

/// The logged-in user's launchd domain.
fn launchd_domain() -> String {
    format!("gui/{}", nix::unistd::getuid())
}

fn launchd_target() -> String {
    format!("{}/{LABEL}", launchd_domain())
}

async fn systemctl(args: &[&str]) -> anyhow::Result<String> {
    let args: Vec<&str> = std::iter::once("--user").chain(args.iter().copied()).collect();
    run_tool("systemctl", &args).await.with_context(|| format!("systemctl {}", args.join(" ")))
}

async fn launchctl(args: &[&str]) -> anyhow::Result<String> {
    run_tool("launchctl", args).await.with_context(|| format!("launchctl {}", args.join(" ")))
}

#[derive(Debug)]
enum ToolError {
    Missing(&'static str),
    Failed { stdout: String, stderr: String },
    Other(String),
}

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ToolError::Missing("systemctl") => f.write_str(
                "systemctl not found: this system does not run systemd, so nothing can start the service at login; \
                 run `lanyard up` another way (`lanyard service install --no-start` only writes the unit)",
            ),
            ToolError::Missing(tool) => write!(f, "{tool} not found: cannot talk to the service manager"),
            ToolError::Failed { stdout, stderr } => {
                let said = if stderr.trim().is_empty() { stdout.trim() } else { stderr.trim() };
                f.write_str(if said.is_empty() { "failed without saying why" } else { said })
            }
            ToolError::Other(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ToolError {}

/// Runs a service manager's command line for at most 20 s; its stdout when it succeeds.
async fn run_tool(tool: &'static str, args: &[&str]) -> Result<String, ToolError> {
    let mut command = tokio::process::Command::new(tool);
    command.args(args).stdin(std::process::Stdio::null()).kill_on_drop(true);
    let out = match tokio::time::timeout(Duration::from_secs(20), command.output()).await {
        Err(_) => return Err(ToolError::Other(format!("`{tool} {}` did not answer within 20 s", args.join(" ")))),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return Err(ToolError::Missing(tool)),
        Ok(Err(e)) => return Err(ToolError::Other(format!("cannot run {tool}: {e}"))),
        Ok(Ok(out)) => out,
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(ToolError::Failed { stdout, stderr: String::from_utf8_lossy(&out.stderr).into_owned() })
    }
}
