//! The `claude` binary: found, runs, logged in.

use super::{Context, Finding};
use std::path::{Path, PathBuf};
use std::time::Duration;

const INSTALL: &str = "install Claude Code (`npm install -g @anthropic-ai/claude-code`), or point --claude / \
                       LANYARD_CLAUDE at the binary";
const LOGIN: &str = "run `claude auth login` (or `claude`, then /login) as the user who runs `lanyard up`, or set \
                     ANTHROPIC_API_KEY where it runs";

/// The binary the gateway would run, found the way the gateway finds it.
fn find(ctx: &Context) -> Result<PathBuf, Finding> {
    match &ctx.claude {
        Some(path) if path.is_file() => Ok(std::path::absolute(path).unwrap_or_else(|_| path.clone())),
        Some(path) => Err(Finding::fail(format!("the claude binary {} does not exist", path.display()), INSTALL)),
        None => which::which("claude").map_err(|_| Finding::fail("no `claude` on PATH", INSTALL)),
    }
}

pub(super) async fn binary(ctx: &Context) -> Finding {
    let path = match find(ctx) {
        Ok(path) => path,
        Err(finding) => return finding,
    };
    match run(&path, &["--version"]).await {
        Ok((true, out)) => Finding::ok(format!("claude {} at {}", out.trim(), path.display())),
        Ok((false, out)) => Finding::fail(
            format!("{} --version failed: {}", path.display(), first_line(&out)),
            format!("reinstall Claude Code; {INSTALL}"),
        ),
        Err(e) => Finding::fail(format!("cannot run {}: {e}", path.display()), INSTALL),
    }
}

pub(super) async fn login(ctx: &Context) -> Finding {
    let Ok(path) = find(ctx) else {
        return Finding::warn("not checked: no claude binary (see the claude check)", INSTALL);
    };
    // `claude auth status` prints JSON and fails when logged out; older versions lack it.
    let answer = run(&path, &["auth", "status"]).await;
    let status = answer.as_ref().ok().and_then(|(_, out)| serde_json::from_str::<serde_json::Value>(out).ok());
    let Some(status) = status else { return guess_login() };
    match status["loggedIn"].as_bool() {
        Some(true) => {
            let how: Vec<&str> = ["authMethod", "apiKeySource"].iter().filter_map(|k| status[*k].as_str()).collect();
            Finding::ok(format!("logged in ({})", how.join(", ")))
        }
        Some(false) => Finding::fail("claude is not logged in: every agent turn would fail", LOGIN),
        None => guess_login(),
    }
}

/// Without `claude auth status`: where credentials usually are.
fn guess_login() -> Finding {
    let from_env = ["ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN"]
        .into_iter()
        .find(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
    if let Some(name) = from_env {
        return Finding::ok(format!("{name} is set (this claude has no `auth status` to confirm it)"));
    }
    let credentials = std::env::var_os("HOME").map(|home| Path::new(&home).join(".claude/.credentials.json"));
    if credentials.as_deref().is_some_and(Path::is_file) {
        return Finding::ok("claude's credentials file is there (this claude has no `auth status` to confirm it)");
    }
    Finding::warn("cannot tell whether claude is logged in (no `claude auth status`, no credentials found)", LOGIN)
}

/// Runs claude for at most 15 s with stdin closed; whether it succeeded, and its stdout (or stderr when
/// stdout is empty).
async fn run(path: &Path, args: &[&str]) -> std::io::Result<(bool, String)> {
    let mut command = tokio::process::Command::new(path);
    command.args(args).stdin(std::process::Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(15), command.output())
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer within 15 s"))??;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let text = if stdout.trim().is_empty() { String::from_utf8_lossy(&out.stderr).into_owned() } else { stdout };
    Ok((out.status.success(), text))
}

fn first_line(text: &str) -> &str {
    text.lines().find(|l| !l.trim().is_empty()).unwrap_or("no output").trim()
}
