//! `lanyard doctor`: what stands between this computer and a working Lanyard, one check at a time, each
//! with its verdict and, when something is wrong, the fix.

mod claude;
mod files;
mod network;
mod ports;
mod tunnel;

use super::service::{self, Running, TargetArgs};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// Check this computer's Lanyard setup and say how to fix what is wrong
///
/// Checks the `claude` binary and its login, the gateway's and the bridge's ports (free, or held by this
/// Lanyard), the home directory's file modes and the bridge key, mDNS, the LAN addresses a phone would
/// use, the firewall (read only, where it can tell), the tunnel's relay and the clock, and the login
/// service. Each check prints ok, warn or FAIL in one line, and the fix on the next. The exit status is 1
/// when any check fails. Pass the same --home, --port, --bridge-port and --mdns-* flags as to `lanyard up`.
#[derive(Args)]
pub struct DoctorArgs {
    /// Print a JSON array, one object per check (check, verdict, message, fix), instead of text
    #[arg(long)]
    json: bool,

    /// The gateway's port, as given to `lanyard up --port`
    #[arg(long, default_value_t = ::gateway::config::DEFAULT_PORT, value_name = "PORT")]
    port: u16,

    /// The bridge's port, as given to `lanyard up --bridge-port`
    #[arg(long, default_value_t = ::bridge::config::DEFAULT_PORT, value_name = "PORT")]
    bridge_port: u16,

    /// The claude binary [default: `claude` on PATH]
    #[arg(long, env = "LANYARD_CLAUDE", value_name = "PATH")]
    claude: Option<PathBuf>,

    /// The interfaces `lanyard up --mdns-interface` advertises on [default: every interface]
    #[arg(long, value_name = "NAME")]
    mdns_interface: Vec<String>,

    /// The name `lanyard up --mdns-name` advertises [default: the computer's name]
    #[arg(long, value_name = "NAME")]
    mdns_name: Option<String>,

    /// The UDP port for mDNS; only tests use another than the standard one
    #[arg(long, hide = true, default_value_t = ::bridge::mdns::MdnsConfig::default().port, value_name = "PORT")]
    mdns_port: u16,

    #[command(flatten)]
    service: TargetArgs,
}

/// What every check may look at.
pub struct Context {
    home: PathBuf,
    port: u16,
    bridge_port: u16,
    claude: Option<PathBuf>,
    mdns_interfaces: Vec<String>,
    mdns_name: Option<String>,
    mdns_port: u16,
    service: TargetArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "fail",
        }
    }
}

/// One check's outcome: a one-line verdict and, when not ok, the fix in one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub verdict: Verdict,
    pub message: String,
    pub fix: Option<String>,
}

impl Finding {
    pub fn ok(message: impl Into<String>) -> Finding {
        Finding { verdict: Verdict::Ok, message: message.into(), fix: None }
    }

    pub fn warn(message: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding { verdict: Verdict::Warn, message: message.into(), fix: Some(fix.into()) }
    }

    pub fn fail(message: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding { verdict: Verdict::Fail, message: message.into(), fix: Some(fix.into()) }
    }
}

/// The checks, in the order they are shown; each is one function.
#[derive(Debug, Clone, Copy)]
enum Check {
    Claude,
    ClaudeLogin,
    GatewayPort,
    BridgePort,
    HomeFiles,
    KeyStore,
    Mdns,
    LanAddresses,
    Firewall,
    Tunnel,
    Service,
}

impl Check {
    const ALL: [Check; 11] = [
        Check::Claude,
        Check::ClaudeLogin,
        Check::GatewayPort,
        Check::BridgePort,
        Check::HomeFiles,
        Check::KeyStore,
        Check::Mdns,
        Check::LanAddresses,
        Check::Firewall,
        Check::Tunnel,
        Check::Service,
    ];

    fn name(self) -> &'static str {
        match self {
            Check::Claude => "claude",
            Check::ClaudeLogin => "claude-login",
            Check::GatewayPort => "gateway-port",
            Check::BridgePort => "bridge-port",
            Check::HomeFiles => "file-modes",
            Check::KeyStore => "key-store",
            Check::Mdns => "mdns",
            Check::LanAddresses => "lan-addresses",
            Check::Firewall => "firewall",
            Check::Tunnel => "tunnel",
            Check::Service => "service",
        }
    }

    async fn run(self, ctx: &Context) -> Finding {
        match self {
            Check::Claude => claude::binary(ctx).await,
            Check::ClaudeLogin => claude::login(ctx).await,
            Check::GatewayPort => ports::gateway(ctx).await,
            Check::BridgePort => ports::bridge(ctx).await,
            Check::HomeFiles => files::modes(&ctx.home),
            Check::KeyStore => files::key_store(&ctx.home),
            Check::Mdns => network::mdns(ctx).await,
            Check::LanAddresses => network::lan_addresses(ctx),
            Check::Firewall => network::firewall(ctx).await,
            Check::Tunnel => tunnel::reachable(&ctx.home).await,
            Check::Service => service_check(ctx).await,
        }
    }
}

/// No check may hold the others up for longer than this.
const CHECK_WITHIN: Duration = Duration::from_secs(20);

pub async fn run(args: DoctorArgs, home: PathBuf) -> anyhow::Result<()> {
    let ctx = Context {
        home,
        port: args.port,
        bridge_port: args.bridge_port,
        claude: args.claude,
        mdns_interfaces: args.mdns_interface,
        mdns_name: args.mdns_name,
        mdns_port: args.mdns_port,
        service: args.service,
    };
    let findings = futures_util::future::join_all(Check::ALL.map(|check| {
        let ctx = &ctx;
        async move {
            let finding = tokio::time::timeout(CHECK_WITHIN, check.run(ctx)).await.unwrap_or_else(|_| {
                Finding::fail(
                    format!("did not finish within {} s", CHECK_WITHIN.as_secs()),
                    "run `lanyard doctor` again; if it hangs again, report it",
                )
            });
            (check, finding)
        }
    }))
    .await;
    if args.json {
        let array: Vec<serde_json::Value> = findings
            .iter()
            .map(|(check, f)| {
                serde_json::json!({
                    "check": check.name(), "verdict": f.verdict.as_str(), "message": f.message, "fix": f.fix,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&array)?);
    } else {
        print!("{}", report(&findings));
    }
    if findings.iter().any(|(_, f)| f.verdict == Verdict::Fail) {
        return Err(super::Exit(1).into());
    }
    Ok(())
}

fn report(findings: &[(Check, Finding)]) -> String {
    let mut text = String::new();
    for (check, finding) in findings {
        let verdict = match finding.verdict {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        };
        text.push_str(&format!("{verdict:<5} {:<14} {}\n", check.name(), finding.message));
        if let Some(fix) = &finding.fix {
            text.push_str(&format!("{:<20} fix: {fix}\n", ""));
        }
    }
    let count = |v: Verdict| findings.iter().filter(|(_, f)| f.verdict == v).count();
    text.push_str(&format!(
        "\n{} ok, {} to look at, {} failed\n",
        count(Verdict::Ok),
        count(Verdict::Warn),
        count(Verdict::Fail)
    ));
    text
}

async fn service_check(ctx: &Context) -> Finding {
    let target = match service::Target::new(&ctx.service) {
        Ok(target) => target,
        Err(e) => return Finding::warn(format!("cannot tell: {e:#}"), "set HOME to your home directory"),
    };
    let report = service::inspect(&target).await;
    if !report.installed {
        return Finding::ok(format!(
            "no login service ({}); `lanyard service install` starts Lanyard at login",
            report.file.display()
        ));
    }
    match report.running {
        Running::Yes(how) => Finding::ok(format!("the {} runs ({how})", report.manager)),
        Running::No(state) => Finding::warn(
            format!("the {} is installed but not running ({state})", report.manager),
            format!(
                "see why in {}, then `lanyard service install` starts it again",
                service::log_path(&ctx.home).display()
            ),
        ),
        Running::Unknown(why) => Finding::warn(
            format!("the {} is installed; cannot tell whether it runs: {why}", report.manager),
            "`lanyard service status` in your desktop session shows it",
        ),
    }
}
