//! The home directory's file modes, and where the bridge key is.

use super::Finding;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The service's log directory is the one place not held to 0600: launchd and systemd create the log.
const NOT_SECRET: &str = "logs";
/// Bounds the walk, so a home someone filled with files cannot hold doctor up.
const MAX_ENTRIES: usize = 2000;

/// Every directory under the home 0700 and every file 0600 (no bits for group or others), owned by this
/// user: tokens, the paired-device store, the tunnel settings, the bridge key.
pub(super) fn modes(home: &Path) -> Finding {
    if !home.is_dir() {
        return Finding::warn(
            format!("no Lanyard home at {} yet", home.display()),
            "run `lanyard up` once: it creates the home, the tokens and the bridge key",
        );
    }
    let me = nix::unistd::getuid().as_raw();
    let mut open_dirs = Vec::new();
    let mut open_files = Vec::new();
    let mut strangers = Vec::new();
    let mut seen = 0;
    let mut queue = vec![home.to_path_buf()];
    while let Some(dir) = queue.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&dir) else { continue };
        seen += 1;
        if meta.mode() & 0o077 != 0 {
            open_dirs.push(described(&dir, meta.mode()));
        }
        if meta.uid() != me {
            strangers.push(dir.clone());
        }
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if seen >= MAX_ENTRIES {
                break;
            }
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                if !(dir == home && entry.file_name() == NOT_SECRET) {
                    queue.push(path);
                }
                continue;
            }
            seen += 1;
            if meta.permissions().mode() & 0o077 != 0 {
                open_files.push(described(&path, meta.mode()));
            }
            if meta.uid() != me {
                strangers.push(path);
            }
        }
    }
    if !open_files.is_empty() || !open_dirs.is_empty() {
        let shown: Vec<&str> = open_files.iter().chain(&open_dirs).map(|(_, text)| text.as_str()).collect();
        let mut fix = Vec::new();
        if !open_files.is_empty() {
            fix.push(format!("chmod 600 {}", quoted(open_files.iter().map(|(p, _)| p.as_path()))));
        }
        if !open_dirs.is_empty() {
            fix.push(format!("chmod 700 {}", quoted(open_dirs.iter().map(|(p, _)| p.as_path()))));
        }
        return Finding::fail(
            format!("other users may read Lanyard's secrets: {}", shown.join(", ")),
            format!("`{}`", fix.join(" && ")),
        );
    }
    if !strangers.is_empty() {
        return Finding::fail(
            format!("files in the home belong to another user: {}", quoted(strangers.iter().map(PathBuf::as_path))),
            format!("`chown -R \"$(id -un)\" {}`", quoted([home])),
        );
    }
    Finding::ok(format!("{} is private: directories 0700, files 0600 ({seen} checked)", home.display()))
}

fn described(path: &Path, mode: u32) -> (PathBuf, String) {
    (path.to_path_buf(), format!("{} ({:04o})", path.display(), mode & 0o7777))
}

/// Paths for a shell command line, single-quoted.
fn quoted<'a>(paths: impl IntoIterator<Item = &'a Path>) -> String {
    let words: Vec<String> =
        paths.into_iter().map(|p| format!("'{}'", p.display().to_string().replace('\'', r"'\''"))).collect();
    words.join(" ")
}

/// Where the bridge key is, and whether it can be read.
pub(super) fn key_store(home: &Path) -> Finding {
    let file = ::bridge::identity::key_file(home);
    let in_keychain = ::bridge::identity::keychain_marker(home).exists();
    if !file.exists() && !in_keychain {
        return Finding::warn(
            "no bridge key yet",
            "run `lanyard up` once: it creates the bridge key (in the OS keychain where there is one)",
        );
    }
    let location = if file.exists() { format!("{} (a 0600 file)", file.display()) } else { "the OS keychain".into() };
    match super::ports::our_bridge_id(home) {
        Ok(Some(id)) => Finding::ok(format!("the bridge key is in {location}: bridge ID {id}")),
        Ok(None) => Finding::warn("no bridge key yet", "run `lanyard up` once: it creates the bridge key"),
        Err(e) => Finding::fail(
            format!("the bridge key cannot be read: {e}"),
            "unlock the keychain or restore the key file from a backup; a new key means pairing every device again",
        ),
    }
}
