//! `lanyard open`: a one-time login link to the console, printed, and opened in a browser where one can be.

use clap::Args;
use node_kit::protocol::{ConsoleLogin, method};
use std::path::Path;

/// Log in to the console in a browser on this computer
///
/// Prints a link that logs one browser in, once, within two minutes; the browser then keeps a session
/// (12 hours unused). The console shows devices asking to pair, the paired devices, the agent's prompts and
/// the tunnel, live. It is served by `lanyard up` on this computer only.
#[derive(Args)]
pub struct OpenArgs {
    /// Only print the link; do not start a browser
    #[arg(long)]
    print: bool,
}

pub async fn run(args: OpenArgs, url: &str, home: &Path) -> anyhow::Result<()> {
    let client = super::connect(url, home).await?;
    let answer = client.request(method::CONSOLE_LOGIN, serde_json::Value::Null).await?;
    let login: ConsoleLogin = serde_json::from_value(answer)?;
    println!("{}", login.url);
    eprintln!("This link logs in one browser, once, within two minutes. Keep it to yourself.");
    if !args.print
        && let Some(opener) = opener()
    {
        // The link goes to the browser as an argument, never through a shell.
        match std::process::Command::new(opener).arg(&login.url).spawn() {
            Ok(_) => eprintln!("Opening it with {opener}…"),
            Err(e) => eprintln!("Could not start {opener} ({e}); open the link yourself."),
        }
    }
    Ok(())
}

/// The desktop's opener, when there is a desktop to open in.
fn opener() -> Option<&'static str> {
    if cfg!(target_os = "macos") {
        return Some("open");
    }
    let desktop = std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some();
    (desktop && which::which("xdg-open").is_ok()).then_some("xdg-open")
}
