//! `lanyard-node status`: what the node is and how it is doing, from its state directory.

use crate::settings::{Settings, StateDir};

pub fn print(state: &StateDir, settings: &Settings) -> anyhow::Result<()> {
    println!("Name:      {}", settings.name);
    println!("State:     {}", state.path().display());
    match state.pairing()? {
        Some(paired) => {
            println!("Pairing:   paired as {}", paired.node_id);
            println!("Bridge:    {} at {}", paired.bridge_id, paired.address);
        }
        None => {
            println!("Pairing:   not paired (run `lanyard-node pair`)");
            println!("Bridge:    none");
        }
    }
    let running = state.status()?.filter(|s| process_alive(s.pid));
    match running {
        Some(status) => {
            println!("Link:      {} (pid {})", status.link, status.pid);
            println!("App state: {}", if status.foreground { "foreground" } else { "background" });
            println!("Screen:    {}", status.screen);
        }
        None => println!("Link:      not running (start it with `lanyard-node run`)"),
    }
    println!("Voice:     {}", if settings.voice { "on" } else { "off" });
    let allow: Vec<String> = settings.web_allow.iter().map(ToString::to_string).collect();
    println!("Web allow: {}", if allow.is_empty() { "none (web mode opens nothing)".into() } else { allow.join(", ") });
    println!("Snapshots: at most {} bytes", settings.max_snapshot_bytes);
    Ok(())
}

/// Whether `pid` is a live process (signal 0 checks without sending anything).
fn process_alive(pid: u32) -> bool {
    i32::try_from(pid).is_ok_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok())
}
