//! Two test hosts on one machine: network namespaces made with `ip netns`, joined by a veth pair named
//! `lan0` on both ends (10.99.0.1/24 and 10.99.0.2/24), loopback up in each. Nothing else is reachable
//! from them. Each [`Host`] is a tokio runtime whose threads live in its namespace, so every socket a
//! task of that runtime opens (and every process it spawns) is on that host; sockets keep their
//! namespace when driven from elsewhere. Needs root; skipped outside CI without it, a failure under CI.
#![allow(dead_code)] // each test file uses a different part

use std::future::Future;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

pub const A_IP: &str = "10.99.0.1";
pub const B_IP: &str = "10.99.0.2";
/// The interface name on both hosts.
pub const LAN: &str = "lan0";
const PREFIX: &str = "lyt";

/// A pair of namespaces; deleted (with their veth) when dropped.
pub struct TestNet {
    pub a: String,
    pub b: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("timeout").arg("10").arg("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl TestNet {
    /// Creates hosts A and B, or says why it cannot (and fails under CI).
    pub fn create() -> Option<TestNet> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        remove_stale();
        let tag = format!("{PREFIX}{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let net = TestNet { a: format!("{tag}a"), b: format!("{tag}b") };
        match net.build(&tag) {
            Ok(()) => Some(net),
            Err(e) => {
                // A failure under CI; counted as a skip by ./test.sh elsewhere.
                crate::support::gw::skip(&format!("two-host tests need root and iproute2: {e}"));
                None
            }
        }
    }

    fn build(&self, tag: &str) -> Result<(), String> {
        // veth names are limited to 15 bytes and live in this namespace until moved.
        let short = &tag[tag.len().saturating_sub(10)..];
        let (va, vb) = (format!("{short}x"), format!("{short}y"));
        ip(&["netns", "add", &self.a])?;
        ip(&["netns", "add", &self.b])?;
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb])?;
        for (ns, veth, addr) in [(&self.a, &va, A_IP), (&self.b, &vb, B_IP)] {
            ip(&["link", "set", veth, "netns", ns])?;
            ip(&["-n", ns, "link", "set", veth, "name", LAN])?;
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", LAN])?;
            ip(&["-n", ns, "link", "set", LAN, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    pub fn host_a(&self) -> Host {
        Host::enter(&self.a)
    }

    pub fn host_b(&self) -> Host {
        Host::enter(&self.b)
    }

    /// Moves host A from 10.99.0.1 to `new_ip` (same /24), as when a laptop gets a new lease. The old
    /// address goes first: deleting a subnet's primary address would take later ones with it.
    pub fn move_a(&self, new_ip: &str) {
        ip(&["-n", &self.a, "addr", "del", &format!("{A_IP}/24"), "dev", LAN]).unwrap();
        ip(&["-n", &self.a, "addr", "add", &format!("{new_ip}/24"), "dev", LAN]).unwrap();
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

/// Deletes namespaces left by test runs that were killed (their process is gone).
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir("/run/netns") else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|rest| rest.split('-').next()) else { continue };
        if pid.parse::<u32>().is_ok_and(|pid| pid != std::process::id())
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = ip(&["netns", "del", &name]);
        }
    }
}

/// A runtime whose threads are in one namespace.
pub struct Host {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Host {
    fn enter(ns: &str) -> Host {
        let path = format!("/run/netns/{ns}");
        let runtime = std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("the namespace exists");
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns (needs root)");
            // Worker threads are spawned from this thread now, so they start in the namespace too.
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
        })
        .join()
        .expect("the host thread starts");
        Host { runtime: Some(runtime) }
    }

    /// Runs `task` on this host and waits for it.
    pub async fn run<F>(&self, task: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let handle = self.runtime.as_ref().expect("running").spawn(task);
        handle.await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
