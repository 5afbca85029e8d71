//! `lanyard pair`: pairing door 2. A one-time connection string (`lanyard://HOST:PORT?id=…&code=…`),
//! shown as a terminal QR code, that a device redeems to pair at once: the owner asking for it here is
//! the approval, given in advance.

use super::nodes::{self, parse_scope};
use anyhow::{Context, anyhow, bail};
use clap::Args;
use node_kit::Client;
use node_kit::connection_string::{ConnectionString, RelayInvite};
use node_kit::discovery::computer_name;
use node_kit::protocol::{
    EventFrame, PairCode, PairCodeIssued, PairCodeParams, PairRemoteParams, PairResolution, RemotePairCode, Scope,
    event, method, now_ms,
};
use node_kit::running::RunningBridge;
use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;
use serde_json::Value;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

/// How long the bridge gets to answer before it is taken for not running.
const BRIDGE_CHECK: Duration = Duration::from_secs(2);

/// A redemption just before expiry may still be on its way when the clock runs out.
const EXPIRY_GRACE: Duration = Duration::from_secs(1);

/// Pair a device by QR code: a one-time connection string it scans or pastes, and no approval step
///
/// Prints a QR code and the connection string it carries (`lanyard://HOST:PORT?id=BRIDGE_ID&code=CODE`),
/// then waits until a device pairs with it ("Paired: NODE_ID", exit 0) or the code expires (exit 1).
/// The string names the bridge's key, so the device talks to this bridge and no other from its first
/// packet, and its code stands for your approval: anyone who sees it can pair, so show it only to the
/// device you mean. The code works once and expires after 5 minutes; running `lanyard pair` again
/// retires it. Ctrl-C stops waiting and leaves the code valid until it expires.
///
/// With --remote, pairs a device that is away from home, through your relay (`lanyard tunnel enable`):
/// the QR code carries an invite, the phone app's address on your relay with the invite after the `#`
/// (`https://RELAY/#id=BRIDGE_ID&route=…&name=…`), and a 6-digit PIN is shown beside it, to type on the
/// device. A phone's camera opens it in the browser; `lanyard-node pair` takes the same text. The device
/// and this computer check the PIN with a PAKE (SPAKE2) that also binds the keys each side sees, so
/// neither the relay nor anyone who saw the QR code can pair without the PIN or test PINs offline. Five
/// wrong PINs burn the code.
///
/// The bridge must be running (`lanyard up`, with the same --home). The QR code is drawn for a dark
/// terminal background; if the camera cannot read it, use --string and send the text instead.
#[derive(Args)]
pub struct PairArgs {
    /// Pair a device away from home, through the relay, by PIN
    #[arg(long, conflicts_with = "host")]
    remote: bool,

    /// Print only the connection string, on one line, and exit at once (for headless hosts and scripts);
    /// with --remote, the invite on the first line and `PIN: NNNNNN` on the second
    #[arg(long)]
    string: bool,

    /// The most a device pairing with this code gets, comma-separated (chat, voice) [default: all]
    #[arg(long, value_delimiter = ',', value_parser = parse_scope, value_name = "SCOPES")]
    scopes: Option<Vec<Scope>>,

    /// The address (IP or host name) the device connects to [default: this computer's first LAN
    /// address that the bridge listens on]
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
}

pub async fn run(args: PairArgs, url: &str, home: &Path) -> anyhow::Result<()> {
    // Checked before a code is issued, so a failed `lanyard pair` does not retire a code shown elsewhere.
    let bridge = running_bridge(home).await?;
    if args.remote {
        return remote(args, url, home, &bridge).await;
    }
    let host = match args.host {
        Some(host) => host,
        None => device_host(&bridge),
    };
    // Checked with a stand-in code: issuing the real one retires the last, so it comes after every check.
    let mut string = ConnectionString { host, port: bridge.port, bridge_id: bridge.bridge_id, code: "check".into() };
    match string.to_string().parse::<ConnectionString>() {
        Ok(parsed) if parsed == string => {}
        Ok(_) => {
            bail!("--host {:?} does not fit in a connection string; give an IP address or a host name", string.host)
        }
        Err(e) => bail!("--host {:?} does not make a valid connection string: {e}", string.host),
    }
    let client = super::connect(url, home).await?;
    // Subscribed before the code exists, so a device that redeems it at once is not missed.
    let events = client.subscribe();
    let issued = issue(&client, args.scopes).await?;
    string.code = issued.code;
    if args.string {
        println!("{string}");
        return Ok(());
    }

    // Ctrl-C is caught from here on: it ends the wait, not the process, once the string is out.
    let stop = super::shutdown_signal();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}\n", qr(&string.to_string())?)?;
    writeln!(
        out,
        "Scan this with the device, or paste the connection string on it:\n\n  {string}\n\n\
         It pairs one device at once with scopes {scopes}, no approval needed: show it only to the device you \
         mean. The code works once and expires {left}; running `lanyard pair` again retires it.\n\
         Waiting for the device… (Ctrl-C stops waiting; the code stays valid until it expires)",
        scopes = nodes::scopes(&issued.scopes),
        left = nodes::time_left(issued.expires_at_ms, now_ms()),
    )?;
    out.flush()?;
    drop(out);

    let code = Code { request_id: &issued.request_id, expires_at_ms: issued.expires_at_ms, door: Door::String };
    let waited = wait(&client, events, code, stop).await;
    report(waited, issued.expires_at_ms, "lanyard pair")
}

/// What the wait for a device came to, told to the owner; `again` is the command that makes a new code.
fn report(waited: Waited, expires_at_ms: u64, again: &str) -> anyhow::Result<()> {
    match waited {
        Waited::Paired(resolution) => {
            println!(
                "Paired: {} with scopes {}; `lanyard nodes list` shows it",
                resolution.node_id,
                nodes::scopes(&resolution.scopes)
            );
            Ok(())
        }
        Waited::Expired => Err(anyhow!("the code expired before a device used it; run `{again}` for a new one")),
        Waited::Retired => Err(anyhow!(
            "a newer `lanyard pair` (or the console) issued another code, which retired this one; use the newest \
             code, or run `{again}` again"
        )),
        Waited::Stopped => {
            eprintln!(
                "Stopped waiting. The code still works until it expires ({}); `lanyard nodes list` shows whether a \
                 device paired.",
                nodes::time_left(expires_at_ms, now_ms())
            );
            Ok(())
        }
        Waited::GatewayGone => {
            Err(anyhow!("the gateway went away, and the code with it; start it again and run `{again}`"))
        }
    }
}

/// Door 3: an invite for the relay and a PIN, then the same wait as door 2.
async fn remote(args: PairArgs, url: &str, home: &Path, bridge: &RunningBridge) -> anyhow::Result<()> {
    let client = super::connect(url, home).await?;
    let events = client.subscribe();
    let params = match args.scopes {
        Some(scopes) => serde_json::to_value(PairRemoteParams { scopes: Some(scopes) })?,
        None => Value::Null,
    };
    let payload = client.request(method::PAIR_REMOTE, params).await.context("asking the gateway for a remote code")?;
    let code: RemotePairCode = serde_json::from_value(payload).context("unreadable pair.remote answer")?;
    let invite = RelayInvite {
        relay_url: code.relay_url.clone(),
        bridge_id: bridge.bridge_id,
        routing: code.routing,
        name: None,
    }
    .named(&computer_name());
    if args.string {
        println!("{invite}\nPIN: {}", code.pin);
        return Ok(());
    }
    let stop = super::shutdown_signal();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}\n", qr(&invite.to_string())?)?;
    writeln!(
        out,
        "On the phone away from home, scan this with the camera (or open the link), then type the PIN:\n\n  {invite}\n\n  \
         PIN: {} {}\n\n\
         The code works once, through {}, and expires {}; {} wrong PINs burn it.\n\
         Waiting for the device… (Ctrl-C stops waiting; the code stays valid until it expires)",
        &code.pin[..3],
        &code.pin[3..],
        code.relay_url,
        nodes::time_left(code.expires_at_ms, now_ms()),
        code.tries,
    )?;
    out.flush()?;
    drop(out);
    let waited = wait(
        &client,
        events,
        Code { request_id: &code.request_id, expires_at_ms: code.expires_at_ms, door: Door::Pin },
        stop,
    )
    .await;
    report(waited, code.expires_at_ms, "lanyard pair --remote")
}

/// The record the bridge of `home` left, once it is known to answer: a crash leaves a stale record.
async fn running_bridge(home: &Path) -> anyhow::Result<RunningBridge> {
    let not_running = |why: String| {
        anyhow!(
            "the bridge is not running ({why}); start it with `lanyard up` (or `lanyard bridge`) with the same \
             --home / LANYARD_HOME"
        )
    };
    let record = RunningBridge::read(home)
        .with_context(|| format!("cannot read {}", RunningBridge::path(home).display()))?
        .ok_or_else(|| not_running(format!("none started with the home {}", home.display())))?;
    if !record.answers(BRIDGE_CHECK).await {
        return Err(not_running(format!(
            "nothing answers on its port {} within {} s; it may have crashed",
            record.port,
            BRIDGE_CHECK.as_secs()
        )));
    }
    Ok(record)
}

/// Where the device should connect; loopback, which only this computer can use, comes with a warning.
fn device_host(bridge: &RunningBridge) -> String {
    let ip = bridge.device_address();
    if ip.is_loopback() {
        let besides = bridge.lan_addresses().iter().any(IpAddr::is_loopback);
        eprintln!(
            "warning: the bridge has no LAN address{}, so the connection string uses {ip}, which only this computer \
             can reach; pass --host with an address the device can reach",
            if besides { " besides loopback" } else { "" }
        );
    }
    ip.to_string()
}

async fn issue(client: &Client, scopes: Option<Vec<Scope>>) -> anyhow::Result<PairCode> {
    let params = match scopes {
        Some(scopes) => serde_json::to_value(PairCodeParams { scopes: Some(scopes) })?,
        None => Value::Null,
    };
    let payload = client.request(method::PAIR_CODE, params).await.context("asking the gateway for a pairing code")?;
    serde_json::from_value(payload).context("the gateway sent an unreadable pair.code answer")
}

/// `text` as a QR code in block characters, two rows a line. Light modules are drawn, dark ones left
/// blank: on the usual dark terminal that reads as dark-on-light, as cameras expect.
fn qr(text: &str) -> anyhow::Result<String> {
    let code = QrCode::new(text.as_bytes()).context("cannot draw the QR code")?;
    Ok(code.render::<Dense1x2>().dark_color(Dense1x2::Light).light_color(Dense1x2::Dark).quiet_zone(true).build())
}

#[derive(Debug)]
enum Waited {
    Paired(PairResolution),
    Expired,
    /// A newer door-2 code replaced this one.
    Retired,
    Stopped,
    GatewayGone,
}

/// The code a `lanyard pair` waits on.
#[derive(Debug, Clone, Copy)]
struct Code<'a> {
    request_id: &'a str,
    expires_at_ms: u64,
    door: Door,
}

/// Door 2 has one live code, so a newer one retires it; door 3's codes are apart from door 2's.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Door {
    String,
    Pin,
}

/// Waits for a device to redeem the code (`pair.resolved` with the code's request ID), its expiry, its
/// retirement by a newer door-2 code, `stop`, or the gateway closing, whichever comes first.
async fn wait(
    client: &Client,
    mut events: broadcast::Receiver<EventFrame>,
    code: Code<'_>,
    stop: impl Future<Output = ()>,
) -> Waited {
    let expiry = tokio::time::sleep(Duration::from_millis(code.expires_at_ms.saturating_sub(now_ms())) + EXPIRY_GRACE);
    let ended = async {
        loop {
            match events.recv().await {
                Ok(frame) => {
                    if let Some(waited) = ends(frame, code) {
                        return waited;
                    }
                }
                // Missed events are gone; a redemption among them shows up in `lanyard nodes list`.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return Waited::GatewayGone,
            }
        }
    };
    tokio::select! {
        waited = ended => waited,
        () = expiry => Waited::Expired,
        () = stop => Waited::Stopped,
        () = client.closed() => Waited::GatewayGone,
    }
}

/// What `frame` means for the wait on `code`, if it ends it.
fn ends(frame: EventFrame, code: Code<'_>) -> Option<Waited> {
    match frame.event.as_str() {
        event::PAIR_RESOLVED => {
            let resolution: PairResolution = serde_json::from_value(frame.payload).ok()?;
            (resolution.request_id == code.request_id).then_some(Waited::Paired(resolution))
        }
        event::PAIR_CODE_ISSUED if code.door == Door::String => {
            let issued: PairCodeIssued = serde_json::from_value(frame.payload).ok()?;
            (issued.request_id != code.request_id).then_some(Waited::Retired)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::gateway::home::{GatewayToken, bridge_token_path};
    use ::gateway::{Gateway, GatewayConfig};
    use certs::KeyId;
    use node_kit::protocol::{
        ClientMode, DeviceInfo, PairDecisionParams, PairRedeemParams, PairRedeemSubmit, PairSubmitParams, PairTicket,
    };
    use tokio_util::sync::CancellationToken;

    #[test]
    fn the_qr_code_draws_every_module() {
        let text = "lanyard://192.168.1.20:18790?id=AAAA&code=abc";
        let drawn = qr(text).unwrap();
        let code = QrCode::new(text).unwrap();
        let (width, quiet) = (code.width(), 4);
        let side = width + 2 * quiet;
        // Back from characters to modules: a drawn half is a light module.
        let rows: Vec<Vec<char>> = drawn.lines().map(|l| l.chars().collect()).collect();
        assert_eq!(rows.len(), side.div_ceil(2));
        let light = |x: usize, y: usize| {
            let c = rows[y / 2][x];
            if y.is_multiple_of(2) { matches!(c, '█' | '▀') } else { matches!(c, '█' | '▄') }
        };
        let colors = code.to_colors();
        for y in 0..side {
            for x in 0..side {
                let inside = (quiet..quiet + width).contains(&x) && (quiet..quiet + width).contains(&y);
                let dark = inside && colors[(y - quiet) * width + (x - quiet)] == qrcode::Color::Dark;
                assert_eq!(light(x, y), !dark, "module ({x}, {y})");
            }
        }
    }

    struct Running {
        url: String,
        home: tempfile::TempDir,
        stop: CancellationToken,
    }

    async fn gateway(ttl: Duration) -> Running {
        let home = tempfile::tempdir().unwrap();
        let mut config = GatewayConfig::new(home.path().to_path_buf());
        config.bind = vec!["127.0.0.1:0".parse().unwrap()];
        config.pairing.ttl = ttl;
        let gateway = Gateway::bind(config).await.unwrap();
        let url = gateway.url();
        let stop = CancellationToken::new();
        tokio::spawn(gateway.run(stop.clone().cancelled_owned()));
        Running { url, home, stop }
    }

    async fn as_bridge(running: &Running) -> Client {
        let token = GatewayToken::load(&bridge_token_path(running.home.path())).unwrap();
        Client::builder(&running.url).token(token.expose()).mode(ClientMode::Bridge).connect().await.unwrap()
    }

    fn door_2(request_id: &str, expires_at_ms: u64) -> Code<'_> {
        Code { request_id, expires_at_ms, door: Door::String }
    }

    fn device(name: &str) -> DeviceInfo {
        DeviceInfo { name: name.into(), platform: "ios".into(), model: None }
    }

    #[tokio::test]
    async fn waits_for_the_redemption_and_ignores_door_one() {
        let running = gateway(Duration::from_secs(300)).await;
        let owner = super::super::connect(&running.url, running.home.path()).await.unwrap();
        let bridge = as_bridge(&running).await;
        let events = owner.subscribe();
        let issued = issue(&owner, Some(vec![Scope::Chat])).await.unwrap();
        assert_eq!(issued.scopes, [Scope::Chat]);
        let waiting = tokio::spawn({
            let owner = owner.clone();
            async move {
                wait(&owner, events, door_2(&issued.request_id, issued.expires_at_ms), std::future::pending()).await
            }
        });

        // A door-1 request resolved meanwhile is not the device this code is for.
        let submitted = PairSubmitParams {
            node_id: KeyId::of_spki(b"door one"),
            device: device("Door one"),
            scopes: vec![Scope::Chat],
            address: "10.0.0.1:5000".into(),
            sas: "123456".into(),
        };
        let ticket = bridge.request(method::PAIR_SUBMIT, serde_json::to_value(submitted).unwrap()).await.unwrap();
        let request_id = serde_json::from_value::<PairTicket>(ticket).unwrap().request_id;
        let reject = PairDecisionParams { request_id, scopes: None };
        owner.request(method::PAIR_REJECT, serde_json::to_value(reject).unwrap()).await.unwrap();

        let node_id = KeyId::of_spki(b"qr phone");
        let redeem = PairRedeemSubmit {
            node_id,
            address: "10.0.0.2:5000".into(),
            redeem: PairRedeemParams { code: issued.code, device: device("QR phone"), scopes: vec![Scope::Chat] },
        };
        bridge.request(method::PAIR_REDEEM, serde_json::to_value(redeem).unwrap()).await.unwrap();
        match tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap() {
            Waited::Paired(resolution) => {
                assert_eq!(resolution.node_id, node_id);
                assert_eq!(resolution.scopes, [Scope::Chat]);
            }
            other => panic!("expected a pairing, got {other:?}"),
        }
        running.stop.cancel();
    }

    #[tokio::test]
    async fn a_newer_code_retires_the_wait_on_the_older_one_but_not_a_pin_codes() {
        let running = gateway(Duration::from_secs(300)).await;
        let owner = super::super::connect(&running.url, running.home.path()).await.unwrap();
        let older = issue(&owner, None).await.unwrap();
        let waiting = |door: Door| {
            let (owner, events, request_id) = (owner.clone(), owner.subscribe(), older.request_id.clone());
            tokio::spawn(async move {
                let code = Code { request_id: &request_id, expires_at_ms: older.expires_at_ms, door };
                wait(&owner, events, code, tokio::time::sleep(Duration::from_secs(3))).await
            })
        };
        let (string, pin) = (waiting(Door::String), waiting(Door::Pin));
        // Issued by another owner's connection, as a second `lanyard pair` does.
        let other = super::super::connect(&running.url, running.home.path()).await.unwrap();
        issue(&other, None).await.unwrap();
        let waited = tokio::time::timeout(Duration::from_secs(5), string).await.unwrap().unwrap();
        assert!(matches!(waited, Waited::Retired), "{waited:?}");
        let waited = tokio::time::timeout(Duration::from_secs(10), pin).await.unwrap().unwrap();
        assert!(matches!(waited, Waited::Stopped), "{waited:?}");
        running.stop.cancel();
    }

    #[tokio::test]
    async fn an_unused_code_expires_and_ctrl_c_or_a_gone_gateway_end_the_wait() {
        let running = gateway(Duration::from_millis(200)).await;
        let owner = super::super::connect(&running.url, running.home.path()).await.unwrap();
        let issued = issue(&owner, None).await.unwrap();
        assert_eq!(issued.scopes, Scope::ALL);
        let waited = tokio::time::timeout(
            Duration::from_secs(5),
            wait(&owner, owner.subscribe(), door_2(&issued.request_id, issued.expires_at_ms), std::future::pending()),
        )
        .await
        .unwrap();
        assert!(matches!(waited, Waited::Expired), "{waited:?}");

        let issued = issue(&owner, None).await.unwrap();
        let waited =
            wait(&owner, owner.subscribe(), door_2(&issued.request_id, issued.expires_at_ms + 60_000), async {}).await;
        assert!(matches!(waited, Waited::Stopped), "{waited:?}");

        running.stop.cancel();
        let waited = tokio::time::timeout(
            Duration::from_secs(5),
            wait(&owner, owner.subscribe(), door_2("code:none", now_ms() + 60_000), std::future::pending()),
        )
        .await
        .unwrap();
        assert!(matches!(waited, Waited::GatewayGone), "{waited:?}");
    }
}
