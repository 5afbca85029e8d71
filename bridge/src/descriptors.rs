//! The process's file-descriptor limit. Many systems start processes with a soft limit of 1024 although
//! the hard limit is far higher; every connection costs descriptors, so the bridge raises the soft limit to
//! the hard one at startup and sizes its connection caps from the result.

use nix::sys::resource::{Resource, getrlimit, setrlimit};

/// The descriptor limits in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorLimit {
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft limit as far as the hard limit allows (macOS also caps it at `OPEN_MAX`, hence the
/// retry with a smaller value), and returns the limits in force afterwards.
pub fn raise_to_hard_limit() -> std::io::Result<DescriptorLimit> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    for target in [hard, 1 << 20, 65_536, 10_240] {
        if target <= soft {
            break;
        }
        if setrlimit(Resource::RLIMIT_NOFILE, target, hard).is_ok() {
            break;
        }
    }
    current()
}

/// The limits as they are now.
pub fn current() -> std::io::Result<DescriptorLimit> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    Ok(DescriptorLimit { soft, hard })
}

/// Descriptors this process has open now (Linux and macOS list them under `/dev/fd`).
pub fn open_count() -> Option<u64> {
    std::fs::read_dir("/dev/fd").ok().map(|entries| entries.count().saturating_sub(1) as u64)
}
