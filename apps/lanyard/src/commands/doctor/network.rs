//! What the LAN sees: mDNS, the addresses a phone would use, the firewall.

use super::{Context, Finding};
use node_kit::discovery::{Discovery, DiscoveryEvent, MdnsDiscovery, SERVICE_TYPE, id_hint};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// How long doctor listens for answers to its mDNS query.
const BROWSE_FOR: Duration = Duration::from_secs(2);

/// Whether mDNS works on the interfaces the bridge would use, and who answers for the bridge's name.
pub(super) async fn mdns(ctx: &Context) -> Finding {
    let interfaces = match interfaces(&ctx.mdns_interfaces) {
        Ok(names) if names.is_empty() => {
            return Finding::warn(
                "no network interface to advertise the bridge on",
                "connect to Wi-Fi or Ethernet; devices can still pair by address or `lanyard pair`",
            );
        }
        Ok(names) => names.join(", "),
        Err(missing) => {
            return Finding::fail(
                format!("no network interface named {missing}"),
                "pass an interface `ip link` (Linux) or `ifconfig` (macOS) lists to --mdns-interface",
            );
        }
    };
    let browser = MdnsDiscovery::new().interfaces(ctx.mdns_interfaces.clone()).port(ctx.mdns_port);
    let mut found = match browser.watch() {
        Ok(stream) => stream,
        Err(e) => {
            return Finding::fail(
                format!("cannot use mDNS on {interfaces}: {e}"),
                "another program may hold UDP port 5353 without sharing it; devices can still pair by address \
                 or `lanyard pair`",
            );
        }
    };
    let instance = ctx.mdns_name.clone().unwrap_or_else(::bridge::mdns::computer_name);
    let fullname = format!("{}.{SERVICE_TYPE}", truncate(&instance, 63));
    let ours = super::ports::our_bridge_id(&ctx.home).ok().flatten().map(|id| id_hint(&id));
    let mut answers = Vec::new();
    let deadline = tokio::time::Instant::now() + BROWSE_FOR;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, found.next()).await {
        if let DiscoveryEvent::Found(bridge) = event
            && bridge.instance.eq_ignore_ascii_case(&fullname)
        {
            answers.push(bridge);
        }
    }
    let strangers: Vec<String> = answers
        .iter()
        .filter(|bridge| ours.is_none() || bridge.hint.id_hint != ours)
        .map(|bridge| {
            let hint = bridge.hint.id_hint.as_deref().unwrap_or("none");
            format!("bridge ID hint {hint} at {}", bridge.addresses.join(", "))
        })
        .collect();
    if !strangers.is_empty() {
        return Finding::warn(
            format!("another responder answers as \"{instance}\": {}", strangers.join("; ")),
            "give this bridge another name (`lanyard up --mdns-name NAME`) or stop the other one, so devices \
             do not look in the wrong place",
        );
    }
    if answers.is_empty() {
        Finding::ok(format!(
            "mDNS works on {interfaces}; nothing answers as \"{instance}\" now (the bridge advertises while \
             `lanyard up` runs with mDNS on)"
        ))
    } else {
        Finding::ok(format!("this bridge is advertised as \"{instance}\" on {interfaces}"))
    }
}

/// The interfaces the bridge would advertise on: the named ones (all must exist), or every one but loopback.
fn interfaces(named: &[String]) -> Result<Vec<String>, String> {
    let all = if_addrs::get_if_addrs().unwrap_or_default();
    if let Some(missing) = named.iter().find(|name| !all.iter().any(|i| &i.name == *name)) {
        return Err(missing.clone());
    }
    let mut names: Vec<String> = all
        .into_iter()
        .filter(|i| if named.is_empty() { !i.is_loopback() } else { named.contains(&i.name) })
        .map(|i| i.name)
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

fn truncate(s: &str, max_bytes: usize) -> &str {
    let mut end = s.len().min(max_bytes);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The addresses a phone on the LAN would use, as the banner and `lanyard pair` pick them.
pub(super) fn lan_addresses(ctx: &Context) -> Finding {
    let found = node_kit::running::lan_addresses(IpAddr::V4(Ipv4Addr::UNSPECIFIED), &ctx.mdns_interfaces);
    if found.is_empty() {
        return Finding::warn(
            "no LAN address: devices on your network cannot reach this computer",
            "connect to Wi-Fi or Ethernet, or reach it from away with `lanyard tunnel enable …`",
        );
    }
    let port = ctx.bridge_port;
    let shown: Vec<String> = found.iter().map(|ip| std::net::SocketAddr::new(*ip, port).to_string()).collect();
    Finding::ok(format!("devices reach the bridge at {}", shown.join(", ")))
}

/// Reads the firewall's rules where it can (never changes them) and says whether they let devices in.
#[cfg_attr(target_os = "macos", allow(unused_variables))]
pub(super) async fn firewall(ctx: &Context) -> Finding {
    #[cfg(target_os = "macos")]
    {
        macos_firewall().await
    }
    #[cfg(not(target_os = "macos"))]
    {
        let port = ctx.bridge_port;
        let mut unreadable = None;
        for (tool, args) in [("nft", &["list", "ruleset"][..]), ("iptables", &["-S"][..])] {
            match read(tool, args).await {
                Ok(rules) => return judge(tool, &rules, port),
                Err(Unread::Missing) => {}
                Err(Unread::Refused(why)) => {
                    unreadable =
                        Some(format!("cannot read the rules without root (`sudo {tool} {}`: {why})", args.join(" ")));
                    break;
                }
            }
        }
        match unreadable {
            Some(why) => Finding::ok(format!("not checked: {why}")),
            None => Finding::ok("no nftables or iptables here: no packet filter to check"),
        }
    }
}

#[cfg(target_os = "macos")]
async fn macos_firewall() -> Finding {
    const TOOL: &str = "/usr/libexec/ApplicationFirewall/socketfilterfw";
    match (read(TOOL, &["--getglobalstate"]).await, read(TOOL, &["--getblockall"]).await) {
        (_, Ok(block)) if block.contains("enabled") || block.contains("ENABLED") => Finding::fail(
            "the macOS firewall blocks all incoming connections: devices cannot reach the bridge",
            "System Settings › Network › Firewall › Options: turn off \"Block all incoming connections\"",
        ),
        (Ok(state), _) if state.contains("enabled") => {
            Finding::ok("the macOS firewall is on: allow incoming connections for lanyard when macOS asks")
        }
        (Ok(_), _) => Finding::ok("the macOS firewall is off"),
        (Err(_), _) => Finding::ok("not checked: cannot ask the macOS firewall"),
    }
}

enum Unread {
    Missing,
    Refused(String),
}

async fn read(tool: &str, args: &[&str]) -> Result<String, Unread> {
    let mut command = tokio::process::Command::new(tool);
    command.args(args).stdin(std::process::Stdio::null()).kill_on_drop(true);
    match tokio::time::timeout(Duration::from_secs(5), command.output()).await {
        Ok(Ok(out)) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        Ok(Ok(out)) => Err(Unread::Refused(String::from_utf8_lossy(&out.stderr).trim().to_string())),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Err(Unread::Missing),
        Ok(Err(e)) => Err(Unread::Refused(e.to_string())),
        Err(_) => Err(Unread::Refused("no answer within 5 s".into())),
    }
}

/// Whether the rules drop incoming connections by default without naming the bridge's port or mDNS's.
fn judge(tool: &str, rules: &str, port: u16) -> Finding {
    let drops = rules.lines().any(|line| {
        let line = line.trim();
        // nftables: a base chain on the input hook with a drop policy; iptables: the INPUT chain's policy.
        (line.contains("hook input") && line.contains("policy drop")) || line == "-P INPUT DROP"
    });
    if !drops {
        return Finding::ok(format!("{tool}: incoming connections are not dropped by default"));
    }
    let names = |port: u16| {
        rules
            .lines()
            .filter(|l| l.contains("dport"))
            .any(|l| l.split(|c: char| !c.is_ascii_digit()).any(|number| number.parse::<u16>() == Ok(port)))
    };
    let missing: Vec<String> = [(port, "tcp"), (5353, "udp")]
        .into_iter()
        .filter(|(port, _)| !names(*port))
        .map(|(port, proto)| format!("{port}/{proto}"))
        .collect();
    if missing.is_empty() {
        return Finding::ok(format!("{tool}: drops by default, and has rules for the bridge's port and mDNS"));
    }
    Finding::warn(
        format!(
            "{tool} drops incoming connections and no rule names {}: devices may not reach the bridge",
            missing.join(" or ")
        ),
        format!(
            "allow them from your LAN, e.g. `sudo ufw allow {port}/tcp && sudo ufw allow 5353/udp`, or an nftables \
             rule `tcp dport {port} accept` in your input chain"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::doctor::Verdict;

    const NFT_DROP: &str = "table inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n\t\tct state established,related accept\n\t\ttcp dport 22 accept\n\t}\n}\n";

    #[test]
    fn a_dropping_firewall_without_a_rule_for_the_bridge_is_a_warning() {
        let finding = judge("nft", NFT_DROP, 18790);
        assert_eq!(finding.verdict, Verdict::Warn, "{finding:?}");
        assert!(finding.message.contains("18790/tcp or 5353/udp"), "{finding:?}");
        assert!(finding.fix.unwrap().contains("ufw allow 18790/tcp"));

        let allowed =
            NFT_DROP.replace("tcp dport 22 accept", "tcp dport { 22, 18790 } accept\n\t\tudp dport 5353 accept");
        assert_eq!(judge("nft", &allowed, 18790).verdict, Verdict::Ok);
        // A number that merely starts like the port does not count.
        let near = NFT_DROP.replace("tcp dport 22", "tcp dport 1879");
        assert_eq!(judge("nft", &near, 18790).verdict, Verdict::Warn);
    }

    #[test]
    fn an_accepting_firewall_is_fine() {
        assert_eq!(judge("nft", &NFT_DROP.replace("policy drop", "policy accept"), 18790).verdict, Verdict::Ok);
        assert_eq!(judge("iptables", "-P INPUT ACCEPT\n-P FORWARD DROP\n", 18790).verdict, Verdict::Ok);
        let iptables = "-P INPUT DROP\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n";
        assert_eq!(judge("iptables", iptables, 18790).verdict, Verdict::Warn);
    }
}
