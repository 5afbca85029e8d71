//! The gateway's and the bridge's ports: free, or held by this Lanyard (told apart by talking to it).

use super::{Context, Finding};
use certs::{Identity, KeyId, PeerKeyVerifier, Pin};
use node_kit::ClientError;
use node_kit::protocol::{ErrorCode, HealthPayload, method};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How long a server on the port gets to answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(3);

pub(super) async fn gateway(ctx: &Context) -> Finding {
    let port = ctx.port;
    let who = match ask_gateway(port, &ctx.home).await {
        Ok(health) => {
            return Finding::ok(format!(
                "this Lanyard's gateway answers on 127.0.0.1:{port} (version {}, up {} s)",
                health.version,
                health.uptime_ms / 1000
            ));
        }
        Err(who) => who,
    };
    match free(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)) {
        Ok(()) => Finding::ok(format!("port {port} is free; the gateway is not running (`lanyard up` starts it)")),
        Err(e) => Finding::fail(format!("port {port} is taken by {who} ({e})"), held_fix(port, "--port")),
    }
}

/// The gateway's health, asked with this home's token; otherwise who holds the port, in words.
async fn ask_gateway(port: u16, home: &Path) -> Result<HealthPayload, String> {
    const SOMEONE: &str = "another program (it does not answer as a Lanyard gateway)";
    let Ok(token) = ::gateway::home::GatewayToken::load(&::gateway::home::token_path(home)) else {
        return Err(format!("a program this home has no token for: {SOMEONE}"));
    };
    let connect = node_kit::Client::builder(format!("ws://127.0.0.1:{port}"))
        .token(token.expose())
        .display_name("lanyard-doctor")
        .handshake_timeout(ANSWER_WITHIN)
        .connect();
    let client = match tokio::time::timeout(ANSWER_WITHIN, connect).await {
        Ok(Ok(client)) => client,
        Ok(Err(ClientError::Handshake(refusal))) if refusal.code == ErrorCode::Unauthorized => {
            return Err("a Lanyard gateway that refuses this home's token (one started with another --home or \
                        LANYARD_HOME)"
                .into());
        }
        _ => return Err(SOMEONE.into()),
    };
    let health = tokio::time::timeout(ANSWER_WITHIN, client.request(method::HEALTH, serde_json::json!({}))).await;
    match health {
        Ok(Ok(value)) => serde_json::from_value(value).map_err(|_| SOMEONE.to_string()),
        _ => Err(SOMEONE.into()),
    }
}

pub(super) async fn bridge(ctx: &Context) -> Finding {
    let port = ctx.bridge_port;
    let ours = our_bridge_id(&ctx.home).ok().flatten();
    match probe_bridge(port).await {
        Ok(id) if Some(id) == ours => {
            return Finding::ok(format!("this Lanyard's bridge answers on port {port} (bridge ID {id})"));
        }
        Ok(id) => {
            return Finding::fail(
                format!("port {port} is taken by another Lanyard bridge (bridge ID {id}, not this home's)"),
                format!("stop that bridge, or run doctor with its --home; {}", held_fix(port, "--bridge-port")),
            );
        }
        Err(_) => {}
    }
    match free(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)) {
        Ok(()) => Finding::ok(format!("port {port} is free; the bridge is not running (`lanyard up` starts it)")),
        Err(e) => Finding::fail(
            format!("port {port} is taken by another program (it does not answer as a Lanyard bridge) ({e})"),
            held_fix(port, "--bridge-port"),
        ),
    }
}

/// This home's bridge key ID: `None` when the bridge never ran here. Never creates a key: the file is read
/// as it is, and the keychain is asked only when the marker says the key went there.
pub(super) fn our_bridge_id(home: &Path) -> Result<Option<KeyId>, String> {
    let file = ::bridge::identity::key_file(home);
    if !file.exists() && !::bridge::identity::keychain_marker(home).exists() {
        return Ok(None);
    }
    ::bridge::identity::load_or_create(home, ::bridge::identity::KeyStore::Auto)
        .map(|(identity, _)| Some(identity.id()))
        .map_err(|e| e.to_string())
}

/// The key ID of the TLS server on loopback at `port`, if a Lanyard bridge answers there. The handshake
/// uses a throwaway key and says nothing after it, so it asks nothing of the bridge.
async fn probe_bridge(port: u16) -> Result<KeyId, String> {
    let config = Identity::generate().client_config(PeerKeyVerifier::new(Pin::AnyKey)).map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = certs::rustls::pki_types::ServerName::try_from("lanyard").expect("a valid DNS name");
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        connector.connect(name, tcp).await
    };
    let tls = tokio::time::timeout(ANSWER_WITHIN, handshake)
        .await
        .map_err(|_| "no TLS answer".to_string())?
        .map_err(|e| e.to_string())?;
    certs::peer_key(tls.get_ref().1).ok_or_else(|| "no certificate".into())
}

/// Whether the port can be bound now, as `lanyard up` would.
fn free(addr: SocketAddr) -> std::io::Result<()> {
    TcpListener::bind(addr).map(drop)
}

fn held_fix(port: u16, flag: &str) -> String {
    let find = if cfg!(target_os = "macos") {
        format!("`lsof -nP -iTCP:{port} -sTCP:LISTEN`")
    } else {
        format!("`ss -ltnp 'sport = :{port}'`")
    };
    format!("find it with {find} and stop it, or run Lanyard on another port: `lanyard up {flag} OTHER`")
}
