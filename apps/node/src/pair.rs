//! `lanyard-node pair`: door 2 with a connection string (no approval step), door 3 away from home with a
//! relay invite and the PIN (`--pin`), or door 1: find the bridge (mDNS, or `--address`), show the code the
//! owner compares, wait for the approval.

use crate::settings::{Settings, StateDir};
use anyhow::Context;
use clap::Args;
use node_kit::connection_string::{ConnectionString, RelayInvite};
use node_kit::discovery::{Discovery, MdnsDiscovery};
use node_kit::pairing::{PairedBridge, PairingRequest, pair_with_pin, redeem, request_pairing};
use node_kit::protocol::Scope;
use std::time::Duration;

#[derive(Args)]
pub struct PairArgs {
    /// The connection string `lanyard pair` printed on the computer (`lanyard://…`), or the invite
    /// `lanyard pair --remote` printed (`https://RELAY/#id=…&route=…`, the URL its QR code carries, with
    /// --pin); without either, the node asks the bridge and waits for the owner to approve.
    string: Option<Invitation>,
    /// The 6-digit PIN `lanyard pair --remote` shows beside its invite.
    #[arg(long, value_name = "DIGITS")]
    pin: Option<String>,
    /// Ask the bridge at this address instead of looking for it with mDNS (door 1).
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "string")]
    address: Option<String>,
    /// Look for the bridge only on this network interface (repeatable; all by default).
    #[arg(long = "interface", value_name = "IF")]
    interfaces: Vec<String>,
    /// How long to look for the bridge on the network, in seconds.
    #[arg(long, default_value_t = 30)]
    find_timeout: u64,
    /// The UDP port mDNS uses (5353, the standard one, unless the bridge advertises on another).
    #[arg(long, default_value_t = 5353, value_name = "PORT")]
    mdns_port: u16,
}

pub async fn run(state: &StateDir, settings: &Settings, args: PairArgs) -> anyhow::Result<()> {
    let identity = state.identity()?;
    let old = state.pairing()?;
    if let Some(old) = &old {
        eprintln!("replacing the pairing with bridge {} (at {})", old.bridge_id, old.address);
    }
    let request = PairingRequest::new(&settings.name, std::env::consts::OS).scopes([Scope::Chat, Scope::Voice]);
    let paired = match (&args.string, &args.address) {
        (Some(Invitation::Lan(string)), _) => {
            eprintln!("pairing with {} using its one-time code…", string.address());
            // Only a bridge that answered can have refused the code; anything else never reached it.
            redeem(string, &identity, request).await.map_err(|e| {
                let why = if e.code().is_some() {
                    "the bridge did not accept the code".to_string()
                } else {
                    format!("could not reach the bridge at {}", string.address())
                };
                anyhow::Error::new(e).context(why)
            })?
        }
        (Some(Invitation::Relay(invite)), _) => {
            let pin =
                args.pin.as_deref().context("an invite from `lanyard pair --remote` needs its PIN: --pin DIGITS")?;
            eprintln!("pairing through the relay {} by PIN…", invite.relay_url);
            pair_with_pin(invite, pin, &identity, request).await.context("pairing by PIN failed")?
        }
        (None, address) => match approve(&identity, request, address.clone(), &args).await {
            // A bridge that knows this key lets it in as paired, where asking to pair is not allowed.
            Err(e) if old.is_some() && e.chain().any(|c| c.to_string().contains("FORBIDDEN")) => {
                return Err(e.context(format!(
                    "this device ({}) is still paired with that computer; to pair it again, revoke it there first \
                     (`lanyard nodes revoke {}`)",
                    identity.id(),
                    identity.id()
                )));
            }
            other => other?,
        },
    };
    state.save_pairing(&paired)?;
    let at = if paired.address.is_empty() { "through the relay".to_string() } else { format!("at {}", paired.address) };
    println!("Paired with bridge {} {at} as {}", paired.bridge_id, paired.node_id);
    println!("Start the node with: lanyard-node run");
    Ok(())
}

/// What the owner's computer printed: a LAN connection string (door 2) or a relay invite (door 3).
#[derive(Clone)]
pub enum Invitation {
    Lan(ConnectionString),
    Relay(RelayInvite),
}

impl std::str::FromStr for Invitation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Door 2's strings are `lanyard://`; anything else is read as an invite (https://, or lanyard+https://).
        if s.trim().starts_with(&format!("{}://", node_kit::connection_string::SCHEME)) {
            s.parse().map(Invitation::Lan).map_err(|e| e.to_string())
        } else {
            s.parse().map(Invitation::Relay).map_err(|e| e.to_string())
        }
    }
}

/// Door 1: ask, show the code, wait for the owner.
async fn approve(
    identity: &certs::Identity,
    request: PairingRequest,
    address: Option<String>,
    args: &PairArgs,
) -> anyhow::Result<PairedBridge> {
    let (address, name) = match address {
        Some(address) => (address, "the computer".to_string()),
        None => {
            eprintln!("looking for a Lanyard bridge on the local network…");
            let found = MdnsDiscovery::new()
                .interfaces(args.interfaces.clone())
                .port(args.mdns_port)
                .watch()?
                .find(Duration::from_secs(args.find_timeout), |_| true)
                .await
                .context("no bridge found; is `lanyard up` running on this network? (or give --address HOST:PORT)")?;
            let address = found.addresses.first().cloned().context("the bridge advertised no usable address")?;
            (address, found.hint.name.unwrap_or_else(|| "the computer".into()))
        }
    };
    let pending = request_pairing(&address, identity, request).await.context("the bridge did not take the request")?;
    println!("Pairing code: {}", pending.sas());
    println!(
        "Approve this device on {name} (`lanyard nodes approve {}`) if it shows the same code.",
        pending.request_id()
    );
    pending.approved().await.context("the pairing was not approved")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_app_url_the_old_invite_and_a_connection_string() {
        let id = certs::Identity::generate().id();
        let route = "r".repeat(43);
        for invite in [
            format!("https://relay.example/#id={id}&route={route}&name=Ada%27s%20Mac"),
            format!("lanyard+https://relay.example?id={id}&route={route}"),
        ] {
            match invite.parse::<Invitation>() {
                Ok(Invitation::Relay(relay)) => {
                    assert_eq!(
                        (relay.relay_url.as_str(), relay.bridge_id, relay.routing.as_str()),
                        ("https://relay.example", id, route.as_str())
                    );
                }
                _ => panic!("{invite} is a relay invite"),
            }
        }
        let string = format!("lanyard://10.0.0.2:18790?id={id}&code=abc");
        assert!(matches!(string.parse::<Invitation>(), Ok(Invitation::Lan(_))));
        let e = format!("https://relay.example/#id={id}").parse::<Invitation>().err().unwrap();
        assert!(e.contains("https://RELAY/#id=BRIDGE_ID&route=ROUTING"), "{e}");
    }
}
